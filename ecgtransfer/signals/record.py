"""Reading WFDB records with wfdb, and selecting leads by name.

Every failure to read a record (a malformed header, a missing signal file, a lead the record lacks) is
raised as :class:`~ecgtransfer.errors.RecordError` naming the record and the file involved.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgtransfer.errors import RecordError

log = logging.getLogger(__name__)

#: ``lead`` value that selects every lead of a record, in header order
ALL_LEADS = "all"
#: longest run of invalid (NaN) samples, in seconds, that :func:`read_record` fills by interpolation
MAX_GAP_S = 1.0


@dataclass(frozen=True)
class RecordSignal:
    """One record's signal in physical units (mV for the databases in the catalog).

    Attributes:
        record_id: the record's name (``"101"``, ``"A00009"``).
        signal: ``[C, n]`` float64, the selected leads in the requested order.
        fs: sampling rate in Hz.
        lead_names: names of the ``C`` leads as the header spells them.
    """

    record_id: str
    signal: np.ndarray
    fs: float
    lead_names: tuple[str, ...]


def _header_path(path: Path) -> Path:
    return path.with_name(path.name + ".hea")


def read_header(path: str | os.PathLike, record_id: str | None = None):
    """Read ``<path>.hea`` with :func:`wfdb.rdheader`; raises :class:`RecordError` naming the file.

    Args:
        path: record path without extension (``DATA/mitdb/1.0.0/101``).
        record_id: name used in messages (default: the path's last component).
    """
    import wfdb

    path = Path(path)
    rid = record_id or path.name
    hea = _header_path(path)
    if not hea.is_file():
        raise RecordError(f"record {rid}: header file {hea} is missing")
    try:
        header = wfdb.rdheader(str(path))
    except Exception as exc:  # wfdb raises ValueError, IndexError, ... on malformed headers
        raise RecordError(f"record {rid}: malformed header {hea}: {type(exc).__name__}: {exc}") from exc
    if not getattr(header, "sig_name", None) or not getattr(header, "fs", None):
        raise RecordError(f"record {rid}: header {hea} declares no signals or no sampling rate")
    return header


def record_files(path: str | os.PathLike, record_id: str | None = None, *, header=None) -> list[Path]:
    """The files a record's signal needs: its header and every signal file the header names.

    ``header`` is the record's already-read header (:func:`read_header`); None reads it.
    Raises :class:`RecordError` naming the record and the file when one is missing.
    """
    path = Path(path)
    rid = record_id or path.name
    if header is None:
        header = read_header(path, rid)
    files = [_header_path(path)]
    for name in dict.fromkeys(header.file_name or []):
        f = path.parent / name
        if not f.is_file():
            raise RecordError(f"record {rid}: signal file {f} named by its header is missing")
        files.append(f)
    return files


def select_leads(available: Sequence[str], requested: str | Sequence[str] | None, *,
                 record_id: str = "?") -> list[int]:
    """Indices into ``available`` of the ``requested`` lead names, in the requested order.

    Matching is exact first, then case-insensitive (``"II"`` finds ludb's ``"ii"``). ``None`` or
    ``"all"`` selects every lead. Raises :class:`RecordError` naming the record and the leads it has.
    """
    available = list(available)
    if requested is None or (isinstance(requested, str) and requested.lower() == ALL_LEADS):
        return list(range(len(available)))
    names = [requested] if isinstance(requested, str) else list(requested)
    lower = [a.lower() for a in available]
    out = []
    for name in names:
        if name in available:
            out.append(available.index(name))
        elif name.lower() in lower:
            out.append(lower.index(name.lower()))
        else:
            raise RecordError(f"record {record_id} has no lead {name!r}; its leads are {', '.join(available)}")
    return out


def read_record(path: str | os.PathLike, leads: str | Sequence[str] | None = None,
                record_id: str | None = None) -> RecordSignal:
    """Read a record's signal ``[C, n]`` in physical units, selecting ``leads`` by name.

    Args:
        path: record path without extension.
        leads: one lead name, a list of names, or ``None``/``"all"`` for every lead.
        record_id: name used in messages and in the result (default: the path's last component).

    Leads are always selected by name, never by position: mitdb 114 stores V5 first and MLII second.
    """
    import wfdb

    path = Path(path)
    rid = record_id or path.name
    header = read_header(path, rid)
    idx = select_leads(header.sig_name, leads, record_id=rid)
    for name in dict.fromkeys(header.file_name or []):
        f = path.parent / name
        if not f.is_file():
            raise RecordError(f"record {rid}: signal file {f} named by its header is missing")
    try:
        rec = wfdb.rdrecord(str(path), channels=sorted(set(idx)), physical=True)
    except Exception as exc:
        raise RecordError(f"record {rid}: cannot read the signal of {path} ({', '.join(header.file_name or [])}): "
                          f"{type(exc).__name__}: {exc}") from exc
    got = list(rec.sig_name)
    sig = np.asarray(rec.p_signal, dtype=np.float64)
    if sig.ndim != 2 or sig.shape[0] == 0:
        raise RecordError(f"record {rid}: signal of {path} is empty")
    cols = [got.index(header.sig_name[i]) for i in idx]
    signal = np.ascontiguousarray(sig[:, cols].T)
    lead_names = tuple(header.sig_name[i] for i in idx)
    if not np.all(np.isfinite(signal)):
        # WFDB marks invalid samples as NaN; gaps up to MAX_GAP_S are replaced by linear interpolation
        signal = _fill_nan(signal, rid, float(rec.fs), lead_names)
    return RecordSignal(record_id=rid, signal=signal, fs=float(rec.fs), lead_names=lead_names)


def _nan_runs(bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of True in the 1-D boolean ``bad``."""
    edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    return starts, np.flatnonzero(edges == -1) - starts


def _fill_nan(signal: np.ndarray, rid: str, fs: float, lead_names: Sequence[str]) -> np.ndarray:
    """Interpolate linearly over invalid samples of ``signal`` ``[C, n]``; refuse gaps longer than MAX_GAP_S."""
    out = signal.copy()
    filled = []
    for c in range(out.shape[0]):
        bad = ~np.isfinite(out[c])
        if not bad.any():
            continue
        if bad.all():
            raise RecordError(f"record {rid}: lead {lead_names[c]} has no valid samples")
        starts, lengths = _nan_runs(bad)
        k = int(np.argmax(lengths))
        if lengths[k] > MAX_GAP_S * fs:
            raise RecordError(f"record {rid}: lead {lead_names[c]} has {lengths[k]} invalid samples in a row "
                              f"({lengths[k] / fs:.3g} s from sample {starts[k]}); gaps longer than {MAX_GAP_S:g} s "
                              "are not interpolated: choose another lead or leave the record out")
        good = np.flatnonzero(~bad)
        out[c, bad] = np.interp(np.flatnonzero(bad), good, out[c, good])
        filled.append(f"{lead_names[c]}: {int(bad.sum())} in {len(starts)} gap(s)")
    log.warning("record %s: interpolated invalid (NaN) samples, %s", rid, "; ".join(filled))
    return out
