"""Decisions at the real prevalence (issue 19 item 3): validation reweighted to its uncapped counts, the decision
rule fitted on validation only, stored in best.pt and run.json, applied by evaluate and predict.

Oracles: scikit-learn's weighted confusion matrix and F1, numpy by hand for the priors, direct computations on
the uncapped part, and the model's own probabilities for the rule's labels."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score

from ecgtransfer.errors import TrainingError
from ecgtransfer.training import evaluate, fine_tune, predict
from ecgtransfer.training.data import cap_majority, prevalence_weights, run_parts, validation_weights
from ecgtransfer.training.decision import (
    DECISIONS,
    DecisionRule,
    effective_prior,
    fit_decision,
)
from ecgtransfer.training.evaluation import load_run
from ecgtransfer.training.metrics import aami_evaluation, classification_metrics, confusion_matrix
from ecgtransfer.training.runtime import infer

from training_helpers import beats, split  # noqa: E402,F401 - shared fixtures


# -- 1. validation at the true prevalence --------------------------------------------------------------------------

def _capped_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three patients; within each (patient, class) every segment has the same prediction, so capping the majority
    class drops whole groups of identical predictions and the reweighted confusion must equal the uncapped one
    exactly. Returns ``(labels [N], patients [N], predictions [N], probs [N, 3])``."""
    rng = np.random.default_rng(7)
    labels, patients, pred = [], [], []
    # (patient, class): (count, predicted class)
    groups = {("a", 0): (200, 0), ("a", 1): (12, 1), ("a", 2): (3, 0),
              ("b", 0): (90, 1), ("b", 2): (25, 2),
              ("c", 0): (40, 0), ("c", 1): (4, 2), ("c", 2): (30, 2)}
    for (p, c), (n, q) in groups.items():
        labels += [c] * n
        patients += [p] * n
        pred += [q] * n
    order = rng.permutation(len(labels))
    labels, patients, pred = np.asarray(labels)[order], np.asarray(patients)[order], np.asarray(pred)[order]
    probs = np.full((len(labels), 3), 0.1)
    probs[np.arange(len(labels)), pred] = 0.8
    return labels, patients, pred, probs


