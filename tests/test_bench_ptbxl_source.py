"""Issue 23 item 7: PTB-XL as the bench's transfer source (multi-label, backbone only) for MIT-BIH beats.

Real records: the shared PTB-XL records (100 Hz, converted with lead II at mitdb's 360 Hz) and the mitdb / svdb beat
stores of ``tests/test_bench_transfer.py``. Oracles: scikit-learn's ``roc_auc_score`` for the source's validation
macro-AUC, the target model's own state dict for "every backbone tensor loaded", the protocol folds for the source
split.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.store import SegmentStore
from tests.test_bench_transfer import stores  # noqa: F401 - the mitdb target (and svdb) fixture
from tests.test_ptbxl import ptbxl_root  # noqa: F401 - the shared PTB-XL records


def _convert(root: Path, out: Path, **kw) -> SegmentStore:
    from ecgtransfer.conversion import convert

    return convert("ptb-xl", data=root.parents[1], out=out, task="multilabel", level="superdiagnostic", jobs=1,
                   progress=False, **kw)


@pytest.fixture(scope="module")
def lead_ii(ptbxl_root, tmp_path_factory) -> SegmentStore:  # noqa: F811
    """The 390 shared records with a superdiagnostic label: lead II, 10 s at 360 Hz (the profile's source store)."""
    return _convert(ptbxl_root, tmp_path_factory.mktemp("ptbxl-src") / "ii", lead="II", fs=360)


def test_ptbxl_source_trains_multilabel_and_transfers_the_backbone_only(stores, lead_ii, tmp_path):  # noqa: F811
    from sklearn.metrics import roc_auc_score

    from ecgtransfer.bench import run
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.models import resnet50
    from ecgtransfer.models.weights import HEAD_PREFIX
    from ecgtransfer.training.multilabel import part_probabilities

    target, _ = stores
    cfg = config_from_dict({
        "bench": {"name": "ptbxl-src", "seeds": [0], "fractions": [1.0], "image_size": 32, "epochs": 1,
                  "max_steps": 1, "batch_size": 8, "threads": 1, "bootstrap_replicates": 100,
                  "lrs": [1e-4, 1e-3, 1e-3]},
        "task": {"store": str(target), "val_fraction": 0.2, "test_fraction": 0.2},
        "arms": ["scratch-tiered", "ecg-tiered"],
        "source": {"store": str(lead_ii.path), "split": "ptbxl", "lead": "II", "epochs": 1, "max_steps": 2},
        "train": {"num_workers": 0},
    })
    out = tmp_path / "out"
    res = run(cfg, out, progress=False)
    assert res.failed == {} and res.skipped == {}
    src = res.results["source_models"]["spectrogram"]
    assert src["multilabel"] is True and src["class_names"] == ["NORM", "MI", "STTC", "CD", "HYP"]
    assert src["input"] == "lead II of 1 (360 Hz), imaged as the target's lead lead1 (360 Hz)"
    run_dir = out / "source" / "spectrogram" / "run"
    assert json.loads((run_dir / "run.json").read_text())["task"] == "multilabel"  # the multi-label path trained it
    assert json.loads((run_dir / "config.json").read_text())["encoding_params"]["lead"] == 0
    # the protocol split: validation = strat_fold 9, never a training fold
    with np.load(run_dir / "split.npz") as z:
        val, train = z["val"], z["train"]
    folds = np.asarray(lead_ii.extra("strat_fold"))
    assert set(folds[val].tolist()) == {9} and set(folds[train].tolist()) <= set(range(1, 9))
    # its validation macro-AUC, the table's and the credibility's, is scikit-learn's on its best checkpoint
    probs = part_probabilities(run_dir, lead_ii, val)
    y = np.asarray(lead_ii.targets)[val]
    ok = (y.sum(0) > 0) & (y.sum(0) < len(y))
    want = roc_auc_score(y[:, ok], probs[:, ok], average="macro")
    assert src["val"]["macro_auc"] == pytest.approx(want, abs=1e-6)
    assert src["credibility"]["macro_auroc"] == pytest.approx(want, abs=1e-6)
    assert "over 55 patients" in src["credibility"]["text"] and src["credibility"]["replicates"] == 100

    # the target cell: every backbone tensor of the target model came from the source, no head tensor did
    cell = next(c for c in res.results["cells"] if c["cell"]["arm"] == "ecg-tiered")
    assert cell["transfer"] == ("backbone only (head re-initialised: the source is multi-label, 5 ptb-xl "
                                "superdiagnostic statements with sigmoid outputs, another label space)")
    report = json.loads((out / cell["run_dir"] / "run.json").read_text())["load_report"]
    backbone = {k for k in resnet50(4).state_dict() if not k.startswith(HEAD_PREFIX)}
    assert set(report["loaded"]) == backbone
    assert {"classifier.fc.weight", "classifier.fc.bias"} <= set(report["reinitialised"])
    assert report["source_head_shape"] == [5, 2048]
    md = (out / "report.md").read_text()
    assert "ecg-tiered: backbone only (head re-initialised: the source is multi-label" in md
    assert f"| {_fmt(want)} | NORM AUC" in md and "n/a (multi-label; Fmax" in md


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def test_the_source_lead_is_stated_and_a_lead_count_mismatch_needs_one(ptbxl_root, stores, tmp_path):  # noqa: F811
    from ecgtransfer.bench.config import SourceConfig
    from ecgtransfer.bench.config_toml import config_from_dict
    from ecgtransfer.bench.source import source_input
    from ecgtransfer.errors import ConfigError

    target = SegmentStore(stores[0])
    twelve = _convert(ptbxl_root, tmp_path / "12", records=[str(i) for i in range(1, 21)])
    assert len(twelve.lead_names) == 12
    lead, text, problem = source_input(target, twelve, SourceConfig(store="x"), {})
    assert lead is None and "has 12 lead(s) (I, II, III" in problem and 'lead = "II"' in problem
    assert source_input(target, twelve, SourceConfig(store="x", lead="ii"), {})[:2] == (
        1, "lead II of 12 (100 Hz), imaged as the target's lead lead1 (360 Hz)")
    assert source_input(target, twelve, SourceConfig(store="x", lead="grid"), {})[0] == "grid"
    assert "not 'V9'" in source_input(target, twelve, SourceConfig(store="x", lead="V9"), {})[2]
    base = {"bench": {"name": "x"}, "task": {"store": "t"}, "arms": ["ecg-tiered"]}
    with pytest.raises(ConfigError, match="lead is given twice"):
        config_from_dict({**base, "source": {"store": "s", "lead": "II",
                                             "train": {"encoding_params": {"lead": 1}}}})
    with pytest.raises(ConfigError, match="lead must be a lead name"):
        config_from_dict({**base, "source": {"store": "s", "lead": ""}})


def test_lead_ii_at_the_target_rate_renders_closest_to_the_target_beats(ptbxl_root, stores, lead_ii,  # noqa: F811
                                                                          tmp_path):
    """The profile's lead choice, measured: spectrograms of PTB-XL lead II resampled to 360 Hz are closer to those of
    the mitdb beats (mean image, mean frequency profile) than lead II at 100 Hz or the 12-lead grid."""
    import torch

    from ecgtransfer.imaging import encode

    records = [str(i) for i in range(1, 61)]
    twelve = _convert(ptbxl_root, tmp_path / "12", records=records, fs=360)
    ii_100 = _convert(ptbxl_root, tmp_path / "ii100", records=records, lead="II")
    ii_360 = lead_ii
    target = SegmentStore(stores[0])

    def images(store: SegmentStore, ids: list[str] | None, lead) -> np.ndarray:
        idx = np.arange(len(store)) if ids is None else np.flatnonzero(np.isin(store.record_ids.astype(str), ids))
        return encode(torch.from_numpy(store.batch(idx)), "spectrogram", 64, fs=store.fs, lead=lead)[:, 0].numpy()

    t = images(target, None, 0)
    cands = {"II 360 Hz": images(ii_360, records, 0), "II 100 Hz": images(ii_100, records, 0),
             "grid": images(twelve, records, "grid")}
    mean_img = {k: float(np.sqrt(((v.mean(0) - t.mean(0)) ** 2).mean())) for k, v in cands.items()}
    freq = {k: float(np.sqrt(((v.mean((0, 2)) - t.mean((0, 2))) ** 2).mean())) for k, v in cands.items()}
    assert min(mean_img, key=mean_img.get) == "II 360 Hz", mean_img
    assert min(freq, key=freq.get) == "II 360 Hz", freq
