"""Patient-wise splits: no patient on two sides, full coverage, de Chazal DS1/DS2, k-fold, random with warning."""
from __future__ import annotations

import logging

import numpy as np
import pytest

import ecgtransfer as et
from ecgtransfer.errors import ConfigError
from ecgtransfer.signals.split import DS1, DS2, split
from ecgtransfer.store import write_store

PACED = ["102", "104", "107", "217"]


def _fake_mitdb(tmp_path, records, seed=0, name="s"):
    """A small store with mitdb record ids (201/202 one patient) and skewed, record-dependent classes."""
    rng = np.random.default_rng(seed)
    rec_ids, labels = [], []
    for k, r in enumerate(records):
        n = int(rng.integers(20, 60))
        probs = np.array([0.8, 0.08, 0.08, 0.02, 0.02]) if k % 3 else np.array([0.5, 0.1, 0.3, 0.05, 0.05])
        labels.extend(rng.choice(5, size=n, p=probs).tolist())
        rec_ids.extend([r] * n)
    n = len(labels)
    patients = ["201" if r == "202" else r for r in rec_ids]
    return write_store(tmp_path / name, np.zeros((n, 1, 4), np.float32), np.array(labels), record_ids=rec_ids,
                       patient_ids=patients, positions=np.arange(n), class_names=["N", "S", "V", "F", "Q"],
                       fs=360.0, lead_names=["MLII"], database="mitdb", version="1.0.0", task="beats")


@pytest.fixture
def store48(tmp_path):
    return _fake_mitdb(tmp_path, sorted(DS1 + DS2 + tuple(PACED)))


def _check_partition(store, sp, covered=True):
    parts = [sp.train, sp.val, sp.test]
    allidx = np.concatenate(parts + [sp.excluded])
    assert len(allidx) == len(np.unique(allidx)), "an index in two parts"
    if covered:
        np.testing.assert_array_equal(np.sort(allidx), np.arange(len(store)))
    pats = [set(store.patient_ids[p].tolist()) for p in parts]
    assert not (pats[0] & pats[1]) and not (pats[0] & pats[2]) and not (pats[1] & pats[2])
    for name, p, ids in zip(["train", "val", "test"], parts, pats):
        assert sp.patients[name] == sorted(ids)
        assert p.dtype == np.int64 and np.all(np.diff(p) > 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_patient_split_no_overlap_and_stratified(store48, seed):
    sp = split(store48, "patient", seed=seed)
    _check_partition(store48, sp)
    assert sp.method == "patient"
    n = len(store48)
    sizes = sp.sizes()
    assert abs(sizes["test"] / n - 0.15) < 0.08 and abs(sizes["val"] / n - 0.15) < 0.08
    # class-stratified: every part holds each of the frequent classes N, S, V
    for part in [sp.train, sp.val, sp.test]:
        assert set(store48.labels[part].tolist()) >= {0, 1, 2}
    # 201 and 202 share a patient: their records are in the same part
    side = {r: next(k for k in ["train", "val", "test"] if r in store48.record_ids[getattr(sp, k)])
            for r in ["201", "202"]}
    assert side["201"] == side["202"]


def test_patient_split_is_deterministic(store48):
    a, b, c = split(store48, seed=3), split(store48, seed=3), split(store48, seed=4)
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.val, b.val)
    assert a.patients != c.patients or not np.array_equal(a.test, c.test)


def test_kfold_tests_partition_the_store(store48):
    tests = []
    for fold in range(5):
        sp = split(store48, "kfold", n_folds=5, fold=fold, seed=0)
        _check_partition(store48, sp)
        assert len(sp.val) > 0 and len(sp.test) > 0
        tests.append(sp.test)
    allt = np.concatenate(tests)
    np.testing.assert_array_equal(np.sort(allt), np.arange(len(store48)))
    with pytest.raises(ConfigError):
        split(store48, "kfold", n_folds=5, fold=5)


def test_dechazal_ds1_ds2_and_the_201_202_patient(store48, caplog):
    with caplog.at_level(logging.WARNING, logger="ecgtransfer.signals.split"):
        sp = split(store48, "dechazal")
    _check_partition(store48, sp)
    rec = store48.record_ids
    assert set(rec[sp.test].tolist()) == set(DS2)
    trainval = set(rec[sp.train].tolist()) | set(rec[sp.val].tolist())
    assert trainval == set(DS1) - {"201"}  # 201 is 202's patient, 202 is in DS2 (test)
    assert set(rec[sp.excluded].tolist()) == set(PACED) | {"201"}
    assert "201" in caplog.text
    assert len(sp.val) > 0


def test_dechazal_without_ds2_warns_and_keeps_201(tmp_path, caplog):
    store = _fake_mitdb(tmp_path, list(DS1))
    with caplog.at_level(logging.WARNING, logger="ecgtransfer.signals.split"):
        sp = split(store, "dechazal")
    assert len(sp.test) == 0 and "test part is empty" in caplog.text
    _check_partition(store, sp)
    assert "201" in set(store.record_ids[np.concatenate([sp.train, sp.val])].tolist())


