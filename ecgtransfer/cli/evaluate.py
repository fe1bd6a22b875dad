"""``ecgtransfer evaluate RUN_DIR STORE --split test``: metrics JSON and confusion-matrix PNG of a trained run."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("evaluate", help="metrics of a trained run on a store split",
                              description="Evaluate a trained run on a split of a store: writes eval_<split>.json "
                                          "and eval_<split>_confusion.png (into RUN_DIR or --out) and prints a summary.")
    p.add_argument("run_dir", help="run directory of `ecgtransfer train`")
    p.add_argument("store", help="segment store with the run's classes")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--checkpoint", default="best", help="best | last | PATH (default best)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default: the run's)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", help="output folder (default RUN_DIR)")
    p.add_argument("--json", action="store_true", help="print the metrics JSON to stdout")
    p.add_argument("--ensemble", nargs="+", metavar="RUN", default=(),
                   help="further run directories: evaluate the mean of the runs' probabilities, with RUN_DIR's "
                        "decision rule (the other runs' rules are not applied)")
    from ecgtransfer.training.decision import DECISION_USES

    p.add_argument("--decision", choices=DECISION_USES, default=DECISION_USES[0],
                   help="stored (default): the decision rule fitted with the run (argmax for runs without one), "
                        "reported with the plain arg-max beside it | argmax: the plain arg-max only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ecgtransfer._validate import positive_int
    from ecgtransfer.training.evaluation import evaluate
    from ecgtransfer.training.metrics import metrics_table

    if args.batch_size is not None:
        positive_int(args.batch_size, "--batch-size")  # before anything is read or written
    if args.out is not None:  # RUN_DIR (the default) is evaluate's own; any other folder must be empty or an --out's
        from ecgtransfer._outdir import check_output_dir
        from ecgtransfer.cli._outputs import every_layout
        from ecgtransfer.training.evaluation import EVAL_LAYOUT

        inputs = {"STORE": args.store}
        if args.checkpoint not in ("best", "last"):
            inputs["--checkpoint"] = args.checkpoint
        if os.path.realpath(args.out) != os.path.realpath(args.run_dir):
            check_output_dir(args.out, kind=EVAL_LAYOUT, inputs=inputs, owned=(args.run_dir,),
                             layouts=every_layout())
    m = evaluate(args.run_dir, args.store, args.split, checkpoint=args.checkpoint, device=args.device,
                 batch_size=args.batch_size, out=args.out, decision=args.decision,
                 ensemble=args.ensemble)
    if args.json:
        sys.stdout.write(json.dumps(m, indent=2, sort_keys=True) + "\n")
    elif m.get("task") == "multilabel":
        from ecgtransfer.training.multilabel_metrics import auc_table

        iv = m["intervals"]
        sys.stdout.write(f"{args.split}: n = {m['n']} ({m['n_patients']} patients), macro AUC {m['macro_auc']:.4f} "
                         f"{iv['macro_auc']}, Fmax {m['fmax']:.4f} {iv['fmax']} (95% patient bootstrap)\n"
                         f"{auc_table(m)}\nwritten: {m['paths']['metrics']}\n")
    else:
        am = m["argmax"]
        sys.stdout.write(f"{args.split}: n = {m['n']}, accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
                         f"macro AUROC {m['macro_auroc']:.4f}\n"
                         f"decision rule {m['decision']['method']} (fitted on {m['decision']['fitted_on']}); plain "
                         f"arg-max: accuracy {am['accuracy']:.4f}, macro-F1 {am['macro_f1']:.4f}\n{metrics_table(m)}\n"
                         f"written: {m['paths']['metrics']}, {m['paths']['confusion']}\n")
    return 0
