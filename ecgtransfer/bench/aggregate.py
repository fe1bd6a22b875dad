"""From per-cell records to the tables of the report: summaries over seeds and paired differences.

Every summary is keyed ``arm -> encoding -> fraction label``. The baseline of the paired differences is
the first arm initialised from scratch (normally the arm named ``scratch``); differences are taken within
the same encoding and fraction, seed by seed.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ecgtransfer.bench.checks import same_fraction
from ecgtransfer.bench.config import BenchConfig
from ecgtransfer.bench.grid import fraction_label
from ecgtransfer.bench.results import BenchResults, CellResult, Contrast, Primary, Summary
from ecgtransfer.bench.stats import (
    BOOTSTRAP_REPLICATES,
    Resamples,
    bootstrap_replicates,
    bootstrap_summary,
    draw_resamples,
    holm,
    macro_f1_of_confusion,
    mean_ci,
    paired_diff,
    spread,
    steps_to_target,
    summarise_steps_to_target,
    summarise_time_to_target,
    time_to_target,
)

#: Significance level of the verdicts (the primary contrast's interval; Holm-adjusted p of the secondary ones).
ALPHA = 0.05


def baseline_arm(config: BenchConfig) -> str | None:
    """Name of the arm the others are compared with: ``scratch`` if present, else the first scratch-init arm."""
    names = [a.name for a in config.arms]
    if "scratch" in names:
        return "scratch"
    for a in config.arms:
        if a.init == "scratch" and a.optim != "linear-probe":
            return a.name
    return None


def _metric(record: CellResult | Mapping[str, Any], split: str, key: str) -> float | None:
    m = record.metrics(split) if isinstance(record, CellResult) else (record.get(split) or {})
    v = m.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def _by_cell(records: Iterable[CellResult | Mapping[str, Any]]
             ) -> dict[tuple[str, str, float], dict[int, CellResult]]:
    """The done cells of ``records`` by ``(arm, encoding, fraction)``, then seed."""
    by: dict[tuple[str, str, float], dict[int, CellResult]] = {}
    for r in map(CellResult.of, records):
        if r.done:
            by.setdefault((r.cell.arm, r.cell.encoding, r.cell.fraction), {})[r.cell.seed] = r
    return by


def summarise(config: BenchConfig, records: Sequence[CellResult | Mapping[str, Any]], *, class_names: Sequence[str],
              eval_split: str = "test") -> Summary:
    """Summaries over seeds of every (arm, encoding, fraction) with done cells.

    Returns ``{arm: {encoding: {fraction_label: {...}}}}`` where the innermost dict holds ``fraction``,
    ``seeds``, ``macro_f1``/``accuracy``/``macro_auroc`` (Summary dicts), ``diff_vs_baseline`` (Summary dict
    or None), ``per_class`` ({class: {"se": spread, "ppv": spread}}), ``confusion`` (summed over seeds),
    ``time_to_target``, ``images_per_s``, ``peak_memory_bytes`` (max), ``wall_s``.
    """
    by = _by_cell(records)
    base = baseline_arm(config)
    out: dict[str, Any] = {}
    for (arm, enc, frac), cells in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        seeds = {s: c.record for s, c in cells.items()}  # the statistics read the records as written
        rows = [cells[s] for s in sorted(cells)]
        f1_by_seed = {s: _metric(seeds[s], eval_split, "macro_f1") for s in seeds}
        entry = _metric_summaries(config, frac, seeds, rows, f1_by_seed, class_names=class_names,
                                  eval_split=eval_split)
        entry["per_class"] = _per_class_spreads(rows, class_names, eval_split)
        cms = [np.asarray(r.metrics(eval_split)["confusion_matrix"]) for r in rows
               if r.metrics(eval_split).get("confusion_matrix") is not None]
        entry["confusion"] = np.sum(cms, axis=0).astype(int).tolist() if cms else None
        _add_costs(entry, config, rows)
        entry["diff_vs_baseline"] = None
        if base is not None and arm != base and (base, enc, frac) in by:
            bseeds = {s: c.record for s, c in by[(base, enc, frac)].items()}
            entry["diff_vs_baseline"] = bootstrap_contrast(config, seeds, bseeds, eval_split) or paired_diff(
                f1_by_seed, {s: _metric(bseeds[s], eval_split, "macro_f1") for s in bseeds}).to_dict()
            entry["baseline"] = base
        out.setdefault(arm, {}).setdefault(enc, {})[fraction_label(frac)] = entry
    return out


def _metric_summaries(config: BenchConfig, frac: float, seeds: Mapping[int, Any], rows: Sequence[CellResult],
                      f1_by_seed: Mapping[int, float | None], *, class_names: Sequence[str],
                      eval_split: str) -> dict[str, Any]:
    """The start of a :func:`summarise` entry: fraction, seeds and the metrics over seeds (macro F1 by the
    bootstrap over test records and seeds when the cells allow it)."""
    entry: dict[str, Any] = {
        "fraction": frac,
        "seeds": sorted(seeds),
        "macro_f1": mean_ci(f1_by_seed.values()).to_dict(),
        "accuracy": mean_ci(_metric(r, eval_split, "accuracy") for r in rows).to_dict(),
        "macro_auroc": mean_ci(_metric(r, eval_split, "macro_auroc") for r in rows).to_dict(),
        "val_macro_f1": mean_ci(_metric(r, "val", "macro_f1") for r in rows).to_dict(),
        "macro_f1_by_seed": {str(s): v for s, v in sorted(f1_by_seed.items())},
        "n_train": mean_ci(r.data.get("n_train") for r in rows).to_dict(),
    }
    # patients as the unit: the bootstrap over test records and seeds, when the cells hold per-record
    # confusion matrices (the seed-only t interval stays as macro_f1_seeds)
    boot = bootstrap_cell_summary(config, seeds, entry["macro_f1"]["mean"])
    if boot is not None:
        entry["macro_f1_seeds"] = entry["macro_f1"]
        entry["macro_f1"] = boot
        entry["per_class_bootstrap"] = per_class_bootstrap(config, seeds, class_names)
    return entry


def _per_class_spreads(rows: Sequence[CellResult], class_names: Sequence[str], eval_split: str) -> dict[str, Any]:
    """``{class: {"se", "ppv", "f1": spread over seeds, "support": mean}}``."""
    per_class: dict[str, Any] = {}
    for name in class_names:
        vals = {k: [] for k in ("se", "ppv", "f1")}
        support = []
        for r in rows:
            pc = (r.metrics(eval_split).get("per_class") or {}).get(name)
            if pc is None:
                continue
            support.append(pc.get("support", 0))
            for k in vals:
                if pc.get(k) is not None:
                    vals[k].append(float(pc[k]))
        per_class[name] = {k: spread(v) for k, v in vals.items()}
        per_class[name]["support"] = int(np.mean(support)) if support else 0
    return per_class


def _add_costs(entry: dict[str, Any], config: BenchConfig, rows: Sequence[CellResult]) -> None:
    """Add to ``entry`` what the cells cost: time and steps to the target F1, throughput, memory, wall time."""
    # from each cell's history, so the target can change without retraining
    entry["time_to_target"] = summarise_time_to_target(
        [time_to_target(r.history, config.target_f1) for r in rows])
    entry["time_to_target"]["target"] = config.target_f1
    entry["steps_to_target"] = summarise_steps_to_target(
        [steps_to_target(r.step_curve or r.history, config.target_f1) for r in rows])
    entry["steps_to_target"]["target"] = config.target_f1
    # timings vary with machine load, not as a sample of a population: mean and min..max, no t interval
    entry["images_per_s"] = spread(r.throughput.get("train_images_per_s") for r in rows)
    entry["eval_images_per_s"] = spread(r.throughput.get("eval_images_per_s") for r in rows)
    entry["data_share"] = spread(r.throughput.get("data_share") for r in rows)
    mems = [r.throughput.get("peak_memory_bytes") for r in rows]
    mems = [m for m in mems if m is not None]
    entry["peak_memory_bytes"] = max(mems) if mems else None
    entry["wall_s"] = spread(r.wall_s for r in rows)

def learning_curves(records: Iterable[CellResult | Mapping[str, Any]], key: str = "val_macro_f1",
                    ) -> dict[tuple[str, str, float], dict[str, list]]:
    """Per (arm, encoding, fraction): epochs and the mean/min/max of ``key`` over seeds per epoch."""
    acc: dict[tuple[str, str, float], dict[int, list[float]]] = {}
    steps: dict[tuple[str, str, float], dict[int, list[float]]] = {}
    for r in map(CellResult.of, records):
        if not r.done:
            continue
        c = r.cell
        for row in r.history:
            v = row.get(key)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            acc.setdefault((c.arm, c.encoding, c.fraction), {}).setdefault(int(row["epoch"]), []).append(float(v))
            steps.setdefault((c.arm, c.encoding, c.fraction), {}).setdefault(int(row["epoch"]), []).append(
                float(row.get("step") or 0))
    out = {}
    for k, per_epoch in acc.items():
        epochs = sorted(per_epoch)
        out[k] = {"epoch": epochs, "step": [float(np.mean(steps[k][e])) for e in epochs],
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


# -- patients as the unit ---------------------------------------------------------------------------------------

def record_confusions(rows: Mapping[int, Mapping[str, Any]], seeds: Sequence[int]
                      ) -> tuple[list[str], np.ndarray] | None:
    """``(record ids, [S, R, K, K])`` of the cells ``rows[seed]`` for ``seeds`` (records in sorted order), from
    each cell's ``record_confusion``; None when a cell lacks it (cells of older versions)."""
    per = []
    for s in seeds:
        rc = rows[s].get("record_confusion")
        if not rc or not rc.get("records"):
            return None
        per.append(dict(zip(rc["records"], rc["matrices"])))
    recs = sorted(set().union(*[set(p) for p in per]))
    k = len(np.asarray(next(iter(per[0].values()))))
    cms = np.zeros((len(per), len(recs), k, k))
    for i, p in enumerate(per):
        for j, rid in enumerate(recs):
            if rid in p:
                cms[i, j] = np.asarray(p[rid])
    return recs, cms


