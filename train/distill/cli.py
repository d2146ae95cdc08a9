"""`styleid distill`: distil a StyleID teacher into a small open_clip student for cheap guidance.

    styleid distill --data stylebench-s --teacher kwanY/styleid --student ViT-B-32 -o runs/student
    styleid distill --config distill.yaml --eval-pairs stylebench-h/pairs.csv      # flags beat the file
    accelerate launch --multi_gpu --num_processes 4 -m styleid_guidance distill --data ... -o ...

The teacher embeds every image once (cached in OUTPUT/teacher_targets.safetensors); the student (every
weight trains, its embedding as wide as the teacher's) learns λ_cos·(1 − cos) + λ_rel·(pairwise-similarity
matching). A run resumes from its newest checkpoint in --output. OUTPUT/final/ is a StyleID encoder folder:
`--model OUTPUT/final` works wherever a StyleID model is asked for. With --eval-pairs the run ends with the
student's agreement with the teacher (held-out AUROC of both, cosine) and its guidance-step speed-up, also
written to OUTPUT/distill_report.json. Every option is a field of `styleid_guidance.train.distill.config.DistillConfig`.
"""
from __future__ import annotations

import argparse
from typing import Any

from styleid_guidance.cli import config_options, parsing, runtime

from .config import GROUPS, DistillConfig


def register(sub: Any) -> None:
    config_options.add_config_command(sub, "distill", "distil a StyleID teacher into a small, fast student encoder (accelerate)",
                              __doc__, DistillConfig, GROUPS, run)


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    return config_options.config_from_args(args, DistillConfig)


def run(args: argparse.Namespace) -> int:
    from styleid_guidance.files.atomic import check_writable_dir

    cfg = config_from_args(args)
    with parsing.for_option("--output"):  # before the teacher loads
        check_writable_dir(cfg.output)
    log = runtime.command_logger("distill")  # its progress lines (styleid.distill), not every library's INFO chatter

    if cfg.teacher != "test-tiny":  # a missing teacher fails now, named by its flag
        from styleid_guidance.hub.resolve import resolve_model_dir

        resolve_model_dir(cfg.teacher, kind="StyleID teacher", flag="--teacher")
    from .distiller import distill

    final = distill(cfg, progress=not args.no_progress)
    log.info(f"wrote {final}")
    return 0
