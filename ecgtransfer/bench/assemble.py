"""Building ``results.json`` from the bench's cells: the arms' rows, summaries, contrasts, the invocations.

:class:`ResultsAssembly` fills :class:`ecgtransfer.bench.results.BenchResults` (the schema) from what the bench
ran; the summaries and contrasts are :mod:`ecgtransfer.bench.aggregate`'s.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from ecgtransfer import __version__
from ecgtransfer._atomic import atomic_write_json
from ecgtransfer._formats import RESULTS_FORMAT, RESULTS_FORMAT_VERSION
from ecgtransfer.bench.aggregate import baseline_arm, contrasts, primary_of, summarise
from ecgtransfer.bench.cell_plan import MACRO_F1_DEFINITION, arm_settings
from ecgtransfer.bench.hardware import hardware_line
from ecgtransfer.bench.results import ArmRow, BenchResults, CellResult, invocations_of
from ecgtransfer.bench.run_records import utc_now
from ecgtransfer.bench.sweeps import SETTING_KEYS
from ecgtransfer.errors import BenchError
from ecgtransfer.training.run_files import read_json_object

log = logging.getLogger("ecgtransfer.bench.runner")  # the bench's log lines keep the name they had before the split


def earlier_invocations(out: Path) -> list[dict[str, Any]]:
    """The invocations recorded in an existing ``out/results.json`` (a resumed bench keeps its history; those of
    an older version are upgraded by :meth:`BenchResults.from_dict`)."""
    if not os.path.lexists(out / "results.json"):
        return []
    try:
        return invocations_of(read_json_object(out / "results.json", "bench results", error=BenchError))
    except BenchError as exc:
        log.warning("%s; its earlier invocations are not carried over", exc)
        return []


class ResultsAssembly:
    """The bench's results (:class:`ecgtransfer.bench.runner._Bench` holds the state they are built from: ``cfg``,
    ``store``, ``grid``, ``records``, the source side, ``skipped``, ``failed``, the sweeps' choices, the run's
    bookkeeping)."""

    # -- outputs ----------------------------------------------------------------------------------
    def results(self) -> BenchResults:
        cfg, store = self.cfg, self.store
        records = [self.records[c.key] for c in self.grid if c.key in self.records]
        cells = [CellResult.of(r) for r in records]
        done = sum(1 for r in records if r["status"] == "done")
        skipped_cells = sum(1 for r in records if r["status"] == "skipped")
        arms = self.arm_rows(records)
        return BenchResults(
            format=RESULTS_FORMAT, format_version=RESULTS_FORMAT_VERSION,
            name=cfg.name, created_at=utc_now(), bench_run_id=self.run_id,
            macro_f1_definition=MACRO_F1_DEFINITION,
            interrupted=self.interrupted,
            command=self.command, package_version=__version__,
            complete=done + skipped_cells == len(self.grid),
            progress={"total": len(self.grid), "done": done, "skipped": skipped_cells, "failed": len(self.failed)},
            config=cfg.to_dict(), config_text=self.config_text, fingerprint=self.fingerprint,
            hardware=self.hardware, hardware_line=hardware_line(self.hardware),
            store={"path": str(store.path), "manifest_hash": store.manifest_hash, "manifest": store.manifest,
                   "class_names": self.run_classes(), "store_class_names": store.class_names,
                   "n_segments": len(store)},
            source_store=None if self.source_store is None else {
                "path": str(self.source_store.path), "manifest_hash": self.source_store.manifest_hash,
                "manifest": self.source_store.manifest, "class_names": self.source_store.class_names,
                "n_segments": len(self.source_store)},
            source_overlap=getattr(self, "source_overlap", None),
            source_models={enc: {k: v for k, v in m.items() if k != "train_config"}
                           for enc, m in self.source_models.items()},
            split={k: v for k, v in self.split_info.items()},
            eval_split=self.eval_split,
            baseline=baseline_arm(cfg),
            arms=arms,
            skipped=dict(self.skipped),
            failed=dict(self.failed),
            run={"computed": list(self.computed), "reused": list(self.reused)},
            invocations=[i for i in self.previous_invocations if i.get("bench_run_id") != self.run_id] + [
                {"bench_run_id": self.run_id, "started_at": self.started_at, "finished_at": utc_now(),
                 "command": self.command, "computed": list(self.computed), "reused": list(self.reused),
                 "recomputed": dict(self.recomputed), "failed": sorted(self.failed),
                 "interrupted": self.interrupted, "wall_s": time.perf_counter() - self.t0}],
            cells=cells,
            summary=summarise(cfg, cells, class_names=self.run_classes(), eval_split=self.eval_split),
            majority_val=self.majority_val, target_check=self.target_check,
            sweeps=self.sweeps, lr_scale=dict(self.lr_scale), settings_swept=dict(self.choice),
            capped_improving=[c.key for c in cells if c.record.get("capped_improving")],
            primary=primary_of(cfg),
            contrasts=contrasts(cfg, cells, eval_split=self.eval_split, no_verdict=self.no_verdict()),
        )

    def arm_rows(self, records: list[dict[str, Any]]) -> list[ArmRow]:
        """One row per configured arm: what it trained with (its sweep's choice applied) and whether it ran."""
        cfg = self.cfg
        arms: list[ArmRow] = []
        for a in cfg.arms:
            status, reason = "ran", None
            if a.name in self.skipped:
                # an arm that became unavailable mid-run (or on a resume) keeps its finished cells: "partial"
                mine = [r for r in records if r["cell"]["arm"] == a.name]
                n_done = sum(1 for r in mine if r["status"] == "done")
                status, reason = ("partial", f"{n_done} of {len(mine)} cells finished and are reported; the "
                                             f"others were skipped: {self.skipped[a.name]}") if n_done else \
                    ("skipped", self.skipped[a.name])
            arms.append({"name": a.name, "init": a.init, "optim": a.optim, "description": a.description,
                         "encodings_used": list(cfg.arm_encodings(a)),
                         **arm_settings(cfg, a, self.lr_scale.get(a.name, 1.0), self.choice.get(a.name)),
                         "lr_scale": self.lr_scale.get(a.name, 1.0), "lr_sweep": list(cfg.arm_sweep(a)),
                         **{key: list(cfg.arm_values(a, key)) for key in SETTING_KEYS},
                         "settings_swept": dict(self.choice.get(a.name, {})),
                         "model": a.model or "resnet50", "tier_preset": a.tier_preset,
                         "weight_decay": a.weight_decay, "grad_clip": a.grad_clip,
                         "frozen": ["features_1", "features_2"] if a.optim == "linear-probe" else [],
                         "status": status, "reason": reason})
        return arms

    def no_verdict(self) -> dict[str, str]:
        """``{arm: why}`` of arms whose contrasts get no verdict (an ecg arm whose source model did not learn)."""
        out = {}
        for a in self.cfg.arms:
            if a.init != "ecg":
                continue
            bad = [enc for enc, m in self.source_models.items() if (m.get("credibility") or {}).get("learned") is False]
            if bad:
                out[a.name] = f"source did not learn ({', '.join(sorted(bad))})"
        return out

    def run_classes(self) -> list[str]:
        """The classes the cells train and score: the store's, less the training config's ``exclude_classes``."""
        from ecgtransfer.training.data import class_subset

        return class_subset(self.store.class_names, self.cfg.base.exclude_classes)[0]

    def write_results(self) -> BenchResults:
        res = self.results()
        atomic_write_json(self.out / "results.json", res.to_dict())
        return res

