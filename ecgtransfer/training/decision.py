"""Decisions at the real prevalence: the rule that turns class probabilities into a class.

Training may balance the classes however it likes (a weighted loss, a balanced sampler, the features model's
equal-prior LDA, a majority cap per patient), so the arg-max of its probabilities decides for a world where the
classes are about equally frequent, and on new patients over-calls the rare classes. A :class:`DecisionRule`
adds a per-class bias to the log-probabilities, chosen on the validation part only, at its true prevalence
(the majority-capped validation part reweighted, :func:`ecgtransfer.training.data.prevalence_weights`):

- ``"argmax"``: no bias (the plain arg-max; the default, and how checkpoints without a rule are read);
- ``"prior"``: ``bias_c = log(pi_val_c) - log(pi_train_c)``, the Bayes correction from the prior the model was
  trained under (:func:`effective_prior`: uniform for a balanced training, the training frequencies for
  ``imbalance = "none"``) to the validation prevalence ``pi_val`` (weighted class frequencies); 0 for a class
  absent from either part;
- ``"tuned"``: from ``"prior"``, a coordinate search over each class's bias on the fixed grid
  ``prior + TUNE_OFFSETS`` for up to ``TUNE_ROUNDS`` rounds, maximising the validation selection-F1 (weighted
  macro-F1 over the classes with at least ``select_min_support`` validation segments); ties go to the smaller
  change from the prior bias, so it never scores below ``"prior"`` on validation.

The engine fits the rule once training ends, on the best model's validation probabilities, and stores it in
``best.pt`` and ``run.json`` under ``decision``; ``evaluate`` and ``predict`` apply it (:func:`scored` gives the
rule's metrics with the arg-max metrics beside them).

Shapes: ``probs [N, K]`` -> labels ``[N]``; ``bias [K]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ecgtransfer.errors import TrainingError
from ecgtransfer.training.metrics import (
    aami_evaluation,
    classification_metrics,
    confusion_matrix,
    f1_per_class,
    selection_mask,
)

#: ``TrainConfig.decision``: how probabilities become a class (see the module docstring)
DECISIONS = ("argmax", "prior", "tuned")
#: ``TrainConfig.validation_prevalence``: ``"true"`` reweights a majority-capped validation part to its uncapped
#: counts per patient and class (model selection and the decision rule at the real prevalence); ``"capped"``
#: scores the capped part as it is
PREVALENCES = ("true", "capped")
#: ``evaluate`` / ``predict`` ``decision``: the rule stored with the checkpoint, or the plain arg-max
DECISION_USES = ("stored", "argmax")
#: the ``"tuned"`` search: offsets (nats) of each class's bias from its ``"prior"`` bias, and the rounds over
#: the classes (a round that changes nothing ends the search)
TUNE_OFFSETS: tuple[float, ...] = tuple(float(x) for x in np.round(np.arange(-3.0, 3.0001, 0.25), 2))
TUNE_ROUNDS = 3


@dataclass(frozen=True)
class DecisionRule:
    """Class = ``argmax_c(log p_c + bias_c)``.

    Attributes:
        method: one of :data:`DECISIONS`.
        bias: ``[K]`` added to the log-probabilities (``()`` for ``"argmax"``: no bias).
        fitted_on: the part it was chosen on (``"validation"``), or ``"none"``.
        details: how it was fitted (priors, search, validation scores); plain JSON values.
    """

    method: str = "argmax"
    bias: tuple[float, ...] = ()
    fitted_on: str = "none"
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in DECISIONS:
            raise TrainingError(f"decision rule: method must be one of {DECISIONS}, got {self.method!r}")
        bias = tuple(float(b) for b in self.bias)
        if not all(math.isfinite(b) for b in bias):
            raise TrainingError(f"decision rule: its bias must be finite, got {list(bias)}")
        object.__setattr__(self, "bias", bias)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Labels ``[N]`` int64 of probabilities ``[N, K]``: the arg-max of ``log(probs) + bias`` (plain
        ``probs.argmax(1)`` for ``"argmax"``, whatever its bias)."""
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2:
            raise TrainingError(f"decision rule: expected probabilities [N, K], got shape {probs.shape}")
        if self.method == "argmax" or not self.bias:
            return probs.argmax(axis=1).astype(np.int64)
        if probs.shape[1] != len(self.bias):
            raise TrainingError(f"decision rule: {len(self.bias)} class biases for probabilities of "
                                f"{probs.shape[1]} classes")
        with np.errstate(divide="ignore"):
            return (np.log(probs) + np.asarray(self.bias)).argmax(axis=1).astype(np.int64)

    def describe(self) -> str:
        """One line naming the rule (for logs and the evaluate summary)."""
        if self.method == "argmax":
            return "argmax (no bias)"
        return f"{self.method} (fitted on {self.fitted_on}; bias {', '.join(f'{b:+.2f}' for b in self.bias)})"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (a checkpoint stores it weights-only loadable)."""
        return {"method": self.method, "bias": list(self.bias), "fitted_on": self.fitted_on,
                "details": _plain(dict(self.details))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, num_classes: int | None = None) -> "DecisionRule":
        """The rule of :meth:`to_dict`; ``None`` (a checkpoint written before rules existed) is ``"argmax"``. A bias
        of another length than ``num_classes`` is a :class:`~ecgtransfer.errors.TrainingError`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise TrainingError(f"decision rule: expected a mapping, got {type(data).__name__}")
        rule = cls(method=str(data.get("method", "argmax")), bias=tuple(data.get("bias") or ()),
                   fitted_on=str(data.get("fitted_on", "none")), details=dict(data.get("details") or {}))
        if num_classes is not None and rule.bias and len(rule.bias) != num_classes:
            raise TrainingError(f"decision rule: {len(rule.bias)} class biases for a model of {num_classes} classes")
        return rule


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def effective_prior(imbalance: str, train_labels: np.ndarray, num_classes: int, *,
                    balanced_model: bool = False) -> np.ndarray:
    """The class prior ``[K]`` a model's probabilities were trained under: uniform over the classes present in
    training for a balanced training (``imbalance`` ``"weighted"`` or ``"sampler"``, or a model that balances
    itself, ``balanced_model``: the features model's equal-prior LDA), else the (capped) training class
    frequencies. 0 for classes absent from training."""
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_classes)[:num_classes]
    counts = counts.astype(np.float64)
    if balanced_model or imbalance in ("weighted", "sampler"):
        counts = (counts > 0).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def prior_bias(val_prevalence: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """``log(val_prevalence) - log(train_prior)`` ``[K]``, 0 where either is 0."""
    v = np.asarray(val_prevalence, dtype=np.float64)
    t = np.asarray(train_prior, dtype=np.float64)
    ok = (v > 0) & (t > 0)
    out = np.zeros_like(v)
    out[ok] = np.log(v[ok]) - np.log(t[ok])
    return out


def selection_score(labels: np.ndarray, pred: np.ndarray, num_classes: int, selected: np.ndarray,
                    weights: np.ndarray | None = None) -> float:
    """The (weighted) macro-F1 over the ``selected`` classes ``[K]`` bool: the selection-F1 of
    :func:`~ecgtransfer.training.metrics.classification_metrics`."""
    f1 = f1_per_class(confusion_matrix(labels, pred, num_classes, weights))
    return float(f1[selected].mean()) if selected.any() else float("nan")


def fit_decision(method: str, probs: np.ndarray, labels: np.ndarray, *, train_prior: np.ndarray,
                 weights: np.ndarray | None = None, min_support: int | None = None) -> DecisionRule:
    """The :class:`DecisionRule` of ``method`` chosen on validation probabilities ``[n, K]`` and labels ``[n]``
    (``weights [n]``: the true-prevalence weights of a capped part, or ``None``), for a model trained under
    ``train_prior [K]`` (:func:`effective_prior`). Only these arrays are read: nothing of the test part."""
    if method not in DECISIONS:
        raise TrainingError(f"decision must be one of {DECISIONS}, got {method!r}")
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = probs.shape[1]
    if method == "argmax":
        return DecisionRule()
    if labels.size == 0:
        raise TrainingError("cannot fit a decision rule on an empty validation part")
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    prevalence = np.bincount(labels, weights=w, minlength=k)[:k] / w.sum()
    base = prior_bias(prevalence, train_prior)
    selected = selection_mask(labels, k, min_support)
    argmax_score = selection_score(labels, probs.argmax(1), k, selected, weights)
    prior_rule = DecisionRule("prior", tuple(base), "validation")
    prior_score = selection_score(labels, prior_rule.apply(probs), k, selected, weights)
    details: dict[str, Any] = {"val_prevalence": prevalence.tolist(), "train_prior": np.asarray(train_prior).tolist(),
                               "weighted": weights is not None,
                               "selection_classes": np.flatnonzero(selected).tolist(),
                               "val_selection_f1": {"argmax": argmax_score, "prior": prior_score}}
    if method == "prior":
        return DecisionRule("prior", tuple(base), "validation", details)
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    offsets = np.asarray(TUNE_OFFSETS)
    change = np.zeros(k)
    best = prior_score
    rounds = 0
    for _ in range(TUNE_ROUNDS):
        rounds += 1
        moved = False
        for c in range(k):
            scores = np.empty(len(offsets))
            for j, off in enumerate(offsets):
                trial = change.copy()
                trial[c] = off
                scores[j] = selection_score(labels, (logp + base + trial).argmax(1), k, selected, weights)
            top = np.flatnonzero(scores >= scores.max() - 1e-12)
            j = int(top[np.argmin(np.abs(offsets[top]))])  # ties: the smaller change from the prior bias
            if offsets[j] != change[c]:
                moved = True
                change[c] = offsets[j]
                best = float(scores[j])
        if not moved:
            break
    details["val_selection_f1"]["tuned"] = best
    details["search"] = {"offsets": [float(offsets[0]), float(offsets[-1]), float(offsets[1] - offsets[0])],
                         "rounds": rounds, "change": change.tolist()}
    return DecisionRule("tuned", tuple(base + change), "validation", details)


def scored(labels: np.ndarray, probs: np.ndarray, class_names: Sequence[str], rule: DecisionRule, *,
           loss: float | None = None, min_support: int | None = None, sample_weight: np.ndarray | None = None,
           records: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of ``rule``'s labels (the main result; with ``records [n]`` the AAMI evaluation of beats too), the
    plain arg-max metrics beside them under ``"argmax"``, and the rule under ``"decision"``
    (``{"method", "bias", "fitted_on"}``)."""
    pred = rule.apply(probs)
    m = classification_metrics(labels, probs, class_names, loss=loss, min_support=min_support,
                               sample_weight=sample_weight, y_pred=pred)
    if records is not None:
        m["aami"] = aami_evaluation(labels, pred, records, class_names, sample_weight)
    m["decision"] = {"method": rule.method, "bias": list(rule.bias), "fitted_on": rule.fitted_on}
    m["argmax"] = classification_metrics(labels, probs, class_names, loss=loss, min_support=min_support,
                                         sample_weight=sample_weight)
    return m


def brief(m: Mapping[str, Any]) -> dict[str, Any]:
    """The headline of a metrics dict: accuracy, macro- and selection-F1, per-class Se / +P / F1."""
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "selection_f1": m["selection_f1"],
            "per_class": {c: {k: r[k] for k in ("se", "ppv", "f1")} for c, r in m["per_class"].items()}}
