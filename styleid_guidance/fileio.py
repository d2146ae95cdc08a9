"""Writing files so that nothing already written is lost: atomic files, atomic folders.

A file is written next to its destination and renamed over it only when complete; a folder of
files (a saved encoder, a checkpoint, an evaluation report) is written as a temp folder and swapped
in, so a reader never sees half of a new set beside half of an old one. New files get the mode a
plain `open()` would give them (0666 minus the umask), not `mkstemp`'s private 0600.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    # the only portable way to read the umask is to set it; the lock keeps threads from seeing 0
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def temp_dir_for(dest: str | os.PathLike) -> Path:
    """An empty temp folder beside `dest` (same file system, so the final rename is atomic)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}.", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def replace_dir(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put the finished folder `tmp` at `dest`, replacing any old one; `dest` is never half-written."""
    tmp, dest = Path(tmp), Path(dest)
    if dest.exists():
        old = dest.with_name(f".old-{dest.name}")
        shutil.rmtree(old, ignore_errors=True)  # left over from a crash mid-swap
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    _fsync_dir(dest.parent)
    return dest


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder; when the block succeeds it replaces `dest` as a whole."""
    tmp = temp_dir_for(dest)
    try:
        yield tmp
        replace_dir(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
