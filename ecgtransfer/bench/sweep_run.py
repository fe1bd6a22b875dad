"""Running the sweeps: each arm's learning-rate factors, then, at the chosen factor, its weight decay and clipping.

What can be swept and how a sweep point's cell is named is :mod:`ecgtransfer.bench.sweeps`; here the sweep's cells
are trained (or reused), the choice is made on validation ``selection_f1`` only, and the chosen point's cell becomes
the grid cell of that fraction and seed.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from ecgtransfer.bench.arms import ArmConfig
from ecgtransfer.bench.cell_plan import arm_settings, own_value
from ecgtransfer.bench.grid import Cell
from ecgtransfer.bench.run_records import utc_now
from ecgtransfer.bench.sweeps import SWEPT_SETTINGS, SweptSetting, grid_edge, sweep_arm_name
from ecgtransfer.errors import EcgTransferError, WeightsUnavailableError

log = logging.getLogger("ecgtransfer.bench.runner")  # the bench's log lines keep the name they had before the split


def _mean_curve(curve: Mapping[str, Mapping[float, float | None]], points: Sequence[float]) -> dict[float, float]:
    """Per sweep point, the mean validation score over the encodings (only points every encoding scored)."""
    return {p: float(np.mean(v)) for p in points
            if (v := [c[p] for c in curve.values() if c.get(p) is not None]) and len(v) == len(curve)}


class SweepRuns:
    """The sweeps of the bench (:class:`ecgtransfer.bench.runner._Bench` holds the state: ``cfg``, ``resume``,
    ``store``, ``grid``, ``cellstore``, ``skipped``, ``failed``, ``computed``, ``reused``, ``recomputed``); they set
    ``lr_scale``, ``choice`` and ``sweeps``."""

    # -- sweeps: learning rate, then weight decay and clipping -------------------------------------
    def run_sweeps(self) -> None:
        """Each arm's sweep (:mod:`ecgtransfer.bench.sweeps`) at ``sweep_at`` and the first seed, per encoding,
        chosen on validation ``selection_f1`` only: its LR factors, then, at the chosen factor, each setting of
        :data:`~ecgtransfer.bench.sweeps.SWEPT_SETTINGS` it lists values for (``wd_sweep``, ``clip_sweep``).
        The choice (one point per arm: the best mean over its encodings) then trains every cell of the arm; the
        sweep's cell of the chosen point is the grid cell of that fraction and seed."""
        cfg = self.cfg
        seed = int(cfg.seeds[0])
        for arm in cfg.arms:
            factors = sorted(cfg.arm_sweep(arm))
            if not factors or arm.name in self.skipped:
                continue
            encs = cfg.arm_encodings(arm)
            curve_i, cells = self._sweep_points(arm, [(f, {}) for f in factors], seed)
            curve = {enc: {factors[i]: v for i, v in c.items()} for enc, c in curve_i.items()}
            means = _mean_curve(curve, factors)
            chosen = max(means, key=lambda f: (means[f], -f)) if means else 1.0
            self.lr_scale[arm.name] = chosen
            base_lrs = cfg.arm_lrs(arm) if arm.optim == "tiered" else (cfg.arm_lr(arm),) * 3
            edge = grid_edge(factors, chosen) if means else None
            rec: dict[str, Any] = {
                "factors": factors, "seed": seed, "fraction": cfg.sweep_at, "metric": "val selection_f1",
                "curve": {enc: {f"{f:g}": v for f, v in c.items()} for enc, c in curve.items()},
                "mean_curve": {f"{f:g}": v for f, v in means.items()}, "chosen": chosen,
                "chosen_lrs": [x * chosen for x in base_lrs], "base_lrs": list(base_lrs), "cells": cells,
                "edge": edge,
                "note": None if means else "no sweep cell finished: the configured learning rates are used"}
            log.info("arm %s: LR sweep %s -> factor %g (validation selection-F1 %s)", arm.name, factors, chosen,
                     means.get(chosen))
            if edge:
                log.warning("arm %s: the chosen LR factor x%g is the sweep grid's %s value: the optimum may lie "
                            "beyond it (widen lr_sweep)", arm.name, chosen, edge)
            chosen_settings: dict[str, float] = {}
            if means and arm.name not in self.skipped:
                best_curve = {enc: c.get(chosen) for enc, c in curve.items()}  # the current best point, per encoding
                rec["stages"] = []
                for setting in SWEPT_SETTINGS:
                    values = sorted(cfg.arm_values(arm, setting.key))
                    if values and arm.name not in self.skipped:
                        chosen_settings, best_curve = self._setting_stage(arm, chosen, chosen_settings, setting,
                                                                          values, best_curve, seed, rec)
                rec["chosen_settings"] = dict(chosen_settings)
            if chosen_settings:
                self.choice[arm.name] = chosen_settings
            self.sweeps[arm.name] = rec
            # the chosen point's sweep cell is the grid cell of that fraction and seed (same settings)
            for enc in encs:
                src = self.cellstore.load(Cell(sweep_arm_name(arm.name, chosen, chosen_settings), enc, cfg.sweep_at,
                                               seed))
                target = Cell(arm.name, enc, cfg.sweep_at, seed)
                if src is None or src.get("status") != "done" or target not in self.grid:
                    continue
                done, _ = self.cellstore.check(target, fingerprint=self.cell_fingerprint(arm),
                                               store_hash=self.store.manifest_hash)
                if done is None:
                    grid_rec = dict(src, cell=target.to_dict(), key=target.key, from_sweep=src["key"])
                    self.cellstore.save(target, grid_rec)

    def _setting_stage(self, arm: ArmConfig, factor: float, fixed: Mapping[str, float], setting: SweptSetting,
                       values: Sequence[float], current: Mapping[str, float | None], seed: int, rec: dict[str, Any]
                       ) -> tuple[dict[str, float], dict[str, float | None]]:
        """One setting's stage of ``arm``'s sweep at LR ``factor`` and the settings chosen so far (``fixed``):
        the current best point (its per-encoding scores ``current``: the arm's own value of ``setting``) and a cell
        for each other value of ``values``. Appends the stage to ``rec["stages"]``; returns the settings and the
        per-encoding scores of the stage's choice (ties: the own value, then the smaller)."""
        own = float(fixed.get(setting.field, own_value(arm_settings(self.cfg, arm, factor), setting.field)))
        others = [v for v in values if v != own]
        points = [(factor, {**fixed, setting.field: v}) for v in others]
        curve, cells = self._sweep_points(arm, points, seed)
        grid = sorted({*values, own})
        by_value = {enc: {**{others[i]: sc for i, sc in curve.get(enc, {}).items()}, own: sc_own}
                    for enc, sc_own in current.items()}
        means = _mean_curve(by_value, grid)
        best = max(means, key=lambda v: (means[v], v == own, -v)) if means else own
        edge = grid_edge(grid, best, floor=setting.floor) if means and setting.edges else None
        rec["stages"].append({
            "setting": setting.field, "label": setting.label, "key": setting.key, "values": grid, "own": own,
            "at": {"factor": factor, **fixed},
            "curve": {enc: {f"{v:g}": c.get(v) for v in grid} for enc, c in by_value.items()},
            "mean_curve": {f"{v:g}": m for v, m in means.items()}, "chosen": best, "edge": edge})
        rec["cells"].extend(cells)
        log.info("arm %s: %s sweep %s at x%g -> %g (validation selection-F1 %s)", arm.name, setting.label, grid,
                 factor, best, means.get(best))
        if edge:
            log.warning("arm %s: the chosen %s %g is the sweep grid's %s value: the optimum may lie beyond it "
                        "(widen %s)", arm.name, setting.label, best, edge, setting.key)
        if best == own:
            return dict(fixed), dict(current)
        return {**fixed, setting.field: best}, {enc: c.get(best) for enc, c in by_value.items()}

    def _sweep_points(self, arm: ArmConfig, points: Sequence[tuple[float, Mapping[str, float]]], seed: int
                      ) -> tuple[dict[str, dict[int, float | None]], list[dict[str, Any]]]:
        """Train (or reuse) the cells of ``points`` ``(LR factor, swept settings)`` for every encoding of ``arm``:
        ``({encoding: {point index: validation selection_f1 or None}}, the cells' summary rows)``."""
        cfg = self.cfg
        curve: dict[str, dict[int, float | None]] = {}
        cells: list[dict[str, Any]] = []
        for enc in cfg.arm_encodings(arm):
            for i, (f, settings) in enumerate(points):
                cell = Cell(sweep_arm_name(arm.name, f, settings), enc, cfg.sweep_at, seed)
                rec = self._run_or_reuse(cell, arm, f, settings)
                if rec is None:  # the arm became unavailable
                    return curve, cells
                v = (rec.get("val") or {}).get("selection_f1") if rec.get("status") == "done" else None
                curve.setdefault(enc, {})[i] = v
                cells.append({"key": cell.key, "encoding": enc, "factor": f, **dict(settings),
                              "status": rec.get("status"), "lrs": rec.get("lrs_used"), "val_selection_f1": v,
                              "val_macro_f1": (rec.get("val") or {}).get("macro_f1"),
                              "best_epoch": rec.get("best_epoch"), "steps": rec.get("steps"),
                              "capped_improving": rec.get("capped_improving")})
        return curve, cells

    def _run_or_reuse(self, cell: Cell, arm: ArmConfig, factor: float, settings: Mapping[str, float]
                      ) -> dict[str, Any] | None:
        """A sweep cell: reused when finished under the same settings, else trained (None: the arm is skipped)."""
        fp = self.cell_fingerprint(arm, factor, settings)
        if self.resume:
            done, _ = self.cellstore.check(cell, fingerprint=fp, store_hash=self.store.manifest_hash)
            if done is not None and (stale := self.stale_budget(cell, done)) is not None:
                self.recomputed[cell.key] = stale
                done = None
            if done is not None:
                self.reused.append(cell.key)
                return done
        try:
            rec = self.run_cell(cell)
        except WeightsUnavailableError as exc:
            self.skipped[arm.name] = f"weights unavailable: {exc}"
            return None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a failed sweep point is recorded; the others still decide
            kind = "" if isinstance(exc, EcgTransferError) else f"{type(exc).__name__}: "
            log.error("sweep cell %s failed: %s%s", cell.key, kind, exc)
            self.failed[cell.key] = f"{kind}{exc}"
            rec = {"cell": cell.to_dict(), "key": cell.key, "status": "failed", "reason": f"{kind}{exc}",
                   "fingerprint": fp, "store_manifest_hash": self.store.manifest_hash, "finished_at": utc_now()}
        self.cellstore.save(cell, rec)
        if rec.get("status") == "done":
            self.computed.append(cell.key)
        return rec

