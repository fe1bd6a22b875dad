"""Rhythm segmentation: fixed windows or whole records padded/cropped, and per-record rhythm labels.

Labels:

- ``challenge-2017``: one label per record from ``training2017/REFERENCE.csv`` (``reference="v3"`` reads
  the relabelled ``REFERENCE-v3.csv``): ``N`` normal sinus rhythm, ``A`` atrial fibrillation, ``O`` other
  rhythm, ``~`` too noisy to classify.
- ``ludb``: the first rhythm listed in the ``Rhythms`` column of ``ludb.csv`` (later lines such as
  "Wandering atrial pacemaker" or "Aberrant conduction" are secondary findings). The text is normalised
  (first line, lower case, trailing full stop and surrounding spaces removed) and mapped to
  :data:`LUDB_RHYTHMS` (``rhythm_classes="fine"``, the default) or merged into ``sinus`` / ``atrial``
  (``rhythm_classes="coarse"``). An unknown rhythm text is an error naming the record.

:data:`RECORD_LABEL_READERS` holds a reader per label file kind, named by the catalog's
:class:`~ecgtransfer.physionet.catalog.RecordLabels` (``Database.record_labels``); :func:`record_labels` calls it.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ecgtransfer.errors import ConfigError, RecordError

CHALLENGE_2017_CLASSES: tuple[str, ...] = ("N", "A", "O", "~")
CHALLENGE_2017_REFERENCES = {"original": "REFERENCE.csv", "v3": "REFERENCE-v3.csv"}

#: normalised LUDB rhythm text -> fine class
LUDB_RHYTHMS: dict[str, str] = {
    "sinus rhythm": "SR",
    "sinus bradycardia": "SB",
    "sinus tachycardia": "ST",
    "sinus arrhythmia": "SA",
    "irregular sinus rhythm": "SA",
    "atrial fibrillation": "AF",
    "atrial flutter, typical": "AFL",
    "atrial flutter, atypical": "AFL",
    "atrial flutter": "AFL",
}
LUDB_FINE_CLASSES: tuple[str, ...] = ("SR", "SB", "ST", "SA", "AF", "AFL")
LUDB_COARSE: dict[str, str] = {"SR": "sinus", "SB": "sinus", "ST": "sinus", "SA": "sinus", "AF": "atrial",
                               "AFL": "atrial"}
LUDB_COARSE_CLASSES: tuple[str, ...] = ("sinus", "atrial")
#: ludb's label file, in its version folder
LUDB_FILE = "ludb.csv"


def fixed_windows(signal: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``length`` samples every ``stride`` samples from ``signal`` ``[C, n]``.

    Only windows that fit entirely are kept (the tail shorter than a window is dropped), except that a
    record shorter than one window gives one window, zero-padded at the end, so no record is lost.

    Returns:
        ``segments`` ``[m, C, length]`` and ``starts`` int64 ``[m]`` (sample index of each window's start).
    """
    if length < 1 or stride < 1:
        raise ConfigError(f"window length and stride must be at least one sample, got {length} and {stride}")
    n = signal.shape[-1]
    if n < length:
        return pad_crop(signal, length)[None], np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n - length + 1, stride, dtype=np.int64)
    idx = starts[:, None] + np.arange(length)[None, :]
    return np.ascontiguousarray(np.transpose(signal[:, idx], (1, 0, 2))), starts


