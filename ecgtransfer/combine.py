"""Combine segment stores of different databases into one store (one training set from several databases).

``combine_stores(["stores/mitdb-beats", "stores/svdb-beats"], "stores/xdb")`` checks that the stores hold the same
kind of segments, then streams them, store by store in the given order, through a
:class:`~ecgtransfer.store.StoreWriter` (atomic, locked, resumable) into one store.

Rules:

- The stores must agree on the task, the rate ``fs``, the segment shape ``[C, L]``, the dtype, the class names,
  the extras (names and trailing shapes) and the conversion parameters that define a segment
  (:data:`AGREED_PARAMETERS`: the window around the R peak or the rhythm window, the filter, the normalisation,
  the version of the R-peak detector that found detected beats).
  Each must hold one database, and no database may come twice: the first disagreement is one
  :class:`~ecgtransfer.errors.StoreError` line naming the store and the field.
- Record and patient ids are qualified by database, ``"<database>:<id>"`` (:func:`ecgtransfer.signals.ids.qualify`):
  ``mitdb:100`` and ``svdb:800`` are different people, and no two databases' ids can collide. The database of
  each segment is :attr:`SegmentStore.segment_databases`.
- Lead names are kept when every store names its leads alike (case aside); otherwise the combined store names
  them by position (``lead1``, ``lead2``, ...) and each database's own names stay in ``manifest["databases"]``.
- Manifest: ``database`` is the databases joined by ``+`` in the given order (``"mitdb+svdb"``), ``version`` their
  versions joined the same way, ``databases`` one entry per source store (``database``, ``version``,
  ``manifest_hash``, ``segments``, ``lead_names``, ``source_fs``), ``source_files`` every source file keyed by
  its qualified path (``"svdb:800.dat"``), ``parameters`` the agreed parameters, ``patients_known`` true only
  when it is true of every source store.
- Running again with the same source stores (same manifest hashes, same order) returns the existing store; a
  store combined from other inputs is refused unless ``overwrite``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgtransfer._outdir import check_output_dir
from ecgtransfer.errors import StoreError
from ecgtransfer.signals.ids import qualify, split_qualified
from ecgtransfer.store import STORE_LAYOUT, SegmentStore, StoreWriter, open_existing, recover_interrupted

log = logging.getLogger(__name__)

#: ``manifest["parameters"]`` entries (fields of :class:`ecgtransfer.conversion.ConvertConfig`) that define what a
#: segment is: stores to combine must agree on each one that either of them records
AGREED_PARAMETERS = ("task", "fs", "before_samples", "after_samples", "window_samples", "stride_samples",
                     "whole_record", "filter", "band", "filter_order", "normalize", "dtype", "rr_context",
                     "class_names", "detector")
#: joins the database names (and versions) of the combined store's ``database`` (``version``)
DATABASE_JOIN = "+"
#: segments copied per chunk (bounded memory whatever the size of the stores)
CHUNK_SEGMENTS = 8192


def positional_lead_names(channels: int) -> list[str]:
    """Lead names by position, ``["lead1", "lead2", ...]``, for stores whose databases name their leads apart."""
    return [f"lead{i + 1}" for i in range(channels)]


def _open(store: SegmentStore | str | os.PathLike) -> SegmentStore:
    return store if isinstance(store, SegmentStore) else SegmentStore(store)


def _source_fs(store: SegmentStore) -> float:
    params = store.manifest.get("parameters") or {}
    value = params.get("source_fs")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else store.fs


def _extras_shapes(store: SegmentStore) -> dict[str, tuple[int, ...]]:
    return {name: tuple(store.extra(name).shape[1:]) for name in store.manifest.get("extras", [])}


def check_combinable(stores: Sequence[SegmentStore]) -> None:
    """Raise one :class:`StoreError` line naming the store and the field unless ``stores`` can be combined (see the
    module doc): at least two, one database each, no database twice, and the same kind of segments."""
    if len(stores) < 2:
        raise StoreError(f"combine needs at least two stores, got {len(stores)}")
    first = stores[0]
    seen: dict[str, Path] = {}
    for s in stores:
        if "databases" in s.manifest or DATABASE_JOIN in s.database:
            raise StoreError(f"{s.path} is already a combined store ({s.database}); combine the single-database "
                             "stores it was made from")
        if s.database in seen:
            raise StoreError(f"{s.path} holds {s.database}, like {seen[s.database]}: combine takes one store per "
                             "database")
        seen[s.database] = s.path
        qualified = [r for r in np.unique(np.concatenate([s.record_ids, s.patient_ids])).tolist()
                     if split_qualified(r)[0] is not None]
        if qualified:
            raise StoreError(f"{s.path}: record or patient id {qualified[0]!r} holds ':', which combined stores "
                             "reserve for '<database>:<id>'")
        if s is first:
            continue

        def differ(field: str, mine: Any, theirs: Any) -> StoreError:
            return StoreError(f"{s.path} ({s.database}) differs from {first.path} ({first.database}) in {field}: "
                              f"{mine!r}, expected {theirs!r}")

        for field, get in (("task", lambda x: x.task), ("fs", lambda x: x.fs),
                           ("segment shape [C, L]", lambda x: list(x.shape[1:])),
                           ("dtype", lambda x: x.manifest.get("dtype")), ("class_names", lambda x: x.class_names),
                           ("extras", lambda x: _extras_shapes(x))):
            if get(s) != get(first):
                raise differ(field, get(s), get(first))
        mine, theirs = s.manifest.get("parameters") or {}, first.manifest.get("parameters") or {}
        for key in AGREED_PARAMETERS:
            if mine.get(key) != theirs.get(key):
                raise differ(f"parameter {key}", mine.get(key), theirs.get(key))


def _entries(stores: Sequence[SegmentStore]) -> list[dict[str, Any]]:
    """``manifest["databases"]`` of the combination: one entry per source store, in order."""
    return [{"database": s.database, "version": str(s.manifest.get("version", "")), "manifest_hash": s.manifest_hash,
             "segments": len(s), "lead_names": s.lead_names, "source_fs": _source_fs(s)} for s in stores]


def _existing(out: Path, entries: list[dict[str, Any]], overwrite: bool) -> SegmentStore | None:
    """The store at ``out`` when it is this very combination; raises when it holds another one (not ``overwrite``)."""
    key = [(e["database"], e["manifest_hash"]) for e in entries]

    def differs(store: SegmentStore) -> str | None:
        have = [(e.get("database"), e.get("manifest_hash")) for e in store.manifest.get("databases") or []]
        if have == key:
            return None
        was = " + ".join(f"{db} {str(h)[:12]}" for db, h in have) or f"a {store.database} store"
        now = " + ".join(f"{db} {h[:12]}" for db, h in key)
        return f"another store ({was}), not the combination of {now}"

    return open_existing(out, differs, overwrite=overwrite)


def combine_stores(stores: Sequence[SegmentStore | str | os.PathLike], out: str | os.PathLike, *,
                   overwrite: bool = False) -> SegmentStore:
    """Combine single-database stores into one store at ``out`` and return it (see the module doc for the rules).

    Args:
        stores: two or more stores (or their paths) of different databases, in the order their segments take.
        out: the store directory to create.
        overwrite: replace a store at ``out`` that was combined from other inputs.

    Returns:
        The combined :class:`~ecgtransfer.store.SegmentStore` (``segments`` ``[N, C, L]``, N the sum of the sources').

    Raises:
        StoreError: a source store is missing or damaged, the stores disagree (the message names the store and the
            field), a database comes twice, or ``out`` holds another store and ``overwrite`` is False.
    """
    opened = [_open(s) for s in stores]
    check_combinable(opened)
    out = Path(out)
    check_output_dir(out, kind=STORE_LAYOUT, inputs={f"STORE {i + 1}": s.path for i, s in enumerate(opened)})
    entries = _entries(opened)
    recover_interrupted(out)
    existing = _existing(out, entries, overwrite)
    if existing is not None:
        log.info("%s is up to date (the same source stores); skipping", out)
        return existing
    first = opened[0]
    _, channels, length = first.shape
    lead_names = _lead_names(opened, channels)
    extras = list(first.manifest.get("extras", []))
    source_files: dict[str, str] = {}
    for s in opened:
        source_files.update({qualify(s.database, k): v for k, v in (s.manifest.get("source_files") or {}).items()})
    params = first.manifest.get("parameters") or {}
    parameters = {k: params[k] for k in AGREED_PARAMETERS if k in params}
    log.info("combining %s into %s", " + ".join(f"{s.database} ({len(s)} segments)" for s in opened), out)
    with StoreWriter(out, channels=channels, length=length, dtype=str(first.manifest.get("dtype", "float32")),
                     overwrite=overwrite) as writer:
        _append_stores(writer, opened, extras)
        store = writer.close(
            database=DATABASE_JOIN.join(e["database"] for e in entries),
            version=DATABASE_JOIN.join(e["version"] for e in entries), task=first.task, fs=first.fs,
            lead_names=lead_names, class_names=first.class_names, source_files=dict(sorted(source_files.items())),
            parameters=parameters, databases=entries, patients_known=all(s.patients_known for s in opened),
            provenance={"sources": [str(s.path.resolve()) for s in opened]})
    log.info("wrote %s: %d segments of shape %s from %s", out, len(store), store.shape[1:], store.database)
    return store


def _lead_names(opened: Sequence[SegmentStore], channels: int) -> list[str]:
    """The first store's lead names when every store names its leads alike (case aside), else names by position."""
    first = opened[0]
    names = [[n.lower() for n in s.lead_names] for s in opened]
    lead_names = first.lead_names if all(n == names[0] for n in names) else positional_lead_names(channels)
    if lead_names != first.lead_names:
        log.info("the databases name their leads differently (%s): the combined store names them %s",
                 "; ".join(f"{s.database} {', '.join(s.lead_names)}" for s in opened), ", ".join(lead_names))
    return lead_names


def _append_stores(writer: StoreWriter, opened: Sequence[SegmentStore], extras: list[str]) -> None:
    """Stream the segments ``[N, C, L]`` of each store, in order and ``CHUNK_SEGMENTS`` at a time, into ``writer``,
    their record and patient ids qualified by database."""
    for s in opened:
        seg_extras = {name: s.extra(name) for name in extras}
        for a in range(0, len(s), CHUNK_SEGMENTS):
            b = min(a + CHUNK_SEGMENTS, len(s))
            writer.append(np.asarray(s.segments[a:b]), s.labels[a:b],
                          record_id=[qualify(s.database, r) for r in s.record_ids[a:b].tolist()],
                          patient_id=[qualify(s.database, p) for p in s.patient_ids[a:b].tolist()],
                          positions=s.positions[a:b],
                          extras={name: np.asarray(arr[a:b]) for name, arr in seg_extras.items()})


__all__ = ["AGREED_PARAMETERS", "DATABASE_JOIN", "check_combinable", "combine_stores", "positional_lead_names"]
