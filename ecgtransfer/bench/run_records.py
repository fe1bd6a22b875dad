"""What a cell's or a source model's training run leaves, as the bench keeps it.

Compact per-epoch rows and the step curve of a run's history, its metrics without the bulky keys, its throughput,
the per-record confusion matrices the patient bootstrap resamples (from the run's metrics, or one more pass of
its best model by the one scoring path), and one line of its ``load_report`` (what transferred).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ecgtransfer.errors import EcgTransferError
from ecgtransfer.store import SegmentStore
from ecgtransfer.training.run_files import read_json_object

#: What each cell keeps per evaluated record (part of the cell fingerprint: cells without it are recomputed).
RECORD_CONFUSION_VERSION = 1


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def history_table(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
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


def step_curve_of(history_rows: Sequence[Mapping[str, Any]], step_evals: Sequence[Mapping[str, Any]]
                ) -> list[dict[str, Any]]:
    """The validation learning curve in optimiser steps: the epoch-end rows and the evaluations every
    ``val_every_steps`` steps (``TrainResult.step_evals``), ordered by step; what steps-to-target reads."""
    rows = [{"epoch": int(h["epoch"]), "step": int(h["step"]), "val_macro_f1": h.get("val_macro_f1"),
             "within_epoch": False} for h in history_rows]
    rows += [{"epoch": int(e["epoch"]), "step": int(e["step"]), "val_macro_f1": e.get("val_macro_f1"),
              "within_epoch": True} for e in step_evals]
    return sorted(rows, key=lambda r: (r["step"], not r["within_epoch"]))


def kept_metrics(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    keep = ("n", "loss", "accuracy", "macro_f1", "selection_f1", "macro_auroc", "macro_classes", "per_class",
            "confusion_matrix", "class_names", "notes", "prevalence", "weighted_n", "decision",
            "macro_auc", "fmax", "auc", "undefined")  # the last four: a multilabel (source) run's
    return {k: m[k] for k in keep if k in m}


def majority_line(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The majority classifier's test metrics (the engine's ``test_metrics["majority"]``), with the class."""
    if not m:
        return None
    return {**(kept_metrics(m) or {}), "predicts": m.get("predicts")}


def throughput_of(history: Sequence[Mapping[str, Any]], device: str) -> dict[str, Any]:
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


def record_confusion_from_metrics(m: Mapping[str, Any] | None, split: str) -> dict[str, Any] | None:
    """Per-record confusion matrices from a metrics dict's ``aami.records`` when it holds them, else None."""
    recs = ((m or {}).get("aami") or {}).get("records") or {}
    if not recs or not all("confusion_matrix" in v for v in recs.values()):
        return None
    rids = sorted(recs)
    return {"split": split, "records": rids, "matrices": [recs[r]["confusion_matrix"] for r in rids]}


def drop_checkpoints(run_dir: Path) -> None:
    for name in ("last.pt", "best.pt"):
        p = run_dir / name
        if p.exists():
            p.unlink()


def target_record_ids(rc: Mapping[str, Any], target: SegmentStore) -> dict[str, Any]:
    """``record_confusion`` of a pooled cell with the target's own record ids (``"mitdb:100"`` -> ``"100"``), in the
    order of the other arms' records."""
    from ecgtransfer.signals.ids import split_qualified

    own = {str(r) for r in np.unique(np.asarray(target.record_ids).astype(str))}
    bare = [r if r in own else split_qualified(r)[1] for r in rc["records"]]
    order = np.argsort(bare, kind="stable")
    return {**rc, "records": [bare[i] for i in order], "matrices": [rc["matrices"][i] for i in order]}


def load_report_of(run_dir: Path) -> dict[str, Any] | None:
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


def load_report_text(run_dir: Path) -> str | None:
    """One line from the ``load_report`` of a cell's ``run.json`` (:func:`load_report_line`); ``None`` when no
    weights were loaded (or ``run.json`` is unreadable)."""
    report = load_report_of(run_dir)
    return None if report is None else load_report_line(report)


def load_report_line(report: Mapping[str, Any]) -> str:
    """One line from a load report (a ``LoadReport.to_dict()``): the source, how many tensors loaded, which were
    re-initialised, adapted, unexpected or missing, and the head's shapes."""

    def shape(s: Any) -> str:
        return "None" if s is None else "(" + ", ".join(str(int(x)) for x in s) + ")"

    parts = [f"source {report.get('source', '?')}", f"{len(report.get('loaded') or [])} tensors loaded"]
    for name in ("reinitialised", "adapted", "unexpected", "missing"):
        if report.get(name):
            parts.append(f"{name}: {', '.join(map(str, report[name]))}")
    parts.append(f"head {shape(report.get('source_head_shape'))} -> {shape(report.get('model_head_shape'))}")
    return "; ".join(parts)
