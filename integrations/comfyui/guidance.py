"""Identity guidance inside ComfyUI's own sampler, as a post-CFG function on a ModelPatcher clone.

This is the x0 mode of the diffusers callback (`styleid_guidance.integrations.callback`, MPGD-style): at each
guided model call ComfyUI hands post-CFG functions `denoised`, the classifier-free-guided x0 estimate. We
decode it differentiably, take the gradient of 1 − cos(StyleID(decode(x0)), reference) w.r.t. x0 (no
back-propagation through the UNet) and return x0 − scale·ĝ. Every ComfyUI sampler then moves x_t as if the
model had predicted the corrected x0 (for Euler: x_next shifts by (1 − σ_next/σ)·Δ).

Step size: ĝ is the per-sample gradient scaled to unit RMS, exactly as the callback's `normalize_grad`, so
`scale` is the RMS of the x0 change in the model's latent units (after the latent format's scaling): the same
meaning for any loss, resolution, noise level or identity model. scale 0 returns `denoised` itself, untouched,
so sampling is bit-identical to the unpatched model.

ComfyUI executes nodes under `torch.inference_mode()` and samples under no_grad: gradients are enabled
locally, x0 is cloned into a normal (non-inference) leaf, and a decoder whose weights are inference tensors is
copied once into normal tensors. Other post-CFG functions (other packs, applied before or after this one) are
kept: ComfyUI chains them in order, each receiving the previous one's output as `denoised`.

Video models with temporally compressed latents [B, C, T, h, w] (Wan 2.x): each guided call decodes only
`frames_per_step` latent frames, spread over the clip and rotating from call to call (the diffusers callback's
schedule, `integrations.video.frames_for_step`), through one exact causal pass of the VAE over the prefix that
ends at the last of them; the loss is the mean over their pixel frames, and the step is scaled to unit RMS over the
guided latent frames. (Per-frame video models such as AnimateDiff hand ComfyUI 4-d latents: frames are the batch.)
"""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from styleid_guidance.errors import StyleIDError
from styleid_guidance.options import DEFAULT_PEOPLE_CONTRAST
from styleid_guidance.integrations.descent import identity_descent
from styleid_guidance.integrations.video import frames_for_step, normalize_frames

from .models import StyleIDModel
from .people import embed_references

log = logging.getLogger(__name__)


def _plain_module(module: nn.Module) -> nn.Module:
    """`module` itself, or a copy with normal tensors when its weights are inference tensors (made by a loader
    node under inference mode), which autograd cannot save for backward."""
    if not any(t.is_inference() for t in list(module.parameters()) + list(module.buffers())):
        return module
    with torch.inference_mode(False):
        plain = copy.deepcopy(module)
        for t in list(plain.parameters()) + list(plain.buffers()):
            if t.is_inference():
                t.data = t.data.clone()
    return plain.requires_grad_(False)


