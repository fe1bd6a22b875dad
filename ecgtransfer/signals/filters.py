"""Filtering, baseline-wander removal, resampling and normalisation with scipy.signal.

All functions take a whole record ``[C, n]`` (leads, samples) and filter along the last axis; records are
filtered before they are cut into segments, so segment edges carry no filter transients.

Filters (``kind``):

- ``"none"``: the signal as wfdb reads it (physical units).
- ``"bandpass"`` (default of :func:`ecgtransfer.conversion.convert`): Butterworth band-pass ``band`` =
  (low, high) Hz, ``order`` per pass, applied forward and backward (zero phase, :func:`scipy.signal.sosfiltfilt`;
  the effective order is ``2 * order``). 0.5 Hz removes baseline wander, 40 Hz removes mains and muscle noise.
- ``"highpass"``: baseline-wander removal only, Butterworth high-pass at ``band[0]`` Hz, zero phase.
- ``"median"``: baseline-wander removal by two median filters of 200 ms then 600 ms whose output (the
  baseline) is subtracted (de Chazal et al., IEEE TBME 51(7), 2004); ``band[1]`` then low-passes zero-phase
  if it is below the Nyquist rate.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np

from ecgtransfer.errors import ConfigError

FILTERS = ("none", "bandpass", "highpass", "median")
NORMALIZATIONS = ("none", "zscore", "minmax")


def design_filter(kind: str, fs: float, band: Sequence[float] = (0.5, 40.0), order: int = 2) -> np.ndarray | None:
    """Second-order sections of the Butterworth filter ``kind`` at rate ``fs`` (None when no IIR stage).

    For ``"median"`` this is the optional low-pass stage at ``band[1]``.
    """
    from scipy import signal as ss

    if kind not in FILTERS:
        raise ConfigError(f"unknown filter {kind!r}; expected one of {', '.join(FILTERS)}")
    low, high = float(band[0]), float(band[1])
    nyq = fs / 2.0
    if kind == "none":
        return None
    if order < 1:
        raise ConfigError(f"filter order must be >= 1, got {order}")
    if kind == "bandpass":
        if not 0 < low < high < nyq:
            raise ConfigError(f"band-pass edges must satisfy 0 < low < high < fs/2 = {nyq:g} Hz, got {low:g}-{high:g}")
        return ss.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    if kind == "highpass":
        if not 0 < low < nyq:
            raise ConfigError(f"high-pass edge must satisfy 0 < low < fs/2 = {nyq:g} Hz, got {low:g}")
        return ss.butter(order, low, btype="highpass", fs=fs, output="sos")
    # median: optional low-pass
    if high <= 0 or high >= nyq:
        return None
    return ss.butter(order, high, btype="lowpass", fs=fs, output="sos")


def median_baseline(x: np.ndarray, fs: float, widths: Sequence[float] = (0.2, 0.6)) -> np.ndarray:
    """Baseline estimate ``[C, n]``: successive median filters of ``widths`` seconds (odd sample counts)."""
    from scipy import ndimage

    base = np.asarray(x, dtype=np.float64)
    for w in widths:
        k = int(round(w * fs)) | 1
        base = ndimage.median_filter(base, size=(1, k), mode="nearest")
    return base


def apply_filter(x: np.ndarray, fs: float, kind: str = "bandpass", band: Sequence[float] = (0.5, 40.0),
                 order: int = 2) -> np.ndarray:
    """Filter a record ``[C, n]`` along its last axis; returns float64 ``[C, n]``.

    Raises :class:`ConfigError` for an unknown filter or edges outside (0, fs/2).
    """
    from scipy import signal as ss

    x = np.asarray(x, dtype=np.float64)
    sos = design_filter(kind, fs, band, order)
    if kind == "median":
        x = x - median_baseline(x, fs)
    if sos is not None:
        x = ss.sosfiltfilt(sos, x, axis=-1)
    return x


def resample_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """``(up, down)`` with ``fs_out / fs_in = up / down`` (denominator at most 1000)."""
    if fs_in <= 0 or fs_out <= 0:
        raise ConfigError(f"sampling rates must be positive, got {fs_in} -> {fs_out}")
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


def resample_bytes(n: int, channels: int, fs_in: float, fs_out: float) -> int:
    """Bytes :func:`resample` allocates at most for ``[channels, n]`` samples: the float64 input and output and
    :func:`scipy.signal.resample_poly`'s filter (``20 * max(up, down) + 1`` taps) with its full-length output."""
    up, down = resample_ratio(fs_in, fs_out)
    if up == down:
        return 8 * channels * n
    taps = 20 * max(up, down) + 1
    full = ((max(n, 1) - 1) * up + taps) // down + 1
    return 8 * (channels * (n + full) + taps)


def check_resample_memory(n: int, channels: int, fs_in: float, fs_out: float, *, what: str,
                          workers: int = 1) -> None:
    """Refuse, before allocating, a resampling of ``[channels, n]`` from ``fs_in`` to ``fs_out`` Hz that needs
    more than :func:`ecgtransfer._validate.memory_budget` shared by ``workers`` processes: one
    :class:`ConfigError` line naming ``what`` (the record), the rates and the memory."""
    from ecgtransfer._validate import human_bytes, memory_budget

    workers = max(1, int(workers))
    budget = memory_budget() // workers
    need = resample_bytes(int(n), int(channels), fs_in, fs_out)
    if need > budget:
        shared = f", shared by {workers} workers" if workers > 1 else ""
        raise ConfigError(f"resampling {what} ({n} samples x {channels} lead(s)) from {fs_in:g} to {fs_out:g} Hz "
                          f"needs about {human_bytes(need)} of memory, more than the {human_bytes(budget)} allowed "
                          f"(half of this machine's memory{shared}); choose a lower --fs")


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample ``[C, n]`` from ``fs_in`` to ``fs_out`` with :func:`scipy.signal.resample_poly` (polyphase FIR).

    The output has ``ceil(n * up / down)`` samples; source sample ``p`` lands at ``round(p * up / down)``.
    A resampling that needs more than :func:`ecgtransfer._validate.memory_budget` is refused before it allocates
    (:func:`check_resample_memory`).
    """
    from scipy import signal as ss

    up, down = resample_ratio(fs_in, fs_out)
    x = np.asarray(x)
    check_resample_memory(x.shape[-1], int(np.prod(x.shape[:-1], dtype=np.int64)), fs_in, fs_out,
                          what=f"an array of shape {x.shape}")
    if up == down:
        return np.asarray(x, dtype=np.float64)
    return ss.resample_poly(np.asarray(x, dtype=np.float64), up, down, axis=-1)


def normalize(segments: np.ndarray, mode: str = "none", eps: float = 1e-6) -> np.ndarray:
    """Per-segment, per-lead normalisation of ``[n, C, L]``.

    ``"none"`` keeps physical units; ``"zscore"`` subtracts the mean and divides by the standard deviation
    (plus ``eps``); ``"minmax"`` maps each segment lead to [0, 1].
    """
    if mode not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalisation {mode!r}; expected one of {', '.join(NORMALIZATIONS)}")
    if mode == "none" or segments.size == 0:
        return segments
    if mode == "zscore":
        mean = segments.mean(axis=-1, keepdims=True)
        std = segments.std(axis=-1, keepdims=True)
        return (segments - mean) / (std + eps)
    lo = segments.min(axis=-1, keepdims=True)
    hi = segments.max(axis=-1, keepdims=True)
    return (segments - lo) / (hi - lo + eps)
