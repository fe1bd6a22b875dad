"""Convert downloaded PhysioNet records into a segment store (:mod:`ecgtransfer.store`).

``convert("mitdb", data="data", out="stores/mitdb-beats")`` reads ``data/mitdb/1.0.0/`` (the layout
``ecgtransfer download`` writes), cuts every record into labelled segments and writes them, record by
record, into a store whose manifest records every parameter and the SHA256 of every source file used.

Tasks:

- ``beats`` (mitdb, and the other beat-annotated databases of the catalog): a window of ``before + after``
  around each reference R peak of ``<record>.atr``, labelled with its AAMI class (N S V F Q, see
  :mod:`ecgtransfer.signals.beats`); paced records excluded unless ``include_paced``; optional RR context.
- ``rhythm-beats`` (challenge-2017, ludb): the same beat windows around R peaks *detected* in the first lead
  (:func:`ecgtransfer.signals.rpeaks.detect_r_peaks`, as ``predict`` finds them), each labelled with its record's
  rhythm class; RR context from the detected peaks. A beat-scale source task for transfer to beat targets.
- ``rhythm`` (challenge-2017, ludb): fixed windows of ``window`` seconds every ``stride`` seconds, or one
  window per record (``whole_record``: the first ``window`` seconds, zero-padded when shorter), labelled
  with the record's rhythm (:mod:`ecgtransfer.signals.rhythm`).

Records are processed in parallel (a process pool of ``jobs`` workers, at most ``2 * jobs`` records in
flight, so memory stays bounded) and appended in record order; the store appears under ``out`` only once
complete. Re-running with the same parameters on the same source files skips the work.

:func:`convert` is :func:`plan_conversion` (every check, every header read and every source file hashed, nothing
written) followed by :func:`execute` (the work), and a :class:`ConversionPlan` can be inspected in between.
"""
from __future__ import annotations

import collections
import json
import logging
import multiprocessing
import os
import re
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ecgtransfer.errors import CatalogError, ConfigError, DownloadError, RecordError, StoreError
from ecgtransfer.physionet.catalog import Database, get_database
from ecgtransfer.signals import beats as beatmod
from ecgtransfer.signals import filters, rhythm, rpeaks
from ecgtransfer._hashing import sha256_file
from ecgtransfer.physionet.index import SUMS_FILE, parse_records, parse_sha256sums
from ecgtransfer.signals.record import ALL_LEADS, LEAD_ALTERNATIVES, read_header, read_record, record_files, select_leads
from ecgtransfer._outdir import check_output_dir
from ecgtransfer.store import MANIFEST, STORE_LAYOUT, SegmentStore, StoreWriter, open_existing, recover_interrupted
from ecgtransfer.ptbxl_plan import MultilabelPlan, plan_multilabel

log = logging.getLogger(__name__)

#: the conversion tasks (``--task``); the first is no default: each database has its own (``Database.tasks``).
#: ``multilabel`` (ptb-xl): one whole record per segment with a multi-hot target row (``extra_targets``)
TASKS = ("beats", "rhythm", "rhythm-beats", "multilabel")
#: parameters of the ``multilabel`` task only: left out of ``ConvertConfig.to_json`` when None, so the manifests (and
#: hashes) of stores of the other tasks are what they were before the task existed
_MULTILABEL_KEYS = ("level", "rate")
#: tasks whose segments are beat windows around R peaks (``before``/``after``, RR context)
BEAT_TASKS = ("beats", "rhythm-beats")
#: tasks whose R peaks come from the detector (:mod:`ecgtransfer.signals.rpeaks`) at conversion time: their stores
#: record its :data:`~ecgtransfer.signals.rpeaks.DETECTOR_VERSION` (``parameters["detector"]``), the other tasks'
#: stores do not (their manifests and hashes are what they were)
DETECTOR_TASKS = ("rhythm-beats",)
#: parameters left out of ``ConvertConfig.to_json`` when None (``multilabel``'s own, the detector's version)
_OPTIONAL_KEYS = _MULTILABEL_KEYS + ("detector",)
DTYPES = ("float32", "float16")

