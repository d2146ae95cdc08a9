"""What `IdentityGuidanceCallback.attach(pipe)` installs on an unmodified diffusers pipeline.

Two things a step-end callback cannot otherwise see: the step's `noise_pred` (a local of every pipeline loop,
needed for exact x0 recovery) and the denoiser's call arguments (the FLUX image grid in `img_ids`, and the
whole input for the x_t mode, which re-runs the denoiser with gradients). Both are per-instance changes;
calls without the callback behave exactly as before.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from styleid_guidance.errors import StyleIDError

_RECORDER = "_styleid_denoiser_record"


def find_denoiser(pipe: Any) -> nn.Module:
    """The pipeline's UNet or transformer."""
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):
            return module
    raise StyleIDError(f"{type(pipe).__name__} has neither a unet nor a transformer: identity guidance needs a diffusers denoising pipeline")


def expose_noise_pred(pipe: Any) -> None:
    """Allow `noise_pred` in `callback_on_step_end_tensor_inputs` (idempotent; the class is untouched)."""
    inputs = list(getattr(pipe, "_callback_tensor_inputs", []))
    if "noise_pred" not in inputs:
        pipe._callback_tensor_inputs = [*inputs, "noise_pred"]


def expose_first_frame_pin(pipe: Any) -> list[str]:
    """Wan 2.2 TI2V (`WanImageToVideoPipeline` with `expand_timesteps`) overwrites the first latent frame with the
    photo's latents (`condition`, where `first_frame_mask` is 0) at every step and at the end: guidance must decode
    what the pipeline will, and never spend a step on that frame. Allows those two loop locals in step-end
    callbacks (idempotent) and returns their names; [] for every other pipeline."""
    if type(pipe).__name__ != "WanImageToVideoPipeline" or not getattr(getattr(pipe, "config", None), "expand_timesteps", False):
        return []
    names = ["condition", "first_frame_mask"]
    inputs = list(getattr(pipe, "_callback_tensor_inputs", []))
    pipe._callback_tensor_inputs = [*inputs, *(n for n in names if n not in inputs)]
    return names


def record_denoiser_inputs(pipe: Any) -> dict[str, Any]:
    """Install (once per denoiser) a forward pre-hook that remembers the denoiser's latest call arguments.

    The record is a dict {"module", "handle", "paused", "args", "kwargs", "calls", "timestep"} ("calls": the
    pipeline's denoiser calls at the latest timestep); set "paused" while re-running the
    denoiser yourself so the hook does not overwrite the pipeline's own call with yours."""
    denoiser = find_denoiser(pipe)
    record = getattr(pipe, _RECORDER, None)
    if record is not None and record.get("module") is denoiser:
        return record
    if record is not None:  # the denoiser was swapped since the last attach
        record["handle"].remove()
    record = {"module": denoiser, "paused": False}

    def _remember(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not record["paused"]:
            record["args"], record["kwargs"] = args, kwargs
            # pipelines with true CFG (FLUX.1 Kontext's true_cfg_scale) call the denoiser twice per step, and
            # the record then holds only the negative call: the x_t mode must know, not re-run the wrong one.
            # Counted per timestep value, so calls of earlier runs without the callback are not counted.
            t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            last = record.get("timestep")
            same = isinstance(t, torch.Tensor) and isinstance(last, torch.Tensor) and t.shape == last.shape and torch.equal(t, last)
            record["calls"] = record.get("calls", 0) + 1 if same else 1
            record["timestep"] = t.detach().clone() if isinstance(t, torch.Tensor) else None

    record["handle"] = denoiser.register_forward_pre_hook(_remember, with_kwargs=True)
    setattr(pipe, _RECORDER, record)
    return record


def recorded_inputs(pipe: Any) -> dict[str, Any] | None:
    """The record `record_denoiser_inputs` keeps on `pipe`, or None before `attach`."""
    return getattr(pipe, _RECORDER, None)


def take_call_count(pipe: Any) -> int:
    """How many times the pipeline called the denoiser at the latest timestep (its own calls, not a paused
    re-run); resets the count, so each step-end callback reads its own step's calls."""
    record = recorded_inputs(pipe)
    if record is None:
        return 0
    calls, record["calls"] = record.get("calls", 0), 0
    return calls


def forget_inputs(pipe: Any) -> None:
    """Drop the last call's recorded inputs (tensors of the whole batch) once sampling is over."""
    record = recorded_inputs(pipe)
    if record is not None:
        record.pop("args", None)
        record.pop("kwargs", None)
        record.pop("timestep", None)
