"""The fine-tuning loop: :func:`fine_tune`.

One epoch: batches of store indices (a pure function of ``(seed, epoch)``) are read from the memory-mapped
store by a DataLoader (``[B, C, L]`` float32), optionally augmented, rendered to images ``[B, 3, H, W]`` on
the training device by :class:`ecgtransfer.imaging.ImageEncoder`, and fed to the ResNet50 with the tiered
optimizer and per-group scheduler (stepped every batch). After each epoch the validation split is evaluated;
the best validation macro-F1 selects ``best.pt`` and drives early stopping. ``last.pt`` is written every epoch
(and every ``checkpoint_every`` steps), so ``resume=True`` continues a killed run exactly where its last
checkpoint left it.

Run directory::

    RUN_DIR/
      config.json        the resolved TrainConfig
      run.json           versions, device, store path and manifest hash, split sizes, status, rank digests
      store_manifest.json  the store's manifest (conversion parameters, for ``predict``)
      split.npz          train/val/test indices used
      metrics.jsonl      one JSON object per epoch (full metrics, confusion matrix)
      metrics.csv        the same, flattened to scalar columns
      last.pt, best.pt   checkpoints (weights-only loadable)
      test_metrics.json, confusion_test.png, report.md   after training (test split, best model)

A majority-capped validation part is scored at its true prevalence (``validation_prevalence = "true"``: each
segment weighted back to the uncapped counts of its patient and class), and after training the decision rule
(``decision``) is fitted on the best model's validation probabilities and stored in ``best.pt`` and ``run.json``
(:mod:`ecgtransfer.training.decision`); the test metrics are those of the rule, with the arg-max beside them.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ecgtransfer._atomic import atomic_open, atomic_write_json, atomic_write_text
from ecgtransfer._lock import FolderLock
from ecgtransfer._outdir import check_output_dir
from ecgtransfer.errors import TrainingError
from ecgtransfer.imaging import check_finite, naming_segments
from ecgtransfer.physionet.catalog import dechazal_database
from ecgtransfer.store import SegmentStore
from ecgtransfer.training import distributed as D
from ecgtransfer.training.checkpoint import (
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
    state_digest,
)
from ecgtransfer.training.config import TrainConfig, resolve_config
from ecgtransfer.training.data import batch_loader, eval_batches, eval_shard
from ecgtransfer.training.decision import DecisionRule, brief, effective_prior, fit_decision, scored
from ecgtransfer.training.metrics import (
    aami_table,
    classification_metrics,
    dechazal_table,
    flatten_metrics,
    majority_metrics,
    metrics_table,
    plot_confusion_matrix,
)
from ecgtransfer.training.precision import dtype_name
from ecgtransfer.training.run_files import RUN_FILES, RUN_LAYOUT, read_json_object, read_split
from ecgtransfer.training.run_setup import (DataParts, build_data, build_model_parts, build_optimisation,
                                            build_runtime, seed_run, training_module)
from ecgtransfer.training.runtime import environment, logits_of, peak_memory_mb, reset_peak_memory
from ecgtransfer.training.scoring import RawScores, score_part

log = logging.getLogger(__name__)

#: history keys that measure time or memory (they differ between otherwise identical runs)
TIMING_KEYS = ("images_per_s", "epoch_time_s", "data_wait_s", "peak_memory_mb", "eval_time_s")


@dataclass
class TrainResult:
    """What :func:`fine_tune` returns.

    Attributes:
        run_dir: the run directory.
        config: the resolved configuration.
        history: one dict per epoch (as in ``metrics.jsonl``).
        step_evals: the validations every ``val_every_steps`` steps inside epochs (``val_steps.jsonl``): one dict
            ``{"epoch", "step", "val_macro_f1", "val_selection_f1", "val_loss"}`` each; empty when off.
        best_epoch: epoch (1-based) with the best validation macro-F1.
        best_metrics: validation metrics of that epoch.
        final_metrics: validation metrics of the last epoch.
        test_metrics: metrics of the best model on the test split (``None`` when the split has no test part).
        steps: optimizer steps taken.
        stopped: ``"epochs"``, ``"max_steps"`` or ``"early_stopping"``.
        paths: ``{"config", "run", "metrics_jsonl", "metrics_csv", "last", "best", "report", ...}``.
        decision: the decision rule fitted on validation (``run.json``'s ``decision``: the rule and the
            validation metrics before and after it), ``None`` when none was fitted.
    """

    run_dir: Path
    config: TrainConfig
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_metrics: dict[str, Any] | None
    final_metrics: dict[str, Any] | None
    test_metrics: dict[str, Any] | None
    steps: int
    stopped: str
    paths: dict[str, Path] = field(default_factory=dict)
    step_evals: list[dict[str, Any]] = field(default_factory=list)
    decision: dict[str, Any] | None = None


def _write_metrics_files(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl",
                      "".join(json.dumps(h, sort_keys=True, default=float) + "\n" for h in history))
    rows = []
    for h in history:
        row: dict[str, Any] = {"epoch": h["epoch"], "step": h["step"], "partial": h["partial"]}
        row.update({f"lr_{k}": v for k, v in h["lr"].items()})
        row.update({"train_loss": h["train"]["loss"], "train_accuracy": h["train"]["accuracy"]})
        row.update(flatten_metrics(h["val"], "val"))
        row.update({k: h.get(k) for k in TIMING_KEYS})
        row["best"] = h["best"]
        rows.append(row)
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def check_run_identity(run_dir: Path, cfg: TrainConfig, *, resume: bool) -> None:
    """Refuse to train into ``run_dir`` when it holds a run that this one would damage.

    A folder holding any file a run owns (:data:`ecgtransfer.training.run_files.RUN_FILES`: config.json, run.json,
    best.pt, last.pt, metrics.jsonl, ...) is a run, whichever of them is left. It may be continued only with ``resume``
    and its ``last.pt`` (the optimizer, schedule and data-order state; :meth:`_Trainer._load_resume` checks the
    checkpoint); its ``config.json`` must hold these settings (:meth:`TrainConfig.incompatible_with`); a trained
    model (``best.pt``) without ``last.pt`` is never trained over. A run stopped before its first checkpoint
    (config and split only) with the same settings starts again.

    Raises:
        TrainingError: one line naming the folder, the files found and what to do.
    """
    present = sorted(f for f in RUN_FILES if (run_dir / f).exists())
    if not present:
        return
    listed = ", ".join(present)
    if "last.pt" in present and not resume:
        raise TrainingError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it or choose "
                            "another --out")
    cfg_file = run_dir / "config.json"
    if not cfg_file.is_file():
        raise TrainingError(f"{run_dir} holds files of a run ({listed}) but no config.json, so its settings are "
                            "unknown; nothing was written: choose another --out")
    try:
        saved = read_json_object(cfg_file, "training config")
    except TrainingError as exc:
        raise TrainingError(f"{exc}: not a readable training config; nothing was written: choose another --out"
                            ) from None
    diff = cfg.incompatible_with(saved)
    if diff:
        shown = ", ".join(f"{k}: run {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items())[:4])
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise TrainingError(f"{run_dir} holds a run with other settings ({shown}{more}); nothing was written: "
                            "choose another --out")
    if "best.pt" in present and "last.pt" not in present:
        if resume:
            raise TrainingError(f"{run_dir} has best.pt but no last.pt: --resume cannot continue it exactly (last.pt "
                                "holds the optimizer, schedule and data order); nothing was written: train into "
                                "another --out")
        raise TrainingError(f"{run_dir} already holds a trained run (best.pt; last.pt is missing); nothing was "
                            "written: choose another --out")


class _Trainer:
    def __init__(self, store: SegmentStore, cfg: TrainConfig, out: Path, *, resume: bool,
                 split: Any | None) -> None:
        self.store = store
        self.cfg = cfg
        self.run_dir = out
        self.resume = resume
        self.split_arg = split
        self.ckpt_path = self.run_dir / "last.pt"
        self.best_path = self.run_dir / "best.pt"

    # -- setup ------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Build the run in order (:mod:`ecgtransfer.training.run_setup`): runtime, data, model, optimisation,
        the module the train step calls; then the state that checkpoints carry (restored with ``resume``)."""
        from ecgtransfer.models.registry import CLOSED_FORM

        cfg, store = self.cfg, self.store
        runtime = build_runtime(cfg)
        self.device, self.dist, self._own_pg = runtime.device, runtime.dist, runtime.own_pg
        seed_run(cfg, runtime)
        data = build_data(store, cfg, self.split_arg)
        self._adopt_data(data)
        self.closed_form = cfg.model in CLOSED_FORM
        check_run_identity(self.run_dir, cfg, resume=self.resume)  # again, under the lock
        nets = build_model_parts(store, cfg, data, runtime, resuming=self.resume and self.ckpt_path.exists())
        self.encoder, self.train_encoder, self.model_spec = nets.encoder, nets.train_encoder, nets.spec
        self.model, self.dtype, self.channels_last = nets.model, nets.dtype, nets.channels_last
        opt = build_optimisation(store, cfg, data, nets, runtime)
        self.optimizer, self.clip_params, self.scheduler, self.scaler = (opt.optimizer, opt.clip_params,
                                                                         opt.scheduler, opt.scaler)
        self.plan, self.steps_per_epoch = opt.plan, opt.steps_per_epoch
        self.total_steps, self.warmup_steps = opt.total_steps, opt.warmup_steps
        self.weights_np, self.loss_weight, self.augment = opt.weights_np, opt.loss_weight, opt.augment
        self.train_model = training_module(self.model, cfg, runtime)
        self._initial_state()
        if self.resume:
            self._load_resume()

    def _adopt_data(self, data: DataParts) -> None:
        """The trainer's names for the run's data (:class:`~ecgtransfer.training.run_setup.DataParts`)."""
        run = data.run
        self.parts = run.parts
        self.class_names, self.label_map, self.excluded = run.class_names, run.label_map, run.excluded
        self.majority, self.majority_capped = run.majority, run.majority_capped
        self.val_weights, self.val_prevalence = data.val_weights, data.val_prevalence
        self.run_labels, self.rr_dim = data.run_labels, data.rr_dim
        self.best_val: dict[str, np.ndarray] | None = None  # the best epoch's validation labels and probabilities
        self.decision: DecisionRule = DecisionRule()

    def _initial_state(self) -> None:
        """The state that checkpoints carry, at the start of a run."""
        self.epoch = 0
        self.step = 0
        self.step_in_epoch = 0
        self.accum = {"loss_sum": 0.0, "n": 0.0, "correct": 0.0}
        self.history: list[dict[str, Any]] = []
        self.step_evals: list[dict[str, Any]] = []
        self.within_epoch_eval_s = 0.0  # seconds of val_every_steps validations in this epoch (not training time)
        self.best: dict[str, Any] = {"epoch": None, "macro_f1": -math.inf, "selection_f1": -math.inf,
                                     "bad_epochs": 0}
        self.finished: str | None = None
        self.rng_restored = False
        self.resumed_from: int | None = None

    def _load_resume(self) -> None:
        D.barrier(self.dist)
        if not self.ckpt_path.exists():
            log.info("no checkpoint in %s: starting a new run", self.run_dir)
            return
        ckpt = load_checkpoint(self.ckpt_path, map_location=self.device)
        check_compatible(ckpt, path=self.ckpt_path, store_manifest_hash=self.store.manifest_hash, config=self.cfg,
                         class_names=self.class_names)
        if int(ckpt.get("world_size", 1)) != self.dist.world_size:
            raise TrainingError(f"checkpoint {self.ckpt_path} was made by {ckpt.get('world_size', 1)} process(es), this "
                                f"run has {self.dist.world_size}; the data order depends on it: resume with the same "
                                "--nproc_per_node x --nnodes")
        split_file = self.run_dir / "split.npz"
        if os.path.lexists(split_file):
            saved_parts = read_split(split_file, len(self.store))
            if not np.array_equal(saved_parts["train"], self.parts["train"]):
                raise TrainingError(f"{split_file}: the training indices of the checkpoint differ from this "
                                    "run's split; resume with the same split settings")
        load_model_state(self.model, ckpt.get("model"), path=self.ckpt_path)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            restore_rng_state(ckpt["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise TrainingError(f"checkpoint {self.ckpt_path}: its optimizer, scheduler or RNG state does not fit "
                                f"this run ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                                ) from None
        self.rng_restored = True
        self.epoch = int(ckpt["epoch"])
        self.step = int(ckpt["step"])
        self.step_in_epoch = int(ckpt["step_in_epoch"])
        self.accum = {k: float(v) for k, v in ckpt["accum"].items()}
        self.history = list(ckpt["history"])
        self.step_evals = list(ckpt.get("step_evals") or [])
        self.best = dict(ckpt["best"])
        self.finished = ckpt.get("finished") or None
        self.resumed_from = self.step
        log.info("resuming %s at epoch %d, step %d (%d in epoch)", self.run_dir, self.epoch + 1, self.step,
                 self.step_in_epoch)

    # -- files ------------------------------------------------------------------------------------
    def _write_run_files(self, status: str, **extra: Any) -> None:
        if not self.dist.is_main:
            return
        run = {
            "status": status,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "store": str(self.store.path.resolve()),
            "store_manifest_hash": self.store.manifest_hash,
            "database": self.store.manifest.get("database"),
            "task": self.store.manifest.get("task"),
            "class_names": self.class_names,
            "split_sizes": {k: int(len(v)) for k, v in self.parts.items()},
            "class_weights": self.weights_np.tolist(),
            "world_size": self.dist.world_size,
            "backend": self.dist.backend,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "amp": dtype_name(self.dtype),  # resolved: float32 (no autocast), bfloat16 or float16
            "channels_last": self.channels_last,
            "environment": environment(self.device),
            "load_report": self.model.load_report.to_dict() if self.model.load_report is not None else None,
            "model": self.model_spec.to_dict(),
            "rr_columns": self._rr_columns(),
            "excluded_classes": list(self.excluded),
            "majority_capped": self.majority_capped,
            "selection": {"metric": "selection_f1", "min_support": int(self.cfg.select_min_support)},
            **extra,
        }
        atomic_write_json(self.run_dir / "run.json", run)

    def _rr_columns(self) -> list[str]:
        from ecgtransfer.signals.beats import RR_FEATURES

        return list(RR_FEATURES[:self.rr_dim])

    def _write_static_files(self) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / "config.json", self.cfg.to_dict())
        atomic_write_json(self.run_dir / "store_manifest.json", self.store.manifest)
        with atomic_open(self.run_dir / "split.npz", "wb") as fh:
            np.savez(fh, **self.parts)

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": capture_rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "accum": dict(self.accum),
            "history": self.history,
            "step_evals": self.step_evals,
            "best": self.best,
            "finished": self.finished or "",
            "config": self.cfg.to_dict(),
            "model_spec": self.model_spec.to_dict(),
            "rr_columns": self._rr_columns(),
            "excluded_classes": list(self.excluded),
            "store_manifest_hash": self.store.manifest_hash,
            "class_names": self.class_names,
            "num_classes": self.store.num_classes,
            "world_size": self.dist.world_size,
        }

    def _save(self, path: Path) -> None:
        if self.dist.is_main:
            save_checkpoint(path, self._checkpoint_state())

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate_part(self, indices: np.ndarray, *, weights: np.ndarray | None = None,
                      rule: DecisionRule | None = None) -> dict[str, Any]:
        """Metrics of the current model on ``indices`` (sharded over ranks, gathered exactly).

        ``weights [len(indices)]`` (aligned with ``indices``): the true-prevalence weights of a capped validation
        part; the metrics are then weighted (``"prevalence": "true"``) and the unweighted ones kept under
        ``"capped"``. ``rule``: score its labels, with the arg-max metrics beside them
        (:func:`ecgtransfer.training.decision.scored`). The sorted labels ``[n]`` and probabilities ``[n, K]``
        are left in ``self.last_eval``.
        """
        t0 = time.perf_counter()

        def gather(out: RawScores) -> RawScores:  # every rank scored its shard: all of them, on every rank
            loss_sum, weight_sum = D.all_reduce_sum([out["loss_sum"], out["weight_sum"]], self.dist)
            return {**{k: np.concatenate(D.all_gather_array(out[k], self.dist)) for k in ("probs", "labels",
                                                                                          "indices")},
                    "loss_sum": loss_sum, "weight_sum": weight_sum}

        part = score_part(self.model, self.encoder, self.store, eval_shard(indices, self.dist.rank,
                                                                           self.dist.world_size),
                          label_map=self.label_map, rr_dim=self.rr_dim, beat_input=self.cfg.beat_input,
                          batch_size=self.cfg.eval_batch(), device=self.device, dtype=self.dtype,
                          channels_last=self.channels_last, weight=self.loss_weight,
                          num_workers=self.cfg.num_workers, gather=gather)
        labels, probs, idx = part.labels, part.probs, part.indices
        w = None if weights is None else np.asarray(weights, dtype=np.float64)[np.argsort(indices, kind="stable")]
        records = self.store.record_ids[idx] if self.store.manifest.get("task") == "beats" else None
        m = scored(labels, probs, self.class_names, rule or DecisionRule(), loss=part.loss,
                   min_support=self.cfg.select_min_support, sample_weight=w, records=records)
        if rule is None:  # the plain arg-max: no second copy of the same metrics
            m.pop("argmax")
            m.pop("decision")
        if w is not None:
            m["prevalence"] = "true"
            m["capped"] = brief(classification_metrics(labels, probs, self.class_names,
                                                       min_support=self.cfg.select_min_support))
            m["capped"]["n"] = int(len(labels))
        self.last_eval = {"labels": labels, "probs": probs}
        m["eval_time_s"] = time.perf_counter() - t0
        return m

    # -- training ---------------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, k: int,
                   rr: torch.Tensor | None = None) -> tuple[float, int]:
        """One optimizer step on a batch ``x [B, C, L]``, ``y [B]`` on the device: augment, render, forward,
        loss, backward, clip, step, schedule. Returns ``(loss, correct predictions)``.

        The loss, the correct count and whether the batch is finite come back to the host together, in one device
        synchronisation, before the backward pass (a non-finite loss stops the run before it reaches the weights;
        a NaN/inf batch raises :class:`~ecgtransfer.errors.SignalError`).
        """
        if self.augment is not None:
            x = self.augment(x, epoch=epoch, step=k)
        finite = torch.isfinite(x).all()
        try:
            logits = logits_of(self.train_model, self.train_encoder, x, dtype=self.dtype,
                               channels_last=self.channels_last, rr=rr)
        except Exception:
            if not bool(finite):  # a non-finite batch is reported as such, whatever it broke in the encoder
                check_finite(x, name="encode")
            raise
        loss = F.cross_entropy(logits, y, weight=self.loss_weight, label_smoothing=self.cfg.label_smoothing)
        loss_v, correct, finite_v = torch.stack([loss.detach(), (logits.detach().argmax(1) == y).sum().to(loss.dtype),
                                                 finite.to(loss.dtype)]).tolist()
        bad = 0.0 if math.isfinite(loss_v) and finite_v else 1.0
        if self.dist.enabled:  # every rank stops together
            bad = D.all_reduce_sum([bad], self.dist)[0]
        if bad > 0:
            if not finite_v:
                check_finite(x, name="encode")  # raises SignalError (named by store index in the loop)
            lrs = ", ".join(f"{g.get('tier', i)}={g['lr']:.3g}" for i, g in enumerate(self.optimizer.param_groups))
            raise TrainingError(f"the training loss became {loss_v} at epoch {epoch + 1}, step {self.step + 1} "
                                f"(learning rates {lrs}); lower the learning rates (--tiers), enable gradient "
                                "clipping or check the store for extreme values")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.clip_params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss_v), int(correct)

    def run(self) -> TrainResult:
        """Train epoch by epoch (or fit a closed-form model) from where the state stands, then finish the run."""
        cfg = self.cfg
        self._write_static_files()
        if self.finished:
            log.info("%s already finished (%s); nothing to train", self.run_dir, self.finished)
            return self._finish(self.finished)
        self._write_run_files("running", started_step=self.step)
        if self.closed_form:
            self.finished = self._fit_closed_form()
            self._save(self.ckpt_path)
            return self._finish(self.finished)
        stopped = "epochs"
        while self.epoch < cfg.epochs:
            stopped_now = self._train_epoch(self.epoch)
            if stopped_now:
                stopped = stopped_now
                break
        self.finished = stopped
        self._save(self.ckpt_path)
        return self._finish(stopped)

    def _train_epoch(self, epoch: int) -> str | None:
        """Train ``epoch`` from its step ``self.step_in_epoch`` (a resumed run skips the batches it took), then end
        it (:meth:`_end_epoch`); returns why the run stops, or None."""
        cfg = self.cfg
        batches = self.plan.batches(epoch)
        skip = self.step_in_epoch
        loader = batch_loader(self.store, batches[skip:], num_workers=cfg.num_workers,
                              pin_memory=self.device.type == "cuda", label_map=self.label_map, rr_dim=self.rr_dim,
                              beat_input=self.cfg.beat_input)
        self.train_model.train()
        reset_peak_memory(self.device)
        t0 = time.perf_counter()
        n_images = 0
        bar = tqdm(total=len(batches), initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (self.dist.is_main and cfg.progress), leave=False, dynamic_ncols=True)
        hit_max = False
        data_s = 0.0  # waiting for the loader's next batch (reading the store), apart from the device's work
        t_mark = time.perf_counter()
        for k, (x, y, idx, rr) in enumerate(loader, start=skip):
            data_s += time.perf_counter() - t_mark
            n_images += self._step_batch(x, y, idx, rr, epoch, k, bar)
            if cfg.max_steps and self.step >= cfg.max_steps:
                hit_max = True
                break
            if cfg.val_every_steps and self.step % cfg.val_every_steps == 0 and k + 1 < len(batches):
                self._validate_within_epoch(epoch)
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and k + 1 < len(batches):
                self._save(self.ckpt_path)
            t_mark = time.perf_counter()
        bar.close()
        train_time = time.perf_counter() - t0 - self.within_epoch_eval_s  # training only
        self.within_epoch_eval_s = 0.0
        return self._end_epoch(epoch, partial=self.step_in_epoch < len(batches), n_images=n_images,
                               train_time=train_time, hit_max=hit_max, data_time=data_s)

    def _step_batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, rr: torch.Tensor | None,
                    epoch: int, k: int, bar: Any) -> int:
        """Move batch ``k`` of ``epoch`` (``x [B, C, L]``, ``y [B]``, store indices ``idx [B]``, ``rr [B, R]``) to the
        device, take one :meth:`train_step` on it and count it; returns ``B``."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if rr is not None:
            rr = rr.to(self.device, non_blocking=True)
        with naming_segments(x, idx, self.store):
            loss, correct = self.train_step(x, y, epoch, k, rr)
        b = int(y.shape[0])
        self.accum["loss_sum"] += loss * b
        self.accum["n"] += b
        self.accum["correct"] += correct
        self.step += 1
        self.step_in_epoch = k + 1
        bar.update(1)
        if self.step % self.cfg.log_every == 0:
            bar.set_postfix(loss=f"{self.accum['loss_sum'] / self.accum['n']:.4f}",
                            acc=f"{self.accum['correct'] / self.accum['n']:.3f}")
        return b

    @torch.no_grad()
    def _fit_closed_form(self) -> str:
        """Fit a closed-form model (``features``) on the whole training part at once, then validate it as one epoch.

        Every rank extracts the features of all training segments and fits the same deterministic solution.
        """
        t0 = time.perf_counter()
        feats, labels = [], []
        batches = eval_batches(self.parts["train"], self.cfg.eval_batch())
        loader = batch_loader(self.store, batches, num_workers=self.cfg.num_workers, label_map=self.label_map,
                              rr_dim=self.rr_dim, beat_input=self.cfg.beat_input)
        for x, y, idx, rr in tqdm(loader, total=len(batches), desc="features", leave=False,
                                  disable=not (self.dist.is_main and self.cfg.progress)):
            x = x.to(self.device)
            with naming_segments(x, idx, self.store):
                check_finite(x, name="features")
            feats.append(self.model.features(x, None if rr is None else rr.to(self.device)).cpu().numpy())
            labels.append(y.numpy())
        summary = self.model.fit(np.concatenate(feats), np.concatenate(labels), shrinkage=self.cfg.lda_shrinkage)
        if self.dist.is_main:
            log.info("fitted %s on %d segments, %d features", summary["classifier"], summary["n_train"],
                     summary["n_features"])
        self.step = 1
        self.step_in_epoch = 1
        self._end_epoch(0, partial=False, n_images=len(self.parts["train"]), train_time=time.perf_counter() - t0,
                        hit_max=False)
        return "fitted"

    def _validate_within_epoch(self, epoch: int) -> None:
        """One validation between the steps of an epoch (``val_every_steps``): a point of the learning curve in
        steps. It selects nothing and changes no training state (evaluation draws no random numbers; the model is
        put back into training mode)."""
        t0 = time.perf_counter()
        val = self.evaluate_part(self.parts["val"], weights=self.val_weights)
        self.train_model.train()
        self.within_epoch_eval_s += time.perf_counter() - t0
        row = {"epoch": epoch + 1, "step": self.step, "val_macro_f1": val["macro_f1"],
               "val_selection_f1": val["selection_f1"], "val_loss": val["loss"]}
        self.step_evals.append(row)
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "val_steps.jsonl",
                              "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.step_evals))
            log.info("step %d: val macro-F1 %.3f, selection-F1 %.3f", self.step, val["macro_f1"],
                     val["selection_f1"])

    def _end_epoch(self, epoch: int, *, partial: bool, n_images: int, train_time: float,
                   hit_max: bool, data_time: float | None = None) -> str | None:
        """Validate, select, record and checkpoint the end of ``epoch`` (``partial``: it stopped before its last
        batch); returns why the run stops (``"max_steps"``, ``"early_stopping"``) or None."""
        D.broadcast_buffers(self.model, self.dist)
        n_local = D.all_reduce_sum([self.accum["loss_sum"], self.accum["n"], self.accum["correct"],
                                    float(n_images)], self.dist)
        val = self.evaluate_part(self.parts["val"], weights=self.val_weights)
        eval_time = val.pop("eval_time_s")
        val.setdefault("prevalence", self.val_prevalence)  # which weighting the metrics (and the selection) used
        improved = val["selection_f1"] > self.best.get("selection_f1", self.best["macro_f1"])
        if improved:
            self.best = {"epoch": epoch + 1, "macro_f1": val["macro_f1"], "selection_f1": val["selection_f1"],
                         "bad_epochs": 0}
            self.best_val = self.last_eval
        else:
            self.best["bad_epochs"] = int(self.best["bad_epochs"]) + 1
        entry = {
            "epoch": epoch + 1,
            "step": self.step,
            "partial": bool(partial),
            "lr": {str(g.get("tier", i)): float(g["lr"]) for i, g in enumerate(self.optimizer.param_groups)},
            "train": {"loss": n_local[0] / max(n_local[1], 1), "accuracy": n_local[2] / max(n_local[1], 1),
                      "n": int(n_local[1])},
            "val": val,
            "best": bool(improved),
            "images_per_s": n_local[3] / train_time if train_time > 0 else None,
            "epoch_time_s": train_time,
            "data_wait_s": data_time,  # of epoch_time_s: waiting for batches (the rest: the device's work)
            "eval_time_s": eval_time,
            "peak_memory_mb": peak_memory_mb(self.device),
        }
        self.history.append(entry)
        if self.dist.is_main:
            _write_metrics_files(self.run_dir, self.history)
            self._log_epoch(entry)
        # the next position: a finished epoch continues with the next one
        if not partial:
            self.epoch = epoch + 1
            self.step_in_epoch = 0
        self.accum = {"loss_sum": 0.0, "n": 0.0, "correct": 0.0}
        if improved:
            self._save(self.best_path)
        return self._stop_or_save(hit_max)

    def _log_epoch(self, entry: dict[str, Any]) -> None:
        val = entry["val"]
        pcs = " ".join(f"{n}:Se={r['se']:.2f}/+P={r['ppv']:.2f}" for n, r in val["per_class"].items()
                       if r["support"])
        log.info("epoch %d step %d: train loss %.4f, val loss %.4f, acc %.3f, macro-F1 %.3f, selection-F1 %.3f "
                 "(%s)%s", entry["epoch"], entry["step"], entry["train"]["loss"], val["loss"], val["accuracy"],
                 val["macro_f1"], val["selection_f1"], pcs, "  [best]" if entry["best"] else "")

    def _stop_or_save(self, hit_max: bool) -> str | None:
        """Why the run stops after this epoch (``max_steps``, ``early_stopping``), or None: then ``last.pt`` is
        written when epochs remain."""
        cfg = self.cfg
        stop: str | None = None
        if hit_max:
            stop = "max_steps"
        elif cfg.early_stopping and self.best["bad_epochs"] >= cfg.early_stopping and self.epoch < cfg.epochs:
            log.info("early stopping: no better validation selection-F1 for %d epochs", self.best["bad_epochs"])
            stop = "early_stopping"
        if stop is None and self.epoch < cfg.epochs:
            self._save(self.ckpt_path)
        return stop

    # -- end --------------------------------------------------------------------------------------
    def _finish(self, stopped: str) -> TrainResult:
        D.barrier(self.dist)
        digests = D.gather_objects(state_digest(self.model), self.dist)
        best_metrics = None
        if self.best.get("epoch") is not None:
            best_metrics = self.history[int(self.best["epoch"]) - 1]["val"] if len(self.history) >= int(
                self.best["epoch"]) else None
            if self.best_path.exists():
                load_model_state(self.model, load_checkpoint(self.best_path, map_location=self.device).get("model"),
                                 path=self.best_path)
        decision = None
        if self.best.get("epoch") is not None and self.best_path.exists():
            decision = self._fit_decision()
        test_metrics = None
        if self.parts["test"].size:
            test_metrics = self.evaluate_part(self.parts["test"], rule=self.decision)
            test_metrics.pop("eval_time_s", None)
            test_metrics["majority"] = majority_metrics(self.majority, self.run_labels[self.parts["test"]],
                                                        self.class_names)
        paths = {name: self.run_dir / f for name, f in (
            ("config", "config.json"), ("run", "run.json"), ("metrics_jsonl", "metrics.jsonl"),
            ("metrics_csv", "metrics.csv"), ("last", "last.pt"), ("best", "best.pt"), ("report", "report.md"),
            ("split", "split.npz"), ("store_manifest", "store_manifest.json"))}
        if self.dist.is_main:
            if test_metrics is not None:
                atomic_write_json(self.run_dir / "test_metrics.json", test_metrics)
                plot_confusion_matrix(test_metrics, self.run_dir / "confusion_test.png", title="test (best model)")
                paths["test_metrics"] = self.run_dir / "test_metrics.json"
                paths["confusion_test"] = self.run_dir / "confusion_test.png"
            atomic_write_text(self.run_dir / "report.md", self._report(stopped, best_metrics, test_metrics))
            self._write_run_files("finished", stopped=stopped, steps=self.step, best_epoch=self.best.get("epoch"),
                                  rank_weight_digests=digests, resumed_at_step=self.resumed_from, decision=decision)
        D.barrier(self.dist)
        return TrainResult(run_dir=self.run_dir, config=self.cfg, history=self.history,
                           best_epoch=self.best.get("epoch"), best_metrics=best_metrics,
                           final_metrics=self.history[-1]["val"] if self.history else None,
                           test_metrics=test_metrics, steps=self.step, stopped=stopped, paths=paths,
                           step_evals=list(self.step_evals), decision=decision)

    def _fit_decision(self) -> dict[str, Any]:
        """Fit ``cfg.decision`` on the best model's validation probabilities (those of its epoch when this process
        kept them, else one more validation pass of ``best.pt``, which ``self.model`` holds now), store it in
        ``best.pt`` under ``decision``, and return ``run.json``'s ``decision``: the rule and the validation metrics
        (at the prevalence the selection used) before and after it."""
        cfg = self.cfg
        if self.best_val is None:  # a resumed run whose best epoch was evaluated by an earlier process
            self.evaluate_part(self.parts["val"], weights=self.val_weights)
            self.best_val = self.last_eval
        labels, probs = self.best_val["labels"], self.best_val["probs"]
        w = None if self.val_weights is None else self.val_weights[np.argsort(self.parts["val"], kind="stable")]
        prior = effective_prior(cfg.imbalance, self.run_labels[self.parts["train"]], len(self.class_names),
                                balanced_model=self.closed_form)  # the features model's LDA has equal priors
        rule = fit_decision(cfg.decision, probs, labels, train_prior=prior, weights=w,
                            min_support=cfg.select_min_support)
        self.decision = rule
        kw = dict(min_support=cfg.select_min_support, sample_weight=w)
        before = classification_metrics(labels, probs, self.class_names, **kw)
        after = classification_metrics(labels, probs, self.class_names, y_pred=rule.apply(probs), **kw)
        entry = {**rule.to_dict(), "validation": {"prevalence": self.val_prevalence, "epoch": self.best.get("epoch"),
                                                  "argmax": brief(before), "rule": brief(after)}}
        if self.dist.is_main:
            ckpt = load_checkpoint(self.best_path, map_location="cpu")
            ckpt["decision"] = rule.to_dict()
            save_checkpoint(self.best_path, ckpt)
            log.info("decision rule %s: validation selection-F1 %.4f (argmax %.4f), macro-F1 %.4f (argmax %.4f)",
                     rule.describe(), after["selection_f1"], before["selection_f1"], after["macro_f1"],
                     before["macro_f1"])
        return entry

    def _report(self, stopped: str, best: dict[str, Any] | None, test: dict[str, Any] | None) -> str:
        cfg, store = self.cfg, self.store
        lines = [f"# Fine-tuning report: {self.run_dir.name}", "",
                 f"- store: `{store.path}` ({store.manifest.get('database')}, task {store.manifest.get('task')}, "
                 f"manifest {store.manifest_hash[:12]})",
                 f"- classes: {', '.join(self.class_names)}",
                 f"- split {'explicit' if self.split_arg is not None else '`' + cfg.split + '`'}: " + ", ".join(f"{k} {len(v)}" for k, v in self.parts.items()),
                 f"- model `{cfg.model}`"
                 + (f", init `{cfg.init}`, encoding `{cfg.encoding}` at {cfg.image_size}x{cfg.image_size}"
                    if self.encoder is not None else " (raw beats)")
                 + f", RR context {', '.join(self._rr_columns()) or 'off'}"
                 + ("" if self.closed_form else f", tiers {list(cfg.tiers)}, {cfg.scheduler} schedule")
                 + f", imbalance `{cfg.imbalance}`",
                 f"- left out: {', '.join(self.excluded) or 'nothing'}; majority cap per patient: "
                 f"{cfg.majority_cap or 'none'} (train and val; the test part is never subsampled)",
                 f"- {self.step} steps, stopped by {stopped}; best validation selection-F1 (macro-F1 over the classes "
                 f"with >= {cfg.select_min_support} validation segments) {self.best.get('selection_f1', float('nan')):.4f}"
                 f", macro-F1 {self.best.get('macro_f1', float('nan')):.4f} at epoch {self.best.get('epoch')}"
                 f" (validation prevalence: {self.val_prevalence})",
                 f"- decision rule: {self.decision.describe()}; the test metrics below are the rule's", ""]
        for title, m in (("Validation (best epoch)", best), ("Test (best model)", test)):
            if m is None:
                continue
            lines += [f"## {title}", "",
                      f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, macro AUROC "
                      f"{m['macro_auroc']:.4f}, n = {m['n']}", ""]
            if m.get("majority"):
                mj = m["majority"]
                lines += [f"Majority line (always `{mj['predicts']}`): accuracy {mj['accuracy']:.4f}, "
                          f"macro-F1 {mj['macro_f1']:.4f}.", ""]
            if m.get("argmax") and (m.get("decision") or {}).get("method") != "argmax":
                am = m["argmax"]
                lines += [f"Decision rule `{m['decision']['method']}`; the plain arg-max gives accuracy "
                          f"{am['accuracy']:.4f}, macro-F1 {am['macro_f1']:.4f}.", ""]
            lines += [metrics_table(m), ""]
            if m.get("aami") and set(self.class_names) >= {"N", "S", "V"}:
                lines += ["de Chazal et al. (2004) layout, in % (gross: pooled over all beats; per-record average: "
                          "mean over the records holding / predicted as the class):", "", dechazal_table(m["aami"]),
                          ""]
            if store.manifest.get("database") == dechazal_database().name and set(self.class_names) >= {"N", "S", "V"}:
                lines += ["AAMI-style table (Se = sensitivity, +P = positive predictivity):", "", aami_table(m), ""]
            lines += [f"_{note}_" for note in m.get("notes", [])] + [""]
        return "\n".join(lines)


def fine_tune(store: SegmentStore | str | os.PathLike, config: TrainConfig | Mapping[str, Any] | str | None = None,
              *, out: str | os.PathLike | None = None, resume: bool = False, split_indices: Any | None = None,
              **overrides: Any) -> TrainResult:
    """Fine-tune the ResNet50 on a segment store.

    Args:
        store: a :class:`SegmentStore` or its path.
        config: a :class:`TrainConfig`, a dict of its fields, a TOML path, or ``None`` (defaults).
        out: run directory (created; default ``runs/<database>-<timestamp>``).
        resume: continue the run in ``out`` from its ``last.pt`` (a fresh start when there is none).
        split_indices: explicit split (a :class:`~ecgtransfer.signals.split.Split` or a mapping with ``train``,
            ``val``, ``test`` index arrays) instead of the configured split method (``config.split``).
        **overrides: TrainConfig fields overriding ``config``.

    Returns:
        a :class:`TrainResult`.

    Raises:
        TrainingError: empty split, single class, NaN loss, an incompatible checkpoint on resume.
        WeightsUnavailableError: ImageNet weights requested but not obtainable (offline, not cached).
    """
    cfg = resolve_config(config, **overrides)
    store = store if isinstance(store, SegmentStore) else SegmentStore(store)
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{store.manifest.get('database', 'store')}-{stamp}"
    out = check_output_dir(out, kind=RUN_LAYOUT, inputs={"STORE": store.path})  # before anything is written
    check_run_identity(out, cfg, resume=resume)
    if store.multilabel:  # multi-hot targets (ptb-xl): sigmoid outputs, BCE, selection on validation macro AUC
        from ecgtransfer.training.multilabel import fine_tune_multilabel

        with FolderLock(out, what="run directory"):
            return fine_tune_multilabel(store, cfg, out, resume=resume, split=split_indices)
    trainer = _Trainer(store, cfg, out, resume=resume, split=split_indices)
    lock = FolderLock(out, what="run directory")  # one writer per run directory: global rank 0 writes it
    try:
        if int(os.environ.get("RANK", "0")) == 0:
            lock.acquire()
        trainer.setup()
        return trainer.run()
    finally:
        lock.release()
        if getattr(trainer, "_own_pg", False):
            D.destroy_distributed(trainer.dist)
