"""PhysioNet index files: ``SHA256SUMS.txt`` and ``RECORDS``, parsed and validated.

Names read from these files come from a remote server and are untrusted: every one is checked by
:func:`safe_relpath` before it is joined to a local directory (no absolute paths, no ``..``, no
backslashes, no empty or NUL-containing components).
"""
from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass, field

from ecgtransfer.errors import DownloadError, UnsafePathError

SUMS_FILE = "SHA256SUMS.txt"

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relpath(name: str, *, source: str = "") -> str:
    """Return ``name`` if it is a safe relative POSIX path, else raise :class:`UnsafePathError`.

    Safe means: not empty, not absolute (``/x``, ``C:x``), no backslash, no NUL or control character,
    no ``..``, ``.`` or empty component. ``source`` names the file it was read from, for the message.
    """
    where = f" in {source}" if source else ""
    reason = None
    if not name:
        reason = "empty name"
    elif name.startswith("/") or _DRIVE.match(name):
        reason = "absolute path"
    elif "\\" in name:
        reason = "backslash in name"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        reason = "control character in name"
    else:
        parts = name.split("/")
        if any(p == ".." for p in parts):
            reason = "'..' component"
        elif any(p in ("", ".") for p in parts):
            reason = "empty or '.' component"
    if reason is not None:
        raise UnsafePathError(f"refusing unsafe name {name!r}{where}: {reason} (expected a relative path "
                              "inside the database folder)")
    return name


@dataclass
class Sha256Sums:
    """The parsed ``SHA256SUMS.txt`` of one database version: relative path -> lowercase hex digest."""

    digests: dict[str, str]
    _by_dir: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        by_dir: dict[str, list[str]] = defaultdict(list)
        for path in self.digests:
            folder, _, base = path.rpartition("/")
            by_dir[folder].append(base)
        self._by_dir = {k: sorted(v) for k, v in by_dir.items()}

    def __contains__(self, path: object) -> bool:
        return path in self.digests

    def __len__(self) -> int:
        return len(self.digests)

    def get(self, path: str) -> str | None:
        """The expected digest of ``path`` (relative to the version folder), or None when not listed."""
        return self.digests.get(path)

    def files_of_record(self, record_path: str) -> list[str]:
        """Every listed file ``<dir>/<name>.<ext>`` of the record ``<dir>/<name>`` (sorted).

        ``record_path`` is relative to the version folder (``101``, ``data/1``, ``training2017/A00009``).
        A file belongs to the record when it sits in the record's folder and its name is the record's
        name followed by a dot and an extension (``101.dat`` and ``101.atr`` belong to ``101``; ``1011.dat``
        does not).
        """
        folder, _, base = record_path.rpartition("/")
        prefix = base + "."
        return [posixpath.join(folder, name) if folder else name
                for name in self._by_dir.get(folder, ()) if name.startswith(prefix) and len(name) > len(prefix)]


def parse_sha256sums(text: str, *, source: str = SUMS_FILE) -> Sha256Sums:
    """Parse ``<sha256> <path>`` lines (PhysioNet uses one space; ``sha256sum``'s two spaces or ``*``
    binary marker are accepted too). Blank lines and ``#`` comments are skipped.

    Raises :class:`DownloadError` for a malformed line and :class:`UnsafePathError` for an unsafe path
    (the whole index is refused: a server that lists one escaping path is not trusted for the others).
    """
    digests: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        digest, sep, rest = line.partition(" ")
        if not sep or not _HEX64.match(digest):
            raise DownloadError(f"malformed line {lineno} of {source}: expected '<64 hex digits> <path>', "
                                f"found {line[:120]!r}")
        path = rest.lstrip(" ")
        if path.startswith("*"):
            path = path[1:]
        safe_relpath(path, source=source)
        digest = digest.lower()
        previous = digests.get(path)
        if previous is not None and previous != digest:
            raise DownloadError(f"{source} lists {path!r} twice with different digests (line {lineno})")
        digests[path] = digest
    if not digests:
        raise DownloadError(f"{source} lists no files (expected '<sha256> <path>' lines)")
    return Sha256Sums(digests)


def parse_records(text: str, *, source: str = "RECORDS") -> list[str]:
    """Parse a ``RECORDS`` listing: one record name per line (relative to the database's record folder).

    Blank lines and ``#`` comments are skipped, duplicates dropped (first occurrence kept); every name
    is validated with :func:`safe_relpath`.
    """
    seen: dict[str, None] = {}
    for raw in text.splitlines():
        name = raw.strip()
        if not name or name.startswith("#"):
            continue
        seen.setdefault(safe_relpath(name, source=source), None)
    if not seen:
        raise DownloadError(f"{source} lists no records (expected one record name per line)")
    return list(seen)
