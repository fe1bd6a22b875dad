"""Verified, resumable PhysioNet downloads, on the real shared mirror served over HTTP on 127.0.0.1.

The expected file sets are derived independently from the mirror's directory listing (glob), and bytes
are compared with the mirror's files; digests are checked with hashlib here, not with the module's helper.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ecgtransfer
from ecgtransfer.cli import main as cli_main
from ecgtransfer.errors import CatalogError, ChecksumError, ConfigError, DownloadError, UnsafePathError
from ecgtransfer.physionet import download as dl
from ecgtransfer.physionet.download import download
from ecgtransfer.physionet.index import parse_records, parse_sha256sums, safe_relpath
from ecgtransfer.physionet.sources import DEFAULT_MIRROR, HttpSource, LocalSource, parse_retry_after, resolve_source

REPO = Path(__file__).resolve().parents[1]
FAST = {"progress": False, "backoff": 0.0, "jobs": 3}


def _local_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _assert_same_bytes(got_root: Path, mirror_root: Path, rels: set[str]) -> None:
    for rel in rels:
        assert (got_root / rel).read_bytes() == (mirror_root / rel).read_bytes(), rel


def _gets(server, path: str) -> list[tuple[str, str, str | None]]:
    return [entry for entry in server.log if entry[1] == path]


def _send_200(handler, body: bytes, length: int | None = None) -> None:
    """A plain 200 answer: ``Content-Length: length`` (default ``len(body)``), then ``body``."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)


def _small_mitdb_mirror(physionet_root: Path, dest: Path, records=("101",)) -> Path:
    """Copy the mitdb index and a few records into ``dest/mitdb/1.0.0`` (a mirror we may tamper with)."""
    src = physionet_root / "mitdb" / "1.0.0"
    out = dest / "mitdb" / "1.0.0"
    out.mkdir(parents=True)
    for name in ("SHA256SUMS.txt", "RECORDS"):
        shutil.copyfile(src / name, out / name)
    for rec in records:
        for f in src.glob(f"{rec}.*"):
            shutil.copyfile(f, out / f.name)
    return dest


# --------------------------------------------------------------------------------------------------- happy paths
def test_http_mitdb_records_match_mirror_and_sums(http_mirror, physionet_root, tmp_path):
    result = download("mitdb", records=["101", "106"], out=tmp_path, mirror=http_mirror.url, **FAST)
    mirror_db = physionet_root / "mitdb" / "1.0.0"
    expected = {"SHA256SUMS.txt", "RECORDS"} | {p.name for r in ("101", "106") for p in mirror_db.glob(f"{r}.*")}
    root = tmp_path / "mitdb" / "1.0.0"
    assert result.root == root
    assert _local_files(root) == expected  # no .part left, nothing extra
    assert {p.relative_to(root).as_posix() for p in result.paths} == expected
    _assert_same_bytes(root, mirror_db, expected)
    # every record file matches its SHA256SUMS line, checked independently with hashlib
    sums = dict(reversed(line.split(" ", 1)) for line in (mirror_db / "SHA256SUMS.txt").read_text().splitlines())
    for rel in expected - {"SHA256SUMS.txt"}:
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == sums[rel]
    assert result.records == ["101", "106"]
    assert result.fetched == len(expected) and result.already_verified == 0 and result.resumed == 0
    assert result.bytes_fetched == sum((mirror_db / rel).stat().st_size for rel in expected)
    assert result.unverified == []
    # it went through HTTP: one plain GET per file
    got = sorted(p for _, p, _ in http_mirror.log)
    assert got == sorted(f"/mitdb/1.0.0/{rel}" for rel in expected)
    assert all(rng is None for _, _, rng in http_mirror.log)


