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

Pipelines of this project take `identity_guidance=cb` and call `prepare_guidance_kwargs` (composition.py).
The scheduler formulas live in x0_estimate.py, the decode in latents.py, the pipeline hooks in hooks.py, the
split of FLUX.1 Kontext's reference-image tokens from the generated ones in reference_tokens.py.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.callbacks import PipelineCallback

from styleid_guidance.devices import check_precision, resolve_precision
from styleid_guidance.errors import StyleIDError

from .defaults import default_scale
from .descent import identity_descent
from .hooks import expose_first_frame_pin, expose_noise_pred, find_denoiser, forget_inputs, record_denoiser_inputs, recorded_inputs, take_call_count
from .latents import decode_latents, flux_token_grid, unpack_flux_latents
from .reference_tokens import check_single_denoiser_call, split_reference_tokens
from .video import decode_video_frames, frames_for_step, normalize_frames
from .x0_estimate import check_scheduler, model_input_scale, record_guided_x0, recover_x0, x0_from_xt, x0_weight_in_xt

MODES = ("x0", "xt")


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


class IdentityGuidanceCallback(PipelineCallback):
    """Steer diffusers sampling towards the identity of a reference face.

    Args:
        identity_loss: an identity loss from `styleid_guidance.identity_losses` holding its reference face(s)
            (one reference broadcasts over the batch; B references pair up). Where the face is in the
            generated image is the loss's business: build it with `crop="face"` (the reference photo's
            landmarks are reused) and, for another framing, `face_region=FaceRegion...`.
        scale: size of each guidance step in latent units (per-sample RMS of the x0 change when
            `normalize_grad`; for video, its RMS over the frames guided at that step). 0 disables guidance and
            leaves the output bit-identical. None (default): the pipeline family's `DEFAULT_SCALES` entry
            (integrations/defaults.py: 0.05 for still images, larger for video samplers that move less per step).
        mode: "x0" (default, no denoiser back-propagation) or "xt" (through the denoiser, slower).
        guidance_decoder: e.g. an `AutoencoderTiny` (TAESD/TAESDXL/TAEF1) to decode x0 for the loss, about
            10x cheaper than the KL VAE; the pipeline's VAE still decodes the final image.
        normalize_grad: scale each sample's gradient to unit RMS, so `scale` means the same for any loss,
            resolution or noise level.
        start, end: guided fraction of the steps, [start, end).
        every: guide every k-th step of the window.
        repeats: gradient steps per guided step (re-decoding the updated x0 each time).
        augment: number of random crop/flip views per image averaged in the loss (0 = the image as is).
        seed: seeds the augmentations, so guided runs are reproducible.
        frames_per_step: video latents [B, C, F, h, w]: how many latent frames each guided step decodes, spread
            over the clip and rotating, so all are guided within ceil(F / frames_per_step) guided steps. None: all.
        temporal_context: causal video VAEs (Wan). None (default): exact — the VAE's causal cache is walked from
            the first latent frame, with a graph for the step's frames only. n: each frame is decoded behind its n
            previous latent frames only (cheaper late in long clips, approximate). See integrations/video.py.
        precision: compute precision of the guidance decode and the identity model: "auto" (bf16 where the
            device runs it natively: CUDA compute capability ≥ 8, CPUs with AMX / AVX512-BF16; fp32 elsewhere),
            "fp32", "bf16" or "fp16". None (default): the identity loss's own `precision` if it was given one,
            else "auto". The loss, its gradient and the latent update are reduced in fp32; the denoiser and the
            final decode are untouched (they run at the pipeline's dtype).
        autocast: False forces fp32 guidance (the older switch; same as precision="fp32").

    The plain settings live in `self.config` (diffusers' ConfigMixin, as its own callbacks do) and are read
    from there; only the modules (`identity_loss`, `guidance_decoder`) are attributes.
    """

    def __init__(
        self,
        identity_loss: nn.Module,
        scale: float | None = None,
        *,
        mode: str = "x0",
        guidance_decoder: nn.Module | None = None,
        normalize_grad: bool = True,
        start: float = 0.0,
        end: float = 0.9,
        every: int = 1,
        repeats: int = 1,
        augment: int = 0,
        seed: int = 0,
        autocast: bool = True,
        precision: str | None = None,
        frames_per_step: int | None = 4,
        temporal_context: int | None = None,
    ):
        if not callable(identity_loss):
            raise StyleIDError("identity_loss must be an identity loss module (e.g. StyleIDLoss(encoder, reference=face))")
        if getattr(identity_loss, "has_reference", True) is False:
            raise StyleIDError(f"{getattr(identity_loss, 'name', 'identity')} loss has no reference face: pass reference= or call set_reference(face)")
        if mode not in MODES:
            raise StyleIDError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if scale is not None and not (float(scale) >= 0):
            raise StyleIDError(f"scale must be >= 0 (or None for the pipeline's default), got {scale!r}")
        if (frames_per_step is not None and int(frames_per_step) < 1) or (temporal_context is not None and int(temporal_context) < 0):
            raise StyleIDError(f"frames_per_step must be >= 1 and temporal_context >= 0 (or None), got "
                               f"frames_per_step={frames_per_step}, temporal_context={temporal_context}")
        if not (0.0 <= start < end <= 1.0):
            raise StyleIDError(f"need 0 <= start < end <= 1 (fractions of the steps), got start={start}, end={end}")
        if int(every) < 1 or int(repeats) < 1 or int(augment) < 0:
            raise StyleIDError(f"every and repeats must be >= 1 and augment >= 0, got every={every}, repeats={repeats}, augment={augment}")
        if int(augment) and getattr(identity_loss, "mirror_safe", True) is False:
            raise StyleIDError(f"augment flips images, which swaps the people of a {type(identity_loss).__name__} left and right; use augment=0")
        if precision is not None:
            check_precision(precision)
        # no super().__init__(): PipelineCallback's registers diffusers' CFG-cutoff settings, which this callback has not
        self.register_to_config(scale=None if scale is None else float(scale), mode=mode, normalize_grad=bool(normalize_grad), start=float(start),
                                end=float(end), every=int(every), repeats=int(repeats), augment=int(augment), seed=int(seed),
                                autocast=bool(autocast), precision=precision,
                                frames_per_step=None if frames_per_step is None else int(frames_per_step),
                                temporal_context=None if temporal_context is None else int(temporal_context))
        self.identity_loss = identity_loss
        self.guidance_decoder = guidance_decoder
        self._fp32_decoders: dict[int, nn.Module] = {}
        self.last_losses: list[float] = []  # mean identity loss at each guided step of the last run
        # the running step's scale and (video) latent frames, set by callback_fn per pipeline (before any step: the
        # configured scale, or the still-image default)
        self._step_scale = self.scale_for(None)
        self._step_frames: list[int] | None = None
        self._step_pin: tuple[torch.Tensor, torch.Tensor] | None = None  # Wan 2.2 TI2V: (condition, first_frame_mask)
        self._pinned_inputs: list[str] = []  # the extra step-end inputs the attached pipeline must hand over

    @property
    def tensor_inputs(self) -> list[str]:
        return ["latents", "noise_pred", *self._pinned_inputs]

    # -- set-up ------------------------------------------------------------------------------------------

    def attach(self, pipe: Any) -> "IdentityGuidanceCallback":
        """Prepare `pipe` once (idempotent): expose `noise_pred` to step-end callbacks and record the
        denoiser's call arguments (FLUX image grid, x_t mode). Calls without the callback are unaffected."""
        find_denoiser(pipe)
        check_scheduler(pipe.scheduler)
        expose_noise_pred(pipe)
        self._pinned_inputs = expose_first_frame_pin(pipe)
        record_denoiser_inputs(pipe)
        return self

    # -- the step ----------------------------------------------------------------------------------------

    def _is_guided(self, step_index: int, num_steps: int) -> bool:
        cfg = self.config
        first = int(round(cfg.start * num_steps))
        last = int(round(cfg.end * num_steps))
        return first <= step_index < last and (step_index - first) % cfg.every == 0

    def callback_fn(self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.config.scale == 0:
            return callback_kwargs
        scheduler = pipeline.scheduler
        num_steps = getattr(pipeline, "_num_timesteps", None) or len(scheduler.timesteps)
        if step_index == 0:
            self.last_losses = []
        calls = take_call_count(pipeline)  # every step, guided or not: the count is per step
        if not self._is_guided(step_index, num_steps):
            return callback_kwargs
        if "latents" not in callback_kwargs:
            raise StyleIDError("identity guidance needs the latents: pass callback_on_step_end_tensor_inputs=cb.tensor_inputs")
        check_scheduler(scheduler)
        latents = callback_kwargs["latents"]
        self._step_scale = self.scale_for(pipeline)
        self._step_frames, self._step_pin = None, None
        if latents.ndim == 5:  # video [B, C, F, h, w]: this guided step's latent frames
            guided_step = (step_index - int(round(self.config.start * num_steps))) // self.config.every
            pin = tuple(callback_kwargs.get(k) for k in ("condition", "first_frame_mask"))
            if all(isinstance(t, torch.Tensor) for t in pin):  # Wan 2.2 TI2V: frame 0 is the photo, not ours to guide
                if latents.shape[2] < 2:
                    return callback_kwargs
                self._step_pin = pin
                self._step_frames = [f + 1 for f in frames_for_step(latents.shape[2] - 1, self.config.frames_per_step, guided_step)]
            else:
                self._step_frames = frames_for_step(latents.shape[2], self.config.frames_per_step, guided_step)
        with torch.enable_grad():
            if self.config.mode == "x0":
                delta, factor = self._x0_step(pipeline, step_index, timestep, latents, callback_kwargs.get("noise_pred"))
            else:
                check_single_denoiser_call(calls)
                delta, factor = self._xt_step(pipeline, step_index, timestep, latents)
        guided = (latents.float() + factor * delta).to(latents.dtype)
        if not torch.isfinite(guided).all():  # never let guidance corrupt the image
            warnings.warn(f"identity guidance: non-finite latents at step {step_index}; step skipped", RuntimeWarning, stacklevel=2)
            return callback_kwargs
        record_guided_x0(scheduler, delta)
        callback_kwargs["latents"] = guided
        if step_index >= num_steps - 1:
            forget_inputs(pipeline)  # release references to the last call's inputs
        return callback_kwargs

    def scale_for(self, pipe: Any) -> float:
        """The step size used on `pipe`: `scale` if given, else the pipeline family's `DEFAULT_SCALES` entry."""
        return default_scale(pipe) if self.config.scale is None else self.config.scale

    def _x0_step(self, pipe: Any, step_index: int, timestep: Any, latents: torch.Tensor,
                 noise_pred: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        x0, factor = recover_x0(pipe.scheduler, latents, noise_pred, timestep)
        x0 = x0.detach()
        delta = torch.zeros_like(x0)
        for r in range(self.config.repeats):
            z = (x0 + delta).requires_grad_(True)
            loss = self._loss(pipe, z, step_index, r)
            delta = delta + self._descent(loss, z, step_index)
        return delta, factor

    def _xt_step(self, pipe: Any, step_index: int, timestep: Any, latents: torch.Tensor) -> tuple[torch.Tensor, float]:
        record = recorded_inputs(pipe)
        if record is None or "kwargs" not in record:
            raise StyleIDError("x_t guidance needs the denoiser's inputs: call cb.attach(pipe) before sampling")
        scheduler = pipe.scheduler
        _, factor = recover_x0(scheduler, latents, torch.zeros_like(latents), timestep)
        args, kwargs = list(record["args"]), dict(record["kwargs"])
        key = 0 if args else ("sample" if "sample" in kwargs else "hidden_states")
        # FLUX.1 Kontext appends the reference image's tokens: guidance moves the generated ones only
        model_in, tokens = split_reference_tokens(args[0] if args else kwargs[key], latents)
        batch = latents.shape[0]
        if model_in.shape[1:] != latents.shape[1:]:  # e.g. Wan image-to-video feeds cat([latents, condition])
            raise StyleIDError(f"x_t guidance: {type(pipe).__name__}'s denoiser input {tuple(model_in.shape[1:])} is not its "
                               f"latents {tuple(latents.shape[1:])}: use mode='x0'")
        copies = model_in.shape[0] // batch
        if copies not in (1, 2) or copies * batch != model_in.shape[0]:
            raise StyleIDError(f"x_t guidance: denoiser input batch {model_in.shape[0]} does not match latents batch {batch}")
        in_scale = model_input_scale(scheduler)
        x_t = (model_in[:batch].float() / in_scale).detach()
        delta = torch.zeros_like(x_t)
        denoiser = record["module"]
        weight = x0_weight_in_xt(scheduler, timestep)
        for r in range(self.config.repeats):
            z = (x_t + weight * delta).requires_grad_(True)
            inp = tokens.join((z * in_scale).to(model_in.dtype).repeat(copies, *([1] * (z.ndim - 1))))
            if args:
                args[0] = inp
            else:
                kwargs[key] = inp
            record["paused"] = True  # our own denoiser call must not overwrite the pipeline's recorded one
            try:
                out = denoiser(*args, **kwargs)
            finally:
                record["paused"] = False
            out = tokens.output(out[0] if isinstance(out, (tuple, list)) else out.sample)
            if copies == 2:  # classifier-free guidance, combined as the pipeline does
                uncond, cond = out.float().chunk(2)
                out = uncond + float(pipe.guidance_scale) * (cond - uncond)
            x0 = x0_from_xt(scheduler, z, out, timestep)
            loss = self._loss(pipe, x0, step_index, r)
            delta = delta + self._descent(loss, z, step_index)
        return delta, factor

    def _descent(self, loss: torch.Tensor, z: torch.Tensor, step_index: int) -> torch.Tensor:
        """−scale · (normalised) ∇_z loss, per sample; non-finite samples get no update and a warning."""
        scale, frames = self._step_scale, self._step_frames
        if frames is not None and self.config.normalize_grad:  # normalised over the guided frames, not the clip
            delta, finite = identity_descent(loss, z, 1.0, normalize=False)
            delta = scale * normalize_frames(delta, frames)
        else:
            delta, finite = identity_descent(loss, z, scale, normalize=self.config.normalize_grad)
        if not bool(finite.all()):
            warnings.warn(f"identity guidance: non-finite identity loss/gradient at step {step_index} for "
                          f"{int((~finite).sum())} of {len(finite)} samples; their update is skipped", RuntimeWarning, stacklevel=3)
        return delta

    @property
    def precision(self) -> str:
        """The precision name guidance runs at ("auto" is resolved per device when it runs)."""
        cfg = self.config
        if not cfg.autocast:
            return "fp32"
        return cfg.precision or getattr(self.identity_loss, "precision", None) or "auto"

    def _loss(self, pipe: Any, x0: torch.Tensor, step_index: int, repeat: int) -> torch.Tensor:
        name = self.precision
        using = getattr(self.identity_loss, "using_precision", None)
        # the decode follows this device's resolution of `name`; the identity loss resolves it for its own device
        with resolve_precision(name, x0.device).autocast(), (using(name) if using else contextlib.nullcontext()):
            return self._loss_fp(pipe, x0, step_index, repeat)

    def _loss_fp(self, pipe: Any, x0: torch.Tensor, step_index: int, repeat: int) -> torch.Tensor:
        if x0.ndim == 5:
            if self._step_pin is not None:  # what the pipeline will decode: the photo's latents in the first frame
                condition, mask = self._step_pin
                x0 = (1 - mask.float()) * condition.float() + mask.float() * x0
            frames = self.decode(pipe, x0, self._step_frames)  # [B, N, 3, H, W]
            if len(frames) == 1:  # one clip: its frames are one batch against the one reference
                loss = self._images_loss(frames[0], step_index, repeat).mean(0, keepdim=True)
            else:  # per frame, so B references keep pairing with the B clips
                loss = torch.stack([self._images_loss(frames[:, j], step_index, repeat) for j in range(frames.shape[1])]).mean(0)
        else:
            loss = self._images_loss(self.decode(pipe, x0), step_index, repeat)
        if repeat == 0:
            self.last_losses.append(float(loss.detach().nan_to_num(float("nan")).mean()))
        return loss.to(x0.device)

    def _images_loss(self, images: torch.Tensor, step_index: int, repeat: int) -> torch.Tensor:
        augment = self.config.augment
        observe = getattr(self.identity_loss, "observe", None)
        if observe is not None and repeat == 0:  # losses that find faces themselves (PeopleIdentityLoss) look at x0 first
            observe(images.detach(), step_index)
        if augment:
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step_index * 101 + repeat)
            views = _random_views(images, augment, gen).to(self._loss_device()).chunk(augment)
            # one loss call per view: B references keep pairing with the B samples
            loss = torch.stack([self.identity_loss(v) for v in views]).mean(0)
        else:
            loss = self.identity_loss(images.to(self._loss_device()))
        return loss.float()

    def _loss_device(self) -> torch.device:
        try:
            return self.identity_loss.device
        except (AttributeError, StopIteration):
            return torch.device("cpu")

    def decode(self, pipe: Any, x0: torch.Tensor, frames: list[int] | None = None) -> torch.Tensor:
        """Pipeline-space latents (fp32; FLUX's packed tokens too) → images in [0, 1], fp32, differentiable.
        Video latents [B, C, F, h, w] → [B, N, 3, H, W]: the pixel frames of latent `frames` (None: all)."""
        if x0.ndim == 5:
            decoder = self.guidance_decoder if self.guidance_decoder is not None else pipe.vae
            if frames is None:  # the whole clip, exactly
                return decode_video_frames(decoder, x0, list(range(x0.shape[2])), None, self._fp32_decoders)
            return decode_video_frames(decoder, x0, frames, self.config.temporal_context, self._fp32_decoders)
        if x0.ndim == 3:
            record = recorded_inputs(pipe) or {}
            x0 = unpack_flux_latents(x0, flux_token_grid(x0, record.get("kwargs", {}).get("img_ids")))
        decoder = self.guidance_decoder if self.guidance_decoder is not None else pipe.vae
        return decode_latents(decoder, x0, self._fp32_decoders)
