"""Issue 13 on a real (tiny) training run: a mixed run directory (case 2), mis-shaped checkpoint tensors and a
full disk (case 5), a code-running pickle as a checkpoint (case 6), all-NaN weights (case 8).

One run is trained once for the module (scratch ResNet50, 32x32 images, 2 steps on real mitdb beats).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from ecgtransfer.cli import main
from ecgtransfer.errors import TrainingError, WeightsError

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import one_error_line  # noqa: E402
from training_helpers import CLI_RECORDS, CLI_TRAIN, make_store, run, store  # noqa: E402,F401

RECORDS, TRAIN = CLI_RECORDS, CLI_TRAIN


def _copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def test_a_mixed_run_directory_is_refused_by_load_run(run, store, tmp_path, capsys) -> None:
    """config.json of one run beside the checkpoints of another: evaluate used to rebuild the wrong encoder."""
    mixed = _copy(run, tmp_path)
    cfg = json.loads((mixed / "config.json").read_text())
    cfg.update(seed=2, encoding="gasf")
    (mixed / "config.json").write_text(json.dumps(cfg))
    assert main(["-q", "evaluate", str(mixed), str(store.path), "--split", "all"]) == 2
    line = one_error_line(capsys)
    assert "config.json" in line and "encoding" in line and "seed" in line and "mixes two runs" in line
    from ecgtransfer.training.evaluation import load_run

    with pytest.raises(TrainingError, match="mixes two runs"):
        load_run(mixed, checkpoint="last")
    assert load_run(run, checkpoint="last").config.encoding == "spectrogram"  # the real run loads


def _misshape(path: Path) -> None:
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["classifier.fc.weight"] = torch.zeros(3, 7)
    torch.save(ckpt, path)


def test_mis_shaped_checkpoint_is_one_line_in_evaluate_predict_and_resume(run, store, physionet_root, tmp_path,
                                                                           capsys) -> None:
    bad = _copy(run, tmp_path)
    _misshape(bad / "best.pt")
    _misshape(bad / "last.pt")
    record = physionet_root / "mitdb" / "1.0.0" / "119"
    for argv in (["evaluate", str(bad), str(store.path)],
                 ["predict", str(bad), str(record)],
                 ["train", str(store.path), "--out", str(bad), "--resume", *TRAIN]):
        assert main(["-q", *argv]) == 2, argv
        line = one_error_line(capsys)
        assert "classifier.fc.weight" in line and "[3, 7]" in line and "does not fit" in line, line


def test_disk_full_while_saving_a_checkpoint_is_one_line(run, store, tmp_path, monkeypatch, capsys) -> None:
    from ecgtransfer.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(run / "last.pt")
    # a real full file system when this process may mount one (root in a container), else ENOSPC from the OS layer
    full = tmp_path / "full"
    full.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)],
                                 capture_output=True).returncode == 0
    try:
        if mounted:
            (full / "last.pt").write_bytes(b"previous")
            with pytest.raises(TrainingError, match=r"cannot write checkpoint .*last\.pt: no space left") as exc:
                save_checkpoint(full / "last.pt", state)
            assert "\n" not in str(exc.value)
            assert (full / "last.pt").read_bytes() == b"previous"  # the previous checkpoint is intact
            assert sorted(p.name for p in full.iterdir()) == ["last.pt"]  # no temporary file left
            # the same through `train`: the first checkpoint of the run does not fit on the device
            assert main(["-q", "train", str(store.path), "--out", str(full / "r"), *TRAIN]) == 2
            line = one_error_line(capsys)
            assert "cannot write checkpoint" in line and "no space left" in line, line
    finally:
        if mounted:
            subprocess.run(["umount", str(full)], check=False)

    import ecgtransfer.training.checkpoint as ck

    def no_space(obj, fh, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", no_space)
    target = tmp_path / "last.pt"
    target.write_bytes(b"previous")
    with pytest.raises(TrainingError, match="no space left on the device"):
        save_checkpoint(target, state)
    assert target.read_bytes() == b"previous"


EVIL = """
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
torch.save({"format": "ecgtransfer-checkpoint", "model": Evil()}, sys.argv[1])
"""


def test_damaged_run_files_are_one_line(run, store, tmp_path, capsys) -> None:
    for name, text in (("config.json", "{not json"), ("run.json", "[1]"), ("store_manifest.json", "\x00")):
        bad = _copy(run, tmp_path, f"bad-{name}")
        (bad / name).write_text(text)
        assert main(["-q", "evaluate", str(bad), str(store.path)]) == 2
        line = one_error_line(capsys)
        assert name in line and "damaged" in line, line


def test_code_running_pickle_is_refused_with_the_projects_message(run, store, tmp_path, capsys) -> None:
    evil = tmp_path / "evil.pt"
    marker = tmp_path / f"ran-{uuid.uuid4().hex}"
    subprocess.run([sys.executable, "-c", EVIL, str(evil), str(marker)], check=True)
    assert main(["-q", "weights", "inspect", str(evil)]) == 2
    line = one_error_line(capsys)
    assert "refused: pickled Python objects" in line and "system" in line
    assert "will likely succeed" not in line and "weights_only=False" not in line
    bad = _copy(run, tmp_path)
    shutil.copy(evil, bad / "best.pt")
    assert main(["-q", "evaluate", str(bad), str(store.path)]) == 2
    line = one_error_line(capsys)
    assert "refused: pickled Python objects" in line and "will likely succeed" not in line
    assert not marker.exists()  # never executed


def test_all_nan_weights_fail_inspect_loading_and_train(run, store, tmp_path, capsys) -> None:
    from ecgtransfer.models import resnet50

    state = torch.load(run / "best.pt", weights_only=True)["model"]
    nan = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v) for k, v in state.items()}
    path = tmp_path / "nan.pt"
    torch.save(nan, path)
    assert main(["-q", "weights", "inspect", str(path)]) == 2
    line = one_error_line(capsys)
    assert "NaN" in line and str(path) in line
    with pytest.raises(WeightsError, match="NaN or infinite"):
        resnet50(5, weights=path)
    out = tmp_path / "r"
    argv = [a for a in TRAIN if a != "scratch"]
    argv[argv.index("--init") + 1:argv.index("--init") + 1] = [str(path)]
    assert main(["-q", "train", str(store.path), "--out", str(out), *argv]) == 2
    line = one_error_line(capsys)
    assert "NaN" in line and "learning rate" not in line
    assert not out.exists()
    bad = _copy(run, tmp_path, "nanrun")
    ckpt = torch.load(bad / "best.pt", weights_only=True)
    ckpt["model"] = nan
    torch.save(ckpt, bad / "best.pt")
    assert main(["-q", "evaluate", str(bad), str(store.path)]) == 2
    assert "NaN" in one_error_line(capsys)
