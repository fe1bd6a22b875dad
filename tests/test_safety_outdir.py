"""Issue 13, cases 1 and 8: what a verb may write into, and validation before anything is written.

Every refusal is one ``ecgtransfer: error:`` line, exit 2, and leaves the user's files as they were.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.cli import main
from ecgtransfer.store import SegmentStore

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_store  # noqa: E402

RECORDS = {r: 8 for r in ("119", "209", "106", "118", "208", "223")}


def one_error_line(capsys) -> str:
    """The single ``ecgtransfer: error:`` line of stderr (log lines aside); fails on a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("INFO ", "WARNING ", "DEBUG "))]
    assert len(lines) == 1 and lines[0].startswith("ecgtransfer: error: "), err
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes (folders as b'<dir>')."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory) -> SegmentStore:
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "mitdb6", RECORDS)


def _convert(data: Path | str, out: Path | str, *extra: str) -> list[str]:
    return ["-q", "convert", "mitdb", "--data", str(data), "--out", str(out), "--records", "119", "--jobs", "1",
            *extra]


# -- case 1: --overwrite replaces only a store or an empty folder ---------------------------------------------
def test_overwrite_refuses_a_folder_holding_other_files(physionet_root, tmp_path, capsys) -> None:
    x = tmp_path / "X"
    (x / "sub").mkdir(parents=True)
    (x / "thesis.txt").write_text("t")
    (x / "sub" / "notes.md").write_text("n")
    before = tree(x)
    assert main(_convert(physionet_root, x, "--overwrite")) == 2
    line = one_error_line(capsys)
    assert str(x) in line and "thesis.txt" in line and "holds other files" in line
    assert tree(x) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X"]  # no partial, old or lock folder beside it


def test_out_equal_to_or_inside_data_is_refused_and_sources_survive(physionet_root, tmp_path, capsys) -> None:
    dd = tmp_path / "dd"
    vdir = dd / "mitdb" / "1.0.0"
    vdir.mkdir(parents=True)
    for ext in ("hea", "dat", "atr"):
        shutil.copy(physionet_root / "mitdb" / "1.0.0" / f"119.{ext}", vdir)
    (vdir / "RECORDS").write_text("119\n")
    before = tree(dd)
    for out in (dd, vdir / "store", dd / "stores" / "s"):
        assert main(_convert(dd, out, "--overwrite")) == 2
        line = one_error_line(capsys)
        assert str(out) in line and "--data" in line
    assert tree(dd) == before
    # --data inside --out: replacing OUT would remove the records being read
    assert main(_convert(dd, tmp_path, "--overwrite")) == 2
    assert "is inside --out" in one_error_line(capsys)
    assert tree(dd) == before


def test_out_dot_is_refused_without_leftovers(physionet_root, tmp_path, monkeypatch, capsys) -> None:
    cwd = tmp_path / "cw"
    cwd.mkdir()
    (cwd / "mine.txt").write_text("keep")
    monkeypatch.chdir(cwd)
    for out in (".", str(cwd), str(tmp_path)):
        assert main(_convert(physionet_root, out, "--overwrite")) == 2
        assert "current folder" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cw"]  # no '..old-*' or '.cw.old-*' folder
    assert (cwd / "mine.txt").read_text() == "keep" and sorted(p.name for p in cwd.iterdir()) == ["mine.txt"]


def test_overwrite_replaces_a_store_and_an_empty_folder_is_accepted(physionet_root, tmp_path, capsys) -> None:
    out = tmp_path / "s"
    assert main(_convert(physionet_root, out)) == 0
    first = SegmentStore(out).manifest_hash
    assert main(_convert(physionet_root, out, "--after", "0.5", "--overwrite")) == 0
    assert SegmentStore(out).manifest_hash != first
    (out / "thesis.txt").write_text("t")  # a store with a foreign file is no longer only a store
    assert main(_convert(physionet_root, out, "--after", "0.4", "--overwrite")) == 2
    assert "thesis.txt" in one_error_line(capsys) and (out / "thesis.txt").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_convert(physionet_root, empty)) == 0
    assert len(SegmentStore(empty)) > 0


