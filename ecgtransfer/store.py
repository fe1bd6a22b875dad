"""The segment store: labelled 1-D ECG segments on disk, memory-mapped.

A store is a directory::

    STORE/
      manifest.json      written last: its presence marks a complete store
      segments.npy       [N, C, L] float32 or float16 (np.load(..., mmap_mode="r") works)
      labels.npy         [N] int64, index into manifest["class_names"]
      record_ids.npy     [N] str, the source record of each segment
      patient_ids.npy    [N] str, the patient of each segment (splits group by it)
      positions.npy      [N] int64, sample index in the source record (at the source rate) of the
                         segment's anchor: the R peak for beats, the window start for windows
      extra_<name>.npy   optional per-segment arrays [N, ...] (for example RR-interval context)

The manifest (JSON) holds ``format``, ``format_version``, ``database``, ``version``, ``task``, ``fs``
(rate of the stored segments), ``lead_names``, ``shape``, ``dtype``, ``class_names``,
``source_files`` (relative path -> SHA256 of every source file used), ``parameters`` (every conversion
parameter), ``extras``, ``patients_known`` (convert: whether the patient ids are known to identify
subjects, see :attr:`SegmentStore.patients_known`) and ``provenance`` (where and how the store was made: ``package_version``,
``created``, and what the writer adds, e.g. convert's ``source_root`` and ``jobs``). A store combined from several
databases (:func:`ecgtransfer.combine.combine_stores`) also holds ``databases`` (one entry per source store) and
qualifies its record and patient ids by database, ``"<database>:<id>"`` (:func:`~ecgtransfer.signals.ids.qualify`, :func:`~ecgtransfer.signals.ids.split_qualified`).

:attr:`SegmentStore.manifest_hash` identifies a store's content: the SHA256 of the canonical JSON (sorted
keys, compact) of the :data:`CONTENT_KEYS` of the manifest, with the environment parameters
(:data:`ENVIRONMENT_PARAMETERS`) left out of ``parameters``. ``provenance`` is not hashed, so the same
conversion run from another folder, with another number of workers or another day hashes the same.

Stores are written by :class:`StoreWriter`, streaming: segments are appended record by record into a
temporary sibling directory (``.NAME.partial-*``), which is renamed to its final name only once complete
and fsynced; an overwritten store is first moved aside into ``.NAME.old-*/store``. Both folders hold an
``.owner`` file (``<pid> <host>``). A writer killed hard (SIGKILL, power loss) leaves them behind: the
next :class:`StoreWriter` for the same path (and ``convert``) removes those whose owner process is gone,
and restores an old store whose replacement never arrived (:func:`recover_interrupted`). A writer holds the
store's writer lock (``.NAME.lock`` beside it, :mod:`ecgtransfer._lock`) and writes only where
:func:`ecgtransfer._outdir.check_output_dir` allows (an empty folder or an ecgtransfer store). Reading checks the
manifest (:func:`check_manifest`) and the labels (integers in ``[0, len(class_names))``).
"""
from __future__ import annotations

import datetime
import errno
import glob
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ecgtransfer import __version__
from ecgtransfer._atomic import atomic_save_npy, atomic_write_json, fsync_dir, umask_mode
from ecgtransfer._formats import STORE_FORMAT, STORE_FORMAT_VERSION
from ecgtransfer._hashing import sha256_json
from ecgtransfer._lock import FolderLock
from ecgtransfer._outdir import FolderLayout, check_output_dir, peek_json, register_layout
from ecgtransfer._npy import load as load_npy
from ecgtransfer._validate import file_kind
from ecgtransfer.errors import StoreError
from ecgtransfer.signals.ids import DATABASE_SEPARATOR, qualify, split_qualified  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_NPY_HEADER_BYTES = 128  # fixed .npy header so segments can be streamed before N is known
_ARRAYS = ("labels", "record_ids", "patient_ids", "positions")

#: manifest keys that define a store's content: :attr:`SegmentStore.manifest_hash` covers exactly these
CONTENT_KEYS = ("format", "format_version", "database", "version", "task", "fs", "lead_names", "shape", "dtype",
                "class_names", "source_files", "parameters", "extras", "patients_known", "databases")

#: entries of ``manifest["parameters"]`` that describe how a conversion ran, not what it produced (not hashed)
ENVIRONMENT_PARAMETERS = ("jobs", "progress")

#: files of a segment store (``extra_<name>.npy`` besides)
STORE_FILES = frozenset({"manifest.json", "segments.npy", "labels.npy", "record_ids.npy", "patient_ids.npy",
                         "positions.npy"})


def _manifest_is_ours(folder: Path) -> bool:
    manifest = peek_json(folder / MANIFEST)
    return manifest is not None and manifest.get("format") == STORE_FORMAT


