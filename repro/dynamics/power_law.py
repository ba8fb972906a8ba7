"""Fits of the two power laws of Mori et al. (2022): the stationary exponent phi and the
escape-time slope.

**phi.** The prediction is a density in parameter space, p(theta) ~ L(theta)^(-phi), near a
minimum where L(theta) = L* (1 + u) with u = (theta - theta*)^T H (theta - theta*) / (2 L*).
For any positive definite H the volume of {u' <= u} grows like u^(d/2), so under that density
u has the density ~ (1 + u)^(-phi) u^(d/2 - 1) on u > 0; with s = u / (1 + u) this is exactly
s ~ Beta(d/2, phi - d/2) (normalisable iff phi > d/2). The tail fit keeps the samples with
u >= u_c (u_c: a quantile of the samples) and maximises the likelihood of the Beta law
truncated to s >= s_c:

    l(phi) = sum_i [(d/2 - 1) log s_i + (phi - d/2 - 1) log(1 - s_i)]
             - n [log B(d/2, phi - d/2) + log I^c_{s_c}(d/2, phi - d/2)],

I^c the upper regularised incomplete beta function. The profile-likelihood interval it also
returns treats the samples as independent; successive SGD samples are correlated, so the
reported interval comes from independent runs instead (see the figures module).

**Escape.** log <t_p> against log c by least squares; the slope's interval by resampling runs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, special, stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class PhiFit:
    phi: float
    low: float  # profile-likelihood interval, independent samples assumed
    high: float
    threshold: float  # u_c
    num_tail: int


def _log_likelihood(
    phi: float, log_s: np.ndarray, log_1ms: np.ndarray, a: float, s_c: float
) -> float:
    b = phi - a
    tail = special.betaincc(a, b, s_c) if s_c > 0 else 1.0
    if tail <= 0:
        return -math.inf
    normalizer = special.betaln(a, b) + math.log(tail)
    return float((a - 1) * log_s.sum() + (b - 1) * log_1ms.sum() - log_s.size * normalizer)


def fit_phi(excess: np.ndarray, dim: int, tail_quantile: float = 0.5) -> PhiFit:
    """Maximum-likelihood phi of p(theta) ~ L^(-phi) from samples of u = (L - L*) / L*, on the
    samples at or above their `tail_quantile` quantile (0: all of them)."""
    u = np.asarray(excess, np.float64).ravel()
    u = u[np.isfinite(u) & (u > 0)]
    if u.size < 2:
        raise ValueError(f"need >= 2 positive finite samples of u, got {u.size}")
    threshold = float(np.quantile(u, tail_quantile)) if tail_quantile > 0 else 0.0
    tail = u[u >= threshold]
    a = dim / 2.0
    log_s = np.log(tail) - np.log1p(tail)
    log_1ms = -np.log1p(tail)
    s_c = threshold / (1.0 + threshold)

    def negative(log_b: float) -> float:
        return -_log_likelihood(a + math.exp(log_b), log_s, log_1ms, a, s_c)

    # the moment guess phi ~ a / mean(s) brackets the optimum well in log(phi - a)
    guess = math.log(max(a / max(float(np.mean(np.exp(log_s))), 1e-12), 1e-3))
    best = optimize.minimize_scalar(negative, bounds=(guess - 8, guess + 8), method="bounded")
    peak = -best.fun
    drop = stats.chi2.ppf(CONFIDENCE, 1) / 2

    def profile(log_b: float) -> float:
        return -negative(log_b) - (peak - drop)

    def edge(direction: float) -> float:
        step, x = 0.05, best.x
        while profile(x + direction * step) > 0 and step < 16:
            step *= 2
        return optimize.brentq(profile, best.x, best.x + direction * step)

    low, high = (a + math.exp(edge(d)) for d in (-1.0, 1.0))
    return PhiFit(a + math.exp(best.x), low, high, threshold, int(tail.size))


@dataclasses.dataclass(frozen=True)
class SlopeFit:
    slope: float
    low: float
    high: float
    intercept: float


def escape_slope(
    thresholds: np.ndarray, passage_times: np.ndarray, resamples: int = 2000, seed: int = 0
) -> SlopeFit:
    """Least-squares slope of log(mean over runs of t_p) against log c; `passage_times`
    [runs, C] (all finite). The interval: percentile bootstrap over runs."""
    log_c = np.log(np.asarray(thresholds, np.float64))
    times = np.asarray(passage_times, np.float64)
    slope, intercept = np.polyfit(log_c, np.log(times.mean(axis=0)), 1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, times.shape[0], size=(resamples, times.shape[0]))
    means = times[picks].mean(axis=1)  # [resamples, C]
    slopes = np.polyfit(log_c, np.log(means).T, 1)[0]
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(slopes, [tail, 1 - tail])
    return SlopeFit(float(slope), float(low), float(high), float(intercept))


def loglog_slope(x: np.ndarray, y: np.ndarray) -> SlopeFit:
    """Least-squares slope of log y on log x with its 95 % t-interval (independent errors)."""
    lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
    result = stats.linregress(lx, ly)
    half = stats.t.ppf(1 - (1 - CONFIDENCE) / 2, lx.size - 2) * result.stderr
    return SlopeFit(
        float(result.slope),
        float(result.slope - half),
        float(result.slope + half),
        float(result.intercept),
    )
