"""`styleid score` on videos: the sampled frames are the benchmarks' linspace over the frames the stream holds,
decoded exactly as a sequential decode; per-frame scores equal `verify` on those frames; no-face frames are
counted, never dropped silently; a clip cut short is scored on what decodes; bad input is one line, exit 2,
nothing written; the cache is keyed by (content, frame index)."""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from styleid_guidance.cli import run
from styleid_guidance.files import video as video_module
from styleid_guidance.files.video import VideoReader, sample_indices
from styleid_guidance.score import score, score_video, verify
from video_support import decode_all, moving_frames, write_video
from support import SCORE_TINY, score_cache  # noqa: F401 (score_cache: an autouse fixture)

LINE = re.compile(r"^StyleID: (?P<mean>\d\.\d{3}) ± \d\.\d{3} \(n=(?P<n>\d+), no_face=(?P<nf>\d+), verified=\d\.\d\d "
                  r"@0\.40(?:, skipped=\d+)?, videos=(?P<videos>\d+), frames=(?P<frames>\d+)(?:, unreadable_frames=(?P<lost>\d+))?\)$")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut, camera):
    """gen/{a.mp4 (h264, 20), b.avi (mpeg4, 12), sub/c.gif (9)}, a VFR mkv, a webm when libvpx is there, ref.png."""
    import av

    root = tmp_path_factory.mktemp("clips")
    (root / "gen" / "sub").mkdir(parents=True)
    write_video(root / "gen" / "a.mp4", moving_frames(astronaut, 20))
    write_video(root / "gen" / "b.avi", moving_frames(camera, 12), "mpeg4")
    write_video(root / "gen" / "sub" / "c.gif", moving_frames(astronaut.rotate(10), 9), "gif")
    times = np.cumsum([0.0] + [0.04 if i % 3 else 0.5 for i in range(14)])  # frame gaps of 40 ms and 500 ms
    write_video(root / "vfr.mkv", moving_frames(astronaut, 15), times=times)
    if "libvpx-vp9" in av.codecs_available:
        write_video(root / "d.webm", moving_frames(camera, 10), "libvpx-vp9")
    astronaut.crop((120, 20, 380, 280)).resize((96, 96)).save(root / "ref.png")
    return {"root": root, "gen": root / "gen", "ref": root / "ref.png", "vfr": root / "vfr.mkv", "times": times}


def _run(argv, capsys):
    code = run(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["gen/a.mp4", "gen/b.avi", "gen/sub/c.gif", "vfr.mkv", "d.webm"])
@pytest.mark.parametrize("frames", [5, 16, None])
def test_sampled_frames_are_linspace_and_equal_a_sequential_decode(clips, name, frames):
    path = clips["root"] / name
    if not path.exists():
        pytest.skip("no VP9 encoder in this PyAV build")
    every = decode_all(path)
    reader = VideoReader(path, frames)
    got = list(reader.frames())
    assert reader.count == len(every)  # counted from the stream, not the header
    want = list(range(len(every))) if frames is None or frames >= len(every) else \
        sorted(set(np.linspace(0, len(every) - 1, frames).astype(int).tolist()))
    assert [f.index for f in got] == want == reader.indices and not reader.unreadable
    for f in got:  # seeking to keyframes gives exactly the frames a full decode gives
        np.testing.assert_array_equal(np.asarray(f.image), every[f.index])
    assert all(b > a for a, b in zip([f.time for f in got], [f.time for f in got][1:]))


def test_sparse_samples_seek_instead_of_decoding_everything(tmp_path, astronaut):
    clip = write_video(tmp_path / "long.mp4", moving_frames(astronaut, 120, size=48), gop=8)
    reader = VideoReader(clip, 4)
    got = list(reader.frames())
    every = decode_all(clip)
    assert [f.index for f in got] == [0, 39, 79, 119]
    for f in got:
        np.testing.assert_array_equal(np.asarray(f.image), every[f.index])
    assert reader.work < 40  # at most a GOP per sampled frame (plus decoder delay), not 120 frames


def test_variable_frame_rate_times_are_presentation_times(clips):
    got = list(VideoReader(clips["vfr"], None).frames())
    np.testing.assert_allclose([f.time for f in got], clips["times"], atol=1e-3)
    assert sample_indices(15, 4) == [0, 4, 9, 14] and sample_indices(3, 16) == [0, 1, 2] and sample_indices(0, 4) == []


