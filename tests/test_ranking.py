"""Kendall's tau, bootstrap intervals and the ranker comparison, against scipy and known inputs."""

import math
import random

import pytest
from scipy import stats

from shufflesearch.accuracy.ranking import agreement, bootstrap_interval, kendall, spearman


def test_kendall_matches_scipys_tau_b_with_ties():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(2, 12)
        x, y = [rng.randint(0, 4) for _ in range(n)], [rng.randint(0, 4) for _ in range(n)]
        expected = stats.kendalltau(x, y).statistic
        assert (math.isnan(kendall(x, y)) and math.isnan(expected)) or kendall(x, y) == pytest.approx(expected)
    assert kendall([1, 2, 3], [3, 2, 1]) == -1.0 and math.isnan(kendall([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="equal-length"):
        kendall([1, 2], [1])


def test_a_bootstrap_interval_is_seeded_holds_the_estimate_and_narrows_with_agreement():
    rng = random.Random(1)
    truth = [rng.random() for _ in range(15)]
    noisy = [t + rng.gauss(0, 0.3) for t in truth]
    low, high = bootstrap_interval(noisy, truth, spearman)
    assert low <= spearman(noisy, truth) <= high and high - low > 0.1
    assert bootstrap_interval(noisy, truth, spearman) == (low, high)  # seeded: the same interval every time
    assert bootstrap_interval(noisy, truth, spearman, seed=1) != (low, high)
    assert bootstrap_interval(truth, truth, kendall) == (1.0, 1.0)  # perfect agreement has no spread
    # Every resample of a constant ranker is constant: no correlation, no interval.
    assert all(math.isnan(v) for v in bootstrap_interval([1.0] * 15, truth, spearman))


def test_agreement_figures_each_ranker_overall_and_within_each_group():
    truth = [1, 2, 3, 4, 5, 6]
    groups = ["a", "a", "a", "b", "b", "b"]
    # Right across the groups, backwards within them: the case where a count looks good and is not.
    across = [3, 2, 1, 6, 5, 4]
    result = agreement(truth, {"across": across, "with gaps": [1, math.nan, 3, 4, 5, 6]}, groups, resamples=200)
    assert result["across"]["spearman"] == pytest.approx(stats.spearmanr(across, truth).statistic)
    assert result["across"]["kendall"] == pytest.approx(stats.kendalltau(across, truth).statistic)
    assert result["across"]["by_group"]["a"]["spearman"] == -1.0 == result["across"]["by_group"]["b"]["kendall"]
    assert result["with gaps"]["n"] == 5 and result["with gaps"]["by_group"]["a"]["n"] == 2
    assert math.isnan(result["with gaps"]["by_group"]["a"]["spearman"])  # two items: no rank correlation to speak of
    with pytest.raises(ValueError, match="one per item"):
        agreement(truth, {"short": [1, 2]}, groups)
