"""StyleID for ComfyUI: identity scoring, likeness gating, identity guidance and JoJoGAN as a node pack.

Nodes (category "StyleID"): StyleIDLoader, StyleIDSimilarity, StyleIDLikenessGate, StyleIDGuidance,
JoJoGANTrain, JoJoGANStylize, StyleIDPickFace; custom types STYLEID_MODEL and JOJOGAN_MODEL. Models: ComfyUI/models/styleid and
ComfyUI/models/jojogan (never downloaded). Written for ComfyUI's V3 node schema (`comfy_api.latest`), tested
on ComfyUI 0.3.64 and 0.33.0 (TESTED_COMFYUI; SUPPORTED_COMFYUI is the range users may run).

Install: `pip install styleid-guidance` then `styleid comfyui install COMFYUI_DIR`, which links this folder
into COMFYUI_DIR/custom_nodes/ (or link/copy it there yourself); or clone the repository into custom_nodes/ and
run `pip install -r requirements.txt` there, as ComfyUI-Manager does (the repository's own __init__.py). ComfyUI imports this file by path; the
nodes are imported from the installed package (absolute imports), and only when ComfyUI asks for them, so
`import styleid_guidance.integrations.comfyui` works without ComfyUI.
"""
from __future__ import annotations

import importlib
from typing import Any

# The versions the test suite runs the pack on, each in an environment with that ComfyUI's own requirements.
TESTED_COMFYUI = ("0.3.64", "0.33.0")
# No upper bound: nothing newer is known to break the pack, and a cap would refuse the 0.4x releases people run.
SUPPORTED_COMFYUI = ">=0.3.64"
NODE_IDS = ("StyleIDLoader", "StyleIDSimilarity", "StyleIDLikenessGate", "StyleIDGuidance", "JoJoGANTrain", "JoJoGANStylize",
            "StyleIDPickFace")
PACKAGE = "styleid_guidance.integrations.comfyui"


async def comfy_entrypoint() -> Any:
    """ComfyUI's V3 entry point: the extension listing this pack's nodes."""
    try:
        extension = importlib.import_module(f"{PACKAGE}.extension")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("styleid_guidance"):
            raise ImportError("the StyleID node pack needs the styleid-guidance package in ComfyUI's Python: "
                              "pip install styleid-guidance (or pip install -e a clone)") from err
        raise
    return extension.StyleIDExtension()


__all__ = ["NODE_IDS", "SUPPORTED_COMFYUI", "TESTED_COMFYUI", "comfy_entrypoint"]