DEFAULT_BEFORE = 0.25  # seconds before the R peak
DEFAULT_AFTER = 0.45  # seconds after the R peak
DEFAULT_WINDOW = 10.0  # seconds per rhythm window
MAX_BEAT_SIDE = 2.0  # seconds: a longer before/after spans several beats, almost surely a unit mistake
DEFAULT_FILTER = "bandpass"
DEFAULT_BAND = (0.5, 40.0)
DEFAULT_FILTER_ORDER = 2

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|sec|ms|samples?|smp)?\s*$")


def to_samples(value: float | int | str, fs: float, name: str = "duration") -> int:
    """A duration as a sample count at rate ``fs``.

    ``int`` values are samples, ``float`` values are seconds, strings carry a unit: ``"0.25s"``,
    ``"250ms"``, ``"90samples"`` (a bare number in a string is seconds, as on the command line).
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a duration, got {value!r}")
    if isinstance(value, (int, np.integer)):
        n = int(value)
    elif isinstance(value, (float, np.floating)):
        n = int(round(float(value) * fs))
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ConfigError(f"{name}: cannot read {value!r} as a duration (examples: 0.25s, 250ms, 90samples)")
        num, unit = float(m.group(1)), (m.group(2) or "s")
        if unit.startswith("sam") or unit == "smp":
            if num != int(num):
                raise ConfigError(f"{name}: a sample count must be whole, got {value!r}")
            n = int(num)
        else:
            n = int(round(num * (1e-3 if unit == "ms" else 1.0) * fs))
    else:
        raise ConfigError(f"{name} must be seconds (float), samples (int) or a string with a unit, got {value!r}")
    if n < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    return n


@dataclass(frozen=True)
class ConvertConfig:
    """Every parameter that determines a store's content (recorded in ``manifest["parameters"]``).

    Attributes:
        database: catalog name (``mitdb``).
        version: database version.
        task: one of :data:`TASKS` (``beats``, ``rhythm``, ``rhythm-beats``).
        records: record ids converted, in store order.
        lead: the leads: one name, a list of names, or ``"all"``.
        fs: rate of the stored segments in Hz (the source rate unless resampled).
        source_fs: the database's rate in Hz.
        before, after: beat window before/after the R peak in seconds (``*_samples / fs``; however they were
            given, so equal windows compare equal); None for rhythm tasks.
        before_samples, after_samples: the same in samples at ``fs`` (beats); segment length is their sum.
        rr_context: store RR context as extra ``rr`` ``[N, R]`` (beats; columns
            :data:`ecgtransfer.signals.beats.RR_FEATURES`).
        rr_columns: the names of the ``rr`` extra's columns (the :data:`~ecgtransfer.signals.beats.RR_FEATURES` of
            the conversion; empty without RR context). A store written before the columns grew lacks this key, so
            re-running the conversion does not mistake it for an up-to-date one (``--overwrite`` rewrites it);
            its narrower ``rr`` extra is still read (models read the first ``rr_dim`` columns).
        include_paced: keep paced records (beats).
        window, stride: rhythm window length and step in seconds (None for beats).
        window_samples, stride_samples: the same in samples at ``fs`` (rhythm).
        whole_record: one window per record (the first ``window`` seconds, zero-padded) instead of a sliding one.
        reference: challenge-2017 label file: ``original`` (REFERENCE.csv) or ``v3`` (REFERENCE-v3.csv); else None.
        rhythm_classes: ludb class scheme, ``fine`` or ``coarse``; else None.
        Parameters that do not apply to the task are None/False/0, so they never make two stores differ.
        filter, band, filter_order: see :mod:`ecgtransfer.signals.filters`.
        normalize: per-segment normalisation, ``none`` (default), ``zscore`` or ``minmax``.
        dtype: ``float32`` or ``float16``.
        class_names: the store's classes.
        level: ``multilabel`` (ptb-xl): the label level of the targets (:data:`ecgtransfer.physionet.ptbxl.LEVELS`);
            None for the other tasks.
        rate: ``multilabel`` (ptb-xl): the published rate the records were read at (100 or 500 Hz); None otherwise.
        detector: the version of the R-peak detector that found the beats (:data:`DETECTOR_TASKS`,
            :data:`ecgtransfer.signals.rpeaks.DETECTOR_VERSION`); None for the other tasks. A store made by another
            version (or before versions were recorded) is stale: converting again replaces it.
    """

    database: str
    version: str
    task: str
    records: tuple[str, ...]
    lead: str | tuple[str, ...]
    fs: float
    source_fs: float
    before: float | None = None
    after: float | None = None
    before_samples: int = 0
    after_samples: int = 0
    rr_context: bool = True
    rr_columns: tuple[str, ...] = ()
    include_paced: bool = False
    window: float | None = None
    stride: float | None = None
    window_samples: int = 0
    stride_samples: int = 0
    whole_record: bool = False
    reference: str | None = None
    rhythm_classes: str | None = None
    filter: str = DEFAULT_FILTER
    band: tuple[float, float] = DEFAULT_BAND
    filter_order: int = DEFAULT_FILTER_ORDER
    normalize: str = "none"
    dtype: str = "float32"
    class_names: tuple[str, ...] = field(default_factory=tuple)
    level: str | None = None
    rate: int | None = None
    detector: int | None = None

    @property
    def length(self) -> int:
        """Samples per segment ``L``."""
        return self.before_samples + self.after_samples if self.task in BEAT_TASKS else self.window_samples

    def to_json(self) -> dict[str, Any]:
        """The parameters as JSON-compatible values (tuples become lists); the ``multilabel`` task's own keys and the
        detector's version only when set."""
        out = json.loads(json.dumps(asdict(self)))
        for key in _OPTIONAL_KEYS:
            if out.get(key) is None:
                out.pop(key, None)
        return out


