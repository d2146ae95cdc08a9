"""Options built from config dataclasses: every field a flag, `--config FILE` underneath, flags on top."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, Sequence

from ..errors import StyleIDError
from .flags import add_progress
from .values import boolean, finite_float


class _Bool(argparse.Action):
    """`--flag` (true), `--flag false`, `--no-flag`: config-file booleans spelled on the command line."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        names = list(option_strings)
        names += [n.replace("--", "--no-", 1) for n in option_strings if n.startswith("--") and "_" not in n]
        super().__init__(names, dest, nargs="?", metavar="BOOL", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string and option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"{option_string} takes no value")
            setattr(namespace, self.dest, False)
            return
        setattr(namespace, self.dest, True if values is None else _parse_bool(parser, option_string, values))


def _parse_bool(parser: argparse.ArgumentParser, flag: str | None, text: str) -> bool:
    try:
        return boolean(text)
    except argparse.ArgumentTypeError as err:
        parser.error(f"argument {flag}: {err}")
    raise AssertionError  # parser.error exits


def _scalar_type(annotation: Any) -> tuple[type, bool]:
    """(int | float | str | bool, optional?) from a field annotation (resolved, or a string)."""
    if isinstance(annotation, str):
        optional = "None" in annotation
        base = annotation.replace("| None", "").replace("None |", "").strip()
        return {"int": int, "float": float, "str": str, "bool": bool}.get(base, str), optional
    args = typing.get_args(annotation)
    if args and type(None) in args:
        inner = [a for a in args if a is not type(None)][0]
        return inner, True
    return annotation, False


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, groups: dict[str, str] | None = None) -> None:
    """One option per field of `cls`: `--field-name` (plus `metadata["aliases"]`), help from
    `metadata["help"]`, choices from `metadata["choices"]` (`metadata["flag"]` names it otherwise, `groups` may map
    a group to an argument group already made). Defaults are *not* set on the parser, so
    `given_options` returns only what the user typed (flags beat the config file)."""
    made: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        kind, _ = _scalar_type(f.type)
        group_name = meta.get("group", "")
        target = made.get(group_name)
        if target is None:
            title = (groups or {}).get(group_name, group_name)
            if isinstance(title, argparse._ArgumentGroup):  # a group the caller made, with its own flags in it
                target = title
            else:
                target = parser.add_argument_group(title) if group_name else parser
            made[group_name] = target
        names = [meta.get("flag", "--" + f.name.replace("_", "-")), *meta.get("aliases", ())]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        help_text = meta.get("help", "") + (f" (default: {default})" if default not in (None, "") else "")
        common: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if kind is bool:
            target.add_argument(*names, action=_Bool, **common)
        else:
            type_fn = {int: int, float: finite_float}.get(kind)  # str: argparse's plain string, as elsewhere
            target.add_argument(*names, type=type_fn, choices=meta.get("choices"), metavar=meta.get("metavar"), **common)


def given_options(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The dataclass fields the user set on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(namespace).items() if k in names}


def load_config_file(path: str | Path, cls: type, flag: str = "--config",
                     renamed: dict[str, str] | None = None) -> dict[str, Any]:
    """YAML/JSON mapping of field names (dashes or underscores) → values; unknown names are errors, and a name in
    `renamed` (old → new) is told its new name."""
    import json

    path = Path(path)
    if not path.is_file():
        raise StyleIDError(f"{flag} {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except Exception as err:  # yaml, json and decoding raise different types; all mean "fix the file"
        raise StyleIDError(f"{flag} {path}: cannot parse ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(values, dict):
        raise StyleIDError(f"{flag} {path}: expected a mapping of option names to values")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    old = next((name for name in unknown if name in (renamed or {})), None)
    if old is not None:
        raise StyleIDError(f"{flag} {path}: option '{old}' is now called '{renamed[old]}'")
    if unknown:
        raise StyleIDError(f"{flag} {path}: unknown option(s) {', '.join(unknown)}")
    return values


def add_config_command(sub: Any, name: str, help: str, doc: str, cls: type, groups: dict[str, str],
                       func: Any) -> argparse.ArgumentParser:
    """A subcommand whose options are the fields of the dataclass `cls`, plus --config FILE and --no-progress;
    `doc` is the module docstring: its first paragraph the description, the rest the epilog."""
    p = sub.add_parser(name, help=help, description=doc.split("\n\n")[0], epilog="\n\n".join(doc.split("\n\n")[1:]),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file with any of the options below (field names)")
    add_dataclass_options(p, cls, groups)
    add_progress(p)
    p.set_defaults(func=func)
    return p


def config_from_args(args: argparse.Namespace, cls: type, renamed: dict[str, str] | None = None) -> Any:
    """cls from defaults < --config file < flags."""
    file_values = load_config_file(args.config, cls, renamed=renamed) if args.config else {}
    return build_config(cls, file_values, given_options(args, cls))


def build_config(cls: type, file_values: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """cls(**{defaults < file < flags}), numbers given as strings converted; the dataclass validates itself."""
    values = {**(file_values or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    kinds = {f.name: _scalar_type(f.type)[0] for f in dataclasses.fields(cls)}
    for name, value in list(values.items()):
        kind = kinds.get(name)
        if isinstance(value, str) and kind in (int, float):
            try:
                values[name] = int(value) if kind is int else float(value)
            except ValueError:
                raise StyleIDError(f"option {name}: expected a number, got {value!r}") from None
        elif isinstance(value, str) and kind is bool:
            try:
                values[name] = boolean(value)
            except argparse.ArgumentTypeError as err:
                raise StyleIDError(f"option {name}: {err}") from None
    return cls(**values)
