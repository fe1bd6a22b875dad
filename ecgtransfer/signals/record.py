"""Reading WFDB records with wfdb, and selecting leads by name.

Every failure to read a record (a malformed header, a missing signal file, a lead the record lacks) is
raised as :class:`~ecgtransfer.errors.RecordError` naming the record and the file involved.

Records often arrive without a ``SHA256SUMS.txt`` (fetched by other tools), so the header is checked against
what it describes: its sample count must be a non-negative number (:func:`read_header`), every signal file
must hold exactly that many samples in the declared format (:func:`record_files`), and where the header
carries per-signal checksums the samples read must add up to them (:func:`read_record`).
"""
from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgtransfer.errors import RecordError

log = logging.getLogger(__name__)

#: ``lead`` value that selects every lead of a record, in header order
ALL_LEADS = "all"
#: separates alternative names of one requested lead: ``"V1|V2|V4|V5"`` takes the first of them that a record has
#: (mitdb's second lead is V1 in most records, V5 in 114, V4 in 124, V2 or V5 in the paced ones)
LEAD_ALTERNATIVES = "|"
#: longest run of invalid (NaN) samples, in seconds, that :func:`read_record` fills by interpolation
MAX_GAP_S = 1.0
#: bits per sample of the WFDB signal formats whose file size follows from the sample count (the packed
#: 310/311 and the FLAC 5xx formats are not size-checked)
_FORMAT_BITS = {"8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16, "212": 12}

# the WFDB header grammar (header(5) of the WFDB software), checked strictly: wfdb.rdheader reads a damaged
# "1024" as "102" or a damaged gain "200" as "20" without complaint, which silently rescales the signal
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RECORD_LINE = re.compile(rf"(?P<name>[-\w]+)(?:/\d+)?\s+\d+(?:\s+{_NUM}(?:/{_NUM}(?:\({_NUM}\))?)?"
                          r"(?:\s+(?P<count>\S+)(?:\s+[\d:.]+(?:\s+[\d/]+)?)?)?)?\s*", re.ASCII)
_SIGNAL_LINE = re.compile(rf"\S+\s+\d+(?:x\d+)?(?::\d+)?(?:\+\d+)?(?:\s+{_NUM}(?:\(-?\d+\))?(?:/\S+)?"
                          r"(?:\s+\d+(?:\s+-?\d+(?:\s+-?\d+(?:\s+-?\d+(?:\s+\d+(?:\s+\S.*)?)?)?)?)?)?)?\s*",
                          re.ASCII)


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
        raise RecordError(f"record {rid}: malformed header {hea}: {_one_line(exc)}") from exc
    if getattr(header, "seg_name", None):
        raise RecordError(f"record {rid}: header {hea} describes a multi-segment record, which is not supported "
                          "(expected one signal file per record)")
    if not getattr(header, "sig_name", None) or not getattr(header, "fs", None) or \
            not getattr(header, "file_name", None):
        raise RecordError(f"record {rid}: header {hea} declares no signals or no sampling rate")
    unnamed = [i + 1 for i, name in enumerate(header.sig_name) if not name]
    if unnamed:
        raise RecordError(f"record {rid}: header {hea} gives no name (description) for signal "
                          f"{', '.join(map(str, unnamed))}; leads are chosen by name: the header is damaged")
    _check_header_text(hea, rid, header)
    return header


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _check_header_text(hea: Path, rid: str, header) -> None:
    """Every line of the header follows the WFDB grammar, in printable ASCII; the record line names the file's
    record and its sample count (4th field, optional) is a whole number that wfdb read as such.

    wfdb reads a negative count such as ``-5`` as "not given" and then takes every sample of the file."""
    try:
        text = hea.read_text(encoding="latin-1")
    except OSError as exc:
        raise RecordError(f"record {rid}: cannot read header {hea}: {exc.strerror or exc}") from None
    lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()
             and not ln.strip().startswith("#")]
    if not lines:
        raise RecordError(f"record {rid}: header {hea} has no record line")
    for k, (n, line) in enumerate(lines[:1 + len(header.sig_name)]):
        bad = next((c for c in line if not (" " <= c <= "~" or c == "\t")), None)
        grammar = _RECORD_LINE if k == 0 else _SIGNAL_LINE
        if bad is not None or not grammar.fullmatch(line):
            what = f"byte {ord(bad):#04x}" if bad is not None else "a field that is not what the WFDB format expects"
            raise RecordError(f"record {rid}: line {n} of header {hea} has {what}: {line[:80]!r}; the header is "
                              "damaged: download the record again")
    first = _RECORD_LINE.fullmatch(lines[0][1])
    assert first is not None
    if first["name"] != hea.stem:
        raise RecordError(f"record {rid}: header {hea} describes record {first['name']!r}, expected "
                          f"{hea.stem!r}: the header is damaged")
    count = first["count"]
    if count is None:
        return  # no sample count declared: wfdb takes it from the file size
    if count.startswith("-"):
        raise RecordError(f"record {rid}: header {hea} declares a negative sample count ({count}); expected the "
                          "number of samples per signal, a whole number >= 0: the header is damaged")
    if not count.isdigit() or header.sig_len is None or int(count) != header.sig_len:
        raise RecordError(f"record {rid}: header {hea} declares sample count {count!r}, which is not a whole number "
                          "of samples per signal: the header is damaged")


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
        _check_signal_size(f, rid, header, name, files[0])
        files.append(f)
    return files