def test_dechazal_refuses_other_databases(tmp_path):
    s = write_store(tmp_path / "x", np.zeros((4, 1, 2), np.float32), [0, 1, 0, 1], record_ids=list("abcd"),
                    patient_ids=list("abcd"), positions=range(4), class_names=["a", "b"], fs=1.0, lead_names=["x"],
                    database="ludb")
    with pytest.raises(ConfigError, match="mitdb"):
        split(s, "dechazal")


def test_random_split_warns_about_leakage(store48, caplog):
    with caplog.at_level(logging.WARNING, logger="ecgtransfer.signals.split"):
        sp = split(store48, "random", seed=0)
    assert "leak" in caplog.text
    allidx = np.sort(np.concatenate([sp.train, sp.val, sp.test]))
    np.testing.assert_array_equal(allidx, np.arange(len(store48)))
    assert abs(len(sp.test) / len(store48) - 0.15) < 0.02
    # patients do leak here, which is the point of the warning
    assert set(store48.patient_ids[sp.train].tolist()) & set(store48.patient_ids[sp.test].tolist())


def test_bad_arguments(store48):
    with pytest.raises(ConfigError, match="unknown split method"):
        split(store48, "by-record")
    with pytest.raises(ConfigError):
        split(store48, val_fraction=0.6, test_fraction=0.5)


def _store_of(tmp_path, database, name="u", **manifest):
    rng = np.random.default_rng(0)
    recs = [f"I{k:02d}" for k in range(1, 13) for _ in range(5)]
    return write_store(tmp_path / name, np.zeros((len(recs), 1, 2), np.float32), rng.integers(0, 2, len(recs)),
                       record_ids=recs, patient_ids=recs, positions=range(len(recs)), class_names=["a", "b"], fs=1.0,
                       lead_names=["II"], database=database, **manifest)


def test_unknown_patients_warn_refuse_or_allow(tmp_path, caplog):
    assert et.physionet.catalog.get_database("incartdb").patients_known is False
    assert et.physionet.catalog.get_database("mitdb").patients_known is True
    store = _store_of(tmp_path, "incartdb")  # no manifest key: the catalog says the subjects are unknown
    assert store.patients_known is False
    for method in ["patient", "kfold"]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ecgtransfer.signals.split"):
            sp = split(store, method)
        assert "not known to identify subjects" in caplog.text and "incartdb" in caplog.text
        assert sp.patients_known is False and sp.to_dict()["patients_known"] is False
    with pytest.raises(ConfigError, match="not known to identify subjects.*unknown_patients"):
        split(store, "patient", unknown_patients="refuse")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ecgtransfer.signals.split"):
        split(store, "patient", unknown_patients="allow")
        split(store, "random")
    assert "not known to identify subjects" not in caplog.text
    with pytest.raises(ConfigError, match="unknown_patients"):
        split(store, "patient", unknown_patients="maybe")
    # the manifest key wins over the catalog, and stores of other databases are taken at their word
    assert _store_of(tmp_path, "incartdb", "k", patients_known=True).patients_known is True
    assert _store_of(tmp_path, "custom", "c").patients_known is True
    assert split(_store_of(tmp_path, "custom", "c2"), "patient", unknown_patients="refuse").patients_known


def test_split_on_a_real_converted_store(physionet_root, tmp_path, caplog):
    records = ["101", "106", "108", "109", "112", "114"]
    store = et.convert("mitdb", data=physionet_root, out=tmp_path / "m", records=records, filter="none", jobs=2,
                       progress=False)
    assert store.manifest["patients_known"] is True and store.patients_known
    for method in ["patient", "dechazal"]:
        sp = et.split(store, method, unknown_patients="refuse")
        _check_partition(store, sp)
        assert len(sp.train) and len(sp.val)
    sp = et.split(store, "kfold", n_folds=3, fold=1)
    _check_partition(store, sp)


@pytest.mark.parametrize("method", ["patient", "dechazal", "kfold"])
def test_split_seed_changes_the_validation_patients(store48, method):
    """The seed orders the greedy assignment (jittered sizes): seeds 0 and 1 put other patients in validation
    (and, for the patient split, in test), with the partition and de Chazal invariants intact."""
    a, b = split(store48, method, seed=0), split(store48, method, seed=1)
    for sp in (a, b):
        _check_partition(store48, sp)
    assert a.patients["val"] != b.patients["val"]
    if method == "patient":
        assert a.patients["test"] != b.patients["test"]
    if method == "dechazal":  # the test part stays DS2 whatever the seed
        np.testing.assert_array_equal(a.test, b.test)
    # over several seeds the validation sets are not all the same (the old rule gave one set for every seed)
    assert len({tuple(split(store48, method, seed=s).patients["val"]) for s in range(6)}) >= 3
