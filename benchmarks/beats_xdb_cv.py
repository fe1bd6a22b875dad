"""Leave-patients-out cross-validation within de Chazal's DS1 of the beats-xdb recipes (issue 19): every DS1 patient
is scored once by models that never saw them, with and without svdb in training, with and without the record's
template, in the de Chazal layout (gross Se / +P / F1 per AAMI class) with intervals from a bootstrap over
patients (paired across conditions).

    python benchmarks/beats_xdb_cv.py --data ../shared/data/physionet --work /tmp/xdb-cv \
        --results benchmarks/results/2026-12-02-cpu-beats-xdb [--folds 3] [--models features cnn1d resnet50]

Every run is the shipped command line (``ecgtransfer train STORE --config benchmarks/beats-xdb*.toml --split
records --test-records FOLD``, then ``ecgtransfer evaluate RUN STORE --split test --json``); the stores are made by
``benchmarks/beats-xdb.sh`` (``MODELS=none``). Conditions:

- ``svdb + template``: the combined mitdb + svdb store, the recipe's ``beat_input`` (the full recipe);
- ``svdb``: the combined store, ``--beat-input leads`` (the raw beats);
- ``template``: the mitdb store alone, the recipe's ``beat_input``;
- ``none``: the mitdb store alone, raw beats.

The folds are ``split(mitdb, "kfold", n_folds=K)``'s test parts (grouped by patient, seeded): the same DS1 records
for every condition and model, so contrasts are paired. Validation (the decision rule and the best epoch) comes from
the training patients only; the fold's test records are never read to choose anything. Re-running resumes: runs
with an ``eval_test.json`` are reused.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ecgtransfer.bench.stats import (BOOTSTRAP_REPLICATES, bootstrap_p_value, bootstrap_replicates,  # noqa: E402
                                     class_rate_of_confusion, draw_resamples, holm, macro_f1_of_confusion,
                                     percentile_interval)
from ecgtransfer.signals.beats import AAMI_SCORED  # noqa: E402
from ecgtransfer.signals.split import split  # noqa: E402
from ecgtransfer.signals.ids import split_qualified  # noqa: E402
from ecgtransfer.store import SegmentStore  # noqa: E402

log = logging.getLogger("beats_xdb_cv")

RECIPES = {"resnet50": HERE / "beats-xdb.toml", "cnn1d": HERE / "beats-xdb-cnn1d.toml",
           "features": HERE / "beats-xdb-features.toml"}
#: condition -> (store, raw beats instead of the recipe's template input)
CONDITIONS = {"svdb + template": ("xdb", False), "svdb": ("xdb", True), "template": ("mitdb", False),
              "none": ("mitdb", True)}
#: the paired contrasts, each (label, condition, baseline)
CONTRASTS = (("svdb adds (with template)", "svdb + template", "template"),
             ("template adds (with svdb)", "svdb + template", "svdb"))
CLASSES = AAMI_SCORED  # N, S, V, F


def class_f1_of_confusion(cm: np.ndarray, cls: int) -> np.ndarray:
    """F1 of class ``cls`` in confusion matrices ``[..., K, K]`` (bench.stats' rule; 0 where the class is neither
    true nor called)."""
    return np.nan_to_num(class_rate_of_confusion(cm, cls, "f1"), nan=0.0)


def accuracy_of_confusion(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))


METRICS = {"accuracy": accuracy_of_confusion, "macro_f1": macro_f1_of_confusion,
           "S_f1": lambda cm: class_f1_of_confusion(cm, 1), "V_f1": lambda cm: class_f1_of_confusion(cm, 2)}


def _sh(cmd: list[str], log_file: Path) -> float:
    t0 = time.perf_counter()
    with open(log_file, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def folds_of(mitdb: SegmentStore, k: int) -> list[list[str]]:
    """The DS1 records of each fold (bare mitdb names), grouped by patient."""
    rid = np.asarray(mitdb.record_ids).astype(str)
    return [sorted(set(rid[split(mitdb, "kfold", n_folds=k, fold=f, seed=0).test].tolist())) for f in range(k)]


def run_cell(model: str, condition: str, fold: int, records: list[str], stores: dict[str, Path], work: Path,
             et: list[str]) -> dict[str, Any]:
    store_key, raw = CONDITIONS[condition]
    cell = work / model / condition.replace(" + ", "+") / f"fold{fold}"
    cell.mkdir(parents=True, exist_ok=True)
    ev = cell / "eval_test.json"
    timing = cell / "timing.json"
    if not ev.exists():
        run = cell / "run"
        names = [f"mitdb:{r}" if store_key == "xdb" else r for r in records]
        cmd = [*et, "train", str(stores[store_key]), "--config", str(RECIPES[model]), "--split", "records",
               "--test-records", *names, "--out", str(run)]
        if raw:
            cmd += ["--beat-input", "leads"]
        if (run / "last.pt").exists():
            cmd.append("--resume")
        log.info("%s | %s | fold %d: training", model, condition, fold)
        train_s = _sh(cmd, cell / "log.txt")
        eval_s = _sh([*et, "evaluate", str(run), str(stores[store_key]), "--split", "test"], cell / "log.txt")
        produced = run / "eval_test.json"
        if not produced.exists():
            raise SystemExit(f"{cell}: evaluate wrote no eval_test.json (see {cell / 'log.txt'})")
        timing.write_text(json.dumps({"train_s": train_s, "eval_s": eval_s}))
        ev.write_text(produced.read_text())
    out = json.loads(ev.read_text())
    out["timing"] = json.loads(timing.read_text()) if timing.exists() else {}
    run_json = cell / "run" / "run.json"
    out["run"] = json.loads(run_json.read_text()) if run_json.exists() else {}
    return out


def record_confusions(evals: list[dict[str, Any]], records: list[str]) -> np.ndarray:
    """``[R, 4, 4]`` confusion matrices (N S V F, the decision rule's labels) of ``records`` pooled from the folds."""
    cms = {}
    for ev in evals:
        names = list(ev["aami"]["classes"])
        order = [names.index(c) for c in CLASSES]
        for rid, rec in ev["aami"]["records"].items():
            _, bare = split_qualified(rid)
            cm = np.asarray(rec["confusion_matrix"], dtype=np.float64)
            cms[bare] = cm[np.ix_(order, order)]
    missing = sorted(set(records) - set(cms))
    if missing:
        raise SystemExit(f"no out-of-fold predictions for records {missing}")
    return np.stack([cms[r] for r in records])


def summarise(cms: np.ndarray, resamples) -> dict[str, Any]:
    pooled = cms.sum(axis=0)
    out: dict[str, Any] = {"confusion_matrix": pooled.astype(int).tolist(), "classes": list(CLASSES), "gross": {}}
    for i, c in enumerate(CLASSES):
        out["gross"][c] = {"support": int(pooled[i].sum()),
                           "se": float(class_rate_of_confusion(pooled, i, "se")),
                           "ppv": float(class_rate_of_confusion(pooled, i, "ppv")),
                           "f1": float(class_f1_of_confusion(pooled, i))}
    for name, fn in METRICS.items():
        reps = bootstrap_replicates(cms[None], resamples, metric=fn)
        lo, hi = percentile_interval(reps)
        out[name] = {"value": float(fn(pooled)), "lo": lo, "hi": hi}
    return out


def contrast(a: np.ndarray, b: np.ndarray, resamples) -> dict[str, Any]:
    res = {}
    for name, fn in METRICS.items():
        d = bootstrap_replicates(a[None], resamples, metric=fn) - bootstrap_replicates(b[None], resamples, metric=fn)
        lo, hi = percentile_interval(d)
        res[name] = {"diff": float(fn(a.sum(0)) - fn(b.sum(0))), "lo": lo, "hi": hi, "p": bootstrap_p_value(d)}
    return res


def _f(x: float | None, pct: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def report(results: dict[str, Any]) -> str:
    lines = ["# Beats on unseen patients: DS1 leave-patients-out cross-validation (CPU)", "",
             f"{results['n_records']} DS1 records ({results['n_folds']} folds grouped by patient: "
             + "; ".join(", ".join(f) for f in results["folds"]) + "), each scored once by models that never saw "
             "its patient; svdb (59 patients) always in training when used. Decision rule: the recipe's "
             "(fitted on validation patients at the true prevalence). Gross Se / +P / F1 in %; intervals: 95% "
             f"percentile bootstrap over the {results['n_records']} DS1 patients ({BOOTSTRAP_REPLICATES} replicates), "
             "paired across conditions. Q beats left out (AAMI practice). One seed per cell.", "",
             f"Machine: {results['machine']}.", ""]
    for model, conds in results["models"].items():
        lines += [f"## {model}", "",
                  "| condition | acc | macro-F1 | N Se/+P | S Se/+P | S F1 | V Se/+P | V F1 | F Se/+P | train min (3 folds) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for cond, r in conds["conditions"].items():
            g = r["gross"]

            def sp(c: str) -> str:
                return f"{_f(g[c]['se'], True)} / {_f(g[c]['ppv'], True)}"

            def ci(m: str) -> str:
                v = r[m]
                return f"{_f(v['value'])} [{_f(v['lo'])}, {_f(v['hi'])}]"

            lines.append(f"| {cond} | {ci('accuracy')} | {ci('macro_f1')} | {sp('N')} | {sp('S')} | {ci('S_f1')} | "
                         f"{sp('V')} | {ci('V_f1')} | {sp('F')} | {r['train_minutes']:.1f} |")
        if conds.get("contrasts"):
            lines += ["", "| contrast (paired over patients) | acc | macro-F1 | S F1 | V F1 |", "|---|---|---|---|---|"]
            for label, c in conds["contrasts"].items():
                cells = [f"{c[m]['diff']:+.3f} [{_f(c[m]['lo'])}, {_f(c[m]['hi'])}] p={c[m]['p']:.3f} "
                         f"(Holm {c[m]['p_holm']:.3f})" for m in ("accuracy", "macro_f1", "S_f1", "V_f1")]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if conds.get("not_run"):
            lines += ["", f"Not run (CPU time): {', '.join(conds['not_run'])}."]
        lines.append("")
    lines += ["## References on the same question (DS2, published)", "",
              "de Chazal 2004 (linear discriminants, DS1 -> DS2): accuracy 0.862, S Se/+P 76 / 38 (F1 0.51), "
              "V Se/+P 78 / 82 (F1 0.80). These are DS2 figures, not DS1 cross-validation: the records differ and "
              "a few DS1 patients hold most S beats (209: 383, 201: 128, 207: 107, 118: 96, 220: 94).", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder with mitdb/1.0.0 and svdb/1.0.0")
    ap.add_argument("--work", required=True, help="scratch folder: stores and runs (large)")
    ap.add_argument("--results", required=True, help="where results.json and report.md go")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    ap.add_argument("--no-train", action="store_true",
                    help="aggregate the cells already evaluated; a condition with a missing fold is listed as not run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = Path(args.work)
    et = [sys.executable, "-m", "ecgtransfer", "-q"]
    env_stores = work / "stores"
    subprocess.run(["bash", str(HERE / "beats-xdb.sh"), args.data, str(work)], check=True,
                   env={**os.environ, "MODELS": "", "STORES": str(env_stores), "ET": " ".join(et)})
    stores = {"mitdb": env_stores / "mitdb", "xdb": env_stores / "xdb"}
    mitdb = SegmentStore(stores["mitdb"])
    folds = folds_of(mitdb, args.folds)
    records = sorted(r for f in folds for r in f)
    resamples = draw_resamples(len(records), 1, BOOTSTRAP_REPLICATES, seed=0)
    from ecgtransfer.training.precision import cpu_info

    info = cpu_info()
    results: dict[str, Any] = {"folds": folds, "n_folds": args.folds, "n_records": len(records), "records": records,
                               "machine": f"{info['model']}, {os.cpu_count()} cores, native bf16 "
                                          f"{info['native_bf16']}, {platform.python_version()}",
                               "models": {}}
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        entry: dict[str, Any] = {"recipe": str(RECIPES[model].relative_to(HERE.parent)), "conditions": {}}
        cms = {}
        for cond in args.conditions:
            cells = [work / model / cond.replace(" + ", "+") / f"fold{f}" / "eval_test.json" for f in range(len(folds))]
            if args.no_train and not all(c.exists() for c in cells):
                entry.setdefault("not_run", []).append(cond)
                continue
            evals = [run_cell(model, cond, f, recs, stores, work, et) for f, recs in enumerate(folds)]
            cms[cond] = record_confusions(evals, records)
            s = summarise(cms[cond], resamples)
            s["train_minutes"] = sum(e["timing"].get("train_s", 0.0) for e in evals) / 60
            s["per_fold_train_minutes"] = [e["timing"].get("train_s", 0.0) / 60 for e in evals]
            s["decision"] = [e.get("decision") for e in evals]
            entry["conditions"][cond] = s
            results["models"][model] = entry
            (results_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
            (results_dir / "report.md").write_text(report(results))
        cons = {label: contrast(cms[a], cms[b], resamples) for label, a, b in CONTRASTS if a in cms and b in cms}
        for m in METRICS:
            adj = holm([c[m]["p"] for c in cons.values()])
            for c, p in zip(cons.values(), adj):
                c[m]["p_holm"] = p
        entry["contrasts"] = cons
        (results_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (results_dir / "report.md").write_text(report(results))
    log.info("results in %s", results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
