"""Statistics of the bench, checked against scipy.stats as the oracle."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from ecgtransfer.bench.stats import mean_ci, paired_diff, spread, summarise_time_to_target, time_to_target


def test_mean_ci_hand_example_matches_scipy_t_interval():
    # three seeds' macro-F1: mean 0.75, sample sd 0.05, so CI = 0.75 +- t(0.975, 2) * 0.05 / sqrt(3)
    vals = [0.70, 0.80, 0.75]
    s = mean_ci(vals)
    assert s.n == 3
    assert s.mean == pytest.approx(0.75)
    assert s.sd == pytest.approx(0.05)
    half = st.t.ppf(0.975, 2) * 0.05 / math.sqrt(3)
    assert s.lo == pytest.approx(0.75 - half, abs=1e-12)
    assert s.hi == pytest.approx(0.75 + half, abs=1e-12)
    lo, hi = st.t.interval(0.95, 2, loc=np.mean(vals), scale=st.sem(vals))
    assert (s.lo, s.hi) == pytest.approx((lo, hi), abs=1e-12)
    assert s.half_width == pytest.approx(half)


@pytest.mark.parametrize("n", [2, 5, 10])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_mean_ci_random_against_scipy(n, level):
    x = np.random.default_rng(n).normal(0.6, 0.1, size=n)
    s = mean_ci(x.tolist(), level)
    lo, hi = st.t.interval(level, n - 1, loc=x.mean(), scale=st.sem(x))
    assert (s.lo, s.hi) == pytest.approx((lo, hi), rel=1e-10)
    assert s.level == level


def test_mean_ci_single_and_empty_and_none():
    one = mean_ci([0.5])
    assert one.n == 1 and one.mean == 0.5 and one.lo is None and one.hi is None
    assert "no CI" in one.fmt()
    empty = mean_ci([])
    assert empty.n == 0 and empty.mean is None and empty.fmt() == "n/a"
    assert mean_ci([None, 0.2, float("nan"), 0.4]).n == 2


def test_paired_diff_matches_scipy_ttest_rel():
    arm = {0: 0.80, 1: 0.90, 2: 0.85, 3: 0.70}
    base = {0: 0.70, 1: 0.75, 2: 0.80, 9: 0.1}  # seed 3 and 9 unpaired: ignored
    d = paired_diff(arm, base)
    assert d.n == 3
    seeds = [0, 1, 2]
    ref = st.ttest_rel([arm[s] for s in seeds], [base[s] for s in seeds]).confidence_interval(0.95)
    assert d.mean == pytest.approx(0.10)
    assert (d.lo, d.hi) == pytest.approx((ref.low, ref.high), rel=1e-10)
    assert d.excludes_zero() == (ref.low > 0 or ref.high < 0)


def test_paired_ci_removes_shared_seed_variance():
    # the seed effect is shared by both arms: paired CI is narrow, the difference of independent CIs is not
    seed_effect = np.array([0.0, 0.2, -0.15, 0.1])
    a = {i: 0.7 + e + 0.05 + 0.001 * i for i, e in enumerate(seed_effect)}
    b = {i: 0.7 + e for i, e in enumerate(seed_effect)}
    d = paired_diff(a, b)
    assert d.excludes_zero() and d.lo > 0
    ua, ub = mean_ci(a.values()), mean_ci(b.values())
    assert ua.lo < ub.hi  # unpaired intervals overlap


def test_time_to_target():
    hist = [{"epoch": 1, "elapsed_s": 10.0, "val_macro_f1": 0.3},
            {"epoch": 2, "elapsed_s": 21.0, "val_macro_f1": float("nan")},
            {"epoch": 3, "elapsed_s": 30.5, "val_macro_f1": 0.6},
            {"epoch": 4, "elapsed_s": 40.0, "val_macro_f1": 0.7}]
    assert time_to_target(hist, 0.55) == (3, 30.5)
    assert time_to_target(hist, 0.3) == (1, 10.0)
    assert time_to_target(hist, 0.9) is None
    s = summarise_time_to_target([(3, 30.0), None, (5, 50.0)])
    assert s["reached"] == 2 and s["of"] == 3
    assert s["epochs"]["mean"] == 4.0
    lo, hi = st.t.interval(0.95, 1, loc=40.0, scale=st.sem([30.0, 50.0]))
    assert (s["seconds"]["lo"], s["seconds"]["hi"]) == pytest.approx((lo, hi))


def test_spread():
    s = spread(v for v in [0.9, None, 0.8, 1.0])
    assert s["n"] == 3 and s["min"] == 0.8 and s["max"] == 1.0
    assert s["sd"] == pytest.approx(np.std([0.9, 0.8, 1.0], ddof=1))
