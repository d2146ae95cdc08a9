"""User-facing errors: one line, names the culprit, says what to do."""
from __future__ import annotations

import sys
from typing import Callable, Sequence


_NO_VALUE = object()


class Arg:
    """An argument named in an error message, worded for the reader: `crop='center'` to a Python caller,
    `--crop center` on the command line (the flag is the name with dashes unless given; `metavar` stands for
    the value on the command line when there is none, as in `--baseline adaface=PATH`)."""

    def __init__(self, name: str, value: object = _NO_VALUE, *, flag: str | None = None, metavar: str | None = None) -> None:
        self.name, self.value, self.metavar = name, value, metavar
        self.flag = flag or "--" + name.replace("_", "-")

    def python(self) -> str:
        return self.name if self.value is _NO_VALUE else f"{self.name}={self.value!r}"

    def cli(self, flag: str | None = None) -> str:
        flag = flag or self.flag
        if self.value is _NO_VALUE or isinstance(self.value, bool):  # a switch is its flag (`--no-align`)
            return f"{flag} {self.metavar}" if self.metavar else flag
        return f"{flag} {self.value}"

    def __repr__(self) -> str:
        return f"Arg({self.name!r}{'' if self.value is _NO_VALUE else f', {self.value!r}'})"


class StyleIDError(ValueError):
    """A mistake the user can fix (bad path, bad image, missing weights, bad value).

    One wording, two readers: `message` is a `str.format` template whose `fields` may be `Arg`s, rendered as
    Python arguments in `str(err)` and as flags in `for_cli()` (an `Arg` that suggests a fix keeps its own flag).
    Structured fields for programs: `param` (the name of the argument at fault), `fields`, and `option` /
    `option_value` (the command-line flag the value came from, set by `cli.parsing.for_option`: the `Arg` named
    `param` is then worded as that flag)."""

    def __init__(self, message: str = "", *, param: str | None = None, **fields: object) -> None:
        self.template, self.fields = message, fields
        self.param = param
        self.option: str | None = None
        self.option_value: object = None
        super().__init__(self._render(cli=False))

    def _render(self, cli: bool) -> str:
        if not self.fields:
            return self.template
        return self.template.format(**{k: self._word(v, cli) for k, v in self.fields.items()})

    def _word(self, value: object, cli: bool) -> object:
        if isinstance(value, Arg):
            return value.cli(self.option if value.name == self.param else None) if cli else value.python()
        if isinstance(value, StyleIDError):  # a wrapped error, worded for the same reader
            if value.names_param():  # the option words the wrapped error's argument; any prefix is the outer one's
                value.option = value.option or self.option
            return value.for_cli() if cli else str(value)
        return value

    def wrapped(self, kind: "type[StyleIDError]", prefix: str) -> "StyleIDError":
        """This error as `kind`, its message after `prefix` (plain text), its fields and cause kept."""
        new = kind("{prefix}{reason}", param=self.param, prefix=prefix, reason=self)
        new.__cause__ = self
        return new

    def names_param(self) -> bool:
        """Does the message name the argument at fault (so a flag can word it, instead of a prefix)?"""
        return self.param is not None and any((isinstance(v, Arg) and v.name == self.param) or
                                              (isinstance(v, StyleIDError) and v.names_param())
                                              for v in self.fields.values())

    def names_args(self) -> bool:
        """Does the message name arguments (its own wording of the command line), or is it about a value only?"""
        return any(isinstance(v, Arg) or (isinstance(v, StyleIDError) and v.names_args()) for v in self.fields.values())

    def for_cli(self) -> str:
        """The message in command-line terms: its `Arg`s as flags; one about a value only, given by a flag
        (`option`), is prefixed with that flag."""
        text = self._render(cli=True)
        if self.option and not self.names_args():
            text = f"{self.option}: {text}"
        return text


def bad_value(name: str, text: str) -> StyleIDError:
    """"NAME TEXT" about the argument `name` (a field of a settings dataclass, `--name` on the command line);
    `text` is plain (its braces are not fields)."""
    return StyleIDError("{name} " + text.replace("{", "{{").replace("}", "}}"), param=name, name=Arg(name))


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
