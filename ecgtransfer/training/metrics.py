"""Classification metrics for arrhythmia work: per-class Se, +P, specificity, F1, one-vs-rest AUROC.

Definitions (for class ``k``, from the confusion matrix ``cm[true, pred]`` over ``n`` segments):

- ``TP = cm[k, k]``, ``FN = row k - TP``, ``FP = column k - TP``, ``TN = n - TP - FN - FP``
- sensitivity ``Se = TP / (TP + FN)`` (recall), positive predictivity ``+P = TP / (TP + FP)`` (precision),
  specificity ``Sp = TN / (TN + FP)``, ``F1 = 2 TP / (2 TP + FP + FN)``; a ratio with a zero denominator is 0
  (scikit-learn's ``zero_division=0``).
- accuracy ``= trace(cm) / n``.
- macro-F1: the mean F1 over the classes **with support in the evaluated split** (at least one true segment),
  i.e. scikit-learn's ``f1_score(average="macro", labels=<classes with support>, zero_division=0)``. The class
  set depends only on the split's true labels, never on the predictions, so every model evaluated on the same
  split averages over the same classes (predictions of a class without support still lower the Se of the true
  class and count as errors; they do not add a zero-F1 term). NaN when the split is empty. The classes averaged
  are listed in ``macro_classes``.
- ``fpr`` (false-positive rate) ``= FP / (FP + TN) = 1 - Sp``, as de Chazal et al. (2004) report it.
- ``selection_f1``: the macro-F1 over the classes with at least ``min_support`` true segments in the split (all
  classes with support when no ``min_support`` is given, or when no class reaches it): the model-selection metric
  of training, which a class with a handful of validation beats cannot swing. Its classes are in
  ``selection_classes``.
- one-vs-rest AUROC of class ``k``: the Mann-Whitney statistic of the scores ``p[:, k]`` of the positives
  against the negatives (ties count one half), computed from mid-ranks. It is undefined (NaN, with a note)
  when the split has no positive or no negative of the class. ``macro_auroc`` is the mean over the defined ones.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy.stats import rankdata

from ecgtransfer.signals.beats import AAMI_SCORED



def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                     sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Counts ``[K, K]`` int64, rows = true class, columns = predicted class; with ``sample_weight [n]`` the
    summed weights ``[K, K]`` float64 (scikit-learn's ``confusion_matrix(..., sample_weight=...)``)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    cells = y_true * num_classes + y_pred
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != y_true.shape:
            raise ValueError(f"sample_weight {w.shape} and y_true {y_true.shape} differ in shape")
        return np.bincount(cells, weights=w, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes).astype(np.int64)


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    """F1 of each class ``[K]`` from a confusion matrix ``[K, K]`` (counts or summed weights): ``2 TP / (2 TP + FP
    + FN)``, 0 where the denominator is 0."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    return _div(2 * tp, cm.sum(axis=0) + cm.sum(axis=1))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def auroc_ovr(y_true: np.ndarray, scores: np.ndarray, num_classes: int) -> np.ndarray:
    """One-vs-rest AUROC per class ``[K]`` from scores ``[n, K]``; NaN where a class has no positive or no negative."""
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(num_classes, np.nan)
    n = y_true.shape[0]
    for k in range(num_classes):
        pos = y_true == k
        n_pos = int(pos.sum())
        n_neg = n - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(scores[:, k])  # mid-ranks: ties count one half
        out[k] = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return out


