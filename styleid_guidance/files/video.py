"""Reading sampled frames of a video file with PyAV, the way identity benchmarks sample them, or a clear error.

ConsisID's `eval/get_facesim_fid.py`, OpenS2V-Eval and the IPVG challenge score `numpy.linspace(0, n − 1, N)`
frame indices (N = 16 in ConsisID, 32 in OpenS2V). n here is what the stream holds, counted from its packets
(no decoding): container metadata (`stream.frames`, OpenCV's CAP_PROP_FRAME_COUNT) is missing or wrong in
many files. Frames are numbered in presentation order, and each sampled frame keeps its presentation time
(pts × time_base) so variable-frame-rate clips are timed right.

Only the sampled frames are kept, as PIL images, and they are produced one at a time (`VideoReader.frames`),
so `--frames all` over a long clip holds one batch, not the clip. When the next sampled frame lies past a
keyframe the decoder has not reached, the reader seeks to that keyframe instead of decoding everything in
between. A packet that fails to decode is counted, not fatal: a clip that decodes only partway is scored on
what decoded and `unreadable` says how many sampled frames were lost. A file that cannot be opened, has no
video stream, no frames, an unsupported codec or frames over `MAX_FRAME_PIXELS` is refused with one line.
"""
from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import Arg, StyleIDError, reason
from .images import MIN_SIDE

if TYPE_CHECKING:
    import torch

log = logging.getLogger("styleid.video")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
DEFAULT_FRAMES = 16  # ConsisID's N
UNTIMED_FORMATS = {"avi"}  # containers whose packet stamps are not presentation times
MAX_FRAME_PIXELS = 8192 * 8192  # 67 MP, beyond 8K: a header claiming more is a decompression bomb, not a video


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def sample_indices(count: int, frames: int | None) -> list[int]:
    """The benchmarks' `numpy.linspace(0, count − 1, frames).astype(int)`, each index once (frames ≥ count or
    None = every frame)."""
    if count <= 0:
        return []
    if frames is None or frames >= count:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, frames).astype(int).tolist()))


