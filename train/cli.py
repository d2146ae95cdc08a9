"""`styleid train`: train a StyleID encoder (LoRA on an open_clip image tower) on StyleBench-S-layout data.

Runs unchanged on a CPU, one GPU, or many through `accelerate launch`:

    styleid train --data stylebench-s --output runs/styleid                     # the paper's defaults
    styleid train --config configs/smoke.yaml --max-steps 200                   # flags beat the file
    accelerate launch --multi_gpu --num_processes 8 -m styleid_guidance train --config configs/stylebench-s.yaml ...
    styleid train --output runs/untrained --backbone ViT-L-14 --max-steps 0     # export the untrained baseline

A run resumes automatically from the newest checkpoint in --output. Every option is a field of
`styleid_guidance.train.TrainConfig`; a config file (YAML/JSON) uses the field names.
"""
from __future__ import annotations

import argparse
from typing import Any

from styleid_guidance.cli import config_options, parsing, runtime

from .config import GROUPS, TrainConfig

# options that were renamed: a config file with the old name gets told the new one
RENAMED = {"scale": "angular_scale"}


def register(sub: Any) -> None:
    config_options.add_config_command(sub, "train", "train a StyleID encoder (accelerate: CPU, one GPU or many)", __doc__,
                              TrainConfig, GROUPS, run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return config_options.config_from_args(args, TrainConfig, RENAMED)


def run(args: argparse.Namespace) -> int:
    from styleid_guidance.files.atomic import check_writable_dir

    cfg = config_from_args(args)
    with parsing.for_option("--output"):  # before the backbone loads
        check_writable_dir(cfg.output)
    runtime.command_logger("train")  # its progress lines (styleid.train), not open_clip's or accelerate's INFO chatter

    from .trainer import train

    train(cfg, progress=not args.no_progress)  # the main process logs where the encoder went
    return 0
