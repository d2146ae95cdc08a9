"""The Verify tab with a video among the compared inputs: frame by frame, one table row (the mean over the sampled
frames, equal to scoring those frames as photos), the per-frame curve under the chart, no-face frames kept and
counted, and a bad video dropped with one sentence that names the file and never its path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleid_guidance.demo.tabs import verify
from styleid_guidance.demo.limits import Limits
from support import REPO, tiny_demo_models
from styleid_guidance.errors import StyleIDError
from video_support import moving_frames, write_video

FACES = REPO / "examples" / "faces"
GREY = (1,)


@pytest.fixture(scope="module")
def models():
    return tiny_demo_models()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = moving_frames(Image.open(FACES / "astronaut.jpg"), 4, size=160)
    for i in GREY:
        frames[i] = np.full_like(frames[i], 128)
    return write_video(tmp_path_factory.mktemp("clip") / "talking.mp4", frames, codec="mpeg4", fps=4)


def test_a_video_is_scored_frame_by_frame(models, clip):
    res = verify.run_verify(models, [FACES / "astronaut.jpg", FACES / "astronaut_sketch.jpg", clip], Limits())
    assert [r[0] for r in res.rows] == ["astronaut_sketch.jpg", "talking.mp4 (mean of 4 frames)"]
    # the clip's row is the mean of its frames scored as photos would be (a face crop, or the centre crop)
    from styleid_guidance.demo.scoring import prepare, score
    from styleid_guidance.files.video import VideoReader

    frames = list(VideoReader(clip, 16).frames())
    reference = prepare(models, Image.open(FACES / "astronaut.jpg").convert("RGB"), "ref")
    items = [prepare(models, f.image, f"frame {f.index}") for f in frames]
    assert [p.region is None for p in items] == [i in GREY for i in range(4)]
    direct = score(models, reference, items, ("styleid", "arcface", "clip"))
    for k, model in enumerate(("styleid", "arcface", "clip")):
        assert res.rows[1][1 + 2 * k] == pytest.approx(np.mean(direct.similarity[model]), abs=1e-3)
    assert "talking.mp4: 4 frames sampled, 1 without a face" in res.message and not res.skipped
    bar_only = verify.run_verify(models, [FACES / "astronaut.jpg", FACES / "astronaut_sketch.jpg"], Limits()).chart
    assert res.chart.width >= bar_only.width and res.chart.height > bar_only.height + 150  # the curve panel below


def test_a_bad_video_is_one_sentence_and_the_rest_is_scored(models, clip, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    res = verify.run_verify(models, [FACES / "astronaut.jpg", broken, clip], Limits())
    assert [r[0] for r in res.rows] == ["talking.mp4 (mean of 4 frames)"]
    (why,) = res.skipped
    assert why.startswith("image 2 (broken.mp4):") and str(tmp_path) not in why
    with pytest.raises(StyleIDError, match="reference must be a photo"):
        verify.run_verify(models, [clip, FACES / "astronaut.jpg"], Limits())
    gallery, bad = verify.previews([FACES / "astronaut.jpg", clip], Limits())
    assert [caption for _, caption in gallery] == ["reference: astronaut.jpg", "talking.mp4 (video, 4 frames)"] and not bad
