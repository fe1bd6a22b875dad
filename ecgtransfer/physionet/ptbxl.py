"""PTB-XL's own index and label files: ``ptbxl_database.csv`` and ``scp_statements.csv``.

PTB-XL (Wagner et al., Scientific Data 2020) has no ``RECORDS`` listing: its index is ``ptbxl_database.csv``, one
row per ECG (``ecg_id``) with the subject (``patient_id``), the recommended folds (``strat_fold`` 1-10), the
SCP-ECG statements with their likelihoods (``scp_codes``, a Python dict literal such as
``{'NORM': 100.0, 'SR': 0.0}``) and the record paths at 100 Hz (``filename_lr``) and 500 Hz (``filename_hr``).
``scp_statements.csv`` describes each of the 71 statements: whether it is ``diagnostic``, ``form`` or
``rhythm``, and for the diagnostic ones their ``diagnostic_subclass`` (23) and ``diagnostic_class`` (the five
superclasses NORM, MI, STTC, CD, HYP).

The label levels (:data:`LEVELS`) follow the benchmark of Strodthoff et al. (IEEE JBHI 25(5), 2021; the code of
helme/ecg_ptbxl_benchmarking, ``compute_label_aggregations`` and ``select_data``), rule for rule:

* every statement key of ``scp_codes`` counts, **whatever its likelihood** (a ``0.0`` likelihood, "unknown"
  in PTB-XL's terms, is a statement as much as ``100.0``);
* ``all``: the keys themselves; ``diagnostic`` / ``form`` / ``rhythm``: the keys whose row in
  ``scp_statements.csv`` has a 1 in that column (a statement may be both diagnostic and form);
  ``subdiagnostic`` / ``superdiagnostic``: the ``diagnostic_subclass`` / ``diagnostic_class`` of the diagnostic
  keys (a missing value is skipped); duplicates merge (a record is positive for a class once);
* a key absent from ``scp_statements.csv`` has no level but ``all``;
* a record with no label at the chosen level is left out of that level's data set.

The label names of a level are fixed by ``scp_statements.csv`` (sorted), not by the records converted, so stores
of any subset share their columns; the benchmark keeps the labels that occur at least once in the whole
database (``min_samples = 0``), which on the full PTB-XL is every one of them (71 / 44 / 23 / 5 / 19 / 12).

This module is numpy-free and uses the ``csv`` module: it is read by the downloader and by ``convert``.
"""
from __future__ import annotations

import ast
import csv
import io
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from ecgtransfer.errors import ConfigError, DownloadError, RecordError
from ecgtransfer.physionet.index import safe_relpath

DATABASE_FILE = "ptbxl_database.csv"
STATEMENTS_FILE = "scp_statements.csv"
#: label levels of the PTB-XL benchmark (Strodthoff et al.), in the order of its tables
LEVELS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
DEFAULT_LEVEL = "superdiagnostic"
#: the diagnostic superclasses (``diagnostic_class``)
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
#: sampling rates of the published records: 100 Hz (``records100``, ``filename_lr``), 500 Hz (``filename_hr``)
RATES = (100, 500)
#: what ``download --rate`` accepts
DOWNLOAD_RATES = ("100", "500", "both")
DEFAULT_RATE = 100
#: the protocol's folds: ``strat_fold`` 1-8 train, 9 validation, 10 test
TRAIN_FOLDS = (1, 2, 3, 4, 5, 6, 7, 8)
VAL_FOLD = 9
TEST_FOLD = 10
#: the store extra holding the chosen level's multi-hot targets ``[N, K]`` (``targets_<level>``: every level's)
TARGETS_EXTRA = "targets"
#: the store extra holding each record's ``strat_fold`` ``[N]`` (the ``ptbxl`` split reads it)
FOLD_EXTRA = "strat_fold"

_DB_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr")
_ST_COLUMNS = ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")


@dataclass(frozen=True)
class PtbxlRecord:
    """One row of ``ptbxl_database.csv``.

    Attributes:
        ecg_id: the record id (``"1"``), as ``convert`` stores it.
        patient_id: the subject (``"15709"``; the csv writes it as a float, ``15709.0``).
        strat_fold: the recommended fold, 1-10.
        filename_lr, filename_hr: the record paths without extension at 100 and 500 Hz.
        scp_codes: statement -> likelihood (0-100).
    """

    ecg_id: str
    patient_id: str
    strat_fold: int
    filename_lr: str
    filename_hr: str
    scp_codes: Mapping[str, float]

    def filename(self, rate: int) -> str:
        """The record path (no extension) at ``rate`` Hz (100 or 500)."""
        return self.filename_lr if int(rate) == 100 else self.filename_hr


