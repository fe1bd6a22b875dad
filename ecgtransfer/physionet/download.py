"""Verified, resumable PhysioNet downloads.

``download("mitdb", records=["101"], out="data")`` fetches, into ``data/mitdb/1.0.0/`` and exactly as
PhysioNet lays them out, the database version's ``SHA256SUMS.txt``, its ``RECORDS`` listing, the
catalog's metadata files and every file ``SHA256SUMS.txt`` lists for the requested records.

Guarantees:

* every file listed in ``SHA256SUMS.txt`` is checked against its SHA256 digest, and appears under its
  final name only once verified: bytes go to ``<name>.part`` in the same folder, which is renamed after
  the check (a crash or a bad file never leaves a wrong file under a final name);
* an interrupted transfer resumes from the ``.part`` size with an HTTP ``Range`` request (a server that
  ignores ``Range``, or a ``.part`` longer than the file, restarts that file from zero);
* transient failures (timeouts, connection resets, HTTP 408/425/429/5xx, a transfer slower than ``MIN_RATE``
  bytes/s for ``STALL_TIMEOUTS`` x ``timeout`` seconds) are retried with exponential
  backoff, honouring ``Retry-After``; a digest that still mismatches after the retries (at once for a
  local-directory mirror, whose files cannot change between tries) raises
  :class:`~ecgtransfer.errors.ChecksumError` naming both suspects, the file and the mirror's index, and the
  bad bytes are deleted;
* re-running hashes what is there and fetches only missing or bad files. The index heals: a file that fails
  the *local* ``SHA256SUMS.txt`` first makes the mirror's index be fetched and compared (the local one is
  replaced when they differ); a local file that fails the mirror's digest is renamed ``<name>.damaged``, never
  deleted, until its replacement verifies;
* no file grows past the size the server announced, nor past the catalog's ``max_file_bytes``; ``.part``
  files are opened with ``O_NOFOLLOW`` and a symbolic link among them or among the folders inside the version
  folder is refused;
* names read from ``RECORDS`` and ``SHA256SUMS.txt`` are validated (no absolute paths, ``..`` or
  backslashes: :class:`~ecgtransfer.errors.UnsafePathError`).

Files that ``SHA256SUMS.txt`` does not list (it is the trust anchor and cannot list itself; some
databases omit a metadata file) are fetched atomically too, reported in
:attr:`DownloadResult.unverified` with a warning, or refused with ``strict=True``.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from tqdm.auto import tqdm

from ecgtransfer._atomic import fsync_dir
from ecgtransfer._hashing import sha256_file
from ecgtransfer._validate import path_given
from ecgtransfer.errors import CatalogError, ChecksumError, ConfigError, DownloadError, EcgTransferError
from ecgtransfer.physionet import ptbxl
from ecgtransfer.physionet.catalog import Database, get_database
from ecgtransfer.physionet.index import SUMS_FILE, Sha256Sums, parse_records, parse_sha256sums, safe_relpath
from ecgtransfer.physionet.sources import Body, RangeNotSatisfiable, Source, TransientError, resolve_source

log = logging.getLogger(__name__)
T = TypeVar("T")

CHUNK = 1 << 16
PART_SUFFIX = ".part"
#: a local file that fails its digest against the mirror's index is renamed ``<name>.damaged`` (then
#: ``.damaged.1``, ...) and kept until its replacement verifies
ASIDE_SUFFIX = ".damaged"
MAX_BACKOFF = 60.0
#: a transfer slower than MIN_RATE bytes/s, measured over windows of STALL_TIMEOUTS x ``timeout`` seconds, is
#: abandoned as a transient failure (kept in ``.part``, retried with a Range request): a server that announces a
#: length and then trickles a byte a second never trips the per-read socket timeout, and would hold the download
#: forever with a frozen bar
MIN_RATE = 1024
STALL_TIMEOUTS = 4.0
MAX_RETRY_AFTER = 300.0


def _sleep(delay: float, stop: threading.Event) -> None:
    """Wait ``delay`` seconds, or less when ``stop`` is set (another file of the batch failed).

    Module-level so tests can replace it to observe the waits without sleeping."""
    stop.wait(delay)


@dataclass
class DownloadResult:
    """What :func:`download` did.

    Attributes:
        database, version: what was downloaded.
        root: the version folder, ``OUT/<database>/<version>``.
        records: the records fetched (as named in ``RECORDS``).
        paths: every file of the download (index, listing, metadata, record files), final paths.
        fetched: files transferred in this run (including resumed ones).
        already_verified: files already present and found correct by their SHA256 (nothing transferred);
            files without a digest count here when they were already present.
        resumed: files completed from a ``.part`` left by an earlier attempt or run.
        bytes_fetched: bytes transferred in this run.
        unverified: relative paths fetched or kept without a digest (not listed in ``SHA256SUMS.txt``).
    """

    database: str
    version: str
    root: Path
    records: list[str]
    paths: list[Path]
    fetched: int = 0
    already_verified: int = 0
    resumed: int = 0
    bytes_fetched: int = 0
    unverified: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts and bytes."""
        return (f"{self.database} {self.version}: {len(self.records)} records, {len(self.paths)} files in "
                f"{self.root} ({self.fetched} fetched, {self.already_verified} already verified, "
                f"{self.resumed} resumed, {_human(self.bytes_fetched)} transferred"
                + (f", {len(self.unverified)} without a SHA256 entry" if self.unverified else "") + ")")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


