"""Raw imaging encoders against their reference implementations (pyts, scipy.signal), to float32 tolerance."""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
import torch

from ecgtransfer.errors import ConfigError, SignalError
from ecgtransfer.imaging import (gramian_angular_field, markov_transition_field, paa, recurrence_plot, spectrogram,
                                 spectrogram_frequencies)

if "numba" not in sys.modules:
    # pyts compiles its numba kernels eagerly at import (about a minute on two busy cores); as an oracle on
    # small inputs its plain-Python form is fast enough and computes the same float64 values.
    os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
pyts_image = pytest.importorskip("pyts.image")


def mitdb_beats(root: Path, record: str = "119", n: int = 8, before: int = 90, after: int = 166) -> np.ndarray:
    """``n`` real beats ``[n, 2, before + after]`` (float32, mV) of a mitdb record, read with wfdb."""
    import wfdb

    base = str(root / "mitdb" / "1.0.0" / record)
    sig, _ = wfdb.rdsamp(base, sampto=60 * 360)
    ann = wfdb.rdann(base, "atr", sampto=60 * 360)
    peaks = [s for s, sym in zip(ann.sample, ann.symbol) if sym in "NLRVAF" and before <= s < len(sig) - after]
    picks = np.linspace(0, len(peaks) - 1, n).astype(int)
    return np.stack([sig[peaks[i] - before:peaks[i] + after].T for i in picks]).astype(np.float32)


@pytest.fixture(scope="module")
def random_series() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((4, 72)).astype(np.float32)


@pytest.fixture(scope="module")
def ecg_series(physionet_root: Path) -> np.ndarray:
    return mitdb_beats(physionet_root, n=3)[:, 0, 64:192].copy()  # [3, 128], lead MLII around the R peak


def _inputs(request, name: str) -> np.ndarray:
    return request.getfixturevalue(name)


# -- recurrence plots ------------------------------------------------------------------------------


def _assert_binary_close(mine: np.ndarray, ref: np.ndarray, dist: np.ndarray, eps: np.ndarray) -> None:
    """Binary plots may differ only where the float64 distance lies within float32 rounding of the threshold."""
    diff = mine != ref
    assert diff.mean() < 1e-3, f"{diff.sum()} of {diff.size} points differ"
    if diff.any():
        scale = np.broadcast_to(np.maximum(np.abs(eps), dist.max(axis=(1, 2), keepdims=True)), dist.shape)
        near = np.abs(dist - np.broadcast_to(eps, dist.shape))[diff] <= 1e-5 * scale[diff]
        assert near.all(), "a point far from the threshold was binarised differently"


@pytest.mark.parametrize("source", ["random_series", "ecg_series"])
def test_recurrence_plot_equals_pyts(request, source: str) -> None:
    x = _inputs(request, source)
    if source == "ecg_series":
        x = x[:, ::2].copy()  # 64 samples: pyts runs as plain Python here
    for dim, delay in itertools.product([1, 3, 0.05], [1, 2, 0.03]):
        dist = pyts_image.RecurrencePlot(dimension=dim, time_delay=delay).transform(x)
        mine = recurrence_plot(torch.from_numpy(x), dimension=dim, time_delay=delay)
        assert mine.dtype == torch.float32 and tuple(mine.shape) == dist.shape
        np.testing.assert_allclose(mine.numpy(), dist, rtol=1e-5, atol=1e-5 * dist.max(), err_msg=f"{dim} {delay}")
        n = dist.shape[-1]
        for threshold, pct in [("point", 10), ("point", 47.5), ("distance", 10), ("distance", 47.5), (0.7, 10)]:
            kw = dict(dimension=dim, time_delay=delay, threshold=threshold, percentage=pct)
            ref = pyts_image.RecurrencePlot(**kw).transform(x)
            mine = recurrence_plot(torch.from_numpy(x), **kw).numpy()
            if threshold == "point":
                eps = np.percentile(dist.reshape(len(x), n * n), pct, axis=1)[:, None, None]
            elif threshold == "distance":
                eps = (pct / 100 * dist.max(axis=(1, 2)))[:, None, None]
            else:
                eps = np.full((len(x), 1, 1), threshold)
            assert mine.shape == ref.shape and set(np.unique(mine)) <= {0.0, 1.0}, kw
            assert ref.mean() > 0.01 or threshold == 0.7  # the case is not vacuous
            _assert_binary_close(mine, ref, dist, eps)