@dataclass(frozen=True)
class _RecordJob:
    record_id: str
    path: str
    patient: str
    label: int | None
    config: ConvertConfig
    extras: Mapping[str, np.ndarray] | None = None


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


# --------------------------------------------------------------------------------------------------
# per-record work (runs in worker processes)

def _prepare_signal(job: _RecordJob) -> tuple[np.ndarray, tuple[str, ...], float, int, int, np.ndarray | None]:
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


def _process_record(job: _RecordJob) -> _RecordResult:
    """Read, filter, resample, segment and label one record."""
    cfg = job.config
    x, leads, src_fs, up, down, detected = _prepare_signal(job)
    extras: dict[str, np.ndarray] = {}
    if cfg.task in BEAT_TASKS:
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
        positions = samples[keep]
        labels = labels[keep]
        dropped = int((~keep).sum())
    else:
        if cfg.whole_record:
            segs, starts = rhythm.pad_crop(x, cfg.window_samples)[None], np.zeros(1, dtype=np.int64)
        else:
            segs, starts = rhythm.fixed_windows(x, cfg.window_samples, cfg.stride_samples)
        positions = (starts * down + up // 2) // up  # back to source samples
        labels = np.full(len(segs), job.label, dtype=np.int64)
        ignored = dropped = 0
        for name, row in (job.extras or {}).items():  # multilabel: the record's targets, for every segment
            extras[name] = np.repeat(np.asarray(row)[None], len(segs), axis=0)
    segs = filters.normalize(segs, cfg.normalize).astype(cfg.dtype)
    return _RecordResult(record_id=job.record_id, patient=job.patient, segments=segs, labels=labels,
                         positions=positions.astype(np.int64), lead_names=leads, extras=extras, dropped=dropped,
                         ignored=ignored)


# --------------------------------------------------------------------------------------------------
# resolution of records, labels and source files (main process)

def _version_dir(db: Database, data: Path, version: str) -> Path:
    vdir = data / db.name / version
    if not vdir.is_dir():
        raise RecordError(f"no {db.name} {version} under {data}: expected the folder {vdir} "
                          f"(run `ecgtransfer download {db.name} --out {data}`)")
    return vdir


def _record_names(db: Database, vdir: Path) -> list[str]:
    """The record names of ``RECORDS`` (duplicates and comments dropped, unsafe names refused)."""
    listing = vdir / db.records_file
    if not listing.is_file():
        raise RecordError(f"record listing {listing} is missing (run `ecgtransfer download {db.name}`)")
    try:
        return parse_records(listing.read_text(encoding="utf-8", errors="replace"), source=str(listing))
    except DownloadError as exc:  # an empty listing
        raise RecordError(str(exc)) from None


def _record_id(name: str) -> str:
    return PurePosixPath(name).name


def _resolve_records(db: Database, vdir: Path, task: str, records: Sequence[str] | None,
                     include_paced: bool) -> list[tuple[str, Path]]:
    names = _record_names(db, vdir)
    base = vdir / db.record_dir if db.record_dir else vdir
    by_id = {_record_id(n): n for n in names}
    by_name = {n: n for n in names}
    paced = set(beatmod.PACED_RECORDS.get(db.name, ())) if task == "beats" else set()
    if records is None:
        chosen = [n for n in names if (base / f"{n}.hea").is_file()]
        absent = len(names) - len(chosen)
        if not chosen:
            raise RecordError(f"none of the {len(names)} records listed in {vdir / db.records_file} is present "
                              f"under {base} (run `ecgtransfer download {db.name}`)")
        if absent:
            log.warning("%s: %d of %d listed records are not downloaded; converting the %d present",
                        db.name, absent, len(names), len(chosen))
        excluded = [n for n in chosen if _record_id(n) in paced and not include_paced]
        if excluded:
            log.info("%s: excluding paced records %s (include_paced=True keeps them)", db.name,
                     " ".join(_record_id(n) for n in excluded))
        chosen = [n for n in chosen if n not in excluded]
    else:
        if isinstance(records, str):
            records = [records]
        chosen = []
        for r in records:
            r = str(r)
            name = by_name.get(r) or by_id.get(r)
            if name is None:
                raise CatalogError(f"unknown record {r!r} of {db.name}: not listed in {vdir / db.records_file}")
            if _record_id(name) in paced and not include_paced:
                raise ConfigError(f"record {r} of {db.name} is paced and excluded from beat tasks by default; "
                                  "pass include_paced=True (--include-paced) to convert it")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise ConfigError(f"no records of {db.name} left to convert")
    return [(_record_id(n), base / n) for n in chosen]


def _labels_for(db: Database, vdir: Path, task: str, reference: str, rhythm_classes: str
                ) -> tuple[tuple[str, ...], dict[str, int] | None, list[Path]]:
    """Class names, record -> class index (rhythm tasks) and the label files used."""
    if task == "beats":  # rhythm-beats: the rhythm labels below
        if db.annotation is None:
            raise ConfigError(f"{db.name} has no beat annotations; tasks: {', '.join(db.tasks)}")
        return beatmod.AAMI_CLASSES, None, []
    if db.name == "challenge-2017":
        if reference not in rhythm.CHALLENGE_2017_REFERENCES:
            raise ConfigError(f"unknown challenge-2017 reference {reference!r}; expected "
                              f"{' or '.join(rhythm.CHALLENGE_2017_REFERENCES)}")
        path = vdir / (db.record_dir or "") / rhythm.CHALLENGE_2017_REFERENCES[reference]
        labels = rhythm.challenge_2017_labels(path)
        names = rhythm.CHALLENGE_2017_CLASSES
        return names, {r: names.index(c) for r, c in labels.items()}, [path]
    if db.name == "ludb":
        names = rhythm.ludb_classes(rhythm_classes)
        path = vdir / "ludb.csv"
        texts = rhythm.ludb_rhythms(path)
        return names, {r: names.index(rhythm.ludb_rhythm_class(t, rhythm_classes, r)) for r, t in texts.items()}, \
            [path]
    raise ConfigError(f"convert has no {task} labels for {db.name} yet (supported: mitdb beats, challenge-2017 "
                      "and ludb rhythm)")


def _hash_sources(files: Iterable[Path], vdir: Path) -> dict[str, str]:
    """Relative path -> SHA256 of each file, cross-checked with ``SHA256SUMS.txt`` when present."""
    sums_file = vdir / SUMS_FILE
    sums: dict[str, str] = {}
    if sums_file.is_file():
        try:
            sums = parse_sha256sums(sums_file.read_text(encoding="utf-8", errors="replace"),
                                    source=str(sums_file)).digests
        except DownloadError as exc:  # a malformed line: the file cannot be trusted to check anything
            raise RecordError(f"{exc}; download {sums_file.name} again") from None
    out: dict[str, str] = {}
    for f in files:
        rel = f.relative_to(vdir).as_posix()
        if rel in out:
            continue
        try:
            digest = sha256_file(f)
        except FileNotFoundError:
            raise RecordError(f"source file {f} is missing") from None
        except OSError as exc:
            raise RecordError(f"cannot read source file {f}: {exc.strerror or exc}") from exc
        expected = sums.get(rel)
        if expected is not None and expected != digest:
            raise RecordError(f"{f}: SHA256 {digest} does not match {sums_file} ({expected}); the file is damaged, "
                              "download it again")
        out[rel] = digest
    return dict(sorted(out.items()))


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


def _run_jobs(jobs: list[_RecordJob], n_workers: int) -> Iterator[_RecordResult]:
    """Results in job order; at most ``2 * n_workers`` records in flight."""
    if n_workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _process_record(job)
        return
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context()) as pool:
        pending: collections.deque[tuple[_RecordJob, Future]] = collections.deque()
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