class _Cancelled(Exception):
    """Another download of the same batch failed; stop this one quietly."""


@dataclass
class _Outcome:
    status: str  # "fetched" | "verified" | "kept" | "mismatch" (against an index not yet checked with the mirror)
    resumed: bool = False


class _Fetcher:
    """Fetches single files of one database version into ``root`` with verification, resume and retries."""

    def __init__(self, source: Source, db: str, version: str, root: Path, *, retries: int, backoff: float,
                 bar: tqdm, max_bytes: int, stall_s: float = 120.0) -> None:
        self.source = source
        self.db = db
        self.version = version
        self.root = root
        self.retries = retries
        self.backoff = backoff
        self.bar = bar
        self.max_bytes = max_bytes
        #: the window over which a transfer must average at least MIN_RATE bytes/s
        self.stall_s = stall_s
        #: whether the digests come from an index fetched from the mirror in this run. Until then a mismatch
        #: may be the local index's fault: it is reported as "mismatch" and nothing is moved or retried
        self.index_fresh = False
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.bytes = 0

    # -- bookkeeping -------------------------------------------------------------------------------
    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes += n
            self.bar.update(n)

    def _grow_total(self, n: int | None) -> None:
        if not n:
            return
        with self._lock:
            self.bar.total = (self.bar.total or 0) + n
            self.bar.refresh()

    def _wait(self, attempt: int, retry_after: float | None, why: str) -> None:
        delay = min(self.backoff * (2 ** (attempt - 1)), MAX_BACKOFF)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        log.warning("%s; retry %d/%d in %.1f s", why, attempt, self.retries, delay)
        if delay > 0:
            _sleep(delay, self.stop)

    # -- one file ----------------------------------------------------------------------------------
    def fetch(self, rel: str, expected: str | None, *, force: bool = False) -> _Outcome:
        """Make ``root/rel`` present (and, when ``expected`` is given, verified).

        A file on disk that fails ``expected`` is left alone while the index is not fresh (outcome "mismatch":
        the caller fetches the mirror's index first); against a fresh index it is moved aside to
        ``<name>.damaged`` and dropped only once its replacement verifies."""
        final = self.root / rel
        self._check_folders(rel)
        aside: Path | None = None
        if not force and final.is_file():
            if expected is None:
                return _Outcome("kept")
            if sha256_file(final) == expected:
                _drop_aside(final)
                return _Outcome("verified")
            if not self.index_fresh:
                log.info("%s: SHA256 does not match the local %s; checking with the mirror's", final, SUMS_FILE)
                return _Outcome("mismatch")
            aside = _move_aside(final)
            log.warning("%s: SHA256 does not match the mirror's %s; moved it aside to %s until its replacement "
                        "verifies", final, SUMS_FILE, aside.name)
        part = _prepare_part(final, expected)
        return self._fetch_with_retries(rel, final, part, expected, aside)

    def _fetch_with_retries(self, rel: str, final: Path, part: Path, expected: str | None,
                            aside: Path | None) -> _Outcome:
        """Transfer ``rel`` into ``part`` until it verifies, then rename it to ``final``; transient failures
        and (from an http(s) mirror) digest mismatches are retried up to ``retries`` times."""
        where = self.source.location(self.db, self.version, rel)
        attempt = 0
        while True:
            if self.stop.is_set():
                raise _Cancelled()
            try:
                digest, resumed = self._transfer(rel, part, expected)
            except TransientError as exc:
                attempt += 1
                if attempt > self.retries:
                    raise DownloadError(f"{exc} (gave up after {self.retries} retries; re-run to resume)"
                                        + _kept(aside)) from None
                self._wait(attempt, exc.retry_after, str(exc))
                continue
            except DownloadError as exc:
                if aside is None:
                    raise
                raise DownloadError(f"{exc}{_kept(aside)}") from None
            if expected is None or digest == expected:
                try:
                    os.replace(part, final)  # the folder is fsynced once at the end of the batch
                except OSError as exc:
                    raise _write_error(exc, final) from exc
                _drop_aside(final)
                return _Outcome("fetched", resumed)
            if not self.index_fresh:  # the bytes may be right and the local index wrong: keep them to resume
                log.info("%s: SHA256 does not match the local %s; checking with the mirror's", where, SUMS_FILE)
                return _Outcome("mismatch")
            _unlink(part)
            attempt += 1
            if self.source.stable or attempt > self.retries:
                raise ChecksumError(
                    f"SHA256 of {rel} from {where} does not match {SUMS_FILE} after {attempt} attempt(s): expected "
                    f"{expected}, found {digest}; either {rel} or {SUMS_FILE} on the mirror is damaged (the "
                    f"download was not kept; try another mirror){_kept(aside)}")
            self._wait(attempt, None, f"SHA256 mismatch for {where} (expected {expected[:12]}..., "
                                      f"found {digest[:12]}...)")

    def _check_folders(self, rel: str) -> None:
        """Refuse ``rel`` when a folder between the version folder and the file is a symbolic link (a write
        there would land outside ``root``)."""
        folder = self.root
        for name in rel.split("/")[:-1]:
            folder = folder / name
            if folder.is_symlink():
                raise DownloadError(f"refusing to write {self.root / rel}: {folder} is a symbolic link (expected "
                                    "a plain folder inside the download folder; remove the link and re-run)")

    def _transfer(self, rel: str, part: Path, expected: str | None) -> tuple[str, bool]:
        """Bring ``part`` to the full file (resuming from its size); returns (sha256 hex, resumed)."""
        h = hashlib.sha256()
        offset = self._resume_offset(part, h)
        if offset:
            if expected is not None and h.hexdigest() == expected:
                log.debug("%s is complete and verified", part)
                return h.hexdigest(), True
        try:
            body = self.source.open(self.db, self.version, rel, offset)
        except RangeNotSatisfiable:
            if not offset:
                raise DownloadError(f"server refused a plain request (HTTP 416) for "
                                    f"{self.source.location(self.db, self.version, rel)}") from None
            log.info("%s is not shorter than the file on the server; fetching it from the start", part)
            _unlink(part)
            return self._transfer(rel, part, expected)
        try:
            if body.start != offset:
                if body.start != 0:
                    body.close()
                    body = self.source.open(self.db, self.version, rel, 0)
                if body.start != 0:
                    raise TransientError(f"server sent bytes from {body.start} for a request from 0: "
                                         f"{self.source.location(self.db, self.version, rel)}")
                log.info("server ignored the byte range for %s; fetching it from the start", rel)
                offset = 0
                h = hashlib.sha256()
            self._receive(rel, part, body, offset, h)
            return h.hexdigest(), offset > 0
        finally:
            body.close()

    def _resume_offset(self, part: Path, h: hashlib._Hash) -> int:
        """The size of ``part`` to resume from (0: start afresh; a ``part`` longer than any file of the database
        is deleted), its bytes fed to ``h``."""
        _refuse_symlink(part)
        offset = part.stat().st_size if part.is_file() else 0
        if offset > self.max_bytes:
            log.info("%s is longer than any %s file may be; fetching it from the start", part, self.db)
            _unlink(part)
            offset = 0
        if offset:
            with open(part, "rb", opener=_nofollow) as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        return offset

    def _receive(self, rel: str, part: Path, body: Body, offset: int, h: hashlib._Hash) -> None:
        """Append ``body`` to ``part`` (from ``offset``) and to ``h``, within the announced length and the
        catalog's cap; a short body is a transient failure."""
        where = self.source.location(self.db, self.version, rel)
        announced = body.total if body.total is not None else (
            None if body.length is None else offset + body.length)
        if announced is not None and announced > self.max_bytes:
            raise DownloadError(f"{where} is announced as {announced} bytes, more than the {self.max_bytes} "
                                f"bytes any {self.db} file may have (the catalog's max_file_bytes); refusing it")
        # never let the file grow past what was announced, or past the cap when nothing was
        room = body.length if body.length is not None else self.max_bytes - offset
        self._grow_total(body.length)
        received, oversize = self._write_body(part, body, offset, room, h, where)
        if oversize:
            _unlink(part)
            raise DownloadError(f"{where} sent more than {self.max_bytes} bytes without announcing a length, "
                                f"more than any {self.db} file may have (the catalog's max_file_bytes); "
                                "refusing it (a misbehaving server?)")
        if body.length is not None and received < body.length:
            raise TransientError(f"connection closed after {received} of {body.length} bytes of "
                                 f"{self.source.location(self.db, self.version, rel)}")

    def _write_body(self, part: Path, body: Body, offset: int, room: int, h: hashlib._Hash,
                    where: str) -> tuple[int, bool]:
        """Write at most ``room`` bytes of ``body`` to ``part`` (appending from ``offset``), fsynced; returns
        (bytes received, whether an unannounced body ran past ``room``). Slower than MIN_RATE bytes/s over a
        ``stall_s`` window is a transient failure (what came is kept for the retry to resume after)."""
        received = 0
        oversize = False
        window_start, window_bytes = time.monotonic(), 0
        try:
            with open(part, "ab" if offset else "wb", opener=_nofollow) as fh:
                while True:
                    if self.stop.is_set():
                        raise _Cancelled()
                    block = body.read(CHUNK)
                    if not block:
                        break
                    if received + len(block) > room:
                        if body.length is None:
                            oversize = True
                            break
                        block = block[:room - received]  # the source grew past what it announced
                    fh.write(block)
                    h.update(block)
                    received += len(block)
                    self._count(len(block))
                    window_bytes += len(block)
                    now = time.monotonic()
                    if now - window_start >= self.stall_s and received < room:
                        if window_bytes < MIN_RATE * (now - window_start):
                            fh.flush()  # keep what came: the retry resumes after it
                            os.fsync(fh.fileno())
                            raise TransientError(
                                f"{where} is too slow: {window_bytes} bytes in {now - window_start:.0f} s "
                                f"(expected at least {MIN_RATE} bytes/s; a stalled or throttled server)")
                        window_start, window_bytes = now, 0
                    if received >= room and body.length is not None and len(block) < CHUNK:
                        break  # all that was announced is here; a source still sending is cut off
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _symlink_error(part) from None
            raise _write_error(exc, part) from exc
        return received, oversize