def parse_frames(text: str | int | None) -> int | None:
    """--frames value: a positive count, or "all" (None)."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return None
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise StyleIDError("{frames}: give a positive number of frames or 'all'", param="frames",
                           frames=Arg("frames", text)) from None
    if n <= 0:
        raise StyleIDError("{frames}: must be at least 1 (or 'all')", param="frames", frames=Arg("frames", n))
    return n


@dataclass
class Frame:
    """One decoded frame: its index (presentation order), its presentation time in seconds, and the RGB image."""

    video: Path
    index: int
    time: float
    image: Image.Image

    @property
    def name(self) -> str:
        return f"{self.video} frame {self.index}"


def _why(err: BaseException) -> str:
    # FFmpeg's message repeats the file name; its strerror alone says what went wrong
    text = getattr(err, "strerror", None)
    return f"{type(err).__name__}: {text}" if isinstance(text, str) and text else reason(err)


def _open(path: Path):  # -> av container
    import av

    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError, IndexError) as err:
        raise StyleIDError(f"{path}: not a readable video ({_why(err)}); pass an .mp4/.webm/.mov/.mkv/.avi/.gif file") from None


def _video_stream(container, path: Path):  # -> av VideoStream
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise StyleIDError(f"{path}: no video stream (streams: {', '.join(kinds)}); pass a video file, not audio")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or getattr(ctx, "codec", None) is None or not getattr(ctx.codec, "is_decoder", True):
        codec = ctx.name if ctx is not None else (_tag(stream) or "unknown")
        raise StyleIDError(f"{path}: video codec {codec!r} cannot be decoded here; re-encode it as H.264 "
                           "(ffmpeg -i IN -c:v libx264 OUT.mp4)")
    _check_size(path, ctx.width, ctx.height)
    return stream


def _tag(stream) -> str:
    try:
        return str(stream.codec_tag).strip("\x00 ")
    except Exception:  # PyAV versions differ in what a stream without a codec exposes: the tag only decorates the message
        return ""


def _check_size(path: Path, width: int, height: int) -> None:
    if width and height and width * height > MAX_FRAME_PIXELS:
        raise StyleIDError(f"{path}: frames of {width}x{height} px, over the {MAX_FRAME_PIXELS / 1e6:.0f} MP limit per "
                           "frame; downscale the video")
    if width and height and min(width, height) < MIN_SIDE:
        raise StyleIDError(f"{path}: frames of {width}x{height} px, too small (need at least {MIN_SIDE} px per side)")


@dataclass
class VideoReader:
    """A video file's frame count and timing (from its packets), and its sampled frames on demand.

    `count`: frames in the stream; `indices`: the sampled ones; after `frames()` is exhausted, `unreadable`
    holds the sampled indices that did not decode and `decoded` those that did. `lost`: frames the header lists
    but the file does not hold (cut short or damaged), which sampling never sees."""

    path: Path
    sample: int | None = DEFAULT_FRAMES
    count: int = 0
    indices: list[int] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)
    decoded: list[int] = field(default_factory=list)
    truncated: str = ""  # why demuxing stopped before the end of the file ("" when it did not)
    lost: int = 0  # frames the container lists beyond those that could be read (a damaged or cut file)
    work: int = 0  # frames the decoder produced in the last `frames()` (the cost that seeking saves)
    _pts: list[int] = field(default_factory=list)  # presentation timestamps in order (empty: unknown, no seeking)
    _keyframes: list[int] = field(default_factory=list)  # frame indices of keyframes (seek targets)
    _time_base: float = 0.0
    _rate: float = 0.0  # frames per second, for containers without presentation stamps (AVI is constant-rate)

    def __post_init__(self) -> None:
        import av

        self.path = Path(self.path)
        if not self.path.is_file():
            raise StyleIDError(f"{self.path}: no such file" if not self.path.exists() else f"{self.path}: not a file")
        with _open(self.path) as container:
            stream = _video_stream(container, self.path)
            container_format = set(container.format.name.split(","))
            listed = stream.frames  # the header's count: not trusted for sampling, only to tell frames were lost
            self._time_base = float(stream.time_base) if stream.time_base else 0.0
            rate = stream.average_rate or stream.guessed_rate
            self._rate = float(rate) if rate else 0.0
            pts, keys, count = [], [], 0
            try:
                for packet in container.demux(stream):
                    if packet.size == 0:  # the demuxer's end-of-stream flush packet, not a frame
                        continue
                    count += 1
                    stamp = packet.pts if packet.pts is not None else packet.dts
                    pts.append(stamp)
                    keys.append(bool(packet.is_keyframe))
            except (av.error.FFmpegError, OSError, ValueError) as err:
                self.truncated = _why(err)  # a clip cut short: count what could be read
        if count == 0:
            raise StyleIDError(f"{self.path}: the video stream holds no frames; the file is empty or damaged")
        self.count = count
        self.lost = max(0, int(listed or 0) - count)
        if self.truncated or self.lost:
            log.warning("%s: holds %d readable frames%s%s; scoring those", self.path, count,
                        f" of the {listed} its header lists" if self.lost else "",
                        f" (reading stopped: {self.truncated})" if self.truncated else "")
        # AVI stores decode-order stamps (B-frames come out "late"): there, frames are numbered as they come out
        if not container_format & UNTIMED_FORMATS and all(p is not None for p in pts) and len(set(pts)) == len(pts):
            self._pts = sorted(pts)
            where = {p: i for i, p in enumerate(self._pts)}
            self._keyframes = sorted(where[pts[i]] for i in range(count) if keys[i])
        self.indices = sample_indices(count, self.sample)
        self._probe()

    def _probe(self) -> None:
        """Decode up to the first frame now, so a clip that decodes nothing (or whose frames are too large) is
        refused when it is read, before any model loads, not halfway through a run."""
        with _open(self.path) as container:
            stream = container.streams.video[0]
            for frame in self._decode(container, stream):
                _check_size(self.path, frame.width, frame.height)
                return
        raise StyleIDError(f"{self.path}: no frame could be decoded; the file is damaged or truncated")

    def _time(self, pts: int | None, index: int, fallback: float | None) -> float:
        if self._pts and pts is not None and self._time_base:
            return float(pts * self._time_base)
        if self._rate:  # frames numbered as they come out: their stamps are not presentation times
            return index / self._rate
        return float(fallback) if fallback is not None else float(index)

    def _index(self, pts: int | None, position: int) -> int:
        if self._pts and pts is not None:
            i = bisect.bisect_left(self._pts, pts)
            if i < len(self._pts) and self._pts[i] == pts:
                return i
        return position

    def frames(self) -> Iterator[Frame]:
        """The sampled frames, in order, each decoded once; undecodable ones are left out and listed in `unreadable`."""
        import av

        wanted = list(self.indices)
        self.decoded, self.unreadable, self.work = [], [], 0
        got: set[int] = set()
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: decoding is the cost of scoring a clip
            position = 0  # index of the next frame the decoder will output (when indices are unknown)
            k = 0  # next wanted frame
            seek_ok = bool(self._pts) and self.sample is not None
            sought = False
            while k < len(wanted):
                target = wanted[k]
                key = self._keyframe_before(target) if seek_ok else None
                if key is not None and key > position:
                    try:
                        container.seek(self._pts[key], stream=stream, backward=True, any_frame=False)
                        position, sought = key, True
                    except (av.error.FFmpegError, OSError, ValueError):
                        seek_ok = False  # decode on from here instead
                restart = False
                for frame in self._decode(container, stream):
                    self.work += 1
                    index = self._index(frame.pts, position)
                    if index != position and not sought and self._pts:
                        # stamps that disagree with the decoder's output order: count frames as they come out
                        self._pts, seek_ok, index = [], False, position
                    position = index + 1
                    if index in got:
                        continue
                    while k < len(wanted) and wanted[k] < index:  # passed over (lost, or the seek overshot)
                        k += 1
                    if k < len(wanted) and wanted[k] == index:
                        got.add(index)
                        self.decoded.append(index)
                        k += 1
                        yield self._frame(frame, index)
                        if k < len(wanted) and seek_ok and (self._keyframe_before(wanted[k]) or 0) > position:
                            restart = True  # the next wanted frame is past a keyframe: seek there
                            break
                    if k >= len(wanted):
                        break
                if not restart:
                    break
        self.unreadable = [i for i in wanted if i not in got]
        if not self.decoded:
            raise StyleIDError(f"{self.path}: no frame could be decoded; the file is damaged or truncated")

    def _keyframe_before(self, index: int) -> int | None:
        i = bisect.bisect_right(self._keyframes, index) - 1
        return self._keyframes[i] if i >= 0 else None

    def _decode(self, container, stream) -> Iterator:
        import av

        try:
            for packet in container.demux(stream):
                try:
                    yield from packet.decode()
                except av.error.FFmpegError:
                    continue  # a damaged packet: its frame is missing, the next keyframe decodes again
        except (av.error.FFmpegError, OSError, ValueError):
            return  # the file ends early: what decoded so far is the clip

    def _frame(self, frame, index: int) -> Frame:
        _check_size(self.path, frame.width, frame.height)
        image = Image.fromarray(frame.to_ndarray(format="rgb24"), "RGB")
        return Frame(self.path, index, self._time(frame.pts, index, frame.time), image)


def frames_to_tensor(frames: Sequence[Frame]) -> torch.Tensor:
    """[F, 3, H, W] float in [0, 1], the clip layout `StyleIDScore.update` takes (with a batch dimension)."""
    import torch

    return torch.from_numpy(np.stack([np.asarray(f.image) for f in frames])).permute(0, 3, 1, 2).float().div_(255.0)
