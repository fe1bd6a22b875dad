"""Reading the recordings researchers have: WFDB records, EDF/EDF+ files, CSV and NumPy exports.

:func:`open_recording` returns a :class:`Recording`: its sampling rate, lead names, length, and
``read(leads, start, stop) -> [C, stop - start]`` float64 in **mV**, which reads only that span (WFDB with
:func:`wfdb.rdrecord` ``sampfrom``/``sampto``, EDF with :mod:`pyedflib`, ``.npy`` memory-mapped), so long
Holter records can be processed in chunks with bounded memory. CSV files are parsed whole (with pandas, into
float64 columns; a file with a non-numeric cell is read again as text to name the cell).

=========  ===========================================  =============================  =====================
format     how it is recognised                         sampling rate                  units
=========  ===========================================  =============================  =====================
WFDB       a record path (``data/mitdb/1.0.0/100``, or   the header's                   the header's (mV, uV,
           with ``.hea``/``.dat``)                                                     V; converted to mV)
EDF/EDF+   ``.edf``                                     the signal headers' (selected  each signal's physical
                                                        leads must share one rate)     dimension (to mV)
CSV        ``.csv``: a header row naming the leads,     ``fs`` (``--fs``), or a        ``units`` (default
           one numeric column per lead; a column         ``time``/``time_s`` column    mV)
           ``time``/``time_s`` (seconds) is optional     in seconds
NumPy      ``.npy``: ``[n]`` or ``[n, C]`` (one column   ``fs`` (``--fs``)              ``units`` (default
           per lead), leads named ``0``, ``1``, ...                                    mV)
=========  ===========================================  =============================  =====================

Every failure is one :class:`~ecgtransfer.errors.RecordError` naming the file and what was expected: an
unreadable or empty file, a non-numeric CSV cell, an unknown unit, a ``fs`` that contradicts the file, a lead
the file lacks.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ecgtransfer._npy import load as load_npy
from ecgtransfer.errors import RecordError
from ecgtransfer.signals.record import ALL_LEADS, read_header, record_files, select_leads

log = logging.getLogger(__name__)

#: input formats :func:`open_recording` reads
FORMATS = ("wfdb", "edf", "csv", "npy")
#: physical units accepted, and their factor to mV (lower-case keys; "µ" and "u" both mean micro)
UNIT_TO_MV: dict[str, float] = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}
#: names of a CSV column holding the time of each row in seconds (not a lead)
TIME_COLUMNS = ("time", "time_s", "t", "seconds")
#: relative difference between a stated ``fs`` and the file's own rate that is refused
FS_TOLERANCE = 0.01


def unit_hint(span_mv: float, units: str | None, low: float, high: float) -> str | None:
    """The unit (``"uV"``, ``"mV"``, ``"V"``) in which values read as ``units`` (None: mV) would span between ``low``
    and ``high`` mV, given that they span ``span_mv`` mV as read; None if no other unit fits."""
    assumed = UNIT_TO_MV.get((units or "mV").strip().lower().replace(" ", ""), 1.0)
    raw = span_mv / assumed
    for name in ("mV", "uV", "V", "nV"):
        if UNIT_TO_MV[name.lower()] != assumed and low <= raw * UNIT_TO_MV[name.lower()] <= high:
            return name
    return None


def unit_factor(unit: str, *, where: str) -> float:
    """Factor from ``unit`` to mV; raises :class:`RecordError` naming ``where`` for an unknown unit."""
    key = unit.strip().lower().replace(" ", "")
    if key not in UNIT_TO_MV:
        raise RecordError(f"{where}: unit {unit!r} is not a voltage; expected mV, uV or V (pass --units to say "
                          "what the values are)")
    return UNIT_TO_MV[key]


@dataclass
class Recording:
    """An open recording: ``read(leads, start, stop)`` gives ``[len(leads), stop - start]`` float64 mV.

    Attributes:
        path: the file (or WFDB record path without extension).
        record_id: the name used in messages and tables (file name without extension).
        format: one of :data:`FORMATS`.
        fs: sampling rate in Hz.
        lead_names: every lead of the file, in file order.
        n_samples: samples per lead.
        annotation: the WFDB record path whose ``.atr`` holds reference beats, or None.
        units: the unit the values were read in (``--units``, or mV for CSV and ``.npy``); None where the file
            states its own units (WFDB, EDF).
    """

    path: Path
    record_id: str
    format: str
    fs: float
    lead_names: tuple[str, ...]
    n_samples: int
    annotation: Path | None = None
    #: the unit the values were taken to be in (``--units``, or mV for CSV and .npy); None: the file's own units
    units: str | None = None
    _read: Callable[[list[int], int, int], np.ndarray] = field(default=None, repr=False)  # type: ignore[assignment]
    _on_select: Callable[[Recording, list[int]], None] | None = field(default=None, repr=False)

    def read(self, leads: Sequence[int], start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` of the leads (indices into :attr:`lead_names`): ``[C, stop - start]`` mV."""
        stop = self.n_samples if stop is None else min(int(stop), self.n_samples)
        start = max(0, int(start))
        if stop <= start:
            return np.zeros((len(leads), 0))
        x = np.asarray(self._read(list(leads), start, stop), dtype=np.float64)
        if not np.all(np.isfinite(x)):
            x = _fill_invalid(x, self, start)
        return x

    def leads_for(self, wanted: Sequence[str] | None, store_leads: Sequence[str]) -> list[int]:
        """Indices of the leads to feed a model trained on ``store_leads``.

        ``wanted`` (``--lead``) names the file's leads, in the store's order; without it the store's own lead
        names are looked up, and a single-lead file is used as it is. Raises :class:`RecordError` naming the
        file, the leads it has and how many are needed.
        """
        where = f"{self.path}"
        need = len(store_leads)
        if wanted:
            if len(wanted) != need:
                raise RecordError(f"{where}: --lead names {len(wanted)} lead(s) ({', '.join(wanted)}) but the model "
                                  f"was trained on {need} ({', '.join(store_leads)})")
            return select_leads(self.lead_names, list(wanted), record_id=where)
        try:
            return select_leads(self.lead_names, list(store_leads), record_id=where)
        except RecordError:
            if len(self.lead_names) == need:
                log.warning("%s has no lead named %s; using its lead(s) %s (pass --lead to choose)", where,
                            ", ".join(store_leads), ", ".join(self.lead_names))
                return list(range(need))
            raise RecordError(f"{where} has no lead {', '.join(store_leads)} (the model's); its leads are "
                              f"{', '.join(self.lead_names)}: pass --lead NAME") from None