def test_reweighted_capped_confusion_equals_the_uncapped_confusion() -> None:
    labels, patients, pred, probs = _capped_case()
    every = np.arange(len(labels))
    kept = cap_majority(every, labels, patients, cap=20, seed=3, majority=0)
    assert len(kept) < len(every) and ((labels[kept] == 0) & (patients[kept] == "a")).sum() == 20
    w = prevalence_weights(kept, every, labels, patients)
    # by hand: uncapped / kept count of each kept segment's (patient, class)
    for i, s in enumerate(kept):
        same = (labels == labels[s]) & (patients == patients[s])
        assert w[i] == pytest.approx(same.sum() / np.isin(np.flatnonzero(same), kept).sum())
    assert (w[labels[kept] != 0] == 1).all()
    direct = confusion_matrix(labels, pred, 3)  # the uncapped part, computed directly
    weighted = confusion_matrix(labels[kept], pred[kept], 3, w)
    np.testing.assert_allclose(weighted, direct, rtol=1e-12)
    np.testing.assert_allclose(weighted, sk_confusion(labels[kept], pred[kept], labels=[0, 1, 2], sample_weight=w),
                               rtol=1e-12)
    # the selection metric of the reweighted capped part is that of the uncapped part
    m = classification_metrics(labels[kept], probs[kept], ["N", "S", "V"], sample_weight=w, min_support=10)
    full = classification_metrics(labels, probs, ["N", "S", "V"], min_support=10)
    assert m["selection_f1"] == pytest.approx(full["selection_f1"], abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"), abs=1e-12)
    assert m["accuracy"] == pytest.approx(full["accuracy"], abs=1e-12)
    assert m["n"] == len(kept) and m["weighted_n"] == pytest.approx(len(labels))
    capped = classification_metrics(labels[kept], probs[kept], ["N", "S", "V"], min_support=10)
    assert capped["selection_f1"] != pytest.approx(m["selection_f1"])  # the case must tell them apart
    # the AAMI evaluation weighs the same way: per record (patient) and pooled
    aami = aami_evaluation(labels[kept], pred[kept], patients[kept], ["N", "S", "V"], w)
    np.testing.assert_allclose(aami["confusion_matrix"], direct, rtol=1e-12)
    np.testing.assert_allclose(aami["records"]["b"]["confusion_matrix"],
                               confusion_matrix(labels[patients == "b"], pred[patients == "b"], 3), rtol=1e-12)


def test_weighted_metrics_match_sklearn_on_random_weights() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300)
    w = rng.uniform(0.5, 5.0, 300)
    m = classification_metrics(y, probs, list("NSVF"), sample_weight=w)
    pred = probs.argmax(1)
    np.testing.assert_allclose(m["confusion_matrix"], sk_confusion(y, pred, sample_weight=w), rtol=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", sample_weight=w), abs=1e-12)
    per = f1_score(y, pred, average=None, sample_weight=w)
    assert [m["per_class"][c]["f1"] for c in "NSVF"] == pytest.approx(per.tolist(), abs=1e-12)


def test_run_parts_keep_the_uncapped_validation_part(physionet_root, tmp_path) -> None:
    from training_helpers import make_store

    store = make_store(physionet_root, tmp_path / "s", {"101": 60, "119": 80, "209": 80})
    rid = np.asarray(store.record_ids).astype(str)
    parts = {"train": np.flatnonzero(rid == "209"), "val": np.flatnonzero(rid != "209"), "test": np.zeros(0, int)}
    rp = run_parts(store, parts, majority_cap=5, seed=0)
    kept_val = rp.uncapped["val"]
    np.testing.assert_array_equal(kept_val, parts["val"])  # nothing left out: the part before the cap
    assert rp.majority_capped["val"] == len(kept_val) - len(rp.parts["val"]) > 0
    w = prevalence_weights(rp.parts["val"], kept_val, store.labels, store.patient_ids)
    np.testing.assert_array_equal(validation_weights(store, rp, "true"), w)  # what the engine scores with
    assert validation_weights(store, rp, "capped") is None
    assert validation_weights(store, run_parts(store, parts, seed=0), "true") is None  # nothing capped
    lab = np.asarray(store.labels)
    for c in np.unique(lab[kept_val]):
        assert w[lab[rp.parts["val"]] == c].sum() == pytest.approx((lab[kept_val] == c).sum())


# -- 2. the rule -----------------------------------------------------------------------------------------------

def _miscalibrated(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a model trained balanced (rare classes over-called) on labels of prevalence 85/10/5 %."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.85, 0.10, 0.05])
    logits = rng.normal(size=(n, 3)) * 1.2 + 2.0 * np.eye(3)[y] + np.array([0.0, 1.0, 1.2])
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)


def test_prior_bias_is_the_log_prevalence_ratio_by_hand() -> None:
    y, p = _miscalibrated()
    train = np.array([0] * 60 + [1] * 30 + [2] * 10)
    w = np.where(y == 0, 3.0, 1.0)  # a capped validation part reweighted
    val_prev = np.array([w[y == c].sum() for c in range(3)]) / w.sum()
    for imbalance, train_prior in (("weighted", np.full(3, 1 / 3)), ("sampler", np.full(3, 1 / 3)),
                                   ("none", np.array([0.6, 0.3, 0.1]))):
        prior = effective_prior(imbalance, train, 3)
        np.testing.assert_allclose(prior, train_prior)
        rule = fit_decision("prior", p, y, train_prior=prior, weights=w, min_support=10)
        np.testing.assert_allclose(rule.bias, np.log(val_prev) - np.log(train_prior), rtol=1e-12)
        assert rule.method == "prior" and rule.fitted_on == "validation"
    # the features model balances itself (equal-prior LDA) whatever the imbalance setting
    np.testing.assert_allclose(effective_prior("none", train, 3, balanced_model=True), np.full(3, 1 / 3))
    # a class absent from training or validation gets no bias
    assert effective_prior("none", np.array([0, 0, 1]), 3)[2] == 0
    rule = fit_decision("prior", p[y != 2], y[y != 2], train_prior=np.full(3, 1 / 3))
    assert rule.bias[2] == 0.0 and rule.bias[0] != 0.0


def test_apply_is_the_argmax_of_log_p_plus_bias() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4) * 0.5, 500)
    p[:5, 1] = 0.0  # zero probabilities never win against a positive one
    p[:5] /= p[:5].sum(1, keepdims=True)
    bias = (0.7, -1.3, 2.1, 0.0)
    rule = DecisionRule("tuned", bias, "validation")
    expected = np.array([int(np.argmax([np.log(v) if v > 0 else -np.inf for v in row] + np.asarray(bias)))
                         for row in p])
    np.testing.assert_array_equal(rule.apply(p), expected)
    assert (rule.apply(p) != p.argmax(1)).any()  # the bias changes decisions here
    np.testing.assert_array_equal(DecisionRule().apply(p), p.argmax(1))
    with pytest.raises(TrainingError, match="3 class biases for probabilities of 4 classes"):
        DecisionRule("prior", (0.0, 1.0, 2.0)).apply(p)
    with pytest.raises(TrainingError, match="method must be one of"):
        DecisionRule("bayes")


