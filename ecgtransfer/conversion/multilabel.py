"""The ``multilabel`` conversion of PTB-XL, planned: records, patients, folds and multi-hot targets.

:func:`plan_multilabel` reads ``ptbxl_database.csv`` and ``scp_statements.csv`` (:mod:`ecgtransfer.physionet.ptbxl`)
and resolves, for :func:`ecgtransfer.conversion.plan_conversion`, which records to convert (those downloaded at the
chosen rate, or the ``ecg_id`` / paths asked for), each record's patient (``patient_id``) and the per-record extras
the store keeps:

* ``targets`` ``[N, K]`` uint8: the multi-hot labels of the chosen level (columns: the store's ``class_names``);
* ``targets_<level>`` ``[N, K_level]`` uint8 for every level of :data:`~ecgtransfer.physionet.ptbxl.LEVELS` (columns
  in ``manifest["multilabel"]["levels"][level]``), so ``info`` shows every level;
* ``strat_fold`` ``[N]`` int64: the recommended fold (1-10) of the record.

The store's ``labels`` ``[N]`` (single class indices, kept for the store format, stratified splits and tools that
read one label) hold the first positive column of the row. Records without a label at the chosen level are left
out, as the benchmark does (listed in ``manifest["summary"]["unlabelled_records"]``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgtransfer.errors import CatalogError, ConfigError, RecordError
from ecgtransfer.physionet import ptbxl
from ecgtransfer.physionet.catalog import Database

log = logging.getLogger(__package__)  # the package's logger: log lines name "ecgtransfer.conversion"

def level_extra(level: str) -> str:
    """The name of the extra holding ``level``'s targets (``targets_superdiagnostic``)."""
    return f"{ptbxl.TARGETS_EXTRA}_{ptbxl.check_level(level)}"


@dataclass(frozen=True)
class MultilabelPlan:
    """What :func:`plan_multilabel` resolved.

    Attributes:
        level, rate: the label level and the rate of the records read.
        chosen: ``(ecg_id, record path without extension)`` in ``ptbxl_database.csv`` order.
        labels: ``(class names, ecg_id -> first positive class index, label files)`` as ``labels_for`` returns.
        patients: ecg_id -> patient id.
        extras: ecg_id -> its extras (one row each: ``targets``, ``targets_<level>``, ``strat_fold``).
        levels: level -> its label names.
        unlabelled: ecg_ids left out for having no label at ``level``.
    """

    level: str
    rate: int
    chosen: list[tuple[str, Path]]
    labels: tuple[tuple[str, ...], dict[str, int], list[Path]]
    patients: dict[str, str]
    extras: dict[str, dict[str, np.ndarray]]
    levels: dict[str, tuple[str, ...]]
    unlabelled: tuple[str, ...] = field(default_factory=tuple)

    def manifest_entry(self) -> dict[str, Any]:
        """``manifest["multilabel"]``: the level, the targets extra and every level's label names."""
        return {"level": self.level, "targets": ptbxl.TARGETS_EXTRA, "fold": ptbxl.FOLD_EXTRA, "rate": self.rate,
                "levels": {k: list(v) for k, v in self.levels.items()}}


