"""Run a benchmark: every cell of the grid, resumably, then ``results.json`` and the reports.

The bench itself trains nothing by hand: each cell is one call of
:func:`ecgtransfer.training.fine_tune` on the target store with an explicit split (the fixed validation
and test patients, and the cell's subsample of the training split), the arm's initialisation and
optimiser mode, and the budget shared by every arm. ``ecg`` arms first train a source model on the
``[source]`` store (once per encoding, kept in ``OUT/source/<encoding>/``) and start from its best
checkpoint: the backbone transfers, the head is re-initialised when the class counts differ. A multi-label source
(PTB-XL's statements, :mod:`ecgtransfer.training.multilabel`) trains with sigmoid outputs and transfers its backbone
only (another label space); ``[source].lead`` says which of its leads the source model images
(:func:`source_input`).

Output directory::

    OUT/
      config.json        the resolved bench config
      cells/<key>.json   one finished cell each (the resume state; see :mod:`ecgtransfer.bench.cells`)
      runs/<key>/        each cell's run directory (metrics.jsonl, run.json; checkpoints only if kept)
      source/<encoding>/ source models of ``ecg`` arms (best.pt is kept: later cells load it)
      results.json       every cell, every metric, summaries, hardware
      report.md, report.html, figures/*.png
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from ecgtransfer import __version__
from ecgtransfer._atomic import atomic_write_json
from ecgtransfer._lock import FolderLock
from ecgtransfer._formats import RESULTS_FORMAT, RESULTS_FORMAT_VERSION
from ecgtransfer._outdir import check_output_dir
from ecgtransfer.bench.aggregate import baseline_arm, contrasts, primary_of, summarise
from ecgtransfer.bench.cells import BENCH_LAYOUT, CellStore
from ecgtransfer.bench.config import (
    ARM_LATER_FIELDS,
    SOURCE_LEAD_GRID,
    TASK_SPLIT_KEYS,
    ArmConfig,
    BenchConfig,
    SourceConfig,
    load_config,
)
from ecgtransfer.bench.fractions import cap_evaluation, subsample
from ecgtransfer.bench.grid import Cell, cells as grid_cells
from ecgtransfer.bench.hardware import hardware_info, hardware_line
from ecgtransfer.bench.report import write_reports
from ecgtransfer.bench.results import BenchResults, CellResult, invocations_of, read_results, upgrade_cell_counts
from ecgtransfer.bench.sweeps import (
    SETTING_KEYS,
    SWEPT_SETTINGS,
    SweptSetting,
    grid_edge,
    parse_sweep_arm,
    setting_change,
    sweep_arm_name,
)
from ecgtransfer.errors import BenchError, ConfigError, EcgTransferError, StoreError, WeightsUnavailableError
from ecgtransfer.signals.split import SplitConfig
from ecgtransfer.training.config import TrainConfig
from ecgtransfer.training.run_files import read_json_object, read_split
from ecgtransfer.signals.split import SPLIT_RULE_VERSION
from ecgtransfer.store import SegmentStore

if TYPE_CHECKING:  # training.data imports torch: only where a cell runs
    from ecgtransfer.training.data import RunParts

log = logging.getLogger(__name__)

#: How the cells' macro-F1 averages classes (``ecgtransfer.training.metrics``): over the classes with support
#: in the evaluated split. Results without this key used the older label set (true labels or predictions).
MACRO_F1_DEFINITION = "support"


@dataclass
class BenchResult:
    """What :func:`run` returns.

    Attributes:
        out: the output directory.
        results: the content of ``results.json`` (:meth:`typed` gives it as :class:`BenchResults`).
        paths: ``{"results", "md", "html", "figures"}``.
        computed: keys of the cells trained by this call.
        reused: keys of finished cells loaded from ``OUT/cells``.
        skipped: ``{arm: reason}`` of arms that could not run.
        failed: ``{cell key: error}`` of cells whose training failed (retried on the next run).
    """

    out: Path
    results: dict[str, Any]
    paths: dict[str, Path]
    computed: list[str]
    reused: list[str]
    skipped: dict[str, str]
    failed: dict[str, str]

    @property
    def summary(self) -> dict[str, Any]:
        return self.results["summary"]

    @property
    def typed(self) -> BenchResults:
        return BenchResults.from_dict(self.results, self.out / "results.json")

    @property
    def complete(self) -> bool:
        return bool(self.results.get("complete"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _split_of(store: SegmentStore, cfg: BenchConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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


def _history_rows(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Compact per-epoch rows with cumulative elapsed seconds (training + validation time)."""
    rows = []
    elapsed = 0.0
    for h in history:
        elapsed += float(h.get("epoch_time_s") or 0.0) + float(h.get("eval_time_s") or 0.0)
        val = h.get("val") or {}
        rows.append({
            "epoch": int(h["epoch"]), "step": int(h.get("step", 0)), "partial": bool(h.get("partial", False)),
            "elapsed_s": elapsed, "train_loss": (h.get("train") or {}).get("loss"),
            "train_accuracy": (h.get("train") or {}).get("accuracy"),
            "val_loss": val.get("loss"), "val_accuracy": val.get("accuracy"), "val_macro_f1": val.get("macro_f1"),
            "images_per_s": h.get("images_per_s"), "peak_memory_mb": h.get("peak_memory_mb"),
            **({"val_macro_auc": val["macro_auc"]} if "macro_auc" in val else {}),  # a multilabel (source) run
        })
    return rows


def _step_curve(history_rows: Sequence[Mapping[str, Any]], step_evals: Sequence[Mapping[str, Any]]
                ) -> list[dict[str, Any]]:
    """The validation learning curve in optimiser steps: the epoch-end rows and the evaluations every
    ``val_every_steps`` steps (``TrainResult.step_evals``), ordered by step; what steps-to-target reads."""
    rows = [{"epoch": int(h["epoch"]), "step": int(h["step"]), "val_macro_f1": h.get("val_macro_f1"),
             "within_epoch": False} for h in history_rows]
    rows += [{"epoch": int(e["epoch"]), "step": int(e["step"]), "val_macro_f1": e.get("val_macro_f1"),
              "within_epoch": True} for e in step_evals]
    return sorted(rows, key=lambda r: (r["step"], not r["within_epoch"]))


