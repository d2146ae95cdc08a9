"""Built-in tiny random models and synthetic data: the offline, seconds-on-a-CPU stand-ins.

Everything here exists so the real code paths (pipelines, guidance, JoJoGAN, training) run without a
download — for tests, smoke runs and the demo's `tiny` profile. Product code reaches it only through
the documented `.tiny()` constructors (`IPAdapterStylizer.tiny()`, `JoJoGAN.tiny()`, ...) and the
`styleid smoke-data` command; nothing here is imported at package import time.
"""