def test_recurrence_plot_shapes_leads_and_validation(random_series: np.ndarray) -> None:
    x = torch.from_numpy(random_series).reshape(4, 1, 72).expand(4, 2, 72)
    out = recurrence_plot(x, dimension=4, time_delay=3)
    assert out.shape == (4, 2, 72 - 9, 72 - 9)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    with pytest.raises(ConfigError, match="no trajectory fits"):
        recurrence_plot(x, dimension=40, time_delay=2)
    with pytest.raises(ConfigError, match="threshold"):
        recurrence_plot(x, threshold="points")
    with pytest.raises(ConfigError, match="percentage"):
        recurrence_plot(x, threshold="point", percentage=120)
    with pytest.raises(ConfigError, match="dimension"):
        recurrence_plot(x, dimension=0)
    with pytest.raises(ConfigError, match="> 0"):
        recurrence_plot(x, threshold=-1.0)


def test_recurrence_plot_high_dimension_path(random_series: np.ndarray) -> None:
    # dimension >= 9 takes the cdist path
    ref = pyts_image.RecurrencePlot(dimension=12, time_delay=2).transform(random_series)
    mine = recurrence_plot(torch.from_numpy(random_series), dimension=12, time_delay=2)
    np.testing.assert_allclose(mine.numpy(), ref, rtol=1e-5, atol=1e-5 * ref.max())


# -- Gramian angular fields ------------------------------------------------------------------------
GAF_GRID = list(itertools.product([1.0, 0.5, 23], [(-1, 1), (0, 1), (-0.5, 0.75)], ["summation", "d"], [False, True]))


@pytest.mark.parametrize("source", ["random_series", "ecg_series"])
def test_gramian_angular_field_equals_pyts(request, source: str) -> None:
    x = _inputs(request, source)
    for size, rng, method, overlapping in GAF_GRID:
        kw = dict(image_size=size, sample_range=rng, method=method, overlapping=overlapping)
        ref = pyts_image.GramianAngularField(**kw).transform(x)
        mine = gramian_angular_field(torch.from_numpy(x), method, image_size=size, sample_range=rng,
                                     overlapping=overlapping)
        assert mine.dtype == torch.float32 and tuple(mine.shape) == ref.shape, kw
        np.testing.assert_allclose(mine.numpy(), ref, rtol=0, atol=2e-6, err_msg=str(kw))


def test_gramian_sample_range_none_and_constant_series(random_series: np.ndarray) -> None:
    x = np.tanh(random_series)
    ref = pyts_image.GramianAngularField(sample_range=None, method="d").transform(x)
    mine = gramian_angular_field(torch.from_numpy(x), "d", sample_range=None)
    np.testing.assert_allclose(mine.numpy(), ref, atol=2e-6)
    with pytest.raises(SignalError, match=r"\[-1, 1\]"):
        gramian_angular_field(torch.from_numpy(random_series), sample_range=None)
    flat = np.full((2, 40), 3.25, dtype=np.float32)
    np.testing.assert_allclose(gramian_angular_field(flat).numpy(),
                               pyts_image.GramianAngularField().transform(flat), atol=1e-7)
    with pytest.raises(ConfigError, match="sample_range"):
        gramian_angular_field(flat, sample_range=(0.5, 0.2))
    with pytest.raises(ConfigError, match="method"):
        gramian_angular_field(flat, method="product")


def test_paa_equals_pyts(random_series: np.ndarray) -> None:
    from pyts.approximation import PiecewiseAggregateApproximation

    for out, ov in itertools.product([7, 10, 31, 71, 72], [False, True]):
        ref = PiecewiseAggregateApproximation(window_size=None, output_size=out, overlapping=ov).transform(random_series)
        np.testing.assert_allclose(paa(torch.from_numpy(random_series), out, overlapping=ov).numpy(), ref,
                                   rtol=1e-6, atol=1e-6)


# -- Markov transition fields ----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Some quantiles are equal")
@pytest.mark.parametrize("source", ["random_series", "ecg_series"])
def test_markov_transition_field_equals_pyts(request, source: str) -> None:
    x = _inputs(request, source)
    if source == "random_series":
        x = np.concatenate([x, np.round(x[:2] * 2) / 2])  # values on bin edges and repeated quantiles
    # real ECG is quantised (5 uV steps for mitdb): ties at the quantile edges are the rule there
    for size, n_bins, strategy, overlapping in itertools.product([1.0, 20, 0.5], [2, 5, 8],
                                                                 ["quantile", "uniform", "normal"], [False, True]):
        if size == 1.0 and overlapping:
            continue
        kw = dict(image_size=size, n_bins=n_bins, strategy=strategy, overlapping=overlapping)
        ref = pyts_image.MarkovTransitionField(**kw).transform(x)
        mine = markov_transition_field(torch.from_numpy(x), **kw)
        assert mine.dtype == torch.float32 and tuple(mine.shape) == ref.shape, kw
        np.testing.assert_allclose(mine.numpy(), ref, rtol=0, atol=1e-6, err_msg=str(kw))


