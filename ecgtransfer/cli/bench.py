"""``ecgtransfer bench CONFIG.toml --out DIR``: with vs without transfer, into results.json and reports."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmark transfer (arms x encodings x data fractions x seeds) into a report",
        description="Run a benchmark config (see docs/bench.md): every (arm, encoding, fraction, seed) cell is "
                    "trained with the same budget; finished cells are reused on a re-run. Writes results.json, "
                    "report.md and a self-contained report.html into --out.")
    p.add_argument("config", nargs="?", help="bench config TOML (benchmarks/smoke.toml, cpu.toml, gpu.toml)")
    p.add_argument("--out", required=True, help="output directory (re-running with the same one resumes)")
    p.add_argument("--store", help="target segment store (replaces task.store of the config)")
    p.add_argument("--source-store", help="source store of ecg-pretrained arms (replaces source.store)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (replaces bench.device)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set bench.seeds=[0,1] --set bench.epochs=3 (repeatable)")
    p.add_argument("--no-resume", action="store_true", help="recompute every cell even if finished")
    p.add_argument("--report-only", action="store_true",
                   help="only re-write report.md/report.html from OUT/results.json")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ecgtransfer.bench.config_toml import parse_override
    from ecgtransfer.errors import ConfigError

    if args.report_only:
        from ecgtransfer.bench.runner import write_report

        paths = write_report(args.out)
        print(f"report: {paths['html']}")
        return 0
    if not args.config:
        raise ConfigError("bench needs a CONFIG.toml (or --report-only)")
    overrides = dict(parse_override(s) for s in args.set)
    from ecgtransfer._outdir import check_not_inside_output
    from ecgtransfer.cli._outputs import every_layout

    # not inside a run, a store or another bench folder
    check_not_inside_output(args.out, inputs={"--store": args.store, "--source-store": args.source_store},
                            layouts=every_layout())
    from ecgtransfer.bench.runner import run

    command = "ecgtransfer " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    res = run(Path(args.config), args.out, store=args.store, source_store=args.source_store, device=args.device,
              resume=not args.no_resume, progress=args.progress,
              overrides=overrides, command=command)
    r = res.results
    print(f"bench {r['name']}: {len(res.computed)} cell(s) computed, {len(res.reused)} reused, "
          f"{len(res.failed)} failed; arms skipped: {', '.join(res.skipped) or 'none'}")
    print(f"hardware: {r['hardware_line']}")
    from ecgtransfer.bench.report_text import headline

    for line in headline(r):
        print(line)
    print(f"results: {res.paths['results']}")
    print(f"report:  {res.paths['html']}")
    return 0 if not res.failed else 1
