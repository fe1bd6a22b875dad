"""Multi-label training, evaluation and prediction (PTB-XL's statements): sigmoid outputs, binary cross-entropy.

:func:`ecgtransfer.training.fine_tune` hands a store with multi-hot targets (``store.multilabel``, the ``multilabel``
task of ptb-xl) to :func:`fine_tune_multilabel`; the single-label engine is not touched. The loop:

* the model of the run's config (``resnet50`` on images ``[B, 3, S, S]`` rendered per batch on the device, e.g.
  ``encoding_params = {lead = "grid"}`` for the 12 leads as tiles; ``cnn1d`` on the raw ``[B, 12, L]``), one logit
  per label ``[B, K]``;
* loss ``BCEWithLogits``; ``imbalance = "weighted"`` sets per-label positive weights ``n_neg / n_pos`` of the training
  part (capped at :data:`MAX_POS_WEIGHT`; a label without a positive gets 1), ``"none"`` none (``"sampler"`` is a
  single-label rule and is refused);
* the tiered optimiser and schedule of the config, gradient clipping at ``grad_clip``; the single-label engine's
  precision rules (:mod:`ecgtransfer.training.precision`: ``amp`` bf16 / fp16 autocast of the model's forward, the
  images rendered in float32, fp16 with a gradient scaler; ``channels_last``); one process;
* model selection on the validation **macro AUC** (:mod:`ecgtransfer.training.multilabel_metrics`), ``best.pt``;
  ``early_stopping`` epochs without a better one stop the run;
* the best model on the test part: per-label AUC, macro AUC and Fmax with 95% intervals from a bootstrap over
  test patients (``test_metrics.json``, ``report.md``).

A multilabel run is one process without ``--resume`` continuation: ``--resume`` of a finished run returns it, of an
unfinished one starts it again.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ecgtransfer._atomic import atomic_write_json, atomic_write_text
from ecgtransfer.errors import ConfigError, TrainingError
from ecgtransfer.imaging import check_finite
from ecgtransfer.store import SegmentStore
from ecgtransfer.training.checkpoint import load_checkpoint, load_model_state, save_checkpoint, seed_everything
from ecgtransfer.training.config import TrainConfig
from ecgtransfer.training.multilabel_metrics import auc_table, bootstrap_intervals, multilabel_metrics
from ecgtransfer.training.precision import describe as describe_precision, dtype_name, run_precision
from ecgtransfer.training.run_files import read_json_object, read_split
from ecgtransfer.training.runtime import environment, infer, logits_of, resolve_device
from ecgtransfer.training.scoring import score_part

log = logging.getLogger(__name__)

#: the largest positive weight of a label (a label with 1 positive in 10,000 records would get 9,999)
MAX_POS_WEIGHT = 100.0


def pos_weights(targets: np.ndarray) -> np.ndarray:
    """Per-label positive weights ``n_neg / n_pos`` ``[K]`` of targets ``[N, K]``, in ``[1/MAX, MAX]``; 1 without a
    positive."""
    y = np.asarray(targets, dtype=np.float64)
    pos = y.sum(0)
    w = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
    return np.clip(w, 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT)


def _parts(store: SegmentStore, cfg: TrainConfig, split: Any | None) -> dict[str, np.ndarray]:
    if split is None:
        s = cfg.data_split.apply(store, default_seed=cfg.seed)
        return {"train": s.train, "val": s.val, "test": s.test}
    get = split.get if isinstance(split, dict) else (lambda k, d=None: getattr(split, k, d))
    return {k: np.asarray(get(k, np.zeros(0, np.int64)), dtype=np.int64) for k in ("train", "val", "test")}


def _build(cfg: TrainConfig, store_fs: float, spec: Any, *, weights: Any, class_names: Sequence[str],
           device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    from ecgtransfer.models.registry import MODEL_INPUT, build_model

    encoder = cfg.image_encoder(store_fs).to(device) if MODEL_INPUT[cfg.model] == "images" else None
    model = build_model(spec, weights=weights, class_names=class_names).to(device)
    return model, encoder


def _spec(cfg: TrainConfig, store: SegmentStore, k: int) -> Any:
    from ecgtransfer.models.registry import CLOSED_FORM, MODEL_INPUT, ModelSpec

    if cfg.model in CLOSED_FORM:
        raise ConfigError(f"model {cfg.model!r} is a single-label closed form; multilabel runs train resnet50 or "
                          "cnn1d")
    channels = int(store.shape[1])
    if MODEL_INPUT[cfg.model] == "images":
        channels = cfg.image_encoder(store.fs).out_channels(channels)
    return ModelSpec(kind=cfg.model, num_classes=k, in_channels=channels, rr_dim=0, length=int(store.shape[2]),
                     fs=float(store.fs), r_index=0, n_leads=0)


def precision_of(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, channels_last)`` of ``cfg`` on ``device`` (:func:`~ecgtransfer.training.precision.
    run_precision`, the single-label runs' rule)."""
    return run_precision(cfg.amp, cfg.channels_last, device)


