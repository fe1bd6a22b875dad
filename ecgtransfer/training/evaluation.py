"""Evaluate a trained run on a store: ``evaluate(run_dir, store, split="test")`` and ``ecgtransfer evaluate``."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ecgtransfer._atomic import atomic_write_json
from ecgtransfer._outdir import ATOMIC_TMP, FolderLayout, peek_json, register_layout
from ecgtransfer.errors import TrainingError
from ecgtransfer.store import SegmentStore
from ecgtransfer.training import run_files
from ecgtransfer.training.checkpoint import load_checkpoint, load_model_state
from ecgtransfer.training.config import TrainConfig
from ecgtransfer.training.data import class_subset, make_split, resolve_rr
from ecgtransfer.training.decision import DECISION_USES, DecisionRule, scored
from ecgtransfer.training.metrics import plot_confusion_matrix
from ecgtransfer.training.precision import run_precision
from ecgtransfer.training.runtime import resolve_device
from ecgtransfer.training.scoring import PartScores, score_part

log = logging.getLogger(__name__)


def _eval_files_are_ours(entries: list[str], folder: Path) -> bool:
    """Each ``eval_<split>.json`` of an ``evaluate --out`` folder is metrics with their split and paths."""
    for e in entries:
        if e.endswith(".json") and not ATOMIC_TMP.match(e):
            obj = peek_json(folder / e)
            if obj is None or "split" not in obj or "paths" not in obj:
                return False
    return True


#: what :func:`evaluate` writes into ``evaluate --out``, for the output-folder rule (:mod:`ecgtransfer._outdir`):
#: only ``eval_<split>.json`` (metrics with their split) and their PNGs
EVAL_LAYOUT = register_layout(FolderLayout(
    "eval", "an ecgtransfer evaluation folder",
    patterns=(re.compile(r"^eval_[A-Za-z0-9]+(\.json|_confusion\.png)$"), ATOMIC_TMP), check=_eval_files_are_ours))


@dataclass
class LoadedRun:
    """A trained model ready for inference.

    Attributes:
        run_dir: the run directory.
        config: its :class:`TrainConfig`.
        model: the ResNet50 in eval mode on ``device``.
        encoder: the :class:`~ecgtransfer.imaging.ImageEncoder` of the run on ``device``.
        class_names: the classes, in output order.
        store_manifest: the training store's manifest (conversion parameters), or ``{}``.
        store_manifest_hash: hash of the training store's manifest.
        checkpoint: path of the loaded checkpoint.
        device, dtype, channels_last: inference settings.
        class_weights: the loss weights of the run ``[K]``.
        spec: the :class:`~ecgtransfer.models.registry.ModelSpec` the model was built from.
        rr_columns: the RR-context columns the model reads (``[]``: none), a prefix of
            :data:`ecgtransfer.signals.beats.RR_FEATURES`.
        excluded_classes: store classes the run left out (no output for them).
        decision: the checkpoint's :class:`~ecgtransfer.training.decision.DecisionRule` (``"argmax"`` for a
            checkpoint without one, or when loaded with ``decision="argmax"``).
    """

    run_dir: Path
    config: TrainConfig
    model: nn.Module
    encoder: nn.Module
    class_names: list[str]
    store_manifest: dict[str, Any]
    store_manifest_hash: str
    checkpoint: Path
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    class_weights: np.ndarray
    spec: Any = None
    rr_columns: list[str] = field(default_factory=list)
    excluded_classes: list[str] = field(default_factory=list)
    decision: DecisionRule = field(default_factory=DecisionRule)

    @property
    def rr_dim(self) -> int:
        """RR-context columns the model reads (0: none)."""
        return len(self.rr_columns)


def is_multilabel_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a multilabel run (``run.json`` ``task``; :mod:`ecgtransfer.training.multilabel`)."""
    run = peek_json(Path(run_dir) / "run.json")  # None for a missing, unreadable or non-regular file
    return run is not None and run.get("task") == "multilabel"