def _fill_invalid(x: np.ndarray, rec: Recording, start: int) -> np.ndarray:
    """Linear interpolation over NaN samples (WFDB's invalid-sample marker), as :func:`read_record` does."""
    from ecgtransfer.signals.record import MAX_GAP_S

    out = x.copy()
    for c in range(out.shape[0]):
        bad = ~np.isfinite(out[c])
        if not bad.any():
            continue
        if bad.all():
            raise RecordError(f"{rec.path}: samples {start}-{start + out.shape[1]} of a lead are all invalid")
        edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        if runs.max() > MAX_GAP_S * rec.fs:
            raise RecordError(f"{rec.path}: {runs.max()} invalid samples in a row near sample {start}; gaps longer "
                              f"than {MAX_GAP_S:g} s are not interpolated")
        good = np.flatnonzero(~bad)
        out[c, bad] = np.interp(np.flatnonzero(bad), good, out[c, good])
    return out


def _check_fs(path: Path, file_fs: float, fs: float | None) -> float:
    if fs is not None and abs(float(fs) - file_fs) > FS_TOLERANCE * file_fs:
        raise RecordError(f"{path}: --fs {fs:g} Hz contradicts the file's sampling rate of {file_fs:g} Hz; leave "
                          "--fs out for this format")
    return float(file_fs)


def _need_fs(path: Path, fs: float | None) -> float:
    if fs is None:
        raise RecordError(f"{path}: a {path.suffix} file carries no sampling rate; pass --fs HZ")
    if not np.isfinite(fs) or fs <= 0:
        raise RecordError(f"{path}: --fs must be a positive rate in Hz, got {fs}")
    return float(fs)


