"""Issue 21 item 4: each output folder's layout is declared by the module that writes it, the rule takes it.

:mod:`ecgtransfer._outdir` imports none of the owners; they register their :class:`~ecgtransfer._outdir.FolderLayout`
at import, and the command line passes every layout (:func:`ecgtransfer.cli._outputs.every_layout`), so a verb
that never imports the bench (``train``) still recognises a bench folder, with the same one-line messages.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ecgtransfer._formats import RESULTS_FORMAT

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory):
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "mitdb2", {"119": 8, "209": 8})


def test_each_owner_declares_its_layout() -> None:
    from ecgtransfer import _outdir
    from ecgtransfer.bench import cells
    from ecgtransfer.cli._outputs import every_layout
    from ecgtransfer.imaging import export
    from ecgtransfer.store import STORE_LAYOUT
    from ecgtransfer.training import beat_report, evaluation, run_files

    owners = {"store": STORE_LAYOUT, "images": export.IMAGES_LAYOUT, "run": run_files.RUN_LAYOUT,
              "report": beat_report.REPORT_LAYOUT, "eval": evaluation.EVAL_LAYOUT, "bench": cells.BENCH_LAYOUT}
    assert {lay.kind: lay for lay in every_layout()} == owners
    assert set(_outdir.registered_layouts()) >= set(owners.values())
    # tried from inside in this order: a run holding an images.json is a run
    assert [lay.kind for lay in every_layout() if lay.encloses] == ["run", "bench", "images", "store"]


def test_a_layout_is_passed_not_looked_up(tmp_path) -> None:
    from ecgtransfer._outdir import FolderLayout, check_output_dir, enclosing_output
    from ecgtransfer.errors import ConfigError

    notes = FolderLayout("notes", "a notes folder", names=frozenset({"a.txt"}),
                         encloses=lambda f: (f / "a.txt").is_file())
    out = tmp_path / "n"
    out.mkdir()
    (out / "a.txt").write_text("a")
    assert check_output_dir(out, kind=notes) == out
    (out / "b.txt").write_text("b")
    with pytest.raises(ConfigError, match=r"holds other files \(b.txt\) and is not a notes folder"):
        check_output_dir(out, kind=notes)
    assert enclosing_output(out / "x", layouts=[notes]) == (out.resolve(), "notes")
    assert enclosing_output(out / "x", layouts=[]) is None
    with pytest.raises(ValueError, match="unknown output kind 'notes'"):
        check_output_dir(out, kind="notes")  # never registered


_FRESH = """
import sys
from ecgtransfer.cli import main
sys.exit(main(["-q", "train", sys.argv[1], "--out", sys.argv[2], "--init", "scratch", "--image-size", "32"]))
"""


def _train_in_a_fresh_process(store: Path, out: Path, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", _FRESH, str(store), str(out)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("ecgtransfer: error: ")][0]


def test_train_refuses_a_store_and_a_bench_folder_with_only_its_own_modules(store, tmp_path) -> None:
    """``train`` imports the training modules, never the bench: its checks still see every layout, and the
    refusals read as before the layouts moved to their owners."""
    other = tmp_path / "other_store"
    shutil.copytree(store.path, other)
    line = _train_in_a_fresh_process(store.path, other, tmp_path)
    assert line == (f"ecgtransfer: error: --out {other} holds other files (labels.npy, manifest.json, "
                    "patient_ids.npy, positions.npy, record_ids.npy, ... (6 entries)) and is not an ecgtransfer "
                    "training run; nothing was written: choose a new or empty folder")
    bench = tmp_path / "bench"
    (bench / "cells").mkdir(parents=True)
    (bench / "results.json").write_text(json.dumps({"format": RESULTS_FORMAT}))
    line = _train_in_a_fresh_process(store.path, bench / "x", tmp_path)
    assert line == (f"ecgtransfer: error: --out {bench / 'x'} is inside {bench.resolve()}, an ecgtransfer bench "
                    "folder that this command does not write; nothing was written: write the output elsewhere")
    assert not (bench / "x").exists() and not any((other / n).exists() for n in ("run.json", "config.json"))