def _prepare_part(final: Path, expected: str | None) -> Path:
    """The ``<final>.part`` file a transfer writes to, its folder made; a partial index (no digest to check
    a resumed one against) is removed so that it starts afresh."""
    part = final.with_name(final.name + PART_SUFFIX)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(exc, final.parent) from exc
    _refuse_symlink(part)
    if expected is None:
        _unlink(part)  # nothing to check a resumed index against: always start it afresh
    return part


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _nofollow(path: str, flags: int) -> int:
    """``open()`` opener that never follows a symbolic link in the last component (O_NOFOLLOW)."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)


def _symlink_error(path: Path) -> DownloadError:
    return DownloadError(f"refusing to use {path}: it is a symbolic link (expected a partial download of this "
                         "program; remove the link and re-run)")


def _refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise _symlink_error(path)


def _asides(final: Path) -> Iterator[Path]:
    """``<final>.damaged``, ``<final>.damaged.1``, ...: the names a damaged copy of ``final`` is kept under."""
    yield final.with_name(final.name + ASIDE_SUFFIX)
    n = 1
    while True:
        yield final.with_name(f"{final.name}{ASIDE_SUFFIX}.{n}")
        n += 1


def _move_aside(final: Path) -> Path:
    """Rename ``final`` (a file, or a link: the link is moved, never its target) to the first free aside name."""
    for aside in _asides(final):
        if not os.path.lexists(aside):
            try:
                os.rename(final, aside)
            except OSError as exc:
                raise _write_error(exc, aside) from exc
            return aside
    raise AssertionError("unreachable")  # pragma: no cover


def _drop_aside(final: Path) -> None:
    """``final`` verifies: the damaged copies kept beside it are no longer needed."""
    for aside in _asides(final):
        if not os.path.lexists(aside):
            return
        aside.unlink()
        log.info("%s verifies; removed the damaged copy %s", final, aside.name)


def _kept(aside: Path | None) -> str:
    return "" if aside is None else f"; the local copy that failed its digest is kept as {aside}"


def _write_error(exc: OSError, path: Path) -> DownloadError:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DownloadError(f"no space left on device while writing {path}; free some space and re-run "
                             "(partial files are kept and resume)")
    return DownloadError(f"cannot write {path}: {exc.strerror or exc}")


def _resolve_records(requested: Sequence[str] | None, listed: list[str],
                     aliases: dict[str, list[str]] | None = None) -> tuple[list[str], list[str]]:
    """(known records in request order, unknown names). Bare names match a unique ``dir/name`` entry; an alias
    (PTB-XL's ``ecg_id``) stands for its records."""
    if requested is None:
        return list(listed), []
    listed_set = set(listed)
    by_base: dict[str, list[str]] = {}
    for name in listed:
        by_base.setdefault(name.rpartition("/")[2], []).append(name)
    known: list[str] = []
    unknown: list[str] = []
    for raw in requested:
        name = str(raw).strip()
        safe_relpath(name, source="the requested records")
        if aliases and name in aliases and name not in listed_set:
            for match in aliases[name]:
                if match not in known:
                    known.append(match)
            continue
        if name in listed_set:
            match = name
        elif len(by_base.get(name, ())) == 1:
            match = by_base[name][0]
        else:
            unknown.append(name)
            continue
        if match not in known:
            known.append(match)
    return known, unknown


def download(database: str, *, version: str | None = None, records: Iterable[str] | str | None = None,
             out: str | os.PathLike = "data", mirror: str | os.PathLike | None = None, jobs: int = 4,
             retries: int = 5, backoff: float = 0.5, timeout: float = 30.0, strict: bool = False,
             refresh_index: bool = False, progress: bool = True, rate: str | int | None = None) -> DownloadResult:
    """Download (or verify) records of a PhysioNet database into ``OUT/<database>/<version>/``.

    Args:
        database: PhysioNet slug known to the catalog (``mitdb``, ``challenge-2017``, ``ludb``, ...).
        version: database version; default: the catalog's newest known version.
        records: record names as listed in the database's ``RECORDS`` (``"101"``, ``"data/1"``; a bare
            name such as ``"1"`` matches a unique ``dir/1``); default: every record.
        out: target folder; files land in ``OUT/<database>/<version>/<path as on PhysioNet>``.
        mirror: http(s) base URL or local directory laid out like ``https://physionet.org/files/``;
            default: env ``ECGTRANSFER_PHYSIONET_MIRROR``, else ``https://physionet.org/files/``.
        jobs: parallel transfers (>= 1).
        retries: retries per file after a transient failure or a digest mismatch from an http(s) mirror (>= 0;
            a file of a local-directory mirror cannot change between tries, so its mismatch is not retried).
        backoff: first retry delay in seconds, doubled each retry (capped at 60 s); ``Retry-After`` wins
            when longer (capped at 300 s).
        timeout: socket timeout in seconds for each HTTP connection/read; a file whose transfer stays below
            ``MIN_RATE`` bytes/s for ``STALL_TIMEOUTS`` x ``timeout`` seconds is abandoned and retried (resumed).
        strict: refuse files that ``SHA256SUMS.txt`` does not list instead of fetching them unverified.
        refresh_index: fetch ``SHA256SUMS.txt`` from the mirror even when a local copy exists (a file that
            disagrees with the local copy triggers the same re-fetch by itself).
        progress: show one tqdm progress bar (bytes).
        rate: PTB-XL only: the records at ``100`` Hz (default), ``500`` Hz or ``both``; its index is
            ``ptbxl_database.csv`` (``filename_lr`` / ``filename_hr``) and ``records`` may name ECGs by ``ecg_id``
            (``"1"``) as well as by path (``records100/00000/00001_lr``).

    Returns:
        :class:`DownloadResult` with the paths and counts.

    Raises:
        CatalogError: unknown database, version or record.
        UnsafePathError: a name in ``RECORDS``/``SHA256SUMS.txt`` would escape the target folder.
        ChecksumError: a file still mismatches the mirror's digest after the retries (it is not kept).
        DownloadError: 404 and other permanent HTTP errors, retries exhausted, no space left, a file larger
            than the catalog's ``max_file_bytes``, a symbolic link where a partial file or folder is written.
        ConfigError: invalid arguments or mirror.
    """
    db, version, requested, root = _checked_request(database, version, records, out, jobs, retries, backoff,
                                                    timeout, rate)
    source = resolve_source(mirror, timeout=timeout)
    records_file = safe_relpath(db.records_file, source="the catalog")
    with tqdm(**_bar_args(db, version, progress)) as bar:
        fetcher = _Fetcher(source, db.name, version, root, retries=int(retries), backoff=float(backoff), bar=bar,
                           max_bytes=int(db.max_file_bytes), stall_s=STALL_TIMEOUTS * float(timeout))
        run = _Run(fetcher, db, version, root, records_file, requested, rate, strict)
        log.info("%s %s from %s into %s", db.name, version, source, root)
        sums, listed = run.load_listing(bool(refresh_index))
        wanted, all_files, unverified = run.fetch_files(sums, listed, int(jobs))
    result = DownloadResult(database=db.name, version=version, root=root, records=wanted,
                            paths=[root / f for f in all_files], bytes_fetched=fetcher.bytes, unverified=unverified)
    return _tally(result, all_files, run.outcomes)


def _checked_request(database: str, version: str | None, records: Iterable[str] | str | None,
                     out: str | os.PathLike, jobs: int, retries: int, backoff: float, timeout: float,
                     rate: str | int | None) -> tuple[Database, str, list[str] | None, Path]:
    """:func:`download`'s arguments checked: (database, version, requested records or None for all, version
    folder)."""
    db = get_database(database)
    version = db.check_version(version)
    if isinstance(records, str):
        records = [records]
    requested = None if records is None else list(records)
    if requested is not None and not requested:
        raise ConfigError(f"no records requested for {database} (omit records to download all of them)")
    if int(jobs) < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if int(retries) < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if backoff < 0 or timeout <= 0:
        raise ConfigError(f"backoff must be >= 0 and timeout > 0, got backoff={backoff}, timeout={timeout}")
    root = Path(path_given(out, "--out")) / db.name / version
    if db.index_kind == "ptbxl":
        ptbxl.rates_of(rate)  # checked before anything is fetched
    elif rate is not None:
        raise ConfigError(f"rate applies to ptb-xl only (its records come at 100 and 500 Hz), not to {db.name}")
    return db, version, requested, root


def _bar_args(db: Database, version: str, progress: bool) -> dict:
    """The tqdm arguments of the download's one progress bar (bytes; its total grows as transfers start)."""
    bar_args: dict = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "desc": f"{db.name} {version}",
                      "total": 0, "leave": False}
    if not progress:
        bar_args["disable"] = True
    return bar_args


