"""Small real-data segment stores for the training tests: mitdb beats read with wfdb, several records as patients."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.store import SegmentStore, write_store

AAMI = {"N": "N", "L": "N", "R": "N", "e": "N", "j": "N", "A": "S", "a": "S", "J": "S", "S": "S", "V": "V",
        "E": "V", "F": "F"}
CLASSES = ["N", "S", "V", "F", "Q"]
BEFORE, AFTER = 48, 80  # samples at 360 Hz around the R peak: L = 128


def mitdb_beats(root: Path, records: dict[str, int], *, seed: int = 0, sampto: int = 360 * 600
                ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Up to ``records[r]`` beats per record (all classes represented as far as possible), lead MLII.

    Returns ``(segments [n, 1, 128], labels [n], record_ids, positions)``.
    """
    import wfdb

    rng = np.random.default_rng(seed)
    segs, labels, rids, pos = [], [], [], []
    for rec, count in records.items():
        path = str(root / "mitdb" / "1.0.0" / rec)
        header = wfdb.rdheader(path)
        lead = header.sig_name.index("MLII")
        sig = wfdb.rdrecord(path, channels=[lead], sampto=sampto).p_signal[:, 0].astype(np.float32)
        ann = wfdb.rdann(path, "atr", sampto=sampto)
        keep = [(s, AAMI[sym]) for s, sym in zip(ann.sample, ann.symbol)
                if sym in AAMI and s - BEFORE >= 0 and s + AFTER <= len(sig)]
        by_class: dict[str, list[int]] = {}
        for s, c in keep:
            by_class.setdefault(c, []).append(int(s))
        chosen: list[tuple[int, str]] = []
        # round-robin over classes so minority beats make it in
        pools = {c: list(rng.permutation(v)) for c, v in sorted(by_class.items())}
        while len(chosen) < count and any(pools.values()):
            for c in sorted(pools):
                if pools[c] and len(chosen) < count:
                    chosen.append((pools[c].pop(), c))
        for s, c in sorted(chosen):
            segs.append(sig[s - BEFORE:s + AFTER][None])
            labels.append(CLASSES.index(c))
            rids.append(rec)
            pos.append(s)
    return np.stack(segs), np.asarray(labels, dtype=np.int64), rids, np.asarray(pos, dtype=np.int64)


def make_store(root: Path, out: Path, records: dict[str, int], *, seed: int = 0, database: str = "mitdb",
               class_names: list[str] | None = None, labels_override: np.ndarray | None = None) -> SegmentStore:
    segs, labels, rids, pos = mitdb_beats(root, records, seed=seed)
    if labels_override is not None:
        labels = labels_override
    return write_store(out, segs, labels, record_ids=rids, patient_ids=rids, positions=pos,
                       class_names=class_names or CLASSES, fs=360.0, lead_names=["MLII"], database=database,
                       version="1.0.0", task="beats",
                       parameters={"task": "beats", "lead": "MLII", "fs": 360.0, "source_fs": 360.0,
                                   "before_samples": BEFORE, "after_samples": AFTER, "filter": "none",
                                   "band": [0.5, 40.0], "filter_order": 2, "normalize": "none",
                                   "dtype": "float32", "records": sorted(records), "selection_seed": seed})


def record_split(store: SegmentStore, train: list[str], val: list[str], test: list[str]) -> dict[str, np.ndarray]:
    """Patient-disjoint split by record ids."""
    rid = np.asarray(store.record_ids).astype(str)
    return {name: np.flatnonzero(np.isin(rid, recs)).astype(np.int64)
            for name, recs in (("train", train), ("val", val), ("test", test))}


#: the records and ``train`` options of the command-line safety tests' tiny run (a few beats each, two steps)
CLI_RECORDS = {r: 8 for r in ("119", "209", "106", "118", "208", "223")}
CLI_TRAIN = ["--init", "scratch", "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--max-steps", "2",
             "--threads", "1", "--split", "random", "--seed", "1"]


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory):
    """A small store of :data:`CLI_RECORDS` (import this fixture into a test module as ``store``)."""
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "s", CLI_RECORDS)


@pytest.fixture(scope="module")
def run(store, tmp_path_factory) -> Path:
    """A finished tiny run on ``store`` made by ``ecgtransfer train`` with :data:`CLI_TRAIN`."""
    from ecgtransfer.cli import main

    out = tmp_path_factory.mktemp("runs") / "r"
    assert main(["-q", "train", str(store.path), "--out", str(out), *CLI_TRAIN]) == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    return out


#: four real mitdb records with every AAMI class (208 has F and Q beats): train 208+209, validation 119, test 207
FOUR_RECORDS = {"train": ["208", "209"], "val": ["119"], "test": ["207"]}


@pytest.fixture(scope="module")
def beats(physionet_root, tmp_path_factory) -> SegmentStore:
    """The beats of :data:`FOUR_RECORDS` converted by ``convert`` (RR context on, the default), L = 128."""
    from ecgtransfer.conversion import convert

    records = sorted(r for part in FOUR_RECORDS.values() for r in part)
    return convert("mitdb", data=physionet_root, out=tmp_path_factory.mktemp("beats") / "s",
                   records=records, before=BEFORE, after=AFTER, progress=False, jobs=1)


@pytest.fixture(scope="module")
def split(beats) -> dict[str, np.ndarray]:
    """The patient-disjoint split of :data:`FOUR_RECORDS` over ``beats``."""
    return record_split(beats, **FOUR_RECORDS)
