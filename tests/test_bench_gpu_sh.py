"""benchmarks/gpu.sh without a GPU: a stand-in python answers the CUDA check and records the bench command."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.store import write_store

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils timeout")


def _store(path: Path, records: list[str]) -> Path:
    n = 4 * len(records)
    rec = np.repeat(records, 4)
    write_store(path, np.zeros((n, 1, 64), np.float32), np.arange(n) % 2, record_ids=rec, patient_ids=rec,
                positions=np.arange(n), class_names=["N", "V"], fs=360.0, lead_names=["MLII"], database="mitdb",
                version="1.0.0", task="beats")
    return path


@pytest.fixture
def fake_py(tmp_path) -> Path:
    """Python for everything but the CUDA check (answered) and the bench itself (its arguments are logged)."""
    py = tmp_path / "py"
    py.write_text(f"""#!/usr/bin/env bash
if [ "$1" = "-" ] && [ $# -eq 1 ]; then cat >/dev/null; echo "cuda:0 Fake GPU"; exit 0; fi
if [ "$1" = "-m" ] && [ "$3" = "bench" ]; then echo "BENCH $*" > "{tmp_path}/bench-args"; exit 0; fi
exec {sys.executable} "$@"
""")
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    return py


def _run(args, *, cwd, py, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("ALLOW_NO_DS2", "PROFILE", "GPU_BENCH_TIMEOUT", "EXTRA")}
    full.update(PY=str(py), **env)
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


def test_gpu_sh_refuses_a_store_without_ds2_unless_allowed(tmp_path, fake_py):
    store = _store(tmp_path / "ds1", ["101", "106"])
    r = _run([store, "", tmp_path / "out"], cwd=tmp_path, py=fake_py)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "holds no DS2 record" in r.stderr and "ALLOW_NO_DS2=1" in r.stderr
    assert not (tmp_path / "bench-args").exists()
    r = _run([store, "", tmp_path / "out"], cwd=tmp_path, py=fake_py, ALLOW_NO_DS2="1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING: no DS2 record" in r.stdout


def test_gpu_sh_from_another_directory_with_timeout_and_source_checks(tmp_path, fake_py):
    store = _store(tmp_path / "full", ["101", "100"])  # 100 is a DS2 record
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = tmp_path / "no-such-source"
    r = _run([store, missing, tmp_path / "out"], cwd=elsewhere, py=fake_py)
    assert r.returncode == 2 and f"source store {missing} does not exist" in r.stderr
    source = _store(tmp_path / "src", ["200"])
    r = _run([store, source, tmp_path / "out"], cwd=elsewhere, py=fake_py, GPU_BENCH_TIMEOUT="77")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "DS2 records in the store: 1 of 22" in r.stdout and "time limit 77 s" in r.stdout
    bench = (tmp_path / "bench-args").read_text()
    assert f"bench {REPO / 'benchmarks' / 'gpu-slot.toml'} --out {tmp_path / 'out'} --store {store}" in bench
    assert f"--source-store {source}" in bench and "--device cuda" in bench
    # the ablation profile has no [source]: a source store given to it is an error, none is fine
    r = _run([store, source, tmp_path / "out"], cwd=elsewhere, py=fake_py, PROFILE="gpu-ablation.toml")
    assert r.returncode == 2 and "no [source] table" in r.stderr
    r = _run([store, "", tmp_path / "out2"], cwd=elsewhere, py=fake_py, PROFILE="gpu-ablation.toml")
    assert r.returncode == 0 and "gpu-ablation.toml" in (tmp_path / "bench-args").read_text()
    assert "--source-store" not in (tmp_path / "bench-args").read_text()
