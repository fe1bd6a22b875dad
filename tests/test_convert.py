"""convert: real PhysioNet records -> segment store, checked against wfdb, scipy and the label files."""
from __future__ import annotations

import csv
import hashlib
import importlib
import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy import signal as ss

import ecgtransfer as et
from ecgtransfer.cli import main as cli_main
from ecgtransfer.errors import CatalogError, ConfigError, RecordError, StoreError
from ecgtransfer.signals.beats import RR_FEATURES
from ecgtransfer.store import SegmentStore

# the AAMI EC57 grouping, written out independently of ecgtransfer.signals.beats
AAMI = {"N": "N", "L": "N", "R": "N", "e": "N", "j": "N", "A": "S", "a": "S", "J": "S", "S": "S",
        "V": "V", "E": "V", "F": "F", "/": "Q", "f": "Q", "Q": "Q"}
BEFORE, AFTER = 90, 162  # default 0.25 s / 0.45 s at 360 Hz


def _mitdb(root: Path) -> Path:
    return root / "mitdb" / "1.0.0"


def _expected_beats(root: Path, rec: str, before: int = BEFORE, after: int = AFTER):
    """Per-class counts from the .atr file, without the beats whose window leaves the record."""
    ann = wfdb.rdann(str(_mitdb(root) / rec), "atr")
    sig_len = wfdb.rdheader(str(_mitdb(root) / rec)).sig_len
    kept, dropped = Counter(), 0
    samples = []
    for s, sym in zip(ann.sample, ann.symbol):
        if sym not in AAMI:
            continue
        if s - before < 0 or s + after > sig_len:
            dropped += 1
            continue
        kept[AAMI[sym]] += 1
        samples.append(int(s))
    return kept, dropped, np.array(samples)


@pytest.fixture(scope="module")
def beats3(physionet_root, tmp_path_factory):
    """Three mitdb records, no filter, with RR context (114: swapped leads; 207/208: every AAMI class)."""
    out = tmp_path_factory.mktemp("stores") / "mitdb3"
    return et.convert("mitdb", data=physionet_root, out=out, records=["114", "207", "208"], filter="none",
                      rr_context=True, jobs=2, progress=False)


def test_beat_counts_equal_independent_atr_count(beats3, physionet_root):
    info = beats3.info()
    assert beats3.class_names == ["N", "S", "V", "F", "Q"]
    assert beats3.shape[1:] == (1, BEFORE + AFTER)
    assert beats3.lead_names == ["MLII"]
    total = Counter()
    for rec in ["114", "207", "208"]:
        kept, dropped, _ = _expected_beats(physionet_root, rec)
        got = {k: v for k, v in info.records[rec].items() if v}
        assert got == dict(kept), rec
        assert beats3.manifest["summary"]["dropped_edge"].get(rec, 0) == dropped
        total += kept
    assert {k: v for k, v in info.classes.items() if v} == dict(total)
    assert set(info.classes) == {"N", "S", "V", "F", "Q"}


def test_all_shared_mitdb_records_counts(physionet_root, tmp_path):
    """Every shared mitdb record (quick: ~50k beats, no filter)."""
    store = et.convert("mitdb", data=physionet_root, out=tmp_path / "all", filter="none", jobs=2, progress=False)
    records = (_mitdb(physionet_root) / "RECORDS").read_text().split()
    info = store.info()
    assert sorted(info.records) == sorted(records)
    total_dropped = 0
    for rec in records:
        kept, dropped, samples = _expected_beats(physionet_root, rec)
        assert {k: v for k, v in info.records[rec].items() if v} == dict(kept), rec
        np.testing.assert_array_equal(store.positions[store.record_ids == rec], samples)
        total_dropped += dropped
    assert total_dropped > 0  # the edge rule is exercised on the real records
    assert sum(store.manifest["summary"]["dropped_edge"].values()) == total_dropped
    # 201 and 202 are one patient; every other record is its own patient
    assert set(store.patient_ids[store.record_ids == "201"]) == {"201"}
    assert len(set(store.patient_ids)) == len(records)


