"""`styleid comfyui install COMFYUI_DIR`: link the node pack into ComfyUI's custom_nodes/.

The link points at this package's folder (an `__init__.py` ComfyUI's loader accepts, and the pack's
pyproject.toml), so upgrading the pip package upgrades the nodes. ComfyUI must run with a Python that has
styleid-guidance installed (usually the same virtual environment).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from styleid_guidance.errors import StyleIDError

PACK_DIR = Path(__file__).resolve().parent
DEFAULT_NAME = "styleid"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def install(comfyui_dir: str | os.PathLike, name: str = DEFAULT_NAME, copy: bool = False) -> Path:
    """Link (or copy) the pack to COMFYUI_DIR/custom_nodes/NAME; idempotent for an existing link to it."""
    root = Path(comfyui_dir).expanduser().resolve()
    if not (root / "main.py").is_file() or not (root / "comfy").is_dir():
        raise StyleIDError(f"{root}: not a ComfyUI folder (no main.py and comfy/); give the folder you run ComfyUI from")
    nodes = root / "custom_nodes"
    nodes.mkdir(exist_ok=True)
    target = nodes / name
    if target.is_symlink() and target.resolve() == PACK_DIR:
        return target
    if target.exists() or target.is_symlink():
        raise StyleIDError(f"{target} already exists; remove it or choose another name")
    if copy:
        shutil.copytree(PACK_DIR, target, ignore=_IGNORE)
    else:
        target.symlink_to(PACK_DIR, target_is_directory=True)
    return target


def register(sub: Any) -> None:
    p = sub.add_parser("comfyui", help="the ComfyUI node pack: install it into a ComfyUI folder", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="comfyui_command", required=True, metavar="COMMAND")
    i = commands.add_parser("install", help="link the node pack into COMFYUI_DIR/custom_nodes/", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("comfyui_dir", metavar="COMFYUI_DIR", help="the ComfyUI folder (holds main.py and custom_nodes/)")
    i.add_argument("--name", default=DEFAULT_NAME, help="folder name under custom_nodes/ (default: %(default)s)")
    i.add_argument("--copy", action="store_true", help="copy the files instead of linking (re-run after upgrading)")
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = install(args.comfyui_dir, name=args.name, copy=args.copy)
    print(f"StyleID nodes installed at {target}")
    print(f"start ComfyUI with a Python that has styleid-guidance installed, e.g. {sys.executable} main.py")
    return 0
