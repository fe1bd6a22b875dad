"""One owner per concept (issue 9): every list of choices a user can pass comes from one definition, and every
validation rule lives once, at its owner, with a table of (owner, parameters, error, message) as pyts tests its
``_check_params``."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from ecgtransfer.bench.arms import INITS
from ecgtransfer.bench.config import BENCH_TRAIN_KEYS, BenchConfig, TaskConfig
from ecgtransfer.bench.config_toml import config_from_dict
from ecgtransfer.cli import build_parser
from ecgtransfer.conversion import TASKS
from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging.encode import ENCODINGS, ImageEncoder, encode
from ecgtransfer.models.features import LDA_SHRINKAGE
from ecgtransfer.models.registry import MODELS
from ecgtransfer.models.tiers import OPTIMIZERS, PRESETS, TierConfig
from ecgtransfer.models.weight_registry import VERSION_NAMES, WEIGHT_NAMES
from ecgtransfer.signals.split import METHODS, SplitConfig
from ecgtransfer.training.config import (AMP_CHOICES, CHANNELS_LAST_CHOICES, IMBALANCE, INIT_CHOICES, PART_KEYS,
                                         PARTS, RR_MODES, TrainConfig)
from ecgtransfer.training.decision import DECISION_USES, DECISIONS, PREVALENCES
from ecgtransfer.training.schedules import SCHEDULERS

PACKAGE = Path(__file__).resolve().parents[1] / "ecgtransfer"


def _choices(verb: str, *path: str) -> dict[str, tuple]:
    """``{option: choices}`` of ``ecgtransfer VERB [SUBVERB]``."""
    parser = build_parser()
    for name in (verb, *path):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return {a.option_strings[0]: tuple(a.choices) for a in parser._actions if a.option_strings and a.choices}


def test_every_cli_choice_list_is_its_owners_tuple() -> None:
    train = _choices("train")
    assert train["--encoding"] == ENCODINGS
    assert train["--split"] == METHODS
    assert train["--scheduler"] == SCHEDULERS
    assert train["--optimizer"] == OPTIMIZERS
    assert train["--tier-preset"] == tuple(sorted(PRESETS))
    assert train["--imbalance"] == IMBALANCE
    assert train["--model"] == MODELS
    assert train["--rr"] == RR_MODES
    assert train["--lda-shrinkage"] == LDA_SHRINKAGE
    assert train["--amp"] == AMP_CHOICES
    assert train["--channels-last"] == CHANNELS_LAST_CHOICES
    assert train["--decision"] == DECISIONS
    assert train["--validation-prevalence"] == PREVALENCES
    assert _choices("evaluate")["--decision"] == DECISION_USES
    assert _choices("predict")["--decision"] == DECISION_USES
    assert _choices("images")["--encoding"] == ENCODINGS
    assert _choices("convert")["--task"] == TASKS
    assert _choices("weights", "fetch")["--version"] == VERSION_NAMES
    # weight names: one registry, used by the training config and the bench (plus their own extra inits)
    assert INIT_CHOICES == (*WEIGHT_NAMES, "scratch")
    assert set(WEIGHT_NAMES) < set(INITS) and set(INITS) - set(WEIGHT_NAMES) == {"scratch", "ecg"}


def _bench(tmp_path: Path, **bench) -> BenchConfig:
    return config_from_dict({"bench": {"arms": ["scratch"], **bench}, "task": {"store": str(tmp_path)}})


def test_mtf_is_accepted_by_train_images_and_bench_alike_and_a_made_up_encoding_refused_by_all(tmp_path) -> None:
    import torch

    assert TrainConfig(encoding="mtf").encoding == "mtf"
    assert ImageEncoder("mtf", size=16, fs=360.0)(torch.randn(2, 1, 64)).shape == (2, 3, 16, 16)
    assert _bench(tmp_path, encodings=["mtf"]).encodings == ("mtf",)
    assert "mtf" in _choices("images")["--encoding"] and "mtf" in _choices("train")["--encoding"]
    expected = "unknown encoding 'sketch'; expected one of " + str(list(ENCODINGS)).replace("[", r"\[").replace(
        "]", r"\]")
    for make in (lambda: TrainConfig(encoding="sketch"), lambda: ImageEncoder("sketch"),
                 lambda: encode(torch.zeros(64), "sketch"), lambda: _bench(tmp_path, encodings=["sketch"])):
        with pytest.raises(ConfigError, match=expected):
            make()


# (owner, keyword arguments, message): each rule is raised by its owner; TrainConfig and the bench pass it on
RULES = [
    (SplitConfig, dict(method="halves"), r"unknown split method 'halves'; expected one of patient, kfold"),
    (SplitConfig, dict(val_fraction=0.6, test_fraction=0.5), r"val_fraction and test_fraction must be in \[0, 1\) "
                                                             r"with a sum below 1, got 0.6 and 0.5"),
    (SplitConfig, dict(test_fraction=-0.1), r"test_fraction must be in \[0, 1\) with a sum below 1, got 0.15 and -0.1"),
    (SplitConfig, dict(method="kfold", n_folds=1), r"kfold needs n_folds >= 2 and 0 <= fold < n_folds, got n_folds=1"),
    (SplitConfig, dict(method="kfold", fold=5), r"got n_folds=5, fold=5"),
    (TierConfig, dict(lrs=(1e-3, 1e-3)), r"lrs must be three positive learning rates"),
    (TierConfig, dict(lrs=(1e-3, 0.0, 1e-3)), r"lrs must be three positive learning rates"),
    (TierConfig, dict(optimizer="lamb"), r"optimizer must be one of \('sgd', 'adamw'\), got 'lamb'"),
    (TierConfig, dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
    (TierConfig, dict(weight_decay=-1e-4), r"weight_decay must be >= 0"),
    (TierConfig, dict(freeze=("layer9",)), r"freeze: unknown tier\(s\) \['layer9'\]"),
    (TierConfig, dict(layer_decay=0.0), r"layer_decay must be in \(0, 1\]"),
    (TierConfig, dict(spread=(1e-5,)), r"spread must be two positive learning rates"),
    (TierConfig, dict(preset="fast"), r"unknown tier preset 'fast'"),
    (TierConfig, dict(preset="seed", weight_decay=0.5), r"sets weight_decay=0.0, but weight_decay=0.5 was given"),
    (TrainConfig, dict(epochs=0), r"train config: epochs must be a positive integer, got 0"),
    (TrainConfig, dict(val_every_steps=0), r"val_every_steps must be a positive integer or None"),
    (TrainConfig, dict(imbalance="oversample"), r"imbalance must be one of \('weighted', 'sampler', 'none'\)"),
    (TrainConfig, dict(scheduler="step"), r"scheduler must be one of \('cosine', 'onecycle', 'constant'\)"),
    (TrainConfig, dict(model="vgg"), r"model must be one of \('resnet50', 'cnn1d', 'features'\)"),
    (TrainConfig, dict(rr="maybe"), r"rr must be one of \('auto', 'on', 'off'\)"),
    (TrainConfig, dict(lda_shrinkage=None), r"lda_shrinkage must be one of \('none', 'auto'\), got None"),
    (TrainConfig, dict(majority_cap=0), r"majority_cap must be a positive integer or None"),
    (TrainConfig, dict(decision="bayes"), r"decision must be one of \('argmax', 'prior', 'tuned'\), got 'bayes'"),
    (TrainConfig, dict(validation_prevalence="raw"), r"validation_prevalence must be one of \('true', 'capped'\)"),
    (TrainConfig, dict(train_fraction=0.0), r"train_fraction must be in \(0, 1\]"),
    (TrainConfig, dict(grad_clip=0.0), r"grad_clip must be positive or None"),
    (TrainConfig, dict(epochz=3), r"unknown key\(s\) \['epochz'\]"),
]


@pytest.mark.parametrize("owner, kwargs, message", RULES,
                         ids=[f"{o.__name__}-{'-'.join(k)}" for o, k, _ in RULES])
def test_validation_rules_at_their_owner(owner, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        owner(**kwargs)


@pytest.mark.parametrize("owner, kwargs, message", [r for r in RULES if r[0] in PARTS.values()],
                         ids=[f"{o.__name__}-{'-'.join(k)}" for o, k, _ in RULES if o in PARTS.values()])
def test_training_and_bench_configs_raise_the_parts_own_message(owner, kwargs, message, tmp_path) -> None:
    """The flat keys of TrainConfig and of the bench's [bench]/[task] tables reach the part's own rule (one
    definition of the message, prefixed with where it was written)."""
    part = next(p for p, cls in PARTS.items() if cls is owner)
    flat = {k: kwargs[name] for k, (p, name) in PART_KEYS.items() if p == part and name in kwargs}
    with pytest.raises(ConfigError, match="train config: .*" + message):
        TrainConfig(**flat)
    if owner is SplitConfig:
        with pytest.raises(ConfigError, match=r"\[task\]: .*" + message):
            config_from_dict({"bench": {"arms": ["scratch"]}, "task": {"store": str(tmp_path), **flat}})
    else:
        bench_names = {v: k for k, v in BENCH_TRAIN_KEYS.items()}
        if set(flat) <= set(bench_names):  # written under [bench] (``lrs``, ``optimizer``)
            with pytest.raises(ConfigError, match=message):
                _bench(tmp_path, **{bench_names[k]: list(v) if isinstance(v, tuple) else v for k, v in flat.items()})


@pytest.mark.parametrize("template", [
    "unknown split method", "with a sum below 1", "kfold needs n_folds", "lrs must be three positive",
    "unknown encoding {", "momentum must be in [0, 1)", "unknown tier preset",
])
def test_each_rule_message_is_written_once_in_the_package(template) -> None:
    hits = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
            if template in p.read_text(encoding="utf-8")]
    assert len(hits) == 1, hits


def test_no_config_mirrors_the_fields_of_a_part_it_holds() -> None:
    """TrainConfig holds its SplitConfig and TierConfig whole (their fields are views, not copies); the bench's
    TaskConfig holds the SplitConfig and BenchConfig holds a base TrainConfig."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not train_fields & set(PART_KEYS)
    assert set(PARTS) <= train_fields  # held whole; their fields are reached by their flat names (PART_KEYS)
    assert not {f.name for f in dataclasses.fields(TaskConfig)} & {f.name for f in dataclasses.fields(SplitConfig)}
    bench_fields = {f.name for f in dataclasses.fields(BenchConfig)}
    assert "base" in bench_fields and not bench_fields & (train_fields | set(PART_KEYS) | set(BENCH_TRAIN_KEYS))