def _check_signal_size(f: Path, rid: str, header, name: str, hea: Path) -> None:
    """``f`` must hold the header's sample count of every signal it stores, no more and no fewer.

    A header that says fewer samples than the file holds would silently cut the record short (a damaged
    ``650000`` read as ``650``); one that says more would read past the end."""
    if header.sig_len is None:
        return
    chans = [i for i, fn in enumerate(header.file_name) if fn == name]
    fmts = {str(header.fmt[i]) for i in chans}
    fmt = fmts.pop() if len(fmts) == 1 else None
    bits = _FORMAT_BITS.get(fmt) if fmt is not None else None
    if bits is None:
        log.debug("record %s: %s (format %s) is not size-checked", rid, f, ", ".join(sorted(fmts)) or fmt)
        return
    offsets = {int(header.byte_offset[i] or 0) for i in chans} if header.byte_offset else {0}
    offset = min(offsets)
    spf = header.samps_per_frame or [1] * len(header.file_name)
    frame_bits = bits * sum(int(spf[i] or 1) for i in chans)
    size = f.stat().st_size
    expected = offset + math.ceil(header.sig_len * frame_bits / 8)
    held = max(0, (size - offset) * 8 // frame_bits)
    where = f"{len(chans)} signal(s) in format {fmt}" + (f" after a {offset}-byte prefix" if offset else "")
    if size < expected:
        raise RecordError(f"record {rid}: signal file {f} holds {size} bytes but its header declares {header.sig_len} "
                          f"samples of {where} ({expected} bytes): the file is truncated or the header damaged; "
                          "download the record again")
    if held > header.sig_len:
        raise RecordError(f"record {rid}: header {hea} declares {header.sig_len} samples "
                          f"per signal but {f.name} holds {held} ({size} bytes, {where}): the header is damaged or "
                          "truncated; download the record again")


def select_leads(available: Sequence[str], requested: str | Sequence[str] | None, *,
                 record_id: str = "?") -> list[int]:
    """Indices into ``available`` of the ``requested`` lead names, in the requested order.

    Matching is exact first, then case-insensitive (``"II"`` finds ludb's ``"ii"``). A name may list
    alternatives separated by :data:`LEAD_ALTERNATIVES` (``"V1|V2|V4|V5"``): the first one the record has is
    taken. ``None`` or ``"all"`` selects every lead. Raises :class:`RecordError` naming the record and the leads
    it has.
    """
    available = list(available)
    if requested is None or (isinstance(requested, str) and requested.lower() == ALL_LEADS):
        return list(range(len(available)))
    names = [requested] if isinstance(requested, str) else list(requested)
    lower = [a.lower() for a in available]
    out = []
    for name in names:
        found = None
        for alt in name.split(LEAD_ALTERNATIVES):
            if alt in available:
                found = available.index(alt)
            elif alt.lower() in lower:
                found = lower.index(alt.lower())
            if found is not None:
                break
        if found is None:
            what = f"any of the leads {name!r}" if LEAD_ALTERNATIVES in name else f"lead {name!r}"
            raise RecordError(f"record {record_id} has no {what}; its leads are {', '.join(available)}")
        out.append(found)
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
    record_files(path, rid, header=header)  # present, and as long as the header says
    channels = sorted(set(idx))
    try:
        rec = wfdb.rdrecord(str(path), channels=channels, physical=False)
        _check_checksums(rec.d_signal, header, channels, rid, _header_path(path))
        p_signal = rec.dac(return_res=64)  # what rdrecord(physical=True) returns
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError(f"record {rid}: cannot read the signal of {path} ({', '.join(header.file_name or [])}): "
                          f"{_one_line(exc)}") from exc
    got = list(rec.sig_name)
    sig = np.asarray(p_signal, dtype=np.float64)
    if sig.ndim != 2 or sig.shape[0] == 0:
        raise RecordError(f"record {rid}: signal of {path} is empty")
    cols = [got.index(header.sig_name[i]) for i in idx]
    signal = np.ascontiguousarray(sig[:, cols].T)
    lead_names = tuple(header.sig_name[i] for i in idx)
    if not np.all(np.isfinite(signal)):
        # WFDB marks invalid samples as NaN; gaps up to MAX_GAP_S are replaced by linear interpolation
        signal = _fill_nan(signal, rid, float(rec.fs), lead_names)
    return RecordSignal(record_id=rid, signal=signal, fs=float(rec.fs), lead_names=lead_names)


def _check_checksums(d_signal: np.ndarray, header, channels: Sequence[int], rid: str, hea: Path) -> None:
    """Digital samples ``[n, len(channels)]`` must add up (mod 2**16) to the checksums the header declares.

    Headers with no checksums (all zero, as in challenge-2017) are not checked."""
    declared = list(header.checksum or [])
    if len(declared) != len(header.sig_name) or not any(declared):
        return
    d = np.asarray(d_signal)
    if d.ndim != 2 or d.shape[1] != len(channels):
        raise RecordError(f"record {rid}: read {d.shape} samples for {len(channels)} lead(s) of {hea}")
    if d.shape[0] != header.sig_len:
        return  # a partial read: the checksum covers the whole record
    for col, ch in enumerate(channels):
        got = int(np.sum(d[:, col], dtype=np.int64)) % 65536
        if got != int(declared[ch]) % 65536:
            raise RecordError(f"record {rid}: the samples of lead {header.sig_name[ch]} in {header.file_name[ch]} do "
                              f"not add up to the checksum {declared[ch]} that {hea} declares (found "
                              f"{got if got < 32768 else got - 65536}): the signal file or the header is damaged; "
                              "download the record again")


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