def selection_mask(y_true: np.ndarray, num_classes: int, min_support: int | None) -> np.ndarray:
    """The classes ``selection_f1`` averages ``[K]`` bool: those with at least ``min_support`` true segments
    (counted unweighted), or every class with support when none reaches it (or ``min_support`` is ``None``)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    segments = np.bincount(y_true, minlength=num_classes)[:num_classes] if y_true.size \
        else np.zeros(num_classes, dtype=np.int64)
    present = segments > 0
    selected = present & (segments >= (min_support or 1))
    return selected if selected.any() else present


def classification_metrics(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                           *, loss: float | None = None, min_support: int | None = None,
                           sample_weight: np.ndarray | None = None, y_pred: np.ndarray | None = None
                           ) -> dict[str, Any]:
    """All metrics of one evaluation.

    Args:
        y_true: true labels ``[n]``.
        probs: class probabilities (or any scores) ``[n, K]``; the prediction is the arg-max unless ``y_pred``.
        class_names: the ``K`` class names.
        loss: mean loss, copied into the result.
        min_support: classes with fewer true segments are left out of ``selection_f1`` (segments counted
            unweighted).
        sample_weight: positive weights ``[n]`` of the segments (a majority-capped validation part reweighted to
            its true prevalence, :func:`ecgtransfer.training.data.prevalence_weights`): the confusion matrix and
            every rate derived from it (accuracy, Se, +P, Sp, F1, macro- and selection-F1, ``support``) are
            weighted; ``n`` stays the number of segments, ``weighted_n`` is the summed weight. AUROC stays
            unweighted (it does not depend on the prevalence).
        y_pred: predicted labels ``[n]`` to score (a decision rule's, :mod:`ecgtransfer.training.decision`)
            instead of the arg-max of ``probs``; AUROC is always computed from ``probs``.

    Returns:
        ``{"n", "loss", "accuracy", "macro_f1", "macro_auroc", "macro_classes", "per_class": {name: {"support",
        "se", "ppv", "specificity", "f1", "auroc"}}, "confusion_matrix": [[...]], "class_names", "notes": [...]}``
        (plus ``"weighted_n"`` with ``sample_weight``). ``macro_classes`` are the classes with support in this
        split, over which ``macro_f1`` averages.
    """
    k = len(class_names)
    y_true, probs, y_pred = _checked_inputs(y_true, probs, k, sample_weight, y_pred)
    cm = confusion_matrix(y_true, y_pred, k, sample_weight)
    n = int(len(y_true)) if sample_weight is not None else int(cm.sum())
    total = float(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    f1 = f1_per_class(cm)
    auc = auroc_ovr(y_true, probs, k)
    present = support > 0  # fixed by the split's true labels: the same class set for every model
    defined = auc[~np.isnan(auc)]
    selected = selection_mask(y_true, k, min_support)
    out: dict[str, Any] = {
        "n": n,
        "loss": None if loss is None else float(loss),
        "accuracy": float(tp.sum() / total) if n else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "macro_auroc": float(defined.mean()) if defined.size else float("nan"),
        "macro_classes": [name for i, name in enumerate(class_names) if present[i]],
        "selection_f1": float(f1[selected].mean()) if selected.any() else float("nan"),
        "selection_classes": [name for i, name in enumerate(class_names) if selected[i]],
        "per_class": _per_class(cm, f1, auc, class_names, n=n, weighted=sample_weight is not None),
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
        "notes": _auroc_notes(auc, support, class_names),
    }
    if sample_weight is not None:
        out["weighted_n"] = total
    return out


def _checked_inputs(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, k: int,
                    sample_weight: np.ndarray | None, y_pred: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y_true [n] int64, probs [n, K] float64, y_pred [n])`` of :func:`classification_metrics` (``y_pred``: the
    arg-max of ``probs`` unless given), or a ValueError for a shape mismatch or a weight that is not positive."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (y_true.shape[0], k):
        raise ValueError(f"expected probs of shape [{y_true.shape[0]}, {k}], got {probs.shape}")
    if y_pred is None:
        y_pred = probs.argmax(axis=1) if len(y_true) else np.zeros(0, dtype=np.int64)
    if sample_weight is not None and not (np.asarray(sample_weight) > 0).all():
        raise ValueError("sample_weight must be positive")
    return y_true, probs, y_pred


def _per_class(cm: np.ndarray, f1: np.ndarray, auc: np.ndarray, class_names: Sequence[str], *, n: int,
               weighted: bool) -> dict[str, dict[str, Any]]:
    """``{name: {"support", "se", "ppv", "specificity", "fpr", "f1", "auroc"}}`` from the confusion matrix
    ``cm [K, K]`` (rows: true class), ``f1 [K]`` and ``auc [K]``; ``weighted``: supports are summed weights."""
    total = float(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fn = support - tp
    fp = predicted - tp
    tn = total - tp - fn - fp
    se = _div(tp, tp + fn)
    ppv = _div(tp, tp + fp)
    spec = _div(tn, tn + fp)
    return {
        name: {"support": float(support[i]) if weighted else int(support[i]),
               "se": float(se[i]), "ppv": float(ppv[i]),
               "specificity": float(spec[i]), "fpr": float(1.0 - spec[i]) if n else 0.0, "f1": float(f1[i]),
               "auroc": float(auc[i])}
        for i, name in enumerate(class_names)
    }


def _auroc_notes(auc: np.ndarray, support: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """One note per class whose AUROC is undefined (NaN), saying why."""
    notes = []
    for i, name in enumerate(class_names):
        if math.isnan(auc[i]):
            why = "no segment of the class" if support[i] == 0 else "only segments of the class"
            notes.append(f"AUROC of class {name!r} is undefined (NaN): the split has {why}")
    return notes


def aami_evaluation(y_true: np.ndarray, y_pred: np.ndarray, records: np.ndarray,
                    class_names: Sequence[str], sample_weight: np.ndarray | None = None) -> dict[str, Any]:
    """Beat classification as the field reports it on MIT-BIH (de Chazal et al. 2004; AAMI EC57).

    Args:
        y_true, y_pred: true and predicted labels ``[n]`` (indices into ``class_names``).
        records: record id of each beat ``[n]``.
        class_names: the classes (usually N, S, V, F: Q left out).
        sample_weight: weights ``[n]`` of the beats (see :func:`classification_metrics`): every count (``tp``,
            ``support``, the confusion matrices) is a summed weight, a float; ``n`` stays the number of beats.

    Returns:
        ``{"classes", "n", "accuracy", "gross": {class: {"support", "se", "ppv", "fpr", "tp", "fn", "fp", "tn"}},
        "per_record": {class: {"se", "ppv", "n_records_se", "n_records_ppv"}}, "records": {rid: {"n", "accuracy",
        "confusion_matrix", class: {"support", "se", "ppv"}}}, "confusion_matrix"}``. *Gross* statistics pool every beat of the split
        (one confusion matrix); *per-record* statistics average each record's Se over the records holding the
        class and its +P over the records where the class was predicted.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    records = np.asarray(records).astype(str)
    k = len(class_names)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    cm = confusion_matrix(y_true, y_pred, k, w)
    n = int(len(y_true))
    num = int if w is None else float

    def stats(c: np.ndarray) -> dict[str, dict[str, Any]]:
        tot = num(c.sum())
        out = {}
        for i, name in enumerate(class_names):
            tp = num(c[i, i])
            fn = num(c[i].sum()) - tp
            fp = num(c[:, i].sum()) - tp
            tn = tot - tp - fn - fp
            out[name] = {"support": tp + fn, "tp": tp, "fn": fn, "fp": fp, "tn": tn,
                         "se": tp / (tp + fn) if tp + fn else float("nan"),
                         "ppv": tp / (tp + fp) if tp + fp else float("nan"),
                         "fpr": fp / (fp + tn) if fp + tn else float("nan")}
        return out

    per_rec: dict[str, Any] = {}
    for rid in np.unique(records):
        m = records == rid
        c = confusion_matrix(y_true[m], y_pred[m], k, None if w is None else w[m])
        st = stats(c)
        per_rec[str(rid)] = {"n": int(m.sum()), "accuracy": float(np.trace(c) / max(c.sum(), 1)),
                             "confusion_matrix": c.tolist(),
                             **{name: {key: st[name][key] for key in ("support", "se", "ppv")} for name in class_names}}
    averaged = {}
    for name in class_names:
        se = [r[name]["se"] for r in per_rec.values() if not math.isnan(r[name]["se"])]
        ppv = [r[name]["ppv"] for r in per_rec.values() if not math.isnan(r[name]["ppv"])]
        averaged[name] = {"se": float(np.mean(se)) if se else float("nan"),
                          "ppv": float(np.mean(ppv)) if ppv else float("nan"),
                          "n_records_se": len(se), "n_records_ppv": len(ppv)}
    return {"classes": list(class_names), "n": n,
            "accuracy": float(np.trace(cm) / cm.sum()) if n else float("nan"),
            "gross": stats(cm), "per_record": averaged, "records": per_rec, "confusion_matrix": cm.tolist()}


def dechazal_table(aami: dict[str, Any]) -> str:
    """The de Chazal et al. (2004) results layout as Markdown: one row each for gross and per-record-average
    statistics; per class Se, +P and FPR (%), and the accuracy."""
    classes = aami["classes"]
    head = "| statistic | " + " | ".join(f"{c} Se | {c} +P | {c} FPR" for c in classes) + " | accuracy |"
    sep = "|---|" + "---:|" * (3 * len(classes) + 1)
    gross = "| gross | " + " | ".join(f"{_fmt(aami['gross'][c]['se'])} | {_fmt(aami['gross'][c]['ppv'])} | "
                                      f"{_fmt(aami['gross'][c]['fpr'])}" for c in classes) + \
        f" | {_fmt(aami['accuracy'])} |"
    accs = [r["accuracy"] for r in aami["records"].values()]
    avg = "| per-record average | " + " | ".join(
        f"{_fmt(aami['per_record'][c]['se'])} | {_fmt(aami['per_record'][c]['ppv'])} | n/a" for c in classes) + \
        f" | {_fmt(float(np.mean(accs)) if accs else float('nan'))} |"
    return "\n".join([head, sep, gross, avg])


def majority_metrics(majority: int, labels: np.ndarray, class_names: list[str],
                     sample_weight: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics on ``labels`` of the constant classifier that always predicts class ``majority`` (weighted by
    ``sample_weight [n]`` when given)."""
    k = len(class_names)
    probs = np.zeros((len(labels), k))
    probs[:, majority] = 1.0
    m = classification_metrics(labels, probs, class_names, sample_weight=sample_weight)
    m["predicts"] = class_names[majority]
    return m


def flatten_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Scalar columns of a metrics dict for CSV: ``{prefix}_loss``, ``{prefix}_se_N``, ..."""
    out: dict[str, Any] = {}
    for key in ("loss", "accuracy", "macro_f1", "macro_auroc"):
        if key in metrics:
            out[f"{prefix}_{key}"] = metrics[key]
    for name, row in metrics.get("per_class", {}).items():
        for key in ("se", "ppv", "specificity", "f1", "auroc"):
            out[f"{prefix}_{key}_{name}"] = row[key]
    return out


def _count(v: float) -> str:
    """A support: an integer count, or a summed weight (a reweighted validation part) to the nearest unit."""
    return str(v) if isinstance(v, (int, np.integer)) else f"{v:.0f}"


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def aami_table(metrics: dict[str, Any]) -> str:
    """The AAMI-style table (Se and +P of N, S, V, F, in %) as Markdown; classes missing from the store show n/a."""
    pc = metrics.get("per_class", {})
    lines = ["| class | support | Se (%) | +P (%) | Sp (%) | F1 (%) |", "|---|---:|---:|---:|---:|---:|"]
    for name in AAMI_SCORED:
        row = pc.get(name)
        if row is None:
            lines.append(f"| {name} | 0 | n/a | n/a | n/a | n/a |")
        else:
            lines.append(f"| {name} | {_count(row['support'])} | {_fmt(row['se'])} | {_fmt(row['ppv'])} | "
                         f"{_fmt(row['specificity'])} | {_fmt(row['f1'])} |")
    return "\n".join(lines)


def metrics_table(metrics: dict[str, Any]) -> str:
    """Per-class table (all classes) as Markdown."""
    lines = ["| class | support | Se (%) | +P (%) | Sp (%) | F1 (%) | AUROC |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in metrics.get("per_class", {}).items():
        auc = "n/a" if math.isnan(row["auroc"]) else f"{row['auroc']:.3f}"
        lines.append(f"| {name} | {_count(row['support'])} | {_fmt(row['se'])} | {_fmt(row['ppv'])} | "
                     f"{_fmt(row['specificity'])} | {_fmt(row['f1'])} | {auc} |")
    return "\n".join(lines)


def plot_confusion_matrix(metrics: dict[str, Any], path: Any, *, title: str = "") -> None:
    """Write the confusion matrix (counts, rows normalised for colour) as a PNG, atomically, with matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ecgtransfer._atomic import atomic_open

    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    names = metrics["class_names"]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = Figure(figsize=(1.2 + 0.8 * len(names), 1.0 + 0.8 * len(names)))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
