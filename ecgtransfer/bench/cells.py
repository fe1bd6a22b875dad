"""The resumable cell store: one JSON file per finished cell, written atomically.

``OUT/cells/<cell key>.json`` holds everything one cell produced (see ``docs/bench.md``). A re-run of the
bench loads these and skips every cell whose file is complete (``status == "done"``) and was computed under
the same budget fingerprint and target store (manifest hash); everything else is recomputed. Each file carries the
SHA256 of its own content (``digest``): a file edited or corrupted since (its digest differs, or it is no valid cell
record) is recomputed with a warning instead of being reused (files of versions without a digest are read as
before). A crash can at
worst lose the cell in progress: files appear under their final names only once complete.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ecgtransfer._atomic import atomic_write_json, json_default
from ecgtransfer._formats import RESULTS_FORMAT
from ecgtransfer._hashing import sha256_json
from ecgtransfer._outdir import FolderLayout, peek_json, register_layout
from ecgtransfer.bench.grid import Cell
from ecgtransfer.bench.results import CellResult
from ecgtransfer.errors import BenchError
from ecgtransfer.training.run_files import read_json_object

log = logging.getLogger(__name__)

#: the files of a bench output folder: ``results.json`` (format :data:`~ecgtransfer._formats.RESULTS_FORMAT`),
#: this module's ``cells/`` and the runs of its cells, ``runs/`` (besides the reports and the user's files)
RESULTS, CELLS, RUNS = "results.json", "cells", "runs"


def _is_bench(entries: list[str], folder: Path) -> bool:
    return RESULTS in entries or (folder / CELLS).is_dir() or (folder / RUNS).is_dir()


def _encloses_bench(folder: Path) -> bool:
    if (folder / RESULTS).is_file() and ((folder / CELLS).is_dir() or (folder / RUNS).is_dir()):
        results = peek_json(folder / RESULTS)
        return results is not None and results.get("format") == RESULTS_FORMAT
    return False


#: what a bench folder holds, for the output-folder rule (:mod:`ecgtransfer._outdir`): it may hold other files,
#: ``results.json``, ``cells/`` or ``runs/`` make it a bench folder
BENCH_LAYOUT = register_layout(FolderLayout(
    "bench", "an ecgtransfer bench folder", names=frozenset({RESULTS, CELLS, RUNS}), only_own=False, check=_is_bench,
    encloses=_encloses_bench, precedence=1))


class CellStore:
    """Finished cells of one bench output directory ``out``."""

    def __init__(self, out: str | Path) -> None:
        self.dir = Path(out) / CELLS

    def path(self, cell: Cell) -> Path:
        return self.dir / f"{cell.key}.json"

    def save(self, cell: Cell, record: dict[str, Any]) -> None:
        """Write ``record`` (must hold ``cell`` and ``status``) atomically."""
        if Cell.from_dict(record["cell"]) != cell:
            raise ValueError(f"record of {record['cell']} saved under cell {cell.key}")
        plain = json.loads(json.dumps({k: v for k, v in record.items() if k != DIGEST}, default=json_default))
        atomic_write_json(self.path(cell), {**plain, DIGEST: record_digest(plain)})

    def load(self, cell: Cell) -> dict[str, Any] | None:
        """The stored record of ``cell``, or None when absent or unreadable (logged)."""
        p = self.path(cell)
        if not p.is_file():
            return None
        try:
            record = read_json_object(p, "cell record", error=BenchError)
        except BenchError as exc:
            log.warning("ignoring unreadable cell file %s (%s); the cell will be recomputed", p, exc)
            return None
        if not isinstance(record, dict) or "cell" not in record:
            log.warning("ignoring cell file %s: no 'cell' entry; the cell will be recomputed", p)
            return None
        digest = record.pop(DIGEST, None)
        if digest is not None and digest != record_digest(record):
            log.warning("ignoring damaged cell file %s: its content does not match its digest (edited or corrupted "
                        "since it was written); the cell will be recomputed", p)
            return None
        try:
            held = CellResult.of(record).cell  # the record checked, its cell parsed
        except BenchError as exc:
            log.warning("ignoring cell file %s (%s); the cell will be recomputed", p, exc)
            return None
        if held != cell:
            log.warning("ignoring cell file %s: it holds cell %s", p, record["cell"])
            return None
        return record

    def finished(self, cell: Cell, *, fingerprint: str, store_hash: str,
                 inputs: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The record of ``cell`` when it is done and was computed under the same budget and store."""
        return self.check(cell, fingerprint=fingerprint, store_hash=store_hash, inputs=inputs)[0]

    def check(self, cell: Cell, *, fingerprint: str, store_hash: str, inputs: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any] | None, str | None]:
        """``(record, None)`` for a reusable finished cell, else ``(None, why it must be (re)computed)``.

        ``why`` is None for a cell never computed; otherwise it says what differs (``inputs``, the current
        fingerprint inputs, are compared key by key with those stored in the record, when it has them).
        """
        p = self.path(cell)
        record = self.load(cell)
        if record is None:
            return None, ("its cell file was unreadable or damaged" if p.is_file() else None)
        if record.get("status") != "done":
            return None, f"it {record.get('status', 'did not finish')} before ({record.get('reason') or 'no reason'})"
        if record.get("fingerprint") != fingerprint:
            changed = _changed(record.get("fingerprint_inputs"), inputs)
            what = f"; changed: {', '.join(changed)}" if changed else ""
            why = f"computed under other settings (fingerprint {record.get('fingerprint')}, now {fingerprint}{what})"
            log.info("cell %s was %s: recomputing", cell.key, why)
            return None, why
        if record.get("store_manifest_hash") != store_hash:
            why = f"computed on another store (manifest {record.get('store_manifest_hash')}, now {store_hash})"
            log.info("cell %s was %s: recomputing", cell.key, why)
            return None, why
        return record, None


#: the key of a cell file that holds the SHA256 of the rest of it
DIGEST = "digest"


def record_digest(record: dict[str, Any]) -> str:
    """SHA256 of a cell record as canonical JSON (NaN allowed: a failed cell's loss may be NaN)."""
    return sha256_json(record, allow_nan=True)


def _changed(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two fingerprint-input dicts (empty when either is missing)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_changed(a, b, f"{prefix}{k}."))
        else:
            out.append(f"{prefix}{k}")
    return out