def _frame_scores_by_verify(path, indices, ref, crop="center"):
    frames = decode_all(path)
    out = verify(str(ref), [Image.fromarray(frames[i]) for i in indices], model="test-tiny", crop=crop,
                 detector="mtcnn", facial_areas=False, device="cpu")
    return [r.similarity for r in out]


def test_per_frame_scores_equal_verify_and_every_video_weighs_the_same(clips, capsys):
    tmp = clips["root"]
    code, out, err = _run(["score", str(clips["ref"]), str(clips["gen"]), *SCORE_TINY, "--frames", "6", "--csv",
                           str(tmp / "s.csv"), "--json", str(tmp / "s.json")], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp / "s.csv")))
    summary = json.loads((tmp / "s.json").read_text())["models"]["StyleID"]
    videos = {v["generated"]: v for v in summary["videos"]}
    assert set(videos) == {"a.mp4", "b.avi", "sub/c.gif"}
    means = []
    for name, v in videos.items():
        path = clips["gen"] / name
        count = len(decode_all(path))
        assert v["frames"] == sample_indices(count, 6)
        want = _frame_scores_by_verify(path, v["frames"], clips["ref"])
        np.testing.assert_allclose(v["similarity"], want, atol=1e-5)
        mine = [r for r in rows if r["generated"] == name]
        assert [int(r["frame"]) for r in mine] == v["frames"]
        np.testing.assert_allclose([float(r["similarity"]) for r in mine], want, atol=1e-5)
        assert v["mean"] == pytest.approx(np.mean(want), abs=1e-6) and v["min"] == pytest.approx(min(want), abs=1e-6)
        assert v["std"] == pytest.approx(np.std(want, ddof=1), abs=1e-6) and v["no_face"] == 0
        means.append(np.mean(want))
    assert summary["similarity"] == pytest.approx(np.mean(means), abs=1e-6)  # the mean of each video's mean
    assert len(summary["videos"]) == 3 and summary["frames"] == 18 and summary["unreadable_frames"] == 0
    line = LINE.match(out.strip().splitlines()[-1])
    assert line and line["videos"] == "3" and line["frames"] == "18" and line["n"] == "3", out
    # and the command line: `styleid verify REF FRAME...` on the decoded frames, saved losslessly
    every = decode_all(clips["gen"] / "b.avi")
    pngs = []
    for i in videos["b.avi"]["frames"]:
        pngs.append(tmp / f"b_{i}.png")
        Image.fromarray(every[i]).save(pngs[-1])
    code, out, err = _run(["verify", str(clips["ref"]), *map(str, pngs), *SCORE_TINY[:-3], "--device", "cpu", "--json", "-"],
                          capsys)
    assert code == 0, err
    by_cli = [r["similarity"] for r in json.loads(out)]
    np.testing.assert_allclose(videos["b.avi"]["similarity"], by_cli, atol=1e-5)
    gif_times = [float(r["time"]) for r in rows if r["generated"] == "sub/c.gif"]
    assert gif_times[0] == 0.0 and all(b > a for a, b in zip(gif_times, gif_times[1:]))


def test_a_video_reference_and_one_video_function(clips):
    one = score_video(clips["gen"] / "a.mp4", clips["ref"], ["test-tiny"], frames=4, crop="center", device="cpu",
                      cache_dir=None)["StyleID"]
    assert one["frames"] == [0, 6, 12, 19] and len(one["similarity"]) == 4
    np.testing.assert_allclose(one["similarity"], _frame_scores_by_verify(clips["gen"] / "a.mp4", one["frames"], clips["ref"]),
                               atol=1e-5)
    # a clip as the reference: the normalised mean of its sampled frames
    res = score(clips["gen"] / "a.mp4", clips["ref"], ["test-tiny"], frames=4, crop="center", device="cpu", cache_dir=None)
    from styleid_guidance import StyleIDEncoder

    enc = StyleIDEncoder.from_pretrained("test-tiny").eval()
    frames = decode_all(clips["gen"] / "a.mp4")
    z = enc.embed([Image.fromarray(frames[i]) for i in one["frames"]], crop="center")
    mean = z.mean(0) / z.mean(0).norm()
    assert res.models[0].similarity[0] == pytest.approx(float(enc.embed([str(clips["ref"])], crop="center")[0] @ mean), abs=1e-5)


