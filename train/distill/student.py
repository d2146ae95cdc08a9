"""The pieces of `styleid distill`: the student, the distillation loss, the teacher's targets and the batch order.

The student is a plain StyleID encoder (no LoRA, every weight trains) whose embedding has the teacher's width,
so it saves, loads and guides like any StyleID encoder. The teacher runs once over the data (its embeddings
are the targets, cached on disk), which is what makes distilling a ViT-L/14 on a small machine affordable.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from styleid_guidance.encoder.attention import to_fused_names
from styleid_guidance.encoder.backbones import build_backbone, check_model_name, open_clip_config, quick_gelu_for, \
    vit_from_kwargs, vit_kwargs_from_open_clip
from styleid_guidance.encoder.config import LoraSettings
from styleid_guidance.encoder.model import StyleIDEncoder
from styleid_guidance.errors import StyleIDError
from styleid_guidance.options import DEFAULT_DETECTOR
from styleid_guidance.files.atomic import atomic_write
from styleid_guidance.files.images import list_images, load_image, to_tensor
from styleid_guidance.encoder.preprocess import clip_preprocess

logger = logging.getLogger("styleid.distill")

TARGETS_FILE = "teacher_targets.safetensors"


# ---------------------------------------------------------------------- the student
def build_student(architecture: str, pretrained: str | None, embedding_dim: int, seed: int = 0) -> StyleIDEncoder:
    """An open_clip tower whose embedding is `embedding_dim` wide, every weight trainable.

    A CLIP ViT whose own projection has another width (ViT-B-32: 512, the ViT-L/14 teacher: 768) keeps all its
    (pretrained) weights except the projection, which starts random at the teacher's width; the saved config
    then describes the tower by its ViT settings, so it reloads without open_clip's name."""
    check_model_name(architecture)
    with torch.random.fork_rng(devices=[]):  # a random student is the same for a seed; the caller's RNG is untouched
        torch.manual_seed(seed)
        visual = build_backbone({"open_clip_model": architecture, "quick_gelu": quick_gelu_for(architecture, pretrained)},
                                pretrained)
        config = open_clip_config(architecture, pretrained, visual)
        if config.embedding_dim != embedding_dim:
            try:
                vit = dict(vit_kwargs_from_open_clip(visual, config), output_dim=embedding_dim)
            except StyleIDError:
                raise StyleIDError(f"student {architecture!r} gives {config.embedding_dim}-d embeddings and the teacher "
                                   f"{embedding_dim}-d; use a CLIP ViT student (its projection is resized) or one with "
                                   f"{embedding_dim}-d outputs") from None
            resized = vit_from_kwargs(vit)
            state = {k: v for k, v in visual.state_dict().items() if k != "proj"}
            missing, unexpected = resized.load_state_dict(state, strict=False)
            if unexpected or set(missing) != {"proj"}:
                raise StyleIDError(f"student {architecture!r}: cannot resize its projection ({missing[:3]}, {unexpected[:3]})")
            visual = resized
            config = dataclasses.replace(config, backbone={"vit": vit}, embedding_dim=embedding_dim)
    config = dataclasses.replace(config, lora=LoraSettings(lora_rank=0), source=f"distilled:{architecture}/{pretrained or 'random'}")
    student = StyleIDEncoder(visual, config)
    for p in student.parameters():
        p.requires_grad_(True)
    return student


TEACHER = "teacher"  # `--student teacher`: the teacher itself, made cheaper (fewer layers, larger patches)


