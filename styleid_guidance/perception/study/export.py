"""`styleid study DATA --output RESULTS --export`: clean the answers and write what the next steps read.

Cleaning (the paper cleans "by response latency and by consistency"; the thresholds are flags):
1. latency: an answer faster than min_rt_ms (no time to look) or slower than max_rt_ms (distracted)
   is dropped;
2. a participant who answered more than max_fast_fraction of a task faster than min_rt_ms is dropped
   from that task (clicking through);
3. consistency: a participant whose answers to the repeated (catch) trials of a task agree with their
   first answers less often than min_consistency is dropped from that task.
Catch trials only measure consistency; the data keep each stimulus's first answer.

RESULTS/export/ (written as one set):
    trials.csv         participant,method,style,level,correct,rt_ms: the 2AFC answers for `styleid psychometric`
    pairs_human.csv    the verification pairs (DATA/pairs.csv's rows and columns when it exists) plus `human`
                       (fraction of kept answers saying "same") and `human_n`; paths relative to this CSV
    cleaning.json      the rules, and who and what was dropped and why
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import Arg, StyleIDError
from ...files.atomic import atomic_dir
from .data import PAIRS, load_dataset
from .store import RESPONSES, SETTINGS, read_responses

EXPORT = "export"


@dataclass(frozen=True)
class CleaningRules:
    min_rt_ms: float = 300.0
    max_rt_ms: float = 30000.0
    max_fast_fraction: float = 0.2
    min_consistency: float = 0.7

    def check(self) -> None:
        if not 0 <= self.min_rt_ms < self.max_rt_ms:
            raise StyleIDError("{low} must be ≥ 0 and below {high}, got {a:g} and {b:g}", param="min_rt_ms",
                               low=Arg("min_rt_ms"), high=Arg("max_rt_ms"), a=self.min_rt_ms, b=self.max_rt_ms)
        for name in ("max_fast_fraction", "min_consistency"):
            if not 0 <= getattr(self, name) <= 1:
                raise StyleIDError("{name} must be from 0 to 1, got {value:g}", param=name, name=Arg(name),
                                   value=getattr(self, name))


def _rows_by_participant_task(rows: list[dict[str, str]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    grouped: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        grouped[(row["participant"], row["task"])].append(row)
    return dict(sorted(grouped.items()))


def clean(rows: list[dict[str, str]], rules: CleaningRules) -> tuple[list[dict[str, str]], dict]:
    """(kept first answers, report)."""
    rules.check()
    kept: list[dict[str, str]] = []
    report: dict = {"rules": asdict(rules), "participants": {}, "answers": defaultdict(int)}
    for (participant, task), answers in _rows_by_participant_task(rows).items():
        rts = [float(a["rt_ms"]) for a in answers]
        fast = sum(rt < rules.min_rt_ms for rt in rts)
        by_trial = {a["trial"]: a for a in answers}
        repeats = [(by_trial[a["repeat_of"]], a) for a in answers if a["catch"] == "1" and a["repeat_of"] in by_trial]
        agree = sum(first["correct"] == again["correct"] for first, again in repeats)
        consistency = agree / len(repeats) if repeats else None
        info = {"task": task, "answers": len(answers), "too_fast": fast, "catch_pairs": len(repeats),
                "consistency": None if consistency is None else round(consistency, 4), "kept": True, "reason": None}
        if fast > rules.max_fast_fraction * len(answers):
            info["kept"], info["reason"] = False, f"{fast} of {len(answers)} answers faster than {rules.min_rt_ms:g} ms"
        elif consistency is not None and consistency < rules.min_consistency:
            info["kept"], info["reason"] = False, f"consistency {consistency:.2f} on {len(repeats)} repeated trials"
        report["participants"].setdefault(participant, []).append(info)
        if not info["kept"]:
            report["answers"]["participant_dropped"] += len(answers)
            continue
        for a, rt in zip(answers, rts):
            if a["catch"] == "1":
                report["answers"]["catch_trial"] += 1
            elif rt < rules.min_rt_ms:
                report["answers"]["too_fast"] += 1
            elif rt > rules.max_rt_ms:
                report["answers"]["too_slow"] += 1
            else:
                kept.append(a)
    report["answers"]["kept"] = len(kept)
    report["answers"] = dict(report["answers"])
    return kept, report


def _csv_text(header: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _human_pairs(kept: list[dict[str, str]], data_root: Path, export_dir: Path) -> str | None:
    """pairs_human.csv text: pairs.csv's rows (or the pairs shown) with human / human_n; None if no verification."""
    votes: dict[str, list[int]] = defaultdict(list)
    shown: dict[str, dict[str, str]] = {}
    for a in kept:
        if a["task"] == "verify":
            votes[a["pair"]].append(int(a["choice"] == "same"))
            shown.setdefault(a["pair"], a)
    pairs_csv = data_root / PAIRS

    def rel(path_from_data: str) -> str:
        return Path(os.path.relpath((data_root / path_from_data).resolve(), export_dir.resolve())).as_posix()

    def human(key: str) -> dict[str, object]:
        v = votes.get(key, [])
        return {"human": round(sum(v) / len(v), 4) if v else "", "human_n": len(v)}

    if pairs_csv.is_file():
        with open(pairs_csv, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [c for c in (reader.fieldnames or []) if c not in ("human", "human_n")] + ["human", "human_n"]
            rows = []
            for row in reader:
                src = Path(os.path.relpath((data_root / row["source"].strip()).resolve(), data_root.resolve())).as_posix()
                sty = Path(os.path.relpath((data_root / row["stylized"].strip()).resolve(), data_root.resolve())).as_posix()
                rows.append({**row, "source": rel(src), "stylized": rel(sty), **human(f"{src}|{sty}")})
        return _csv_text(header, rows)
    if not shown:
        return None
    header = ["source", "stylized", "label", "split", "method", "style", "strength", "human", "human_n"]
    rows = [{"source": rel(a["source"]), "stylized": rel(a["option_a"]), "label": int(a["answer"] == "same"),
             "split": "", "method": a["method"], "style": a["style"], "strength": a["level"], **human(key)}
            for key, a in sorted(shown.items())]
    return _csv_text(header, rows)


def export(data: str | os.PathLike, results: str | os.PathLike, rules: CleaningRules = CleaningRules()) -> dict:
    """Clean RESULTS/responses.csv and write RESULTS/export/; returns the cleaning report."""
    rules.check()
    results, data_root = Path(results), Path(data)
    settings_path = results / SETTINGS
    if not settings_path.is_file():
        raise StyleIDError(f"{results}: no {SETTINGS}; give the --output folder of a `styleid study` run")
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    dataset = load_dataset(data_root)
    if settings.get("data_fingerprint") != dataset.fingerprint:
        raise StyleIDError(f"{data_root}: not the data set this study ran on (its manifest or pairs.csv changed)")
    rows = read_responses(results / RESPONSES)
    kept, report = clean(rows, rules)
    out = results / EXPORT
    trials = [{"participant": a["participant"], "method": a["method"], "style": a["style"], "level": a["level"],
               "correct": a["correct"], "rt_ms": a["rt_ms"]} for a in kept if a["task"] == "2afc"]
    pairs_text = _human_pairs(kept, dataset.root, out)
    report["files"] = {}
    with atomic_dir(out) as tmp:
        if trials:
            (tmp / "trials.csv").write_text(_csv_text(["participant", "method", "style", "level", "correct", "rt_ms"], trials),
                                            encoding="utf-8")
            report["files"]["trials"] = "trials.csv"
        if pairs_text is not None:
            (tmp / "pairs_human.csv").write_text(pairs_text, encoding="utf-8")
            report["files"]["pairs"] = "pairs_human.csv"
        (tmp / "cleaning.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    report["folder"] = str(out)
    return report
