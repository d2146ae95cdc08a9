"""The StyleID trainer, on accelerate: one code path for CPU, one GPU and `accelerate launch` (DDP).

Each step, every process takes a P×K identity-balanced batch, runs it through the encoder twice —
the frozen branch (LoRA off, no grad) for ẑ⁽⁰⁾ and the adapted branch for ẑ — and minimises the
paper's L_ang + λ_scon·L_scon + λ_reg·L_reg. Only LoRA and the angular head train.

Batch semantics: `ids_per_batch × images_per_id` is the batch of *each process* (the paper's 56 × 2
on one GPU); the effective batch is that × processes × grad_accum. With `supcon_gather` (the
default) L_scon contrasts each process's anchors with the embeddings of *every* process, as
large-batch contrastive training does, so 4 GPUs × 14 identities see the paper's 56-identity batch.

Safety: a non-finite loss or gradient, or a collapsed embedding spread, stops the run with a
one-line error before anything is written (`train/runs/guard.py`); Ctrl-C or SIGTERM finishes the step,
writes a checkpoint and says where a re-run resumes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from styleid_guidance.encoder.model import StyleIDEncoder
from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.atomic import atomic_dir, atomic_write
from styleid_guidance.losses import StyleIDObjective

from .runs import checkpoint as ckpt
from .runs import resume
from .config import TrainConfig
from .data import IdentityDataset, TrainTransform, collate
from .runs.distributed import any_process
from .runs.guard import TrainingGuard, TrainingStopped
from .runs.interrupt import StopRequest, ignore_sigint
from .runs.runlog import MetricsLog
from .sampler import IdentityBalancedBatchSampler
from .step import TERMS, TrainStep, build_encoder, lr_lambda

logger = logging.getLogger("styleid.train")

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"
FINAL = "final"


def save_final(encoder: StyleIDEncoder, output: Path, cfg: TrainConfig, step: int) -> Path:
    """Write OUTPUT/final/ (the encoder + training.json) as one folder swapped in whole."""
    with atomic_dir(output / FINAL) as tmp:
        encoder.save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps({"step": step, "config": cfg.to_dict()}, indent=2))
    return output / FINAL


@dataclass
class _Run:
    """What one training run holds between its steps."""

    dataset: IdentityDataset
    sampler: IdentityBalancedBatchSampler
    module: TrainStep
    optimizer: Any
    scheduler: Any
    params: list[nn.Parameter]
    trainable_names: list[str]
    fingerprint: dict[str, Any]
    model: Any = None  # the accelerate-prepared module
    start_step: int = 0
    resumed_from: Path | None = None
    resume_bundle: dict[str, Any] | None = None  # what the checkpoint held, read once

    @property
    def encoder(self) -> StyleIDEncoder:
        return self.module.encoder

    def trainable_state(self) -> dict[str, torch.Tensor]:
        named = dict(self.module.named_parameters())
        return {n: named[n] for n in self.trainable_names}


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
                                       gradient_accumulation_steps=cfg.grad_accum, project_dir=str(self.output))
        self.is_main = self.accelerator.is_main_process
        self.progress = progress and self.is_main
        self.metrics = MetricsLog(self.output / METRICS_FILE, self.is_main)
        self.guard = TrainingGuard(cfg.collapse_threshold, cfg.collapse_patience)

    # ------------------------------------------------------------------ the run, step by step
    def run(self) -> Path:
        cfg, acc = self.cfg, self.accelerator
        self._prepare_output()
        encoder = build_encoder(cfg)
        if cfg.max_steps == 0:
            return self._export_untrained(encoder)
        run = self._build(encoder)
        self._resume(run)
        run.model, run.optimizer = acc.prepare(run.module, run.optimizer)
        self._restore_process_state(run)
        if self.is_main:
            with atomic_write(self.output / CONFIG_FILE) as tmp:
                tmp.write_text(json.dumps(cfg.to_dict(), indent=2))
        if cfg.report_to != "none":
            acc.init_trackers("styleid-train", config={k: v for k, v in cfg.to_dict().items() if v is not None})
        if run.start_step >= cfg.max_steps:
            if self.is_main:
                logger.info("nothing to train: the checkpoint is at step %d ≥ --max-steps %d", run.start_step, cfg.max_steps)
            return self._write_final(run, run.start_step)
        if run.start_step == 0:
            self._evaluate_and_log(run, 0)
        step = self._train(run)
        self._report_against_untrained(run, step)
        path = self._write_final(run, step)
        if cfg.report_to != "none":
            acc.end_training()
        return path

    def _prepare_output(self) -> None:
        if self.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temp(self.output)
        self.accelerator.wait_for_everyone()
        if self.cfg.max_steps == 0 and ckpt.list_checkpoints(self.output):
            raise StyleIDError(f"--output {self.output} holds a training run; export the untrained encoder (--max-steps 0) to a new --output")

    def _export_untrained(self, encoder: StyleIDEncoder) -> Path:
        # the untrained baseline: same architecture and LoRA init, zero updates
        if self.is_main:
            dest = save_final(encoder, self.output, self.cfg, 0)
            logger.info("exported the initial encoder to %s", dest)
        self.accelerator.wait_for_everyone()
        return self.output / FINAL

    def _build(self, encoder: StyleIDEncoder) -> _Run:
        cfg, acc = self.cfg, self.accelerator
        transform = TrainTransform(encoder.image_size, encoder.image_mean, encoder.image_std, augment=cfg.augment)
        dataset = IdentityDataset(cfg.data, transform, layout=cfg.layout, check_images=cfg.check_images)
        sampler = IdentityBalancedBatchSampler(dataset.labels, cfg.ids_per_batch, cfg.images_per_id,
                                               num_replicas=acc.num_processes, rank=acc.process_index, seed=cfg.seed)
        torch.manual_seed(cfg.seed + 1)  # the angular head's init, independent of the backbone's
        objective = StyleIDObjective(encoder.embedding_dim, dataset.num_classes, margin=cfg.margin, scale=cfg.angular_scale,
                                     temperature=cfg.temperature, lambda_scon=cfg.lambda_scon, lambda_reg=cfg.lambda_reg)
        if cfg.grad_checkpointing:
            encoder.set_grad_checkpointing(True)
        module = TrainStep(encoder, objective, gather=cfg.supcon_gather and acc.num_processes > 1)
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return _Run(dataset=dataset, sampler=sampler, module=module, optimizer=optimizer,
                    scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg)), params=params,
                    trainable_names=[n for n, p in module.named_parameters() if p.requires_grad],
                    fingerprint=resume.fingerprint(self.cfg, dataset, encoder, self.accelerator.num_processes))

    def _resume(self, run: _Run) -> None:
        resume_from = resume.resume_point(self.cfg, self.output)
        if resume_from is None:
            self.metrics.truncate_after(-1)  # a fresh run: lines from an earlier, checkpoint-less attempt go
            return
        bundle, resume_from = self._read_resumable(resume_from)
        state = bundle["state"]
        resume.check_compatible(state["fingerprint"], run.fingerprint, resume_from)
        changed = resume.changed_settings(state["config"], self.cfg)
        if changed and self.is_main:
            logger.warning("resuming with changed settings: %s", ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in changed.items()))
        missing = set(run.trainable_names) - set(bundle["tensors"])
        if missing:
            raise StyleIDError(f"cannot resume from {resume_from}: it lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]})")
        run.module.load_state_dict(bundle["tensors"], strict=False)
        run.optimizer.load_state_dict(bundle["optimizer"])
        run.scheduler.load_state_dict(bundle["scheduler"])
        # the saved states carry the old lr and weight decay; a resume that changes them means the new ones
        run.scheduler.base_lrs = [self.cfg.lr] * len(run.optimizer.param_groups)
        factor = lr_lambda(self.cfg)(run.scheduler.last_epoch)
        for group in run.optimizer.param_groups:
            group.update(initial_lr=self.cfg.lr, lr=self.cfg.lr * factor, weight_decay=self.cfg.weight_decay)
        run.sampler.load_state_dict(state["sampler"])
        run.start_step, run.resumed_from, run.resume_bundle = int(state["step"]), resume_from, bundle
        self.metrics.truncate_after(run.start_step)
        if self.is_main:
            logger.info("resumed from %s at step %d", resume_from, run.start_step)

    def _read_resumable(self, first: Path) -> tuple[dict[str, Any], Path]:
        """The newest checkpoint that reads whole; with --resume auto a damaged one falls back to the
        one before it (and says so). An explicit --resume FOLDER must itself be readable."""
        candidates = [first]
        if self.cfg.resume == "auto":
            candidates = [d for _, d in reversed(ckpt.list_checkpoints(self.output))]
        for i, folder in enumerate(candidates):
            try:
                return ckpt.read_checkpoint(folder, self.accelerator.process_index), folder
            except ckpt.DamagedCheckpoint as err:
                if i + 1 == len(candidates):
                    raise StyleIDError(f"cannot resume: {err}; no older checkpoint is readable — use a new --output") from None
                if self.is_main:
                    logger.warning("%s; resuming from the previous checkpoint, %s, instead", err, candidates[i + 1])
        raise AssertionError("unreachable")

    def _restore_process_state(self, run: _Run) -> None:
        bundle = run.resume_bundle
        if bundle is None:
            return
        if self.accelerator.scaler is not None and bundle["scaler"] is not None:
            self.accelerator.scaler.load_state_dict(bundle["scaler"])
        if bundle["rng"] is not None:
            ckpt.set_rng_state(bundle["rng"])

    def _train(self, run: _Run) -> int:
        """The optimisation loop; returns the last completed step."""
        cfg, acc = self.cfg, self.accelerator
        from tqdm.auto import tqdm

        loader = torch.utils.data.DataLoader(
            run.dataset, batch_sampler=run.sampler, collate_fn=collate, num_workers=cfg.num_workers,
            pin_memory=acc.device.type == "cuda", persistent_workers=False,
            worker_init_fn=ignore_sigint if cfg.num_workers else None,
        )
        batches = iter(loader)
        run.model.train()
        bar = tqdm(total=cfg.max_steps, initial=run.start_step, desc="training", unit="step", disable=not self.progress,
                   dynamic_ncols=True)
        step, running, n_running, t_last = run.start_step, None, 0, time.perf_counter()
        try:
            with StopRequest() as stop:
                while step < cfg.max_steps:
                    terms, lr = self._optimizer_step(run, batches, step + 1)
                    step += 1
                    running = terms if running is None else running + terms
                    n_running += 1
                    bar.update(1)
                    if step % cfg.log_every == 0 or step == cfg.max_steps:
                        self._log(step, acc.reduce(running / n_running, reduction="mean"), lr, n_running, t_last, bar)
                        running, n_running, t_last = None, 0, time.perf_counter()
                    if step % cfg.eval_every == 0 or step == cfg.max_steps:
                        self._evaluate_and_log(run, step)
                    interrupted, saved = any_process(stop.requested, acc.device), None
                    if interrupted or step % cfg.save_every == 0 or step == cfg.max_steps:
                        saved = self._save_checkpoint(run, step)
                    if interrupted:
                        self._stop_for_interrupt(step, saved)
        finally:
            bar.close()
            del batches
        return step

    def _optimizer_step(self, run: _Run, batches: Any, step: int) -> tuple[torch.Tensor, float]:
        """One optimizer step over `grad_accum` micro-batches; checks the result before applying it."""
        cfg, acc = self.cfg, self.accelerator
        terms: torch.Tensor | None = None
        for _ in range(cfg.grad_accum):
            pixels, labels = next(batches)
            pixels, labels = pixels.to(acc.device, non_blocking=True), labels.to(acc.device, non_blocking=True)
            with acc.accumulate(run.model):
                out = run.model(pixels, labels)
                acc.backward(out["loss"])  # accelerate divides by grad_accum
            micro = torch.stack([out[k].detach().float() for k in TERMS]) / cfg.grad_accum
            terms = micro if terms is None else terms + micro
        # the norm is taken after DDP's all-reduce, so every process sees the same value and stops together
        grad_norm = acc.clip_grad_norm_(run.params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
        self.guard.check_step(step, {k: float(v) for k, v in zip(TERMS[:4], terms[:4])}, float(grad_norm),
                              self._divergence_hint())
        lr = run.optimizer.param_groups[0]["lr"]  # the rate this step uses
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        return terms, lr

    def _log(self, step: int, mean: torch.Tensor, lr: float, n: int, t_last: float, bar: Any) -> None:
        cfg = self.cfg
        images = self.accelerator.num_processes * cfg.ids_per_batch * cfg.images_per_id * cfg.grad_accum * n
        record = {"step": step, **{k: round(float(v), 6) for k, v in zip(TERMS, mean)}, "lr": lr,
                  "images_per_s": round(images / (time.perf_counter() - t_last), 2)}
        self.metrics.write(record)
        if cfg.report_to != "none":
            self.accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
        bar.set_postfix({k: f"{record[k]:.3f}" for k in ("loss", "ang", "scon", "reg", "cos")})
        self.guard.check_spread(step, record["cos"], record["cos0"], self._collapse_hint())

    def _evaluate_and_log(self, run: _Run, step: int) -> None:
        if self.is_main and (report := self._evaluate(run.encoder, step)) is not None:
            self.metrics.write({"step": step, "eval": report})
            if self.cfg.report_to != "none":
                self.accelerator.log({f"eval/{k}": v for k, v in report.items() if not isinstance(v, dict)}, step=step)
        self.accelerator.wait_for_everyone()

    def _evaluate(self, encoder: StyleIDEncoder, step: int) -> dict[str, Any] | None:
        if not self.cfg.eval_pairs:
            return None
        from styleid_guidance.eval import NonFiniteEmbeddings, evaluate_encoder

        was_training = encoder.training
        encoder.eval()
        try:
            with self.accelerator.autocast():
                return evaluate_encoder(encoder, self.cfg.eval_pairs, crop=self.cfg.eval_crop)
        except NonFiniteEmbeddings:
            raise TrainingStopped(f"training stopped at step {step}: the encoder's embeddings of --eval-pairs went "
                                  f"non-finite; {self._divergence_hint()}") from None
        finally:
            encoder.train(was_training)

    def _save_checkpoint(self, run: _Run, step: int) -> Path | None:
        """Write a checkpoint unless the spread is suspect (so the kept ones are from before it)."""
        if self.guard.suspect:
            if self.is_main:
                logger.warning("step %d: not checkpointing while the embedding spread is suspect", step)
            return None
        self._check_weights_finite(run, step)
        state = {"step": step, "sampler": run.sampler.state_dict(step * self.cfg.grad_accum),
                 "fingerprint": run.fingerprint, "config": self.cfg.to_dict(), "time": time.time()}
        return ckpt.save(self.accelerator, self.output, step, run.trainable_state(), run.optimizer, run.scheduler, state,
                         self.cfg.keep_last)

    def _stop_for_interrupt(self, step: int, saved: Path | None) -> None:
        last = ckpt.latest_checkpoint(self.output)
        where = (f"saved {saved}" if saved is not None else
                 f"no checkpoint written at this step; the newest is {last}" if last is not None else "no checkpoint yet")
        resume_step = ckpt.list_checkpoints(self.output)[-1][0] if last is not None else 0
        if self.is_main:
            logger.warning("interrupted at step %d (%s); run the same command again to resume from step %d",
                           step, where, resume_step)
        raise KeyboardInterrupt

    def _report_against_untrained(self, run: _Run, step: int) -> None:
        """The check every trained model gets: held-out AUROC against the untrained encoder, and spread."""
        after = self.metrics.eval_at(step) if self.is_main else None
        collapsed = bool(after) and after.get("mean_cosine", 0.0) >= self.cfg.collapse_threshold
        if any_process(collapsed, self.accelerator.device):
            raise TrainingStopped(
                f"training finished but the encoder is collapsed on --eval-pairs (mean pairwise cosine "
                f"{after['mean_cosine'] if after else float('nan'):.5f}): it would call every pair 'same'; final/ was not written; "
                f"{self._collapse_hint()}")
        if not self.is_main:
            return
        before = self.metrics.eval_at(0)
        if after is None or before is None:
            if not self.cfg.eval_pairs:
                logger.info("tip: --eval-pairs PAIRS.csv reports held-out AUROC before and after training")
            return
        gain = after["auroc"] - before["auroc"]
        logger.info("held-out AUROC on %s: untrained %.3f → trained %.3f (%+.3f); mean pairwise cosine %.3f → %.3f",
                    self.cfg.eval_pairs, before["auroc"], after["auroc"], gain, before["mean_cosine"], after["mean_cosine"])
        if gain <= 0:
            logger.warning("the trained encoder is not better than the untrained one on the held-out pairs")

    def _write_final(self, run: _Run, step: int) -> Path:
        self._check_weights_finite(run, step)
        if self.is_main:
            dest = save_final(run.encoder, self.output, self.cfg, step)
            logger.info("wrote the trained encoder to %s", dest)
        self.accelerator.wait_for_everyone()
        return self.output / FINAL

    # ------------------------------------------------------------------ helpers
    def _check_weights_finite(self, run: _Run, step: int) -> None:
        """The last line of defence: a step with a finite gradient can still blow the weights up."""
        if not all(bool(torch.isfinite(p.detach()).all()) for p in run.params):
            raise TrainingStopped(f"training stopped at step {step}: the trained weights went non-finite; "
                                  f"{self._divergence_hint()}")

    def _divergence_hint(self) -> str:
        last = ckpt.latest_checkpoint(self.output)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
        fp16 = " or --mixed-precision bf16 instead of fp16" if self.cfg.mixed_precision == "fp16" else ""
        return f"{kept} and final/ was not written; try a lower --lr (now {self.cfg.lr:g}), --max-grad-norm 1.0{fp16}"

    def _collapse_hint(self) -> str:
        last = ckpt.latest_checkpoint(self.output)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written"
        return (f"{kept} and final/ was not written; try a lower --lr (now {self.cfg.lr:g}) or --lora-alpha "
                f"(now {self.cfg.lora_alpha:g}), or a larger --lambda-reg (now {self.cfg.lambda_reg:g})")



def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) and return the `OUTPUT/final` folder."""
    # replace() re-runs the config's checks, so a TrainConfig edited after construction is checked too
    return Trainer(dataclasses.replace(cfg), progress=progress).run()
