"""Benchmark R-peak detectors on the shared mitdb and svdb records (EC57 style) and predict's memory on a long record.

Detection: every record of ``DB/1.0.0/RECORDS`` under ``--data`` for each of ``--databases`` (mitdb: lead MLII,
360 Hz; svdb: lead ECG1, 128 Hz), scored with
:func:`wfdb.processing.compare_annotations` (150 ms window = ``int(0.15 * fs)`` samples) against the ``.atr``
beat annotations (beat symbols only, :data:`ecgtransfer.signals.beats.AAMI_MAP`), per record and in total
(TP/FP/FN summed over records: gross Se and +P). The ventricular flutter episodes (``[`` ... ``]``) are left out
of scoring, as EC57 does (record 207: six episodes). Detectors:

- ``chosen``: :func:`ecgtransfer.signals.rpeaks.detect_r_peaks_chunked` (GQRS + R-peak correction + refractory
  de-duplication + the T-wave rule, in the 30-minute chunks that ``predict`` uses: one chunk per record);
- ``before-twave``: the same without the T-wave rule (:func:`ecgtransfer.signals.rpeaks.drop_t_waves`), the
  detector before issue 20;
- ``gqrs``: :func:`wfdb.processing.gqrs_detect` alone (default settings, whole record);
- ``xqrs``: :func:`wfdb.processing.xqrs_detect` with default settings (whole record);
- ``old``: the hand-written detector that ``predict`` used before (band-pass envelope + find_peaks), kept here
  verbatim as the baseline;
- ``neurokit2``: NeuroKit2's default (``ecg_clean`` + ``ecg_peaks(method="neurokit")``), where neurokit2 is
  installed (it is not a dependency of ecgtransfer).

Memory: a long synthetic record (a real mitdb record tiled to ``--hours`` hours, saved as ``.npy``) goes
through ``ecgtransfer.training.predict`` (read -> detect -> filter -> segment -> classify, streamed in chunks)
with a tiny 1-D CNN trained here; each length runs in a fresh process, whose peak resident memory during
``predict`` (``VmHWM`` after a reset, above the ``VmRSS`` of the loaded model) is reported. Equal figures for
different lengths show that memory is bounded by the chunk size, not the record length.

    .venv/bin/python benchmarks/rpeaks.py --out benchmarks/results/2026-12-01-rpeaks \\
        [--data ../shared/data/physionet] [--databases mitdb svdb] [--detectors chosen old xqrs] [--records 101 207]
        [--hours 0.5 2 6]

``--detectors`` without names keeps the detection table already in ``--out`` (and measures memory only);
``--hours`` without values skips the memory part. Each part is written as soon as it is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "physionet"
#: detector names, in table order
DETECTORS = ("chosen", "before-twave", "gqrs", "old", "xqrs", "neurokit2")
#: the lead scored in each database
LEADS = {"mitdb": "MLII", "svdb": "ECG1"}


def old_detector(x: np.ndarray, fs: float) -> np.ndarray:
    """The detector ``predict`` used before issue 12 (training/prediction.py), unchanged, as the baseline."""
    from scipy import signal as ss

    x = np.asarray(x, dtype=np.float64)
    sos = ss.butter(2, [5.0, min(15.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    y = np.abs(ss.sosfiltfilt(sos, x))
    w = max(1, int(round(0.08 * fs)))
    envelope = np.convolve(y, np.ones(w) / w, mode="same")
    peaks, _ = ss.find_peaks(envelope, distance=max(1, int(0.25 * fs)), height=0.25 * np.percentile(envelope, 99))
    half = int(round(0.06 * fs))
    dev = np.abs(x - np.median(x))
    refined = []
    for p in peaks:
        lo, hi = max(0, p - half), min(len(x), p + half + 1)
        refined.append(lo + int(np.argmax(dev[lo:hi])))
    return np.unique(np.asarray(refined, dtype=np.int64))


def _detectors() -> dict:
    from wfdb import processing

    from ecgtransfer.signals import rpeaks

    def neurokit2(x: np.ndarray, fs: float) -> np.ndarray:  # not a dependency: measured where installed
        import neurokit2 as nk

        _, info = nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=int(fs)), sampling_rate=int(fs), method="neurokit")
        return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)

    def before_twave(x: np.ndarray, fs: float) -> np.ndarray:  # the chosen detector without the T-wave rule
        keep = rpeaks.drop_t_waves
        rpeaks.drop_t_waves = lambda x, peaks, fs: np.asarray(peaks, dtype=np.int64)
        try:
            return rpeaks.detect_r_peaks_chunked(x, fs)
        finally:
            rpeaks.drop_t_waves = keep

    return {
        "chosen": rpeaks.detect_r_peaks_chunked,
        "before-twave": before_twave,
        "gqrs": lambda x, fs: processing.gqrs_detect(sig=x, fs=fs),
        "xqrs": lambda x, fs: processing.xqrs_detect(x, fs, verbose=False),
        "old": old_detector,
        "neurokit2": neurokit2,
    }


def detection(data: Path, names: list[str], records: list[str] | None, database: str = "mitdb") -> dict:
    """Per-record and total scores of each detector."""
    import logging

    from ecgtransfer.signals.beats import read_beat_symbols
    from ecgtransfer.signals.record import read_record
    from ecgtransfer.signals.rpeaks import excluded_episodes, score_detections

    logging.getLogger("wfdb").setLevel(logging.ERROR)
    vdir = data / database / "1.0.0"
    recs = records or [r.strip() for r in (vdir / "RECORDS").read_text().split() if r.strip()]
    dets = _detectors()
    out: dict = {name: {"records": {}, "seconds": 0.0} for name in names}
    excluded: dict[str, list] = {}
    for rid in recs:
        path = vdir / rid
        rec = read_record(path, LEADS[database])
        ref, _, _ = read_beat_symbols(path)
        spans = excluded_episodes(path)
        if spans:
            excluded[rid] = [[int(a), int(b), round((b - a) / rec.fs, 2), int(((ref >= a) & (ref <= b)).sum())]
                             for a, b in spans]
        for name in names:
            t0 = time.perf_counter()
            found = np.asarray(dets[name](rec.signal[0], rec.fs), dtype=np.int64)
            dt = time.perf_counter() - t0
            s = score_detections(ref, found, rec.fs, spans)
            out[name]["records"][rid] = {"tp": s.tp, "fp": s.fp, "fn": s.fn, "se": s.se, "ppv": s.ppv,
                                         "offset_ms": s.offset_ms, "seconds": dt}
            out[name]["seconds"] += dt
            print(f"{database} {name:7s} {rid}: Se {100 * s.se:.2f} +P {100 * s.ppv:.2f} ({s.fp} FP, {s.fn} FN, "
                  f"{s.offset_ms:.1f} ms) {dt:.1f}s", file=sys.stderr, flush=True)
    for name in names:
        rows = out[name]["records"].values()
        tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
        out[name]["total"] = {"tp": tp, "fp": fp, "fn": fn, "se": tp / (tp + fn), "ppv": tp / (tp + fp),
                              "offset_ms": float(np.median([r["offset_ms"] for r in rows]))}
    return {"records": recs, "detectors": out, "excluded": excluded, "lead": LEADS[database], "fs": float(rec.fs)}


# --------------------------------------------------------------------------------------------------
# memory of predict on a long record


def _train_tiny_run(data: Path, work: Path) -> Path:
    """A scratch 1-D CNN run on a few real beats (a model, not a good one: the streaming's memory depends neither on
    its weights nor on its kind, and the 1-D CNN classifies a 2-hour record on 2 shared cores in a minute, where the
    ResNet50 takes ten)."""
    import ecgtransfer as et
    from ecgtransfer.training import fine_tune

    store = et.convert("mitdb", data=data, out=work / "store", records=["119", "209"], before=48, after=80,
                       rr_context=False, progress=False, jobs=1)
    rng = np.random.default_rng(0)
    rid = np.asarray(store.record_ids).astype(str)

    def pick(r: str, n: int) -> np.ndarray:  # n beats of each class the record has n of
        pools = [np.flatnonzero((rid == r) & (store.labels == c)) for c in range(len(store.class_names))]
        return np.sort(np.concatenate([rng.choice(p, n, replace=False) for p in pools if len(p) >= n]))

    split = {"train": pick("209", 6), "val": pick("119", 4), "test": np.zeros(0, dtype=np.int64)}
    out = work / "run"
    fine_tune(store, out=out, split_indices=split, model="cnn1d", init="scratch", batch_size=8, epochs=1,
              num_threads=1, progress=False, tiers=(1e-3, 1e-3, 1e-2))
    return out


def _long_record(data: Path, hours: float, path: Path) -> Path:
    """Record 209's MLII lead tiled to ``hours`` hours, float32 mV, one column, as ``.npy``."""
    from ecgtransfer.signals.record import read_record

    x = read_record(data / "mitdb" / "1.0.0" / "209", "MLII").signal[0].astype(np.float32)
    n = int(hours * 3600 * 360)
    reps = -(-n // len(x))
    np.save(path, np.tile(x, reps)[:n, None])
    return path


def _rss_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak) of this process from ``/proc/self/status``, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure_one(run_dir: str, record: str) -> dict:
    """Run predict on ``record`` in this process: its peak resident memory above what was resident before.

    torch, the package and the model are loaded first (``load_run``), then the kernel's peak-RSS mark is reset
    (``/proc/self/clear_refs`` 5) so that ``VmHWM`` after predict is the peak of predict itself. (tracemalloc
    would slow GQRS's per-sample Python loop several-fold.)"""
    from ecgtransfer.training.evaluation import load_run
    from ecgtransfer.training.prediction import predict

    load_run(run_dir, device="cpu")
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_mb("VmRSS")
    t0 = time.perf_counter()
    table = predict(run_dir, [record], fs=360.0, lead="0", progress=False, device="cpu")
    wall = time.perf_counter() - t0
    peak = _rss_mb("VmHWM")
    return {"beats": int(len(table)), "wall_s": wall, "rss_before_mb": before, "peak_rss_mb": peak,
            "peak_growth_mb": peak - before}