@dataclass(frozen=True)
class Statement:
    """One row of ``scp_statements.csv``."""

    code: str
    diagnostic: bool
    form: bool
    rhythm: bool
    diagnostic_class: str | None
    diagnostic_subclass: str | None


def _reader(text: str, source: str, needed: Sequence[str], *, first_blank: bool = False) -> csv.DictReader:
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    if first_blank and fields:
        fields[0] = fields[0] or "code"
        reader.fieldnames = fields
    missing = [c for c in needed if c not in fields]
    if missing:
        raise RecordError(f"{source}: expected the columns {', '.join(needed)}, missing {', '.join(missing)} "
                          f"(found {', '.join(f for f in fields[:12] if f) or 'no header'})")
    return reader


def _whole_number(value: str, what: str, source: str, line: int) -> str:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise RecordError(f"{source} line {line}: {what} must be a non-negative whole number, found {value!r}")
    return str(int(number))


def _scp_codes(value: str, source: str, line: int) -> dict[str, float]:
    try:
        codes = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        codes = None
    if not isinstance(codes, dict) or not all(
            isinstance(k, str) and k and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in codes.items()):
        raise RecordError(f"{source} line {line}: scp_codes must be a dict of statement -> likelihood such as "
                          f"{{'NORM': 100.0}}, found {value[:80]!r}")
    return {str(k): float(v) for k, v in codes.items()}


def parse_database(text: str, *, source: str = DATABASE_FILE) -> list[PtbxlRecord]:
    """Parse ``ptbxl_database.csv``; every row must have an ``ecg_id``, a ``patient_id``, ``strat_fold`` 1-10,
    ``scp_codes`` and safe relative record paths. Raises :class:`RecordError` naming the file and line."""
    rows: list[PtbxlRecord] = []
    seen: set[str] = set()
    try:
        for line, row in enumerate(_reader(text, source, _DB_COLUMNS), start=2):
            ecg_id = _whole_number(row["ecg_id"] or "", "ecg_id", source, line)
            if ecg_id in seen:
                raise RecordError(f"{source} line {line}: ecg_id {ecg_id} appears twice")
            seen.add(ecg_id)
            fold = _whole_number(row["strat_fold"] or "", "strat_fold", source, line)
            if not 1 <= int(fold) <= 10:
                raise RecordError(f"{source} line {line}: strat_fold must be 1-10, found {row['strat_fold']!r}")
            paths = []
            for col in ("filename_lr", "filename_hr"):
                value = (row[col] or "").strip()
                try:
                    paths.append(safe_relpath(value, source=f"{source} line {line}"))
                except ValueError as exc:
                    raise RecordError(str(exc)) from None
            rows.append(PtbxlRecord(
                ecg_id=ecg_id, patient_id=_whole_number(row["patient_id"] or "", "patient_id", source, line),
                strat_fold=int(fold), filename_lr=paths[0], filename_hr=paths[1],
                scp_codes=_scp_codes(row["scp_codes"] or "", source, line)))
    except csv.Error as exc:
        raise RecordError(f"{source}: not a readable CSV file ({exc})") from None
    if not rows:
        raise RecordError(f"{source} lists no records (expected one row per ECG)")
    return rows


def _flag(value: str | None) -> bool:
    try:
        return float(value or "nan") == 1.0
    except ValueError:
        return False


def parse_statements(text: str, *, source: str = STATEMENTS_FILE) -> dict[str, Statement]:
    """Parse ``scp_statements.csv`` (first column: the statement code) into code -> :class:`Statement`."""
    out: dict[str, Statement] = {}
    try:
        for line, row in enumerate(_reader(text, source, _ST_COLUMNS, first_blank=True), start=2):
            code = (row.get("code") or "").strip()
            if not code:
                raise RecordError(f"{source} line {line}: a statement without a code in the first column")
            cls = (row["diagnostic_class"] or "").strip() or None
            sub = (row["diagnostic_subclass"] or "").strip() or None
            out[code] = Statement(code=code, diagnostic=_flag(row["diagnostic"]), form=_flag(row["form"]),
                                  rhythm=_flag(row["rhythm"]), diagnostic_class=cls, diagnostic_subclass=sub)
    except csv.Error as exc:
        raise RecordError(f"{source}: not a readable CSV file ({exc})") from None
    if not out:
        raise RecordError(f"{source} lists no statements")
    return out