def test_a_cell_config_is_the_base_with_the_cells_coordinates_replaced(tmp_path) -> None:
    from ecgtransfer.bench.arms import ARM_PRESETS
    from ecgtransfer.bench.cell_plan import cell_config

    cfg = config_from_dict({"bench": {"arms": ["scratch-tiered"], "epochs": 3, "lrs": [1e-4, 1e-3, 1e-2],
                                      "optimizer": "adamw", "patience": 2, "threads": 1},
                            "task": {"store": str(tmp_path), "split_seed": 4},
                            "train": {"majority_cap": 50, "val_every_steps": 10}})
    tc = cell_config(cfg, ARM_PRESETS["scratch-tiered"], encoding="mtf", seed=7, device="cpu", init="scratch",
                     lr_scale=3.0)
    want = cfg.base.replace(encoding="mtf", seed=7, device="cpu", init="scratch", tiers=tuple(x * 3.0 for x in cfg.lrs),
                            freeze=())
    assert tc == want
    assert (tc.epochs, tc.optimizer, tc.early_stopping, tc.num_threads, tc.majority_cap, tc.val_every_steps) == \
        (3, "adamw", 2, 1, 50, 10)
    assert tc.data_split == SplitConfig(seed=4, val_fraction=0.15, test_fraction=0.15)
    assert tc.tiers == pytest.approx((3e-4, 3e-3, 3e-2))