#: what a store folder holds, for the output-folder rule (:mod:`ecgtransfer._outdir`): nothing but store files
#: and a ``manifest.json`` of format :data:`~ecgtransfer._formats.STORE_FORMAT`
STORE_LAYOUT = register_layout(FolderLayout(
    "store", "an ecgtransfer segment store", names=STORE_FILES, patterns=(re.compile(r"^extra_[^/]+\.npy$"),),
    markers=frozenset({MANIFEST}), check=lambda entries, folder: _manifest_is_ours(folder),
    encloses=lambda folder: (folder / MANIFEST).is_file() and _manifest_is_ours(folder), precedence=3))


def manifest_content_hash(manifest: Mapping[str, Any]) -> str:
    """SHA256 (hex) of the canonical JSON of a manifest's :data:`CONTENT_KEYS` (see the module doc).

    Keys absent from the manifest are absent from the hashed object; ``provenance`` and any other key
    (``summary``, ``package_version`` of older stores, ...) never change the hash.
    """
    content = {k: manifest[k] for k in CONTENT_KEYS if k in manifest}
    params = content.get("parameters")
    if isinstance(params, Mapping):
        content["parameters"] = {k: v for k, v in params.items() if k not in ENVIRONMENT_PARAMETERS}
    return sha256_json(content)


_OWNER = ".owner"  # in partial and old folders: "<pid> <host>" of the writing process
_OWNERLESS_GRACE_S = 3600.0  # a folder without an owner file (older versions, or just created) is stale after this


def _write_owner(folder: Path) -> None:
    (folder / _OWNER).write_text(f"{os.getpid()} {socket.gethostname()}\n", encoding="utf-8")


def _owner_alive(folder: Path) -> bool:
    """Whether the process that made ``folder`` may still be using it (when unsure: yes)."""
    try:
        fields = (folder / _OWNER).read_text(encoding="utf-8").split()
    except OSError:
        try:
            return time.time() - folder.stat().st_mtime < _OWNERLESS_GRACE_S
        except OSError:
            return True
    try:
        pid, host = int(fields[0]), fields[1]
    except (ValueError, IndexError):
        return False
    if host != socket.gethostname():
        return True  # a folder shared with another machine: its processes cannot be checked from here
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, owned by another user
        return True
    return True


