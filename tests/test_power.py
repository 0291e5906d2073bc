"""The power behind "no difference" and the probability of improvement, against simulation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from audio2image.report.power import (MIN_PAIRS, min_detectable_gain, paired_power, probability_of_improvement,
                                      seeds_needed)


def simulated_power(gain: float, sd: float, n: int, trials: int = 20000, seed: int = 0) -> float:
    """How often scipy's paired t-test rejects at 5% on simulated differences ~ N(gain, sd^2)."""
    rng = np.random.default_rng(seed)
    differences = rng.normal(gain, sd, (trials, n))
    return float(np.mean(sps.ttest_1samp(differences, 0.0, axis=1).pvalue < 0.05))


@pytest.mark.parametrize("n, sd", [(3, 0.05), (5, 0.02), (10, 0.1)])
def test_the_detectable_gain_is_detected_80_percent_of_the_time_in_simulation(n, sd):
    gain = min_detectable_gain(sd, n)
    assert abs(simulated_power(gain, sd, n) - 0.8) < 0.015
    assert abs(simulated_power(0.7 * gain, sd, n) - paired_power(0.7 * gain, sd, n)) < 0.015


def test_seeds_needed_is_the_first_n_with_80_percent_power():
    n = seeds_needed(0.05, 0.04)
    assert n == 8 and paired_power(0.05, 0.04, 8) >= 0.8 > paired_power(0.05, 0.04, 7)
    assert simulated_power(0.05, 0.04, 8) >= 0.79
    assert seeds_needed(10.0, 0.04) == MIN_PAIRS  # never fewer pairs than the test is trusted with
    assert math.isinf(seeds_needed(1e-4, 1.0)) and math.isnan(seeds_needed(0.05, 0.0))


def test_no_spread_or_too_few_pairs_have_no_detectable_gain():
    assert math.isnan(min_detectable_gain(0.0, 5)) and math.isnan(min_detectable_gain(0.05, 2))


def test_probability_of_improvement_counts_ties_half():
    result = probability_of_improvement([0.8, 0.7, 0.9], [0.6, 0.7, 0.5])
    assert result["p"] == pytest.approx((3 + 2.5 + 3) / 9)
    assert 0 <= result["ci_low"] <= result["p"] <= result["ci_high"] <= 1
    assert probability_of_improvement([0.5], [0.5])["p"] == 0.5
    assert math.isnan(probability_of_improvement([], [0.5])["p"])


def test_the_bootstrap_interval_covers_the_true_probability_about_95_percent_of_the_time():
    """x ~ N(0.4, 1), y ~ N(0, 1): P(X > Y) = Phi(0.4 / sqrt 2). A percentile bootstrap of a rank statistic with
    12 seeds a side under-covers a little; it must stay near the nominal 95%."""
    truth = sps.norm.cdf(0.4 / math.sqrt(2))
    rng = np.random.default_rng(1)
    trials, hits = 400, 0
    for trial in range(trials):
        result = probability_of_improvement(rng.normal(0.4, 1, 12), rng.normal(0, 1, 12), resamples=1000, seed=trial)
        hits += result["ci_low"] <= truth <= result["ci_high"]
    assert 0.88 <= hits / trials <= 0.99
