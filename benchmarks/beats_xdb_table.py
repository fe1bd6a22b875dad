"""The de Chazal table of a ``benchmarks/beats-xdb.sh`` output folder: one row per model, gross Se / +P / F1 per AAMI
class of the test records, from each model's ``eval_test.json`` (the decision rule's labels, the argmax accuracy
beside them).

    python benchmarks/beats_xdb_table.py OUT        # prints the table and writes OUT/summary.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ecgtransfer.signals.beats import AAMI_SCORED as CLASSES  # N, S, V, F: the scored AAMI classes

MODELS = ("resnet50", "cnn1d", "features")


def row(model: str, ev: dict) -> str:
    g = ev["aami"]["gross"]

    def pct(x: float | None) -> str:
        return "-" if x is None or x != x else f"{100 * x:.1f}"

    def f1(c: str) -> str:
        se, ppv = g[c]["se"], g[c]["ppv"]
        if se != se or ppv != ppv or se + ppv == 0:
            return "-"
        return f"{200 * se * ppv / (se + ppv):.1f}"

    cells = [f"{pct(g[c]['se'])} / {pct(g[c]['ppv'])} ({f1(c)})" for c in CLASSES]
    rule = (ev.get("decision") or {}).get("method", "argmax")
    argmax = (ev.get("argmax") or {}).get("accuracy")
    return (f"| {model} | {ev['aami']['n']} | {pct(ev['aami']['accuracy'])} | {pct(argmax)} | {rule} | "
            + " | ".join(cells) + " |")


def table(out: Path) -> str:
    lines = [f"Test records of {out}: gross Se / +P (F1) in %, AAMI classes (Q left out); accuracy under the run's "
             "decision rule (fitted on validation patients only), argmax accuracy beside it.", "",
             "| model | beats | accuracy | argmax acc | rule | N | S | V | F |", "|---|---|---|---|---|---|---|---|---|"]
    found = 0
    for model in MODELS:
        path = out / model / "eval_test.json"
        if path.is_file():
            lines.append(row(model, json.loads(path.read_text())))
            found += 1
    if not found:
        raise SystemExit(f"beats_xdb_table: no <model>/eval_test.json under {out} (run benchmarks/beats-xdb.sh first)")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python benchmarks/beats_xdb_table.py OUT", file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    text = table(out)
    tmp = out / ".summary.md.part"
    tmp.write_text(text)
    tmp.replace(out / "summary.md")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
