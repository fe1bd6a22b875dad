"""Issue 20 (second hostile pass), group 2: "a run is already here" looks at every file a run owns, not only
``last.pt``. With ``last.pt`` of a finished run deleted (``best.pt`` kept), ``train --out A`` with other settings
used to exit 0 and replace ``best.pt`` and ``config.json``, and ``--resume`` retrained from scratch over
``best.pt``. Now both refuse, one line, exit 2, every file as it was (:func:`ecgtransfer.training.engine.
check_run_identity`).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from ecgtransfer.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import one_error_line, tree  # noqa: E402
from training_helpers import CLI_RECORDS, CLI_TRAIN, make_store, run, store  # noqa: E402,F401

RECORDS, TRAIN = CLI_RECORDS, CLI_TRAIN


@pytest.fixture()
def no_last(run, tmp_path) -> Path:
    """A finished run whose last.pt was deleted (best.pt kept)."""
    a = tmp_path / "A"
    shutil.copytree(run, a)
    (a / "last.pt").unlink()
    return a


def _train(store, out: Path, *extra: str) -> int:
    return main(["-q", "train", str(store.path), "--out", str(out), *TRAIN, *extra])


def test_other_settings_are_refused_without_last_pt(store, no_last, capsys) -> None:
    before = tree(no_last)
    assert _train(store, no_last, "--seed", "2") == 2
    line = one_error_line(capsys)
    assert str(no_last) in line and "other settings" in line and "seed" in line
    assert tree(no_last) == before


def test_same_settings_do_not_retrain_over_best_pt(store, no_last, capsys) -> None:
    before = tree(no_last)
    assert _train(store, no_last) == 2
    line = one_error_line(capsys)
    assert "best.pt" in line and "last.pt is missing" in line
    assert tree(no_last) == before


def test_resume_without_last_pt_refuses_instead_of_retraining(store, no_last, capsys) -> None:
    before = tree(no_last)
    assert _train(store, no_last, "--resume") == 2
    line = one_error_line(capsys)
    assert "best.pt but no last.pt" in line and "cannot continue it exactly" in line
    assert tree(no_last) == before


def test_any_run_file_makes_a_folder_a_run(store, run, tmp_path, capsys) -> None:
    """best.pt and metrics.jsonl without run.json: still a run (it used to be 'other files' or trained over)."""
    b = tmp_path / "B"
    b.mkdir()
    for f in ("best.pt", "metrics.jsonl"):
        shutil.copy(run / f, b / f)
    before = tree(b)
    assert _train(store, b) == 2
    line = one_error_line(capsys)
    assert "no config.json" in line and "best.pt" in line
    assert tree(b) == before


def test_a_run_stopped_before_its_first_checkpoint_starts_again(store, run, tmp_path, capsys) -> None:
    c = tmp_path / "C"
    c.mkdir()
    for f in ("config.json", "store_manifest.json", "split.npz"):
        shutil.copy(run / f, c / f)
    assert _train(store, c, "--seed", "3") == 2  # other settings: refused
    assert "other settings" in one_error_line(capsys)
    assert _train(store, c) == 0  # the same settings: trained
    assert (c / "best.pt").is_file() and json.loads((c / "run.json").read_text())["status"] == "finished"


def test_check_run_identity_directly(tmp_path) -> None:
    from ecgtransfer.errors import TrainingError
    from ecgtransfer.training.config import TrainConfig
    from ecgtransfer.training.engine import check_run_identity

    cfg = TrainConfig(init="scratch")
    check_run_identity(tmp_path, cfg, resume=False)  # empty: a new run
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    check_run_identity(tmp_path, cfg, resume=False)
    check_run_identity(tmp_path, cfg.replace(num_workers=3), resume=True)  # resume-mutable settings may change
    with pytest.raises(TrainingError, match="other settings"):
        check_run_identity(tmp_path, cfg.replace(seed=9), resume=True)
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(TrainingError, match=r"already holds a run \(last.pt\); pass --resume"):
        check_run_identity(tmp_path, cfg, resume=False)
    check_run_identity(tmp_path, cfg, resume=True)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(TrainingError, match="not a readable training config"):
        check_run_identity(tmp_path, cfg, resume=True)
