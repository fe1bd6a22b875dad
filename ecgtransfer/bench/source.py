"""The source side of ``ecg`` and pooled arms: the source store, what its model reads, its model, the pooled store.

``ecg`` arms start from a source model trained once per encoding on the ``[source]`` store (kept in
``OUT/source/<encoding>/``, reused while its fingerprint holds); pooled arms train on the target and source stores
combined (:func:`pooled_store`). A source store of the target's database may hold the target's validation and test
patients (:func:`source_overlap`): they are dropped before the source split is drawn (:func:`exclude_patients`).
:class:`SourceModels` is the part of the bench (:class:`ecgtransfer.bench.runner._Bench`) that opens the source
store and trains, reuses and checks the source models.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ecgtransfer._atomic import atomic_write_json
from ecgtransfer.bench.arms import ArmConfig
from ecgtransfer.bench.cell_plan import MACRO_F1_DEFINITION, cell_config
from ecgtransfer.bench.config import SOURCE_LEAD_GRID, TASK_SPLIT_KEYS, SourceConfig
from ecgtransfer.bench.run_records import kept_metrics, history_table, predict_part
from ecgtransfer.errors import BenchError, EcgTransferError, StoreError
from ecgtransfer.signals.split import SplitConfig
from ecgtransfer.store import SegmentStore
from ecgtransfer.training.config import TrainConfig
from ecgtransfer.training.run_files import read_json_object, read_split

log = logging.getLogger("ecgtransfer.bench.runner")  # the bench's log lines keep the name they had before the split


def source_settings(src: SourceConfig) -> dict[str, Any]:
    """The ``[source]`` settings a source model and the ``ecg`` cells depend on (the store is checked by its
    manifest hash); ``lead`` only when set, so that benches from before it keep their fingerprints."""
    return {k: (dict(v) if k == "train" else v) for k, v in vars(src).items()
            if k != "store" and not (k == "lead" and v is None)}


def source_input(target: SegmentStore, source: SegmentStore, src: SourceConfig, encoding_params: Mapping[str, Any]
                 ) -> tuple[int | str | None, str, str | None]:
    """``(the encoder's lead for the source model or None, what the source model reads, why it cannot run or
    None)``: ``[source].lead`` names one of the source store's leads (its index: imaged as the target's lead is) or
    ``"grid"`` (every lead a tile); without it, the ``encoding_params`` of ``[train]`` / ``[source.train]`` decide,
    and a source store with another number of leads than the target's is refused (which lead would the model
    image? lead 0 of a 12-lead store is lead I, not the MLII-like lead II)."""
    names = [str(n) for n in source.lead_names]
    tnames = [str(n) for n in target.lead_names]
    own = dict(src.train.get("encoding_params") or {})
    where = f"the source store {source.path} has {len(names)} lead(s) ({', '.join(names)})"
    if src.lead is None:
        lead = own.get("lead", encoding_params.get("lead"))
        if lead is None and len(names) != len(tnames):
            return None, "", (f"{where}, the target {len(tnames)} ({', '.join(tnames)}): say which the source model "
                              f"images, [source] lead = \"II\" (one lead, imaged like the target's) or "
                              f"lead = \"{SOURCE_LEAD_GRID}\" (every lead a tile)")
        shown = names[int(lead)] if isinstance(lead, int) and -len(names) <= int(lead) < len(names) else lead
        return None, (f"lead {shown if lead is not None else names[0]} of {len(names)} "
                      f"({source.fs:g} Hz), as the encoding parameters say"), None
    if src.lead.lower() == SOURCE_LEAD_GRID:
        return SOURCE_LEAD_GRID, f"all {len(names)} leads as tiles of one image (lead = \"grid\", {source.fs:g} Hz)", None
    lower = [n.lower() for n in names]
    if src.lead.lower() not in lower:
        return None, "", f"{where}, not {src.lead!r}: [source] lead names one of them or \"{SOURCE_LEAD_GRID}\""
    i = lower.index(src.lead.lower())
    tlead = encoding_params.get("lead", 0)
    tname = tnames[tlead] if isinstance(tlead, int) and -len(tnames) <= tlead < len(tnames) else str(tlead)
    return i, (f"lead {names[i]} of {len(names)} ({source.fs:g} Hz), imaged as the target's lead {tname} "
               f"({target.fs:g} Hz)"), None


def source_overlap(target: SegmentStore, source: SegmentStore) -> str | None:
    """Why the source store shares patients with the target (same store, or same database and version), or None.

    Patient ids are comparable within one database, so a source store of the same database and version may
    hold the target's validation and test patients (e.g. mitdb beats as the source of a mitdb beat task).
    """
    if source.manifest_hash == target.manifest_hash:
        return f"is the target store itself (manifest {target.manifest_hash[:12]})"
    # a combined store (ecgtransfer.combine) holds several databases: any one shared with the target counts
    shared = [dv for dv in target.database_versions if dv in set(source.database_versions)]
    if shared:
        return f"is of the target's database ({', '.join(f'{d} {v}' for d, v in shared)})"
    return None


def exclude_patients(store: SegmentStore, tc: Any, patients: Sequence[str], *, patients_database: str | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The source split of ``tc`` drawn among the patients of ``store`` that are not in ``patients``.

    The segments of ``patients`` (the target's validation and test patients) are removed from the source store
    first; the remaining patients are then split by the source's own method and seed (so the source model
    neither trains on them nor picks its best epoch on them).

    ``patients_database``: the database of ``patients`` given bare (the target's); then patients are compared
    qualified by database (:func:`ecgtransfer.signals.ids.qualify`), so a combined source store (``"mitdb:100"``) drops
    the target's ``"100"``. ``None``: compared as given.

    Returns:
        ``({"train", "val", "test": int64 indices into store}, {"dropped_patients", "dropped_segments",
        "kept_segments"})``.
    """
    from types import SimpleNamespace

    from ecgtransfer.errors import TrainingError
    from ecgtransfer.signals.ids import qualify, split_qualified
    from ecgtransfer.training.data import make_split

    pats = np.asarray(store.patient_ids).astype(str)
    if patients_database is None:
        bad = np.isin(pats, sorted({str(p) for p in patients}))
    else:
        wanted = {str(p) if split_qualified(str(p))[0] is not None else qualify(patients_database, str(p))
                  for p in patients}
        bad = np.isin(store.qualified_patient_ids, sorted(wanted))
    keep = np.flatnonzero(~bad).astype(np.int64)
    if keep.size == 0:
        raise TrainingError(f"the source store {store.path} holds only patients of the target's validation/test "
                            "part; use a source store of other patients or of another database")
    view = SimpleNamespace(labels=np.asarray(store.labels)[keep], patient_ids=pats[keep],
                           record_ids=np.asarray(store.record_ids).astype(str)[keep], num_classes=store.num_classes,
                           patients_known=store.patients_known, database=store.database,
                           databases=store.databases, segment_databases=store.segment_databases[keep])
    parts = {p: keep[idx] for p, idx in make_split(view, tc).items()}  # type: ignore[arg-type]
    info = {"dropped_patients": sorted(set(pats[bad].tolist())), "dropped_segments": int(bad.sum()),
            "kept_segments": {p: int(len(parts[p])) for p in ("train", "val", "test")}}
    return parts, info


