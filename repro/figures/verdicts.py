"""Verdicts on a paper's claims: the vocabulary, the rules, and their text from the same code.

Every paper module states each claim as a :class:`Claim` built from three kinds of parts:

- ``preconditions`` (:class:`Check`): what must hold for the claim to be judged at all, e.g.
  "the no-noise baseline leaves chance" before "noise improves on the baseline";
- ``requirements`` (:class:`Check`): conditions the claim itself asserts, e.g. "every no-noise
  run stays at chance";
- a ``comparison`` (:class:`Comparison`) of two cells by paired differences per seed
  (:mod:`repro.figures.stats`): superiority (the 95 % interval lies above 0, optionally with a
  minimum mean effect), non-inferiority (it lies above ``-margin``) or equivalence (TOST: the
  90 % interval lies inside ``(-margin, margin)``), beside the paper's effect where it gives one.

The verdict, in this order:

- ``not run``: a cell the claim needs has no finished run of the cell's config;
- ``inconclusive``: a precondition failed, or the cells cannot be paired;
- ``not reproduced``: a requirement or the comparison fails;
- ``reproduced qualitatively``: it holds, but the paper's effect is clearly outside ours
  (outside our 95 % interval; for an equivalence claim: outside the margin);
- ``reproduced``: it holds, and the paper's effect is compatible (or the paper gives none).

:meth:`Claim.rule` writes the rule in words from the same fields :meth:`Claim.judge` applies.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from repro.figures.stats import (
    CONFIDENCE,
    EQUIVALENCE_ALPHA,
    NotEvaluableError,
    PairedDifference,
)

if TYPE_CHECKING:
    from repro.figures.data import PaperData

REPRODUCED = "reproduced"
QUALITATIVE = "reproduced qualitatively"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, QUALITATIVE, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN)

SUPERIORITY = "superiority"
NON_INFERIORITY = "non-inferiority"
EQUIVALENCE = "equivalence"
TESTS = (SUPERIORITY, NON_INFERIORITY, EQUIVALENCE)

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_STATISTICS: dict[str, Callable[[np.ndarray], Any]] = {
    "max": np.max,
    "min": np.min,
    "mean": np.mean,
}


def difference_unit(unit: str) -> str:
    """Differences of percentages are percentage points."""
    return "points" if unit == "%" else unit


def require_values(data: PaperData, key: str) -> np.ndarray:
    values = data.values(key)
    if values.size == 0:
        raise NotEvaluableError(f"cell {key} has no finite {data.spec.metric} value")
    return values


def paired_difference(
    data: PaperData, treated: str, control: str, keys: Sequence[str]
) -> PairedDifference:
    """Per-replica differences treated - control, replicas paired on ``keys`` (e.g. seed, lr).

    Raises NotEvaluableError when a key is missing or not unique in a cell, or < 2 pairs.
    """
    metric, scale = data.spec.metric, data.spec.scale
    parts = {}
    for role, key in (("treated", treated), ("control", control)):
        frame = data.cell(key)
        missing = [k for k in keys if k not in frame.columns or frame[k].isna().all()]
        if missing:
            raise NotEvaluableError(f"cell {key} has no column {missing} to pair on")
        if frame.duplicated(subset=list(keys)).any():
            raise NotEvaluableError(f"pairing keys {list(keys)} are not unique within cell {key}")
        part = frame[list(keys)].copy()
        part[role] = pd.to_numeric(frame[metric], errors="coerce") * scale
        parts[role] = part
    merged = parts["treated"].merge(parts["control"], on=list(keys), how="inner").dropna()
    if merged.empty:
        raise NotEvaluableError(
            f"no replica of {treated} pairs with one of {control} on {list(keys)}"
        )
    return PairedDifference.from_differences((merged["treated"] - merged["control"]).to_numpy())


@dataclasses.dataclass(frozen=True)
class Statistic:
    """``name`` (max / min / mean) over the pooled per-replica values of ``cells``."""

    name: str
    cells: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.name not in _STATISTICS:
            raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, got {self.name!r}")

    def value(self, data: PaperData) -> float:
        pooled = np.concatenate([require_values(data, key) for key in self.cells])
        return float(_STATISTICS[self.name](pooled))

    def text(self) -> str:
        return f"{self.name}({' + '.join(self.cells)})"


def statistic(name: str, *cells: str) -> Statistic:
    return Statistic(name, tuple(cells))


def checked(rule: str, value: float, against: float, passed: bool) -> dict[str, Any]:
    """A requirement as claims.json stores it: the rule in words, the measured value, what it
    was held against and whether it passed (for rules a paper module evaluates itself)."""
    return {"rule": rule, "value": float(value), "against": float(against), "passed": bool(passed)}


@dataclasses.dataclass(frozen=True)
class Check:
    """``left op right``, ``right`` a threshold (in the paper's unit) or another statistic."""

    left: Statistic
    op: str
    right: float | Statistic
    meaning: str = ""  # why the check is there, in words

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise ValueError(f"op must be one of {sorted(_OPERATORS)}, got {self.op!r}")

    @property
    def cells(self) -> tuple[str, ...]:
        right = self.right.cells if isinstance(self.right, Statistic) else ()
        return (*self.left.cells, *right)

    def text(self, unit: str) -> str:
        if isinstance(self.right, Statistic):
            right = self.right.text()
        else:
            right = f"{self.right:g} {unit}".rstrip()
        text = f"{self.left.text()} {self.op} {right}"
        return f"{text} ({self.meaning})" if self.meaning else text

    def evaluate(self, data: PaperData, unit: str) -> dict[str, Any]:
        value = self.left.value(data)
        against = self.right.value(data) if isinstance(self.right, Statistic) else self.right
        return checked(self.text(unit), value, against, _OPERATORS[self.op](value, against))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Paired mean difference ``treated - control`` tested for ``test`` with ``margin``.

    superiority: the 95 % interval lies above 0 and the mean is >= ``margin`` (a minimum
    effect, 0 = any); non-inferiority: the 95 % interval lies above ``-margin``; equivalence:
    TOST at level 0.05 (the 90 % interval lies inside ``(-margin, margin)``).
    """

    treated: str
    control: str
    test: str
    margin: float = 0.0
    pair_keys: tuple[str, ...] = ("seed",)

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise ValueError(f"test must be one of {list(TESTS)}, got {self.test!r}")
        if self.test != SUPERIORITY and self.margin <= 0:
            raise ValueError(f"a {self.test} test needs a margin > 0, got {self.margin}")

    @property
    def cells(self) -> tuple[str, ...]:
        return self.treated, self.control

    def text(self, unit: str) -> str:
        points = difference_unit(unit)
        difference = (
            f"the paired mean difference {self.treated} - {self.control} "
            f"(pairs matched on {', '.join(self.pair_keys)})"
        )
        interval = f"its {CONFIDENCE:.0%} t-interval"
        if self.test == SUPERIORITY:
            minimum = f" and its mean is >= {self.margin:g} {points}" if self.margin else ""
            return f"{difference}: {interval} lies above 0{minimum}"
        if self.test == NON_INFERIORITY:
            return f"{difference}: {interval} lies above -{self.margin:g} {points}"
        tost = 1 - 2 * EQUIVALENCE_ALPHA
        return (
            f"{difference} is equivalent to 0 within +-{self.margin:g} {points} (TOST at "
            f"level {EQUIVALENCE_ALPHA:g}: its {tost:.0%} t-interval lies inside the margin)"
        )

    def compatibility_text(self, paper_effect: float | None, unit: str) -> str:
        if paper_effect is None:
            return "The paper gives no number for this effect: a claim that holds is reproduced."
        points = difference_unit(unit)
        where = (
            f"within +-{self.margin:g} {points}"
            if self.test == EQUIVALENCE
            else f"inside our {CONFIDENCE:.0%} interval"
        )
        return (
            f"Reproduced if the paper's difference ({paper_effect:+.1f} {points}) lies {where}, "
            "else reproduced qualitatively."
        )

    def evaluate(self, data: PaperData) -> tuple[bool, dict[str, Any]]:
        diff = paired_difference(data, self.treated, self.control, self.pair_keys)
        effect = {"treated": self.treated, "control": self.control, "test": self.test}
        effect |= diff.as_dict() | {"pair_keys": list(self.pair_keys), "margin": self.margin}
        low, _ = diff.interval()
        if self.test == SUPERIORITY:
            holds = low > 0 and diff.mean >= self.margin
        elif self.test == NON_INFERIORITY:
            holds = low > -self.margin
        else:
            confidence = 1 - 2 * EQUIVALENCE_ALPHA
            p_value = diff.equivalence_p(self.margin)
            effect["equivalence"] = {
                "interval": list(diff.interval(confidence)),
                "confidence": confidence,
                "p": p_value,
            }
            holds = p_value < EQUIVALENCE_ALPHA
        return bool(holds), effect

    def compatible(self, effect: Mapping[str, Any], paper_effect: float | None) -> bool | None:
        if paper_effect is None:
            return None
        if self.test == EQUIVALENCE:
            return abs(paper_effect) < self.margin
        low, high = effect["interval"]
        return bool(low <= paper_effect <= high)

    def finding(self, effect: Mapping[str, Any], unit: str) -> str:
        """What the 95 % interval says in words (e.g. a small but measurable loss)."""
        low, high = effect["interval"]
        span = f"{effect['estimate']:+.2f} {difference_unit(unit)} [{low:+.2f}, {high:+.2f}]"
        if low > 0 or high < 0:
            direction = "higher" if low > 0 else "lower"
            return f"{self.treated} is measurably {direction} than {self.control}: {span}"
        return f"no measurable difference between {self.treated} and {self.control}: {span}"


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of the paper with its verdict rule (see the module docstring)."""

    id: str
    claim: str
    setting: str
    comparison: Comparison | None = None
    requirements: tuple[Check, ...] = ()
    preconditions: tuple[Check, ...] = ()
    paper_effect: float | None = None  # the paper's value of the comparison's effect
    paper: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # numbers + source

    def __post_init__(self) -> None:
        if self.comparison is None and not self.requirements:
            raise ValueError(f"claim {self.id} needs a comparison or a requirement")

    @property
    def cells(self) -> tuple[str, ...]:
        parts = [check.cells for check in (*self.preconditions, *self.requirements)]
        if self.comparison is not None:
            parts.append(self.comparison.cells)
        return tuple(dict.fromkeys(key for part in parts for key in part))

    def rule(self, unit: str = "%") -> str:
        sentences = []
        if self.preconditions:
            checks = "; ".join(check.text(unit) for check in self.preconditions)
            sentences.append(f"Judged only if {checks}; otherwise inconclusive.")
        holds = [check.text(unit) for check in self.requirements]
        if self.comparison is not None:
            holds.append(self.comparison.text(unit))
        sentences.append(f"Holds if {' and '.join(holds)}; otherwise not reproduced.")
        if self.comparison is not None:
            sentences.append(self.comparison.compatibility_text(self.paper_effect, unit))
        return " ".join(sentences)

    def judge(self, data: PaperData, unit: str = "%") -> dict[str, Any]:
        """Verdict and evidence on cells that all ran; NotEvaluableError if nothing pairs."""
        preconditions = [check.evaluate(data, unit) for check in self.preconditions]
        requirements = [check.evaluate(data, unit) for check in self.requirements]
        holds, effect, compatible, finding = True, None, None, ""
        if self.comparison is not None:
            holds, effect = self.comparison.evaluate(data)
            compatible = self.comparison.compatible(effect, self.paper_effect)
            finding = self.comparison.finding(effect, unit)
        if not all(check["passed"] for check in preconditions):
            verdict = INCONCLUSIVE
        elif not (holds and all(check["passed"] for check in requirements)):
            verdict = NOT_REPRODUCED
        else:
            verdict = QUALITATIVE if compatible is False else REPRODUCED
        return {
            "verdict": verdict,
            "preconditions": preconditions,
            "requirements": requirements,
            "effect": effect,
            "paper_effect": self.paper_effect,
            "compatible": compatible,
            "comparison_holds": holds if self.comparison is not None else None,
            "finding": finding,
        }


@dataclasses.dataclass(frozen=True)
class MeasuredClaim(Claim):
    """A claim whose rule is a function of the whole data (a tuned optimum, a count, a file
    beside the runs), not a paired difference of two cells.

    ``measure(data)`` applies the rule and returns ``verdict`` (one of VERDICTS),
    ``preconditions`` and ``requirements`` (check dicts: rule, value, against, passed),
    ``effect`` (estimate, interval, n, or None) and ``finding``; ``rule_text`` says in words
    what ``measure`` does, from the same constants. ``cell_keys`` are the cells that must have
    runs (none: ``measure`` says itself when its input is missing, as ``not run``).
    """

    cell_keys: tuple[str, ...] = ()
    rule_text: str = ""
    measure: Callable[[PaperData], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.measure is None or not self.rule_text:
            raise ValueError(f"claim {self.id} needs a measure and its rule_text")

    @property
    def cells(self) -> tuple[str, ...]:
        return self.cell_keys

    def rule(self, unit: str = "%") -> str:
        return self.rule_text

    def judge(self, data: PaperData, unit: str = "%") -> dict[str, Any]:
        assert self.measure is not None
        found = self.measure(data)
        if found["verdict"] not in VERDICTS:
            raise ValueError(f"claim {self.id}: measure returned verdict {found['verdict']!r}")
        return {
            "verdict": found["verdict"],
            "preconditions": list(found.get("preconditions", [])),
            "requirements": list(found.get("requirements", [])),
            "effect": found.get("effect"),
            "paper_effect": self.paper_effect,
            "compatible": None,
            "comparison_holds": None,
            "finding": found.get("finding", ""),
        }
