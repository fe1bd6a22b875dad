"""Where the image ResNet50 stands: majority, ``features``, ``cnn1d`` and ResNet50 (with and without RR) on one
patient-wise split, at the CPU recipe (benchmarks/cpu-beats.toml).

Every arm trains through :func:`ecgtransfer.fine_tune` on the same explicit split (computed once from the recipe's
split settings and saved), selects its epoch on validation only, and is scored once on the full test part:
gross Se / +P / FPR per AAMI class (N, S, V, F; Q left out), accuracy and the per-record averages, with the wall
time of each arm. ``--sweep`` first trains each learned arm briefly at several learning rates and keeps the one
with the best validation selection-F1 (the test part plays no role in any choice).

    python benchmarks/beat_references.py --store stores/mitdb-beats --out benchmarks/results/DATE-cpu-beats --sweep

Writes ``OUT/results.json`` and ``OUT/report.md`` (and keeps each arm's run directory under ``OUT/runs/``
unless ``--keep-runs`` is off).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecgtransfer.signals.beats import AAMI_SCORED
from ecgtransfer.training.precision import cpu_info

ARMS = ("majority", "features", "cnn1d", "resnet50-rr", "resnet50")
#: per arm: the TrainConfig overrides on top of the recipe
ARM_OVERRIDES: dict[str, dict[str, Any]] = {
    "features": {"model": "features", "rr": "auto"},
    "cnn1d": {"model": "cnn1d", "rr": "auto", "image_size": 64},
    "resnet50": {"model": "resnet50", "rr": "off"},
    "resnet50-rr": {"model": "resnet50", "rr": "auto"},
}
CLASSES = AAMI_SCORED  # N, S, V, F


def _summary(test: dict[str, Any]) -> dict[str, Any]:
    a = test["aami"]
    out: dict[str, Any] = {"n": test["n"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"]}
    for c in CLASSES:
        g = a["gross"].get(c)
        if g is None:
            continue
        out[c] = {"support": g["support"], "se": g["se"], "ppv": g["ppv"], "fpr": g["fpr"],
                  "f1": test["per_class"][c]["f1"], "se_record_avg": a["per_record"][c]["se"],
                  "ppv_record_avg": a["per_record"][c]["ppv"]}
    return out


def _train(store: Any, cfg: Any, split: dict[str, np.ndarray], out: Path, **overrides: Any) -> tuple[Any, float]:
    from ecgtransfer.training import fine_tune

    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    res = fine_tune(store, cfg, out=out, split_indices=split, **overrides)
    return res, time.perf_counter() - t0


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=str(Path(__file__).with_name("cpu-beats.toml")))
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated among {','.join(ARMS)}")
    p.add_argument("--sweep", action="store_true", help="choose each learned arm's learning rate on validation")
    p.add_argument("--sweep-lrs", default="3e-4,1e-3,3e-3", help="learning rates of the sweep (uniform over tiers)")
    p.add_argument("--sweep-epochs", type=int, default=2, help="epochs of each sweep run")
    p.add_argument("--sweep-steps", default="resnet50-rr:80",
                   help="ARM:STEPS,... sweep runs of these arms stop after STEPS optimizer steps (CPU budget)")
    p.add_argument("--sweep-share", default="resnet50:resnet50-rr",
                   help="ARM:ARM,... arms that reuse another arm's chosen LR (the CPU budget allows one ResNet sweep)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    from ecgtransfer.store import SegmentStore
    from ecgtransfer.training.config import TrainConfig
    from ecgtransfer.training.data import make_split
    from ecgtransfer.training.metrics import dechazal_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = SegmentStore(args.store)
    cfg = TrainConfig.from_toml(args.config).replace(seed=args.seed, progress=False,
                                                     **({"epochs": args.epochs} if args.epochs else {}))
    split = make_split(store, cfg)
    np.savez(out / "split.npz", **split)
    patients = {k: sorted({str(x) for x in store.patient_ids[v]}) for k, v in split.items()}
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    share = dict(s.split(":") for s in args.sweep_share.split(",") if ":" in s)  # arm -> arm whose LR it reuses
    lrs = [float(v) for v in args.sweep_lrs.split(",")]
    sweep_steps = {a: int(n) for a, n in (s.split(":") for s in args.sweep_steps.split(",") if ":" in s)}
    results: dict[str, Any] = {
        "store": str(store.path), "store_manifest_hash": store.manifest_hash, "config": cfg.to_dict(),
        "config_file": args.config, "split_patients": patients,
        "split_sizes": {k: int(len(v)) for k, v in split.items()},
        "hardware": {"cpu": cpu_info()["model"], "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                     "cores": os.cpu_count()},
        "sweeps": {}, "arms": {}, "command": "python benchmarks/beat_references.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    chosen: dict[str, float] = {}
    for arm in arms:
        if arm == "majority":
            continue
        o = dict(ARM_OVERRIDES[arm])
        if o["model"] == "features":
            continue
        src = share.get(arm)
        if args.sweep and (src is None or src not in arms):
            curve = []
            for lr in lrs:
                no_test = {"train": split["train"], "val": split["val"], "test": split["test"][:0]}  # never scored
                res, wall = _train(store, cfg, no_test, out / "sweep" / f"{arm}-lr{lr:g}", tiers=(lr, lr, lr),
                                   epochs=args.sweep_epochs, early_stopping=None, max_steps=sweep_steps.get(arm), **o)
                best = max(h["val"]["selection_f1"] for h in res.history)
                curve.append({"lr": lr, "val_selection_f1": best, "wall_s": wall})
                logging.info("sweep %s lr %g: val selection-F1 %.4f (%.0f s)", arm, lr, best, wall)
            pick = max(curve, key=lambda r: r["val_selection_f1"])["lr"]
            chosen[arm] = pick
            results["sweeps"][arm] = {"curve": curve, "chosen_lr": pick, "epochs": args.sweep_epochs,
                                      "max_steps": sweep_steps.get(arm)}
            (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    for arm in arms:
        if arm == "majority":
            continue
        o = dict(ARM_OVERRIDES[arm])
        lr = chosen.get(arm, chosen.get(share.get(arm, ""), None))
        if lr is not None:
            o["tiers"] = (lr, lr, lr)
        res, wall = _train(store, cfg, split, out / "runs" / arm, **o)
        results["arms"][arm] = {
            "overrides": {k: (list(v) if isinstance(v, tuple) else v) for k, v in o.items()},
            "lr": None if o["model"] == "features" else (lr if lr is not None else cfg.tiers[0]),
            "lr_from": ("sweep of " + (share.get(arm) if arm not in chosen else arm)) if lr is not None else "recipe",
            "wall_s": wall, "steps": res.steps, "stopped": res.stopped, "best_epoch": res.best_epoch,
            "val_selection_f1": (res.best_metrics or {}).get("selection_f1"),
            "test": _summary(res.test_metrics), "dechazal_table": dechazal_table(res.test_metrics["aami"]),
        }
        if "majority" in arms and "majority" not in results["arms"]:
            mj = res.test_metrics["majority"]
            results["arms"]["majority"] = {
                "predicts": mj["predicts"], "wall_s": 0.0,
                "test": {"n": mj["n"], "accuracy": mj["accuracy"], "macro_f1": mj["macro_f1"],
                         **{c: {"support": mj["per_class"][c]["support"], "se": mj["per_class"][c]["se"],
                                "ppv": mj["per_class"][c]["ppv"], "fpr": mj["per_class"][c]["fpr"],
                                "f1": mj["per_class"][c]["f1"]} for c in CLASSES if c in mj["per_class"]}}}
        logging.info("%s: test accuracy %.4f, macro-F1 %.4f in %.0f s", arm, res.test_metrics["accuracy"],
                     res.test_metrics["macro_f1"], wall)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "report.md").write_text(report(results))
    return 0


def report(results: dict[str, Any]) -> str:
    """The comparison table as Markdown."""
    hw = results["hardware"]
    lines = ["# Beat classification at the CPU recipe: where the image ResNet50 stands", "",
             f"Store `{results['store']}` (manifest {results['store_manifest_hash'][:12]}), patient-wise split "
             f"{results['split_sizes']}: test patients {', '.join(results['split_patients']['test'])}; "
             f"validation patients {', '.join(results['split_patients']['val'])}. Test part in full (no cap), "
             "Q left out. Hardware: "
             f"{hw['cpu']}, {hw['torch_threads']} torch threads, torch {hw['torch']}.", "",
             "| arm | lr | N Se | N +P | S Se | S +P | S F1 | V Se | V +P | V F1 | F Se | F +P | accuracy | macro-F1 "
             "| wall |", "|---|---:|" + "---:|" * 13]
    for name, a in results["arms"].items():
        t = a["test"]

        def g(c: str, k: str) -> str:
            return _fmt(t.get(c, {}).get(k))
        lr = a.get("lr")
        lines.append(f"| {name}{' (always ' + a['predicts'] + ')' if 'predicts' in a else ''} | "
                     f"{'' if lr is None else f'{lr:g}'} | {g('N', 'se')} | {g('N', 'ppv')} | {g('S', 'se')} | "
                     f"{g('S', 'ppv')} | {g('S', 'f1')} | {g('V', 'se')} | {g('V', 'ppv')} | {g('V', 'f1')} | "
                     f"{g('F', 'se')} | {g('F', 'ppv')} | {_fmt(t['accuracy'])} | {_fmt(t['macro_f1'])} | "
                     f"{a['wall_s'] / 60:.1f} min |")
    lines += ["", "Se = sensitivity, +P = positive predictivity, gross (pooled over the test beats), in %.", ""]
    for arm, sw in results["sweeps"].items():
        budget = f"{sw['max_steps']} steps" if sw.get("max_steps") else f"{sw['epochs']} epochs"
        lines += [f"Learning-rate sweep of `{arm}` ({budget} each, validation selection-F1): "
                  + ", ".join(f"{r['lr']:g}: {r['val_selection_f1']:.3f}" for r in sw["curve"])
                  + f" -> {sw['chosen_lr']:g}", ""]
    for name, a in results["arms"].items():
        if a.get("dechazal_table"):
            lines += [f"## {name}", "", f"{a['steps']} steps, stopped by {a['stopped']}, best epoch {a['best_epoch']}"
                      f", validation selection-F1 {a['val_selection_f1']:.3f}", "", a["dechazal_table"], ""]
    lines += ["Command: `" + results["command"] + "`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
