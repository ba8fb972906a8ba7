"""Uncertainty of a per-seed comparison: paired differences, t intervals, equivalence tests.

A claim compares two cells run with the same seeds (and grid values), so replica ``i`` of the
treated cell and its partner in the control cell share their initial parameters and data
order. With paired differences ``d_i = treated_i - control_i`` (i = 1..n):

- mean ``d̄``, sample standard deviation ``s`` (ddof = 1), standard error ``se = s / sqrt(n)``;
- the two-sided ``c`` Student-t interval ``d̄ ± t_{(1 + c) / 2, n - 1} · se``;
- the equivalence test for ``|mean| < m`` (TOST, two one-sided t tests, Schuirmann 1987):
  ``p = max(P(T_{n-1} > (d̄ + m) / se), P(T_{n-1} < (d̄ - m) / se))``; equivalence at level
  ``α`` holds iff ``p < α``, i.e. iff the ``1 - 2α`` interval lies inside ``(-m, m)``.

When every difference is the same (``se = 0``, e.g. both arms stuck at the same chance
accuracy) the interval is that single value and the tests are decided by it exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95  # two-sided intervals of every effect
EQUIVALENCE_ALPHA = 0.05  # TOST level: equivalent iff the 90 % interval lies inside the margin


class NotEvaluableError(Exception):
    """The cells exist but a rule cannot be applied to them (e.g. nothing pairs)."""


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """Summary of paired differences treated - control (same unit as the values)."""

    n: int
    mean: float
    sd: float
    n_treated_better: int
    n_control_better: int

    @classmethod
    def from_differences(cls, differences: np.ndarray) -> PairedDifference:
        diff = np.asarray(differences, dtype=float)
        if diff.size < 2:
            raise NotEvaluableError(f"a paired interval needs >= 2 pairs, got {diff.size}")
        return cls(
            n=int(diff.size),
            mean=float(diff.mean()),
            sd=float(diff.std(ddof=1)),
            n_treated_better=int((diff > 0).sum()),
            n_control_better=int((diff < 0).sum()),
        )

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n)

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """Two-sided Student-t interval of the mean difference."""
        half = float(scipy_stats.t.ppf((1 + confidence) / 2, self.n - 1)) * self.se
        return self.mean - half, self.mean + half

    def equivalence_p(self, margin: float) -> float:
        """TOST p-value for |mean difference| < margin (small: equivalent)."""
        if self.se == 0.0:
            return 0.0 if abs(self.mean) < margin else 1.0
        t_lower = (self.mean + margin) / self.se
        t_upper = (self.mean - margin) / self.se
        p_lower = float(scipy_stats.t.sf(t_lower, self.n - 1))
        p_upper = float(scipy_stats.t.cdf(t_upper, self.n - 1))
        return max(p_lower, p_upper)

    def as_dict(self, confidence: float = CONFIDENCE) -> dict[str, Any]:
        low, high = self.interval(confidence)
        return {
            "n": self.n,
            "estimate": self.mean,
            "interval": [low, high],
            "confidence": confidence,
            "se": self.se,
            "sd": self.sd,
            "n_treated_better": self.n_treated_better,
            "n_control_better": self.n_control_better,
        }
