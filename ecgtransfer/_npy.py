"""Reading NumPy ``.npy`` / ``.npz`` files that may be damaged or foreign: the one place that opens them for the
store, the run files and ``predict``'s ``.npy`` input.

numpy takes a file that is neither ``.npy`` nor ``.npz`` for a pickle and, with ``allow_pickle=False``, answers
"pickled data ... load it unsafely using allow_pickle": advice to run untrusted code. :func:`load` never unpickles
and says what the file is instead, in one short :class:`ValueError` reason that the caller puts in its own line
(naming the file and what it expected).
"""
from __future__ import annotations

import os
import zipfile
from typing import Any

#: the first bytes of a ``.npy`` file and of a ``.npz`` (zip) archive
NPY_MAGIC = b"\x93NUMPY"
NPZ_MAGIC = b"PK\x03\x04"


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def load(path: str | os.PathLike, *, mmap_mode: str | None = None, archive: bool = False) -> Any:
    """``np.load(path, mmap_mode=mmap_mode, allow_pickle=False)`` of a ``.npy`` file (``archive``: of a ``.npz``
    archive, returned open), or :class:`ValueError` with one short reason: an empty file, a file that does not
    start like one (its first bytes are named), or numpy's reason for a damaged header or body. ``OSError``
    (unreadable) passes through."""
    import numpy as np

    magic, kind = (NPZ_MAGIC, ".npz archive") if archive else (NPY_MAGIC, ".npy file")
    with open(path, "rb") as fh:
        head = fh.read(len(magic))
    if not head:
        raise ValueError(f"the file is empty, expected a NumPy {kind}")
    if head != magic:
        raise ValueError(f"not a NumPy {kind}: it starts with {head!r}, expected {magic!r}")
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
        raise ValueError(f"a damaged NumPy {kind} ({_reason(exc)})") from None


__all__ = ["NPY_MAGIC", "NPZ_MAGIC", "load"]
