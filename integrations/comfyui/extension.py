"""The ComfyExtension ComfyUI's loader gets from `comfy_entrypoint` (V3 node schema, comfy_api.latest)."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .models import register_model_folders
from .nodes_guidance import StyleIDGuidance
from .nodes_jojogan import JoJoGANStylize, JoJoGANTrain
from .nodes_people import StyleIDPickFace
from .nodes_scoring import StyleIDLikenessGate, StyleIDLoader, StyleIDSimilarity

NODES: list[type[io.ComfyNode]] = [StyleIDLoader, StyleIDSimilarity, StyleIDLikenessGate, StyleIDGuidance,
                                   JoJoGANTrain, JoJoGANStylize, StyleIDPickFace]


class StyleIDExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_model_folders()  # before any schema lists the folders
        return list(NODES)
