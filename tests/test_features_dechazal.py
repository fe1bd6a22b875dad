"""The ``features`` reference as de Chazal et al. (2004) published it (issue 19 item 4): the 5-minute average RR,
heartbeat intervals without a delineator, the morphology windows and the weighted LDA, each against an independent
computation (direct numpy or scipy loops, scikit-learn, synthetic beats whose waves are placed exactly)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy import ndimage

from ecgtransfer.models import ModelSpec, build_model
from ecgtransfer.models.features import (BASELINE_WINDOW, ENERGY_WINDOW, MORPHOLOGY_SAMPLES, P_FRACTION, P_WINDOW,
                                         QRS_GAP, QRS_SEARCH, QRS_SLOPE_FRACTION, T_FRACTION, T_WINDOW,
                                         BeatFeatureModel, BeatFeatures, feature_count, feature_names)
from ecgtransfer.signals import beats as beatmod
from ecgtransfer.signals.beats import RR_FEATURES

RECORDS = ["119", "208", "209"]  # N, S (209), V (119, 208), F (208)


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory):
    """Three real mitdb records, both leads, a window holding the whole T window (0.25 s before, 0.6 s after)."""
    from ecgtransfer.conversion import convert

    return convert("mitdb", data=physionet_root, out=tmp_path_factory.mktemp("dechazal") / "s", records=RECORDS,
                   lead=["MLII", "V1"], before=0.25, after=0.6, progress=False, jobs=1)


def _mitdb(root):
    return root / "mitdb" / "1.0.0"


# -- the 5-minute average RR ----------------------------------------------------------------------------

@pytest.mark.parametrize("record", ["209", "119"])
def test_average_rr_is_a_direct_loop_over_a_real_records_annotations(physionet_root, record) -> None:
    import wfdb

    ann = wfdb.rdann(str(_mitdb(physionet_root) / record), "atr")
    s = np.asarray([p for p, sym in zip(ann.sample, ann.symbol) if sym in beatmod.AAMI_MAP], dtype=np.int64)
    fs = 360.0
    rr = beatmod.rr_features(s, fs)
    assert rr.shape == (len(s), len(RR_FEATURES)) == (len(s), 8)
    intervals = np.diff(s) / fs
    want = np.empty(len(s))
    for i in range(len(s)):  # intervals whose midpoint is within 150 s of the beat, plus the beat's own two
        chosen = [k for k in range(len(intervals))
                  if abs((s[k] + s[k + 1]) / 2 - s[i]) <= 150 * fs or k in (i - 1, i)]
        want[i] = intervals[chosen].mean()
    col = RR_FEATURES.index
    np.testing.assert_allclose(rr[:, col("rr_avg")], want, rtol=1e-12)
    np.testing.assert_allclose(rr[:, col("rr_avg_rel")], want / intervals.mean(), rtol=1e-12)
    # a beat in the middle of the record averages ~300 s of intervals; one at the start ~150 s
    mid = int(np.searchsorted(s, s[-1] // 2))
    span = (s[None, :-1] + s[None, 1:]) / 2
    near = np.abs(span - s[mid]) <= 150 * fs
    assert 299 <= intervals[near[0]].sum() <= 301
    assert 149 <= intervals[np.abs(span[0] - s[0]) <= 150 * fs].sum() <= 151
    # the six older columns are untouched: previous, next and local (10 intervals) RR and their ratios
    assert rr[mid, col("rr_prev")] == pytest.approx(intervals[mid - 1])
    assert rr[mid, col("rr_local")] == pytest.approx(intervals[mid - 5:mid + 5].mean())
    assert rr[mid, col("rr_local_rel")] == pytest.approx(intervals[mid - 5:mid + 5].mean() / intervals.mean())


def test_the_stores_rr_extra_holds_every_column(store, physionet_root) -> None:
    samples, _, _ = beatmod.read_beat_symbols(_mitdb(physionet_root) / "209")
    rr = np.asarray(store.extra("rr"))
    assert rr.shape[1] == len(RR_FEATURES) and store.manifest["parameters"]["rr_columns"] == list(RR_FEATURES)
    mine = np.asarray(store.record_ids).astype(str) == "209"
    pos = np.asarray(store.positions)[mine]
    full = beatmod.rr_features(samples, 360.0)[np.searchsorted(samples, pos)]
    np.testing.assert_allclose(rr[mine], full.astype(np.float32))


# -- features of real beats against numpy ------------------------------------------------------------------

def _numpy_features(seg: np.ndarray, fs: float, r: int) -> dict[str, np.ndarray]:
    """The documented features of one channel of one beat ``seg [L]``, computed directly (float64)."""
    length = len(seg)

    def at(t: float) -> int:
        return int(np.clip(round(r + t * fs), 0, length - 1))

    def window(t0: float, t1: float) -> slice:
        return slice(at(t0), max(at(t1) + 1, at(t0) + 1))

    xb = seg - seg[window(*BASELINE_WINDOW)].mean()
    times = np.concatenate([np.linspace(*MORPHOLOGY_SAMPLES[g]) for g in ("qrs", "t")])
    morph = np.interp(np.clip(r + times * fs, 0, length - 1), np.arange(length), xb)
    energy = np.log((xb[window(*ENERGY_WINDOW)] ** 2).sum() + 1e-6)
    # QRS: active slopes, closed with scipy, the labelled run holding the steepest slope
    w = window(*QRS_SEARCH)
    slope = np.abs(np.diff(seg[w]))
    active = slope > QRS_SLOPE_FRACTION * slope.max()
    g = max(1, round(QRS_GAP * fs))
    g += 1 - g % 2
    closed = ndimage.binary_erosion(ndimage.binary_dilation(active, np.ones(g, bool)), np.ones(g, bool),
                                    border_value=1)
    runs, _ = ndimage.label(closed)
    run = np.flatnonzero(runs == runs[slope.argmax()])
    qrs = (run[-1] + 1 - run[0]) / fs
    qrs_off = w.start + run[-1] + 1
    # T wave: walk from the peak of |xb| in the T window
    tw = window(*T_WINDOW)
    peak = tw.start + int(np.abs(xb[tw]).argmax())
    level = T_FRACTION * abs(xb[peak])
    end = next((j for j in range(peak + 1, length) if abs(xb[j]) <= level), length - 1)
    start = min(qrs_off, peak)
    on = next((j for j in range(peak - 1, start - 1, -1) if abs(xb[j]) <= level), start)
    # P wave: the prominence of the window's maximum
    pw = xb[window(*P_WINDOW)]
    k = int(pw.argmax())
    prominence = pw[k] - max(pw[:k + 1].min(), pw[k:].min())
    p = float(prominence > P_FRACTION * np.abs(xb[window(*ENERGY_WINDOW)]).max())
    return {"morph": morph, "energy": energy, "intervals": np.array([qrs, (end - on) / fs, p])}


def test_every_feature_of_real_beats_matches_a_direct_numpy_computation(store) -> None:
    labels = np.asarray(store.labels)
    rng = np.random.default_rng(0)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), min(60, (labels == c).sum()), False)
                                  for c in range(4)]))
    x = np.asarray(store.batch(idx))
    rr = np.asarray(store.extra("rr"))[idx]
    r = int(store.manifest["parameters"]["before_samples"])
    spec = ModelSpec("features", 4, 2, rr_dim=8, length=x.shape[2], fs=store.fs, r_index=r)
    f = build_model(spec).features(torch.from_numpy(x), torch.from_numpy(rr)).numpy()
    names = feature_names(2, 8)
    assert f.shape == (len(idx), feature_count(2, 8)) == (len(idx), 50) == (len(idx), len(names))
    pos = {n: i for i, n in enumerate(names)}
    mismatch = {n: 0 for n in ("qrs_duration", "t_duration", "p_present")}
    for b in range(len(idx)):
        for c in range(2):
            want = _numpy_features(x[b, c].astype(np.float64), store.fs, r)
            np.testing.assert_allclose(f[b, pos[f"ch{c}.qrs0"]:pos[f"ch{c}.t8"] + 1], want["morph"],
                                       rtol=1e-4, atol=1e-4)
            assert f[b, pos[f"ch{c}.energy"]] == pytest.approx(want["energy"], rel=1e-4, abs=1e-4)
            for j, n in enumerate(mismatch):  # a float32 threshold tie may move a boundary by a sample
                mismatch[n] += not np.isclose(f[b, pos[f"ch{c}.{n}"]], want["intervals"][j], atol=1e-6)
    assert all(m <= 0.01 * 2 * len(idx) for m in mismatch.values()), mismatch
    # RR: the logs of de Chazal's four intervals (pre, post, 5-minute average, local average), not the ratios
    assert names[-4:] == ["log_rr_prev", "log_rr_next", "log_rr_avg", "log_rr_local"]
    np.testing.assert_allclose(f[:, -4:], np.log(rr[:, [0, 1, 6, 2]]), rtol=1e-5)
    # what the intervals say about real beats: V beats have wider QRS and fewer P waves than N beats (MLII)
    lab = labels[idx]
    qrs, p = f[:, pos["ch0.qrs_duration"]], f[:, pos["ch0.p_present"]]
    assert np.median(qrs[lab == 2]) > np.median(qrs[lab == 0]) + 0.02
    assert p[lab == 0].mean() > 0.8 > 0.3 > p[lab == 2].mean()


# -- intervals of synthetic beats with waves placed exactly -----------------------------------------------

def _hann(length: int, fs: float, t_on: float, t_off: float, amp: float, r: int) -> np.ndarray:
    """A raised-cosine bump ``amp * sin^2`` supported exactly on ``[t_on, t_off]`` s around sample ``r``."""
    t = (np.arange(length) - r) / fs
    u = (t - t_on) / (t_off - t_on)
    return np.where((u > 0) & (u < 1), amp * np.sin(np.pi * u) ** 2, 0.0)


def _synthetic(fs: float, *, t_amp: float = 0.3, p_amp: float = 0.1, ramp: float = 0.0):
    """A beat [L] with a piecewise-linear QRS (onset, apex with a flat top, S wave, offset at whole samples), a
    Hann T wave on +200..+400 ms and a Hann P wave on -200..-110 ms; returns it, R, QRS onset and offset."""
    r = int(round(0.3 * fs))
    length = r + int(round(0.7 * fs))
    on, top, s_at, off = r - round(0.04 * fs), r + 1, r + round(0.03 * fs), r + round(0.05 * fs)
    knots_t = [0, on, r, top, s_at, off, length - 1]
    knots_v = [0.0, 0.0, 1.0, 1.0, -0.4, 0.0, 0.0]
    x = np.interp(np.arange(length), knots_t, knots_v)
    x += _hann(length, fs, 0.2, 0.4, t_amp, r) + _hann(length, fs, -0.2, -0.11, p_amp, r)
    if ramp:  # a falling slope through the P window: the end of the previous beat's T wave, no wave of its own
        t = (np.arange(length) - r) / fs
        x += np.where(t < -0.12, ramp * (-0.12 - t) / 0.18, 0.0)
    return x, r, on, off


@pytest.mark.parametrize("fs", [360.0, 250.0, 128.0])
def test_qrs_and_t_durations_of_a_synthetic_beat(fs) -> None:
    x, r, on, off = _synthetic(fs)
    ext = BeatFeatures(len(x), fs, r)
    xs = torch.from_numpy(np.stack([x, -x]).astype(np.float32))[None]  # an inverted copy as a second lead
    f = ext(xs).numpy()[0]
    qrs, t_dur, p = f[-6:].reshape(2, 3).T
    # the QRS spans exactly onset..offset (every slope of the piecewise-linear complex is above 20 % of the
    # steepest; the flat apex is bridged), whatever its sign
    np.testing.assert_allclose(qrs, (off - on) / fs, atol=1e-6)
    # the T wave (placed on +200..+400 ms) ends where sin^2 falls to T_FRACTION: asin(sqrt(f)) / pi of its
    # duration before its true end, and begins as far after its true start
    d = 0.2 * (1 - 2 * np.arcsin(np.sqrt(T_FRACTION)) / np.pi)
    np.testing.assert_allclose(t_dur, d, atol=2.5 / fs)
    assert abs(t_dur[0] - 0.2) < 0.35 * 0.2  # within 35 % of the placed 200 ms
    assert p[0] == 1.0 and p[1] == 0.0  # an inverted P wave is no positive deflection


def test_the_t_wave_ends_where_it_was_placed() -> None:
    fs = 360.0
    ends = []
    for t_off in (0.30, 0.35, 0.40, 0.45):
        r = 108
        length = r + 252
        x = np.interp(np.arange(length), [0, r - 14, r, r + 18, length - 1], [0, 0, 1, 0, 0])
        x = x + _hann(length, fs, t_off - 0.16, t_off, 0.3, r)
        ext = BeatFeatures(length, fs, r)
        ends.append(float(ext(torch.from_numpy(x.astype(np.float32))[None, None])[0, -2]))
    # every T wave lasts 160 ms wherever it lies: the estimate moves with it
    np.testing.assert_allclose(ends, ends[0], atol=1.5 / fs)
    assert ends[0] == pytest.approx(0.16 * (1 - 2 * np.arcsin(np.sqrt(T_FRACTION)) / np.pi), abs=2.5 / fs)


@pytest.mark.parametrize(("p_amp", "ramp", "present"), [(0.1, 0.0, 1.0), (0.03, 0.0, 0.0), (0.0, 0.0, 0.0),
                                                        (-0.1, 0.0, 0.0), (0.0, 0.4, 0.0), (0.1, 0.1, 1.0)])
def test_p_wave_flag_of_synthetic_beats(p_amp, ramp, present) -> None:
    fs = 360.0
    x, r, _, _ = _synthetic(fs, p_amp=p_amp, ramp=ramp)
    f = BeatFeatures(len(x), fs, r)(torch.from_numpy(x.astype(np.float32))[None, None]).numpy()[0]
    assert f[-1] == present  # a QRS of amplitude 1: a P wave needs a prominence above P_FRACTION


# -- channels: raw leads and difference channels ------------------------------------------------------------

def test_difference_channels_get_morphology_but_no_intervals(store) -> None:
    x = torch.from_numpy(np.asarray(store.batch(np.arange(8))))
    template = x.mean(dim=0, keepdim=True)
    x4 = torch.cat([x, x - template], dim=1)  # [B, 2C, L]: leads, then beat - template
    r, length = int(store.manifest["parameters"]["before_samples"]), x.shape[2]
    spec = ModelSpec("features", 4, 4, rr_dim=6, length=length, fs=store.fs, r_index=r, n_leads=2)
    model = build_model(spec)
    rr = torch.from_numpy(np.asarray(store.extra("rr"))[:8, :6])
    f4 = model.features(x4, rr).numpy()
    assert f4.shape == (8, feature_count(4, 6, n_leads=2)) == (8, 4 * 20 + 2 * 3 + 3)  # pre, post, local RR
    names = feature_names(4, 6, n_leads=2)
    assert len(names) == f4.shape[1] and "ch3.energy" in names and "ch2.qrs_duration" not in names
    two = BeatFeatures(length, store.fs, r)(x, rr).numpy()  # the two leads alone
    np.testing.assert_allclose(f4[:, :40], two[:, :40], rtol=1e-6)  # their morphology
    np.testing.assert_allclose(f4[:, 80:86], two[:, 40:46], rtol=1e-6)  # their intervals
    diff = BeatFeatures(length, store.fs, r)((x - template)).numpy()
    np.testing.assert_allclose(f4[:, 40:80], diff[:, :40], rtol=1e-5, atol=1e-6)  # the differences' morphology
    # an older checkpoint's spec has no n_leads: every channel is a lead
    old = {k: v for k, v in spec.to_dict().items() if k != "n_leads"}
    assert ModelSpec.from_dict(old).n_leads == 0
    assert build_model(ModelSpec.from_dict(old)).classifier.fc.in_features == feature_count(4, 6)
    with pytest.raises(ValueError, match="n_leads"):
        BeatFeatureModel(3, 2, length, store.fs, r, n_leads=3)


# -- the weighted LDA -------------------------------------------------------------------------------------

#: the feature width of a one-lead model without RR context, the width of the synthetic LDA data
D = feature_count(1, 0)


def _model(k: int) -> BeatFeatureModel:
    return BeatFeatureModel(k, 1, 64, 100.0, 20)


def _classes(counts, rng, d=D):
    means = rng.normal(0, 1.5, size=(len(counts), d))
    xs, ys = [], []
    for k, n in enumerate(counts):
        a = rng.normal(size=(d, d)) * (0.3 + 0.3 * k)
        xs.append(means[k] + rng.normal(size=(n, d)) @ a)
        ys.append(np.full(n, k))
    return np.concatenate(xs), np.concatenate(ys)


def _fitted(model: BeatFeatureModel) -> tuple[np.ndarray, np.ndarray]:
    return model.classifier.fc.weight.detach().double().numpy(), model.classifier.fc.bias.detach().double().numpy()


def test_weighted_lda_weights_every_class_equally() -> None:
    """de Chazal's weighting written out: each example weighs 1 / (its class's count), the covariance is the weighted
    covariance of the examples around their class means, the priors are equal."""
    rng = np.random.default_rng(5)
    f, y = _classes([40, 300, 2000], rng)
    model = _model(3)
    summary = model.fit(f, y)
    z = (f - f.mean(0)) / f.std(0)
    mu = np.stack([z[y == k].mean(0) for k in range(3)])
    w = 1.0 / np.bincount(y)[y]
    cov = np.cov(z - mu[y], rowvar=False, aweights=w, bias=True)
    coef = np.linalg.solve(cov, mu.T).T
    bias = -0.5 * np.einsum("kd,kd->k", mu, coef) + np.log(1 / 3)
    wt, b = _fitted(model)
    np.testing.assert_allclose(wt, coef, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b, bias, rtol=1e-4, atol=1e-4)
    assert summary["shrinkage"] == "none" and summary["class_counts"] == {0: 40, 1: 300, 2: 2000}
    # the weighting matters here: the ordinary (example-weighted) LDA differs
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    plain = LinearDiscriminantAnalysis(solver="lsqr").fit(z, y)
    assert np.abs(plain.coef_ - coef).max() > 0.1


def test_weighted_lda_is_sklearns_lda_on_balanced_data() -> None:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(6)
    f, y = _classes([400, 400, 400], rng)
    model = _model(3)
    model.fit(f, y)
    z = (f - f.mean(0)) / f.std(0)
    wt, b = _fitted(model)
    ours = z @ wt.T + b
    # balanced classes: the ordinary LDA (pooled covariance, empirical priors) is the weighted one
    ref = LinearDiscriminantAnalysis(solver="lsqr").fit(z, y)
    np.testing.assert_allclose(ours, ref.decision_function(z), rtol=1e-4, atol=1e-4)
    # and sklearn's default SVD solver (its covariance divides by n - K, not n) decides the same
    svd = LinearDiscriminantAnalysis().fit(z, y)
    assert (ours.argmax(1) == svd.predict(z)).mean() > 0.995
    with torch.no_grad():
        assert model(torch.randn(2, 1, 64)).shape == (2, 3)


def test_shrinkage_option_and_a_singular_covariance() -> None:
    rng = np.random.default_rng(7)
    f, y = _classes([5, 50, 500], rng)
    f[:, 3] = 1.0  # a constant feature: a singular covariance
    fitted = {}
    for shrink in ("none", "auto"):
        model = _model(4)
        model.fit(f, y, shrinkage=shrink)
        wt, b = _fitted(model)
        assert np.isfinite(wt).all() and np.isfinite(b[:3]).all() and b[3] == -1e4  # class 3 absent
        assert np.abs(wt[:, 3]).max() < 1e-6  # the constant feature carries nothing
        fitted[shrink] = wt
    assert np.abs(fitted["none"] - fitted["auto"]).max() > 1e-3
    with pytest.raises(ValueError, match="shrinkage"):
        _model(3).fit(f, y, shrinkage="ledoit")


# -- a store of the older six-column RR context -------------------------------------------------------------

def test_a_store_with_the_older_six_rr_columns_still_trains(store, tmp_path) -> None:
    from ecgtransfer.store import SegmentStore
    from ecgtransfer.training import fine_tune
    from ecgtransfer.training.evaluation import evaluate, load_run

    old = tmp_path / "old"
    shutil.copytree(store.path, old)
    np.save(old / "extra_rr.npy", np.load(old / "extra_rr.npy")[:, :6])
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["parameters"]["rr_columns"]  # as a store converted before the 5-minute average RR
    (old / "manifest.json").write_text(json.dumps(manifest))
    old_store = SegmentStore(old)
    rid = np.asarray(old_store.record_ids).astype(str)
    split = {"train": np.flatnonzero(rid != "119"), "val": np.flatnonzero(rid == "119"),
             "test": np.flatnonzero(rid == "119")}
    res = fine_tune(old_store, out=tmp_path / "run", split_indices=split, model="features", progress=False,
                    num_threads=1, majority_cap=300)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["rr_columns"] == list(RR_FEATURES[:6]) and run["model"]["rr_dim"] == 6
    assert load_run(tmp_path / "run").model.classifier.fc.in_features == feature_count(2, 6) == 49
    assert res.test_metrics["per_class"]["V"]["se"] > 0.5  # 119's V beats, from 208 and 209
    # the same run evaluates on a current store (whose first six RR columns are the old ones) as on the old store
    on_new = evaluate(tmp_path / "run", store, "all", out=tmp_path / "ev_new")
    on_old = evaluate(tmp_path / "run", old_store, "all", out=tmp_path / "ev_old")
    assert on_new["confusion_matrix"] == on_old["confusion_matrix"]