def per_class_bootstrap(config: BenchConfig, rows: Mapping[int, Mapping[str, Any]], class_names: Sequence[str]
                        ) -> dict[str, dict[str, Any]] | None:
    """Per class: Se, +P and F1 of the pooled test records with the same bootstrap over records and seeds (the
    point estimate is the mean over seeds of each seed's pooled Se / +P / F1 on the full split)."""
    from ecgtransfer.bench.stats import class_rate_of_confusion

    seeds = sorted(rows)
    got = record_confusions(rows, seeds)
    if got is None:
        return None
    recs, cms = got
    if cms.shape[-1] != len(class_names):
        return None
    rs = _resamples(len(recs), len(seeds), config)
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(class_names):
        out[name] = {}
        for kind in ("se", "ppv", "f1"):
            def metric(c, i=i, kind=kind):
                return class_rate_of_confusion(c, i, kind)
            full = metric(cms.sum(axis=1))
            point = float(np.nanmean(full)) if np.any(~np.isnan(full)) else None
            with np.errstate(all="ignore"):
                reps = bootstrap_replicates(cms, rs, metric)
            out[name][kind] = bootstrap_summary(point, reps, n_seeds=len(seeds), n_records=len(recs))
    return out


def paired_bootstrap(arms: Mapping[str, np.ndarray], resamples: Resamples, metric=macro_f1_of_confusion
                     ) -> dict[str, np.ndarray]:
    """Replicates ``[B]`` of every arm's ``[S, R, K, K]`` confusion matrices under the *same* ``resamples``."""
    return {name: bootstrap_replicates(cms, resamples, metric) for name, cms in arms.items()}


