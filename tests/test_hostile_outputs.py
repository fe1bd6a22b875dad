"""Issue 20 (second hostile pass), group 1: predict and evaluate follow the output rule of the other verbs
(:mod:`ecgtransfer._outdir`): an output file may not be an input (nor a file of an input record), may not lie
inside a run, store or bench folder the command does not own, an existing user file is replaced only with
``--overwrite``, and a report folder must be empty or a report of ours. Every refusal is one line, exit 2, and
leaves every file as it was.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import one_error_line, tree  # noqa: E402
from training_helpers import CLI_RECORDS, CLI_TRAIN, make_store, run, store  # noqa: E402,F401

RECORDS, TRAIN = CLI_RECORDS, CLI_TRAIN


@pytest.fixture()
def record(physionet_root, tmp_path) -> Path:
    """A writable copy of mitdb record 119 (.hea, .dat, .atr)."""
    folder = tmp_path / "rec"
    folder.mkdir()
    for f in (physionet_root / "mitdb" / "1.0.0").glob("119.*"):
        shutil.copy(f, folder / f.name)
    return folder / "119"


def _refused(capsys, argv: list[str], *words: str) -> str:
    assert main(["-q", *argv]) == 2
    line = one_error_line(capsys)
    for w in words:
        assert w in line, line
    return line


def test_predict_out_may_not_be_the_input_recording(run, tmp_path, capsys) -> None:
    keep = tmp_path / "keep.csv"
    keep.write_text("MLII\n" + "\n".join(str(np.sin(i / 30.0)) for i in range(3600)) + "\n")
    before = keep.read_bytes()
    for extra in ([], ["--overwrite"]):
        _refused(capsys, ["predict", str(run), str(keep), "--fs", "360", "--out", str(keep), *extra],
                 str(keep), "is the input INPUT 1")
        assert keep.read_bytes() == before


def test_predict_out_may_not_be_a_file_of_an_input_wfdb_record(run, record, capsys) -> None:
    dat = record.with_suffix(".dat")
    before = dat.read_bytes()
    _refused(capsys, ["predict", str(run), str(record), "--out", str(dat), "--overwrite"], "a file of the input")
    assert dat.read_bytes() == before


def test_predict_may_not_write_into_the_run(run, record, capsys) -> None:
    before = tree(run)
    _refused(capsys, ["predict", str(run), str(record), "--report", str(run)], "--report", str(run))
    _refused(capsys, ["predict", str(run), str(record), "--out", str(run / "best.pt"), "--overwrite"],
             "best.pt", "inside the input RUN_DIR")
    _refused(capsys, ["predict", str(run), str(record), "--report", str(run / "beats")], "inside the input RUN_DIR")
    assert tree(run) == before


def test_predict_may_not_write_into_another_run_or_a_store(run, store, record, tmp_path, capsys) -> None:
    other = tmp_path / "other"
    shutil.copytree(run, other)
    before = tree(other), tree(store.path)
    _refused(capsys, ["predict", str(run), str(record), "--out", str(other / "p.csv")],
             "inside", "training run", "does not write")
    _refused(capsys, ["predict", str(run), str(record), "--out", str(store.path / "p.csv")],
             "inside", "segment store")
    _refused(capsys, ["predict", str(run), str(record), "--report", str(other / "figs")], "training run")
    assert (tree(other), tree(store.path)) == before


def test_predict_report_keeps_a_users_report_md(run, record, tmp_path, capsys) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "report.md").write_text("my own notes\n")
    _refused(capsys, ["predict", str(run), str(record), "--report", str(notes)], str(notes), "report.md",
             "not an ecgtransfer beat report")
    assert (notes / "report.md").read_text() == "my own notes\n"


def test_predict_replaces_a_user_file_only_with_overwrite_and_reuses_its_report(run, record, tmp_path,
                                                                                 capsys) -> None:
    out = tmp_path / "preds.csv"
    out.write_text("mine\n")
    _refused(capsys, ["predict", str(run), str(record), "--out", str(out)], str(out), "exists", "--overwrite")
    assert out.read_text() == "mine\n"
    rep = tmp_path / "rep"
    assert main(["-q", "predict", str(run), str(record), "--out", str(out), "--overwrite", "--report", str(rep)]) == 0
    assert out.read_text().startswith("record,")
    assert (rep / "report.md").is_file() and (rep / "summary.json").is_file()
    from ecgtransfer._outdir import check_output_dir

    check_output_dir(rep, kind="report", owned=())  # a report of ours may be written again


def test_evaluate_out_may_not_be_another_run(run, store, tmp_path, capsys) -> None:
    a = tmp_path / "runs" / "A"
    shutil.copytree(run, a)
    assert main(["-q", "evaluate", str(a), str(store.path), "--split", "all"]) == 0
    capsys.readouterr()
    before = tree(a)
    _refused(capsys, ["evaluate", str(run), str(store.path), "--split", "all", "--out", str(a)], str(a),
             "not an ecgtransfer evaluation folder")
    _refused(capsys, ["evaluate", str(run), str(store.path), "--split", "all", "--out", str(a / "evals")],
             "training run")
    assert tree(a) == before
    user = tmp_path / "mine"
    user.mkdir()
    (user / "eval_all.json").write_text('{"mine": 1}')
    _refused(capsys, ["evaluate", str(run), str(store.path), "--split", "all", "--out", str(user)], "eval_all.json")
    assert json.loads((user / "eval_all.json").read_text()) == {"mine": 1}


def test_evaluate_writes_into_its_own_run_an_empty_folder_or_an_evaluation_folder(run, store, tmp_path,
                                                                                   capsys) -> None:
    for out in (run / "evals", tmp_path / "ev", tmp_path / "ev"):
        assert main(["-q", "evaluate", str(run), str(store.path), "--split", "all", "--out", str(out)]) == 0
        assert json.loads((out / "eval_all.json").read_text())["n"] > 0
    shutil.rmtree(run / "evals")


def test_check_output_file_directly(tmp_path) -> None:
    from ecgtransfer._outdir import check_output_file, enclosing_output
    from ecgtransfer.errors import ConfigError

    with pytest.raises(ConfigError, match="empty path"):
        check_output_file("")
    with pytest.raises(ConfigError, match="is a folder"):
        check_output_file(tmp_path)
    assert check_output_file(tmp_path / "new.csv", inputs={"INPUT 1": tmp_path / "x.csv"}) == tmp_path / "new.csv"
    assert enclosing_output(tmp_path / "a" / "b.csv") is None
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "best.pt").write_bytes(b"")
    assert enclosing_output(tmp_path / "r" / "x" / "y.csv") is None  # a stray checkpoint alone makes no run
    (tmp_path / "r" / "config.json").write_text("{}")
    assert enclosing_output(tmp_path / "r" / "x" / "y.csv") == (tmp_path.resolve() / "r", "run")
    assert enclosing_output(tmp_path / "r" / "x" / "y.csv", owned=[tmp_path / "r"]) is None


def test_folder_verbs_may_not_write_inside_another_run(run, store, physionet_root, tmp_path, capsys) -> None:
    other = tmp_path / "other"
    shutil.copytree(run, other)
    before = tree(other)
    _refused(capsys, ["train", str(store.path), "--out", str(other / "sub"), "--init", "scratch", "--image-size",
                      "32"], str(other / "sub"), "training run")
    _refused(capsys, ["convert", "mitdb", "--data", str(physionet_root), "--out", str(other / "s"), "--records",
                      "119", "--jobs", "1"], "training run")
    _refused(capsys, ["images", str(store.path), "--out", str(other / "img"), "--size", "8"], "training run")
    bench = tmp_path / "b.toml"
    from test_safety_outdir import _bench_toml

    bench.write_text(_bench_toml(store.path))
    _refused(capsys, ["bench", str(bench), "--out", str(other / "b")], "training run")
    assert tree(other) == before
    # a folder that merely holds a runs/ folder (where train writes by default) is no bench folder
    project = tmp_path / "project"
    (project / "runs").mkdir(parents=True)
    (project / "results.json").write_text("{}")
    from ecgtransfer._outdir import enclosing_output

    assert enclosing_output(project / "runs" / "x") is None


def test_weights_fetch_keeps_a_users_file_and_stays_out_of_runs(run, tmp_path, capsys) -> None:
    """Checked before anything is downloaded: no network needed."""
    from ecgtransfer.models.weight_registry import get_weights

    w = tmp_path / "w"
    w.mkdir()
    mine = w / get_weights("v1").file_name
    mine.write_bytes(b"my own file")
    _refused(capsys, ["weights", "fetch", "--version", "v1", "--out", str(w) + "/"], str(mine), "exists",
             "--overwrite")
    assert mine.read_bytes() == b"my own file"
    before = tree(run)
    _refused(capsys, ["weights", "fetch", "--version", "v1", "--out", str(run / "r50.pth")], "inside", "training run")
    assert tree(run) == before
