"""`styleid score --protocol consisid` equals ConsisID's FaceSim-Arc algorithm (eval/get_facesim_fid.py), written
here again straight from its description on insightface's own FaceAnalysis: det size 320, the largest face, a
retry on a 1.25x grey-padded copy, cosine clipped at 0, no-face frames left out, 0.0 for a clip without a face.
Run on a tiny gated pack whose detector fires only where the image under one anchor is bright, so the three
cases (found at once, found on the padded copy, not found) are each exercised."""
from __future__ import annotations

import json

import numpy as np
import pytest

from styleid_guidance.cli import run
from video_support import decode_all, write_video
from support import score_cache  # noqa: F401 (score_cache: an autouse fixture)

FaceAnalysis = pytest.importorskip("insightface.app").FaceAnalysis
cv2 = pytest.importorskip("cv2")

SIDE = 160  # frames are SIDE²: at det size 320 the anchor (96, 96) sees pixels [48, 56)², on the padded copy [32, 44)²


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    from styleid_guidance.tiny.insightface_pack import ASTRONAUT_TARGETS, Target, build_pack

    face = ASTRONAUT_TARGETS[0]
    gated = Target(16, 96.0, 96.0, -1.0, (2.0, 2.0, 2.0, 2.5), face.kps)
    return build_pack(tmp_path_factory.mktemp("pack") / "models" / "gated", (gated,), gate=8.0)


def _frame(kind: str, seed: int) -> np.ndarray:
    """"face": bright texture everywhere; "retry": dark, bright only where the padded copy looks; "none": dark."""
    rng = np.random.default_rng(seed)
    bright = rng.integers(170, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    dark = rng.integers(0, 40, (SIDE, SIDE, 3), dtype=np.uint8)
    if kind == "face":
        return bright
    if kind == "retry":
        out = dark.copy()
        out[24:46, 24:46] = bright[24:46, 24:46]
        return out
    return dark


def _reference_facesim(pack, ref_rgb: np.ndarray, frames: list[np.ndarray], n: int = 16) -> tuple[float, list]:
    """ConsisID's FaceSim-Arc, re-written from the script's description (no code of it copied)."""
    app = FaceAnalysis(name=str(pack), providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=0, det_size=(320, 320))

    retried = []

    def embedding(rgb):
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        faces = app.get(bgr)
        if not faces:
            retried.append(True)
            h, w = bgr.shape[:2]
            padded = cv2.copyMakeBorder(bgr, int(h * 0.25), int(h * 0.25), int(w * 0.25), int(w * 0.25),
                                        cv2.BORDER_CONSTANT, value=(128, 128, 128))
            faces = app.get(padded)
        if not faces:
            retried.pop()
            return None
        return sorted(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))[-1].embedding

    ref = embedding(ref_rgb)
    per_frame = []
    for i in np.linspace(0, len(frames) - 1, n, dtype=int):
        e = embedding(frames[i])
        if e is None:
            per_frame.append(None)
            continue
        cos = float(np.dot(ref, e) / (np.linalg.norm(ref) * np.linalg.norm(e)))
        per_frame.append(max(0.0, cos))
    kept = [s for s in per_frame if s is not None]
    return (float(np.mean(kept)) if kept else 0.0), per_frame, len(retried)


def test_consisid_protocol_equals_the_reference_algorithm(tmp_path, pack, capsys):
    from PIL import Image

    kinds = ["face", "retry", "none", "face", "retry", "face", "none", "face"] * 3  # 24 frames, 16 sampled
    gen = tmp_path / "gen"
    gen.mkdir()
    write_video(gen / "mixed.mp4", [_frame(k, i) for i, k in enumerate(kinds)], options={"crf": "0"})
    write_video(gen / "noface.mp4", [_frame("none", 100 + i) for i in range(6)], options={"crf": "0"})
    Image.fromarray(_frame("face", 999)).save(tmp_path / "ref.png")
    code, out, err = _run_score(tmp_path, gen, pack, capsys)
    assert code == 0, err
    models = json.loads((tmp_path / "s.json").read_text())["models"]
    arc = models["FaceSim-Arc (ConsisID)"]
    clips = {v["generated"]: v for v in arc["videos"]}
    ref_rgb = np.asarray(Image.open(tmp_path / "ref.png").convert("RGB"))
    want_mean, want_frames, retried = _reference_facesim(pack, ref_rgb, decode_all(gen / "mixed.mp4"))
    got = clips["mixed.mp4"]
    assert got["frames"] == np.linspace(0, 23, 16, dtype=int).tolist()
    assert [s is None for s in got["similarity"]] == [s is None for s in want_frames]
    assert any(s is None for s in want_frames) and retried >= 3  # all three cases ran (found, found when padded, none)
    np.testing.assert_allclose([s for s in got["similarity"] if s is not None], [s for s in want_frames if s is not None],
                               atol=1e-5)
    assert got["mean"] == pytest.approx(want_mean, abs=1e-5)
    assert clips["noface.mp4"]["mean"] == 0.0 and clips["noface.mp4"]["no_face"] == 6  # no face at all: 0.0
    assert arc["similarity"] == pytest.approx((want_mean + 0.0) / 2, abs=1e-5)  # both clips weigh the same
    assert "StyleID" in models and "FaceSim-Arc (ConsisID)" in out  # computed alongside StyleID


def _run_score(tmp_path, gen, pack, capsys, *extra):
    code = run(["score", str(tmp_path / "ref.png"), str(gen), "--model", "test-tiny", "--crop", "center", "--device", "cpu",
                "--no-progress", "--protocol", f"consisid={pack}", "--json", str(tmp_path / "s.json"), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_reference_without_a_face_and_an_unknown_protocol_are_refused(tmp_path, pack, capsys):
    from PIL import Image

    gen = tmp_path / "gen"
    gen.mkdir()
    write_video(gen / "a.mp4", [_frame("face", i) for i in range(4)])
    Image.fromarray(_frame("none", 5)).save(tmp_path / "ref.png")
    code, _, err = _run_score(tmp_path, gen, pack, capsys)
    assert code == 2 and "ref.png: no face found" in err and not (tmp_path / "s.json").exists()
    code, _, err = _run_score(tmp_path, gen, tmp_path / "no_such_pack", capsys)
    assert code == 2 and "--protocol consisid=" in err and "--model" not in err and not (tmp_path / "s.json").exists()
    assert len(err.strip().splitlines()) == 1
    code = run(["score", str(tmp_path / "ref.png"), str(gen), "--protocol", "vbench", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--protocol vbench" in err and "consisid" in err