def _json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object file of a run directory, or one :class:`TrainingError` line naming it."""
    return run_files.read_json_object(path, what)


def load_run(run_dir: str | os.PathLike, *, checkpoint: str = "best", device: str | None = None,
             decision: str = DECISION_USES[0]) -> LoadedRun:
    """Rebuild the model of a run from ``config.json`` and ``best.pt`` / ``last.pt`` (or a checkpoint path), with
    the checkpoint's decision rule (``decision="stored"``; ``"argmax"``: the plain arg-max)."""
    from ecgtransfer.models.registry import MODEL_INPUT, build_model

    if decision not in DECISION_USES:
        raise TrainingError(f"decision must be one of {DECISION_USES}, got {decision!r}")

    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.json"
    if not os.path.lexists(cfg_file):
        raise TrainingError(f"{run_dir} is not a training run directory: no config.json")
    cfg = TrainConfig.from_dict(_json_object(cfg_file, "training config"))
    path = Path(checkpoint) if checkpoint not in ("best", "last") else run_dir / f"{checkpoint}.pt"
    if checkpoint == "best" and not path.exists() and (run_dir / "last.pt").exists():
        log.warning("%s has no best.pt; using last.pt", run_dir)
        path = run_dir / "last.pt"
    dev = resolve_device(device or cfg.device)
    ckpt, names = _checked_checkpoint(path, cfg, cfg_file)
    manifest_file = run_dir / "store_manifest.json"
    manifest = {}
    if os.path.lexists(manifest_file):
        manifest = _json_object(manifest_file, "store manifest of the run")
        run_files.check_store_manifest(manifest, manifest_file)
    spec = _saved_spec(ckpt, path)
    kind = spec.kind if spec is not None else "resnet50"
    encoder = cfg.image_encoder(manifest.get("fs")) if MODEL_INPUT[kind] == "images" else None
    spec = _checked_spec(spec, ckpt, path, manifest, encoder, names)
    model = build_model(spec)
    from ecgtransfer.models.weights import check_finite_state

    load_model_state(model, ckpt["model"], path=path)
    check_finite_state(ckpt["model"], path)
    model.eval()
    run_file = run_dir / "run.json"
    run = _json_object(run_file, "run record") if os.path.lexists(run_file) else {}
    dtype, channels_last = run_precision(cfg.amp, cfg.channels_last, dev)  # the run's choices, on this device
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if encoder is not None:
        encoder = encoder.to(dev)
    weights = run_files.class_weights(run, len(names), run_file)
    try:
        rule = DecisionRule.from_dict(ckpt.get("decision") if decision == "stored" else None,
                                      num_classes=len(names))
    except TrainingError as exc:
        raise TrainingError(f"checkpoint {path}: {exc}") from None
    from ecgtransfer.signals.beats import RR_FEATURES

    return LoadedRun(run_dir=run_dir, config=cfg, model=model, encoder=encoder, class_names=names,
                     store_manifest=manifest, store_manifest_hash=str(ckpt.get("store_manifest_hash", "")),
                     checkpoint=path, device=dev, dtype=dtype, channels_last=channels_last,
                     class_weights=weights, spec=spec, rr_columns=list(RR_FEATURES[:spec.rr_dim]),
                     excluded_classes=[str(c) for c in ckpt.get("excluded_classes", [])], decision=rule)


def _checked_checkpoint(path: Path, cfg: TrainConfig, cfg_file: Path) -> tuple[dict[str, Any], list[str]]:
    """``(checkpoint, class names)`` of ``path``, refused when its settings are not ``config.json``'s or it lacks
    its class names or model state."""
    ckpt = load_checkpoint(path, map_location="cpu")
    saved = ckpt.get("config")
    diff = cfg.incompatible_with(saved) if isinstance(saved, dict) else {}
    if diff:  # e.g. two runs written into one folder: config.json of one, the checkpoint of the other
        detail = ", ".join(f"{k}: checkpoint {a!r} vs config.json {b!r}" for k, (a, b) in sorted(diff.items()))
        raise TrainingError(f"{cfg_file} does not match the settings stored in {path} ({detail}); the run directory "
                            "mixes two runs: train again into a new folder")
    names = ckpt.get("class_names")
    if not isinstance(names, list) or not names or not isinstance(ckpt.get("model"), dict):
        raise TrainingError(f"checkpoint {path} lacks its class names or model state; it is damaged")
    return ckpt, [str(n) for n in names]


def _saved_spec(ckpt: dict[str, Any], path: Path) -> Any:
    """The checkpoint's :class:`~ecgtransfer.models.registry.ModelSpec`, or None (a checkpoint of an older
    version)."""
    from ecgtransfer.models.registry import ModelSpec

    raw_spec = ckpt.get("model_spec")
    try:
        return ModelSpec.from_dict(raw_spec) if isinstance(raw_spec, dict) else None
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"checkpoint {path}: its model_spec {raw_spec!r} is damaged ({exc})") from None