def test_segments_equal_wfdb_slice(beats3, physionet_root):
    for rec in ["114", "208"]:
        full = wfdb.rdrecord(str(_mitdb(physionet_root) / rec))
        lead = full.p_signal[:, full.sig_name.index("MLII")]
        idx = np.flatnonzero(beats3.record_ids == rec)
        for i in idx[[0, 1, len(idx) // 2, -1]]:
            p = int(beats3.positions[i])
            np.testing.assert_allclose(beats3.segments[i, 0], lead[p - BEFORE:p + AFTER].astype(np.float32))
    assert beats3.manifest["parameters"]["lead"] == "MLII"


def test_symbols_and_rr_extra(beats3, physionet_root):
    ann = wfdb.rdann(str(_mitdb(physionet_root) / "207"), "atr")
    beats_all = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in AAMI])
    syms_all = [sym for sym in ann.symbol if sym in AAMI]
    idx = np.flatnonzero(beats3.record_ids == "207")
    rr = np.asarray(beats3.extra("rr"))[idx]
    assert rr.shape == (len(idx), len(RR_FEATURES)) == (len(idx), 8) and rr.dtype == np.float32
    pos = beats3.positions[idx]
    j = np.searchsorted(beats_all, pos)  # index of each stored beat among all reference beats
    np.testing.assert_array_equal(beats_all[j], pos)
    mid = len(idx) // 2
    k = j[mid]
    d = np.diff(beats_all) / 360.0
    np.testing.assert_allclose(rr[mid, :3], [d[k - 1], d[k], d[k - 5:k + 5].mean()], rtol=1e-6)
    exp_prev = np.where(j > 0, d[np.maximum(j - 1, 0)], d[0])
    exp_next = np.where(j < len(d), d[np.minimum(j, len(d) - 1)], d[-1])
    np.testing.assert_allclose(rr[:, 0], exp_prev, rtol=1e-6)
    np.testing.assert_allclose(rr[:, 1], exp_next, rtol=1e-6)
    # relative columns: divided by the mean of all the record's RR intervals (from wfdb.rdann, independently)
    np.testing.assert_allclose(rr[:, 3:6], rr[:, 0:3] / d.mean(), rtol=1e-5)
    np.testing.assert_allclose(rr[mid, 3], d[k - 1] / d.mean(), rtol=1e-5)
    assert [str(s) for s in np.asarray(beats3.extra("symbol"))[idx]] == [syms_all[x] for x in j]


