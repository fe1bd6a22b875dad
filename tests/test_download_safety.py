"""Download safety (issue 13, cases 3 and 4): a self-healing index and bounded, symlink-safe downloads.

Real mitdb/challenge-2017 files of the shared mirror, served over HTTP on 127.0.0.1 (tests/conftest.py) or
read as a local directory. Servers that stream without a Content-Length stop by themselves (a byte and a time
bound), whatever the client does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from ecgtransfer.cli import main as cli_main
from ecgtransfer.errors import ChecksumError, DownloadError
from ecgtransfer.physionet import catalog
from ecgtransfer.physionet import download as dl
from ecgtransfer.physionet.download import download

FAST = {"progress": False, "backoff": 0.0, "jobs": 2}
MITDB = "/mitdb/1.0.0/"


def _gets(server, path: str) -> list:
    return [entry for entry in server.log if entry[1] == path]


def _copy_mirror(physionet_root: Path, dest: Path, db: str = "mitdb", rels=("SHA256SUMS.txt", "RECORDS", "101.hea",
                                                                              "101.dat", "101.atr")) -> Path:
    """A tamperable copy of some files of ``db`` 1.0.0 under ``dest`` (laid out like physionet.org/files/)."""
    src = physionet_root / db / "1.0.0"
    for rel in rels:
        (dest / db / "1.0.0" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dest / db / "1.0.0" / rel)
    return dest


def _flip_digest(sums: Path, rel: str) -> str:
    """Change one hex digit of ``rel``'s line in ``sums``; returns the new digest."""
    lines = sums.read_text().splitlines()
    for i, line in enumerate(lines):
        digest, _, name = line.partition(" ")
        if name == rel:
            new = ("0" if digest[0] != "0" else "1") + digest[1:]
            lines[i] = f"{new} {name}"
            sums.write_text("\n".join(lines) + "\n")
            return new
    raise AssertionError(f"{rel} not in {sums}")


# --------------------------------------------------------------------------------------------------- case 3
def test_wrong_local_index_is_refetched_and_no_data_file_is_touched(http_mirror, physionet_root, tmp_path):
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    root = tmp_path / "mitdb" / "1.0.0"
    before = (root / "101.dat").stat()
    _flip_digest(root / "SHA256SUMS.txt", "101.dat")  # the local index is damaged, not the data
    http_mirror.log.clear()
    result = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    # the index was fetched again and now equals the mirror's; 101.dat was never requested nor rewritten
    assert (root / "SHA256SUMS.txt").read_bytes() == (physionet_root / "mitdb/1.0.0/SHA256SUMS.txt").read_bytes()
    assert _gets(http_mirror, MITDB + "SHA256SUMS.txt") and not _gets(http_mirror, MITDB + "101.dat")
    after = (root / "101.dat").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert result.fetched == 1 and result.already_verified == 4  # the index itself counts as fetched
    # and a re-run is clean and offline again
    http_mirror.log.clear()
    again = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert again.fetched == 0 and http_mirror.log == []


def test_wrong_local_index_and_missing_file_transfer_once(http_mirror, physionet_root, tmp_path):
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    root = tmp_path / "mitdb" / "1.0.0"
    _flip_digest(root / "SHA256SUMS.txt", "101.atr")
    (root / "101.atr").unlink()
    http_mirror.log.clear()
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, retries=3, **FAST)
    # the bytes fetched against the wrong digest were kept, and verified once the mirror's index came
    assert len(_gets(http_mirror, MITDB + "101.atr")) == 1
    assert (root / "101.atr").read_bytes() == (physionet_root / "mitdb/1.0.0/101.atr").read_bytes()
    assert not (root / "101.atr.part").exists()


def test_wrong_local_index_heals_from_a_local_mirror_too(physionet_root, tmp_path):
    download("mitdb", records=["101"], out=tmp_path, mirror=physionet_root, **FAST)
    root = tmp_path / "mitdb" / "1.0.0"
    _flip_digest(root / "SHA256SUMS.txt", "101.atr")
    download("mitdb", records=["101"], out=tmp_path, mirror=physionet_root, **FAST)
    assert (root / "SHA256SUMS.txt").read_bytes() == (physionet_root / "mitdb/1.0.0/SHA256SUMS.txt").read_bytes()
    assert (root / "101.atr").read_bytes() == (physionet_root / "mitdb/1.0.0/101.atr").read_bytes()


