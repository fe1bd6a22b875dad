"""Where PhysioNet files come from: an http(s) server laid out like ``physionet.org/files/`` or a local
directory with the same layout (``<root>/<database>/<version>/<path>``).

A source opens one file from a byte offset and returns a :class:`Body` that says which offset it really
starts at (a server may ignore ``Range``) and how long it is. Failures are sorted into
:class:`TransientError` (worth retrying: timeouts, connection resets, HTTP 408/425/429/5xx),
:class:`RangeNotSatisfiable` (the offset is past the end: restart the file) and permanent
:class:`~ecgtransfer.errors.DownloadError` (404, other 4xx, a missing local file).
"""
from __future__ import annotations

import email.utils
import http.client
import os
import threading
import time
import urllib.parse
import urllib.request
from datetime import timezone
from pathlib import Path
from typing import BinaryIO, Protocol

import requests
import urllib3

from ecgtransfer import __version__
from ecgtransfer.errors import ConfigError, DownloadError

DEFAULT_MIRROR = "https://physionet.org/files/"
MIRROR_ENV = "ECGTRANSFER_PHYSIONET_MIRROR"

_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


class TransientError(Exception):
    """A failure worth retrying. ``retry_after`` is the server's requested wait in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RangeNotSatisfiable(Exception):
    """The requested start offset is at or past the end of the file (HTTP 416)."""


class Body(Protocol):
    """An open file body. ``start``: offset of its first byte in the file; ``length``: bytes it will
    deliver (None when unknown); ``total``: the full file size (None when unknown)."""

    start: int
    length: int | None
    total: int | None

    def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


class Source(Protocol):
    """A place files of ``<database>/<version>/`` can be read from.

    ``stable`` is True when a file cannot change between two reads (a local directory): a digest mismatch is
    then final and is not retried."""

    stable: bool

    def location(self, db: str, version: str, rel: str) -> str:
        """The URL or path of one file, for messages."""

    def open(self, db: str, version: str, rel: str, offset: int = 0) -> Body:
        """Open ``rel`` (a validated relative path) at byte ``offset``."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now_ts = time.time() if now is None else now
    return max(0.0, when.timestamp() - now_ts)