def _clean_metrics(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    keep = ("n", "loss", "accuracy", "macro_f1", "selection_f1", "macro_auroc", "macro_classes", "per_class",
            "confusion_matrix", "class_names", "notes", "prevalence", "weighted_n", "decision",
            "macro_auc", "fmax", "auc", "undefined")  # the last four: a multilabel (source) run's
    return {k: m[k] for k in keep if k in m}


def _arm_settings(cfg: BenchConfig, arm: ArmConfig, scale: float, settings: Mapping[str, float] | None = None
                  ) -> dict[str, Any]:
    """What an arm's cells train with (its sweep's factor and swept settings applied; a preset's own): the tier
    learning rates, the optimiser, weight decay and gradient clipping, read from :func:`cell_config` (their one
    definition)."""
    tc = cell_config(cfg, arm, encoding=cfg.arm_encodings(arm)[0], seed=0, device="cpu", init="scratch",
                     lr_scale=scale, **setting_change(settings or {}))
    return {"lrs_used": [float(x) for x in tc.tiers], "optimizer_used": tc.optimizer,
            "weight_decay_used": float(tc.weight_decay), "grad_clip_used": tc.grad_clip}


def _own_value(settings: Mapping[str, Any], field: str) -> float:
    """An arm's own value of a swept setting, from :func:`_arm_settings` (clipping off is 0)."""
    return float(settings[f"{field}_used"] or 0.0)


def _mean_curve(curve: Mapping[str, Mapping[float, float | None]], points: Sequence[float]) -> dict[float, float]:
    """Per sweep point, the mean validation score over the encodings (only points every encoding scored)."""
    return {p: float(np.mean(v)) for p in points
            if (v := [c[p] for c in curve.values() if c.get(p) is not None]) and len(v) == len(curve)}


#: the earlier name of :func:`ecgtransfer.bench.results.upgrade_cell_counts` (the one place results are upgraded)
_counts_from_run = upgrade_cell_counts


def _majority_line(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The majority classifier's test metrics (the engine's ``test_metrics["majority"]``), with the class."""
    if not m:
        return None
    return {**(_clean_metrics(m) or {}), "predicts": m.get("predicts")}


def _throughput(history: Sequence[Mapping[str, Any]], device: str) -> dict[str, Any]:
    images = sum(int((h.get("train") or {}).get("n") or 0) for h in history)
    seconds = sum(float(h.get("epoch_time_s") or 0.0) for h in history)
    eval_s = sum(float(h.get("eval_time_s") or 0.0) for h in history)
    mems = [h.get("peak_memory_mb") for h in history if h.get("peak_memory_mb") is not None]
    val_images = sum(int((h.get("val") or {}).get("n") or 0) for h in history)
    waits = [h.get("data_wait_s") for h in history]
    data_s = sum(float(w) for w in waits) if waits and all(w is not None for w in waits) else None
    return {
        "data_seconds": data_s,  # of train_seconds: waiting for batches; the rest is the device's work
        "data_share": data_s / seconds if data_s is not None and seconds > 0 else None,
        "eval_images_per_s": val_images / eval_s if eval_s > 0 else None,
        "train_images": images,
        "train_seconds": seconds,
        "eval_seconds": eval_s,
        "train_images_per_s": images / seconds if seconds > 0 else None,
        "peak_memory_bytes": int(max(mems) * 2**20) if mems else None,
        "peak_memory_kind": "cuda max_memory_allocated" if device.startswith("cuda") else "process peak RSS",
    }


#: What each cell keeps per evaluated record (part of the cell fingerprint: cells without it are recomputed).
RECORD_CONFUSION_VERSION = 1


def predict_part(run_dir: Path, store: SegmentStore, indices: np.ndarray, device: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(true labels [n], probabilities [n, K], store indices [n], decided labels [n])`` of a run's best model on
    ``indices`` (in the run's class numbering; segments of classes the run left out are dropped), by the one scoring
    path (:func:`ecgtransfer.training.evaluation.score_run`); the decided labels are those of the checkpoint's
    decision rule, as the run's own test metrics count them."""
    from ecgtransfer.training.evaluation import load_run, score_run

    run = load_run(run_dir, checkpoint="best", device=device)
    part = score_run(run, store, indices)
    return part.labels, part.probs, part.indices, run.decision.apply(part.probs)


def record_confusion(labels: np.ndarray, preds: np.ndarray, record_ids: np.ndarray, k: int, split: str
                     ) -> dict[str, Any]:
    """``{"split", "records": [rid], "matrices": [[K, K] per record]}``: each record's confusion matrix (true x
    predicted), what the bootstrap over records resamples."""
    from ecgtransfer.training.metrics import confusion_matrix

    rec = np.asarray(record_ids).astype(str)
    rids = sorted(set(rec.tolist()))
    return {"split": split, "records": rids,
            "matrices": [confusion_matrix(labels[rec == r], preds[rec == r], k).astype(int).tolist() for r in rids]}


def _record_confusion_from_metrics(m: Mapping[str, Any] | None, split: str) -> dict[str, Any] | None:
    """Per-record confusion matrices from a metrics dict's ``aami.records`` when it holds them, else None."""
    recs = ((m or {}).get("aami") or {}).get("records") or {}
    if not recs or not all("confusion_matrix" in v for v in recs.values()):
        return None
    rids = sorted(recs)
    return {"split": split, "records": rids, "matrices": [recs[r]["confusion_matrix"] for r in rids]}


def _drop_checkpoints(run_dir: Path) -> None:
    for name in ("last.pt", "best.pt"):
        p = run_dir / name
        if p.exists():
            p.unlink()


class _Bench:
    def __init__(self, cfg: BenchConfig, out: Path, *, resume: bool, progress: bool, command: str | None) -> None:
        self.cfg = cfg
        self.out = out
        self.resume = resume
        self.progress = progress
        self.command = command
        self.cellstore = CellStore(out)
        self.skipped: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.computed: list[str] = []
        self.reused: list[str] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.source_models: dict[str, dict[str, Any]] = {}
        self.run_id = uuid.uuid4().hex[:12]
        self.started_at = _now()
        self.t0 = time.perf_counter()
        self.previous_invocations = _previous_invocations(out)
        self.imagenet_checks: dict[str, str | None] = {}  # weights version -> why unavailable (None: available)
        self.interrupted: str | None = None
        self.recomputed: dict[str, str] = {}  # cell key -> why its earlier result could not be reused
        self.config_text: str | None = None  # the TOML text of the config file, read once (for results.json)
        self.lr_scale: dict[str, float] = {}  # arm -> the LR factor its sweep chose
        self.choice: dict[str, dict[str, float]] = {}  # arm -> the settings its sweep chose away from its own
        self.sweeps: dict[str, dict[str, Any]] = {}  # arm -> the sweep's cells, validation curve and choice

    # -- setup ------------------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.store = SegmentStore(cfg.store_path)
        self.parts, self.split_info = _split_of(self.store, cfg)
        self.eval_split = cfg.task.eval_split
        if self.eval_split == "test" and self.parts["test"].size == 0:
            self.eval_split = "val"
            self.split_info["notes"].append(
                "The split has no test part (e.g. de Chazal without the DS2 records), so the tables report the "
                "validation split, which also selected the best epoch: these figures are optimistic.")
            log.warning("split %s of %s has no test part: reporting the validation split", cfg.task.split,
                        self.store.path)
        self.majority_val = majority_validation(self.store, self.parts, cfg.base)
        self.target_check = target_check(cfg.target_f1, self.majority_val)
        if self.target_check["below_majority"]:
            log.warning("bench %s: %s", cfg.name, self.target_check["text"])
        self.hardware = hardware_info(cfg.device)
        self.device = self.hardware["device"]
        self.fingerprint = cfg.budget_fingerprint()
        self.grid = grid_cells(cfg)

    def fingerprint_inputs(self, arm: ArmConfig, lr_scale: float | None = None,
                           settings: Mapping[str, float] | None = None) -> dict[str, Any]:
        """Everything a cell's result depends on besides its coordinates (JSON-normalised, stored per cell).

        ``lr_scale``: the LR factor the cell trains with (default: the one its arm's sweep chose, else 1);
        ``settings``: swept settings away from the arm's own (default: those its sweep chose). The grids
        themselves (``lr_sweep``, ``wd_sweep``...) are not inputs: a point's cell is the same whichever grid it
        belongs to."""
        if lr_scale is None:
            lr_scale = self.lr_scale.get(arm.name, 1.0)
        if settings is None:
            settings = self.choice.get(arm.name, {})
        d = {"budget": self.cfg.budget_dict(),
             "arm": {k: v for k, v in vars(arm).items()
                     if k not in ("description", "encodings", "lr_sweep", *SETTING_KEYS)
                     and not (k in ARM_LATER_FIELDS and v == ARM_LATER_FIELDS[k])},
             "lr_scale": float(lr_scale),
             "lrs": self.cfg.arm_lrs(arm), "lr": self.cfg.arm_lr(arm), "split_seed": self.cfg.task.split_seed,
             "macro_f1": MACRO_F1_DEFINITION, "split_rule": SPLIT_RULE_VERSION,
             "record_confusion": RECORD_CONFUSION_VERSION}
        for name, value in settings.items():  # only swept points carry them: earlier cells keep their fingerprints
            d[f"{name}_swept"] = float(value)
        if arm.init == "ecg" or arm.train_data == "pooled":  # only these arms depend on the source task
            d["source_store"] = self.source_hash
            d["source"] = source_settings(self.cfg.source)
        return json.loads(json.dumps(d, sort_keys=True, default=str))

    def cell_fingerprint(self, arm: ArmConfig, lr_scale: float | None = None,
                         settings: Mapping[str, float] | None = None) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint_inputs(arm, lr_scale, settings), sort_keys=True
                                         ).encode()).hexdigest()[:16]

    # -- prerequisites ----------------------------------------------------------------------------
    def check_arms(self) -> None:
        """Mark arms whose prerequisites are missing as skipped, with the reason."""
        self.source_hash = None
        self.source_overlap: str | None = None
        self.source_lead: int | str | None = None  # the source model's encoder lead ([source].lead)
        self.source_input = ""  # what the source model reads, in words
        self.pooled_store: SegmentStore | None = None
        if any(a.init == "ecg" or a.train_data == "pooled" for a in self.cfg.arms):
            try:
                self.source_store = SegmentStore(self.cfg.source_store_path)
                self.source_hash = self.source_store.manifest_hash
                self.source_overlap = source_overlap(self.store, self.source_store)
                assert self.cfg.source is not None
                self.source_lead, self.source_input, problem = source_input(
                    self.store, self.source_store, self.cfg.source, self.cfg.base.encoding_params)
                if problem:
                    for a in self.cfg.arms:
                        if a.init == "ecg":
                            self.skipped[a.name] = problem
                if self.source_overlap:
                    log.warning("the source store %s %s: its patients in the target's validation or test part "
                                "(%d patients) are dropped from the source training", self.source_store.path,
                                self.source_overlap, len(self.split_info["heldout_patients"]))
            except StoreError as exc:
                self.source_store = None
                for a in self.cfg.arms:
                    if a.init == "ecg" or a.train_data == "pooled":
                        self.skipped[a.name] = f"source store unavailable: {exc}"
        else:
            self.source_store = None
        pooled = [a.name for a in self.cfg.arms if a.train_data == "pooled" and a.name not in self.skipped]
        if pooled:
            try:
                self.pooled_store = pooled_store(self.store, self.source_store, self.out / "pooled" / "store")
            except StoreError as exc:
                for name in pooled:
                    self.skipped[name] = f"cannot pool the target and source stores: {exc}"
        from ecgtransfer.models.weight_registry import WEIGHT_NAMES, imagenet_unavailable

        for a in self.cfg.arms:
            if a.name in self.skipped:
                continue
            if a.init in WEIGHT_NAMES:
                reason = imagenet_unavailable(a.init, cache=self.imagenet_checks)
                if reason:
                    self.skipped[a.name] = reason
            elif a.init not in ("scratch", "ecg"):
                p = self.cfg.resolve_path(a.init)
                if not p.is_file():
                    self.skipped[a.name] = f"initial weights file {p} does not exist"
        for name, why in self.skipped.items():
            log.warning("arm %s skipped: %s", name, why)

    # -- source models ----------------------------------------------------------------------------
    def source_checkpoint(self, encoding: str) -> Path:
        """Train (or reuse) the source model of ``ecg`` arms for ``encoding``; its best checkpoint path."""
        from ecgtransfer.training import fine_tune

        if encoding in self.source_models and self.source_models[encoding].get("checkpoint"):
            return self.out / self.source_models[encoding]["checkpoint"]
        src = self.cfg.source
        assert src is not None and self.source_store is not None
        sdir = self.out / "source" / encoding
        marker = sdir / "source.json"
        excluded = list(self.split_info["heldout_patients"]) if self.source_overlap else []
        src_settings = source_settings(src)  # the store's manifest hash is checked
        fp = hashlib.sha256(json.dumps({"budget": self.fingerprint, "source": src_settings, "enc": encoding,
                                        "store": self.source_hash, "macro_f1": MACRO_F1_DEFINITION,
                                        "excluded_patients": excluded}, sort_keys=True, default=str).encode()
                            ).hexdigest()[:16]
        if self.resume and marker.is_file():
            try:
                info = read_json_object(marker, "source model record", error=BenchError)
            except BenchError as exc:
                log.warning("%s; the source model is trained again", exc)
                info = {}
            if not isinstance(info.get("checkpoint"), (str, type(None))):
                info = {}
            # the checkpoint is stored relative to OUT (the bench directory may move)
            if info.get("fingerprint") == fp and info.get("checkpoint") and (self.out / info["checkpoint"]).is_file():
                if not info.get("credibility"):  # a source model of an older version: check it now
                    info["credibility"] = self.source_credibility(self.out / info["checkpoint"])
                    atomic_write_json(marker, info)
                self.source_models[encoding] = info
                log.info("reusing source model %s", self.out / info["checkpoint"])
                return self.out / info["checkpoint"]
        run_dir = sdir / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        src_arm = ArmConfig("source", init=src.init, optim=src.optim)
        tc = cell_config(self.cfg, src_arm, encoding=encoding, seed=src.seed, device=self.device, init=src.init,
                         epochs=src.epochs or self.cfg.epochs,
                         max_steps=src.max_steps if src.max_steps else self.cfg.max_steps, progress=self.progress,
                         **dict(src.train))  # the source task's own TrainConfig fields last
        # the source store's own split (the split settings' defaults, its method and seed), not the target's
        src_split = {TASK_SPLIT_KEYS[k]: v for k, v in {**self.cfg.train, **src.train}.items() if k in TASK_SPLIT_KEYS}
        tc = replace(tc, data_split=SplitConfig(**{**src_split, "method": src.split, "seed": src.seed}))
        if self.source_lead is not None:  # [source].lead: which of the source store's leads the model images
            tc = tc.replace(encoding_params={**tc.encoding_params, "lead": self.source_lead})
        split_indices = None
        exclusion: dict[str, Any] | None = None
        if excluded:
            split_indices, exclusion = exclude_patients(self.source_store, tc, excluded,
                                                        patients_database=self.store.database)
            exclusion["why"] = f"the source store {self.source_overlap}"
            log.warning("source model (%s): dropped the %d segments of %d target val/test patients from the source "
                        "store before splitting it", encoding, exclusion["dropped_segments"],
                        len(exclusion["dropped_patients"]))
        t0 = time.perf_counter()
        log.info("training the source model on %s (%s)", self.source_store.path, encoding)
        res = fine_tune(self.source_store, tc, out=run_dir, split_indices=split_indices)
        wall = time.perf_counter() - t0
        ckpt = Path(res.paths.get("best", run_dir / "best.pt"))
        if not ckpt.is_file():
            ckpt = Path(res.paths.get("last", run_dir / "last.pt"))
        last = run_dir / "last.pt"
        if last.exists() and last != ckpt:
            last.unlink()
        rel = os.path.relpath(ckpt.resolve(), self.out.resolve())
        info = {"fingerprint": fp, "checkpoint": rel, "store": str(self.source_store.path),
                "store_manifest_hash": self.source_hash, "database": self.source_store.database,
                "task": self.source_store.task, "class_names": self.source_store.class_names,
                "multilabel": bool(self.source_store.multilabel), "input": self.source_input,
                "best_epoch": res.best_epoch, "val": _clean_metrics(res.best_metrics),
                "test": _clean_metrics(res.test_metrics), "wall_s": wall, "steps": res.steps,
                "train_config": res.config.to_dict(), "history": _history_rows(res.history),
                "exclusion": exclusion, "credibility": self.source_credibility(ckpt)}
        if not info["credibility"].get("learned"):
            log.warning("source model (%s): %s; its arms get no verdict", encoding, info["credibility"]["text"])
        atomic_write_json(marker, info)
        self.source_models[encoding] = info
        return ckpt

    def source_credibility(self, ckpt: Path) -> dict[str, Any]:
        """The source model's validation macro-AUROC with a bootstrap interval over its validation records
        (:func:`ecgtransfer.bench.stats.source_credibility`); ``learned`` False marks "source did not learn"."""
        from ecgtransfer.bench.stats import source_credibility

        run_dir = ckpt.parent
        try:
            val = read_split(run_dir / "split.npz", len(self.source_store), parts=("val",))["val"]
        except EcgTransferError as exc:
            return {"learned": None, "text": f"not checked: the source run's split.npz is unreadable ({exc})"}
        if len(val) == 0:
            return {"learned": None, "text": "not checked: the source split has no validation part"}
        if self.source_store.multilabel:  # per-label AUCs of sigmoid outputs, resampled by patient
            from ecgtransfer.bench.stats import multilabel_source_credibility
            from ecgtransfer.training.multilabel import part_probabilities

            probs = part_probabilities(run_dir, self.source_store, val, self.device)
            return multilabel_source_credibility(np.asarray(self.source_store.targets)[val], probs,
                                                 self.source_store.patient_ids[val],
                                                 replicates=min(1000, self.cfg.bootstrap_replicates),
                                                 seed=self.cfg.bootstrap_seed)
        y, probs, idx, _ = predict_part(run_dir, self.source_store, val, self.device)
        return source_credibility(y, probs, self.source_store.record_ids[idx],
                                  replicates=min(1000, self.cfg.bootstrap_replicates), seed=self.cfg.bootstrap_seed)

    # -- cells ------------------------------------------------------------------------------------
    def plan_cell(self, cell: Cell) -> tuple[np.ndarray, "RunParts", int, int]:
        """``(drawn training segments, the parts the engine will use, steps per epoch, epochs)`` of ``cell``: its
        fraction's draw, then what the engine trains and validates on (classes left out, the majority cap), whose
        steps the budget counts (:func:`cell_budget`)."""
        from ecgtransfer.training.data import run_parts_of

        store = self.store
        train_idx = subsample(self.parts["train"], store.labels, store.patient_ids, cell.fraction,
                              mode=self.cfg.fraction_mode, seed=cell.seed)
        used = run_parts_of(store, {**self.parts, "train": train_idx}, self.cfg.base, cell.seed)
        spe, epochs = cell_budget(self.cfg, used.parts["train"], store.labels)
        return train_idx, used, spe, epochs

    def plan_pooled(self, cell: Cell, train_idx: np.ndarray, target_steps: int
                    ) -> tuple[dict[str, np.ndarray], "RunParts", int, int, int]:
        """A pooled cell's plan: ``(parts in the pooled store, the parts the engine will use, steps per epoch,
        epochs, optimiser steps)``. Its training part is the cell's target subsample and every segment of the
        source store; validation and test are the target's own parts (no source patient is a target patient: the
        stores are of different databases, :func:`pooled_store`). It trains as many optimiser steps as the source
        model plus ``target_steps`` (the cell's target budget): the compute of pretraining then fine-tuning."""
        from ecgtransfer.training.data import run_parts_of

        assert self.pooled_store is not None and self.source_store is not None
        n_target = len(self.store)
        parts = {"train": np.concatenate([np.asarray(train_idx, dtype=np.int64),
                                          n_target + np.arange(len(self.source_store), dtype=np.int64)]),
                 "val": np.asarray(self.parts["val"], dtype=np.int64),
                 "test": np.asarray(self.parts["test"], dtype=np.int64)}
        used = run_parts_of(self.pooled_store, parts, self.cfg.base, cell.seed)
        spe, _ = cell_budget(self.cfg, used.parts["train"], self.pooled_store.labels)
        source_steps = int(self.source_models[cell.encoding]["steps"]) if cell.encoding in self.source_models else 0
        steps = source_steps + int(target_steps)
        return parts, used, spe, max(1, math.ceil(steps / max(spe, 1))), steps

    def stale_budget(self, cell: Cell, done: Mapping[str, Any]) -> str | None:
        """Why a finished cell's budget is not this bench's (None: it is). Only ``min_steps`` makes a cell's epochs
        depend on its segments; cells of versions that counted the drawn segments (before the majority cap) may
        have trained another number of epochs, and are then recomputed."""
        if not self.cfg.min_steps:
            return None
        data = done.get("data") or {}
        had = data.get("target_epochs", data.get("epochs"))  # a pooled cell: the target budget it was given
        epochs = self.plan_cell(cell)[3]
        if had is None or int(had) == epochs:
            return None
        return f"its budget changed: it trained {had} epochs, min_steps now gives {epochs}"

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        from ecgtransfer.training import fine_tune

        cfg, store = self.cfg, self.store
        arm_name, factor, point_settings = parse_sweep_arm(cell.arm)
        arm = cfg.arm(arm_name)
        lr_scale = factor if factor is not None else self.lr_scale.get(arm_name, 1.0)
        settings = dict(point_settings) if factor is not None else dict(self.choice.get(arm_name, {}))
        train_idx, used, spe, epochs = self.plan_cell(cell)
        counts = np.bincount(store.labels[used.parts["train"]], minlength=store.num_classes)
        data = {"n_train": int(len(used.parts["train"])),
                "n_train_patients": int(len(set(store.patient_ids[used.parts["train"]]))),
                "train_class_counts": {c: int(counts[i]) for i, c in enumerate(store.class_names)},
                "n_train_drawn": int(len(train_idx)), "majority_capped": used.majority_capped,
                "n_val": int(len(used.parts["val"])), "n_test": int(len(used.parts["test"])),
                "steps_per_epoch": spe, "epochs": epochs}
        cell_store, split_indices = store, {"train": train_idx, "val": self.parts["val"], "test": self.parts["test"]}
        changes: dict[str, Any] = {"epochs": epochs}
        if arm.train_data == "pooled":
            self.source_checkpoint(cell.encoding)  # its steps are part of the pooled arm's budget
            target_steps = min(epochs * spe, cfg.max_steps) if cfg.max_steps else epochs * spe
            split_indices, pooled_used, p_spe, p_epochs, p_steps = self.plan_pooled(cell, train_idx, target_steps)
            cell_store = self.pooled_store
            changes = {"epochs": p_epochs, "max_steps": p_steps}
            n_target = len(store)
            ptrain = pooled_used.parts["train"]
            data.update(n_train=int(len(ptrain)), n_train_target=int((ptrain < n_target).sum()),
                        n_train_source=int((ptrain >= n_target).sum()), steps_per_epoch=p_spe, epochs=p_epochs,
                        target_epochs=epochs, target_steps_per_epoch=spe,
                        max_steps=p_steps, target_steps=int(target_steps),
                        source_steps=int(p_steps - target_steps),
                        train_class_counts={c: int(v) for c, v in zip(
                            store.class_names, np.bincount(cell_store.labels[ptrain], minlength=store.num_classes))})
        if arm.init == "ecg":
            init = str(self.source_checkpoint(cell.encoding).resolve())
        elif arm.init in ("scratch", "imagenet", "imagenet-v1", "imagenet-v2"):
            init = arm.init
        else:
            init = str(self.cfg.resolve_path(arm.init))
        tc = cell_config(cfg, arm, encoding=cell.encoding, seed=cell.seed, device=self.device, init=init,
                         lr_scale=lr_scale, **changes, **setting_change(settings),
                         progress=cfg.train["progress"] if "progress" in cfg.train else self.progress)
        if arm.init_head != "auto":
            tc = tc.replace(init_head=arm.init_head)
        multilabel_source = arm.init == "ecg" and self.source_store is not None and self.source_store.multilabel
        if multilabel_source:  # sigmoid outputs over other labels: the head never transfers
            tc = tc.replace(init_head="new")
        run_dir = self.out / "runs" / cell.key
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a half run of a killed bench: start the cell again
        started = _now()
        t0 = time.perf_counter()
        res = fine_tune(cell_store, tc, out=run_dir, split_indices=split_indices)
        wall = time.perf_counter() - t0
        # the eval split's per-record confusion matrices (the bootstrap over patients resamples them): from the
        # test metrics when they carry them, else one more pass of the best model over the eval split
        eval_metrics = res.test_metrics if self.eval_split == "test" else res.best_metrics
        rc = _record_confusion_from_metrics(eval_metrics, self.eval_split)
        if rc is None:  # the eval part as the engine scored it (a validation part majority-capped)
            eval_idx = used.parts[self.eval_split]
            y, probs, idx, decided = predict_part(run_dir, cell_store, eval_idx, self.device)
            rc = record_confusion(y, decided, cell_store.record_ids[idx], probs.shape[1], self.eval_split)
        if cell_store is not store:  # the pooled store qualifies ids ("mitdb:100"): the target's own ids, so that
            rc = target_record_ids(rc, store)  # the bootstrap pairs its records with the other arms'
        load = _load_report_dict(run_dir)
        if not cfg.keep_checkpoints:
            _drop_checkpoints(run_dir)
        from ecgtransfer.bench.stats import time_to_target

        history = _history_rows(res.history)
        hit = time_to_target(history, cfg.target_f1)
        # stopped by the cap (epochs / max_steps) while validation still improved: the best epoch is the last one
        last_epoch = max((h["epoch"] for h in history), default=None)
        capped = res.stopped in ("epochs", "max_steps") and res.best_epoch is not None and \
            last_epoch is not None and res.best_epoch >= last_epoch and len(history) > 1
        return {
            "cell": cell.to_dict(), "key": cell.key, "status": "done", "reason": None,
            "lr_scale": lr_scale, "lrs_used": list(tc.tiers), "capped_improving": bool(capped),
            **({"settings_swept": settings} if settings else {}),
            "fingerprint": self.cell_fingerprint(arm, lr_scale, settings),
            "fingerprint_inputs": self.fingerprint_inputs(arm, lr_scale, settings),
            "store_manifest_hash": store.manifest_hash, "bench_run_id": self.run_id, "started_at": started,
            "finished_at": _now(), "wall_s": wall,
            "data": data,
            "init": init if arm.init != "ecg" else
            f"ecg source model ({self.source_models[cell.encoding]['checkpoint']} in the bench directory)",
            "train_config": res.config.to_dict(), "steps": res.steps, "stopped": res.stopped,
            "best_epoch": res.best_epoch, "history": history,
            "step_curve": _step_curve(history, res.step_evals), "val": _clean_metrics(res.best_metrics),
            "test": _clean_metrics(res.test_metrics), "record_confusion": rc,
            "majority": _majority_line((res.test_metrics or {}).get("majority")),
            "time_to_target": None if hit is None else {"target": cfg.target_f1, "epoch": hit[0], "seconds": hit[1]},
            "throughput": _throughput(res.history, self.device),
            "load_report": _load_report(run_dir),
            **({"transfer": transfer_of(load, multilabel_source=self.source_store if multilabel_source else None)}
               if load is not None else {}),
            "run_dir": str(run_dir.relative_to(self.out)),
            "package_version": __version__,
        }

    # -- sweeps: learning rate, then weight decay and clipping -------------------------------------
    def run_sweeps(self) -> None:
        """Each arm's sweep (:mod:`ecgtransfer.bench.sweeps`) at ``sweep_at`` and the first seed, per encoding,
        chosen on validation ``selection_f1`` only: its LR factors, then, at the chosen factor, each setting of
        :data:`~ecgtransfer.bench.sweeps.SWEPT_SETTINGS` it lists values for (``wd_sweep``, ``clip_sweep``).
        The choice (one point per arm: the best mean over its encodings) then trains every cell of the arm; the
        sweep's cell of the chosen point is the grid cell of that fraction and seed."""
        cfg = self.cfg
        seed = int(cfg.seeds[0])
        for arm in cfg.arms:
            factors = sorted(cfg.arm_sweep(arm))
            if not factors or arm.name in self.skipped:
                continue
            encs = cfg.arm_encodings(arm)
            curve_i, cells = self._sweep_points(arm, [(f, {}) for f in factors], seed)
            curve = {enc: {factors[i]: v for i, v in c.items()} for enc, c in curve_i.items()}
            means = _mean_curve(curve, factors)
            chosen = max(means, key=lambda f: (means[f], -f)) if means else 1.0
            self.lr_scale[arm.name] = chosen
            base_lrs = cfg.arm_lrs(arm) if arm.optim == "tiered" else (cfg.arm_lr(arm),) * 3
            edge = grid_edge(factors, chosen) if means else None
            rec: dict[str, Any] = {
                "factors": factors, "seed": seed, "fraction": cfg.sweep_at, "metric": "val selection_f1",
                "curve": {enc: {f"{f:g}": v for f, v in c.items()} for enc, c in curve.items()},
                "mean_curve": {f"{f:g}": v for f, v in means.items()}, "chosen": chosen,
                "chosen_lrs": [x * chosen for x in base_lrs], "base_lrs": list(base_lrs), "cells": cells,
                "edge": edge,
                "note": None if means else "no sweep cell finished: the configured learning rates are used"}
            log.info("arm %s: LR sweep %s -> factor %g (validation selection-F1 %s)", arm.name, factors, chosen,
                     means.get(chosen))
            if edge:
                log.warning("arm %s: the chosen LR factor x%g is the sweep grid's %s value: the optimum may lie "
                            "beyond it (widen lr_sweep)", arm.name, chosen, edge)
            chosen_settings: dict[str, float] = {}
            if means and arm.name not in self.skipped:
                best_curve = {enc: c.get(chosen) for enc, c in curve.items()}  # the current best point, per encoding
                rec["stages"] = []
                for setting in SWEPT_SETTINGS:
                    values = sorted(cfg.arm_values(arm, setting.key))
                    if values and arm.name not in self.skipped:
                        chosen_settings, best_curve = self._setting_stage(arm, chosen, chosen_settings, setting,
                                                                          values, best_curve, seed, rec)
                rec["chosen_settings"] = dict(chosen_settings)
            if chosen_settings:
                self.choice[arm.name] = chosen_settings
            self.sweeps[arm.name] = rec
            # the chosen point's sweep cell is the grid cell of that fraction and seed (same settings)
            for enc in encs:
                src = self.cellstore.load(Cell(sweep_arm_name(arm.name, chosen, chosen_settings), enc, cfg.sweep_at,
                                               seed))
                target = Cell(arm.name, enc, cfg.sweep_at, seed)
                if src is None or src.get("status") != "done" or target not in self.grid:
                    continue
                done, _ = self.cellstore.check(target, fingerprint=self.cell_fingerprint(arm),
                                               store_hash=self.store.manifest_hash)
                if done is None:
                    grid_rec = dict(src, cell=target.to_dict(), key=target.key, from_sweep=src["key"])
                    self.cellstore.save(target, grid_rec)

    def _setting_stage(self, arm: ArmConfig, factor: float, fixed: Mapping[str, float], setting: SweptSetting,
                       values: Sequence[float], current: Mapping[str, float | None], seed: int, rec: dict[str, Any]
                       ) -> tuple[dict[str, float], dict[str, float | None]]:
        """One setting's stage of ``arm``'s sweep at LR ``factor`` and the settings chosen so far (``fixed``):
        the current best point (its per-encoding scores ``current``: the arm's own value of ``setting``) and a cell
        for each other value of ``values``. Appends the stage to ``rec["stages"]``; returns the settings and the
        per-encoding scores of the stage's choice (ties: the own value, then the smaller)."""
        own = float(fixed.get(setting.field, _own_value(_arm_settings(self.cfg, arm, factor), setting.field)))
        others = [v for v in values if v != own]
        points = [(factor, {**fixed, setting.field: v}) for v in others]
        curve, cells = self._sweep_points(arm, points, seed)
        grid = sorted({*values, own})
        by_value = {enc: {**{others[i]: sc for i, sc in curve.get(enc, {}).items()}, own: sc_own}
                    for enc, sc_own in current.items()}
        means = _mean_curve(by_value, grid)
        best = max(means, key=lambda v: (means[v], v == own, -v)) if means else own
        edge = grid_edge(grid, best, floor=setting.floor) if means and setting.edges else None
        rec["stages"].append({
            "setting": setting.field, "label": setting.label, "key": setting.key, "values": grid, "own": own,
            "at": {"factor": factor, **fixed},
            "curve": {enc: {f"{v:g}": c.get(v) for v in grid} for enc, c in by_value.items()},
            "mean_curve": {f"{v:g}": m for v, m in means.items()}, "chosen": best, "edge": edge})
        rec["cells"].extend(cells)
        log.info("arm %s: %s sweep %s at x%g -> %g (validation selection-F1 %s)", arm.name, setting.label, grid,
                 factor, best, means.get(best))
        if edge:
            log.warning("arm %s: the chosen %s %g is the sweep grid's %s value: the optimum may lie beyond it "
                        "(widen %s)", arm.name, setting.label, best, edge, setting.key)
        if best == own:
            return dict(fixed), dict(current)
        return {**fixed, setting.field: best}, {enc: c.get(best) for enc, c in by_value.items()}

    def _sweep_points(self, arm: ArmConfig, points: Sequence[tuple[float, Mapping[str, float]]], seed: int
                      ) -> tuple[dict[str, dict[int, float | None]], list[dict[str, Any]]]:
        """Train (or reuse) the cells of ``points`` ``(LR factor, swept settings)`` for every encoding of ``arm``:
        ``({encoding: {point index: validation selection_f1 or None}}, the cells' summary rows)``."""
        cfg = self.cfg
        curve: dict[str, dict[int, float | None]] = {}
        cells: list[dict[str, Any]] = []
        for enc in cfg.arm_encodings(arm):
            for i, (f, settings) in enumerate(points):
                cell = Cell(sweep_arm_name(arm.name, f, settings), enc, cfg.sweep_at, seed)
                rec = self._run_or_reuse(cell, arm, f, settings)
                if rec is None:  # the arm became unavailable
                    return curve, cells
                v = (rec.get("val") or {}).get("selection_f1") if rec.get("status") == "done" else None
                curve.setdefault(enc, {})[i] = v
                cells.append({"key": cell.key, "encoding": enc, "factor": f, **dict(settings),
                              "status": rec.get("status"), "lrs": rec.get("lrs_used"), "val_selection_f1": v,
                              "val_macro_f1": (rec.get("val") or {}).get("macro_f1"),
                              "best_epoch": rec.get("best_epoch"), "steps": rec.get("steps"),
                              "capped_improving": rec.get("capped_improving")})
        return curve, cells

    def _run_or_reuse(self, cell: Cell, arm: ArmConfig, factor: float, settings: Mapping[str, float]
                      ) -> dict[str, Any] | None:
        """A sweep cell: reused when finished under the same settings, else trained (None: the arm is skipped)."""
        fp = self.cell_fingerprint(arm, factor, settings)
        if self.resume:
            done, _ = self.cellstore.check(cell, fingerprint=fp, store_hash=self.store.manifest_hash)
            if done is not None and (stale := self.stale_budget(cell, done)) is not None:
                self.recomputed[cell.key] = stale
                done = None
            if done is not None:
                self.reused.append(cell.key)
                return done
        try:
            rec = self.run_cell(cell)
        except WeightsUnavailableError as exc:
            self.skipped[arm.name] = f"weights unavailable: {exc}"
            return None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a failed sweep point is recorded; the others still decide
            kind = "" if isinstance(exc, EcgTransferError) else f"{type(exc).__name__}: "
            log.error("sweep cell %s failed: %s%s", cell.key, kind, exc)
            self.failed[cell.key] = f"{kind}{exc}"
            rec = {"cell": cell.to_dict(), "key": cell.key, "status": "failed", "reason": f"{kind}{exc}",
                   "fingerprint": fp, "store_manifest_hash": self.store.manifest_hash, "finished_at": _now()}
        self.cellstore.save(cell, rec)
        if rec.get("status") == "done":
            self.computed.append(cell.key)
        return rec

    def announce_plan(self) -> None:
        """Log what the grid will train (:func:`plan_estimate`): a warning when it runs for days."""
        steps = []
        for cell in self.grid:
            if cell.arm in self.skipped or (self.resume and self.cellstore.path(cell).is_file()):
                continue
            spe, epochs = self.plan_cell(cell)[2:]
            steps.append(min(spe * epochs, self.cfg.max_steps or spe * epochs))
        line, warn = plan_estimate(steps, self.cfg.batch_size, self.device)
        (log.warning if warn else log.info)("bench %s: %s%s", self.cfg.name, line,
                                            "; reduce seeds, fractions, epochs or max_steps, or stop with Ctrl-C "
                                            "(finished cells are kept)" if warn else "")

    def execute(self) -> None:
        cfg = self.cfg
        self.announce_plan()
        self.run_sweeps()
        bar = tqdm(self.grid, desc=f"bench {cfg.name}", unit="cell", disable=not self.progress,
                   dynamic_ncols=True)
        for cell in bar:
            arm = cfg.arm(cell.arm)
            bar.set_postfix_str(cell.key)
            if self.resume:  # cells finished earlier stay valid even if the arm cannot run now
                done, why = self.cellstore.check(cell, fingerprint=self.cell_fingerprint(arm),
                                                 store_hash=self.store.manifest_hash,
                                                 inputs=self.fingerprint_inputs(arm))
                if done is not None and (stale := self.stale_budget(cell, done)) is not None:
                    done, why = None, stale
                if done is not None:
                    self.records[cell.key] = upgrade_cell_counts(done, self.out, self.store)
                    self.reused.append(cell.key)
                    continue
                if why is not None:
                    self.recomputed[cell.key] = why
            elif self.cellstore.path(cell).is_file():
                self.recomputed[cell.key] = "--no-resume (resume=False)"
            if cell.arm in self.skipped:
                self.records[cell.key] = {"cell": cell.to_dict(), "key": cell.key, "status": "skipped",
                                          "reason": self.skipped[cell.arm]}
                continue
            try:
                record = self.run_cell(cell)
            except WeightsUnavailableError as exc:
                self.skipped[cell.arm] = f"weights unavailable: {exc}"
                log.warning("arm %s skipped: %s", cell.arm, exc)
                self.records[cell.key] = {"cell": cell.to_dict(), "key": cell.key, "status": "skipped",
                                          "reason": self.skipped[cell.arm]}
                continue
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one failing cell must not lose the others; it is reported and retried
                kind = "" if isinstance(exc, EcgTransferError) else f"{type(exc).__name__}: "
                log.error("cell %s failed: %s%s", cell.key, kind, exc)
                log.debug("%s", traceback.format_exc())
                self.failed[cell.key] = f"{kind}{exc}"
                record = {"cell": cell.to_dict(), "key": cell.key, "status": "failed", "reason": f"{kind}{exc}",
                          "fingerprint": self.cell_fingerprint(arm), "store_manifest_hash": self.store.manifest_hash,
                          "bench_run_id": self.run_id, "finished_at": _now()}
                self.cellstore.save(cell, record)
                self.records[cell.key] = record
                continue
            self.cellstore.save(cell, record)
            self.records[cell.key] = record
            self.computed.append(cell.key)
            self.write_results()  # a usable partial results.json after every cell
        bar.close()

    # -- outputs ----------------------------------------------------------------------------------
    def results(self) -> BenchResults:
        cfg, store = self.cfg, self.store
        records = [self.records[c.key] for c in self.grid if c.key in self.records]
        cells = [CellResult.of(r) for r in records]
        done = sum(1 for r in records if r["status"] == "done")
        skipped_cells = sum(1 for r in records if r["status"] == "skipped")
        arms = []
        for a in cfg.arms:
            status, reason = "ran", None
            if a.name in self.skipped:
                # an arm that became unavailable mid-run (or on a resume) keeps its finished cells: "partial"
                mine = [r for r in records if r["cell"]["arm"] == a.name]
                n_done = sum(1 for r in mine if r["status"] == "done")
                status, reason = ("partial", f"{n_done} of {len(mine)} cells finished and are reported; the "
                                             f"others were skipped: {self.skipped[a.name]}") if n_done else \
                    ("skipped", self.skipped[a.name])
            arms.append({"name": a.name, "init": a.init, "optim": a.optim, "description": a.description,
                         "encodings_used": list(cfg.arm_encodings(a)),
                         **_arm_settings(cfg, a, self.lr_scale.get(a.name, 1.0), self.choice.get(a.name)),
                         "lr_scale": self.lr_scale.get(a.name, 1.0), "lr_sweep": list(cfg.arm_sweep(a)),
                         **{key: list(cfg.arm_values(a, key)) for key in SETTING_KEYS},
                         "settings_swept": dict(self.choice.get(a.name, {})),
                         "model": a.model or "resnet50", "tier_preset": a.tier_preset,
                         "weight_decay": a.weight_decay, "grad_clip": a.grad_clip,
                         "frozen": ["features_1", "features_2"] if a.optim == "linear-probe" else [],
                         "status": status, "reason": reason})
        return BenchResults(
            format=RESULTS_FORMAT, format_version=RESULTS_FORMAT_VERSION,
            name=cfg.name, created_at=_now(), bench_run_id=self.run_id,
            macro_f1_definition=MACRO_F1_DEFINITION,
            interrupted=self.interrupted,
            command=self.command, package_version=__version__,
            complete=done + skipped_cells == len(self.grid),
            progress={"total": len(self.grid), "done": done, "skipped": skipped_cells, "failed": len(self.failed)},
            config=cfg.to_dict(), config_text=self.config_text, fingerprint=self.fingerprint,
            hardware=self.hardware, hardware_line=hardware_line(self.hardware),
            store={"path": str(store.path), "manifest_hash": store.manifest_hash, "manifest": store.manifest,
                   "class_names": self.run_classes(), "store_class_names": store.class_names,
                   "n_segments": len(store)},
            source_store=None if self.source_store is None else {
                "path": str(self.source_store.path), "manifest_hash": self.source_store.manifest_hash,
                "manifest": self.source_store.manifest, "class_names": self.source_store.class_names,
                "n_segments": len(self.source_store)},
            source_overlap=getattr(self, "source_overlap", None),
            source_models={enc: {k: v for k, v in m.items() if k != "train_config"}
                           for enc, m in self.source_models.items()},
            split={k: v for k, v in self.split_info.items()},
            eval_split=self.eval_split,
            baseline=baseline_arm(cfg),
            arms=arms,
            skipped=dict(self.skipped),
            failed=dict(self.failed),
            run={"computed": list(self.computed), "reused": list(self.reused)},
            invocations=[i for i in self.previous_invocations if i.get("bench_run_id") != self.run_id] + [
                {"bench_run_id": self.run_id, "started_at": self.started_at, "finished_at": _now(),
                 "command": self.command, "computed": list(self.computed), "reused": list(self.reused),
                 "recomputed": dict(self.recomputed), "failed": sorted(self.failed),
                 "interrupted": self.interrupted, "wall_s": time.perf_counter() - self.t0}],
            cells=cells,
            summary=summarise(cfg, cells, class_names=self.run_classes(), eval_split=self.eval_split),
            majority_val=self.majority_val, target_check=self.target_check,
            sweeps=self.sweeps, lr_scale=dict(self.lr_scale), settings_swept=dict(self.choice),
            capped_improving=[c.key for c in cells if c.record.get("capped_improving")],
            primary=primary_of(cfg),
            contrasts=contrasts(cfg, cells, eval_split=self.eval_split, no_verdict=self.no_verdict()),
        )

    def no_verdict(self) -> dict[str, str]:
        """``{arm: why}`` of arms whose contrasts get no verdict (an ecg arm whose source model did not learn)."""
        out = {}
        for a in self.cfg.arms:
            if a.init != "ecg":
                continue
            bad = [enc for enc, m in self.source_models.items() if (m.get("credibility") or {}).get("learned") is False]
            if bad:
                out[a.name] = f"source did not learn ({', '.join(sorted(bad))})"
        return out

    def run_classes(self) -> list[str]:
        """The classes the cells train and score: the store's, less the training config's ``exclude_classes``."""
        from ecgtransfer.training.data import class_subset

        return class_subset(self.store.class_names, self.cfg.base.exclude_classes)[0]

    def write_results(self) -> BenchResults:
        res = self.results()
        atomic_write_json(self.out / "results.json", res.to_dict())
        return res


