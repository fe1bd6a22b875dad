"""Training-loop throughput: images/s of the real fine-tuning step, peak memory, and where the time goes.

The step timed is the engine's own: a :class:`ecgtransfer.training.engine._Trainer` is set up from a
:class:`~ecgtransfer.training.TrainConfig` exactly as ``fine_tune`` does it (determinism settings, class-weighted
loss, tiered optimizer and scheduler, gradient clipping, bf16 autocast and channels_last on CUDA, augmentation
with ``--augment``), its :class:`~ecgtransfer.training.data.BatchPlan` batches are read by the same DataLoader
(``batch_loader``), and each batch goes through ``trainer.train_step`` (render, forward, loss, the one host
synchronisation for loss and accuracy, backward, clip, step, schedule). Per step the script records:

* ``load_s``: waiting for the DataLoader's next batch and copying it to the device;
* ``train_step_s``: ``trainer.train_step`` (with a device synchronisation after it on CUDA);
* ``step_s``: their sum, the loop's time per step; ``images_per_s = batch_size / step_s``.

After the timed steps, the image rendering of the same batches is timed alone (``render_s``, the encoder on
the device) to give its share of ``step_s``. Medians over the timed steps, after warmup steps.

    python benchmarks/train_throughput.py --device cpu --batch-size 8 --image-size 64 --steps 5 --threads 2
    python benchmarks/train_throughput.py --device cuda --batch-size 128 --image-size 224 --steps 30

Writes ``benchmarks/results/train_throughput_<device>.json``. Uses a synthetic store (sine + noise beats,
``[N, 1, 256]``) so it runs anywhere; pass ``--store`` to use a real one. ``--amp`` and ``--channels-last`` take
``TrainConfig``'s choices (default ``auto``, resolved per device as ``ecgtransfer train`` does).

``--compare`` measures precision/memory-format modes against each other in one run, interleaved (each round
runs every mode once on the same batch, the order reversed every other round, so drift in a shared machine's
load hits all modes alike): the engine's ``train_step`` and its evaluation forward (``infer`` on a batch of
``eval_batch_size``), at every ``--sizes`` image size. Modes are ``AMP:CHANNELS_LAST[:compile]`` with
``TrainConfig``'s choices; ``off:off`` (exact fp32) and ``auto:auto`` (what a run chooses here) are always
measured. With ``:compile`` the train step runs under ``torch.compile``; its first step (compilation included)
is reported apart, with the number of steps it takes to pay for itself. Writes
``<out>/train_throughput_compare.json``: ``"ratios"`` (auto over fp32 images/s, ``{"train": {"64": r, "224":
r}, "eval": {...}}``), ``"ratios_over_fp32"`` for every mode, the CPU model, torch's CPU capability, the native
bf16 detection and what ``auto`` resolved to::

    python benchmarks/train_throughput.py --compare --device cpu --sizes 64,224 --batch-size 4 --steps 3 \
        --out benchmarks/results/2026-12-01-cpu-precision
    python benchmarks/train_throughput.py --compare --modes off:on,bf16:off,bf16:on --sizes 64 ...
    python benchmarks/train_throughput.py --compare --image-size 128 --batch-size 4   # one size, one batch

``--image-size`` and ``--batch-size`` apply to ``--compare`` (``--batch-size`` alone: the default sizes at that
batch); ``--image-size`` together with ``--sizes`` is refused.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecgtransfer._atomic import atomic_write_json
from ecgtransfer.store import SegmentStore, write_store
from ecgtransfer.training import TrainConfig
from ecgtransfer.training.config import AMP_CHOICES, CHANNELS_LAST_CHOICES
from ecgtransfer.training.data import batch_loader
from ecgtransfer.training.engine import _Trainer
from ecgtransfer.training.precision import cpu_info, dtype_name
from ecgtransfer.training.runtime import infer, peak_memory_mb, reset_peak_memory

FP32, AUTO = "off:off", "auto:auto"


def synthetic_store(path: Path, n: int = 2048, length: int = 256) -> SegmentStore:
    rng = np.random.default_rng(0)
    t = np.arange(length) / 360.0
    segs = (np.sin(2 * np.pi * rng.uniform(1, 3, (n, 1, 1)) * t) + 0.1 * rng.normal(size=(n, 1, length)))
    labels = rng.integers(0, 5, n)
    ids = [str(i % 20) for i in range(n)]
    return write_store(path, segs.astype(np.float32), labels, record_ids=ids, patient_ids=ids, positions=np.arange(n),
                       class_names=["N", "S", "V", "F", "Q"], fs=360.0, lead_names=["MLII"])


BATCH_SIZE, IMAGE_SIZE = 16, 224  # of a single-mode run
COMPARE_SIZES = "64:8,224:2"  # of --compare


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the sizes it will measure resolved: ``--image-size`` / ``--batch-size`` apply to
    ``--compare`` too (``--image-size 128 --batch-size 4`` measures 128 at batch 4; ``--batch-size 4`` alone
    measures the default sizes at batch 4), and ``--image-size`` with ``--sizes`` is refused in one line rather
    than silently ignored. Under ``--compare``, ``args.sizes`` is the resolved ``SIZE:BATCH,...``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=None,
                    help=f"batch size (default {BATCH_SIZE}; with --compare: the batch of every measured size)")
    ap.add_argument("--image-size", type=int, default=None,
                    help=f"image size (default {IMAGE_SIZE}; with --compare: measure this size only)")
    ap.add_argument("--encoding", default="spectrogram")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (as --num-workers of train)")
    ap.add_argument("--augment", action="store_true", help="signal augmentation, as train --augment")
    ap.add_argument("--store", help="a real segment store (default: a synthetic one)")
    ap.add_argument("--amp", choices=AMP_CHOICES, default="auto", help="TrainConfig.amp (single-mode run)")
    ap.add_argument("--channels-last", choices=CHANNELS_LAST_CHOICES, default="auto",
                    help="TrainConfig.channels_last (single-mode run)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the train step (single-mode run)")
    ap.add_argument("--compare", action="store_true", help="fp32 vs the auto choice (and --modes), interleaved")
    ap.add_argument("--modes", default="", help="extra AMP:CHANNELS_LAST[:compile] modes for --compare")
    ap.add_argument("--sizes", default=None,
                    help=f"SIZE[:BATCH],... image sizes (and batch) of --compare (default {COMPARE_SIZES})")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    for name in ("batch_size", "image_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not args.compare:
        if args.sizes is not None:
            ap.error("--sizes applies to --compare only (a single-mode run measures --image-size)")
        args.image_size = IMAGE_SIZE if args.image_size is None else args.image_size
        args.batch_size = BATCH_SIZE if args.batch_size is None else args.batch_size
        return args
    if args.sizes is not None and args.image_size is not None:
        ap.error("--image-size and --sizes both give the sizes of --compare: give one "
                 "(--sizes SIZE[:BATCH],... for several)")
    if args.sizes is None:
        sizes = ([(args.image_size, args.batch_size or BATCH_SIZE)] if args.image_size is not None
                 else [(size, args.batch_size or b) for size, b in _sizes(COMPARE_SIZES, BATCH_SIZE)])
    else:
        sizes = _sizes(args.sizes, args.batch_size or BATCH_SIZE)
        if not sizes:
            ap.error(f"--sizes {args.sizes!r} names no size")
        if any(size < 1 or b < 1 for size, b in sizes):
            ap.error(f"--sizes {args.sizes!r}: sizes and batches must be >= 1")
    args.sizes = ",".join(f"{size}:{b}" for size, b in sizes)
    args.batch_size = args.batch_size or BATCH_SIZE
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.compare:
        compare(args)
        return

    tmp = tempfile.TemporaryDirectory()
    store = SegmentStore(args.store) if args.store else synthetic_store(Path(tmp.name) / "store")
    n_steps = args.warmup + args.steps
    n_train = min(len(store) - 2 * args.batch_size, n_steps * args.batch_size)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(store))
    split = {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + 2 * args.batch_size]),
             "test": np.zeros(0, dtype=np.int64)}
    cfg = TrainConfig(init="scratch", encoding=args.encoding, image_size=args.image_size, batch_size=args.batch_size,
                      device=args.device, num_threads=args.threads, num_workers=args.num_workers,
                      augment=args.augment, epochs=1, progress=False, amp=args.amp,
                      channels_last=args.channels_last, compile=args.compile)
    trainer = _Trainer(store, cfg, Path(tmp.name) / "run", resume=False, split=split)
    trainer.setup()
    dev = trainer.device
    batches = trainer.plan.batches(0)[:n_steps]
    if len(batches) < n_steps:
        raise SystemExit(f"the store gives {len(batches)} batches of {args.batch_size}; need {n_steps}")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    # the run's label map and RR context width, as the engine's own loop reads its batches (where it has them)
    extra = {k: getattr(trainer, k) for k in ("label_map", "rr_dim") if hasattr(trainer, k)}
    loader = iter(batch_loader(store, batches, num_workers=cfg.num_workers, pin_memory=dev.type == "cuda", **extra))
    times: dict[str, list[float]] = {"load": [], "train_step": []}
    trainer.train_model.train()
    reset_peak_memory(dev)
    for k in range(n_steps):
        t0 = time.perf_counter()
        item = next(loader)  # (x, y, idx) or (x, y, idx, rr)
        x = item[0].to(dev, non_blocking=True)
        y = item[1].to(dev, non_blocking=True)
        rr = () if len(item) < 4 or item[3] is None else (item[3].to(dev, non_blocking=True),)
        t1 = time.perf_counter()
        trainer.train_step(x, y, 0, k, *rr)
        sync()
        t2 = time.perf_counter()
        if k >= args.warmup:
            times["load"].append(t1 - t0)
            times["train_step"].append(t2 - t1)
    peak = peak_memory_mb(dev)

    render: list[float] = []
    with torch.no_grad():
        for idx in batches[args.warmup:]:
            x = torch.from_numpy(store.batch(idx)).to(dev)
            sync()
            t0 = time.perf_counter()
            trainer.train_encoder(x)  # the encoder train_step renders with
            sync()
            render.append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    step_s = med["load"] + med["train_step"]
    render_s = statistics.median(render)
    result = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_info()["model"],
        "torch": torch.__version__, "threads": args.threads, "batch_size": args.batch_size,
        "image_size": args.image_size, "encoding": args.encoding, "steps": args.steps, "warmup": args.warmup,
        "num_workers": args.num_workers, "augment": args.augment,
        "amp_config": cfg.amp, "channels_last_config": cfg.channels_last, "compile": cfg.compile,
        "amp": dtype_name(trainer.dtype), "channels_last": trainer.channels_last, "cpu": cpu_info(),
        "deterministic": cfg.deterministic, "grad_clip": cfg.grad_clip, "imbalance": cfg.imbalance,
        "segment_shape": list(store.shape[1:]),
        "step_s": step_s, "images_per_s": args.batch_size / step_s,
        "load_s": med["load"], "train_step_s": med["train_step"], "render_s": render_s,
        "load_share": med["load"] / step_s, "render_share": render_s / step_s,
        "load_plus_render_share": (med["load"] + render_s) / step_s,
        "step_s_all": [a + b for a, b in zip(times["load"], times["train_step"])],
        "peak_memory_mb": peak,
        "peak_memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS",
        "command": "python benchmarks/train_throughput.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k not in ("out", "store", "augment", "compile", "compare", "modes", "sizes"))
        + (" --augment" if args.augment else "") + (" --compile" if args.compile else ""),
    }
    out = Path(args.out)
    atomic_write_json(out / f"train_throughput_{dev.type}.json", result)
    print(json.dumps(result, indent=2))


def _parse_mode(text: str) -> tuple[str, str, bool]:
    """``"bf16:on"`` -> ``("bf16", "on", False)``; ``"off:off:compile"`` -> ``("off", "off", True)``."""
    parts = text.split(":")
    if (len(parts) not in (2, 3) or parts[0] not in AMP_CHOICES or parts[1] not in CHANNELS_LAST_CHOICES
            or (len(parts) == 3 and parts[2] != "compile")):
        raise SystemExit(f"--modes: {text!r} is not AMP:CHANNELS_LAST[:compile] with AMP one of {AMP_CHOICES} "
                         f"and CHANNELS_LAST one of {CHANNELS_LAST_CHOICES}")
    return parts[0], parts[1], len(parts) == 3


def _summary(times: list[float], images: int, warmup: int) -> dict[str, object]:
    med = statistics.median(times[warmup:])
    out: dict[str, object] = {"images_per_s": images / med, "step_s": med, "step_s_all": times}
    return out


def _sizes(text: str, batch: int) -> list[tuple[int, int]]:
    """``"64:8,224:2"`` -> ``[(64, 8), (224, 2)]``; a size without ``:BATCH`` takes ``--batch-size``."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        size, _, b = part.partition(":")
        try:
            out.append((int(size), int(b) if b else batch))
        except ValueError:
            raise SystemExit(f"--sizes: {part!r} is not SIZE or SIZE:BATCH") from None
    return out


