"""Stylisation pipelines (IP-Adapter, InstantID, InfiniteYou) with StyleID identity guidance.

Submodules are imported on demand (`from pipelines.ip_adapter import IPAdapterStylizer`): each pulls in
diffusers and its own model code, which a caller of another pipeline should not pay for."""
