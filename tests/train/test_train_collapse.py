"""Regression test for the collapse of the default smoke configuration (issue: training you can trust).

Before the fix, `styleid-train --config configs/smoke.yaml` ended with every embedding pointing the
same way (held-out mean pairwise cosine 1.0000; a black image and noise scored 1.0000 "same"): the
angular margin wrapped past π and made collapse the loss's optimum.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from styleid_guidance import StyleIDEncoder
from styleid_guidance.cli import run
from styleid_guidance.tiny.smoke_data import make_smoke_dataset
from support import REPO

REPO = REPO


def test_smoke_config_trains_without_collapse_and_beats_the_untrained_encoder(tmp_path, capsys):
    data = make_smoke_dataset(tmp_path / "smoke")  # exactly what `styleid smoke-data smoke` writes
    out = tmp_path / "run"
    code = run(["train", "--config", str(REPO / "configs" / "smoke.yaml"), "--data", str(data["train"]),
                "--eval-pairs", str(data["pairs"]), "--output", str(out), "--no-progress"])
    assert code == 0
    evals = {r["step"]: r["eval"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval" in r}
    before, after = evals[0], evals[max(evals)]
    # not collapsed: the held-out embeddings keep a spread well below the collapsed value 1.0
    assert after["mean_cosine"] < 0.99, after["mean_cosine"]
    # and better than the untrained encoder on held-out identities
    assert after["auroc"] > before["auroc"] + 0.05, (before["auroc"], after["auroc"])
    summary = [line for line in capsys.readouterr().err.splitlines() if "untrained" in line]
    assert summary and f"untrained {before['auroc']:.3f} → trained {after['auroc']:.3f}" in summary[0]

    encoder = StyleIDEncoder.from_pretrained(out / "final").eval()
    with torch.no_grad():
        black, noise = encoder.embed(torch.stack([torch.zeros(3, 64, 64), torch.rand(3, 64, 64)]), crop="center")
    assert float(black @ noise) < 0.99  # the collapsed encoder called these "same" at 1.0000
