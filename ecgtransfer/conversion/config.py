"""The parameters of a conversion: the tasks, their defaults, durations in samples and :class:`ConvertConfig`.

:class:`ConvertConfig` holds every parameter that determines a store's content, as recorded in
``manifest["parameters"]``.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from ecgtransfer.errors import ConfigError

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


__all__ = ["ConvertConfig", "RecordJob", "to_samples", "TASKS", "BEAT_TASKS", "DETECTOR_TASKS", "DTYPES", "DEFAULT_BEFORE",
           "DEFAULT_AFTER", "DEFAULT_WINDOW", "MAX_BEAT_SIDE", "DEFAULT_FILTER", "DEFAULT_BAND", "DEFAULT_FILTER_ORDER"]


@dataclass(frozen=True)
class RecordJob:
    """One record to convert: what the worker process gets (the record, its patient and record-level label, the
    conversion's settings, any per-record extras such as PTB-XL's multi-hot targets)."""

    record_id: str
    path: str
    patient: str
    label: int | None
    config: ConvertConfig
    extras: Mapping[str, np.ndarray] | None = None

