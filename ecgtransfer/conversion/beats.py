"""The beat tasks (``beats``, ``rhythm-beats``): windows around R peaks, their sides in samples, annotation files.

``beats`` cuts a window of ``before + after`` around each reference R peak of ``<record>.<annotation>``, labelled
with its AAMI class (:mod:`ecgtransfer.signals.beats`); ``rhythm-beats`` cuts the same windows around the R peaks
detected in the first lead, each labelled with its record's rhythm class. Both keep RR context when asked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ecgtransfer.conversion.config import MAX_BEAT_SIDE, RecordJob, to_samples
from ecgtransfer.errors import ConfigError, RecordError
from ecgtransfer.physionet.catalog import Database
from ecgtransfer.signals import beats as beatmod



def beat_segments(job: RecordJob, x: np.ndarray, src_fs: float, up: int, down: int, detected: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], int, int]:
    """``(segments [m, C, L], labels [m], positions [m] in source samples, extras, dropped, ignored)`` of one
    record's beats, from its signal ``x`` ``[C, L']`` at the output rate (``up / down`` times the source rate).

    ``detected``: the R peaks found by the detector (``rhythm-beats``: every beat carries the record's class), or
    None (``beats``: the reference beats of the annotation file, with their symbols as the extra ``symbol``)."""
    cfg = job.config
    extras: dict[str, np.ndarray] = {}
    if detected is None:
        samples, symbols, ignored = beatmod.read_beat_symbols(job.path, record_id=job.record_id)
        labels = beatmod.aami_labels(symbols)
    else:  # rhythm-beats: every detected beat carries its record's rhythm class
        samples, ignored = detected, 0
        labels = np.full(len(samples), job.label, dtype=np.int64)
    peaks = (samples * up + down // 2) // down  # round(p * up / down) in output samples
    segs, keep = beatmod.beat_windows(x, peaks, cfg.before_samples, cfg.after_samples)
    if detected is None:
        extras["symbol"] = symbols[keep].astype("<U2")
    if cfg.rr_context:
        extras["rr"] = beatmod.rr_features(samples, src_fs)[keep].astype(np.float32)
    return segs, labels[keep], samples[keep], extras, int((~keep).sum()), ignored


def beat_sides(out_fs: float, before: Any, after: Any) -> tuple[int, int]:
    """``(before, after)`` in samples at ``out_fs`` (see :func:`~ecgtransfer.conversion.config.to_samples`), after
    checking that neither side is longer than :data:`~ecgtransfer.conversion.config.MAX_BEAT_SIDE` and that the
    window is not empty."""
    before_n = to_samples(before, out_fs, "before")
    after_n = to_samples(after, out_fs, "after")
    for name, given, n in (("before", before, before_n), ("after", after, after_n)):
        if n > MAX_BEAT_SIDE * out_fs:
            raise ConfigError(
                f"{name}={given!r} is {n} samples = {n / out_fs:g} s at {out_fs:g} Hz; a beat window longer "
                f"than {MAX_BEAT_SIDE:g} s on either side of the R peak is refused. Units: in Python a float is "
                "seconds (0.25) and an int samples at the output rate (90); a string carries its unit "
                "('0.25s', '250ms', '90samples'); on the command line a bare number is seconds "
                "(--before 90samples for 90 samples)")
    if before_n + after_n < 1:
        raise ConfigError("the beat window is empty: before + after must be at least one sample")
    return before_n, after_n


def check_annotation(db: Database, path: Path, rid: str) -> Path:
    """The annotation file of record ``rid`` (``path`` without extension), checked whole; raises if it is missing."""
    ann = path.with_name(f"{path.name}.{db.annotation}")
    if not ann.is_file():
        raise RecordError(f"record {rid}: annotation file {ann} is missing")
    beatmod.check_annotation_file(ann, rid)  # a truncated .atr is refused before anything is written
    return ann
