"""JoJoGANTrain / JoJoGANStylize: one-shot StyleGAN2 stylization with an identity term, as ComfyUI V3 nodes.

Base models (`stylegan2-ffhq-config-f.pt` + `e4e_ffhq_encode.pt`) and saved styles live in ComfyUI/models/jojogan;
"tiny" builds random small models (offline, seconds on a CPU, results mean nothing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from comfy_api.latest import io

from styleid_guidance.errors import StyleIDError

from . import models
from .images import bchw_to_image, image_to_bchw
from .nodes_scoring import CATEGORY, StyleIDModelType

JoJoGANModelType = io.Custom("JOJOGAN_MODEL")
BASES = ("tiny", "ffhq")
STYLEGAN_FILE = "stylegan2-ffhq-config-f.pt"
E4E_FILE = "e4e_ffhq_encode.pt"
NO_STYLE = "none"


@dataclass
class JoJoGANModel:
    """JOJOGAN_MODEL: the base models and a fine-tuned generator (None = the base generator)."""

    jojogan: Any  # styleid_guidance.jojogan.api.JoJoGAN
    generator: Any


def _base(name: str, detector: str = models.OFFLINE_DETECTOR) -> Any:
    from styleid_guidance.jojogan.api import JoJoGAN

    if name not in BASES:
        raise StyleIDError(f"base must be one of {', '.join(BASES)}, got {name!r}")
    with torch.inference_mode(False):  # weights that JoJoGAN fine-tuning can back-propagate through
        if name == "tiny":
            return JoJoGAN.tiny(device=str(models.resolve_device("auto")))
        missing = [f for f in (STYLEGAN_FILE, E4E_FILE) if not any((d / f).is_file() for d in models.model_dirs(models.JOJOGAN_FOLDER))]
        if missing:
            raise StyleIDError(f"JoJoGAN base 'ffhq' needs {' and '.join(missing)} in "
                               f"{models.default_dir(models.JOJOGAN_FOLDER)} (nothing is downloaded)")
        return JoJoGAN.from_pretrained(models.find_model(models.JOJOGAN_FOLDER, STYLEGAN_FILE),
                                       models.find_model(models.JOJOGAN_FOLDER, E4E_FILE),
                                       device=models.resolve_device("auto"), detector=detector,
                                       model_rootpath=models.detector_rootpath(detector))  # never a detector download


class JoJoGANTrain(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoJoGANTrain",
            display_name="JoJoGAN Train Style",
            category=CATEGORY,
            description="Fine-tune StyleGAN2 on one or a few style references (JoJoGAN) with a StyleID, ArcFace or no "
                        "identity term. save_name (optional) writes the style into ComfyUI/models/jojogan.",
            inputs=[
                io.Image.Input("style", tooltip="style reference(s): faces drawn in the target style"),
                io.Combo.Input("base", options=list(BASES), default="ffhq"),
                io.Combo.Input("id_loss", options=["styleid", "arcface", "none"], default="styleid"),
                io.Int.Input("iterations", default=300, min=1, max=5000),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1),
                io.Boolean.Input("align", default=True, tooltip="FFHQ-align the references (off: centre crop)"),
                io.Boolean.Input("preserve_color", default=False),
                io.Float.Input("id_weight", default=1.0, min=0.0, max=100.0, step=0.1),
                io.String.Input("save_name", default=""),
                StyleIDModelType.Input("styleid_model", optional=True,
                                       tooltip="identity model for id_loss (default: the base's own)"),
            ],
            outputs=[JoJoGANModelType.Output("jojogan", display_name="jojogan")],
        )

    @classmethod
    def execute(cls, style: torch.Tensor, base: str, id_loss: str, iterations: int, seed: int, align: bool,
                preserve_color: bool, id_weight: float, save_name: str, styleid_model: models.StyleIDModel | None = None) -> io.NodeOutput:
        from styleid_guidance.files.images import to_pil

        refs = [to_pil(x) for x in image_to_bchw(style, "style")]
        id_model = None
        if styleid_model is None and id_loss != "none" and base != "tiny":
            # the base has no identity model of its own, and nothing is downloaded implicitly
            raise StyleIDError(f"id_loss {id_loss!r} needs the styleid_model input: connect a StyleIDLoader "
                               f"({'an ArcFace .pth' if id_loss == 'arcface' else 'a StyleID model'} from ComfyUI/models/styleid)")
        if styleid_model is not None and id_loss != "none":
            if (id_loss == "arcface") != (styleid_model.kind == "arcface"):
                raise StyleIDError(f"id_loss {id_loss!r} needs a {id_loss} model, but styleid_model is "
                                   f"{styleid_model.kind} ({styleid_model.name})")
            id_model = styleid_model.face.model
        jj = _base(base, styleid_model.detector if styleid_model is not None else models.OFFLINE_DETECTOR)
        # ComfyUI runs nodes under inference mode; fine-tuning needs autograd
        with torch.inference_mode(False), torch.enable_grad():
            generator = jj.finetune(refs, identity_loss=id_loss, id_weight=float(id_weight), num_iter=int(iterations),
                                    preserve_color=bool(preserve_color), seed=int(seed), align=bool(align), id_model=id_model,
                                    show_progress=False)
        if save_name.strip():
            name = save_name.strip()
            name = name if name.endswith(models.STYLE_SUFFIXES) else f"{name}.pt"
            folder = models.model_dirs(models.JOJOGAN_FOLDER)
            if not folder:
                raise StyleIDError("save_name needs ComfyUI's models folder (run inside ComfyUI)")
            folder[0].mkdir(parents=True, exist_ok=True)
            jj.save_style(generator, folder[0] / name, id_loss=id_loss, iterations=int(iterations), seed=int(seed))
        return io.NodeOutput(JoJoGANModel(jj, generator))


class JoJoGANStylize(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="JoJoGANStylize",
            display_name="JoJoGAN Stylize",
            category=CATEGORY,
            description="Invert each face with e4e and render it with a JoJoGAN style: from JoJoGANTrain, or a style "
                        "checkpoint from ComfyUI/models/jojogan.",
            inputs=[
                io.Image.Input("face"),
                io.Combo.Input("style_checkpoint", options=[NO_STYLE, *models.style_choices()], default=NO_STYLE),
                io.Combo.Input("base", options=list(BASES), default="ffhq", tooltip="used with a style_checkpoint"),
                io.Boolean.Input("align", default=True),
                JoJoGANModelType.Input("jojogan", optional=True),
            ],
            outputs=[io.Image.Output("image", display_name="image")],
        )

    @classmethod
    def validate_inputs(cls, style_checkpoint: str) -> bool | str:
        if style_checkpoint == NO_STYLE or style_checkpoint in models.style_choices():
            return True
        return f"style checkpoint {style_checkpoint!r} not found: put it into {models.default_dir(models.JOJOGAN_FOLDER)}"

    @classmethod
    def execute(cls, face: torch.Tensor, style_checkpoint: str, base: str, align: bool,
                jojogan: JoJoGANModel | None = None) -> io.NodeOutput:
        from styleid_guidance.files.images import to_pil, to_tensor

        faces = image_to_bchw(face, "face")
        if style_checkpoint != NO_STYLE:
            jj = jojogan.jojogan if jojogan is not None else _base(base)
            with torch.inference_mode(False):
                generator = jj.load_style(models.find_model(models.JOJOGAN_FOLDER, style_checkpoint))
        elif jojogan is not None:
            jj, generator = jojogan.jojogan, jojogan.generator
        else:
            raise StyleIDError("connect a jojogan input (from JoJoGANTrain) or choose a style_checkpoint")
        out = [to_tensor(jj.stylize(to_pil(x), generator, align=bool(align))) for x in faces]
        return io.NodeOutput(bchw_to_image(torch.cat(out)))
