"""Writing files so that nothing already written is lost: atomic files, atomic folders.

A file is written next to its destination and renamed over it only when complete; a folder of
files (a saved encoder, a checkpoint, an evaluation report) is written as a temp folder and swapped
in, so a reader never sees half of a new set beside half of an old one. New files get the mode a
plain `open()` would give them (0666 minus the umask), not `mkstemp`'s private 0600.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from ..errors import StyleIDError

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


def cannot_write(path: str | os.PathLike, err: OSError) -> StyleIDError:
    """The one-line error for an OSError while writing `path` (full disk, read-only, permissions...)."""
    why = os.strerror(err.errno) if err.errno else str(err)
    hint = {errno.ENOSPC: "free some space", errno.EROFS: "choose a writable location",
            errno.EACCES: "choose a folder you can write to", errno.EPERM: "choose a folder you can write to",
            errno.EISDIR: "give a file name, not a folder", errno.ENOTDIR: "a parent of it is a file"}.get(err.errno, "check the path")
    return StyleIDError(f"{path}: cannot write ({why}); {hint}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` only if the block succeeds.
    Any OSError while writing (full disk, read-only folder) becomes a one-line StyleIDError; the
    previous file, if any, is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise cannot_write(path, err) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        os.replace(tmp_path, path)
    except OSError as err:
        raise cannot_write(path, err) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_writable_file(path: str | os.PathLike) -> Path:
    """Fail now, before long work, if `path` cannot be written as a file: it is a folder, or its
    folder cannot be created or written to (tried for real: permission bits do not stop root, a
    read-only mount or a full disk does)."""
    path = Path(path)
    if path.is_dir():
        raise StyleIDError(f"{path}: is a folder; give a file name")
    _probe_folder(path.parent, path)
    return path


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Fail now if `path` cannot be (created as) a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StyleIDError(f"{path}: is a file; give a folder")
    _probe_folder(path, path)
    return path


def _probe_folder(folder: Path, named: Path) -> None:
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise StyleIDError(f"{named}: {ancestor} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise cannot_write(named, err) from None


def temp_dir_for(dest: str | os.PathLike) -> Path:
    """An empty temp folder beside `dest` (same file system, so the final rename is atomic)."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}.", dir=dest.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as err:
        raise cannot_write(dest, err) from None
    return tmp


def _default_modes(folder: Path) -> None:
    """Give every file and folder the mode a plain open()/mkdir() would: some writers (safetensors,
    mkstemp) create private 0600 files, which a shared model or results folder must not have."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def replace_dir(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put the finished folder `tmp` at `dest`, replacing any old one; `dest` is never half-written."""
    tmp, dest = Path(tmp), Path(dest)
    _default_modes(tmp)
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
    except OSError as err:
        raise cannot_write(dest, err) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
