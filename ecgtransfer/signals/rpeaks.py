"""R-peak (QRS) detection for records without reference annotations, with wfdb's validated detectors.

:func:`detect_r_peaks` runs wfdb's GQRS (a port of George Moody's ``gqrs`` from the WFDB software package,
:func:`wfdb.processing.gqrs_detect`) on one lead in physical units (mV), moves every detection to the R
extremum of the QRS complex (:func:`wfdb.processing.correct_peaks`), removes detections that the correction
brought closer than a refractory period to each other (the larger deflection is kept), then removes T waves taken
for beats (:func:`drop_t_waves`: Pan and Tompkins' rule, a detection within :data:`T_WAVE_S` of the beat before it
whose steepest slope is below :data:`T_WAVE_SLOPE` of that beat's). GQRS alone marks tall T waves about 300 ms
after the R peak as beats: 2,216 false detections on the 59 svdb records (+P 98.41 %), 215 on record 850 alone.

Long records are processed in overlapping chunks (:func:`detect_r_peaks_chunked`, :class:`ChunkedDetector`):
each chunk is detected with ``margin`` seconds of context on both sides, and only the detections inside the
chunk's own span are kept, so memory is bounded by the chunk length and the result does not depend on
where a record starts.

Measured with :func:`wfdb.processing.compare_annotations` (150 ms window) against the reference beats of the 22
shared mitdb records (the ventricular flutter episodes of 207 excluded as EC57 does) and the 59 shared svdb
records (128 Hz): see ``benchmarks/results/2026-12-01-rpeaks/`` (``benchmarks/rpeaks.py``), which also scores
wfdb's XQRS and the earlier hand-written detector.
"""
from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ecgtransfer.errors import SignalError

log = logging.getLogger(__name__)

#: the version of the detector's output: raised whenever a change of this module moves, adds or drops detections,
#: so that what was made from earlier detections is known to be stale (a store converted with ``rhythm-beats``
#: records it in ``manifest["parameters"]["detector"]`` and is reconverted when it differs; runs, through their
#: ``store_manifest.json``, and ``predict``'s beat report name it). 1: GQRS, R-peak correction and the refractory
#: period (stores recording no version); 2: and the T-wave rule (:func:`drop_t_waves`)
DETECTOR_VERSION = 2
#: shortest interval between two R peaks kept after peak correction, in seconds (300 beats/min)
REFRACTORY_S = 0.2
#: radius within which a detection is moved to the R extremum, in seconds
CORRECT_RADIUS_S = 0.05
#: moving-average window subtracted before looking for the extremum (removes the baseline), in seconds
CORRECT_SMOOTH_S = 0.15
#: length of one detection chunk of a long record, in seconds: 30 minutes, the length of the MIT-BIH records on
#: which GQRS was validated (it starts cold on each; GQRS's adaptive thresholds make its detections depend on the
#: history it has seen, and 10-minute chunks cost mitdb 201 twenty aberrated APCs)
CHUNK_S = 1800.0
#: context detected on each side of a chunk and then dropped, in seconds
MARGIN_S = 10.0
#: lowest sampling rate GQRS supports, in Hz
MIN_FS = 50.0
#: a detection this close to the beat kept before it (seconds) may be that beat's T wave (Pan & Tompkins 1985)
T_WAVE_S = 0.36
#: ... and is taken for one when its steepest slope is below this fraction of that beat's (Pan & Tompkins: half)
T_WAVE_SLOPE = 0.5
#: band of the filter whose slopes the T-wave rule compares, in Hz (the QRS band; T waves are slower)
SLOPE_BAND = (5.0, 20.0)
#: half-width of the window around a peak in which its steepest slope is taken, in seconds
SLOPE_HALF_S = 0.06


