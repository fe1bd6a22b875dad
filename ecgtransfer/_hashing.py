"""SHA256 helpers shared by downloads, conversion and the segment store."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Lowercase hex SHA256 of a file, read in chunks of ``chunk`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any, *, allow_nan: bool = False) -> bytes:
    """``obj`` as canonical JSON bytes: sorted keys, compact separators, UTF-8, no NaN (unless ``allow_nan``: a
    record that may hold a NaN loss)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=allow_nan).encode("utf-8")


def sha256_json(obj: Any, *, allow_nan: bool = False) -> str:
    """Lowercase hex SHA256 of :func:`canonical_json` of ``obj`` (equal JSON values hash equally)."""
    return hashlib.sha256(canonical_json(obj, allow_nan=allow_nan)).hexdigest()