def check_level(level: str) -> str:
    """``level`` after checking it is one of :data:`LEVELS`."""
    if level not in LEVELS:
        raise ConfigError(f"unknown PTB-XL label level {level!r}; expected one of {', '.join(LEVELS)}")
    return level


def record_labels(codes: Iterable[str], statements: Mapping[str, Statement], level: str) -> list[str]:
    """The labels of one record at ``level`` from its statement keys (likelihoods ignored), sorted."""
    check_level(level)
    found: set[str] = set()
    for code in codes:
        if level == "all":
            found.add(code)
            continue
        st = statements.get(code)
        if st is None:
            continue
        if level in ("form", "rhythm", "diagnostic"):
            if getattr(st, level):
                found.add(code)
        elif st.diagnostic:
            value = st.diagnostic_subclass if level == "subdiagnostic" else st.diagnostic_class
            if value is not None:
                found.add(value)
    return sorted(found)


def level_names(statements: Mapping[str, Statement], level: str,
                extra_codes: Iterable[str] = ()) -> tuple[str, ...]:
    """The label names of ``level`` (sorted), fixed by ``scp_statements.csv``; ``all`` adds ``extra_codes`` (keys of
    ``scp_codes`` that the statements file lacks)."""
    names = set(record_labels(statements, statements, level))
    if level == "all":
        names |= set(extra_codes)
    if level == "superdiagnostic":  # the protocol's order, not the alphabet's
        return tuple(c for c in SUPERCLASSES if c in names) + tuple(sorted(names - set(SUPERCLASSES)))
    return tuple(sorted(names))


def index_records(rows: Sequence[PtbxlRecord], rate: int | str) -> list[str]:
    """The record paths (no extension) of ``rows`` at ``rate``: ``100``, ``500`` or ``both`` (100 Hz first)."""
    rates = rates_of(rate)
    return [row.filename(r) for r in rates for row in rows]


def rates_of(rate: int | str | None) -> tuple[int, ...]:
    """``100`` -> (100,), ``500`` -> (500,), ``both`` -> (100, 500); None is :data:`DEFAULT_RATE`."""
    if rate is None:
        return (DEFAULT_RATE,)
    text = str(rate).strip().lower()
    if text == "both":
        return RATES
    if text in ("100", "500"):
        return (int(text),)
    raise ConfigError(f"PTB-XL rate must be one of {', '.join(DOWNLOAD_RATES)}, got {rate!r}")


def aliases(rows: Sequence[PtbxlRecord], rate: int | str) -> dict[str, list[str]]:
    """ecg_id -> its record paths at ``rate`` (``--records 1 2`` names ECGs by their ``ecg_id``)."""
    rates = rates_of(rate)
    return {row.ecg_id: [row.filename(r) for r in rates] for row in rows}


def parse_index(text: str, rate: int | str, *, source: str = DATABASE_FILE) -> tuple[list[str], dict[str, list[str]]]:
    """(record paths at ``rate``, ecg_id -> paths) from the text of ``ptbxl_database.csv``, for the downloader
    (a malformed file is a :class:`DownloadError`: it came from the mirror)."""
    try:
        rows = parse_database(text, source=source)
    except RecordError as exc:
        raise DownloadError(str(exc)) from None
    return index_records(rows, rate), aliases(rows, rate)


__all__ = ["DATABASE_FILE", "STATEMENTS_FILE", "LEVELS", "DEFAULT_LEVEL", "SUPERCLASSES", "RATES", "DOWNLOAD_RATES",
           "DEFAULT_RATE", "TRAIN_FOLDS", "VAL_FOLD", "TEST_FOLD", "TARGETS_EXTRA", "FOLD_EXTRA", "PtbxlRecord", "Statement", "parse_database",
           "parse_statements", "check_level", "record_labels", "level_names", "index_records", "rates_of", "aliases",
           "parse_index"]
