"""Running a conversion: :func:`execute` converts a :class:`~ecgtransfer.conversion.plan.ConversionPlan` into its
store, :func:`convert` plans and executes in one call (the public entry point, ``ecgtransfer.convert``)."""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from ecgtransfer.conversion.config import (DEFAULT_AFTER, DEFAULT_BAND, DEFAULT_BEFORE, DEFAULT_FILTER,
                                          DEFAULT_FILTER_ORDER, DEFAULT_WINDOW)
from ecgtransfer.conversion.existing import existing_store
from ecgtransfer.conversion.plan import ConversionPlan, plan_conversion
from ecgtransfer.conversion.config import RecordJob
from ecgtransfer.conversion.workers import run_record_jobs
from ecgtransfer.signals.record import LEAD_ALTERNATIVES
from ecgtransfer.store import SegmentStore, StoreWriter, recover_interrupted

log = logging.getLogger(__package__)  # the package's: log lines name "ecgtransfer.conversion", as before the split


def _write_records(plan: ConversionPlan, run_jobs: list[RecordJob], writer: StoreWriter, progress: bool
                   ) -> dict[str, Any]:
    """Run the record jobs and append their segments to ``writer`` in record order; return the store's summary
    (``manifest["summary"]``: records, segments, beats dropped at the edges, annotations ignored, ...)."""
    from tqdm.auto import tqdm

    db = plan.database
    dropped: dict[str, int] = {}
    record_leads: dict[str, list[str]] = {}
    ignored = 0
    with tqdm(total=len(run_jobs), desc=f"convert {db.name}", unit="record", disable=not progress) as bar:
        for res in run_record_jobs(run_jobs, plan.jobs):
            if res.dropped:
                dropped[res.record_id] = res.dropped
            record_leads[res.record_id] = list(res.lead_names)
            ignored += res.ignored
            if len(res.segments):
                writer.append(res.segments, res.labels, record_id=res.record_id, patient_id=res.patient,
                              positions=res.positions, extras=res.extras)
            else:
                log.warning("record %s produced no segments", res.record_id)
            bar.update(1)
    if dropped:
        log.info("dropped %d beats whose window falls off the record edge (%s)", sum(dropped.values()),
                 ", ".join(f"{r}: {n}" for r, n in dropped.items()))
    if ignored:
        log.info("ignored %d non-beat annotations", ignored)
    summary = {"n_records": len(run_jobs), "n_segments": len(writer), "dropped_edge": dropped,
               "ignored_annotations": ignored, **plan.summary_extra}
    if any(LEAD_ALTERNATIVES in name for name in plan.lead_names):  # the stored leads differ between records
        summary["record_leads"] = record_leads
    return summary


def execute(plan: ConversionPlan, *, progress: bool = True) -> SegmentStore:
    """Convert the records of ``plan`` into its store and return the store.

    An interrupted overwrite's leftovers beside ``plan.out`` are cleaned up first (the store it had moved aside
    is restored); a store at ``plan.out`` holding exactly this conversion is returned as it is. Otherwise the
    records are processed by ``plan.jobs`` workers and appended in order to a new store, which appears at
    ``plan.out`` only once complete (see :func:`convert`).

    Args:
        plan: from :func:`plan_conversion`.
        progress: show a tqdm progress bar.

    Returns:
        The :class:`~ecgtransfer.store.SegmentStore` (``segments`` ``[N, C, L]``).

    Raises:
        RecordError: a record fails to convert, or a worker process dies.
        StoreError: ``plan.out`` holds another conversion and ``plan.overwrite`` is False.
    """
    db, cfg, out = plan.database, plan.config, plan.out
    recover_interrupted(out)  # an overwrite killed between its renames leaves the previous store aside
    existing, stale = existing_store(out, cfg, plan.source_files, plan.overwrite)
    if stale is not None:
        log.warning("%s", stale)
    overwrite = plan.overwrite or stale is not None
    if existing is not None:
        log.info("%s is up to date (same parameters and source files); skipping conversion", out)
        return existing

    run_jobs = [RecordJob(record_id=r.record_id, path=str(r.path), patient=r.patient, label=r.label, config=cfg,
                           extras=r.extras) for r in plan.records]
    log.info("converting %d %s records (%s task, %d worker(s)) into %s", len(run_jobs), db.name, cfg.task,
             plan.jobs, out)

    with StoreWriter(out, channels=len(plan.lead_names), length=cfg.length, dtype=cfg.dtype,
                     overwrite=overwrite) as writer:
        summary = _write_records(plan, run_jobs, writer, progress)
        store = writer.close(database=db.name, version=cfg.version, task=cfg.task, fs=cfg.fs,
                             lead_names=plan.lead_names, class_names=cfg.class_names,
                             source_files=plan.source_files, parameters=cfg.to_json(), summary=summary,
                             patients_known=db.patients_known, **plan.manifest_extra,
                             provenance={"source_root": str(plan.data.resolve()), "jobs": plan.jobs})
    log.info("wrote %s: %d segments of shape %s", out, len(store), store.shape[1:])
    return store


