"""Issue 22: a beat source of the target's classes (svdb for mitdb), pooled training, fewer labelled patients.

One tiny bench on real beats (mitdb target, svdb source at the target's rate, ResNet50 at 32 px, one optimiser step
per cell) checks what transferred through the load reports, that pooling keeps the target's validation and test
patients out of training, and that the labelled-patients figure draws exactly the numbers of its table.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.store import SegmentStore, write_store

MITDB = ["106", "119", "201", "208", "209", "223"]  # six DS1 patients with N and V beats (201, 209, 223: S too)
SVDB = ["800", "801", "802"]  # three svdb patients (N, S, V), converted at mitdb's 360 Hz


def _subset(full: SegmentStore, out: Path, per_class: dict[int, int], seed: int = 0) -> Path:
    """A seeded per-record, per-class subset of a converted store (same fields for both databases: combinable)."""
    rng = np.random.default_rng(seed)
    keep = []
    for rec in np.unique(full.record_ids):
        idx = np.flatnonzero(full.record_ids == rec)
        for c in np.unique(full.labels[idx]):
            members = idx[full.labels[idx] == c]
            keep.extend(rng.choice(members, size=min(len(members), per_class.get(int(c), 4)), replace=False))
    keep = np.sort(np.asarray(keep))
    write_store(out, full.batch(keep), full.labels[keep], record_ids=full.record_ids[keep],
                patient_ids=full.patient_ids[keep], positions=full.positions[keep], class_names=full.class_names,
                fs=full.fs, lead_names=["lead1"], database=full.database, version=str(full.manifest.get("version")), task="beats")
    return out


@pytest.fixture(scope="module")
def stores(physionet_root: Path, tmp_path_factory) -> tuple[Path, Path]:
    from ecgtransfer.conversion import convert

    root = tmp_path_factory.mktemp("xdb-stores")
    mitdb = convert("mitdb", data=physionet_root, out=root / "mitdb-full", records=MITDB, progress=False, jobs=1)
    svdb = convert("svdb", data=physionet_root, out=root / "svdb-full", records=SVDB, fs=360, progress=False,
                   jobs=1)
    assert svdb.fs == mitdb.fs == 360 and svdb.class_names == mitdb.class_names
    return (_subset(mitdb, root / "mitdb", {0: 10, 1: 5, 2: 5}),
            _subset(svdb, root / "svdb", {0: 8, 1: 6, 2: 6}, seed=1))


def test_svdb_source_transfers_the_head_pooling_keeps_heldout_patients_out_and_the_figure_is_the_table(
        stores, tmp_path):
    from ecgtransfer.bench import run
    from ecgtransfer.bench.config_toml import config_from_dict

    target, source = stores
    cfg = config_from_dict({
        "bench": {"name": "xdb", "seeds": [0], "fractions": [0.5, 1.0], "fraction_mode": "patients",
                  "image_size": 32, "epochs": 1, "max_steps": 1, "batch_size": 8, "threads": 1,
                  "bootstrap_replicates": 200,
                  "contrasts": [["ecg-tiered", "scratch-tiered", 1.0], ["ecg-tiered", "pooled-tiered", 1.0]],
                  "primary": {"arm": "ecg-tiered", "baseline": "scratch-tiered", "fraction": 0.5}},
        "task": {"store": str(target), "val_fraction": 0.2, "test_fraction": 0.2},
        "arms": ["scratch-tiered", "ecg-tiered", "ecg-backbone-tiered", "pooled-tiered"],
        "source": {"store": str(source), "epochs": 1, "max_steps": 1},
        "train": {"num_workers": 0},
    })
    out = tmp_path / "out"
    res = run(cfg, out, progress=False)
    assert res.failed == {} and res.skipped == {}
    cells = {(c["cell"]["arm"], c["cell"]["fraction"]): c for c in res.results["cells"]}

    # (1) a source of the target's classes: the whole model transfers, unless the arm asks for the backbone only
    whole, backbone = cells[("ecg-tiered", 1.0)], cells[("ecg-backbone-tiered", 1.0)]
    assert whole["transfer"] == "whole model (backbone + head)"
    assert "reinitialised" not in whole["load_report"] and "head (4, 2048) -> (4, 2048)" in whole["load_report"]
    assert backbone["transfer"].startswith("backbone only (head re-initialised: head re-initialised on request")
    assert "reinitialised: classifier.fc.weight, classifier.fc.bias" in backbone["load_report"]
    assert "scratch" not in {c.get("transfer") for c in cells.values()} and "transfer" not in cells[
        ("scratch-tiered", 1.0)]
    md = (out / "report.md").read_text()
    assert "ecg-tiered: whole model (backbone + head)" in md and "val F1 per class" in md

    # (2) pooled: target subsample + every source segment in training; the target's val/test patients untouched
    split = res.results["split"]["patients"]
    heldout = set(split["val"]) | set(split["test"])
    pooled = SegmentStore(out / "pooled" / "store")
    src = SegmentStore(source)
    for frac in (0.5, 1.0):
        cell = cells[("pooled-tiered", frac)]
        parts = np.load(out / cell["run_dir"] / "split.npz")
        pats = {p: set(pooled.patient_ids[parts[p]].astype(str)) for p in ("train", "val", "test")}
        assert not pats["train"] & {f"mitdb:{p}" for p in heldout}
        assert pats["val"] == {f"mitdb:{p}" for p in split["val"]} and pats["test"] == {
            f"mitdb:{p}" for p in split["test"]}
        assert {f"svdb:{p}" for p in np.unique(src.patient_ids)} <= pats["train"]
        scratch = cells[("scratch-tiered", frac)]
        assert {f"mitdb:{p}" for p in
                np.unique(SegmentStore(target).patient_ids[np.load(out / scratch["run_dir"] / "split.npz")["train"]])
                } == {p for p in pats["train"] if p.startswith("mitdb:")}  # the same target subsample
        d = cell["data"]
        assert d["n_train_source"] == len(src) and d["n_train_target"] == scratch["data"]["n_train"]
        assert d["max_steps"] == d["source_steps"] + d["target_steps"] == cell["steps"]
        # its records are the target's own ids: paired with the other arms in the bootstrap
        assert cell["record_confusion"]["records"] == scratch["record_confusion"]["records"]
    assert any(c["arm"] == "ecg-tiered" and c["baseline"] == "pooled-tiered" for c in res.results["contrasts"])

    # (4) declared questions: the primary at the smallest fraction, the secondary at the fraction they name
    con = [(c["arm"], c["baseline"], c["fraction"], c["primary"]) for c in res.results["contrasts"]]
    assert con == [("ecg-tiered", "scratch-tiered", 0.5, True), ("ecg-tiered", "scratch-tiered", 1.0, False),
                   ("ecg-tiered", "pooled-tiered", 1.0, False)]

    # (3) the reader's first figure: its drawn numbers are the table's and the results' summary
    assert md.index("Fewer labelled patients") < md.index("Did transfer help?")
    fig = json.loads((out / "figures" / "labelled_patients_spectrogram.json").read_text())
    drawn, summary = fig["drawn"], res.results["summary"]
    table = _md_table_after(md, "Fewer labelled patients")
    n_rows = 0
    for arm, per in summary.items():
        entries = sorted(per["spectrogram"].values(), key=lambda e: e["fraction"])
        patients = [float(np.mean([cells[(arm, e["fraction"])]["data"]["n_train_patients"]])) for e in entries]
        assert drawn["macro_f1"][arm]["x"] == patients and patients[0] < patients[1]
        assert drawn["macro_f1"][arm]["y"] == pytest.approx([e["macro_f1"]["mean"] for e in entries])
        assert drawn["macro_f1"][arm]["lo"] == pytest.approx([e["macro_f1"]["lo"] for e in entries])
        for c in ("S", "V"):
            want = [e["per_class_bootstrap"][c]["f1"]["mean"] for e in entries]
            got = drawn[f"f1_{c}"].get(arm, {}).get("y")
            if all(w is not None for w in want):
                assert got == pytest.approx(want)
        for e, n in zip(entries, patients):
            row = table[(arm, e["fraction"])]
            n_rows += 1
            assert row[2] == f"{n:g}"
            assert row[3].startswith(f"{e['macro_f1']['mean']:.3f} [{e['macro_f1']['lo']:.3f}")
            assert float(row[3].split()[0]) == pytest.approx(drawn["macro_f1"][arm]["y"][patients.index(n)],
                                                             abs=5e-4)
    assert n_rows == 8
    mj = res.results["cells"][0]["majority"]
    assert drawn["macro_f1"]["majority"] == pytest.approx(mj["macro_f1"]) and drawn["f1_V"]["majority"] == 0.0


def _md_table_after(md: str, heading: str) -> dict[tuple[str, float], list[str]]:
    """The first Markdown table after ``heading``: ``{(arm, fraction): cells}`` (fraction from its label)."""
    rows = {}
    lines = md[md.index(heading):].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| arm"))
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cols = [c.strip() for c in ln.strip("|").split("|")]
        if cols[0] != "majority":
            rows[(cols[0], float(re.sub("%$", "", cols[1])) / 100)] = cols
    return rows


def test_patient_fractions_are_nested_and_seeded():
    """Per-patient fractions reach 2, 4 and all 14 training patients; each smaller draw lies inside the larger one
    of its seed, a seed draws the same patients every time, and another seed draws others."""
    from ecgtransfer.bench.fractions import subsample

    pats = np.repeat([f"p{i:02d}" for i in range(14)], 30)
    labels = np.tile(np.arange(3), 14 * 10)
    train = np.arange(len(pats), dtype=np.int64)

    def chosen(f, seed):
        return set(pats[subsample(train, labels, pats, f, mode="patients", seed=seed)])

    draws = {}
    for seed in (0, 1, 2):
        two, four, every = chosen(2 / 14, seed), chosen(4 / 14, seed), chosen(1.0, seed)
        assert (len(two), len(four), len(every)) == (2, 4, 14)
        assert two < four < every
        assert chosen(0.1, seed) == two and chosen(0.25, seed) == four  # the profile's fractions: 2 and 4 of 14
        assert chosen(2 / 14, seed) == two  # seeded: the same draw again
        draws[seed] = four
    assert len({frozenset(d) for d in draws.values()}) > 1  # the seed matters
