"""How good and how cheap a distilled student is, measured side by side with its teacher in one run.

Agreement on held-out pairs (the `styleid eval` CSV): AUROC of teacher and student, the mean cosine between
their embeddings of each held-out image, and how well the student's pair scores track the teacher's
(Pearson r; ranking agreement = Spearman ρ). Because a random or barely trained teacher maps every face close
to one average direction, the raw cosine is also reported after removing the teacher's mean embedding
("centred"), which no constant predictor can fake.

Cost: one guidance step = identity loss forward + backward to the image (what diffusion guidance and JoJoGAN
pay per step), teacher and student interleaved round by round, medians.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from styleid_guidance.encoder.model import StyleIDEncoder
from styleid_guidance.metrics.verification import auroc


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    return r


def agreement_report(teacher: StyleIDEncoder, student: StyleIDEncoder, pairs_csv: str | Path, crop: str = "center",
                     batch_size: int = 32) -> dict[str, Any]:
    """Scores of teacher and student on the held-out pairs, and how closely the student follows the teacher."""
    from styleid_guidance.eval.pairs import read_pairs

    pairs = read_pairs(pairs_csv)
    files = list(dict.fromkeys([p.source for p in pairs] + [p.stylized for p in pairs]))
    index = {f: i for i, f in enumerate(files)}
    with torch.no_grad():
        zt = teacher.embed([str(f) for f in files], crop=crop, batch_size=batch_size, precision="fp32").float().cpu()
        zs = student.embed([str(f) for f in files], crop=crop, batch_size=batch_size, precision="fp32").float().cpu()
    a = torch.tensor([index[p.source] for p in pairs])
    b = torch.tensor([index[p.stylized] for p in pairs])
    st, ss = (zt[a] * zt[b]).sum(-1).numpy(), (zs[a] * zs[b]).sum(-1).numpy()
    labels = np.array([p.label for p in pairs])
    mu = zt.mean(0, keepdim=True)
    centred = torch.nn.functional.cosine_similarity(zt - mu, zs - mu, dim=-1)
    return {
        "pairs": len(pairs), "images": len(files),
        "auroc_teacher": auroc(st, labels), "auroc_student": auroc(ss, labels),
        "mean_cosine": float((zt * zs).sum(-1).mean()),
        "mean_cosine_centred": float(centred.mean()),
        "score_pearson": float(np.corrcoef(st, ss)[0, 1]),
        "score_spearman": float(np.corrcoef(_ranks(st), _ranks(ss))[0, 1]),
        "teacher_mean_pairwise_cosine": float((zt @ zt.T).mean()),
    }


def guidance_step(encoder: StyleIDEncoder, size: int, batch: int = 1, precision: str = "fp32") -> Callable[[], None]:
    """A closure that runs one identity-guidance step's encoder work: loss forward + backward to the pixels."""
    from styleid_guidance.identity_losses import StyleIDLoss

    gen = torch.Generator().manual_seed(0)
    device = encoder.device
    loss = StyleIDLoss(encoder, reference=torch.rand(1, 3, size, size, generator=gen).to(device), crop="center",
                       precision=precision)
    images = torch.rand(batch, 3, size, size, generator=gen).to(device)

    def step() -> None:
        x = images.clone().requires_grad_(True)
        loss(x).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def speed_report(teacher: StyleIDEncoder, student: StyleIDEncoder, size: int = 256, rounds: int = 5,
                 precision: str = "fp32") -> dict[str, Any]:
    """Median seconds per guidance step for teacher and student, measured interleaved."""
    steps = {"teacher": guidance_step(teacher, size, precision=precision),
             "student": guidance_step(student, size, precision=precision)}
    for run in steps.values():
        run()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, run in steps.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"size": size, "rounds": rounds, "precision": precision, "teacher_s": med["teacher"], "student_s": med["student"],
            "speedup": med["teacher"] / med["student"]}


def format_report(result: dict[str, Any]) -> list[str]:
    a, s = result["agreement"], result["guidance_step"]
    return [
        f"held-out pairs: {a['pairs']} ({a['images']} images)",
        f"  AUROC teacher {a['auroc_teacher']:.4f}  student {a['auroc_student']:.4f}  "
        f"(difference {a['auroc_student'] - a['auroc_teacher']:+.4f})",
        f"  cosine student↔teacher per image: mean {a['mean_cosine']:.4f}, centred {a['mean_cosine_centred']:.4f} "
        f"(teacher's own mean pairwise cosine {a['teacher_mean_pairwise_cosine']:.4f})",
        f"  pair scores: Pearson r {a['score_pearson']:.4f}, Spearman ρ {a['score_spearman']:.4f}",
        f"guidance step ({s['size']} px, {s['precision']}, median of {s['rounds']}): teacher {s['teacher_s']:.3f} s, "
        f"student {s['student_s']:.3f} s → {s['speedup']:.1f}x cheaper",
    ]
