"""The one reader of a run's (and a bench's) own files: ``config.json``, ``run.json``, ``store_manifest.json``,
``split.npz``, ``results.json``, and the checks of what a checkpoint holds.

Every reader validates what it returns and turns any damage (a truncated file, garbage bytes, a FIFO, JSON nested
deeper than Python can parse, a key missing, a value of the wrong type, an index out of range) into one
:class:`~ecgtransfer.errors.TrainingError` line (or the ``error`` class given) naming the file and what was
expected, never another exception. Callers read these files only through here.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ecgtransfer._npy import load as load_npy
from ecgtransfer._outdir import FolderLayout, register_layout
from ecgtransfer._validate import file_kind
from ecgtransfer.errors import EcgTransferError, StoreError, TrainingError

SPLIT_PARTS = ("train", "val", "test")
#: the most bytes a run's JSON file may have (they are a few kB; a bigger one is not ours)
MAX_JSON_BYTES = 64 << 20

#: every file a training run owns (see :mod:`ecgtransfer.training.engine`); a folder holding any of them is a run
RUN_FILES = frozenset({"config.json", "run.json", "store_manifest.json", "split.npz", "metrics.jsonl", "metrics.csv",
                       "best.pt", "last.pt", "test_metrics.json", "confusion_test.png", "report.md"})
#: the run files that no other program writes: a folder holding one is a run whatever else it holds
RUN_MARKERS = frozenset({"run.json", "store_manifest.json", "split.npz", "metrics.jsonl", "best.pt", "last.pt"})


def _is_run(folder: Path) -> bool:
    """A run seen from inside: its own records, or its config beside a checkpoint (a stray last.pt alone makes
    no run)."""
    checkpoint = (folder / "best.pt").exists() or (folder / "last.pt").exists()
    return (folder / "run.json").is_file() or (folder / "store_manifest.json").is_file() or (
        checkpoint and (folder / "config.json").is_file())


#: what a run folder holds, for the output-folder rule (:mod:`ecgtransfer._outdir`): a run may hold the user's
#: files too, so one of :data:`RUN_MARKERS` is what makes a folder a run
RUN_LAYOUT = register_layout(FolderLayout("run", "an ecgtransfer training run", names=RUN_FILES, only_own=False,
                                          markers=RUN_MARKERS, encloses=_is_run, precedence=0))


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def _regular(path: Path, what: str, error: type[EcgTransferError]) -> None:
    try:
        st, kind = file_kind(path)
    except FileNotFoundError:
        raise error(f"{path}: the {what} is missing") from None
    except OSError as exc:
        raise error(f"{path}: the {what} cannot be read ({exc.strerror or exc})") from None
    if kind is not None:
        raise error(f"{path}: the {what} is not a regular file")
    if st.st_size > MAX_JSON_BYTES and path.suffix == ".json":
        raise error(f"{path}: the {what} has {st.st_size} bytes, expected a small JSON file; it is damaged")


def read_json_object(path: str | os.PathLike, what: str, *,
                     error: type[EcgTransferError] = TrainingError) -> dict[str, Any]:
    """The JSON object in ``path`` (the run's ``what``: "config", "run.json", ...), or one ``error`` line."""
    path = Path(path)
    _regular(path, what, error)
    try:
        raw = path.read_bytes()
        obj = json.loads(raw)
    except OSError as exc:
        raise error(f"{path}: the {what} cannot be read ({exc.strerror or exc})") from None
    except RecursionError:
        raise error(f"{path}: the {what} is nested too deeply to be a JSON object of ecgtransfer; it is "
                    "damaged") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise error(f"{path}: the {what} is not valid JSON ({_short(exc)}); it is damaged") from None
    if not isinstance(obj, dict):
        raise error(f"{path}: the {what} holds a JSON {type(obj).__name__}, expected an object; it is damaged")
    return obj


def read_split(path: str | os.PathLike, n_segments: int | None, *, parts: Sequence[str] = SPLIT_PARTS,
               error: type[EcgTransferError] = TrainingError) -> dict[str, np.ndarray]:
    """The ``parts`` of a run's ``split.npz`` as int64 index arrays, checked: each part present, 1-D, of integers,
    within ``[0, n_segments)`` (when known) and without repeats; else one ``error`` line naming the file."""
    path = Path(path)
    _regular(path, "split file", error)
    out: dict[str, np.ndarray] = {}
    try:
        with load_npy(path, archive=True) as z:
            if not hasattr(z, "files"):
                raise error(f"{path}: expected a .npz archive of index arrays {list(parts)}, found a single array")
            for part in parts:
                if part not in z.files:
                    raise error(f"{path}: the split part {part!r} is missing (it has {sorted(z.files)}); "
                                "the run directory is damaged")
                out[part] = z[part]
    except EcgTransferError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
        raise error(f"{path}: not a readable split archive ({_short(exc)}); the run directory is damaged") from None
    for part, arr in out.items():
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise error(f"{path}: the split part {part!r} is {arr.dtype} of shape {arr.shape}, expected a 1-D "
                        "array of segment indices; the run directory is damaged")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or (n_segments is not None and arr.max() >= n_segments)):
            bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
            raise error(f"{path}: the split part {part!r} holds the index {bad}, expected 0 to "
                        f"{'n - 1' if n_segments is None else n_segments - 1}; the split does not belong to "
                        "this store or is damaged")
        if len(np.unique(arr)) != len(arr):
            raise error(f"{path}: the split part {part!r} repeats indices; the run directory is damaged")
        out[part] = arr
    return out


