"""From per-cell records to the tables of the report: summaries over seeds and paired differences.

Every summary is keyed ``arm -> encoding -> fraction label``. The baseline of the paired differences is
the first arm initialised from scratch (normally the arm named ``scratch``); differences are taken within
the same encoding and fraction, seed by seed.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ecgtransfer.bench.config import BenchConfig
from ecgtransfer.bench.grid import Cell, fraction_label
from ecgtransfer.bench.stats import mean_ci, paired_diff, spread, summarise_time_to_target, time_to_target


def baseline_arm(config: BenchConfig) -> str | None:
    """Name of the arm the others are compared with: ``scratch`` if present, else the first scratch-init arm."""
    names = [a.name for a in config.arms]
    if "scratch" in names:
        return "scratch"
    for a in config.arms:
        if a.init == "scratch" and a.optim != "linear-probe":
            return a.name
    return None


def _metric(record: Mapping[str, Any], split: str, key: str) -> float | None:
    m = record.get(split) or {}
    v = m.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def summarise(config: BenchConfig, records: Sequence[Mapping[str, Any]], *, class_names: Sequence[str],
              eval_split: str = "test") -> dict[str, Any]:
    """Summaries over seeds of every (arm, encoding, fraction) with done cells.

    Returns ``{arm: {encoding: {fraction_label: {...}}}}`` where the innermost dict holds ``fraction``,
    ``seeds``, ``macro_f1``/``accuracy``/``macro_auroc`` (Summary dicts), ``diff_vs_baseline`` (Summary dict
    or None), ``per_class`` ({class: {"se": spread, "ppv": spread}}), ``confusion`` (summed over seeds),
    ``time_to_target``, ``images_per_s``, ``peak_memory_bytes`` (max), ``wall_s``.
    """
    done = [r for r in records if r.get("status") == "done"]
    by: dict[tuple[str, str, float], dict[int, Mapping[str, Any]]] = {}
    for r in done:
        c = Cell.from_dict(r["cell"])
        by.setdefault((c.arm, c.encoding, c.fraction), {})[c.seed] = r
    base = baseline_arm(config)
    out: dict[str, Any] = {}
    for (arm, enc, frac), seeds in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        rows = [seeds[s] for s in sorted(seeds)]
        f1_by_seed = {s: _metric(seeds[s], eval_split, "macro_f1") for s in seeds}
        entry: dict[str, Any] = {
            "fraction": frac,
            "seeds": sorted(seeds),
            "macro_f1": mean_ci(f1_by_seed.values()).to_dict(),
            "accuracy": mean_ci(_metric(r, eval_split, "accuracy") for r in rows).to_dict(),
            "macro_auroc": mean_ci(_metric(r, eval_split, "macro_auroc") for r in rows).to_dict(),
            "val_macro_f1": mean_ci(_metric(r, "val", "macro_f1") for r in rows).to_dict(),
            "macro_f1_by_seed": {str(s): v for s, v in sorted(f1_by_seed.items())},
            "n_train": mean_ci((r.get("data") or {}).get("n_train") for r in rows).to_dict(),
        }
        per_class: dict[str, Any] = {}
        for name in class_names:
            vals = {k: [] for k in ("se", "ppv", "f1")}
            support = []
            for r in rows:
                pc = ((r.get(eval_split) or {}).get("per_class") or {}).get(name)
                if pc is None:
                    continue
                support.append(pc.get("support", 0))
                for k in vals:
                    if pc.get(k) is not None:
                        vals[k].append(float(pc[k]))
            per_class[name] = {k: spread(v) for k, v in vals.items()}
            per_class[name]["support"] = int(np.mean(support)) if support else 0
        entry["per_class"] = per_class
        cms = [np.asarray((r.get(eval_split) or {}).get("confusion_matrix")) for r in rows
               if (r.get(eval_split) or {}).get("confusion_matrix") is not None]
        entry["confusion"] = np.sum(cms, axis=0).astype(int).tolist() if cms else None
        # from each cell's history, so the target can change without retraining
        entry["time_to_target"] = summarise_time_to_target(
            [time_to_target(r.get("history") or [], config.target_f1) for r in rows])
        entry["time_to_target"]["target"] = config.target_f1
        # timings vary with machine load, not as a sample of a population: mean and min..max, no t interval
        entry["images_per_s"] = spread((r.get("throughput") or {}).get("train_images_per_s") for r in rows)
        entry["eval_images_per_s"] = spread((r.get("throughput") or {}).get("eval_images_per_s") for r in rows)
        mems = [(r.get("throughput") or {}).get("peak_memory_bytes") for r in rows]
        mems = [m for m in mems if m is not None]
        entry["peak_memory_bytes"] = max(mems) if mems else None
        entry["wall_s"] = spread(r.get("wall_s") for r in rows)
        entry["diff_vs_baseline"] = None
        if base is not None and arm != base and (base, enc, frac) in by:
            bseeds = by[(base, enc, frac)]
            entry["diff_vs_baseline"] = paired_diff(
                f1_by_seed, {s: _metric(bseeds[s], eval_split, "macro_f1") for s in bseeds}).to_dict()
            entry["baseline"] = base
        out.setdefault(arm, {}).setdefault(enc, {})[fraction_label(frac)] = entry
    return out


def learning_curves(records: Iterable[Mapping[str, Any]], key: str = "val_macro_f1",
                    ) -> dict[tuple[str, str, float], dict[str, list]]:
    """Per (arm, encoding, fraction): epochs and the mean/min/max of ``key`` over seeds per epoch."""
    acc: dict[tuple[str, str, float], dict[int, list[float]]] = {}
    for r in records:
        if r.get("status") != "done":
            continue
        c = Cell.from_dict(r["cell"])
        for row in r.get("history") or []:
            v = row.get(key)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            acc.setdefault((c.arm, c.encoding, c.fraction), {}).setdefault(int(row["epoch"]), []).append(float(v))
    out = {}
    for k, per_epoch in acc.items():
        epochs = sorted(per_epoch)
        out[k] = {"epoch": epochs,
                  "mean": [float(np.mean(per_epoch[e])) for e in epochs],
                  "min": [float(np.min(per_epoch[e])) for e in epochs],
                  "max": [float(np.max(per_epoch[e])) for e in epochs]}
    return out


def verdict(diff: Mapping[str, Any] | None) -> str:
    """``helped`` / ``hurt`` / ``no clear difference`` / ``single seed, no CI`` from a paired-difference dict."""
    if not diff or diff.get("mean") is None:
        return "not compared"
    if diff.get("lo") is None:
        return "single seed, no CI"
    if diff["lo"] > 0:
        return "helped"
    if diff["hi"] < 0:
        return "hurt"
    return "no clear difference"
