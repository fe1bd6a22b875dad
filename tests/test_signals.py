"""signals/: reading records, lead selection, filters, beat windows, RR context, rhythm windows and labels."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb
from scipy import signal as ss

from ecgtransfer.errors import ConfigError, RecordError
from ecgtransfer.signals import beats, filters, rhythm
from ecgtransfer.signals.record import read_record, select_leads


def _mitdb(root, rec: str) -> str:
    return str(root / "mitdb" / "1.0.0" / rec)


def test_read_record_selects_lead_by_name_in_114(physionet_root):
    # mitdb 114 stores V5 first and MLII second
    full = wfdb.rdrecord(_mitdb(physionet_root, "114"))
    assert full.sig_name == ["V5", "MLII"]
    rec = read_record(_mitdb(physionet_root, "114"), "MLII")
    assert rec.lead_names == ("MLII",)
    assert rec.signal.shape == (1, full.sig_len)
    np.testing.assert_array_equal(rec.signal[0], full.p_signal[:, 1])
    assert not np.array_equal(rec.signal[0], full.p_signal[:, 0])
    both = read_record(_mitdb(physionet_root, "114"), ["MLII", "V5"])
    np.testing.assert_array_equal(both.signal, full.p_signal[:, [1, 0]].T)


def test_missing_lead_names_record_and_its_leads(physionet_root):
    with pytest.raises(RecordError, match=r"record 114 has no lead 'V1'.*V5, MLII"):
        read_record(_mitdb(physionet_root, "114"), "V1")


def test_select_leads_case_insensitive_and_all():
    leads = ["i", "ii", "v1"]
    assert select_leads(leads, "II") == [1]
    assert select_leads(leads, ["v1", "I"]) == [2, 0]
    assert select_leads(leads, "all") == [0, 1, 2]
    assert select_leads(leads, None) == [0, 1, 2]


def test_bandpass_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3000))
    got = filters.apply_filter(x, 360.0, "bandpass", (0.5, 40.0), 2)
    sos = ss.butter(2, [0.5, 40.0], btype="bandpass", fs=360.0, output="sos")
    np.testing.assert_allclose(got, ss.sosfiltfilt(sos, x, axis=-1), rtol=1e-12, atol=1e-12)
    hp = filters.apply_filter(x, 360.0, "highpass", (0.7, 40.0), 3)
    np.testing.assert_allclose(hp, ss.sosfiltfilt(ss.butter(3, 0.7, "highpass", fs=360.0, output="sos"), x, axis=-1))
    np.testing.assert_array_equal(filters.apply_filter(x, 360.0, "none"), x)


def test_median_baseline_matches_scipy_medfilt_inside():
    rng = np.random.default_rng(1)
    t = np.arange(4000) / 360.0
    x = (np.sin(2 * np.pi * 0.3 * t) + 0.1 * rng.standard_normal(t.size))[None]
    got = filters.median_baseline(x, 360.0)
    k1, k2 = int(round(0.2 * 360)) | 1, int(round(0.6 * 360)) | 1
    ref = ss.medfilt(ss.medfilt(x[0], k1), k2)
    inner = slice(k1 + k2, -(k1 + k2))  # medfilt zero-pads the edges; compare away from them
    np.testing.assert_allclose(got[0, inner], ref[inner])
    out = filters.apply_filter(x, 360.0, "median", (0.5, 1000.0))  # high cut above Nyquist: no low-pass
    np.testing.assert_allclose(out, x - got)


def test_filter_rejects_bad_band():
    with pytest.raises(ConfigError, match="fs/2"):
        filters.apply_filter(np.zeros((1, 100)), 100.0, "bandpass", (0.5, 60.0))
    with pytest.raises(ConfigError, match="unknown filter"):
        filters.apply_filter(np.zeros((1, 100)), 100.0, "wavelet")


def test_resample_matches_resample_poly():
    x = np.random.default_rng(2).standard_normal((1, 3600))
    assert filters.resample_ratio(360.0, 250.0) == (25, 36)
    np.testing.assert_allclose(filters.resample(x, 360.0, 250.0), ss.resample_poly(x, 25, 36, axis=-1))
    np.testing.assert_array_equal(filters.resample(x, 360.0, 360.0), x)


def test_normalize_zscore_and_minmax():
    x = np.random.default_rng(3).standard_normal((4, 2, 50)) * 3 + 1
    z = filters.normalize(x, "zscore")
    np.testing.assert_allclose(z.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(-1), 1, atol=1e-5)
    m = filters.normalize(x, "minmax")
    np.testing.assert_allclose(m.min(-1), 0, atol=1e-12)
    np.testing.assert_allclose(m.max(-1), 1, atol=1e-5)


def test_aami_map_is_the_documented_table():
    expected = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
    table = {sym: cls for cls, syms in expected.items() for sym in syms}
    assert beats.AAMI_MAP == table
    assert beats.AAMI_CLASSES == ("N", "S", "V", "F", "Q")


def test_beat_windows_drop_edges():
    x = np.arange(20, dtype=float)[None]
    segs, keep = beats.beat_windows(x, np.array([1, 5, 10, 18]), before=2, after=3)
    assert keep.tolist() == [False, True, True, False]
    np.testing.assert_array_equal(segs[:, 0], [[3, 4, 5, 6, 7], [8, 9, 10, 11, 12]])


def test_rr_features_definition():
    samples = np.array([0, 100, 250, 300, 500, 560, 700, 800, 1000, 1100, 1150, 1300, 1500])
    rr = beats.rr_features(samples, fs=100.0)
    d = np.diff(samples) / 100.0
    i = 6
    assert rr[i, 0] == pytest.approx(d[i - 1])
    assert rr[i, 1] == pytest.approx(d[i])
    assert rr[i, 2] == pytest.approx(d[i - 5:i + 5].mean())
    assert rr[0, 0] == pytest.approx(d[0]) and rr[-1, 1] == pytest.approx(d[-1])
    assert rr[0, 2] == pytest.approx(d[:5].mean())
    assert rr[-1, 2] == pytest.approx(d[-5:].mean())


def test_fixed_windows_and_pad_crop():
    x = np.arange(23, dtype=float)[None]
    segs, starts = rhythm.fixed_windows(x, 10, 5)
    assert starts.tolist() == [0, 5, 10]
    np.testing.assert_array_equal(segs[2, 0], np.arange(10, 20))
    short, st = rhythm.fixed_windows(x[:, :7], 10, 10)
    np.testing.assert_array_equal(short[0, 0], [0, 1, 2, 3, 4, 5, 6, 0, 0, 0])
    assert st.tolist() == [0]
    np.testing.assert_array_equal(rhythm.pad_crop(x, 5)[0], np.arange(5))


def test_ludb_rhythm_normalisation():
    assert rhythm.normalise_rhythm("Sinus rhythm.\nWandering atrial pacemaker") == "sinus rhythm"
    assert rhythm.ludb_rhythm_class("Atrial fibrillation.\nAberrant conduction") == "AF"
    assert rhythm.ludb_rhythm_class("  Irregular sinus rhythm ") == "SA"
    assert rhythm.ludb_rhythm_class("Atrial flutter, typical", "coarse") == "atrial"
    with pytest.raises(RecordError, match="record 7: unknown rhythm"):
        rhythm.ludb_rhythm_class("Junctional rhythm", record_id="7")


def _record_with_gaps(tmp_path, gaps, fs=100, n=2000):
    """A two-lead WFDB record (format 16) with NaN runs ``(lead, start, length)``; wfdb writes them as invalid."""
    t = np.arange(n) / fs
    x = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)], axis=1)
    for lead, start, length in gaps:
        x[start:start + length, lead] = np.nan
    wfdb.wrsamp("g", fs=fs, units=["mV", "mV"], sig_name=["I", "II"], p_signal=x, fmt=["16", "16"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path))
    return tmp_path / "g", x


def test_short_nan_gaps_are_interpolated_and_logged(tmp_path, caplog):
    import logging

    path, x = _record_with_gaps(tmp_path, [(0, 100, 10), (0, 500, 3), (1, 1000, 100)])
    assert np.isnan(wfdb.rdrecord(str(path)).p_signal).sum() == 113  # wfdb reads the gaps back as NaN
    with caplog.at_level(logging.WARNING, logger="ecgtransfer.signals.record"):
        rec = read_record(path, "all")
    assert np.all(np.isfinite(rec.signal))
    assert "record g" in caplog.text and "I: 13 in 2 gap(s)" in caplog.text and "II: 100 in 1 gap(s)" in caplog.text
    raw = wfdb.rdrecord(str(path)).p_signal[:, 0]
    np.testing.assert_allclose(rec.signal[0, 100:110], np.linspace(raw[99], raw[110], 12)[1:-1])


def test_nan_gap_longer_than_one_second_is_refused(tmp_path):
    path, _ = _record_with_gaps(tmp_path, [(1, 300, 101)])  # 1.01 s at 100 Hz
    with pytest.raises(RecordError, match=r"record g: lead II has 101 invalid samples in a row \(1\.01 s from "
                                          r"sample 300\)"):
        read_record(path, "all")
    assert read_record(path, "I").signal.shape == (1, 2000)  # the other lead is fine
