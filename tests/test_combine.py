"""Several databases in one store: svdb resampled to 360 Hz against wfdb, combine_stores, splits and info on it."""
from __future__ import annotations

import json
import logging
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import wfdb
import wfdb.processing
from scipy import signal as ss

import ecgtransfer as et
from ecgtransfer.cli import main
from ecgtransfer.combine import AGREED_PARAMETERS
from ecgtransfer.errors import ConfigError, StoreError
from ecgtransfer.signals.beats import RR_FEATURES
from ecgtransfer.signals.split import DS1, DS2, SplitConfig
from ecgtransfer.store import write_store

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import one_error_line  # noqa: E402

# the AAMI EC57 grouping, written out independently of ecgtransfer.signals.beats
AAMI = {"N": "N", "L": "N", "R": "N", "e": "N", "j": "N", "A": "S", "a": "S", "J": "S", "S": "S",
        "V": "V", "E": "V", "F": "F", "/": "Q", "f": "Q", "Q": "Q"}
CLASSES = ["N", "S", "V", "F", "Q"]
BEFORE, AFTER = 90, 162  # 0.25 s / 0.45 s at 360 Hz
MITDB = ["101", "114", "124"]  # 114: V5 then MLII; 124: MLII, V4
SVDB = ["800", "801", "802"]
PACED = ["102", "104", "107", "217"]


@pytest.fixture(scope="module")
def stores(physionet_root, tmp_path_factory):
    """mitdb and svdb beats at 360 Hz with two leads each (no filter: the oracles read the raw signal), combined."""
    root = tmp_path_factory.mktemp("xdb")
    m = et.convert("mitdb", data=physionet_root, out=root / "mitdb", records=MITDB, lead=["MLII", "V1|V2|V4|V5"],
                   fs=360, filter="none", jobs=1, progress=False)
    s = et.convert("svdb", data=physionet_root, out=root / "svdb", records=SVDB, lead="all", fs=360, filter="none",
                   jobs=1, progress=False)
    x = et.combine_stores([m, s], root / "xdb")
    return m, s, x


def _svdb(root: Path, rec: str) -> str:
    return str(root / "svdb" / "1.0.0" / rec)


def test_svdb_beats_equal_wfdb_annotations(stores, physionet_root):
    """Per-record AAMI counts from wfdb.rdann minus the beats whose 360 Hz window leaves the record; positions are
    the annotation samples at 128 Hz."""
    _, s, _ = stores
    assert s.fs == 360.0 and s.shape[1:] == (2, BEFORE + AFTER) and s.lead_names == ["ECG1", "ECG2"]
    info = s.info()
    for rec in SVDB:
        ann = wfdb.rdann(_svdb(physionet_root, rec), "atr")
        n_out = math.ceil(wfdb.rdheader(_svdb(physionet_root, rec)).sig_len * 360 / 128)
        kept, dropped, samples = Counter(), 0, []
        for p, sym in zip(ann.sample.tolist(), ann.symbol):
            if sym not in AAMI:
                continue
            q = math.floor(p * 360 / 128 + 0.5)
            if q - BEFORE < 0 or q + AFTER > n_out:
                dropped += 1
                continue
            kept[AAMI[sym]] += 1
            samples.append(p)
        assert {k: v for k, v in info.records[rec].items() if v} == dict(kept), rec
        assert s.manifest["summary"]["dropped_edge"].get(rec, 0) == dropped
        np.testing.assert_array_equal(s.positions[s.record_ids == rec], samples)


