"""`styleid-train` / `python -m train`: train a StyleID encoder (LoRA on an open_clip image tower).

Runs unchanged on a CPU, one GPU, or many through `accelerate launch`:

    styleid-train --data stylebench-s --output runs/styleid                       # paper defaults
    styleid-train --config configs/smoke.yaml --max-steps 200                     # flags beat the file
    accelerate launch --num_processes 8 -m train --data ... --mixed-precision bf16
    styleid-train --output runs/untrained --backbone ViT-L-14 --max-steps 0       # export the baseline

A run resumes automatically from the newest checkpoint in --output.
"""
from __future__ import annotations

import argparse
import logging
from typing import Sequence

from styleid_guidance.errors import run_cli

from .config import PRECISIONS, SCHEDULES, TRACKERS, TrainConfig, build_config, load_config_file

_DEFAULTS = TrainConfig()


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    p = argparse.ArgumentParser(prog="styleid-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    # every default is None so that only flags actually given override the config file
    add = p.add_argument
    add("--config", help="YAML or JSON file with any of the options below (underscored names)")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="StyleBench-S root (p3/ + {method}/{style}/) or identity folders")
    g.add_argument("--layout", choices=("auto", "stylebench", "folders"), help="dataset layout (default: auto)")
    g.add_argument("--output", help=f"run folder: checkpoints, metrics.jsonl, final/ (default: {d.output})")
    g.add_argument("--num-workers", type=int, help=f"data loader processes (default: {d.num_workers})")
    g.add_argument("--check-images", type=_bool, metavar="BOOL", help="header-check every image at start-up (default: true)")
    g.add_argument("--augment", type=_bool, metavar="BOOL", help="random crop + flip (default: true)")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", help=f"open_clip model name or 'test-tiny' (default: {d.backbone})")
    g.add_argument("--pretrained", help=f"open_clip pretrained tag, or 'none' for random weights (default: {d.pretrained})")
    g.add_argument("--lora-rank", type=int, help=f"default: {d.lora_rank}")
    g.add_argument("--lora-alpha", type=float, help=f"default: {d.lora_alpha}")
    g.add_argument("--lora-targets", help=f"attn, mlp or attn+mlp (default: {d.lora_targets})")
    g.add_argument("--grad-checkpointing", type=_bool, nargs="?", const=True, metavar="BOOL", help="recompute activations in backward to save memory")
    g = p.add_argument_group("objective")
    g.add_argument("--margin", type=float, help=f"angular margin m (default: {d.margin})")
    g.add_argument("--scale", type=float, help=f"angular scale α (default: {d.scale})")
    g.add_argument("--temperature", type=float, help=f"SupCon temperature τ (default: {d.temperature})")
    g.add_argument("--lambda-scon", type=float, help=f"default: {d.lambda_scon}")
    g.add_argument("--lambda-reg", type=float, help=f"default: {d.lambda_reg}")
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, help=f"AdamW learning rate (default: {d.lr})")
    g.add_argument("--weight-decay", type=float, help=f"default: {d.weight_decay}")
    g.add_argument("--lr-schedule", choices=SCHEDULES, help=f"default: {d.lr_schedule}")
    g.add_argument("--warmup-steps", type=int, help=f"default: {d.warmup_steps}")
    g.add_argument("--max-steps", type=int, help=f"optimizer steps; 0 exports the initial encoder (default: {d.max_steps})")
    g.add_argument("--ids-per-batch", type=int, help=f"P identities per batch per process (default: {d.ids_per_batch})")
    g.add_argument("--images-per-id", type=int, help=f"K images per identity (default: {d.images_per_id})")
    g.add_argument("--grad-accum", type=int, help=f"gradient accumulation steps (default: {d.grad_accum})")
    g.add_argument("--max-grad-norm", type=float, help="clip gradients to this norm; 0 = off (default: 0)")
    g.add_argument("--mixed-precision", choices=PRECISIONS, help="no, fp16 or bf16 (default: no)")
    g.add_argument("--seed", type=int, help=f"default: {d.seed}")
    g.add_argument("--supcon-gather", type=_bool, metavar="BOOL", help="L_scon over the batches of all processes (default: true)")
    g = p.add_argument_group("guard (stop a run that diverges or collapses)")
    g.add_argument("--collapse-threshold", type=float, help=f"batch mean pairwise cosine counted as collapsed (default: {d.collapse_threshold})")
    g.add_argument("--collapse-patience", type=int, help=f"collapsed log intervals in a row that stop the run (default: {d.collapse_patience})")
    g = p.add_argument_group("evaluation, checkpoints, logging")
    g.add_argument("--eval-pairs", help="pairs CSV (styleid eval format) evaluated every --eval-every steps")
    g.add_argument("--eval-every", type=int, help=f"default: {d.eval_every}")
    g.add_argument("--eval-crop", choices=("center", "none", "face"), help="default: center")
    g.add_argument("--save-every", type=int, help=f"checkpoint interval in steps (default: {d.save_every})")
    g.add_argument("--keep-last", type=int, help=f"checkpoints kept (default: {d.keep_last})")
    g.add_argument("--log-every", type=int, help=f"steps per metrics.jsonl line (default: {d.log_every})")
    g.add_argument("--report-to", choices=TRACKERS, help="also log to tensorboard or wandb (default: none)")
    g.add_argument("--resume", help="auto (default: newest checkpoint in --output), never, or a checkpoint folder")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    file_values = load_config_file(args.config) if args.config else {}
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "no_progress")}
    cfg = build_config(file_values, overrides)

    from .trainer import train

    train(cfg, progress=not args.no_progress)  # the main process logs where the encoder went
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: user mistakes become one `styleid-train: error: ...` line, exit code 2."""
    return run_cli(_main, argv, prog="styleid-train")