def _resamples(n_records: int, n_seeds: int, config: BenchConfig) -> Resamples:
    return draw_resamples(n_records, n_seeds, getattr(config, "bootstrap_replicates", BOOTSTRAP_REPLICATES),
                          seed=getattr(config, "bootstrap_seed", 0))


def bootstrap_cell_summary(config: BenchConfig, rows: Mapping[int, Mapping[str, Any]], point: float | None
                           ) -> dict[str, Any] | None:
    """The bootstrap interval of one (arm, encoding, fraction) over its seeds and the test records, or None."""
    seeds = sorted(rows)
    got = record_confusions(rows, seeds)
    if got is None:
        return None
    recs, cms = got
    reps = bootstrap_replicates(cms, _resamples(len(recs), len(seeds), config))
    return bootstrap_summary(point, reps, n_seeds=len(seeds), n_records=len(recs))


def bootstrap_contrast(config: BenchConfig, arm: Mapping[int, Mapping[str, Any]],
                       base: Mapping[int, Mapping[str, Any]], eval_split: str) -> dict[str, Any] | None:
    """Paired bootstrap difference ``arm - base`` of macro-F1 over the seeds both have and the test records (the
    same draws for both arms), with its two-sided p; None when a cell lacks per-record confusions."""
    seeds = sorted(s for s in arm if s in base)
    if not seeds:
        return None
    a, b = record_confusions(arm, seeds), record_confusions(base, seeds)
    if a is None or b is None or a[0] != b[0]:
        return None
    rs = _resamples(len(a[0]), len(seeds), config)
    reps = paired_bootstrap({"arm": a[1], "base": b[1]}, rs)
    point = float(np.mean([_metric(arm[s], eval_split, "macro_f1") - _metric(base[s], eval_split, "macro_f1")
                           for s in seeds]))
    return bootstrap_summary(point, reps["arm"] - reps["base"], n_seeds=len(seeds), n_records=len(a[0]),
                             p_value=True)