def test_no_face_frames_are_centre_scored_or_left_out_but_always_counted(tmp_path, astronaut, capsys):
    rng = np.random.default_rng(0)
    face = moving_frames(astronaut, 6, size=160)
    noise = [rng.integers(0, 255, (160, 160, 3), np.uint8) for _ in range(2)]
    clip = write_video(tmp_path / "mixed.mp4", face[:3] + noise + face[3:], options={"crf": "0"})
    astronaut.crop((120, 20, 380, 280)).resize((160, 160)).save(tmp_path / "ref.png")
    face_args = ["--crop", "face", "--detector", "mtcnn", "--frames", "all"]
    base = ["score", str(tmp_path / "ref.png"), str(clip), *SCORE_TINY, *face_args]
    code, out, err = _run([*base, "--json", str(tmp_path / "c.json"), "--plot", str(tmp_path / "plots")], capsys)
    assert code == 0, err
    center = json.loads((tmp_path / "c.json").read_text())["models"]["StyleID"]["videos"][0]
    assert center["no_face"] >= 2 and None not in center["similarity"]  # the noise frames, on their centre crop
    code, out, err = _run([*base, "--no-face", "skip", "--json", str(tmp_path / "k.json")], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "k.json").read_text())["models"]["StyleID"]
    skip = summary["videos"][0]
    assert skip["frames"] == list(range(8))  # a frame left out keeps its index ...
    gone = [i for i, s in enumerate(skip["similarity"]) if s is None]
    assert set(gone) >= {3, 4} and skip["no_face"] == len(gone) == center["no_face"]  # ... and is counted
    kept = [s for s in skip["similarity"] if s is not None]
    assert skip["mean"] == pytest.approx(np.mean(kept), abs=1e-6)
    assert summary["no_face"] >= len(gone) and summary["frames"] == len(kept)
    from styleid_guidance import StyleIDEncoder

    enc = StyleIDEncoder.from_pretrained("test-tiny").eval()
    z_ref = enc.embed([str(tmp_path / "ref.png")], crop="face", detector="mtcnn")[0]
    decoded = decode_all(clip)
    for i in (3, 4):  # a no-face frame is scored on its centre crop, as `embed --crop center` would embed it
        z = enc.embed([Image.fromarray(decoded[i])], crop="center")[0]
        assert center["similarity"][i] == pytest.approx(float(z_ref @ z), abs=1e-5)
    plot = tmp_path / "plots" / "mixed.png"
    assert plot.is_file() and Image.open(plot).size[0] > 100
    code, _, err = _run([*base, "--no-face", "error", "--no-cache"], capsys)
    assert code == 2 and "frame" in err and "no face" in err and len(err.strip().splitlines()) == 1


def test_a_clip_cut_short_is_scored_on_what_decodes(tmp_path, astronaut, capsys):
    full = write_video(tmp_path / "full.avi", moving_frames(astronaut, 30), "mpeg4")
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    astronaut.crop((120, 20, 380, 280)).resize((96, 96)).save(tmp_path / "ref.png")
    reader = VideoReader(cut, 16)
    held = len(decode_all(cut))
    assert 0 < reader.count == held < 30 and reader.lost == 30 - held  # the header lists 30
    code, out, err = _run(["score", str(tmp_path / "ref.png"), str(cut), *SCORE_TINY, "--json", str(tmp_path / "s.json")], capsys)
    assert code == 0, err
    v = json.loads((tmp_path / "s.json").read_text())["models"]["StyleID"]["videos"][0]
    assert v["frames"] == sample_indices(held, 16) and v["unreadable"] == 30 - held
    np.testing.assert_allclose(v["similarity"], _frame_scores_by_verify(cut, v["frames"], tmp_path / "ref.png"), atol=1e-5)
    assert f"unreadable_frames={30 - held}" in out


