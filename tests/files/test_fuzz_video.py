"""Random bytes, cuts, flipped bytes and frame counts thrown at the video reader: a clean result (frames that
are the sampled ones, unreadable ones listed) or a one-line StyleIDError, never another exception."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from styleid_guidance.errors import StyleIDError
from styleid_guidance.files.video import VideoReader, sample_indices
from video_support import decode_all, moving_frames, write_video

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KINDS = {"mp4": "libx264", "avi": "mpeg4", "mkv": "libx264", "gif": "gif"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("fuzzvideos")
    frames = moving_frames(astronaut, 14, size=48)
    return {ext: write_video(root / f"v.{ext}", frames, codec).read_bytes() for ext, codec in KINDS.items()}


def _read(path, frames):
    """The reader's result, or None after a one-line StyleIDError."""
    try:
        reader = VideoReader(path, frames)
        got = list(reader.frames())
    except StyleIDError as err:
        assert str(err).strip() and "\n" not in str(err).strip(), repr(str(err))
        return None
    assert got and reader.count >= 1 and reader.indices == sample_indices(reader.count, frames)
    assert sorted({f.index for f in got}) == [f.index for f in got]  # each sampled frame once, in order
    assert set(reader.decoded) | set(reader.unreadable) == set(reader.indices)
    for f in got:
        assert f.image.mode == "RGB" and min(f.image.size) >= 16 and np.isfinite(f.time)
    return reader, got


@FUZZ
@given(data=st.binary(max_size=4096), ext=st.sampled_from(sorted(KINDS)))
def test_random_bytes_as_a_video(tmp_path, data, ext):
    path = tmp_path / f"x.{ext}"
    path.write_bytes(data)
    _read(path, 4)


@FUZZ
@given(cut=st.floats(0.0, 1.0), ext=st.sampled_from(sorted(KINDS)), frames=st.sampled_from([1, 3, 16, None]))
def test_cut_videos(tmp_path, videos, cut, ext, frames):
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(videos[ext][: int(len(videos[ext]) * cut)])
    _read(path, frames)


@FUZZ
@given(ext=st.sampled_from(sorted(KINDS)), where=st.floats(0.0, 0.999), noise=st.binary(min_size=1, max_size=64))
def test_damaged_videos(tmp_path, videos, ext, where, noise):
    data = bytearray(videos[ext])
    at = int(len(data) * where)
    data[at : at + len(noise)] = noise
    path = tmp_path / f"bad.{ext}"
    path.write_bytes(bytes(data[: len(videos[ext])]))
    _read(path, 5)


@FUZZ
@given(ext=st.sampled_from(sorted(KINDS)), frames=st.integers(1, 30))
def test_any_frame_count_gives_exactly_the_sampled_frames(tmp_path, videos, ext, frames):
    path = tmp_path / f"ok.{ext}"
    path.write_bytes(videos[ext])
    reader, got = _read(path, frames)
    every = decode_all(path)
    assert reader.count == len(every) and [f.index for f in got] == sample_indices(len(every), frames)
    for f in got:
        np.testing.assert_array_equal(np.asarray(f.image), every[f.index])