def _paired(mine: list[float], ref: list[float], warmup: int) -> dict[str, float]:
    """images/s of ``mine`` over ``ref`` from per-round step times: the median of the ratios of the two steps
    of each round (adjacent in time, so a shared machine's load changes cancel), and for reference the ratio
    of the median and of the fastest steps."""
    a, r = mine[warmup:], ref[warmup:]
    return {"paired_median": statistics.median(y / x for x, y in zip(a, r)),
            "of_medians": statistics.median(r) / statistics.median(a), "of_fastest": min(r) / min(a)}


def compare(args: argparse.Namespace) -> None:
    """Interleaved fp32 / auto / ``--modes`` measurement of the engine's train step and evaluation forward."""
    extra = [m.strip() for m in args.modes.split(",") if m.strip()]
    modes = list(dict.fromkeys([FP32, AUTO, *extra]))
    parsed = {m: _parse_mode(m) for m in modes}
    sizes = _sizes(args.sizes, args.batch_size)
    tmp = tempfile.TemporaryDirectory()
    store = SegmentStore(args.store) if args.store else synthetic_store(Path(tmp.name) / "store")
    rounds = args.warmup + args.steps
    order = np.random.default_rng(0).permutation(len(store))
    results: dict[str, dict[str, object]] = {m: {"train": {}, "eval": {}} for m in modes}
    steps: dict[str, dict[str, dict[str, list[float]]]] = {m: {"train": {}, "eval": {}} for m in modes}
    for size, b in sizes:
        eval_b = 2 * b  # TrainConfig.eval_batch() of these runs
        n_train = 2 * rounds * b  # room for segments a run leaves out (classes it does not train on)
        split = {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + 2 * eval_b]),
                 "test": np.zeros(0, dtype=np.int64)}
        trainers: dict[str, _Trainer] = {}
        for m in modes:
            amp, cl, comp = parsed[m]
            cfg = TrainConfig(init="scratch", encoding=args.encoding, image_size=size, batch_size=b,
                              device=args.device, num_threads=args.threads, num_workers=0, epochs=1,
                              progress=False, amp=amp, channels_last=cl, compile=comp)
            t = _Trainer(store, cfg, Path(tmp.name) / f"run-{size}-{m.replace(':', '-')}", resume=False, split=split)
            t.setup()
            t.train_model.train()
            trainers[m] = t
            results[m].update(amp=dtype_name(t.dtype), channels_last=t.channels_last, compile=comp)
        first = trainers[FP32]
        dev = first.device
        labels = np.asarray(getattr(first, "run_labels", store.labels))  # the run's labels of every segment
        train_pool, eval_idx = first.parts["train"], np.sort(first.parts["val"][:eval_b])
        if len(train_pool) < rounds * b or len(eval_idx) < eval_b:
            raise SystemExit(f"the store has too few usable segments for {rounds} rounds of batch {b}")
        train_idx = [np.sort(train_pool[k * b:(k + 1) * b]) for k in range(rounds)]

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        data = [(torch.from_numpy(store.batch(i)).to(dev), torch.from_numpy(labels[i]).long().to(dev))
                for i in train_idx]
        times: dict[str, list[float]] = {m: [] for m in modes}
        for k, (x, y) in enumerate(data):
            for m in (modes if k % 2 == 0 else modes[::-1]):
                sync()
                t0 = time.perf_counter()
                trainers[m].train_step(x, y, 0, k)
                sync()
                times[m].append(time.perf_counter() - t0)
        for m in modes:
            res = _summary(times[m], b, args.warmup)
            res["batch_size"] = b
            if parsed[m][2]:  # the first step compiles; the steady steps are the median after warmup
                res["first_step_s"] = times[m][0]
                res["compile_s"] = times[m][0] - float(res["step_s"])
                gain = statistics.median(times[FP32][args.warmup:]) - float(res["step_s"])
                res["break_even_steps"] = res["compile_s"] / gain if gain > 0 else None
            results[m]["train"][str(size)] = res  # type: ignore[index]
            steps[m]["train"][str(size)] = times[m]
            print(f"train {size:>3} px b{b:<3} {m:<16} {res['images_per_s']:8.2f} img/s", flush=True)

        ex, ey = torch.from_numpy(store.batch(eval_idx)), torch.from_numpy(labels[eval_idx]).long()
        eval_modes = [m for m in modes if not parsed[m][2]]  # the engine evaluates its eager model
        etimes: dict[str, list[float]] = {m: [] for m in eval_modes}
        for k in range(rounds):
            for m in (eval_modes if k % 2 == 0 else eval_modes[::-1]):
                t = trainers[m]
                t0 = time.perf_counter()
                infer(t.model, t.encoder, [(ex, ey, eval_idx)], dev, dtype=t.dtype, channels_last=t.channels_last,
                      weight=t.loss_weight)  # ends with a device-to-host read-back
                etimes[m].append(time.perf_counter() - t0)
        for m in eval_modes:
            res = _summary(etimes[m], eval_b, args.warmup)
            res["batch_size"] = eval_b
            results[m]["eval"][str(size)] = res  # type: ignore[index]
            steps[m]["eval"][str(size)] = etimes[m]
            print(f"eval  {size:>3} px b{eval_b:<3} {m:<16} {res['images_per_s']:8.2f} img/s", flush=True)
        del trainers, data

    def ratios(m: str, how: str = "paired_median") -> dict[str, dict[str, float]]:
        return {phase: {s: _paired(t, steps[FP32][phase][s], args.warmup)[how] for s, t in steps[m][phase].items()}
                for phase in ("train", "eval")}

    dev = torch.device(args.device)
    result = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_info()["model"],
        "cpu": cpu_info(), "torch": torch.__version__, "threads": args.threads,
        "sizes": {str(s): {"batch_size": b, "eval_batch_size": 2 * b} for s, b in sizes},
        "encoding": args.encoding, "steps": args.steps, "warmup": args.warmup,
        "segment_shape": list(store.shape[1:]), "store": args.store or "synthetic", "interleaved": True,
        "ratio_method": "images/s of a mode over fp32 (off:off): median over the timed rounds of the ratio of the "
                        "two modes' step times within each round",
        "auto_resolves_to": {"amp": results[AUTO]["amp"], "channels_last": results[AUTO]["channels_last"]},
        "ratios": ratios(AUTO),
        "ratios_over_fp32": {m: ratios(m) for m in modes},
        "ratios_of_medians": {m: ratios(m, "of_medians") for m in modes},
        "ratios_of_fastest": {m: ratios(m, "of_fastest") for m in modes},
        "modes": results,
        "command": "python benchmarks/train_throughput.py --compare " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k in ("device", "batch_size", "encoding", "steps", "warmup", "threads", "sizes")
            or (k == "modes" and v)) + (f" --store {args.store}" if args.store else "") + f" --out {args.out}",
    }
    atomic_write_json(Path(args.out) / "train_throughput_compare.json", result)
    print(json.dumps({k: result[k] for k in ("cpu", "auto_resolves_to", "ratios", "ratios_over_fp32")}, indent=2))


if __name__ == "__main__":
    main()