def test_each_arm_states_the_optimiser_weight_decay_and_clipping_its_cells_use(tmp_path) -> None:
    """The report's arms table states what every arm trained with, read from the cell config (one definition):
    a recipe's own values, an arm's overrides (marked), and the shared ones."""
    from ecgtransfer.bench.report_sections import _arm_row
    from ecgtransfer.bench.cell_plan import arm_settings

    cfg = config_from_dict({"bench": {"optimizer": "adamw", "lrs": [1e-4, 1e-3, 1e-2],
                                      "arms": ["scratch-uniform", "seed-recipe",
                                               {"name": "tuned", "init": "scratch", "optim": "tiered",
                                                "weight_decay": 0.05, "grad_clip": 0}]},
                            "task": {"store": str(tmp_path)}, "train": {"weight_decay": 1e-3}})
    got = {a.name: arm_settings(cfg, a, 2.0) for a in cfg.arms}
    assert got["scratch-uniform"] == {"lrs_used": [2e-2] * 3, "optimizer_used": "adamw", "weight_decay_used": 1e-3,
                                      "grad_clip_used": 1.0}
    assert got["seed-recipe"]["optimizer_used"] == "sgd" and got["seed-recipe"]["weight_decay_used"] == 0.0
    assert got["seed-recipe"]["lrs_used"] == list(PRESETS["seed"]["lrs"])
    assert got["tuned"]["weight_decay_used"] == 0.05 and got["tuned"]["grad_clip_used"] is None
    row = _arm_row({"name": "tuned", "init": "scratch", "optim": "tiered", "weight_decay": 0.05, "grad_clip": 0.0,
                    **got["tuned"]})
    assert "adamw, weight decay 0.05 (arm), grad clip off (arm)" in row[5]