def pooled_store(target: SegmentStore, source: SegmentStore | None, out: Path) -> SegmentStore:
    """The target and source stores combined into one (:func:`ecgtransfer.combine.combine_stores`, made once in
    ``OUT/pooled/store`` and reused): the target's segments first, in their order (index ``i`` of the target is
    index ``i`` here), then the source's. Raises :class:`StoreError` when they cannot be pooled (a source of the
    target's own database, segments of another kind)."""
    from ecgtransfer.combine import combine_stores

    if source is None:
        raise StoreError("no source store")
    pooled = combine_stores([target, source], out)
    n = len(target)
    if len(pooled) != n + len(source) or not np.array_equal(np.asarray(pooled.labels[:n]), np.asarray(target.labels)):
        raise StoreError(f"{out}: the pooled store does not start with the target's segments in their order")
    return pooled


def _kept_checkpoint(run_dir: Path, paths: Mapping[str, Any]) -> Path:
    """The source run's checkpoint to keep (``best.pt``, else ``last.pt``); a ``last.pt`` besides it is deleted."""
    ckpt = Path(paths.get("best", run_dir / "best.pt"))
    if not ckpt.is_file():
        ckpt = Path(paths.get("last", run_dir / "last.pt"))
    last = run_dir / "last.pt"
    if last.exists() and last != ckpt:
        last.unlink()
    return ckpt