def test_rerun_fetches_nothing_and_repairs_only_bad_files(http_mirror, physionet_root, tmp_path):
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    http_mirror.log.clear()
    again = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert again.fetched == 0 and again.bytes_fetched == 0 and again.already_verified == 5
    assert http_mirror.log == []  # verified from disk, not a single request

    root = tmp_path / "mitdb" / "1.0.0"
    data = bytearray((root / "101.dat").read_bytes())
    data[1000] ^= 0xFF
    (root / "101.dat").write_bytes(bytes(data))
    (root / "101.hea").unlink()
    fixed = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    # the mirror's index is fetched first (the local one might be the damaged file), then the two files
    assert fixed.fetched == 3 and fixed.already_verified == 2
    assert sorted(p for _, p, _ in http_mirror.log) == ["/mitdb/1.0.0/101.dat", "/mitdb/1.0.0/101.hea",
                                                         "/mitdb/1.0.0/SHA256SUMS.txt"]
    _assert_same_bytes(root, physionet_root / "mitdb" / "1.0.0", {"101.dat", "101.hea"})
    assert sorted(p.name for p in root.iterdir()) == ["101.atr", "101.dat", "101.hea", "RECORDS", "SHA256SUMS.txt"]


def test_local_directory_mirror_and_env(physionet_root, tmp_path, monkeypatch):
    result = download("mitdb", records=["108"], out=tmp_path / "a", mirror=physionet_root, **FAST)
    mirror_db = physionet_root / "mitdb" / "1.0.0"
    expected = {"SHA256SUMS.txt", "RECORDS"} | {p.name for p in mirror_db.glob("108.*")}
    assert _local_files(result.root) == expected
    _assert_same_bytes(result.root, mirror_db, expected)
    # the environment variable is the default mirror; file:// URLs work too
    monkeypatch.setenv("ECGTRANSFER_PHYSIONET_MIRROR", physionet_root.as_uri())
    via_env = ecgtransfer.download("mitdb", records=["108"], out=tmp_path / "b", **FAST)
    assert _local_files(via_env.root) == expected


def test_challenge_2017_subset(http_mirror, physionet_root, tmp_path):
    recs = ["A00009", "A00039"]
    result = download("challenge-2017", records=recs, out=tmp_path, mirror=http_mirror.url, **FAST)
    mirror_db = physionet_root / "challenge-2017" / "1.0.0"
    expected = {"SHA256SUMS.txt", "training2017/RECORDS", "training2017/REFERENCE.csv",
                "training2017/REFERENCE-v3.csv"}
    expected |= {f"training2017/{p.name}" for r in recs for p in (mirror_db / "training2017").glob(f"{r}.*")}
    assert {"training2017/A00009.hea", "training2017/A00009.mat"} <= expected
    assert _local_files(result.root) == expected
    _assert_same_bytes(result.root, mirror_db, expected)
    assert result.records == recs and result.unverified == []


def test_ludb_subset_bare_names_and_unlisted_metadata(http_mirror, physionet_root, tmp_path):
    result = download("ludb", records=["data/1", "5"], out=tmp_path, mirror=http_mirror.url, **FAST)
    mirror_db = physionet_root / "ludb" / "1.0.1"
    expected = {"SHA256SUMS.txt", "RECORDS", "ludb.csv"}
    expected |= {f"data/{p.name}" for r in ("1", "5") for p in (mirror_db / "data").glob(f"{r}.*")}
    assert len(expected) == 3 + 2 * 14  # 12 lead annotations + .hea + .dat per record
    assert result.records == ["data/1", "data/5"]
    assert _local_files(result.root) == expected
    _assert_same_bytes(result.root, mirror_db, expected)
    # the shared ludb SHA256SUMS.txt does not list RECORDS and ludb.csv: fetched, but reported
    assert sorted(result.unverified) == ["RECORDS", "ludb.csv"]
    with pytest.raises(ChecksumError, match="ludb.csv"):
        download("ludb", records=["1"], out=tmp_path / "strict", mirror=http_mirror.url, strict=True, **FAST)


