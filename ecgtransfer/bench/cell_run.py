"""Running one cell of the grid: its plan, one :func:`ecgtransfer.training.fine_tune` call, and its record.

A cell trains on its fraction's subsample of the target's training part (a pooled cell: that subsample and the
whole source store, :meth:`CellRuns.plan_pooled`) with the budget every arm shares (:func:`cell_budget`), then
keeps what the report needs: the history, the metrics, the eval split's per-record confusion matrices, the
throughput and what transferred (:mod:`ecgtransfer.bench.run_records`).
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ecgtransfer import __version__
from ecgtransfer.bench.arms import ArmConfig
from ecgtransfer.bench.cell_plan import cell_budget, cell_config
from ecgtransfer.bench.fractions import subsample
from ecgtransfer.bench.grid import Cell
from ecgtransfer.bench.run_records import (
    kept_metrics,
    drop_checkpoints,
    history_table,
    load_report_line,
    load_report_of,
    majority_line,
    utc_now,
    record_confusion_from_metrics,
    step_curve_of,
    throughput_of,
    predict_part,
    record_confusion,
    target_record_ids,
    transfer_of,
)
from ecgtransfer.bench.sweeps import parse_sweep_arm, setting_change
from ecgtransfer.models.weight_registry import is_weight_name
from ecgtransfer.store import SegmentStore
from ecgtransfer.training.config import TrainConfig

if TYPE_CHECKING:  # training.data imports torch: only where a cell runs
    from ecgtransfer.training.data import RunParts
    from ecgtransfer.training.engine import TrainResult


def _cell_data(store: SegmentStore, used: "RunParts", train_idx: np.ndarray, spe: int, epochs: int
               ) -> dict[str, Any]:
    """The ``data`` of a cell's record: what it trained on (after the majority cap), validated and tested on, and
    its budget."""
    counts = np.bincount(store.labels[used.parts["train"]], minlength=store.num_classes)
    return {"n_train": int(len(used.parts["train"])),
            "n_train_patients": int(len(set(store.patient_ids[used.parts["train"]]))),
            "train_class_counts": {c: int(counts[i]) for i, c in enumerate(store.class_names)},
            "n_train_drawn": int(len(train_idx)), "majority_capped": used.majority_capped,
            "n_val": int(len(used.parts["val"])), "n_test": int(len(used.parts["test"])),
            "steps_per_epoch": spe, "epochs": epochs}


class CellRuns:
    """Planning and running the cells (:class:`ecgtransfer.bench.runner._Bench` holds the state it reads: ``cfg``,
    ``out``, ``progress``, the target ``store`` and its ``parts``, ``eval_split``, ``device``, ``lr_scale``,
    ``choice``, the source side of :class:`ecgtransfer.bench.source.SourceModels`)."""

    # -- cells ------------------------------------------------------------------------------------
    def plan_cell(self, cell: Cell) -> tuple[np.ndarray, "RunParts", int, int]:
        """``(drawn training segments, the parts the engine will use, steps per epoch, epochs)`` of ``cell``: its
        fraction's draw, then what the engine trains and validates on (classes left out, the majority cap), whose
        steps the budget counts (:func:`cell_budget`). It depends on the cell's fraction and seed only (every arm and
        encoding shares it), so it is drawn once per pair: the plan's estimate, the budget check and the run ask
        again."""
        plans = self.__dict__.setdefault("_cell_plans", {})
        key = (cell.fraction, cell.seed)
        if key not in plans:
            plans[key] = self._draw_cell_plan(cell)
        return plans[key]

    def _draw_cell_plan(self, cell: Cell) -> tuple[np.ndarray, "RunParts", int, int]:
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
        """Train ``cell`` (an LR sweep's point when its arm is a sweep arm) and return its record."""
        from ecgtransfer.training import fine_tune

        cfg, store = self.cfg, self.store
        arm_name, factor, point_settings = parse_sweep_arm(cell.arm)
        arm = cfg.arm(arm_name)
        lr_scale = factor if factor is not None else self.lr_scale.get(arm_name, 1.0)
        settings = dict(point_settings) if factor is not None else dict(self.choice.get(arm_name, {}))
        train_idx, used, spe, epochs = self.plan_cell(cell)
        data = _cell_data(store, used, train_idx, spe, epochs)
        cell_store, split_indices = store, {"train": train_idx, "val": self.parts["val"], "test": self.parts["test"]}
        changes: dict[str, Any] = {"epochs": epochs}
        if arm.train_data == "pooled":
            cell_store, split_indices, changes = self._pooled_cell(cell, train_idx, spe, epochs, data)
        init = self._cell_init(arm, cell.encoding)
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
        started = utc_now()
        t0 = time.perf_counter()
        res = fine_tune(cell_store, tc, out=run_dir, split_indices=split_indices)
        wall = time.perf_counter() - t0
        rc = self._eval_confusion(res, used, run_dir, cell_store)
        load = load_report_of(run_dir)
        if not cfg.keep_checkpoints:
            drop_checkpoints(run_dir)
        return self._cell_record(cell, arm, lr_scale=lr_scale, settings=settings, tc=tc, started=started, wall=wall,
                                 data=data, init=init, res=res, rc=rc, run_dir=run_dir, load=load,
                                 multilabel_source=multilabel_source)

    def _pooled_cell(self, cell: Cell, train_idx: np.ndarray, spe: int, epochs: int, data: dict[str, Any]
                     ) -> tuple[SegmentStore, dict[str, np.ndarray], dict[str, Any]]:
        """A pooled cell's ``(store, split indices, TrainConfig changes)`` (:meth:`plan_pooled`); its counts and
        budget are written into ``data``."""
        cfg, store = self.cfg, self.store
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
        return cell_store, split_indices, changes

    def _cell_init(self, arm: ArmConfig, encoding: str) -> str:
        """The ``init`` of an arm's cell: the source model's checkpoint (``ecg``), a weights name, or a path."""
        if arm.init == "ecg":
            return str(self.source_checkpoint(encoding).resolve())
        if arm.init == "scratch" or is_weight_name(arm.init):
            return arm.init
        return str(self.cfg.resolve_path(arm.init))

    def _eval_confusion(self, res: "TrainResult", used: "RunParts", run_dir: Path, cell_store: SegmentStore
                        ) -> dict[str, Any]:
        """The eval split's per-record confusion matrices (the bootstrap over patients resamples them): from the
        test metrics when they carry them, else one more pass of the best model over the eval split."""
        eval_metrics = res.test_metrics if self.eval_split == "test" else res.best_metrics
        rc = record_confusion_from_metrics(eval_metrics, self.eval_split)
        if rc is None:  # the eval part as the engine scored it (a validation part majority-capped)
            eval_idx = used.parts[self.eval_split]
            y, probs, idx, decided = predict_part(run_dir, cell_store, eval_idx, self.device)
            rc = record_confusion(y, decided, cell_store.record_ids[idx], probs.shape[1], self.eval_split)
        if cell_store is not self.store:  # the pooled store qualifies ids ("mitdb:100"): the target's own ids, so
            rc = target_record_ids(rc, self.store)  # that the bootstrap pairs its records with the other arms'
        return rc

    def _cell_record(self, cell: Cell, arm: ArmConfig, *, lr_scale: float, settings: Mapping[str, float],
                     tc: TrainConfig, started: str, wall: float, data: dict[str, Any], init: str, res: "TrainResult",
                     rc: dict[str, Any], run_dir: Path, load: dict[str, Any] | None, multilabel_source: bool
                     ) -> dict[str, Any]:
        """A finished cell's record (``cells/<key>.json``; :class:`ecgtransfer.bench.results.CellResult` reads it)."""
        from ecgtransfer.bench.stats import time_to_target

        cfg = self.cfg
        history = history_table(res.history)
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
            "store_manifest_hash": self.store.manifest_hash, "bench_run_id": self.run_id, "started_at": started,
            "finished_at": utc_now(), "wall_s": wall,
            "data": data,
            "init": init if arm.init != "ecg" else
            f"ecg source model ({self.source_models[cell.encoding]['checkpoint']} in the bench directory)",
            "train_config": res.config.to_dict(), "steps": res.steps, "stopped": res.stopped,
            "best_epoch": res.best_epoch, "history": history,
            "step_curve": step_curve_of(history, res.step_evals), "val": kept_metrics(res.best_metrics),
            "test": kept_metrics(res.test_metrics), "record_confusion": rc,
            "majority": majority_line((res.test_metrics or {}).get("majority")),
            "time_to_target": None if hit is None else {"target": cfg.target_f1, "epoch": hit[0], "seconds": hit[1]},
            "throughput": throughput_of(res.history, self.device),
            "load_report": None if load is None else load_report_line(load),
            **({"transfer": transfer_of(load, multilabel_source=self.source_store if multilabel_source else None)}
               if load is not None else {}),
            "run_dir": str(run_dir.relative_to(self.out)),
            "package_version": __version__,
        }
