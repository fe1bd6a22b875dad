"""The bench's sweeps: sweep-point names, the edge-of-grid rule, the weight-decay and clipping stages end to end."""

from __future__ import annotations

import json

import pytest

from ecgtransfer.bench.sweeps import SweepPoint, grid_edge, parse_sweep_arm, setting_change, sweep_arm_name


@pytest.mark.parametrize("arm,factor,settings,name", [
    ("scratch", 0.3, {}, "scratch@lr0.3"),
    ("scratch-tiered", 10.0, {}, "scratch-tiered@lr10"),
    ("ecg-tiered", 3.0, {"weight_decay": 0.01}, "ecg-tiered@lr3wd0.01"),
    ("a.b_c", 1.0, {"weight_decay": 0.0}, "a.b_c@lr1wd0"),
    ("cnn1d", 0.3, {"weight_decay": 1e-5}, "cnn1d@lr0.3wd1e-05"),
    ("clip-wd", 3.0, {"grad_clip": 0.0}, "clip-wd@lr3clip0"),
    ("x", 1e-2, {"grad_clip": 5.0, "weight_decay": 1e-3}, "x@lr0.01wd0.001clip5"),  # one order: SWEPT_SETTINGS'
])
def test_sweep_point_names_round_trip(arm, factor, settings, name):
    assert sweep_arm_name(arm, factor, settings) == name
    point = parse_sweep_arm(name)
    assert point.arm == arm and point.factor == factor and dict(point.settings) == settings


def test_a_grid_cells_arm_is_no_sweep_point():
    # arm names may hold "wd", "clip" or "lr" (only "@" marks a sweep point)
    for arm in ("scratch", "wd-arm", "lrwd", "clip", "imagenet-tiered"):
        assert parse_sweep_arm(arm) == SweepPoint(arm, None, ())
    with pytest.raises(ValueError, match="not a swept setting"):
        sweep_arm_name("a", 1.0, {"momentum": 0.9})


def test_setting_change_turns_a_zero_clip_off():
    assert setting_change({"grad_clip": 0.0, "weight_decay": 0.0}) == {"grad_clip": None, "weight_decay": 0.0}
    assert setting_change({"grad_clip": 2}) == {"grad_clip": 2.0}


@pytest.mark.parametrize("values,chosen,floor,edge", [
    ([0.3, 1, 3, 10], 10, None, "highest"),
    ([0.3, 1, 3, 10], 0.3, None, "lowest"),
    ([0.3, 1, 3, 10], 3, None, None),
    ([10, 0.3, 3, 1], 10, None, "highest"),  # order does not matter
    ([1], 1, None, None),  # one value: no grid, no edge
    ([0, 1e-4, 1e-2], 0, 0.0, None),  # weight decay 0: nothing lies below
    ([1e-4, 1e-2], 1e-4, 0.0, "lowest"),  # a positive lowest weight decay is an edge
    ([0, 1e-4, 1e-2], 1e-2, 0.0, "highest"),
])
def test_grid_edge(values, chosen, floor, edge):
    assert grid_edge(values, chosen, floor=floor) == edge


def test_wd_sweep_config_rules():
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.errors import ConfigError

    base = {"task": {"store": "s"}, "arms": ["scratch-uniform", "features"]}
    cfg = config_from_dict({**base, "bench": {"lr_sweep": [0.5, 2], "wd_sweep": [0, 1e-2]}})
    assert cfg.wd_sweep == (0.0, 0.01) and cfg.clip_sweep == ()
    assert cfg.arm_values(cfg.arm("scratch-uniform"), "wd_sweep") == (0.0, 0.01)
    assert cfg.arm_values(cfg.arm("features"), "wd_sweep") == ()  # a closed-form fit is not swept
    own = config_from_dict({**base, "bench": {"wd_sweep": [0, 1e-2]},
                            "arms": [{"name": "scratch-uniform", "wd_sweep": [], "clip_sweep": [0, 1]}]})
    assert own.arm_values(own.arm("scratch-uniform"), "wd_sweep") == ()
    assert own.arm_values(own.arm("scratch-uniform"), "clip_sweep") == (0.0, 1.0)
    with pytest.raises(ConfigError, match="not a swept setting"):
        own.arm_values(own.arm("scratch-uniform"), "lr_sweep")
    for key in ("wd_sweep", "clip_sweep"):
        for bad in ([-1e-4, 0], [0.01, 0.01], ["x"]):
            with pytest.raises(ConfigError, match=key):
                config_from_dict({**base, "bench": {key: bad}})
        with pytest.raises(ConfigError, match=key):
            config_from_dict({**base, "arms": [{"name": "a", "init": "scratch", key: [-1]}]})