# --------------------------------------------------------------------------------------------------- corruption
def test_corrupted_file_on_mirror_is_retried_refused_and_not_kept(physionet_root, serve_dir, tmp_path):
    mirror = _small_mitdb_mirror(physionet_root, tmp_path / "mirror")
    bad = mirror / "mitdb" / "1.0.0" / "101.dat"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    server = serve_dir(mirror)
    out = tmp_path / "out"
    with pytest.raises(ChecksumError, match=r"101\.dat") as info:
        download("mitdb", records=["101"], out=out, mirror=server.url, retries=2, **FAST)
    assert "\n" not in str(info.value)
    root = out / "mitdb" / "1.0.0"
    assert not (root / "101.dat").exists() and not (root / "101.dat.part").exists()
    assert len(_gets(server, "/mitdb/1.0.0/101.dat")) == 3  # first try + 2 retries


def test_corruption_in_local_mirror_is_refused(physionet_root, tmp_path):
    mirror = _small_mitdb_mirror(physionet_root, tmp_path / "mirror")
    (mirror / "mitdb" / "1.0.0" / "101.atr").write_bytes(b"not an annotation file")
    with pytest.raises(ChecksumError, match=r"101\.atr"):
        download("mitdb", records=["101"], out=tmp_path / "out", mirror=mirror, retries=1, **FAST)
    assert not list((tmp_path / "out" / "mitdb" / "1.0.0").glob("101.atr*"))


def test_corrupted_once_then_good_is_retried(http_mirror, physionet_root, tmp_path):
    path = "/mitdb/1.0.0/101.hea"
    calls = []

    def corrupt_once(handler):
        calls.append(1)
        if len(calls) > 1:
            return False
        body = b"X" + (physionet_root / "mitdb" / "1.0.0" / "101.hea").read_bytes()[1:]
        _send_200(handler, body)
        return True

    http_mirror.faults[path] = corrupt_once
    result = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert len(calls) == 2 and result.fetched == 5
    _assert_same_bytes(result.root, physionet_root / "mitdb" / "1.0.0", {"101.hea"})


# --------------------------------------------------------------------------------------------------- resume
def test_interrupted_download_resumes_with_range(http_mirror, physionet_root, tmp_path):
    src = physionet_root / "mitdb" / "1.0.0" / "101.dat"
    full = src.read_bytes()
    root = tmp_path / "mitdb" / "1.0.0"
    root.mkdir(parents=True)
    half = len(full) // 2
    (root / "101.dat.part").write_bytes(full[:half])
    result = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert _gets(http_mirror, "/mitdb/1.0.0/101.dat") == [("GET", "/mitdb/1.0.0/101.dat", f"bytes={half}-")]
    assert result.resumed == 1
    assert (root / "101.dat").read_bytes() == full
    assert not (root / "101.dat.part").exists()
    others = sum((src.parent / n).stat().st_size for n in ("SHA256SUMS.txt", "RECORDS", "101.hea", "101.atr"))
    assert result.bytes_fetched == others + len(full) - half  # only the missing half went over the wire


def test_connection_dropped_mid_body_resumes(http_mirror, physionet_root, tmp_path):
    path = "/mitdb/1.0.0/101.dat"
    full = (physionet_root / "mitdb" / "1.0.0" / "101.dat").read_bytes()
    cut = 300_000

    def drop_mid_body(handler):
        if handler.headers.get("Range"):
            return False  # the resumed request is served normally
        _send_200(handler, full[:cut], length=len(full))
        handler.wfile.flush()
        handler.close_connection = True
        return True

    http_mirror.faults[path] = drop_mid_body
    result = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    ranges = [rng for _, _, rng in _gets(http_mirror, path)]
    assert len(ranges) == 2 and ranges[0] is None
    resumed_from = int(ranges[1][len("bytes="):-1])  # what was safely on disk (up to the last whole chunk)
    assert 0 < resumed_from <= cut
    assert (result.root / "101.dat").read_bytes() == full
    assert result.resumed == 1