@pytest.mark.parametrize("definition, owner", [
    ('("N", "S", "V", "F"', "signals/beats.py"),  # AAMI_CLASSES (AAMI_SCORED is derived from it there)
    ("BOOTSTRAP_REPLICATES = ", "bench/stats.py"),
    ("def resolve_device(", "training/runtime.py"),  # the bench's hardware record uses the training's rule
    ('"model name"', "training/precision.py"),
    ("\nIMAGE_SIZE = ", "imaging/encode.py"),  # the default image side (ImageNet's 224)
    ("def is_weights_path(", "models/weight_registry.py"),  # the one rule for "init names a weights file"  # the machine description: the bench's hardware record reads it there
])
def test_each_domain_constant_is_defined_once_at_its_owner(definition, owner) -> None:
    hits = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
            if definition in p.read_text(encoding="utf-8")]
    assert hits == [owner]


def test_the_bootstrap_default_is_the_stats_one_and_written_nowhere_else() -> None:
    import ast

    from ecgtransfer.bench.stats import BOOTSTRAP_REPLICATES
    from ecgtransfer.signals.beats import AAMI_CLASSES, AAMI_SCORED

    default = {f.name: f.default for f in dataclasses.fields(BenchConfig)}["bootstrap_replicates"]
    assert default == BOOTSTRAP_REPLICATES
    literal = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
               if any(isinstance(n, ast.Constant) and type(n.value) is int and n.value == BOOTSTRAP_REPLICATES
                      for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert literal == ["bench/stats.py"]
    assert AAMI_SCORED == AAMI_CLASSES[:4] and "Q" not in AAMI_SCORED


def test_toml_files_are_read_by_one_reader() -> None:
    """Issue 21: the training and bench configs read their files with ``_toml.read_toml`` (one message for a missing
    file or invalid TOML), not each with its own ``tomllib``."""
    hits = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
            if "import tomllib" in p.read_text(encoding="utf-8")]
    assert hits == ["_toml.py"]
