"""claims.json: every claim of a paper judged on its cells (rules: repro.figures.verdicts).

One entry per claim: the claim and its setting, the rule text, the cells (key -> experiment
label), our per-cell best / mean / n, the effect with its interval and n, the paper's numbers
with their source and the paper's effect, the precondition and requirement checks with their
values, the verdict (and the reason for ``not run`` / ``inconclusive``), the figures command
and the training commands of the runs used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repro.figures.data import PaperData
from repro.figures.files import write_json
from repro.figures.stats import NotEvaluableError
from repro.figures.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_RUN, Claim


def _cell_summary(data: PaperData, key: str) -> dict[str, Any] | None:
    stats = data.stats(key)
    if stats is None:
        return None
    return {"best": stats.best, "mean": stats.mean, "n": stats.n}


def _missing_reason(data: PaperData, keys: list[str]) -> str:
    parts = []
    for key in keys:
        mismatched = data.runs[key].mismatched if key in data.runs else ()
        text = data.spec.cell(key).label
        if mismatched:
            text += f" ({len(mismatched)} run(s) of another config, not used)"
        parts.append(text)
    return "no finished run of the cell's config: " + ", ".join(parts)


def _run_commands(data: PaperData, keys: tuple[str, ...]) -> list[str]:
    commands: dict[str, None] = {}
    for key in keys:
        frame = data.cell(key)
        used = set(frame["job"]) if not frame.empty else set()
        for job in data.runs[key].matched if key in data.runs else ():
            command = job.metadata.get("command")
            if command and str(job.path) in used:
                commands[command] = None
    return list(commands)


def _judged(data: PaperData, claim: Claim) -> dict[str, Any]:
    missing = [key for key in claim.cells if not data.has(key)]
    if missing:
        return {"verdict": NOT_RUN, "reason": _missing_reason(data, missing)}
    try:
        judged = claim.judge(data, data.spec.unit)
    except NotEvaluableError as error:
        return {"verdict": INCONCLUSIVE, "reason": str(error)}
    judged["reason"] = _failure_reason(judged)
    return judged


def _failed(checks: list[dict[str, Any]]) -> list[str]:
    return [f"{c['rule']}, is {c['value']:.2f}" for c in checks if not c["passed"]]


def _failure_reason(judged: dict[str, Any]) -> str:
    """Why a claim is inconclusive (its failed preconditions) or not reproduced."""
    if judged["verdict"] == INCONCLUSIVE:
        return "precondition failed: " + "; ".join(_failed(judged["preconditions"]))
    if judged["verdict"] != NOT_REPRODUCED:
        return ""
    failed = _failed(judged["requirements"])
    effect = judged["effect"]
    if effect is not None and judged["comparison_holds"] is False:  # None: no comparison
        low, high = effect["interval"]
        failed.append(
            f"{effect['test']} of {effect['treated']} over {effect['control']}: "
            f"{effect['estimate']:+.2f} [{low:+.2f}, {high:+.2f}], margin {effect['margin']:g}"
        )
    return "fails: " + "; ".join(failed)


def evaluate_claim(data: PaperData, claim: Claim, command: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": claim.id,
        "claim": claim.claim,
        "setting": claim.setting,
        "rule": claim.rule(data.spec.unit),
        "cells": {key: data.spec.cell(key).label for key in claim.cells},
        "metric": data.spec.metric,
        "unit": data.spec.unit,
        "verdict": NOT_RUN,
        "reason": "",
        "ours": {key: _cell_summary(data, key) for key in claim.cells},
        "effect": None,
        "paper": {"citation": data.spec.citation, **dict(claim.paper)},
        "paper_effect": claim.paper_effect,
        "compatible": None,
        "preconditions": [],
        "requirements": [],
        "finding": "",
    }
    entry.update(_judged(data, claim))
    entry["command"] = command
    entry["run_commands"] = _run_commands(data, claim.cells)
    entry["runs"] = {
        key: sorted(set(data.cell(key)["job"])) if data.has(key) else [] for key in claim.cells
    }
    return entry


def evaluate_claims(data: PaperData, command: str) -> list[dict[str, Any]]:
    """Every claim of ``data.spec`` judged on ``data``."""
    return [evaluate_claim(data, claim, command) for claim in data.spec.claims]


def write_claims(path: Path, data: PaperData, command: str, entries: list[dict[str, Any]]) -> None:
    payload = {
        "paper": data.spec.name,
        "citation": data.spec.citation,
        "command": command,
        "overrides": list(data.overrides),
        "claims": entries,
    }
    write_json(path, payload)