def recover_interrupted(path: str | os.PathLike) -> None:
    """Clean up after writers of the store ``path`` that died without cleaning up.

    ``.NAME.partial-*`` folders whose owner process is gone are removed. A ``.NAME.old-*`` folder whose owner
    is gone holds a store that was being replaced: when nothing is at ``path`` (the writer died between the
    two renames) that store is moved back to ``path``, else the folder is removed. Folders of live
    processes, of other machines, and recent ones without an owner file are left alone.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return
    prefix = f".{glob.escape(path.name)}."
    for entry in sorted(parent.glob(prefix + "old-*")):
        if not entry.is_dir() or _owner_alive(entry):
            continue
        old = entry / "store"
        if (old / MANIFEST).is_file() and not os.path.lexists(path):
            try:
                os.replace(old, path)
                log.warning("%s: restored the store that an interrupted overwrite had moved to %s", path, entry)
            except OSError as exc:
                log.warning("%s: could not restore %s: %s", path, old, exc)
                continue
        shutil.rmtree(entry, ignore_errors=True)
        log.info("removed %s, left by an interrupted store writer", entry)
    for entry in sorted(parent.glob(prefix + "partial-*")):
        if entry.is_dir() and not _owner_alive(entry):
            shutil.rmtree(entry, ignore_errors=True)
            log.info("removed %s, left by an interrupted store writer", entry)


def _require_regular(path: Path, store: Path) -> None:
    """Refuse anything that is not a regular file (a FIFO, a device, a folder) *before* opening it: opening a FIFO
    blocks until a writer appears, so a store reader must never try. Symbolic links to regular files are fine."""
    try:
        _, kind = file_kind(path)
    except FileNotFoundError:
        raise StoreError(f"store {store}: {path.name} is missing (expected a regular file)") from None
    except OSError as exc:
        raise StoreError(f"store {store}: {path.name} cannot be read: {exc.strerror or exc}") from None
    if kind is not None:
        raise StoreError(f"store {store}: {path} is {kind}, expected a regular file")


def _load_array(store: Path, name: str, mmap_mode: str | None = None) -> np.ndarray:
    """The array ``name`` of ``store`` (never unpickled), or one :class:`StoreError` line naming the file."""
    try:
        return load_npy(store / name, mmap_mode=mmap_mode)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreError(f"store {store}: {name} is damaged: {reason}; convert the store again") from None


def _empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not os.listdir(path)
    except OSError:
        return False


def _os_error(exc: OSError, what: str, path: Path) -> StoreError:
    """A :class:`StoreError` for an OSError met while writing the store ``path``, naming the file involved."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device (free some space or write the store elsewhere)"
    else:
        reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return StoreError(f"cannot {what} {path}: {reason}{where}")


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A .npy v1.0 header padded to exactly ``_NPY_HEADER_BYTES`` bytes."""
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    text = repr(d)
    body_len = _NPY_HEADER_BYTES - 10
    if len(text) + 1 > body_len:
        raise StoreError(f"segment array shape {shape} too large for the .npy header")
    text = text + " " * (body_len - len(text) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + text.encode("latin1")


class StoreWriter:
    """Stream segments into a new store at ``path``; :meth:`close` makes it appear atomically.

    Use as a context manager; an exception inside the block removes the partial store and leaves any
    existing store at ``path`` untouched.

    Args:
        path: final store directory.
        channels: number of leads ``C``.
        length: samples per segment ``L``.
        dtype: ``float32`` or ``float16``.
        overwrite: replace an existing store at ``path`` on success.
    """

    def __init__(self, path: str | os.PathLike, *, channels: int, length: int, dtype: str = "float32",
                 overwrite: bool = False) -> None:
        self.path = Path(path)
        self.channels = int(channels)
        self.length = int(length)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype("float32"), np.dtype("float16")):
            raise StoreError(f"store dtype must be float32 or float16, got {dtype}")
        check_output_dir(self.path, kind=STORE_LAYOUT)  # an empty folder or an ecgtransfer store, nothing else
        try:
            self._lock = FolderLock(self.path, what="segment store").acquire()
        except OSError as exc:
            raise _os_error(exc, "create the segment store", self.path) from exc
        try:
            recover_interrupted(self.path)
            if self.path.exists() and not overwrite and not _empty_dir(self.path):
                raise StoreError(f"{self.path} already exists (pass overwrite=True to replace it)")
        except BaseException:
            self._lock.release()
            raise
        self.overwrite = overwrite
        self._tmp: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.parent))
            os.chmod(self._tmp, umask_mode(folder=True))  # the store's folder: mkdtemp's 0700 was for the partial
            _write_owner(self._tmp)
            self._seg = open(self._tmp / "segments.npy", "wb")
            self._seg.write(b"\0" * _NPY_HEADER_BYTES)
        except OSError as exc:
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
            self._lock.release()
            raise _os_error(exc, "create the segment store", self.path) from exc
        self._n = 0
        self._cols: dict[str, list[np.ndarray]] = {k: [] for k in _ARRAYS}
        self._extras: dict[str, list[np.ndarray]] = {}
        self._closed = False

    def __len__(self) -> int:
        return self._n

    def append(self, segments: np.ndarray, labels: Sequence[int] | np.ndarray, *, record_id: str | Sequence[str],
               patient_id: str | Sequence[str], positions: Sequence[int] | np.ndarray,
               extras: Mapping[str, np.ndarray] | None = None) -> None:
        """Append a chunk (usually one record) of segments ``[n, C, L]`` with their metadata."""
        segments = np.asarray(segments)
        if segments.ndim != 3 or segments.shape[1:] != (self.channels, self.length):
            raise StoreError(f"expected segments of shape [n, {self.channels}, {self.length}], got {segments.shape}")
        n = segments.shape[0]
        if not np.all(np.isfinite(segments)):
            raise StoreError(f"segments of record {record_id!r} contain NaN or infinite values")
        given = np.asarray(labels)
        if given.dtype.kind not in "iu" and not (given.dtype.kind == "f" and np.all(given == np.round(given))):
            raise StoreError(f"labels of record {record_id!r} must be integer class indices, got {given.dtype} "
                             f"values such as {given.reshape(-1)[:3].tolist()}")
        labels = given.astype(np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        if labels.shape != (n,) or positions.shape != (n,):
            raise StoreError(f"expected {n} labels and positions, got {labels.shape} and {positions.shape}")
        rec = np.asarray([record_id] * n if isinstance(record_id, str) else record_id, dtype=str)
        pat = np.asarray([patient_id] * n if isinstance(patient_id, str) else patient_id, dtype=str)
        try:
            self._seg.write(np.ascontiguousarray(segments, dtype=self.dtype).tobytes())
        except OSError as exc:
            raise _os_error(exc, "write the segment store", self.path) from exc
        self._cols["labels"].append(labels)
        self._cols["positions"].append(positions)
        self._cols["record_ids"].append(rec.reshape(n))
        self._cols["patient_ids"].append(pat.reshape(n))
        extras = dict(extras or {})
        if self._n and set(extras) != set(self._extras):
            raise StoreError(f"extras {sorted(extras)} differ from earlier chunks {sorted(self._extras)}")
        for name, arr in extras.items():
            arr = np.asarray(arr)
            if arr.shape[0] != n:
                raise StoreError(f"extra {name!r} has {arr.shape[0]} rows, expected {n}")
            self._extras.setdefault(name, []).append(arr)
        self._n += n

    def close(self, *, database: str, version: str, task: str, fs: float, lead_names: Sequence[str],
              class_names: Sequence[str], source_files: Mapping[str, str] | None = None,
              parameters: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
              **manifest_extra: Any) -> "SegmentStore":
        """Finish the store: write the arrays and the manifest, then rename into place.

        ``provenance`` (for example the source folder and the number of workers) goes to
        ``manifest["provenance"]`` beside ``package_version`` and ``created``; it is not part of
        :attr:`SegmentStore.manifest_hash`. Other keyword arguments become top-level manifest entries.
        """
        if self._closed:
            raise StoreError("store writer already closed")
        if self._n == 0:
            self.abort()
            raise StoreError(f"no segments were produced for {self.path}; nothing written")
        shape = (self._n, self.channels, self.length)
        labels = np.concatenate(self._cols["labels"])
        if labels.min() < 0 or labels.max() >= len(class_names):
            raise StoreError(f"labels out of range for {len(class_names)} classes")
        try:
            self._write_arrays(shape)
        except OSError as exc:
            raise _os_error(exc, "write the segment store", self.path) from exc
        manifest = {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "database": database,
            "version": version,
            "task": task,
            "fs": float(fs),
            "lead_names": list(lead_names),
            "shape": list(shape),
            "dtype": self.dtype.name,
            "class_names": list(class_names),
            "source_files": dict(source_files or {}),
            "parameters": dict(parameters or {}),
            "extras": sorted(self._extras),
            **manifest_extra,
            "provenance": {
                "package_version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                **dict(provenance or {}),
            },
        }
        try:
            atomic_write_json(self._tmp / MANIFEST, manifest)
            fsync_dir(self._tmp)
            self._move_into_place()
        except OSError as exc:
            raise _os_error(exc, "write the segment store", self.path) from exc
        self._closed = True
        self._lock.release()
        return SegmentStore(self.path)

    def _write_arrays(self, shape: tuple[int, int, int]) -> None:
        """Finish ``segments.npy`` (its real header) and write the other arrays into the partial folder."""
        self._seg.seek(0)
        self._seg.write(_npy_header(shape, self.dtype))
        self._seg.flush()
        os.fsync(self._seg.fileno())
        self._seg.close()
        for key in _ARRAYS:
            arr = np.concatenate(self._cols[key])
            if arr.dtype.kind == "U":
                arr = arr.astype(str)
            atomic_save_npy(self._tmp / f"{key}.npy", arr)
        for name, chunks in self._extras.items():
            atomic_save_npy(self._tmp / f"extra_{name}.npy", np.concatenate(chunks))

    def _move_into_place(self) -> None:
        """Rename the complete partial folder to ``path`` (an existing store goes aside, then is removed)."""
        (self._tmp / _OWNER).unlink()
        if self.path.exists():
            check_output_dir(self.path, kind=STORE_LAYOUT)  # again: files may have been added while converting
            trash = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-", dir=self.path.parent))
            try:
                _write_owner(trash)
                os.replace(self.path, trash / "store")
            except OSError:  # the store cannot be moved aside (read-only): it stays where it is, and so no .old-*
                shutil.rmtree(trash, ignore_errors=True)
                raise
            try:
                os.replace(self._tmp, self.path)
            except OSError:
                os.replace(trash / "store", self.path)  # put the previous store back
                shutil.rmtree(trash, ignore_errors=True)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Remove the partial store; an existing store at the final path is untouched."""
        if not self._seg.closed:
            try:
                self._seg.close()
            except OSError:  # a failed flush (no space left): the folder is removed anyway
                pass
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True
        self._lock.release()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._closed:
            self.abort()


