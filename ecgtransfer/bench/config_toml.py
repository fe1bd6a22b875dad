"""Reading a bench config: the TOML file (:func:`load_config`) or its parsed tables (:func:`config_from_dict`) into
a checked :class:`~ecgtransfer.bench.config.BenchConfig`, and the CLI's ``--set KEY=VALUE`` overrides.

Example (``benchmarks/smoke.toml``)::

    [bench]
    name = "smoke"
    seeds = [0, 1]
    fractions = [0.2, 1.0]
    encodings = ["spectrogram"]
    image_size = 64
    epochs = 2

    [task]
    store = "../stores/mitdb-beats"     # relative to this file
    split = "patient"

    [[arms]]
    name = "scratch"

    [[arms]]
    name = "imagenet"

Arms may also be given as plain strings (``arms = ["scratch", "imagenet"]``), which picks the preset of
that name (:data:`~ecgtransfer.bench.arms.ARM_PRESETS`).

Every key is described in ``docs/bench.md``; each table is read into its dataclass (``[task]`` ->
:class:`~ecgtransfer.bench.config.TaskConfig`, ``[[arms]]`` -> :class:`~ecgtransfer.bench.arms.ArmConfig`,
``[source]`` -> :class:`~ecgtransfer.bench.config.SourceConfig`, ``[bench.primary]`` ->
:class:`~ecgtransfer.bench.config.PrimaryContrast`, ``[bench]`` and ``[train]`` -> the shared
:class:`~ecgtransfer.training.TrainConfig`), then the whole is checked (:meth:`BenchConfig.check`). The file itself
is read by the package's one TOML reader (:mod:`ecgtransfer._toml`).
"""
from __future__ import annotations

import copy
import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Mapping

from ecgtransfer._toml import TOMLDecodeError, loads, read_toml
from ecgtransfer.bench.arms import ARM_PRESETS, ArmConfig
from ecgtransfer.bench.checks import check_keys, config_error, tuple_of
from ecgtransfer.bench.config import (
    BENCH_TRAIN_DEFAULTS,
    BENCH_TRAIN_KEYS,
    TASK_SPLIT_KEYS,
    BenchConfig,
    PrimaryContrast,
    SourceConfig,
    TaskConfig,
)
from ecgtransfer.bench.sweeps import SETTING_KEYS
from ecgtransfer.errors import ConfigError
from ecgtransfer.training.config import TrainConfig

_SECTION_KEYS = {"bench", "task", "arms", "train", "source"}

#: TrainConfig fields a ``[train]`` table may not set: the bench sets them per cell or from its own keys
#: (the split's fractions are allowed: they are the ``ecg`` source model's; the target's come from ``[task]``)
BENCH_OWNED_TRAIN_FIELDS = frozenset({"encoding", "seed", "init", "weights", "out", "out_dir", "run_dir",
                                      "data_split", "optim", "split", "split_seed", "tiers", "freeze",
                                      *(n for k, n in BENCH_TRAIN_KEYS.items() if k != "patience")})


def load_config(path: str | os.PathLike, *, overrides: Mapping[str, Any] | None = None) -> BenchConfig:
    """Read and validate a bench config TOML file.

    Args:
        path: the TOML file; relative store paths inside it are resolved against its directory.
        overrides: dotted keys replacing values after loading, e.g. ``{"task.store": "stores/x",
            "bench.seeds": [0]}`` (what the CLI's ``--set`` and ``--store`` do).
    """
    path = Path(path)
    raw = read_toml(path, "bench config")
    for key, value in (overrides or {}).items():
        apply_override(raw, key, value, where=str(path))
    return config_from_dict(raw, config_dir=path.resolve().parent, where=str(path))


def config_from_dict(raw: Mapping[str, Any], *, config_dir: str | os.PathLike | None = None,
                     where: str = "bench config") -> BenchConfig:
    """Build and validate a :class:`BenchConfig` from a parsed TOML document (see the module docstring)."""
    raw, bench = _sections(raw, where)
    task = _task_from(raw, where)
    arms_raw = raw.get("arms")
    if not arms_raw:
        raise config_error(where, "no arms: add arms = [\"scratch\", \"imagenet\"] or [[arms]] tables")
    arms = tuple(_arm_from(f"{where} arms[{i}]", a) for i, a in enumerate(arms_raw))
    source = _source_from(raw["source"], where) if "source" in raw else None
    kw: dict[str, Any] = dict(bench)
    for key, kind in (("seeds", int), ("fractions", float), ("encodings", str), ("lrs", float),
                      ("lr_sweep", float), *((k, float) for k in SETTING_KEYS)):
        if key in kw:
            kw[key] = tuple_of(f"{where} [bench]", key, kw[key], kind)
    train_raw = raw.get("train", {})
    if not isinstance(train_raw, Mapping):
        raise config_error(f"{where} [train]", f"must be a table of TrainConfig fields, found {train_raw!r}")
    _check_bench_owned(where, dict(train_raw), None if source is None else dict(source.train), bench)
    base = _base_from(where, kw, train_raw, task)
    if "target_f1" in kw:
        kw["target_f1"] = float(kw["target_f1"])
    if "primary" in kw:
        kw["primary"] = _primary_from(f"{where} [bench.primary]", kw["primary"])
    if "contrasts" in kw:
        kw["contrasts"] = _contrasts_from(f"{where} [bench]", kw["contrasts"])
    cfg = BenchConfig(task=task, arms=arms, train=dict(train_raw), source=source, base=base,
                      config_dir=str(config_dir) if config_dir is not None else None, **kw)
    cfg.check(where)
    return cfg


