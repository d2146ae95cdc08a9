"""Checkpoints that lose nothing: written to a temp folder, renamed into place, pruned to the last N.

A checkpoint `OUTPUT/checkpoints/step-00001000/` holds
    trainable.safetensors   LoRA + angular-head weights (the frozen backbone is rebuilt, not stored)
    optimizer.pt            AdamW state          (torch.save; loaded with weights_only=True)
    scheduler.pt            LR scheduler state
    scaler.pt               fp16 GradScaler state, when used
    rng-{rank}.pt           torch / CUDA / numpy / python RNG states of every process
    trainer_state.json      step, sampler position, the config fingerprint checked on resume
The folder only appears under its final name once every file is complete, so a SIGKILL at any
moment leaves either the previous checkpoint or the new one, never half of one.

Not accelerate's `save_state`/`load_state`: they pickle the RNG states (numpy's and python's as objects) and
load them with full unpickling, which our weights-only rule forbids; here every RNG state is tensors and JSON.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.atomic import replace_dir
from styleid_guidance.files.safeload import load_weights_only

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{8})$")


def checkpoints_root(output: Path) -> Path:
    return Path(output) / "checkpoints"


def list_checkpoints(output: Path) -> list[tuple[int, Path]]:
    root = checkpoints_root(output)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        if (m := _NAME.match(d.name)) and (d / STATE_FILE).is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def latest_checkpoint(output: Path) -> Path | None:
    found = list_checkpoints(output)
    return found[-1][1] if found else None


def remove_stale_temp(output: Path) -> None:
    """Drop half-written checkpoint folders left by a killed run."""
    root = checkpoints_root(output)
    if root.is_dir():
        for d in root.glob(".tmp-*"):
            shutil.rmtree(d, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_meta": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, pos, has_gauss, gauss = state["numpy_meta"]
    np.random.set_state((name, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def temp_dir(output: Path, step: int) -> Path:
    return checkpoints_root(output) / f".tmp-step-{step:08d}"


def final_dir(output: Path, step: int) -> Path:
    return checkpoints_root(output) / f"step-{step:08d}"


def write_rank_files(tmp: Path, rank: int) -> None:
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")


def write_main_files(tmp: Path, trainable: dict[str, torch.Tensor], optimizer: Any, scheduler: Any,
                     scaler: Any, state: dict[str, Any]) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), tmp / "scaler.pt")
    # the state file goes last: its presence marks the folder complete
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))


def publish(tmp: Path, output: Path, step: int, keep_last: int) -> Path:
    """Rename the finished temp folder into place and prune older checkpoints."""
    dest = replace_dir(tmp, final_dir(output, step))  # a re-save of the same step (after a resume) replaces it
    for _, d in list_checkpoints(output)[:-keep_last]:
        shutil.rmtree(d, ignore_errors=True)
    return dest


def save(accelerator: Any, output: Path, step: int, trainable: dict[str, torch.Tensor], optimizer: Any, scheduler: Any,
         state: dict[str, Any], keep_last: int) -> Path:
    """Write a checkpoint from every process (each its RNG state, the main one the rest) into a temp folder, then
    rename it into place and prune: a kill at any point leaves the previous checkpoints whole."""
    tmp = temp_dir(output, step)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    write_rank_files(tmp, accelerator.process_index)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_main_files(tmp, trainable, optimizer, scheduler, accelerator.scaler, state)
        publish(tmp, output, step, keep_last)
    accelerator.wait_for_everyone()
    return final_dir(output, step)


def read_state(ckpt: Path) -> dict[str, Any]:
    try:
        return json.loads((ckpt / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise StyleIDError(f"{ckpt}: not a complete training checkpoint (missing or broken {STATE_FILE})") from None


def load_tensors(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "trainable.safetensors"))


def load_torch(path: Path) -> Any:
    return load_weights_only(path, "training state")


class DamagedCheckpoint(StyleIDError):
    """A checkpoint folder whose files cannot be read (a disk error, a hand edit): resume falls back."""


def read_checkpoint(ckpt: Path, rank: int) -> dict[str, Any]:
    """Every file a resume needs, read before anything is applied, so a damaged checkpoint is found
    whole instead of half-restoring the run: {state, tensors, optimizer, scheduler, scaler, rng}."""
    try:
        bundle: dict[str, Any] = {"state": json.loads((ckpt / STATE_FILE).read_text()),
                                  "tensors": load_tensors(ckpt),
                                  "optimizer": load_torch(ckpt / "optimizer.pt"),
                                  "scheduler": load_torch(ckpt / "scheduler.pt")}
        scaler, rng = ckpt / "scaler.pt", ckpt / f"rng-{rank}.pt"
        bundle["scaler"] = load_torch(scaler) if scaler.exists() else None
        bundle["rng"] = load_torch(rng) if rng.exists() else None
        for key in ("step", "sampler", "fingerprint", "config"):
            bundle["state"][key]  # noqa: B018  (a KeyError is a damaged state file)
    except Exception as err:  # safetensors, pickle, JSON, zip and OS errors all mean "unreadable"
        raise DamagedCheckpoint(f"{ckpt}: damaged ({type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''})") from None
    return bundle