class IdentityGuidance:
    """The post-CFG function. Holds the reference embedding, decoder and identity model; `last_losses` records
    the mean identity loss (1 − cos) at each guided call of the latest sampling, for inspection."""

    def __init__(self, styleid: StyleIDModel, reference: torch.Tensor | Sequence[torch.Tensor], vae: Any, latent_format: Any,
                 model_sampling: Any, scale: float, start_percent: float, end_percent: float, every: int,
                 frames_per_step: int | None = None, regions: torch.Tensor | None = None,
                 contrast: float = DEFAULT_PEOPLE_CONTRAST):
        if not math.isfinite(float(scale)) or float(scale) < 0:
            raise StyleIDError(f"scale must be a finite number >= 0, got {scale}")
        if not (0.0 <= start_percent < end_percent <= 1.0):
            raise StyleIDError(f"need 0 <= start_percent < end_percent <= 1, got {start_percent} and {end_percent}")
        if int(every) < 1:
            raise StyleIDError(f"every_n_steps must be at least 1, got {every}")
        if frames_per_step is not None and int(frames_per_step) < 1:
            raise StyleIDError(f"frames_per_step must be at least 1, got {frames_per_step}")
        self.frames_per_step = None if frames_per_step is None else int(frames_per_step)
        self.guided_calls = 0  # video: which window of frames the next guided call decodes
        self.guided_frames: list[list[int]] = []  # video: the latent frames of each guided call, for inspection
        self.styleid = styleid
        self.scale = float(scale)
        self.every = int(every)
        self.vae = vae
        self.latent_format = latent_format
        self.sigma_start = float(model_sampling.percent_to_sigma(start_percent))
        self.sigma_end = float(model_sampling.percent_to_sigma(end_percent))
        with torch.inference_mode(False):  # a normal tensor: it enters the loss's autograd graph at every step
            emb, found = styleid.embed(reference, "reference")
            # several photos of the person: one direction, the normalised mean of their embeddings
            self.reference = torch.nn.functional.normalize(emb.mean(0), dim=0)
        self.region = None
        for i, ok in enumerate(found):  # the generated face is cut where the first reference with a face has it
            if ok:
                self.region = styleid.region(reference[i].reshape(reference[i].shape[-3:]), f"reference {i}")
                break
        self.reference_face_found = any(found)
        # several people: reference photo i is person i, pulled toward it inside mask i's bounding box
        self.people_boxes, self.people_refs = ([], None) if regions is None else people_regions(styleid, reference, regions)
        if not (math.isfinite(float(contrast)) and float(contrast) >= 0):
            raise StyleIDError(f"contrast must be a finite number >= 0, got {contrast}")
        self.contrast = float(contrast)
        self._decoder: nn.Module | None = None
        self.last_losses: list[float] = []

    def __deepcopy__(self, memo: dict) -> "IdentityGuidance":
        # ModelPatcher.clone() deep-copies model_options: share this function (its identity model, decoder copy and
        # reference) instead of duplicating gigabytes of weights at every clone
        return self

    # -- which calls are guided ---------------------------------------------------------------------------
    def _is_guided(self, sigma: float, sample_sigmas: torch.Tensor | None) -> bool:
        if not (self.sigma_end <= sigma <= self.sigma_start):
            return False
        if sample_sigmas is None or self.every == 1:
            return True
        steps = [float(s) for s in sample_sigmas[:-1]]
        window = [i for i, s in enumerate(steps) if self.sigma_end <= s <= self.sigma_start]
        # this call's step: the last one whose sigma is at or above the current one (exact for the step's own
        # evaluation; a sampler's intermediate evaluation, Heun or DPM-2, counts with its step)
        here = [i for i in window if steps[i] >= sigma * (1 - 1e-4)]
        return not here or window.index(here[-1]) % self.every == 0

    # -- the step -------------------------------------------------------------------------------------------
    def decoder(self) -> nn.Module:
        """The VAE's first-stage model, loaded once (as a copy with normal tensors where needed)."""
        if self._decoder is None:
            import comfy.model_management as mm

            mm.load_models_gpu([self.vae.patcher])
            self._decoder = _plain_module(self.vae.first_stage_model)
        return self._decoder

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Model-space latents → images [B,3,H,W] in 0..1, differentiable (ComfyUI's `VAE.decode` writes into a
        preallocated buffer without a graph, so this goes through the first-stage model itself)."""
        param = next(self.decoder().parameters())
        # model space → the VAE's own latents: SD's 1/0.18215 scaling, FLUX's 1/scale_factor + shift_factor
        z = self.latent_format.process_out(x0).to(param.device, param.dtype)
        return ((self.decoder().decode(z).float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def decode_frames(self, x0: torch.Tensor, frames: list[int]) -> tuple[torch.Tensor, int]:
        """Video latents [B,C,T,h,w] → the pixel frames of the selected latent frames as [B·n, 3, H, W] in 0..1 and
        n, differentiable: one causal pass over the prefix ending at the last selected frame (exact)."""
        decoder = self.decoder()
        param = next(decoder.parameters())
        z = self.latent_format.process_out(x0[:, :, : frames[-1] + 1]).to(param.device, param.dtype)
        video = decoder.decode(z).float()  # [B, 3, T', H, W] in -1..1
        upscale = self.vae.upscale_ratio[0]  # latent frames → pixel frames (Wan: 1 + 4·(t − 1))
        start = [0 if f == 0 else int(upscale(f)) for f in frames]
        stop = [int(upscale(f + 1)) for f in frames]
        pixels = torch.cat([video[:, :, a:b] for a, b in zip(start, stop)], dim=2)
        b, c, n, h, w = pixels.shape
        images = ((pixels.permute(0, 2, 1, 3, 4).reshape(b * n, c, h, w) + 1.0) / 2.0).clamp(0.0, 1.0)
        return images, n

    def identity_loss(self, images: torch.Tensor) -> torch.Tensor:
        """Per-sample 1 − cos(embedding, reference), differentiable w.r.t. `images`; with several people, the sum over
        them of 1 − s_ii + contrast · max_{j≠i} s_ij, s_ij = cos(embedding of i's region, j's reference)."""
        if self.people_boxes:
            h, w = images.shape[-2:]
            refs = self.people_refs.to(self.styleid.center.device)
            total = torch.zeros(images.shape[0], device=self.styleid.center.device)
            for i, (x1, y1, x2, y2) in enumerate(self.people_boxes):
                crop = images[:, :, round(y1 * h): max(round(y2 * h), round(y1 * h) + 2),
                              round(x1 * w): max(round(x2 * w), round(x1 * w) + 2)]
                s = self.styleid.center.embed(crop.to(self.styleid.center.device)) @ refs.T  # [B, people]
                total = total + 1.0 - s[:, i]
                if self.contrast and len(self.people_boxes) > 1:
                    total = total + self.contrast * torch.cat([s[:, :i], s[:, i + 1:]], dim=1).amax(dim=1)
            return total
        loss_fn = self.styleid.face if self.region is not None else self.styleid.center
        images = images.to(loss_fn.device)
        z = loss_fn.embed(images, face_region=self.region) if self.region is not None else loss_fn.embed(images)
        return 1.0 - z @ self.reference.to(z.device)

    def __call__(self, args: dict[str, Any]) -> torch.Tensor:
        denoised = args["denoised"]
        if self.scale == 0.0:
            return denoised
        if denoised.ndim not in (4, 5):
            raise StyleIDError("StyleIDGuidance supports image models (4-d latents) and video models with [B, C, T, h, w] "
                               f"latents, got shape {tuple(denoised.shape)}")
        sigma = float(args["sigma"].max())
        sample_sigmas = args.get("model_options", {}).get("transformer_options", {}).get("sample_sigmas")
        if not self._is_guided(sigma, sample_sigmas):
            return denoised
        with torch.inference_mode(False), torch.enable_grad():
            x0 = denoised.detach().clone().float().requires_grad_(True)
            if denoised.ndim == 4:
                loss = self.identity_loss(self.decode(x0))
                delta, finite = identity_descent(loss, x0, self.scale)
            else:
                frames = frames_for_step(x0.shape[2], self.frames_per_step, self.guided_calls)
                self.guided_calls += 1
                self.guided_frames.append(frames)
                images, n = self.decode_frames(x0, frames)
                loss = self.identity_loss(images).view(x0.shape[0], n).mean(dim=1)
                delta, finite = identity_descent(loss, x0, 1.0, normalize=False)
                delta = self.scale * normalize_frames(delta, frames)  # unit RMS over the guided frames
        if not bool(finite.all()):  # those samples get no step; the others are still guided
            log.warning("StyleIDGuidance: non-finite identity loss or gradient at sigma %.4g for %d of %d samples; "
                        "their step is skipped", sigma, int((~finite).sum()), len(finite))
        if not bool(finite.any()):
            return denoised
        self.last_losses.append(float(loss.detach().mean()))
        return (denoised.float() + delta.to(denoised.device)).to(denoised.dtype)


def people_regions(styleid: StyleIDModel, photos: torch.Tensor | Sequence[torch.Tensor],
                   regions: torch.Tensor) -> tuple[list[tuple[float, float, float, float]], torch.Tensor]:
    """Per person, the bounding box of MASK i ([P, H, W], relative: their face region in the image being generated)
    and, as a [P, D] tensor, the embedding of reference photo i (one face each)."""
    photos = list(photos.split(1)) if isinstance(photos, torch.Tensor) else list(photos)
    masks = regions if regions.ndim == 3 else regions[None]
    if len(masks) != len(photos):
        raise StyleIDError(f"regions: {len(masks)} masks for {len(photos)} reference photos; give one mask per person's "
                           "photo, in the same order")
    names = [f"person {i + 1}" for i in range(len(photos))]
    with torch.inference_mode(False):  # normal tensors (L2-normalised): they enter the loss's graph at every step
        refs = embed_references(styleid, photos, names)
    boxes = []
    for i, mask in enumerate(masks):
        ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
        if len(ys) == 0:
            raise StyleIDError(f"regions: mask {i + 1} is empty; paint {names[i]}'s face region in it")
        h, w = mask.shape
        box = (float(xs.min()) / w, float(ys.min()) / h, float(xs.max() + 1) / w, float(ys.max() + 1) / h)
        boxes.append(box)
    return boxes, refs


def check_vae_matches(vae: Any, latent_format: Any) -> None:
    """Refuse a VAE whose latents are not the model's (SD's 4-channel VAE or `taesd` on a 16-channel FLUX model, an
    image VAE on a video model or the reverse): otherwise the mismatch would surface as a shape error deep inside
    the first guided step."""
    want_dims, got_dims = getattr(latent_format, "latent_dimensions", 2), getattr(vae, "latent_dim", 2)
    if int(want_dims) != int(got_dims):
        kind = {2: "image", 3: "video"}
        raise StyleIDError(f"the VAE is a {kind.get(got_dims, got_dims)} VAE but the model "
                           f"({type(latent_format).__name__}) makes {kind.get(want_dims, want_dims)} latents: connect "
                           "the model's own VAE (for Wan 2.1: wan_2.1_vae)")
    want, got = getattr(latent_format, "latent_channels", None), getattr(vae, "latent_channels", None)
    if want is not None and got is not None and int(want) != int(got):
        hint = " (for FLUX: its own ae.safetensors or taef1)" if want == 16 else ""
        raise StyleIDError(f"the VAE decodes {got}-channel latents but the model's ({type(latent_format).__name__}) "
                           f"have {want}: connect the model's own VAE or its TAESD{hint}")


def patch_model(model: Any, vae: Any, styleid: StyleIDModel, reference: torch.Tensor | Sequence[torch.Tensor], scale: float,
                start_percent: float, end_percent: float, every: int, frames_per_step: int | None = None,
                regions: torch.Tensor | None = None, contrast: float = DEFAULT_PEOPLE_CONTRAST) -> tuple[Any, IdentityGuidance]:
    """A clone of the ModelPatcher `model` with identity guidance appended to its post-CFG functions."""
    latent_format = model.get_model_object("latent_format")
    check_vae_matches(vae, latent_format)
    fn = IdentityGuidance(styleid, reference, vae, latent_format,
                          model.get_model_object("model_sampling"), scale, start_percent, end_percent, every,
                          frames_per_step, regions, contrast)
    patched = model.clone()
    patched.set_model_sampler_post_cfg_function(fn)
    return patched, fn
