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

The package, by job:

- :mod:`.config`: the tasks, their defaults, :func:`to_samples` and :class:`ConvertConfig` (the store's parameters);
- :mod:`.plan`: :func:`plan_conversion` and :class:`ConversionPlan` (every check and read, nothing written);
- :mod:`.records`: records, labels, headers and source-file hashes, resolved in the main process;
- :mod:`.multilabel`: the PTB-XL ``multilabel`` plan (records, patients, folds, multi-hot targets);
- :mod:`.existing`: the store already at ``out`` (up to date, another conversion, or stale);
- :mod:`.workers`: the per-record work and the process pool; :mod:`.beats` and :mod:`.windows`: each task's piece;
- :mod:`.run`: :func:`execute` and :func:`convert`.

What is particular to one database (its paced records, the reader of its record labels, de Chazal's records) is
data of its catalog entry (:class:`ecgtransfer.physionet.catalog.Database`), not a test of its name here.
"""
from __future__ import annotations

from ecgtransfer.conversion.config import (BEAT_TASKS, DEFAULT_AFTER, DEFAULT_BAND, DEFAULT_BEFORE, DEFAULT_FILTER,
                                          DEFAULT_FILTER_ORDER, DEFAULT_WINDOW, DETECTOR_TASKS, DTYPES, MAX_BEAT_SIDE,
                                          TASKS, ConvertConfig, to_samples)
from ecgtransfer.conversion.multilabel import MultilabelPlan, plan_multilabel
from ecgtransfer.conversion.plan import ConversionPlan, PlannedRecord, plan_conversion
from ecgtransfer.conversion.run import convert, execute

__all__ = ["ConvertConfig", "ConversionPlan", "PlannedRecord", "convert", "plan_conversion", "execute",
           "to_samples", "TASKS", "BEAT_TASKS", "DETECTOR_TASKS", "DTYPES", "DEFAULT_BEFORE", "DEFAULT_AFTER",
           "DEFAULT_WINDOW", "MAX_BEAT_SIDE", "DEFAULT_FILTER", "DEFAULT_BAND", "DEFAULT_FILTER_ORDER",
           "MultilabelPlan", "plan_multilabel"]
