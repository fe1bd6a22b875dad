"""Beat segmentation: windows around reference R peaks, AAMI classes, RR-interval context.

AAMI EC57 groups the MIT-BIH beat symbols into five classes:

=====  ==========================================  =====================================
class  MIT-BIH symbols                             meaning
=====  ==========================================  =====================================
N      ``N`` ``L`` ``R`` ``e`` ``j``               normal, bundle branch block, escape
S      ``A`` ``a`` ``J`` ``S``                     supraventricular ectopic
V      ``V`` ``E``                                 ventricular ectopic
F      ``F``                                       fusion of ventricular and normal
Q      ``/`` ``f`` ``Q``                           paced, fusion of paced and normal, unclassifiable
=====  ==========================================  =====================================

Every other annotation (rhythm changes ``+``, noise ``~``, artefacts ``|``, non-conducted P waves ``x``,
flutter waves ``!``, comments ...) is not a beat of these classes and is ignored.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ecgtransfer.errors import RecordError
from ecgtransfer.physionet.catalog import DATABASES

AAMI_CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")
#: the AAMI classes the field's tables score (Se, +P of N, S, V, F): all but Q (unclassifiable beats)
AAMI_SCORED: tuple[str, ...] = tuple(c for c in AAMI_CLASSES if c != "Q")

#: MIT-BIH beat symbol -> AAMI class
AAMI_MAP: dict[str, str] = {
    **dict.fromkeys(["N", "L", "R", "e", "j"], "N"),
    **dict.fromkeys(["A", "a", "J", "S"], "S"),
    **dict.fromkeys(["V", "E"], "V"),
    "F": "F",
    **dict.fromkeys(["/", "f", "Q"], "Q"),
}

#: records with a pacemaker, excluded from beat tasks unless asked for (AAMI EC57 recommendation), by database: read
#: from the catalog (``Database.paced_records``), which holds them
PACED_RECORDS: dict[str, tuple[str, ...]] = {db.name: db.paced_records for db in DATABASES.values() if db.paced_records}

#: number of RR intervals averaged for the local RR (half before the beat, half after)
LOCAL_RR_INTERVALS = 10


def aami_labels(symbols: np.ndarray) -> np.ndarray:
    """AAMI class indices int64 ``[n]`` (into :data:`AAMI_CLASSES`) of beat symbols ``[n]`` (keys of :data:`AAMI_MAP`,
    as :func:`read_beat_symbols` returns them)."""
    return np.asarray([AAMI_CLASSES.index(AAMI_MAP[s]) for s in np.asarray(symbols).tolist()], dtype=np.int64)


def read_beat_symbols(path: str | os.PathLike, extension: str = "atr", record_id: str | None = None
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """Beat annotations of a record: ``(samples [n] int64, symbols [n] str, n_ignored)``.

    Only symbols of :data:`AAMI_MAP` are kept; the count of other annotations is returned.
    Raises :class:`RecordError` naming the record and the annotation file.
    """
    import wfdb

    path = Path(path)
    rid = record_id or path.name
    ann_file = path.with_name(f"{path.name}.{extension}")
    if not ann_file.is_file():
        raise RecordError(f"record {rid}: annotation file {ann_file} is missing")
    check_annotation_file(ann_file, rid)
    try:
        ann = wfdb.rdann(str(path), extension)
    except Exception as exc:
        raise RecordError(f"record {rid}: cannot read annotations {ann_file}: {type(exc).__name__}: {exc}") from exc
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = np.asarray(ann.symbol, dtype=str)
    keep = np.asarray([s in AAMI_MAP for s in symbols.tolist()], dtype=bool)
    order = np.argsort(samples[keep], kind="stable")
    return samples[keep][order], symbols[keep][order], int((~keep).sum())


# MIT annotation format: 16-bit little-endian words, 6-bit type A over a 10-bit field I; A=I=0 ends the file
_ANN_SKIP, _ANN_AUX, _ANN_MAXTYPE = 59, 63, 49


def check_annotation_file(ann_file: str | os.PathLike, record_id: str | None = None) -> int:
    """Walk a WFDB (MIT format) annotation file to its end-of-file marker; returns the number of annotations.

    A file that stops before the marker (cut at any byte, or exactly between two annotations, which
    :func:`wfdb.rdann` reads without complaint) raises :class:`RecordError` naming the record and how many
    annotations were read: labels from it would silently miss the rest of the record. So does a marker with
    bytes after it (a damaged word read as the end, the rest of the record lost).
    """
    ann_file = Path(ann_file)
    rid = record_id or ann_file.stem
    try:
        data = ann_file.read_bytes()
    except OSError as exc:
        raise RecordError(f"record {rid}: cannot read annotations {ann_file}: {exc.strerror or exc}") from None
    n = len(data)
    i = count = 0
    while i + 2 <= n:
        word = data[i] | (data[i + 1] << 8)
        kind, field = word >> 10, word & 0x3FF
        if word == 0:
            if i + 2 != n:
                raise RecordError(f"record {rid}: annotation file {ann_file} has {n - i - 2} bytes after its "
                                  f"end-of-file marker (at byte {i}, after {count} annotations): it is damaged; "
                                  "download the record again")
            return count
        if kind == _ANN_SKIP:
            i += 6
        elif kind == _ANN_AUX:
            if field > 255:  # WFDB keeps an aux string's length in one byte
                raise RecordError(f"record {rid}: annotation file {ann_file} declares a {field}-byte aux string at "
                                  f"byte {i} (at most 255): it is damaged; download the record again")
            i += 2 + field + (field & 1)
        else:
            count += int(1 <= kind <= _ANN_MAXTYPE)
            i += 2
    raise RecordError(f"record {rid}: annotation file {ann_file} ends mid-record after {count} annotations "
                      f"({n} bytes, no end-of-file marker): it is truncated; download the record again")


#: half-width in seconds of the window of the average RR (:func:`rr_features` ``rr_avg``): a 5-minute window centred
#: on the beat, as de Chazal et al. (2004) averaged the RR intervals "of a 5-minute period surrounding the beat"
AVERAGE_RR_HALF_WINDOW = 150.0

#: the columns of :func:`rr_features` (and of a beat store's ``rr`` extra), in order. Columns are only ever appended:
#: a model reads the first ``rr_dim`` of them, so a store written with fewer (the first six, before ``rr_avg``) and
#: a checkpoint that read fewer keep working.
RR_FEATURES: tuple[str, ...] = ("rr_prev", "rr_next", "rr_local", "rr_prev_rel", "rr_next_rel", "rr_local_rel",
                                "rr_avg", "rr_avg_rel")


# long: one vectorised kernel over a record's intervals (30 lines of code; the docstring defines every column)
def rr_features(samples: np.ndarray, fs: float, local: int = LOCAL_RR_INTERVALS,
                half_window: float = AVERAGE_RR_HALF_WINDOW) -> np.ndarray:
    """RR-interval context of each beat ``[n, 8]`` float64, the columns of :data:`RR_FEATURES`.

    ``samples`` are the R peaks of *all* beats of a record (before any edge drop), increasing. Interval ``k`` is
    ``(samples[k + 1] - samples[k]) / fs`` seconds, between beats ``k`` and ``k + 1``. For beat ``i``:

    - ``rr_prev``: interval ``i - 1`` (the first beat: its next interval);
    - ``rr_next``: interval ``i`` (the last beat: its previous interval);
    - ``rr_local``: the mean of the ``local`` intervals around the beat (``local // 2`` ending at or before it,
      the rest after it), truncated at the record's ends (de Chazal's "local average RR", 10 intervals);
    - ``rr_avg``: the mean of the intervals whose midpoint ``(samples[k] + samples[k + 1]) / 2`` lies within
      ``half_window`` seconds of the beat (``|mid - samples[i]| <= half_window * fs``), so a 5-minute window
      centred on the beat, truncated at the record's ends (then shorter, not shifted); the beat's own previous
      and next intervals always count (they are the nearest), so the window is never empty (de Chazal's
      "average RR");
    - ``*_rel``: ``rr_prev``, ``rr_next``, ``rr_local`` and ``rr_avg`` divided by the record's mean RR (the mean of
      all its intervals), a per-patient normaliser that makes prematurity (a short previous RR) comparable
      between a slow and a fast heart.

    Seconds columns are 0-2 and 6, ratio columns 3-5 and 7 (appended columns keep older stores readable, see
    :data:`RR_FEATURES`). Everything is computed inside one record, from its R peaks alone, so the features exist
    for a new recording at predict time and carry nothing across patients. With a single beat all are NaN.
    """
    samples = np.asarray(samples, dtype=np.int64)
    n = len(samples)
    out = np.full((n, len(RR_FEATURES)), np.nan)
    if n < 2:
        return out
    rr = np.diff(samples).astype(np.float64) / fs  # rr[k] = interval between beats k and k+1
    prev = np.empty(n)
    nxt = np.empty(n)
    prev[1:] = rr
    prev[0] = rr[0]
    nxt[:-1] = rr
    nxt[-1] = rr[-1]
    csum = np.concatenate([[0.0], np.cumsum(rr)])

    def window_mean(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Mean of intervals ``lo[i] <= k < hi[i]``."""
        return (csum[hi] - csum[lo]) / (hi - lo)

    half = local // 2
    i = np.arange(n)
    local_avg = window_mean(np.clip(i - half, 0, len(rr)), np.clip(i + (local - half), 0, len(rr)))
    mid2 = samples[:-1] + samples[1:]  # twice the interval midpoints, increasing
    w2 = 2.0 * half_window * fs
    lo = np.minimum(np.searchsorted(mid2, 2 * samples - w2, side="left"), np.maximum(i - 1, 0))
    hi = np.maximum(np.searchsorted(mid2, 2 * samples + w2, side="right"), np.minimum(i + 1, len(rr)))
    avg = window_mean(lo, hi)
    mean_rr = rr.mean()
    out[:, 0], out[:, 1], out[:, 2], out[:, 6] = prev, nxt, local_avg, avg
    out[:, 3:6] = out[:, 0:3] / mean_rr
    out[:, 7] = avg / mean_rr
    return out


def beat_windows(signal: np.ndarray, peaks: np.ndarray, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``[before + after]``-sample windows around ``peaks`` from ``signal`` ``[C, n]``.

    Window ``i`` is ``signal[:, peaks[i] - before : peaks[i] + after]`` (the R peak at index ``before``).
    Windows that would fall off either end of the record are dropped.

    Returns:
        ``segments`` ``[m, C, before + after]`` (same dtype as ``signal``) and ``keep`` bool ``[len(peaks)]``.
    """
    peaks = np.asarray(peaks, dtype=np.int64)
    n = signal.shape[-1]
    keep = (peaks - before >= 0) & (peaks + after <= n)
    starts = peaks[keep] - before
    length = before + after
    idx = starts[:, None] + np.arange(length)[None, :]  # [m, L]
    segments = np.ascontiguousarray(np.transpose(signal[:, idx], (1, 0, 2)))  # [m, C, L]
    return segments, keep
