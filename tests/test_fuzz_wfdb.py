"""Fuzz of the WFDB reading path convert uses (issue 13): random byte flips and truncations of real shared
headers (``.hea``) and beat annotation files (``.atr``), seeded, a fixed number of cases.

Every case must end in one of two ways:

* an :class:`~ecgtransfer.errors.EcgTransferError` whose message is one line naming the record (the CLI turns
  it into that line and exit 2), or
* a result that is correct: what the reference reader (wfdb) makes of the damaged files, decoded from the
  samples the ``.dat`` really holds (same digital values and sample count as the intact record). A flip that
  only changes what a header may legitimately say (a gain, a unit, a comment) is read as the header says.

Never a traceback, never a changed file: the shared mirror and the working copies are hashed afterwards.
A few cases go through the real CLI (``python -m ecgtransfer convert``) to check the exit code and the line.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgtransfer.errors import EcgTransferError
from ecgtransfer.signals import beats
from ecgtransfer.signals.record import read_header, read_record, record_files, select_leads

REPO = Path(__file__).resolve().parents[1]
SEED = 13
#: (database folder, record path in it, lead convert reads by default (the catalog's first), header cases)
RECORDS = [("mitdb/1.0.0", "101", "MLII", 80), ("mitdb/1.0.0", "114", "MLII", 80),
           ("ludb/1.0.1", "data/1", "i", 80), ("challenge-2017/1.0.0", "training2017/A00009", "ECG", 80)]
ATR_CASES = 40  # per mitdb record


def _mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random damage: 1-3 replaced bytes, one flipped bit, or a truncation."""
    kind = rng.integers(3)
    if kind == 2 or len(data) < 2:
        cut = int(rng.integers(0, len(data)))
        return f"truncate to {cut}", data[:cut]
    buf = bytearray(data)
    if kind == 1:
        pos, bit = int(rng.integers(len(buf))), int(rng.integers(8))
        buf[pos] ^= 1 << bit
        return f"bit {bit} of byte {pos}", bytes(buf)
    spots = rng.choice(len(buf), size=int(rng.integers(1, 4)), replace=False)
    for pos in spots:
        buf[int(pos)] = (buf[int(pos)] + int(rng.integers(1, 256))) % 256  # always a different byte
    return f"bytes {sorted(int(p) for p in spots)}", bytes(buf)


def _digest_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _copy_record(physionet_root: Path, db: str, rec: str, dest: Path) -> Path:
    src = physionet_root / db / rec
    out = dest / db / rec
    out.parent.mkdir(parents=True, exist_ok=True)
    for f in src.parent.glob(src.name + ".*"):
        if f.suffix in (".hea", ".dat", ".mat", ".atr"):
            shutil.copyfile(f, out.parent / f.name)
    return out


def _read_signal_like_convert(path: Path, lead: str, rid: str):
    """The main-process checks of convert, then the worker's read (both from ecgtransfer.signals.record)."""
    header = read_header(path, rid)
    record_files(path, rid, header=header)
    select_leads(header.sig_name, lead, record_id=rid)
    return read_record(path, lead, record_id=rid)


def _check_error(exc: EcgTransferError, rid: str, case: str) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg and "\r" not in msg, (case, msg)
    assert f"record {rid}" in msg, (case, msg)


def test_fuzz_headers(physionet_root, tmp_path):
    rng = np.random.default_rng(SEED)
    before = {db: _digest_tree(physionet_root / db) for db, *_ in RECORDS}
    tally = {"error": 0, "same": 0, "read as the header says": 0}
    for db, rec, lead, n_cases in RECORDS:
        path = _copy_record(physionet_root, db, rec, tmp_path)
        rid = path.name
        hea = path.with_name(rid + ".hea")
        original = hea.read_bytes()
        intact = wfdb.rdrecord(str(path), physical=False)
        intact_signal = _read_signal_like_convert(path, lead, rid).signal
        copies = _digest_tree(path.parent)
        for _ in range(n_cases):
            what, damaged = _mutate(original, rng)
            case = f"{db}/{rec}.hea: {what}"
            hea.write_bytes(damaged)
            try:
                got = _read_signal_like_convert(path, lead, rid)
            except EcgTransferError as exc:
                _check_error(exc, rid, case)
                tally["error"] += 1
                continue
            except Exception as exc:  # a traceback for the user: say which case
                raise AssertionError(f"{case}: {type(exc).__name__}: {exc}") from exc
            # accepted: the reference reader agrees, on the samples the file really holds
            header = wfdb.rdheader(str(path))
            ch = select_leads(header.sig_name, lead, record_id=rid)[0]
            ref = wfdb.rdrecord(str(path), channels=[ch], physical=False)
            np.testing.assert_array_equal(ref.d_signal[:, 0], intact.d_signal[:, ch], err_msg=case)
            ref_p = ref.dac(return_res=64)[:, 0]
            assert got.signal.shape == (1, intact.sig_len), case
            ok = np.isfinite(ref_p)
            np.testing.assert_array_equal(got.signal[0][ok], ref_p[ok], err_msg=case)
            tally["same" if np.array_equal(got.signal, intact_signal) else "read as the header says"] += 1
        hea.write_bytes(original)
        assert _digest_tree(path.parent) == copies  # the reading path wrote nothing
    assert {db: _digest_tree(physionet_root / db) for db, *_ in RECORDS} == before
    n = sum(c for *_, c in RECORDS)
    assert sum(tally.values()) == n
    # both outcomes occur: the checks refuse damage and do not refuse what is harmless
    assert tally["error"] > n // 4 and tally["same"] > n // 10, tally


