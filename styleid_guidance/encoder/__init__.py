"""The StyleID encoder: CLIP backbones with LoRA, as an open_clip factory over the named configs in `model_configs/`.

    model              StyleIDEncoder (embed, from_pretrained, save_pretrained)
    config             StyleIDConfig and LoraSettings
    backbones          the open_clip factory and the registry of named backbones (model_configs/*.json)
    attention          the attention implementation the backbones run
    preprocess         image → backbone input (resize, normalise), differentiable
    folder_format      this project's encoder folders (save_pretrained / from_pretrained)
    transformers_format  the authors' transformers CLIPVisionModel folders (the released weights' layout)
    clip_weights       open_clip ↔ transformers CLIP weight names

Model code does no I/O: reading and writing folders lives in `folder_format` / `transformers_format`.
Users import `from styleid_guidance import StyleIDEncoder`.
"""