def _open_wfdb(path: Path, fs: float | None) -> Recording:
    import wfdb

    rid = path.name
    header = read_header(path, rid)
    factors = [unit_factor(u or "mV", where=f"record {path} lead {n}")
               for u, n in zip(header.units or ["mV"] * len(header.sig_name), header.sig_name)]
    record_files(path, rid, header=header)  # every signal file present, of the size the header states
    n = int(header.sig_len or 0)
    if n <= 0:
        raise RecordError(f"record {path}: the header declares no samples (sig_len {header.sig_len})")

    def read(leads: list[int], a: int, b: int) -> np.ndarray:
        chans = sorted(set(leads))
        try:
            r = wfdb.rdrecord(str(path), channels=chans, sampfrom=a, sampto=b, physical=True)
        except Exception as exc:
            raise RecordError(f"record {rid}: cannot read samples {a}-{b} of {path}: {type(exc).__name__}: {exc}"
                              ) from exc
        sig = np.asarray(r.p_signal, dtype=np.float64).T
        return np.stack([sig[chans.index(i)] * factors[i] for i in leads])

    ann = path if path.with_name(f"{path.name}.atr").is_file() else None
    return Recording(path=path, record_id=rid, format="wfdb", fs=_check_fs(path, float(header.fs), fs),
                     lead_names=tuple(header.sig_name), n_samples=n, annotation=ann, _read=read)


def _open_edf(path: Path, fs: float | None, units: str | None) -> Recording:
    import pyedflib

    try:
        reader = pyedflib.EdfReader(str(path))
    except Exception as exc:  # pyedflib raises OSError with the EDFlib reason
        raise RecordError(f"{path}: not a readable EDF/EDF+ file ({type(exc).__name__}: {exc})") from exc
    try:
        labels = tuple(s.strip() for s in reader.getSignalLabels())
        ann_labels = {i for i, s in enumerate(labels) if s.lower().startswith("edf annotations")}
        idx = [i for i in range(reader.signals_in_file) if i not in ann_labels]
        if not idx:
            raise RecordError(f"{path}: the EDF file has no signals")
        rates = [float(reader.getSampleFrequency(i)) for i in idx]
        lengths = [int(n) for n in reader.getNSamples()]
        dims = [reader.getPhysicalDimension(i) for i in idx]
    finally:
        reader.close()  # EDFlib refuses a second open of a file in one process: each read opens it anew
    names = tuple(labels[i] for i in idx)
    if units is not None:
        factors = [unit_factor(units, where=f"{path}")] * len(idx)
    else:
        factors = [unit_factor(d or "", where=f"{path} signal {n!r} (physical dimension)") for d, n in zip(dims, names)]

    def read(leads: list[int], a: int, b: int) -> np.ndarray:
        try:
            r = pyedflib.EdfReader(str(path))
        except Exception as exc:
            raise RecordError(f"{path}: cannot read the EDF file again ({type(exc).__name__}: {exc})") from exc
        try:
            return np.stack([np.asarray(r.readSignal(idx[k], a, b - a), dtype=np.float64) * factors[k]
                             for k in leads])
        finally:
            r.close()

    def on_select(rec: Recording, leads: list[int]) -> None:
        chosen = sorted({rates[k] for k in leads})
        if len(chosen) != 1:
            raise RecordError(f"{path}: the selected signals {', '.join(names[k] for k in leads)} have different "
                              f"sampling rates ({', '.join(f'{r:g}' for r in chosen)} Hz); choose leads of one rate")
        rec.fs = _check_fs(path, chosen[0], fs)
        rec.n_samples = min(lengths[idx[k]] for k in leads)

    if max(lengths[i] for i in idx) <= 0:
        raise RecordError(f"{path}: the EDF file holds no samples")
    if len(set(rates)) == 1:
        _check_fs(path, rates[0], fs)
    return Recording(path=path, record_id=path.stem, format="edf", fs=rates[0], lead_names=names, units=units,
                     n_samples=min(lengths[i] for i in idx), _read=read, _on_select=on_select)


def _open_csv(path: Path, fs: float | None, units: str | None) -> Recording:
    frame, clean = _read_csv_frame(path)
    columns = [str(c).strip() for c in frame.columns]
    _check_csv_header(path, frame, columns)
    data = _csv_numbers(path, frame, columns, clean)
    rate, keep = _csv_rate_and_leads(path, columns, data, fs)
    factor = unit_factor(units or "mV", where=f"{path}")
    sig = np.ascontiguousarray(data[:, keep].T) * factor
    return Recording(path=path, record_id=path.stem, format="csv", fs=rate, units=units or "mV",
                     lead_names=tuple(columns[i] for i in keep), n_samples=sig.shape[1],
                     _read=lambda leads, a, b: sig[leads, a:b])


