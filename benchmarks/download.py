#!/usr/bin/env python3
"""Throughput of ``ecgtransfer.download`` over real HTTP on 127.0.0.1 (the shared PhysioNet mirror).

Measures, for the whole shared mirror of one database: a cold download with jobs=1 (the baseline) and
jobs=N, then a re-run that only verifies (hashes) what is on disk. Reports files/s, MB/s, the ratio of
each run to the jobs=1 baseline measured in the same run, and peak RSS.

    .venv/bin/python benchmarks/download.py --db challenge-2017 --jobs 4
"""
from __future__ import annotations

import argparse
import http.server
import resource
import shutil
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

from ecgtransfer.physionet.download import download

DEFAULT_MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "physionet"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # like production servers; otherwise each small file waits ~40 ms (delayed ACK)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="mitdb")
    ap.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    if not (args.mirror / args.db).is_dir():
        print(f"mirror {args.mirror / args.db} not found", file=sys.stderr)
        return 1
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(args.mirror)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    tmp = Path(tempfile.mkdtemp(prefix="ecgtransfer-bench-"))
    rows = []
    try:
        for label, jobs, fresh in [("cold jobs=1", 1, True), (f"cold jobs={args.jobs}", args.jobs, True),
                                   (f"verify-only re-run jobs={args.jobs}", args.jobs, False)]:
            out = tmp / "out"
            if fresh and out.exists():
                shutil.rmtree(out)
            t0 = time.perf_counter()
            res = download(args.db, out=out, mirror=url, jobs=jobs, progress=False)
            dt = time.perf_counter() - t0
            nbytes = sum(p.stat().st_size for p in res.paths)
            rows.append((label, dt, len(res.paths), nbytes, res.fetched))
    finally:
        httpd.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    print(f"{args.db}: {rows[0][2]} files, {rows[0][3] / 1e6:.1f} MB over http://127.0.0.1")
    for label, dt, nfiles, nbytes, fetched in rows:
        print(f"  {label:32s} {dt:7.2f} s  {nfiles / dt:8.1f} files/s  {nbytes / 1e6 / dt:7.1f} MB/s  "
              f"fetched={fetched:5d}  x{base / dt:.2f} vs jobs=1")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
