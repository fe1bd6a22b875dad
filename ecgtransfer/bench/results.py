"""The schema of a bench's ``results.json``: what the runner fills, the reports and the aggregation read.

:class:`BenchResults` holds the top-level keys, each typed; :class:`CellResult` one cell's record (the same record
``OUT/cells/<key>.json`` holds). :meth:`BenchResults.from_dict` validates (required keys, types; any damage is one
:class:`~ecgtransfer.errors.BenchError` line naming the file and the field) and upgrades results of older versions,
here and nowhere else; :meth:`BenchResults.to_dict` gives back exactly what the runner writes (a results.json of
this version round-trips unchanged; one of an older version comes back upgraded, and round-trips from then on).

Versions (all ``format_version`` 1; the keys came in over time, the readers relied on their absence):

- ``macro_f1_definition`` absent: macro-F1 of the older label set (kept absent as ``None``: the report says so);
- ``interrupted``, ``source_overlap``, ``majority_val``, ``target_check``, ``primary``: absent = ``None``;
- ``invocations`` absent: the one invocation its ``run`` describes (``started_at`` unknown, ``finished_at`` its
  ``created_at``, the file was written then);
- ``sweeps``, ``lr_scale``, ``settings_swept`` absent: ``{}``; ``capped_improving``, ``contrasts``: ``[]``;
- ``eval_split`` absent: ``"test"``; ``complete``: ``True``;
- cells whose ``data`` counted the drawn training segments (before the majority cap, no ``n_train_drawn``): their
  counts are read back from the run's ``split.npz`` by :func:`upgrade_cell_counts` (on resume; needs the store).
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, TypedDict

import numpy as np

from ecgtransfer._formats import RESULTS_FORMAT, RESULTS_FORMAT_VERSION
from ecgtransfer.bench.grid import Cell
from ecgtransfer.bench.stats import Bootstrap, Interval
from ecgtransfer.errors import BenchError, EcgTransferError
from ecgtransfer.training.run_files import read_json_object, read_split

log = logging.getLogger(__name__)

#: the statuses of a cell record
CELL_STATUSES = ("done", "failed", "skipped")


# -- the nested parts of results.json, as the statistics and the runner write them ----------------------------------
# TypedDicts (plain JSON objects at run time, a schema for readers and type checkers): the producers are annotated
# with them (bench.aggregate, bench.assemble; the intervals ``Interval`` / ``Bootstrap`` are declared by their
# producer, bench.stats, and belong to this schema through the import above) and ``tests/test_bench_results.py`` checks that every key
# of every committed results.json is declared here. ``_Required`` bases hold the keys always written.

class _ContrastRequired(TypedDict):
    arm: str
    baseline: str
    encoding: str
    fraction: float
    diff: Bootstrap


class Contrast(_ContrastRequired, total=False):
    """One contrast ``arm - baseline`` of macro-F1 at an encoding and fraction (:func:`bench.aggregate.contrasts`):
    the primary one judged by its interval, the others by their Holm-adjusted ``p_holm``."""

    label: str
    primary: bool
    p: Optional[float]
    p_holm: Optional[float]
    no_verdict: Optional[str]
    verdict: str


class Primary(TypedDict):
    """The primary contrast (:func:`bench.aggregate.primary_of`): declared in ``[bench.primary]`` or the default."""

    arm: str
    baseline: str
    encoding: str
    fraction: float
    declared: bool


class _ArmRequired(TypedDict):
    name: str
    status: str


class ArmRow(_ArmRequired, total=False):
    """One configured arm as it trained (:meth:`bench.assemble.ResultsAssembly.arm_rows`): its settings after the
    sweeps (``*_used``), the grids swept, and ``status`` ``ran`` / ``partial`` / ``skipped`` with its ``reason``."""

    init: str
    optim: str
    description: str
    model: str
    encodings_used: List[str]
    lrs_used: List[float]
    optimizer_used: str
    weight_decay_used: float
    grad_clip_used: Optional[float]
    lr_scale: float
    lr_sweep: List[float]
    wd_sweep: List[float]
    clip_sweep: List[float]
    settings_swept: Dict[str, Any]
    tier_preset: Optional[str]
    weight_decay: Optional[float]
    grad_clip: Optional[float]
    frozen: List[str]
    reason: Optional[str]


class SummaryEntry(TypedDict, total=False):
    """One arm x encoding x fraction of the summary (:func:`bench.aggregate.summarise`): metric intervals over seeds
    (or the records x seeds bootstrap for ``macro_f1``), per-class spreads, the paired difference to the baseline, and
    the costs."""

    fraction: float
    seeds: List[int]
    baseline: Optional[str]
    macro_f1: Bootstrap
    accuracy: Interval
    macro_auroc: Interval
    val_macro_f1: Interval
    macro_f1_seeds: Interval
    macro_f1_by_seed: Dict[str, Optional[float]]
    diff_vs_baseline: Optional[Bootstrap]
    per_class: Dict[str, Any]
    per_class_bootstrap: Optional[Dict[str, Dict[str, Bootstrap]]]
    confusion: List[List[int]]
    n_train: Interval
    wall_s: Interval
    images_per_s: Interval
    eval_images_per_s: Interval
    data_share: Interval
    peak_memory_bytes: Optional[int]
    time_to_target: Dict[str, Any]
    steps_to_target: Dict[str, Any]


#: ``summary[arm][encoding][fraction label]``
Summary = Dict[str, Dict[str, Dict[str, SummaryEntry]]]


class _Bad(Exception):
    """A field of the wrong kind (turned into one BenchError line naming the file by the reader)."""


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {dict: "JSON object", list: "JSON list", str: "string", bool: "boolean", int: "integer",
             float: "number", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        raise _Bad(f"{where} must be a {_kind_name(kind)}, found {type(value).__name__}")
    return value


_NUMBER = (int, float)
_OPT_STR = (str, type(None))
_OPT_DICT = (dict, type(None))


@dataclass(frozen=True)
class CellResult:
    """One cell's record, as ``OUT/cells/<key>.json`` and ``results.json`` ``cells[]`` hold it.

    Attributes:
        cell: the grid cell (arm, encoding, fraction, seed).
        key: the cell's key (``<arm>__<encoding>__...``).
        status: ``done``, ``failed`` or ``skipped``.
        record: the whole record as written (every key, in the runner's words); read it through the properties.
    """

    cell: Cell
    key: str
    status: str
    record: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, d: Any, where: str = "cell") -> CellResult:
        """A cell record, checked (raises ``_Bad`` naming ``where.field``; :meth:`BenchResults.from_dict` names
        the file)."""
        _check(d, dict, where)
        c = _check(d.get("cell"), dict, f"{where}.cell")
        _check(c.get("arm"), str, f"{where}.cell.arm")
        _check(c.get("encoding"), str, f"{where}.cell.encoding")
        _check(c.get("fraction"), _NUMBER, f"{where}.cell.fraction")
        _check(c.get("seed"), int, f"{where}.cell.seed")
        _check(d.get("key"), _OPT_STR, f"{where}.key")
        status = _check(d.get("status"), str, f"{where}.status")
        if status not in CELL_STATUSES:
            raise _Bad(f"{where}.status must be one of {', '.join(CELL_STATUSES)}, found {status!r}")
        _check(d.get("reason"), _OPT_STR, f"{where}.reason")
        for key in ("val", "test", "data", "majority", "throughput", "record_confusion"):
            _check(d.get(key), _OPT_DICT, f"{where}.{key}")
        for key in ("history", "step_curve"):
            _check(d.get(key), (list, type(None)), f"{where}.{key}")
        cell = Cell.from_dict(c)
        return cls(cell=cell, key=d.get("key") or cell.key, status=status, record=d)

    @classmethod
    def of(cls, r: CellResult | Mapping[str, Any]) -> CellResult:
        """``r`` itself, or the record ``r`` as a :class:`CellResult` (a damaged one raises BenchError)."""
        if isinstance(r, CellResult):
            return r
        try:
            return cls.from_dict(r)
        except _Bad as exc:
            raise BenchError(f"a cell record is damaged: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.record)

    # -- typed reads ------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def reason(self) -> str | None:
        return self.record.get("reason")

    def metrics(self, split: str) -> dict[str, Any]:
        """The cell's metrics on ``split`` (``val`` / ``test``; ``{}`` when it has none)."""
        return self.record.get(split) or {}

    @property
    def data(self) -> dict[str, Any]:
        return self.record.get("data") or {}

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.record.get("history") or []

    @property
    def step_curve(self) -> list[dict[str, Any]]:
        return self.record.get("step_curve") or []

    @property
    def throughput(self) -> dict[str, Any]:
        return self.record.get("throughput") or {}

    @property
    def majority(self) -> dict[str, Any] | None:
        return self.record.get("majority")

    @property
    def record_confusion(self) -> dict[str, Any] | None:
        return self.record.get("record_confusion")

    @property
    def wall_s(self) -> float | None:
        return self.record.get("wall_s")


#: top-level fields: (JSON kinds accepted, the value an older results.json without the key is read as)
_TOP: dict[str, tuple[type | tuple[type, ...], Callable[[], Any] | None]] = {
    "format": (str, lambda: RESULTS_FORMAT),
    "format_version": (int, lambda: RESULTS_FORMAT_VERSION),
    "name": (_OPT_STR, lambda: None),
    "created_at": (_OPT_STR, lambda: None),
    "bench_run_id": (_OPT_STR, lambda: None),
    "macro_f1_definition": (_OPT_STR, lambda: None),
    "interrupted": (_OPT_STR, lambda: None),
    "command": (_OPT_STR, lambda: None),
    "package_version": (_OPT_STR, lambda: None),
    "complete": (bool, lambda: True),
    "progress": (dict, dict),
    "config": (dict, None),
    "config_text": (_OPT_STR, lambda: None),
    "fingerprint": (_OPT_STR, lambda: None),
    "hardware": (dict, dict),
    "hardware_line": (_OPT_STR, lambda: None),
    "store": (dict, None),
    "source_store": (_OPT_DICT, lambda: None),
    "source_overlap": (_OPT_STR, lambda: None),
    "source_models": (dict, dict),
    "split": (dict, dict),
    "eval_split": (str, lambda: "test"),
    "baseline": (_OPT_STR, lambda: None),
    "arms": (list, list),
    "skipped": (dict, dict),
    "failed": (dict, dict),
    "run": (dict, dict),
    "invocations": (list, None),  # upgraded from ``run`` (see the module's docstring)
    "cells": (list, list),
    "summary": (dict, dict),
    "majority_val": (_OPT_DICT, lambda: None),
    "target_check": (_OPT_DICT, lambda: None),
    "sweeps": (dict, dict),
    "lr_scale": (dict, dict),
    "settings_swept": (dict, dict),
    "capped_improving": (list, list),
    "primary": (_OPT_DICT, lambda: None),
    "contrasts": (list, list),
}


@dataclass
class BenchResults:
    """A bench's ``results.json``, typed (see the module's docstring for the versions and docs/bench.md for each
    key). ``cells`` are :class:`CellResult`; the parts the statistics and the runner write are JSON objects of the
    TypedDicts above (``arms``: :class:`ArmRow`, ``summary``: :data:`Summary`, ``contrasts``: :class:`Contrast`,
    ``primary``: :class:`Primary`), checked for their required keys when read; ``sweeps``, ``config``, ``store`` and
    the hardware record stay free JSON objects (their writers own their keys: bench.sweeps, bench.config, the
    store's manifest, bench.hardware)."""

    config: dict[str, Any]
    store: dict[str, Any]
    format: str = RESULTS_FORMAT
    format_version: int = RESULTS_FORMAT_VERSION
    name: str | None = None
    created_at: str | None = None
    bench_run_id: str | None = None
    macro_f1_definition: str | None = None
    interrupted: str | None = None
    command: str | None = None
    package_version: str | None = None
    complete: bool = True
    progress: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None
    fingerprint: str | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    hardware_line: str | None = None
    source_store: dict[str, Any] | None = None
    source_overlap: str | None = None
    source_models: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"
    baseline: str | None = None
    arms: list[ArmRow] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    cells: list[CellResult] = field(default_factory=list)
    summary: Summary = field(default_factory=dict)
    majority_val: dict[str, Any] | None = None
    target_check: dict[str, Any] | None = None
    sweeps: dict[str, Any] = field(default_factory=dict)
    lr_scale: dict[str, float] = field(default_factory=dict)
    settings_swept: dict[str, Any] = field(default_factory=dict)
    capped_improving: list[str] = field(default_factory=list)
    primary: Primary | None = None
    contrasts: list[Contrast] = field(default_factory=list)
    #: keys this version does not know (kept, written back as they were)
    extra: dict[str, Any] = field(default_factory=dict)

    # -- reading ------------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str | os.PathLike | None = None) -> BenchResults:
        """``d`` (a parsed results.json) checked and upgraded; any damage is one :class:`BenchError` line naming
        ``path`` (when given) and the field."""
        try:
            return cls._from_dict(d)
        except _Bad as exc:
            where = f"{path}: " if path is not None else "bench results: "
            raise BenchError(f"{where}{exc}; the bench results are damaged (run the bench again to rewrite "
                             "them)") from None

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> BenchResults:
        _check(d, dict, "the results")
        if d.get("format", RESULTS_FORMAT) != RESULTS_FORMAT:
            raise _Bad(f"expected format {RESULTS_FORMAT!r}, found {d.get('format')!r}")
        values: dict[str, Any] = {}
        for key, (kind, default) in _TOP.items():
            if key in d:
                values[key] = _check(d[key], kind, key)
            elif default is None and key != "invocations":
                raise _Bad(f"{key} is missing")
            elif default is not None:
                values[key] = default()
        if values["format_version"] > RESULTS_FORMAT_VERSION:
            raise _Bad(f"format_version is {values['format_version']}, this ecgtransfer reads up to "
                       f"{RESULTS_FORMAT_VERSION} (written by a newer version)")
        cfg = values["config"]
        _check(cfg.get("name"), str, "config.name")
        encodings = _check(cfg.get("encodings"), list, "config.encodings")
        for i, e in enumerate(encodings):
            _check(e, str, f"config.encodings[{i}]")
        fractions = _check(cfg.get("fractions"), list, "config.fractions")
        for i, f in enumerate(fractions):
            _check(f, _NUMBER, f"config.fractions[{i}]")
        names = _check(values["store"].get("class_names"), list, "store.class_names")
        for i, c in enumerate(names):
            _check(c, str, f"store.class_names[{i}]")
        for key in ("arms", "contrasts", "invocations"):
            for i, x in enumerate(values.get(key) or []):
                _check(x, dict, f"{key}[{i}]")
        for i, a in enumerate(values["arms"]):
            _check(a.get("name"), str, f"arms[{i}].name")
            _check(a.get("status", "ran"), str, f"arms[{i}].status")
        for i, c in enumerate(values["contrasts"]):
            for key in ("arm", "baseline", "encoding"):
                _check(c.get(key), str, f"contrasts[{i}].{key}")
            _check(c.get("fraction"), _NUMBER, f"contrasts[{i}].fraction")
            _check(c.get("diff"), dict, f"contrasts[{i}].diff")
        if values.get("primary") is not None:
            for key in ("arm", "baseline", "encoding"):
                _check(values["primary"].get(key), str, f"primary.{key}")
            _check(values["primary"].get("fraction"), _NUMBER, "primary.fraction")
        for arm, per_enc in values["summary"].items():
            _check(per_enc, dict, f"summary.{arm}")
            for enc, per_frac in per_enc.items():
                _check(per_frac, dict, f"summary.{arm}.{enc}")
                for label, entry in per_frac.items():
                    _check(entry, dict, f"summary.{arm}.{enc}.{label}")
        values["cells"] = [CellResult.from_dict(c, f"cells[{i}]") for i, c in enumerate(values["cells"])]
        if "invocations" not in values:  # older results: the one invocation that wrote them
            values["invocations"] = invocations_of(d)
        extra = {k: v for k, v in d.items() if k not in _TOP}
        if extra:
            log.debug("results keys this version does not know, kept as they are: %s", sorted(extra))
        return cls(**values, extra=extra)

    @classmethod
    def of(cls, results: BenchResults | Mapping[str, Any]) -> BenchResults:
        """``results`` itself, or the results.json content ``results`` read (a damaged one raises BenchError)."""
        return results if isinstance(results, BenchResults) else cls.from_dict(results)

    # -- writing ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json`` (exactly what the runner writes)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name in _TOP}
        out["cells"] = [c.to_dict() for c in self.cells]
        return {**copy.copy(self.extra), **out}

    # -- typed reads --------------------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """The classes the cells were trained and scored on."""
        return list(self.store["class_names"])

    @property
    def encodings(self) -> list[str]:
        return list(self.config["encodings"])

    @property
    def fractions(self) -> list[float]:
        return [float(f) for f in self.config["fractions"]]

    def arm_status(self, name: str) -> str | None:
        """The status (``ran``, ``partial``, ``skipped``) of arm ``name``, None when it is not in the results."""
        return next((a.get("status") for a in self.arms if a.get("name") == name), None)


def invocations_of(d: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The invocations a results.json records, read leniently (a resumed bench keeps this history even from a
    partial file): ``invocations``, or for results of an older version the one invocation its ``run`` describes
    (``started_at`` unknown; ``finished_at`` its ``created_at``: the file was written then)."""
    if isinstance(d.get("invocations"), list):
        return [i for i in d["invocations"] if isinstance(i, dict)]
    run = d.get("run")
    if not isinstance(run, dict) or not run:
        return []
    return [{"bench_run_id": d.get("bench_run_id"), "started_at": None, "finished_at": d.get("created_at"),
             "command": d.get("command"), **run}]


def read_results(path: str | os.PathLike) -> BenchResults:
    """A bench's ``results.json``, read by the one reader of run and bench files and checked against the schema
    (:meth:`BenchResults.from_dict`); else one :class:`BenchError` line naming the file and the field."""
    path = Path(path)
    return BenchResults.from_dict(read_json_object(path, "bench results", error=BenchError), path)


def upgrade_cell_counts(record: dict[str, Any], out: Path, store: Any) -> dict[str, Any]:
    """A finished cell of an earlier version counted its *drawn* training segments (before the majority cap):
    its ``data`` counts are read back from its run's ``split.npz`` (what the engine trained on), marked
    ``counts_from``; cells of this version (``n_train_drawn`` present) and runs without the file are unchanged.
    ``store``: the target :class:`~ecgtransfer.store.SegmentStore`."""
    data = record.get("data")
    if not data or "n_train_drawn" in data or not record.get("run_dir"):
        return record
    try:
        parts = read_split(out / record["run_dir"] / "split.npz", len(store.labels), parts=("train", "val"))
    except (EcgTransferError, TypeError):
        return record
    train, val = parts["train"], parts["val"]
    if len(train) == data.get("n_train"):
        return record
    counts = np.bincount(store.labels[train], minlength=store.num_classes)
    first = next((h for h in record.get("history") or [] if not h.get("partial")), None)
    return dict(record, data=dict(
        data, n_train_drawn=data.get("n_train"), n_train=int(len(train)), n_val=int(len(val)),
        n_train_patients=int(len(set(store.patient_ids[train]))),
        train_class_counts={c: int(counts[i]) for i, c in enumerate(store.class_names)},
        steps_per_epoch=int(first["step"]) if first else data.get("steps_per_epoch"),
        counts_from="split.npz of the run (after the majority cap)"))


__all__ = ["CELL_STATUSES", "ArmRow", "BenchResults", "Bootstrap", "CellResult", "Contrast", "Interval", "Primary",
           "Summary", "SummaryEntry", "invocations_of", "read_results", "upgrade_cell_counts"]