def _differences(manifest: Mapping[str, Any], cfg: ConvertConfig, sources: dict[str, str]) -> list[str]:
    """What the store of ``manifest`` differs in from this conversion (parameter names, ``source_files``); empty
    when it holds exactly this conversion."""
    params = cfg.to_json()
    if (manifest.get("database") == cfg.database and manifest.get("version") == cfg.version
            and manifest.get("task") == cfg.task and manifest.get("parameters") == params
            and manifest.get("source_files") == sources):
        return []
    old = manifest.get("parameters") or {}
    diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
    if manifest.get("source_files") != sources:
        diff.append("source_files")
    return diff or ["database/task"]


def _existing_store(out: Path, cfg: ConvertConfig, sources: dict[str, str], overwrite: bool) -> SegmentStore | None:
    """The store at ``out`` if it already holds exactly this conversion; raises if it holds another one."""
    def differs(store: SegmentStore) -> str | None:
        diff = _differences(store.manifest, cfg, sources)
        return f"a different conversion (differs in: {', '.join(diff)})" if diff else None

    return open_existing(out, differs, overwrite=overwrite)


def _stale(out: Path, cfg: ConvertConfig, sources: dict[str, str]) -> str | None:
    """Why the store at ``out`` is to be converted again although nobody asked to overwrite it: it is this very
    conversion (parameters and source files) made by another version of the R-peak detector; None otherwise."""
    if cfg.detector is None or not (out / MANIFEST).is_file():
        return None
    try:
        manifest = SegmentStore(out).manifest
    except StoreError:
        return None  # damaged: refused (or overwritten) as before
    if _differences(manifest, cfg, sources) != ["detector"]:
        return None
    was = (manifest.get("parameters") or {}).get("detector")
    made = f"version {was}" if was is not None else "version 1 (stores made before versions were recorded)"
    return (f"{out} holds beats found by the R-peak detector {made}; this ecgtransfer detects with version "
            f"{cfg.detector}, whose beats differ: converting it again (same parameters and source files)")


