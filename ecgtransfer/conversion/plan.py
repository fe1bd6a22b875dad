"""Planning a conversion: every check and every read before anything is written (main process).

:func:`plan_conversion` checks the parameters and the output folder, resolves the records, their labels and leads
(:mod:`.records`; ``multilabel``: :mod:`.multilabel`), reads every header, hashes every source file and compares
with a store already at ``out`` (:mod:`.existing`); the :class:`ConversionPlan` it returns is what
:func:`~ecgtransfer.conversion.run.execute` converts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ecgtransfer._outdir import check_output_dir
from ecgtransfer.conversion.beats import beat_sides
from ecgtransfer.conversion.config import (BEAT_TASKS, DEFAULT_AFTER, DEFAULT_BAND, DEFAULT_BEFORE, DEFAULT_FILTER,
                                          DEFAULT_FILTER_ORDER, DEFAULT_WINDOW, DETECTOR_TASKS, DTYPES,
                                          ConvertConfig)
from ecgtransfer.conversion.existing import existing_store
from ecgtransfer.conversion.multilabel import MultilabelPlan, plan_multilabel
from ecgtransfer.conversion.records import hash_sources, labels_for, read_headers, resolve_records, version_dir
from ecgtransfer.conversion.windows import window_steps
from ecgtransfer.errors import ConfigError
from ecgtransfer.physionet.catalog import Database, get_database
from ecgtransfer.signals import beats as beatmod
from ecgtransfer.signals import filters, rpeaks
from ecgtransfer.signals.record import ALL_LEADS
from ecgtransfer.store import STORE_LAYOUT


@dataclass(frozen=True)
class PlannedRecord:
    """One record a plan converts.

    Attributes:
        record_id: the record's id (``"101"``, ``"A00009"``).
        path: the record's path without extension (``.../mitdb/1.0.0/101``).
        patient: the patient (subject) id of the record (``Database.patient_of``: mitdb 202 is patient 201).
        label: the record's class index into ``ConvertConfig.class_names`` (rhythm tasks); None for ``beats``,
            whose labels come from each beat's annotation.
    """

    record_id: str
    path: Path
    patient: str
    label: int | None
    extras: Mapping[str, np.ndarray] | None = None


@dataclass(frozen=True)
class ConversionPlan:
    """A conversion resolved and validated by :func:`plan_conversion`, ready for :func:`execute`.

    Attributes:
        database: the catalog entry of the database.
        config: every parameter that determines the store's content (its ``version``, ``task``, ``records``
            and ``class_names`` among them), as recorded in ``manifest["parameters"]``.
        records: the records to convert, in store order (ids as in ``config.records``).
        lead_names: the stored leads, as named in the first record's header (``C = len(lead_names)``).
        source_files: relative path -> SHA256 of every source file read (headers, signals, annotations, label
            files), sorted by path; ``manifest["source_files"]``.
        data: the folder holding ``<database>/<version>/``.
        out: the store directory to create.
        jobs: worker processes (at most one per record; 1 converts in this process).
        overwrite: whether a store of another conversion at ``out`` may be replaced.
        stale: why the store at ``out`` will be converted again without ``overwrite`` (it is this conversion made
            by another version of the R-peak detector), or None.
        up_to_date: ``out`` already holds exactly this conversion (same parameters and source files) when
            planned; :func:`execute` then returns that store and writes nothing.
        manifest_extra: top-level manifest entries of the task (``multilabel``: the label names of every level).
        summary_extra: entries of ``manifest["summary"]`` (``multilabel``: the records left out without a label).
    """

    database: Database
    config: ConvertConfig
    records: tuple[PlannedRecord, ...]
    lead_names: tuple[str, ...]
    source_files: dict[str, str]
    data: Path
    out: Path
    jobs: int
    overwrite: bool
    up_to_date: bool
    manifest_extra: Mapping[str, Any] = field(default_factory=dict)
    summary_extra: Mapping[str, Any] = field(default_factory=dict)
    stale: str | None = None

    @property
    def version(self) -> str:
        """The database version converted."""
        return self.config.version

    @property
    def task(self) -> str:
        """The conversion task (:data:`TASKS`)."""
        return self.config.task


def _check_choices(db: Database, task: str | None, dtype: str, normalize: str) -> str:
    """The task (the database's default when None), after checking it, ``dtype`` and ``normalize``."""
    task = task or db.default_task
    if task not in db.tasks:
        raise ConfigError(f"{db.name} supports the task(s) {', '.join(db.tasks)}, not {task!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if normalize not in filters.NORMALIZATIONS:
        raise ConfigError(f"normalize must be one of {', '.join(filters.NORMALIZATIONS)}, got {normalize!r}")
    return task


def _lead_spec(db: Database, lead: str | Sequence[str] | None) -> str | tuple[str, ...]:
    """The leads asked for: one name, a tuple of names, or :data:`ALL_LEADS` (default: the catalog's first)."""
    if lead is None:
        return db.leads[0]
    if isinstance(lead, str):
        return ALL_LEADS if lead.lower() == ALL_LEADS else lead
    spec = tuple(str(x) for x in lead)
    if not spec:
        raise ConfigError("lead: give at least one lead name")
    return spec


def _rates(db: Database, fs: float | None, filter: str, band: Sequence[float],  # noqa: A002
           filter_order: int, source_fs: float | None = None) -> tuple[float, float, tuple[float, float]]:
    """``(source fs, output fs, band)`` after checking that the resampling ratio and the filter can be made
    (``source_fs``: the rate of the files read when a database publishes several, ptb-xl)."""
    src_fs = float(db.fs if source_fs is None else source_fs)
    out_fs = float(fs) if fs is not None else src_fs
    filters.resample_ratio(src_fs, out_fs)
    band_t = (float(band[0]), float(band[1]))
    filters.design_filter(filter, src_fs, band_t, int(filter_order))
    return src_fs, out_fs, band_t


def _window_lengths(task: str, out_fs: float, before: float | int | str, after: float | int | str, window: float,
                    stride: float | None) -> tuple[int, int, int, int]:
    """``(before, after, window, stride)`` in samples at ``out_fs``: the beat sides for beat tasks, the rhythm
    window and step otherwise (the others 0)."""
    if task in BEAT_TASKS:
        return (*beat_sides(out_fs, before, after), 0, 0)
    return (0, 0, *window_steps(out_fs, window, stride))


@dataclass(frozen=True)
class _Selection:
    """What :func:`_select` resolved: the records (``(id, path without extension)``, in store order), the leads
    asked for, the class names, record -> class index (rhythm tasks) and the label files read; ``multi``: the PTB-XL
    plan of a ``multilabel`` conversion."""

    chosen: list[tuple[str, Path]]
    lead_spec: str | tuple[str, ...]
    class_names: tuple[str, ...]
    record_labels: dict[str, int] | None
    label_files: list[Path]
    multi: MultilabelPlan | None = None


def _select(db: Database, vdir: Path, task: str, records: Sequence[str] | None, lead: str | Sequence[str] | None,
            include_paced: bool, reference: str, rhythm_classes: str, level: str | None, rate: int | None
            ) -> _Selection:
    """The records, leads and labels of the conversion (``multilabel``: from PTB-XL's tables)."""
    if task == "multilabel":
        multi = plan_multilabel(db, vdir, records=records, level=level, rate=rate)
        class_names, record_labels, label_files = multi.labels
        return _Selection(chosen=multi.chosen, lead_spec=_lead_spec(db, ALL_LEADS if lead is None else lead),
                          class_names=tuple(class_names), record_labels=record_labels, label_files=label_files,
                          multi=multi)
    if level is not None or rate is not None:
        raise ConfigError(f"level and rate apply to the multilabel task (ptb-xl), not to {db.name} {task}")
    lead_spec = _lead_spec(db, lead)
    chosen = resolve_records(db, vdir, task, records, include_paced)
    class_names, record_labels, label_files = labels_for(db, vdir, task, reference, rhythm_classes)
    return _Selection(chosen=chosen, lead_spec=lead_spec, class_names=tuple(class_names),
                      record_labels=record_labels, label_files=label_files)


def _read_sources(db: Database, task: str, sel: _Selection, vdir: Path, rates: tuple[float, float],
                  jobs: int | None) -> tuple[tuple[str, ...], dict[str, str], int]:
    """``(lead names, source files -> SHA256, worker count)``: every header read, the resampling's memory checked
    and every source file hashed, in the main process (errors before any heavy work)."""
    src_fs, out_fs = rates
    lead_names, files, (longest, n_longest) = read_headers(db, task, sel.chosen, sel.lead_spec, sel.record_labels,
                                                            sel.label_files)
    n_workers = max(1, int(jobs if jobs is not None else min(4, os.cpu_count() or 1)))
    # before any worker allocates it (--fs 1e9 was an out-of-memory kill leaving a .partial store and a lock)
    filters.check_resample_memory(n_longest, len(lead_names), src_fs, out_fs, what=f"record {longest}",
                                  workers=min(n_workers, len(sel.chosen)))
    return lead_names, hash_sources(files, vdir), n_workers


def _config(db: Database, version: str, task: str, sel: _Selection, rates: tuple[float, float, tuple[float, float]],
            lengths: tuple[int, int, int, int], *, rr_context: bool, include_paced: bool, window: float,
            stride: float | None, whole_record: bool, reference: str, rhythm_classes: str,
            filter: str, filter_order: int, normalize: str, dtype: str) -> ConvertConfig:  # noqa: A002
    """The :class:`ConvertConfig` of the conversion; a parameter that does not apply to the task (or, for
    ``reference`` / ``rhythm_classes``, to the database's labels: ``Database.record_labels``) is left unset."""
    src_fs, out_fs, band_t = rates
    before_n, after_n, window_n, stride_n = lengths
    beats = task in BEAT_TASKS
    label_option = db.record_labels.option if db.record_labels is not None and task != "beats" else None
    multi = sel.multi
    return ConvertConfig(
        database=db.name, version=version, task=task, records=tuple(r for r, _ in sel.chosen),
        lead=sel.lead_spec, fs=out_fs, source_fs=src_fs,
        before=before_n / out_fs if beats else None, after=after_n / out_fs if beats else None,
        before_samples=before_n, after_samples=after_n, rr_context=bool(rr_context) and beats,
        rr_columns=beatmod.RR_FEATURES if rr_context and beats else (),
        include_paced=bool(include_paced) and task == "beats",
        window=None if beats else float(window),
        stride=None if beats else float(stride if stride is not None else window),
        window_samples=window_n, stride_samples=stride_n, whole_record=bool(whole_record) and not beats,
        reference=reference if label_option == "reference" else None,
        rhythm_classes=rhythm_classes if label_option == "rhythm_classes" else None,
        filter=filter, band=band_t, filter_order=int(filter_order),
        normalize=normalize, dtype=dtype, class_names=tuple(sel.class_names),
        level=None if multi is None else multi.level, rate=None if multi is None else multi.rate,
        detector=rpeaks.DETECTOR_VERSION if task in DETECTOR_TASKS else None)


def _planned_records(db: Database, sel: _Selection) -> tuple[PlannedRecord, ...]:
    """The records of the plan, in store order, with their patients, labels and extras."""
    multi = sel.multi
    return tuple(PlannedRecord(record_id=rid, path=path,
                               patient=db.patient_of(rid) if multi is None else multi.patients[rid],
                               label=None if sel.record_labels is None else sel.record_labels[rid],
                               extras=None if multi is None else multi.extras[rid])
                 for rid, path in sel.chosen)


def plan_conversion(database: str, *, data: str | os.PathLike, out: str | os.PathLike, task: str | None = None,
                    records: Sequence[str] | None = None, lead: str | Sequence[str] | None = None,
                    fs: float | None = None, before: float | int | str = DEFAULT_BEFORE,
                    after: float | int | str = DEFAULT_AFTER, rr_context: bool = True, include_paced: bool = False,
                    window: float = DEFAULT_WINDOW, stride: float | None = None, whole_record: bool = False,
                    reference: str = "original", rhythm_classes: str = "fine",
                    filter: str = DEFAULT_FILTER,  # noqa: A002 - the natural name
                    band: Sequence[float] = DEFAULT_BAND, filter_order: int = DEFAULT_FILTER_ORDER,
                    normalize: str = "none", dtype: str = "float32", jobs: int | None = None,
                    overwrite: bool = False, version: str | None = None, level: str | None = None,
                    rate: int | None = None) -> ConversionPlan:
    """Resolve and validate a conversion without writing anything.

    Checks every parameter and the output folder, resolves the records, their labels and leads, reads every
    record's header, checks the annotation files, hashes every source file (cross-checked with
    ``SHA256SUMS.txt``) and compares with a store already at ``out``. Nothing is written, not even a lock or a
    temporary folder: :func:`execute` does the work.

    Args:
        database, data, out, task, records, lead, fs, before, after, rr_context, include_paced, window, stride,
        whole_record, reference, rhythm_classes, filter, band, filter_order, normalize, dtype, jobs, overwrite,
        version, level, rate: as for :func:`convert`.

    Returns:
        The :class:`ConversionPlan`.

    Raises:
        CatalogError: unknown database, version or record.
        ConfigError: invalid parameters or output folder.
        RecordError: a missing or malformed source file (the message names the record and the file).
        StoreError: ``out`` holds another conversion and ``overwrite`` is False.
    """
    db = get_database(database)
    version = db.check_version(version)
    task = _check_choices(db, task, dtype, normalize)
    data = Path(data)
    out = Path(out)
    check_output_dir(out, kind=STORE_LAYOUT, inputs={"--data": data})  # before reading or writing anything
    vdir = version_dir(db, data, version)
    sel = _select(db, vdir, task, records, lead, include_paced, reference, rhythm_classes, level, rate)
    multi = sel.multi
    if multi is not None:
        whole_record, stride = True, None  # one 10 s record per segment
    rates = _rates(db, fs, filter, band, filter_order, source_fs=None if multi is None else float(multi.rate))
    lengths = _window_lengths(task, rates[1], before, after, window, stride)
    lead_names, sources, n_workers = _read_sources(db, task, sel, vdir, rates[:2], jobs)
    cfg = _config(db, version, task, sel, rates, lengths, rr_context=rr_context, include_paced=include_paced,
                  window=window, stride=stride, whole_record=whole_record, reference=reference,
                  rhythm_classes=rhythm_classes, filter=filter, filter_order=filter_order, normalize=normalize,
                  dtype=dtype)
    # read only: a store left aside by an interrupted overwrite is restored by execute, which checks again
    existing, stale = existing_store(out, cfg, sources, overwrite)
    up_to_date = existing is not None
    planned = _planned_records(db, sel)
    return ConversionPlan(database=db, config=cfg, records=planned, lead_names=lead_names, source_files=sources,
                          data=data, out=out, jobs=min(n_workers, len(planned)), overwrite=overwrite,
                          up_to_date=up_to_date, stale=stale,
                          manifest_extra={} if multi is None else {"multilabel": multi.manifest_entry()},
                          summary_extra={} if multi is None else {"unlabelled_records": list(multi.unlabelled)})