def test_tuned_is_never_below_prior_on_validation_and_corrects_overcalling() -> None:
    for seed in range(4):
        y, p = _miscalibrated(seed=seed)
        w = np.where(y == 0, 2.0, 1.0)
        prior = np.full(3, 1 / 3)
        rules = {m: fit_decision(m, p, y, train_prior=prior, weights=w, min_support=10) for m in DECISIONS}
        score = {m: f1_score(y, r.apply(p), average="macro", sample_weight=w) for m, r in rules.items()}
        assert score["tuned"] >= score["prior"] - 1e-12, score
        assert score["prior"] > score["argmax"], score  # the balanced model over-calls S and V
        assert rules["tuned"].details["val_selection_f1"]["tuned"] == pytest.approx(score["tuned"], abs=1e-12)
        # the search is bounded by its grid around the prior bias
        change = np.asarray(rules["tuned"].bias) - np.asarray(rules["prior"].bias)
        assert np.abs(change).max() <= 3.0 + 1e-9
        # fewer N beats called S or V than by the arg-max
        am, tu = p.argmax(1), rules["tuned"].apply(p)
        assert ((tu != 0) & (y == 0)).sum() < ((am != 0) & (y == 0)).sum()


def test_tuned_ties_go_to_the_smaller_change() -> None:
    """Perfectly separable probabilities: every bias near the prior scores 1.0, so the rule stays at the prior."""
    y = np.repeat([0, 1, 2], [50, 20, 20])
    p = np.full((90, 3), 0.05)
    p[np.arange(90), y] = 0.9
    rule = fit_decision("tuned", p, y, train_prior=np.full(3, 1 / 3), min_support=5)
    prior = fit_decision("prior", p, y, train_prior=np.full(3, 1 / 3), min_support=5)
    assert rule.bias == prior.bias and rule.details["search"]["change"] == [0.0, 0.0, 0.0]


def test_rule_round_trips_through_dicts_and_checks_its_size() -> None:
    y, p = _miscalibrated()
    rule = fit_decision("tuned", p, y, train_prior=np.full(3, 1 / 3))
    again = DecisionRule.from_dict(json.loads(json.dumps(rule.to_dict())), num_classes=3)
    assert again == rule
    assert DecisionRule.from_dict(None) == DecisionRule()
    with pytest.raises(TrainingError, match="3 class biases for a model of 4 classes"):
        DecisionRule.from_dict(rule.to_dict(), num_classes=4)


# -- 3. the engine, evaluate and predict on real beats ---------------------------------------------------------

# ``beats`` and ``split``: four real mitdb records, from training_helpers (imported above)


SETTINGS = dict(model="features", decision="tuned", majority_cap=100, progress=False, num_threads=1)