def test_filter_and_resample_match_scipy(physionet_root, tmp_path):
    store = et.convert("mitdb", data=physionet_root, out=tmp_path / "f", records=["101"], fs=250.0, before=0.2,
                       after=0.4, filter="bandpass", band=(0.5, 40.0), filter_order=2, jobs=1, progress=False)
    assert store.fs == 250.0 and store.shape[1:] == (1, 150)
    rec = wfdb.rdrecord(str(_mitdb(physionet_root) / "101"), channel_names=["MLII"])
    sos = ss.butter(2, [0.5, 40.0], btype="bandpass", fs=360.0, output="sos")
    y = ss.resample_poly(ss.sosfiltfilt(sos, rec.p_signal[:, 0]), 25, 36)
    for i in [0, 7, len(store) // 2, len(store) - 1]:
        p = int(store.positions[i])
        q = int(round(p * 250 / 360))
        np.testing.assert_allclose(store.segments[i, 0], y[q - 50:q + 100], rtol=1e-5, atol=1e-5)
    params = store.manifest["parameters"]
    got = (params["filter"], params["band"], params["filter_order"], params["fs"])
    assert got == ("bandpass", [0.5, 40.0], 2, 250.0)
    assert (params["before_samples"], params["after_samples"]) == (50, 100)


def test_manifest_hashes_every_source_file(beats3, physionet_root):
    src = beats3.manifest["source_files"]
    assert sorted(src) == sorted(f"{r}.{e}" for r in ["114", "207", "208"] for e in ["hea", "dat", "atr"])
    for rel, digest in src.items():
        assert hashlib.sha256((_mitdb(physionet_root) / rel).read_bytes()).hexdigest() == digest
    params = beats3.manifest["parameters"]
    for key in ["records", "lead", "fs", "before", "after", "rr_context", "include_paced", "filter", "band",
                "normalize", "dtype", "window", "stride", "whole_record", "reference", "rhythm_classes"]:
        assert key in params


def test_challenge_2017_windows_and_labels(physionet_root, tmp_path):
    root = physionet_root / "challenge-2017" / "1.0.0" / "training2017"
    ref = dict(csv.reader(open(root / "REFERENCE.csv")))
    v3 = dict(csv.reader(open(root / "REFERENCE-v3.csv")))
    changed = sorted(r for r in ref if ref[r] != v3[r])[0]
    records = ["A00009", "A00039", changed]
    store = et.convert("challenge-2017", data=physionet_root, out=tmp_path / "c", records=records, window=5.0,
                       stride=2.5, filter="none", jobs=1, progress=False)
    assert store.class_names == ["N", "A", "O", "~"] and store.shape[1:] == (1, 1500)
    for rec in records:
        sig = wfdb.rdrecord(str(root / rec)).p_signal[:, 0]
        idx = np.flatnonzero(store.record_ids == rec)
        assert len(idx) == (len(sig) - 1500) // 750 + 1
        assert {store.class_names[store.labels[i]] for i in idx} == {ref[rec]}
        np.testing.assert_array_equal(store.positions[idx], np.arange(len(idx)) * 750)
        np.testing.assert_allclose(store.segments[idx[-1], 0], sig[store.positions[idx[-1]]:][:1500].astype(np.float32))
    whole = et.convert("challenge-2017", data=physionet_root, out=tmp_path / "w", records=records, window=60.0,
                       whole_record=True, reference="v3", filter="none", jobs=1, progress=False)
    assert len(whole) == 3 and whole.shape[1:] == (1, 18000)
    for i, rec in enumerate(whole.record_ids):
        assert whole.class_names[whole.labels[i]] == v3[rec]
        sig = wfdb.rdrecord(str(root / rec)).p_signal[:, 0]
        np.testing.assert_allclose(whole.segments[i, 0, :len(sig)], sig.astype(np.float32))
        assert not np.any(whole.segments[i, 0, len(sig):])  # zero-padded tail


def test_challenge_2017_rhythm_beats_around_detected_peaks(physionet_root, tmp_path):
    """``rhythm-beats``: beat windows around R peaks found in the raw lead, each with its record's rhythm label, at
    the target's rate. Oracle: wfdb's own GQRS on the raw lead (the peaks agree within 50 ms), REFERENCE.csv and
    a scipy resample of the raw lead."""
    from wfdb import processing

    root = physionet_root / "challenge-2017" / "1.0.0" / "training2017"
    ref = dict(csv.reader(open(root / "REFERENCE.csv")))
    records = ["A00009", "A00039", "A00061"]  # A, N, O
    store = et.convert("challenge-2017", data=physionet_root, out=tmp_path / "b", task="rhythm-beats",
                       records=records, fs=360.0, filter="none", jobs=1, progress=False)
    assert store.manifest["task"] == "rhythm-beats" and store.class_names == ["N", "A", "O", "~"]
    assert store.shape[1:] == (1, BEFORE + AFTER) and store.fs == 360.0
    for rec in records:
        sig = wfdb.rdrecord(str(root / rec)).p_signal[:, 0]
        gq = np.asarray(processing.gqrs_detect(sig=sig, fs=300.0))
        idx = np.flatnonzero(store.record_ids == rec)
        assert {store.class_names[store.labels[i]] for i in idx} == {ref[rec]}
        pos = store.positions[idx]  # source samples (300 Hz)
        assert np.all(np.diff(pos) > 0)
        assert np.abs(pos[:, None] - gq[None, :]).min(axis=1).max() <= 15  # each within 50 ms of a GQRS peak
        assert len(gq) - 4 <= len(idx) <= len(gq)  # only edge beats (window off the record) are dropped
        up = ss.resample_poly(sig, 6, 5)
        p = (pos[len(pos) // 2] * 6 + 2) // 5
        np.testing.assert_allclose(store.segments[idx[len(idx) // 2], 0], up[p - BEFORE:p + AFTER], atol=1e-5)
        rr = store.extra("rr")[idx]
        np.testing.assert_allclose(rr[1:-1, 0], np.diff(pos)[:-1] / 300.0, rtol=1e-5)  # previous RR in seconds
    with pytest.raises(ConfigError, match="mitdb supports the task"):
        et.convert("mitdb", data=physionet_root, out=tmp_path / "m", task="rhythm-beats", records=["101"],
                   progress=False)


def test_ludb_rhythm_labels_and_leads(physionet_root, tmp_path):
    vdir = physionet_root / "ludb" / "1.0.1"
    table = pd.read_csv(vdir / "ludb.csv", dtype=str)
    first = {r: t.splitlines()[0].strip().rstrip(".").lower() for r, t in zip(table["ID"], table["Rhythms"])}
    af = sorted((r for r, t in first.items() if t == "atrial fibrillation"), key=int)[0]
    records = ["1", "5", af]
    store = et.convert("ludb", data=physionet_root, out=tmp_path / "l", records=records, lead="all", filter="none",
                       jobs=1, progress=False)
    assert store.shape == (3, 12, 5000)
    assert store.lead_names == ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]
    expected = {"sinus rhythm": "SR", "sinus bradycardia": "SB", "atrial fibrillation": "AF"}
    for i, rec in enumerate(store.record_ids):
        assert store.class_names[store.labels[i]] == expected[first[rec]]
    two = et.convert("ludb", data=physionet_root, out=tmp_path / "l2", records=["1"], lead=["II", "V1"],
                     filter="none", jobs=1, progress=False)
    full = wfdb.rdrecord(str(vdir / "data" / "1"))
    assert two.lead_names == ["ii", "v1"]
    np.testing.assert_allclose(two.segments[0], full.p_signal[:, [1, 6]].T.astype(np.float32))


def _copy_mitdb(root: Path, dst: Path, records: list[str], sums: bool = False) -> Path:
    vdir = dst / "mitdb" / "1.0.0"
    vdir.mkdir(parents=True)
    for r in records:
        for ext in ["hea", "dat", "atr"]:
            shutil.copy(_mitdb(root) / f"{r}.{ext}", vdir)
    (vdir / "RECORDS").write_text("\n".join(records) + "\n")
    if sums:
        shutil.copy(_mitdb(root) / "SHA256SUMS.txt", vdir)
    return vdir


def test_malformed_header_names_record(physionet_root, tmp_path):
    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101"])
    (vdir / "101.hea").write_text("101 two 360 six\nthis is not a signal line\n")
    with pytest.raises(RecordError, match=r"record 101: malformed header .*101\.hea"):
        et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_missing_dat_names_record_and_file(physionet_root, tmp_path):
    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101", "106"])
    (vdir / "106.dat").unlink()
    with pytest.raises(RecordError, match=r"record 106: .*106\.dat"):
        et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_damaged_file_detected_by_sha256sums(physionet_root, tmp_path):
    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101"], sums=True)
    data = bytearray((vdir / "101.atr").read_bytes())
    data[100] ^= 0xFF
    (vdir / "101.atr").write_bytes(bytes(data))
    with pytest.raises(RecordError, match=r"101\.atr.*SHA256SUMS"):
        et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "s", progress=False)


def test_missing_label_file_is_clear(physionet_root, tmp_path):
    src = physionet_root / "challenge-2017" / "1.0.0" / "training2017"
    dst = tmp_path / "data" / "challenge-2017" / "1.0.0" / "training2017"
    dst.mkdir(parents=True)
    for ext in ["hea", "mat"]:
        shutil.copy(src / f"A00009.{ext}", dst)
    (dst / "RECORDS").write_text("A00009\n")
    with pytest.raises(RecordError, match=r"label file .*REFERENCE\.csv is missing"):
        et.convert("challenge-2017", data=tmp_path / "data", out=tmp_path / "s", progress=False)


def test_missing_lead_and_bad_requests(physionet_root, tmp_path):
    with pytest.raises(RecordError, match=r"record 114 has no lead 'V1'; its leads are V5, MLII"):
        et.convert("mitdb", data=physionet_root, out=tmp_path / "s", records=["114"], lead="V1", progress=False)
    with pytest.raises(CatalogError, match="unknown record '999'"):
        et.convert("mitdb", data=physionet_root, out=tmp_path / "s", records=["999"], progress=False)
    with pytest.raises(ConfigError, match="rhythm"):
        et.convert("mitdb", data=physionet_root, out=tmp_path / "s", task="rhythm", progress=False)
    with pytest.raises(CatalogError, match="unknown database"):
        et.convert("nodb", data=physionet_root, out=tmp_path / "s")


def test_paced_records_excluded_by_default(physionet_root, tmp_path):
    # the shared mirror has no paced record: fake one by copying 101's files under the name 102
    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101"])
    for ext in ["dat", "atr"]:
        shutil.copy(vdir / f"101.{ext}", vdir / f"102.{ext}")
    (vdir / "102.hea").write_text((vdir / "101.hea").read_text().replace("101", "102"))
    (vdir / "RECORDS").write_text("101\n102\n")
    store = et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "s", filter="none", jobs=1, progress=False)
    assert set(store.record_ids) == {"101"}
    with pytest.raises(ConfigError, match="paced"):
        et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "p", records=["102"], progress=False)
    paced = et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "p", include_paced=True, filter="none", jobs=1,
                       progress=False)
    assert set(paced.record_ids) == {"101", "102"}


def _no_partials(parent: Path) -> bool:
    return not any(".partial-" in p.name or ".old-" in p.name for p in parent.iterdir())


def test_failure_mid_conversion_leaves_no_store(physionet_root, tmp_path):
    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101", "106", "108"])
    # damaged samples (a truncated file is refused up front): the size checks pass, the header's checksum fails
    # in a worker
    data = bytearray((vdir / "108.dat").read_bytes())
    data[100000] ^= 0x01
    (vdir / "108.dat").write_bytes(bytes(data))
    out = tmp_path / "stores" / "s"
    with pytest.raises(RecordError, match="record 108"):
        et.convert("mitdb", data=tmp_path / "data", out=out, jobs=2, progress=False)
    assert not out.exists() and _no_partials(out.parent)


def test_interrupt_keeps_previous_store(physionet_root, tmp_path, monkeypatch):
    out = tmp_path / "s"
    first = et.convert("mitdb", data=physionet_root, out=out, records=["101"], filter="none", jobs=1, progress=False)
    old_hash = first.manifest_hash
    conv = importlib.import_module("ecgtransfer.conversion.workers")

    real = conv._process_record
    calls = []

    def interrupted(job):
        calls.append(job.record_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(conv, "_process_record", interrupted)
    with pytest.raises(KeyboardInterrupt):
        et.convert("mitdb", data=physionet_root, out=out, records=["101", "106", "108"], filter="none", jobs=1,
                   overwrite=True, progress=False)
    assert SegmentStore(out).manifest_hash == old_hash
    assert _no_partials(tmp_path)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        et.convert("mitdb", data=physionet_root, out=tmp_path / "new", records=["101", "106"], filter="none",
                   jobs=1, progress=False)
    assert not (tmp_path / "new").exists() and _no_partials(tmp_path)


def test_rerun_skips_and_parameter_change_needs_overwrite(physionet_root, tmp_path, caplog):
    out = tmp_path / "s"
    kw = dict(data=physionet_root, out=out, records=["101"], filter="none", jobs=1, progress=False)
    first = et.convert("mitdb", **kw)
    mtime = (out / "manifest.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="ecgtransfer.conversion"):
        again = et.convert("mitdb", **kw)
    assert "up to date" in caplog.text
    assert again.manifest_hash == first.manifest_hash
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    # the same window given another way (samples, a string with a unit) is the same conversion
    assert et.convert("mitdb", **{**kw, "before": 90, "after": "450ms"}).manifest_hash == first.manifest_hash
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    with pytest.raises(StoreError, match="differs in: .*after"):
        et.convert("mitdb", **{**kw, "after": 0.5})
    replaced = et.convert("mitdb", **{**kw, "after": 0.5, "overwrite": True})
    assert replaced.shape[2] == 90 + 180


def test_changed_source_file_is_noticed(physionet_root, tmp_path):
    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101"])
    kw = dict(data=tmp_path / "data", out=tmp_path / "s", filter="none", jobs=1, progress=False)
    et.convert("mitdb", **kw)
    hea = vdir / "101.hea"
    hea.write_text(hea.read_text() + "# an extra comment\n")
    with pytest.raises(StoreError, match="source_files"):
        et.convert("mitdb", **kw)


def test_cli_convert_and_info_json(physionet_root, tmp_path, capsys):
    out = tmp_path / "s"
    rc = cli_main(["-q", "convert", "mitdb", "--data", str(physionet_root), "--out", str(out), "--records", "101",
                   "--before", "90samples", "--after", "0.3", "--filter", "none", "--rr-context", "--jobs", "1"])
    assert rc == 0
    capsys.readouterr()
    assert cli_main(["info", str(out), "--json"]) == 0
    text = capsys.readouterr().out
    d = json.loads(text)  # exactly one JSON object
    store = SegmentStore(out)
    assert d["n_segments"] == len(store) and d["shape"] == [len(store), 1, 90 + 108]
    names = store.class_names
    assert d["classes"] == {c: int((store.labels == i).sum()) for i, c in enumerate(names)}
    assert list(d["classes"]) == names
    kept, _, _ = _expected_beats(physionet_root, "101", before=90, after=108)
    assert {k: v for k, v in d["records"]["101"].items() if v} == dict(kept)
    assert d["fs"] == 360.0 and "rr" in d["extras"]
    assert cli_main(["info", str(out)]) == 0
    human = capsys.readouterr().out
    assert "per record" in human and "MLII" in human
    assert cli_main(["info", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_convert_error_is_one_line(physionet_root, tmp_path, capsys):
    rc = cli_main(["-q", "convert", "mitdb", "--data", str(physionet_root), "--out", str(tmp_path / "s"),
                   "--records", "114", "--lead", "V1"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "114" in err[0] and "V5, MLII" in err[0]


def test_record_order_float16_and_zscore(beats3, physionet_root, tmp_path):
    _, first = np.unique(beats3.record_ids, return_index=True)
    assert [str(beats3.record_ids[i]) for i in sorted(first)] == ["114", "207", "208"]  # record order, jobs=2
    store = et.convert("ludb", data=physionet_root, out=tmp_path / "h", records=["1", "5"], lead=["ii", "v2"],
                       dtype="float16", normalize="zscore", jobs=1, progress=False)
    assert store.segments.dtype == np.float16 and store.manifest["dtype"] == "float16"
    x = store.batch([0, 1])
    assert x.dtype == np.float32 and x.shape == (2, 2, 5000)
    np.testing.assert_allclose(x.mean(-1), 0, atol=2e-3)
    np.testing.assert_allclose(x.std(-1), 1, atol=2e-2)


def test_headers_read_once_per_record_in_the_main_process(physionet_root, tmp_path, monkeypatch):
    calls = Counter()
    real = wfdb.rdheader

    def counting(name, *a, **k):
        calls[Path(name).name] += 1
        return real(name, *a, **k)

    monkeypatch.setattr(wfdb, "rdheader", counting)
    et.convert("mitdb", data=physionet_root, out=tmp_path / "s", records=["101", "106"], filter="none", jobs=1,
               progress=False)
    # one read while resolving leads and files, one when the record's signal is read (jobs=1: in this process)
    assert calls == {"101": 2, "106": 2}


def test_records_listing_parsed_like_download(physionet_root, tmp_path):
    """RECORDS is read by the same parser as download: duplicates once, comments skipped, unsafe names refused."""
    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101", "106"])
    (vdir / "RECORDS").write_text("# listing\n101\n106\n101\n\n")
    store = et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "s", filter="none", jobs=1, progress=False)
    kept, _, _ = _expected_beats(physionet_root, "101")
    assert (store.record_ids == "101").sum() == sum(kept.values())  # converted once, not twice
    assert store.manifest["parameters"]["records"] == ["101", "106"]
    (vdir / "RECORDS").write_text("101\n../../etc/passwd\n")
    with pytest.raises(et.errors.UnsafePathError, match="passwd"):
        et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "u", filter="none", jobs=1, progress=False)
    (vdir / "RECORDS").write_text("101\n")
    (vdir / "SHA256SUMS.txt").write_text("not-a-digest 101.hea\n")
    with pytest.raises(RecordError, match="malformed line 1 of .*SHA256SUMS"):
        et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "m", filter="none", jobs=1, progress=False)


def test_manifest_hash_ignores_folder_and_jobs(physionet_root, tmp_path):
    """Byte-identical stores hash equally whatever the source folder and worker count; parameters count."""
    _copy_mitdb(physionet_root, tmp_path / "a", ["101", "106"])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    kw = dict(filter="none", progress=False)
    one = et.convert("mitdb", data=tmp_path / "a", out=tmp_path / "s1", jobs=1, **kw)
    two = et.convert("mitdb", data=tmp_path / "b", out=tmp_path / "s2", jobs=2, **kw)
    three = et.convert("mitdb", data=tmp_path / "link", out=tmp_path / "s3", jobs=2, **kw)
    for f in ["segments.npy", "labels.npy", "record_ids.npy", "patient_ids.npy", "positions.npy"]:
        assert (tmp_path / "s1" / f).read_bytes() == (tmp_path / "s2" / f).read_bytes(), f
    assert one.manifest_hash == two.manifest_hash == three.manifest_hash
    assert one.manifest["provenance"]["jobs"] == 1 and two.manifest["provenance"]["jobs"] == 2
    assert one.manifest["provenance"]["source_root"] != two.manifest["provenance"]["source_root"]
    assert "source_root" not in one.manifest and "jobs" not in one.manifest["parameters"]
    other = et.convert("mitdb", data=tmp_path / "a", out=tmp_path / "s4", jobs=1, after=0.5, **kw)
    assert other.manifest_hash != one.manifest_hash


def test_beat_window_longer_than_two_seconds_is_refused(physionet_root, tmp_path, capsys):
    kw = dict(data=physionet_root, records=["101"], filter="none", jobs=1, progress=False)
    with pytest.raises(ConfigError, match=r"before=90\.0 is 32400 samples = 90 s at 360 Hz.*90samples"):
        et.convert("mitdb", out=tmp_path / "a", before=90.0, **kw)
    with pytest.raises(ConfigError, match=r"after='3s' is 1080 samples"):
        et.convert("mitdb", out=tmp_path / "b", after="3s", **kw)
    # two seconds exactly is allowed (720 samples at 360 Hz, also given as samples)
    store = et.convert("mitdb", out=tmp_path / "c", before=2.0, after=720, **kw)
    assert store.shape[2] == 1440
    rc = cli_main(["-q", "convert", "mitdb", "--data", str(physionet_root), "--out", str(tmp_path / "d"),
                   "--records", "101", "--before", "90"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "before='90' is 32400 samples = 90 s" in err[0] and "--before 90samples" in err[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()


def test_cli_out_under_a_regular_file_is_one_line(physionet_root, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc = cli_main(["-q", "convert", "mitdb", "--data", str(physionet_root), "--out", str(tmp_path / "afile" / "s"),
                   "--records", "101", "--filter", "none", "--jobs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("ecgtransfer: error: cannot create the segment store") and "afile" in err[0]


def test_cli_turns_a_stray_oserror_into_one_line(tmp_path, capsys, monkeypatch):
    import errno

    conv = importlib.import_module("ecgtransfer.conversion")

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.npy"))

    monkeypatch.setattr(conv, "convert", full_disk)
    argv = ["convert", "mitdb", "--data", str(tmp_path), "--out", str(tmp_path / "s")]
    assert cli_main(["-q", *argv]) == 2
    assert capsys.readouterr().err == f"ecgtransfer: error: No space left on device: {tmp_path / 'x.npy'}\n"
    assert cli_main(["-vv", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith(f"ecgtransfer: error: No space left on device: {tmp_path / 'x.npy'}\n")


def _worker_dies(job):
    """Stands in for convert's per-record work: the worker process dies (as when killed for memory)."""
    import os

    os._exit(9)


def test_dead_worker_is_a_record_error(physionet_root, tmp_path, monkeypatch):
    conv = importlib.import_module("ecgtransfer.conversion.workers")
    monkeypatch.setattr(conv, "_process_record", _worker_dies)
    with pytest.raises(RecordError, match=r"worker process died while converting record 101 .*--jobs 1"):
        et.convert("mitdb", data=physionet_root, out=tmp_path / "s", records=["101", "106"], filter="none", jobs=2,
                   progress=False)
    assert not (tmp_path / "s").exists() and _no_partials(tmp_path)


def test_record_202_is_patient_201_in_a_converted_store(physionet_root, tmp_path):
    """The shared mirror lacks 202: fake it from 106's files, convert 101 106 201 202, check ids and splits."""
    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101", "106", "201"])
    for ext in ["dat", "atr"]:
        shutil.copy(vdir / f"106.{ext}", vdir / f"202.{ext}")
    lines = (vdir / "106.hea").read_text().splitlines()
    assert lines[0].startswith("106 ")
    lines[0] = "202" + lines[0][len("106"):]
    lines[1:] = [ln.replace("106.dat", "202.dat") for ln in lines[1:]]
    (vdir / "202.hea").write_text("\n".join(lines) + "\n")
    (vdir / "RECORDS").write_text("101\n106\n201\n202\n")
    store = et.convert("mitdb", data=tmp_path / "data", out=tmp_path / "s", filter="none", jobs=2, progress=False)
    assert set(store.record_ids) == {"101", "106", "201", "202"}
    assert set(store.patient_ids[store.record_ids == "202"]) == {"201"}
    assert set(store.patient_ids[store.record_ids == "201"]) == {"201"}
    assert sorted(set(store.patient_ids)) == ["101", "106", "201"]
    is_201 = np.isin(store.record_ids, ["201", "202"])
    dechazal = et.split(store, "dechazal")  # 202 is DS2 (test); 201 (DS1) is left out of train/val
    np.testing.assert_array_equal(dechazal.test, np.flatnonzero(store.record_ids == "202"))
    train_val = np.concatenate([dechazal.train, dechazal.val])
    assert set(store.record_ids[train_val]) == {"101", "106"}
    for seed in range(3):
        patient = et.split(store, "patient", seed=seed)
        sides = [p for p in ("train", "val", "test") if np.isin(np.flatnonzero(is_201), getattr(patient, p)).any()]
        assert len(sides) == 1, sides  # 201 and 202 (one subject) on one side
        assert set(patient.patients[sides[0]]) >= {"201"}


def test_batch_script_has_every_cli_option_and_converts(physionet_root, tmp_path):
    import argparse
    import subprocess
    import sys

    from ecgtransfer.cli import build_parser

    script = Path(__file__).resolve().parents[1] / "data_scripts" / "convert_physionet.py"
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli_opts = {o for a in sub.choices["convert"]._actions for o in a.option_strings if o.startswith("--")}
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                               check=True).stdout
    named_by_spec = {"--task", "--version", "--help"}  # DB[@VERSION][:TASK]
    assert {o for o in cli_opts - named_by_spec if o not in help_text} == set()
    proc = subprocess.run([sys.executable, str(script), "mitdb:beats", "ludb@1.0.1", "--data", str(physionet_root),
                           "--out", str(tmp_path), "--records", "101", "--before", "90samples", "--after", "0.3",
                           "--filter", "highpass", "--filter-order", "3", "--rr-context", "--normalize", "zscore",
                           "--jobs", "1", "-q"], capture_output=True, text=True)
    # --records 101 is a mitdb record; ludb has none of that name: one line for it, exit 2, mitdb still done
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("convert_physionet: error: ludb@1.0.1: unknown record '101'")
    store = SegmentStore(tmp_path / "mitdb-beats")
    p = store.manifest["parameters"]
    assert (p["records"], p["before_samples"], p["after_samples"]) == (["101"], 90, 108)
    assert (p["filter"], p["filter_order"], p["rr_context"], p["normalize"]) == ("highpass", 3, True, "zscore")


def test_workers_avoid_fork_once_torch_is_loaded(physionet_root, tmp_path, monkeypatch):
    import sys

    import torch  # noqa: F401 - loaded on purpose: fork after torch's thread pools start is unsafe

    conv = importlib.import_module("ecgtransfer.conversion.workers")
    assert conv._mp_context().get_start_method() in ("forkserver", "spawn")
    used = []
    real = conv._mp_context

    def spy():
        ctx = real()
        used.append(ctx.get_start_method())
        return ctx

    monkeypatch.setattr(conv, "_mp_context", spy)
    kw = dict(data=physionet_root, records=["101", "106"], filter="bandpass", progress=False)
    par = et.convert("mitdb", out=tmp_path / "par", jobs=2, **kw)
    assert used and used[0] != "fork"
    seq = et.convert("mitdb", out=tmp_path / "seq", jobs=1, **kw)
    np.testing.assert_array_equal(par.segments, seq.segments)
    np.testing.assert_array_equal(par.record_ids, seq.record_ids)
    assert par.manifest_hash == seq.manifest_hash
    monkeypatch.delitem(sys.modules, "torch")
    assert real().get_start_method() == "fork"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (hidden ones included) -> (size, mtime_ns)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_plan_writes_nothing_and_lists_what_execute_converts(physionet_root, tmp_path):
    """plan_conversion reads headers and hashes files but writes nothing (no store, no partial folder, no lock);
    execute converts exactly the planned records, classes and source files."""
    from ecgtransfer.conversion import execute, plan_conversion

    vdir = _copy_mitdb(physionet_root, tmp_path / "data", ["101", "106", "201"], sums=True)
    out = tmp_path / "stores" / "s"
    before = _tree(tmp_path)
    plan = plan_conversion("mitdb", data=tmp_path / "data", out=out, records=["106", "101"], filter="none",
                           jobs=1)
    assert _tree(tmp_path) == before and not out.parent.exists()
    assert [r.record_id for r in plan.records] == ["106", "101"] == list(plan.config.records)
    assert [r.path for r in plan.records] == [vdir / "106", vdir / "101"]
    assert [(r.patient, r.label) for r in plan.records] == [("106", None), ("101", None)]
    assert plan.config.class_names == tuple(sorted(set(AAMI.values()), key="NSVFQ".index))
    assert plan.lead_names == ("MLII",) and plan.jobs == 1 and not plan.up_to_date
    assert plan.version == "1.0.0" and plan.task == "beats" and plan.out == out
    files = [f"{r}.{e}" for r in ["101", "106"] for e in ["atr", "dat", "hea"]]
    assert list(plan.source_files) == files  # sorted, 201's files not among them
    assert plan.source_files == {f: hashlib.sha256((vdir / f).read_bytes()).hexdigest() for f in files}

    store = execute(plan, progress=False)
    assert store.manifest["source_files"] == plan.source_files
    assert store.manifest["parameters"] == plan.config.to_json()
    assert store.class_names == list(plan.config.class_names) and store.lead_names == list(plan.lead_names)
    _, first = np.unique(store.record_ids, return_index=True)
    assert [str(store.record_ids[i]) for i in sorted(first)] == ["106", "101"]
    for rec in ["101", "106"]:
        kept, _, _ = _expected_beats(physionet_root, rec)
        assert (store.record_ids == rec).sum() == sum(kept.values())
    # planned again: the store is up to date, and executing that plan writes nothing
    written = _tree(tmp_path)
    again = plan_conversion("mitdb", data=tmp_path / "data", out=out, records=["106", "101"], filter="none", jobs=1)
    assert again.up_to_date and again.config == plan.config and again.source_files == plan.source_files
    assert execute(again, progress=False).manifest_hash == store.manifest_hash
    assert _tree(tmp_path) == written


def test_plan_of_a_rhythm_task_holds_the_record_labels(physionet_root, tmp_path):
    """challenge-2017: each planned record carries its REFERENCE-v3.csv class, read independently with csv."""
    from ecgtransfer.conversion import plan_conversion

    root = physionet_root / "challenge-2017" / "1.0.0" / "training2017"
    v3 = dict(csv.reader(open(root / "REFERENCE-v3.csv")))
    records = ["A00009", "A00039", "A00061"]
    plan = plan_conversion("challenge-2017", data=physionet_root, out=tmp_path / "c", records=records,
                           reference="v3", jobs=4)
    names = plan.config.class_names
    assert names == ("N", "A", "O", "~")
    assert {r.record_id: names[r.label] for r in plan.records} == {r: v3[r] for r in records}
    assert "training2017/REFERENCE-v3.csv" in plan.source_files and plan.jobs == 3  # one worker per record at most
    assert not (tmp_path / "c").exists()


_MITDB = dict(records=["101"], filter="none", jobs=1)


@pytest.mark.parametrize("database, kwargs, error, message", [
    ("nodb", {}, CatalogError, "unknown database"),
    ("mitdb", dict(_MITDB, records=["999"]), CatalogError, r"unknown record '999' of mitdb: not listed in .*RECORDS"),
    ("mitdb", dict(_MITDB, version="9.9.9"), CatalogError, "9.9.9"),
    ("mitdb", dict(_MITDB, task="rhythm"), ConfigError, r"mitdb supports the task\(s\) beats, not 'rhythm'"),
    ("mitdb", dict(_MITDB, dtype="int8"), ConfigError, "dtype must be one of float32, float16, got 'int8'"),
    ("mitdb", dict(_MITDB, normalize="l2"), ConfigError, "normalize must be one of .*, got 'l2'"),
    ("mitdb", dict(_MITDB, lead=[]), ConfigError, "lead: give at least one lead name"),
    ("mitdb", dict(_MITDB, records=["114"], lead="V1"), RecordError,
     "record 114 has no lead 'V1'; its leads are V5, MLII"),
    ("mitdb", dict(_MITDB, before=90.0), ConfigError, r"before=90\.0 is 32400 samples = 90 s at 360 Hz"),
    ("mitdb", dict(_MITDB, before=0, after=0), ConfigError, "the beat window is empty"),
    ("challenge-2017", dict(_MITDB, records=["A00009"], window=-1.0), ConfigError,
     "window and stride must be positive seconds, got -1.0 and None"),
    ("challenge-2017", dict(_MITDB, records=["A00009"], reference="v9"), ConfigError,
     "unknown challenge-2017 reference 'v9'"),
])
def test_plan_refuses_bad_input_in_one_line_and_writes_nothing(physionet_root, tmp_path, database, kwargs, error,
                                                                message):
    from ecgtransfer.conversion import plan_conversion

    out = tmp_path / "s"
    with pytest.raises(error, match=message) as info:
        plan_conversion(database, data=physionet_root, out=out, **kwargs)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_plan_refuses_another_conversion_at_out(physionet_root, tmp_path):
    """A store of other parameters at ``out`` is refused when planning (before any work), as convert refuses it."""
    from ecgtransfer.conversion import plan_conversion

    out = tmp_path / "s"
    et.convert("mitdb", data=physionet_root, out=out, **_MITDB, progress=False)
    written = _tree(tmp_path)
    with pytest.raises(StoreError, match=r"holds a different conversion \(differs in: after, after_samples\)"):
        plan_conversion("mitdb", data=physionet_root, out=out, after=0.5, **_MITDB)
    assert not plan_conversion("mitdb", data=physionet_root, out=out, after=0.5, overwrite=True, **_MITDB).up_to_date
    assert _tree(tmp_path) == written


def test_execute_restores_a_store_an_interrupted_overwrite_left_aside(physionet_root, tmp_path, caplog):
    """An overwrite killed between its two renames leaves the store in ``.s.old-*``: planning leaves it there
    (it writes nothing; nothing is at ``out``), execute puts it back and, being this very conversion, keeps it."""
    import os
    import socket
    import subprocess
    import sys

    from ecgtransfer.conversion import execute, plan_conversion

    out = tmp_path / "s"
    first = et.convert("mitdb", data=physionet_root, out=out, **_MITDB, progress=False)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    aside = tmp_path / ".s.old-dead"
    aside.mkdir()
    (aside / ".owner").write_text(f"{dead.pid} {socket.gethostname()}\n")
    os.replace(out, aside / "store")
    left = _tree(tmp_path)
    plan = plan_conversion("mitdb", data=physionet_root, out=out, **_MITDB)
    assert not plan.up_to_date and _tree(tmp_path) == left
    with caplog.at_level(logging.INFO, logger="ecgtransfer.conversion"):
        store = execute(plan, progress=False)
    assert "up to date" in caplog.text
    assert store.manifest_hash == first.manifest_hash and sorted(p.name for p in tmp_path.iterdir()) == ["s"]
