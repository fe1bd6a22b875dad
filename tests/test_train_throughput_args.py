"""Issue 20 (second hostile pass), group 4: ``benchmarks/train_throughput.py --compare`` silently measured its
``--sizes`` defaults whatever ``--image-size`` / ``--batch-size`` said. The flags now apply (the resolved sizes
are ``args.sizes``), and ``--image-size`` with ``--sizes`` is refused in one line. Argument parsing only: no
benchmark runs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def tt():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("argv, sizes", [
    (["--compare"], "64:8,224:2"),
    (["--compare", "--image-size", "128", "--batch-size", "4"], "128:4"),
    (["--compare", "--image-size", "96"], "96:16"),
    (["--compare", "--batch-size", "4"], "64:4,224:4"),
    (["--compare", "--sizes", "64,224", "--batch-size", "4"], "64:4,224:4"),
    (["--compare", "--sizes", "64:8,224"], "64:8,224:16"),
])
def test_compare_measures_what_the_flags_say(tt, argv, sizes) -> None:
    assert tt.parse_args(argv).sizes == sizes


def test_single_mode_defaults(tt) -> None:
    args = tt.parse_args(["--image-size", "64"])
    assert (args.image_size, args.batch_size) == (64, 16)


@pytest.mark.parametrize("argv, words", [
    (["--compare", "--sizes", "64", "--image-size", "128"], "--image-size and --sizes"),
    (["--sizes", "64"], "--sizes applies to --compare only"),
    (["--compare", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["--compare", "--sizes", "64:0"], "must be >= 1"),
])
def test_conflicts_are_one_line(tt, capsys, argv, words) -> None:
    with pytest.raises(SystemExit) as exc:
        tt.parse_args(argv)
    assert exc.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert words in err[-1] and "Traceback" not in "\n".join(err), err
