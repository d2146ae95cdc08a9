"""The StyleID node pack for a clone of this repository in ComfyUI/custom_nodes/.

ComfyUI-Manager and most users install a node pack by cloning its repository into `ComfyUI/custom_nodes/` and
running `pip install -r requirements.txt` in that folder with ComfyUI's Python; ComfyUI then imports this file.
The requirements file installs this checkout as the styleid-guidance package, and the nodes come from there
(`styleid_guidance.integrations.comfyui`), so a clone and `styleid comfyui install` give the same pack. Nothing here
is part of the Python package.
"""
try:
    from styleid_guidance.integrations.comfyui import comfy_entrypoint
except ModuleNotFoundError as err:  # the clone is here but its requirements were not installed into ComfyUI's Python
    if err.name != "styleid_guidance":
        raise
    raise ImportError("the StyleID node pack needs the styleid-guidance package in ComfyUI's Python: run "
                      "`python -m pip install -r requirements.txt` in this folder with that Python") from err

__all__ = ["comfy_entrypoint"]
