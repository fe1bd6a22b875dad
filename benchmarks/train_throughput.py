"""Training-step throughput: images/s, peak memory, and the share of step time spent loading and rendering.

One step = read a batch of segments from the memory-mapped store (``[B, C, L]``), copy to the device, render
images (``[B, 3, S, S]``) with :class:`ecgtransfer.imaging.ImageEncoder`, then forward/backward/optimizer step
of the ResNet50 with the tiered optimizer (bf16 autocast and channels_last on CUDA, as the loop does). The
phases are timed separately (with CUDA synchronisation), after warmup steps.

    python benchmarks/train_throughput.py --device cpu --batch-size 16 --image-size 224 --steps 5 --threads 2
    python benchmarks/train_throughput.py --device cuda --batch-size 128 --image-size 224 --steps 30

Writes ``benchmarks/results/train_throughput_<device>.json``. Uses a synthetic store (sine + noise beats,
``[N, 1, 256]``) so it runs anywhere; pass ``--store`` to use a real one.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ecgtransfer.imaging import ImageEncoder
from ecgtransfer.models import ResNet50
from ecgtransfer.models.tiers import TierConfig, build_optimizer
from ecgtransfer.store import SegmentStore, write_store
from ecgtransfer.training.runtime import amp_dtype, autocast, peak_memory_mb, reset_peak_memory


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
    ap.add_argument("--store", help="a real segment store (default: a synthetic one)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    tmp = tempfile.TemporaryDirectory()
    store = SegmentStore(args.store) if args.store else synthetic_store(Path(tmp.name) / "store")
    model = ResNet50(store.num_classes).to(dev)
    channels_last = dev.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    encoder = ImageEncoder(args.encoding, size=args.image_size, fs=store.fs).to(dev)
    opt = build_optimizer(model, TierConfig())
    dtype = amp_dtype("auto", dev)
    rng = np.random.default_rng(0)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times = {"load": [], "render": [], "model": []}
    reset_peak_memory(dev)
    model.train()
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        idx = np.sort(rng.choice(len(store), args.batch_size, replace=False))
        x = torch.from_numpy(store.batch(idx)).to(dev, non_blocking=True)
        y = torch.from_numpy(np.asarray(store.labels[idx])).to(dev)
        sync()
        t1 = time.perf_counter()
        with torch.no_grad():
            img = encoder(x)
        if channels_last:
            img = img.contiguous(memory_format=torch.channels_last)
        sync()
        t2 = time.perf_counter()
        with autocast(dev, dtype):
            logits = model(img)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        t3 = time.perf_counter()
        if step >= args.warmup:
            times["load"].append(t1 - t0)
            times["render"].append(t2 - t1)
            times["model"].append(t3 - t2)
    mean = {k: float(np.mean(v)) for k, v in times.items()}
    step_s = sum(mean.values())
    result = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": args.threads, "batch_size": args.batch_size,
        "image_size": args.image_size, "encoding": args.encoding, "steps": args.steps,
        "amp": None if dtype is None else str(dtype), "channels_last": channels_last,
        "segment_shape": list(store.shape[1:]),
        "step_s": step_s, "images_per_s": args.batch_size / step_s,
        "load_s": mean["load"], "render_s": mean["render"], "model_s": mean["model"],
        "load_share": mean["load"] / step_s, "render_share": mean["render"] / step_s,
        "load_plus_render_share": (mean["load"] + mean["render"]) / step_s,
        "peak_memory_mb": peak_memory_mb(dev),
        "peak_memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train_throughput_{dev.type}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