def _check(x: np.ndarray, fs: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise SignalError(f"detect_r_peaks expects one lead [n], got an array of shape {x.shape}")
    if not fs > MIN_FS:
        raise SignalError(f"detect_r_peaks needs a sampling rate above {MIN_FS:g} Hz, got {fs}")
    if not np.all(np.isfinite(x)):
        raise SignalError("detect_r_peaks: the lead has NaN or infinite samples; fill or drop them first")
    return x


def refine_peaks(x: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """Move ``peaks`` to the R extremum of ``x`` ``[n]`` and drop near-duplicates; sample indices, increasing.

    Each detection moves within :data:`CORRECT_RADIUS_S` to the largest deviation from a
    :data:`CORRECT_SMOOTH_S` moving average, in the direction (up or down) that fits the lead best
    (:func:`wfdb.processing.correct_peaks` with ``peak_dir="compare"``). Of two peaks closer than
    :data:`REFRACTORY_S`, the one with the larger deviation is kept.
    """
    from wfdb import processing

    peaks = np.asarray(peaks, dtype=np.int64)
    if len(peaks) == 0 or len(x) < 3:
        return peaks
    radius = max(1, int(round(CORRECT_RADIUS_S * fs)))
    smooth = max(3, int(round(CORRECT_SMOOTH_S * fs)))
    moved = processing.correct_peaks(x, peaks, search_radius=radius, smooth_window_size=smooth, peak_dir="compare")
    moved = np.unique(np.clip(np.asarray(moved, dtype=np.int64), 0, len(x) - 1))
    if len(moved) < 2:
        return moved
    dev = np.abs(x[moved] - np.median(x))
    refractory = REFRACTORY_S * fs
    keep = [0]
    for i in range(1, len(moved)):
        j = keep[-1]
        if moved[i] - moved[j] >= refractory:
            keep.append(i)
        elif dev[i] > dev[j]:
            keep[-1] = i
    return drop_t_waves(x, moved[np.asarray(keep)], fs)


def qrs_slopes(x: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """The steepest slope (mV/s) of ``x`` band-passed to :data:`SLOPE_BAND` within :data:`SLOPE_HALF_S` of each
    peak: ``[len(peaks)]`` float64."""
    from scipy import signal as ss

    peaks = np.asarray(peaks, dtype=np.int64)
    if len(peaks) == 0:
        return np.zeros(0)
    sos = ss.butter(2, [SLOPE_BAND[0], min(SLOPE_BAND[1], 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    pad = min(len(x) - 1, 3 * (2 * len(sos) + 1))
    slope = np.abs(np.gradient(ss.sosfiltfilt(sos, x, padlen=pad))) * fs if len(x) > 1 else np.zeros(len(x))
    half = max(1, int(round(SLOPE_HALF_S * fs)))
    return np.asarray([slope[max(0, p - half):p + half + 1].max() for p in peaks.tolist()], dtype=np.float64)


def drop_t_waves(x: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """``peaks`` without the T waves taken for beats: a peak within :data:`T_WAVE_S` of the last peak kept whose
    steepest slope (:func:`qrs_slopes`) is below :data:`T_WAVE_SLOPE` of that peak's is dropped (Pan J, Tompkins
    WJ. A real-time QRS detection algorithm. IEEE TBME 32(3), 1985: the T-wave discrimination of its search).

    A premature ventricular beat this early is kept when its slope reaches half the beat before it; a wide one that
    does not is lost. On the shared records (``benchmarks/results/2026-12-01-rpeaks``): mitdb 61 false detections
    fewer for 35 beats lost (Se 99.82 -> 99.75 %, +P 99.73 -> 99.85 %), svdb 1,342 fewer for 42 lost (Se 99.84 ->
    99.81 %, +P 98.41 -> 99.36 %)."""
    peaks = np.asarray(peaks, dtype=np.int64)
    if len(peaks) < 2:
        return peaks
    slopes = qrs_slopes(x, peaks, fs)
    window = T_WAVE_S * fs
    keep = [0]
    for i in range(1, len(peaks)):
        j = keep[-1]
        if peaks[i] - peaks[j] < window and slopes[i] < T_WAVE_SLOPE * slopes[j]:
            continue
        keep.append(i)
    return peaks[np.asarray(keep)]


def detect_r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """R peaks of one lead ``x`` ``[n]`` in mV sampled at ``fs`` Hz: sample indices int64 ``[m]``, increasing.

    GQRS (:func:`wfdb.processing.gqrs_detect`, default settings: its amplitude thresholds are in microvolts, so
    ``x`` must be in mV), then :func:`refine_peaks`. The whole array is processed at once; for long records use
    :func:`detect_r_peaks_chunked`, which gives the same peaks away from chunk edges with bounded memory.
    Raises :class:`~ecgtransfer.errors.SignalError` for a non-1-D lead, NaN samples or ``fs <= 50``.
    """
    from wfdb import processing

    x = _check(x, fs)
    if len(x) < int(fs):  # shorter than a second: no beat to learn from
        return np.zeros(0, dtype=np.int64)
    raw = np.asarray(processing.gqrs_detect(sig=x, fs=fs), dtype=np.int64)
    return refine_peaks(x, raw, fs)


class ChunkedDetector:
    """Detect R peaks over a long lead read in pieces: ``read(start, stop) -> [stop - start]`` mV.

    Chunks of :data:`CHUNK_S` seconds are read with :data:`MARGIN_S` of context on each side; the peaks
    inside each chunk's own span are kept. Peak memory is that of one chunk (at most 1.25 :data:`CHUNK_S`) plus
    its margins.
    """

    def __init__(self, fs: float, n_samples: int, *, chunk_s: float = CHUNK_S, margin_s: float = MARGIN_S) -> None:
        self.fs = float(fs)
        self.n = int(n_samples)
        self.chunk = max(int(round(chunk_s * fs)), 1)
        self.margin = int(round(margin_s * fs))

    def spans(self) -> list[tuple[int, int]]:
        """The chunks' own spans ``(start, stop)`` covering ``[0, n)``; a last piece shorter than a quarter chunk
        joins the chunk before it (a 30:06 mitdb record is one chunk, not 30 minutes and 6 cold seconds)."""
        spans = [(a, min(a + self.chunk, self.n)) for a in range(0, self.n, self.chunk)]
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] < self.chunk // 4:
            spans[-2:] = [(spans[-2][0], self.n)]
        return spans

    def run(self, read: Callable[[int, int], np.ndarray], progress: Callable[[int], None] | None = None
            ) -> np.ndarray:
        """All R peaks ``[m]`` int64 of the lead, increasing; ``progress(samples)`` is called after each chunk."""
        out: list[np.ndarray] = []
        for a, b in self.spans():
            lo, hi = max(0, a - self.margin), min(self.n, b + self.margin)
            p = detect_r_peaks(np.asarray(read(lo, hi), dtype=np.float64), self.fs) + lo
            out.append(p[(p >= a) & (p < b)])
            # GQRS keeps its peaks in a ring of mutually linked objects: reference cycles that only the cyclic
            # collector frees. Left to its thresholds, they reach the oldest generation and pile up chunk after
            # chunk (+60 MB per 30-minute chunk measured); collect them while they are one chunk's worth
            gc.collect()
            if progress is not None:
                progress(b - a)
        peaks = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
        return _dedupe_across(peaks, self.fs)


def _dedupe_across(peaks: np.ndarray, fs: float) -> np.ndarray:
    """Drop the later of two peaks closer than :data:`REFRACTORY_S` (one beat seen by two adjacent chunks)."""
    if len(peaks) < 2:
        return peaks.astype(np.int64)
    keep = np.concatenate([[True], np.diff(peaks) >= REFRACTORY_S * fs])
    return peaks[keep].astype(np.int64)


def detect_r_peaks_chunked(x: np.ndarray, fs: float, **kw: float) -> np.ndarray:
    """:func:`detect_r_peaks` over ``x`` ``[n]`` in chunks (see :class:`ChunkedDetector`; ``chunk_s``, ``margin_s``)."""
    x = np.asarray(x)
    return ChunkedDetector(fs, len(x), **kw).run(lambda a, b: x[a:b])


# --------------------------------------------------------------------------------------------------
# scoring against reference annotations (ANSI/AAMI EC57 style)

#: matching window of a detection to a reference beat, in seconds (EC57: 150 ms)
MATCH_WINDOW_S = 0.15


def excluded_episodes(path: str | os.PathLike, extension: str = "atr") -> list[tuple[int, int]]:
    """Ventricular flutter/fibrillation episodes ``[(start, stop)]`` (samples) of a record's annotation.

    EC57 leaves them out of QRS detection scoring; MIT-BIH marks them by ``[`` (start) and ``]`` (end).
    An episode still open at the end of the annotation runs to the last annotation.
    """
    import wfdb

    ann = wfdb.rdann(str(path), extension)
    spans, start = [], None
    for s, sym in zip(np.asarray(ann.sample, dtype=np.int64).tolist(), ann.symbol):
        if sym == "[":
            start = s
        elif sym == "]" and start is not None:
            spans.append((start, s))
            start = None
    if start is not None:
        spans.append((start, int(ann.sample[-1])))
    return spans


def _outside(samples: np.ndarray, spans: Iterable[tuple[int, int]]) -> np.ndarray:
    keep = np.ones(len(samples), dtype=bool)
    for lo, hi in spans:
        keep &= (samples < lo) | (samples > hi)
    return samples[keep]


@dataclass(frozen=True)
class DetectionScore:
    """Beat-by-beat comparison of detections with reference beats (:func:`wfdb.processing.compare_annotations`).

    ``offset_ms``: median absolute distance between matched detections and their reference beats.
    """

    tp: int
    fp: int
    fn: int
    offset_ms: float

    @property
    def se(self) -> float:
        """Sensitivity TP / (TP + FN)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def ppv(self) -> float:
        """Positive predictivity TP / (TP + FP)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")


def score_detections(reference: np.ndarray, found: np.ndarray, fs: float,
                     exclude: Iterable[tuple[int, int]] = ()) -> DetectionScore:
    """Score ``found`` against ``reference`` beats (samples) with a :data:`MATCH_WINDOW_S` window, EC57 style:
    reference beats and detections inside the ``exclude`` spans (:func:`excluded_episodes`) are left out."""
    from wfdb import processing

    spans = list(exclude)
    ref = _outside(np.sort(np.asarray(reference, dtype=np.int64)), spans)
    test = _outside(np.sort(np.asarray(found, dtype=np.int64)), spans)
    cmp = processing.compare_annotations(ref, test, int(MATCH_WINDOW_S * fs))
    matched = np.abs(cmp.matched_ref_sample - cmp.matched_test_sample)
    offset = float(np.median(matched) / fs * 1000.0) if len(matched) else float("nan")
    return DetectionScore(tp=int(cmp.tp), fp=int(cmp.fp), fn=int(cmp.fn), offset_ms=offset)


__all__: Iterable[str] = ["detect_r_peaks", "detect_r_peaks_chunked", "refine_peaks", "drop_t_waves", "qrs_slopes",
                          "T_WAVE_S", "T_WAVE_SLOPE", "ChunkedDetector",
                          "excluded_episodes", "score_detections", "DetectionScore", "REFRACTORY_S", "CHUNK_S",
                          "MARGIN_S", "MATCH_WINDOW_S"]