def _probs(model: torch.nn.Module, encoder: torch.nn.Module | None, store: SegmentStore, idx: np.ndarray,
           device: torch.device, batch: int, *, dtype: torch.dtype | None = None, channels_last: bool = False
           ) -> np.ndarray:
    """Sigmoid probabilities ``[n, K]`` of segments ``[n, C, L]`` (``store`` rows ``idx``, in their order), in
    batches: the one scoring path (:func:`ecgtransfer.training.scoring.score_part`) with sigmoid outputs."""
    idx = np.asarray(idx, dtype=np.int64)
    if not len(idx):
        return np.zeros((0, store.num_classes))
    part = score_part(model, encoder, store, idx, label_map=None, rr_dim=0, beat_input="leads", batch_size=batch,
                      device=device, dtype=dtype, channels_last=channels_last, activation="sigmoid")
    return part.probs_in_order_of(idx)


@dataclass(frozen=True)
class _Setup:
    """What a multilabel run trains with (:func:`_build_setup`)."""

    device: torch.device
    parts: dict[str, np.ndarray]
    targets: np.ndarray  # [N, K] float32 multi-hot
    spec: Any
    model: torch.nn.Module
    encoder: torch.nn.Module | None  # validation and test (checks its batches for NaN/inf)
    train_encoder: torch.nn.Module | None  # the train step's (its batch is checked in the loss read-back)
    dtype: torch.dtype | None
    channels_last: bool
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    steps_per_epoch: int
    pos_weight: np.ndarray | None  # [K], None: imbalance "none"


