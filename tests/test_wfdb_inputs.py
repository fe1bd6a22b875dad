"""Records accepted without SHA256SUMS.txt (issue 13, case 7): WFDB headers are checked against the files they
describe, and a truncated annotation file is reported, as one line naming the record, exit 2.

Real mitdb/challenge-2017 records of the shared mirror are copied (without the index) into a temporary data
folder and damaged there; expectations come from the mirror's own files read with wfdb (the oracle).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgtransfer.cli import main as cli_main
from ecgtransfer.errors import RecordError
from ecgtransfer.signals import beats
from ecgtransfer.signals.record import read_header, read_record, record_files

REPO = Path(__file__).resolve().parents[1]


def _data(physionet_root: Path, tmp_path: Path, rec: str = "101", db: str = "mitdb", sub: str = "") -> Path:
    """``tmp_path/data/<db>/1.0.0`` holding RECORDS and one record's files (no SHA256SUMS.txt)."""
    src = physionet_root / db / "1.0.0" / sub
    dest = tmp_path / "data" / db / "1.0.0" / sub
    dest.mkdir(parents=True)
    (dest / "RECORDS").write_text(f"{rec}\n")
    for f in src.glob(f"{rec}.*"):
        shutil.copyfile(f, dest / f.name)
    return dest


def _set_sig_len(hea: Path, value: str) -> None:
    lines = hea.read_bytes().split(b"\r\n")
    fields = lines[0].split(b" ")
    fields[3] = value.encode()
    lines[0] = b" ".join(fields)
    hea.write_bytes(b"\r\n".join(lines))


def _convert(tmp_path: Path, capsys, rec: str = "101") -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = cli_main(["-q", "convert", "mitdb", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "store"),
                   "--records", rec, "--jobs", "1"])
    return rc, capsys.readouterr().err.strip().splitlines()


def test_header_shorter_than_the_dat_is_an_error(physionet_root, tmp_path, capsys):
    d = _data(physionet_root, tmp_path)
    _set_sig_len(d / "101.hea", "650")  # 650 of 650 000 samples: 2 beats instead of 1874 annotations
    rc, err = _convert(tmp_path, capsys)
    assert rc == 2 and len(err) == 1, err
    assert "record 101" in err[0] and "650 samples" in err[0] and "holds 650000" in err[0]
    assert not (tmp_path / "store").exists()
    with pytest.raises(RecordError, match="damaged or truncated"):
        record_files(d / "101")


def test_negative_sample_count_is_an_error(physionet_root, tmp_path, capsys):
    d = _data(physionet_root, tmp_path)
    _set_sig_len(d / "101.hea", "-5")  # wfdb reads it as "not given"
    rc, err = _convert(tmp_path, capsys)
    assert rc == 2 and len(err) == 1, err
    assert "record 101" in err[0] and "negative sample count (-5)" in err[0]
    with pytest.raises(RecordError, match="negative"):
        read_header(d / "101")


def test_header_longer_than_the_dat_and_truncated_dat(physionet_root, tmp_path, capsys):
    d = _data(physionet_root, tmp_path)
    _set_sig_len(d / "101.hea", "700000")
    with pytest.raises(RecordError, match=r"record 101: signal file .*101\.dat holds 1950000 bytes .* 700000 samples"):
        record_files(d / "101")
    _set_sig_len(d / "101.hea", "650000")
    data = (d / "101.dat").read_bytes()
    (d / "101.dat").write_bytes(data[: len(data) // 2])
    rc, err = _convert(tmp_path, capsys)
    assert rc == 2 and len(err) == 1 and "record 101" in err[0] and "truncated" in err[0], err


def test_checksum_of_the_samples_is_checked(physionet_root, tmp_path):
    d = _data(physionet_root, tmp_path)
    hea = d / "101.hea"
    text = hea.read_bytes()
    assert b" 29832 0 MLII" in text  # the checksum of lead MLII in the real header
    hea.write_bytes(text.replace(b" 29832 0 MLII", b" 29833 0 MLII"))
    with pytest.raises(RecordError, match=r"record 101: the samples of lead MLII .* checksum 29833 .*found 29832"):
        read_record(d / "101", "MLII")
    assert read_record(d / "101", "V1").signal.shape == (1, 650000)  # the other lead still checks out


def test_truncated_annotation_file_is_an_error(physionet_root, tmp_path, capsys):
    d = _data(physionet_root, tmp_path)
    full = (d / "101.atr").read_bytes()
    n_full = len(wfdb.rdann(str(physionet_root / "mitdb/1.0.0/101"), "atr").sample)
    (d / "101.atr").write_bytes(full[:1000])  # an even cut: wfdb reads it without complaint
    assert 0 < len(wfdb.rdann(str(d / "101"), "atr").sample) < n_full
    rc, err = _convert(tmp_path, capsys)
    assert rc == 2 and len(err) == 1, err
    assert "record 101" in err[0] and "101.atr ends mid-record" in err[0]
    assert not (tmp_path / "store").exists()  # refused before anything is written
    (d / "101.atr").write_bytes(full[:1001])  # an odd cut
    with pytest.raises(RecordError, match="ends mid-record"):
        beats.read_beat_symbols(d / "101")
    (d / "101.atr").write_bytes(full[:1000] + b"\0\0" + full[1000:])  # a damaged word read as the end
    with pytest.raises(RecordError, match=r"record 101: .* 2768 bytes after its end-of-file marker"):
        beats.read_beat_symbols(d / "101")


def test_intact_records_still_read_like_wfdb(physionet_root):
    """The checks do not change what is read: same samples as wfdb, every annotation counted."""
    for rel, lead in (("mitdb/1.0.0/114", "MLII"), ("challenge-2017/1.0.0/training2017/A00009", "ECG"),
                      ("ludb/1.0.1/data/1", "ii")):
        path = physionet_root / rel
        got = read_record(path, lead)
        ref = wfdb.rdrecord(str(path), channel_names=[lead])
        np.testing.assert_array_equal(got.signal, ref.p_signal.T)
    assert beats.check_annotation_file(physionet_root / "mitdb/1.0.0/114.atr") == \
        len(wfdb.rdann(str(physionet_root / "mitdb/1.0.0/114"), "atr").sample)


def test_cli_process_one_line(physionet_root, tmp_path):
    """Through the real entry point: one line on stderr, exit 2, no traceback."""
    d = _data(physionet_root, tmp_path)
    _set_sig_len(d / "101.hea", "650")
    proc = subprocess.run([sys.executable, "-m", "ecgtransfer", "-q", "convert", "mitdb", "--data",
                           str(tmp_path / "data"), "--out", str(tmp_path / "store"), "--records", "101"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "record 101" in lines[0], proc.stderr