def test_svdb_window_is_the_resampled_signal_around_the_r_peak(stores, physionet_root):
    """The stored window is scipy's resample_poly of wfdb's signal, and wfdb's own (FFT) resampling puts the
    annotated R peak at index ``before`` of it, to within a sample."""
    _, s, _ = stores
    rec = "801"
    raw = wfdb.rdrecord(_svdb(physionet_root, rec)).p_signal.T  # [2, n] at 128 Hz
    poly = ss.resample_poly(raw, 45, 16, axis=-1)  # 360 / 128 = 45 / 16
    fft = np.stack([wfdb.processing.resample_sig(x, 128, 360)[0] for x in raw])
    idx = np.flatnonzero(s.record_ids == rec)
    for i in idx[[1, 50, len(idx) // 2, len(idx) - 2]]:
        p = int(s.positions[i])
        seg = np.asarray(s.segments[i], dtype=np.float64)
        q = int(wfdb.processing.resample_ann(np.array([p]), 128, 360)[0])  # the R peak at 360 Hz (wfdb: floored)
        # where the window sits in wfdb's resampled signal: the offset that fits it best around the R peak
        errs = {o: np.abs(fft[:, o:o + BEFORE + AFTER] - seg).max() for o in range(q - BEFORE - 3, q - BEFORE + 4)}
        best = min(errs, key=errs.get)
        assert abs(best + BEFORE - q) <= 1, (p, best + BEFORE, q)
        assert errs[best] < 0.05 * np.ptp(seg), errs[best]  # two resampling methods, one signal
        start = math.floor(p * 360 / 128 + 0.5) - BEFORE
        np.testing.assert_allclose(seg, poly[:, start:start + BEFORE + AFTER], rtol=1e-5, atol=1e-5)


def test_mitdb_two_leads_with_alternatives(stores, physionet_root):
    """MLII and the second lead, whatever it is called (114: V5, listed first; 124: V4), equal wfdb's slices."""
    m, _, _ = stores
    assert m.lead_names == ["MLII", "V1|V5|V4"] and m.shape[1] == 2
    assert m.manifest["summary"]["record_leads"] == {"101": ["MLII", "V1"], "114": ["MLII", "V5"],
                                                     "124": ["MLII", "V4"]}
    for rec, second in (("114", "V5"), ("124", "V4")):
        full = wfdb.rdrecord(str(physionet_root / "mitdb" / "1.0.0" / rec))
        lead = full.p_signal[:, [full.sig_name.index("MLII"), full.sig_name.index(second)]].T
        i = np.flatnonzero(m.record_ids == rec)[100]
        p = int(m.positions[i])
        np.testing.assert_allclose(m.segments[i], lead[:, p - BEFORE:p + AFTER].astype(np.float32))


def test_combined_store_ids_manifest_and_content(stores):
    m, s, x = stores
    assert et.combine_stores is not None and x.database == "mitdb+svdb" and x.databases == ["mitdb", "svdb"]
    assert len(x) == len(m) + len(s) and x.shape[1:] == m.shape[1:]
    np.testing.assert_array_equal(x.segments, np.concatenate([m.segments, s.segments]))
    np.testing.assert_array_equal(x.labels, np.concatenate([m.labels, s.labels]))
    np.testing.assert_array_equal(x.positions, np.concatenate([m.positions, s.positions]))
    for name in ("rr", "symbol"):
        np.testing.assert_array_equal(np.asarray(x.extra(name)), np.concatenate([m.extra(name), s.extra(name)]))
    expected_rec = [f"mitdb:{r}" for r in m.record_ids.tolist()] + [f"svdb:{r}" for r in s.record_ids.tolist()]
    assert x.record_ids.tolist() == expected_rec
    assert x.patient_ids.tolist() == ([f"mitdb:{p}" for p in m.patient_ids.tolist()]
                                      + [f"svdb:{p}" for p in s.patient_ids.tolist()])
    assert x.segment_databases.tolist() == ["mitdb"] * len(m) + ["svdb"] * len(s)
    assert m.segment_databases.tolist() == ["mitdb"] * len(m)
    assert sorted(set(x.record_ids.tolist())) == sorted([f"mitdb:{r}" for r in MITDB] + [f"svdb:{r}" for r in SVDB])
    man = x.manifest
    assert man["version"] == "1.0.0+1.0.0" and man["lead_names"] == ["lead1", "lead2"]
    assert man["databases"] == [
        {"database": "mitdb", "version": "1.0.0", "manifest_hash": m.manifest_hash, "segments": len(m),
         "lead_names": ["MLII", "V1|V5|V4"], "source_fs": 360.0},
        {"database": "svdb", "version": "1.0.0", "manifest_hash": s.manifest_hash, "segments": len(s),
         "lead_names": ["ECG1", "ECG2"], "source_fs": 128.0}]
    assert man["source_files"] == {**{f"mitdb:{k}": v for k, v in m.manifest["source_files"].items()},
                                   **{f"svdb:{k}": v for k, v in s.manifest["source_files"].items()}}
    assert man["patients_known"] is True and man["class_names"] == CLASSES
    assert man["parameters"] == {k: m.manifest["parameters"][k] for k in AGREED_PARAMETERS
                                 if k in m.manifest["parameters"]}  # beats stores record no detector


def test_every_split_of_the_combined_store_keeps_ids_qualified_and_patients_apart(stores):
    _, _, x = stores
    for cfg in (SplitConfig("patient", seed=1), SplitConfig("kfold", n_folds=3, fold=2),
                SplitConfig("kfold", n_folds=3, fold=0, fold_database="svdb"), SplitConfig("dechazal"),
                SplitConfig("records", test_records=("800", "mitdb:101"))):
        sp = cfg.apply(x)
        parts = [getattr(sp, k) for k in ("train", "val", "test")]
        for ix in parts:
            assert all(r.split(":")[0] in ("mitdb", "svdb") for r in set(x.record_ids[ix].tolist()))
        pats = [set(x.patient_ids[ix].tolist()) for ix in parts]
        assert not (pats[0] & pats[1] or pats[0] & pats[2] or pats[1] & pats[2]), cfg
        assert np.array_equal(np.sort(np.concatenate(parts + [sp.excluded])), np.arange(len(x))), cfg


def test_combine_refuses_mismatched_stores_in_one_line(stores, physionet_root, tmp_path, capsys):
    m, s, x = stores
    s250 = et.convert("svdb", data=physionet_root, out=tmp_path / "s250", records=["800"], lead="all", fs=250,
                      filter="none", jobs=1, progress=False)
    n = 6
    other_classes = write_store(
        tmp_path / "c", np.zeros((n, 2, BEFORE + AFTER), np.float32), np.zeros(n, int), record_ids=["1"] * n,
        patient_ids=["1"] * n, positions=range(n), class_names=["N", "S", "V", "F"], fs=360.0,
        lead_names=["I", "II"], database="incartdb", task="beats")
    cases = [([m, s250.path], ["s250 (svdb)", "fs", "250", "360"]),
             ([m, other_classes.path], ["incartdb", "class_names", "'Q'"]),
             ([m, m.path], ["mitdb", "one store per database"]),
             ([x, s], ["already a combined store"])]
    for inputs, needles in cases:
        args = ["combine", *(str(getattr(i, "path", i)) for i in inputs), "--out", str(tmp_path / "bad")]
        assert main(args) == 2
        line = one_error_line(capsys)
        for needle in needles:
            assert needle in line, line
    with pytest.raises(StoreError, match="differs from .* in fs"):
        et.combine_stores([m, s250], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_combine_is_idempotent_and_refuses_other_inputs(stores, tmp_path, capsys):
    m, s, _ = stores
    out = tmp_path / "x"
    assert main(["combine", str(m.path), str(s.path), "--out", str(out)]) == 0
    first = (out / "manifest.json").read_bytes()
    assert main(["combine", str(m.path), str(s.path), "--out", str(out)]) == 0  # the same inputs: skipped
    assert (out / "manifest.json").read_bytes() == first
    assert main(["combine", str(s.path), str(m.path), "--out", str(out)]) == 2  # another combination
    line = one_error_line(capsys)
    assert str(out) in line and "--overwrite" in line
    assert (out / "manifest.json").read_bytes() == first
    again = et.combine_stores([s, m], out, overwrite=True)
    assert again.database == "svdb+mitdb" and again.record_ids[0].startswith("svdb:")
    assert main(["combine", str(m.path), str(s.path), "--out", str(m.path)]) == 2  # never into an input
    assert "input" in one_error_line(capsys)


def test_dechazal_on_the_real_combined_store_trains_on_everything(stores, caplog):
    """The shared mirror holds DS1 only: every mitdb and svdb patient trains or validates, test is empty."""
    _, _, x = stores
    with caplog.at_level(logging.WARNING, logger="ecgtransfer.signals.split"):
        sp = et.split(x, "dechazal", seed=0)
    assert len(sp.test) == 0 and "test part is empty" in caplog.text
    assert len(sp.excluded) == 0
    trainval = np.concatenate([sp.train, sp.val])
    np.testing.assert_array_equal(np.sort(trainval), np.arange(len(x)))
    assert set(x.segment_databases[sp.val].tolist()) | set(x.segment_databases[sp.train].tolist()) == {"mitdb",
                                                                                                          "svdb"}


def _synthetic_mitdb(path: Path, like: et.SegmentStore, records: list[str]) -> et.SegmentStore:
    """A small mitdb store shaped like ``like`` (same window, parameters, extras), with the given record ids
    (201 and 202 one patient), so that it combines with ``like``."""
    rng = np.random.default_rng(0)
    rec = [r for r in records for _ in range(int(rng.integers(8, 20)))]
    n = len(rec)
    params = {k: like.manifest["parameters"][k] for k in AGREED_PARAMETERS if k in like.manifest["parameters"]}
    return write_store(path, rng.standard_normal((n, *like.shape[1:])).astype(np.float32),
                       rng.choice(5, size=n, p=[0.7, 0.1, 0.1, 0.05, 0.05]), record_ids=rec,
                       patient_ids=["201" if r == "202" else r for r in rec], positions=np.arange(n),
                       class_names=CLASSES, fs=360.0, lead_names=["MLII", "V1"], database="mitdb", version="1.0.0",
                       task="beats", parameters=params,
                       extras={"rr": np.ones((n, len(RR_FEATURES)), np.float32), "symbol": np.full(n, "N", dtype="<U2")})


def test_dechazal_on_a_combined_store_tests_exactly_the_mitdb_ds2_records(stores, tmp_path):
    _, s, _ = stores
    mit = _synthetic_mitdb(tmp_path / "m", s, sorted(DS1 + DS2 + tuple(PACED)))
    x = et.combine_stores([mit, s], tmp_path / "x")
    sp = et.split(x, "dechazal", seed=3)
    rec = x.record_ids
    assert set(rec[sp.test].tolist()) == {f"mitdb:{r}" for r in DS2}
    trainval = set(rec[sp.train].tolist()) | set(rec[sp.val].tolist())
    assert trainval == {f"mitdb:{r}" for r in DS1 if r != "201"} | {f"svdb:{r}" for r in SVDB}
    assert set(rec[sp.excluded].tolist()) == {f"mitdb:{r}" for r in PACED} | {"mitdb:201"}
    assert not set(x.segment_databases[sp.test].tolist()) - {"mitdb"}
    single = et.split(mit, "dechazal", seed=3)  # the single-database store: the same DS2 test part, bare ids
    assert set(mit.record_ids[single.test].tolist()) == set(DS2)
    with pytest.raises(ConfigError, match="mitdb"):
        et.split(s, "dechazal")


def test_records_split_names_patients_and_databases(stores, tmp_path):
    _, s, x = stores
    sp = et.split(x, "records", test_records=["800", "mitdb:114"], seed=0)
    assert set(x.record_ids[sp.test].tolist()) == {"svdb:800", "mitdb:114"}
    assert set(x.record_ids[np.concatenate([sp.train, sp.val])].tolist()) == {
        "mitdb:101", "mitdb:124", "svdb:801", "svdb:802"}
    assert len(sp.val) > 0
    # a test record's patient takes every record of that patient to test (mitdb 201 and 202 are one subject)
    mit = _synthetic_mitdb(tmp_path / "m", s, ["100", "201", "202", "800"])
    y = et.combine_stores([mit, s], tmp_path / "y")
    sp = et.split(y, "records", test_records=["202"])
    assert set(y.record_ids[sp.test].tolist()) == {"mitdb:201", "mitdb:202"}
    with pytest.raises(ConfigError, match="several databases.*mitdb:800, svdb:800"):
        et.split(y, "records", test_records=["800"])
    assert set(y.record_ids[et.split(y, "records", test_records=["svdb:800"]).test].tolist()) == {"svdb:800"}
    with pytest.raises(ConfigError, match="no record '999', 'svdb:100'"):
        et.split(y, "records", test_records=["999", "svdb:100", "801"])
    with pytest.raises(ConfigError, match="needs test_records"):
        SplitConfig("records")
    with pytest.raises(ConfigError, match="records split only"):
        SplitConfig("patient", test_records=("800",))
    single = et.split(s, "records", test_records=["801"])  # a single-database store: bare ids as stored
    assert set(s.record_ids[single.test].tolist()) == {"801"}


def test_kfold_within_one_database_keeps_the_others_out_of_test(stores):
    _, _, x = stores
    svdb = np.flatnonzero(x.segment_databases == "svdb")
    tests = []
    for fold in range(3):
        sp = et.split(x, "kfold", n_folds=3, fold=fold, fold_database="svdb", seed=0)
        assert set(x.segment_databases[sp.test].tolist()) == {"svdb"}
        mitdb_idx = np.flatnonzero(x.segment_databases == "mitdb")
        assert np.isin(mitdb_idx, np.concatenate([sp.train, sp.val])).all()
        tests.append(sp.test)
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), svdb)  # the folds partition svdb's patients
    with pytest.raises(ConfigError, match="fold_database 'incartdb' is not a database of this store"):
        et.split(x, "kfold", fold_database="incartdb")
    with pytest.raises(ConfigError, match="kfold split only"):
        SplitConfig("patient", fold_database="svdb")


def test_split_settings_reach_training_and_keep_bench_fingerprints(stores):
    from ecgtransfer.bench.config import TaskConfig
    from ecgtransfer.training.config import TrainConfig

    cfg = TrainConfig(split="records", test_records=["800"])
    assert cfg.data_split.test_records == ("800",) and cfg.to_dict()["test_records"] == ["800"]
    assert TrainConfig(split="kfold", fold_database="svdb").data_split.fold_database == "svdb"
    plain = TaskConfig.from_table({"store": "s", "split": "patient"}).to_dict()
    assert "test_records" not in plain and "fold_database" not in plain  # earlier benches hash as before
    assert TaskConfig.from_table({"store": "s", "split": "kfold", "fold_database": "svdb"}).to_dict()[
        "fold_database"] == "svdb"


def test_info_counts_per_database(stores, capsys):
    _, _, x = stores
    assert main(["info", str(x.path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["databases"]
    labels, rec, pat = np.load(x.path / "labels.npy"), np.load(x.path / "record_ids.npy"), np.load(
        x.path / "patient_ids.npy")
    assert list(got) == ["mitdb", "svdb"]
    for db in ("mitdb", "svdb"):
        mask = np.char.startswith(rec, db + ":")
        assert got[db] == {"segments": int(mask.sum()), "records": len(set(rec[mask])), "patients": len(set(pat[mask])),
                           "classes": {c: int((labels[mask] == i).sum()) for i, c in enumerate(CLASSES)}}
    assert main(["info", str(x.path)]) == 0
    text = capsys.readouterr().out
    assert "per database:" in text and "svdb:800" in text


def test_bench_sees_a_combined_source_store_overlapping_a_mitdb_target(stores):
    """A combined source holds the target's mitdb patients under qualified ids: the overlap is found and the
    target's held-out patients are dropped from the source before it is split (dechazal on the combined view)."""
    from ecgtransfer.bench.source import exclude_patients, source_overlap
    from ecgtransfer.training.config import TrainConfig

    m, s, x = stores
    assert source_overlap(m, x) == "is of the target's database (mitdb 1.0.0)"
    assert source_overlap(s, m) is None
    parts, info = exclude_patients(x, TrainConfig(split="dechazal"), ["114"], patients_database="mitdb")
    assert info["dropped_patients"] == ["mitdb:114"]
    assert info["dropped_segments"] == int((x.record_ids == "mitdb:114").sum())
    used = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert set(x.record_ids[used].tolist()) == {"mitdb:101", "mitdb:124", "svdb:800", "svdb:801", "svdb:802"}
    np.testing.assert_array_equal(m.qualified_patient_ids, [f"mitdb:{p}" for p in m.patient_ids.tolist()])
    np.testing.assert_array_equal(x.qualified_patient_ids, x.patient_ids)


def test_predict_with_a_run_of_a_combined_store_finds_its_leads(stores, physionet_root, tmp_path):
    """A combined store names its leads by position (lead1, lead2); predict takes the first database's names (with
    their alternatives) to find them in a new recording: mitdb's MLII + V1 here, the store's beats and RR."""
    m, _, x = stores
    rid = np.asarray(x.record_ids).astype(str)
    train = np.flatnonzero(np.char.startswith(rid, "svdb:"))[::50]
    val = np.flatnonzero(np.char.startswith(rid, "mitdb:"))[::50]
    run = tmp_path / "run"
    et.fine_tune(x, out=run, split_indices={"train": train, "val": val, "test": np.zeros(0, dtype=np.int64)},
                 model="cnn1d", epochs=1, batch_size=32, num_threads=1, progress=False, amp="off")
    rec = MITDB[0]
    from ecgtransfer.training import predict

    table = predict(run, [physionet_root / "mitdb" / "1.0.0" / rec], r_peaks="atr", progress=False)
    sel = np.flatnonzero(rid == f"mitdb:{rec}")
    assert list(table["position"]) == list(x.positions[sel])
