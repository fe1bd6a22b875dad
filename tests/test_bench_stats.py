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
    assert s["epochs"]["mean"] == 4.0 and s["epochs_each"] == [3, 5] and s["seconds_each"] == [30.0, 50.0]
    lo, hi = st.t.interval(0.95, 1, loc=40.0, scale=st.sem([30.0, 50.0]))
    assert (s["seconds"]["lo"], s["seconds"]["hi"]) == pytest.approx((lo, hi))


def test_spread():
    s = spread(v for v in [0.9, None, 0.8, 1.0])
    assert s["n"] == 3 and s["min"] == 0.8 and s["max"] == 1.0
    assert s["sd"] == pytest.approx(np.std([0.9, 0.8, 1.0], ddof=1))


# -- the paired bootstrap over test records and seeds ------------------------------------------------------------

def _beats(seed: int, n_records: int = 3, k: int = 4, n_seeds: int = 2):
    """Per seed and record: true and predicted labels of a few beats (records of very different sizes/classes)."""
    rng = np.random.default_rng(seed)
    truth = [rng.choice(k, size=int(rng.integers(5, 40)), p=rng.dirichlet(np.ones(k) * 0.7)) for _ in range(n_records)]
    preds = [[np.where(rng.random(len(t)) < 0.6, t, rng.integers(0, k, len(t))) for t in truth]
             for _ in range(n_seeds)]
    return truth, preds


def _cms(truth, preds, k=4):
    from sklearn.metrics import confusion_matrix

    return np.array([[confusion_matrix(t, p, labels=range(k)) for t, p in zip(truth, ps)] for ps in preds])


def _direct(truth, preds, recs, seeds):
    """One replicate computed from the beats: pool the drawn records, sklearn's macro-F1 over the classes with
    support, averaged over the drawn seeds."""
    from sklearn.metrics import f1_score

    vals = []
    for s in seeds:
        yt = np.concatenate([truth[r] for r in recs])
        yp = np.concatenate([preds[s][r] for r in recs])
        vals.append(f1_score(yt, yp, labels=np.unique(yt), average="macro", zero_division=0))
    return float(np.mean(vals))


def test_bootstrap_replicates_and_ci_equal_a_direct_computation():
    """Every replicate equals sklearn's macro-F1 of the pooled beats of the drawn records, averaged over the drawn
    seeds; with all 27 ordered record draws of 3 records (one seed) the percentile CI is that of the exact
    bootstrap distribution."""
    import itertools

    from ecgtransfer.bench.stats import Resamples, bootstrap_replicates, bootstrap_summary, draw_resamples

    truth, preds = _beats(0)
    cms = _cms(truth, preds)
    rs = draw_resamples(3, 2, 50, seed=7)
    got = bootstrap_replicates(cms, rs)
    want = [_direct(truth, preds, rs.records[b], rs.seeds[b]) for b in range(rs.n)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # the exact bootstrap distribution of one seed over 3 records
    draws = np.array(list(itertools.product(range(3), repeat=3)))
    exact = Resamples(draws, np.zeros((len(draws), 1), dtype=np.int64))
    reps = bootstrap_replicates(cms[:1], exact)
    direct = np.array([_direct(truth, preds[:1], d, [0]) for d in draws])
    np.testing.assert_allclose(reps, direct, atol=1e-12)
    s = bootstrap_summary(0.5, reps, n_seeds=1, n_records=3)
    assert s["lo"] == pytest.approx(np.quantile(direct, 0.025)) and s["hi"] == pytest.approx(np.quantile(direct, 0.975))
    assert s["mean"] == 0.5 and s["n_records"] == 3 and s["replicates"] == 27


def test_bootstrap_is_paired_across_arms():
    """Two arms that differ on one record only: with the same draws their replicate difference is nonzero exactly
    in the replicates that drew that record; an arm against itself differs by 0 in every replicate."""
    from ecgtransfer.bench.aggregate import paired_bootstrap
    from ecgtransfer.bench.stats import draw_resamples

    truth, preds = _beats(1, n_records=6, n_seeds=3)
    a = _cms(truth, preds)
    b = a.copy()
    b[:, 4] = 0
    b[:, 4, np.arange(4), np.arange(4)] = a[:, 4].sum(axis=2)  # record 4 perfectly classified by arm b
    rs = draw_resamples(6, 3, 400, seed=3)
    out = paired_bootstrap({"a": a, "b": b}, rs)
    d = out["b"] - out["a"]
    has4 = (rs.records == 4).any(axis=1)
    assert np.all(d[~has4] == 0) and np.all(d[has4] != 0)
    assert np.all(paired_bootstrap({"a": a, "a2": a.copy()}, rs)["a2"] - out["a"] == 0)
    # unpaired draws (another seed for the second arm) would not have cancelled
    other = paired_bootstrap({"a": a}, draw_resamples(6, 3, 400, seed=4))["a"]
    assert np.any(other - out["a"] != 0)


def test_holm_equals_statsmodels_and_a_hand_table():
    from ecgtransfer.bench.stats import holm

    # hand-checked: sorted p = .01 .02 .03 .04 (m = 4): 4*.01=.04, 3*.02=.06, 2*.03=.06, 1*.04=.04 -> max-accumulate
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])
    assert holm([0.2, float("nan")])[0] == pytest.approx(0.2) and np.isnan(holm([0.2, float("nan")])[1])
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 17):
        p = rng.random(m) ** 3
        np.testing.assert_allclose(holm(p), multitest.multipletests(p, method="holm")[1], atol=1e-12)


