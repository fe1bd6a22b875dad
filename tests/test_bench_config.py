"""Bench config loading/validation, the grid of cells, data-fraction subsampling and the cell store."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.bench.cells import CellStore
from ecgtransfer.bench.arms import ARM_ALIASES, ARM_PRESETS
from ecgtransfer.bench.config_toml import load_config, parse_override
from ecgtransfer.bench.fractions import subsample
from ecgtransfer.bench.grid import Cell, cells, fraction_label
from ecgtransfer.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

BASIC = """
[bench]
name = "t"
seeds = [0, 1]
fractions = [0.1, 1.0]
encodings = ["spectrogram", "recurrence"]
image_size = 32
epochs = 2

[task]
store = "stores/x"

[train]
num_workers = 0

[source]
store = "/abs/source"

[[arms]]
name = "scratch"

[[arms]]
name = "imagenet"
encodings = ["spectrogram"]

[[arms]]
name = "probe"
init = "imagenet"
optim = "linear-probe"
lr = 0.01

[[arms]]
name = "ecg-pretrained"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


def test_load_basic(tmp_path):
    cfg = load_config(write(tmp_path, BASIC))
    assert cfg.name == "t" and cfg.seeds == (0, 1) and cfg.fractions == (0.1, 1.0)
    assert [a.name for a in cfg.arms] == ["scratch", "imagenet", "probe", "ecg-pretrained"]
    assert cfg.arm("scratch") == ARM_PRESETS["scratch"]
    assert cfg.arm("imagenet").encodings == ("spectrogram",)
    assert cfg.arm("probe").optim == "linear-probe" and cfg.arm_lr(cfg.arm("probe")) == 0.01
    assert cfg.arm_lr(cfg.arm("scratch")) == max(cfg.lrs)
    # relative paths resolve against the config's directory, absolute ones stay
    assert cfg.store_path == tmp_path.resolve() / "stores" / "x"
    assert cfg.source_store_path == Path("/abs/source")
    json.dumps(cfg.to_dict())  # JSON-able


def test_overrides_and_fingerprint(tmp_path):
    p = write(tmp_path, BASIC)
    a = load_config(p)
    b = load_config(p, overrides={"task.store": "/other", "seeds": [3]})
    assert b.store_path == Path("/other") and b.seeds == (3,)
    # seeds and the store path are coordinates, not budget: same fingerprint
    assert a.budget_fingerprint() == b.budget_fingerprint()
    c = load_config(p, overrides={"bench.epochs": 3})
    assert c.budget_fingerprint() != a.budget_fingerprint()
    # [source] only matters to ecg arms (the runner adds it to their cell fingerprints), not to the shared budget
    d = load_config(p, overrides={"source.epochs": 9, "source.store": "/elsewhere"})
    assert d.budget_fingerprint() == a.budget_fingerprint() and "source" not in d.budget_dict()
    assert parse_override("bench.fractions=[0.5, 1.0]") == ("bench.fractions", [0.5, 1.0])
    assert parse_override("task.split=dechazal") == ("task.split", "dechazal")
    with pytest.raises(ConfigError):
        parse_override("novalue")


