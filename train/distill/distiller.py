"""`styleid distill`: distil a StyleID teacher into a small open_clip student, on accelerate like the trainer.

The teacher embeds every image once (cached in OUTPUT/teacher_targets.safetensors); the student then learns
λ_cos·(1 − cos) + λ_rel·(pairwise-similarity matching) against those targets (`student.py`). One code
path for CPU, one GPU and `accelerate launch`; atomic checkpoints with keep-last-N and automatic resume
(`train/runs/`: checkpoint, resume); a non-finite step stops the run before anything is written (`runs/guard.py`);
Ctrl-C finishes the step and checkpoints (`runs/interrupt.py`). The result, OUTPUT/final/, is a StyleID encoder
folder: `StyleIDEncoder.from_pretrained(dir)` and `build_identity_loss("styleid", model=dir)` take it.
With --eval-pairs the run ends with the report of `report.py` (agreement and guidance-step cost).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from styleid_guidance.encoder.model import StyleIDEncoder
from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.atomic import atomic_dir, atomic_write

from ..runs import checkpoint as ckpt
from .config import INCOMPATIBLE, DistillConfig
from .student import TARGETS_FILE, TEACHER, DistillDataset, StepBatches, build_student, distill_files, distill_loss, \
    files_digest, shrink_teacher, teacher_targets
from ..runs.distributed import any_process
from ..runs.guard import TrainingGuard, TrainingStopped
from ..runs.interrupt import StopRequest, ignore_sigint
from ..runs.resume import resume_point
from ..runs.runlog import MetricsLog
from ..step import lr_lambda

logger = logging.getLogger("styleid.distill")

METRICS_FILE = "metrics.jsonl"
REPORT_FILE = "distill_report.json"
FINAL = "final"
TERMS = ("loss", "cos", "rel")


class _Forward(nn.Module):
    """The student's embedding as the module's forward, so accelerate (autocast, DDP) wraps it."""

    def __init__(self, student: StyleIDEncoder) -> None:
        super().__init__()
        self.student = student

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.student.encode_pixels(pixels, "fp32")  # accelerate's autocast (--mixed-precision) applies


class Distiller:
    def __init__(self, cfg: DistillConfig, progress: bool = True) -> None:
        from accelerate import Accelerator

        self.cfg = cfg
        self.output = Path(cfg.output)
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
        self.is_main = self.accelerator.is_main_process
        self.progress = progress and self.is_main
        self.metrics = MetricsLog(self.output / METRICS_FILE, self.is_main)
        self.guard = TrainingGuard()

    def run(self) -> Path:
        cfg, acc = self.cfg, self.accelerator
        if self.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temp(self.output)
        acc.wait_for_everyone()
        root = Path(cfg.data)
        if not root.is_dir():
            raise StyleIDError(f"--data {root}: no such folder")
        files = distill_files(root)
        teacher = StyleIDEncoder.from_pretrained(cfg.teacher, device=acc.device).eval().requires_grad_(False)
        targets = self._targets(teacher, files, root)
        if cfg.student == TEACHER:
            student = shrink_teacher(teacher, cfg.student_layers, cfg.student_patch).to(acc.device)
        else:
            student = build_student(cfg.student, cfg.student_pretrained, teacher.embedding_dim, cfg.seed).to(acc.device)
        optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
        fingerprint = {**{k: getattr(cfg, k) for k in INCOMPATIBLE}, "num_processes": acc.num_processes,
                       "files": files_digest(files, root), "teacher_dim": teacher.embedding_dim}
        start, bundle = self._resume(student, optimizer, scheduler, fingerprint)
        model, optimizer = acc.prepare(_Forward(student), optimizer)
        if bundle is not None:
            if acc.scaler is not None and bundle["scaler"] is not None:
                acc.scaler.load_state_dict(bundle["scaler"])
            if bundle["rng"] is not None:
                ckpt.set_rng_state(bundle["rng"])
        if start < cfg.max_steps:
            dataset = DistillDataset(files, targets, student, cfg.crop)
            sampler = StepBatches(len(files), cfg.images_per_batch, cfg.seed, start, cfg.max_steps,
                                  acc.process_index, acc.num_processes)
            self._loop(model, student, optimizer, scheduler, dataset, sampler, start, fingerprint)
        elif self.is_main:
            logger.info("nothing to train: the checkpoint is at step %d ≥ --max-steps %d", start, cfg.max_steps)
        final = self._write_final(student, max(start, cfg.max_steps))
        if cfg.eval_pairs and self.is_main:
            self.report(teacher, student.eval())
        acc.wait_for_everyone()
        return final

    # ------------------------------------------------------------------ pieces
    def _targets(self, teacher: StyleIDEncoder, files: list[Path], root: Path) -> torch.Tensor:
        cfg, acc = self.cfg, self.accelerator
        args = (teacher, files, root, self.output / TARGETS_FILE, cfg.crop, cfg.teacher_precision, cfg.teacher)
        targets = teacher_targets(*args, progress=self.progress) if self.is_main else None
        acc.wait_for_everyone()  # the other processes read what the main one wrote
        return targets if targets is not None else teacher_targets(*args, progress=False)

    def _resume(self, student: StyleIDEncoder, optimizer: Any, scheduler: Any,
                fingerprint: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        folder = resume_point(self.cfg, self.output)
        if folder is None:
            self.metrics.truncate_after(-1)
            return 0, None
        try:
            bundle = ckpt.read_checkpoint(folder, self.accelerator.process_index)
        except ckpt.DamagedCheckpoint as err:
            raise StyleIDError(f"cannot resume: {err}; delete it or use a new --output") from None
        saved = bundle["state"]["fingerprint"]
        diffs = [f"{k} {saved.get(k)!r} → {v!r}" for k, v in fingerprint.items() if saved.get(k) != v]
        if diffs:
            raise StyleIDError(f"cannot resume from {folder}: the run changed ({'; '.join(diffs)}); use a new --output")
        student.load_state_dict(bundle["tensors"], strict=True)
        optimizer.load_state_dict(bundle["optimizer"])
        scheduler.load_state_dict(bundle["scheduler"])
        scheduler.base_lrs = [self.cfg.lr] * len(optimizer.param_groups)  # a resume may change --lr
        step = int(bundle["state"]["step"])
        self.metrics.truncate_after(step)
        if self.is_main:
            logger.info("resumed from %s at step %d", folder, step)
        return step, bundle

    def _loop(self, model: Any, student: StyleIDEncoder, optimizer: Any, scheduler: Any, dataset: DistillDataset,
              sampler: StepBatches, start: int, fingerprint: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        cfg, acc = self.cfg, self.accelerator
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                                             pin_memory=acc.device.type == "cuda",
                                             worker_init_fn=ignore_sigint if cfg.num_workers else None)
        model.train()
        bar = tqdm(total=cfg.max_steps, initial=start, desc="distilling", unit="step", disable=not self.progress,
                   dynamic_ncols=True)
        step, running, n, t_last = start, None, 0, time.perf_counter()
        try:
            with StopRequest() as stop:
                for pixels, targets in loader:
                    pixels, targets = pixels.to(acc.device, non_blocking=True), targets.to(acc.device, non_blocking=True)
                    out = distill_loss(model(pixels), targets, cfg.lambda_cos, cfg.lambda_rel)
                    acc.backward(out["loss"])
                    norm = acc.clip_grad_norm_(student.parameters(), cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
                    terms = torch.stack([out[k].detach().float() for k in TERMS])
                    self.guard.check_step(step + 1, dict(zip(TERMS, terms.tolist())), float(norm),
                                          f"try a lower --lr (now {cfg.lr:g}); the last good checkpoint is "
                                          f"{ckpt.latest_checkpoint(self.output)}")
                    lr = optimizer.param_groups[0]["lr"]
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    bar.update(1)
                    running, n = (terms if running is None else running + terms), n + 1
                    if step % cfg.log_every == 0 or step == cfg.max_steps:
                        mean = acc.reduce(running / n, reduction="mean")
                        images = acc.num_processes * cfg.images_per_batch * n
                        record = {"step": step, **{k: round(float(v), 6) for k, v in zip(TERMS, mean)}, "lr": lr,
                                  "images_per_s": round(images / (time.perf_counter() - t_last), 2)}
                        self.metrics.write(record)
                        bar.set_postfix({k: f"{record[k]:.4f}" for k in TERMS})
                        running, n, t_last = None, 0, time.perf_counter()
                    interrupted = any_process(stop.requested, acc.device)
                    if interrupted or step % cfg.save_every == 0 or step == cfg.max_steps:
                        saved = self._checkpoint(student, optimizer, scheduler, step, fingerprint)
                    if interrupted:
                        if self.is_main:
                            logger.warning("interrupted at step %d (saved %s); run the same command again to resume", step, saved)
                        raise KeyboardInterrupt
        finally:
            bar.close()

    def _checkpoint(self, student: StyleIDEncoder, optimizer: Any, scheduler: Any, step: int,
                    fingerprint: dict[str, Any]) -> Path:
        self._check_finite(student, step)
        state = {"step": step, "sampler": {"step": step}, "fingerprint": fingerprint, "config": self.cfg.to_dict(),
                 "time": time.time()}
        return ckpt.save(self.accelerator, self.output, step, student.state_dict(), optimizer, scheduler, state,
                         self.cfg.keep_last)

    def _check_finite(self, student: StyleIDEncoder, step: int) -> None:
        if not all(bool(torch.isfinite(p.detach()).all()) for p in student.parameters()):
            raise TrainingStopped(f"distillation stopped at step {step}: the student's weights went non-finite; "
                                  f"try a lower --lr (now {self.cfg.lr:g})")

    def _write_final(self, student: StyleIDEncoder, step: int) -> Path:
        self._check_finite(student, step)
        dest = self.output / FINAL
        if self.is_main:
            with atomic_dir(dest) as tmp:
                student.requires_grad_(False).save_pretrained(tmp)
                (tmp / "distill.json").write_text(json.dumps({"step": step, "config": self.cfg.to_dict()}, indent=2))
            logger.info("wrote the student encoder to %s", dest)
        self.accelerator.wait_for_everyone()
        return dest

    def report(self, teacher: StyleIDEncoder, student: StyleIDEncoder) -> dict[str, Any]:
        from .report import agreement_report, format_report, speed_report

        result = {"agreement": agreement_report(teacher, student, self.cfg.eval_pairs, self.cfg.crop),
                  "guidance_step": speed_report(teacher, student, self.cfg.report_size)}
        with atomic_write(self.output / REPORT_FILE) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
        for line in format_report(result):
            logger.info(line)
        return result


def distill(cfg: DistillConfig, progress: bool = True) -> Path:
    """Distil (or resume) per `cfg`; returns the OUTPUT/final folder (a StyleID encoder)."""
    return Distiller(dataclasses.replace(cfg), progress=progress).run()