class _Run:
    """One :func:`download` call's steps, in order: the index and the records listing (:meth:`load_listing`),
    the plan of files (:meth:`plan`), the files themselves (:meth:`fetch_files`); ``outcomes`` collects what
    happened to each file."""

    def __init__(self, fetcher: _Fetcher, db: Database, version: str, root: Path, records_file: str,
                 requested: list[str] | None, rate: str | int | None, strict: bool) -> None:
        self.fetcher = fetcher
        self.db = db
        self.version = version
        self.root = root
        self.records_file = records_file
        self.requested = requested
        self.rate = rate
        self.strict = strict
        self.outcomes: dict[str, _Outcome] = {}
        self.aliases: dict[str, list[str]] = {}

    def load_listing(self, refresh_index: bool) -> tuple[Sha256Sums, list[str]]:
        """The index and the listing, local copies reused (re-runs work offline) unless ``refresh_index``, or
        unless a requested record is missing from a local listing (the mirror's may have gained it)."""
        requested, records_file = self.requested, self.records_file
        sums, listed = self.load_index(refresh_index)
        missing = [] if self.fetcher.index_fresh else _resolve_records(requested, listed, self.aliases)[1]
        if missing:
            log.info("record(s) %s not in the local %s; fetching the index again", ", ".join(missing), records_file)
            sums, listed = self.load_index(True)
        return sums, listed

    # 1. the index (reused when present: re-runs work offline) and the records listing
    def load_index(self, force: bool) -> tuple[Sha256Sums, list[str]]:
        """``SHA256SUMS.txt`` and the records listing (fetched when missing or ``force``); a listing that fails
        the local index makes both be fetched from the mirror."""
        fetcher, outcomes, root, db, version = self.fetcher, self.outcomes, self.root, self.db, self.version
        records_file, rate, aliases = self.records_file, self.rate, self.aliases
        outcomes[SUMS_FILE] = fetcher.fetch(SUMS_FILE, None, force=force)
        fetcher.index_fresh = fetcher.index_fresh or outcomes[SUMS_FILE].status == "fetched"
        sums = _parse_or_drop(root / SUMS_FILE, lambda text: parse_sha256sums(
            text, source=f"{db.name}/{version}/{SUMS_FILE}"))
        digest = sums.get(records_file)
        # a listing the index has no digest for is fetched again with it (it may have gained records)
        outcomes[records_file] = fetcher.fetch(records_file, digest, force=force and digest is None)
        if outcomes[records_file].status == "mismatch":  # the local index or listing is wrong: ask the mirror
            return self.load_index(True)
        where = f"{db.name}/{version}/{records_file}"
        if db.index_kind == "ptbxl":
            listed, found = _parse_or_drop(root / records_file, lambda text: ptbxl.parse_index(
                text, rate, source=where))
            aliases.clear()
            aliases.update(found)
        else:
            listed = _parse_or_drop(root / records_file, lambda text: parse_records(text, source=where))
        return sums, listed

    def plan(self, sums: Sha256Sums, listed: list[str]) -> tuple[list[str], list[str], list[str]]:
        """(records, their files and the metadata files, the files without a digest)."""
        db, version, records_file = self.db, self.version, self.records_file
        wanted, unknown = _resolve_records(self.requested, listed, self.aliases)
        if unknown:
            sample = ", ".join(listed[:5]) + (", ..." if len(listed) > 5 else "")
            raise CatalogError(f"unknown record(s) of {db.name} {version}: {', '.join(unknown)} (not in "
                               f"{records_file}, which lists {len(listed)} records: {sample})")
        # metadata first, then every listed file of each record
        files = [safe_relpath(name, source="the catalog") for name in db.metadata_files]
        for rec in wanted:
            rec_path = f"{db.record_dir}/{rec}" if db.record_dir else rec
            rec_files = sums.files_of_record(rec_path)
            if not rec_files:
                raise DownloadError(f"record {rec} of {db.name} {version} is listed in {records_file} but "
                                    f"{SUMS_FILE} lists no file {rec_path}.<ext> for it")
            files.extend(rec_files)
        files = [f for f in dict.fromkeys(files) if f not in (SUMS_FILE, records_file)]
        unverified = [f for f in [records_file, *files] if f not in sums]
        if unverified:
            if self.strict:
                raise ChecksumError(f"{SUMS_FILE} of {db.name} {version} lists no digest for "
                                    f"{', '.join(unverified)}; refusing unverified files (strict=True)")
            log.warning("%s of %s %s has no entry for %s: these files cannot be verified", SUMS_FILE,
                        db.name, version, ", ".join(unverified))
        return wanted, files, unverified

    # 2. the files; one that fails a local index is checked again once the mirror's index is here
    def fetch_files(self, sums: Sha256Sums, listed: list[str],
                    jobs: int) -> tuple[list[str], list[str], list[str]]:
        """Plan and fetch the files with ``jobs`` threads; returns (records, every file of the download
        including the index and the listing, the files without a digest)."""
        fetcher, outcomes, root, records_file = self.fetcher, self.outcomes, self.root, self.records_file
        wanted, files, unverified = self.plan(sums, listed)
        try:
            _run_parallel(fetcher, [(f, sums.get(f)) for f in files], jobs, outcomes)
            bad = sorted(f for f in files if outcomes[f].status == "mismatch")
            if bad:
                log.warning("%s %s not match the local %s; fetching the mirror's %s to tell a damaged file from a "
                            "damaged index", _some(bad), "does" if len(bad) == 1 else "do", SUMS_FILE, SUMS_FILE)
                old = sums
                sums, listed = self.load_index(True)
                changed = sorted(f for f in set(old.digests) | set(sums.digests) if old.get(f) != sums.get(f))
                if changed:
                    log.warning("the local %s disagreed with the mirror's for %s; replaced it with the mirror's copy",
                                SUMS_FILE, _some(changed))
                else:
                    log.warning("the mirror's %s agrees with the local copy: %s %s damaged and will be replaced",
                                SUMS_FILE, _some(bad), "is" if len(bad) == 1 else "are")
                wanted, files, unverified = self.plan(sums, listed)
                redo = set(bad) | set(changed)
                _run_parallel(fetcher, [(f, sums.get(f)) for f in files if f not in outcomes or f in redo],
                              jobs, outcomes)
        finally:  # make the renames durable (one fsync per folder, not per file)
            all_files = [SUMS_FILE, records_file, *files]
            for folder in sorted({(root / f).parent for f in all_files}):
                fsync_dir(folder)
        return wanted, all_files, unverified


