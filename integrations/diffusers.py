"""Identity guidance for unmodified diffusers pipelines, as a `callback_on_step_end`.

Default mode ("x0", MPGD-style): after each scheduler step, recover the clean-latent estimate x0 exactly from
the new latents and the model output, decode it (the pipeline's VAE, or a cheaper `AutoencoderTiny`), take the
gradient of the identity loss w.r.t. x0 and move the latents as if the scheduler had predicted x0 + Δ. No
back-propagation through the denoiser: one decoder forward/backward and one identity-encoder pass per step.

Opt-in mode ("xt", FreeDoM-style): re-run the denoiser with gradients on the step's input x_t and follow
∇_{x_t} L(x0(x_t)). One extra denoiser forward/backward per step — the slow baseline, kept for comparison.

    cb = IdentityGuidanceCallback(StyleIDLoss(encoder, reference=face))
    cb.attach(pipe)
    pipe(..., callback_on_step_end=cb, callback_on_step_end_tensor_inputs=cb.tensor_inputs)

Pipelines of this project take `identity_guidance=cb` and call `prepare_guidance_kwargs`.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import PIL.Image
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)

from styleid_guidance.errors import StyleIDError
from styleid_guidance.faces import FaceRegion

SUPPORTED_SCHEDULERS = ("DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler")
MODES = ("x0", "xt")
_RECORDER = "_styleid_denoiser_record"


# ---------------------------------------------------------------------------------------------------------
# Scheduler algebra. All formulas assume the deterministic sampler the pipelines use (DDIM eta = 0, Euler
# without churn) and read the scheduler *after* its step (step_index has already advanced).


def check_scheduler(scheduler: Any) -> None:
    """Raise a StyleIDError unless x0 can be recovered exactly from this scheduler's steps."""
    name = type(scheduler).__name__
    if not isinstance(scheduler, (DDIMScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler)):
        raise StyleIDError(
            f"identity guidance does not support {name}: use one of {', '.join(SUPPORTED_SCHEDULERS)} "
            f"(e.g. pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config))"
        )
    cfg = scheduler.config
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


def _ddim_prev_alpha(scheduler: DDIMScheduler, timestep: torch.Tensor | int) -> torch.Tensor:
    prev_t = int(timestep) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    return scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod


def _as_float(v: torch.Tensor | float) -> float:
    return float(v.item() if isinstance(v, torch.Tensor) else v)


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


def _model_input_scale(scheduler: Any) -> float:
    """The factor scale_model_input applied to x_t before the denoiser (Euler only)."""
    if isinstance(scheduler, EulerDiscreteScheduler):
        sigma = _as_float(scheduler.sigmas[scheduler.step_index - 1])
        return 1.0 / (sigma**2 + 1) ** 0.5
    return 1.0


# ---------------------------------------------------------------------------------------------------------
# Latents → pixels


def unpack_flux_latents(latents: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """FLUX's packed (B, h·w, 4C) tokens → (B, C, 2h, 2w) latents; grid_hw = (h, w) token grid."""
    b, n, c4 = latents.shape
    h, w = grid_hw
    if h * w != n:
        raise StyleIDError(f"packed latents have {n} tokens, not a {h}x{w} grid")
    x = latents.view(b, h, w, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, 2 * h, 2 * w)


def _flux_grid(pipe: Any, latents: torch.Tensor) -> tuple[int, int]:
    ids = getattr(pipe, _RECORDER, {}).get("kwargs", {}).get("img_ids")
    if ids is not None:
        ids = ids.reshape(-1, ids.shape[-1])
        return int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1
    side = int(round(latents.shape[1] ** 0.5))
    if side * side != latents.shape[1]:
        raise StyleIDError("cannot tell the image shape of these packed latents: call cb.attach(pipe) before sampling")
    return side, side


def _denoiser(pipe: Any) -> nn.Module:
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):
            return module
    raise StyleIDError(f"{type(pipe).__name__} has neither a unet nor a transformer: identity guidance needs a diffusers denoising pipeline")