def _audio_only(path, empty_video: bool = False):
    """An audio-only file; with `empty_video`, it also declares a video stream that holds no frame."""
    import av

    with av.open(str(path), "w") as c:
        if empty_video:
            v = c.add_stream("libx264", rate=8)
            v.width = v.height = 64
            v.pix_fmt = "yuv420p"
        s = c.add_stream("aac", rate=16000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def _huge_gif(path):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = (65535).to_bytes(2, "little") * 2  # the logical screen: 65535 x 65535
    path.write_bytes(bytes(data))
    return path


def test_bad_videos_and_frames_values_are_one_line_exit_2_nothing_written(tmp_path, astronaut, capsys, monkeypatch):
    astronaut.resize((64, 64)).save(tmp_path / "ref.png")
    good = write_video(tmp_path / "good.mp4", moving_frames(astronaut, 6))
    unknown = tmp_path / "unknown.avi"
    unknown.write_bytes(write_video(tmp_path / "m.avi", moving_frames(astronaut, 4), "mpeg4").read_bytes().replace(b"FMP4", b"QQQQ"))
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "empty.webm").write_bytes(b"")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[:600])  # moov at the end: nothing can be opened
    cases = {tmp_path / "junk.mp4": "not a readable video", tmp_path / "empty.webm": "not a readable video",
             cut: "not a readable video", _audio_only(tmp_path / "audio.mp4"): "no video stream", unknown: "cannot be decoded",
             _huge_gif(tmp_path / "huge.gif"): "huge.gif",
             _audio_only(tmp_path / "zero.mkv", empty_video=True): "holds no frames"}
    out_json, out_csv = tmp_path / "o.json", tmp_path / "o.csv"
    for path, words in cases.items():
        code, out, err = _run(["score", str(tmp_path / "ref.png"), str(path), *SCORE_TINY, "--json", str(out_json),
                               "--csv", str(out_csv), "--plot", str(tmp_path / "plots")], capsys)
        assert code == 2 and words in err and str(path.name) in err, (path, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not out_json.exists() and not out_csv.exists() and not (tmp_path / "plots").exists()
    monkeypatch.setattr(video_module, "MAX_FRAME_PIXELS", 50 * 50)  # a frame size over the limit
    code, _, err = _run(["score", str(tmp_path / "ref.png"), str(good), *SCORE_TINY, "--json", str(out_json)], capsys)
    assert code == 2 and "MP limit" in err and not out_json.exists()
    monkeypatch.undo()
    for value, words in (("0", "--frames 0: must be at least 1"), ("-2", "--frames -2"), ("x", "--frames x")):
        code, _, err = _run(["score", str(tmp_path / "ref.png"), str(good), *SCORE_TINY, "--frames", value, "--json", str(out_json)], capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1 and not out_json.exists(), err
    code, _, err = _run(["score", str(tmp_path / "ref.png"), str(tmp_path / "ref.png"), *SCORE_TINY, "--frames", "4",
                         "--json", str(out_json)], capsys)
    assert code == 2 and "--frames 4" in err and "no video" in err and not out_json.exists()


def test_cache_keys_on_clip_content_and_frame_index(clips, tmp_path):
    import shutil

    kw = dict(models=["test-tiny"], crop="center", device="cpu", cache_dir=tmp_path / "c")
    first = score(clips["ref"], clips["gen"] / "a.mp4", frames=4, **kw)
    assert first.computed == {"StyleID": 5}  # the reference and 4 frames
    moved = tmp_path / "moved.mp4"
    shutil.copy(clips["gen"] / "a.mp4", moved)
    again = score(clips["ref"], moved, frames=4, **kw)
    assert again.computed == {"StyleID": 0}
    np.testing.assert_allclose(again.models[0].clips[0].similarity, first.models[0].clips[0].similarity, atol=1e-7)
    assert again.models[0].clips[0].times == first.models[0].clips[0].times
    more = score(clips["ref"], moved, frames=7, **kw)  # indices 0, 3, 6, 9, 12, 15, 19: 0, 6, 12, 19 are cached
    assert more.models[0].clips[0].indices == [0, 3, 6, 9, 12, 15, 19] and more.computed == {"StyleID": 3}


def test_decoded_frames_feed_the_metric_as_a_clip(clips):
    pytest.importorskip("torchmetrics")
    from styleid_guidance import StyleIDEncoder
    from styleid_guidance.files.video import frames_to_tensor
    from styleid_guidance.metrics import StyleIDScore, styleid_score

    frames = list(VideoReader(clips["gen"] / "a.mp4", 4).frames())
    x = frames_to_tensor(frames)
    every = decode_all(clips["gen"] / "a.mp4")
    assert x.shape == (4, 3, 96, 96)
    np.testing.assert_array_equal((x.permute(0, 2, 3, 1) * 255).round().byte().numpy(), np.stack([every[f.index] for f in frames]))
    enc = StyleIDEncoder.from_pretrained("test-tiny").eval()
    ref = frames_to_tensor(frames[:1])
    metric = StyleIDScore(enc, normalize=True, crop="center")
    metric.update(x[None], ref)
    per_frame = styleid_score(x[None], ref, enc, crop="center", reduction="frames")[0]
    assert per_frame[0].item() == pytest.approx(1.0, abs=1e-5)  # the first frame against itself
    assert metric.compute()["similarity"].item() == pytest.approx(per_frame.mean().item(), abs=1e-6)
