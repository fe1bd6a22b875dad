"""Beat classification that learns: RR fusion, the reference models, AAMI evaluation (issue 10)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

from ecgtransfer.errors import ConfigError, TrainingError
from ecgtransfer.models import ModelSpec, build_model, from_torchvision_name, resnet50, to_torchvision_name
from ecgtransfer.models.features import BeatFeatureModel, feature_count
from ecgtransfer.signals.beats import RR_FEATURES
from ecgtransfer.training import fine_tune
from ecgtransfer.training.data import cap_majority, class_subset
from ecgtransfer.training.evaluation import evaluate, load_run
from ecgtransfer.training.metrics import aami_evaluation, classification_metrics, dechazal_table

from training_helpers import beats, split  # noqa: E402,F401 - shared fixtures


# ``beats`` and ``split``: four real mitdb records, from training_helpers (imported above)


# -- RR fusion ---------------------------------------------------------------------------------------

def test_rr_fusion_keeps_every_backbone_tensor_and_torchvisions_features(tmp_path) -> None:
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().eval()
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    model = resnet50(4, weights=path, rr_dim=len(RR_FEATURES), progress=False)  # the builder loads, then reports
    report = model.load_report
    assert report.backbone_loaded == 318 and not report.missing and not report.mismatched
    assert all(k.startswith("classifier.") for k in report.reinitialised)
    assert {"classifier.rr.fc1.weight", "classifier.fc.weight"} <= set(report.reinitialised)
    # every backbone tensor maps back to torchvision's name and equals it
    tv_state = tv.state_dict()
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    assert len(backbone) == 318 == len(tv_state) - 2  # every torchvision tensor but fc.weight / fc.bias
    for k, v in backbone.items():
        assert torch.equal(v, tv_state[to_torchvision_name(k)]), k
        assert from_torchvision_name(to_torchvision_name(k)) == k
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    tv_feats = torch.flatten(torch.nn.Sequential(*list(tv.children())[:-1])(x), 1)
    with torch.no_grad():
        ours = model.forward_features(x).flatten(1)
        np.testing.assert_allclose(ours.numpy(), tv_feats.detach().numpy(), atol=1e-5)
        logits = model(x, torch.tensor([[0.8, 0.8, 0.8, 1.0, 1.0, 1.0, 0.8, 1.0], [0.4, 1.2, 0.8, 0.5, 1.5, 1.0, 0.8, 1.0]]))
    assert logits.shape == (2, 4)
    with pytest.raises(ValueError, match="call it with rr"):
        model(x)


def test_rr_on_without_rr_in_the_store_is_a_clear_error(physionet_root, tmp_path) -> None:
    from ecgtransfer.conversion import convert

    bare = convert("mitdb", data=physionet_root, out=tmp_path / "bare", records=["119"], before=48, after=80,
                   progress=False, jobs=1, rr_context=False)
    assert "rr" not in bare.manifest["extras"]
    with pytest.raises(ConfigError, match="holds no RR context"):
        fine_tune(bare, out=tmp_path / "run", rr="on", init="scratch", split="random", image_size=32, epochs=1,
                  max_steps=1, batch_size=8, progress=False, exclude_classes=())


# -- AAMI evaluation ---------------------------------------------------------------------------------

def test_dechazal_table_sums_to_the_confusion_matrix_and_matches_sklearn() -> None:
    from sklearn.metrics import confusion_matrix, precision_score, recall_score

    rng = np.random.default_rng(3)
    y = rng.choice(4, size=400, p=[0.8, 0.08, 0.1, 0.02])
    p = np.where(rng.random(400) < 0.7, y, rng.integers(0, 4, size=400))
    rec = rng.choice(["100", "101", "102", "103", "104"], size=400)
    a = aami_evaluation(y, p, rec, ["N", "S", "V", "F"])
    cm = np.asarray(a["confusion_matrix"])
    np.testing.assert_array_equal(cm, confusion_matrix(y, p, labels=range(4)))
    for i, c in enumerate("NSVF"):
        g = a["gross"][c]
        assert g["tp"] + g["fn"] == cm[i].sum() and g["tp"] + g["fp"] == cm[:, i].sum()
        assert g["tp"] + g["fn"] + g["fp"] + g["tn"] == cm.sum() == a["n"] == 400
        assert g["se"] == pytest.approx(recall_score(y, p, labels=[i], average=None)[0])
        assert g["ppv"] == pytest.approx(precision_score(y, p, labels=[i], average=None)[0])
        assert g["fpr"] == pytest.approx(g["fp"] / (g["fp"] + g["tn"]))
    # per-record averages: mean of each record's Se over the records holding the class
    rec_se = [recall_score(y[rec == r], p[rec == r], labels=[1], average=None, zero_division=0)[0]
              for r in np.unique(rec) if (y[rec == r] == 1).any()]
    assert a["per_record"]["S"]["se"] == pytest.approx(np.mean(rec_se))
    assert sum(r["n"] for r in a["records"].values()) == 400
    np.testing.assert_array_equal(sum(np.asarray(r["confusion_matrix"]) for r in a["records"].values()), cm)
    table = dechazal_table(a)
    assert table.splitlines()[0].startswith("| statistic | N Se | N +P | N FPR | S Se")
    assert f"{100 * a['gross']['V']['se']:.1f}" in table.splitlines()[2]


def test_metrics_leave_q_out_when_told_and_select_on_supported_classes() -> None:
    names, label_map = class_subset(["N", "S", "V", "F", "Q"], ("Q",))
    assert names == ["N", "S", "V", "F"] and label_map.tolist() == [0, 1, 2, 3, -1]
    assert class_subset(["N", "A", "O", "~"], ("Q",))[0] == ["N", "A", "O", "~"]  # a name it lacks: ignored
    y = np.array([0] * 50 + [1] * 2 + [2] * 20)
    probs = np.eye(3)[np.array([0] * 50 + [0, 0] + [2] * 20)]
    m = classification_metrics(y, probs, ["N", "S", "V"], min_support=10)
    from sklearn.metrics import f1_score

    pred = probs.argmax(1)
    assert m["selection_classes"] == ["N", "V"]
    assert m["selection_f1"] == pytest.approx(f1_score(y, pred, labels=[0, 2], average="macro"))
    # S (2 beats, all missed) counts in macro-F1, not in the selection metric
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0))
    assert m["per_class"]["S"]["fpr"] == 0.0


def test_majority_cap_keeps_minorities_and_caps_per_patient() -> None:
    labels = np.array([0] * 30 + [1] * 5 + [0] * 4 + [2] * 3)
    patients = np.array(["a"] * 35 + ["b"] * 7)
    kept = cap_majority(np.arange(42), labels, patients, cap=10, seed=0)
    assert (labels[kept] == 1).sum() == 5 and (labels[kept] == 2).sum() == 3
    assert ((labels[kept] == 0) & (patients[kept] == "a")).sum() == 10
    assert ((labels[kept] == 0) & (patients[kept] == "b")).sum() == 4
    np.testing.assert_array_equal(kept, cap_majority(np.arange(42), labels, patients, cap=10, seed=0))


def test_run_parts_is_what_the_engine_trains_on(beats, split, tmp_path) -> None:
    """One rule for the segments a run uses: the engine's split file equals ``run_parts`` of the same settings
    (classes left out of every part, the training fraction, the majority cap on train and val, never on test)."""
    from ecgtransfer.training.data import run_parts, subsample

    settings = dict(exclude_classes=["Q", "F"], train_fraction=0.5, majority_cap=40, seed=3)
    rp = run_parts(beats, split, **settings)
    # the rule spelled out with its parts: exclusion, then the training fraction, then the cap on train and val
    _, label_map = class_subset(beats.class_names, ["Q", "F"])
    kept = {p: idx[label_map[beats.labels[idx]] >= 0] for p, idx in split.items()}
    kept["train"] = subsample(kept["train"], beats.labels, beats.patient_ids, 0.5, mode="per-class", seed=3)
    for p in ("train", "val"):
        kept[p] = cap_majority(kept[p], beats.labels, beats.patient_ids, 40, 3, majority=0)
    for p in ("train", "val", "test"):
        np.testing.assert_array_equal(rp.parts[p], kept[p])
    res = fine_tune(beats, out=tmp_path / "run", split_indices=split, model="features", progress=False,
                    num_threads=1, **settings)
    saved = np.load(tmp_path / "run" / "split.npz")
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(saved[part], rp.parts[part])
    assert rp.class_names == ["N", "S", "V"] == res.test_metrics["class_names"] and rp.excluded == ["F", "Q"]
    assert rp.majority == 0 and rp.majority_capped["train"] > 0 and "test" not in rp.majority_capped
    test_labels = beats.labels[split["test"]]
    assert len(rp.parts["test"]) == int(np.isin(test_labels, [0, 1, 2]).sum())  # the test part is never capped
    # per patient at most 40 N beats in train and val; the other classes whole
    for part in ("train", "val"):
        lab, pat = beats.labels[rp.parts[part]], beats.patient_ids[rp.parts[part]]
        assert max(np.unique(pat[lab == 0], return_counts=True)[1]) <= 40
    assert (beats.labels[rp.parts["val"]] == 2).sum() == (beats.labels[split["val"]] == 2).sum()


# -- the reference models, end to end on real beats --------------------------------------------------

def test_features_model_fits_in_closed_form_and_evaluates(beats, split, tmp_path) -> None:
    out = tmp_path / "features"
    res = fine_tune(beats, out=out, split_indices=split, model="features", progress=False, num_threads=1)
    assert res.stopped == "fitted" and res.steps == 1
    assert res.config.init == "scratch"  # the reference models have no pretrained weights
    t = res.test_metrics
    assert t["class_names"] == ["N", "S", "V", "F"]  # Q (208's two beats) left out by default
    assert t["n"] == int(np.isin(beats.labels[split["test"]], [0, 1, 2, 3]).sum())
    assert t["majority"]["predicts"] == "N"
    # record 119's ventricular bigeminy (validation): RR + morphology with linear discriminants trained on 208 and
    # 209 must find most of its V beats (207's multiform V beats are beyond a single lead of two patients)
    val = res.history[-1]["val"]
    assert val["per_class"]["V"]["se"] > 0.5 and val["per_class"]["V"]["ppv"] > 0.9, val["per_class"]["V"]
    assert t["accuracy"] > t["majority"]["accuracy"] - 0.3
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["kind"] == "features" and run["rr_columns"] == list(RR_FEATURES)
    assert run["excluded_classes"] == ["Q"]
    report = (out / "report.md").read_text()
    assert "Majority line (always `N`)" in report and "| statistic | N Se |" in report
    # evaluate rebuilds the same model from its checkpoint (spec + RR columns) and gives the same test metrics
    m = evaluate(out, beats, "test", out=tmp_path / "ev")
    assert m["confusion_matrix"] == t["confusion_matrix"]
    assert m["aami"]["gross"]["V"]["se"] == pytest.approx(t["aami"]["gross"]["V"]["se"])
    loaded = load_run(out)
    assert isinstance(loaded.model, BeatFeatureModel) and loaded.encoder is None and loaded.rr_dim == len(RR_FEATURES)


def test_features_match_an_independent_computation(beats) -> None:
    spec = ModelSpec("features", 4, 1, rr_dim=6, length=128, fs=360.0, r_index=48)
    model = build_model(spec)
    i = np.arange(5)
    x = torch.from_numpy(beats.batch(i))
    rr = torch.from_numpy(np.asarray(beats.extra("rr"))[i])
    f = model.features(x, rr).numpy()
    assert f.shape == (5, feature_count(1, 6))
    seg = np.asarray(beats.batch(i))[:, 0].astype(np.float64)
    base = seg[:, 48 - 43:48 - 28].mean(axis=1)  # -120 ms .. -80 ms at 360 Hz, both ends included
    qrs_pos = np.round(48 + np.linspace(-0.05, 0.10, 10) * 360).astype(int)
    np.testing.assert_allclose(f[:, :10], seg[:, qrs_pos] - base[:, None], rtol=1e-5, atol=1e-5)
    # from the first six RR columns: the logs of pre-RR, post-RR and the local average RR, not the ratios
    np.testing.assert_allclose(f[:, -3:], np.log(np.asarray(beats.extra("rr"))[i][:, :3]), rtol=1e-5)


def test_cnn1d_trains_with_rr_and_evaluates(beats, split, tmp_path) -> None:
    out = tmp_path / "cnn"
    res = fine_tune(beats, out=out, split_indices=split, model="cnn1d", epochs=2, batch_size=64,
                    tiers=(3e-3, 3e-3, 3e-3), optimizer="adamw", majority_cap=150, progress=False, num_threads=1)
    first, last = res.history[0]["train"]["loss"], res.history[-1]["train"]["loss"]
    assert last < first, (first, last)
    assert res.test_metrics["n"] > 0 and len(res.test_metrics["class_names"]) == 4
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["kind"] == "cnn1d" and run["model"]["rr_dim"] == len(RR_FEATURES) == 8
    assert run["majority_capped"]["train"] > 0  # N of 208/209 capped at 150 per patient
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["model_spec"]["kind"] == "cnn1d" and ckpt["rr_columns"] == list(RR_FEATURES)
    done = subprocess.run([sys.executable, "-m", "ecgtransfer", "-q", "evaluate", str(out), str(beats.path),
                           "--split", "test", "--out", str(tmp_path / "cli"), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert set(printed["per_class"]) == {"N", "S", "V", "F"}
    assert printed["per_class"]["V"]["se"] == pytest.approx(res.test_metrics["per_class"]["V"]["se"])
    assert printed["confusion_matrix"] == res.test_metrics["confusion_matrix"]


def test_rr_off_and_an_old_store_without_rr_evaluate_cleanly(beats, split, tmp_path, physionet_root) -> None:
    from ecgtransfer.conversion import convert

    out = tmp_path / "r50"
    res = fine_tune(beats, out=out, split_indices=split, init="scratch", rr="off", image_size=32, epochs=1,
                    max_steps=2, batch_size=16, majority_cap=20, progress=False, num_threads=1)
    assert json.loads((out / "run.json").read_text())["rr_columns"] == []
    assert load_run(out).model.rr_dim == 0 and res.steps == 2
    # a run that reads RR cannot be evaluated on a store without it: one clear error
    rr_run = tmp_path / "r50rr"
    fine_tune(beats, out=rr_run, split_indices=split, init="scratch", image_size=32, epochs=1, max_steps=1,
              batch_size=16, majority_cap=20, progress=False, num_threads=1)
    bare = convert("mitdb", data=physionet_root, out=tmp_path / "bare", records=["119", "207", "208", "209"],
                   before=48, after=80, progress=False, jobs=1, rr_context=False)
    with pytest.raises(TrainingError, match="reads RR context"):
        evaluate(rr_run, bare, "all")
    with pytest.raises(ConfigError, match="model must be one of|scratch"):
        fine_tune(beats, out=tmp_path / "bad", model="cnn1d", init="imagenet-v1", progress=False)