def write_store(path: str | os.PathLike, segments: np.ndarray, labels: Sequence[int] | np.ndarray, *,
                record_ids: Sequence[str], patient_ids: Sequence[str], positions: Sequence[int] | np.ndarray,
                class_names: Sequence[str], fs: float, lead_names: Sequence[str], database: str = "custom",
                version: str = "0", task: str = "custom", dtype: str = "float32", overwrite: bool = False,
                extras: Mapping[str, np.ndarray] | None = None, **manifest: Any) -> "SegmentStore":
    """Write in-memory segments ``[N, C, L]`` as a store in one call (small data, tests, notebooks)."""
    segments = np.asarray(segments)
    if segments.ndim != 3:
        raise StoreError(f"expected segments of shape [N, C, L], got {segments.shape}")
    with StoreWriter(path, channels=segments.shape[1], length=segments.shape[2], dtype=dtype,
                     overwrite=overwrite) as w:
        w.append(segments, labels, record_id=list(record_ids), patient_id=list(patient_ids), positions=positions,
                 extras=extras)
        return w.close(database=database, version=version, task=task, fs=fs, lead_names=lead_names,
                       class_names=class_names, **manifest)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_manifest(manifest: Any, path: str | os.PathLike) -> None:
    """Raise one :class:`StoreError` line naming ``path`` unless ``manifest`` (parsed JSON) is a usable store
    manifest: a JSON object of :data:`STORE_FORMAT`, a readable ``format_version``, ``shape`` ``[N, C, L]``,
    ``class_names`` (distinct strings), ``fs`` (positive), ``lead_names`` (strings) and, when present, ``dtype``,
    ``extras``, ``parameters``, ``source_files``, ``patients_known`` and ``databases`` of the right types."""
    def bad(what: str) -> StoreError:
        return StoreError(f"{path}: {what}; the store manifest is damaged (convert the store again)")

    if not isinstance(manifest, dict):
        raise bad(f"expected a JSON object, found a {type(manifest).__name__}")
    if manifest.get("format") != STORE_FORMAT:
        raise StoreError(f"{path}: expected format {STORE_FORMAT!r}, found {manifest.get('format')!r}")
    version = manifest.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise bad(f"format_version must be a non-negative integer, found {version!r}")
    if version > STORE_FORMAT_VERSION:
        raise StoreError(f"{path}: store format version {version} is newer than this ecgtransfer supports "
                         f"({STORE_FORMAT_VERSION}); upgrade ecgtransfer")
    for key in ("shape", "class_names", "fs", "lead_names"):
        if key not in manifest:
            raise bad(f"the key {key!r} is missing")
    shape = manifest["shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                 and v >= 0 for v in shape)):
        raise bad(f"shape must be [N, C, L] (three non-negative integers), found {shape!r}")
    names = manifest["class_names"]
    if not (isinstance(names, list) and names and all(isinstance(c, str) and c for c in names)
            and len(set(names)) == len(names)):
        raise bad(f"class_names must be a non-empty list of distinct names, found {names!r}")
    fs = manifest["fs"]
    if not (_is_number(fs) and math.isfinite(fs) and fs > 0):
        raise bad(f"fs must be a positive sampling rate in Hz, found {fs!r}")
    leads = manifest["lead_names"]
    if not (isinstance(leads, list) and all(isinstance(x, str) for x in leads)):
        raise bad(f"lead_names must be a list of lead names, found {leads!r}")
    if "dtype" in manifest and manifest["dtype"] not in ("float32", "float16"):
        raise bad(f"dtype must be 'float32' or 'float16', found {manifest['dtype']!r}")
    extras = manifest.get("extras", [])
    if not (isinstance(extras, list) and all(isinstance(x, str) and x and "/" not in x and "\\" not in x
                                             and x not in (".", "..") for x in extras)):
        raise bad(f"extras must be a list of names, found {extras!r}")
    for key in ("parameters", "source_files", "provenance"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise bad(f"{key} must be a JSON object, found {manifest[key]!r}")
    if manifest.get("patients_known") not in (None, True, False):
        raise bad(f"patients_known must be true, false or absent, found {manifest['patients_known']!r}")
    for key in ("database", "version", "task"):
        if key in manifest and not isinstance(manifest[key], str):
            raise bad(f"{key} must be a string, found {manifest[key]!r}")
    if "databases" in manifest:
        dbs = manifest["databases"]
        if not (isinstance(dbs, list) and dbs and all(isinstance(e, dict) and isinstance(e.get("database"), str)
                                                      and e["database"] for e in dbs)):
            raise bad(f"databases must be a non-empty list of objects naming their database, found {dbs!r}")


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Labels must be integers in ``[0, num_classes)`` (a float or negative label is a damaged store)."""
    if labels.dtype.kind not in "iu":
        raise StoreError(f"{path} holds {labels.dtype} labels, expected integers (class indices); the store is "
                         "damaged (convert it again)")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise StoreError(f"{path}: labels must be class indices in [0, {num_classes}), found values from "
                         f"{int(labels.min())} to {int(labels.max())}; the store is damaged (convert it again)")


def _check_targets(arr: np.ndarray, num_classes: int, path: Path) -> None:
    """A multi-hot matrix ``[N, K]`` of zeros and ones, or one :class:`StoreError` line naming the file."""
    if arr.ndim != 2 or arr.shape[1] != num_classes or arr.dtype.kind not in "iub":
        raise StoreError(f"{path} has shape {arr.shape} and dtype {arr.dtype}, expected a [N, {num_classes}] "
                         "multi-hot integer matrix; the store is damaged (convert it again)")
    if arr.size and int(np.max(arr)) > 1 or arr.size and int(np.min(arr)) < 0:
        raise StoreError(f"{path} holds values other than 0 and 1; expected multi-hot targets (convert it again)")


@dataclass(frozen=True)
class StoreInfo:
    """Counts of a store, as ``ecgtransfer info`` prints them."""

    n_segments: int
    shape: tuple[int, int, int]
    fs: float
    classes: dict[str, int]
    records: dict[str, dict[str, int]]
    patients: dict[str, dict[str, int]]
    #: database -> ``{"segments", "records", "patients", "classes"}`` (one entry for a single-database store)
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: multilabel stores: positives per level, label and fold (:meth:`SegmentStore.level_counts`)
    levels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"n_segments": self.n_segments, "shape": list(self.shape), "fs": self.fs, "classes": self.classes,
               "records": self.records, "patients": self.patients, "databases": self.databases}
        if self.levels:
            out["levels"] = self.levels
        return out


class SegmentStore:
    """Read a store: memory-mapped segments ``[N, C, L]`` and their labels and ids.

    Raises :class:`StoreError` naming the path when the directory is not a complete store.
    Indexing returns ``(segment [C, L] float32, label)``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if self.path.is_dir() and os.path.lexists(mpath):
            _require_regular(mpath, self.path)
        if not mpath.is_file():
            if self.path.is_dir():
                raise StoreError(f"{self.path} is not a complete segment store: no {MANIFEST} "
                                 "(an interrupted conversion? run convert again)")
            if self.path.exists():
                raise StoreError(f"{self.path} is a file, not a segment store directory (a store is a folder "
                                 f"holding {MANIFEST} and segments.npy)")
            raise StoreError(f"segment store {self.path} does not exist")
        try:
            raw = mpath.read_bytes()
        except OSError as exc:
            raise StoreError(f"{mpath} cannot be read: {exc.strerror or exc}") from exc
        try:
            manifest = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise StoreError(f"{mpath} is not valid JSON: {' '.join(str(exc).split())[:200]}") from None
        check_manifest(manifest, mpath)
        self.manifest: dict[str, Any] = manifest
        #: identifies the store's content and parameters, not where or when it was made
        #: (:func:`manifest_content_hash`)
        self.manifest_hash: str = manifest_content_hash(self.manifest)
        for name in ("segments", *_ARRAYS):
            _require_regular(self.path / f"{name}.npy", self.path)
        self.segments: np.ndarray = _load_array(self.path, "segments.npy", mmap_mode="r")
        self.labels: np.ndarray = _load_array(self.path, "labels.npy")
        self.record_ids: np.ndarray = _load_array(self.path, "record_ids.npy")
        self.patient_ids: np.ndarray = _load_array(self.path, "patient_ids.npy")
        self.positions: np.ndarray = _load_array(self.path, "positions.npy")
        expected = tuple(self.manifest["shape"])
        if tuple(self.segments.shape) != expected:
            raise StoreError(f"store {self.path}: segments.npy has shape {self.segments.shape}, manifest says {expected}")
        if self.segments.dtype.name != self.manifest.get("dtype", self.segments.dtype.name):
            raise StoreError(f"store {self.path}: segments.npy holds {self.segments.dtype.name}, manifest says "
                             f"{self.manifest['dtype']!r}")
        n = expected[0]
        for name in _ARRAYS:
            arr = getattr(self, name)
            if arr.ndim != 1 or arr.shape[0] != n:
                raise StoreError(f"store {self.path}: {name}.npy has shape {arr.shape}, expected [{n}]")
        _check_labels(self.labels, len(self.manifest["class_names"]), self.path / "labels.npy")
        if self.positions.dtype.kind not in "iu":
            raise StoreError(f"store {self.path}: positions.npy holds {self.positions.dtype}, expected integers")
        for name in self.manifest.get("extras", []):
            if not os.path.lexists(self.path / f"extra_{name}.npy"):
                raise StoreError(f"store {self.path}: the manifest lists the extra {name!r} but extra_{name}.npy "
                                 "is missing")
            _require_regular(self.path / f"extra_{name}.npy", self.path)

    # -- metadata -------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["class_names"])

    @property
    def fs(self) -> float:
        return float(self.manifest["fs"])

    @property
    def lead_names(self) -> list[str]:
        return list(self.manifest["lead_names"])

    @property
    def database(self) -> str:
        return str(self.manifest["database"])

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def databases(self) -> list[str]:
        """The databases of the segments, in store order: the entries of ``manifest["databases"]`` for a combined
        store, else ``[database]``."""
        entries = self.manifest.get("databases")
        if isinstance(entries, list) and entries:
            return [str(e["database"]) for e in entries]
        return [str(self.manifest.get("database", "unknown"))]  # older or hand-made manifests may name none

    @property
    def database_versions(self) -> list[tuple[str, str]]:
        """``(database, version)`` of each database of the store, in store order."""
        entries = self.manifest.get("databases")
        if isinstance(entries, list) and entries:
            return [(str(e["database"]), str(e.get("version", ""))) for e in entries]
        return [(self.databases[0], str(self.manifest.get("version", "")))]

    @property
    def qualified_patient_ids(self) -> np.ndarray:
        """Patient ids ``[N]`` qualified by database (:func:`qualify`), comparable across stores: as stored in a
        combined store, ``"<database>:<id>"`` of the stored id otherwise."""
        if isinstance(self.manifest.get("databases"), list):
            return np.asarray(self.patient_ids).astype(str)
        return np.asarray([qualify(self.databases[0], p) for p in self.patient_ids.tolist()], dtype=str)

    @property
    def segment_databases(self) -> np.ndarray:
        """The database of each segment ``[N]`` str: the qualifier of its record id in a combined store
        (:func:`split_qualified`), else the manifest's ``database`` for every segment."""
        cached = self.__dict__.get("_segment_databases")
        if cached is None:
            if isinstance(self.manifest.get("databases"), list):
                cached = np.asarray([split_qualified(r)[0] or "" for r in self.record_ids.tolist()], dtype=str)
            else:
                name = self.databases[0]
                cached = np.full(len(self), name, dtype=f"<U{max(len(name), 1)}")
            self.__dict__["_segment_databases"] = cached
        return cached

    @property
    def patients_known(self) -> bool:
        """Whether ``patient_ids`` are known to identify subjects (``manifest["patients_known"]``).

        Stores written before the key existed fall back to the catalog entry of their database; stores
        of databases outside the catalog (``write_store``) are taken at their word (True).
        """
        known = self.manifest.get("patients_known")
        if known is None:
            from ecgtransfer.physionet.catalog import DATABASES

            db = DATABASES.get(str(self.manifest.get("database")))
            known = True if db is None else db.patients_known
        return bool(known)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["shape"])  # type: ignore[return-value]

    @property
    def multilabel(self) -> bool:
        """Whether the store holds multi-hot targets (``manifest["multilabel"]``, the ``multilabel`` task): then
        :attr:`targets` is the label matrix and ``labels`` only the first positive column of each row."""
        return isinstance(self.manifest.get("multilabel"), dict)

    @property
    def targets(self) -> np.ndarray:
        """The multi-hot label matrix ``[N, K]`` (uint8, columns :attr:`class_names`) of a multilabel store."""
        if not self.multilabel:
            raise StoreError(f"store {self.path} holds one class per segment, not multi-hot targets (convert a "
                             "database with the multilabel task, ptb-xl)")
        name = str(self.manifest["multilabel"].get("targets", "targets"))
        arr = self.extra(name)
        _check_targets(arr, self.num_classes, self.path / f"extra_{name}.npy")
        return arr

    def level_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """A multilabel store's positives per level, label and ``strat_fold``: ``{level: {label: {fold: count}}}``
        (fold ``"all"`` is the total); empty for other stores."""
        if not self.multilabel:
            return {}
        entry = self.manifest["multilabel"]
        extras = set(self.manifest.get("extras", []))
        fold_name = str(entry.get("fold", ""))
        folds = np.asarray(self.extra(fold_name)) if fold_name in extras else np.zeros(len(self), dtype=np.int64)
        fold_masks = {fold: folds == fold for fold in np.unique(folds).tolist()}  # once, not once per label
        out: dict[str, dict[str, dict[str, int]]] = {}
        for level, names in dict(entry.get("levels", {})).items():
            name = f"{entry.get('targets', 'targets')}_{level}"
            if name not in extras:
                continue
            hot = np.asarray(self.extra(name))
            _check_targets(hot, len(names), self.path / f"extra_{name}.npy")
            table: dict[str, dict[str, int]] = {}
            for j, label in enumerate(names):
                col = hot[:, j].astype(bool)
                row = {"all": int(col.sum())}
                for fold, in_fold in fold_masks.items():
                    row[str(fold)] = int(col[in_fold].sum())
                table[str(label)] = row
            out[str(level)] = table
        return out

    def extra(self, name: str) -> np.ndarray:
        """A per-segment extra array ``[N, ...]`` (for example ``"rr"``), memory-mapped."""
        if name not in self.manifest.get("extras", []):
            raise StoreError(f"store {self.path} has no extra {name!r}; it has {self.manifest.get('extras', [])}")
        _require_regular(self.path / f"extra_{name}.npy", self.path)
        arr = _load_array(self.path, f"extra_{name}.npy", mmap_mode="r")
        if arr.ndim < 1 or arr.shape[0] != len(self):
            raise StoreError(f"store {self.path}: extra_{name}.npy has shape {arr.shape}, expected [{len(self)}, ...]")
        return arr

    # -- access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.asarray(self.segments[i], dtype=np.float32), int(self.labels[i])

    def batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Segments ``[len(indices), C, L]`` as float32 (sorted reads from the memory map)."""
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.float32)
        out[order] = self.segments[idx[order]]
        return out

    def info(self) -> StoreInfo:
        """Counts per class, per record and per patient (of a multilabel store: positives per label, a segment
        counting once in every label it has), per database, and a multilabel store's per-level counts."""
        hot = np.asarray(self.targets).astype(np.int64) if self.multilabel else None  # [N, K] multi-hot
        seg_db = self.segment_databases
        databases = {}
        for db in self.databases:
            mask = seg_db == db
            databases[db] = {"segments": int(mask.sum()), "records": int(len(np.unique(self.record_ids[mask]))),
                             "patients": int(len(np.unique(self.patient_ids[mask]))),
                             "classes": self._class_counts(mask, hot)}
        return StoreInfo(n_segments=len(self), shape=self.shape, fs=self.fs, classes=self._class_counts(None, hot),
                         records=self._counts_per(self.record_ids, hot),
                         patients=self._counts_per(self.patient_ids, hot), databases=databases,
                         levels=self.level_counts())

    def _class_counts(self, mask: np.ndarray | None, hot: np.ndarray | None) -> dict[str, int]:
        """Segments per class (every class, zeros too) of the segments ``mask`` selects (None: all); of a multilabel
        store (``hot [N, K]``), positives per label."""
        if hot is not None:
            counts = (hot if mask is None else hot[mask]).sum(0)
        else:
            labels = self.labels if mask is None else self.labels[mask]
            counts = np.bincount(labels.astype(np.int64), minlength=self.num_classes)
        return {c: int(counts[i]) for i, c in enumerate(self.class_names)}

    def _counts_per(self, ids: np.ndarray, hot: np.ndarray | None) -> dict[str, dict[str, int]]:
        """``{id: {class: count}}`` sorted by id, the classes an id has (in the order first met; of a multilabel
        store, its positives per label in label order, summed in one pass)."""
        names = self.class_names
        out: dict[str, dict[str, int]] = {}
        if hot is not None:
            keys, inverse = np.unique(ids, return_inverse=True)
            sums = np.zeros((len(keys), len(names)), dtype=np.int64)
            np.add.at(sums, inverse.reshape(-1), hot)
            for key, row in zip(keys.tolist(), sums):
                out[str(key)] = {c: int(row[i]) for i, c in enumerate(names) if row[i]}
        else:
            for key, lab in zip(ids.tolist(), self.labels.tolist()):
                d = out.setdefault(str(key), {})
                d[names[lab]] = d.get(names[lab], 0) + 1
        return dict(sorted(out.items()))

    def __repr__(self) -> str:
        return (f"SegmentStore({str(self.path)!r}, database={self.database!r}, task={self.task!r}, "
                f"shape={self.shape}, classes={self.class_names})")


def open_existing(out: str | os.PathLike, differs: Callable[[SegmentStore], str | None], *,
                  overwrite: bool) -> SegmentStore | None:
    """The store a writer finds at its output ``out``, when it is the very store asked for; the one open-or-refuse
    rule of the verbs that write a store (``convert``, ``combine``).

    ``differs(store)`` says what the store at ``out`` holds when it is another one (``"a different conversion
    (differs in: fs)"``), None when it is the very store asked for, which is returned. None is returned when
    nothing complete is at ``out`` (no manifest), or when ``overwrite`` allows replacing a damaged or different
    store; otherwise one :class:`StoreError` line: the damage, or ``"{out} holds {what}; pass overwrite=True
    (--overwrite) to replace it"``.
    """
    out = Path(out)
    if not (out / MANIFEST).is_file():  # nothing, or an empty folder: check_output_dir refused anything else
        return None
    try:
        store = SegmentStore(out)
    except StoreError:
        if overwrite:
            return None
        raise
    what = differs(store)
    if what is None:
        return store
    if overwrite:
        return None
    raise StoreError(f"{out} holds {what}; pass overwrite=True (--overwrite) to replace it")
