"""Predict on recordings with a trained run: per-beat or per-window class probabilities, streamed in chunks.

A recording (a WFDB record, an EDF/EDF+ file, a CSV or ``.npy`` export: :mod:`ecgtransfer.signals.readers`)
is processed exactly as the training store was converted, with the parameters recorded in the store manifest
(``store_manifest.json`` of the run): same leads, filter, sampling rate, window and normalisation, using the
functions of :mod:`ecgtransfer.signals` (filter at the source rate, then :func:`~ecgtransfer.signals.filters.resample`
to the store's rate).

- Beat stores (``task = "beats"``): one row per beat. The R peaks come from
  :func:`ecgtransfer.signals.rpeaks.detect_r_peaks` (``r_peaks="detector"``, the default) or, on request, from
  the record's reference annotation (``r_peaks="atr"``, ``<record>.atr``, beat symbols only). When a WFDB record
  has an ``.atr``, each row also holds the reference AAMI class (for detected beats: of the reference beat
  within 150 ms, empty when none). The RR features of every beat come from the same peaks
  (:func:`ecgtransfer.signals.beats.rr_features`, computed once per record in :func:`_beats_and_rr`).
- Rhythm stores (``task = "rhythm"``): one row per window (sliding windows of the store's length and stride,
  or the first window when the store used whole records).

Long records are streamed: R peaks are found in 30-minute chunks
(:class:`~ecgtransfer.signals.rpeaks.ChunkedDetector`), then each chunk of :data:`CHUNK_S` seconds is read again
with :data:`MARGIN_S` seconds of context, filtered, resampled, cut into beats and classified, so memory is bounded
by the chunk, not the record (a 24-hour Holter at 360 Hz is 31 M samples per lead). Rhythm windows are made from the whole record (rhythm records are short).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from tqdm.auto import tqdm

from ecgtransfer._atomic import atomic_write_text
from ecgtransfer.errors import ConfigError, RecordError, SignalError, TrainingError
from ecgtransfer.signals import beats as beatmod
from ecgtransfer.signals import filters, readers, rhythm, rpeaks, template
from ecgtransfer.signals.readers import Recording
from ecgtransfer.signals.record import ALL_LEADS
from ecgtransfer.training.decision import DECISION_USES
from ecgtransfer.training.evaluation import LoadedRun, load_run
from ecgtransfer.training.runtime import infer

log = logging.getLogger(__name__)


#: where the R peaks of beat stores come from (``predict --r-peaks``); the first is the default
R_PEAK_SOURCES = ("detector", "atr")
#: seconds of source signal filtered, segmented and classified at a time (R peaks: ``rpeaks.CHUNK_S``)
CHUNK_S = 600.0
#: seconds of context read on each side of a chunk (filter and resampling transients stay outside the chunk)
MARGIN_S = rpeaks.MARGIN_S
#: plausible range of the median heart rate of a record (beats/min); outside it the rate or units are wrong
HEART_RATE_RANGE = (20.0, 300.0)
#: plausible range of a lead's amplitude (0.1-99.9 percentile span, mV) after unit conversion
AMPLITUDE_RANGE_MV = (0.05, 40.0)


def _store_params(run: LoadedRun) -> dict:
    params = run.store_manifest.get("parameters") or {}
    if not params:
        raise TrainingError(f"{run.run_dir} has no store_manifest.json with conversion parameters; predict needs "
                            "them to process records like the training store")
    return params


def _store_leads(run: LoadedRun, params: dict) -> list[str]:
    """Lead names the model was trained on, in store order."""
    lead = params.get("lead")
    if isinstance(lead, str) and lead != ALL_LEADS:
        return [lead]
    if isinstance(lead, (list, tuple)):
        return [str(x) for x in lead]
    names = [str(x) for x in run.store_manifest.get("lead_names") or []]
    parts = run.store_manifest.get("databases")
    if isinstance(parts, list) and parts and isinstance(parts[0], dict) and parts[0].get("lead_names"):
        # a combined store names its leads by position; its first database's names (with alternatives such as
        # 'V1|V5|V4') find them in a new recording, --lead picks others
        names = [str(x) for x in parts[0]["lead_names"]]
    if not names:
        raise TrainingError(f"{run.run_dir}: store_manifest.json names no leads; predict cannot tell which lead the "
                            "model was trained on")
    return names


def _progress(total_s: float, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=round(total_s, 1), desc=desc, unit="s", disable=not enabled, leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")


def _check_amplitude(rec: Recording, span: float) -> None:
    """A lead's typical 0.1-99.9 percentile span ``span`` (mV) must be an ECG's (catches µV or V taken as mV)."""
    if not AMPLITUDE_RANGE_MV[0] <= span <= AMPLITUDE_RANGE_MV[1]:
        # the unit that puts the lead in range, from the unit it was read in (--units uV on a file in mV: mV)
        hint = readers.unit_hint(span, rec.units, *AMPLITUDE_RANGE_MV)
        read_as = f" read as {rec.units}" if rec.units else ""
        ask = f"are the values in {hint}? (--units {hint}), or is the lead flat?" if hint else "is the lead flat?"
        raise RecordError(f"{rec.path}: the lead{read_as} spans {span:.3g} mV, outside the "
                          f"{AMPLITUDE_RANGE_MV[0]:g}-{AMPLITUDE_RANGE_MV[1]:g} mV of an ECG; {ask}")


def _detect(rec: Recording, lead: int, progress: bool) -> np.ndarray:
    """R peaks (source samples) of ``rec``'s ``lead`` with the chunked detector, with plausibility checks."""
    det = rpeaks.ChunkedDetector(rec.fs, rec.n_samples)
    spans: list[float] = []

    def read(a: int, b: int) -> np.ndarray:
        x = rec.read([lead], a, b)[0]
        if len(x) >= 10:
            lo, hi = np.percentile(x, [0.1, 99.9])
            spans.append(float(hi - lo))
        return x

    with _progress(rec.n_samples / rec.fs, f"{rec.record_id}: R peaks", progress) as bar:
        peaks = det.run(read, lambda n: bar.update(round(n / rec.fs, 1)))
    if spans:
        _check_amplitude(rec, float(np.median(spans)))
    if len(peaks) < 2:
        raise RecordError(f"{rec.path}: found {len(peaks)} R peak(s) in {rec.n_samples / rec.fs:.1f} s at "
                          f"{rec.fs:g} Hz; expected an ECG lead (check --fs, --lead and --units)")
    rate = 60.0 * rec.fs / float(np.median(np.diff(peaks)))
    if not HEART_RATE_RANGE[0] <= rate <= HEART_RATE_RANGE[1]:
        raise RecordError(f"{rec.path}: the detected beats give a median heart rate of {rate:.0f}/min at "
                          f"{rec.fs:g} Hz, outside {HEART_RATE_RANGE[0]:g}-{HEART_RATE_RANGE[1]:g}/min: is the "
                          "sampling rate (--fs) right?")
    return peaks