def _read_csv_frame(path: Path) -> tuple[Any, bool]:
    """(the table as a pandas DataFrame, whether every cell parsed as a float): float64 columns when they do,
    text cells otherwise (so that the bad cell can be named)."""
    import pandas as pd

    if path.stat().st_size == 0:
        raise RecordError(f"{path}: the file is empty; expected a header row naming the leads and one numeric "
                          "column per lead")
    empty = (f"{path}: the file is empty; expected a header row naming the leads and one numeric column per "
             "lead")
    try:  # the fast path: every cell a number (float64 columns, no per-cell strings kept)
        frame = pd.read_csv(path, dtype=np.float64, skipinitialspace=True)
        clean = not frame.isna().to_numpy().any()
    except pd.errors.EmptyDataError:
        raise RecordError(empty) from None
    except ValueError:  # a cell that is not a number: read as text below to name it
        clean = False
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: not a CSV table ({type(exc).__name__}: {exc})") from exc
    if not clean:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise RecordError(empty) from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path}: not a CSV table ({type(exc).__name__}: {exc})") from exc
    return frame, clean


def _check_csv_header(path: Path, frame: Any, columns: list[str]) -> None:
    """Refuse a table separated by something else than commas, without samples, or with an unnamed column."""
    if len(columns) == 1:
        sep = next((c for c in (";", "\t", "|") if c in columns[0]), None)
        if sep is not None:
            raise RecordError(f"{path}: the header row {columns[0]!r} is separated by {sep!r}; expected "
                              "comma-separated columns (save the table as CSV with commas, and decimal points)")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise RecordError(f"{path}: no samples; expected a header row naming the leads and one numeric column per "
                          "lead")
    if any(c.lower().startswith("unnamed") or c == "" for c in columns):
        raise RecordError(f"{path}: the header row must name every column; got {', '.join(columns)}")


