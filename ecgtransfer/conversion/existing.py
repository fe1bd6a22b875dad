"""The store already at a conversion's output folder: the same conversion (skip the work), another one (refuse
unless overwriting), or the same one made by another version of the R-peak detector (stale: convert again)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ecgtransfer.conversion.config import ConvertConfig
from ecgtransfer.errors import StoreError
from ecgtransfer.store import SegmentStore, open_existing


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


def existing_store(out: Path, cfg: ConvertConfig, sources: dict[str, str], overwrite: bool
                   ) -> tuple[SegmentStore | None, str | None]:
    """``(store, stale)``: the store at ``out`` if it already holds exactly this conversion (else None; one that holds
    another conversion raises unless ``overwrite``), opened once (:func:`~ecgtransfer.store.open_existing`); and,
    when it is this very conversion (parameters and source files) made by another version of the R-peak detector,
    why it is to be converted again although nobody asked to overwrite it (``stale``; None otherwise)."""
    stale: list[str] = []

    def differs(store: SegmentStore) -> str | None:
        diff = _differences(store.manifest, cfg, sources)
        if cfg.detector is not None and diff == ["detector"]:
            stale.append(_stale_message(out, cfg, store.manifest))
        return f"a different conversion (differs in: {', '.join(diff)})" if diff else None

    try:
        store = open_existing(out, differs, overwrite=overwrite)
    except StoreError:
        if stale:  # only the detector changed: converted again without being asked to overwrite
            return None, stale[0]
        raise
    return store, (stale[0] if stale else None)


def _stale_message(out: Path, cfg: ConvertConfig, manifest: Mapping[str, Any]) -> str:
    was = (manifest.get("parameters") or {}).get("detector")
    made = f"version {was}" if was is not None else "version 1 (stores made before versions were recorded)"
    return (f"{out} holds beats found by the R-peak detector {made}; this ecgtransfer detects with version "
            f"{cfg.detector}, whose beats differ: converting it again (same parameters and source files)")
