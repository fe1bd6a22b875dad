"""Every metric of ecgtransfer.training.metrics against scikit-learn on random predictions."""
from __future__ import annotations

import math

import numpy as np
import pytest

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from ecgtransfer.training.metrics import (  # noqa: E402
    aami_table,
    auroc_ovr,
    classification_metrics,
    confusion_matrix,
    flatten_metrics,
    plot_confusion_matrix,
)

NAMES = ["N", "S", "V", "F", "Q"]


def _random_case(seed: int, n: int = 300, k: int = 5, absent: int | None = None):
    rng = np.random.default_rng(seed)
    # imbalanced true labels, noisy but informative scores, with ties
    y = rng.choice(k, size=n, p=np.array([0.6, 0.15, 0.15, 0.05, 0.05])[:k] / np.array(
        [0.6, 0.15, 0.15, 0.05, 0.05])[:k].sum())
    if absent is not None:
        y[y == absent] = 0
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    logits = np.round(logits, 1)  # create ties for the rank-based AUROC
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed: int) -> None:
    y, probs = _random_case(seed)
    pred = probs.argmax(1)
    m = classification_metrics(y, probs, NAMES, loss=0.5)
    labels = list(range(len(NAMES)))
    np.testing.assert_array_equal(np.array(m["confusion_matrix"]),
                                  sklearn_metrics.confusion_matrix(y, pred, labels=labels))
    np.testing.assert_array_equal(confusion_matrix(y, pred, 5), sklearn_metrics.confusion_matrix(y, pred, labels=labels))
    assert m["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y, pred, average="macro", zero_division=0))
    assert m["macro_classes"] == NAMES
    se = sklearn_metrics.recall_score(y, pred, labels=labels, average=None, zero_division=0)
    ppv = sklearn_metrics.precision_score(y, pred, labels=labels, average=None, zero_division=0)
    f1 = sklearn_metrics.f1_score(y, pred, labels=labels, average=None, zero_division=0)
    for i, name in enumerate(NAMES):
        row = m["per_class"][name]
        assert row["se"] == pytest.approx(se[i])
        assert row["ppv"] == pytest.approx(ppv[i])
        assert row["f1"] == pytest.approx(f1[i])
        # specificity = recall of the negatives in the one-vs-rest problem
        assert row["specificity"] == pytest.approx(
            sklearn_metrics.recall_score(y != i, pred != i, pos_label=True, zero_division=0))
        assert row["auroc"] == pytest.approx(sklearn_metrics.roc_auc_score(y == i, probs[:, i]))
        assert row["support"] == int((y == i).sum())
    assert m["macro_auroc"] == pytest.approx(
        sklearn_metrics.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=labels))
    assert m["loss"] == 0.5
    assert m["notes"] == []


def test_absent_class_gives_nan_auroc_with_note_and_sklearn_macro_f1() -> None:
    y, probs = _random_case(3, absent=3)
    pred = probs.argmax(1)
    m = classification_metrics(y, probs, NAMES)
    assert math.isnan(m["per_class"]["F"]["auroc"])
    assert any("'F'" in note for note in m["notes"])
    assert m["per_class"]["F"]["support"] == 0
    present = [k for k in range(5) if k != 3]
    # macro-F1 averages the classes with support in the split (not those merely predicted)
    assert (pred == 3).any(), "the case must predict the absent class for this check to bite"
    assert m["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(y, pred, labels=present, average="macro", zero_division=0))
    assert m["macro_f1"] != pytest.approx(sklearn_metrics.f1_score(y, pred, average="macro", zero_division=0))
    assert m["macro_classes"] == [NAMES[k] for k in present]
    expected_auc = np.mean([sklearn_metrics.roc_auc_score(y == k, probs[:, k]) for k in present])
    assert m["macro_auroc"] == pytest.approx(expected_auc)
    assert np.isnan(auroc_ovr(np.zeros(4, dtype=int), np.random.rand(4, 2), 2)).all()


def test_tables_flatten_and_plot(tmp_path) -> None:
    y, probs = _random_case(4)
    m = classification_metrics(y, probs, NAMES)
    table = aami_table(m)
    assert table.count("\n") == 5 and "| V |" in table and "| Q |" not in table
    se_v = m["per_class"]["V"]["se"]
    assert f"{100 * se_v:.1f}" in table
    flat = flatten_metrics(m, "val")
    assert flat["val_se_S"] == m["per_class"]["S"]["se"] and flat["val_accuracy"] == m["accuracy"]
    png = tmp_path / "cm.png"
    plot_confusion_matrix(m, png, title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_macro_f1_class_set_is_fixed_by_the_split_not_the_predictions() -> None:
    """Two models on the same split average over the same classes, whatever they predict."""
    rng = np.random.default_rng(5)
    y = rng.choice([0, 1, 2], size=200, p=[0.7, 0.2, 0.1])  # classes 3 and 4 have no support
    supported = [0, 1, 2]
    for pred in (rng.integers(0, 5, size=200), np.where(rng.random(200) < 0.8, y, 0)):
        probs = np.eye(5)[pred]
        m = classification_metrics(y, probs, NAMES)
        assert m["macro_classes"] == ["N", "S", "V"]
        assert m["macro_f1"] == pytest.approx(
            sklearn_metrics.f1_score(y, pred, labels=supported, average="macro", zero_division=0))
    empty = classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 5)), NAMES)
    assert math.isnan(empty["macro_f1"]) and empty["macro_classes"] == []
