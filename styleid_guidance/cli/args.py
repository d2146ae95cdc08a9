"""The argument groups every `styleid` subcommand shares, and options built from config dataclasses.

One flag, one meaning: a flag that means the same thing in two subcommands comes from the same
function here, so its name, type, choices and help cannot drift apart (a test checks this).
Dashes everywhere; underscore spellings exist only as aliases where upstream users expect them
(JoJoGAN's `--id_loss`, `--num_iter`, ...).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import StyleIDError
from ..options import CROPS, DEFAULT_CROP, DETECTORS

RELEASED_MODEL = "kwanY/styleid"
LEVELS = tuple(range(1, 8))


# ---------------------------------------------------------------------- value types
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def level_list(text: str) -> list[int]:
    """"1,3,5" (or "1 3 5") → [1, 3, 5], each a strength level 1..7."""
    try:
        levels = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated levels 1..7, got {text!r}") from None
    if not levels or any(v not in LEVELS for v in levels):
        raise argparse.ArgumentTypeError(f"levels must be integers from 1 to 7, got {text!r}")
    return levels


# ---------------------------------------------------------------------- shared groups
def add_model(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = RELEASED_MODEL) -> None:
    p.add_argument("--model", default=default, metavar="ID_OR_DIR",
                   help="StyleID encoder: a Hub id, a local folder, or test-tiny (random, offline) (default: %(default)s)")


def add_arcface_model(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--arcface-model", default=None, metavar="PATH",
                   help="ArcFace IR-SE50 weights file or folder (default: facexlib's, from --model-rootpath or downloaded)")


def add_device(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def add_precision(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "auto") -> None:
    """--precision: auto = bf16 where the device runs it natively (CUDA with bf16, CPUs with AMX /
    AVX512-BF16), fp32 elsewhere."""
    p.add_argument("--precision", choices=PRECISIONS, default=default,
                   help="compute precision: auto (bf16 where the hardware runs it natively, else fp32), fp32, bf16, fp16 "
                        "(default: %(default)s)")


def add_faces(p: argparse.ArgumentParser | argparse._ArgumentGroup, crop: bool = True) -> None:
    """--crop, --detector, --model-rootpath: one definition for every command that finds faces."""
    if crop:
        p.add_argument("--crop", choices=CROPS, default=DEFAULT_CROP,
                       help="face: detect and align the largest face (default); center: CLIP's centre crop; none: the whole image")
    p.add_argument("--detector", choices=DETECTORS, default=None,
                   help="face detector for crops: retinaface (default) or mtcnn (ships its weights: the offline choice, "
                        "and the default with --tiny); stylization pipelines otherwise use their upstream insightface detector")
    p.add_argument("--model-rootpath", "--model_rootpath", dest="model_rootpath", default=None, metavar="DIR",
                   help="folder with facexlib weights (RetinaFace, ArcFace) to use instead of downloading")


def add_output(p: argparse.ArgumentParser | argparse._ArgumentGroup, what: str, required: bool = True,
               default: str | None = None) -> None:
    p.add_argument("--output", "-o", required=required, default=default, metavar="PATH", help=what)


def add_batch_size(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: int = 32) -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help="images per model call (default: %(default)s)")


def add_progress(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_tiny(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--tiny", action="store_true", help="built-in tiny random models: runs offline in seconds, outputs not meaningful")


def add_seed(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default, help="random seed (default: %(default)s)")


def add_levels(p: argparse.ArgumentParser | argparse._ArgumentGroup, default: str = "1,2,3,4,5,6,7") -> None:
    p.add_argument("--levels", type=level_list, default=level_list(default), metavar="L,L,...",
                   help=f"strength levels 1..7, comma-separated (default: {default})")


def add_identity_guidance(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Flags of the diffusers identity guidance callback (examples, demo-style scripts, generate)."""
    p.add_argument("--id-scale", type=finite_float, default=None, help="identity guidance step size (default: the callback's)")
    p.add_argument("--id-mode", choices=("x0", "xt"), default="x0", help="x0: no denoiser backprop (default); xt: FreeDoM-style")
    p.add_argument("--guidance-decoder", default=None, metavar="ID_OR_DIR",
                   help="AutoencoderTiny Hub id / folder (e.g. madebyollin/taesd) that decodes x0 for guidance")
    p.add_argument("--id-start", type=finite_float, default=0.0, help="fraction of the steps where guidance starts (default: 0)")
    p.add_argument("--id-end", type=finite_float, default=0.9, help="fraction of the steps where guidance ends (default: 0.9)")
    p.add_argument("--augment-views", type=int, default=2, help="random crop/flip views per guided step (default: 2)")


# ---------------------------------------------------------------------- options from dataclasses
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
    `metadata["help"]`, choices from `metadata["choices"]`. Defaults are *not* set on the parser, so
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
            target = parser.add_argument_group((groups or {}).get(group_name, group_name)) if group_name else parser
            made[group_name] = target
        names = ["--" + f.name.replace("_", "-"), *meta.get("aliases", ())]
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


def command_logger(command: str) -> logging.Logger:
    """A logger whose lines read `styleid COMMAND: ...` on stderr: our own lines only, the root logger stays as the
    libraries left it."""
    log = logging.getLogger(f"styleid-{command.replace(' ', '-')}")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"styleid {command}: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


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


# ---------------------------------------------------------------------- flag names in errors
class for_option:
    """`with for_option("--model", value):` — a library error raised inside gets the flag named in
    its command-line phrasing (`StyleIDError.cli`).

    Library code says what is wrong with a value ("'x' is not a folder or Hub id"); only the CLI knows
    which flag the value came from."""

    def __init__(self, flag: str, value: object = None) -> None:
        self.flag, self.value = flag, value

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, err: BaseException | None, tb: object) -> bool:
        if isinstance(err, StyleIDError) and err.cli is None:
            message = str(err)
            if message.startswith(self.flag):
                err.cli = message
            elif self.value is not None and message.startswith(str(self.value)):
                err.cli = f"{self.flag} {message}"
            else:
                err.cli = f"{self.flag} {self.value}: {message}" if self.value is not None else f"{self.flag}: {message}"
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


# ---------------------------------------------------------------------- loading what the flags name
def device_from(args: argparse.Namespace) -> "Any":
    from ..devices import resolve_device

    with for_option("--device", getattr(args, "device", None)):
        return resolve_device(getattr(args, "device", None))


def load_encoder(args: argparse.Namespace) -> Any:
    """The StyleID encoder named by --model (test-tiny: the built-in random one), in eval mode."""
    from ..encoder import StyleIDEncoder

    device = device_from(args)
    with for_option("--model", args.model):
        return StyleIDEncoder.from_pretrained(args.model, device=device).eval()
