"""User-facing errors: one line, names the culprit, says what to do."""
from __future__ import annotations

import sys
from typing import Callable, Sequence


class StyleIDError(ValueError):
    """A mistake the user can fix (bad path, bad image, missing weights, bad value).

    The message speaks to a Python caller (argument names, no command-line flags). Where the fix is a
    flag, `cli` holds the same message in command-line terms; the CLI prints that one instead."""

    def __init__(self, message: str = "", *, cli: str | None = None) -> None:
        super().__init__(message)
        self.cli = cli

    def for_cli(self) -> str:
        return self.cli or str(self)


class NoFaceError(StyleIDError):
    """No face was found where one was required."""


def reason(err: BaseException) -> str:
    """`err` as one line that keeps its cause ("URLError: <urlopen error [Errno -3] ...>"), for messages that wrap
    a library failure: the class name alone does not tell a user whether to fix a proxy, a path or a file."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def run_cli(main_fn: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run a CLI entry point, turning user mistakes into `PROG: error: MESSAGE` and exit code 2.

    Only StyleIDError (and FileNotFoundError from our loaders) are caught: anything else is a bug
    and keeps its traceback.
    """
    prog = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "styleid")
    try:
        return int(main_fn(argv) or 0)
    except (StyleIDError, FileNotFoundError) as err:
        text = err.for_cli() if isinstance(err, StyleIDError) else str(err)
        message = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
