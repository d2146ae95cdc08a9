"""The shape of the project: one command, one flag style, one namespace, small modules."""
from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

from styleid_guidance.cli import SUBCOMMANDS, build_parser, run
from styleid_guidance.cli.parsing import iter_options
from support import REPO

REPO = REPO
PACKAGE_DIRS = ("styleid_guidance", "train", "integrations", "pipelines", "jojogan", "examples/demo")
MAX_MODULE_LINES = 420  # "modules ≤ ~400 lines"


def _subcommand_paths() -> list[list[str]]:
    paths = []

    def walk(p: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            paths.append(path)
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, [*path, name])

    walk(build_parser(), [])
    return paths


def test_every_registered_subcommand_is_reachable():
    top = {path[0] for path in _subcommand_paths()}
    assert top == {name for name, _ in SUBCOMMANDS}
    assert ["jojogan", "train"] in _subcommand_paths() and ["jojogan", "stylize"] in _subcommand_paths()


@pytest.mark.parametrize("path", _subcommand_paths(), ids=lambda p: " ".join(p))
def test_every_subcommand_has_help(path, capsys):
    assert run([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: styleid {' '.join(path)}") and "--help" in out


def _meaning(action: argparse.Action) -> tuple:
    kind = type(action).__name__
    type_name = getattr(action.type, "__name__", repr(action.type))
    return (action.dest, kind, type_name, tuple(action.choices) if action.choices else None, action.nargs)


def test_no_flag_has_two_meanings():
    """The same flag string must mean the same thing (destination, kind, type, choices) everywhere."""
    seen: dict[str, dict[tuple, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, action in iter_options(build_parser()):
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            seen[flag][_meaning(action)].append(path or "styleid")
    clashes = {flag: dict(meanings) for flag, meanings in seen.items() if len(meanings) > 1}
    assert not clashes, f"flags with more than one meaning: {clashes}"
    # and the classic clashes of the old CLIs are gone
    assert "--scale" not in seen and "--out" not in seen and "--quiet" not in seen


def test_flags_are_dashed_and_underscores_only_alias_a_dashed_flag():
    for path, action in iter_options(build_parser()):
        long = [f for f in action.option_strings if f.startswith("--")]
        assert long and "_" not in long[0], f"{path}: {action.option_strings} (the first spelling must use dashes)"
        for flag in long:
            if "_" in flag:  # an upstream spelling: only beside the dashed one
                assert "--" + flag[2:].replace("_", "-") in long, f"{path}: {flag} has no dashed twin"


def test_jojogan_keeps_the_upstream_spellings():
    parser = build_parser()
    args = parser.parse_args(["jojogan", "train", "s.png", "-o", "s.pt", "--id_loss", "arcface", "--num_iter", "7",
                              "--preserve_color", "--stylegan_ckpt", "g.pt", "--id_weight", "0.5"])
    assert (args.id_loss, args.max_steps, args.preserve_color, args.stylegan_ckpt, args.id_weight) == ("arcface", 7, True, "g.pt", 0.5)
    dashed = parser.parse_args(["jojogan", "train", "s.png", "-o", "s.pt", "--id-loss", "none", "--num-iter", "3"])
    assert (dashed.id_loss, dashed.max_steps) == ("none", 3)


def test_old_console_scripts_are_thin_deprecated_aliases(capsys):
    from styleid_guidance.cli import demo_alias, jojogan_alias, train_alias

    for alias, words in ((train_alias, "styleid train"), (jojogan_alias, "styleid jojogan train"), (demo_alias, "styleid demo")):
        assert alias(["--help"]) == 0
        captured = capsys.readouterr()
        assert f"use `{words}`" in captured.err and captured.out.startswith(f"usage: {words}")


def test_no_product_module_is_too_long():
    long = []
    for folder in PACKAGE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            n = len(path.read_text().splitlines())
            if n > MAX_MODULE_LINES:
                long.append(f"{path.relative_to(REPO)} ({n} lines)")
    assert not long, f"split these by concern: {long}"


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_package(tmp_path):
    """`pip install .` must not put generic names (train, examples, pipelines...) into site-packages."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO)],
                   check=True, capture_output=True, timeout=600, cwd=tmp_path)
    (wheel,) = wheel_dir.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"styleid_guidance"}, top
    for sub in ("train/trainer.py", "pipelines/instantid.py", "integrations/callback.py", "jojogan/api.py", "demo/app.py",
                "encoder/model_configs/test-tiny.json", "train/distill/distiller.py", "perception/study/app.py"):
        assert f"styleid_guidance/{sub}" in names, sub
    assert not any(n.startswith("styleid_guidance/examples") or "/tests/" in n for n in names)


@pytest.mark.parametrize("argv, prog", [
    (["jojogan", "train", "s.png", "-o", "o.pt", "--bogus"], "styleid jojogan train"),
    (["verify", "a.png", "b.png", "--out", "x"], "styleid verify"),  # no abbreviations, and the command is named
    (["eval", "--pairs", "p.csv", "-o", "o", "--bogus", "1"], "styleid eval"),
])
def test_an_unknown_flag_is_refused_by_the_command_that_got_it(argv, prog, capsys):
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"{prog}: error: unrecognized arguments: "), err


@pytest.mark.parametrize("path", ["embed", "eval", "train", "distill", "generate", "jojogan train", "jojogan stylize",
                                  "psychometric"])
def test_long_work_can_run_without_progress_bars(path):
    options = {action.dest for p, action in iter_options(build_parser()) if p == path}
    assert "no_progress" in options, path