def test_server_ignoring_range_restarts_from_zero(http_mirror, physionet_root, tmp_path):
    path = "/mitdb/1.0.0/101.hea"
    full = (physionet_root / "mitdb" / "1.0.0" / "101.hea").read_bytes()

    def ignore_range(handler):
        _send_200(handler, full)
        return True

    http_mirror.faults[path] = ignore_range
    root = tmp_path / "mitdb" / "1.0.0"
    root.mkdir(parents=True)
    (root / "101.hea.part").write_bytes(full[:10])
    result = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert _gets(http_mirror, path) == [("GET", path, "bytes=10-")]
    assert (root / "101.hea").read_bytes() == full  # not 10 bytes + the whole file again
    assert result.resumed == 0


@pytest.mark.parametrize("junk", ["longer", "garbage"])
def test_bad_part_file_restarts(http_mirror, physionet_root, tmp_path, junk):
    full = (physionet_root / "mitdb" / "1.0.0" / "101.atr").read_bytes()
    root = tmp_path / "mitdb" / "1.0.0"
    root.mkdir(parents=True)
    part = full + b"trailing junk" if junk == "longer" else b"\0" * (len(full) // 2)
    (root / "101.atr.part").write_bytes(part)
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert (root / "101.atr").read_bytes() == full
    ranges = [rng for _, _, rng in _gets(http_mirror, "/mitdb/1.0.0/101.atr")]
    assert ranges == [f"bytes={len(part)}-", None]  # tried to resume, then started over


def test_complete_part_is_verified_and_renamed_without_transfer(http_mirror, physionet_root, tmp_path):
    full = (physionet_root / "mitdb" / "1.0.0" / "101.atr").read_bytes()
    root = tmp_path / "mitdb" / "1.0.0"
    root.mkdir(parents=True)
    (root / "101.atr.part").write_bytes(full)  # e.g. a crash between the last write and the rename
    download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert _gets(http_mirror, "/mitdb/1.0.0/101.atr") == []
    assert (root / "101.atr").read_bytes() == full


def test_local_mirror_resume(physionet_root, tmp_path):
    full = (physionet_root / "mitdb" / "1.0.0" / "106.dat").read_bytes()
    root = tmp_path / "mitdb" / "1.0.0"
    root.mkdir(parents=True)
    (root / "106.dat.part").write_bytes(full[:12345])
    result = download("mitdb", records=["106"], out=tmp_path, mirror=physionet_root, **FAST)
    assert result.resumed == 1 and (root / "106.dat").read_bytes() == full


# --------------------------------------------------------------------------------------------------- transient errors
def _status_fault(times: int, code: int, headers: dict[str, str] | None = None):
    calls = []

    def fault(handler):
        calls.append(1)
        if len(calls) > times:
            return False
        handler.send_response(code)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    fault.calls = calls  # type: ignore[attr-defined]
    return fault


def test_transient_503_and_429_are_retried_with_backoff(http_mirror, physionet_root, tmp_path, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(dl, "_sleep", lambda delay, stop: waits.append(delay))
    http_mirror.faults["/mitdb/1.0.0/101.atr"] = _status_fault(2, 503)
    http_mirror.faults["/mitdb/1.0.0/101.hea"] = _status_fault(1, 429, {"Retry-After": "7"})
    result = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, progress=False,
                      backoff=0.25, jobs=1)
    assert len(_gets(http_mirror, "/mitdb/1.0.0/101.atr")) == 3
    assert len(_gets(http_mirror, "/mitdb/1.0.0/101.hea")) == 2
    assert sorted(waits) == [0.25, 0.5, 7.0]  # exponential backoff; Retry-After honoured
    _assert_same_bytes(result.root, physionet_root / "mitdb" / "1.0.0", {"101.atr", "101.hea"})


def test_dropped_connection_is_retried(http_mirror, physionet_root, tmp_path):
    calls = []

    def hang_up(handler):
        calls.append(1)
        if len(calls) > 1:
            return False
        handler.close_connection = True  # no response at all
        return True

    http_mirror.faults["/mitdb/1.0.0/101.hea"] = hang_up
    result = download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert len(calls) == 2
    _assert_same_bytes(result.root, physionet_root / "mitdb" / "1.0.0", {"101.hea"})


def test_retries_exhausted_is_a_clear_error(http_mirror, tmp_path):
    http_mirror.faults["/mitdb/1.0.0/101.dat"] = _status_fault(100, 502)
    with pytest.raises(DownloadError, match=r"HTTP 502.*101\.dat.*gave up after 2 retries"):
        download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, retries=2, **FAST)
    assert len(_gets(http_mirror, "/mitdb/1.0.0/101.dat")) == 3
    assert not (tmp_path / "mitdb" / "1.0.0" / "101.dat").exists()