def _checked_spec(spec: Any, ckpt: dict[str, Any], path: Path, manifest: dict[str, Any], encoder: Any,
                  names: list[str]) -> Any:
    """``spec``, or for a checkpoint without one (an older version: a resnet50 without RR context) the spec its
    manifest or first convolution implies; refused when its outputs are not the class names."""
    from ecgtransfer.models.registry import ModelSpec

    if spec is None:  # a checkpoint of an older version: a resnet50 without RR context
        shape = manifest.get("shape")
        if shape and len(shape) == 3:
            in_channels = encoder.out_channels(int(shape[1]))
        else:  # no manifest: the checkpoint's first convolution says how many channels the images have
            conv = ckpt["model"].get("features_1.stem.conv.weight")
            if not isinstance(conv, torch.Tensor) or conv.dim() != 4:
                raise TrainingError(f"checkpoint {path} has no 4-D features_1.stem.conv.weight; it is damaged")
            in_channels = int(conv.shape[1])
        spec = ModelSpec(kind="resnet50", num_classes=len(names), in_channels=in_channels)
    if spec.num_classes != len(names):
        raise TrainingError(f"checkpoint {path}: its model has {spec.num_classes} outputs but {len(names)} class "
                            "names; it is damaged")
    return spec


def _indices(run: LoadedRun, store: SegmentStore, split: str) -> np.ndarray:
    if split == "all":
        return np.arange(len(store), dtype=np.int64)
    if split not in ("train", "val", "test"):
        raise TrainingError(f"split must be train, val, test or all, got {split!r}")
    saved = run.run_dir / "split.npz"
    if store.manifest_hash == run.store_manifest_hash and saved.is_file():
        return run_files.read_split(saved, len(store))[split]
    if store.manifest_hash != run.store_manifest_hash:
        log.warning("store %s is not the store %s was trained on; its %r split is computed afresh with the run's "
                    "split settings (%s)", store.path, run.run_dir, split, run.config.split)
    return make_split(store, run.config)[split]


def _label_map(run: LoadedRun, store: SegmentStore) -> np.ndarray:
    """The store-to-run label map ``[K_store]`` of ``run`` on ``store``, after checking that the store has the run's
    classes (and its RR context when the model reads it)."""
    kept, label_map = class_subset(store.class_names, run.excluded_classes)
    if kept != run.class_names:
        raise TrainingError(f"store {store.path} has classes {store.class_names}, the run {run.run_dir} was trained on "
                            f"{run.class_names}" + (f" (left out: {run.excluded_classes})" if run.excluded_classes
                                                    else ""))
    if run.rr_dim:
        if resolve_rr("auto", store) < run.rr_dim:
            raise TrainingError(f"the run {run.run_dir} reads RR context ({', '.join(run.rr_columns)}) but store "
                                f"{store.path} holds no such 'rr' extra; convert it with --rr-context")
    return label_map


def score_run(run: LoadedRun, store: SegmentStore, indices: np.ndarray, *, batch_size: int | None = None,
              num_workers: int = 0) -> PartScores:
    """``run``'s model on the store segments ``indices [n]`` (:func:`~ecgtransfer.training.scoring.score_part`), after
    checking that the store has the run's classes and inputs; segments of classes the run left out are dropped.
    Rows are ordered by store index."""
    label_map = _label_map(run, store)
    idx = np.asarray(indices, dtype=np.int64)
    idx = idx[label_map[np.asarray(store.labels)[idx]] >= 0]
    weight = torch.tensor(run.class_weights, dtype=torch.float32, device=run.device)
    return score_part(run.model, run.encoder, store, idx, label_map=label_map, rr_dim=run.rr_dim,
                      beat_input=run.config.beat_input, batch_size=batch_size or run.config.eval_batch(),
                      device=run.device, dtype=run.dtype, channels_last=run.channels_last, weight=weight,
                      num_workers=num_workers)


