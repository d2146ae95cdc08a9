"""Ctrl-C and SIGTERM during training: finish the step, write a checkpoint, say where a re-run resumes."""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

logger = logging.getLogger("styleid.train")


class StopRequest:
    """Ctrl-C / SIGTERM: finish the current step, checkpoint, stop. A second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stop requested: finishing this step and writing a checkpoint (Ctrl-C again aborts without one)")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ignore_sigint(_: int) -> None:
    # DataLoader workers share the terminal's process group: without this a Ctrl-C kills them
    # mid-batch and the main process dies on the next fetch instead of checkpointing
    signal.signal(signal.SIGINT, signal.SIG_IGN)
