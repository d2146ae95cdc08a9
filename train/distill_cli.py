"""`styleid distill`: distil a StyleID teacher into a small open_clip student for cheap guidance.

    styleid distill --data stylebench-s --teacher kwanY/styleid --student ViT-B-32 -o runs/student
    styleid distill --config distill.yaml --eval-pairs stylebench-h/pairs.csv      # flags beat the file
    accelerate launch --multi_gpu --num_processes 4 -m styleid_guidance distill --data ... -o ...

The teacher embeds every image once (cached in OUTPUT/teacher_targets.safetensors); the student (every
weight trains, its embedding as wide as the teacher's) learns λ_cos·(1 − cos) + λ_rel·(pairwise-similarity
matching). A run resumes from its newest checkpoint in --output. OUTPUT/final/ is a StyleID encoder folder:
`--model OUTPUT/final` works wherever a StyleID model is asked for. With --eval-pairs the run ends with the
student's agreement with the teacher (held-out AUROC of both, cosine) and its guidance-step speed-up, also
written to OUTPUT/distill_report.json. Every option is a field of `styleid_guidance.train.distill_config.DistillConfig`.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from styleid_guidance.cli import args as common

from .distill_config import GROUPS, DistillConfig


def register(sub: Any) -> None:
    common.add_config_command(sub, "distill", "distil a StyleID teacher into a small, fast student encoder (accelerate)",
                              __doc__, DistillConfig, GROUPS, run)


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    return common.config_from_args(args, DistillConfig)


def run(args: argparse.Namespace) -> int:
    from styleid_guidance.fileio import check_writable_dir

    cfg = config_from_args(args)
    with common.for_option("--output"):  # before the teacher loads
        check_writable_dir(cfg.output)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("styleid").setLevel(logging.INFO)  # our progress lines, not every library's INFO chatter

    if cfg.teacher != "test-tiny":  # a missing teacher fails now, named by its flag
        from styleid_guidance.hub import resolve_model_dir

        resolve_model_dir(cfg.teacher, kind="StyleID teacher", flag="--teacher")
    from .distill import distill

    final = distill(cfg, progress=not args.no_progress)
    print(f"wrote {final}")
    return 0