def evaluate(run_dir: str | os.PathLike, store: SegmentStore | str | os.PathLike, split: str = "test", *,
             checkpoint: str = "best", device: str | None = None, batch_size: int | None = None,
             out: str | os.PathLike | None = None, num_workers: int = 0,
             decision: str = DECISION_USES[0], ensemble: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Metrics of a trained run on a split of a store; writes ``eval_<split>.json`` and a confusion-matrix PNG.

    Args:
        run_dir: a run directory of :func:`~ecgtransfer.training.fine_tune`.
        store: a segment store with the same classes (usually the training store).
        split: ``"test"``, ``"val"``, ``"train"`` or ``"all"``. On the training store, the run's saved indices
            (``split.npz``); on another store, the run's split method applied to that store (or ``all``).
        checkpoint: ``"best"``, ``"last"`` or a checkpoint path.
        out: output folder (default ``run_dir``).
        decision: ``"stored"`` (the checkpoint's decision rule; ``"argmax"`` for checkpoints without one) or
            ``"argmax"``.
        ensemble: further run directories (same classes): the members' probabilities are averaged with
            ``run_dir``'s on ``run_dir``'s split, and the decision rule is ``run_dir``'s (the other members' rules
            are not applied); the loss is the weighted cross-entropy of the mean probabilities (``run_dir``'s class
            weights).

    Returns:
        the metrics of the decision rule's labels (see :func:`~ecgtransfer.training.metrics.classification_metrics`;
        for beats with ``"aami"``), the plain arg-max metrics under ``"argmax"``, the rule under ``"decision"``
        (``{"method", "bias", "fitted_on"}``), plus ``"split"``, ``"checkpoint"``, ``"store"``, ``"paths"`` (and
        ``"ensemble"``: the members' checkpoints, when there are several).
    """
    if is_multilabel_run(run_dir):  # sigmoid outputs: per-label AUC, macro AUC, Fmax, patient-bootstrap intervals
        from ecgtransfer.training.multilabel import evaluate_multilabel

        if ensemble:
            raise TrainingError("--ensemble is for single-label runs; a multilabel run is evaluated alone")
        return evaluate_multilabel(run_dir, store if isinstance(store, SegmentStore) else SegmentStore(store), split,
                                   checkpoint=checkpoint, device=device, batch_size=batch_size, out=out)
    run = load_run(run_dir, checkpoint=checkpoint, device=device, decision=decision)
    members = [load_run(r, checkpoint=checkpoint, device=device, decision="argmax") for r in ensemble]
    store = store if isinstance(store, SegmentStore) else SegmentStore(store)
    label_map = _label_map(run, store)
    for mem in members:
        _label_map(mem, store)
    idx = _indices(run, store, split)
    if not (label_map[np.asarray(store.labels)[idx]] >= 0).any():  # the classes the run left out are not scored
        raise TrainingError(f"the {split!r} split of store {store.path} is empty; nothing to evaluate "
                            "(try --split val or --split all)")
    res = score_run(run, store, idx, batch_size=batch_size, num_workers=num_workers)
    probs, loss = res.probs, res.loss
    if members:
        probs, loss = _ensemble(run, members, res, store, idx, batch_size=batch_size, num_workers=num_workers)
    records = store.record_ids[res.indices] if store.manifest.get("task") == "beats" else None
    m = scored(res.labels, probs, run.class_names, run.decision, loss=loss,
               min_support=run.config.select_min_support, records=records)
    log.info("%s: decision rule %s%s", run.checkpoint, run.decision.describe(),
             f", on the mean probabilities of {len(members) + 1} runs" if members else "")
    _write_eval(m, run, members, store, split, Path(out) if out is not None else run.run_dir)
    return m


def _ensemble(run: LoadedRun, members: list[LoadedRun], res: PartScores, store: SegmentStore, idx: np.ndarray, *,
              batch_size: int | None, num_workers: int) -> tuple[np.ndarray, float]:
    """``(probabilities [n, K], loss)`` of an ensemble: the mean of ``run``'s (``res``) and the ``members``'
    probabilities on the same segments, and the weighted cross-entropy of that mean (``run``'s class weights)."""
    probs = res.probs.astype(np.float64)
    for mem in members:
        got = score_run(mem, store, idx, batch_size=batch_size, num_workers=num_workers)
        if got.probs.shape != probs.shape or not np.array_equal(got.indices, res.indices):
            raise TrainingError(f"ensemble member {mem.run_dir} scored other segments than {run.run_dir}")
        probs = probs + got.probs
    probs = probs / (len(members) + 1)
    w = run.class_weights[res.labels]
    with np.errstate(divide="ignore"):
        nll = -np.log(probs[np.arange(len(probs)), res.labels])
    loss = float((w * nll).sum() / w.sum()) if w.sum() else float("nan")
    return probs, loss


def _write_eval(m: dict[str, Any], run: LoadedRun, members: list[LoadedRun], store: SegmentStore, split: str,
                out_dir: Path) -> None:
    """Complete the metrics ``m`` (split, checkpoint, store, paths, ensemble members) and write
    ``eval_<split>.json`` and ``eval_<split>_confusion.png`` into ``out_dir``."""
    paths = {"metrics": out_dir / f"eval_{split}.json", "confusion": out_dir / f"eval_{split}_confusion.png"}
    m.update({"split": split, "checkpoint": str(run.checkpoint), "store": str(store.path),
              "store_manifest_hash": store.manifest_hash,
              "paths": {k: str(v) for k, v in paths.items()}})
    if members:
        m["ensemble"] = {"members": [str(run.checkpoint)] + [str(mem.checkpoint) for mem in members],
                         "probabilities": "mean", "decision_of": str(run.checkpoint)}
    atomic_write_json(paths["metrics"], m)
    plot_confusion_matrix(m, paths["confusion"], title=f"{split} ({run.checkpoint.name}, {run.decision.method}"
                                                       + (f", ensemble of {len(members) + 1})" if members else ")"))
