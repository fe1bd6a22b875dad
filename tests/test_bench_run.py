"""End to end: a tiny bench on real mitdb beats, the skipped ImageNet arm, resume after a lost cell, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.store import SegmentStore, write_store

RECORDS = ["106", "119", "208"]  # three patients, each with normal and ventricular beats


@pytest.fixture(scope="module")
def small_store(physionet_root: Path, tmp_path_factory) -> Path:
    """~90 real beats of three mitdb patients (convert, then a seeded per-record subset)."""
    from ecgtransfer.conversion import convert

    root = tmp_path_factory.mktemp("bench-store")
    full = convert("mitdb", data=physionet_root, out=root / "full", records=RECORDS, progress=False, jobs=1)
    rng = np.random.default_rng(0)
    keep = []
    for rec in RECORDS:
        idx = np.flatnonzero(full.record_ids == rec)
        for c in np.unique(full.labels[idx]):
            members = idx[full.labels[idx] == c]
            keep.extend(rng.choice(members, size=min(len(members), 20 if c == 0 else 8), replace=False))
    keep = np.sort(np.asarray(keep))
    write_store(root / "small", full.batch(keep), full.labels[keep], record_ids=full.record_ids[keep],
                patient_ids=full.patient_ids[keep], positions=full.positions[keep], class_names=full.class_names,
                fs=full.fs, lead_names=full.lead_names, database="mitdb", version="1.0.0", task="beats")
    return root / "small"


CONFIG = """
[bench]
name = "tiny"
seeds = [0]
fractions = [0.5, 1.0]
image_size = 32
epochs = 1
max_steps = 2
batch_size = 8
threads = 1
target_f1 = 0.05
arms = ["scratch", "imagenet"]

[task]
store = "{store}"
split = "patient"
val_fraction = 0.3
test_fraction = 0.3

