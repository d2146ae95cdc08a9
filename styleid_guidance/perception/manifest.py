"""OUT/manifest.jsonl: one JSON record per generated image, the authority on what a dataset holds.

A record (keys sorted, one line each, sorted by path):

    {"path": "ip_adapter/pixar/00001_3.png", "kind": "stylized", "id": "00001", "method": "ip_adapter",
     "style": "pixar", "prompt": "...", "level": 3, "seed": 4711..., "params": {every pipeline argument},
     "models": {model ids / sources}, "dtype": "float32", "device": "cpu", "source": "p3/00001.png",
     "source_sha256": "...", "bytes": 5012, "sha256": "..."}
    {"path": "p3/00001.png", "kind": "source", "id": "00001", "original": "faces/00001.jpg",
     "original_sha256": "...", "bytes": ..., "sha256": "..."}

Crash safety. An image is renamed into place (atomic_write) *before* its record is appended, so no record
names a file that is not there. Processes never share a file: each appends to its own part,
`OUT/.manifest-parts/{host}-{pid}.jsonl`, flushed and fsynced per line, and the main process merges the
parts into manifest.jsonl (rewritten atomically) when a run starts and when it ends. A SIGKILL leaves at
most a torn last line in a part (ignored) and an image without a record (made again on the next run:
same seed, same bytes). Merging drops records whose file is missing or has another size. Readers
(`read_records`, the trainer) see manifest.jsonl plus any parts a killed run left behind.

One run at a time per OUT: the main process holds an flock on OUT/.generate.lock for the whole run.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import IO, Any, Iterator

from ..errors import StyleIDError
from ..files.atomic import atomic_write

logger = logging.getLogger("styleid.generate")

MANIFEST = "manifest.jsonl"
PARTS_DIR = ".manifest-parts"
LOCK = ".generate.lock"


def dumps(record: dict[str, Any]) -> str:
    """The one canonical spelling of a record (so two runs that make the same images write the same bytes)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _read_lines(path: Path, strict: bool) -> Iterator[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        if strict:
            raise StyleIDError(f"{path}: cannot read ({type(err).__name__}); delete it and re-run styleid generate to rebuild it") from None
        return
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                raise ValueError("not a record")
        except ValueError:
            torn = number == len(lines)  # no newline after it: a write cut short by a kill
            if strict and not torn:
                raise StyleIDError(f"{path}:{number}: not a manifest record; delete the line (or the file: "
                                   "styleid generate rebuilds it from the images it makes)") from None
            continue
        yield record


def part_files(root: str | os.PathLike) -> list[Path]:
    folder = Path(root) / PARTS_DIR
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def read_records(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """path → record from OUT/manifest.jsonl and any parts (later lines win; they describe the same bytes)."""
    root = Path(root)
    records: dict[str, dict[str, Any]] = {}
    main = root / MANIFEST
    if main.is_file():
        for record in _read_lines(main, strict=True):
            records[record["path"]] = record
    for part in part_files(root):
        for record in _read_lines(part, strict=False):
            records[record["path"]] = record
    return records


def has_manifest(root: str | os.PathLike) -> bool:
    return (Path(root) / MANIFEST).is_file() or bool(part_files(root))


def on_disk(root: Path, record: dict[str, Any]) -> bool:
    """The record's file is there with the size the record says (a cheap check: no hashing of 200k files)."""
    try:
        return (root / record["path"]).stat().st_size == record.get("bytes")
    except OSError:
        return False


def write_manifest(root: str | os.PathLike, records: dict[str, dict[str, Any]]) -> Path:
    """Rewrite OUT/manifest.jsonl atomically from `records` (sorted by path), then delete the parts."""
    root = Path(root)
    parts = part_files(root)
    with atomic_write(root / MANIFEST) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for path in sorted(records):
                f.write(dumps(records[path]) + "\n")
            f.flush()
            os.fsync(f.fileno())
    for part in parts:  # only after the merged file is in place: a kill in between merges them twice, harmlessly
        with contextlib.suppress(OSError):
            part.unlink()
    return root / MANIFEST


def reconcile(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Merge parts into manifest.jsonl, drop records whose file is gone, delete temp files a kill left behind."""
    root = Path(root)
    records = read_records(root)
    kept = {p: r for p, r in records.items() if on_disk(root, r)}
    if len(kept) < len(records):
        logger.warning("manifest: %d record(s) name a missing or changed file; those images will be made again",
                       len(records) - len(kept))
    for tmp in root.glob("**/.*.png.*.tmp"):  # atomic_write's temp names: an image cut short by a kill
        with contextlib.suppress(OSError):
            tmp.unlink()
    if kept or (root / MANIFEST).exists() or part_files(root):
        write_manifest(root, kept)
    return kept


class ManifestPart:
    """This process's append-only part file: one line per finished image, durable before the next image."""

    def __init__(self, root: str | os.PathLike) -> None:
        folder = Path(root) / PARTS_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / f"{socket.gethostname()}-{os.getpid()}.jsonl"
            self._file: IO[str] = open(self.path, "a", encoding="utf-8")
        except OSError as err:
            from ..files.atomic import cannot_write

            raise cannot_write(folder, err) from None

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ManifestPart":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def run_lock(root: str | os.PathLike) -> Iterator[None]:
    """Refuse a second `styleid generate` on the same folder while one runs (best effort: flock is advisory
    and not every network file system honours it; accelerate's processes of one run share the main's lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one run at a time is then the user's job
        yield
        return
    path = Path(root) / LOCK
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StyleIDError(f"{root}: another styleid generate is writing here; wait for it or use another output folder") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def manifest_levels(root: str | os.PathLike) -> dict[str, int | None] | None:
    """For readers of a dataset (the trainer): relative path → level from the manifest, or None without one."""
    if not has_manifest(root):
        return None
    levels: dict[str, int | None] = {}
    for path, record in read_records(root).items():
        level = record.get("level")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise StyleIDError(f"{Path(root) / MANIFEST}: {path} has level {level!r}; levels are integers 1..7")
        levels[path] = level
    return levels
