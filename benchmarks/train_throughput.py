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
``[N, 1, 256]``) so it runs anywhere; pass ``--store`` to use a real one.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecgtransfer._atomic import atomic_write_json
from ecgtransfer.store import SegmentStore, write_store
from ecgtransfer.training import TrainConfig
from ecgtransfer.training.data import batch_loader
from ecgtransfer.training.engine import _Trainer
from ecgtransfer.training.runtime import peak_memory_mb, reset_peak_memory


def synthetic_store(path: Path, n: int = 2048, length: int = 256) -> SegmentStore:
    rng = np.random.default_rng(0)
    t = np.arange(length) / 360.0
    segs = (np.sin(2 * np.pi * rng.uniform(1, 3, (n, 1, 1)) * t) + 0.1 * rng.normal(size=(n, 1, length)))
    labels = rng.integers(0, 5, n)
    ids = [str(i % 20) for i in range(n)]
    return write_store(path, segs.astype(np.float32), labels, record_ids=ids, patient_ids=ids, positions=np.arange(n),
                       class_names=["N", "S", "V", "F", "Q"], fs=360.0, lead_names=["MLII"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--encoding", default="spectrogram")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (as --num-workers of train)")
    ap.add_argument("--augment", action="store_true", help="signal augmentation, as train --augment")
    ap.add_argument("--store", help="a real segment store (default: a synthetic one)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

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
                      augment=args.augment, epochs=1, progress=False)
    trainer = _Trainer(store, cfg, Path(tmp.name) / "run", resume=False, split=split)
    trainer.setup()
    dev = trainer.device
    batches = trainer.plan.batches(0)[:n_steps]
    if len(batches) < n_steps:
        raise SystemExit(f"the store gives {len(batches)} batches of {args.batch_size}; need {n_steps}")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    loader = iter(batch_loader(store, batches, num_workers=cfg.num_workers, pin_memory=dev.type == "cuda"))
    times: dict[str, list[float]] = {"load": [], "train_step": []}
    trainer.train_model.train()
    reset_peak_memory(dev)
    for k in range(n_steps):
        t0 = time.perf_counter()
        x, y, _ = next(loader)
        x = x.to(dev, non_blocking=True)
        y = y.to(dev, non_blocking=True)
        t1 = time.perf_counter()
        trainer.train_step(x, y, 0, k)
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
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": args.threads, "batch_size": args.batch_size,
        "image_size": args.image_size, "encoding": args.encoding, "steps": args.steps, "warmup": args.warmup,
        "num_workers": args.num_workers, "augment": args.augment,
        "amp": None if trainer.dtype is None else str(trainer.dtype), "channels_last": trainer.channels_last,
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
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "store", "augment"))
        + (" --augment" if args.augment else ""),
    }
    out = Path(args.out)
    atomic_write_json(out / f"train_throughput_{dev.type}.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
