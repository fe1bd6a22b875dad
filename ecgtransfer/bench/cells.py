"""The resumable cell store: one JSON file per finished cell, written atomically.

``OUT/cells/<cell key>.json`` holds everything one cell produced (see ``docs/bench.md``). A re-run of the
bench loads these and skips every cell whose file is complete (``status == "done"``) and was computed under
the same budget fingerprint and target store (manifest hash); everything else is recomputed. A crash can at
worst lose the cell in progress: files appear under their final names only once complete.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ecgtransfer._atomic import atomic_write_json
from ecgtransfer.bench.grid import Cell

log = logging.getLogger(__name__)


class CellStore:
    """Finished cells of one bench output directory ``out``."""

    def __init__(self, out: str | Path) -> None:
        self.dir = Path(out) / "cells"

    def path(self, cell: Cell) -> Path:
        return self.dir / f"{cell.key}.json"

    def save(self, cell: Cell, record: dict[str, Any]) -> None:
        """Write ``record`` (must hold ``cell`` and ``status``) atomically."""
        if Cell.from_dict(record["cell"]) != cell:
            raise ValueError(f"record of {record['cell']} saved under cell {cell.key}")
        atomic_write_json(self.path(cell), record)

    def load(self, cell: Cell) -> dict[str, Any] | None:
        """The stored record of ``cell``, or None when absent or unreadable (logged)."""
        p = self.path(cell)
        if not p.is_file():
            return None
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable cell file %s (%s); the cell will be recomputed", p, exc)
            return None
        if not isinstance(record, dict) or "cell" not in record:
            log.warning("ignoring cell file %s: no 'cell' entry; the cell will be recomputed", p)
            return None
        try:
            if Cell.from_dict(record["cell"]) != cell:
                log.warning("ignoring cell file %s: it holds cell %s", p, record["cell"])
                return None
        except (KeyError, TypeError, ValueError):
            return None
        return record

    def finished(self, cell: Cell, *, fingerprint: str, store_hash: str) -> dict[str, Any] | None:
        """The record of ``cell`` when it is done and was computed under the same budget and store."""
        record = self.load(cell)
        if record is None or record.get("status") != "done":
            return None
        if record.get("fingerprint") != fingerprint:
            log.info("cell %s was computed under another budget (fingerprint %s, now %s): recomputing",
                     cell.key, record.get("fingerprint"), fingerprint)
            return None
        if record.get("store_manifest_hash") != store_hash:
            log.info("cell %s was computed on another store (manifest %s, now %s): recomputing",
                     cell.key, record.get("store_manifest_hash"), store_hash)
            return None
        return record