class _HttpBody:
    def __init__(self, resp: requests.Response, url: str, start: int, length: int | None,
                 total: int | None) -> None:
        self._resp = resp
        self._url = url
        self.start = start
        self.length = length
        self.total = total

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, returning as soon as *some* arrived (one network read, like ``read1``), so a caller
        watching the transfer rate regains control after every read instead of after ``n`` bytes (a server
        trickling one byte a second would otherwise hold a 64 KiB read for 18 hours). ``b""`` at the end."""
        try:
            return self._resp.raw.read1(n, decode_content=True) or b""
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise TransientError(f"timed out reading {self._url}") from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                OSError) as exc:
            raise TransientError(f"connection lost reading {self._url}: {_reason(exc)}") from exc

    def close(self) -> None:
        self._resp.close()


def _reason(exc: BaseException) -> str:
    """The innermost useful message of a (possibly nested) requests/urllib3 exception, on one line."""
    text = f"{exc.__class__.__name__}: {exc}"
    return " ".join(text.split())[:300]


class HttpSource:
    """Files served over http(s) under ``base_url`` (which ends with ``/``).

    Each thread keeps its own :class:`requests.Session`, so connections are reused (keep-alive) across the
    many small files of a database; proxies and CA bundles come from the usual environment variables.
    """

    stable = False  # a transfer can be corrupted on the way, or served by another machine next time

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"HttpSource({self.base_url!r})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"User-Agent": f"ecgtransfer/{__version__}", "Accept-Encoding": "identity"})
            self._local.session = session
        return session

    def location(self, db: str, version: str, rel: str) -> str:
        path = "/".join(urllib.parse.quote(p) for p in (db, version, *rel.split("/")))
        return self.base_url + path

    def open(self, db: str, version: str, rel: str, offset: int = 0) -> Body:
        url = self.location(db, version, rel)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            resp = self._session().get(url, headers=headers, stream=True, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise DownloadError(f"TLS error talking to {url}: {_reason(exc)}") from None
        except requests.exceptions.Timeout as exc:
            raise TransientError(f"timed out connecting to {url}") from exc
        except _PERMANENT_REQUEST_ERRORS as exc:  # before OSError: requests' errors are OSErrors too
            raise DownloadError(f"cannot fetch {url}: {_reason(exc)} (a redirect loop or a redirect to a "
                                "non-http(s) address is not retried)") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                http.client.HTTPException, OSError) as exc:
            raise TransientError(f"connection to {url} failed: {_reason(exc)}") from exc
        except requests.exceptions.RequestException as exc:  # invalid URL, too many redirects, ...
            raise DownloadError(f"cannot fetch {url}: {_reason(exc)}") from None

        code = resp.status_code
        if code not in (200, 206):
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            reason = resp.reason or ""
            resp.close()
            if code == 416:
                raise RangeNotSatisfiable(url)
            if code in (404, 410):
                raise DownloadError(f"not found (HTTP {code}): {url}")
            if code in _TRANSIENT_HTTP:
                raise TransientError(f"HTTP {code} {reason} from {url}", retry_after)
            raise DownloadError(f"HTTP {code} {reason}: {url}")

        encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        length_h = resp.headers.get("Content-Length", "")
        length = int(length_h) if length_h.isdigit() and not encoded else None
        if code == 206:
            start, total = _parse_content_range(resp.headers.get("Content-Range"))
            if start is None:  # a 206 we cannot place
                if offset:  # read the file from the beginning instead
                    resp.close()
                    return self.open(db, version, rel, 0)
                start = 0
            return _HttpBody(resp, url, start, length, total)
        # 200: the whole file, whatever Range asked for
        return _HttpBody(resp, url, 0, length, length)


#: request errors that no retry can mend: a redirect loop, a redirect to ``file://`` or another scheme, a bad URL
#: (requests' exceptions derive from OSError, which the caller otherwise treats as a dropped connection)
_PERMANENT_REQUEST_ERRORS = (requests.exceptions.TooManyRedirects, requests.exceptions.InvalidSchema,
                             requests.exceptions.MissingSchema, requests.exceptions.InvalidURL)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes a-b/total`` -> (a, total or None)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total_s = value[len("bytes "):].partition("/")
    start_s, _, _ = span.partition("-")
    try:
        start = int(start_s)
    except ValueError:
        return None, None
    total = int(total_s) if total_s.isdigit() else None
    return start, total


class _FileBody:
    def __init__(self, fh: BinaryIO, path: Path, start: int, total: int) -> None:
        self._fh = fh
        self._path = path
        self.start = start
        self.total = total
        self.length = total - start

    def read(self, n: int) -> bytes:
        try:
            return self._fh.read(n)
        except OSError as exc:
            raise DownloadError(f"cannot read {self._path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        self._fh.close()


class LocalSource:
    """Files in a local directory laid out like ``physionet.org/files/``."""

    stable = True  # re-reading a file gives the same bytes: a mismatch is not retried

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalSource({str(self.root)!r})"

    def location(self, db: str, version: str, rel: str) -> str:
        return str(self.root / db / version / rel)

    def open(self, db: str, version: str, rel: str, offset: int = 0) -> Body:
        path = self.root / db / version / rel
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise DownloadError(f"not found in mirror: {path}") from None
        except IsADirectoryError:
            raise DownloadError(f"expected a file in mirror, found a directory: {path}") from None
        except OSError as exc:
            raise DownloadError(f"cannot open {path}: {exc.strerror or exc}") from None
        total = os.fstat(fh.fileno()).st_size
        if offset > total or (offset and offset == total):
            fh.close()
            raise RangeNotSatisfiable(str(path))
        fh.seek(offset)
        return _FileBody(fh, path, offset, total)


def resolve_source(mirror: str | os.PathLike | None = None, *, timeout: float = 30.0) -> Source:
    """The source for ``mirror``: an http(s) URL, a ``file://`` URL or a local directory.

    ``None`` uses the environment variable ``ECGTRANSFER_PHYSIONET_MIRROR`` when set, else
    ``https://physionet.org/files/``.
    """
    if mirror is None or mirror == "":
        mirror = os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    text = os.fspath(mirror)
    scheme = urllib.parse.urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("http", "https"):
        if not urllib.parse.urlsplit(text).netloc:
            raise ConfigError(f"mirror URL {text!r} has no host (expected e.g. https://physionet.org/files/)")
        return HttpSource(text, timeout=timeout)
    if scheme == "file":
        text = urllib.request.url2pathname(urllib.parse.urlsplit(text).path)
    elif scheme:
        raise ConfigError(f"unsupported mirror {text!r}: expected an http(s) URL or a local directory")
    root = Path(text).expanduser()
    if not root.is_dir():
        raise ConfigError(f"mirror directory not found: {root} (expected <mirror>/<database>/<version>/...)")
    return LocalSource(root)


__all__ = ["DEFAULT_MIRROR", "MIRROR_ENV", "Body", "HttpSource", "LocalSource", "RangeNotSatisfiable", "Source",
           "TransientError", "parse_retry_after", "resolve_source"]
