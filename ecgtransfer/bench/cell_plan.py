"""What the cells train: the target split they share, each cell's TrainConfig and budget, and the plan's estimate.

Every cell trains on the same validation and test parts of the target store (:func:`target_split`, capped to fit the
time budget) and on its fraction's subsample of the training part; :func:`cell_config` is the one definition of a
cell's :class:`~ecgtransfer.training.config.TrainConfig` (the arm's init, optimiser mode and learning rates over
the budget every arm shares), :func:`cell_budget` its steps per epoch and epochs. :func:`majority_validation` and
:func:`target_check` say whether ``target_f1`` measures anything; :func:`plan_estimate` what a grid will cost.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ecgtransfer.bench.arms import ArmConfig
from ecgtransfer.bench.config import BenchConfig
from ecgtransfer.bench.fractions import cap_evaluation
from ecgtransfer.bench.sweeps import setting_change
from ecgtransfer.store import SegmentStore
from ecgtransfer.training.config import TrainConfig

#: How the cells' macro-F1 averages classes (``ecgtransfer.training.metrics``): over the classes with support
#: in the evaluated split. Results without this key used the older label set (true labels or predictions).
MACRO_F1_DEFINITION = "support"


def target_split(store: SegmentStore, cfg: BenchConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    t = cfg.task
    s = t.data_split.apply(store)
    parts = {p: np.asarray(getattr(s, p), dtype=np.int64) for p in ("train", "val", "test")}
    full_sizes = {p: int(len(idx)) for p, idx in parts.items()}
    # patients of the whole (uncapped) val and test parts: a source model must never have trained on them
    heldout = sorted({str(x) for p in ("val", "test") for x in store.patient_ids[parts[p]]})
    parts["val"] = cap_evaluation(parts["val"], store.labels, t.max_val_segments, seed=t.split_seed)
    parts["test"] = cap_evaluation(parts["test"], store.labels, t.max_test_segments, seed=t.split_seed + 1)
    pats = {p: sorted({str(x) for x in store.patient_ids[idx]}) for p, idx in parts.items()}
    info: dict[str, Any] = {
        "method": t.split, "seed": t.split_seed,
        **{f"n_{p}": int(len(idx)) for p, idx in parts.items()},
        **{f"patients_{p}": len(v) for p, v in pats.items()},
        "patients": pats,
        "class_counts": {p: {c: int((store.labels[idx] == i).sum()) for i, c in enumerate(store.class_names)}
                         for p, idx in parts.items()},
        "notes": [],
        "full_sizes": full_sizes,
        "heldout_patients": heldout,
    }
    for p in ("val", "test"):
        if len(parts[p]) < full_sizes[p]:
            info["notes"].append(
                f"The {p} split is capped at {len(parts[p])} of its {full_sizes[p]} segments (drawn per class in "
                f"proportion, seeded, the same for every cell) to fit the time budget; class shares and hence +P "
                "are those of the full split, but the intervals of rare classes are wider.")
    if t.split == "patient":
        info["notes"].append(
            f"Patient-wise split within the store's records (val {t.val_fraction:g}, test {t.test_fraction:g} "
            "of the patients, class-stratified): no patient's beats are in two parts.")
    return parts, info


def majority_validation(store: SegmentStore, parts: Mapping[str, np.ndarray], tc: "TrainConfig"
                        ) -> dict[str, Any]:
    """Validation macro-F1 (and selection-F1) of the majority classifier: always the training part's most frequent
    class (the engine's ``majority_metrics``), on the validation part a run of ``tc`` (at its seed) scores, in the
    classes the cells score, weighted as the cells' validation is (``validation_prevalence``)."""
    from ecgtransfer.training.data import run_parts_of, validation_weights
    from ecgtransfer.training.metrics import majority_metrics

    used = run_parts_of(store, parts, tc)
    names = used.class_names
    y_train = used.label_map[np.asarray(store.labels)[used.parts["train"]]]
    y_val = used.label_map[np.asarray(store.labels)[used.parts["val"]]]
    if not len(y_train) or not len(y_val):
        return {"predicts": None, "macro_f1": None, "n_val": int(len(y_val))}
    maj = used.majority
    m = majority_metrics(maj, y_val, names, validation_weights(store, used, tc.validation_prevalence))
    return {"predicts": names[maj], "macro_f1": float(m["macro_f1"]), "selection_f1": m.get("selection_f1"),
            "accuracy": float(m["accuracy"]), "n_val": int(len(y_val))}


def target_check(target: float, majority: Mapping[str, Any]) -> dict[str, Any]:
    """Whether ``target_f1`` lies above the majority classifier's validation macro-F1 (a target at or below it is
    reached by a model that always answers the majority class, so steps to it measure nothing)."""
    mf = majority.get("macro_f1")
    below = mf is not None and target <= mf
    text = (f"target_f1 {target:g} is at or below the majority classifier's validation macro-F1 {mf:.3f} "
            f"(always {majority.get('predicts')}): reaching it shows nothing; raise bench.target_f1 above it"
            if below else f"target_f1 {target:g} is above the majority classifier's validation macro-F1 "
                          + ("n/a" if mf is None else f"{mf:.3f}"))
    return {"target": target, "majority_val_macro_f1": mf, "below_majority": bool(below), "text": text}


def cell_config(cfg: BenchConfig, arm: ArmConfig, *, encoding: str, seed: int, device: str, init: str,
                lr_scale: float = 1.0, **changes: Any) -> "TrainConfig":
    """The TrainConfig of one cell: ``cfg.base`` (the budget every cell shares: ``[bench]`` training keys,
    ``[train]``, the split) with the cell's coordinates and the arm's init, model and optimiser mode, its learning
    rate(s) times ``lr_scale`` (the LR sweep's factor; a tiered arm scales the whole triple), then ``changes``
    (TrainConfig fields, e.g. the epochs ``min_steps`` gives)."""
    o: dict[str, Any] = {}
    lrs = tuple(float(x) * lr_scale for x in cfg.arm_lrs(arm))
    if arm.optim == "tiered":
        tiers, freeze = lrs, ()
    elif arm.optim == "uniform":
        lr = cfg.arm_lr(arm) * lr_scale
        tiers, freeze = (lr, lr, lr), ()
    else:  # linear-probe: only the head trains, at the arm's LR
        lr = cfg.arm_lr(arm) * lr_scale
        tiers, freeze = (lr, lr, lr), ("features_1", "features_2")
    if arm.tier_preset is not None:  # a fixed recipe: its own learning rates and optimiser settings, over the
        from ecgtransfer.models.tiers import PRESETS  # shared ones ([train] weight_decay, [bench] optimizer...)
        from ecgtransfer.training.config import PART_KEYS

        flat = {name: key for key, (part, name) in PART_KEYS.items() if part == "optim"}
        o.update({flat[name]: value for name, value in PRESETS[arm.tier_preset].items()})
        tiers = tuple(PRESETS[arm.tier_preset]["lrs"])
        o["tier_preset"] = arm.tier_preset
    if arm.model is not None:
        o["model"] = arm.model
    if arm.weight_decay is not None:
        o["weight_decay"] = arm.weight_decay
    if arm.grad_clip is not None:
        o["grad_clip"] = arm.grad_clip or None  # 0: no clipping
    o.update(init=init, encoding=encoding, tiers=tuple(tiers), freeze=tuple(freeze), seed=int(seed), device=device)
    o.update(changes)
    return cfg.base.replace(**o)


def cell_budget(cfg: BenchConfig, train_idx: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """``(steps_per_epoch, epochs)`` of a cell training on ``train_idx``.

    Steps per epoch are those of the training engine's batch plan (one process); the epochs are
    ``cfg.epochs`` raised to reach ``cfg.min_steps`` (:meth:`BenchConfig.cell_epochs`). They depend only on
    the cell's subsample, which all arms of a (fraction, seed) share, so every arm gets the same budget.
    """
    from ecgtransfer.training.data import BatchPlan

    spe = len(BatchPlan(train_idx, labels, cfg.batch_size, 0))
    return spe, cfg.cell_epochs(spe)


#: images/s a ResNet-50 trains at, roughly, by device type: the range of the plan's time estimate (CPU: 2-core
#: fp32 at 224 px to AMX bf16 at 32 px, benchmarks/results; CUDA: a mid-range card to an H100-class one)
TRAIN_RATE_RANGE = {"cpu": (10.0, 120.0), "cuda": (500.0, 3000.0)}
#: a plan whose optimistic estimate passes this many hours is warned about before any cell runs
PLAN_WARN_HOURS = 24.0


def plan_estimate(steps: Sequence[int], batch_size: int, device: str) -> tuple[str, bool]:
    """``(one line, warn)`` saying what a bench will train before it starts: its cells, their optimiser steps
    ``steps [cells]`` (each capped as the engine caps it), the images and a time range from
    :data:`TRAIN_RATE_RANGE`; ``warn`` when even the fast end of the range passes :data:`PLAN_WARN_HOURS`
    (a 2,000-cell grid or ``epochs = 100000``: the user hears it before the first cell, not after a day)."""
    total = int(sum(steps))
    images = total * int(batch_size)
    slow, fast = TRAIN_RATE_RANGE["cuda" if str(device).startswith("cuda") else "cpu"]

    def hours(rate: float) -> str:
        h = images / rate / 3600.0
        return f"{h:.1f} h" if h < 48 else f"{h / 24:.0f} days"

    line = (f"{len(steps)} grid cells to train (sweeps and the source model not counted), {total:,} optimiser steps of "
            f"batch {batch_size} = {images:,} images: about {hours(fast)} to {hours(slow)} of training at "
            f"{fast:g}-{slow:g} images/s (a ResNet-50 on {device})")
    return line, images / fast / 3600.0 > PLAN_WARN_HOURS


def arm_settings(cfg: BenchConfig, arm: ArmConfig, scale: float, settings: Mapping[str, float] | None = None
                  ) -> dict[str, Any]:
    """What an arm's cells train with (its sweep's factor and swept settings applied; a preset's own): the tier
    learning rates, the optimiser, weight decay and gradient clipping, read from :func:`cell_config` (their one
    definition)."""
    tc = cell_config(cfg, arm, encoding=cfg.arm_encodings(arm)[0], seed=0, device="cpu", init="scratch",
                     lr_scale=scale, **setting_change(settings or {}))
    return {"lrs_used": [float(x) for x in tc.tiers], "optimizer_used": tc.optimizer,
            "weight_decay_used": float(tc.weight_decay), "grad_clip_used": tc.grad_clip}


def own_value(settings: Mapping[str, Any], field: str) -> float:
    """An arm's own value of a swept setting, from :func:`arm_settings` (clipping off is 0)."""
    return float(settings[f"{field}_used"] or 0.0)
