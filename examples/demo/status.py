"""What the page says about the models: the profile banner and the Models table.

Both are computed from `Models.availability()` (files on disk, the local Hugging Face cache, or a
download that can happen now) plus what already failed to load, so they say what will actually run:
a green "real weights" banner only when every component is there, otherwise which tabs run with what.
"""
from __future__ import annotations

from dataclasses import dataclass

from .profiles import Availability, Models
from .weight_sources import IDENTITY_LABELS, IDENTITY_MODELS, TINY_BANNER, framework_label, frameworks


@dataclass
class Summary:
    usable: list[str]  # labels of the components that can run
    unavailable: dict[str, str]  # label → why not
    excluded: list[str]  # frameworks this profile leaves out on purpose (a larger profile has them)
    tabs: dict[str, str]  # tab → one sentence on what it will run with

    @property
    def complete(self) -> bool:
        return not self.unavailable


def _join(labels: list[str]) -> str:
    return ", ".join(labels) if labels else "none"


def summarize(models: Models) -> Summary:
    rows = {a.key: a for a in models.availability() if a.key != "detector"}
    ok = {k for k, a in rows.items() if a.reason is None}
    out = {f"fw:{f}" for f in frameworks() if models._profile_reason(f)}
    usable = [a.label for k, a in rows.items() if k in ok]
    unavailable = {a.label: a.reason for k, a in rows.items() if k not in ok and k not in out}
    excluded = [a.label for k, a in rows.items() if k in out]
    ids = [IDENTITY_LABELS[m] for m in IDENTITY_MODELS if f"id:{m}" in ok]
    fws = [framework_label(f) for f in frameworks() if f"fw:{f}" in ok]
    guides = [IDENTITY_LABELS[m] for m in ("arcface", "styleid") if f"id:{m}" in ok]
    tabs = {
        "Verify": f"scores with {_join(ids)}" if ids else "cannot run: no identity model is available",
        "Stylize": (f"runs {_join(fws)}, guided by {_join(guides)}" if guides else f"runs {_join(fws)} without identity guidance")
        if fws else "cannot run: no stylizer is available",
        "JoJoGAN": ("trains with the ArcFace and StyleID losses" if len(guides) == 2 else
                    f"runs, but only the {_join(guides)} loss is available" if guides else "cannot run: no identity loss is available")
        if "jojogan" in ok else "cannot run: " + (rows["jojogan"].reason or "unavailable"),
    }
    return Summary(usable, unavailable, excluded, tabs)


def banner_markdown(models: Models, fallback_note: str | None = None) -> str:
    parts = []
    if fallback_note:
        parts.append(f"⚠️ {fallback_note}")
    if models.tiny:
        parts.append(f"⚠️ {TINY_BANNER}")
        return "\n\n".join(parts)
    summary = summarize(models)
    where = f"Profile **{models.profile}** on {models.device.type.upper()}"
    left_out = f" {', '.join(summary.excluded)}: not in this profile." if summary.excluded else ""
    if summary.complete:
        parts.append(f"{where}: real weights; every component of the profile is available (downloaded on first use where "
                     f"not cached).{left_out}")
    else:
        n, total = len(summary.unavailable), len(summary.unavailable) + len(summary.usable)
        parts.append(f"⚠️ {where}: **{n} of {total} components are unavailable** ({', '.join(summary.unavailable)}); "
                     f"open *Models* for the reasons.{left_out}")
    parts.append(" · ".join(f"**{tab}** {what}" for tab, what in summary.tabs.items()))
    return "\n\n".join(parts)


def banner_classes(models: Models, fallback_note: str | None = None) -> list[str]:
    """CSS classes of the banner: green ("real") only for real weights with nothing missing."""
    return ["real"] if not models.tiny and not fallback_note and summarize(models).complete else []


def _state(models: Models, item: Availability) -> str:
    if item.reason is not None:
        return f"✗ unavailable: {item.reason}"
    if item.key == "detector":
        return f"✓ ready ({item.note})" if item.note else "✓ ready"
    if not models.tiny and not models.is_built(item.key):
        return "✓ available (loaded on first use)"
    return "✓ ready"


def status_markdown(models: Models) -> str:
    lines = ["| component | status |", "|---|---|"]
    for item in models.availability():
        lines.append(f"| {item.label} | {_state(models, item).replace('|', '/')} |")
    return "\n".join(lines)