def shrink_teacher(teacher: StyleIDEncoder, layers: int = 0, patch: int = 0) -> StyleIDEncoder:
    """A cheaper copy of a CLIP-ViT teacher (LoRA merged) that starts close to it: `layers` of its blocks, evenly
    spaced from the first to the last (DistilBERT's initialisation), and patches `patch` px wide instead of p
    (a multiple of p): each new patch embedding is the mean of the k×k old ones it covers, and so is its
    position embedding. Tokens drop by k², so a ViT-L/14 teacher at 12 layers and 28-px patches costs ~8x less.
    0 picks the defaults: half the teacher's blocks, patches twice as wide. Every weight of the result trains."""
    merged = teacher.merged()
    source = merged.backbone
    vit = vit_kwargs_from_open_clip(source, merged.config)  # raises for towers that are not CLIP ViTs
    old_patch, depth = int(vit["patch_size"]), int(vit["layers"])
    layers = layers or max(1, depth // 2)
    patch = patch or 2 * old_patch
    if not 1 <= layers <= depth:
        raise StyleIDError(f"student layers must be from 1 to the teacher's {depth}, got {layers}")
    if patch % old_patch or (vit["image_size"] // old_patch) % (patch // old_patch):
        raise StyleIDError(f"student patch must be a multiple of the teacher's {old_patch} px that tiles its "
                           f"{vit['image_size'] // old_patch}-patch grid, got {patch}")
    k, grid = patch // old_patch, vit["image_size"] // old_patch
    state = to_fused_names(source.state_dict())
    keep = [round(i * (depth - 1) / max(1, layers - 1)) for i in range(layers)] if layers > 1 else [depth - 1]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("transformer.resblocks."):
            index, rest = key[len("transformer.resblocks."):].split(".", 1)
            if int(index) in keep:
                out[f"transformer.resblocks.{keep.index(int(index))}.{rest}"] = value
        elif key == "conv1.weight":  # [D, 3, p, p] → [D, 3, kp, kp]: the mean of the k×k sub-patch embeddings
            out[key] = value.repeat_interleave(k, 2).repeat_interleave(k, 3) / (k * k)
        elif key == "positional_embedding":  # CLS + grid² → CLS + (grid/k)², k×k means
            cls, pos = value[:1], value[1:].reshape(grid, grid, -1).permute(2, 0, 1)[None]
            out[key] = torch.cat([cls, F.avg_pool2d(pos, k)[0].permute(1, 2, 0).reshape(-1, value.shape[-1])])
        else:
            out[key] = value
    small = vit_from_kwargs(dict(vit, layers=layers, patch_size=patch))
    small.load_state_dict(out, strict=True)
    config = dataclasses.replace(merged.config, backbone={"vit": dict(vit, layers=layers, patch_size=patch)},
                                 lora=LoraSettings(lora_rank=0), source=f"distilled:teacher/{layers}x{patch}px")
    student = StyleIDEncoder(small, config)
    for p in student.parameters():
        p.requires_grad_(True)
    return student


# ---------------------------------------------------------------------- the loss
def distill_loss(student: torch.Tensor, teacher: torch.Tensor, lambda_cos: float = 1.0,
                 lambda_rel: float = 10.0) -> dict[str, torch.Tensor]:
    """L = λ_cos·mean(1 − cos(s_i, t_i)) + λ_rel·mean_{i≠j}((s_i·s_j − t_i·t_j)²), on L2-normalised fp32 rows.

    The cosine term pulls each embedding onto the teacher's; the relational term matches the batch's
    similarity structure, which is what verification and guidance read (a student that only matched the
    teacher's average direction would score high cosine and rank pairs at random)."""
    s, t = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    cos = 1.0 - (s * t).sum(-1).mean()
    n = s.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=s.device)
    rel = ((s @ s.T - t @ t.T)[off] ** 2).mean() if n > 1 else s.new_zeros(())
    return {"loss": lambda_cos * cos + lambda_rel * rel, "cos": cos, "rel": rel}


# ---------------------------------------------------------------------- the data
def distill_files(root: str | Path) -> list[Path]:
    files = list_images(root)
    if len(files) < 2:
        raise StyleIDError(f"--data {root}: found {len(files)} image(s); distillation needs a folder of images")
    return files


def files_digest(files: Sequence[Path], root: Path) -> str:
    """What the cached targets were computed for: the relative names, sizes and mtimes of the files."""
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def teacher_targets(teacher: StyleIDEncoder, files: Sequence[Path], root: Path, cache: Path, crop: str, precision: str,
                    teacher_key: str, batch_size: int = 32, progress: bool = True) -> torch.Tensor:
    """[N, D] teacher embeddings of `files` (fp32), read from `cache` when it was made for the same files,
    teacher and crop, else computed once and written there atomically."""
    meta = {"files": files_digest(files, root), "teacher": teacher_key, "crop": crop}
    if cache.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(cache), "pt") as f:
                stored = f.metadata() or {}
            if all(stored.get(k) == v for k, v in meta.items()):
                return load_file(str(cache))["targets"]
        except Exception:  # a damaged cache is recomputed, never trusted
            logger.warning("%s is unreadable; recomputing the teacher's targets", cache)
    from tqdm.auto import tqdm

    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(files), batch_size), desc="teacher", unit="batch", disable=not progress):
            out.append(teacher.embed([str(f) for f in files[i : i + batch_size]], crop=crop, batch_size=batch_size,
                                     precision=precision).float().cpu())
    targets = torch.cat(out)
    if not torch.isfinite(targets).all():
        raise StyleIDError(f"the teacher gives non-finite embeddings for some of --data {root}: is the teacher damaged?")
    with atomic_write(cache) as tmp:
        save_file({"targets": targets.contiguous()}, str(tmp), metadata=meta)
    return targets


class DistillDataset(torch.utils.data.Dataset):
    """(student pixels, teacher target) per image: the student sees what `embed(crop=...)` would feed it, so
    it learns the mapping it will be used with (crop="face" detects the face in each image, in the workers)."""

    def __init__(self, files: Sequence[Path], targets: torch.Tensor, student: StyleIDEncoder, crop: str) -> None:
        self.files, self.targets = list(files), targets
        self.size, self.mean, self.std = student.image_size, student.image_mean, student.image_std
        self.crop = crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return student_pixels(self.files[i], self.size, self.mean, self.std, self.crop), self.targets[i]


def student_pixels(path: Path, size: int, mean: Sequence[float], std: Sequence[float], crop: str) -> torch.Tensor:
    x = to_tensor(load_image(path))
    if crop == "face":
        from styleid_guidance.faces.detection import crop_faces

        x = crop_faces(x, out_size=size, detector=DEFAULT_DETECTOR, names=[str(path)])
        crop = "none"
    return clip_preprocess(x, size, mean, std, crop=crop)[0]


class StepBatches(torch.utils.data.Sampler):
    """Batch order as a pure function of (seed, step): step s on process r of w takes the rows
    (s·w + r)·B … +B of an endless stream of seeded permutations. A resumed run needs only its step."""

    def __init__(self, n: int, batch: int, seed: int, start_step: int, max_steps: int, rank: int = 0, world: int = 1):
        self.n, self.batch, self.seed = n, batch, seed
        self.start, self.stop, self.rank, self.world = start_step, max_steps, rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def batch_for(self, step: int) -> list[int]:
        first = (step * self.world + self.rank) * self.batch
        return [int(self._perm(g // self.n)[g % self.n]) for g in range(first, first + self.batch)]

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.batch_for(step)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