def test_bootstrap_p_value_and_macro_f1_of_confusion():
    from sklearn.metrics import f1_score

    from ecgtransfer.bench.stats import bootstrap_p_value, macro_f1_of_confusion

    assert bootstrap_p_value(np.ones(99)) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.r_[np.ones(50), -np.ones(50)]) == 1.0
    truth, preds = _beats(2)
    yt, yp = np.concatenate(truth), np.concatenate(preds[0])
    cm = _cms(truth, preds)[0].sum(axis=0)
    assert macro_f1_of_confusion(cm) == pytest.approx(f1_score(yt, yp, labels=np.unique(yt), average="macro"))


def test_contrasts_primary_first_secondary_holm_adjusted():
    """Cells with per-record confusion matrices: the primary contrast comes first with its own (unadjusted) p and
    verdict from its interval; the secondary contrasts' p are Holm-adjusted together; an arm marked as without
    verdict gets none; the per-arm interval is the bootstrap over records and seeds."""
    from ecgtransfer.bench.aggregate import bootstrap_contrast, contrasts, summarise
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.bench.stats import holm, macro_f1_of_confusion

    cfg = config_from_dict({
        "bench": {"name": "c", "seeds": [0, 1, 2], "fractions": [0.2, 1.0], "bootstrap_replicates": 300,
                  "primary": {"arm": "imagenet", "baseline": "scratch"}},
        "task": {"store": "/nowhere"}, "arms": ["scratch", "imagenet", "ecg-pretrained"],
        "source": {"store": "/x"}})
    rng = np.random.default_rng(5)
    truth = [rng.choice(3, size=int(rng.integers(20, 60)), p=[0.7, 0.2, 0.1]) for _ in range(8)]
    skill = {"scratch": 0.5, "imagenet": 0.8, "ecg-pretrained": 0.55}
    records = []
    for arm, acc in skill.items():
        for frac in (0.2, 1.0):
            for s in range(3):
                preds = [np.where(rng.random(len(t)) < acc, t, rng.integers(0, 3, len(t))) for t in truth]
                mats = [np.array([[np.sum((t == i) & (p == j)) for j in range(3)] for i in range(3)])
                        for t, p in zip(truth, preds)]
                f1 = float(macro_f1_of_confusion(np.sum(mats, axis=0)))
                records.append({"cell": {"arm": arm, "encoding": "spectrogram", "fraction": frac, "seed": s},
                                "status": "done", "test": {"macro_f1": f1},
                                "record_confusion": {"split": "test", "records": [f"r{i}" for i in range(8)],
                                                     "matrices": [m.tolist() for m in mats]}})
    out = contrasts(cfg, records, no_verdict={"ecg-pretrained": "source did not learn (spectrogram)"})
    assert out[0]["primary"] and (out[0]["arm"], out[0]["fraction"]) == ("imagenet", 1.0)
    assert out[0]["p_holm"] is None and out[0]["verdict"] == "helped" and out[0]["diff"]["lo"] > 0
    sec = out[1:]
    assert len(sec) == 3 and not any(c["primary"] for c in sec)
    assert [c["p_holm"] for c in sec] == pytest.approx(holm([c["p"] for c in sec]))
    assert all(c["verdict"].startswith("no verdict (source did not learn") for c in sec if c["arm"] == "ecg-pretrained")
    # the summary's interval is the bootstrap one, its diff the same paired bootstrap as the contrast
    summ = summarise(cfg, records, class_names=["a", "b", "c"])
    e = summ["imagenet"]["spectrogram"]["100%"]
    assert e["macro_f1"]["method"].startswith("paired bootstrap") and e["macro_f1"]["n_records"] == 8
    assert e["macro_f1_seeds"]["n"] == 3
    assert e["diff_vs_baseline"]["lo"] == pytest.approx(out[0]["diff"]["lo"])
    by = {r["cell"]["seed"]: r for r in records if r["cell"]["arm"] == "imagenet" and r["cell"]["fraction"] == 1.0}
    base = {r["cell"]["seed"]: r for r in records if r["cell"]["arm"] == "scratch" and r["cell"]["fraction"] == 1.0}
    assert bootstrap_contrast(cfg, by, base, "test")["mean"] == pytest.approx(
        np.mean([by[s]["test"]["macro_f1"] - base[s]["test"]["macro_f1"] for s in range(3)]))


