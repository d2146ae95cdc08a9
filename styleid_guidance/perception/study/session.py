"""A running study: participants, their trial plans, and their answers (the UI-free core of `styleid study`).

A participant is a short id, typed in (e.g. a recruitment-platform id) or generated. Everything the
server knows about a participant comes from responses.csv, so a restart changes nothing: the same id
gets the same plan and resumes at its first unanswered trial. Response times are measured on the
server, from the moment a trial's images are handed to the page to the moment the answer arrives.
"""
from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from ...errors import Arg, StyleIDError
from .data import Dataset
from .plan import TASKS, PlannedTrial, make_plan
from .store import Store

PARTICIPANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CHOICES = {"2afc": ("left", "right"), "verify": ("same", "different")}


@dataclass(frozen=True)
class StudySettings:
    tasks: tuple[str, ...] = TASKS
    trials: int = 60          # per task, before catch trials
    repeats: int = 6          # catch trials per task
    seed: int = 0

    def check(self) -> None:
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            raise StyleIDError("{name} must be among {choices}, got {value}", param="tasks",
                               name=Arg("tasks", flag="--task"), choices=", ".join(TASKS), value=self.tasks)
        if self.trials < 2:
            raise StyleIDError("{name} must be ≥ 2 per task, got {value}", param="trials", name=Arg("trials"), value=self.trials)
        if not 0 <= self.repeats < self.trials:
            raise StyleIDError("{name} must be from 0 to {trials} - 1 ({top}), got {value}", param="repeats",
                               name=Arg("repeats"), trials=Arg("trials"), top=self.trials - 1, value=self.repeats)

    def as_record(self, data: Dataset) -> dict:
        return {"tasks": list(self.tasks), "trials": self.trials, "repeats": self.repeats, "seed": self.seed,
                "data_fingerprint": data.fingerprint}


def check_participant(text: str) -> str:
    text = (text or "").strip()
    if not PARTICIPANT_RE.match(text):
        raise StyleIDError("a participant id is 1 to 64 letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    return text


class Study:
    def __init__(self, data: Dataset, store: Store, settings: StudySettings, clock=time.monotonic):
        settings.check()
        self.data, self.store, self.settings, self.clock = data, store, settings, clock
        self._plans: OrderedDict[str, list[PlannedTrial]] = OrderedDict()
        self._lock = threading.Lock()
        make_plan(data, "plan-check", settings.tasks, settings.trials, settings.repeats, settings.seed)  # fail at start, not per click

    def new_participant(self) -> str:
        while True:
            candidate = f"p{secrets.token_hex(4)}"
            if not self.store.knows(candidate):
                return candidate

    def plan(self, participant: str) -> list[PlannedTrial]:
        with self._lock:
            plan = self._plans.get(participant)
            if plan is None:
                s = self.settings
                plan = make_plan(self.data, participant, s.tasks, s.trials, s.repeats, s.seed)
                self._plans[participant] = plan
                while len(self._plans) > 512:  # plans are cheap to rebuild; memory is not unbounded
                    self._plans.popitem(last=False)
            else:
                self._plans.move_to_end(participant)
            return plan

    def next_trial(self, participant: str) -> PlannedTrial | None:
        done = self.store.done(participant)
        return next((t for t in self.plan(participant) if t.index not in done), None)

    def progress(self, participant: str) -> tuple[int, int]:
        return len(self.store.done(participant)), len(self.plan(participant))

    def shown(self) -> float:
        return self.clock()

    def answer(self, participant: str, trial_index: int, choice: str, shown_at: float) -> bool:
        """Record an answer to trial `trial_index`; False when it already had one (nothing written)."""
        plan = self.plan(participant)
        if not 0 <= trial_index < len(plan):
            raise StyleIDError(f"no trial {trial_index}")
        trial = plan[trial_index]
        if choice not in CHOICES[trial.task]:
            raise StyleIDError(f"answer {choice!r} does not fit a {trial.task} trial")
        rt_ms = max(0.0, (self.clock() - shown_at) * 1000.0)
        return self.store.append({
            "participant": participant, "task": trial.task, "method": trial.method, "style": trial.style,
            "level": trial.level, "pair": trial.pair, "choice": choice, "correct": int(choice == trial.answer),
            "rt_ms": round(rt_ms, 1), "trial": trial.index, "answer": trial.answer, "catch": int(trial.is_catch),
            "repeat_of": trial.repeat_of, "source": trial.source, "option_a": trial.options[0],
            "option_b": trial.options[1] if len(trial.options) > 1 else None,
            "answered_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        })


def tasks_from(name: str) -> Sequence[str]:
    return TASKS if name == "both" else (name,)
