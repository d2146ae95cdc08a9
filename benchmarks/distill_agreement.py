"""A distilled student vs its teacher, side by side in one run: guidance-step cost and agreement on held-out pairs.

Builds synthetic StyleBench-layout data (`styleid smoke-data`: training identities + held-out identities with
pairs.csv), a real-shaped teacher with random weights (ViT-L/14 by default, the released StyleID's shape; speed
does not depend on the weights), and runs `styleid distill` (the real command's code: teacher targets, the
accelerate loop, checkpoints) into a ViT-B/32-sized student. Its final report is printed: held-out AUROC of
teacher and student, the student↔teacher cosine per held-out image (raw and with the teacher's mean removed),
the correlation of their pair scores, and one guidance step (identity loss forward + backward to a 256 px image)
of each, timed interleaved. Goal: ≥ 5x cheaper guidance step at ≥ 0.95 agreement.

A random teacher is a stand-in: its scores are near chance (as any random encoder's), so agreement here says
how faithfully the student reproduces a ViT-L/14's function on faces and stylisations, not identity accuracy.

    python benchmarks/distill_agreement.py                               # CPU: 20 min on 2 quiet cores
    python benchmarks/distill_agreement.py --train-ids 12 --steps 60     # 10 min; agreement ≈ 0.91 (too few steps)
    python benchmarks/distill_agreement.py --student teacher             # the shrunk teacher as the student
    python benchmarks/distill_agreement.py --teacher-arch ViT-B-16 --steps 100
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher-arch", default="ViT-L-14", help="open_clip architecture of the random teacher")
    p.add_argument("--student", default="ViT-B-32", help="open_clip architecture of the student (random start), or teacher: "
                                                         "the teacher shrunk (half its blocks, 2x wider patches)")
    p.add_argument("--train-ids", type=int, default=24)
    p.add_argument("--eval-ids", type=int, default=8)
    p.add_argument("--levels", default="4", help="strength levels of the synthetic stylisations")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--lambda-rel", type=float, default=10.0)
    p.add_argument("--report-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default; 1 on a busy machine)")
    p.add_argument("--device", default=None)
    p.add_argument("--output", default=None, help="keep the run folder here (default: a temporary folder)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" or (args.device is None and torch.cuda.is_available()):
        import os

        os.environ.pop("ACCELERATE_USE_CPU", None)
    else:
        import os

        os.environ["ACCELERATE_USE_CPU"] = "1"  # accelerate: stay on the CPU even if a GPU is visible
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("styleid").setLevel(logging.INFO)

    from styleid_guidance import StyleIDEncoder
    from styleid_guidance.tiny.rng import seeded
    from styleid_guidance.tiny.smoke_data import make_smoke_dataset
    from styleid_guidance.train.distill.distiller import REPORT_FILE, distill
    from styleid_guidance.train.distill.config import DistillConfig
    from styleid_guidance.train.distill.report import format_report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.output) if args.output else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        levels = [int(v) for v in args.levels.replace(",", " ").split()]
        if not (root / "smoke" / "pairs.csv").is_file():
            make_smoke_dataset(root / "smoke", args.train_ids, args.eval_ids, levels, args.image_size, 0)
        paths = {"train": root / "smoke" / "stylebench-s", "pairs": root / "smoke" / "pairs.csv"}
        teacher_dir = root / "teacher"
        if not (teacher_dir / "styleid_config.json").is_file():
            with seeded(0):
                StyleIDEncoder.from_open_clip(args.teacher_arch, pretrained=None, lora_rank=0).save_pretrained(teacher_dir)
        cfg = DistillConfig(data=str(paths["train"]), teacher=str(teacher_dir), student=args.student, student_pretrained=None,
                            output=str(root / "run"), eval_pairs=str(paths["pairs"]), max_steps=args.steps,
                            images_per_batch=args.batch, lr=args.lr, lambda_rel=args.lambda_rel, warmup_steps=max(1, args.steps // 10),
                            num_workers=0, save_every=max(1, args.steps // 2), report_size=args.report_size,
                            teacher_precision="auto")
        distill(cfg, progress=sys.stderr.isatty())
        report = json.loads((root / "run" / REPORT_FILE).read_text())
        n_train = len(list(paths["train"].rglob("*.png")))
        start = "the teacher's blocks and patch embedding" if args.student == "teacher" else "random start"
        print(f"\nteacher {args.teacher_arch} (random weights) → student {args.student} ({start}), {n_train} training "
              f"images, {args.steps} steps × {args.batch}, {torch.get_num_threads()} thread(s), {time.perf_counter() - t0:.0f} s in all")
        for line in format_report(report):
            print(line)
        a, s = report["agreement"], report["guidance_step"]
        print(f"goal: ≥ 5x cheaper guidance step → {s['speedup']:.1f}x ({'meets' if s['speedup'] >= 5 else 'misses'}); "
              f"≥ 0.95 agreement → mean cosine {a['mean_cosine']:.3f} ({'meets' if a['mean_cosine'] >= 0.95 else 'misses'}), "
              f"pair-score Pearson {a['score_pearson']:.3f} ({'meets' if a['score_pearson'] >= 0.95 else 'misses'}), "
              f"centred cosine {a['mean_cosine_centred']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
