"""The run folder's record of what happened: `metrics.jsonl` (one JSON object per log line)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from styleid_guidance.files.atomic import atomic_write


class MetricsLog:
    """Append-only JSONL on the main process; on resume, drops lines from after the checkpoint."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                continue
        return out

    def truncate_after(self, step: int) -> None:
        if not (self.enabled and self.path.exists()):
            return
        kept = [json.dumps(r) for r in self.records() if r.get("step", 0) <= step]
        with atomic_write(self.path) as tmp:
            tmp.write_text("".join(k + "\n" for k in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def eval_at(self, step: int) -> dict[str, Any] | None:
        """The evaluation report logged at `step` (e.g. 0: the untrained encoder), if any."""
        found = [r["eval"] for r in self.records() if r.get("step") == step and "eval" in r]
        return found[-1] if found else None
