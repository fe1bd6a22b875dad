"""Images per second: ecgtransfer.imaging (batched torch) vs the path users take today (pyts / scipy per sample).

Both paths start from the same real mitdb beats (float32 [N, L], 360 Hz, read with wfdb from the shared
mirror) and end with the same thing: float32 [N, 3, 224, 224] ImageNet-normalised tensors, per-image min-max
scaled, gray replicated to three channels.

(a) ecgtransfer: ``encode(x, encoding, 224, fs=360)`` on batches of ``--batch`` beats.
(b) today, per sample: pyts ``RecurrencePlot`` / ``GramianAngularField`` / ``MarkovTransitionField``
    (image_size = min(224, L), PAA) or
    ``scipy.signal.spectrogram``, then PIL bilinear resize to 224 x 224 where needed, min-max, three channels,
    ImageNet normalisation, ``torch.from_numpy``; (b') the same with pyts called once on the whole batch
    (numba-parallel) and per-image resizing.

On a CUDA device it also times one ResNet50 training step (SGD, batch ``--batch``, 224 x 224) and reports
rendering time as a fraction of it.

    .venv/bin/python benchmarks/imaging.py --threads 2 --out benchmarks/results/imaging-cpu.json

OpenMP threads wait passively by default here (``--omp-wait-policy``): on a shared CPU, spinning idle threads
starve the working ones, and torch's kernels suffer far more from that than one-sample-at-a-time numpy code.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ECGTRANSFER_TEST_PHYSIONET", REPO.parent / "shared" / "data" / "physionet"))


def load_beats(n: int, length: int = 256, before: int = 90) -> "np.ndarray":
    import numpy as np
    import wfdb

    out = []
    for record in ["101", "106", "119", "208", "209", "215"]:
        base = str(DATA / "mitdb" / "1.0.0" / record)
        sig, _ = wfdb.rdsamp(base, channels=[0], sampto=300 * 360)
        ann = wfdb.rdann(base, "atr", sampto=300 * 360)
        for s, sym in zip(ann.sample, ann.symbol):
            if sym in "NLRejAaJSVEF/fQ" and before <= s < len(sig) - (length - before):
                out.append(sig[s - before:s - before + length, 0])
            if len(out) >= n * (1 + ["101", "106", "119", "208", "209", "215"].index(record)) // 6 + 1:
                break
    beats = np.asarray(out[:n], dtype=np.float32)
    if len(beats) < n:
        raise SystemExit(f"only {len(beats)} beats found")
    return beats


def best_rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up (caches, numba, allocator)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_images / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=128, help="beats per measurement")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "imaging-cpu.json"))
    ap.add_argument("--omp-wait-policy", default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                    choices=["PASSIVE", "ACTIVE"],
                    help="OpenMP idle threads sleep (PASSIVE, default) or spin (ACTIVE). On a CPU shared with other "
                         "work, spinning threads starve the working ones: torch with 2 threads ran 5-15x slower "
                         "under ACTIVE on a 2-core machine at load 6 (both paths run under the same policy)")
    args = ap.parse_args()
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # read when libgomp starts, i.e. at torch's import

    import numpy as np
    import scipy.signal as ss
    import torch
    from PIL import Image
    from pyts.image import GramianAngularField, MarkovTransitionField, RecurrencePlot

    from ecgtransfer.imaging import encode

    torch.set_num_threads(args.threads)
    S, fs = args.size, 360.0
    beats = load_beats(args.n)
    L = beats.shape[1]
    mean = np.asarray([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.asarray([0.229, 0.224, 0.225], np.float32)[:, None, None]

    def finish(img: np.ndarray) -> np.ndarray:
        """One 2-D image -> normalised [3, S, S] the way a user writes it: PIL resize, min-max, 3 channels."""
        img = img.astype(np.float32)
        if img.shape != (S, S):
            img = np.asarray(Image.fromarray(img, mode="F").resize((S, S), Image.BILINEAR))
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        return (np.broadcast_to(img, (3, S, S)) - mean) / std

    gaf_size = min(S, L)
    refs = {
        "recurrence": lambda b: RecurrencePlot().transform(b),
        "gasf": lambda b: GramianAngularField(image_size=gaf_size, method="summation").transform(b),
        "gadf": lambda b: GramianAngularField(image_size=gaf_size, method="difference").transform(b),
        "mtf": lambda b: MarkovTransitionField(image_size=gaf_size, n_bins=8).transform(b),
        "spectrogram": lambda b: np.stack([10 * np.log10(np.maximum(ss.spectrogram(
            s, fs, window="hann", nperseg=64, noverlap=60, nfft=256, mode="psd")[2][1:36], 1e-10))[::-1]
            for s in b]),
    }

    def baseline_per_sample(enc: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([finish(refs[enc](b[None])[0]) for b in beats]))

    def baseline_batched(enc: str) -> torch.Tensor:
        imgs = refs[enc](beats)
        return torch.from_numpy(np.stack([finish(i) for i in imgs]))

    def ours(enc: str, device: str = "cpu") -> torch.Tensor:
        x = torch.from_numpy(beats).to(device)
        outs = [encode(x[i:i + args.batch], enc, S, fs=fs) for i in range(0, len(x), args.batch)]
        if device != "cpu":
            torch.cuda.synchronize()
        return outs[-1]

    rows = []
    for enc in ["spectrogram", "recurrence", "gasf", "gadf", "mtf"]:
        r_ours = best_rate(lambda: ours(enc), len(beats), args.repeats)
        r_ps = best_rate(lambda: baseline_per_sample(enc), len(beats), args.repeats)
        r_b = best_rate(lambda: baseline_batched(enc), len(beats), args.repeats)
        rows.append({"encoding": enc, "ecgtransfer_img_s": round(r_ours, 1), "per_sample_img_s": round(r_ps, 1),
                     "batched_reference_img_s": round(r_b, 1), "ratio_vs_per_sample": round(r_ours / r_ps, 2),
                     "ratio_vs_batched_reference": round(r_ours / r_b, 2)})
        print(f"{enc:12s} ecgtransfer {r_ours:8.1f} img/s | per-sample {r_ps:8.1f} img/s ({r_ours / r_ps:5.2f}x) | "
              f"batched ref {r_b:8.1f} img/s ({r_ours / r_b:5.2f}x)", flush=True)
    r_stack = best_rate(lambda: ours("stack"), len(beats), args.repeats)
    print(f"{'stack':12s} ecgtransfer {r_stack:8.1f} img/s (spectrogram + recurrence + gasf as R, G, B)")

    gpu = None
    if torch.cuda.is_available():
        import torchvision

        dev = "cuda"
        model = torchvision.models.resnet50(num_classes=5).to(dev).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        xb = torch.from_numpy(beats[:args.batch]).to(dev)
        yb = torch.randint(0, 5, (args.batch,), device=dev)
        img = encode(xb, "spectrogram", S, fs=fs)

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(img.contiguous(memory_format=torch.channels_last)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            torch.cuda.synchronize()

        step_rate = best_rate(step, args.batch, 10)
        gpu = {"device": torch.cuda.get_device_name(), "resnet50_train_step_img_s": round(step_rate, 1),
               "batch": args.batch, "encodings": {}}
        for enc in ["spectrogram", "recurrence", "gasf", "gadf", "mtf", "stack"]:
            def render() -> None:
                encode(xb, enc, S, fs=fs)
                torch.cuda.synchronize()
            r = best_rate(render, args.batch, 10)
            gpu["encodings"][enc] = {"img_s": round(r, 1), "fraction_of_step": round(step_rate / r, 4)}
            print(f"GPU {enc:12s} {r:10.1f} img/s = {100 * step_rate / r:.2f}% of a ResNet50 training step "
                  f"({step_rate:.1f} img/s)")

    result = {
        "benchmark": "imaging", "threads": args.threads, "omp_wait_policy": args.omp_wait_policy, "n_beats": len(beats), "beat_length": L, "fs": fs,
        "size": S, "batch": args.batch, "repeats": args.repeats, "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
        "cpu": rows, "stack_img_s": round(r_stack, 1), "gpu": gpu,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from ecgtransfer._atomic import atomic_write_json, atomic_write_text

    atomic_write_json(out, result)
    md = ["| encoding | ecgtransfer img/s | pyts/scipy per sample img/s | ratio | pyts batched img/s | ratio |",
          "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r['encoding']} | {r['ecgtransfer_img_s']} | {r['per_sample_img_s']} | {r['ratio_vs_per_sample']}x | "
           f"{r['batched_reference_img_s']} | {r['ratio_vs_batched_reference']}x |" for r in rows]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
