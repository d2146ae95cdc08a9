"""The study's results folder: every answer appended to responses.csv, one fsync'ed line per answer.

    RESULTS/study.json      the settings and the data set's fingerprint (a folder serves one study)
    RESULTS/responses.csv   participant,task,method,style,level,pair,choice,correct,rt_ms,trial,...

A line is written with a single O_APPEND write and fsync'ed before the participant sees the next
trial, so an acknowledged answer survives a crash or a kill. A kill in the middle of that write can
leave a torn last line (never acknowledged); it is cut off when the folder is opened again. One server
per folder (an flock on RESULTS/.lock, released by the OS when the process dies).
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import StyleIDError
from ...files.atomic import atomic_write, check_writable_dir

RESPONSES = "responses.csv"
SETTINGS = "study.json"
LOCK = ".lock"
FIELDS = ("participant", "task", "method", "style", "level", "pair", "choice", "correct", "rt_ms",
          "trial", "answer", "catch", "repeat_of", "source", "option_a", "option_b", "answered_at")

log = logging.getLogger("styleid.study")


def _csv_line(values: dict[str, Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if values.get(f) is None else values[f] for f in FIELDS])
    return buf.getvalue()


def read_responses(path: str | os.PathLike) -> list[dict[str, str]]:
    """Every complete line of a responses file (a torn last line is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"{path}: no such file; run `styleid study` with this --output first")
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != FIELDS:
        raise StyleIDError(f"{path}:1: not a styleid study responses file (header {','.join(reader.fieldnames or [])})")
    return list(reader)


@dataclass
class Store:
    folder: Path
    answered: dict[str, dict[int, dict[str, str]]] = field(default_factory=dict)  # participant → trial → row
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def responses(self) -> Path:
        return self.folder / RESPONSES

    def append(self, row: dict[str, Any]) -> bool:
        """Append one answer durably; False (nothing written) when that trial already has one."""
        participant, trial = str(row["participant"]), int(row["trial"])
        data = _csv_line(row).encode("utf-8")
        with self._lock:
            done = self.answered.setdefault(participant, {})
            if trial in done:
                return False  # a second tab or a double click: the first answer stands
            fd = os.open(self.responses, os.O_WRONLY | os.O_APPEND)
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write to {self.responses}")
                os.fsync(fd)
            finally:
                os.close(fd)
            done[trial] = {k: "" if v is None else str(v) for k, v in row.items()}
        return True

    def done(self, participant: str) -> set[int]:
        with self._lock:
            return set(self.answered.get(participant, {}))

    def knows(self, participant: str) -> bool:
        with self._lock:
            return participant in self.answered

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _repair_torn_tail(path: Path) -> None:
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("%s: cut off a torn last line (%d bytes; the answer was never acknowledged)", path, len(data) - keep)
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())


def open_store(folder: str | os.PathLike, settings: dict[str, Any]) -> Store:
    """Open (or start) a results folder for a study with `settings`; refuse one started with others."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise StyleIDError(f"{folder}: exists and is not a folder")
    check_writable_dir(folder)  # created, and a file written and removed in it
    settings_path = folder / SETTINGS
    if settings_path.is_file():
        try:
            old = json.loads(settings_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise StyleIDError(f"{settings_path}: damaged; restore it or use a new results folder") from None
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            raise StyleIDError(f"{folder}: this results folder belongs to a study with other settings ({', '.join(changed)}); "
                               "use the same data and settings to resume, or a new results folder")
    elif any(p.name != LOCK for p in folder.iterdir()):
        raise StyleIDError(f"{folder}: not empty and not a study results folder; use a new or empty folder")
    store = Store(folder)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StyleIDError(f"{folder}: another `styleid study` is serving this results folder") from None
    store._lock_fd = fd
    if not settings_path.is_file():
        with atomic_write(settings_path) as tmp:
            tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not store.responses.is_file():
        with atomic_write(store.responses) as tmp:
            tmp.write_text(",".join(FIELDS) + "\n", encoding="utf-8")
    _repair_torn_tail(store.responses)
    for row in read_responses(store.responses):
        try:
            store.answered.setdefault(row["participant"], {})[int(row["trial"])] = row
        except ValueError:
            raise StyleIDError(f"{store.responses}: damaged row for participant {row['participant']!r}") from None
    return store