def test_weight_decay_then_clipping_at_the_chosen_lr_factor(tmp_path):
    """The coordinate-wise sweep on a synthetic store: the LR factors at the arm's own settings, then each
    ``wd_sweep`` value at the chosen factor, then each ``clip_sweep`` value at the chosen factor and weight decay
    (the arm's own value of a setting is the point already trained); each stage's choice is its best validation
    point, the final point's cell becomes the grid cell, every seed trains with it, the report states it, and a
    re-run reuses every cell."""
    from ecgtransfer.bench import run
    from ecgtransfer.bench.config_toml import config_from_dict
    from test_bench_run import _synthetic_store

    store = _synthetic_store(tmp_path / "s", n_patients=8, per_patient=10)
    cfg = config_from_dict({
        "bench": {"name": "wd", "seeds": [0, 1], "image_size": 16, "epochs": 1, "batch_size": 8, "threads": 1,
                  "lr_sweep": [0.5, 2.0], "wd_sweep": [0.0, 0.5], "clip_sweep": [0.0, 0.5],
                  "bootstrap_replicates": 50, "arms": ["scratch-uniform"]},
        "task": {"store": str(store), "val_fraction": 0.25, "test_fraction": 0.3},
        "train": {"num_workers": 0, "weight_decay": 1e-4, "grad_clip": 1.0},
    })
    out = tmp_path / "out"
    res = run(cfg, out, progress=False)
    r = res.results
    assert res.failed == {} and r["complete"]
    w = r["sweeps"]["scratch-uniform"]
    f = w["chosen"]
    wd, clip = w["stages"]
    assert (wd["setting"], clip["setting"]) == ("weight_decay", "grad_clip")
    assert wd["own"] == pytest.approx(1e-4) and wd["values"] == pytest.approx([0.0, 1e-4, 0.5])
    assert wd["at"] == {"factor": f}
    cells = {c["key"]: c for c in w["cells"]}
    score = {k: c["val_selection_f1"] for k, c in cells.items()}

    def key(settings: dict) -> str:
        return f"{sweep_arm_name('scratch-uniform', f, settings)}__spectrogram__f1__s0"

    # stage 1: the weight decays at the chosen factor; the arm's own is the LR-sweep cell
    wd_curve = {float(k): v for k, v in wd["curve"]["spectrogram"].items()}
    assert wd_curve == {1e-4: w["curve"]["spectrogram"][f"{f:g}"], 0.0: score[key({"weight_decay": 0.0})],
                        0.5: score[key({"weight_decay": 0.5})]}
    wd_best = max(wd_curve, key=lambda x: (wd_curve[x], x == 1e-4, -x))
    assert wd["chosen"] == wd_best and wd["edge"] == grid_edge(list(wd_curve), wd_best, floor=0.0)
    fixed = {} if wd_best == 1e-4 else {"weight_decay": wd_best}
    # stage 2: clipping at the chosen factor and weight decay; the own clip (1.0) is the stage-1 choice's cell
    assert clip["own"] == 1.0 and clip["values"] == [0.0, 0.5, 1.0] and clip["at"] == {"factor": f, **fixed}
    clip_curve = {float(k): v for k, v in clip["curve"]["spectrogram"].items()}
    assert clip_curve[1.0] == wd_curve[wd_best]
    assert clip_curve[0.0] == score[key({**fixed, "grad_clip": 0.0})]
    assert clip_curve[0.5] == score[key({**fixed, "grad_clip": 0.5})]
    clip_best = max(clip_curve, key=lambda x: (clip_curve[x], x == 1.0, -x))
    assert clip["chosen"] == clip_best and clip["edge"] is None  # clipping has no edge rule (0 is "off")
    final = {**fixed, **({} if clip_best == 1.0 else {"grad_clip": clip_best})}
    assert w["chosen_settings"] == final and len(cells) == 6
    # every sweep cell trained with its own point's values (its cell file's train_config), not the arm's
    for k, c in cells.items():
        tc = json.loads((out / "cells" / f"{k}.json").read_text())["train_config"]
        assert tc["weight_decay"] == pytest.approx(c.get("weight_decay", 1e-4))
        assert tc["grad_clip"] == ((c["grad_clip"] or None) if "grad_clip" in c else 1.0)
        assert tc["tiers"] == pytest.approx([1e-3 * c["factor"]] * 3)  # scratch-uniform: the head's LR x factor
    # every grid cell trains with the chosen point (a cell file's train_config says so)
    arm = next(a for a in r["arms"] if a["name"] == "scratch-uniform")
    assert arm["weight_decay_used"] == pytest.approx(wd_best) and arm["wd_sweep"] == [0.0, 0.5]
    assert arm["settings_swept"] == final and arm["clip_sweep"] == [0.0, 0.5]
    for seed in (0, 1):
        cell = json.loads((out / "cells" / f"scratch-uniform__spectrogram__f1__s{seed}.json").read_text())
        assert cell["train_config"]["weight_decay"] == pytest.approx(wd_best)
        assert cell["train_config"]["grad_clip"] == (clip_best or None)
        assert cell["lr_scale"] == f
    grid0 = json.loads((out / "cells" / "scratch-uniform__spectrogram__f1__s0.json").read_text())
    assert grid0["from_sweep"] == key(final)
    md = (out / "report.md").read_text()
    assert "Then each further setting in turn" in md and "(arm's)" in md and "| weight decay |" in md
    assert ("At the edge of a setting's grid" in md) == bool(wd["edge"])
    assert ("At the edge of the sweep grid" in md) == bool(w["edge"])  # two factors: the choice is an edge
    assert w["edge"] in ("lowest", "highest")
    again = run(cfg, out, progress=False)
    assert again.computed == [] and again.results["sweeps"] == r["sweeps"]


