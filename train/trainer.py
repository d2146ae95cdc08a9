"""The StyleID trainer, on accelerate: one code path for CPU, one GPU and `accelerate launch` (DDP).

Each step, every process takes a P×K identity-balanced batch, runs it through the encoder twice —
the frozen branch (LoRA off, no grad) for ẑ⁽⁰⁾ and the adapted branch for ẑ — and minimises the
paper's L_ang + λ_scon·L_scon + λ_reg·L_reg. Only LoRA and the angular head train.

Batch semantics: `ids_per_batch × images_per_id` is the batch of *each process* (the paper's 56 × 2
on one GPU); the effective batch is that × processes × grad_accum. L_scon sees the process-local
batch (no cross-process gather), exactly as with one GPU.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from styleid_guidance.encoder import StyleIDEncoder
from styleid_guidance.errors import StyleIDError
from styleid_guidance.images import atomic_write
from styleid_guidance.losses import StyleIDObjective

from . import checkpoint as ckpt
from .config import TrainConfig
from .data import IdentityDataset, TrainTransform, collate
from .sampler import IdentityBalancedBatchSampler

logger = logging.getLogger("styleid.train")

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"
FINAL = "final"

# settings that change what a checkpoint's tensors or the sample stream mean: resuming across a change
# of any of them would silently train something else
_INCOMPATIBLE = ("backbone", "pretrained", "lora_rank", "lora_alpha", "lora_targets", "ids_per_batch",
                 "images_per_id", "grad_accum", "seed", "augment")


class TrainStep(nn.Module):
    """Encoder + objective in one module, so DDP sees (and syncs) every trainable parameter."""

    def __init__(self, encoder: StyleIDEncoder, objective: StyleIDObjective) -> None:
        super().__init__()
        self.encoder = encoder
        self.objective = objective

    def forward(self, pixels: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad(), self.encoder.adapter_disabled():
            z0 = self.encoder.encode_pixels(pixels)
        z = self.encoder.encode_pixels(pixels)
        return self.objective(z, labels, z0)


def build_encoder(cfg: TrainConfig) -> StyleIDEncoder:
    # seeded so a random backbone (test-tiny, --pretrained none) is the same on every rank and resume
    torch.manual_seed(cfg.seed)
    return StyleIDEncoder.from_open_clip(cfg.backbone, pretrained=cfg.pretrained, lora_rank=cfg.lora_rank,
                                         lora_alpha=cfg.lora_alpha, lora_targets=cfg.lora_targets)


def frozen_checksum(module: nn.Module) -> float:
    """A cheap fingerprint of the frozen weights: catches resuming on another backbone init."""
    total = 0.0
    with torch.no_grad():
        for p in module.parameters():
            if not p.requires_grad:
                total += float(p.detach().double().abs().sum())
    return total


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return 0.5 * (1 + math.cos(math.pi * progress)) if cfg.lr_schedule == "cosine" else 1.0 - progress

    return factor


def save_final(encoder: StyleIDEncoder, output: Path, cfg: TrainConfig, step: int) -> Path:
    """Write OUTPUT/final/ atomically (temp folder + rename) via `save_pretrained`."""
    dest = output / FINAL
    tmp = output / f".tmp-{FINAL}"
    shutil.rmtree(tmp, ignore_errors=True)
    encoder.save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps({"step": step, "config": cfg.to_dict()}, indent=2))
    return ckpt.replace_dir(tmp, dest)


class MetricsLog:
    """Append-only JSONL on the main process; on resume, drops lines from after the checkpoint."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not (self.enabled and self.path.exists()):
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut by a kill: drop it
                continue
        with atomic_write(self.path) as tmp:
            tmp.write_text("".join(k + "\n" for k in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        from accelerate import Accelerator

        self.cfg = cfg
        self.output = Path(cfg.output)
        log_with = None if cfg.report_to == "none" else cfg.report_to
        if log_with == "tensorboard" and not _installed("tensorboard") and not _installed("tensorboardX"):
            raise StyleIDError("--report-to tensorboard: tensorboard is not installed (pip install tensorboard)")
        if log_with == "wandb" and not _installed("wandb"):
            raise StyleIDError("--report-to wandb: wandb is not installed (pip install wandb)")
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, log_with=log_with,
                                       project_dir=str(self.output))
        self.is_main = self.accelerator.is_main_process
        self.progress = progress and self.is_main
        self.metrics = MetricsLog(self.output / METRICS_FILE, self.is_main)

    # ------------------------------------------------------------------ helpers
    def _fingerprint(self, dataset: IdentityDataset | None, encoder: StyleIDEncoder) -> dict[str, Any]:
        ids = "\n".join(dataset.identities) if dataset is not None else ""
        return {
            **{k: getattr(self.cfg, k) for k in _INCOMPATIBLE},
            "num_processes": self.accelerator.num_processes,
            "identities_sha1": hashlib.sha1(ids.encode()).hexdigest(),
            "num_classes": dataset.num_classes if dataset is not None else 0,
            "frozen_checksum": frozen_checksum(encoder),
        }

    def _check_compatible(self, saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
        diffs = []
        for key, now in current.items():
            before = saved.get(key)
            if key == "frozen_checksum":
                if before is None or abs(before - now) > 1e-6 * max(1.0, abs(now)):
                    diffs.append("frozen backbone weights")
            elif before != now:
                diffs.append(f"{key} {before!r} → {now!r}")
        if diffs:
            raise StyleIDError(
                f"cannot resume from {where}: the run changed ({'; '.join(diffs)}); "
                f"use a new --output or --resume never with an empty output folder"
            )

    def _resume_point(self) -> Path | None:
        resume = self.cfg.resume
        if resume == "never":
            if ckpt.list_checkpoints(self.output):
                raise StyleIDError(f"--output {self.output} already holds checkpoints; use --resume auto, or a new --output")
            return None
        if resume == "auto":
            return ckpt.latest_checkpoint(self.output)
        path = Path(resume)
        if not (path / ckpt.STATE_FILE).is_file():
            raise StyleIDError(f"--resume {path}: not a training checkpoint folder (no {ckpt.STATE_FILE})")
        return path

    def _evaluate(self, encoder: StyleIDEncoder, step: int) -> dict[str, Any] | None:
        if not self.cfg.eval_pairs:
            return None
        from styleid_guidance.evaluation import evaluate_encoder

        was_training = encoder.training
        encoder.eval()
        with self.accelerator.autocast():
            report = evaluate_encoder(encoder, self.cfg.eval_pairs, crop=self.cfg.eval_crop)
        encoder.train(was_training)
        return report

    def _save_checkpoint(self, step: int, trainable: Callable[[], dict[str, torch.Tensor]], optimizer: Any,
                         scheduler: Any, state: dict[str, Any]) -> None:
        acc = self.accelerator
        tmp = ckpt.temp_dir(self.output, step)
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        ckpt.write_rank_files(tmp, acc.process_index)
        acc.wait_for_everyone()
        if self.is_main:
            ckpt.write_main_files(tmp, trainable(), optimizer, scheduler, acc.scaler, state)
            ckpt.publish(tmp, self.output, step, self.cfg.keep_last)
        acc.wait_for_everyone()

    # ------------------------------------------------------------------ main loop
    def run(self) -> Path:
        cfg, acc = self.cfg, self.accelerator
        if self.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temp(self.output)
        acc.wait_for_everyone()
        if cfg.max_steps == 0 and ckpt.list_checkpoints(self.output):
            raise StyleIDError(f"--output {self.output} holds a training run; export the untrained encoder (--max-steps 0) to a new --output")
        encoder = build_encoder(cfg)
        if cfg.max_steps == 0:
            # the untrained baseline: same architecture and LoRA init, zero updates
            if self.is_main:
                dest = save_final(encoder, self.output, cfg, 0)
                logger.info("exported the initial encoder to %s", dest)
            acc.wait_for_everyone()
            return self.output / FINAL

        transform = TrainTransform(encoder.image_size, encoder.image_mean, encoder.image_std, augment=cfg.augment)
        dataset = IdentityDataset(cfg.data, transform, layout=cfg.layout, check_images=cfg.check_images)
        sampler = IdentityBalancedBatchSampler(dataset.labels, cfg.ids_per_batch, cfg.images_per_id,
                                               num_replicas=acc.num_processes, rank=acc.process_index, seed=cfg.seed)
        torch.manual_seed(cfg.seed + 1)  # the angular head's init, independent of the backbone's
        objective = StyleIDObjective(encoder.embedding_dim, dataset.num_classes, margin=cfg.margin, scale=cfg.scale,
                                     temperature=cfg.temperature, lambda_scon=cfg.lambda_scon, lambda_reg=cfg.lambda_reg)
        if cfg.grad_checkpointing:
            encoder.set_grad_checkpointing(True)
        module = TrainStep(encoder, objective)
        params = [p for p in module.parameters() if p.requires_grad]
        trainable_names = [n for n, p in module.named_parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        fingerprint = self._fingerprint(dataset, encoder)

        start_step = 0
        resume_from = self._resume_point()
        if resume_from is not None:
            state = ckpt.read_state(resume_from)
            self._check_compatible(state["fingerprint"], fingerprint, resume_from)
            changed = {k: (state["config"].get(k), v) for k, v in cfg.to_dict().items()
                       if k not in _INCOMPATIBLE and state["config"].get(k) != v and k not in ("resume", "max_steps")}
            if changed and self.is_main:
                logger.warning("resuming with changed settings: %s", ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in changed.items()))
            tensors = ckpt.load_tensors(resume_from)
            missing = set(trainable_names) - set(tensors)
            if missing:
                raise StyleIDError(f"cannot resume from {resume_from}: it lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]})")
            module.load_state_dict(tensors, strict=False)
            optimizer.load_state_dict(ckpt.load_torch(resume_from / "optimizer.pt"))
            scheduler.load_state_dict(ckpt.load_torch(resume_from / "scheduler.pt"))
            sampler.load_state_dict(state["sampler"])
            start_step = int(state["step"])
            self._resume_rng = resume_from / f"rng-{acc.process_index}.pt"
            self.metrics.truncate_after(start_step)
            if self.is_main:
                logger.info("resumed from %s at step %d", resume_from, start_step)
        else:
            self._resume_rng = None
            self.metrics.truncate_after(-1)  # a fresh run: lines from an earlier, checkpoint-less attempt go

        model, optimizer = acc.prepare(module, optimizer)
        if resume_from is not None:
            scaler_file = resume_from / "scaler.pt"
            if acc.scaler is not None and scaler_file.exists():
                acc.scaler.load_state_dict(ckpt.load_torch(scaler_file))
            if self._resume_rng is not None and self._resume_rng.exists():
                ckpt.set_rng_state(ckpt.load_torch(self._resume_rng))
        if self.is_main:
            (self.output / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2))
        if cfg.report_to != "none":
            acc.init_trackers("styleid-train", config={k: v for k, v in cfg.to_dict().items() if v is not None})

        unwrapped: TrainStep = acc.unwrap_model(model)

        def trainable_state() -> dict[str, torch.Tensor]:
            named = dict(unwrapped.named_parameters())
            return {n: named[n] for n in trainable_names}

        if start_step >= cfg.max_steps:
            if self.is_main:
                save_final(unwrapped.encoder, self.output, cfg, start_step)
                logger.info("nothing to train: the checkpoint is at step %d ≥ --max-steps %d", start_step, cfg.max_steps)
            acc.wait_for_everyone()
            return self.output / FINAL

        if start_step == 0 and self.is_main:
            if (report := self._evaluate(unwrapped.encoder, 0)) is not None:
                self.metrics.write({"step": 0, "eval": report})
        acc.wait_for_everyone()

        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
            pin_memory=acc.device.type == "cuda", persistent_workers=False,
        )
        batches = iter(loader)
        model.train()
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start_step, desc="training", unit="step", disable=not self.progress,
                   dynamic_ncols=True)
        images_per_step = sampler.batch_size * cfg.grad_accum * acc.num_processes
        step, t_last, running = start_step, time.perf_counter(), None
        try:
            while step < cfg.max_steps:
                terms = {}
                for micro in range(cfg.grad_accum):
                    pixels, labels = next(batches)
                    pixels, labels = pixels.to(acc.device, non_blocking=True), labels.to(acc.device, non_blocking=True)
                    sync = micro == cfg.grad_accum - 1
                    with (contextlib.nullcontext() if sync else acc.no_sync(model)):
                        out = model(pixels, labels)
                        acc.backward(out["loss"] / cfg.grad_accum)
                    for k, v in out.items():
                        terms[k] = terms.get(k, 0.0) + v.detach().float() / cfg.grad_accum
                if cfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr = scheduler.get_last_lr()[0]  # the rate this step used
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                stacked = torch.stack([terms[k] for k in ("loss", "ang", "scon", "reg")])
                running = stacked if running is None else running + stacked
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    n = (step - 1) % cfg.log_every + 1
                    mean = acc.reduce(running / n, reduction="mean")
                    running = None
                    now = time.perf_counter()
                    record = {"step": step, **{k: round(float(v), 6) for k, v in zip(("loss", "ang", "scon", "reg"), mean)},
                              "lr": lr, "images_per_s": round(images_per_step * n / (now - t_last), 2)}
                    t_last = now
                    self.metrics.write(record)
                    if cfg.report_to != "none":
                        acc.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
                    bar.set_postfix({k: f"{record[k]:.3f}" for k in ("loss", "ang", "scon", "reg")})
                bar.update(1)
                if step % cfg.eval_every == 0 or step == cfg.max_steps:
                    if self.is_main and (report := self._evaluate(unwrapped.encoder, step)) is not None:
                        self.metrics.write({"step": step, "eval": report})
                        if cfg.report_to != "none":
                            acc.log({f"eval/{k}": v for k, v in report.items()}, step=step)
                    acc.wait_for_everyone()
                if step % cfg.save_every == 0 or step == cfg.max_steps:
                    state = {"step": step, "sampler": sampler.state_dict(step * cfg.grad_accum),
                             "fingerprint": fingerprint, "config": cfg.to_dict(), "time": time.time()}
                    self._save_checkpoint(step, trainable_state, optimizer, scheduler, state)
        finally:
            bar.close()
            del batches
        if self.is_main:
            dest = save_final(unwrapped.encoder, self.output, cfg, step)
            logger.info("wrote the trained encoder to %s", dest)
        acc.wait_for_everyone()
        if cfg.report_to != "none":
            acc.end_training()
        return self.output / FINAL


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) and return the `OUTPUT/final` folder."""
    return Trainer(cfg.validate(), progress=progress).run()