def test_steps_to_target_censors_runs_that_never_reach_it():
    from ecgtransfer.bench.stats import steps_to_target, summarise_steps_to_target

    fast = [{"epoch": 1, "step": 40, "val_macro_f1": 0.3}, {"epoch": 2, "step": 80, "val_macro_f1": 0.6}]
    slow = [{"epoch": 1, "step": 40, "val_macro_f1": 0.2}, {"epoch": 2, "step": 80, "val_macro_f1": 0.4},
            {"epoch": 3, "step": 120, "val_macro_f1": 0.55}]
    never = [{"epoch": 1, "step": 50, "val_macro_f1": 0.1}, {"epoch": 2, "step": 100, "val_macro_f1": float("nan")}]
    assert steps_to_target(fast, 0.5) == {"reached": True, "step": 80, "epoch": 2, "censored_at": None}
    assert steps_to_target(never, 0.5) == {"reached": False, "step": None, "epoch": None, "censored_at": 100}
    s = summarise_steps_to_target([steps_to_target(h, 0.5) for h in (fast, slow, never)])
    assert (s["reached"], s["of"], s["not_reached"]) == (2, 3, 1)
    assert s["steps"] == [80, 120, None] and s["censored_at"] == [None, None, 100]
    assert s["median_steps"] == 120.0  # the censored run counts as slower than any, not as missing
    assert s["text"] == "median 120 steps; not reached in 1 of 3 seeds"
    s2 = summarise_steps_to_target([steps_to_target(h, 0.5) for h in (fast, never, never)])
    assert s2["median_steps"] is None and s2["text"] == "median not reached; not reached in 2 of 3 seeds"


def test_source_model_at_chance_is_flagged():
    """Scores unrelated to the labels: the macro-AUROC interval over records holds 0.5 and the source is marked as
    not learned; informative scores give an interval above 0.5; the point estimate is sklearn's macro OvR AUROC."""
    from sklearn.metrics import roc_auc_score

    from ecgtransfer.bench.stats import record_bootstrap_indices, source_credibility

    rng = np.random.default_rng(0)
    records = np.repeat([f"A{i:03d}" for i in range(40)], 8)
    labels = rng.integers(0, 3, size=len(records))
    chance = rng.dirichlet(np.ones(3), size=len(records))
    c = source_credibility(labels, chance, records, replicates=300)
    assert c["learned"] is False and c["lo"] <= 0.5 <= c["hi"] and "source did not learn" in c["text"]
    assert c["macro_auroc"] == pytest.approx(roc_auc_score(labels, chance, multi_class="ovr", average="macro"))
    good = chance + 2.0 * np.eye(3)[labels] * rng.random((len(records), 1))
    g = source_credibility(labels, good / good.sum(1, keepdims=True), records, replicates=300)
    assert g["learned"] is True and g["lo"] > 0.5 and g["n_records"] == 40
    # each resample takes whole records (all 8 segments of each drawn record)
    ix = record_bootstrap_indices(records, 5, seed=1)[0]
    assert len(ix) == len(records) and all(np.sum(records[ix] == r) % 8 == 0 for r in np.unique(records[ix]))