def source_settings(src: SourceConfig) -> dict[str, Any]:
    """The ``[source]`` settings a source model and the ``ecg`` cells depend on (the store is checked by its
    manifest hash); ``lead`` only when set, so that benches from before it keep their fingerprints."""
    return {k: (dict(v) if k == "train" else v) for k, v in vars(src).items()
            if k != "store" and not (k == "lead" and v is None)}


def source_input(target: SegmentStore, source: SegmentStore, src: SourceConfig, encoding_params: Mapping[str, Any]
                 ) -> tuple[int | str | None, str, str | None]:
    """``(the encoder's lead for the source model or None, what the source model reads, why it cannot run or
    None)``: ``[source].lead`` names one of the source store's leads (its index: imaged as the target's lead is) or
    ``"grid"`` (every lead a tile); without it, the ``encoding_params`` of ``[train]`` / ``[source.train]`` decide,
    and a source store with another number of leads than the target's is refused (which lead would the model
    image? lead 0 of a 12-lead store is lead I, not the MLII-like lead II)."""
    names = [str(n) for n in source.lead_names]
    tnames = [str(n) for n in target.lead_names]
    own = dict(src.train.get("encoding_params") or {})
    where = f"the source store {source.path} has {len(names)} lead(s) ({', '.join(names)})"
    if src.lead is None:
        lead = own.get("lead", encoding_params.get("lead"))
        if lead is None and len(names) != len(tnames):
            return None, "", (f"{where}, the target {len(tnames)} ({', '.join(tnames)}): say which the source model "
                              f"images, [source] lead = \"II\" (one lead, imaged like the target's) or "
                              f"lead = \"{SOURCE_LEAD_GRID}\" (every lead a tile)")
        shown = names[int(lead)] if isinstance(lead, int) and -len(names) <= int(lead) < len(names) else lead
        return None, (f"lead {shown if lead is not None else names[0]} of {len(names)} "
                      f"({source.fs:g} Hz), as the encoding parameters say"), None
    if src.lead.lower() == SOURCE_LEAD_GRID:
        return SOURCE_LEAD_GRID, f"all {len(names)} leads as tiles of one image (lead = \"grid\", {source.fs:g} Hz)", None
    lower = [n.lower() for n in names]
    if src.lead.lower() not in lower:
        return None, "", f"{where}, not {src.lead!r}: [source] lead names one of them or \"{SOURCE_LEAD_GRID}\""
    i = lower.index(src.lead.lower())
    tlead = encoding_params.get("lead", 0)
    tname = tnames[tlead] if isinstance(tlead, int) and -len(tnames) <= tlead < len(tnames) else str(tlead)
    return i, (f"lead {names[i]} of {len(names)} ({source.fs:g} Hz), imaged as the target's lead {tname} "
               f"({target.fs:g} Hz)"), None


