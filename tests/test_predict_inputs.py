"""predict on EDF, CSV and .npy exports of a real mitdb record: the same beats and probabilities as the WFDB record;
bad inputs give one clear error; the beat report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgtransfer.cli import main as cli_main
from ecgtransfer.errors import RecordError
from ecgtransfer.signals.readers import open_recording, select
from ecgtransfer.training import fine_tune, predict

SECONDS = 150
RESOLUTION_MV = 0.005  # mitdb: 200 ADC units per mV


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory):
    """A band-pass-filtered mitdb beat store resampled to 250 Hz (the records are at 360 Hz), with RR context."""
    from ecgtransfer.conversion import convert

    return convert("mitdb", data=physionet_root, out=tmp_path_factory.mktemp("conv") / "s", records=["119", "209"],
                   fs=250.0, before=40, after=60, rr_context=True, progress=False, jobs=1)


@pytest.fixture(scope="module")
def run(store, tmp_path_factory) -> Path:
    """A tiny scratch run on ``store`` (a model, not a good one) that fuses the RR features."""
    out = _tiny_run(store, tmp_path_factory.mktemp("runs") / "r", "209", "119")
    from ecgtransfer.training.evaluation import load_run

    assert load_run(out).rr_dim == store.extra("rr").shape[1] > 0
    return out


@pytest.fixture(scope="module")
def inputs(physionet_root, tmp_path_factory) -> dict[str, Path]:
    """The first minutes of mitdb 119 (no .atr) as a WFDB record, and the same samples as EDF+, CSV and .npy."""
    import pyedflib
    import wfdb

    d = tmp_path_factory.mktemp("inputs")
    src = str(physionet_root / "mitdb" / "1.0.0" / "119")
    rec = wfdb.rdrecord(src, sampto=SECONDS * 360, physical=False)
    rec.record_name = "119"
    rec.wrsamp(write_dir=str(d), expanded=False)
    phys = wfdb.rdrecord(str(d / "119")).p_signal  # [n, 2] mV, multiples of 0.005
    # EDF+ (and plain EDF) with pyedflib: a 16-bit digital range whose physical step is mitdb's 0.005 mV, written
    # from the digital samples, so the physical values are exact
    digital = rec.d_signal.astype(np.int64) - np.asarray(rec.baseline)[None, :]  # physical = digital * 0.005 mV
    assert np.all(np.asarray(rec.adc_gain) == 1 / RESOLUTION_MV)
    for name, kind in (("holter.edf", pyedflib.FILETYPE_EDFPLUS), ("plain.edf", pyedflib.FILETYPE_EDF)):
        w = pyedflib.EdfWriter(str(d / name), 2, file_type=kind)
        w.setSignalHeaders([{"label": lead, "dimension": "mV", "sample_frequency": 360,
                             "physical_min": -32768 * RESOLUTION_MV, "physical_max": 32767 * RESOLUTION_MV,
                             "digital_min": -32768, "digital_max": 32767} for lead in rec.sig_name])
        w.writeSamples([np.ascontiguousarray(digital[:, k], dtype=np.int32) for k in range(2)], digital=True)
        w.close()
    # CSV in microvolts with a time column; the leads in the other order (MLII is found by name)
    pd.DataFrame({"time_s": np.arange(len(phys)) / 360.0, "V1": np.round(phys[:, 1] * 1000),
                  "MLII": np.round(phys[:, 0] * 1000)}).to_csv(d / "export.csv", index=False)
    np.save(d / "signal.npy", phys[:, :1].astype(np.float64))
    return {"wfdb": d / "119", "edf": d / "holter.edf", "csv": d / "export.csv", "npy": d / "signal.npy",
            "dir": d}


def test_readers_give_the_wfdb_samples(inputs, physionet_root) -> None:
    import wfdb
    from wfdb.io.convert.edf import read_edf

    ref = wfdb.rdrecord(str(inputs["wfdb"])).p_signal.T  # [2, n] mV
    edf = open_recording(inputs["edf"])
    assert edf.fs == 360.0 and edf.lead_names == ("MLII", "V1") and edf.n_samples == ref.shape[1]
    np.testing.assert_allclose(edf.read(select(edf, None, ["MLII"]), 0, None)[0], ref[0], atol=1e-9)
    # wfdb's own EDF reader (plain EDF only), an independent oracle of what pyedflib wrote; its integer baseline
    # puts the zero up to one digital step (0.005 mV) off
    plain = inputs["dir"] / "plain.edf"
    np.testing.assert_allclose(read_edf(str(plain)).p_signal[:, 0], ref[0], atol=RESOLUTION_MV + 1e-9)
    np.testing.assert_array_equal(open_recording(plain).read([0], 0, None)[0], edf.read([0], 0, None)[0])
    csv = open_recording(inputs["csv"], units="uV")
    assert csv.fs == pytest.approx(360.0) and csv.lead_names == ("V1", "MLII")
    np.testing.assert_allclose(csv.read(select(csv, None, ["MLII"]), 100, 5000)[0], ref[0, 100:5000], atol=1e-9)
    npy = open_recording(inputs["npy"], fs=360)
    np.testing.assert_array_equal(npy.read(select(npy, None, ["MLII"]), 7, 77)[0], ref[0, 7:77])


def test_edf_csv_npy_give_the_predictions_of_the_wfdb_record(run, inputs, tmp_path) -> None:
    ref = predict(run, [inputs["wfdb"]], progress=False)
    assert (ref["r_peak_source"] == "detector").all() and "reference" not in ref and len(ref) > 150
    cols = ["position", "predicted"] + [c for c in ref if c.startswith("p_")]
    for name, kw in (("edf", {}), ("csv", {"units": "uV"}), ("npy", {"fs": 360.0, "lead": "0"})):
        got = predict(run, [inputs[name]], progress=False, **kw)
        assert list(got["position"]) == list(ref["position"]), name
        assert list(got["predicted"]) == list(ref["predicted"]), name
        np.testing.assert_allclose(got[cols[2:]].to_numpy(), ref[cols[2:]].to_numpy(), atol=1e-5, err_msg=name)
    # the CLI on the EDF file writes the same table, and a beat report
    out, rep = tmp_path / "pred.csv", tmp_path / "report"
    assert cli_main(["-q", "predict", str(run), str(inputs["edf"]), "--out", str(out), "--report", str(rep)]) == 0
    table = pd.read_csv(out)
    assert list(table["position"]) == list(ref["position"]) and list(table["predicted"]) == list(ref["predicted"])
    summary = json.loads((rep / "summary.json").read_text())
    counts = ref["predicted"].value_counts()
    assert summary["total"]["beats"] == len(ref)
    assert all(summary["total"]["counts"][k] == int(counts.get(k, 0)) for k in summary["classes"])
    md = (rep / "report.md").read_text()
    assert "Beat report" in md and (rep / "report.html").read_text().startswith("<!DOCTYPE html>")
    # which detector found the beats (issue 20: its beats changed with the T-wave rule)
    from ecgtransfer.signals.rpeaks import DETECTOR_VERSION
    assert summary["r_peaks"] == f"ecgtransfer's R-peak detector, version {DETECTOR_VERSION}"
    assert f"version {DETECTOR_VERSION}" in md
    if (ref["predicted"] != "N").any():
        assert (rep / "figures" / "strips.png").read_bytes()[:4] == b"\x89PNG"


def _cli_error(capsys, args: list[str]) -> str:
    code = cli_main(["-q", "predict", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_bad_inputs_give_one_clear_error(run, inputs, tmp_path, capsys) -> None:
    edf = str(inputs["edf"])
    line = _cli_error(capsys, [str(run), edf, "--fs", "250"])
    assert edf in line and "250" in line and "360" in line
    line = _cli_error(capsys, [str(run), str(inputs["csv"]), "--units", "uV", "--fs", "500"])
    assert "export.csv" in line and "500" in line
    line = _cli_error(capsys, [str(run), edf, "--lead", "V9"])
    assert edf in line and "'V9'" in line and "MLII, V1" in line
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    line = _cli_error(capsys, [str(run), str(empty), "--fs", "360"])
    assert str(empty) in line and "empty" in line
    bad = tmp_path / "bad.csv"
    bad.write_text("MLII,V1\n0.1,0.2\n0.1,oops\n")
    line = _cli_error(capsys, [str(run), str(bad), "--fs", "360"])
    assert str(bad) in line and "row 3" in line and "'oops'" in line and "'V1'" in line
    # values in microvolts read as millivolts are caught by their amplitude
    line = _cli_error(capsys, [str(run), str(inputs["csv"])])
    assert "export.csv" in line and "uV" in line
    # a .npy without --fs, an unknown format
    assert "--fs" in _cli_error(capsys, [str(run), str(inputs["npy"])])
    other = tmp_path / "x.txt.gz"
    other.write_bytes(b"\x1f\x8b")
    assert str(other) in _cli_error(capsys, [str(run), str(other)])
    with pytest.raises(RecordError, match="needs a WFDB record with a reference annotation"):
        predict(run, [inputs["edf"]], r_peaks="atr", progress=False)


@pytest.fixture(scope="module")
def annotated(inputs, physionet_root) -> Path:
    """The WFDB record of ``inputs`` with its reference annotation (.atr) for the same minutes."""
    import wfdb

    d = inputs["dir"] / "with_atr"
    d.mkdir(exist_ok=True)
    for ext in ("hea", "dat"):
        (d / f"119.{ext}").write_bytes(inputs["wfdb"].with_suffix(f".{ext}").read_bytes())
    ann = wfdb.rdann(str(physionet_root / "mitdb" / "1.0.0" / "119"), "atr", sampto=SECONDS * 360)
    wfdb.wrann("119", "atr", ann.sample, symbol=ann.symbol, write_dir=str(d), fs=360)
    return d / "119"


def test_r_peaks_atr_on_request_and_reference_classes(run, annotated) -> None:
    d = annotated.parent
    atr = predict(run, [d / "119"], r_peaks="atr", progress=False)
    det = predict(run, [d / "119"], progress=False)
    assert (atr["r_peak_source"] == "atr").all() and (det["r_peak_source"] == "detector").all()
    # every detected beat near a reference beat carries its class; the detected and reference beats agree
    matched = det[det["reference"] != ""]
    assert len(matched) >= 0.99 * len(atr)
    by_pos = dict(zip(atr["position"], atr["reference"]))
    near = [min(by_pos, key=lambda q: abs(q - p)) for p in matched["position"]]
    assert [by_pos[q] for q in near] == list(matched["reference"])


def test_atr_beats_past_the_signal_end_are_said_not_dropped_silently(run, inputs, physionet_root, tmp_path,
                                                                   caplog) -> None:
    """Issue 20: reference beats past the end of the signal (the .atr of the whole recording beside a cut signal)
    were dropped silently; they are counted in a warning, and an .atr wholly past the end is refused."""
    import wfdb

    ann = wfdb.rdann(str(physionet_root / "mitdb" / "1.0.0" / "119"), "atr")  # the whole 30 minutes
    for name, sample, symbol in (("longer", ann.sample, ann.symbol),
                                 ("other", ann.sample[ann.sample > SECONDS * 360 + 1000],
                                  [s for s, x in zip(ann.symbol, ann.sample) if x > SECONDS * 360 + 1000])):
        d = tmp_path / name
        d.mkdir()
        for ext in ("hea", "dat"):
            (d / f"119.{ext}").write_bytes(inputs["wfdb"].with_suffix(f".{ext}").read_bytes())
        wfdb.wrann("119", "atr", sample, symbol=symbol, write_dir=str(d), fs=360)
    beats_in = int(((ann.sample < SECONDS * 360) & np.isin(ann.symbol, list("NLRejAaJSVEFfQ/"))).sum())
    with caplog.at_level("WARNING"):
        table = predict(run, [tmp_path / "longer" / "119"], r_peaks="atr", progress=False)
    assert "reference beats lie past the end of the signal" in caplog.text
    assert len(table) <= beats_in and table["position"].max() < SECONDS * 360
    with pytest.raises(RecordError, match=r"all \d+ beats lie past the end of .*does not belong to this signal"):
        predict(run, [tmp_path / "other" / "119"], r_peaks="atr", progress=False)


def _tiny_run(store, out: Path, train: str, val: str) -> Path:
    rid = np.asarray(store.record_ids).astype(str)
    rng = np.random.default_rng(0)

    def pick(r: str, n: int) -> np.ndarray:
        pools = [np.flatnonzero((rid == r) & (store.labels == c)) for c in range(len(store.class_names))]
        return np.sort(np.concatenate([rng.choice(p, n, replace=False) for p in pools if len(p) >= n]))

    split = {"train": pick(train, 4), "val": pick(val, 2), "test": np.zeros(0, dtype=np.int64)}
    # fp32 (amp off): these tests check the signal path (reading, filtering, resampling, chunking) to 1e-4, which
    # bf16 autocast (amp auto on CPUs with native bf16) cannot hold: its outputs differ by ~1e-3 between batchings
    fine_tune(store, out=out, split_indices=split, init="scratch", image_size=32, batch_size=8, epochs=1,
              num_threads=1, progress=False, tiers=(1e-3, 1e-3, 1e-2), amp="off")
    return out


def _store_probs(run: Path, store, sel: np.ndarray) -> np.ndarray:
    import torch

    from ecgtransfer.training.evaluation import load_run
    from ecgtransfer.training.runtime import infer

    r = load_run(run)
    batch = (torch.from_numpy(store.batch(sel)), None, sel)
    if r.rr_dim:  # the store's RR context, as training reads it
        batch += (torch.from_numpy(np.ascontiguousarray(store.extra("rr")[sel, :r.rr_dim], dtype=np.float32)),)
    return infer(r.model, r.encoder, [batch], r.device, dtype=r.dtype, channels_last=r.channels_last)["probs"]


def test_resampled_store_streamed_in_small_chunks_matches_the_store(run, store, physionet_root, monkeypatch) -> None:
    """The 250 Hz store made from 360 Hz records: predict filters, resamples and cuts 2-minute chunks (with their
    context) exactly as convert did on the whole record, and its RR features from the same peaks are the store's
    (the RR-fusing model gives the store's probabilities)."""
    from ecgtransfer.training import prediction

    monkeypatch.setattr(prediction, "CHUNK_S", 120.0)
    # the whole shared record with its reference beats: the store's beats, RR features and probabilities
    atr = predict(run, [physionet_root / "mitdb" / "1.0.0" / "119"], r_peaks="atr", progress=False)
    rid = np.asarray(store.record_ids).astype(str)
    sel = np.flatnonzero(rid == "119")
    assert list(atr["position"]) == list(store.positions[sel])
    assert list(atr["reference"]) == [store.class_names[k] for k in store.labels[sel]]
    want = _store_probs(run, store, sel)
    cols = [c for c in atr if c.startswith("p_")]  # the run's classes
    np.testing.assert_allclose(atr[cols].to_numpy(), want, atol=1e-4)


def test_rhythm_windows_match_the_store(physionet_root, tmp_path) -> None:
    from ecgtransfer.conversion import convert

    records = ["A00009", "A00039", "A00042", "A00061"]
    store = convert("challenge-2017", data=physionet_root, out=tmp_path / "c", records=records, window=5.0,
                    stride=2.5, jobs=1, progress=False)
    rid = np.asarray(store.record_ids).astype(str)
    train = [r for r in records if r != records[0]]
    split = {"train": np.flatnonzero(np.isin(rid, train)), "val": np.flatnonzero(rid == records[0]),
             "test": np.zeros(0, dtype=np.int64)}
    run = tmp_path / "rr"
    fine_tune(store, out=run, split_indices=split, init="scratch", image_size=32, batch_size=8, epochs=1,
              num_threads=1, progress=False, tiers=(1e-3, 1e-3, 1e-2), amp="off")  # fp32: see _tiny_run
    path = physionet_root / "challenge-2017" / "1.0.0" / "training2017" / records[0]
    table = predict(run, [path], progress=False)
    sel = np.flatnonzero(rid == records[0])
    assert list(table["position"]) == list(store.positions[sel]) and "r_peak_source" not in table
    np.testing.assert_allclose(table[[c for c in table if c.startswith("p_")]].to_numpy(),
                               _store_probs(run, store, sel), atol=1e-4)


def test_longest_runs_and_burden_against_groupby() -> None:
    from itertools import groupby

    from ecgtransfer.training.beat_report import beat_summary, longest_runs

    rng = np.random.default_rng(3)
    labels = rng.choice(["N", "N", "N", "V", "S"], size=500)
    for cls in ("V", "S"):
        runs, pos = [], 0
        for key, grp in groupby(labels.tolist()):
            n = len(list(grp))
            if key == cls:
                runs.append((pos, n))
            pos += n
        want = sorted(runs, key=lambda r: (-r[1], r[0]))[:3]
        assert longest_runs(labels, cls) == want
    table = pd.DataFrame({"record": ["a"] * 300 + ["b"] * 200, "position": np.arange(500) * 300,
                          "time_s": np.arange(500) * 300 / 360.0, "predicted": labels})
    s = beat_summary(table, ["N", "S", "V", "F"])
    assert s["total"]["counts"] == {k: int((labels == k).sum()) for k in ["N", "S", "V", "F"]}
    assert s["total"]["burden_percent"]["V"] == pytest.approx(100 * (labels == "V").mean())
    assert s["records"]["b"]["runs"]["V"][0]["length"] == longest_runs(labels[300:], "V")[0][1]


def test_recordings_named_alike_stay_apart(run, inputs, tmp_path) -> None:
    """Issue 20 group 3: ``predict a/rec.csv b/rec.csv`` merged the two recordings into one record ``rec`` of the
    table and the beat report. Each keeps its own id now: the path below the common parent when names collide."""
    full = pd.read_csv(inputs["csv"])
    half = len(full) // 2
    for sub, part in (("a", full.iloc[:half]), ("b", full.iloc[half:])):
        (tmp_path / sub).mkdir()
        part.to_csv(tmp_path / sub / "rec.csv", index=False)
    a, b = tmp_path / "a" / "rec.csv", tmp_path / "b" / "rec.csv"
    alone = {k: predict(run, [p], units="uV", progress=False) for k, p in (("a/rec.csv", a), ("b/rec.csv", b))}
    out, rep = tmp_path / "pred.csv", tmp_path / "report"
    assert cli_main(["-q", "predict", str(run), str(a), str(b), "--units", "uV", "--out", str(out),
                     "--report", str(rep)]) == 0
    table = pd.read_csv(out)
    assert list(dict.fromkeys(table["record"])) == ["a/rec.csv", "b/rec.csv"]
    for rid, ref in alone.items():
        got = table[table["record"] == rid]
        assert list(got["position"]) == list(ref["position"]) and list(got["predicted"]) == list(ref["predicted"])
    summary = json.loads((rep / "summary.json").read_text())
    assert set(summary["records"]) == {"a/rec.csv", "b/rec.csv"}
    assert {k: v["beats"] for k, v in summary["records"].items()} == {k: len(v) for k, v in alone.items()}
    # a unique name stays the plain name; the same file twice is told apart by #2
    from ecgtransfer.signals.readers import unique_record_ids
    recs = [open_recording(p, units="uV") for p in (a, b, inputs["csv"], a)]
    assert unique_record_ids(recs) == ["a/rec.csv", "b/rec.csv", "export", "a/rec.csv#2"]
