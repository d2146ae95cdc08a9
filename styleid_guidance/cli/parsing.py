"""The `styleid` argument parser: one-line errors, no abbreviations, and flag names in library errors."""
from __future__ import annotations

import argparse
import sys
import typing
from typing import Any, Callable, Iterable

from ..errors import StyleIDError


class for_option:
    """`with for_option("--model", value):` — a library error raised inside learns which flag its value came from
    (`StyleIDError.option`, `.option_value`), and its command-line wording names that flag (`StyleIDError.for_cli`).

    Library code says what is wrong with a value ("'x' is not a folder or Hub id"); only the CLI knows
    which flag the value came from. The innermost `for_option` wins."""

    def __init__(self, flag: str, value: object = None) -> None:
        self.flag, self.value = flag, value

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, err: BaseException | None, tb: object) -> bool:
        if isinstance(err, StyleIDError) and err.option is None:
            err.option, err.option_value = self.flag, self.value
        return False


class Parser(argparse.ArgumentParser):
    """One line for a bad value (`styleid train: error: argument --lr: ...`); a missing argument
    still shows the usage, as argparse users expect. No abbreviated flags: `--out` must not quietly
    mean `--output` today and something else tomorrow."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        # argparse hands a subcommand's unknown flags up to `styleid`, whose error would not say which command
        # refused them; the subcommand that parsed last says it itself
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not any(isinstance(a, argparse._SubParsersAction) for a in self._actions):
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str) -> "typing.NoReturn":
        if "required" in message or "invalid choice" in message and "COMMAND" in self.format_usage():
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def iter_options(parser: argparse.ArgumentParser) -> Iterable[tuple[str, argparse.Action]]:
    """(subcommand path, action) for every option of `parser` and its nested subcommands."""

    def walk(p: argparse.ArgumentParser, path: str) -> Iterable[tuple[str, argparse.Action]]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}".strip())
            elif action.option_strings:
                yield path, action

    return walk(parser, "")


Register = Callable[[Any], None]
