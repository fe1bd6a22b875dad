"""The per-record work of a conversion and the process pool that runs it.

:func:`_process_record` reads, filters, resamples, segments and labels one record (the task's own piece:
:mod:`.beats` or :mod:`.windows`); :func:`run_record_jobs` runs it over the records in a pool of worker processes, at most
``2 * jobs`` records in flight, and yields the results in record order.
"""
from __future__ import annotations

import collections
import multiprocessing
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ecgtransfer.conversion.beats import beat_segments
from ecgtransfer.conversion.config import BEAT_TASKS, DETECTOR_TASKS, RecordJob
from ecgtransfer.conversion.windows import window_segments
from ecgtransfer.errors import RecordError
from ecgtransfer.signals import filters, rpeaks
from ecgtransfer.signals.record import ALL_LEADS, read_record


@dataclass
class _RecordResult:
    record_id: str
    patient: str
    segments: np.ndarray  # [m, C, L]
    labels: np.ndarray  # [m]
    positions: np.ndarray  # [m]
    lead_names: tuple[str, ...]
    extras: dict[str, np.ndarray]
    dropped: int = 0
    ignored: int = 0


def _prepare_signal(job: RecordJob) -> tuple[np.ndarray, tuple[str, ...], float, int, int, np.ndarray | None]:
    """``(x [C, L'] filtered and resampled, lead names, source fs, up, down, detected R peaks or None)``; the peaks
    (``rhythm-beats``) are found in the unfiltered first lead at the source rate, as ``predict`` finds them."""
    cfg = job.config
    rec = read_record(job.path, None if cfg.lead == ALL_LEADS else cfg.lead, record_id=job.record_id)
    detected = None
    if cfg.task in DETECTOR_TASKS:
        from ecgtransfer.errors import SignalError

        try:
            detected = rpeaks.detect_r_peaks(np.asarray(rec.signal[0], dtype=np.float64), rec.fs)
        except SignalError as exc:
            raise RecordError(f"record {job.record_id}: R-peak detection failed: {exc}") from None
    x = filters.apply_filter(rec.signal, rec.fs, cfg.filter, cfg.band, cfg.filter_order)
    up, down = filters.resample_ratio(rec.fs, cfg.fs)
    x = filters.resample(x, rec.fs, cfg.fs)
    return x, rec.lead_names, rec.fs, up, down, detected

def _process_record(job: RecordJob) -> _RecordResult:
    """Read, filter, resample, segment and label one record."""
    cfg = job.config
    x, leads, src_fs, up, down, detected = _prepare_signal(job)
    if cfg.task in BEAT_TASKS:
        segs, labels, positions, extras, dropped, ignored = beat_segments(job, x, src_fs, up, down, detected)
    else:
        segs, labels, positions, extras = window_segments(job, x, up, down)
        ignored = dropped = 0
    segs = filters.normalize(segs, cfg.normalize).astype(cfg.dtype)
    return _RecordResult(record_id=job.record_id, patient=job.patient, segments=segs, labels=labels,
                         positions=positions.astype(np.int64), lead_names=leads, extras=extras, dropped=dropped,
                         ignored=ignored)

def _mp_context() -> multiprocessing.context.BaseContext:
    """The start method of the worker pool.

    fork where available and safe: workers only run numpy/scipy/wfdb, and unlike spawn/forkserver fork does
    not re-import the caller's ``__main__`` (a script without an ``if __name__ == "__main__"`` guard works).
    Once torch is imported its thread pools (OpenMP, CUDA) may hold locks that a forked child inherits
    locked, so then workers come from a forkserver (spawn where there is none); the work function
    :func:`_process_record` and its arguments are module-level and picklable for that.
    """
    methods = multiprocessing.get_all_start_methods()
    if "torch" in sys.modules:
        return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")

def run_record_jobs(jobs: list[RecordJob], n_workers: int) -> Iterator[_RecordResult]:
    """Results in job order; at most ``2 * n_workers`` records in flight."""
    if n_workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _process_record(job)
        return
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context()) as pool:
        pending: collections.deque[tuple[RecordJob, Future]] = collections.deque()
        it = iter(jobs)
        try:
            for job in it:
                pending.append((job, pool.submit(_process_record, job)))
                if len(pending) >= 2 * n_workers:
                    break
            while pending:
                job, fut = pending.popleft()
                try:
                    result = fut.result()
                except BrokenProcessPool as exc:
                    raise RecordError(
                        f"a worker process died while converting record {job.record_id} ({job.path}): "
                        f"{exc}; it may have run out of memory: try fewer jobs (--jobs 1)") from exc
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_process_record, nxt)))
                yield result
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