def _reference_classes(rec: Recording) -> tuple[np.ndarray, np.ndarray] | None:
    """``(samples, AAMI classes)`` of the record's ``.atr`` beats, or None without one."""
    if rec.annotation is None:
        return None
    samples, symbols, _ = beatmod.read_beat_symbols(rec.annotation, record_id=rec.record_id)
    past = np.asarray(samples) >= rec.n_samples
    if past.any():  # an .atr of a longer recording, or a cut signal: said, not dropped silently
        if past.all():
            raise RecordError(f"{rec.annotation}: all {len(samples)} beats lie past the end of {rec.path} "
                              f"({rec.n_samples} samples); the annotation file does not belong to this signal")
        log.warning("%s: %d of %d reference beats lie past the end of the signal (%d samples, beats up to sample "
                    "%d) and are left out; is the .atr of another (longer) recording?", rec.annotation,
                    int(past.sum()), len(samples), rec.n_samples, int(np.max(samples)))
        samples, symbols = np.asarray(samples)[~past], np.asarray(symbols)[~past]
    return samples, np.asarray([beatmod.AAMI_MAP[s] for s in symbols.tolist()])


def _beats_and_rr(rec: Recording, leads: list[int], r_peaks: str, progress: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The one place where a record's beats are fixed: ``(peaks [n], rr [n, k], reference [n] or None)``.

    ``peaks`` are R peaks in source samples (from the detector or the ``.atr``), ``rr`` their RR features
    (:func:`ecgtransfer.signals.beats.rr_features`, over all peaks of the record, as the store's are), and
    ``reference`` the AAMI class of each peak from the ``.atr`` when there is one (``""`` where a detected
    peak has no reference beat within :data:`~ecgtransfer.signals.rpeaks.MATCH_WINDOW_S`).
    """
    if r_peaks not in R_PEAK_SOURCES:
        raise ConfigError(f"unknown R-peak source {r_peaks!r}; expected one of {', '.join(R_PEAK_SOURCES)}")
    ref = _reference_classes(rec) if rec.format == "wfdb" else None
    if r_peaks == "atr":
        if ref is None:
            raise RecordError(f"{rec.path}: --r-peaks atr needs a WFDB record with a reference annotation "
                              f"({rec.path.name}.atr); use --r-peaks detector")
        peaks, reference = ref
    else:
        peaks = _detect(rec, leads[0], progress)
        reference = None
        if ref is not None:
            samples, classes = ref
            reference = np.full(len(peaks), "", dtype=object)
            if len(samples):  # the nearest reference beat, when within the EC57 matching window
                right = np.minimum(np.searchsorted(samples, peaks), len(samples) - 1)
                left = np.maximum(right - 1, 0)
                j = np.where(np.abs(samples[left] - peaks) <= np.abs(samples[right] - peaks), left, right)
                near = np.abs(samples[j] - peaks) <= int(rpeaks.MATCH_WINDOW_S * rec.fs)
                reference[near] = classes[j[near]]
        log.info("%s: %d R peaks from the detector", rec.record_id, len(peaks))
    rr = beatmod.rr_features(peaks, rec.fs)
    return np.asarray(peaks, dtype=np.int64), rr, reference


def _rr_dim(run: LoadedRun) -> int:
    """RR-feature columns the run's model reads (0: none): the first ``rr_dim`` of ``beats.rr_features``, as the
    checkpoint records them (``LoadedRun.rr_columns``)."""
    return int(run.rr_dim)


def _classify(run: LoadedRun, segs: np.ndarray, rr: np.ndarray | None, batch_size: int) -> np.ndarray:
    """Class probabilities ``[m, K]`` of segments ``[m, C, L]`` with their RR features ``[m, k]`` (beats; None for
    rhythm windows). A model that fuses RR context gets the first ``rr_dim`` columns, as the store's loader gives
    them in training (:class:`ecgtransfer.training.data.StoreDataset`)."""
    k = _rr_dim(run)
    if k and rr is None:
        raise TrainingError(f"{run.run_dir}: the model reads {k} RR features, which rhythm windows do not have")
    if k and rr.shape[1] < k:
        raise TrainingError(f"{run.run_dir}: the model reads {k} RR features; beats.rr_features gives {rr.shape[1]}")
    batches = []
    for i in range(0, len(segs), batch_size):
        item = (torch.from_numpy(segs[i:i + batch_size]), None, np.arange(i, min(i + batch_size, len(segs))))
        if k:
            item = item + (torch.from_numpy(np.ascontiguousarray(rr[i:i + batch_size, :k], dtype=np.float32)),)
        batches.append(item)
    res = infer(run.model, run.encoder, batches, run.device, dtype=run.dtype, channels_last=run.channels_last)
    return res["probs"]


def _check_shape(run: LoadedRun, segs: np.ndarray, rid: str) -> None:
    shape = run.store_manifest.get("shape")
    if shape and tuple(segs.shape[1:]) != tuple(shape[1:]):
        raise RecordError(f"record {rid}: segments of shape {segs.shape[1:]} do not match the training store's "
                          f"{tuple(shape[1:])}")


def _prepare(rec: Recording, leads: list[int], params: dict, lo: int, hi: int) -> np.ndarray:
    """Source samples ``[lo, hi)`` filtered and resampled as the store was: ``[C, ceil((hi - lo) * up / down)]``."""
    fs = float(params.get("fs") or rec.fs)
    x = filters.apply_filter(rec.read(leads, lo, hi), rec.fs, params.get("filter", "bandpass"),
                             params.get("band", (0.5, 40.0)), int(params.get("filter_order", 2)))
    return filters.resample(x, rec.fs, fs)


def _beat_windows_by_chunk(rec: Recording, leads: list[int], params: dict, peaks: np.ndarray, wanted: np.ndarray,
                           bar: tqdm | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(sel [m], segments [m, C, L] float32)`` chunk by chunk for the beats ``wanted`` (bool ``[n]`` over ``peaks``,
    all inside the record: :func:`_inside`), cut, filtered, resampled and normalised as the store's were."""
    fs = float(params.get("fs") or rec.fs)
    up, down = filters.resample_ratio(rec.fs, fs)
    before, after = int(params["before_samples"]), int(params["after_samples"])
    out_pos = (peaks * up + down // 2) // down  # round(p * up / down), as conversion does
    # chunk and margin are whole multiples of ``down``, so every chunk starts on the output sample grid
    chunk = max(1, -(-int(CHUNK_S * rec.fs) // down)) * down
    need = max(MARGIN_S * rec.fs, (max(before, after) + 1) * down / up)
    margin = -(-int(need) // down) * down
    norm = params.get("normalize", "none")
    for a in range(0, rec.n_samples, chunk):
        b = min(a + chunk, rec.n_samples)
        sel = np.flatnonzero((peaks >= a) & (peaks < b) & wanted)
        if len(sel):
            lo, hi = max(0, a - margin), min(rec.n_samples, b + margin)
            x = _prepare(rec, leads, params, lo, hi)
            segs, keep = beatmod.beat_windows(x, out_pos[sel] - lo * up // down, before, after)
            if not keep.all():  # cannot happen: the margin holds every window of the chunk
                raise RecordError(f"{rec.path}: beat windows near samples {a}-{b} fall outside the chunk read")
            yield sel, filters.normalize(segs, norm).astype(np.float32)
        if bar is not None:
            bar.update(round((b - a) / rec.fs, 1))


def _inside(rec: Recording, params: dict, peaks: np.ndarray) -> np.ndarray:
    """Bool ``[n]``: the beats whose window lies inside the record (beat_windows' edge rule on the whole record)."""
    fs = float(params.get("fs") or rec.fs)
    up, down = filters.resample_ratio(rec.fs, fs)
    before, after = int(params["before_samples"]), int(params["after_samples"])
    n_out = -(-rec.n_samples * up // down)
    out_pos = (peaks * up + down // 2) // down
    return (out_pos - before >= 0) & (out_pos + after <= n_out)


def _recording_template(rec: Recording, leads: list[int], params: dict, peaks: np.ndarray,
                        inside: np.ndarray) -> np.ndarray:
    """The recording's template ``[C, L]`` (:func:`ecgtransfer.signals.template.record_template`) from its own beats,
    the same subset rule as a store's record (a first pass over the beats it takes)."""
    members = np.flatnonzero(inside)
    if not len(members):
        raise RecordError(f"{rec.path}: no complete beat window to build the record's template from")
    wanted = np.zeros(len(peaks), dtype=bool)
    wanted[members[template.template_subset(len(members))]] = True
    segs = np.concatenate([s for _, s in _beat_windows_by_chunk(rec, leads, params, peaks, wanted)])
    return template.record_template(segs)


def _beat_table(run: LoadedRun, rec: Recording, leads: list[int], params: dict, r_peaks: str, batch_size: int,
                progress: bool) -> pd.DataFrame:
    """Per-beat rows of one recording, streamed chunk by chunk (a first pass builds the record's template when the
    run's ``beat_input`` uses one)."""
    peaks, rr, reference = _beats_and_rr(rec, leads, r_peaks, progress)
    inside = _inside(rec, params, peaks)
    mode = run.config.beat_input
    tmpl = _recording_template(rec, leads, params, peaks, inside) if template.uses_template(mode) else None
    frames = []
    with _progress(rec.n_samples / rec.fs, f"{rec.record_id}: beats", progress) as bar:
        for sel, segs in _beat_windows_by_chunk(rec, leads, params, peaks, inside, bar):
            _check_shape(run, segs, rec.record_id)
            if tmpl is not None:
                segs = template.compose_input(segs, np.broadcast_to(tmpl, segs.shape), mode)
            probs = _classify(run, segs, rr[sel], batch_size)
            rows: dict[str, np.ndarray] = {"position": peaks[sel], "time_s": peaks[sel] / rec.fs,
                                           "r_peak_source": np.full(len(sel), r_peaks)}
            if reference is not None:
                rows["reference"] = reference[sel]
            frames.append(_with_probs(run, pd.DataFrame(rows), probs))
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "segment", np.arange(len(table)))
    table.insert(0, "record", rec.record_id)
    return table


def _rhythm_table(run: LoadedRun, rec: Recording, leads: list[int], params: dict, batch_size: int) -> pd.DataFrame:
    """Per-window rows of one recording (the whole record is read: rhythm records are short)."""
    fs = float(params.get("fs") or rec.fs)
    up, down = filters.resample_ratio(rec.fs, fs)
    x = _prepare(rec, leads, params, 0, rec.n_samples)
    if params.get("whole_record"):
        segs, starts = rhythm.pad_crop(x, int(params["window_samples"]))[None], np.zeros(1, dtype=np.int64)
    else:
        segs, starts = rhythm.fixed_windows(x, int(params["window_samples"]), int(params["stride_samples"]))
    pos = (starts * down + up // 2) // up
    segs = filters.normalize(segs, params.get("normalize", "none")).astype(np.float32)
    _check_shape(run, segs, rec.record_id)
    frame = pd.DataFrame({"record": rec.record_id, "segment": np.arange(len(segs)), "position": pos,
                          "time_s": pos / rec.fs})
    return _with_probs(run, frame, _classify(run, segs, None, batch_size))


def _with_probs(run: LoadedRun, frame: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """``predicted``: the class of the run's decision rule; ``decision``: the rule's method; ``confidence``: the
    probability of the predicted class; ``p_<class>``: the model's probabilities, unchanged."""
    pred = run.decision.apply(probs)
    frame["predicted"] = np.asarray(run.class_names)[pred]
    frame["decision"] = run.decision.method
    frame["confidence"] = probs[np.arange(len(pred)), pred]
    for k, name in enumerate(run.class_names):
        frame[f"p_{name}"] = probs[:, k]
    return frame


def predict(run_dir: str | os.PathLike, records: Sequence[str | os.PathLike], *, checkpoint: str = "best",
            device: str | None = None, batch_size: int = 64, out: str | os.PathLike | None = None,
            fs: float | None = None, lead: str | Sequence[str] | None = None, units: str | None = None,
            r_peaks: str = R_PEAK_SOURCES[0], report: str | os.PathLike | None = None,
            progress: bool = True, decision: str = DECISION_USES[0]) -> pd.DataFrame:
    """Class probabilities for every beat (or window) of recordings.

    Args:
        run_dir: a run directory.
        records: WFDB record paths (``data/mitdb/1.0.0/100``, with or without ``.hea``), ``.edf``, ``.csv`` or
            ``.npy`` files (:func:`ecgtransfer.signals.readers.open_recording`).
        checkpoint: ``"best"``, ``"last"`` or a checkpoint path.
        batch_size: inference batch size.
        out: CSV file to write (atomically), or ``None``.
        fs: sampling rate of CSV / ``.npy`` inputs in Hz (for WFDB and EDF it must agree with the file).
        lead: the input's lead(s) to use for the store's lead(s), by name (comma-separated or a list; ``.npy``
            columns are named ``0``, ``1``, ...); default: the store's lead names, or a file's only lead.
        units: unit of CSV / ``.npy`` values (``mV`` default, ``uV``, ``V``), or an EDF override.
        r_peaks: ``"detector"`` (default) or ``"atr"`` (the WFDB record's reference beats), for beat stores.
        report: a folder for the beat report (:func:`ecgtransfer.training.beat_report.write_beat_report`).
        progress: show tqdm progress bars.
        decision: ``"stored"`` (the run's decision rule, :mod:`ecgtransfer.training.decision`; the plain arg-max
            for runs without one) or ``"argmax"``.

    Returns:
        a DataFrame with ``record``, ``segment``, ``position`` (sample at the source rate: R peak or window
        start), ``time_s``, ``predicted`` (class name by the decision rule), ``decision`` (the rule's method),
        ``confidence`` (the probability of the predicted class), one ``p_<class>`` column per class (the model's
        probabilities, whatever the rule), and
        for beats ``r_peak_source`` (``atr`` or ``detector``) and, for WFDB records with an ``.atr``,
        ``reference`` (AAMI class).
    """
    from ecgtransfer.training.evaluation import is_multilabel_run

    if is_multilabel_run(run_dir):  # one row per record: the probability of every statement
        return _predict_multilabel(run_dir, records, out, checkpoint=checkpoint, device=device, fs=fs, lead=lead,
                                   units=units, batch_size=batch_size)
    if r_peaks not in R_PEAK_SOURCES:
        raise ConfigError(f"unknown R-peak source {r_peaks!r}; expected one of {', '.join(R_PEAK_SOURCES)}")
    peaks_from = (f"ecgtransfer's R-peak detector, version {rpeaks.DETECTOR_VERSION}" if r_peaks == "detector"
                  else "the records' reference annotations (.atr)")
    run, params, task = _load_for_predict(run_dir, checkpoint=checkpoint, device=device, decision=decision)
    store_leads = _store_leads(run, params)
    if task == "beats":
        log.info("beats found by %s", peaks_from)
    recs = [readers.open_recording(path, fs=fs, units=units) for path in records]
    for rec, rid in zip(recs, readers.unique_record_ids(recs)):
        rec.record_id = rid
    frames, opened = _record_tables(run, recs, task, params, lead=lead, store_leads=store_leads, r_peaks=r_peaks,
                                    batch_size=batch_size, progress=progress)
    table = pd.concat(frames, ignore_index=True)
    if out is not None:
        atomic_write_text(out, table.to_csv(index=False, float_format="%.6g"))
    if report is not None:
        _write_report(table, report, run, task, peaks_from, opened)
    return table


def _load_for_predict(run_dir: str | os.PathLike, *, checkpoint: str, device: str | None, decision: str
                      ) -> tuple[LoadedRun, dict[str, Any], str]:
    """``(run, its store's conversion parameters, task)``: the task must be ``beats`` or ``rhythm``."""
    run = load_run(run_dir, checkpoint=checkpoint, device=device, decision=decision)
    log.info("%s: classes by the decision rule %s", run.checkpoint, run.decision.describe())
    params = _store_params(run)
    task = params.get("task", run.store_manifest.get("task"))
    if task not in ("beats", "rhythm"):
        raise TrainingError(f"{run.run_dir}: unknown store task {task!r}; expected beats or rhythm")
    return run, params, task


def _write_report(table: pd.DataFrame, report: str | os.PathLike, run: LoadedRun, task: str, peaks_from: str,
                  opened: dict[str, tuple[Recording, list[str]]]) -> None:
    """The beat report of ``predict`` (``--report``), with signal strips read from the ``opened`` recordings."""
    if task != "beats":
        raise TrainingError("--report describes beats; the run's store has rhythm windows")
    from ecgtransfer.training.beat_report import write_beat_report

    write_beat_report(table, report, class_names=run.class_names, r_peaks=peaks_from,
                      strip=lambda rid, a, b: (opened[rid][0].fs, opened[rid][0].read(opened[rid][1][:1], a,
                                                                                        b)[0]))


def _predict_multilabel(run_dir: str | os.PathLike, records: Sequence[str | os.PathLike],
                        out: str | os.PathLike | None, **kw: Any) -> pd.DataFrame:
    """:func:`predict` of a multilabel run (:func:`ecgtransfer.training.multilabel.predict_multilabel`), written to
    ``out`` when given."""
    from ecgtransfer.training.multilabel import predict_multilabel

    frame = predict_multilabel(run_dir, records, **kw)
    if out is not None:  # atomic_write_text is the module's: a local import would unbind it for the beats path
        atomic_write_text(os.fspath(out), frame.to_csv(index=False))
    return frame


def _record_tables(run: LoadedRun, recs: list[Recording], task: str, params: dict[str, Any], *,
                   lead: str | Sequence[str] | None, store_leads: Sequence[str], r_peaks: str, batch_size: int,
                   progress: bool) -> tuple[list[pd.DataFrame], dict[str, tuple[Recording, list[str]]]]:
    """The table of each opened recording (beats or rhythm windows; a recording without segments is skipped with
    a warning) and ``{record_id: (recording, leads)}`` of those kept; a :class:`RecordError` when none is left."""
    frames, opened = [], {}
    for rec in recs:
        leads = readers.select(rec, lead, store_leads)
        try:
            if task == "beats":
                frame = _beat_table(run, rec, leads, params, r_peaks, batch_size, progress)
            else:
                frame = _rhythm_table(run, rec, leads, params, batch_size)
        except (SignalError, ConfigError) as exc:  # a rate the filter or detector cannot take: name the file
            raise RecordError(f"{rec.path} ({rec.fs:g} Hz): {exc}") from exc
        if len(frame) == 0:
            log.warning("record %s gave no segments", rec.path)
            continue
        frames.append(frame)
        opened[rec.record_id] = (rec, leads)
    if not frames:
        raise RecordError("no segments in the given records; nothing to predict")
    return frames, opened