# --------------------------------------------------------------------------------------------------
# planning: every check and every read before anything is written (main process)

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
    before_n = after_n = window_n = stride_n = 0
    if task in BEAT_TASKS:
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
    else:
        if window <= 0 or (stride is not None and stride <= 0):
            raise ConfigError(f"window and stride must be positive seconds, got {window} and {stride}")
        window_n = int(round(float(window) * out_fs))
        stride_n = int(round(float(stride if stride is not None else window) * out_fs))
        if window_n < 1 or stride_n < 1:
            raise ConfigError(f"window/stride shorter than one sample at {out_fs:g} Hz")
    return before_n, after_n, window_n, stride_n


def _read_headers(db: Database, task: str, chosen: Sequence[tuple[str, Path]], lead_spec: str | tuple[str, ...],
                  record_labels: Mapping[str, int] | None, label_files: Sequence[Path]
                  ) -> tuple[tuple[str, ...], list[Path], tuple[str, int]]:
    """``(lead names, source files, (longest record, its samples))``: each record's header read once, its leads
    resolved (the same in every record), its files listed, its annotation file checked (``beats``) or its label
    found (rhythm tasks).

    A stored lead that is not the same lead in every record (a requested name with alternatives, ``"V1|V4|V5"``) is
    named by the leads found, joined by :data:`LEAD_ALTERNATIVES` in the order met (mitdb ``MLII`` and
    ``"V1|V5|V4"``)."""
    files: list[Path] = list(label_files)
    lead_names: tuple[str, ...] | None = None
    found: list[list[str]] = []  # per stored lead: the names met, one spelling each
    longest = ("", 0)
    for rid, path in chosen:
        header = read_header(path, rid)
        if int(header.sig_len or 0) > longest[1]:
            longest = (rid, int(header.sig_len))
        rec_files = record_files(path, rid, header=header)
        idx = select_leads(header.sig_name, None if lead_spec == ALL_LEADS else lead_spec, record_id=rid)
        names = tuple(header.sig_name[i] for i in idx)
        if lead_names is None:
            lead_names = names
            found = [[n] for n in names]
        elif len(names) != len(lead_names) or (lead_spec == ALL_LEADS and
                                               [n.lower() for n in names] != [n.lower() for n in lead_names]):
            raise RecordError(f"record {rid} has leads {', '.join(names)} but {chosen[0][0]} has "
                              f"{', '.join(lead_names)}; lead='all' needs the same leads in every record: "
                              f"choose leads by name, with alternatives where records differ (--lead MLII "
                              f"'V1{LEAD_ALTERNATIVES}V5{LEAD_ALTERNATIVES}V4')")
        for met, name in zip(found, names):
            if name.lower() not in [m.lower() for m in met]:
                met.append(name)
        files.extend(rec_files)
        if task == "beats":
            ann = path.with_name(f"{path.name}.{db.annotation}")
            if not ann.is_file():
                raise RecordError(f"record {rid}: annotation file {ann} is missing")
            beatmod.check_annotation_file(ann, rid)  # a truncated .atr is refused before anything is written
            files.append(ann)
        elif record_labels is not None and rid not in record_labels:
            raise RecordError(f"record {rid} has no label in {', '.join(str(f) for f in label_files)}")
    assert lead_names is not None  # _resolve_records leaves at least one record
    return tuple(LEAD_ALTERNATIVES.join(met) for met in found), files, longest


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
    vdir = _version_dir(db, data, version)
    multi: MultilabelPlan | None = None
    if task == "multilabel":
        multi = plan_multilabel(db, vdir, records=records, level=level, rate=rate)
        chosen, (class_names, record_labels, label_files) = multi.chosen, multi.labels
        lead_spec = _lead_spec(db, ALL_LEADS if lead is None else lead)
        whole_record, stride = True, None  # one 10 s record per segment
    else:
        if level is not None or rate is not None:
            raise ConfigError(f"level and rate apply to the multilabel task (ptb-xl), not to {db.name} {task}")
        lead_spec = _lead_spec(db, lead)
        chosen = _resolve_records(db, vdir, task, records, include_paced)
        class_names, record_labels, label_files = _labels_for(db, vdir, task, reference, rhythm_classes)
    src_fs, out_fs, band_t = _rates(db, fs, filter, band, filter_order,
                                    source_fs=None if multi is None else float(multi.rate))
    before_n, after_n, window_n, stride_n = _window_lengths(task, out_fs, before, after, window, stride)
    # headers, leads and source files, in the main process (errors before any heavy work)
    lead_names, files, (longest, n_longest) = _read_headers(db, task, chosen, lead_spec, record_labels, label_files)
    n_workers = max(1, int(jobs if jobs is not None else min(4, os.cpu_count() or 1)))
    # before any worker allocates it (--fs 1e9 was an out-of-memory kill leaving a .partial store and a lock)
    filters.check_resample_memory(n_longest, len(lead_names), src_fs, out_fs, what=f"record {longest}",
                                  workers=min(n_workers, len(chosen)))
    sources = _hash_sources(files, vdir)

    beats = task in BEAT_TASKS
    cfg = ConvertConfig(
        database=db.name, version=version, task=task, records=tuple(r for r, _ in chosen),
        lead=lead_spec, fs=out_fs, source_fs=src_fs,
        before=before_n / out_fs if beats else None, after=after_n / out_fs if beats else None,
        before_samples=before_n, after_samples=after_n, rr_context=bool(rr_context) and beats,
        rr_columns=beatmod.RR_FEATURES if rr_context and beats else (),
        include_paced=bool(include_paced) and task == "beats",
        window=None if beats else float(window),
        stride=None if beats else float(stride if stride is not None else window),
        window_samples=window_n, stride_samples=stride_n, whole_record=bool(whole_record) and not beats,
        reference=reference if db.name == "challenge-2017" and task != "beats" else None,
        rhythm_classes=rhythm_classes if db.name == "ludb" and task != "beats" else None,
        filter=filter, band=band_t, filter_order=int(filter_order),
        normalize=normalize, dtype=dtype, class_names=tuple(class_names),
        level=None if multi is None else multi.level, rate=None if multi is None else multi.rate,
        detector=rpeaks.DETECTOR_VERSION if task in DETECTOR_TASKS else None)
    # read only: a store left aside by an interrupted overwrite is restored by execute, which checks again
    stale = _stale(out, cfg, sources)
    up_to_date = _existing_store(out, cfg, sources, overwrite or stale is not None) is not None
    planned = tuple(PlannedRecord(record_id=rid, path=path,
                                  patient=db.patient_of(rid) if multi is None else multi.patients[rid],
                                  label=None if record_labels is None else record_labels[rid],
                                  extras=None if multi is None else multi.extras[rid])
                    for rid, path in chosen)
    return ConversionPlan(database=db, config=cfg, records=planned, lead_names=lead_names, source_files=sources,
                          data=data, out=out, jobs=min(n_workers, len(planned)), overwrite=overwrite,
                          up_to_date=up_to_date, stale=stale,
                          manifest_extra={} if multi is None else {"multilabel": multi.manifest_entry()},
                          summary_extra={} if multi is None else {"unlabelled_records": list(multi.unlabelled)})