def _tally(result: DownloadResult, all_files: list[str], outcomes: dict[str, _Outcome]) -> DownloadResult:
    """``result`` with its counts of fetched, resumed and already verified files, logged."""
    for rel in all_files:
        outcome = outcomes[rel]
        if outcome.status == "fetched":
            result.fetched += 1
            result.resumed += int(outcome.resumed)
        else:
            result.already_verified += 1
    log.info("%s", result.summary())
    return result

def _some(names: Sequence[str], n: int = 5) -> str:
    """The first ``n`` of ``names``, comma-separated, with a count of the rest."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _run_parallel(fetcher: _Fetcher, work: list[tuple[str, str | None]], jobs: int,
                  outcomes: dict[str, _Outcome]) -> None:
    """Fetch ``work`` with ``jobs`` threads; the first failure stops the others and is raised."""
    if not work:
        return
    pool = ThreadPoolExecutor(max_workers=min(jobs, len(work)), thread_name_prefix="ecgtransfer-download")
    futures: dict[Future, str] = {}
    try:
        futures = {pool.submit(fetcher.fetch, rel, digest): rel for rel, digest in work}
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        first: BaseException | None = None
        for fut in futures:
            if fut in done and fut.exception() is not None and not isinstance(fut.exception(), _Cancelled):
                first = fut.exception()
                break
        if first is not None:
            fetcher.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            others = [f"{futures[f]}: {f.exception()}" for f in futures
                      if f.done() and not f.cancelled() and f.exception() is not None
                      and f.exception() is not first and not isinstance(f.exception(), _Cancelled)]
            for line in others:
                log.debug("also failed: %s", line)
            raise first
        for fut, rel in futures.items():
            outcomes[rel] = fut.result()
    except BaseException:
        fetcher.stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _parse_or_drop(path: Path, parse: Callable[[str], T]) -> T:
    """Parse an index file; one that is not valid (not UTF-8, malformed, unsafe names) is deleted, so a
    re-run fetches it again instead of tripping over it forever."""
    try:
        try:
            text = path.read_text(encoding="utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise DownloadError(f"{path} is not UTF-8 text (byte {exc.start}); expected a PhysioNet index") from None
        return parse(text)
    except EcgTransferError:
        _unlink(path)
        raise


__all__ = ["DownloadResult", "download"]