def test_images_train_and_bench_apply_the_same_rule(store, tmp_path, capsys) -> None:
    x = tmp_path / "X"
    x.mkdir()
    (x / "thesis.txt").write_text("t")
    before = tree(x)
    assert main(["-q", "images", str(store.path), "--out", str(x), "--size", "8"]) == 2
    assert "thesis.txt" in one_error_line(capsys)
    assert main(["-q", "images", str(store.path), "--out", str(store.path / "img"), "--size", "8"]) == 2
    assert "inside the input STORE" in one_error_line(capsys)
    assert main(["-q", "train", str(store.path), "--out", str(x), "--init", "scratch", "--image-size", "32"]) == 2
    assert "thesis.txt" in one_error_line(capsys)
    cfg = tmp_path / "b.toml"
    cfg.write_text(_bench_toml(store.path))
    assert main(["-q", "bench", str(cfg), "--out", str(x)]) == 2
    assert "thesis.txt" in one_error_line(capsys)
    assert tree(x) == before
    assert not (store.path / "img").exists()


# -- case 8: validation before anything is written -----------------------------------------------------------
def test_train_image_size_1_leaves_no_run_stub(store, tmp_path, capsys) -> None:
    run = tmp_path / "runs" / "r"
    assert main(["-q", "train", str(store.path), "--out", str(run), "--init", "scratch", "--image-size", "1",
                 "--epochs", "1", "--threads", "1"]) == 2
    assert "size" in one_error_line(capsys)
    assert not run.exists()


@pytest.mark.parametrize("size", ["0", "-5", "1"])
def test_images_bad_size_is_one_line_and_leaves_nothing(store, tmp_path, capsys, size) -> None:
    out = tmp_path / "img"
    assert main(["-q", "images", str(store.path), "--out", str(out), "--size", size]) == 2
    assert "size" in one_error_line(capsys)
    assert not out.exists()  # in particular no .images.npy.partial
    assert [p.name for p in tmp_path.iterdir()] == []


def _bench_toml(store: Path | str, arm: str = '"scratch"') -> str:
    return f"""[bench]
name = "t"
seeds = [0]
fractions = [1.0]
encodings = ["spectrogram"]
image_size = 32
epochs = 1
arms = [{arm}]
device = "cpu"
[task]
store = "{store}"
split = "random"
"""


def test_bench_with_a_missing_store_leaves_no_out_folder(tmp_path, capsys) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(_bench_toml(tmp_path / "nostore"))
    out = tmp_path / "reports" / "b"
    assert main(["-q", "bench", str(cfg), "--out", str(out)]) == 2
    assert "nostore" in one_error_line(capsys)
    assert not out.exists()


def test_bench_arm_lr_must_be_a_number(store, tmp_path, capsys) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(_bench_toml(store.path, arm='{name = "x", init = "scratch", optim = "uniform", lr = "fast"}'))
    out = tmp_path / "b"
    assert main(["-q", "bench", str(cfg), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "lr" in line and "'fast'" in line
    assert not out.exists()


def test_store_writer_refuses_a_foreign_folder(tmp_path) -> None:
    from ecgtransfer.errors import ConfigError
    from ecgtransfer.store import write_store

    x = tmp_path / "X"
    x.mkdir()
    (x / "a.txt").write_text("a")
    with pytest.raises(ConfigError, match="holds other files"):
        write_store(x, np.zeros((2, 1, 4)), [0, 1], record_ids=["r", "r"], patient_ids=["p", "p"], positions=[0, 1],
                    class_names=["a", "b"], fs=1.0, lead_names=["I"], overwrite=True)
    assert sorted(p.name for p in x.iterdir()) == ["a.txt"]