def _csv_numbers(path: Path, frame: Any, columns: list[str], clean: bool) -> np.ndarray:
    """The table's cells as float64 ``[n, columns]``; the first cell that is not a finite number is named."""
    import pandas as pd

    if clean:
        data = frame.to_numpy(dtype=np.float64)
        if not np.isfinite(data).all():  # "inf" is a float to pandas; refused like "nan" and empty cells
            r, c = np.argwhere(~np.isfinite(data))[0]
            raise RecordError(f"{path}: row {r + 2}, column {columns[c]!r} is {data[r, c]!r}, not a finite number; "
                              "expected one numeric column per lead under a header row")
    else:
        values = frame.apply(pd.to_numeric, errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise RecordError(f"{path}: row {r + 2}, column {columns[c]!r} is {frame.iat[r, c]!r}, not a number; "
                              "expected one numeric column per lead under a header row")
        data = values.to_numpy(dtype=np.float64)
    return data


def _csv_rate_and_leads(path: Path, columns: list[str], data: np.ndarray, fs: float | None
                        ) -> tuple[float, list[int]]:
    """(sampling rate, indices of the lead columns): a ``time`` column gives the rate (checked against ``fs`` when
    both are given) and is not a lead; without one ``fs`` is needed."""
    tcol = [i for i, c in enumerate(columns) if c.lower() in TIME_COLUMNS]
    if tcol:
        t = data[:, tcol[0]]
        step = np.median(np.diff(t)) if len(t) > 1 else 0.0
        if not step > 0:
            raise RecordError(f"{path}: column {columns[tcol[0]]!r} does not increase; expected times in seconds")
        file_fs = 1.0 / step
        rate = _check_fs(path, file_fs, fs) if fs is not None else file_fs
        keep = [i for i in range(len(columns)) if i != tcol[0]]
    else:
        rate = _need_fs(path, fs)
        keep = list(range(len(columns)))
    if not keep:
        raise RecordError(f"{path}: no lead columns besides {columns[tcol[0]]!r}")
    return rate, keep

def _open_npy(path: Path, fs: float | None, units: str | None) -> Recording:
    if path.stat().st_size == 0:
        raise RecordError(f"{path}: the file is empty; expected a NumPy array [n] or [n, leads]")
    try:
        arr = load_npy(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise RecordError(f"{path}: not a NumPy .npy array ({exc})") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise RecordError(f"{path}: expected an array [n] or [n, leads] with samples, got shape {arr.shape}")
    if arr.shape[1] > arr.shape[0]:
        raise RecordError(f"{path}: shape {arr.shape} has more leads ({arr.shape[1]}) than samples ({arr.shape[0]}); "
                          f"expected [n samples, leads]: is it transposed? (save x.T, shape {arr.shape[::-1]})")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise RecordError(f"{path}: expected real numbers, got dtype {arr.dtype}")
    rate = _need_fs(path, fs)
    factor = unit_factor(units or "mV", where=f"{path}")
    return Recording(path=path, record_id=path.stem, format="npy", fs=rate, units=units or "mV",
                     lead_names=tuple(str(i) for i in range(arr.shape[1])), n_samples=int(arr.shape[0]),
                     _read=lambda leads, a, b: np.asarray(arr[a:b, leads], dtype=np.float64).T * factor)


def unique_record_ids(recs: Sequence[Recording]) -> list[str]:
    """One id per recording, unique across the inputs: the file's name (``rec``) where it is unique, else the
    path relative to the common parent folder of the recordings sharing that name (``a/rec.csv``, ``b/rec.csv``),
    and ``#2``, ``#3``... after a recording given more than once. Two recordings must never merge into one
    record of the table or the beat report."""
    ids = [r.record_id for r in recs]
    out = list(ids)
    for name in set(ids):
        same = [i for i, x in enumerate(ids) if x == name]
        if len(same) < 2:
            continue
        paths = [os.path.abspath(recs[i].path) for i in same]
        parent = os.path.commonpath([os.path.dirname(p) for p in paths])
        for i, p in zip(same, paths):
            out[i] = os.path.relpath(p, parent).replace(os.sep, "/")
    seen: dict[str, int] = {}
    for i, rid in enumerate(out):
        seen[rid] = seen.get(rid, 0) + 1
        if seen[rid] > 1:
            out[i] = f"{rid}#{seen[rid]}"
    return out


def open_recording(path: str | os.PathLike, *, fs: float | None = None, units: str | None = None) -> Recording:
    """Open a WFDB record, EDF/EDF+, CSV or ``.npy`` file (see the module docstring for what each needs).

    Args:
        path: a file, or a WFDB record path with or without ``.hea``/``.dat``.
        fs: sampling rate in Hz; required for CSV (without a time column) and ``.npy``; for WFDB and EDF it
            must agree with the file's own rate (within 1 %).
        units: unit of CSV/``.npy`` values (default mV), or an override of an EDF file's physical dimensions.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".hea", ".dat", ".atr"):
        p, suffix = p.with_suffix(""), ""
    if suffix == ".edf":
        fmt = "edf"
    elif suffix in (".csv", ".txt"):
        fmt = "csv"
    elif suffix == ".npy":
        fmt = "npy"
    elif p.with_name(p.name + ".hea").is_file():
        fmt = "wfdb"
    else:
        raise RecordError(f"{p}: not a WFDB record (no {p.name}.hea), nor an .edf, .csv or .npy file")
    if fmt != "wfdb" and not p.is_file():
        raise RecordError(f"{p}: no such file")
    if fmt == "wfdb":
        if units is not None:
            raise RecordError(f"record {p}: --units is for CSV, .npy and EDF files; WFDB headers state their units")
        return _open_wfdb(p, fs)
    if fmt == "edf":
        return _open_edf(p, fs, units)
    if fmt == "csv":
        return _open_csv(p, fs, units)
    return _open_npy(p, fs, units)


def select(rec: Recording, lead: Sequence[str] | str | None, store_leads: Sequence[str]) -> list[int]:
    """:meth:`Recording.leads_for` for ``lead`` given as a comma-separated string, a list or None; it also
    fixes the rate and length of EDF files whose signals differ."""
    wanted = [s.strip() for s in lead.split(",")] if isinstance(lead, str) else (list(lead) if lead else None)
    if wanted and len(wanted) == 1 and wanted[0].lower() == ALL_LEADS:
        wanted = None
    idx = rec.leads_for(wanted, store_leads)
    if rec._on_select is not None:
        rec._on_select(rec, idx)
    return idx


__all__ = ["Recording", "open_recording", "select", "unique_record_ids", "unit_factor", "FORMATS", "UNIT_TO_MV"]