class SourceModels:
    """The source side of the bench (:class:`ecgtransfer.bench.runner._Bench` holds the state it reads: ``cfg``,
    ``out``, ``resume``, ``progress``, the target ``store`` and ``split_info``, ``device``, ``fingerprint``,
    ``skipped``, ``source_models``): :meth:`open_source` sets the ``source_*`` attributes and ``pooled_store``,
    :meth:`source_checkpoint` trains or reuses a source model."""

    # -- prerequisites ----------------------------------------------------------------------------
    def open_source(self) -> None:
        """Open the source store of ``ecg`` and pooled arms, and the pooled store; arms they cannot serve are marked
        skipped with the reason."""
        self.source_hash = None
        self.source_overlap: str | None = None
        self.source_lead: int | str | None = None  # the source model's encoder lead ([source].lead)
        self.source_input = ""  # what the source model reads, in words
        self.pooled_store: SegmentStore | None = None
        if any(a.uses_source for a in self.cfg.arms):
            try:
                self.source_store = SegmentStore(self.cfg.source_store_path)
                self.source_hash = self.source_store.manifest_hash
                self.source_overlap = source_overlap(self.store, self.source_store)
                assert self.cfg.source is not None
                self.source_lead, self.source_input, problem = source_input(
                    self.store, self.source_store, self.cfg.source, self.cfg.base.encoding_params)
                if problem:
                    for a in self.cfg.arms:
                        if a.init == "ecg":
                            self.skipped[a.name] = problem
                if self.source_overlap:
                    log.warning("the source store %s %s: its patients in the target's validation or test part "
                                "(%d patients) are dropped from the source training", self.source_store.path,
                                self.source_overlap, len(self.split_info["heldout_patients"]))
            except StoreError as exc:
                self.source_store = None
                for a in self.cfg.arms:
                    if a.uses_source:
                        self.skipped[a.name] = f"source store unavailable: {exc}"
        else:
            self.source_store = None
        pooled = [a.name for a in self.cfg.arms if a.train_data == "pooled" and a.name not in self.skipped]
        if pooled:
            try:
                self.pooled_store = pooled_store(self.store, self.source_store, self.out / "pooled" / "store")
            except StoreError as exc:
                for name in pooled:
                    self.skipped[name] = f"cannot pool the target and source stores: {exc}"

    # -- source models ----------------------------------------------------------------------------
    def source_checkpoint(self, encoding: str) -> Path:
        """Train (or reuse) the source model of ``ecg`` arms for ``encoding``; its best checkpoint path."""
        from ecgtransfer.training import fine_tune

        if encoding in self.source_models and self.source_models[encoding].get("checkpoint"):
            return self.out / self.source_models[encoding]["checkpoint"]
        src = self.cfg.source
        assert src is not None and self.source_store is not None
        sdir = self.out / "source" / encoding
        marker = sdir / "source.json"
        excluded = list(self.split_info["heldout_patients"]) if self.source_overlap else []
        src_settings = source_settings(src)  # the store's manifest hash is checked
        fp = hashlib.sha256(json.dumps({"budget": self.fingerprint, "source": src_settings, "enc": encoding,
                                        "store": self.source_hash, "macro_f1": MACRO_F1_DEFINITION,
                                        "excluded_patients": excluded}, sort_keys=True, default=str).encode()
                            ).hexdigest()[:16]
        if self.resume and marker.is_file() and (reused := self._reused_source(encoding, marker, fp)) is not None:
            return reused
        run_dir = sdir / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        tc = self._source_train_config(encoding)
        split_indices, exclusion = self._source_exclusion(tc, encoding, excluded)
        t0 = time.perf_counter()
        log.info("training the source model on %s (%s)", self.source_store.path, encoding)
        res = fine_tune(self.source_store, tc, out=run_dir, split_indices=split_indices)
        wall = time.perf_counter() - t0
        ckpt = _kept_checkpoint(run_dir, res.paths)
        rel = os.path.relpath(ckpt.resolve(), self.out.resolve())
        info = {"fingerprint": fp, "checkpoint": rel, "store": str(self.source_store.path),
                "store_manifest_hash": self.source_hash, "database": self.source_store.database,
                "task": self.source_store.task, "class_names": self.source_store.class_names,
                "multilabel": bool(self.source_store.multilabel), "input": self.source_input,
                "best_epoch": res.best_epoch, "val": kept_metrics(res.best_metrics),
                "test": kept_metrics(res.test_metrics), "wall_s": wall, "steps": res.steps,
                "train_config": res.config.to_dict(), "history": history_table(res.history),
                "exclusion": exclusion, "credibility": self.source_credibility(ckpt)}
        if not info["credibility"].get("learned"):
            log.warning("source model (%s): %s; its arms get no verdict", encoding, info["credibility"]["text"])
        atomic_write_json(marker, info)
        self.source_models[encoding] = info
        return ckpt

    def _reused_source(self, encoding: str, marker: Path, fp: str) -> Path | None:
        """The checkpoint of the source model ``marker`` (``source.json``) records, when it was trained under the
        fingerprint ``fp`` and is still there (a source model of an older version is checked now); else None."""
        try:
            info = read_json_object(marker, "source model record", error=BenchError)
        except BenchError as exc:
            log.warning("%s; the source model is trained again", exc)
            info = {}
        if not isinstance(info.get("checkpoint"), (str, type(None))):
            info = {}
        # the checkpoint is stored relative to OUT (the bench directory may move)
        if info.get("fingerprint") == fp and info.get("checkpoint") and (self.out / info["checkpoint"]).is_file():
            if not info.get("credibility"):  # a source model of an older version: check it now
                info["credibility"] = self.source_credibility(self.out / info["checkpoint"])
                atomic_write_json(marker, info)
            self.source_models[encoding] = info
            log.info("reusing source model %s", self.out / info["checkpoint"])
            return self.out / info["checkpoint"]
        return None

    def _source_train_config(self, encoding: str) -> TrainConfig:
        """The source model's TrainConfig for ``encoding``: the budget with ``[source]``'s init, optimiser mode,
        epochs and steps, its own ``[source.train]`` fields, its store's own split and ``[source].lead``."""
        src = self.cfg.source
        assert src is not None
        src_arm = ArmConfig("source", init=src.init, optim=src.optim)
        tc = cell_config(self.cfg, src_arm, encoding=encoding, seed=src.seed, device=self.device, init=src.init,
                         epochs=src.epochs or self.cfg.epochs,
                         max_steps=src.max_steps if src.max_steps else self.cfg.max_steps, progress=self.progress,
                         **dict(src.train))  # the source task's own TrainConfig fields last
        # the source store's own split (the split settings' defaults, its method and seed), not the target's
        src_split = {TASK_SPLIT_KEYS[k]: v for k, v in {**self.cfg.train, **src.train}.items() if k in TASK_SPLIT_KEYS}
        tc = replace(tc, data_split=SplitConfig(**{**src_split, "method": src.split, "seed": src.seed}))
        if self.source_lead is not None:  # [source].lead: which of the source store's leads the model images
            tc = tc.replace(encoding_params={**tc.encoding_params, "lead": self.source_lead})
        return tc

    def _source_exclusion(self, tc: TrainConfig, encoding: str, excluded: Sequence[str]
                          ) -> tuple[dict[str, np.ndarray] | None, dict[str, Any] | None]:
        """``(split indices, exclusion record)`` of the source run: both None unless target patients (``excluded``)
        must be dropped from the source store (:func:`exclude_patients`)."""
        split_indices = None
        exclusion: dict[str, Any] | None = None
        if excluded:
            split_indices, exclusion = exclude_patients(self.source_store, tc, excluded,
                                                        patients_database=self.store.database)
            exclusion["why"] = f"the source store {self.source_overlap}"
            log.warning("source model (%s): dropped the %d segments of %d target val/test patients from the source "
                        "store before splitting it", encoding, exclusion["dropped_segments"],
                        len(exclusion["dropped_patients"]))
        return split_indices, exclusion

    def source_credibility(self, ckpt: Path) -> dict[str, Any]:
        """The source model's validation macro-AUROC with a bootstrap interval over its validation records
        (:func:`ecgtransfer.bench.stats.source_credibility`); ``learned`` False marks "source did not learn"."""
        from ecgtransfer.bench.stats import source_credibility

        run_dir = ckpt.parent
        try:
            val = read_split(run_dir / "split.npz", len(self.source_store), parts=("val",))["val"]
        except EcgTransferError as exc:
            return {"learned": None, "text": f"not checked: the source run's split.npz is unreadable ({exc})"}
        if len(val) == 0:
            return {"learned": None, "text": "not checked: the source split has no validation part"}
        if self.source_store.multilabel:  # per-label AUCs of sigmoid outputs, resampled by patient
            from ecgtransfer.bench.stats import multilabel_source_credibility
            from ecgtransfer.training.multilabel import part_probabilities

            probs = part_probabilities(run_dir, self.source_store, val, self.device)
            return multilabel_source_credibility(np.asarray(self.source_store.targets)[val], probs,
                                                 self.source_store.patient_ids[val],
                                                 replicates=min(1000, self.cfg.bootstrap_replicates),
                                                 seed=self.cfg.bootstrap_seed)
        y, probs, idx, _ = predict_part(run_dir, self.source_store, val, self.device)
        return source_credibility(y, probs, self.source_store.record_ids[idx],
                                  replicates=min(1000, self.cfg.bootstrap_replicates), seed=self.cfg.bootstrap_seed)
