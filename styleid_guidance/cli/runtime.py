"""What a command needs at run time: its logger, and the device and encoder its flags name."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from .parsing import for_option


class CommandHandler(logging.StreamHandler):
    """The `styleid COMMAND:` handler, on whatever sys.stderr is now (pytest and notebooks swap it), not the one at
    creation."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


def command_logger(command: str) -> logging.Logger:
    """The logger of `styleid COMMAND`, whose lines read `styleid COMMAND: ...` on stderr.

    The one logging convention of every command: the command and the library code it runs log under the
    "styleid" logger (styleid.train, styleid.generate, styleid.images, ...), and this installs one handler there
    that names the running command. INFO and up are shown; the root logger stays as the libraries left it, and
    nothing propagates to it (accelerate's launcher gives the root logger a handler, which would print every line
    twice). Results that are the command's output (a table, a score) go to stdout with print, not here."""
    top = logging.getLogger("styleid")
    handler = next((h for h in top.handlers if isinstance(h, CommandHandler)), None)
    if handler is None:
        handler = CommandHandler()
        top.addHandler(handler)
    handler.setFormatter(logging.Formatter(f"styleid {command}: %(message)s"))
    if top.level == logging.NOTSET or top.level > logging.INFO:
        top.setLevel(logging.INFO)
    top.propagate = False
    return logging.getLogger(f"styleid.{command.replace(' ', '.')}")


def device_from(args: argparse.Namespace) -> "Any":
    from ..devices import resolve_device

    with for_option("--device", getattr(args, "device", None)):
        return resolve_device(getattr(args, "device", None))


def load_encoder(args: argparse.Namespace) -> Any:
    """The StyleID encoder named by --model (test-tiny: the built-in random one), in eval mode."""
    from ..encoder.model import StyleIDEncoder

    device = device_from(args)
    with for_option("--model", args.model):
        return StyleIDEncoder.from_pretrained(args.model, device=device).eval()