@pytest.mark.parametrize("target", ["loop", "file:///etc/passwd"])
def test_redirect_loops_and_file_redirects_fail_at_once(http_mirror, tmp_path, monkeypatch, target):
    """Issue 20: a redirect loop and a redirect to file:// were retried for ~20 s as if the connection had dropped
    (requests' errors are OSErrors); they are one DownloadError line at the first attempt."""
    waits: list[float] = []
    monkeypatch.setattr(dl, "_sleep", lambda delay, stop: waits.append(delay))
    path = "/mitdb/1.0.0/101.hea"

    def redirect(handler):
        handler.send_response(302)
        handler.send_header("Location", path if target == "loop" else target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    http_mirror.faults[path] = redirect
    with pytest.raises(DownloadError, match=r"101\.hea.*not retried") as info:
        download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, retries=3, **FAST)
    assert "\n" not in str(info.value) and not waits
    assert len(_gets(http_mirror, path)) == (31 if target == "loop" else 1)  # requests' 30 redirects, no retry


def test_404_names_the_url(physionet_root, serve_dir, tmp_path):
    mirror = _small_mitdb_mirror(physionet_root, tmp_path / "mirror")
    (mirror / "mitdb" / "1.0.0" / "101.atr").unlink()
    server = serve_dir(mirror)
    with pytest.raises(DownloadError, match=r"HTTP 404") as info:
        download("mitdb", records=["101"], out=tmp_path / "out", mirror=server.url, **FAST)
    msg = str(info.value)
    assert f"{server.url}mitdb/1.0.0/101.atr" in msg and "\n" not in msg
    assert len(_gets(server, "/mitdb/1.0.0/101.atr")) == 1  # a 404 is not retried
    assert not (tmp_path / "out" / "mitdb" / "1.0.0" / "101.atr").exists()


def test_bad_local_file_is_moved_aside_even_when_the_refetch_fails(physionet_root, serve_dir, tmp_path):
    mirror = _small_mitdb_mirror(physionet_root, tmp_path / "mirror")
    server = serve_dir(mirror)
    out = tmp_path / "out"
    download("mitdb", records=["101"], out=out, mirror=server.url, **FAST)
    local = out / "mitdb" / "1.0.0" / "101.atr"
    local.write_bytes(b"tampered")
    (mirror / "mitdb" / "1.0.0" / "101.atr").unlink()
    with pytest.raises(DownloadError, match="404"):
        download("mitdb", records=["101"], out=out, mirror=server.url, **FAST)
    assert not local.exists()  # a file that fails its digest is never left under its final name
    assert local.with_name("101.atr.damaged").read_bytes() == b"tampered"  # nor deleted