# long: the public entry point documents every parameter in its docstring (the code is 7 lines)
def convert(database: str, *, data: str | os.PathLike, out: str | os.PathLike, task: str | None = None,
            records: Sequence[str] | None = None, lead: str | Sequence[str] | None = None, fs: float | None = None,
            before: float | int | str = DEFAULT_BEFORE, after: float | int | str = DEFAULT_AFTER,
            rr_context: bool = True, include_paced: bool = False, window: float = DEFAULT_WINDOW,
            stride: float | None = None, whole_record: bool = False, reference: str = "original",
            rhythm_classes: str = "fine", filter: str = DEFAULT_FILTER,  # noqa: A002 - the natural name
            band: Sequence[float] = DEFAULT_BAND, filter_order: int = DEFAULT_FILTER_ORDER, normalize: str = "none",
            dtype: str = "float32", jobs: int | None = None, overwrite: bool = False, version: str | None = None,
            progress: bool = True, level: str | None = None, rate: int | None = None) -> SegmentStore:
    """Convert a downloaded database into a segment store and return it.

    Args:
        database: catalog name: ``mitdb`` (beats), ``challenge-2017`` or ``ludb`` (rhythm).
        data: folder holding ``<database>/<version>/`` as ``ecgtransfer download`` lays it out.
        out: the store directory to create.
        task: ``beats``, ``rhythm`` or ``rhythm-beats`` (:data:`TASKS`; default: the database's default task).
        records: record ids (``"101"``, ``"A00009"``, ``"1"``) or names as in ``RECORDS``; default every
            downloaded record (mitdb beats: without the paced records 102 104 107 217).
        lead: lead name (``"MLII"``), a list of names, or ``"all"``; default the catalog's first lead
            (mitdb MLII, challenge-2017 ECG, ludb i). Names are matched exactly, then case-insensitively. A name
            may list alternatives, ``"V1|V2|V4|V5"``: the first one a record has (mitdb's two leads:
            ``["MLII", "V1|V2|V4|V5"]``; the leads each record gave are in ``manifest["summary"]["record_leads"]``).
        fs: output sampling rate in Hz (default: the source rate); resampling uses
            :func:`scipy.signal.resample_poly` after filtering. Positions stay in source samples.
        before, after: beat window around the R peak: a ``float`` is seconds, an ``int`` is samples at the
            output rate, a string carries its unit (``"0.25s"``, ``"250ms"``, ``"90samples"``). Default
            0.25 s before and 0.45 s after (252 samples at 360 Hz). Beats whose window falls off the record
            edge are dropped (counted in the log and in ``manifest["summary"]``).
        rr_context: store the extra ``rr`` ``[N, 8]`` float32 (default on for beats): previous RR, next RR and local
            average RR (mean of the 10 surrounding intervals) in seconds, the three divided by the record's mean
            RR, then the 5-minute average RR (the intervals within 150 s of the beat) in seconds and over the
            record's mean RR, from all reference beats of the record (:func:`ecgtransfer.signals.beats.rr_features`; columns
            :data:`~ecgtransfer.signals.beats.RR_FEATURES`). Models read it with ``rr="auto"``.
        include_paced: keep mitdb's paced records (102 104 107 217).
        window: rhythm window length in seconds (default 10 s).
        stride: rhythm window step in seconds (default ``window``: no overlap).
        whole_record: one segment per record: its first ``window`` seconds, zero-padded when shorter.
        reference: challenge-2017 labels: ``original`` (REFERENCE.csv) or ``v3`` (REFERENCE-v3.csv).
        rhythm_classes: ludb classes: ``fine`` (SR SB ST SA AF AFL) or ``coarse`` (sinus, atrial).
        filter: ``bandpass`` (default), ``highpass``, ``median`` or ``none`` (see :mod:`ecgtransfer.signals.filters`).
        band: (low, high) cut-offs in Hz (default 0.5-40 Hz).
        filter_order: Butterworth order per pass (zero-phase filtering doubles it).
        normalize: per-segment normalisation: ``none`` (default: physical units, mV), ``zscore`` or ``minmax``.
        dtype: ``float32`` or ``float16`` segments.
        jobs: worker processes (default ``min(4, cpu count)``; 1 runs in this process).
        overwrite: replace an existing store holding a different conversion.
        version: database version (default: the catalog's newest).
        progress: show a tqdm progress bar.
        level: ``multilabel`` (ptb-xl): the label level of the targets, one of
            :data:`ecgtransfer.physionet.ptbxl.LEVELS` (default ``superdiagnostic``); every level's targets are stored
            as extras ``targets_<level>``, the chosen one also as ``targets``.
        rate: ``multilabel`` (ptb-xl): read the 100 Hz (default) or 500 Hz records.

    Returns:
        The :class:`~ecgtransfer.store.SegmentStore` (``segments`` ``[N, C, L]``).

    Raises:
        CatalogError: unknown database, version or record.
        ConfigError: invalid parameters.
        RecordError: a missing or malformed source file (the message names the record and the file).
        StoreError: ``out`` holds another conversion and ``overwrite`` is False.
    """
    plan = plan_conversion(database, data=data, out=out, task=task, records=records, lead=lead, fs=fs, before=before,
                           after=after, rr_context=rr_context, include_paced=include_paced, window=window,
                           stride=stride, whole_record=whole_record, reference=reference,
                           rhythm_classes=rhythm_classes, filter=filter, band=band, filter_order=filter_order,
                           normalize=normalize, dtype=dtype, jobs=jobs, overwrite=overwrite, version=version,
                           level=level, rate=rate)
    return execute(plan, progress=progress)


__all__ = ["convert", "execute"]
