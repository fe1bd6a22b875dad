"""``ecgtransfer info STORE [--json]``: what a segment store holds."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="counts per class, record and patient of a segment store",
                              description="Print a store's segment shape, rate, leads and the counts per class, "
                              "per record and per patient (and per database for a combined store; --json always has them).")
    p.add_argument("store", metavar="STORE", help="segment store directory")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(func=run)


def _table(rows: dict[str, dict[str, int]], classes: list[str], key: str) -> list[str]:
    width = max([len(key), *(len(r) for r in rows)])
    cw = [max(len(c), 6) for c in classes]
    lines = [f"  {key:<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(classes, cw)) + "   total"]
    for name, counts in rows.items():
        lines.append(f"  {name:<{width}}  " + "  ".join(f"{counts.get(c, 0):>{w}}" for c, w in zip(classes, cw))
                     + f"  {sum(counts.values()):>6}")
    return lines


def run(args: argparse.Namespace) -> int:
    from ecgtransfer.store import SegmentStore

    store = SegmentStore(args.store)
    info = store.info()
    m = store.manifest
    if args.json:
        d = info.to_dict()
        d.update({"path": str(store.path), "database": m.get("database"), "version": m.get("version"),
                  "task": m.get("task"), "lead_names": store.lead_names, "dtype": m.get("dtype"),
                  "class_names": store.class_names, "extras": m.get("extras", []),
                  "n_records": len(info.records), "n_patients": len(info.patients),
                  "manifest_hash": store.manifest_hash})
        sys.stdout.write(json.dumps(d) + "\n")
        return 0
    n, c, length = info.shape
    classes = store.class_names
    out = [f"store      {store.path}",
           f"database   {m.get('database')} {m.get('version')}  task {m.get('task')}",
           f"segments   {n} x {c} lead(s) x {length} samples ({m.get('dtype')}) at {info.fs:g} Hz "
           f"= {length / info.fs:.3g} s each",
           f"leads      {', '.join(store.lead_names)}",
           f"records    {len(info.records)}   patients {len(info.patients)}",
           f"extras     {', '.join(m.get('extras', [])) or '-'}",
           "classes    " + "  ".join(f"{k}={v}" for k, v in info.classes.items())]
    if len(info.databases) > 1:
        out.append("per database:")
        rows = {db: d["classes"] for db, d in info.databases.items()}
        out.extend(line + (f"  {'records':>7}  {'patients':>8}" if k == 0 else
                           f"  {info.databases[db]['records']:>7}  {info.databases[db]['patients']:>8}")
                   for k, (line, db) in enumerate(zip(_table(rows, classes, "database"), ["", *rows])))
    if info.levels:  # multilabel: positives per label and strat_fold, at every level (records: --json)
        level = m.get("multilabel", {}).get("level")
        for name, table in info.levels.items():
            folds = sorted({f for row in table.values() for f in row if f != "all"}, key=lambda f: (len(f), f))
            out.append(f"level {name}{' (the targets)' if name == level else ''}: positives per strat_fold")
            out.extend(_table({label: {f: row.get(f, 0) for f in folds} for label, row in table.items()}, folds,
                              "label"))
        sys.stdout.write("\n".join(out) + "\n")
        return 0
    out.append("per record:")
    out.extend(_table(info.records, classes, "record"))
    if info.patients != info.records:
        out.append("per patient:")
        out.extend(_table(info.patients, classes, "patient"))
    sys.stdout.write("\n".join(out) + "\n")
    return 0