def source_overlap(target: SegmentStore, source: SegmentStore) -> str | None:
    """Why the source store shares patients with the target (same store, or same database and version), or None.

    Patient ids are comparable within one database, so a source store of the same database and version may
    hold the target's validation and test patients (e.g. mitdb beats as the source of a mitdb beat task).
    """
    if source.manifest_hash == target.manifest_hash:
        return f"is the target store itself (manifest {target.manifest_hash[:12]})"
    # a combined store (ecgtransfer.combine) holds several databases: any one shared with the target counts
    shared = [dv for dv in target.database_versions if dv in set(source.database_versions)]
    if shared:
        return f"is of the target's database ({', '.join(f'{d} {v}' for d, v in shared)})"
    return None


def exclude_patients(store: SegmentStore, tc: Any, patients: Sequence[str], *, patients_database: str | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The source split of ``tc`` drawn among the patients of ``store`` that are not in ``patients``.

    The segments of ``patients`` (the target's validation and test patients) are removed from the source store
    first; the remaining patients are then split by the source's own method and seed (so the source model
    neither trains on them nor picks its best epoch on them).

    ``patients_database``: the database of ``patients`` given bare (the target's); then patients are compared
    qualified by database (:func:`ecgtransfer.signals.ids.qualify`), so a combined source store (``"mitdb:100"``) drops
    the target's ``"100"``. ``None``: compared as given.

    Returns:
        ``({"train", "val", "test": int64 indices into store}, {"dropped_patients", "dropped_segments",
        "kept_segments"})``.
    """
    from types import SimpleNamespace

    from ecgtransfer.errors import TrainingError
    from ecgtransfer.signals.ids import qualify, split_qualified
    from ecgtransfer.training.data import make_split

    pats = np.asarray(store.patient_ids).astype(str)
    if patients_database is None:
        bad = np.isin(pats, sorted({str(p) for p in patients}))
    else:
        wanted = {str(p) if split_qualified(str(p))[0] is not None else qualify(patients_database, str(p))
                  for p in patients}
        bad = np.isin(store.qualified_patient_ids, sorted(wanted))
    keep = np.flatnonzero(~bad).astype(np.int64)
    if keep.size == 0:
        raise TrainingError(f"the source store {store.path} holds only patients of the target's validation/test "
                            "part; use a source store of other patients or of another database")
    view = SimpleNamespace(labels=np.asarray(store.labels)[keep], patient_ids=pats[keep],
                           record_ids=np.asarray(store.record_ids).astype(str)[keep], num_classes=store.num_classes,
                           patients_known=store.patients_known, database=store.database,
                           databases=store.databases, segment_databases=store.segment_databases[keep])
    parts = {p: keep[idx] for p, idx in make_split(view, tc).items()}  # type: ignore[arg-type]
    info = {"dropped_patients": sorted(set(pats[bad].tolist())), "dropped_segments": int(bad.sum()),
            "kept_segments": {p: int(len(parts[p])) for p in ("train", "val", "test")}}
    return parts, info


def _previous_invocations(out: Path) -> list[dict[str, Any]]:
    """The invocations recorded in an existing ``out/results.json`` (a resumed bench keeps its history; those of
    an older version are upgraded by :meth:`BenchResults.from_dict`)."""
    if not os.path.lexists(out / "results.json"):
        return []
    try:
        return invocations_of(read_json_object(out / "results.json", "bench results", error=BenchError))
    except BenchError as exc:
        log.warning("%s; its earlier invocations are not carried over", exc)
        return []


def pooled_store(target: SegmentStore, source: SegmentStore | None, out: Path) -> SegmentStore:
    """The target and source stores combined into one (:func:`ecgtransfer.combine.combine_stores`, made once in
    ``OUT/pooled/store`` and reused): the target's segments first, in their order (index ``i`` of the target is
    index ``i`` here), then the source's. Raises :class:`StoreError` when they cannot be pooled (a source of the
    target's own database, segments of another kind)."""
    from ecgtransfer.combine import combine_stores

    if source is None:
        raise StoreError("no source store")
    pooled = combine_stores([target, source], out)
    n = len(target)
    if len(pooled) != n + len(source) or not np.array_equal(np.asarray(pooled.labels[:n]), np.asarray(target.labels)):
        raise StoreError(f"{out}: the pooled store does not start with the target's segments in their order")
    return pooled


def target_record_ids(rc: Mapping[str, Any], target: SegmentStore) -> dict[str, Any]:
    """``record_confusion`` of a pooled cell with the target's own record ids (``"mitdb:100"`` -> ``"100"``), in the
    order of the other arms' records."""
    from ecgtransfer.signals.ids import split_qualified

    own = {str(r) for r in np.unique(np.asarray(target.record_ids).astype(str))}
    bare = [r if r in own else split_qualified(r)[1] for r in rc["records"]]
    order = np.argsort(bare, kind="stable")
    return {**rc, "records": [bare[i] for i in order], "matrices": [rc["matrices"][i] for i in order]}


def _load_report_dict(run_dir: Path) -> dict[str, Any] | None:
    """The ``load_report`` of a cell's ``run.json`` (None: no weights were loaded, or it is unreadable)."""
    try:
        report = read_json_object(run_dir / "run.json", "run record").get("load_report")
    except EcgTransferError:
        return None
    return report if isinstance(report, dict) else None


def transfer_of(report: Mapping[str, Any], *, multilabel_source: SegmentStore | None = None) -> str:
    """What a load report says transferred: ``"whole model (backbone + head)"`` when the head loaded,
    ``"backbone only (...)"`` when it was re-initialised (with the reason the report gives, or, for
    ``multilabel_source``, that the source's labels are another label space)."""
    from ecgtransfer.models.weights import HEAD_PREFIX

    loaded = [str(k) for k in report.get("loaded") or []]
    if not loaded:
        return "nothing"
    if any(k.startswith(HEAD_PREFIX) for k in loaded):
        return "whole model (backbone + head)"
    if multilabel_source is not None:
        level = (multilabel_source.manifest.get("multilabel") or {}).get("level", "?")
        return (f"backbone only (head re-initialised: the source is multi-label, {multilabel_source.num_classes} "
                f"{multilabel_source.database} {level} statements with sigmoid outputs, another label space)")
    why = [str(n) for n in report.get("notes") or [] if "head" in str(n)]
    return "backbone only (head re-initialised" + (f": {why[0]})" if why else
                                                   f"; source head {report.get('source_head_shape')}, model head "
                                                   f"{report.get('model_head_shape')})")


def _load_report(run_dir: Path) -> str | None:
    """One line from the ``load_report`` of a cell's ``run.json`` (a ``LoadReport.to_dict()``): the source, how
    many tensors loaded, which were re-initialised, adapted, unexpected or missing, and the head's shapes.
    ``None`` when no weights were loaded (or ``run.json`` is unreadable)."""
    try:
        report = read_json_object(run_dir / "run.json", "run record").get("load_report")
    except EcgTransferError:
        return None
    if not isinstance(report, dict):
        return None

    def shape(s: Any) -> str:
        return "None" if s is None else "(" + ", ".join(str(int(x)) for x in s) + ")"

    parts = [f"source {report.get('source', '?')}", f"{len(report.get('loaded') or [])} tensors loaded"]
    for name in ("reinitialised", "adapted", "unexpected", "missing"):
        if report.get(name):
            parts.append(f"{name}: {', '.join(map(str, report[name]))}")
    parts.append(f"head {shape(report.get('source_head_shape'))} -> {shape(report.get('model_head_shape'))}")
    return "; ".join(parts)


def run(config: BenchConfig | str | os.PathLike, out: str | os.PathLike, *, store: str | os.PathLike | None = None,
        source_store: str | os.PathLike | None = None, device: str | None = None, resume: bool = True,
        progress: bool = True, overrides: Mapping[str, Any] | None = None, command: str | None = None,
        ) -> BenchResult:
    """Run (or finish) a benchmark and write its results and reports into ``out``.

    Args:
        config: a :class:`BenchConfig` or the path of a TOML config (see :func:`load_config`).
        out: output directory (created). Finished cells found there are reused when ``resume``.
        store: target store path, replacing ``task.store``.
        source_store: source store path of ``ecg`` arms, replacing ``source.store``.
        device: replaces ``bench.device`` (``cpu``, ``cuda``, ``auto``).
        resume: reuse finished cells (default); False recomputes every cell.
        progress: tqdm progress bars.
        overrides: dotted config keys (``{"bench.seeds": [0]}``), only with a config path.
        command: the command line recorded in the report (the CLI passes it).

    Returns:
        a :class:`BenchResult`. Arms whose prerequisites are missing are skipped with the reason; cells that
        fail are recorded with their error. Neither stops the other cells.
    """
    config_path = None
    if isinstance(config, BenchConfig):
        if overrides:
            raise ConfigError("overrides need a config path; apply them to the BenchConfig with dataclasses.replace")
        cfg = config
    else:
        config_path = Path(config)
        cfg = load_config(config_path, overrides=overrides)
    if store is not None:
        cfg = replace(cfg, task=replace(cfg.task, store=str(Path(store).resolve())))
    if source_store is not None:
        if cfg.source is None:
            raise ConfigError("--source-store given but the config has no [source] table (no 'ecg' arm)")
        cfg = replace(cfg, source=replace(cfg.source, store=str(Path(source_store).resolve())))
    if device is not None:
        cfg = replace(cfg, base=cfg.base.replace(device=device))
    out = check_output_dir(out, kind=BENCH_LAYOUT, inputs={"--store": cfg.store_path,
                                                      "--source-store": cfg.source_store_path})
    with FolderLock(out, what="bench folder"):
        return _run_locked(cfg, out, config_path=config_path, resume=resume, progress=progress, command=command)


def _run_locked(cfg: BenchConfig, out: Path, *, config_path: Path | None, resume: bool, progress: bool,
                command: str | None) -> BenchResult:
    """:func:`run` once the output folder is checked and its writer lock held."""
    if command is None:
        command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else None
    bench = _Bench(cfg, out, resume=resume, progress=progress, command=command)
    if config_path is not None:
        try:
            bench.config_text = config_path.read_text(encoding="utf-8")
        except OSError:
            pass
    bench.setup()  # opens the store: a missing store fails here, before OUT is created
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.to_dict())
    bench.check_arms()
    try:
        bench.execute()
    except KeyboardInterrupt:
        # SIGINT (Ctrl-C, or `timeout -s INT` in benchmarks/gpu.sh): the finished cells are kept and the partial
        # results and reports are written below; re-running the same command finishes the bench
        bench.interrupted = f"interrupted (SIGINT) at {_now()} after {time.perf_counter() - bench.t0:.0f} s"
        log.warning("bench %s %s; writing the partial results and reports", cfg.name, bench.interrupted)
        raise
    finally:
        results = bench.write_results()
        paths = write_reports(results, out)
    paths["results"] = out / "results.json"
    log.info("bench %s: %d cells computed, %d reused, %d failed; report %s", cfg.name, len(bench.computed),
             len(bench.reused), len(bench.failed), paths["html"])
    return BenchResult(out=out, results=results.to_dict(), paths=paths, computed=bench.computed, reused=bench.reused,
                       skipped=dict(bench.skipped), failed=dict(bench.failed))


def write_report(out: str | os.PathLike) -> dict[str, Path]:
    """Re-write ``report.md``/``report.html`` of a bench directory from its ``results.json`` (a damaged one is one
    :class:`BenchError` line naming it)."""
    out = Path(out)
    path = out / "results.json"
    if not os.path.lexists(path):
        raise ConfigError(f"{out} holds no results.json (run the bench first)")
    results = read_results(path)
    try:
        return write_reports(results, out)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError, RecursionError) as exc:
        # a value deeper in the file of the wrong kind: still the file's fault, named as such
        raise BenchError(f"{path}: a value the report needs is missing or of the wrong type "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); the bench results are "
                         "damaged (run the bench again to rewrite them)") from None