def test_cells_at_the_arms_own_settings_keep_their_fingerprint(tmp_path):
    """Adding the setting stages must not invalidate finished benches: a point at the arm's own settings hashes
    exactly as before (no ``*_swept`` input; the grids are not inputs)."""
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.bench.runner import _Bench

    def bench(extra: dict) -> _Bench:
        cfg = config_from_dict({"bench": {"lr_sweep": [0.5, 2.0], **extra}, "task": {"store": "s"},
                                "arms": ["scratch-uniform"]})
        b = _Bench.__new__(_Bench)  # fingerprints need only the config and the choices
        b.cfg, b.lr_scale, b.choice, b.source_hash = cfg, {}, {}, None
        return b

    plain, swept = bench({}), bench({"wd_sweep": [0.0, 0.1], "clip_sweep": [0.0]})
    own_grids = config_from_dict({"bench": {"lr_sweep": [0.5, 2.0]}, "task": {"store": "s"},
                                  "arms": [{"name": "scratch-uniform", "wd_sweep": [0.0], "clip_sweep": [0.0]}]})
    arm, sarm = plain.cfg.arm("scratch-uniform"), swept.cfg.arm("scratch-uniform")
    inputs = plain.fingerprint_inputs(arm, 2.0)
    assert inputs == swept.fingerprint_inputs(sarm, 2.0) == plain.fingerprint_inputs(
        own_grids.arm("scratch-uniform"), 2.0)  # an arm's own grids are no input either
    # the inputs as the version before the setting stages hashed them (pinned: a new key re-runs old benches)
    assert sorted(inputs) == ["arm", "budget", "lr", "lr_scale", "lrs", "macro_f1", "record_confusion",
                              "split_rule", "split_seed"]
    assert sorted(inputs["arm"]) == ["grad_clip", "init", "lr", "lrs", "model", "name", "optim", "tier_preset",
                                     "weight_decay"]

    point = {"weight_decay": 0.1}
    assert plain.cell_fingerprint(arm, 2.0, point) != plain.cell_fingerprint(arm, 2.0)
    swept.choice["scratch-uniform"] = point  # a chosen setting is part of the grid cells' fingerprint
    assert swept.cell_fingerprint(sarm, 2.0) == plain.cell_fingerprint(arm, 2.0, point)