def _seed_contrast(arm: Mapping[int, Mapping[str, Any]], base: Mapping[int, Mapping[str, Any]],
                   eval_split: str) -> dict[str, Any]:
    """The paired t interval over seeds (no per-record confusions: cells of older versions), with its p."""
    from scipy import stats as _st

    a = {s: _metric(r, eval_split, "macro_f1") for s, r in arm.items()}
    b = {s: _metric(r, eval_split, "macro_f1") for s, r in base.items()}
    d = paired_diff(a, b).to_dict()
    seeds = [s for s in sorted(a) if s in b and a[s] is not None and b[s] is not None]
    p = float("nan")
    if len(seeds) > 1:
        diffs = np.array([a[s] - b[s] for s in seeds])
        p = 1.0 if np.all(diffs == diffs[0]) and diffs[0] == 0 else float(
            _st.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    d.update(p=p, method="paired t over seeds (test records fixed)")
    return d


def contrast_pairs(config: BenchConfig) -> list[tuple[Any, ...]]:
    """The contrasts compared: ``[bench].contrasts`` when given (``(arm, baseline)`` at every fraction, or
    ``(arm, baseline, fraction)`` at that fraction only), else every arm against the baseline arm
    (:func:`baseline_arm`) at every fraction; the primary contrast is always among them (at its fraction only when
    the declared contrasts name fractions)."""
    pairs = [tuple(p) for p in (getattr(config, "contrasts", None) or ())]
    if not pairs:
        base = baseline_arm(config)
        pairs = [(a.name, base) for a in config.arms if base is not None and a.name != base]
    prim = getattr(config, "primary", None)
    if prim is not None:
        at = float(prim.fraction if prim.fraction is not None else max(config.fractions))
        if not any(p[:2] == (prim.arm, prim.baseline) and (len(p) == 2 or same_fraction(p[2], at)) for p in pairs):
            # declared at fractions: the primary at its own fraction only; else (older configs) at every fraction
            pairs.insert(0, (prim.arm, prim.baseline, at) if any(len(p) == 3 for p in pairs) else
                         (prim.arm, prim.baseline))
    return pairs  # type: ignore[return-value]


def primary_of(config: BenchConfig) -> Primary | None:
    """The primary contrast ``{arm, baseline, encoding, fraction, declared}``: ``[bench.primary]``, else (flagged
    as not declared) the first contrast pair at the largest fraction and the first encoding."""
    prim = getattr(config, "primary", None)
    if prim is not None:
        return {"arm": prim.arm, "baseline": prim.baseline, "encoding": prim.encoding or config.encodings[0],
                "fraction": float(prim.fraction if prim.fraction is not None else max(config.fractions)),
                "declared": True}
    pairs = contrast_pairs(config)
    if not pairs:
        return None
    arm = config.arm(pairs[0][0])
    return {"arm": pairs[0][0], "baseline": pairs[0][1], "encoding": config.arm_encodings(arm)[0],
            "fraction": float(max(config.fractions)), "declared": False}


def contrast_verdict(c: Mapping[str, Any]) -> str:
    """The verdict of a contrast: the primary one by its interval, the secondary ones by their Holm-adjusted p."""
    d = c.get("diff") or {}
    if d.get("mean") is None:
        return "not compared"
    if c.get("no_verdict"):
        return f"no verdict ({c['no_verdict']})"
    if c.get("primary"):
        return verdict(d)
    p = c.get("p_holm")
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return verdict(d) if d.get("lo") is None else "no clear difference"
    if p < ALPHA:
        return "helped" if d["mean"] > 0 else "hurt"
    return "no clear difference"


def below_majority(rows: Mapping[Any, Mapping[str, Any]], brows: Mapping[Any, Mapping[str, Any]],
                   eval_split: str) -> str | None:
    """Why a contrast gets no verdict when **both** arms score, on average over their seeds, at or below the
    majority classifier's test macro-F1 (the cells' ``majority`` line): a difference between two models that learned
    nothing useful is no finding, whichever is "better". None otherwise (or without a majority line)."""
    if eval_split != "test":
        return None
    maj = next(((r.get("majority") or {}).get("macro_f1") for r in list(rows.values()) + list(brows.values())
                if (r.get("majority") or {}).get("macro_f1") is not None), None)

    def mean(part: Mapping[Any, Mapping[str, Any]]) -> float | None:
        v = [(r.get(eval_split) or {}).get("macro_f1") for r in part.values()]
        v = [float(x) for x in v if x is not None]
        return sum(v) / len(v) if v else None

    a, b = mean(rows), mean(brows)
    if maj is None or a is None or b is None or a > maj or b > maj:
        return None
    return f"both arms at or below the majority classifier: test macro-F1 {a:.3f} and {b:.3f} vs {float(maj):.3f}"


def contrasts(config: BenchConfig, records: Sequence[CellResult | Mapping[str, Any]], *, eval_split: str = "test",
              no_verdict: Mapping[str, str] | None = None) -> list[Contrast]:
    """Every contrast (arm - baseline of macro-F1, per encoding and fraction), the primary one first.

    Each: ``{arm, baseline, encoding, fraction, primary, diff (bootstrap or seed-t summary with p), p, p_holm,
    verdict}``. The secondary contrasts' p-values are Holm-adjusted together (the primary one is not in that
    family). ``no_verdict`` (``{arm: why}``, e.g. a source model that did not learn) withholds the verdicts of
    contrasts involving that arm.
    """
    no_verdict = dict(no_verdict or {})
    by = {k: {s: c.record for s, c in cells.items()} for k, cells in _by_cell(records).items()}
    prim = primary_of(config)
    out: list[Contrast] = []
    for arm, base, *at in contrast_pairs(config):
        for (a, enc, frac), rows in sorted(by.items(), key=lambda kv: (kv[0][1], -kv[0][2])):
            if a != arm or (base, enc, frac) not in by or (at and not same_fraction(at[0], frac)):
                continue
            brows = by[(base, enc, frac)]
            d = bootstrap_contrast(config, rows, brows, eval_split) or _seed_contrast(rows, brows, eval_split)
            is_primary = bool(prim and prim["arm"] == arm and prim["baseline"] == base and prim["encoding"] == enc
                              and same_fraction(prim["fraction"], frac))
            why = no_verdict.get(arm) or no_verdict.get(base) or below_majority(rows, brows, eval_split)
            out.append({"arm": arm, "baseline": base, "encoding": enc, "fraction": frac,
                        "label": f"{arm} - {base}, {enc}, {fraction_label(frac)}", "primary": is_primary,
                        "diff": d, "p": d.get("p"), "p_holm": None, "no_verdict": why})
    secondary = [c for c in out if not c["primary"]]
    for c, adj in zip(secondary, holm([c["p"] if c["p"] is not None else float("nan") for c in secondary])):
        c["p_holm"] = adj
    for c in out:
        c["verdict"] = contrast_verdict(c)
    out.sort(key=lambda c: not c["primary"])
    return out


def majority_test(results: BenchResults) -> dict[str, Any] | None:
    """The majority classifier's metrics on the eval split (from the first finished cell holding them)."""
    for r in results.cells:
        if r.done and r.majority and r.majority.get("macro_f1") is not None:
            return r.majority
    return None


# -- the reader's first figure: scores against the number of labelled target patients -----------------------------

#: the per-class F1 scores beside macro-F1 in the labelled-patients figure (the ectopic classes the field reports)
CURVE_CLASSES = ("S", "V")


def labelled_patients_curve(results: BenchResults | Mapping[str, Any], encoding: str,
                            classes: Sequence[str] = CURVE_CLASSES) -> dict[str, Any]:
    """What the labelled-patients figure draws and its table lists (one source for both): per arm, one point per
    fraction with the number of labelled target patients (the cells' ``data.n_train_patients``, the mean over
    seeds) and, per metric (``macro_f1``, then ``f1_<class>`` of ``classes`` present in the store), the mean and
    the records x seeds bootstrap interval of the summary (``macro_f1``; ``per_class_bootstrap.<class>.f1``).

    Returns ``{"encoding", "metrics": [...], "arms": {arm: [{"fraction", "label", "patients", <metric>: {"mean",
    "lo", "hi"}}]}, "majority": {<metric>: value}}`` (points sorted by patients, then fraction).
    """
    results = BenchResults.of(results)
    names = results.class_names
    metrics = ["macro_f1"] + [f"f1_{c}" for c in classes if c in names]
    patients: dict[tuple[str, float], list[int]] = {}
    for r in results.cells:
        if not r.done or r.cell.encoding != encoding:
            continue
        n = r.data.get("n_train_patients")
        if n is not None:
            patients.setdefault((r.cell.arm, r.cell.fraction), []).append(int(n))
    arms: dict[str, list[dict[str, Any]]] = {}
    for arm, per_enc in results.summary.items():
        points = []
        for label, e in (per_enc.get(encoding) or {}).items():
            n = patients.get((arm, float(e["fraction"])))
            if not n:
                continue
            point: dict[str, Any] = {"fraction": float(e["fraction"]), "label": label,
                                     "patients": float(np.mean(n))}
            for m in metrics:
                s = e["macro_f1"] if m == "macro_f1" else \
                    ((e.get("per_class_bootstrap") or {}).get(m[3:]) or {}).get("f1") or {}
                point[m] = {k: (None if s.get(k) is None else float(s[k])) for k in ("mean", "lo", "hi")}
            points.append(point)
        if points:
            arms[arm] = sorted(points, key=lambda p: (p["patients"], p["fraction"]))
    majority: dict[str, float | None] = {}
    mj = majority_test(results)
    for m in metrics:
        if mj is None:
            majority[m] = None
        elif m == "macro_f1":
            majority[m] = float(mj["macro_f1"])
        else:
            pc = ((mj.get("per_class") or {}).get(m[3:]) or {})
            majority[m] = float(pc["f1"]) if pc.get("f1") is not None else 0.0
    return {"encoding": encoding, "metrics": metrics, "arms": arms, "majority": majority}
