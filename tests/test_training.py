"""The fine-tuning engine on small real mitdb stores: learning, files, checkpoints, resume, errors, torchrun."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgtransfer.errors import ConfigError, TrainingError
from ecgtransfer.store import SegmentStore, write_store
from ecgtransfer.training import TrainConfig, fine_tune
from ecgtransfer.training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from ecgtransfer.training.engine import TIMING_KEYS

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_store, record_split  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECORDS = {"119": 16, "209": 16, "106": 16, "118": 16, "208": 16, "223": 16}
# tiny, fast, deterministic runs: 32x32 images, batch 8, one CPU thread
FAST = dict(init="scratch", encoding="spectrogram", image_size=32, batch_size=8, num_threads=1, progress=False,
            tiers=(1e-3, 1e-3, 1e-2), seed=3)


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory) -> SegmentStore:
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "mitdb6", RECORDS)


@pytest.fixture(scope="module")
def small_store(physionet_root, tmp_path_factory) -> SegmentStore:
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "mitdb6s", {r: 8 for r in RECORDS})


@pytest.fixture(scope="module")
def other_store(physionet_root, tmp_path_factory) -> SegmentStore:
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "mitdb6b", RECORDS, seed=1)


@pytest.fixture(scope="module")
def overfit_run(store, tmp_path_factory):
    """Scratch ResNet50 fitting 24 beats of 3 classes (train = val), plain cross-entropy, AdamW, cosine."""
    rid = np.asarray(store.record_ids).astype(str)
    idx = np.concatenate([np.flatnonzero(rid == r)[:8] for r in ("119", "209", "106")])
    out = tmp_path_factory.mktemp("runs") / "overfit"
    result = fine_tune(store, out=out, split_indices={"train": idx, "val": idx, "test": idx[:8]},
                       **{**FAST, "tiers": (1e-3, 1e-3, 1e-3)}, optimizer="adamw", weight_decay=0.0, epochs=5,
                       scheduler="cosine", warmup_steps=0, early_stopping=None, imbalance="none")
    return result


def test_training_lowers_loss_and_writes_the_run(overfit_run) -> None:
    r = overfit_run
    losses = [h["train"]["loss"] for h in r.history]
    assert len(losses) == 5 and r.stopped == "epochs" and r.steps == 15
    assert min(losses[1:]) < 0.65 * losses[0], losses
    assert max(h["train"]["accuracy"] for h in r.history[1:]) > r.history[0]["train"]["accuracy"]
    run = r.run_dir
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4, 5]
    first = json.loads(lines[0])
    assert np.array(first["val"]["confusion_matrix"]).sum() == 24
    assert set(first["val"]["per_class"]["V"]) >= {"se", "ppv", "specificity", "f1", "auroc", "support"}
    assert first["images_per_s"] > 0 and first["peak_memory_mb"] > 0
    import csv

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 5 and float(rows[-1]["train_loss"]) == pytest.approx(losses[-1])
    assert "val_se_S" in rows[0] and "val_ppv_V" in rows[0]
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == r.config
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["store_manifest_hash"] == SegmentStore(info["store"]).manifest_hash
    assert info["environment"]["torch"] == torch.__version__ and info["environment"]["device"] == "cpu"
    report = (run / "report.md").read_text()
    assert "AAMI-style table" in report and "| V |" in report
    assert (run / "confusion_test.png").read_bytes()[:4] == b"\x89PNG"
    best = max(r.history, key=lambda h: h["val"]["macro_f1"])
    assert r.best_epoch == best["epoch"] and r.best_metrics["macro_f1"] == best["val"]["macro_f1"]


def test_checkpoints_load_weights_only_and_hold_the_state(overfit_run, tmp_path) -> None:
    last = torch.load(overfit_run.run_dir / "last.pt", weights_only=True)
    assert last["format"] == CHECKPOINT_FORMAT and last["step"] == 15 and last["finished"] == "epochs"
    assert set(last) >= {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "config", "store_manifest_hash"}
    assert isinstance(last["rng"]["torch"], torch.Tensor) and last["rng"]["numpy"]["name"] == "MT19937"
    best = load_checkpoint(overfit_run.run_dir / "best.pt")
    assert best["history"][-1]["epoch"] == overfit_run.best_epoch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}, "payload": Evil()}, bad)
    with pytest.raises(TrainingError, match="weights_only"):
        load_checkpoint(bad)


def test_resume_refuses_another_store_or_config(overfit_run, store, other_store) -> None:
    cfg = overfit_run.config
    split = dict(np.load(overfit_run.run_dir / "split.npz"))
    assert other_store.manifest_hash != store.manifest_hash
    with pytest.raises(TrainingError, match="another store"):
        fine_tune(other_store, cfg, out=overfit_run.run_dir, resume=True, split_indices=split)
    with pytest.raises(TrainingError, match="batch_size"):
        fine_tune(store, cfg.replace(batch_size=4), out=overfit_run.run_dir, resume=True, split_indices=split)
    with pytest.raises(TrainingError, match="--resume"):
        fine_tune(store, cfg, out=overfit_run.run_dir, split_indices=split)
    # a finished run resumed with the same settings returns its result without training
    again = fine_tune(store, cfg, out=overfit_run.run_dir, resume=True, split_indices=split)
    assert again.steps == 15 and _json(again.history) == _json(overfit_run.history)


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True)  # NaN-safe equality (NaN != NaN as floats)


def _strip(history: list[dict]) -> str:
    return _json([{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ecgtransfer", "-q", *args]


def test_kill9_mid_epoch_then_resume_matches_uninterrupted(small_store, tmp_path) -> None:
    store = small_store
    common = ["--init", "scratch", "--encoding", "spectrogram", "--image-size", "32", "--batch-size", "8",
              "--epochs", "2", "--threads", "1", "--seed", "5", "--split", "patient", "--tiers", "1e-3,1e-3,1e-2"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli("train", str(store.path), "--out", str(killed), "--checkpoint-every", "2", *common),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = killed / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    state = load_checkpoint(ckpt)
    assert state["step"] == 2 and state["step_in_epoch"] == 2 and state["epoch"] == 0  # mid-epoch
    assert not (killed / "metrics.jsonl").exists()

    done = subprocess.run(_cli("train", str(store.path), "--out", str(killed), "--checkpoint-every", "2", "--resume",
                               *common), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((killed / "run.json").read_text())["resumed_at_step"] == 2

    ref = fine_tune(store, out=tmp_path / "ref", **{**FAST, "seed": 5}, epochs=2, split="patient",
                    checkpoint_every=2)
    a = load_checkpoint(killed / "last.pt")
    b = load_checkpoint(tmp_path / "ref" / "last.pt")
    assert a["step"] == b["step"] == ref.steps
    for name, tensor in b["model"].items():
        assert torch.equal(a["model"][name], tensor), name
    assert _strip(a["history"]) == _strip(b["history"])
    got = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert _strip(got) == _strip(ref.history)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_gloo_processes_hold_identical_weights(small_store, tmp_path) -> None:
    store = small_store
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "ecgtransfer", "-q", "train", str(store.path), "--out", str(out),
           "--init", "scratch", "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--threads", "1",
           "--split", "patient", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["world_size"] == 2 and info["backend"] == "gloo"
    digests = info["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    n_train = info["split_sizes"]["train"]
    assert info["steps_per_epoch"] == -(-(-(-n_train // 2)) // 4)
    hist = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(hist) == 1 and hist[0]["val"]["n"] == info["split_sizes"]["val"]  # gathered from both ranks
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_nan_loss_stops_with_a_message(store, tmp_path) -> None:
    split = record_split(store, ["119", "209", "106"], ["208"], [])
    with pytest.raises(TrainingError, match="loss became (nan|inf)"):
        fine_tune(store, out=tmp_path / "nan", split_indices=split, **{**FAST, "tiers": (1e30, 1e30, 1e30)}, grad_clip=None,
                  momentum=0.0, epochs=1, max_steps=6)


def test_empty_split_and_single_class_are_clear_errors(store, physionet_root, tmp_path) -> None:
    split = record_split(store, [], ["208"], [])
    with pytest.raises(TrainingError, match="training split .* is empty"):
        fine_tune(store, out=tmp_path / "a", split_indices=split, **FAST)
    split = record_split(store, ["119"], [], [])
    with pytest.raises(TrainingError, match="validation split .* is empty"):
        fine_tune(store, out=tmp_path / "b", split_indices=split, **FAST)
    n_only = np.flatnonzero(store.labels == 0)
    with pytest.raises(TrainingError, match="single class .*'N'"):
        fine_tune(store, out=tmp_path / "c", split_indices={"train": n_only[:10], "val": n_only[10:20]}, **FAST)
    one = write_store(tmp_path / "one", np.asarray(store.segments[:6]), np.zeros(6, dtype=np.int64),
                      record_ids=["1"] * 6, patient_ids=["1"] * 6, positions=np.arange(6), class_names=["N"],
                      fs=360.0, lead_names=["MLII"])
    with pytest.raises(TrainingError, match="1 class"):
        fine_tune(one, out=tmp_path / "d", **FAST)


def test_cli_imagenet_offline_is_one_clear_line(store, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ECGTRANSFER_WEIGHTS_DIR", str(tmp_path / "noweights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torchhome"))
    from ecgtransfer.errors import WeightsUnavailableError

    cached = Path(torch.hub.get_dir()) / "checkpoints"
    if any(cached.glob("resnet50-*.pth")) and not os.environ.get("TORCH_HOME"):
        pytest.skip("ImageNet weights are cached here")
    with pytest.raises(WeightsUnavailableError):
        fine_tune(store, out=tmp_path / "in", init="imagenet", image_size=32, split="patient", num_threads=1)
    done = subprocess.run(_cli("train", str(store.path), "--out", str(tmp_path / "cli"), "--init", "imagenet",
                               "--image-size", "32", "--threads", "1"), capture_output=True, text=True, timeout=120,
                          env={**os.environ})
    assert done.returncode == 2
    err = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("ecgtransfer: error:") and "ImageNet" in err[0], done.stderr


def test_config_toml_and_overrides(tmp_path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[train]\nepochs = 3\ntiers = [1e-4, 1e-3, 1e-2]\nimbalance = "sampler"\n'
                 '[train.encoding_params]\nnperseg = 32\n')
    cfg = TrainConfig.from_toml(f)
    assert cfg.epochs == 3 and cfg.tiers == (1e-4, 1e-3, 1e-2) and cfg.encoding_params == {"nperseg": 32}
    assert cfg.imbalance == "sampler" and cfg.replace(epochs=5).epochs == 5
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    f.write_text("epochz = 3\n")
    with pytest.raises(ConfigError, match="epochz"):
        TrainConfig.from_toml(f)
    with pytest.raises(ConfigError, match="imbalance"):
        TrainConfig(imbalance="oversample")
    assert cfg.incompatible_with(cfg.replace(device="cpu", num_workers=2).to_dict()) == {}
    assert set(cfg.incompatible_with(cfg.replace(seed=9).to_dict())) == {"seed"}
    older = {k: v for k, v in cfg.to_dict().items() if k not in ("tier_preset", "layer_decay", "freeze_bn_stats")}
    assert cfg.incompatible_with(older) == {}  # fields added since, at their defaults, still resume
    older = {k: v for k, v in TrainConfig().to_dict().items() if k != "tier_preset"}
    # the preset names itself (with the values it sets: no weight decay, momentum 0.1 on features_1)
    from ecgtransfer.models.tiers import PRESETS
    from ecgtransfer.training.config import PART_KEYS

    sets = {k for k, (part, name) in PART_KEYS.items() if part == "optim" and name in PRESETS["seed"]}
    diff = set(TrainConfig(tier_preset="seed").incompatible_with(older))
    assert "tier_preset" in diff and diff - {"tier_preset"} <= sets and "weight_decay" in diff
    seed_run = TrainConfig(tier_preset="seed").to_dict()
    before = {k: v for k, v in seed_run.items() if k not in ("tier_momentum", "betas", "nesterov")}
    before["weight_decay"] = TrainConfig().weight_decay  # a config.json written before TierConfig was held whole
    assert TrainConfig(tier_preset="seed").incompatible_with(before) == {}


def test_lead_stack_trains_evaluates_and_reloads_with_lead_channels(store, tmp_path) -> None:
    """``lead="stack"`` on a 2-lead store: images [B, 2, S, S], the network's first conv takes 2 channels, and a
    3-channel weights file (like ImageNet's) is adapted to them; evaluate rebuilds the same network."""
    from ecgtransfer.models import ResNet50
    from ecgtransfer.training import evaluate
    from ecgtransfer.training.evaluation import load_run

    seg = np.asarray(store.segments)  # [n, 1, L] MLII
    two = np.concatenate([seg, np.gradient(seg, axis=-1)], axis=1).astype(np.float32)  # [n, 2, L]
    st2 = write_store(tmp_path / "two", two, store.labels, record_ids=store.record_ids, patient_ids=store.record_ids,
                      positions=store.positions, class_names=store.class_names, fs=360.0, lead_names=["MLII", "dMLII"])
    rgb = tmp_path / "rgb.pt"
    torch.save(ResNet50(1000).state_dict(), rgb)  # 3 input channels
    split = record_split(st2, ["119", "209"], ["106"], [])
    out = tmp_path / "run"
    fine_tune(st2, out=out, split_indices=split, **{**FAST, "init": str(rgb), "encoding": "gasf"},
              encoding_params={"lead": "stack"}, epochs=1, max_steps=2)
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["model"]["features_1.stem.conv.weight"].shape[1] == 2
    run = load_run(out, checkpoint="last")
    assert run.model.in_channels == 2 and run.encoder.out_channels(2) == 2
    m = evaluate(out, st2, "val", checkpoint="last", out=tmp_path / "ev")
    assert m["n"] == len(split["val"])


def test_resume_does_not_need_the_init_weights_again(small_store, tmp_path) -> None:
    """A run initialised from a weights file resumes from last.pt after that file is gone (as an ImageNet run
    resumes offline): the checkpoint's weights replace the initial ones, so they are not loaded at all."""
    from ecgtransfer.models import ResNet50

    init = tmp_path / "init.pt"
    torch.save(ResNet50(1000).state_dict(), init)
    split = record_split(small_store, ["119", "209"], ["106"], [])
    out = tmp_path / "run"
    kw = dict(split_indices=split, **{**FAST, "init": str(init)}, epochs=1, max_steps=1)
    fine_tune(small_store, out=out, **kw)
    init.unlink()
    with pytest.raises(Exception, match="init.pt"):  # a fresh start would need the file
        fine_tune(small_store, out=tmp_path / "fresh", **kw)
    result = fine_tune(small_store, out=out, resume=True, **kw)
    assert result.stopped == "max_steps" and result.steps == 1


def _with_bad_sample(store: SegmentStore, path: Path, index: int, value: float) -> SegmentStore:
    """A copy of ``store`` with one sample of segment ``index`` replaced (stores refuse NaN when written)."""
    import shutil

    shutil.copytree(store.path, path)
    seg = np.load(path / "segments.npy", mmap_mode="r+")
    seg[index, 0, 5] = value
    seg.flush()
    del seg
    return SegmentStore(path)


def test_nan_segments_are_named_by_store_index_and_record(store, tmp_path) -> None:
    from ecgtransfer.errors import SignalError

    split = record_split(store, ["119", "209"], ["106"], [])
    k = int(split["val"][3])
    bad = _with_bad_sample(store, tmp_path / "inf", k, np.inf)
    with pytest.raises(SignalError, match=rf"segments \[{k}\] \(records \['106'\]\) hold NaN or infinite"):
        fine_tune(bad, out=tmp_path / "v", split_indices=split, **FAST, epochs=1)  # found when validating
    t = int(split["train"][5])
    bad = _with_bad_sample(store, tmp_path / "nan", t, np.nan)
    with pytest.raises(SignalError, match=rf"segments \[{t}\] \(records \['{store.record_ids[t]}'\]\)"):
        fine_tune(bad, out=tmp_path / "t", split_indices=split, **FAST, epochs=1)  # found in training


def test_cli_tier_options_reach_the_optimizer(small_store, tmp_path) -> None:
    """``--tier-preset seed`` gives the seed recipe's momentum 0.1 on the first tier; --freeze, --lr-spread,
    --layer-decay and the decay/BN switches pass through to TierConfig."""
    from ecgtransfer.cli import build_parser
    from ecgtransfer.cli.train import config_from_args
    from ecgtransfer.training.engine import _Trainer

    split = record_split(small_store, ["119", "209"], ["106"], [])

    def optimizer(*argv: str) -> torch.optim.Optimizer:
        args = build_parser().parse_args(["train", str(small_store.path), "--out", str(tmp_path / "r"),
                                          "--init", "scratch", "--threads", "1", *argv])
        trainer = _Trainer(small_store, config_from_args(args), tmp_path / "r", resume=False, split=split)
        trainer.setup()
        return trainer.optimizer

    groups = optimizer("--tier-preset", "seed").param_groups
    momenta = {g["tier"]: g["momentum"] for g in groups}
    assert momenta == {"features_1": 0.1, "features_2": 0.9, "classifier": 0.9}
    assert all(g["weight_decay"] == 0.0 for g in groups)
    with pytest.raises(ConfigError, match="preset"):
        optimizer("--tier-preset", "seed", "--tiers", "1e-4,1e-3,1e-2")
    opt = optimizer("--freeze", "features_1", "--freeze-bn-stats", "false", "--lr-spread", "1e-6,1e-2",
                    "--layer-decay", "0.5", "--no-decay-bn-bias", "false")
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["classifier.fc"] == pytest.approx(1e-2) and lrs["features_2.stage4.block2"] == pytest.approx(1e-4)
    assert lrs["features_2.stage4.block1"] == pytest.approx(0.5e-4)
    assert not any(name.endswith("/no_decay") for name in lrs)
    frozen = [p for g in opt.param_groups if g["tier"] == "features_1" for p in g["params"]]
    assert frozen and not any(p.requires_grad for p in frozen)


def test_validation_every_k_steps_gives_a_step_curve_and_changes_no_training_state(small_store, tmp_path) -> None:
    """``val_every_steps`` validates inside epochs (the bench's learning curve in steps) without touching what is
    trained: the weights equal those of the same run without it, the epoch rows are the same, and a resumed run
    keeps the evaluations made before its checkpoint."""
    kw = dict(**{**FAST, "seed": 7}, epochs=2, split="patient", early_stopping=None)
    plain = fine_tune(small_store, out=tmp_path / "plain", **kw)
    curve = fine_tune(small_store, out=tmp_path / "curve", **kw, val_every_steps=2)
    spe = plain.steps // 2
    want = [s for s in range(2, plain.steps + 1, 2) if s % spe]  # epoch ends are the epoch rows' job
    assert [e["step"] for e in curve.step_evals] == want and want
    assert all(0.0 <= e["val_macro_f1"] <= 1.0 and e["epoch"] == (e["step"] - 1) // spe + 1 for e in curve.step_evals)
    rows = [json.loads(x) for x in (tmp_path / "curve" / "val_steps.jsonl").read_text().splitlines()]
    assert rows == curve.step_evals
    a = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "curve" / "last.pt")
    for name, tensor in a.items():
        assert torch.equal(b["model"][name], tensor), name
    assert _strip(plain.history) == _strip(curve.history)
    assert b["step_evals"] == curve.step_evals
    with pytest.raises(ConfigError, match="val_every_steps"):
        TrainConfig(val_every_steps=0)
