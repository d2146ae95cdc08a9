"""Differentiable identity losses behind one interface: StyleID, with ArcFace and CLIP as baselines.

Every loss holds a cached reference embedding and returns, per sample, 1 − cos(embed(x), reference):
differentiable w.r.t. the generated images, reduced in fp32. `precision` ("auto" | "fp32" | "bf16" |
"fp16") runs the identity model under autocast; None (the default) is fp32 when the loss is called
directly (reproducible scores) and lets a guidance caller (the diffusers callback, JoJoGAN) pick "auto".
"""
from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .devices import check_precision, resolve_device, resolve_precision
from .errors import StyleIDError
from .faces.detection import FaceRegion
from .files.images import ImageInput, load_image, to_tensor
from .options import CROPS, DEFAULT_CROP, DEFAULT_DETECTOR, IDENTITY_LOSSES

if TYPE_CHECKING:
    from .people_loss import PeopleIdentityLoss



class IdentityLoss(nn.Module):
    """Base class: subclasses define `template`, `model` and `_embed_images` (pixels in [0,1] → [B,D])."""

    name = "identity"
    template = "styleid"  # face template used when crop == "face"

    def __init__(
        self,
        model: nn.Module,
        reference: ImageInput | Sequence[ImageInput] | None = None,
        crop: str = DEFAULT_CROP,
        face_region: FaceRegion | None = None,
        detector: str = DEFAULT_DETECTOR,
        model_rootpath: str | None = None,
        precision: str | None = None,
    ):
        super().__init__()
        if crop not in CROPS:
            raise StyleIDError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        self.precision = None if precision is None else check_precision(precision)
        # a guidance loss never trains its encoder
        self.model = model.eval().requires_grad_(False)
        self.crop = crop
        self.face_region = face_region
        self._region_given = face_region is not None  # then references are cut with it too, no detection
        self.detector = detector
        self.model_rootpath = model_rootpath
        self.register_buffer("reference_embedding", None, persistent=False)
        if reference is not None:
            self.set_reference(reference)

    def train(self, mode: bool = True) -> "IdentityLoss":
        super().train(mode)
        self.model.eval()  # BatchNorm / dropout stay in inference mode
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @contextlib.contextmanager
    def using_precision(self, precision: str | None) -> Iterator[None]:
        """Run the loss at `precision` inside the block (None: leave it as it is); the setting is restored after."""
        if precision is None:
            yield
            return
        before, self.precision = self.precision, check_precision(precision)
        try:
            yield
        finally:
            self.precision = before

    @property
    def has_reference(self) -> bool:
        return self.reference_embedding is not None

    @property
    def input_size(self) -> int:
        raise NotImplementedError

    def _embed_images(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, images: ImageInput | Sequence[ImageInput] | torch.Tensor, face_region: FaceRegion | None = None) -> torch.Tensor:
        """[B,D] L2-normalised embeddings; with crop="face" the face region (given, or the reference's)
        is cut out by a differentiable affine warp first."""
        x = to_tensor(images).to(self.device, torch.float32)
        if self.crop == "face":
            region = face_region or self.face_region
            if region is None:
                raise StyleIDError("crop='face' needs a face region: set a reference photo with a face, or pass face_region")
            x = region.crop(x, self.input_size, self.template)
        with resolve_precision(self.precision or "fp32", self.device).autocast():
            z = self._embed_images(x)
        return F.normalize(z.float(), dim=-1)  # similarities and losses are reduced in fp32

    @torch.no_grad()
    def set_reference(self, reference: ImageInput | Sequence[ImageInput] | torch.Tensor) -> None:
        """Cache the reference embedding(s). With crop="face" each reference is aligned with its own
        detected landmarks, and the first one's region becomes the default for generated images —
        unless a `face_region` was given, which then cuts the references too (no detection)."""
        if isinstance(reference, torch.Tensor) and (self.crop != "face" or self._region_given):
            # one batched pass (JoJoGAN re-sets a batch of references every iteration)
            self.reference_embedding = self.embed(reference).detach()
            return
        if self._region_given:
            items = list(reference) if isinstance(reference, (list, tuple)) else [reference]
            self.reference_embedding = torch.cat([self.embed(to_tensor(load_image(it))) for it in items]).detach()
            return
        embeddings, first_region = self._embed_photos(reference)
        if self.face_region is None:
            self.face_region = first_region
        self.reference_embedding = embeddings.detach()

    @torch.no_grad()
    def embed_photos(self, photos: ImageInput | Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        """[N,D] embeddings of real photos of any sizes, one at a time; with crop="face" each is
        aligned with its own detected landmarks (not the reference's region)."""
        return self._embed_photos(photos)[0]

    def _embed_photos(self, photos) -> tuple[torch.Tensor, FaceRegion | None]:
        items = list(photos) if isinstance(photos, (list, tuple)) else [photos]
        if isinstance(photos, torch.Tensor):
            items = list(to_tensor(photos))
        embeddings, first_region = [], None
        for i, item in enumerate(items):
            x = to_tensor(item if isinstance(item, torch.Tensor) else load_image(item))
            region = None
            if self.crop == "face":
                name = str(item) if isinstance(item, (str, os.PathLike)) else f"image {i}"
                region = FaceRegion.detect(x[0].cpu(), self.detector, self.model_rootpath, name=name)
                first_region = first_region or region
            embeddings.append(self.embed(x, face_region=region))
        return torch.cat(embeddings), first_region

    def similarity(self, images: ImageInput | Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        """Cosine similarity [B] to the reference (one reference broadcasts; B references pair up)."""
        if not self.has_reference:
            raise StyleIDError(f"{self.name} identity loss has no reference face; call set_reference(image) first")
        z = self.embed(images)
        ref = self.reference_embedding
        if len(ref) not in (1, len(z)):
            raise StyleIDError(f"{len(ref)} reference faces for a batch of {len(z)}: give 1 or {len(z)}")
        return (z * ref).sum(-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.similarity(images)


class StyleIDLoss(IdentityLoss):
    """Identity loss with the style-robust StyleID encoder (or any `StyleIDEncoder`)."""

    name = "styleid"
    template = "styleid"

    def __init__(self, encoder: nn.Module, reference=None, crop: str = DEFAULT_CROP, **kwargs):
        super().__init__(encoder, reference=reference, crop=crop, **kwargs)

    @property
    def input_size(self) -> int:
        return self.model.image_size

    def _embed_images(self, x: torch.Tensor) -> torch.Tensor:
        # the loss's precision governs, whatever the encoder's own default is
        return self.model.encode_pixels(self.model.preprocess(x, "none" if self.crop == "face" else self.crop),
                                        self.precision or "fp32")


class CLIPLoss(StyleIDLoss):
    """The photo/text-trained CLIP image tower as an identity model (a weak baseline in the paper)."""

    name = "clip"


class ArcFaceLoss(IdentityLoss):
    """The classic ArcFace (IR-SE50) identity loss. crop="center" is the pSp/StyleCLIP recipe for
    FFHQ-aligned images (256 px, crop [35:223, 32:220], pool to 112); "face" aligns 5 landmarks to
    ArcFace's 112-px template; "none" squashes the image to 112."""

    name = "arcface"
    template = "arcface"

    def __init__(self, backbone: nn.Module | None = None, reference=None, crop: str = DEFAULT_CROP, **kwargs):
        if backbone is None:
            from .baselines.arcface import load_arcface_backbone

            backbone = load_arcface_backbone(model_rootpath=kwargs.get("model_rootpath"))
        super().__init__(backbone, reference=reference, crop=crop, **kwargs)

    @property
    def input_size(self) -> int:
        return 112

    def _embed_images(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop == "center":
            x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
            x = F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], (112, 112))
        elif self.crop == "none":
            x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False, antialias=True)
        param = next(self.model.parameters())
        # contiguous: facexlib flattens with .view, which fails on the strided crop
        return self.model(((x - 0.5) / 0.5).to(param.dtype).contiguous())


def _parse_open_clip_name(model: str | None) -> tuple[str, str | None]:
    if not model:
        return "ViT-L-14", "openai"
    name, _, pretrained = model.partition("/")
    return name, (pretrained or None)


def build_identity_loss(
    name: str,
    reference: ImageInput | Sequence[ImageInput] | torch.Tensor | None = None,
    *,
    model: str | os.PathLike | nn.Module | None = None,
    device: torch.device | str | None = None,
    crop: str = DEFAULT_CROP,
    detector: str = DEFAULT_DETECTOR,
    model_rootpath: str | None = None,
    face_region: FaceRegion | Mapping[str, FaceRegion] | None = None,
    precision: str | None = None,
    people: bool = False,
) -> IdentityLoss | PeopleIdentityLoss | None:
    """Build an identity loss by name: "styleid", "arcface", "clip" or "none" (→ None, nothing built).

    model: Hub id / local folder / file for the weights, or an already-built module. Defaults: the
    released StyleID ("kwanY/styleid"), facexlib's ArcFace IR-SE50, open_clip "ViT-L-14/openai".
    A distilled student (`styleid distill`) is a StyleID encoder folder like any other.
    precision: see the module docstring (None = fp32 unless a guidance caller picks).
    people: several people in one picture (`people_loss.PeopleIdentityLoss`): reference={name: photo(s)} and
    face_region={name: FaceRegion} for everyone, or None to detect the faces on the decoded x0."""
    if name not in IDENTITY_LOSSES:
        raise StyleIDError(f"identity loss must be one of {', '.join(IDENTITY_LOSSES)}, got {name!r}")
    if name == "none":
        return None
    device = resolve_device(device)
    common = dict(crop=crop, face_region=None if people else face_region, detector=detector, model_rootpath=model_rootpath, precision=precision)
    if name == "arcface":
        from .baselines.arcface import load_arcface_backbone

        backbone = model if isinstance(model, nn.Module) else load_arcface_backbone(model, model_rootpath=model_rootpath)
        loss: IdentityLoss = ArcFaceLoss(backbone.to(device), **common)
    else:
        from .encoder.model import StyleIDEncoder
        from .options import RELEASED_MODEL

        if isinstance(model, nn.Module):
            encoder = model
        elif name == "styleid":
            encoder = StyleIDEncoder.from_pretrained(model or RELEASED_MODEL)
        else:
            clip_name, pretrained = _parse_open_clip_name(str(model) if model else None)
            encoder = StyleIDEncoder.from_open_clip(clip_name, pretrained=pretrained, lora_rank=0)
        cls = StyleIDLoss if name == "styleid" else CLIPLoss
        loss = cls(encoder.to(device), **common)
    if people:
        from .people_loss import build_people_loss

        return build_people_loss(loss, reference, face_region)
    if reference is not None:
        loss.set_reference(reference)
    return loss
