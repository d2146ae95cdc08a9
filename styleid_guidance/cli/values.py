"""Value types for `styleid` flags: argparse `type=` functions that refuse bad numbers in one line."""
from __future__ import annotations

import argparse
import math

LEVELS = tuple(range(1, 8))


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