def test_damaged_local_file_is_moved_aside_until_its_replacement_verifies(physionet_root, serve_dir, tmp_path):
    mirror = _copy_mirror(physionet_root, tmp_path / "mirror")
    server = serve_dir(mirror)
    out = tmp_path / "out"
    download("mitdb", records=["101"], out=out, mirror=server.url, **FAST)
    root = out / "mitdb" / "1.0.0"
    tampered = b"a user's damaged copy"
    (root / "101.dat").write_bytes(tampered)
    (mirror / "mitdb" / "1.0.0" / "101.dat").unlink()  # the replacement cannot be fetched
    server.log.clear()
    with pytest.raises(DownloadError, match="404") as info:
        download("mitdb", records=["101"], out=out, mirror=server.url, **FAST)
    assert "\n" not in str(info.value)
    # the mirror's index was consulted first; the bad file is not under its final name, but not lost either
    paths = [p for _, p, _ in server.log]
    assert paths.index(MITDB + "SHA256SUMS.txt") < paths.index(MITDB + "101.dat")
    assert not (root / "101.dat").exists()
    aside = sorted(root.glob("101.dat.*"))
    assert [p.read_bytes() for p in aside] == [tampered], aside
    # once the mirror has it again, the replacement verifies and the copy set aside is dropped
    shutil.copyfile(physionet_root / "mitdb/1.0.0/101.dat", mirror / "mitdb/1.0.0/101.dat")
    download("mitdb", records=["101"], out=out, mirror=server.url, **FAST)
    assert (root / "101.dat").read_bytes() == (physionet_root / "mitdb/1.0.0/101.dat").read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["101.atr", "101.dat", "101.hea", "RECORDS", "SHA256SUMS.txt"]


def test_local_mirror_mismatch_is_not_retried_and_names_both_causes(physionet_root, tmp_path, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(dl, "_sleep", lambda delay, stop: waits.append(delay))
    mirror = _copy_mirror(physionet_root, tmp_path / "mirror")
    (mirror / "mitdb" / "1.0.0" / "101.atr").write_bytes(b"not an annotation file")
    with pytest.raises(ChecksumError) as info:
        download("mitdb", records=["101"], out=tmp_path / "out", mirror=mirror, retries=5, **FAST)
    assert waits == []  # a file in a directory cannot change between tries
    msg = str(info.value)
    assert "101.atr" in msg and "\n" not in msg
    assert "SHA256SUMS.txt" in msg and "either" in msg and "damaged" in msg  # the file or the index


def test_http_mismatch_message_names_file_and_index(physionet_root, serve_dir, tmp_path):
    mirror = _copy_mirror(physionet_root, tmp_path / "mirror")
    bad = mirror / "mitdb" / "1.0.0" / "101.hea"
    bad.write_bytes(b"X" + bad.read_bytes()[1:])
    server = serve_dir(mirror)
    with pytest.raises(ChecksumError, match=r"either .*101\.hea.* or .*SHA256SUMS\.txt.* damaged"):
        download("mitdb", records=["101"], out=tmp_path / "out", mirror=server.url, retries=1, **FAST)
    assert len(_gets(server, MITDB + "101.hea")) == 2  # http mismatches are still retried


def test_refresh_index_refetches_the_index(http_mirror, physionet_root, tmp_path):
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    http_mirror.log.clear()
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, refresh_index=True, **FAST)
    # the index is fetched again; RECORDS and the record files verify against it, nothing else is transferred
    assert [p for _, p, _ in http_mirror.log] == [MITDB + "SHA256SUMS.txt"]
    http_mirror.log.clear()
    rc = cli_main(["-q", "download", "mitdb", "--records", "101", "--out", str(tmp_path), "--mirror",
                   http_mirror.url, "--refresh-index"])
    assert rc == 0 and _gets(http_mirror, MITDB + "SHA256SUMS.txt")


# --------------------------------------------------------------------------------------------------- case 4
def _cap(monkeypatch, db: str, n: int) -> None:
    monkeypatch.setitem(catalog.DATABASES, db, dataclasses.replace(catalog.DATABASES[db], max_file_bytes=n))


def _endless(first: bytes, limit_bytes: int, limit_s: float = 10.0):
    """A fault: 200 without Content-Length, ``first`` then zeros, until the client hangs up or a bound is hit."""
    sent = []

    def fault(handler) -> bool:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        total, t0 = 0, time.monotonic()
        block = b"\0" * 65536
        try:
            handler.wfile.write(first)
            total += len(first)
            while total < limit_bytes and time.monotonic() - t0 < limit_s:
                handler.wfile.write(block)
                total += len(block)
        except OSError:  # the client stopped reading: what we want
            pass
        sent.append(total)
        return True

    fault.sent = sent  # type: ignore[attr-defined]
    return fault


