"""``ecgtransfer train STORE --init ... --out RUN_DIR``: fine-tune the ResNet50 on a segment store.

The same command runs under ``torchrun --nproc_per_node=N -m ecgtransfer train ...`` (DistributedDataParallel).
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from ecgtransfer.training.config import AMP_CHOICES, CHANNELS_LAST_CHOICES, normalise_channels_last

log = logging.getLogger(__name__)


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="fine-tune ResNet50 on a segment store",
        description="Fine-tune the ResNet50 on a segment store: images rendered per batch on the training device, "
                    "tiered learning rates, per-epoch metrics, atomic checkpoints, --resume, torchrun. "
                    "Options given on the command line override those of --config.")
    p.add_argument("store", help="segment store directory (from `ecgtransfer convert`)")
    p.add_argument("--out", required=True, help="run directory (created)")
    p.add_argument("--config", help="TOML file with TrainConfig fields (top level or a [train] table)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    _add_model_options(p)
    _add_data_options(p)
    _add_optimisation_options(p)
    _add_execution_options(p)
    p.set_defaults(func=run)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The "model and input" options of ``train``."""
    from ecgtransfer.models.features import LDA_SHRINKAGE
    from ecgtransfer.models.registry import MODELS
    from ecgtransfer.signals.template import BEAT_INPUTS
    from ecgtransfer.imaging.encode import IMAGE_SIZE
    from ecgtransfer.training.config import ENCODINGS, INIT_CHOICES, RR_MODES

    g = p.add_argument_group("model and input")
    g.add_argument("--model", choices=MODELS,
                   help="resnet50 (images, default) | cnn1d (1-D CNN on the raw beat) | features (RR + morphology, "
                        "linear discriminants)")
    g.add_argument("--rr", choices=RR_MODES,
                   help="fuse the store's RR context into the model: auto (when the store has it, default) | on | off")
    g.add_argument("--lda-shrinkage", choices=LDA_SHRINKAGE,
                   help="features model: covariance shrinkage of the weighted LDA, none (as published, default) | auto")
    g.add_argument("--init", help=f"{' | '.join(INIT_CHOICES)} | PATH of weights (default imagenet)")
    g.add_argument("--encoding", choices=ENCODINGS, help="image encoding (default spectrogram)")
    g.add_argument("--image-size", type=int, help=f"image side in pixels (default {IMAGE_SIZE})")
    g.add_argument("--beat-input", choices=BEAT_INPUTS,
                   help="what the model sees of a beat: leads (default) | template (the leads and each minus the "
                        "record's median beat) | template-rgb (lead 1 / lead 1 - template / lead 2 as image channels)")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    """The "data" options of ``train``: split, classes, imbalance, decision rule, augmentation."""
    from ecgtransfer.signals.split import METHODS as SPLIT_METHODS
    from ecgtransfer.training.config import IMBALANCE
    from ecgtransfer.training.decision import DECISIONS, PREVALENCES

    g = p.add_argument_group("data")
    g.add_argument("--split", choices=SPLIT_METHODS, help="how the store is split by patient (default patient)")
    g.add_argument("--fold", type=int, help="test fold of --split kfold")
    g.add_argument("--n-folds", type=int, help="folds of --split kfold")
    g.add_argument("--fold-database", metavar="DB",
                   help="--split kfold on a combined store: folds over this database's patients; the other "
                   "databases always train/validate")
    g.add_argument("--test-records", nargs="+", metavar="R",
                   help="--split records: the test records (with every other record of their patients); in a "
                   "combined store 'svdb:800', or '800' when one database has it")
    g.add_argument("--val-fraction", type=float)
    g.add_argument("--test-fraction", type=float)
    g.add_argument("--train-fraction", type=float, help="use this fraction of the training segments (per class)")
    g.add_argument("--exclude-classes", metavar="C[,C]",
                   help="classes left out of training and evaluation (default Q; '' keeps every class)")
    g.add_argument("--majority-cap", type=int,
                   help="at most this many majority-class segments per patient in train and val (test never capped)")
    g.add_argument("--select-min-support", type=int,
                   help="best epoch by validation macro-F1 over classes with at least this many segments (default 10)")
    g.add_argument("--imbalance", choices=IMBALANCE,
                   help="class imbalance: weighted loss (default), balanced sampler or none")
    g.add_argument("--validation-prevalence", choices=PREVALENCES,
                   help="true (default): a majority-capped validation part weighted back to its uncapped counts "
                        "(selection and decision at the real prevalence) | capped: scored as capped")
    g.add_argument("--decision", choices=DECISIONS,
                   help="decision rule fitted on validation after training, applied by evaluate and predict: "
                        "argmax (default) | prior (correct the training prior to the validation prevalence) | "
                        "tuned (prior, then per-class biases tuned to the validation selection-F1)")
    g.add_argument("--augment", action="store_true", default=None, help="signal augmentation of training batches")


