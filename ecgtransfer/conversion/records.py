"""The records, labels and source files of a conversion, resolved in the main process before any work.

Which records to convert (``RECORDS``, the ones downloaded, the database's paced records left out of ``beats``),
their labels (the AAMI classes of the beats, or each record's class read by the reader the catalog names,
``Database.record_labels``), every record's header and leads, and the SHA256 of every source file.
"""
from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

from ecgtransfer._hashing import sha256_file
from ecgtransfer.conversion.beats import check_annotation
from ecgtransfer.errors import CatalogError, ConfigError, DownloadError, RecordError
from ecgtransfer.physionet.catalog import Database
from ecgtransfer.physionet.index import SUMS_FILE, parse_records, parse_sha256sums
from ecgtransfer.signals import beats as beatmod
from ecgtransfer.signals import rhythm
from ecgtransfer.signals.record import ALL_LEADS, LEAD_ALTERNATIVES, read_header, record_files, select_leads

log = logging.getLogger(__package__)  # the package's: log lines name "ecgtransfer.conversion", as before the split


def version_dir(db: Database, data: Path, version: str) -> Path:
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


def resolve_records(db: Database, vdir: Path, task: str, records: Sequence[str] | None,
                     include_paced: bool) -> list[tuple[str, Path]]:
    names = _record_names(db, vdir)
    base = vdir / db.record_dir if db.record_dir else vdir
    by_id = {_record_id(n): n for n in names}
    by_name = {n: n for n in names}
    paced = set(db.paced_records) if task == "beats" else set()
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


def labels_for(db: Database, vdir: Path, task: str, reference: str, rhythm_classes: str
                ) -> tuple[tuple[str, ...], dict[str, int] | None, list[Path]]:
    """Class names, record -> class index (rhythm tasks) and the label files used."""
    if task == "beats":  # rhythm-beats: the rhythm labels below
        if db.annotation is None:
            raise ConfigError(f"{db.name} has no beat annotations; tasks: {', '.join(db.tasks)}")
        return beatmod.AAMI_CLASSES, None, []
    if db.record_labels is not None:  # the reader the catalog names, with the parameter that chooses its labels
        choice = {"reference": reference, "rhythm_classes": rhythm_classes}[db.record_labels.option]
        return rhythm.record_labels(db.record_labels.reader, vdir / (db.record_dir or ""), choice)
    raise ConfigError(f"convert has no {task} labels for {db.name} yet (supported: mitdb beats, challenge-2017 "
                      "and ludb rhythm)")


def hash_sources(files: Iterable[Path], vdir: Path) -> dict[str, str]:
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


def read_headers(db: Database, task: str, chosen: Sequence[tuple[str, Path]], lead_spec: str | tuple[str, ...],
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
            files.append(check_annotation(db, path, rid))  # a truncated .atr is refused before any work
        elif record_labels is not None and rid not in record_labels:
            raise RecordError(f"record {rid} has no label in {', '.join(str(f) for f in label_files)}")
    assert lead_names is not None  # resolve_records leaves at least one record
    return tuple(LEAD_ALTERNATIVES.join(met) for met in found), files, longest
