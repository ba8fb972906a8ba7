"""Paired t intervals and the TOST equivalence test against scipy and their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from repro.figures.stats import NotEvaluableError, PairedDifference


@pytest.mark.parametrize("seed", range(20))
def test_interval_matches_scipy_paired_t_test(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 41))
    control = rng.normal(50, 20, n)
    treated = control + rng.normal(rng.normal(0, 3), 2, n)
    diff = PairedDifference.from_differences(treated - control)
    reference = stats.ttest_rel(treated, control).confidence_interval(0.95)
    assert diff.interval(0.95) == pytest.approx((reference.low, reference.high), rel=1e-10)
    assert diff.se == pytest.approx(stats.sem(treated - control), rel=1e-12)


@pytest.mark.parametrize("seed", range(200))
def test_tost_p_is_the_larger_one_sided_p_and_agrees_with_the_90_percent_interval(
    seed: int,
) -> None:
    rng = np.random.default_rng(1000 + seed)
    n, margin = int(rng.integers(3, 41)), float(rng.uniform(0.2, 2.0))
    differences = rng.normal(rng.uniform(-2, 2), rng.uniform(0.1, 3), n)
    diff = PairedDifference.from_differences(differences)
    lower = stats.ttest_1samp(differences, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(differences, margin, alternative="less").pvalue
    assert diff.equivalence_p(margin) == pytest.approx(max(lower, upper), rel=1e-9, abs=1e-15)
    low, high = diff.interval(0.90)
    assert (diff.equivalence_p(margin) < 0.05) == (-margin < low and high < margin)


def test_identical_differences_give_a_point_interval() -> None:
    # Both arms stuck at the same chance accuracy: every difference is 0.
    diff = PairedDifference.from_differences(np.zeros(40))
    assert diff.interval() == (0.0, 0.0)
    assert diff.equivalence_p(1.0) == 0.0
    shifted = PairedDifference.from_differences(np.full(5, 2.0))
    assert shifted.equivalence_p(1.0) == 1.0 and shifted.interval() == (2.0, 2.0)


def test_counts_and_too_few_pairs() -> None:
    diff = PairedDifference.from_differences(np.array([1.0, -2.0, 0.0, 3.0]))
    assert (diff.n, diff.n_treated_better, diff.n_control_better) == (4, 2, 1)
    with pytest.raises(NotEvaluableError, match="needs >= 2 pairs, got 1"):
        PairedDifference.from_differences(np.array([1.0]))


def test_rule_text_is_generated_from_the_rule_constants() -> None:
    from repro.figures import neelakantan2015 as paper
    from repro.figures.verdicts import EQUIVALENCE, Claim, Comparison

    claims = {claim.id: claim for claim in paper.CLAIMS}
    assert f"max(simple_noclip) > {paper.CHANCE_MAX:g} %" in claims["2a"].rule()
    assert f"within +-{paper.EQUAL_WITHIN:g} points" in claims["4"].rule()
    assert f"its mean is >= {paper.ZERO_INIT_MIN_LIFT:g} points" in claims["1"].rule()
    wider = Claim(
        "x", "c", "s", comparison=Comparison("a", "b", EQUIVALENCE, 2.5), paper_effect=3.0
    )
    assert "within +-2.5 points" in wider.rule()
    assert "paper's difference (+3.0 points) lies within +-2.5 points" in wider.rule()
    with pytest.raises(ValueError, match="needs a margin > 0"):
        Comparison("a", "b", EQUIVALENCE, 0.0)
