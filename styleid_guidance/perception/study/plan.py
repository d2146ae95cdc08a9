"""A participant's trials: random but balanced, and the same every time for the same participant.

The order is drawn from a generator seeded by (study seed, participant id), so a participant who comes
back (after a reload or a server restart) gets exactly the same list and resumes at the first trial
without an answer. Balance:
* 2AFC: trials spread evenly over the (method, style, level) cells (counts differ by at most one);
  the correct image is on the left in half of them.
* verify: half "same person" pairs, half "different", each half spread evenly over its
  (method, style, level) groups.
* catch trials: `repeats` earlier trials of each task shown again later (at least a few trials
  apart; 2AFC with the sides swapped), so the export can measure each participant's consistency.
With --task both, the 2AFC block comes first, then the verification block.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ...errors import StyleIDError
from .data import Dataset, Pair

TASKS = ("2afc", "verify")
MIN_GAP = 3  # a catch trial comes at least this many trials after its original


@dataclass(frozen=True)
class PlannedTrial:
    index: int
    task: str                   # 2afc / verify
    method: str
    style: str
    level: str
    source: str                 # relative to DATA
    options: tuple[str, ...]    # 2afc: (left, right); verify: (stylized,)
    answer: str                 # 2afc: left / right; verify: same / different
    pair: str                   # the stimulus, stable across participants (export groups on it)
    repeat_of: int | None = None

    @property
    def is_catch(self) -> bool:
        return self.repeat_of is not None


def participant_rng(seed: int, participant: str) -> np.random.Generator:
    digest = hashlib.sha256(f"styleid-study\0{seed}\0{participant}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _spread(groups: Sequence, n: int, rng: np.random.Generator) -> list:
    """n draws over `groups`, each group n // len times, the remainder to random distinct groups."""
    base, extra = divmod(n, len(groups))
    picks = [g for g in groups for _ in range(base)]
    picks += [groups[i] for i in rng.choice(len(groups), extra, replace=False)]
    return picks


def _cycle(items: list, rng: np.random.Generator, state: dict, key: object) -> object:
    """Next item of a per-key shuffled cycle: no repeat until every item was used."""
    queue = state.get(key)
    if not queue:
        queue = [items[i] for i in rng.permutation(len(items))]
        state[key] = queue
    return queue.pop()


def _two_afc(data: Dataset, n: int, rng: np.random.Generator) -> list[PlannedTrial]:
    cells = data.two_afc_cells()
    if not cells:
        raise StyleIDError(f"{data.root}: 2AFC needs at least two identities in one (method, style, level) cell")
    picks = _spread(cells, n, rng)
    sides = ["left"] * (n // 2) + ["right"] * (n - n // 2)
    sides = [sides[i] for i in rng.permutation(n)]
    used: dict = {}
    trials = []
    for cell, side in zip(picks, sides):
        ids = list(data.cells[cell])
        target_id = _cycle(ids, rng, used, cell)
        foil_id = ids[int(rng.integers(len(ids) - 1))]
        foil_id = ids[-1] if foil_id == target_id else foil_id
        target = data.cells[cell][target_id][int(rng.integers(len(data.cells[cell][target_id])))]
        foil = data.cells[cell][foil_id][int(rng.integers(len(data.cells[cell][foil_id])))]
        source = data.source_of(target_id)
        options = (target.path, foil.path) if side == "left" else (foil.path, target.path)
        trials.append(PlannedTrial(0, "2afc", cell[0], cell[1], str(cell[2]), source, options, side,
                                   f"{source}|{target.path}|{foil.path}"))
    return [trials[i] for i in rng.permutation(len(trials))]


def _manifest_pairs(data: Dataset) -> list[Pair]:
    """Same/different pairs from the manifest when there is no pairs.csv: every stylized image with its
    own source, and with the source of the next identity of its cell."""
    pairs = []
    for (method, style, level), ids in data.cells.items():
        names = list(ids)
        for i, identity in enumerate(names):
            for s in ids[identity]:
                pairs.append(Pair(data.source_of(identity), s.path, 1, method, style, str(level)))
                if len(names) > 1:
                    pairs.append(Pair(data.source_of(names[(i + 1) % len(names)]), s.path, 0, method, style, str(level)))
    return pairs


def _verify(data: Dataset, n: int, rng: np.random.Generator) -> list[PlannedTrial]:
    pairs = data.pairs if data.pairs is not None else _manifest_pairs(data)
    by_label = {label: [p for p in pairs if p.label == label] for label in (1, 0)}
    present = [label for label in (1, 0) if by_label[label]]
    base, extra = divmod(n, len(present))  # half same, half different (a random one gets the odd trial)
    counts = {label: base for label in present}
    for i in rng.choice(len(present), extra, replace=False):
        counts[present[int(i)]] += 1
    used: dict = {}
    trials = []
    for label in present:
        groups: dict[tuple, list[Pair]] = {}
        for p in by_label[label]:
            groups.setdefault((p.method, p.style, p.level), []).append(p)
        keys = sorted(groups)
        for key in _spread(keys, counts[label], rng):
            pair = _cycle(groups[key], rng, used, (label, key))
            trials.append(PlannedTrial(0, "verify", pair.method, pair.style, pair.level, pair.source, (pair.stylized,),
                                       "same" if pair.label else "different", f"{pair.source}|{pair.stylized}"))
    return [trials[i] for i in rng.permutation(len(trials))]


def _add_catch_trials(block: list[PlannedTrial], repeats: int, rng: np.random.Generator) -> list[PlannedTrial]:
    if repeats == 0 or not block:
        return block
    if repeats > len(block) - 1:
        raise StyleIDError(f"{repeats} catch trials need more than {repeats} trials per task; raise the trial count")
    latest = max(1, len(block) - MIN_GAP)  # originals early enough to be repeated after a gap
    originals = sorted(rng.choice(latest, min(repeats, latest), replace=False).tolist())
    out = list(block)
    for position in reversed(originals):  # later originals first: earlier positions stay valid
        original = block[position]
        lo = position + 1 + min(MIN_GAP, len(out) - position - 1)
        where = int(rng.integers(lo, len(out) + 1))
        answer = original.answer
        options = original.options
        if original.task == "2afc":  # swapped sides: consistency is about the person, not the button
            options, answer = options[::-1], "right" if answer == "left" else "left"
        out.insert(where, replace(original, options=options, answer=answer, repeat_of=-1 - position))
    return out


def make_plan(data: Dataset, participant: str, tasks: Sequence[str], trials: int, repeats: int, seed: int) -> list[PlannedTrial]:
    """The participant's full trial list, indexed 0..N-1 (catch trials point at their original's index)."""
    rng = participant_rng(seed, participant)
    plan: list[PlannedTrial] = []
    for task in tasks:
        block = (_two_afc if task == "2afc" else _verify)(data, trials, rng)
        block = _add_catch_trials(block, repeats, rng)
        offset = len(plan)
        originals = [i for i, t in enumerate(block) if t.repeat_of is None]
        for t in block:  # final indices; a catch trial's repeat_of holds -1 - (its original's block position)
            repeat_of = None if t.repeat_of is None else offset + originals[-1 - t.repeat_of]
            plan.append(replace(t, index=len(plan), repeat_of=repeat_of))
    return plan

