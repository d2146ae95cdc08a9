"""The argument groups every `styleid` subcommand shares.

One flag, one meaning: a flag that means the same thing in two subcommands comes from the same
function here, so its name, type, choices and help cannot drift apart (a test checks this).
Dashes everywhere; underscore spellings exist only as aliases where upstream users expect them
(JoJoGAN's `--id_loss`, `--num_iter`, ...).
"""
from __future__ import annotations

import argparse

from ..options import CROPS, DEFAULT_CROP, DEFAULT_THRESHOLD, DETECTORS, PRECISIONS, RELEASED_MODEL
from .values import finite_float, level_list, positive_int

class ModelFlag(argparse._StoreAction):
    """--model: one encoder; where a command compares several (`styleid score`), each repetition adds one.

    One action class for every command, so --model keeps one meaning (a model id or folder) and only its
    count differs."""

    def __init__(self, *args: object, repeatable: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.repeatable = repeatable

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        if not self.repeatable:
            return super().__call__(parser, namespace, values, option_string)
        given = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, [*(given if isinstance(given, list) else []), values])


def add_model(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = RELEASED_MODEL,
              repeatable: bool = False) -> None:
    shown = "%(default)s" if not repeatable or default is not None else RELEASED_MODEL
    more = "; repeat it to compare several models in one pass, eval's baselines included (arcface, clip, adaface, " \
           "NAME=WEIGHTS)" if repeatable else ""
    p.add_argument("--model", default=default, metavar="ID_OR_DIR", action=ModelFlag, repeatable=repeatable,
                   help=f"StyleID encoder: a Hub id, a local folder, or test-tiny (random, offline){more} (default: {shown})")


def add_threshold(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--threshold", type=finite_float, default=DEFAULT_THRESHOLD,
                   help="cosine similarity at or above which a pair is 'same' (default: %(default)s)")


def add_arcface_model(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--arcface-model", default=None, metavar="PATH",
                   help="ArcFace IR-SE50 weights file or folder (default: facexlib's, from --model-rootpath or downloaded)")


def add_device(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")


def add_precision(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "auto") -> None:
    """--precision: auto = bf16 where the device runs it natively (CUDA with bf16, CPUs with AMX /
    AVX512-BF16), fp32 elsewhere."""
    p.add_argument("--precision", choices=PRECISIONS, default=default,
                   help="compute precision: auto (bf16 where the hardware runs it natively, else fp32), fp32, bf16, fp16 "
                        "(default: %(default)s)")


def add_faces(p: argparse.ArgumentParser | argparse._ArgumentGroup, crop: bool = True) -> None:
    """--crop, --detector, --model-rootpath: one definition for every command that finds faces."""
    if crop:
        p.add_argument("--crop", choices=CROPS, default=DEFAULT_CROP,
                       help="face: detect and align the largest face (default); center: CLIP's centre crop; none: the whole image")
    p.add_argument("--detector", choices=DETECTORS, default=None,
                   help="face detector for crops: retinaface (default) or mtcnn (ships its weights: the offline choice, "
                        "and the default with --tiny); stylization pipelines otherwise use their upstream insightface detector")
    p.add_argument("--model-rootpath", "--model_rootpath", dest="model_rootpath", default=None, metavar="DIR",
                   help="folder with facexlib weights (RetinaFace, ArcFace) to use instead of downloading")


def add_output(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str, required: bool = True,
               default: str | None = None) -> None:
    p.add_argument("--output", "-o", required=required, default=default, metavar="PATH", help=what)


def add_batch_size(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: int = 32) -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help="images per model call (default: %(default)s)")


def add_progress(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_tiny(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--tiny", action="store_true", help="built-in tiny random models: runs offline in seconds, outputs not meaningful")


def add_seed(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default, help="random seed (default: %(default)s)")


def add_levels(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "1,2,3,4,5,6,7") -> None:
    p.add_argument("--levels", type=level_list, default=level_list(default), metavar="L,L,...",
                   help=f"strength levels 1..7, comma-separated (default: {default})")


def add_identity_guidance(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Flags of the diffusers identity guidance callback (examples, demo-style scripts, generate)."""
    p.add_argument("--id-scale", type=finite_float, default=None, help="identity guidance step size (default: the callback's)")
    p.add_argument("--id-mode", choices=("x0", "xt"), default="x0", help="x0: no denoiser backprop (default); xt: FreeDoM-style")
    p.add_argument("--guidance-decoder", default=None, metavar="ID_OR_DIR",
                   help="AutoencoderTiny Hub id / folder (e.g. madebyollin/taesd) that decodes x0 for guidance")
    p.add_argument("--id-start", type=finite_float, default=0.0, help="fraction of the steps where guidance starts (default: 0)")
    p.add_argument("--id-end", type=finite_float, default=0.9, help="fraction of the steps where guidance ends (default: 0.9)")
    p.add_argument("--augment-views", type=int, default=2, help="random crop/flip views per guided step (default: 2)")