def _read(path: Path, what: str) -> str:
    if not path.is_file():
        raise RecordError(f"{what} {path} is missing (run `ecgtransfer download ptb-xl`)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path} is not UTF-8 text (byte {exc.start}); expected PTB-XL's {path.name}") from None
    except OSError as exc:
        raise RecordError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _pick_rows(rows: Sequence[ptbxl.PtbxlRecord], records: Sequence[str] | str | None, vdir: Path, rate_n: int,
               db_file: Path) -> list[ptbxl.PtbxlRecord]:
    """The rows of ``ptbxl_database.csv`` to convert: those downloaded at ``rate_n`` Hz, or the ``ecg_id`` / paths
    of ``records`` (in the order given, once each)."""
    by_id = {r.ecg_id: r for r in rows}
    by_path = {r.filename(rate_n): r for r in rows}
    if records is None:
        picked = [r for r in rows if (vdir / f"{r.filename(rate_n)}.hea").is_file()]
        if not picked:
            raise RecordError(f"none of the {len(rows)} records of {db_file} is present at {rate_n} Hz under {vdir} "
                              f"(run `ecgtransfer download ptb-xl --rate {rate_n}`)")
        if len(picked) < len(rows):
            log.warning("ptb-xl: %d of %d records are downloaded at %d Hz; converting those", len(picked), len(rows),
                        rate_n)
    else:
        picked = []
        for name in [records] if isinstance(records, str) else records:
            row = by_id.get(str(name).strip()) or by_path.get(str(name).strip())
            if row is None:
                raise CatalogError(f"unknown record {name!r} of ptb-xl: not an ecg_id or a {rate_n} Hz path of "
                                   f"{db_file}")
            if row not in picked:
                picked.append(row)
    return picked


def plan_multilabel(db: Database, vdir: Path, *, records: Sequence[str] | str | None, level: str | None,
                    rate: int | str | None) -> MultilabelPlan:
    """Resolve a PTB-XL ``multilabel`` conversion (nothing is written)."""
    if db.index_kind != "ptbxl":
        raise ConfigError(f"the multilabel task needs PTB-XL's statements; {db.name} has none")
    level = ptbxl.check_level(level or ptbxl.DEFAULT_LEVEL)
    rates = ptbxl.rates_of(rate)
    if len(rates) != 1:
        raise ConfigError("convert reads one rate: rate must be 100 or 500 (resample with --fs)")
    rate_n = rates[0]
    db_file, st_file = vdir / ptbxl.DATABASE_FILE, vdir / ptbxl.STATEMENTS_FILE
    rows = ptbxl.parse_database(_read(db_file, "PTB-XL index"), source=str(db_file))
    statements = ptbxl.parse_statements(_read(st_file, "PTB-XL statements"), source=str(st_file))
    picked = _pick_rows(rows, records, vdir, rate_n, db_file)
    extra_codes = sorted({c for r in rows for c in r.scp_codes} - set(statements))
    levels = {lv: ptbxl.level_names(statements, lv, extra_codes) for lv in ptbxl.LEVELS}
    names = levels[level]
    chosen: list[tuple[str, Path]] = []
    first: dict[str, int] = {}
    extras: dict[str, dict[str, np.ndarray]] = {}
    unlabelled: list[str] = []
    for row in picked:
        hot = {}
        for lv, lv_names in levels.items():
            found = set(ptbxl.record_labels(row.scp_codes, statements, lv))
            hot[lv] = np.array([n in found for n in lv_names], dtype=np.uint8)
        if not hot[level].any():
            unlabelled.append(row.ecg_id)
            continue
        chosen.append((row.ecg_id, vdir / row.filename(rate_n)))
        first[row.ecg_id] = int(np.flatnonzero(hot[level])[0])
        extras[row.ecg_id] = {ptbxl.TARGETS_EXTRA: hot[level], ptbxl.FOLD_EXTRA: np.int64(row.strat_fold),
                              **{level_extra(lv): v for lv, v in hot.items()}}
    if unlabelled:
        log.info("ptb-xl: %d record(s) have no %s label and are left out, as the benchmark does", len(unlabelled),
                 level)
    if not chosen:
        raise ConfigError(f"no record of ptb-xl left to convert: none has a {level} label")
    return MultilabelPlan(level=level, rate=rate_n, chosen=chosen, labels=(names, first, [db_file, st_file]),
                          patients={r.ecg_id: r.patient_id for r in picked}, extras=extras, levels=levels,
                          unlabelled=tuple(unlabelled))


__all__ = ["MultilabelPlan", "plan_multilabel", "level_extra"]