def _beats_oracle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ann = wfdb.rdann(str(path), "atr")
    samples, symbols = np.asarray(ann.sample, dtype=np.int64), np.asarray(ann.symbol, dtype=str)
    keep = np.isin(symbols, list(beats.AAMI_MAP))
    order = np.argsort(samples[keep], kind="stable")
    return samples[keep][order], symbols[keep][order]


def test_fuzz_annotations(physionet_root, tmp_path):
    rng = np.random.default_rng(SEED + 1)
    before = _digest_tree(physionet_root / "mitdb")
    tally = {"error": 0, "accepted": 0, "same": 0}
    for rec in ("101", "114"):
        path = _copy_record(physionet_root, "mitdb/1.0.0", rec, tmp_path)
        atr = path.with_name(rec + ".atr")
        original = atr.read_bytes()
        n_full = len(beats.read_beat_symbols(path)[0])
        for _ in range(ATR_CASES):
            what, damaged = _mutate(original, rng)
            case = f"mitdb/{rec}.atr: {what}"
            atr.write_bytes(damaged)
            try:
                samples, symbols, _ = beats.read_beat_symbols(path, record_id=rec)
            except EcgTransferError as exc:
                _check_error(exc, rec, case)
                tally["error"] += 1
                continue
            except Exception as exc:
                raise AssertionError(f"{case}: {type(exc).__name__}: {exc}") from exc
            assert not what.startswith("truncate"), case  # a cut file never passes
            ref_samples, ref_symbols = _beats_oracle(path)
            np.testing.assert_array_equal(samples, ref_samples, err_msg=case)
            np.testing.assert_array_equal(symbols, ref_symbols, err_msg=case)
            tally["accepted"] += 1
            tally["same"] += int(len(samples) == n_full)
        atr.write_bytes(original)
    assert _digest_tree(physionet_root / "mitdb") == before
    assert tally["error"] > 0 and tally["accepted"] > 0, tally


@pytest.mark.parametrize("case", range(3))
def test_fuzz_through_the_cli(physionet_root, tmp_path, case):
    """Damaged inputs through ``python -m ecgtransfer convert``: exit 0 with a store, or exit 2 with one line;
    the same verdict as the in-process reading path."""
    rng = np.random.default_rng(SEED + 100 + case)
    data = tmp_path / "data"
    path = _copy_record(physionet_root, "mitdb/1.0.0", "101", data)
    (path.parent / "RECORDS").write_text("101\n")
    target = path.with_name("101.atr" if case == 2 else "101.hea")
    what, damaged = _mutate(target.read_bytes(), rng)
    target.write_bytes(damaged)
    try:
        _read_signal_like_convert(path, "MLII", "101")
        beats.read_beat_symbols(path, record_id="101")
        expect_ok = True
    except EcgTransferError:
        expect_ok = False
    copies = _digest_tree(data)
    out = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "ecgtransfer", "-q", "convert", "mitdb", "--data", str(data), "--out",
                           str(out), "--records", "101", "--jobs", "1"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, (what, proc.stderr)
    if expect_ok:
        assert proc.returncode == 0 and (out / "manifest.json").is_file(), (what, proc.stderr)
    else:
        assert proc.returncode == 2 and len(lines) == 1 and "record 101" in lines[0], (what, proc.stderr)
        assert not out.exists(), what
    assert _digest_tree(data) == copies