def _sections(raw: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A copy of the document with known sections only (``arms`` moved out of ``[bench]``), and its ``[bench]``
    table with known keys only."""
    raw = copy.deepcopy(dict(raw))
    check_keys(where, raw, _SECTION_KEYS)
    bench = dict(raw.get("bench", {}))
    if "arms" in bench:  # ``arms = [...]`` written under [bench] (TOML puts it there) is the same list
        if "arms" in raw:
            raise config_error(where, "arms are given twice ([bench].arms and top-level arms / [[arms]])")
        raw["arms"] = bench.pop("arms")
    bench_fields = ({f.name for f in fields(BenchConfig)} - {"task", "arms", "train", "source", "config_dir", "base"}
                    | set(BENCH_TRAIN_KEYS))
    check_keys(f"{where} [bench]", bench, bench_fields)
    return raw, bench


def _task_from(raw: Mapping[str, Any], where: str) -> TaskConfig:
    """The ``[task]`` table (its split settings flat) as a :class:`TaskConfig`."""
    if "task" not in raw:
        raise config_error(where, "missing [task] table (at least task.store)")
    task_raw = raw["task"]
    check_keys(f"{where} [task]", task_raw, ({f.name for f in fields(TaskConfig)} - {"data_split"})
               | set(TASK_SPLIT_KEYS))
    if "store" not in task_raw:
        raise config_error(f"{where} [task]", "missing 'store' (path of the target segment store)")
    try:
        return TaskConfig.from_table(task_raw)
    except ConfigError as exc:
        raise config_error(f"{where} [task]", str(exc)) from None


def _arm_from(where: str, raw: Any) -> ArmConfig:
    """An arm: a preset name, or a table (over the preset of its name, if any)."""
    if isinstance(raw, str):
        if raw not in ARM_PRESETS:
            raise config_error(where, f"unknown arm preset {raw!r}; presets are {sorted(ARM_PRESETS)} "
                                      "(or give a table with name/init/optim)")
        return ARM_PRESETS[raw]
    if not isinstance(raw, Mapping):
        raise config_error(where, f"an arm must be a preset name or a table, found {raw!r}")
    allowed = {f.name for f in fields(ArmConfig)}
    check_keys(where, raw, allowed)
    if "name" not in raw:
        raise config_error(where, "an arm table needs a 'name'")
    base = ARM_PRESETS.get(raw["name"], ArmConfig(str(raw["name"])))
    kw = dict(raw)
    if "encodings" in kw:
        kw["encodings"] = tuple_of(where, "encodings", kw["encodings"], str)
    if "lrs" in kw:
        kw["lrs"] = tuple_of(where, "lrs", kw["lrs"], float)
    for key in ("lr_sweep", *SETTING_KEYS):
        if key in kw:
            kw[key] = tuple_of(where, key, kw[key], float)
    for key in ("weight_decay", "grad_clip"):
        if key in kw and kw[key] is not None:
            if isinstance(kw[key], bool) or not isinstance(kw[key], (int, float)) or kw[key] < 0:
                raise config_error(where, f"{key} must be a number >= 0, found {kw[key]!r}")
            kw[key] = float(kw[key])
    if "lr" in kw and kw["lr"] is not None:
        if isinstance(kw["lr"], bool) or not isinstance(kw["lr"], (int, float)):
            raise config_error(where, f"lr must be a positive number (a learning rate such as 1e-3), found "
                                      f"{kw['lr']!r}")
        kw["lr"] = float(kw["lr"])
    return replace(base, **kw)


def _source_from(table: Mapping[str, Any], where: str) -> SourceConfig:
    """The ``[source]`` table (with its ``[source.train]``) as a :class:`SourceConfig`."""
    check_keys(f"{where} [source]", table, {f.name for f in fields(SourceConfig)})
    if "store" not in table:
        raise config_error(f"{where} [source]", "missing 'store' (path of the source segment store)")
    src_raw = dict(table)
    if not isinstance(src_raw.get("train", {}), Mapping):
        raise config_error(f"{where} [source]",
                           f"train must be a table of TrainConfig fields, found {src_raw['train']!r}")
    src_raw["train"] = dict(src_raw.get("train", {}))
    return SourceConfig(**src_raw)


def _base_from(where: str, kw: dict[str, Any], train_raw: Mapping[str, Any], task: TaskConfig) -> TrainConfig:
    """The shared :class:`TrainConfig`: the bench's defaults, ``[train]``, then the ``[bench]`` training keys
    (popped from ``kw``) and the task's split; its errors name the ``[bench]`` key of a renamed field."""
    base_kw = {**BENCH_TRAIN_DEFAULTS, **dict(train_raw),
               **{BENCH_TRAIN_KEYS[k]: kw.pop(k) for k in list(kw) if k in BENCH_TRAIN_KEYS}}
    try:
        return TrainConfig(**base_kw, data_split=task.data_split)
    except ConfigError as exc:
        renamed = [f"[bench].{k} is TrainConfig {n}" for k, n in BENCH_TRAIN_KEYS.items()
                   if k != n and n in str(exc)]
        raise config_error(where, f"{exc}" + (f" ({'; '.join(renamed)})" if renamed else "")) from None


def _primary_from(where: str, pr: Any) -> PrimaryContrast:
    """The ``[bench.primary]`` table as a :class:`PrimaryContrast`."""
    if not isinstance(pr, Mapping):
        raise config_error(where, f"must be a table {{arm, baseline, fraction, encoding}}, found {pr!r}")
    check_keys(where, pr, {f.name for f in fields(PrimaryContrast)})
    if "arm" not in pr or "baseline" not in pr:
        raise config_error(where, "needs 'arm' and 'baseline' (arm names)")
    pr = dict(pr)
    if pr.get("fraction") is not None:
        pr["fraction"] = float(pr["fraction"])
    return PrimaryContrast(**pr)


def _contrasts_from(where: str, value: Any) -> tuple[tuple[Any, ...], ...]:
    """``contrasts``: ``[arm, baseline]`` pairs and ``[arm, baseline, fraction]`` entries (one pair alone too)."""
    pairs = []
    for pair in value if isinstance(value, (list, tuple)) else [value]:
        if (not isinstance(pair, (list, tuple)) or len(pair) not in (2, 3)
                or not all(isinstance(x, str) for x in pair[:2])
                or (len(pair) == 3 and (isinstance(pair[2], bool) or not isinstance(pair[2], (int, float))))):
            raise config_error(where, "contrasts must be a list of [arm, baseline] pairs or [arm, baseline, "
                                      f"fraction] entries, found {pair!r}")
        pairs.append((pair[0], pair[1]) if len(pair) == 2 else (pair[0], pair[1], float(pair[2])))
    return tuple(pairs)


def _check_bench_owned(where: str, train: Mapping[str, Any], source_train: Mapping[str, Any] | None,
                       bench: Mapping[str, Any]) -> None:
    """``[train]`` / ``[source.train]`` may not set what the bench sets (:data:`BENCH_OWNED_TRAIN_FIELDS`), nor
    ``early_stopping`` next to ``[bench].patience``."""
    for section, table in (("[train]", train), ("[source.train]", source_train or {})):
        clash = sorted(BENCH_OWNED_TRAIN_FIELDS & set(table))
        if clash:
            raise config_error(f"{where} {section}", f"{clash} are set by the bench itself ([bench]/[task]/[source] "
                                                     f"keys or per cell); remove them from {section}")
    if bench.get("patience") is not None and "early_stopping" in train:
        raise config_error(f"{where} [train]", "early_stopping is set by [bench].patience; remove it from [train]")


def apply_override(raw: dict[str, Any], key: str, value: Any, *, where: str = "override") -> None:
    """Set dotted ``key`` (``section.name``) in a raw config dict; a bare name goes to ``[bench]``."""
    parts = key.split(".")
    if len(parts) == 1:
        parts = ["bench", parts[0]]
    if parts[0] not in _SECTION_KEYS or parts[0] == "arms":
        raise ConfigError(f"{where}: cannot override {key!r}; use bench.*, task.*, train.* or source.*")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: cannot override {key!r}: {p} is not a table")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"bench.seeds=[0,1]"`` -> ``("bench.seeds", [0, 1])`` (the value is parsed as a TOML value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, found {text!r}")
    try:
        parsed = loads(f"v = {value.strip()}")["v"]
    except TOMLDecodeError:
        parsed = value.strip()  # a bare string
    return key.strip(), parsed


__all__ = ["BENCH_OWNED_TRAIN_FIELDS", "apply_override", "config_from_dict", "load_config", "parse_override"]