def test_stream_without_length_stops_at_the_catalog_cap(http_mirror, physionet_root, tmp_path, monkeypatch):
    cap = 2_500_000  # 101.dat is 1 950 000 bytes
    _cap(monkeypatch, "mitdb", cap)
    real = (physionet_root / "mitdb/1.0.0/101.dat").read_bytes()
    fault = _endless(real, limit_bytes=40 * cap)
    http_mirror.faults[MITDB + "101.dat"] = fault
    with pytest.raises(DownloadError, match=r"101\.dat.*2500000 bytes") as info:
        download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, retries=2, **FAST)
    assert "\n" not in str(info.value)
    root = tmp_path / "mitdb" / "1.0.0"
    assert not (root / "101.dat").exists()
    part = root / "101.dat.part"
    assert not part.exists() or part.stat().st_size <= cap
    assert len(fault.sent) == 1  # an oversized file is not retried


def test_announced_length_over_the_cap_is_refused_before_writing(http_mirror, tmp_path, monkeypatch):
    _cap(monkeypatch, "mitdb", 2_500_000)

    def huge(handler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Length", str(10 ** 10))
        handler.end_headers()
        handler.close_connection = True
        try:
            handler.wfile.write(b"\0" * 4096)
        except OSError:
            pass
        return True

    http_mirror.faults[MITDB + "101.dat"] = huge
    with pytest.raises(DownloadError, match=r"101\.dat.*10000000000 bytes.*2500000"):
        download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, retries=2, **FAST)
    root = tmp_path / "mitdb" / "1.0.0"
    assert not (root / "101.dat").exists() and not (root / "101.dat.part").exists()
    assert len(_gets(http_mirror, MITDB + "101.dat")) == 1


def test_default_cap_covers_every_shared_file(physionet_root):
    """The catalog's caps are generous: no real file of the shared mirror comes near them."""
    for name in ("mitdb", "challenge-2017", "ludb"):
        db = catalog.get_database(name)
        largest = max(p.stat().st_size for p in (physionet_root / name).rglob("*") if p.is_file())
        assert largest * 4 <= db.max_file_bytes, name


def test_planted_part_symlink_is_not_followed(http_mirror, physionet_root, tmp_path):
    root = tmp_path / "mitdb" / "1.0.0"
    root.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    os.symlink(victim, root / "101.hea.part")
    with pytest.raises(DownloadError, match=r"101\.hea\.part.*symbolic link"):
        download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert victim.read_bytes() == b"precious"
    assert not (root / "101.hea").exists()


def test_planted_part_symlink_to_a_complete_copy_is_not_used(http_mirror, physionet_root, tmp_path):
    # even a link to the right bytes is refused: the rename would move the link, not a verified file
    root = tmp_path / "mitdb" / "1.0.0"
    root.mkdir(parents=True)
    os.symlink(physionet_root / "mitdb/1.0.0/101.atr", root / "101.atr.part")
    with pytest.raises(DownloadError, match="symbolic link"):
        download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert not (root / "101.atr").exists()


def test_symlinked_folder_inside_the_version_folder_is_refused(http_mirror, tmp_path):
    root = tmp_path / "challenge-2017" / "1.0.0"
    root.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "training2017", target_is_directory=True)
    with pytest.raises(DownloadError, match=r"training2017.*symbolic link"):
        download("challenge-2017", records=["A00009"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert list(elsewhere.iterdir()) == []


def test_final_symlink_is_replaced_not_written_through(http_mirror, physionet_root, tmp_path):
    root = tmp_path / "mitdb" / "1.0.0"
    root.mkdir(parents=True)
    victim = tmp_path / "victim.hea"
    victim.write_bytes(b"precious")
    os.symlink(victim, root / "101.hea")
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert victim.read_bytes() == b"precious"
    assert not (root / "101.hea").is_symlink()
    got = hashlib.sha256((root / "101.hea").read_bytes()).hexdigest()
    assert got == hashlib.sha256((physionet_root / "mitdb/1.0.0/101.hea").read_bytes()).hexdigest()


def test_cli_reports_refusals_in_one_line(http_mirror, physionet_root, tmp_path, monkeypatch, capsys):
    _cap(monkeypatch, "mitdb", 2_500_000)
    http_mirror.faults[MITDB + "101.dat"] = _endless(b"", limit_bytes=10 * 2_500_000)
    argv = ["-q", "download", "mitdb", "--records", "101", "--out", str(tmp_path), "--mirror", http_mirror.url,
            "--retries", "0"]
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "101.dat" in err[0] and "2500000 bytes" in err[0], err
    # a damaged copy on a local mirror: one line naming the file and both suspects
    mirror = _copy_mirror(physionet_root, tmp_path / "mirror")
    (mirror / "mitdb" / "1.0.0" / "101.hea").write_bytes(b"101 2 360 650000\r\n")
    assert cli_main(["-q", "download", "mitdb", "--records", "101", "--out", str(tmp_path / "o"), "--mirror",
                     str(mirror)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "either 101.hea or SHA256SUMS.txt on the mirror is damaged" in err[0], err