# --------------------------------------------------------------------------------------------------
# execution

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
    stale = _stale(out, cfg, plan.source_files)
    if stale is not None:
        log.warning("%s", stale)
    overwrite = plan.overwrite or stale is not None
    existing = _existing_store(out, cfg, plan.source_files, overwrite)
    if existing is not None:
        log.info("%s is up to date (same parameters and source files); skipping conversion", out)
        return existing

    run_jobs = [_RecordJob(record_id=r.record_id, path=str(r.path), patient=r.patient, label=r.label, config=cfg,
                           extras=r.extras) for r in plan.records]
    log.info("converting %d %s records (%s task, %d worker(s)) into %s", len(run_jobs), db.name, cfg.task,
             plan.jobs, out)

    from tqdm.auto import tqdm

    dropped: dict[str, int] = {}
    record_leads: dict[str, list[str]] = {}
    ignored = 0
    with StoreWriter(out, channels=len(plan.lead_names), length=cfg.length, dtype=cfg.dtype,
                     overwrite=overwrite) as writer:
        with tqdm(total=len(run_jobs), desc=f"convert {db.name}", unit="record", disable=not progress) as bar:
            for res in _run_jobs(run_jobs, plan.jobs):
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
        store = writer.close(database=db.name, version=cfg.version, task=cfg.task, fs=cfg.fs,
                             lead_names=plan.lead_names, class_names=cfg.class_names,
                             source_files=plan.source_files, parameters=cfg.to_json(), summary=summary,
                             patients_known=db.patients_known, **plan.manifest_extra,
                             provenance={"source_root": str(plan.data.resolve()), "jobs": plan.jobs})
    log.info("wrote %s: %d segments of shape %s", out, len(store), store.shape[1:])
    return store


# --------------------------------------------------------------------------------------------------
# the public entry point

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


__all__ = ["ConvertConfig", "ConversionPlan", "PlannedRecord", "convert", "plan_conversion", "execute",
           "to_samples", "TASKS", "BEAT_TASKS"]