@pytest.fixture(scope="module")
def tuned_run(beats, split, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tuned"
    return fine_tune(beats, out=out, split_indices=split, **SETTINGS)


def test_engine_selects_at_the_true_prevalence_and_stores_the_rule(tuned_run, beats, split) -> None:
    res = tuned_run
    val = res.history[0]["val"]
    assert val["prevalence"] == "true" and "capped" in val
    # the weighted validation support is the uncapped count of every class (119: N 1543, V 444 beats)
    lab = np.asarray(beats.labels)[split["val"]]
    for k, name in enumerate(beats.class_names[:4]):
        assert val["per_class"][name]["support"] == pytest.approx((lab == k).sum())
    assert val["n"] < len(split["val"]) and val["capped"]["n"] == val["n"]
    # the rule: in best.pt and run.json alike, fitted on validation
    ckpt = torch.load(res.run_dir / "best.pt", weights_only=True)
    run = json.loads((res.run_dir / "run.json").read_text())
    rule = DecisionRule.from_dict(ckpt["decision"], num_classes=4)
    assert rule.method == "tuned" and rule.fitted_on == "validation"
    assert run["decision"]["bias"] == pytest.approx(list(rule.bias))
    assert run["decision"]["validation"]["prevalence"] == "true"
    after, before = run["decision"]["validation"]["rule"], run["decision"]["validation"]["argmax"]
    assert after["selection_f1"] >= before["selection_f1"] - 1e-12
    assert before["selection_f1"] == pytest.approx(val["selection_f1"])  # the best epoch's own probabilities
    assert load_run(res.run_dir).decision == rule
    assert res.decision["method"] == "tuned"
    # the test metrics are the rule's, the arg-max beside them
    t = res.test_metrics
    assert t["decision"]["method"] == "tuned" and "argmax" in t
    assert "decision rule: tuned" in (res.run_dir / "report.md").read_text()


def test_the_rule_never_reads_the_test_labels(tuned_run, beats, split, tmp_path) -> None:
    """The same run on a copy of the store whose test-part labels are scrambled: the same rule."""
    copy = tmp_path / "scrambled"
    shutil.copytree(beats.path, copy)
    labels = np.load(copy / "labels.npy")
    rng = np.random.default_rng(0)
    test = split["test"]
    labels[test] = rng.permutation(np.where(labels[test] == 4, 0, (labels[test] + 1) % 4))
    np.save(copy / "labels.npy", labels)
    res = fine_tune(copy, out=tmp_path / "run", split_indices=split, **SETTINGS)
    assert res.test_metrics["confusion_matrix"] != tuned_run.test_metrics["confusion_matrix"]
    assert res.decision["bias"] == tuned_run.decision["bias"]
    assert res.decision["details"] == tuned_run.decision["details"]


def _test_probs(run_dir: Path, beats, split) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of the run's best model on the test part (Q left out), by hand."""
    r = load_run(run_dir, decision="argmax")
    idx = split["test"][np.asarray(beats.labels)[split["test"]] != 4]
    rr = torch.from_numpy(np.asarray(beats.extra("rr"))[idx, :r.rr_dim])
    res = infer(r.model, r.encoder, [(torch.from_numpy(beats.batch(idx)), None, idx, rr)], r.device, dtype=r.dtype,
                channels_last=r.channels_last)  # the run's precision, as evaluate resolves it
    return np.asarray(beats.labels)[idx], res["probs"]


def test_evaluate_reports_the_rule_with_the_argmax_beside_it(tuned_run, beats, split, tmp_path) -> None:
    y, probs = _test_probs(tuned_run.run_dir, beats, split)
    rule = load_run(tuned_run.run_dir).decision
    m = evaluate(tuned_run.run_dir, beats, "test", out=tmp_path / "ev")
    assert m["decision"]["method"] == "tuned" and m["decision"]["bias"] == pytest.approx(list(rule.bias))
    with np.errstate(divide="ignore"):
        by_hand = (np.log(probs) + np.asarray(rule.bias)).argmax(1)
    np.testing.assert_array_equal(m["confusion_matrix"], sk_confusion(y, by_hand, labels=[0, 1, 2, 3]))
    np.testing.assert_array_equal(m["argmax"]["confusion_matrix"], sk_confusion(y, probs.argmax(1),
                                                                                labels=[0, 1, 2, 3]))
    assert m["confusion_matrix"] != m["argmax"]["confusion_matrix"]  # the rule changed decisions
    assert m["confusion_matrix"] == tuned_run.test_metrics["confusion_matrix"]
    assert m["aami"]["confusion_matrix"] == m["confusion_matrix"]
    plain = evaluate(tuned_run.run_dir, beats, "test", out=tmp_path / "plain", decision="argmax")
    assert plain["decision"]["method"] == "argmax" and plain["confusion_matrix"] == m["argmax"]["confusion_matrix"]
    from ecgtransfer.cli import main as cli_main

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(["-q", "evaluate", str(tuned_run.run_dir), str(beats.path), "--out", str(tmp_path / "cli"),
                         "--json"]) == 0
    printed = json.loads(buf.getvalue())
    assert printed["decision"]["method"] == "tuned" and printed["argmax"]["macro_f1"] == pytest.approx(
        m["argmax"]["macro_f1"])


def test_the_bench_scores_a_part_as_evaluate_does(tuned_run, beats, split, tmp_path) -> None:
    """The bench's extra pass (its per-record confusions, what the patient bootstrap resamples) goes through the one
    scoring path and counts the checkpoint's decision rule, as the run's test metrics do (it counted the arg-max
    before); rows come back in store order whatever order the indices were given in."""
    from ecgtransfer.bench.run_records import predict_part, record_confusion
    from ecgtransfer.training.evaluation import score_run

    m = evaluate(tuned_run.run_dir, beats, "test", out=tmp_path)
    y, probs, idx, decided = predict_part(tuned_run.run_dir, beats, split["test"][::-1], "cpu")
    assert np.all(np.diff(idx) > 0) and not np.isin(np.asarray(beats.labels)[idx], [4]).any()  # Q left out
    assert confusion_matrix(y, decided, 4).tolist() == m["confusion_matrix"] != m["argmax"]["confusion_matrix"]
    rc = record_confusion(y, decided, beats.record_ids[idx], 4, "test")
    assert np.sum(rc["matrices"], axis=0).tolist() == m["confusion_matrix"]
    part = score_run(load_run(tuned_run.run_dir), beats, split["test"])
    np.testing.assert_array_equal(part.probs, probs)
    assert part.loss == pytest.approx(m["loss"])


def test_a_checkpoint_without_a_rule_evaluates_exactly_as_before(tuned_run, beats, split, tmp_path) -> None:
    old = tmp_path / "old"
    shutil.copytree(tuned_run.run_dir, old)
    ckpt = torch.load(old / "best.pt", weights_only=True)
    del ckpt["decision"]
    torch.save(ckpt, old / "best.pt")
    m = evaluate(old, beats, "test", out=tmp_path / "ev")
    assert m["decision"]["method"] == "argmax"
    y, probs = _test_probs(tuned_run.run_dir, beats, split)
    before = classification_metrics(y, probs, ["N", "S", "V", "F"], min_support=10)  # the code path of old
    for key in ("confusion_matrix", "accuracy", "macro_f1", "selection_f1", "per_class"):
        same = json.dumps(before[key], sort_keys=True)  # NaN (F's AUROC: no F beat in 207) compares as text
        assert json.dumps(m[key], sort_keys=True) == same == json.dumps(m["argmax"][key], sort_keys=True), key


def test_predict_class_column_follows_the_rule(tuned_run, physionet_root, tmp_path) -> None:
    import wfdb

    src = str(physionet_root / "mitdb" / "1.0.0" / "207")
    rec = wfdb.rdrecord(src, sampfrom=0, sampto=120 * 360, physical=False)
    rec.record_name = "207"
    rec.wrsamp(write_dir=str(tmp_path), expanded=False)
    ann = wfdb.rdann(src, "atr", sampto=120 * 360)
    wfdb.wrann("207", "atr", ann.sample, symbol=ann.symbol, write_dir=str(tmp_path), fs=360)
    rule = load_run(tuned_run.run_dir).decision
    table = predict(tuned_run.run_dir, [tmp_path / "207"], r_peaks="atr", progress=False)
    probs = table[["p_N", "p_S", "p_V", "p_F"]].to_numpy()
    with np.errstate(divide="ignore"):
        by_hand = np.asarray(["N", "S", "V", "F"])[(np.log(probs) + np.asarray(rule.bias)).argmax(1)]
    assert list(table["predicted"]) == list(by_hand) and (table["decision"] == "tuned").all()
    column = {name: k for k, name in enumerate(["N", "S", "V", "F"])}
    np.testing.assert_allclose(table["confidence"], probs[np.arange(len(probs)), [column[c] for c in by_hand]])
    plain = predict(tuned_run.run_dir, [tmp_path / "207"], r_peaks="atr", progress=False, decision="argmax")
    np.testing.assert_array_equal(plain[["p_N", "p_S", "p_V", "p_F"]].to_numpy(), probs)  # probabilities unchanged
    assert list(plain["predicted"]) == list(np.asarray(["N", "S", "V", "F"])[probs.argmax(1)])
    assert (plain["decision"] == "argmax").all()


def test_resuming_a_finished_run_with_another_decision_refits_it_without_training(tuned_run, beats, split,
                                                                                   tmp_path) -> None:
    """``decision`` may change on resume: the finished run's best model is validated once more and the new rule
    fitted; the same validation probabilities give the prior the tuned search started from."""
    again = tmp_path / "again"
    shutil.copytree(tuned_run.run_dir, again)
    before = torch.load(again / "best.pt", weights_only=True)["model"]
    res = fine_tune(beats, out=again, split_indices=split, resume=True, **{**SETTINGS, "decision": "prior"})
    assert res.steps == tuned_run.steps and res.decision["method"] == "prior"
    tuned = tuned_run.decision
    np.testing.assert_allclose(res.decision["bias"],
                               np.asarray(tuned["bias"]) - np.asarray(tuned["details"]["search"]["change"]),
                               rtol=1e-12, atol=1e-12)
    ckpt = torch.load(again / "best.pt", weights_only=True)
    assert ckpt["decision"]["method"] == "prior"
    assert all(torch.equal(ckpt["model"][k], v) for k, v in before.items())  # no training happened
    assert load_run(again).decision.method == "prior"


def test_cli_options_reach_the_config() -> None:
    from ecgtransfer.cli import build_parser
    from ecgtransfer.cli.train import config_from_args

    args = build_parser().parse_args(["train", "store", "--out", "run", "--decision", "prior",
                                      "--validation-prevalence", "capped"])
    cfg = config_from_args(args)
    assert (cfg.decision, cfg.validation_prevalence) == ("prior", "capped")
    default = config_from_args(build_parser().parse_args(["train", "store", "--out", "run"]))
    assert (default.decision, default.validation_prevalence) == ("argmax", "true")


def test_an_ensemble_scores_the_mean_probabilities_with_the_first_runs_rule(tuned_run, beats, split,
                                                                             tmp_path) -> None:
    from sklearn.metrics import roc_auc_score

    other = fine_tune(beats, out=tmp_path / "half", split_indices=split, train_fraction=0.5,
                      **{**SETTINGS, "decision": "prior"}).run_dir
    y, p1 = _test_probs(tuned_run.run_dir, beats, split)
    _, p2 = _test_probs(other, beats, split)
    assert not np.allclose(p1, p2)  # two different members
    mean = (p1.astype(np.float64) + p2) / 2
    m = evaluate(tuned_run.run_dir, beats, "test", out=tmp_path / "ens", ensemble=[other])
    for k, c in enumerate(["N", "S", "V"]):  # 207 has no F beat: its AUROC is undefined
        assert m["per_class"][c]["auroc"] == pytest.approx(roc_auc_score(y == k, mean[:, k]), abs=1e-9)
    rule = load_run(tuned_run.run_dir).decision  # the first member's rule; the second's ("prior") is not applied
    with np.errstate(divide="ignore"):
        by_hand = (np.log(mean) + np.asarray(rule.bias)).argmax(1)
    np.testing.assert_array_equal(m["confusion_matrix"], sk_confusion(y, by_hand, labels=[0, 1, 2, 3]))
    np.testing.assert_array_equal(m["argmax"]["confusion_matrix"], sk_confusion(y, mean.argmax(1), labels=[0, 1, 2, 3]))
    assert m["decision"]["method"] == "tuned" and len(m["ensemble"]["members"]) == 2