def test_per_class_bootstrap_se_ppv_recomputed_on_resamples():
    """Per-class Se / +P intervals come from the same paired draws; each replicate equals the direct pooled rate."""
    from ecgtransfer.bench.aggregate import _resamples, per_class_bootstrap
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.bench.stats import bootstrap_replicates, class_rate_of_confusion, percentile_interval

    cfg = config_from_dict({"bench": {"seeds": [0, 1], "bootstrap_replicates": 100}, "task": {"store": "/x"},
                            "arms": ["scratch"]})
    truth, preds = _beats(3, n_records=5, n_seeds=2)
    cms = _cms(truth, preds)
    rows = {s: {"record_confusion": {"records": [f"r{i}" for i in range(5)], "matrices": cms[s].tolist()}}
            for s in range(2)}
    out = per_class_bootstrap(cfg, rows, ["a", "b", "c", "d"])
    rs = _resamples(5, 2, cfg)
    reps = bootstrap_replicates(cms, rs, lambda c: class_rate_of_confusion(c, 1, "se"))
    checked = 0
    for b in range(rs.n):
        support = np.sum([np.sum(truth[r] == 1) for r in rs.records[b]])
        if support == 0:
            assert np.isnan(reps[b])
            continue
        direct = np.mean([np.sum([np.sum((truth[r] == 1) & (preds[s][r] == 1)) for r in rs.records[b]]) / support
                          for s in rs.seeds[b]])
        assert reps[b] == pytest.approx(direct)
        checked += 1
    assert checked >= 50
    lo, hi = percentile_interval(reps)
    assert (out["b"]["se"]["lo"], out["b"]["se"]["hi"]) == pytest.approx((lo, hi))


def test_a_contrast_of_two_arms_below_the_majority_line_gets_no_verdict():
    """A 'helped' between two models that both score at or below the always-N classifier is no finding (seen in the
    PTB-XL source pipeline check: 0.215 vs 0.065 against a majority line of 0.241 was called 'the first arm is
    better'); one arm above the line keeps its verdict."""
    from ecgtransfer.bench.aggregate import below_majority, contrasts
    from ecgtransfer.bench.config_toml import config_from_dict

    cfg = config_from_dict({
        "bench": {"name": "c", "seeds": [0, 1], "fractions": [1.0], "bootstrap_replicates": 200,
                  "primary": {"arm": "imagenet", "baseline": "scratch"}},
        "task": {"store": "/nowhere"}, "arms": ["scratch", "imagenet"]})
    rng = np.random.default_rng(1)
    truth = [rng.choice(3, size=40, p=[0.8, 0.15, 0.05]) for _ in range(6)]

    def records(scores: dict[str, float], majority: float) -> list[dict]:
        out = []
        for arm, acc in scores.items():
            for s in range(2):
                preds = [np.where(rng.random(len(t)) < acc, t, 0) for t in truth]
                mats = [np.array([[np.sum((t == i) & (p == j)) for j in range(3)] for i in range(3)])
                        for t, p in zip(truth, preds)]
                out.append({"cell": {"arm": arm, "encoding": "spectrogram", "fraction": 1.0, "seed": s},
                            "status": "done", "test": {"macro_f1": acc}, "majority": {"macro_f1": majority},
                            "record_confusion": {"split": "test", "records": [f"r{i}" for i in range(6)],
                                                 "matrices": [m.tolist() for m in mats]}})
        return out

    low = contrasts(cfg, records({"scratch": 0.10, "imagenet": 0.20}, majority=0.30))[0]
    assert low["verdict"].startswith("no verdict (both arms at or below the majority classifier")
    assert "0.200 and 0.100 vs 0.300" in low["verdict"]
    high = contrasts(cfg, records({"scratch": 0.10, "imagenet": 0.90}, majority=0.30))[0]
    assert high["verdict"] == "helped" and high["no_verdict"] is None
    assert below_majority({0: {"test": {"macro_f1": 0.2}}}, {0: {"test": {"macro_f1": 0.1}}}, "val") is None
