"""Make docs/encodings.png: one mitdb beat of each AAMI class with the images ecgtransfer makes of it.

Reads the shared PhysioNet mirror directly with wfdb (no store needed)::

    .venv/bin/python benchmarks/readme_figure.py [--data ../shared/data/physionet] [--out docs/encodings.png]

Rows: AAMI classes N, S, V, F, Q (symbols N L R e j / A a J S / V E / F / "/" f Q). Columns: the beat
(lead MLII, 0.25 s before to 0.46 s after the R peak, 256 samples at 360 Hz), its spectrogram and recurrence
plot (as ``encode`` makes them, before ImageNet normalisation, viridis colormap), and the stacked image
(spectrogram, recurrence plot, Gramian summation field as R, G, B).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
AAMI = {"N": "NLRej", "S": "AaJS", "V": "VE", "F": "F", "Q": "/fQ"}
NAMES = {"N": "normal / bundle branch block", "S": "supraventricular ectopic", "V": "ventricular ectopic",
         "F": "fusion of ventricular and normal", "Q": "paced / unclassifiable"}
BEFORE, LENGTH, FS = 90, 256, 360.0


def find_examples(root: Path) -> dict[str, tuple[np.ndarray, str, int, str]]:
    """Per class: (beat [256] in mV, record, sample, symbol): the middle one of the first record that has it."""
    import wfdb

    base = root / "mitdb" / "1.0.0"
    records = (base / "RECORDS").read_text().split()
    found: dict[str, tuple[np.ndarray, str, int, str]] = {}
    for cls, symbols in AAMI.items():
        for rec in records:
            ann = wfdb.rdann(str(base / rec), "atr")
            hits = [(s, sym) for s, sym in zip(ann.sample, ann.symbol)
                    if sym in symbols and BEFORE <= s < 650000 - (LENGTH - BEFORE)]
            if not hits:
                continue
            s, sym = hits[len(hits) // 2]
            sig, _ = wfdb.rdsamp(str(base / rec), channels=[0], sampfrom=int(s) - BEFORE, sampto=int(s) - BEFORE + LENGTH)
            found[cls] = (sig[:, 0].astype(np.float32), rec, int(s), sym)
            break
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("ECGTRANSFER_TEST_PHYSIONET",
                                                     str(REPO.parent / "shared" / "data" / "physionet")))
    ap.add_argument("--out", default=str(REPO / "docs" / "encodings.png"))
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ecgtransfer._atomic import atomic_open
    from ecgtransfer.imaging import encode

    examples = find_examples(Path(args.data))
    classes = [c for c in AAMI if c in examples]
    beats = torch.from_numpy(np.stack([examples[c][0] for c in classes]))
    spec = encode(beats, "spectrogram", args.size, fs=FS, colour="colormap", normalize=False)
    rp = encode(beats, "recurrence", args.size, fs=FS, colour="colormap", normalize=False)
    stack = encode(beats, "stack", args.size, fs=FS, normalize=False)

    fig, axes = plt.subplots(len(classes), 4, figsize=(12, 2.9 * len(classes)),
                             gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
    t = (np.arange(LENGTH) - BEFORE) / FS
    titles = ["beat (MLII, mV)", "spectrogram 0.5-50 Hz (dB)", "recurrence plot", "stack: R spectrogram,\nG recurrence, B GASF"]
    for row, cls in enumerate(classes):
        beat, rec, sample, sym = examples[cls]
        ax = axes[row, 0]
        ax.plot(t, beat, color="black", lw=1.0)
        ax.axvline(0, color="tab:red", lw=0.6, ls=":")
        ax.set_ylabel(f"{cls}: {NAMES[cls]}\nrecord {rec}, symbol '{sym}'", fontsize=9)
        ax.set_xlabel("time from R peak (s)", fontsize=8)
        ax.tick_params(labelsize=7)
        for col, img in enumerate([spec, rp, stack], start=1):
            axes[row, col].imshow(img[row].permute(1, 2, 0).numpy(), interpolation="nearest")
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        if row == 0:
            for col, title in enumerate(titles):
                axes[0, col].set_title(title, fontsize=10)
    missing = [c for c in AAMI if c not in examples]
    note = (f"MIT-BIH Arrhythmia Database (mitdb 1.0.0), {len(Path(args.data, 'mitdb', '1.0.0', 'RECORDS').read_text().split())} "
            f"records of the shared mirror; images {args.size}x{args.size} as ecgtransfer.imaging.encode makes them "
            "(before ImageNet normalisation).")
    q = examples.get("Q")
    if q is not None and q[3] == "Q":
        note += " The shared records have no paced beats ('/', 'f'): the Q example is an unclassifiable beat ('Q')."
    if missing:
        note += f" No beat of class(es) {', '.join(missing)} in these records."
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out = Path(args.out)
    with atomic_open(out) as fh:
        fig.savefig(fh, format="png", dpi=72)
    print(f"wrote {out}: classes {classes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