def class_weights(run: Mapping[str, Any], n_classes: int, path: str | os.PathLike) -> np.ndarray:
    """``run.json``'s ``class_weights`` (ones when absent): ``n_classes`` finite non-negative numbers, or one
    :class:`TrainingError` line."""
    raw = run.get("class_weights")
    if raw is None:
        return np.ones(n_classes, dtype=np.float64)
    if not (isinstance(raw, list) and len(raw) == n_classes
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                    for v in raw)):
        shown = repr(raw) if len(repr(raw)) <= 80 else repr(raw)[:77] + "..."
        raise TrainingError(f"{path}: class_weights must be a list of {n_classes} finite non-negative numbers, "
                            f"found {shown}; the run directory is damaged")
    return np.asarray(raw, dtype=np.float64)


def check_store_manifest(manifest: Mapping[str, Any], path: str | os.PathLike) -> None:
    """A run's copy of its store's manifest, checked as the store reader checks one (one TrainingError line)."""
    from ecgtransfer.store import check_manifest

    try:
        check_manifest(manifest, path)
    except StoreError as exc:
        raise TrainingError(str(exc)) from None


def check_checkpoint_fields(ckpt: Mapping[str, Any], path: str | os.PathLike) -> None:
    """The metadata of a checkpoint that readers use, of the right types: ``format_version`` a non-negative
    integer, ``class_names`` non-empty strings, ``excluded_classes`` a list of strings, ``world_size`` a positive
    integer, ``store_manifest_hash`` a string (each when present); else one TrainingError line."""
    def bad(key: str, expected: str) -> TrainingError:
        shown = repr(ckpt.get(key))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return TrainingError(f"checkpoint {path}: {key} must be {expected}, found {shown}; it is damaged")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if "format_version" in ckpt and not (is_int(ckpt["format_version"]) and ckpt["format_version"] >= 0):
        raise bad("format_version", "a non-negative integer")
    names = ckpt.get("class_names")
    if "class_names" in ckpt and not (isinstance(names, list) and names
                                      and all(isinstance(c, str) and c for c in names)):
        raise bad("class_names", "a non-empty list of class names")
    excluded = ckpt.get("excluded_classes", [])
    if not (isinstance(excluded, list) and all(isinstance(c, str) for c in excluded)):
        raise bad("excluded_classes", "a list of class names")
    if "world_size" in ckpt and not (is_int(ckpt["world_size"]) and ckpt["world_size"] >= 1):
        raise bad("world_size", "a positive integer")
    if "store_manifest_hash" in ckpt and not isinstance(ckpt["store_manifest_hash"], str):
        raise bad("store_manifest_hash", "a string")