def test_no_space_left_is_a_clear_error(http_mirror, tmp_path, monkeypatch):
    import builtins
    import errno

    real_open = builtins.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return Full(fh) if str(file).endswith(".dat.part") and "b" in mode and "r" not in mode else fh

    monkeypatch.setattr(dl, "open", fake_open, raising=False)
    with pytest.raises(DownloadError, match="no space left on device") as info:
        download("mitdb", records=["101"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert "101.dat" in str(info.value)
    assert not (tmp_path / "mitdb" / "1.0.0" / "101.dat").exists()


# --------------------------------------------------------------------------------------------------- unsafe names
@pytest.mark.parametrize("bad", ["../evil.dat", "/etc/passwd", "sub/../../x.dat", "a\\b.dat", "C:evil.dat"])
def test_unsafe_names_in_sha256sums_are_refused(physionet_root, serve_dir, tmp_path, bad):
    mirror = _small_mitdb_mirror(physionet_root, tmp_path / "mirror")
    sums = mirror / "mitdb" / "1.0.0" / "SHA256SUMS.txt"
    sums.write_text(sums.read_text() + f"{'0' * 64} {bad}\n")
    server = serve_dir(mirror)
    with pytest.raises(UnsafePathError, match="unsafe name"):
        download("mitdb", records=["101"], out=tmp_path / "out" / "in", mirror=server.url, **FAST)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []  # the bad index is not kept


@pytest.mark.parametrize("bad", ["../101", "/101", "x/./101"])
def test_unsafe_names_in_records_are_refused(physionet_root, tmp_path, bad):
    mirror = _small_mitdb_mirror(physionet_root, tmp_path / "mirror")
    db = mirror / "mitdb" / "1.0.0"
    (db / "RECORDS").write_text(f"101\n{bad}\n")
    sums = "".join(line + "\n" for line in (db / "SHA256SUMS.txt").read_text().splitlines()
                   if not line.endswith(" RECORDS"))  # keep RECORDS unverified so the name check is reached
    (db / "SHA256SUMS.txt").write_text(sums)
    with pytest.raises(UnsafePathError, match="RECORDS"):
        download("mitdb", records=["101"], out=tmp_path / "out", mirror=mirror, **FAST)


def test_index_parsers():
    sums = parse_sha256sums(f"{'a' * 64} 101.dat\n{'B' * 64}  sub/1.hea\n\n{'c' * 64} *sub/1.dat\n{'d' * 64} 1011.dat\n")
    assert sums.get("sub/1.hea") == "b" * 64 and "sub/1.dat" in sums
    assert sums.files_of_record("101") == ["101.dat"] and sums.files_of_record("sub/1") == ["sub/1.dat", "sub/1.hea"]
    with pytest.raises(DownloadError, match="malformed line 1"):
        parse_sha256sums("deadbeef 101.dat\n")
    assert parse_records("101\n\n102\r\n101\n") == ["101", "102"]
    for bad in ["", "a//b", "./a", "a/..", "x\x00y"]:
        with pytest.raises(UnsafePathError):
            safe_relpath(bad)
    assert safe_relpath("data/1.hea") == "data/1.hea"


def test_sources_and_retry_after():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    src = resolve_source("https://physionet.org/files")
    assert isinstance(src, HttpSource)
    assert src.location("mitdb", "1.0.0", "a b/101.dat") == "https://physionet.org/files/mitdb/1.0.0/a%20b/101.dat"
    assert isinstance(resolve_source(None), (HttpSource, LocalSource))
    with pytest.raises(ConfigError, match="unsupported mirror"):
        resolve_source("ftp://example.org/files/")
    with pytest.raises(ConfigError, match="mirror directory not found"):
        resolve_source("/nonexistent/mirror/dir")
    assert DEFAULT_MIRROR == "https://physionet.org/files/"


# --------------------------------------------------------------------------------------------------- unknown names
def test_unknown_database_version_record(http_mirror, tmp_path):
    with pytest.raises(CatalogError, match="unknown database 'nosuchdb'"):
        download("nosuchdb", out=tmp_path, mirror=http_mirror.url, **FAST)
    with pytest.raises(CatalogError, match="unknown version '9.9.9' of mitdb"):
        download("mitdb", version="9.9.9", out=tmp_path, mirror=http_mirror.url, **FAST)
    assert http_mirror.log == []
    with pytest.raises(CatalogError, match=r"unknown record\(s\) of mitdb 1.0.0: 999, 1011"):
        download("mitdb", records=["101", "999", "1011"], out=tmp_path, mirror=http_mirror.url, **FAST)
    assert not (tmp_path / "mitdb" / "1.0.0" / "101.dat").exists()  # nothing fetched for a bad request
    with pytest.raises(ConfigError):
        download("mitdb", records=[], out=tmp_path, mirror=http_mirror.url, **FAST)


def test_new_record_refreshes_a_stale_local_index(physionet_root, serve_dir, tmp_path):
    # a first download from a mirror that knows only 101; then the mirror gains 106
    mirror = _small_mitdb_mirror(physionet_root, tmp_path / "mirror", records=("101", "106"))
    db = mirror / "mitdb" / "1.0.0"
    full_records = (db / "RECORDS").read_bytes()
    (db / "RECORDS").write_text("101\n")
    sums_full = (db / "SHA256SUMS.txt").read_text()
    (db / "SHA256SUMS.txt").write_text("".join(line + "\n" for line in sums_full.splitlines()
                                               if not line.endswith(" RECORDS")))
    server = serve_dir(mirror)
    download("mitdb", records=["101"], out=tmp_path / "out", mirror=server.url, **FAST)
    (db / "RECORDS").write_bytes(full_records)
    (db / "SHA256SUMS.txt").write_text(sums_full)
    result = download("mitdb", records=["106"], out=tmp_path / "out", mirror=server.url, **FAST)
    assert result.records == ["106"] and (result.root / "106.dat").is_file()
    assert (result.root / "SHA256SUMS.txt").read_text() == sums_full


# --------------------------------------------------------------------------------------------------- CLI and script
def test_cli_download_and_errors(http_mirror, physionet_root, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="ecgtransfer")
    rc = cli_main(["-q", "download", "mitdb", "--records", "101", "--out", str(tmp_path), "--mirror",
                   http_mirror.url, "--jobs", "2"])
    assert rc == 0
    _assert_same_bytes(tmp_path / "mitdb" / "1.0.0", physionet_root / "mitdb" / "1.0.0", {"101.dat"})
    caplog.set_level(logging.INFO, logger="ecgtransfer")
    caplog.clear()
    rc = cli_main(["download", "mitdb", "--records", "101", "--out", str(tmp_path), "--mirror", http_mirror.url])
    assert rc == 0
    assert any("0 fetched, 5 already verified" in r.getMessage() for r in caplog.records)
    capsys.readouterr()
    rc = cli_main(["-q", "download", "mitdb", "--records", "999", "--out", str(tmp_path), "--mirror",
                   http_mirror.url])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("ecgtransfer: error: unknown record(s) of mitdb 1.0.0: 999")
    rc = cli_main(["-q", "download", "nosuchdb", "--out", str(tmp_path)])
    assert rc == 2 and "unknown database 'nosuchdb'" in capsys.readouterr().err


def test_batch_script_several_databases(physionet_root, tmp_path):
    cmd = [sys.executable, str(REPO / "data_scripts" / "download_physionet.py"), "-q", "mitdb:101",
           "challenge-2017@1.0.0:A00009", "nosuchdb", "--out", str(tmp_path), "--mirror", str(physionet_root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "nosuchdb: unknown database" in proc.stderr
    assert (tmp_path / "mitdb" / "1.0.0" / "101.dat").read_bytes() == \
        (physionet_root / "mitdb" / "1.0.0" / "101.dat").read_bytes()
    assert (tmp_path / "challenge-2017" / "1.0.0" / "training2017" / "A00009.mat").is_file()
