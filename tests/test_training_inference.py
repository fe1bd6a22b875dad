"""evaluate and predict on a run trained on a converted mitdb store; data order, weights, augmentation units."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgtransfer.errors import TrainingError
from ecgtransfer.training import evaluate, fine_tune, predict
from ecgtransfer.training.data import BatchPlan, SignalAugment, class_weights, subsample
from ecgtransfer.training.evaluation import load_run
from ecgtransfer.signals.rpeaks import detect_r_peaks
from ecgtransfer.training.runtime import infer

SECONDS = 60


@pytest.fixture(scope="module")
def converted(physionet_root, tmp_path_factory):
    from ecgtransfer.conversion import convert

    return convert("mitdb", data=physionet_root, out=tmp_path_factory.mktemp("conv") / "s", records=["119", "209"],
                   before=48, after=80, progress=False, jobs=1)


@pytest.fixture(scope="module")
def run(converted, tmp_path_factory):
    labels = converted.labels
    rid = np.asarray(converted.record_ids).astype(str)
    rng = np.random.default_rng(0)
    pick = lambda r, n: np.sort(np.concatenate([rng.choice(np.flatnonzero((rid == r) & (labels == c)), n,  # noqa: E731
                                                           replace=False) for c in (0, 1, 2)
                                                if ((rid == r) & (labels == c)).sum() >= n]))
    split = {"train": pick("209", 6), "val": pick("119", 4), "test": np.zeros(0, dtype=np.int64)}
    out = tmp_path_factory.mktemp("runs") / "r"
    # fp32 (amp="off"): predict and evaluate run in the run's precision, and these tests compare their outputs
    # with an fp32 pass at fp32 tolerance (under bf16 they differ by ~2e-3; the signal path is what is tested)
    fine_tune(converted, out=out, split_indices=split, init="scratch", image_size=32, batch_size=8, epochs=1,
              num_threads=1, progress=False, tiers=(1e-3, 1e-3, 1e-2), amp="off")
    return out


@pytest.fixture(scope="module")
def short_record(physionet_root, tmp_path_factory) -> Path:
    """The first minute of mitdb 119 (signal + annotations), written with wfdb."""
    import wfdb

    src = str(physionet_root / "mitdb" / "1.0.0" / "119")
    d = tmp_path_factory.mktemp("rec")
    rec = wfdb.rdrecord(src, sampto=SECONDS * 360, physical=False)
    rec.record_name = "119"
    rec.wrsamp(write_dir=str(d), expanded=False)
    ann = wfdb.rdann(src, "atr", sampto=SECONDS * 360)
    wfdb.wrann("119", "atr", ann.sample, symbol=ann.symbol, write_dir=str(d), fs=360)
    return d / "119"


def test_evaluate_matches_the_training_validation_metrics(run, converted, tmp_path) -> None:
    m = evaluate(run, converted, "val", checkpoint="last", out=tmp_path)
    hist = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert m["accuracy"] == pytest.approx(hist[-1]["val"]["accuracy"])
    assert m["macro_f1"] == pytest.approx(hist[-1]["val"]["macro_f1"])
    assert m["confusion_matrix"] == hist[-1]["val"]["confusion_matrix"]
    assert json.loads((tmp_path / "eval_val.json").read_text())["n"] == m["n"]
    assert (tmp_path / "eval_val_confusion.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TrainingError, match="'test' split .* is empty"):
        evaluate(run, converted, "test")
    done = subprocess.run([sys.executable, "-m", "ecgtransfer", "-q", "evaluate", str(run), str(converted.path),
                           "--split", "val", "--out", str(tmp_path / "cli"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["macro_f1"] == pytest.approx(m["macro_f1"])


def test_predict_reproduces_the_store_pipeline(run, converted, short_record, tmp_path) -> None:
    out = tmp_path / "pred.csv"
    table = predict(run, [short_record], out=out, r_peaks="atr")
    assert (table["r_peak_source"] == "atr").all() and set(table["reference"]) <= {"N", "S", "V", "F", "Q"}
    assert np.allclose(table[[c for c in table if c.startswith("p_")]].sum(axis=1), 1, atol=1e-5)
    # the store's segments of 119 in the same minute (away from the cut, where filtering differs) give the same
    # probabilities through the same model
    rid = np.asarray(converted.record_ids).astype(str)
    sel = np.flatnonzero((rid == "119") & (converted.positions < (SECONDS - 15) * 360))
    rows = table.set_index("position").loc[converted.positions[sel]]
    assert list(rows["reference"]) == [converted.class_names[k] for k in converted.labels[sel]]
    r = load_run(run)
    rr = torch.from_numpy(np.asarray(converted.extra("rr"))[sel, :r.rr_dim]) if r.rr_dim else None
    res = infer(r.model, r.encoder, [(torch.from_numpy(converted.batch(sel)), None, sel, rr)], r.device, dtype=None,
                channels_last=False)
    np.testing.assert_allclose(rows[[f"p_{c}" for c in r.class_names]].to_numpy(), res["probs"], atol=2e-3)
    import pandas as pd

    assert len(pd.read_csv(out)) == len(table)

    # without the annotation file: R peaks from the detector, close to the reference ones
    bare = tmp_path / "bare"
    bare.mkdir()
    for ext in ("hea", "dat"):
        (bare / f"119.{ext}").write_bytes(short_record.with_suffix(f".{ext}").read_bytes())
    det = predict(run, [bare / "119"])
    assert (det["r_peak_source"] == "detector").all() and "reference" not in det
    ref = table["position"].to_numpy()
    found = det["position"].to_numpy()
    dist = np.abs(ref[:, None] - found[None, :]).min(1)
    assert (dist <= 0.15 * 360).mean() > 0.95  # 119's large T waves of its ectopic beats give extra detections
    assert len(ref) <= len(found) <= 1.25 * len(ref)


def test_detector_against_reference_annotations(physionet_root) -> None:
    import wfdb

    for rec in ("101", "106", "208", "215"):
        path = str(physionet_root / "mitdb" / "1.0.0" / rec)
        sig = wfdb.rdrecord(path, sampto=360 * 300, channels=[0]).p_signal[:, 0]
        ann = wfdb.rdann(path, "atr", sampto=360 * 300)
        beats = np.asarray([s for s, sym in zip(ann.sample, ann.symbol) if sym in "NLRejAaJSVEF/fQ"])
        found = detect_r_peaks(sig, 360.0)
        tp = (np.abs(beats[:, None] - found[None, :]).min(1) <= 54).sum()  # 150 ms, as in ANSI/AAMI EC57
        assert tp / len(beats) > 0.95 and tp / len(found) > 0.95, rec


def test_batch_plan_is_a_pure_function_and_shards_disjointly() -> None:
    idx = np.arange(100, 137)
    labels = np.zeros(200, dtype=np.int64)
    labels[100:110] = 1
    p = BatchPlan(idx, labels, 5, seed=1)
    a, b = p.batches(3), BatchPlan(idx, labels, 5, seed=1).batches(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(p) == 8  # 37 = 7*5 + 2
    assert not np.array_equal(np.concatenate(p.batches(3)), np.concatenate(p.batches(4)))
    assert sorted(np.concatenate(a).tolist()) == idx.tolist()
    shards = [np.concatenate(BatchPlan(idx, labels, 5, seed=1, rank=r, world_size=3).batches(0)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and set(np.concatenate(shards)) == set(idx.tolist())
    # balanced sampler: both classes about equally often
    bal = np.concatenate(BatchPlan(np.arange(200), labels, 50, seed=0, balanced=True).batches(0))
    assert 0.4 < labels[bal].mean() < 0.6
    assert len(BatchPlan(np.arange(9), labels, 4, seed=0)) == 2  # a last batch of one is dropped


def test_class_weights_match_sklearn_balanced_and_subsample_is_stratified() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 50 + [1] * 7 + [3] * 3)
    w = class_weights(y, 5)
    np.testing.assert_allclose(w[[0, 1, 3]], compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=y))
    assert w[2] == 0 and w[4] == 0
    # the one subsampler (train_fraction and the bench's fractions): ceil(fraction * n_class), at least one per class
    sub = subsample(np.arange(60), y, np.zeros(60), 0.2, mode="per-class", seed=0)
    assert np.bincount(y[sub], minlength=4).tolist() == [10, 2, 0, 1]


def test_augmentation_is_seeded_and_bounded() -> None:
    x = torch.randn(4, 2, 200)
    aug = SignalAugment(seed=0, fs=360.0)
    a, b = aug(x, epoch=1, step=2), aug(x, epoch=1, step=2)
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    assert not torch.equal(a, aug(x, epoch=1, step=3))
    # torchrun ranks: each rank its own draws, each reproducible
    rank1 = SignalAugment(seed=0, fs=360.0, rank=1)
    assert not torch.equal(rank1(x, epoch=1, step=2), a)
    assert torch.equal(rank1(x, epoch=1, step=2), SignalAugment(seed=0, fs=360.0, rank=1)(x, epoch=1, step=2))
    only_scale = SignalAugment(seed=0, scale=0.1, wander=0, noise=0, shift=0)(x, epoch=0, step=0)
    ratio = only_scale / x
    assert ratio.min() >= 0.9 - 1e-5 and ratio.max() <= 1.1 + 1e-5
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), atol=1e-4)  # one factor per sample and lead
    only_shift = SignalAugment(seed=0, scale=0, wander=0, noise=0, shift=0.05)(x, epoch=0, step=0)
    for i in range(4):  # each row is x shifted by at most 10 samples with replicated edges
        assert any(torch.equal(only_shift[i, :, 10:-10], x[i, :, 10 - s:190 - s]) for s in range(-10, 11))
