"""Multi-label metrics of PTB-XL's benchmark (Strodthoff et al. 2020): per-label and macro AUC, Fmax, and intervals
from a bootstrap over patients.

Inputs are the multi-hot targets ``y [N, K]`` (0/1) and the sigmoid probabilities ``p [N, K]``.

* ``auc[k]``: the ROC AUC of column ``k`` as the Mann-Whitney statistic with mid-ranks (ties count one half), equal
  to scikit-learn's ``roc_auc_score(y[:, k], p[:, k])``; NaN for a label without a positive or without a negative.
* ``macro_auc``: the mean of the defined ``auc[k]``, equal to ``roc_auc_score(y[:, D], p[:, D], average="macro")``
  over those labels ``D`` (on the full PTB-XL test fold every label has positives, so ``D`` is every label, as in
  the benchmark; on a few hundred records some labels have none and are listed in ``undefined``).
* ``fmax``: the sample-centric maximum F1 over thresholds ``t`` in 0.00, 0.01, ..., 1.00 (the protein-function
  prediction measure the benchmark reports): at ``t`` a record predicts the labels with ``p >= t``; precision is
  averaged over the records that predict at least one label, recall over the records with at least one label, and
  ``F(t) = 2 pr rc / (pr + rc)``.
* :func:`bootstrap_intervals`: ``replicates`` resamples of the patients with replacement (all records of a drawn
  patient, as often as it is drawn); the 2.5 and 97.5 percentiles of each metric over the replicates where it is
  defined.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import rankdata

#: bootstrap replicates of :func:`bootstrap_intervals` (the benchmark's own code draws 100; 1000 steadies the tails)
REPLICATES = 1000
#: the thresholds of :func:`fmax`
FMAX_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)


def label_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-label ROC AUC ``[K]`` of targets ``y [N, K]`` and scores ``p [N, K]`` (NaN where undefined)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    out = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        pos = y[:, k]
        n_pos = int(pos.sum())
        n_neg = len(pos) - n_pos
        if n_pos and n_neg:
            ranks = rankdata(p[:, k])
            out[k] = (ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return out


def fmax(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray = FMAX_THRESHOLDS) -> tuple[float, float]:
    """``(Fmax, its threshold)``, sample-centric (see the module doc); ``(nan, nan)`` without a labelled record."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    has = y.sum(1) > 0
    if not has.any():
        return float("nan"), float("nan")
    best, best_t = -1.0, float("nan")
    for t in thresholds:
        pred = p >= t
        n_pred = pred.sum(1)
        tp = (pred & y).sum(1)
        some = n_pred > 0
        if not some.any():
            continue
        pr = float(np.mean(tp[some] / n_pred[some]))
        rc = float(np.mean(tp[has] / y[has].sum(1)))
        f = 2 * pr * rc / (pr + rc) if pr + rc > 0 else 0.0
        if f > best:
            best, best_t = f, float(t)
    return (best, best_t) if best >= 0 else (float("nan"), float("nan"))


def multilabel_metrics(y: np.ndarray, p: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Per-label AUC, macro AUC, Fmax and the counts of targets ``y [N, K]`` and probabilities ``p [N, K]``."""
    y = np.asarray(y).astype(np.int64)
    auc = label_auc(y, p)
    defined = ~np.isnan(auc)
    f, t = fmax(y, p)
    return {"n": int(len(y)), "macro_auc": float(np.mean(auc[defined])) if defined.any() else float("nan"),
            "auc": {str(n): (None if np.isnan(a) else float(a)) for n, a in zip(names, auc)},
            "fmax": f, "fmax_threshold": t,
            "positives": {str(n): int(c) for n, c in zip(names, y.sum(0))},
            "labels_scored": [str(n) for n, d in zip(names, defined) if d],
            "undefined": [str(n) for n, d in zip(names, defined) if not d]}


def bootstrap_intervals(y: np.ndarray, p: np.ndarray, patients: Sequence[str], names: Sequence[str], *,
                        replicates: int = REPLICATES, seed: int = 0) -> dict[str, Any]:
    """95% percentile intervals of ``macro_auc``, ``fmax`` and each label's AUC from a bootstrap over patients."""
    y = np.asarray(y).astype(np.int64)
    p = np.asarray(p, dtype=np.float64)
    groups, index = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    members = [np.flatnonzero(index == g) for g in range(len(groups))]
    rng = np.random.default_rng(seed)
    macro, fm, per = [], [], []
    for _ in range(int(replicates)):
        drawn = rng.integers(0, len(groups), len(groups))
        idx = np.concatenate([members[g] for g in drawn])
        auc = label_auc(y[idx], p[idx])
        per.append(auc)
        macro.append(np.nanmean(auc) if (~np.isnan(auc)).any() else np.nan)
        fm.append(fmax(y[idx], p[idx])[0])
    per_a = np.asarray(per)

    def ci(values: np.ndarray) -> list[float] | None:
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        return None if not len(v) else [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]

    return {"replicates": int(replicates), "unit": "patient", "n_patients": int(len(groups)), "seed": int(seed),
            "macro_auc": ci(np.asarray(macro)), "fmax": ci(np.asarray(fm)),
            "auc": {str(n): ci(per_a[:, k]) for k, n in enumerate(names)}}


def auc_table(metrics: dict[str, Any]) -> str:
    """A Markdown table: label, positives, AUC and its interval (when the metrics carry ``intervals``)."""
    ci = (metrics.get("intervals") or {}).get("auc", {})
    lines = ["| label | positives | AUC | 95% interval (patients) |", "|---|---:|---:|---|"]
    for name, auc in metrics["auc"].items():
        iv = ci.get(name)
        lines.append(f"| {name} | {metrics['positives'].get(name, 0)} | "
                     f"{'-' if auc is None else f'{auc:.3f}'} | "
                     f"{'-' if not iv else f'[{iv[0]:.3f}, {iv[1]:.3f}]'} |")
    return "\n".join(lines)


__all__ = ["REPLICATES", "FMAX_THRESHOLDS", "label_auc", "fmax", "multilabel_metrics", "bootstrap_intervals",
           "auc_table"]
