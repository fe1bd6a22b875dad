"""``ecgtransfer images STORE --encoding E --out DIR``: materialise the 3xSxS images of a segment store."""
from __future__ import annotations

import argparse
import json
from typing import Any


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def register(subparsers: argparse._SubParsersAction) -> None:
    from ecgtransfer.imaging.encode import ENCODINGS, IMAGE_SIZE

    p = subparsers.add_parser(
        "images", help="materialise the images of a segment store (uint8 .npy or PNG files + index.csv)",
        description="Render every segment of STORE as an image (docs/imaging.md) and write them into OUT as one "
                    "uint8 array images.npy [N, 3, S, S] or PNG files, with index.csv (file, label, record, patient). "
                    "Images are stored before ImageNet normalisation (round(255 * v), v in [0, 1]). "
                    "Re-running with the same arguments resumes an interrupted run.")
    p.add_argument("store", help="segment store directory")
    p.add_argument("--encoding", default="spectrogram", choices=ENCODINGS, help="image encoding (default spectrogram)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", default="npy", choices=["npy", "png"], help="npy (default) or png")
    p.add_argument("--size", type=int, default=IMAGE_SIZE, help=f"image side in pixels (default {IMAGE_SIZE})")
    p.add_argument("--batch-size", type=int, default=64, help="segments per chunk (default 64)")
    p.add_argument("--lead", default="0", help="lead index, or 'stack' for one channel per lead (default 0)")
    p.add_argument("--colour", "--color", default="gray", choices=["gray", "colormap"], help="gray or colormap")
    p.add_argument("--cmap", default="viridis", help="matplotlib colormap for --colour colormap")
    p.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
                   help="encoding parameter, JSON value (e.g. --param threshold='\"point\"' --param dimension=2; "
                        "with --encoding stack: --param recurrence='{\"threshold\": \"point\"}'); repeatable")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace images made with other parameters")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ecgtransfer.imaging.export import materialise

    from ecgtransfer._validate import image_size, positive_int
    from ecgtransfer.errors import ConfigError

    image_size(args.size, "--size")  # before the [N, 3, S, S] output is allocated
    from ecgtransfer._outdir import check_not_inside_output
    from ecgtransfer.cli._outputs import every_layout

    check_not_inside_output(args.out, inputs={"STORE": args.store},  # not inside a run, a store or a bench folder
                            layouts=every_layout())
    positive_int(args.batch_size, "--batch-size")
    if args.lead == "stack":
        lead: int | str = "stack"
    else:
        try:
            lead = int(args.lead)
        except ValueError:
            raise ConfigError(f"--lead must be a lead index or 'stack', got {args.lead!r}") from None
    out = materialise(args.store, args.out, encoding=args.encoding, size=args.size, format=args.format,
                      batch_size=args.batch_size, lead=lead, colour=args.colour, cmap=args.cmap, device=args.device,
                      overwrite=args.overwrite, progress=args.progress, **dict(args.param))
    info = json.loads((out / "images.json").read_text())
    print(f"images: {info['shape'][0]} x {info['shape'][1:]} uint8 ({args.format}) in {out}; index: {out / 'index.csv'}")
    return 0