def _build_setup(store: SegmentStore, cfg: TrainConfig, split: Any | None) -> _Setup:
    """Threads, device, seed, parts (train and validation must not be empty), model and precision, the tiered
    optimiser and its schedule, the per-label positive weights; in this order (the seed before the weights)."""
    from ecgtransfer.models.tiers import build_optimizer
    from ecgtransfer.training.run_setup import schedule_of, set_threads

    set_threads(cfg)  # the single-label run's rule (capped: libgomp aborts on a huge count)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    parts = _parts(store, cfg, split)
    for name in ("train", "val"):
        if not len(parts[name]):
            raise TrainingError(f"the {name} part of {store.path} is empty; a multilabel run needs train and "
                                "validation records")
    names = store.class_names
    y_all = np.asarray(store.targets, dtype=np.float32)
    spec = _spec(cfg, store, len(names))
    model, encoder = _build(cfg, store.fs, spec, weights=None if cfg.init == "scratch" else cfg.init,
                            class_names=names, device=device)
    dtype, channels_last = precision_of(cfg, device)
    log.info("%s", describe_precision(cfg.amp, cfg.channels_last, device, dtype, channels_last))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    optimizer = build_optimizer(model, cfg.tier_config())
    steps_per_epoch = max(1, len(parts["train"]) // cfg.batch_size)
    scheduler = schedule_of(optimizer, cfg, steps_per_epoch)[2]
    pw = pos_weights(y_all[parts["train"]]) if cfg.imbalance == "weighted" else None
    # the train step checks its batch for NaN/inf in its one read-back from the device, not in the encoder
    train_encoder = None if encoder is None else cfg.image_encoder(store.fs, check_finite_values=False).to(device)
    return _Setup(device=device, parts=parts, targets=y_all, spec=spec, model=model, encoder=encoder,
                  train_encoder=train_encoder, dtype=dtype,
                  channels_last=channels_last, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                  steps_per_epoch=steps_per_epoch, pos_weight=pw)


def _write_start_files(out: Path, store: SegmentStore, cfg: TrainConfig, run: _Setup) -> dict[str, Any]:
    """``config.json``, ``store_manifest.json``, ``split.npz`` and a ``run.json`` of status ``running``; returns the
    ``run.json`` content (finished by :func:`fine_tune_multilabel`)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.to_dict())
    atomic_write_json(out / "store_manifest.json", store.manifest)
    np.savez(out / "split.npz", **run.parts)
    pw = run.pos_weight
    run_info = {"status": "running", "task": "multilabel", "store": str(store.path),
                "store_manifest_hash": store.manifest_hash, "class_names": store.class_names,
                "level": store.manifest["multilabel"].get("level"), "environment": environment(run.device),
                "sizes": {k: int(len(v)) for k, v in run.parts.items()},
                "pos_weight": None if pw is None else pw.tolist(), "selection": {"metric": "val_macro_auc"},
                "amp": dtype_name(run.dtype), "channels_last": bool(run.channels_last)}
    atomic_write_json(out / "run.json", run_info)
    return run_info


def _train_epoch(store: SegmentStore, cfg: TrainConfig, run: _Setup, epoch: int, step: int,
                 pos_weight: torch.Tensor | None) -> tuple[int, float, int]:
    """One epoch over a seeded permutation of the training part, in batches ``[B, C, L]`` (a batch of fewer than 2
    is skipped), up to ``max_steps``; returns ``(step, summed loss, segments seen)``."""
    model, optimizer, scaler = run.model, run.optimizer, run.scaler
    model.train()
    rng = np.random.default_rng([cfg.seed, epoch, 104729])
    order = rng.permutation(run.parts["train"])
    loss_sum, n_seen = 0.0, 0
    for b in range(run.steps_per_epoch):
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        if len(idx) < 2:
            continue
        x = torch.from_numpy(store.batch(idx)).to(run.device)
        y = torch.from_numpy(run.targets[idx]).to(run.device)
        finite = torch.isfinite(x).all()
        logits = logits_of(model, run.train_encoder, x, dtype=run.dtype, channels_last=run.channels_last)  # float32
        loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
        loss_v, finite_v = torch.stack([loss.detach(), finite.to(loss.dtype)]).tolist()  # one device sync a step
        if not finite_v and run.encoder is not None:  # the image encoder's refusal of a NaN/inf batch, as before
            check_finite(x, name="encode")
        if not math.isfinite(loss_v):
            raise TrainingError(f"the training loss became {loss_v} at epoch {epoch + 1}, step "
                                f"{step + 1}; lower the learning rates")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # fp16: scaled; otherwise the scaler is a no-op
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        run.scheduler.step()
        step += 1
        loss_sum += loss_v * len(idx)
        n_seen += len(idx)
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return step, loss_sum, n_seen


def _train(store: SegmentStore, cfg: TrainConfig, run: _Setup, out: Path) -> tuple[dict[str, Any], int, str]:
    """The epochs: train, validate (macro AUC selects ``best.pt``; ``metrics.jsonl`` gets a line per epoch), stop at
    ``max_steps`` or after ``early_stopping`` epochs without a better one. Returns ``(best, steps, stopped)``."""
    names = store.class_names
    pw = run.pos_weight
    pos_weight = None if pw is None else torch.tensor(pw, dtype=torch.float32, device=run.device)
    best: dict[str, Any] = {"epoch": None, "macro_auc": -math.inf, "bad": 0}
    step, stopped = 0, "epochs"
    base = {"spec": asdict(run.spec), "class_names": list(names),
            "config": cfg.to_dict(), "store_manifest_hash": store.manifest_hash, "task": "multilabel"}
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as mfile:
        for epoch in range(cfg.epochs):
            t0 = time.monotonic()
            step, loss_sum, n_seen = _train_epoch(store, cfg, run, epoch, step, pos_weight)
            pv = _probs(run.model, run.encoder, store, run.parts["val"], run.device, cfg.eval_batch(),
                        dtype=run.dtype, channels_last=run.channels_last)
            val = multilabel_metrics(run.targets[run.parts["val"]], pv, names)
            improved = val["macro_auc"] > best["macro_auc"]
            entry = {"epoch": epoch + 1, "step": step, "train": {"loss": loss_sum / max(n_seen, 1)},
                     "val": {k: val[k] for k in ("macro_auc", "fmax", "n", "auc")},
                     "epoch_s": time.monotonic() - t0}
            mfile.write(json.dumps(entry) + "\n")
            mfile.flush()
            log.info("epoch %d step %d: train loss %.4f, val macro-AUC %.4f, Fmax %.4f%s", epoch + 1, step,
                     entry["train"]["loss"], val["macro_auc"], val["fmax"], "  [best]" if improved else "")
            if improved:
                best = {"epoch": epoch + 1, "macro_auc": val["macro_auc"], "bad": 0, "val": val}
                save_checkpoint(out / "best.pt", {**base, "model": run.model.state_dict(), "epoch": epoch + 1})
            else:
                best["bad"] += 1
            if cfg.max_steps and step >= cfg.max_steps:
                stopped = "max_steps"
                break
            if cfg.early_stopping and best["bad"] >= cfg.early_stopping:
                stopped = "early_stopping"
                break
    return best, step, stopped


def fine_tune_multilabel(store: SegmentStore, cfg: TrainConfig, out: Path, *, resume: bool = False,
                         split: Any | None = None) -> Any:
    """Train ``cfg``'s model on a multilabel store into ``out``; returns a
    :class:`~ecgtransfer.training.engine.TrainResult`-like object (``run_dir``, ``best_epoch``, ``best_metrics``,
    ``test_metrics``, ``history``, ``paths``)."""
    if resume and (out / "test_metrics.json").is_file() and (out / "run.json").is_file():
        return _result(out)
    if cfg.imbalance == "sampler":
        raise ConfigError("imbalance = 'sampler' draws single-label classes; a multilabel run takes 'weighted' "
                          "(per-label positive weights) or 'none'")
    run = _build_setup(store, cfg, split)
    run_info = _write_start_files(out, store, cfg, run)
    best, step, stopped = _train(store, cfg, run, out)
    test = None
    if len(run.parts["test"]):
        load_model_state(run.model, load_checkpoint(out / "best.pt")["model"], path=out / "best.pt")
        test = score(run.model, run.encoder, store, run.parts["test"], run.device, cfg.eval_batch(), seed=cfg.seed,
                     dtype=run.dtype, channels_last=run.channels_last)
        atomic_write_json(out / "test_metrics.json", test)
    run_info.update({"status": "finished", "stopped": stopped, "steps": step, "best_epoch": best["epoch"],
                     "best_val_macro_auc": best["macro_auc"]})
    atomic_write_json(out / "run.json", run_info)
    atomic_write_text(out / "report.md", report(run_info, best.get("val"), test))
    return _result(out)


def score(model: torch.nn.Module, encoder: torch.nn.Module | None, store: SegmentStore, idx: np.ndarray,
          device: torch.device, batch: int, *, seed: int = 0, replicates: int | None = None,
          dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[str, Any]:
    """Metrics of ``model`` on the store rows ``idx`` with intervals from a bootstrap over their patients."""
    from ecgtransfer.training.multilabel_metrics import REPLICATES

    p = _probs(model, encoder, store, idx, device, batch, dtype=dtype, channels_last=channels_last)
    y = np.asarray(store.targets)[idx]
    m = multilabel_metrics(y, p, store.class_names)
    m["intervals"] = bootstrap_intervals(y, p, store.patient_ids[idx], store.class_names, seed=seed,
                                         replicates=REPLICATES if replicates is None else replicates)
    m["n_patients"] = m["intervals"]["n_patients"]  # the patients the bootstrap drew from
    return m


def report(run_info: dict[str, Any], val: dict[str, Any] | None, test: dict[str, Any] | None) -> str:
    """``report.md`` of a multilabel run."""
    lines = [f"# Multilabel run ({run_info.get('level')} labels)", "",
             f"- store {run_info['store']}, parts {run_info['sizes']}; {run_info.get('steps')} steps, stopped by "
             f"{run_info.get('stopped')}; best epoch {run_info.get('best_epoch')} on validation macro AUC "
             f"{run_info.get('best_val_macro_auc', float('nan')):.4f}"]
    if test is not None:
        iv = test["intervals"]
        fmt = (lambda v: "-" if not v else f"[{v[0]:.3f}, {v[1]:.3f}]")
        lines += ["", f"## Test ({test['n']} records, {test['n_patients']} patients)", "",
                  f"macro AUC {test['macro_auc']:.4f} {fmt(iv['macro_auc'])}, Fmax {test['fmax']:.4f} "
                  f"{fmt(iv['fmax'])} (95% intervals: {iv['replicates']} bootstrap replicates over patients); "
                  f"labels without a positive or negative in the test part: {', '.join(test['undefined']) or 'none'}",
                  "", auc_table(test)]
    return "\n".join(lines) + "\n"


def _result(out: Path) -> Any:
    from types import SimpleNamespace

    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    test_path = out / "test_metrics.json"
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    best = next((h["val"] for h in history if h["epoch"] == info.get("best_epoch")), None)
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text(encoding="utf-8")))
    return SimpleNamespace(run_dir=out, best_epoch=info.get("best_epoch"), best_metrics=best, history=history,
                           test_metrics=json.loads(test_path.read_text()) if test_path.is_file() else None,
                           stopped=info.get("stopped"), steps=info.get("steps"), config=config, step_evals=[],
                           paths={"best": out / "best.pt", "report": out / "report.md"})


def load_multilabel(run_dir: str | os.PathLike, *, checkpoint: str = "best", device: str | None = None
                    ) -> tuple[torch.nn.Module, torch.nn.Module | None, dict[str, Any], torch.device]:
    """``(model, encoder, checkpoint dict, device)`` of a multilabel run."""
    from ecgtransfer.models.registry import ModelSpec

    run = Path(run_dir)
    path = run / f"{checkpoint}.pt" if checkpoint in ("best", "last") else Path(checkpoint)
    ckpt = load_checkpoint(path)
    if ckpt.get("task") != "multilabel":
        raise TrainingError(f"{path} is not a multilabel checkpoint")
    cfg = TrainConfig.from_dict(ckpt["config"])
    dev = resolve_device(device or "cpu")
    spec = ModelSpec(**ckpt["spec"])
    manifest = read_json_object(run / "store_manifest.json", "store manifest")
    model, encoder = _build(cfg, float(manifest["fs"]), spec, weights=None, class_names=ckpt["class_names"],
                            device=dev)
    load_model_state(model, ckpt["model"], path=path)
    if precision_of(cfg, dev)[1]:
        model = model.to(memory_format=torch.channels_last)
    model.eval()
    return model, encoder, ckpt, dev


def part_probabilities(run_dir: str | os.PathLike, store: SegmentStore, idx: np.ndarray, device: str | None = None,
                       *, checkpoint: str = "best", batch_size: int = 64) -> np.ndarray:
    """Sigmoid probabilities ``[n, K]`` of a multilabel run's model on the store rows ``idx`` (e.g. its validation
    part, :func:`ecgtransfer.training.run_files.read_split`)."""
    model, encoder, ckpt, dev = load_multilabel(run_dir, checkpoint=checkpoint, device=device)
    dtype, cl = precision_of(TrainConfig.from_dict(ckpt["config"]), dev)
    return _probs(model, encoder, store, np.asarray(idx, dtype=np.int64), dev, batch_size, dtype=dtype,
                  channels_last=cl)


def evaluate_multilabel(run_dir: str | os.PathLike, store: SegmentStore, split: str = "test", *,
                        checkpoint: str = "best", device: str | None = None, batch_size: int | None = None,
                        out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Per-label AUC, macro AUC and Fmax with patient-bootstrap intervals of a multilabel run on ``split``; writes
    ``eval_<split>.json``."""
    model, encoder, ckpt, dev = load_multilabel(run_dir, checkpoint=checkpoint, device=device)
    if list(ckpt["class_names"]) != store.class_names:
        raise TrainingError(f"store {store.path} has the labels {store.class_names[:6]}..., the run "
                            f"{ckpt['class_names'][:6]}...; convert the store at the run's level")
    from ecgtransfer.training.data import make_split

    run = Path(run_dir)
    cfg = TrainConfig.from_dict(ckpt["config"])
    if split == "all":
        idx = np.arange(len(store))
    elif store.manifest_hash == ckpt["store_manifest_hash"] and (run / "split.npz").is_file():
        idx = read_split(run / "split.npz", len(store), parts=(split,))[split]
    else:
        idx = make_split(store, cfg)[split]
    dtype, cl = precision_of(cfg, dev)
    m = score(model, encoder, store, idx, dev, batch_size or 64, dtype=dtype, channels_last=cl)
    m.update({"split": split, "checkpoint": checkpoint, "task": "multilabel"})
    dest = Path(out) if out is not None else run
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_json(dest / f"eval_{split}.json", m)
    m["paths"] = {"metrics": str(dest / f"eval_{split}.json")}
    return m


