"""Identity loss for several people in one picture: every person's face region is pulled towards that
person's own reference, and the per-person losses are summed.

    loss = build_identity_loss("styleid", reference={"ann": "ann.jpg", "bob": "bob.jpg"}, people=True,
                               face_region={"ann": FaceRegion.from_box(box_a, (W, H)), "bob": region_from_pose(kps, (W, H))})
    guidance = IdentityGuidanceCallback(loss, scale=0.05)

Regions come from where the pipeline places people (boxes, 5-point landmarks or pose keypoints the caller passes,
as `FaceRegion`s). Without them, faces are detected on the decoded x0 (every `detect_every` guided steps, every
step while someone is still missing) and matched to people by the Hungarian algorithm on identity similarity.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .errors import NoFaceError, StyleIDError
from .faces.detection import ARCFACE_TEMPLATE, Face, FaceRegion, similarity_transform
from .files.images import ImageInput, load_image, to_tensor
from .identity_losses import IdentityLoss
from .options import DEFAULT_PEOPLE_CONTRAST
from .people.assign import hungarian
from .people.faces import detect_all_faces

# pose layouts → indices of (image-left eye = the subject's right eye, image-right eye, nose), the order of
# the first three ArcFace template points
POSE_LAYOUTS = {"coco": (2, 1, 0), "openpose": (14, 15, 0)}

FaceDetector = Callable[[Image.Image], Sequence[Face]]


def assign_faces(similarity: np.ndarray | torch.Tensor, threshold: float | None = None) -> list[int | None]:
    """Match faces (rows) to people (columns) maximising the summed similarity (`people.assign.hungarian`,
    as `styleid score --people` does). Returns, per person, the index of its face, or None where no face is
    left for it or its assigned similarity is below `threshold`. Non-finite similarities never win a match."""
    sim = torch.as_tensor(similarity).detach().double().cpu().numpy() if isinstance(similarity, torch.Tensor) else np.asarray(similarity, np.float64)
    if sim.ndim != 2:
        raise StyleIDError(f"face-to-person similarities must be a [faces, people] matrix, got shape {sim.shape}")
    people: list[int | None] = [None] * sim.shape[1]
    if sim.size == 0:
        return people
    finite = np.isfinite(sim)
    for r, c in hungarian(np.where(finite, sim, -1e6)):
        if finite[r, c] and (threshold is None or sim[r, c] >= threshold):
            people[int(c)] = int(r)
    return people


def region_from_pose(keypoints: np.ndarray | Sequence[Sequence[float]], image_size: tuple[int, int], layout: str = "coco") -> FaceRegion:
    """A face region from one person's body-pose keypoints in pixels ([K, 2] or [K, 3] with confidences),
    as pose-conditioned pipelines place people: the eyes and nose fix a similarity transform of the ArcFace
    template. layout: "coco" (17 keypoints) or "openpose" (18, BODY_18)."""
    if layout not in POSE_LAYOUTS:
        raise StyleIDError(f"pose layout must be one of {', '.join(POSE_LAYOUTS)}, got {layout!r}")
    kp = np.asarray(keypoints, np.float64)
    idx = list(POSE_LAYOUTS[layout])
    if kp.ndim != 2 or kp.shape[1] not in (2, 3) or len(kp) <= max(idx):
        raise StyleIDError(f"{layout} pose keypoints must be [K, 2] or [K, 3] with K > {max(idx)}, got shape {kp.shape}")
    if kp.shape[1] == 3 and (kp[idx, 2] <= 0).any():
        raise StyleIDError("pose keypoints: both eyes and the nose must be visible (confidence > 0) to place a face; pass a box instead")
    pts = kp[idx, :2]
    if not np.isfinite(pts).all() or np.linalg.norm(pts[0] - pts[1]) < 1e-6:
        raise StyleIDError("pose keypoints: the two eyes coincide or are not finite; pass a box instead")
    m = similarity_transform(ARCFACE_TEMPLATE[:3], pts)
    five = ARCFACE_TEMPLATE @ m[:2, :2].T + m[:2, 2]
    return FaceRegion.from_landmarks(five, image_size)


class PeopleIdentityLoss(nn.Module):
    """Sum over people of 1 − cos(embed(person's face crop), person's reference), per sample [B].

    base: an identity loss with crop="face" (StyleID, ArcFace or CLIP); its model embeds every person and its
        detector finds the reference faces. One model for everyone: P people cost P crops, not P models.
    references: {name: photo or photos} — one face per photo; several photos of a person are averaged.
    regions: {name: FaceRegion} for every person (where the pipeline places them; [B,5,2] landmarks give one
        per sample), or None to detect faces on the decoded x0 and match them to people.
    detect_every: with detection, re-detect every k guided steps (every step while someone is missing).
    threshold: with detection, a face whose assigned similarity is below it is not that person (None: any).
    face_detector: detects faces on the decoded x0 (default: `people.faces.detect_all_faces` with the base loss's
        detector, as `styleid score --people` finds them).
    contrast: also push each face away from the most similar other person's reference, with this weight:
        loss_i = 1 − s_ii + contrast · max_{j≠i} s_ij. Pulling alone moves every face towards what all the
        references share too (it can merge people); the push acts against swaps and merges.
    """

    name = "people"
    mirror_safe = False  # a horizontal flip swaps people left and right: guidance must not augment with flips

    def __init__(
        self,
        base: IdentityLoss,
        references: Mapping[str, ImageInput | Sequence[ImageInput] | torch.Tensor],
        regions: Mapping[str, FaceRegion] | None = None,
        *,
        detect_every: int = 5,
        threshold: float | None = None,
        face_detector: FaceDetector | None = None,
        contrast: float = DEFAULT_PEOPLE_CONTRAST,
    ):
        super().__init__()
        if not isinstance(base, IdentityLoss) or base.crop != "face":
            raise StyleIDError("people guidance crops each person's face: build the identity loss with crop='face'")
        if not isinstance(references, Mapping) or not references:
            raise StyleIDError("reference must be a dict {name: photo or photos}, one entry per person, when people=True")
        self.names = [str(n) for n in references]
        if len(set(self.names)) != len(self.names):
            raise StyleIDError(f"duplicate person names in reference: {self.names}; give each person one name")
        if not float(contrast) >= 0:
            raise StyleIDError(f"contrast must be >= 0, got {contrast!r}")
        self.contrast = float(contrast)
        if int(detect_every) < 1:
            raise StyleIDError(f"detect_every must be >= 1, got {detect_every}")
        self.base = base
        self.detect_every, self.threshold = int(detect_every), threshold
        self.face_detector = face_detector
        self.regions: dict[str, FaceRegion] = {}  # checked before the (slow) reference faces are detected
        if regions is not None:
            given = {str(k): v for k, v in regions.items()}
            missing = [n for n in self.names if n not in given]
            unknown = [n for n in given if n not in self.names]
            if missing or unknown:
                raise StyleIDError(f"face_region needs a region for every person and no one else (missing: {missing or 'none'}, "
                                   f"not in reference: {unknown or 'none'}); or pass face_region=None to detect faces")
            for n in self.names:
                if not isinstance(given[n], FaceRegion):
                    raise StyleIDError(f"face_region[{n!r}] must be a FaceRegion (FaceRegion.from_box / from_landmarks, "
                                       f"region_from_pose), got {type(given[n]).__name__}")
                self.regions[n] = given[n]
        refs = [self._reference_embedding(str(n), photos) for n, photos in references.items()]
        self.register_buffer("reference_embedding", torch.stack(refs), persistent=False)  # [P, D]
        self.fixed = regions is not None
        self._landmarks: np.ndarray | None = None  # detection: [B, P, 5, 2] normalised, and which are found [B, P]
        self._found: np.ndarray | None = None
        self._step: int | None = None
        self._guided_steps = 0
        self.detections = 0  # how many times faces were detected (on x0 or given images)

    # -- what IdentityGuidanceCallback reads ---------------------------------------------------------------

    has_reference = True

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def precision(self) -> str | None:
        return self.base.precision

    def using_precision(self, precision: str | None) -> contextlib.AbstractContextManager[None]:
        return self.base.using_precision(precision)

    # -- references ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def _reference_embedding(self, name: str, photos: ImageInput | Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        items = list(to_tensor(photos)) if isinstance(photos, torch.Tensor) else list(photos) if isinstance(photos, (list, tuple)) else [photos]
        if not items:
            raise StyleIDError(f"reference for {name!r} has no photos")
        base, embeddings = self.base, []
        for i, item in enumerate(items):
            pil = load_image(item)
            label = f"reference for {name!r}" + (f" (photo {i + 1})" if len(items) > 1 else "")
            faces = detect_all_faces(pil, base.detector, base.model_rootpath)  # the rule `styleid score --people` applies
            if not faces:
                raise NoFaceError(f"{label}: no face found; use a photo where the face is clear and at least ~40 pixels wide")
            if len(faces) > 1:
                boxes = "; ".join(f"{[round(float(v)) for v in f.box]}" for f in faces)
                raise StyleIDError(f"{label}: {len(faces)} faces found (boxes {boxes} in the {pil.size[0]}x{pil.size[1]} "
                                   f"photo); crop it to {name}'s face and hair, one person per photo")
            region = FaceRegion.from_landmarks(faces[0].landmarks, pil.size)
            embeddings.append(base.embed(to_tensor(pil), face_region=region))
        return F.normalize(torch.cat(embeddings).mean(0), dim=-1)

    # -- where the people are ------------------------------------------------------------------------------

    def _detect(self, image: Image.Image) -> Sequence[Face]:
        if self.face_detector is not None:
            return self.face_detector(image)
        return detect_all_faces(image, self.base.detector, self.base.model_rootpath)

    @torch.no_grad()
    def locate(self, images: ImageInput | Sequence[ImageInput] | torch.Tensor) -> list[dict[str, int | None]]:
        """Detect every face in each image and match faces to people (Hungarian, on identity similarity).
        A person found earlier but not now keeps their last region. Returns, per image, each person's face
        index in that detection (None: not found this time)."""
        x = to_tensor(images).detach().float()
        b, p = len(x), len(self.names)
        keep = self._landmarks is not None and len(self._landmarks) == b
        lms = self._landmarks.copy() if keep else np.zeros((b, p, 5, 2))
        found = self._found.copy() if keep else np.zeros((b, p), bool)
        ref = self.reference_embedding
        matches = []
        for i in range(b):
            pil = load_image(x[i].clamp(0, 1).cpu())
            faces = list(self._detect(pil))
            regions = [FaceRegion.from_landmarks(f.landmarks, pil.size) for f in faces]
            if regions:
                z = torch.cat([self.base.embed(x[i:i + 1], face_region=r) for r in regions])
                assignment = assign_faces((z @ ref.to(z).T).float(), self.threshold)
            else:
                assignment = [None] * p
            for j, f in enumerate(assignment):
                if f is not None:
                    lms[i, j], found[i, j] = regions[f].landmarks, True
            matches.append(dict(zip(self.names, assignment)))
        self._landmarks, self._found = lms, found
        self.detections += 1
        return matches

    def observe(self, images: torch.Tensor, step_index: int) -> None:
        """Called by IdentityGuidanceCallback with each guided step's decoded x0 (before any loss): detects
        the people every `detect_every` guided steps. A step index not after the last one starts a new run."""
        if self.fixed:
            return
        if self._step is None or step_index <= self._step:  # a new sampling run: the last picture's faces are gone
            self._landmarks, self._found, self._guided_steps = None, None, 0
        self._step = step_index
        everyone = self._found is not None and bool(self._found.all())
        if not everyone or self._guided_steps % self.detect_every == 0:
            self.locate(images)
        self._guided_steps += 1

    def found(self, batch: int) -> torch.Tensor:
        """[B, P] bool: which people have a region (always all with given regions)."""
        if self.fixed:
            return torch.ones(batch, len(self.names), dtype=torch.bool)
        if self._found is None or len(self._found) != batch:
            return torch.zeros(batch, len(self.names), dtype=torch.bool)
        return torch.as_tensor(self._found)

    def _person_regions(self, batch: int) -> list[FaceRegion]:
        if self.fixed:
            return [self.regions[n] for n in self.names]
        # a person not found yet is cropped from the whole image and weighted 0, so shapes stay fixed
        whole = ARCFACE_TEMPLATE
        lms = self._landmarks if self._landmarks is not None and len(self._landmarks) == batch else np.zeros((batch, len(self.names), 5, 2))
        found = self.found(batch).numpy()
        return [FaceRegion(np.where(found[:, j, None, None], lms[:, j], whole[None])) for j in range(len(self.names))]

    # -- the loss ------------------------------------------------------------------------------------------

    def similarities(self, images: ImageInput | Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        """[B, P, P]: person i's face crop against person j's reference (the diagonal: each their own).
        With detection and no regions yet, the images are searched first."""
        x = to_tensor(images)
        if not self.fixed and (self._found is None or len(self._found) != len(x)):
            self.locate(x)
        z = torch.stack([self.base.embed(x, face_region=r) for r in self._person_regions(len(x))], 1)  # [B, P, D]
        return z @ self.reference_embedding.to(z).T

    def similarity(self, images: ImageInput | Sequence[ImageInput] | torch.Tensor) -> torch.Tensor:
        """[B, P]: each person's similarity to their own reference; NaN where the person was not found."""
        own = torch.diagonal(self.similarities(images), dim1=1, dim2=2)
        return torch.where(self.found(len(own)).to(own.device), own, torch.full_like(own, float("nan")))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        sims = self.similarities(images)
        own = torch.diagonal(sims, dim1=1, dim2=2)
        loss = 1.0 - own
        if self.contrast and len(self.names) > 1:
            others = sims.masked_fill(torch.eye(len(self.names), dtype=torch.bool, device=sims.device), float("-inf"))
            loss = loss + self.contrast * others.amax(2)
        weight = self.found(len(own)).to(own)
        return (loss * weight).sum(1)

    def extra_repr(self) -> str:
        return f"people={self.names}, regions={'given' if self.fixed else f'detected every {self.detect_every} steps'}"


def build_people_loss(
    base: IdentityLoss,
    reference: object,
    face_region: object = None,
) -> PeopleIdentityLoss:
    """`build_identity_loss(..., people=True)`: checks the arguments' shapes and builds the loss."""
    if not isinstance(reference, Mapping):
        raise StyleIDError("people=True needs reference={name: photo or photos, ...}, one entry per person")
    if face_region is not None and not isinstance(face_region, Mapping):
        raise StyleIDError("people=True needs face_region={name: FaceRegion, ...} for every person, or None to detect faces")
    return PeopleIdentityLoss(base, reference, face_region)