def _random_views(images: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n random small crops (85–100 %), shifts and horizontal flips per image, differentiable: guidance then
    has to improve the identity under all of them instead of attacking one exact pixel grid."""
    b = images.shape[0]
    scale = torch.empty(n * b).uniform_(0.85, 1.0, generator=generator)
    shift = (torch.rand(n * b, 2, generator=generator) * 2 - 1) * (1 - scale)[:, None]
    flip = torch.where(torch.rand(n * b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n * b, 2, 3)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    x = images.repeat(n, 1, 1, 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# ---------------------------------------------------------------------------------------------------------


class IdentityGuidanceCallback(PipelineCallback):
    """Steer diffusers sampling towards the identity of a reference face.

    Args:
        identity_loss: an identity loss from `styleid_guidance.identity` holding its reference face(s)
            (one reference broadcasts over the batch; B references pair up).
        scale: size of each guidance step in latent units (per-sample RMS of the x0 change when
            `normalize_grad`). 0 disables guidance and leaves the output bit-identical.
        mode: "x0" (default, no denoiser back-propagation) or "xt" (through the denoiser, slower).
        guidance_decoder: e.g. an `AutoencoderTiny` (TAESD/TAESDXL/TAEF1) to decode x0 for the loss, about
            10x cheaper than the KL VAE; the pipeline's VAE still decodes the final image.
        normalize_grad: scale each sample's gradient to unit RMS, so `scale` means the same for any loss,
            resolution or noise level.
        start, end: guided fraction of the steps, [start, end).
        every: guide every k-th step of the window.
        repeats: gradient steps per guided step (re-decoding the updated x0 each time).
        augment: number of random crop/flip views per image averaged in the loss (0 = the image as is).
        face_region: where the face is in the generated image: a `FaceRegion`, a box (x1, y1, x2, y2) in
            pixels of the generated image, or an image (e.g. the reference photo, same framing) whose
            detected landmarks are used. Leave None when the loss already crops (crop="face").
        detector: face detector for `face_region` given as an image ("retinaface" or "mtcnn").
        seed: seeds the augmentations, so guided runs are reproducible.
        autocast: on CUDA, run the guidance decode and identity encoder under bf16 autocast (fp32 range, so no
            fp16 overflow; the loss itself is reduced in fp32). The denoiser and the final decode are untouched.
    """

    def __init__(
        self,
        identity_loss: nn.Module,
        scale: float = 0.05,
        *,
        mode: str = "x0",
        guidance_decoder: nn.Module | None = None,
        normalize_grad: bool = True,
        start: float = 0.0,
        end: float = 0.9,
        every: int = 1,
        repeats: int = 1,
        augment: int = 0,
        face_region: FaceRegion | Sequence[float] | Any = None,
        detector: str = "retinaface",
        seed: int = 0,
        autocast: bool = True,
    ):
        if not callable(identity_loss):
            raise StyleIDError("identity_loss must be an identity loss module (e.g. StyleIDLoss(encoder, reference=face))")
        if getattr(identity_loss, "has_reference", True) is False:
            raise StyleIDError(f"{getattr(identity_loss, 'name', 'identity')} loss has no reference face: pass reference= or call set_reference(face)")
        if mode not in MODES:
            raise StyleIDError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not (float(scale) >= 0):
            raise StyleIDError(f"scale must be >= 0, got {scale!r}")
        if not (0.0 <= start < end <= 1.0):
            raise StyleIDError(f"need 0 <= start < end <= 1 (fractions of the steps), got start={start}, end={end}")
        if int(every) < 1 or int(repeats) < 1 or int(augment) < 0:
            raise StyleIDError(f"every and repeats must be >= 1 and augment >= 0, got every={every}, repeats={repeats}, augment={augment}")
        if face_region is not None and getattr(identity_loss, "crop", None) == "face":
            raise StyleIDError("the identity loss already crops faces (crop='face'): give face_region to one of them, not both")
        # plain values in the config (for repr / to_json_string); tensors and modules stay attributes
        self.register_to_config(scale=float(scale), mode=mode, normalize_grad=bool(normalize_grad), start=float(start),
                                end=float(end), every=int(every), repeats=int(repeats), augment=int(augment), seed=int(seed),
                                autocast=bool(autocast))
        self.identity_loss = identity_loss
        self.scale = float(scale)
        self.mode = mode
        self.guidance_decoder = guidance_decoder
        self.normalize_grad = bool(normalize_grad)
        self.start, self.end = float(start), float(end)
        self.every, self.repeats, self.augment = int(every), int(repeats), int(augment)
        self.seed = int(seed)
        self.autocast = bool(autocast)
        self.face_region = self._resolve_region(face_region, detector)
        self._fp32_decoders: dict[int, nn.Module] = {}
        self.last_losses: list[float] = []  # mean identity loss at each guided step of the last run

    @staticmethod
    def _resolve_region(region: Any, detector: str) -> FaceRegion | tuple[float, ...] | None:
        if region is None or isinstance(region, FaceRegion):
            return region
        if isinstance(region, (list, tuple)) and len(region) == 4 and all(isinstance(v, (int, float)) for v in region):
            if not (region[2] > region[0] and region[3] > region[1]):
                raise StyleIDError(f"face_region box must be x1,y1,x2,y2 with x2>x1 and y2>y1, got {tuple(region)}")
            return tuple(float(v) for v in region)
        if isinstance(region, (str, os.PathLike, PIL.Image.Image, np.ndarray)):
            return FaceRegion.detect(region, detector=detector, name=str(region) if isinstance(region, (str, os.PathLike)) else "face_region image")
        raise StyleIDError("face_region must be a FaceRegion, a box (x1, y1, x2, y2) or an image to detect the face in")

    @property
    def tensor_inputs(self) -> list[str]:
        return ["latents", "noise_pred"]

    # -- set-up ------------------------------------------------------------------------------------------

    def attach(self, pipe: Any) -> "IdentityGuidanceCallback":
        """Prepare `pipe` once (idempotent): expose `noise_pred` to step-end callbacks and record the
        denoiser's call arguments (FLUX image grid, x_t mode). Calls without the callback are unaffected."""
        denoiser = _denoiser(pipe)
        check_scheduler(pipe.scheduler)
        inputs = list(getattr(pipe, "_callback_tensor_inputs", []))
        if "noise_pred" not in inputs:
            pipe._callback_tensor_inputs = [*inputs, "noise_pred"]  # instance attribute: the class is untouched
        record = getattr(pipe, _RECORDER, None)
        if record is None or record.get("module") is not denoiser:
            if record is not None:
                record["handle"].remove()
            record = {"module": denoiser, "paused": False}

            def _remember(module: nn.Module, args: tuple, kwargs: dict) -> None:
                if not record["paused"]:
                    record["args"], record["kwargs"] = args, kwargs

            record["handle"] = denoiser.register_forward_pre_hook(_remember, with_kwargs=True)
            setattr(pipe, _RECORDER, record)
        return self

    # -- the step ----------------------------------------------------------------------------------------

    def _is_guided(self, step_index: int, num_steps: int) -> bool:
        first = int(round(self.start * num_steps))
        last = int(round(self.end * num_steps))
        return first <= step_index < last and (step_index - first) % self.every == 0

    def callback_fn(self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.scale == 0:
            return callback_kwargs
        scheduler = pipeline.scheduler
        num_steps = getattr(pipeline, "_num_timesteps", None) or len(scheduler.timesteps)
        if step_index == 0:
            self.last_losses = []
        if not self._is_guided(step_index, num_steps):
            return callback_kwargs
        if "latents" not in callback_kwargs:
            raise StyleIDError("identity guidance needs the latents: pass callback_on_step_end_tensor_inputs=cb.tensor_inputs")
        check_scheduler(scheduler)
        latents = callback_kwargs["latents"]
        with torch.enable_grad():
            if self.mode == "x0":
                delta, factor = self._x0_step(pipeline, step_index, timestep, latents, callback_kwargs.get("noise_pred"))
            else:
                delta, factor = self._xt_step(pipeline, step_index, timestep, latents)
        guided = (latents.float() + factor * delta).to(latents.dtype)
        if not torch.isfinite(guided).all():  # never let guidance corrupt the image
            warnings.warn(f"identity guidance: non-finite latents at step {step_index}; step skipped", RuntimeWarning, stacklevel=2)
            return callback_kwargs
        if isinstance(scheduler, DPMSolverMultistepScheduler):
            # the multistep history must hold the guided x0, or the next 2nd-order update undoes the change
            scheduler.model_outputs[-1] = (scheduler.model_outputs[-1].float() + delta).to(scheduler.model_outputs[-1].dtype)
        callback_kwargs["latents"] = guided
        if step_index >= num_steps - 1:
            getattr(pipeline, _RECORDER, {}).pop("kwargs", None)  # release references to the last call's inputs
        return callback_kwargs

    def _x0_step(self, pipe, step_index, timestep, latents, noise_pred) -> tuple[torch.Tensor, float]:
        x0, factor = recover_x0(pipe.scheduler, latents, noise_pred, timestep)
        x0 = x0.detach()
        delta = torch.zeros_like(x0)
        for r in range(self.repeats):
            z = (x0 + delta).requires_grad_(True)
            loss = self._loss(pipe, z, step_index, r)
            delta = delta + self._descent(loss, z, step_index)
        return delta, factor

    def _xt_step(self, pipe, step_index, timestep, latents) -> tuple[torch.Tensor, float]:
        record = getattr(pipe, _RECORDER, None)
        if record is None or "kwargs" not in record:
            raise StyleIDError("x_t guidance needs the denoiser's inputs: call cb.attach(pipe) before sampling")
        scheduler = pipe.scheduler
        _, factor = recover_x0(scheduler, latents, torch.zeros_like(latents), timestep)
        args, kwargs = list(record["args"]), dict(record["kwargs"])
        key = 0 if args else ("sample" if "sample" in kwargs else "hidden_states")
        model_in = args[0] if args else kwargs[key]
        batch = latents.shape[0]
        copies = model_in.shape[0] // batch
        if copies not in (1, 2) or copies * batch != model_in.shape[0]:
            raise StyleIDError(f"x_t guidance: denoiser input batch {model_in.shape[0]} does not match latents batch {batch}")
        in_scale = _model_input_scale(scheduler)
        x_t = (model_in[:batch].float() / in_scale).detach()
        delta = torch.zeros_like(x_t)
        denoiser = record["module"]
        for r in range(self.repeats):
            z = (x_t + self._alpha_t(scheduler, timestep) * delta).requires_grad_(True)
            inp = (z * in_scale).to(model_in.dtype).repeat(copies, *([1] * (z.ndim - 1)))
            if args:
                args[0] = inp
            else:
                kwargs[key] = inp
            record["paused"] = True
            try:
                out = denoiser(*args, **kwargs)
            finally:
                record["paused"] = False
            out = out[0] if isinstance(out, (tuple, list)) else out.sample
            if copies == 2:  # classifier-free guidance, combined as the pipeline does
                uncond, cond = out.float().chunk(2)
                out = uncond + float(pipe.guidance_scale) * (cond - uncond)
            x0 = x0_from_xt(scheduler, z, out, timestep)
            loss = self._loss(pipe, x0, step_index, r)
            delta = delta + self._descent(loss, z, step_index)
        return delta, factor

    @staticmethod
    def _alpha_t(scheduler: Any, timestep: Any) -> float:
        """How x_t moves with x0 at the current step (noise fixed)."""
        if isinstance(scheduler, DDIMScheduler):
            return _as_float(scheduler.alphas_cumprod[int(timestep)]) ** 0.5
        sigma = scheduler.sigmas[scheduler.step_index - 1]
        if isinstance(scheduler, DPMSolverMultistepScheduler):
            return _as_float(scheduler._sigma_to_alpha_sigma_t(sigma)[0])
        if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
            return 1.0 - _as_float(sigma)
        return 1.0

    def _descent(self, loss: torch.Tensor, z: torch.Tensor, step_index: int) -> torch.Tensor:
        """−scale · (normalised) ∇_z loss, per sample; non-finite samples get no update and a warning."""
        (grad,) = torch.autograd.grad(loss.sum(), z)
        grad = grad.detach().float()
        dims = tuple(range(1, grad.ndim))
        finite = torch.isfinite(grad).all(dim=dims) & torch.isfinite(loss.detach())
        if not bool(finite.all()):
            warnings.warn(f"identity guidance: non-finite identity loss/gradient at step {step_index} for "
                          f"{int((~finite).sum())} of {len(finite)} samples; their update is skipped", RuntimeWarning, stacklevel=3)
        grad = torch.where(finite.view(-1, *([1] * len(dims))), grad, torch.zeros_like(grad)).nan_to_num(0.0, 0.0, 0.0)
        if self.normalize_grad:
            grad = grad / grad.pow(2).mean(dim=dims, keepdim=True).sqrt().clamp_min(1e-12)
        return -self.scale * grad

    def _loss(self, pipe: Any, x0: torch.Tensor, step_index: int, repeat: int) -> torch.Tensor:
        if self.autocast and x0.is_cuda and torch.cuda.is_bf16_supported():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self._loss_fp(pipe, x0, step_index, repeat)
        return self._loss_fp(pipe, x0, step_index, repeat)

    def _loss_fp(self, pipe: Any, x0: torch.Tensor, step_index: int, repeat: int) -> torch.Tensor:
        images = self.decode(pipe, x0)
        if self.face_region is not None:
            region = self.face_region
            if isinstance(region, tuple):
                region = FaceRegion.from_box(region, (images.shape[-1], images.shape[-2]))
            size = int(getattr(self.identity_loss, "input_size", 224))
            images = region.crop(images, size, "styleid")
        if self.augment:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step_index * 101 + repeat)
            views = _random_views(images, self.augment, gen).to(self._loss_device()).chunk(self.augment)
            # one loss call per view: B references keep pairing with the B samples
            loss = torch.stack([self.identity_loss(v) for v in views]).mean(0)
        else:
            loss = self.identity_loss(images.to(self._loss_device()))
        loss = loss.float()
        if repeat == 0:
            self.last_losses.append(float(loss.detach().nan_to_num(float("nan")).mean()))
        return loss.to(x0.device)

    def _loss_device(self) -> torch.device:
        try:
            return self.identity_loss.device
        except (AttributeError, StopIteration):
            return torch.device("cpu")

    def decode(self, pipe: Any, x0: torch.Tensor) -> torch.Tensor:
        """Pipeline-space latents (fp32) → images in [0, 1], fp32, differentiable."""
        if x0.ndim == 3:
            x0 = unpack_flux_latents(x0, _flux_grid(pipe, x0))
        decoder = self.guidance_decoder if self.guidance_decoder is not None else pipe.vae
        cfg = decoder.config
        z = x0 / float(getattr(cfg, "scaling_factor", 1.0) or 1.0) + float(getattr(cfg, "shift_factor", None) or 0.0)
        dtype = next(decoder.parameters()).dtype
        if dtype == torch.float16 and getattr(cfg, "force_upcast", False):
            # e.g. the SDXL VAE overflows in fp16: decode the guidance image with an fp32 copy
            key = id(decoder)
            if key not in self._fp32_decoders:
                import copy

                self._fp32_decoders[key] = copy.deepcopy(decoder).float().requires_grad_(False)
            decoder, dtype = self._fp32_decoders[key], torch.float32
        image = decoder.decode(z.to(dtype), return_dict=False)[0].float()
        return (image / 2 + 0.5).clamp(0, 1)


class _FunctionCallback(PipelineCallback):
    """Gives a plain `fn(pipe, step, t, kwargs)` callback the `tensor_inputs` MultiPipelineCallbacks needs."""

    def __init__(self, fn: Callable, tensor_inputs: Sequence[str]):
        self.fn = fn
        self._tensor_inputs = list(tensor_inputs)

    @property
    def tensor_inputs(self) -> list[str]:
        return self._tensor_inputs

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        return self.fn(pipeline, step_index, timestep, callback_kwargs)


def prepare_guidance_kwargs(
    pipe: Any,
    identity_guidance: IdentityGuidanceCallback | None,
    callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
    callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The pipeline call kwargs that install `identity_guidance` next to the user's own step-end callback.

    Guidance runs first, so the user's callback sees the guided latents. Without guidance the user's
    arguments pass through unchanged (and nothing is returned for those left None)."""
    kwargs: dict[str, Any] = {}
    if identity_guidance is None:
        if callback_on_step_end is not None:
            kwargs["callback_on_step_end"] = callback_on_step_end
        if callback_on_step_end_tensor_inputs is not None:
            kwargs["callback_on_step_end_tensor_inputs"] = list(callback_on_step_end_tensor_inputs)
        return kwargs
    if not isinstance(identity_guidance, IdentityGuidanceCallback):
        raise StyleIDError(f"identity_guidance must be an IdentityGuidanceCallback or None, got {type(identity_guidance).__name__}")
    identity_guidance.attach(pipe)
    if callback_on_step_end is None:
        return {"callback_on_step_end": identity_guidance, "callback_on_step_end_tensor_inputs": list(identity_guidance.tensor_inputs)}
    user = callback_on_step_end
    if not isinstance(user, (PipelineCallback, MultiPipelineCallbacks)):
        user = _FunctionCallback(user, callback_on_step_end_tensor_inputs or ["latents"])
    elif callback_on_step_end_tensor_inputs is not None:
        user = _FunctionCallback(user, callback_on_step_end_tensor_inputs)
    combined = MultiPipelineCallbacks([identity_guidance, user])
    names = list(dict.fromkeys(combined.tensor_inputs))
    return {"callback_on_step_end": combined, "callback_on_step_end_tensor_inputs": names}
