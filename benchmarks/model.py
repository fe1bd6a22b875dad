"""Forward + backward time of ecgtransfer's ResNet50 against torchvision's resnet50, as a ratio.

Both models get the same weights and the same input; repetitions are interleaved (the order rotates
each repetition so drift and contention hit all alike) and the median is taken. A second torchvision
instance is timed as an A/A control: its ratio to the first shows how much of a deviation is the
harness (allocator, contention from other processes) rather than the model. Where a training run's
``amp="auto"`` picks bf16 (CUDA, CPUs with native bf16; ``ecgtransfer.training.precision``) the input and
models are channels_last and run under bfloat16 autocast (``--no-channels-last`` / ``--no-amp`` to turn off);
on CUDA peak memory per model is reported too. Target: ratio 1.00 +- 0.03.

    python benchmarks/model.py                                   # CPU: batch 8 at 224, 1 thread
    python benchmarks/model.py --device cuda --batch 64          # GPU

Writes ``benchmarks/results/model-<device>.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from ecgtransfer._atomic import atomic_write_json
from ecgtransfer.models import ResNet50
from ecgtransfer.models.weights import from_torchvision_state_dict
from ecgtransfer.training.precision import amp_dtype, use_channels_last


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool, device: torch.device) -> None:
    model.zero_grad(set_to_none=True)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with ctx:
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()


def _time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    _step(model, x, y, amp, device)
    _sync(device)
    return time.perf_counter() - t0


def _peak_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool, device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    model.zero_grad(set_to_none=True)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    _step(model, x, y, amp, device)
    _sync(device)
    return int(torch.cuda.max_memory_allocated(device))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per model (interleaved)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is the most stable on a shared CPU)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--no-control", dest="control", action="store_false", help="skip the A/A control model")
    p.add_argument("--out", default=None, help="JSON result (default benchmarks/results/model-<device>.json)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    auto = amp_dtype("auto", device)  # what a training run's amp/channels_last "auto" choose on this device
    amp = args.amp and auto is not None
    channels_last = args.channels_last and use_channels_last("auto", device, auto if amp else None)
    if on_cuda:
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(0)
    theirs = torchvision.models.resnet50()
    ours = ResNet50(1000)
    mapped, unknown = from_torchvision_state_dict(theirs.state_dict())
    assert not unknown
    ours.load_state_dict(mapped, strict=True)
    models: dict[str, nn.Module] = {"ecgtransfer": ours, "torchvision": theirs}
    if args.control:
        control = torchvision.models.resnet50()
        control.load_state_dict(theirs.state_dict())
        models["torchvision-control"] = control
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in models.values():
        m.to(device=device, memory_format=fmt).train()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch,), device=device)

    for _ in range(args.warmup):
        for m in models.values():
            _step(m, x, y, amp, device)
    _sync(device)

    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for rep in range(args.reps):
        shift = rep % len(order)
        for name in order[shift:] + order[:shift]:
            times[name].append(_time(models[name], x, y, amp, device))
    paired = [a / b for a, b in zip(times["ecgtransfer"], times["torchvision"])]
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["ecgtransfer"] / med["torchvision"]
    best = {name: min(t) for name, t in times.items()}
    peak = {name: _peak_memory(m, x, y, amp, device) for name, m in models.items()}

    result = {
        "benchmark": "resnet50 forward+backward, ecgtransfer vs torchvision",
        "device": torch.cuda.get_device_name(device) if on_cuda else f"cpu ({platform.processor() or platform.machine()})",
        "threads": args.threads,
        "batch": args.batch,
        "size": args.size,
        "channels_last": channels_last,
        "autocast_bf16": amp,
        "reps": args.reps,
        "warmup": args.warmup,
        "seconds": times,
        "median_seconds": med,
        "ratio_median": ratio,
        "ratio_paired_median": statistics.median(paired),
        "min_seconds": best,
        "ratio_min": best["ecgtransfer"] / best["torchvision"],
        "control_ratio_min": (best["torchvision-control"] / best["torchvision"]) if args.control else None,
        "control_ratio_median": (med["torchvision-control"] / med["torchvision"]) if args.control else None,
        "images_per_second": {name: args.batch / t for name, t in med.items()},
        "peak_memory_bytes": peak,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
    }
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"model-{device.type}.json"
    atomic_write_json(out, result)
    print(
        f"{result['device']}, batch {args.batch}x3x{args.size}x{args.size}, channels_last={channels_last}, "
        f"autocast={amp}: ecgtransfer {med['ecgtransfer'] * 1e3:.1f} ms, torchvision {med['torchvision'] * 1e3:.1f} ms "
        f"per forward+backward (median of {args.reps}); ratio {ratio:.3f} "
        f"(paired median {result['ratio_paired_median']:.3f})"
    )
    if args.control:
        print(f"A/A control (torchvision copy / torchvision): {result['control_ratio_median']:.3f}")
    print(
        f"fastest repetition: ecgtransfer {best['ecgtransfer'] * 1e3:.1f} ms, torchvision "
        f"{best['torchvision'] * 1e3:.1f} ms, ratio {result['ratio_min']:.3f}"
        + (f" (control {result['control_ratio_min']:.3f})" if args.control else "")
        + "; on a shared, busy CPU the minimum is the better estimate (other processes only add time)"
    )
    if on_cuda:
        print(f"peak memory: ecgtransfer {peak['ecgtransfer'] / 2**20:.0f} MiB, torchvision {peak['torchvision'] / 2**20:.0f} MiB")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