def predict_multilabel(run_dir: str | os.PathLike, records: Sequence[str | os.PathLike], *, checkpoint: str = "best",
                       device: str | None = None, fs: float | None = None,
                       lead: str | Sequence[str] | None = None, units: str | None = None,
                       batch_size: int = 64) -> Any:
    """Per-statement probabilities of recordings (one row per recording: ``record``, ``p_<label>`` ...): WFDB records,
    EDF/EDF+, CSV or ``.npy`` files, opened as ``predict`` opens them (:func:`ecgtransfer.signals.readers.open_recording`,
    ``fs`` / ``units`` for CSV and ``.npy``; leads by the store's names or ``lead``), each processed as the training
    store's records were (filter, resampling, the first ``window`` seconds, zero-padded), scored in batches of
    ``batch_size`` records ``[B, 12, L]``."""
    import pandas as pd

    from ecgtransfer.signals import filters, readers, rhythm

    model, encoder, ckpt, dev = load_multilabel(run_dir, checkpoint=checkpoint, device=device)
    manifest = read_json_object(Path(run_dir) / "store_manifest.json", "store manifest")
    params = manifest["parameters"]
    dtype, cl = precision_of(TrainConfig.from_dict(ckpt["config"]), dev)
    recs = [readers.open_recording(path, fs=fs, units=units) for path in records]
    names, probs = [], []

    def score(segs: list[np.ndarray]) -> None:  # the one batched inference (runtime.infer), sigmoid outputs
        idx = np.arange(len(names) - len(segs), len(names))
        out = infer(model, encoder, [(torch.from_numpy(np.concatenate(segs)), None, idx)], dev, dtype=dtype,
                    channels_last=cl, activation="sigmoid")
        probs.append(out["probs"])

    segs: list[np.ndarray] = []
    for rec, rid in zip(recs, readers.unique_record_ids(recs)):
        leads = readers.select(rec, lead, list(manifest["lead_names"]))
        window = int(params["window_samples"])
        need = int(np.ceil(window * rec.fs / float(manifest["fs"]))) + 1  # the source samples of one window
        x = rec.read(leads, 0, need)
        x = filters.apply_filter(x, rec.fs, params["filter"], tuple(params["band"]), params["filter_order"])
        x = filters.resample(x, rec.fs, float(manifest["fs"]))
        x = rhythm.pad_crop(x, window)
        segs.append(filters.normalize(x[None], params["normalize"]).astype(np.float32))
        names.append(rid)
        if len(segs) == batch_size:
            score(segs)
            segs = []
    if segs:
        score(segs)
    frame = pd.DataFrame({"record": names})
    if not names:
        return frame
    p = np.concatenate(probs)
    for j, name in enumerate(ckpt["class_names"]):
        frame[f"p_{name}"] = p[:, j]
    return frame


__all__ = ["MAX_POS_WEIGHT", "pos_weights", "fine_tune_multilabel", "score", "report", "load_multilabel",
           "part_probabilities", "precision_of", "evaluate_multilabel", "predict_multilabel"]