def pad_crop(signal: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` samples of ``signal`` ``[C, n]``, zero-padded at the end when shorter: ``[C, length]``."""
    c, n = signal.shape
    if n >= length:
        return np.ascontiguousarray(signal[:, :length])
    out = np.zeros((c, length), dtype=signal.dtype)
    out[:, :n] = signal
    return out


def challenge_2017_labels(path: str | os.PathLike) -> dict[str, str]:
    """Record -> label (``N``, ``A``, ``O``, ``~``) from a challenge-2017 ``REFERENCE*.csv``.

    Raises :class:`RecordError` naming the file when it is missing or holds an unknown label.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"label file {path} is missing (challenge-2017 labels come from it; download it "
                          "with `ecgtransfer download challenge-2017`)")
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or not row[0].strip():
                continue
            if len(row) < 2:
                raise RecordError(f"{path} line {lineno}: expected 'record,label', found {','.join(row)!r}")
            rec, lab = row[0].strip(), row[1].strip()
            if lab not in CHALLENGE_2017_CLASSES:
                raise RecordError(f"{path} line {lineno}: unknown label {lab!r} for record {rec}; expected one of "
                                  f"{' '.join(CHALLENGE_2017_CLASSES)}")
            out[rec] = lab
    return out


def normalise_rhythm(text: str) -> str:
    """Canonical form of a LUDB rhythm text: first line, lower case, no trailing full stop, single spaces."""
    first = next((line for line in str(text).splitlines() if line.strip()), "")
    return " ".join(first.strip().rstrip(".").strip().lower().split())


def ludb_rhythm_class(text: str, scheme: str = "fine", record_id: str = "?") -> str:
    """The class of a LUDB rhythm text under ``scheme`` (``"fine"`` or ``"coarse"``)."""
    key = normalise_rhythm(text)
    fine = LUDB_RHYTHMS.get(key)
    if fine is None:
        raise RecordError(f"ludb record {record_id}: unknown rhythm {text!r} (normalised {key!r}); known: "
                          f"{', '.join(sorted(LUDB_RHYTHMS))}")
    return LUDB_COARSE[fine] if scheme == "coarse" else fine


def ludb_classes(scheme: str = "fine") -> tuple[str, ...]:
    """Class names of a LUDB rhythm scheme."""
    if scheme not in ("fine", "coarse"):
        raise ConfigError(f"unknown ludb rhythm class scheme {scheme!r}; expected 'fine' or 'coarse'")
    return LUDB_COARSE_CLASSES if scheme == "coarse" else LUDB_FINE_CLASSES


def ludb_rhythms(path: str | os.PathLike) -> dict[str, str]:
    """Record id (``"1"``) -> rhythm text as written in ``ludb.csv`` (columns ``ID`` and ``Rhythms``).

    Map a text to its class with :func:`ludb_rhythm_class`.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise RecordError(f"label file {path} is missing (ludb rhythm labels come from it; download it with "
                          "`ecgtransfer download ludb`)")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise RecordError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    missing = {"ID", "Rhythms"} - set(table.columns)
    if missing:
        raise RecordError(f"{path}: expected columns ID and Rhythms, missing {', '.join(sorted(missing))}")
    return {str(rid).strip(): str(text) for rid, text in zip(table["ID"], table["Rhythms"])}


#: ``(class names, record id -> class index, the label files read)``: a database's record labels
RecordLabelTable = tuple[tuple[str, ...], dict[str, int], list[Path]]


def _challenge_2017_record_labels(folder: Path, reference: str) -> RecordLabelTable:
    """challenge-2017's labels from ``folder`` (``training2017``): ``reference`` ``original`` or ``v3``."""
    if reference not in CHALLENGE_2017_REFERENCES:
        raise ConfigError(f"unknown challenge-2017 reference {reference!r}; expected "
                          f"{' or '.join(CHALLENGE_2017_REFERENCES)}")
    path = folder / CHALLENGE_2017_REFERENCES[reference]
    labels = challenge_2017_labels(path)
    names = CHALLENGE_2017_CLASSES
    return names, {r: names.index(c) for r, c in labels.items()}, [path]


def _ludb_record_labels(folder: Path, rhythm_classes: str) -> RecordLabelTable:
    """ludb's labels from ``folder``'s ``ludb.csv`` under the class scheme ``rhythm_classes`` (fine or coarse)."""
    names = ludb_classes(rhythm_classes)
    path = folder / LUDB_FILE
    texts = ludb_rhythms(path)
    return names, {r: names.index(ludb_rhythm_class(t, rhythm_classes, r)) for r, t in texts.items()}, [path]


#: reader name (``RecordLabels.reader`` in the catalog) -> ``reader(folder, choice)``: the folder holding the label
#: file and the value of the ``convert`` parameter named by ``RecordLabels.option``
RECORD_LABEL_READERS: dict[str, Callable[[Path, str], RecordLabelTable]] = {
    "challenge-2017": _challenge_2017_record_labels,
    "ludb": _ludb_record_labels,
}


def record_labels(reader: str, folder: str | os.PathLike, choice: str) -> RecordLabelTable:
    """``(class names, record id -> class index, label files)`` read by the reader ``reader`` of
    :data:`RECORD_LABEL_READERS` from ``folder`` (the database's record folder), with ``choice`` the value of its
    ``convert`` parameter (challenge-2017: the reference file; ludb: the class scheme)."""
    return RECORD_LABEL_READERS[reader](Path(folder), choice)
