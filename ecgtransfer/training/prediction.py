"""Predict on raw WFDB records with a trained run: per-beat or per-window class probabilities.

A record is processed exactly as the training store was converted, with the parameters recorded in the
store manifest (``store_manifest.json`` of the run): same leads, filter, sampling rate, window and
normalisation, using the functions of :mod:`ecgtransfer.signals`.

- Beat stores (``task = "beats"``): one row per beat. The R peaks come from the record's reference
  annotation (``<record>.atr``, beat symbols only) when it exists; otherwise from a simple R-peak detector
  (:func:`detect_r_peaks`). With an annotation, the row also holds the reference AAMI class.
- Rhythm stores (``task = "rhythm"``): one row per window (sliding windows of the store's length and stride,
  or the first window when the store used whole records).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ecgtransfer._atomic import atomic_write_text
from ecgtransfer.errors import RecordError, TrainingError
from ecgtransfer.training.evaluation import LoadedRun, load_run
from ecgtransfer.training.runtime import infer

log = logging.getLogger(__name__)


def detect_r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """A simple R-peak detector on one lead ``[n]`` (sample indices, increasing).

    QRS band-pass (5-15 Hz, zero-phase), rectified, smoothed over 80 ms; peaks of that envelope at least 250 ms
    apart (at most 240 beats/min) and above 25% of its 99th percentile; each peak is then moved to the largest
    absolute deviation from the median of the lead within +-60 ms. On mitdb (first 5 minutes, 150 ms
    tolerance) it finds >= 99% of the reference beats; records with large T waves or flutter (119, 207) get
    extra detections. It is meant for records without annotations, not as a validated clinical detector.
    """
    from scipy import signal as ss

    x = np.asarray(x, dtype=np.float64)
    sos = ss.butter(2, [5.0, min(15.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    y = np.abs(ss.sosfiltfilt(sos, x))
    w = max(1, int(round(0.08 * fs)))
    envelope = np.convolve(y, np.ones(w) / w, mode="same")
    peaks, _ = ss.find_peaks(envelope, distance=max(1, int(0.25 * fs)), height=0.25 * np.percentile(envelope, 99))
    half = int(round(0.06 * fs))
    dev = np.abs(x - np.median(x))
    refined = []
    for p in peaks:
        lo, hi = max(0, p - half), min(len(x), p + half + 1)
        refined.append(lo + int(np.argmax(dev[lo:hi])))
    return np.unique(np.asarray(refined, dtype=np.int64))


def _record_segments(run: LoadedRun, record: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Segments ``[m, C, L]`` float32 of one record and their row descriptions."""
    from ecgtransfer.signals import beats as beatmod
    from ecgtransfer.signals import filters, rhythm
    from ecgtransfer.signals.record import ALL_LEADS, read_record

    params = run.store_manifest.get("parameters") or {}
    if not params:
        raise TrainingError(f"{run.run_dir} has no store_manifest.json with conversion parameters; predict needs "
                            "them to process records like the training store")
    lead = params.get("lead")
    if isinstance(lead, list):
        lead = tuple(lead)
    rid = record.name
    rec = read_record(record, None if lead in (None, ALL_LEADS) else lead, record_id=rid)
    fs = float(params.get("fs") or rec.fs)
    x = filters.apply_filter(rec.signal, rec.fs, params.get("filter", "bandpass"), params.get("band", (0.5, 40.0)),
                             int(params.get("filter_order", 2)))
    up, down = filters.resample_ratio(rec.fs, fs)
    x = filters.resample(x, rec.fs, fs)
    task = params.get("task", run.store_manifest.get("task"))
    rows: dict[str, np.ndarray] = {}
    if task == "beats":
        reference = None
        if record.with_name(f"{record.name}.atr").is_file():
            samples, symbols, _ = beatmod.read_beat_symbols(record, record_id=rid)
            reference = np.asarray([beatmod.AAMI_MAP[s] for s in symbols.tolist()])
            source = "atr"
        else:
            samples = detect_r_peaks(rec.signal[0], rec.fs)
            source = "detector"
            log.info("record %s has no .atr annotation: %d R peaks from the built-in detector", rid, len(samples))
        peaks = (samples * up + down // 2) // down
        segs, keep = beatmod.beat_windows(x, peaks, int(params["before_samples"]), int(params["after_samples"]))
        rows["position"] = samples[keep]
        rows["time_s"] = samples[keep] / rec.fs
        rows["r_peak_source"] = np.full(int(keep.sum()), source)
        if reference is not None:
            rows["reference"] = reference[keep]
    elif task == "rhythm":
        if params.get("whole_record"):
            segs, starts = rhythm.pad_crop(x, int(params["window_samples"]))[None], np.zeros(1, dtype=np.int64)
        else:
            segs, starts = rhythm.fixed_windows(x, int(params["window_samples"]), int(params["stride_samples"]))
        pos = (starts * down + up // 2) // up
        rows["position"] = pos
        rows["time_s"] = pos / rec.fs
    else:
        raise TrainingError(f"{run.run_dir}: unknown store task {task!r}; expected beats or rhythm")
    segs = filters.normalize(segs, params.get("normalize", "none")).astype(np.float32)
    shape = run.store_manifest.get("shape")
    if shape and tuple(segs.shape[1:]) != tuple(shape[1:]):
        raise RecordError(f"record {rid}: segments of shape {segs.shape[1:]} do not match the training store's "
                          f"{tuple(shape[1:])}")
    frame = pd.DataFrame({"record": rid, "segment": np.arange(len(segs)), **rows})
    return segs, frame


def predict(run_dir: str | os.PathLike, records: Sequence[str | os.PathLike], *, checkpoint: str = "best",
            device: str | None = None, batch_size: int = 64, out: str | os.PathLike | None = None) -> pd.DataFrame:
    """Class probabilities for every beat (or window) of WFDB records.

    Args:
        run_dir: a run directory.
        records: record paths without extension (``data/mitdb/1.0.0/100``).
        checkpoint: ``"best"``, ``"last"`` or a checkpoint path.
        batch_size: inference batch size.
        out: CSV file to write (atomically), or ``None``.

    Returns:
        a DataFrame with ``record``, ``segment``, ``position`` (sample at the source rate: R peak or window
        start), ``time_s``, ``predicted`` (class name), ``confidence``, one ``p_<class>`` column per class, and
        for beats ``r_peak_source`` (``atr`` or ``detector``) and ``reference`` (AAMI class from ``.atr``).
    """
    run = load_run(run_dir, checkpoint=checkpoint, device=device)
    frames = []
    for rec in records:
        path = Path(rec)
        if path.suffix in (".hea", ".dat", ".atr", ".mat"):
            path = path.with_suffix("")
        segs, frame = _record_segments(run, path)
        if len(segs) == 0:
            log.warning("record %s gave no segments", path)
            continue
        batches = [(torch.from_numpy(segs[i:i + batch_size]), None, np.arange(i, min(i + batch_size, len(segs))))
                   for i in range(0, len(segs), batch_size)]
        res = infer(run.model, run.encoder, batches, run.device, dtype=run.dtype, channels_last=run.channels_last)
        probs = res["probs"]
        frame["predicted"] = np.asarray(run.class_names)[probs.argmax(1)]
        frame["confidence"] = probs.max(1)
        for k, name in enumerate(run.class_names):
            frame[f"p_{name}"] = probs[:, k]
        frames.append(frame)
    if not frames:
        raise RecordError("no segments in the given records; nothing to predict")
    table = pd.concat(frames, ignore_index=True)
    if out is not None:
        atomic_write_text(out, table.to_csv(index=False, float_format="%.6g"))
    return table