def test_markov_transition_field_validation(random_series: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="n_bins"):
        markov_transition_field(random_series, n_bins=1)
    with pytest.raises(ConfigError, match="strategy"):
        markov_transition_field(random_series, strategy="kmeans")
    out = markov_transition_field(np.ones((2, 30), np.float32), n_bins=4)
    assert torch.all((out == 0) | (out == 1))  # a flat series stays in one bin: probability 1


# -- spectrograms ----------------------------------------------------------------------------------
SPEC_GRID = list(itertools.product([("hann", 32, 4, 128), (("tukey", 0.25), 64, 16, None), ("hamming", 31, 5, 64)],
                                   ["constant", "linear", False], ["density", "spectrum"],
                                   [(None, None), (0.5, 50.0)]))


@pytest.mark.parametrize("source", ["random_series", "ecg_series"])
def test_spectrogram_equals_scipy(request, source: str) -> None:
    x = _inputs(request, source)
    fs = 180.0  # the ECG input is mitdb at 360 Hz taken every second sample
    for (window, nperseg, hop, n_fft), detrend, scaling, (fmin, fmax) in SPEC_GRID:
        f, _, ref = ss.spectrogram(x, fs, window=window, nperseg=nperseg, noverlap=nperseg - hop, nfft=n_fft,
                                   detrend=detrend, scaling=scaling, mode="psd")
        band = np.ones(f.shape, bool) if fmin is None else (f >= fmin) & (f <= fmax)
        ref = ref[:, band]
        kw = dict(nperseg=nperseg, hop=hop, n_fft=n_fft, window=window, detrend=detrend, scaling=scaling,
                  fmin=fmin, fmax=fmax)
        power = spectrogram(torch.from_numpy(x), fs, db=False, **kw)
        assert power.dtype == torch.float32 and tuple(power.shape) == ref.shape, kw
        peak = ref.max(axis=(1, 2), keepdims=True)
        assert np.all(np.abs(power.numpy() - ref) <= 1e-5 * peak), kw
        np.testing.assert_allclose(spectrogram_frequencies(fs, nperseg=nperseg, n_fft=n_fft, fmin=fmin, fmax=fmax),
                                   f[band])
        db = spectrogram(torch.from_numpy(x), fs, amin=1e-6 * float(peak.min()), **kw).numpy()
        ref_db = 10 * np.log10(np.maximum(ref, 1e-6 * peak.min()))
        strong = ref > 1e-4 * peak  # weaker bins carry float32 rounding of the strongest, not their own value
        np.testing.assert_allclose(db[strong], ref_db[strong], atol=2e-3)


def test_spectrogram_db_floor_top_db_and_validation(random_series: np.ndarray) -> None:
    x = torch.from_numpy(random_series)
    db = spectrogram(x, nperseg=32, hop=8, top_db=20.0)
    peak = db.amax(dim=(-2, -1), keepdim=True)
    assert torch.all(db >= peak - 20.0 - 1e-4) and torch.any(db <= peak - 20.0 + 1e-4)
    flat = spectrogram(torch.zeros(2, 64), nperseg=16, hop=4, amin=1e-10)
    torch.testing.assert_close(flat, torch.full_like(flat, -100.0))
    window = ss.get_window("blackman", 32)
    f, _, ref = ss.spectrogram(random_series, window=window, nperseg=32, noverlap=24, mode="psd")
    np.testing.assert_allclose(spectrogram(x, window=window, nperseg=32, hop=8, n_fft=None, db=False).numpy(), ref,
                               rtol=1e-4, atol=1e-6 * ref.max())
    assert spectrogram(x.reshape(4, 1, 72), nperseg=32, hop=8).shape[:2] == (4, 1)
    with pytest.raises(ConfigError, match="nperseg"):
        spectrogram(x, nperseg=200)
    with pytest.raises(ConfigError, match="no frequency bin"):
        spectrogram(x, 360.0, nperseg=32, fmin=100.0, fmax=101.0)
    with pytest.raises(ConfigError, match="window"):
        spectrogram(x, nperseg=32, window="no-such-window")


def test_float64_input_stays_float64(random_series: np.ndarray) -> None:
    x = random_series.astype(np.float64)
    ref = pyts_image.RecurrencePlot(dimension=2).transform(x)
    out = recurrence_plot(x, dimension=2)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)