def memory(data: Path, hours: list[float]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = _train_tiny_run(data, work)
        for h in hours:
            rec = _long_record(data, h, work / f"long_{h:g}h.npy")
            size_mb = rec.stat().st_size / 2**20
            done = subprocess.run([sys.executable, __file__, "--one", str(run_dir), str(rec)], capture_output=True,
                                  text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            row = {"hours": h, "samples": int(h * 3600 * 360), "record_mb": size_mb, **json.loads(done.stdout)}
            print(f"memory {h:g} h: {row}", file=sys.stderr, flush=True)
            rec.unlink()
            rows.append(row)
    return rows


def _databases(result: dict) -> dict:
    """``{database: detection}``; results written before svdb was added hold mitdb's under ``detection``."""
    dbs = dict(result.get("databases") or {})
    if "detection" in result and "mitdb" not in dbs:
        dbs = {"mitdb": result["detection"], **dbs}
    return dbs


def _detection_md(database: str, det: dict) -> list[str]:
    names = [n for n in DETECTORS if n in det["detectors"]]
    fs = float(det.get("fs", 360.0))
    lines = [f"## {database}: {len(det['records'])} records, lead {det.get('lead', 'MLII')}, {fs:g} Hz", "",
             f"Scored with `wfdb.processing.compare_annotations`, 150 ms window ({int(0.15 * fs)} samples at {fs:g} "
             "Hz), against the `.atr` beat annotations (AAMI beat symbols). Total = TP/FP/FN summed over records "
             "(gross Se, +P)."]
    if det["excluded"]:
        lines[-1] += (" Excluded from scoring (EC57, ventricular flutter `[`...`]`): " +
                      "; ".join(f"record {r}: " + ", ".join(f"samples {a}-{b} ({d:g} s, {n} reference beats)"
                                                           for a, b, d, n in spans)
                                for r, spans in det["excluded"].items()) + ".")
    lines += ["", "| record | " + " | ".join(f"{n} Se % | {n} +P % | {n} FP" for n in names) + " |",
              "|---|" + "---:|---:|---:|" * len(names)]
    for rid in det["records"]:
        cells = []
        for n in names:
            r = det["detectors"][n]["records"][rid]
            cells += [f"{100 * r['se']:.2f}", f"{100 * r['ppv']:.2f}", str(r["fp"])]
        lines.append(f"| {rid} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        t = det["detectors"][n]["total"]
        cells += [f"**{100 * t['se']:.2f}**", f"**{100 * t['ppv']:.2f}**", f"**{t['fp']}**"]
    lines.append("| **total** | " + " | ".join(cells) + " |")
    lines += ["", "| detector | TP | FP | FN | Se % | +P % | median offset to reference (ms) | CPU s (all records) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        t = det["detectors"][n]["total"]
        lines.append(f"| {n} | {t['tp']} | {t['fp']} | {t['fn']} | {100 * t['se']:.2f} | {100 * t['ppv']:.2f} | "
                     f"{t['offset_ms']:.1f} | {det['detectors'][n]['seconds']:.0f} |")
    return lines + [""]


def markdown(result: dict) -> str:
    dbs = _databases(result)
    lines = ["# R-peak detection on the shared " + " and ".join(dbs) + " records", "",
             f"Command: `{result['command']}`", "",
             "`chosen` is the detector of `ecgtransfer.signals.rpeaks`; `before-twave` is the same without its "
             "T-wave rule (`drop_t_waves`, issue 20), which removes detections within 360 ms of the beat before "
             "them whose steepest slope is below half of that beat's.", ""]
    for database, det in dbs.items():
        lines += _detection_md(database, det)
    if result.get("memory"):
        lines += ["", "## predict on a long record (streamed in chunks)", "",
                  f"Command: `{result.get('memory_command', result['command'])}`", "",
                  "Record 209 (MLII) tiled to the given length, `.npy` float32, `predict(..., fs=360, lead='0')` "
                  "with a tiny scratch 1-D CNN (`--model cnn1d`) on CPU, one fresh process per length. Peak growth: "
                  "the peak resident memory during `predict` above that of the loaded model; it holds one 30-minute "
                  "detection chunk (GQRS) and the returned per-beat table, which grows with the beats (a few "
                  "hundred bytes each), while the signal is read chunk by chunk (compare the float64 signal "
                  "column).", "",
                  "| hours | samples | file MB | float64 signal MB | beats | RSS before MB | peak RSS MB | "
                  "peak growth MB | wall s |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for m in result["memory"]:
            lines.append(f"| {m['hours']:g} | {m['samples']} | {m['record_mb']:.1f} | {m['samples'] * 8 / 2**20:.1f} | "
                         f"{m['beats']} | {m['rss_before_mb']:.0f} | {m['peak_rss_mb']:.0f} | "
                         f"{m['peak_growth_mb']:.1f} | {m['wall_s']:.0f} |")
    lines += ["", f"Machine: {result['machine']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--one":
        print(json.dumps(_measure_one(argv[1], argv[2])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with mitdb/1.0.0/ and svdb/1.0.0/")
    p.add_argument("--databases", nargs="+", default=["mitdb", "svdb"], choices=sorted(LEADS))
    p.add_argument("--detectors", nargs="*", default=["chosen", "old", "xqrs"],
                   choices=list(DETECTORS))
    p.add_argument("--records", nargs="*", default=None, help="records (default: all in RECORDS)")
    p.add_argument("--hours", type=float, nargs="*", default=[0.5, 2.0, 6.0], help="long-record lengths (none: skip)")
    p.add_argument("--merge", action="store_true",
                   help="keep the other detectors' results of an earlier run in --out on the same records")
    p.add_argument("--out", required=True, help="folder for rpeaks.json and rpeaks.md")
    args = p.parse_args(argv)
    data = Path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/rpeaks.py " + " ".join(argv)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    previous = json.loads((out / "rpeaks.json").read_text()) if (out / "rpeaks.json").is_file() else {}
    result = {"command": command, "machine": machine}
    previous_dbs = _databases(previous)
    if args.detectors:
        result["databases"] = dict(previous_dbs)
        commands = [previous["command"]] if args.merge and previous.get("command") else []
        for database in args.databases:
            det = detection(data, args.detectors, args.records, database)
            before = previous_dbs.get(database) or {}
            kept = {k: v for k, v in before.get("detectors", {}).items() if k not in args.detectors}
            if kept and args.merge and before["records"] == det["records"]:
                # detectors measured by an earlier run on the same records, not run again (--merge)
                det["detectors"] = {**kept, **det["detectors"]}
            result["databases"][database] = det
        result["command"] = "; ".join(commands + [command])
    elif previous_dbs:  # --detectors with no names: keep the detection tables of an earlier run
        result.update(databases=previous_dbs, command=previous["command"])
    else:
        raise SystemExit(f"no detection results in {out} to keep; name --detectors")
    if "memory" in previous and not args.hours:  # not measured again: keep the earlier figures
        result["memory"] = previous["memory"]
        if previous.get("memory_command"):
            result["memory_command"] = previous["memory_command"]
    _write(out, result)
    if args.hours:
        result["memory"] = memory(data, args.hours)
        result["memory_command"] = command
        _write(out, result)
    print(markdown(result))
    return 0


def _write(out: Path, result: dict) -> None:
    (out / "rpeaks.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "rpeaks.md").write_text(markdown(result))


if __name__ == "__main__":
    raise SystemExit(main())
