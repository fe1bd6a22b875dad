"""The window tasks (``rhythm``, ``multilabel``): fixed windows of a record, or one whole record per segment.

``rhythm`` cuts windows of ``window`` seconds every ``stride`` seconds, or one window per record
(``whole_record``: the first ``window`` seconds, zero-padded when shorter), labelled with the record's rhythm
(:mod:`ecgtransfer.signals.rhythm`); ``multilabel`` (ptb-xl, :mod:`.multilabel`) is one whole record per segment
with the record's targets as extras.
"""
from __future__ import annotations

import numpy as np

from ecgtransfer.conversion.config import RecordJob
from ecgtransfer.errors import ConfigError
from ecgtransfer.signals import rhythm


def window_segments(job: RecordJob, x: np.ndarray, up: int, down: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(segments [m, C, L], labels [m], positions [m] in source samples, extras)`` of one record's windows, from
    its signal ``x`` ``[C, L']`` at the output rate (``up / down`` times the source rate)."""
    cfg = job.config
    extras: dict[str, np.ndarray] = {}
    if cfg.whole_record:
        segs, starts = rhythm.pad_crop(x, cfg.window_samples)[None], np.zeros(1, dtype=np.int64)
    else:
        segs, starts = rhythm.fixed_windows(x, cfg.window_samples, cfg.stride_samples)
    positions = (starts * down + up // 2) // up  # back to source samples
    labels = np.full(len(segs), job.label, dtype=np.int64)
    for name, row in (job.extras or {}).items():  # multilabel: the record's targets, for every segment
        extras[name] = np.repeat(np.asarray(row)[None], len(segs), axis=0)
    return segs, labels, positions, extras


def window_steps(out_fs: float, window: float, stride: float | None) -> tuple[int, int]:
    """``(window, stride)`` in samples at ``out_fs`` (``stride`` None: ``window``, no overlap), after checking
    both are positive and at least one sample."""
    if window <= 0 or (stride is not None and stride <= 0):
        raise ConfigError(f"window and stride must be positive seconds, got {window} and {stride}")
    window_n = int(round(float(window) * out_fs))
    stride_n = int(round(float(stride if stride is not None else window) * out_fs))
    if window_n < 1 or stride_n < 1:
        raise ConfigError(f"window/stride shorter than one sample at {out_fs:g} Hz")
    return window_n, stride_n
