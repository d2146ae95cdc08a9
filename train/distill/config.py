"""`styleid distill` settings: one dataclass, loaded from YAML/JSON and overridden by flags, as training is.

Precedence: defaults < config file < flags. Every field is a flag (`--images-per-batch 64`); a config file
uses the field names. The dataclass checks itself on construction, so a bad value never reaches the loop.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from styleid_guidance.errors import Arg, StyleIDError, bad_value
from styleid_guidance.options import CROPS, MIXED_PRECISIONS, PRECISIONS

from ..config import SCHEDULES

GROUPS = {"data": "data", "models": "teacher and student", "objective": "objective (λ_cos·L_cos + λ_rel·L_rel)",
          "optim": "optimisation", "log": "evaluation, checkpoints, logging"}


def _opt(default: Any, help: str, group: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class DistillConfig:
    # data
    data: str | None = _opt(None, "images to distil on: a StyleBench-S root (photos + stylisations) or any folder "
                                  "of images (searched recursively)", "data", metavar="DIR")
    output: str = _opt("outputs/distill", "run folder: checkpoints, teacher_targets.safetensors, metrics.jsonl, final/",
                       "data", aliases=("-o",), metavar="DIR")
    crop: str = _opt("center", "how teacher and student see each image (StyleBench images are aligned: center)", "data",
                     choices=CROPS)
    num_workers: int = _opt(2, "data loader processes", "data")
    # teacher and student
    teacher: str = _opt("kwanY/styleid", "the StyleID encoder to distil: Hub id, local folder, or test-tiny", "models",
                        metavar="ID_OR_DIR")
    teacher_precision: str = _opt("auto", "precision of the one-off teacher pass (auto = bf16 where native)", "models",
                                  choices=PRECISIONS)
    student: str = _opt("ViT-B-32", "open_clip architecture of the student (a CLIP ViT gets the teacher's embedding "
                                    "width), test-tiny, or teacher: the teacher itself made cheaper (--student-layers "
                                    "of its blocks, --student-patch px patches), which starts close to it", "models")
    student_layers: int = _opt(0, "with --student teacher: blocks kept, evenly spaced; 0 = half the teacher's", "models")
    student_patch: int = _opt(0, "with --student teacher: patch size in px, a multiple of the teacher's; "
                                 "0 = twice the teacher's (4x fewer tokens)", "models")
    student_pretrained: str | None = _opt("openai", "open_clip weights the student starts from; none = random", "models")
    # objective
    lambda_cos: float = _opt(1.0, "weight of L_cos = mean(1 − cos(student, teacher)) per image", "objective")
    lambda_rel: float = _opt(10.0, "weight of L_rel = mean squared difference of the batch's pairwise cosine "
                                   "matrices (student vs teacher): keeps who-looks-like-whom", "objective")
    # optimisation
    lr: float = _opt(1e-4, "AdamW learning rate", "optim")
    weight_decay: float = _opt(0.05, "AdamW weight decay", "optim")
    lr_schedule: str = _opt("cosine", "learning-rate schedule after warm-up", "optim", choices=SCHEDULES)
    warmup_steps: int = _opt(50, "linear warm-up steps", "optim")
    max_steps: int = _opt(3000, "optimizer steps", "optim")
    images_per_batch: int = _opt(64, "images per step on each process", "optim")
    max_grad_norm: float = _opt(1.0, "clip gradients to this norm; 0 = off", "optim")
    mixed_precision: str = _opt("no", "accelerate mixed precision of the student's training", "optim", choices=MIXED_PRECISIONS)
    seed: int = _opt(0, "seed of the batch order and of a random student", "optim")
    # evaluation, checkpoints, logging
    eval_pairs: str | None = _opt(None, "held-out pairs CSV (the `styleid eval` format): the final report scores "
                                        "teacher and student on it", "log", metavar="CSV")
    save_every: int = _opt(500, "steps between checkpoints", "log")
    keep_last: int = _opt(2, "checkpoints kept", "log")
    log_every: int = _opt(10, "steps per metrics.jsonl line", "log")
    resume: str = _opt("auto", "auto (the newest checkpoint in --output), never, or a checkpoint folder", "log")
    report_size: int = _opt(256, "side of the generated image the guidance-step timing uses", "log")

    def __post_init__(self) -> None:
        if self.student_pretrained in ("none", "None", "random", ""):
            self.student_pretrained = None
        if self.student in ("test-tiny", "teacher"):
            self.student_pretrained = None

        def positive(name: str, strict: bool) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                value > 0 if strict else value >= 0)
            if not ok:
                raise bad_value(name, f"must be a finite number {'>' if strict else '≥'} 0, got {value!r}")

        for name in ("lr",):
            positive(name, strict=True)
        for name in ("weight_decay", "lambda_cos", "lambda_rel", "max_grad_norm"):
            positive(name, strict=False)
        if self.lambda_cos == 0 and self.lambda_rel == 0:
            raise StyleIDError("{cos} and {rel} are both 0: nothing would be distilled", param="lambda_cos",
                               cos=Arg("lambda_cos"), rel=Arg("lambda_rel"))
        for name, low in (("max_steps", 1), ("images_per_batch", 2), ("warmup_steps", 0), ("save_every", 1),
                          ("keep_last", 1), ("log_every", 1), ("num_workers", 0), ("report_size", 16),
                          ("student_layers", 0), ("student_patch", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise bad_value(name, f"must be a whole number ≥ {low}, got {value!r}")
        for name, options in (("crop", CROPS), ("teacher_precision", PRECISIONS), ("lr_schedule", SCHEDULES),
                              ("mixed_precision", MIXED_PRECISIONS)):
            if getattr(self, name) not in options:
                raise bad_value(name, f"must be one of {', '.join(options)}, got {getattr(self, name)!r}")
        if self.student != "teacher" and (self.student_layers or self.student_patch):
            raise StyleIDError("{layers} and {patch} shape a {teacher}; drop them or add {teacher}", param="student",
                               layers=Arg("student_layers"), patch=Arg("student_patch"), teacher=Arg("student", "teacher"))
        if not self.data:
            raise StyleIDError("{data} is required: a folder of images (StyleBench-S layout or any images)", param="data",
                               data=Arg("data"))
        if self.eval_pairs and not Path(self.eval_pairs).is_file():
            raise StyleIDError("{pairs}: no such file", param="eval_pairs", pairs=Arg("eval_pairs", self.eval_pairs))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# settings that change what a checkpoint's tensors or the batch stream mean: a resume across them is refused
INCOMPATIBLE = ("teacher", "student", "student_layers", "student_patch", "student_pretrained", "crop", "images_per_batch", "seed")

