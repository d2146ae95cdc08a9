"""Scheduler algebra for identity guidance: exact x0 recovery and the x0 → latents step map, per scheduler.

All formulas assume the deterministic samplers the pipelines use (DDIM eta = 0, Euler without churn,
DPM-Solver++, FlowMatchEuler without stochastic sampling) and read the scheduler *after* its step, when
`step_index` has already advanced. Other schedulers (PNDM mixes several ε, ancestral samplers add noise)
have no exact x0 for the callback to edit, so `check_scheduler` refuses them instead of guessing.
"""
from __future__ import annotations

from typing import Any

import torch
from diffusers.schedulers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)

from styleid_guidance.errors import StyleIDError

SUPPORTED_SCHEDULERS = ("DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler")
_SUPPORTED = (DDIMScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler)


def check_scheduler(scheduler: Any) -> None:
    """Raise a StyleIDError unless x0 can be recovered exactly from this scheduler's steps."""
    name = type(scheduler).__name__
    cfg = getattr(scheduler, "config", None)
    if not isinstance(scheduler, _SUPPORTED):
        if getattr(cfg, "prediction_type", None) == "flow_prediction":  # Wan's UniPC: its corrector redoes each step
            swap = f"pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift={getattr(cfg, 'flow_shift', 1.0)})"
        else:
            swap = "pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)"
        raise StyleIDError(f"identity guidance does not support {name}: use one of {', '.join(SUPPORTED_SCHEDULERS)} (e.g. {swap})")
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        if getattr(cfg, "stochastic_sampling", False):
            raise StyleIDError("identity guidance needs FlowMatchEulerDiscreteScheduler with stochastic_sampling=False")
        return
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        if cfg.algorithm_type not in ("dpmsolver++", "sde-dpmsolver++"):
            raise StyleIDError(f"identity guidance needs DPMSolverMultistepScheduler with algorithm_type='dpmsolver++', got {cfg.algorithm_type!r}")
        return
    if cfg.prediction_type != "epsilon":
        raise StyleIDError(f"identity guidance supports {name} with prediction_type='epsilon' only, got {cfg.prediction_type!r}")
    if isinstance(scheduler, DDIMScheduler) and (cfg.clip_sample or cfg.thresholding):
        raise StyleIDError("identity guidance needs DDIMScheduler with clip_sample=False and thresholding=False")


def _as_float(v: torch.Tensor | float) -> float:
    return float(v.item() if isinstance(v, torch.Tensor) else v)


def _ddim_prev_alpha(scheduler: DDIMScheduler, timestep: torch.Tensor | int) -> torch.Tensor:
    prev_t = int(timestep) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    return scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod


def recover_x0(scheduler: Any, latents: torch.Tensor, model_output: torch.Tensor | None, timestep: torch.Tensor | int) -> tuple[torch.Tensor, float]:
    """Exact x0 estimate of the step that just produced `latents` (the scheduler's output), in fp32, and
    the factor c with which an x0-space change Δ moves those latents (noise estimate kept fixed):
    latents' = latents + c·Δ. DPM-Solver++ reads its own x0 from `model_outputs[-1]`."""
    check_scheduler(scheduler)
    x = latents.float()
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        sigma_next = scheduler.sigmas[scheduler.step_index]
        alpha_next, _ = scheduler._sigma_to_alpha_sigma_t(sigma_next)
        return scheduler.model_outputs[-1].float(), _as_float(alpha_next)
    if model_output is None:
        raise StyleIDError("identity guidance needs the step's noise_pred: call cb.attach(pipe) and pass callback_on_step_end_tensor_inputs=cb.tensor_inputs")
    eps = model_output.float()
    if isinstance(scheduler, DDIMScheduler):
        a_prev = _as_float(_ddim_prev_alpha(scheduler, timestep))
        return (x - (1 - a_prev) ** 0.5 * eps) / a_prev**0.5, a_prev**0.5
    sigma_next = _as_float(scheduler.sigmas[scheduler.step_index])
    x0 = x - sigma_next * eps  # Euler (ε) and FlowMatch (v = noise − x0) alike: latents = x0 + σ_next·ε
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        return x0, 1.0 - sigma_next
    return x0, 1.0


def x0_from_xt(scheduler: Any, sample: torch.Tensor, model_output: torch.Tensor, timestep: torch.Tensor | int) -> torch.Tensor:
    """Differentiable x0(x_t) at the step just taken (the scheduler's own `pred_original_sample`), for the
    x_t mode. `sample` is the step's unscaled input latents."""
    check_scheduler(scheduler)
    x, out = sample.float(), model_output.float()
    if isinstance(scheduler, DDIMScheduler):
        a = _as_float(scheduler.alphas_cumprod[int(timestep)])
        return (x - (1 - a) ** 0.5 * out) / a**0.5
    sigma = scheduler.sigmas[scheduler.step_index - 1]
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        alpha_t, sigma_t = scheduler._sigma_to_alpha_sigma_t(sigma)
        alpha_t, sigma_t = _as_float(alpha_t), _as_float(sigma_t)
        kind = scheduler.config.prediction_type
        if kind == "epsilon":
            return (x - sigma_t * out) / alpha_t
        if kind == "flow_prediction":
            return x - _as_float(sigma) * out
        if kind == "sample":
            return out
        return alpha_t * x - sigma_t * out  # v_prediction
    return x - _as_float(sigma) * out


def x0_weight_in_xt(scheduler: Any, timestep: torch.Tensor | int) -> float:
    """How the step's input x_t moves with x0 at the current step (noise fixed): √ā_t for DDIM, α_t for
    DPM-Solver++, 1 − σ_t for flow matching, 1 for Euler (x_t = x0 + σ·ε)."""
    if isinstance(scheduler, DDIMScheduler):
        return _as_float(scheduler.alphas_cumprod[int(timestep)]) ** 0.5
    sigma = scheduler.sigmas[scheduler.step_index - 1]
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        return _as_float(scheduler._sigma_to_alpha_sigma_t(sigma)[0])
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        return 1.0 - _as_float(sigma)
    return 1.0


def model_input_scale(scheduler: Any) -> float:
    """The factor `scale_model_input` applied to x_t before the denoiser (Euler only), so the x_t mode can
    undo it on the recorded denoiser input and re-apply it to the edited one."""
    if isinstance(scheduler, EulerDiscreteScheduler):
        sigma = _as_float(scheduler.sigmas[scheduler.step_index - 1])
        return 1.0 / (sigma**2 + 1) ** 0.5
    return 1.0


def record_guided_x0(scheduler: Any, delta: torch.Tensor) -> None:
    """Write an x0 change into a multistep scheduler's history. DPM-Solver++'s next 2nd-order update reads
    the previous x0 prediction; left unguided there, it would undo most of the guidance."""
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        last = scheduler.model_outputs[-1]
        scheduler.model_outputs[-1] = (last.float() + delta).to(last.dtype)