def _add_optimisation_options(p: argparse.ArgumentParser) -> None:
    """The "optimisation" options of ``train``: steps, optimizer, tiers, schedule."""
    from ecgtransfer.models.tiers import OPTIMIZERS, PRESETS
    from ecgtransfer.training.config import SCHEDULERS

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    g.add_argument("--batch-size", type=int, help="batch size per process")
    g.add_argument("--tiers", help="three learning rates: features_1,features_2,classifier (default 1e-5,1e-4,1e-3)")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--momentum", type=float, help="SGD momentum of every tier (default 0.9)")
    g.add_argument("--weight-decay", type=float, help="weight decay (default 1e-4)")
    g.add_argument("--tier-preset", choices=sorted(PRESETS),
                   help="seed: the blog recipe (SGD, 1e-5/1e-4/1e-3, momentum 0.1/0.9/0.9, no weight decay)")
    g.add_argument("--lr-spread", metavar="FIRST,LAST",
                   help="geometric spread of the tier learning rates from FIRST to LAST (replaces --tiers)")
    g.add_argument("--layer-decay", type=float, help="layer-wise LR decay inside each tier, in (0, 1]")
    g.add_argument("--freeze", metavar="TIER[,TIER]", help="tiers to freeze, comma-separated (e.g. features_1 or features_1,features_2)")
    g.add_argument("--freeze-bn-stats", type=_bool, metavar="BOOL",
                   help="keep the batch norms of frozen tiers in eval mode (default true)")
    g.add_argument("--no-decay-bn-bias", type=_bool, metavar="BOOL",
                   help="no weight decay on batch-norm weights and biases (default true)")
    g.add_argument("--scheduler", choices=SCHEDULERS)
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--grad-clip", type=float)
    g.add_argument("--early-stopping", type=int, help="patience in epochs (validation macro-F1)")


def _add_execution_options(p: argparse.ArgumentParser) -> None:
    """The "execution" options of ``train``: device, precision, seed, workers, threads."""
    g = p.add_argument_group("execution")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    g.add_argument("--amp", choices=AMP_CHOICES,
                   help="auto (default): bf16 autocast on CUDA and on CPUs with native bf16, else fp32; off: exact fp32")
    g.add_argument("--channels-last", type=normalise_channels_last, choices=CHANNELS_LAST_CHOICES,
                   help="auto (default): on for CUDA and CPU bf16, off for CPU fp32 (true/false read as on/off)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--seed", type=int)
    g.add_argument("--num-workers", type=int, help="DataLoader workers reading the store")
    g.add_argument("--threads", type=int, dest="num_threads", help="torch CPU threads")
    g.add_argument("--checkpoint-every", type=int, help="also write last.pt every N steps")


_FIELDS = ("model", "rr", "lda_shrinkage", "beat_input", "majority_cap", "select_min_support", "init", "encoding", "image_size", "split", "fold", "n_folds", "fold_database", "test_records", "val_fraction", "test_fraction",
           "train_fraction", "imbalance", "augment", "epochs", "max_steps", "batch_size", "optimizer", "momentum",
           "weight_decay", "tier_preset", "layer_decay", "freeze_bn_stats", "no_decay_bn_bias", "scheduler",
           "warmup_steps", "grad_clip", "early_stopping", "device", "amp", "channels_last", "compile", "seed",
           "num_workers", "num_threads", "checkpoint_every", "validation_prevalence", "decision")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~ecgtransfer.training.TrainConfig` of parsed ``train`` arguments (``--config`` + options)."""
    import os

    from ecgtransfer._validate import thread_count
    from ecgtransfer.errors import ConfigError
    from ecgtransfer.training.config import resolve_config
    from ecgtransfer.training.runtime import parse_tiers

    if getattr(args, "num_threads", None) is not None:
        thread_count(args.num_threads, "--threads")
    overrides = {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
    if args.tiers is not None:
        overrides["tiers"] = parse_tiers(args.tiers)
    if args.exclude_classes is not None:
        overrides["exclude_classes"] = tuple(c.strip() for c in args.exclude_classes.split(",") if c.strip())
    if args.freeze is not None:
        overrides["freeze"] = tuple(t.strip() for t in args.freeze.split(",") if t.strip())
    if args.lr_spread is not None:
        try:
            spread = tuple(float(v) for v in args.lr_spread.split(","))
        except ValueError as exc:
            raise ConfigError(f"--lr-spread expects FIRST,LAST learning rates, got {args.lr_spread!r}") from exc
        if len(spread) != 2:
            raise ConfigError(f"--lr-spread expects two learning rates FIRST,LAST, got {args.lr_spread!r}")
        overrides["lr_spread"] = spread
    if not getattr(args, "progress", os.environ.get("TQDM_DISABLE") != "1"):  # ecgtransfer.cli.show_progress
        overrides["progress"] = False
    return resolve_config(args.config, **overrides)


def run(args: argparse.Namespace) -> int:
    import os

    from ecgtransfer._outdir import check_not_inside_output
    from ecgtransfer.cli._outputs import every_layout
    from ecgtransfer.training import fine_tune

    cfg = config_from_args(args)
    # not inside another run, store or bench
    check_not_inside_output(args.out, inputs={"STORE": args.store}, layouts=every_layout())
    result = fine_tune(args.store, cfg, out=args.out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        best = result.best_metrics or {}
        log.info("finished (%s) after %d steps; best epoch %s, val macro-F1 %.4f; run in %s", result.stopped,
                 result.steps, result.best_epoch, best.get("macro_f1", float("nan")), result.run_dir)
        if result.test_metrics is not None and "macro_auc" in result.test_metrics:  # a multilabel run
            log.info("test (best model): macro AUC %.4f, Fmax %.4f (intervals in %s)",
                     result.test_metrics["macro_auc"], result.test_metrics["fmax"], result.paths["report"])
        elif result.test_metrics is not None:
            log.info("test (best model): accuracy %.4f, macro-F1 %.4f", result.test_metrics["accuracy"],
                     result.test_metrics["macro_f1"])
    return 0