@pytest.mark.parametrize("edit, message", [
    (("epochs = 2", "epochs = 0"), "epochs"),
    (("fractions = [0.1, 1.0]", "fractions = [0.0, 1.0]"), "fraction"),
    (("fractions = [0.1, 1.0]", "fractions = [1.5]"), "fraction"),
    (("fractions = [0.1, 1.0]", "fractions = [0.5, 0.5]"), "duplicates"),
    (("seeds = [0, 1]", "seeds = [1, 1]"), "duplicates"),
    (("name = \"probe\"", "name = \"imagenet\""), "unique"),
    (("optim = \"linear-probe\"", "optim = \"sideways\""), "optim"),
    (("image_size = 32", "image_size = 32\nimgsize = 3"), "unknown key"),
    (("num_workers = 0", "epochs = 4"), "set by the bench"),
    (("encodings = [\"spectrogram\", \"recurrence\"]", "encodings = [\"sketch\"]"), "encoding"),
    (("[source]\nstore = \"/abs/source\"", ""), "source"),
    (("store = \"stores/x\"", "split = \"patient\""), "store"),
    (("epochs = 2", "epochs = 2\nmin_steps = 0"), "min_steps"),
    (("epochs = 2", "epochs = 2\nmin_steps = 50\nmax_steps = 20"), "min_steps .50. is larger than max_steps"),
    (("epochs = 2", "epochs = 2\nprimary = {arm = \"imagenet\", baseline = \"nope\"}"), "names no arm 'nope'"),
    (("epochs = 2", "epochs = 2\nprimary = {arm = \"imagenet\"}"), "needs 'arm' and 'baseline'"),
    (("epochs = 2", "epochs = 2\nprimary = {arm = \"imagenet\", baseline = \"scratch\", fraction = 0.5}"),
     "not one of the fractions"),
    (("epochs = 2", "epochs = 2\ncontrasts = [[\"imagenet\", \"x\"]]"), "names no arm 'x'"),
    (("epochs = 2", "epochs = 2\ncontrasts = [\"imagenet\"]"), "pairs"),
])
def test_invalid_configs_name_the_key(tmp_path, edit, message):
    old, new = edit
    assert old in BASIC
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, BASIC.replace(old, new, 1)))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[bench\n"))
    with pytest.raises(ConfigError, match="no arms"):
        load_config(write(tmp_path, "[task]\nstore='x'\n"))
    with pytest.raises(ConfigError, match="unknown arm preset"):
        load_config(write(tmp_path, "arms=['sratch']\n[task]\nstore='x'\n"))


@pytest.mark.parametrize("name", ["smoke.toml", "cpu.toml", "gpu.toml", "gpu-ablation.toml", "cpu-tuned-ds1.toml"])
def test_shipped_profiles_load(name):
    path = REPO / "benchmarks" / name
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    cfg = load_config(path)
    assert cfg.arms and cells(cfg)
    assert any(a.init == "scratch" and a.model is None for a in cfg.arms)  # a scratch image baseline


def test_grid(tmp_path):
    cfg = load_config(write(tmp_path, BASIC))
    grid = cells(cfg)
    # scratch, probe, ecg-pretrained run 2 encodings, imagenet 1: 7 per (seed, fraction)
    assert len(grid) == 2 * 2 * 7
    assert len({c.key for c in grid}) == len(grid)
    assert grid[0].seed == 0 and grid[0].fraction == 1.0  # first seed, largest fraction first
    assert all(c.seed == 0 for c in grid[:14])
    assert Cell.from_dict(grid[5].to_dict()) == grid[5]
    assert fraction_label(0.05) == "5%" and fraction_label(1.0) == "100%" and fraction_label(0.125) == "12.5%"


def _toy():
    rng = np.random.default_rng(0)
    n = 600
    labels = rng.choice(4, size=n, p=[0.85, 0.08, 0.05, 0.02])
    patients = np.array([f"p{i % 12}" for i in rng.permutation(n)])
    train = np.sort(rng.choice(n, size=450, replace=False))
    return train, labels, patients


@pytest.mark.parametrize("mode", ["per-class", "per-patient"])
def test_subsample_nested_seeded_subset(mode):
    train, labels, patients = _toy()
    prev = None
    for f in [0.01, 0.05, 0.2, 0.5, 1.0]:
        idx = subsample(train, labels, patients, f, mode=mode, seed=3)
        assert np.all(np.diff(idx) > 0) and np.isin(idx, train).all()
        if prev is not None:
            assert np.isin(prev, idx).all(), f"fraction {f} does not contain the smaller one"
            assert len(idx) >= len(prev)
        prev = idx
    assert np.array_equal(prev, train)
    a = subsample(train, labels, patients, 0.2, mode=mode, seed=3)
    assert np.array_equal(a, subsample(train, labels, patients, 0.2, mode=mode, seed=3))
    assert not np.array_equal(a, subsample(train, labels, patients, 0.2, mode=mode, seed=4))


def test_subsample_per_class_keeps_every_class_in_proportion():
    train, labels, patients = _toy()
    idx = subsample(train, labels, patients, 0.05, mode="per-class", seed=0)
    for c in np.unique(labels[train]):
        n_c = int((labels[train] == c).sum())
        assert int((labels[idx] == c).sum()) == max(1, int(np.ceil(0.05 * n_c)))


def test_subsample_per_patient_takes_whole_patients():
    train, labels, patients = _toy()
    idx = subsample(train, labels, patients, 0.25, mode="per-patient", seed=1)
    chosen = set(patients[idx])
    n_pat = len(set(patients[train]))
    assert len(chosen) == int(np.ceil(0.25 * n_pat))
    for p in chosen:  # every training segment of a chosen patient is kept
        assert set(train[patients[train] == p]) <= set(idx)


def test_subsample_rejects_bad_input():
    train, labels, patients = _toy()
    with pytest.raises(ConfigError):
        subsample(train, labels, patients, 0.0)
    with pytest.raises(ConfigError):
        subsample(train, labels, patients, 0.5, mode="per-record")


def test_cell_store_roundtrip_and_resume_rules(tmp_path):
    store = CellStore(tmp_path)
    cell = Cell("scratch", "spectrogram", 0.5, 0)
    assert store.load(cell) is None
    rec = {"cell": cell.to_dict(), "status": "done", "fingerprint": "f1", "store_manifest_hash": "h1"}
    store.save(cell, rec)
    assert store.finished(cell, fingerprint="f1", store_hash="h1") == rec
    assert store.finished(cell, fingerprint="f2", store_hash="h1") is None  # other budget
    assert store.finished(cell, fingerprint="f1", store_hash="h2") is None  # other store
    # why a cell is recomputed: what changed, when the record holds its fingerprint inputs
    assert store.check(cell, fingerprint="f1", store_hash="h1") == (rec, None)
    _, why = store.check(cell, fingerprint="f2", store_hash="h1")
    assert why == "computed under other settings (fingerprint f1, now f2)"
    store.save(cell, {**rec, "fingerprint_inputs": {"budget": {"epochs": 2, "batch_size": 8}, "lr": 0.1}})
    _, why = store.check(cell, fingerprint="f2", store_hash="h1",
                         inputs={"budget": {"epochs": 3, "batch_size": 8}, "lr": 0.1, "macro_f1": "support"})
    assert why.endswith("changed: budget.epochs, macro_f1)")
    assert "another store (manifest h1, now h2)" in store.check(cell, fingerprint="f1", store_hash="h2")[1]
    assert store.check(Cell("scratch", "spectrogram", 1.0, 0), fingerprint="f1", store_hash="h1") == (None, None)
    store.save(cell, {**rec, "status": "failed", "reason": "NaN loss"})
    assert store.finished(cell, fingerprint="f1", store_hash="h1") is None  # failures are retried
    assert store.check(cell, fingerprint="f1", store_hash="h1")[1] == "it failed before (NaN loss)"
    store.path(cell).write_text("{ half a file")
    assert store.load(cell) is None
    with pytest.raises(ValueError):
        store.save(Cell("scratch", "spectrogram", 1.0, 0), rec)
    assert not list(store.dir.glob("*.tmp"))


def test_a_damaged_cell_file_is_recomputed_not_reused(tmp_path, caplog):
    """Issue 20: a cell file edited or corrupted after it was written was reused silently (and could flip the
    headline); its digest no longer matches, or it is no valid cell record: the cell is recomputed, with a warning."""
    import json

    store = CellStore(tmp_path)
    cell = Cell("scratch", "spectrogram", 0.5, 0)
    rec = {"cell": cell.to_dict(), "status": "done", "fingerprint": "f1", "store_manifest_hash": "h1",
           "test": {"macro_f1": 0.41, "loss": float("nan")}, "lrs_used": (1e-3, 1e-2)}
    store.save(cell, rec)
    got = store.finished(cell, fingerprint="f1", store_hash="h1")
    assert got["test"]["macro_f1"] == 0.41 and got["lrs_used"] == [1e-3, 1e-2] and "digest" not in got
    raw = json.loads(store.path(cell).read_text())
    store.path(cell).write_text(json.dumps({**raw, "test": {**raw["test"], "macro_f1": 0.91}}))  # an edited score
    assert store.check(cell, fingerprint="f1", store_hash="h1") == (None, "its cell file was unreadable or damaged")
    assert "does not match its digest" in caplog.text
    store.path(cell).write_text(json.dumps({k: v for k, v in {**raw, "status": 3}.items() if k != "digest"}))
    assert store.load(cell) is None and "status must be a str" in caplog.text  # no digest (older file), not a record
    old = {k: v for k, v in raw.items() if k != "digest"}  # a file of a version without digests: read as before
    store.path(cell).write_text(json.dumps(old))
    assert store.finished(cell, fingerprint="f1", store_hash="h1")["test"]["macro_f1"] == 0.41


def test_cap_evaluation_keeps_class_shares():
    from ecgtransfer.bench.fractions import cap_evaluation

    train, labels, patients = _toy()
    idx = np.arange(len(labels))
    capped = cap_evaluation(idx, labels, 200, seed=0)
    assert len(capped) <= 200 + 4 and np.all(np.diff(capped) > 0)
    for c in np.unique(labels):
        share_full = np.mean(labels == c)
        share_cap = np.mean(labels[capped] == c)
        assert abs(share_full - share_cap) < 0.02 or int((labels[capped] == c).sum()) == 1
    assert np.array_equal(capped, cap_evaluation(idx, labels, 200, seed=0))
    assert np.array_equal(cap_evaluation(idx, labels, None), idx)
    assert np.array_equal(cap_evaluation(idx, labels, 10_000), idx)


def test_min_steps_resolves_per_cell_epochs_equal_for_every_arm(tmp_path):
    """Small fractions train more epochs to reach min_steps; every arm of a (fraction, seed) gets the same."""
    from ecgtransfer.bench.cell_plan import cell_budget
    from ecgtransfer.training.data import BatchPlan

    cfg = load_config(write(tmp_path, BASIC.replace("epochs = 2", "epochs = 2\nmin_steps = 40\nbatch_size = 16")))
    assert cfg.min_steps == 40
    assert cfg.cell_epochs(100) == 2 and cfg.cell_epochs(20) == 2 and cfg.cell_epochs(19) == 3
    assert cfg.cell_epochs(3) == 14  # ceil(40 / 3)
    train, labels, patients = _toy()
    resolved = {}
    for f in (0.05, 0.2, 1.0):
        for seed in (0, 1):
            idx = subsample(train, labels, patients, f, mode=cfg.fraction_mode, seed=seed)
            spe, epochs = cell_budget(cfg, idx, labels)
            assert spe == len(BatchPlan(idx, labels, 16, seed))  # the engine's steps per epoch
            assert epochs * spe >= 40 and (epochs == 2 or (epochs - 1) * spe < 40)  # the least that reaches it
            resolved.setdefault(f, set()).add(epochs)
    # 450 training segments at batch 16: 100% has 29 steps per epoch (2 epochs = 58 >= 40); 5% has 2 steps
    assert resolved[1.0] == {2} and resolved[0.05] == {20} and len(resolved[0.2]) == 1 and 2 < min(resolved[0.2]) < 20
    # every arm of a cell shares the subsample, hence the epochs; without min_steps nothing changes
    plain = load_config(write(tmp_path, BASIC))
    assert plain.min_steps is None and plain.cell_epochs(2) == 2
    assert plain.budget_fingerprint() != cfg.budget_fingerprint()


def test_previous_invocations_label_an_older_created_at_as_finish_time(tmp_path):
    from ecgtransfer.bench.assemble import earlier_invocations

    (tmp_path / "results.json").write_text(json.dumps({
        "bench_run_id": "old", "created_at": "2026-11-01T10:00:00+00:00", "command": "ecgtransfer bench x",
        "run": {"computed": ["a"], "reused": []}}))
    (inv,) = earlier_invocations(tmp_path)
    assert inv["started_at"] is None and inv["finished_at"] == "2026-11-01T10:00:00+00:00"
    assert inv["computed"] == ["a"] and inv["bench_run_id"] == "old"


def test_primary_contrast_is_declared_and_first(tmp_path):
    """``[bench.primary]`` names the primary contrast; the contrasts list puts it first; without one the first
    contrast at the largest fraction is used and marked as not declared."""
    from ecgtransfer.bench.aggregate import contrast_pairs, primary_of

    text = BASIC.replace("epochs = 2", "epochs = 2\ncontrasts = [[\"probe\", \"scratch\"]]\n"
                         "primary = {arm = \"imagenet\", baseline = \"scratch\", fraction = 0.1}", 1)
    cfg = load_config(write(tmp_path, text))
    assert primary_of(cfg) == {"arm": "imagenet", "baseline": "scratch", "encoding": "spectrogram",
                               "fraction": 0.1, "declared": True}
    assert contrast_pairs(cfg) == [("imagenet", "scratch"), ("probe", "scratch")]
    plain = load_config(write(tmp_path, BASIC))
    assert primary_of(plain)["declared"] is False and primary_of(plain)["fraction"] == 1.0
    assert plain.budget_fingerprint() == cfg.budget_fingerprint()  # statistics settings do not retrain cells


def test_the_plan_is_said_before_the_first_cell_and_days_are_warned_about():
    """Issue 20: a 2,000-cell bench or ``epochs = 100000`` started with no estimate; the plan line gives the cells,
    steps, images and a time range, and warns when even the fast end passes a day."""
    from ecgtransfer.bench.cell_plan import PLAN_WARN_HOURS, TRAIN_RATE_RANGE, plan_estimate

    line, warn = plan_estimate([60, 80, 80], 32, "cpu")
    assert line.startswith("3 grid cells to train") and "220 optimiser steps of batch 32 = 7,040 images" in line
    fast = TRAIN_RATE_RANGE["cpu"][1]
    assert f"about {7040 / fast / 3600:.1f} h" in line and not warn
    huge, warn = plan_estimate([100000 * 142] * 3, 32, "cpu")  # epochs = 100000 of 142 steps
    assert warn and "days" in huge
    steps_per_day = PLAN_WARN_HOURS * 3600 * TRAIN_RATE_RANGE["cuda"][1] / 256
    assert not plan_estimate([int(steps_per_day) - 1], 256, "cuda:0")[1]
    assert plan_estimate([int(steps_per_day) + 1], 256, "cuda:0")[1]
    assert plan_estimate([2] * 2000, 32, "cpu")[0].startswith("2000 grid cells")


def test_a_preset_alias_is_its_arm_under_another_name() -> None:
    """Issue 21: one arm under two names is one definition (``ARM_ALIASES``), not two copies that may drift; no
    other two presets train alike (ecg-pretrained, once a second definition of ecg-tiered, is its alias now)."""
    for alias, arm in ARM_ALIASES.items():
        assert ARM_PRESETS[alias].name == alias
        assert dataclasses.replace(ARM_PRESETS[alias], name=arm) == ARM_PRESETS[arm]
    alike: dict = {}
    for name, a in ARM_PRESETS.items():
        if name not in ARM_ALIASES:
            alike.setdefault(dataclasses.replace(a, name="", description=""), []).append(name)
    assert [sorted(v) for v in alike.values() if len(v) > 1] == []
    assert ARM_ALIASES["ecg-pretrained"] == "ecg-tiered"


@pytest.mark.parametrize("init", ["best.PT", "runs/x/best.pt", "model.ckpt", "imagenett", "scratchh", "imagenet-v1",
                                  "ImageNet"])
def test_an_arm_and_the_training_config_take_the_same_inits(init, tmp_path) -> None:
    """Issue 21 item 6: "does init name a weights file?" has one rule (``weight_registry.is_weights_path``); the bench's
    arms refused ``best.PT`` (an upper-case suffix) that ``train --init`` takes."""
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.training.config import TrainConfig

    def accepted(make) -> bool:
        try:
            make()
        except ConfigError:
            return False
        return True

    bench = accepted(lambda: config_from_dict({"bench": {"arms": [{"name": "a", "init": init}]},
                                               "task": {"store": str(tmp_path)}}))
    assert bench == accepted(lambda: TrainConfig(init=init))
    assert bench == (init not in ("imagenett", "scratchh"))


def test_a_config_file_with_any_line_ends_reads_alike(tmp_path) -> None:
    """The one TOML reader (``_toml.read_toml``) reads text with universal newlines, as the bench's reader did before
    it was shared: LF, CRLF and lone-CR files give the same config (the shared reader once refused a lone CR)."""
    from ecgtransfer.bench.config_toml import load_config
    from ecgtransfer.training.config import TrainConfig

    lines = ['[bench]', 'name = "x"', 'arms = ["scratch"]', '[task]', f'store = "{tmp_path.as_posix()}"']
    got = []
    for end in ("\n", "\r\n", "\r"):
        path = tmp_path / f"b{len(end)}{end == chr(13)}.toml"
        path.write_bytes(end.join(lines).encode() + end.encode())
        got.append(load_config(path).to_dict())
        train = tmp_path / f"t{len(end)}{end == chr(13)}.toml"
        train.write_bytes(end.join(["[train]", 'init = "scratch"', "epochs = 2"]).encode())
        assert TrainConfig.from_toml(train).epochs == 2
    assert got[0] == got[1] == got[2]
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('name = "caf\xe9"'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml is not valid TOML: not UTF-8 text"):
        load_config(bad)


def test_the_bench_logs_under_the_runners_name_whichever_room_logs(tmp_path, caplog) -> None:
    """The runner's split moved code into assemble / source / sweep_run; their log lines keep the name the command
    line printed before (``ecgtransfer.bench.runner``)."""
    import logging

    from ecgtransfer.bench import assemble, source, sweep_run

    assert {assemble.log.name, source.log.name, sweep_run.log.name} == {"ecgtransfer.bench.runner"}
    (tmp_path / "results.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assemble.earlier_invocations(tmp_path)
    assert caplog.records and {r.name for r in caplog.records} == {"ecgtransfer.bench.runner"}
