"""``ecgtransfer weights``: pre-fetch ImageNet ResNet50 weights for offline machines, inspect weight files.

    ecgtransfer weights fetch [--version v1|v2] --out weights/     # on a machine with internet
    ecgtransfer weights inspect weights/resnet50-11ad3fa6.pth      # what would load, and how
"""
from __future__ import annotations

import argparse
import json
import sys

from ecgtransfer.models.weight_registry import DEFAULT_WEIGHTS, VERSION_NAMES, WEIGHT_NAMES, get_weights

_DEFAULT_VERSION = get_weights(DEFAULT_WEIGHTS).version


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="fetch ImageNet ResNet50 weights for offline use, or inspect a weights file",
        description="Pre-download torchvision's ImageNet ResNet50 weights (for machines without internet) "
        "or check how a weights file maps onto ecgtransfer's ResNet50.",
    )
    sub = parser.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)

    fetch = sub.add_parser(
        "fetch",
        help="download torchvision's ImageNet ResNet50 weights to a file or folder",
        description="Download torchvision's ImageNet ResNet50 weights (SHA256-checked) and write them "
        "atomically to --out. Copy the result to an offline machine and pass its path as the weights, "
        "or point ECGTRANSFER_WEIGHTS_DIR at the folder.",
    )
    fetch.add_argument("--version", choices=VERSION_NAMES, default=_DEFAULT_VERSION,
                       help=f"default {_DEFAULT_VERSION}; " + "; ".join(
                           f"{v}: {get_weights(v).member}, {get_weights(v).description}" for v in VERSION_NAMES
                       ).replace("%", "%%"))
    fetch.add_argument("--out", required=True,
                       help="output file, or an existing folder / a path ending in '/' to keep torchvision's file name")
    fetch.add_argument("--overwrite", action="store_true",
                       help="replace an existing --out file that is not already these weights")
    fetch.set_defaults(func=_fetch)

    inspect = sub.add_parser(
        "inspect",
        help="print the load report of a weights file",
        description="Load a weights file (torchvision state dict, ecgtransfer state dict or checkpoint; "
        f"or {' / '.join(WEIGHT_NAMES)}) into ResNet50 and print what loaded. Exit code 2 "
        "when it does not match.",
    )
    inspect.add_argument("path", help=f"weights file, or {' / '.join(WEIGHT_NAMES)}")
    inspect.add_argument("--num-classes", type=int, default=None,
                         help="head size of the model to load into (default: the file's head size, else 1000)")
    inspect.add_argument("--in-channels", type=int, default=None,
                         help="input channels of the model (default: the file's)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(func=_inspect)


def _check_target(args: argparse.Namespace) -> None:
    """The output rule of :mod:`ecgtransfer._outdir` for the file ``fetch`` writes: not inside a run, store or
    bench folder, and an existing file is replaced only when it already holds these weights (its SHA256 starts
    with their prefix) or with --overwrite."""
    import hashlib
    import os
    from pathlib import Path

    from ecgtransfer._outdir import check_output_file
    from ecgtransfer.cli._outputs import every_layout

    w = get_weights(args.version)
    target = Path(args.out).expanduser()
    if target.is_dir() or args.out.endswith(("/", os.sep)):
        target = target / w.file_name
    same = False
    if target.is_file() and w.hash_prefix:
        digest = hashlib.sha256()
        with open(target, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        same = digest.hexdigest().startswith(w.hash_prefix)
    check_output_file(target, option="--out", overwrite=args.overwrite or same, layouts=every_layout())


def _fetch(args: argparse.Namespace) -> int:
    """Get the version's file (SHA256-checked), prove it loads into ResNet50, then write it to ``--out``."""
    import logging

    from ecgtransfer.models.resnet import ResNet50
    from ecgtransfer.models.weight_registry import fetch_imagenet, imagenet_file
    from ecgtransfer.models.weights import apply_weights, read_state_dict_file

    _check_target(args)  # the output rule, before anything is downloaded or written
    progress = args.progress
    report = apply_weights(ResNet50(1000), read_state_dict_file(imagenet_file(args.version, progress=progress)))
    path = fetch_imagenet(args.version, args.out, progress=progress)
    logging.getLogger(__name__).info("%s: %d tensors load into ResNet50", path, len(report.loaded))
    print(path)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ecgtransfer.models.resnet import ResNet50
    from ecgtransfer.models.weights import apply_weights, check_weights, read_weights

    src = read_weights(args.path, progress=args.progress)
    head = src.state.get("classifier.fc.weight")
    conv = src.state.get("features_1.stem.conv.weight")
    num_classes = args.num_classes or (int(head.shape[0]) if head is not None and head.dim() == 2 else 1000)
    in_channels = args.in_channels or (int(conv.shape[1]) if conv is not None and conv.dim() == 4 else 3)
    model = ResNet50(num_classes, in_channels=in_channels)
    report, _ = check_weights(model, src)
    if report.ok:
        report = apply_weights(model, src)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_text())
    if not report.ok:
        print(f"ecgtransfer: error: {args.path} does not match ResNet50 (see the report above)", file=sys.stderr)
        return 2
    return 0