[train]
num_workers = 0
"""


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No cached ImageNet weights and no network for them (as on an offline machine)."""
    from ecgtransfer.models import weight_registry

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("ECGTRANSFER_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("ECGTRANSFER_OFFLINE", "1")

    def no_network(url, *a, **k):
        raise OSError(f"offline (test): {url} unreachable")

    monkeypatch.setattr(weight_registry, "download_file", no_network)


def test_tiny_bench_end_to_end_and_resume(small_store, tmp_path, offline, capsys):
    from ecgtransfer.bench import run
    from ecgtransfer.cli import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG.format(store=small_store))
    out = tmp_path / "out"
    first = run(cfg, out, progress=False)

    keys = {"scratch__spectrogram__f1__s0", "scratch__spectrogram__f0.5__s0"}
    assert set(first.computed) == keys and first.reused == [] and first.failed == {}
    assert "imagenet" in first.skipped and "not available" in first.skipped["imagenet"]

    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is True
    from ecgtransfer.bench.results import read_results
    assert read_results(out / "results.json").to_dict() == res  # the schema round-trips it
    by_key = {c["key"]: c for c in res["cells"]}
    assert len(by_key) == 4
    for k in keys:
        rec = by_key[k]
        assert rec["status"] == "done"
        assert 0.0 <= rec["test"]["macro_f1"] <= 1.0
        assert set(rec["test"]["per_class"]) == {"N", "S", "V", "F"}  # Q left out (AAMI practice, the default)
        assert rec["throughput"]["train_images_per_s"] > 0 and rec["throughput"]["peak_memory_bytes"] > 0
        assert rec["history"] and rec["history"][0]["elapsed_s"] > 0
        assert not (out / rec["run_dir"] / "last.pt").exists()  # checkpoints dropped by default
        # per-record confusion matrices of the test records (what the bootstrap over patients resamples): they
        # pool to the cell's own test macro-F1 and cover its test beats
        from ecgtransfer.bench.stats import macro_f1_of_confusion

        rc = rec["record_confusion"]
        pooled = np.sum(np.asarray(rc["matrices"]), axis=0)
        assert rc["split"] == "test" and pooled.sum() == rec["test"]["n"]
        assert macro_f1_of_confusion(pooled) == pytest.approx(rec["test"]["macro_f1"], abs=1e-12)
    for k in ("imagenet__spectrogram__f1__s0", "imagenet__spectrogram__f0.5__s0"):
        assert by_key[k]["status"] == "skipped" and "not available" in by_key[k]["reason"]
    # nested fractions: the 50% cell trained on a subset of the 100% cell's training segments
    half = np.load(out / by_key["scratch__spectrogram__f0.5__s0"]["run_dir"] / "split.npz")
    full = np.load(out / by_key["scratch__spectrogram__f1__s0"]["run_dir"] / "split.npz")
    assert np.isin(half["train"], full["train"]).all() and len(half["train"]) < len(full["train"])
    assert np.array_equal(half["test"], full["test"]) and np.array_equal(half["val"], full["val"])
    # no patient in two parts
    store = SegmentStore(small_store)
    parts = {p: set(store.patient_ids[full[p]]) for p in ("train", "val", "test")}
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    # hardware and versions recorded
    assert res["hardware"]["torch"] and res["hardware"]["device"] == "cpu"
    assert res["arms"][1]["status"] == "skipped"

    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for doc in (html, md):
        assert "Did transfer help?" in doc and "imagenet" in doc and "scratch" in doc
        assert "SKIPPED" in doc and "not available here" in doc
        assert "32x32 (reduced" in doc
    assert "data:image/png;base64," in html and "<img" in html
    assert (out / "figures").is_dir() and list((out / "figures").glob("*.png"))

    # lose one finished cell (as if the bench died while writing it): only that one is recomputed
    lost = "scratch__spectrogram__f0.5__s0"
    kept_before = json.loads((out / "cells" / "scratch__spectrogram__f1__s0.json").read_text())
    (out / "cells" / f"{lost}.json").unlink()
    rc = main(["bench", str(cfg), "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "1 cell(s) computed, 1 reused" in printed and "report:" in printed
    res2 = json.loads((out / "results.json").read_text())
    assert res2["run"]["computed"] == [lost]
    assert res2["run"]["reused"] == ["scratch__spectrogram__f1__s0"]
    by_key2 = {c["key"]: c for c in res2["cells"]}
    assert by_key2["scratch__spectrogram__f1__s0"]["bench_run_id"] == kept_before["bench_run_id"]
    assert by_key2[lost]["bench_run_id"] == res2["bench_run_id"] != kept_before["bench_run_id"]
    assert by_key2[lost]["test"]["macro_f1"] == pytest.approx(by_key[lost]["test"]["macro_f1"])  # CPU: deterministic


def test_bench_cli_errors(tmp_path, capsys):
    from ecgtransfer.cli import main

    assert main(["bench", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    cfg = tmp_path / "b.toml"
    cfg.write_text(CONFIG.format(store=tmp_path / "no-store"))
    assert main(["bench", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "--report-only", "--out", str(tmp_path / "empty")]) == 2
    assert "no results.json" in capsys.readouterr().err


@pytest.fixture(scope="module")
def source_store(physionet_root: Path, tmp_path_factory) -> Path:
    """A few real challenge-2017 rhythm windows (N, A, O, ~): the source task of the ecg-pretrained arm."""
    from ecgtransfer.conversion import convert

    root = tmp_path_factory.mktemp("bench-source")
    recs = sorted(p.stem for p in (physionet_root / "challenge-2017" / "1.0.0" / "training2017").glob("*.hea"))[:24]
    convert("challenge-2017", data=physionet_root, out=root / "src", records=recs, progress=False, jobs=1)
    return root / "src"


def test_ecg_pretrained_arm_transfers_a_source_model(small_store, source_store, tmp_path):
    from ecgtransfer.bench import run
    from ecgtransfer.bench.config_toml import config_from_dict

    cfg = config_from_dict({
        "bench": {"name": "ecg", "seeds": [0], "fractions": [1.0], "image_size": 32, "epochs": 1, "max_steps": 2,
                  "batch_size": 8, "threads": 1},
        "task": {"store": str(small_store), "val_fraction": 0.3, "test_fraction": 0.3},
        "arms": ["scratch", "ecg-pretrained"],
        "source": {"store": str(source_store), "epochs": 1, "max_steps": 2},
        "train": {"num_workers": 0},
    })
    out = tmp_path / "out"
    res = run(cfg, out, progress=False)
    assert res.failed == {} and res.skipped == {}
    assert sorted(res.computed) == ["ecg-pretrained__spectrogram__f1__s0", "scratch__spectrogram__f1__s0"]
    marker = out / "source" / "spectrogram" / "source.json"
    info = json.loads(marker.read_text())
    # stored relative to the bench directory, so the directory can move
    assert not Path(info["checkpoint"]).is_absolute() and (out / info["checkpoint"]).is_file()
    assert info["class_names"] == ["N", "A", "O", "~"]
    cell = next(c for c in res.results["cells"] if c["cell"]["arm"] == "ecg-pretrained")
    # the backbone came from the source checkpoint; the 4-class head was re-initialised for 5 classes
    assert cell["init"].startswith("ecg source model") and info["checkpoint"] in cell["init"]
    assert cell["load_report"] and "reinit" in cell["load_report"].lower()
    # a source of other classes (N/A/O rhythms) transfers the backbone only, and the cell says so (issue 22)
    assert cell["transfer"].startswith("backbone only (head re-initialised")
    assert "ecg-pretrained: backbone only" in (out / "report.md").read_text()
    assert res.results["summary"]["ecg-pretrained"]["spectrogram"]["100%"]["diff_vs_baseline"]["n"] == 1
    md = (out / "report.md").read_text()
    assert "Source models" in md and "ecg-pretrained vs scratch" in md
    # a source model of 2 optimizer steps has learned nothing: flagged, and its arm's contrast gets no verdict
    cred = info["credibility"]
    assert cred["learned"] is False and cred["lo"] <= 0.5 and "source did not learn" in cred["text"]
    con = res.results["contrasts"]
    assert [c["arm"] for c in con] == ["ecg-pretrained"] and con[0]["primary"]
    assert con[0]["verdict"].startswith("no verdict (source did not learn")
    assert con[0]["diff"]["n_records"] >= 1  # the paired bootstrap over the test records
    assert "source did not learn" in md and "Primary contrast" in md
    assert res.results["majority_val"]["predicts"] == "N" and "majority (always N)" in md
    # a re-run after losing the ecg cell reuses the source model instead of training it again
    mtime = marker.stat().st_mtime_ns
    (out / "cells" / "ecg-pretrained__spectrogram__f1__s0.json").unlink()
    again = run(cfg, out, progress=False)
    assert again.computed == ["ecg-pretrained__spectrogram__f1__s0"]
    assert marker.stat().st_mtime_ns == mtime
    # another source budget: only the ecg-pretrained cell (and its source model) is recomputed, not scratch
    from dataclasses import replace

    third = run(replace(cfg, source=replace(cfg.source, max_steps=1)), out, progress=False)
    assert third.computed == ["ecg-pretrained__spectrogram__f1__s0"]
    assert third.reused == ["scratch__spectrogram__f1__s0"]
    assert marker.stat().st_mtime_ns != mtime
    why = third.results["invocations"][-1]["recomputed"]["ecg-pretrained__spectrogram__f1__s0"]
    assert why.endswith("changed: source.max_steps)")


def _synthetic_store(path: Path, *, n_patients: int = 10, per_patient: int = 12, database: str = "synthdb",
                     version: str = "1", seed: int = 0) -> Path:
    """A small random store: ``n_patients`` patients with beats of two classes each (no data files needed)."""
    rng = np.random.default_rng(seed)
    n = n_patients * per_patient
    labels = np.tile(np.arange(per_patient) % 2, n_patients)
    t = np.linspace(0, 1, 256, dtype=np.float32)
    segs = (rng.normal(size=(n, 1, 256)).astype(np.float32) * 0.3
            + np.where(labels[:, None, None] == 1, np.sin(12 * np.pi * t), np.sin(4 * np.pi * t)).astype(np.float32))
    pats = np.repeat([f"p{i:02d}" for i in range(n_patients)], per_patient)
    write_store(path, segs, labels, record_ids=pats, patient_ids=pats, positions=np.arange(n),
                class_names=["N", "V"], fs=256.0, lead_names=["MLII"], database=database, version=version,
                task="beats")
    return path


def test_source_overlap_detection(tmp_path):
    from ecgtransfer.bench.source import source_overlap

    a = SegmentStore(_synthetic_store(tmp_path / "a"))
    b = SegmentStore(_synthetic_store(tmp_path / "b", n_patients=6))  # another store of the same database
    c = SegmentStore(_synthetic_store(tmp_path / "c", database="otherdb"))
    assert "target store itself" in source_overlap(a, a)
    assert "target's database (synthdb 1)" in source_overlap(a, b)
    assert source_overlap(a, c) is None


def test_source_from_the_target_store_never_trains_on_target_val_test_patients(tmp_path):
    """The same store as target and source: the source model's train/val hold no target val/test patient."""
    from ecgtransfer.bench import run
    from ecgtransfer.bench.config_toml import config_from_dict

    store_path = _synthetic_store(tmp_path / "store")
    cfg = config_from_dict({
        "bench": {"name": "overlap", "seeds": [0], "fractions": [1.0], "image_size": 32, "epochs": 1,
                  "max_steps": 1, "batch_size": 8, "threads": 1},
        "task": {"store": str(store_path), "val_fraction": 0.2, "test_fraction": 0.2},
        "arms": ["ecg-pretrained"],
        "source": {"store": str(store_path), "epochs": 1, "max_steps": 1, "seed": 1},  # another split
        "train": {"num_workers": 0, "val_fraction": 0.2, "test_fraction": 0.2},
    })
    out = tmp_path / "out"
    res = run(cfg, out, progress=False)
    assert res.failed == {} and res.skipped == {}
    store = SegmentStore(store_path)
    heldout = set(res.results["split"]["patients"]["val"]) | set(res.results["split"]["patients"]["test"])
    assert heldout and set(res.results["split"]["heldout_patients"]) == heldout
    src = np.load(out / "source" / "spectrogram" / "run" / "split.npz")
    src_train = set(store.patient_ids[src["train"]].astype(str))
    src_val = set(store.patient_ids[src["val"]].astype(str))
    assert src_train and not (src_train & heldout) and not (src_val & heldout)
    # without the exclusion the source split would have trained on some of them (the check bites)
    from ecgtransfer.training import TrainConfig
    from ecgtransfer.training.data import make_split

    info = res.results["source_models"]["spectrogram"]
    plain = make_split(store, TrainConfig.from_dict({**info_train_config(out), "progress": False}))
    assert set(store.patient_ids[plain["train"]].astype(str)) & heldout
    ex = info["exclusion"]
    assert "target store itself" in ex["why"] and set(ex["dropped_patients"]) == heldout
    assert ex["dropped_segments"] == int(np.isin(store.patient_ids.astype(str), sorted(heldout)).sum())
    assert "target store itself" in res.results["source_overlap"]
    md = (out / "report.md").read_text()
    assert "were dropped from it before its own split" in md and "p01" in md


def info_train_config(out: Path) -> dict:
    marker = json.loads((out / "source" / "spectrogram" / "source.json").read_text())
    return marker["train_config"]


def _synthetic_cfg(store_path: Path, name: str, *, arms: list, fractions: list, **bench):
    """A one-seed, 32-px, one-epoch bench on a synthetic store (``bench`` adds/overrides [bench] keys)."""
    from ecgtransfer.bench.config_toml import config_from_dict

    return config_from_dict({
        "bench": {"name": name, "seeds": [0], "fractions": fractions, "image_size": 32, "epochs": 1,
                  "batch_size": 8, "threads": 1, **bench},
        "task": {"store": str(store_path), "val_fraction": 0.2, "test_fraction": 0.2},
        "arms": arms,
        "train": {"num_workers": 0},
    })


def test_min_steps_raises_the_epochs_of_small_fractions(tmp_path):
    from ecgtransfer.bench import run

    store_path = _synthetic_store(tmp_path / "store")
    cfg = _synthetic_cfg(store_path, "minsteps", arms=["scratch"], fractions=[0.25, 1.0], min_steps=6)
    res = run(cfg, tmp_path / "out", progress=False)
    assert res.failed == {}
    by_frac = {c["cell"]["fraction"]: c for c in res.results["cells"]}
    small, full = by_frac[0.25], by_frac[1.0]
    for rec in (small, full):
        d = rec["data"]
        assert d["epochs"] == max(1, -(-6 // d["steps_per_epoch"]))
        assert rec["train_config"]["epochs"] == d["epochs"]
        assert rec["steps"] == d["epochs"] * d["steps_per_epoch"] >= 6
    assert small["data"]["epochs"] > 1 == full["data"]["epochs"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "at least 6 optimizer steps" in md and f"25%: {small['data']['epochs']}, 100%: 1" in md
    # a changed budget: both cells are recomputed, and the invocation history says why
    from dataclasses import replace

    again = run(replace(cfg, min_steps=4), tmp_path / "out", progress=False)
    inv = again.results["invocations"]
    assert len(inv) == 2 and inv[0]["recomputed"] == {}
    assert set(inv[1]["recomputed"]) == {small["key"], full["key"]} == set(again.computed)
    assert all(w.endswith("changed: budget.min_steps)") for w in inv[1]["recomputed"].values())
    assert "2: computed under other settings" in (tmp_path / "out" / "report.md").read_text()
    # a cell whose recorded epochs are not what min_steps gives now (a version that counted the drawn segments,
    # before the majority cap) is recomputed, and says why; the other is reused
    path = tmp_path / "out" / "cells" / f"{small['key']}.json"
    rec = json.loads(path.read_text())
    old = dict(rec, data=dict(rec["data"], epochs=rec["data"]["epochs"] + 1))
    path.write_text(json.dumps({k: v for k, v in old.items() if k != "digest"}))  # that version wrote no digest
    third = run(replace(cfg, min_steps=4), tmp_path / "out", progress=False)
    assert third.computed == [small["key"]] and third.reused == [full["key"]]
    assert third.results["invocations"][-1]["recomputed"][small["key"]].startswith("its budget changed: it trained")


def test_interrupted_bench_writes_a_partial_report(tmp_path, monkeypatch):
    """SIGINT (KeyboardInterrupt) mid-bench: finished cells kept, results.json and both reports written."""
    from ecgtransfer.bench import run, runner

    store_path = _synthetic_store(tmp_path / "store")
    cfg = _synthetic_cfg(store_path, "interrupt", arms=["scratch"], fractions=[0.5, 1.0], max_steps=1)
    original = runner._Bench.run_cell
    calls = []

    def run_cell(self, cell):
        calls.append(cell.key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, cell)

    monkeypatch.setattr(runner._Bench, "run_cell", run_cell)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, progress=False)
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is False and res["progress"]["done"] == 1
    assert res["interrupted"].startswith("interrupted (SIGINT)") and res["invocations"][-1]["interrupted"]
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "This bench is incomplete: 1 of 2 cells" in text and "interrupted (SIGINT)" in text
    monkeypatch.setattr(runner._Bench, "run_cell", original)
    again = run(cfg, out, progress=False)  # the same command finishes it
    assert again.complete and again.reused == [calls[0]] and len(again.computed) == 1
    assert again.results["interrupted"] is None


def test_arm_losing_its_weights_mid_run_keeps_its_finished_cells(tmp_path, monkeypatch):
    """WeightsUnavailableError in an arm's second cell: the first stays reported, the rest is skipped, the arm
    is 'partial' everywhere; a resume that still cannot run the arm keeps the finished cell; later it finishes."""
    from ecgtransfer.bench import run, runner
    from ecgtransfer.errors import WeightsUnavailableError

    store_path = _synthetic_store(tmp_path / "store")
    cfg = _synthetic_cfg(store_path, "partial", arms=["scratch", {"name": "alt", "init": "scratch",
                                                                  "optim": "tiered"}],
                         fractions=[0.5, 1.0], max_steps=1)
    original = runner._Bench.run_cell
    alt_calls = []

    def run_cell(self, cell):
        if cell.arm == "alt":
            alt_calls.append(cell.key)
            if len(alt_calls) == 2:
                raise WeightsUnavailableError("weights gone (test)")
        return original(self, cell)

    monkeypatch.setattr(runner._Bench, "run_cell", run_cell)
    out = tmp_path / "out"
    res = run(cfg, out, progress=False)
    first, lost = alt_calls  # 100% first, then 50%
    by_key = {c["key"]: c for c in res.results["cells"]}
    assert by_key[first]["status"] == "done" and by_key[lost]["status"] == "skipped"
    assert "weights gone" in by_key[lost]["reason"]
    alt = next(a for a in res.results["arms"] if a["name"] == "alt")
    assert alt["status"] == "partial" and alt["reason"].startswith("1 of 2 cells finished")
    assert "weights gone" in alt["reason"] and res.results["complete"] is True
    md = (out / "report.md").read_text()
    assert "PARTIAL: 1 of 2 cells finished" in md and "Partly run arms" in md
    assert "alt vs scratch (spectrogram, 100%" in md and "alt: ran only in part" in md
    row = next(line for line in md.splitlines() if line.startswith("| alt |") and "Δ vs scratch" in line)
    assert row.startswith("| alt | skipped | ")  # the 50% column (fractions ascending), then 100%: a result

    # a resume while the arm still cannot run (skipped up front) keeps the finished cell
    orig_check = runner._Bench.check_arms

    def check_arms(self):
        orig_check(self)
        self.skipped["alt"] = "weights still gone (test)"

    monkeypatch.setattr(runner._Bench, "run_cell", original)
    monkeypatch.setattr(runner._Bench, "check_arms", check_arms)
    again = run(cfg, out, progress=False)
    by_key = {c["key"]: c for c in again.results["cells"]}
    assert by_key[first]["status"] == "done" and first in again.reused
    assert next(a for a in again.results["arms"] if a["name"] == "alt")["status"] == "partial"
    # the weights are back: only the skipped cell is computed
    monkeypatch.setattr(runner._Bench, "check_arms", orig_check)
    final = run(cfg, out, progress=False)
    assert final.computed == [lost] and next(a for a in final.results["arms"] if a["name"] == "alt")["status"] == "ran"


def test_tuned_arms_sweep_2x2_reference_models_and_patients_fractions(tmp_path):
    """The new design end to end on a synthetic 9-patient store: each sweepable arm's LR sweep is chosen on
    validation selection-F1 and its chosen point is reused as the grid cell of that fraction and seed; the
    closed-form ``features`` reference is not swept; early stopping with patience; fractions by patient; the
    declared primary contrast first, the other contrasts Holm-adjusted; steps to target; the report."""
    from ecgtransfer.bench import run
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.bench.stats import holm

    store = _synthetic_store(tmp_path / "s", n_patients=9, per_patient=12)
    cfg = config_from_dict({
        "bench": {"name": "new", "seeds": [0, 1], "fractions": [0.5, 1.0], "fraction_mode": "patients",
                  "image_size": 16, "epochs": 2, "batch_size": 8, "threads": 1, "target_f1": 0.6,
                  "lr_sweep": [0.5, 2.0], "patience": 1, "bootstrap_replicates": 200,
                  "primary": {"arm": "scratch-tiered", "baseline": "scratch-uniform"}},
        "task": {"store": str(store), "val_fraction": 0.25, "test_fraction": 0.3},
        "arms": ["scratch-uniform", "scratch-tiered", "cnn1d", "features"],
        "train": {"num_workers": 0},
    })
    out = tmp_path / "out"
    res = run(cfg, out, progress=False)
    r = res.results
    assert res.failed == {} and r["complete"]
    assert set(r["sweeps"]) == {"scratch-uniform", "scratch-tiered", "cnn1d"}  # features: closed form, no sweep
    for arm, w in r["sweeps"].items():
        vals = {float(k): v for k, v in w["curve"]["spectrogram"].items()}
        assert set(vals) == {0.5, 2.0} and w["chosen"] in vals
        assert vals[w["chosen"]] == max(vals.values())  # chosen on validation selection-F1
        grid = next(c for c in r["cells"] if c["key"] == f"{arm}__spectrogram__f1__s0")
        assert grid["from_sweep"] == f"{arm}@lr{w['chosen']:g}__spectrogram__f1__s0" and grid["lr_scale"] == w["chosen"]
        others = [c for c in r["cells"] if c["cell"]["arm"] == arm]
        assert all(c["lr_scale"] == w["chosen"] for c in others)
    tiered = next(a for a in r["arms"] if a["name"] == "scratch-tiered")
    assert tiered["lrs_used"] == pytest.approx([x * r["sweeps"]["scratch-tiered"]["chosen"] for x in cfg.lrs])
    cells = [c for c in r["cells"] if c["status"] == "done"]
    assert {c["train_config"]["early_stopping"] for c in cells if c["cell"]["arm"] != "features"} == {1}
    half = [c for c in cells if c["cell"]["fraction"] == 0.5]
    assert all(c["data"]["n_train_patients"] < next(
        f["data"]["n_train_patients"] for f in cells if f["cell"]["fraction"] == 1.0) for c in half)
    con = r["contrasts"]
    assert con[0]["primary"] and con[0]["label"] == "scratch-tiered - scratch-uniform, spectrogram, 100%"
    assert [c["p_holm"] for c in con[1:]] == pytest.approx(holm([c["p"] for c in con[1:]]))
    assert all(c["diff"]["n_records"] == len(r["split"]["patients"]["test"]) for c in con)
    e = r["summary"]["features"]["spectrogram"]["100%"]
    assert e["steps_to_target"]["of"] == 2 and e["macro_f1"]["method"].startswith("paired bootstrap")
    assert r["target_check"]["below_majority"] is False
    md = (out / "report.md").read_text()
    assert md.index("Primary contrast (declared in the config)") < md.index("## Setup")
    assert "Learning-rate sweeps" in md and "figures/lr_sweep_spectrogram.png" in md
    assert "majority (always" in md and "Not swept" in md and "features" in md
    # a re-run reuses every cell, the sweep's included
    again = run(cfg, out, progress=False)
    assert again.computed == [] and again.results["sweeps"] == r["sweeps"]


def test_record_confusion_matches_the_engine_on_a_majority_capped_validation_split(tmp_path):
    """Without a test part the bench reports validation, which the engine majority-caps and weighs back to its
    true prevalence: the per-record matrices the bootstrap resamples are those of the same capped beats, weighted
    the same way (they pool to the cell's validation macro-F1 and to the uncapped counts)."""
    from ecgtransfer.bench import run
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.bench.stats import macro_f1_of_confusion

    store = _synthetic_store(tmp_path / "s", n_patients=8, per_patient=12)
    cfg = config_from_dict({
        "bench": {"name": "val", "seeds": [1], "image_size": 16, "epochs": 1, "batch_size": 8, "threads": 1,
                  "arms": ["scratch"]},
        "task": {"store": str(store), "val_fraction": 0.3, "test_fraction": 0.0},
        "train": {"num_workers": 0, "majority_cap": 3, "amp": "off"},  # bf16 on CPU: this tiny net can hit NaN
    })
    res = run(cfg, tmp_path / "out", progress=False)
    cell = res.results["cells"][0]
    assert res.results["eval_split"] == "val" and cell["status"] == "done"
    pooled = np.sum(np.asarray(cell["record_confusion"]["matrices"]), axis=0)
    assert cell["val"]["n"] < res.results["split"]["n_val"]  # the capped validation beats ...
    assert pooled.sum() == pytest.approx(res.results["split"]["n_val"])  # ... weighted back to the uncapped count
    assert cell["val"]["prevalence"] == "true" and cell["val"]["weighted_n"] == pytest.approx(pooled.sum())
    assert macro_f1_of_confusion(pooled) == pytest.approx(cell["val"]["macro_f1"], abs=1e-12)
    # the cell's counts and budget are those of the segments the engine trained on (after the cap), read back
    # from the run's own split file
    split = np.load(tmp_path / "out" / "runs" / cell["key"] / "split.npz")
    d = cell["data"]
    assert d["n_train"] == len(split["train"]) < d["n_train_drawn"] and d["majority_capped"]["train"] > 0
    assert d["n_val"] == len(split["val"]) == cell["val"]["n"]
    assert sum(d["train_class_counts"].values()) == d["n_train"]
    assert d["steps_per_epoch"] == -(-d["n_train"] // 8) == cell["steps"]  # one epoch, batch 8


def test_cells_of_an_earlier_version_get_their_counts_from_the_runs_split(tmp_path):
    """Cells written before the counts followed the majority cap said they trained on the drawn segments: on a
    resume the counts are read back from the run's own split.npz; cells of this version are left as they are."""
    from types import SimpleNamespace

    from ecgtransfer.bench.results import upgrade_cell_counts as _counts_from_run

    store = SimpleNamespace(labels=np.array([0] * 8 + [1] * 4), patient_ids=np.array(list("aabbccddaabb")),
                            class_names=["N", "S"], num_classes=2)
    (tmp_path / "runs" / "c").mkdir(parents=True)
    np.savez(tmp_path / "runs" / "c" / "split.npz", train=np.array([0, 1, 2, 8, 9]), val=np.array([10, 11]),
             test=np.array([3]))
    old = {"run_dir": "runs/c", "history": [{"step": 3, "partial": False}, {"step": 6, "partial": False}],
           "data": {"n_train": 9, "n_val": 3, "steps_per_epoch": 5, "train_class_counts": {"N": 7, "S": 2}}}
    d = _counts_from_run(old, tmp_path, store)["data"]
    assert d["n_train"] == 5 and d["n_train_drawn"] == 9 and d["n_val"] == 2 and d["steps_per_epoch"] == 3
    assert d["train_class_counts"] == {"N": 3, "S": 2} and d["n_train_patients"] == 2
    assert "split.npz" in d["counts_from"]
    assert old["data"]["n_train"] == 9  # the stored record itself is not changed
    new = {"run_dir": "runs/c", "data": {"n_train": 5, "n_train_drawn": 9}}
    assert _counts_from_run(new, tmp_path, store) is new
    assert _counts_from_run({"run_dir": "runs/none", "data": {"n_train": 9}}, tmp_path, store)["data"] == {"n_train": 9}
