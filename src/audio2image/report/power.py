"""What a comparison could have detected, and how likely one init beats another: the numbers behind every "no
difference".

- `min_detectable_gain`: the smallest true mean difference that a two-sided paired t-test of n pairs detects with
  probability `POWER` (80%), given the observed sd of the paired differences (the noncentral t).
- `seeds_needed`: the fewest pairs (seeds) that detect a given gain with that probability, at that sd.
- `probability_of_improvement`: P(X > Y) over seeds (ties count half; Mann-Whitney's statistic, as rliable,
  Agarwal et al. 2021), with a percentile bootstrap interval that resamples each init's seeds on their own
  (stratified by init, as rliable's stratified bootstrap resamples within each task).

Pure numpy/scipy, like stats.py.

    >>> min_detectable_gain(sd=0.04, n=3)          # 0.149: 15 points of accuracy
    >>> seeds_needed(gain=0.05, sd=0.04)           # 8
    >>> probability_of_improvement([.8, .7, .9], [.6, .7, .5])
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import stats as sps

POWER = 0.8
ALPHA = 0.05
MIN_PAIRS = 3  # a paired t-test on fewer pairs (1 degree of freedom) is never taken as evidence
MAX_SEEDS = 1000  # seeds_needed says "more than" beyond this


def paired_power(gain: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """The probability that a two-sided paired t-test at level `alpha` on `n` pairs rejects, when the true mean
    difference is `gain` and the differences' sd is `sd`."""
    if n < 2 or not sd > 0:
        return math.nan
    df, shift = n - 1, abs(gain) * math.sqrt(n) / sd
    critical = sps.t.ppf(1 - alpha / 2, df)
    power = float(sps.nct.sf(critical, df, shift) + sps.nct.cdf(-critical, df, shift))
    if not math.isfinite(power):  # scipy's noncentral t gives nan far in its tail: the normal limit is exact there
        power = float(sps.norm.sf(critical - shift) + sps.norm.cdf(-critical - shift))
    return power


def min_detectable_gain(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest |mean difference| detected with probability `power` by the paired t-test of `n` pairs whose
    differences have sd `sd`; nan when there is no spread to judge by or too few pairs for the test."""
    if n < MIN_PAIRS or not (math.isfinite(sd) and sd > 0):
        return math.nan
    scale = sd * (sps.t.ppf(1 - alpha / 2, n - 1) + sps.t.ppf(power, n - 1) + 2) / math.sqrt(n)
    high = scale
    while paired_power(high, sd, n, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda g: paired_power(g, sd, n, alpha) - power, 0.0, high, xtol=sd * 1e-6))


def seeds_needed(gain: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The fewest pairs (at least MIN_PAIRS) whose paired t-test detects a true mean difference `gain` with
    probability `power`, the differences' sd being `sd`; inf beyond MAX_SEEDS, nan without a gain or a spread."""
    if not (math.isfinite(gain) and gain != 0 and math.isfinite(sd) and sd > 0):
        return math.nan
    if paired_power(gain, sd, MAX_SEEDS, alpha) < power:
        return math.inf
    low, high = MIN_PAIRS, MAX_SEEDS  # power grows with n: bisect for the first n that reaches it
    if paired_power(gain, sd, low, alpha) >= power:
        return float(low)
    while high - low > 1:
        middle = (low + high) // 2
        if paired_power(gain, sd, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return float(high)


def probability_of_improvement(x, y, resamples: int = 2000, seed: int = 0,
                               confidence: float = 0.95) -> dict:
    """P(X > Y) for the seeds' values `x` (an init) and `y` (the baseline), ties counting half, with a percentile
    bootstrap interval: each resample draws x's seeds and y's seeds with replacement, each on its own.

    Returns {"p", "ci_low", "ci_high", "n_x", "n_y"}; nan where either side has no value.
    """
    x = np.asarray([v for v in x if math.isfinite(v)], dtype=float)
    y = np.asarray([v for v in y if math.isfinite(v)], dtype=float)
    out = {"p": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_x": len(x), "n_y": len(y)}
    if not len(x) or not len(y):
        return out
    out["p"] = _improvement(x[None, :], y[None, :])[0]
    rng = np.random.default_rng(seed)
    xs = x[rng.integers(0, len(x), (resamples, len(x)))]
    ys = y[rng.integers(0, len(y), (resamples, len(y)))]
    low, high = np.quantile(_improvement(xs, ys), [(1 - confidence) / 2, (1 + confidence) / 2])
    out.update(ci_low=float(low), ci_high=float(high))
    return out


def _improvement(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Row-wise P(X > Y) + P(X = Y) / 2 of [rows, n_x] against [rows, n_y]."""
    greater = (xs[:, :, None] > ys[:, None, :]).mean(axis=(1, 2))
    ties = (xs[:, :, None] == ys[:, None, :]).mean(axis=(1, 2))
    return greater + ties / 2
