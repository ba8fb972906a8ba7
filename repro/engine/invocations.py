"""The invocations of one run: each start of the same command on its run directory.

A run interrupted and resumed is trained by several invocations (processes). Each records
`start_time`, `end_time`, `wall_time_s` (seconds from its start to its end) and
`resumed_from_step` (null for the first). Every checkpoint stores the list up to that moment
(the invocation that saves it ends, for the record, at the save), so a resumed invocation
knows its predecessors; an invocation killed after its last checkpoint is recorded up to that
checkpoint (the work after it was lost and is redone by the next one).

summary.json's `metadata.wall_time_s` is the sum over invocations, `metadata.training_time_s`
the time spent in the epoch loop summed over invocations (what the final state cost), and
`metadata.invocations` the list.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from repro import run_metadata


class RunHistory:
    """Earlier invocations (from the restored checkpoint) and the current one."""

    def __init__(
        self,
        earlier: Sequence[Mapping[str, Any]],
        start_time: str,
        wall_start: float,
        resumed_from_step: int | None,
    ) -> None:
        self.earlier = [dict(entry) for entry in earlier]
        self.start_time = start_time
        self.wall_start = wall_start
        self.resumed_from_step = resumed_from_step

    def current(self) -> dict[str, Any]:
        """This invocation, as if it ended now."""
        return {
            "start_time": self.start_time,
            "end_time": run_metadata.now_iso(),
            "wall_time_s": time.perf_counter() - self.wall_start,
            "resumed_from_step": self.resumed_from_step,
        }

    def invocations(self) -> list[dict[str, Any]]:
        return [*self.earlier, self.current()]


def total_wall_time_s(invocations: Sequence[Mapping[str, Any]]) -> float:
    return float(sum(float(entry.get("wall_time_s") or 0.0) for entry in invocations))
