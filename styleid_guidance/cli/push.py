"""`styleid push RUN_OR_MODEL_DIR --repo-id USER/NAME`: publish an encoder on the Hugging Face Hub.

One `create_repo` and one `upload_folder` commit (safetensors weights, config, and a model card rendered with
huggingface_hub's ModelCard: library, base model, licence, tags, usage, and with --eval DIR the `model-index`
results of `styleid eval`: AUROC, TPR@FPR, accuracy at the fixed thresholds, Spearman with people, per split).

    styleid push runs/exp1 --repo-id me/styleid-exp1 --eval eval/exp1 --private
    styleid push runs/exp1 --repo-id me/styleid-exp1 --format transformers --dry-run upload/   # writes, uploads nothing

An existing card on the Hub is kept unless --overwrite-card. Needs a token (`hf auth login` or HF_TOKEN).
"""
from __future__ import annotations

import argparse
from typing import Any

from . import runtime


def register(sub: Any) -> None:
    p = sub.add_parser("push", help="publish an encoder on the Hugging Face Hub (safetensors, model card with eval results)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="RUN_OR_MODEL_DIR", help="a StyleID model folder, or a training run's output (uses its final/)")
    p.add_argument("--repo-id", required=True, metavar="USER/NAME", help="the Hub repository to create or update")
    p.add_argument("--eval", dest="eval_dir", default=None, metavar="DIR",
                   help="a styleid eval output folder of this model: its metrics go into the card's model-index")
    p.add_argument("--format", dest="push_format", choices=("styleid", "transformers"), default="styleid",
                   help="styleid: this project's folder (config + backbone + LoRA adapter); transformers: "
                        "CLIPVisionModelWithProjection with the LoRA merged, the authors' format (default: %(default)s)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to the branch")
    p.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    p.add_argument("--overwrite-card", action="store_true", help="replace the repository's existing README.md model card")
    p.add_argument("--license", default="apache-2.0", help="licence in the card's metadata (default: %(default)s)")
    p.add_argument("--dry-run", default=None, metavar="DIR", help="write exactly what would be uploaded into DIR; upload nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub.push import push

    # library messages name the folder or repo id themselves (and carry the flag where it is the fix)
    result = push(args.model_dir, args.repo_id, eval_dir=args.eval_dir, fmt=args.push_format, private=args.private,
                  create_pr=args.create_pr, revision=args.revision, dry_run=args.dry_run,
                  overwrite_card=args.overwrite_card, license=args.license)
    log = runtime.command_logger("push")
    if args.dry_run is not None:
        log.info(f"dry run: wrote the {len(result.files)} files that would be uploaded to {result.folder}; nothing was uploaded")
        print(result.folder)
    else:
        print(result.url)  # the commit or pull request: the command's output
    return 0
