"""Data for the loop: batches of store indices, a DataLoader that reads them, signal augmentation.

The order of an epoch is a pure function of ``(seed, epoch, rank, world_size)``: :class:`BatchPlan` draws it
from ``numpy.random.default_rng([seed, epoch, 104729])``, so a resumed run rebuilds the same plan and skips the
batches it already consumed. Under torchrun every rank sees a disjoint shard of the same global order
(``order[rank::world_size]`` after padding to a multiple of ``world_size``, as torch's DistributedSampler
does), with the same number of batches.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ecgtransfer.errors import ConfigError
from ecgtransfer.signals.template import check_beat_input, compose_input, store_templates, uses_template
from ecgtransfer.store import SegmentStore

if TYPE_CHECKING:
    from ecgtransfer.training.config import TrainConfig


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency class weights ``w_c = n / (K * n_c)`` over the ``K`` classes present (0 for absent ones).

    The weighted mean over the training segments is 1, so the loss keeps its usual scale
    (scikit-learn's ``class_weight="balanced"``).
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(num_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


#: Mixed into the seed so the subsample stream is independent of the training RNG of the same seed.
SUBSAMPLE_SALT = 0x5EB5A3


def _keep(n: int, fraction: float) -> int:
    return max(1, min(n, math.ceil(fraction * n - 1e-9)))


def subsample(train: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray, fraction: float, *,
              mode: str = "per-class", seed: int = 0) -> np.ndarray:
    """Indices of the training subsample: the one subsampler, for ``TrainConfig.train_fraction`` (per class) and
    the bench's data fractions (:mod:`ecgtransfer.bench.fractions` documents the modes and their nesting).

    Args:
        train: int64 ``[n]`` indices into the store (the training split).
        labels: int64 ``[N]`` labels of the whole store.
        patient_ids: ``[N]`` patient ids of the whole store.
        fraction: share to keep, in (0, 1]; 1 returns ``train`` (sorted).
        mode: ``per-class`` or ``per-patient`` (alias ``patients``; see the module docstring).
        seed: subsample seed (the bench uses the cell's seed).

    Returns:
        sorted int64 ``[m]`` subset of ``train``.
    """
    train = np.asarray(train, dtype=np.int64)
    if not (0.0 < fraction <= 1.0):
        raise ConfigError(f"fraction must be in (0, 1], found {fraction}")
    if train.size == 0:
        return train.copy()
    if fraction >= 1.0:
        return np.sort(train)
    rng = np.random.default_rng([SUBSAMPLE_SALT, int(seed)])
    if mode == "per-class":
        lab = np.asarray(labels)[train]
        kept = []
        # sorted classes and a stable argsort: the order depends only on the seed and the data
        for c in np.unique(lab):
            members = np.sort(train[lab == c])
            order = rng.permutation(members.size)
            kept.append(members[order[:_keep(members.size, fraction)]])
        return np.sort(np.concatenate(kept))
    if mode in ("per-patient", "patients"):  # "patients": the same, named for what it models (fewer patients)
        pats = np.asarray(patient_ids)[train].astype(str)
        uniq = np.unique(pats)
        order = rng.permutation(uniq.size)
        chosen = uniq[order[:_keep(uniq.size, fraction)]]
        return np.sort(train[np.isin(pats, chosen)])
    raise ConfigError(f"fraction mode must be 'per-class', 'per-patient' or 'patients', found {mode!r}")


def class_subset(class_names: Sequence[str], exclude: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The classes a run keeps and the map from store labels to its labels.

    Returns ``(kept names, label_map [K_store] int64)``: ``label_map[c]`` is the run's label of store class ``c``,
    or -1 when ``c`` is excluded. Names in ``exclude`` that the store does not have are ignored.
    """
    drop = set(exclude)
    kept = [c for c in class_names if c not in drop]
    label_map = np.full(len(class_names), -1, dtype=np.int64)
    for i, c in enumerate(class_names):
        if c not in drop:
            label_map[i] = kept.index(c)
    return kept, label_map


def cap_majority(indices: np.ndarray, labels: np.ndarray, patients: np.ndarray, cap: int, seed: int,
                 majority: int | None = None) -> np.ndarray:
    """At most ``cap`` segments of the majority class per patient (seeded); other classes kept. Sorted.

    ``labels`` and ``patients`` index the whole store ``[N]``; ``majority`` defaults to the most frequent label
    among ``indices``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        return indices
    lab = np.asarray(labels)[indices]
    if majority is None:
        majority = int(np.bincount(lab).argmax())
    rng = np.random.default_rng([seed, 6007])
    pat = np.asarray(patients)[indices]
    is_major = lab == majority
    keep = [indices[~is_major]]
    maj, maj_pat = indices[is_major], pat[is_major]
    for p in np.unique(maj_pat):
        members = maj[maj_pat == p]
        keep.append(members if len(members) <= cap else rng.choice(members, size=cap, replace=False))
    return np.sort(np.concatenate(keep)).astype(np.int64)


def prevalence_weights(kept: np.ndarray, uncapped: np.ndarray, labels: np.ndarray, patients: np.ndarray
                       ) -> np.ndarray:
    """Weights ``[len(kept)]`` float64 that undo a cap (:func:`cap_majority`): each kept segment of (patient,
    class) weighs ``uncapped count / kept count`` of that (patient, class), so the weighted counts per patient and
    class equal those of ``uncapped``; 1 where nothing was removed.

    ``kept`` must be a subset of ``uncapped`` (store indices); ``labels`` and ``patients`` index the whole store
    ``[N]``.
    """
    kept = np.asarray(kept, dtype=np.int64)
    uncapped = np.asarray(uncapped, dtype=np.int64)
    if kept.size == 0:
        return np.zeros(0)
    pat = np.asarray(patients).astype(str)
    lab = np.asarray(labels, dtype=np.int64)
    # one key per (patient, class): the patient's position among the sorted patients, then the class
    names, codes = np.unique(np.concatenate([pat[kept], pat[uncapped]]), return_inverse=True)
    k = int(lab.max()) + 1 if lab.size else 1
    key_kept = codes[:kept.size] * k + lab[kept]
    key_all = codes[kept.size:] * k + lab[uncapped]
    size = len(names) * k
    n_kept = np.bincount(key_kept, minlength=size)
    n_all = np.bincount(key_all, minlength=size)
    if (n_all[key_kept] < n_kept[key_kept]).any():
        raise ValueError("prevalence_weights: kept holds segments that uncapped does not")
    return n_all[key_kept] / n_kept[key_kept]


@dataclass(frozen=True)
class RunParts:
    """The segments a run actually uses (:func:`run_parts`).

    Attributes:
        parts: ``{"train", "val", "test": store indices [n]}`` after the rules below.
        class_names: the classes the run keeps; ``label_map [K_store]``: store label -> run label (-1: left out).
        excluded: the store classes left out.
        majority: the training part's most frequent class (a run label), taken before any cap: the majority
            classifier's class and the class ``majority_cap`` limits.
        majority_capped: segments the cap removed, per part.
        uncapped: the parts before the cap (``{}`` when nothing was capped): what
            :func:`prevalence_weights` reweights the capped validation part to.
    """

    parts: dict[str, np.ndarray]
    class_names: list[str]
    label_map: np.ndarray
    excluded: list[str]
    majority: int
    majority_capped: dict[str, int]
    uncapped: dict[str, np.ndarray] = field(default_factory=dict)


def run_parts(store: SegmentStore, parts: Mapping[str, np.ndarray], *, exclude_classes: Sequence[str] = (),
              train_fraction: float = 1.0, majority_cap: int | None = None, seed: int = 0) -> RunParts:
    """What a run trains, validates and tests on, from a split's ``parts`` (the one definition: the training
    engine and the bench's budget both call it): segments of ``exclude_classes`` leave every part; the training
    part keeps ``train_fraction`` of each class (seeded); then at most ``majority_cap`` segments of the majority
    class per patient in the training and validation parts (seeded; the test part is never capped)."""
    class_names, label_map = class_subset(store.class_names, exclude_classes)
    excluded = [c for c in store.class_names if c not in class_names]
    out = {name: np.asarray(idx, dtype=np.int64) for name, idx in parts.items()}
    if excluded:  # their segments leave every part; the model has no output for them
        keep = label_map[np.asarray(store.labels)] >= 0
        out = {name: idx[keep[idx]] for name, idx in out.items()}
    if train_fraction < 1.0:
        out["train"] = subsample(out["train"], store.labels, store.patient_ids, train_fraction, mode="per-class",
                                 seed=seed)
    train_labels = label_map[np.asarray(store.labels)[out["train"]]]
    majority = int(np.argmax(np.bincount(train_labels))) if train_labels.size else 0
    capped: dict[str, int] = {}
    uncapped: dict[str, np.ndarray] = {}
    if majority_cap and train_labels.size:
        as_store = int(np.argmax(label_map == majority))  # the majority as a store label
        for name in ("train", "val"):
            before = len(out[name])
            uncapped[name] = out[name]
            out[name] = cap_majority(out[name], store.labels, store.patient_ids, int(majority_cap), seed,
                                     majority=as_store)
            capped[name] = before - len(out[name])
    return RunParts(out, class_names, label_map, excluded, majority, capped, uncapped)


def validation_weights(store: SegmentStore, rp: RunParts, prevalence: str) -> np.ndarray | None:
    """The weights ``[len(rp.parts["val"])]`` a run scores its validation part with (the one rule: the engine's
    selection and decision rule, the bench's majority line): :func:`prevalence_weights` back to the uncapped part
    for ``prevalence = "true"`` when the cap removed validation segments; ``None`` (unweighted) otherwise."""
    if prevalence != "true" or not rp.majority_capped.get("val") or "val" not in rp.uncapped:
        return None
    return prevalence_weights(rp.parts["val"], rp.uncapped["val"], store.labels, store.patient_ids)


def run_parts_of(store: SegmentStore, parts: Mapping[str, np.ndarray], cfg: "TrainConfig", seed: int | None = None
                 ) -> RunParts:
    """:func:`run_parts` with ``cfg``'s class exclusions, training fraction and majority cap, at ``seed`` (default
    ``cfg.seed``): what a run of ``cfg`` trains, validates and tests on."""
    return run_parts(store, parts, exclude_classes=cfg.exclude_classes, train_fraction=cfg.train_fraction,
                     majority_cap=cfg.majority_cap, seed=cfg.seed if seed is None else seed)


class BatchPlan:
    """Training batches of one epoch for one rank, a pure function of ``(seed, epoch)``.

    Args:
        indices: training indices into the store ``[n]``.
        labels: labels of the whole store ``[N]`` (used by the balanced sampler).
        batch_size: batch size per rank.
        seed: run seed.
        balanced: draw ``n`` indices with replacement with probability ``1 / n_c`` instead of a permutation.
        rank, world_size: this process's shard.
    """

    def __init__(self, indices: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, *,
                 balanced: bool = False, rank: int = 0, world_size: int = 1) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.balanced = balanced
        self.rank = rank
        self.world_size = world_size
        self.per_rank = -(-len(self.indices) // world_size)

    def __len__(self) -> int:
        """Batches per epoch (a last batch of a single segment is dropped: BatchNorm cannot train on it)."""
        full, rest = divmod(self.per_rank, self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)

    def global_order(self, epoch: int) -> np.ndarray:
        """The epoch's order of all training indices (before sharding)."""
        rng = np.random.default_rng([self.seed, int(epoch), 104729])
        if self.balanced:
            lab = self.labels[self.indices]
            counts = np.bincount(lab)
            p = 1.0 / counts[lab]
            return rng.choice(self.indices, size=len(self.indices), replace=True, p=p / p.sum())
        return self.indices[rng.permutation(len(self.indices))]

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch`` (index arrays into the store)."""
        order = self.global_order(epoch)
        total = self.per_rank * self.world_size
        if total > len(order):  # pad by wrapping around, as DistributedSampler does
            order = np.concatenate([order, order[: total - len(order)]])
        mine = order[self.rank::self.world_size]
        out = [mine[i:i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        return out[: len(self)]


def eval_shard(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Evaluation indices of one rank: ``indices[rank::world_size]`` (no padding, gathered back exactly)."""
    return np.asarray(indices, dtype=np.int64)[rank::world_size]


def eval_batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


class StoreBatches(Dataset):
    """A dataset whose items are whole batches:
    ``ds[k] -> (signals [b, C', L] float32, labels [b] int64, idx [b], rr [b, R] float32 or None)``.

    ``label_map`` (from :func:`class_subset`) turns store labels into the run's labels; ``rr_dim > 0`` reads the
    first ``rr_dim`` columns of the store's ``rr`` extra; ``beat_input`` composes the model's input from the beats
    and their record templates (:func:`ecgtransfer.signals.template.compose_input`; ``C' = C`` for ``"leads"``). The store is opened lazily in each worker process
    (memory maps do not travel through pickling).
    """

    def __init__(self, store: SegmentStore | str | os.PathLike, batches: Sequence[np.ndarray], *,
                 label_map: np.ndarray | None = None, rr_dim: int = 0, beat_input: str = "leads") -> None:
        self.path = Path(store.path if isinstance(store, SegmentStore) else store)
        self._store = store if isinstance(store, SegmentStore) else None
        self.batches = list(batches)
        self.label_map = None if label_map is None else np.asarray(label_map, dtype=np.int64)
        self.rr_dim = int(rr_dim)
        self.beat_input = check_beat_input(beat_input)
        # the record templates are computed here, in the main process, and travel to the workers (small arrays)
        self.templates = store_templates(self.store) if uses_template(beat_input) else None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    @property
    def store(self) -> SegmentStore:
        if self._store is None:
            self._store = SegmentStore(self.path)
        return self._store

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        idx = self.batches[k]
        x = self.store.batch(idx)
        if self.templates is not None:
            templates, index = self.templates
            x = compose_input(x, templates[index[idx]], self.beat_input)
        x = torch.from_numpy(x)
        lab = np.asarray(self.store.labels[idx], dtype=np.int64)
        if self.label_map is not None:
            lab = self.label_map[lab]
        rr = None
        if self.rr_dim:
            rr = torch.from_numpy(np.ascontiguousarray(self.store.extra("rr")[idx, :self.rr_dim], dtype=np.float32))
        return x, torch.from_numpy(lab), torch.from_numpy(np.asarray(idx, dtype=np.int64)), rr


def batch_loader(store: SegmentStore, batches: Sequence[np.ndarray], *, num_workers: int = 0,
                 pin_memory: bool = False, label_map: np.ndarray | None = None, rr_dim: int = 0,
                 beat_input: str = "leads") -> DataLoader:
    """A DataLoader yielding ``(x [b, C', L], y [b], idx [b], rr [b, R] or None)`` for the given batches, in order
    (see :class:`StoreBatches`; ``C'`` is :func:`ecgtransfer.signals.template.input_channels` of ``beat_input``)."""
    ds = StoreBatches(store, batches, label_map=label_map, rr_dim=rr_dim, beat_input=beat_input)
    return DataLoader(ds, batch_size=None, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False,
                      prefetch_factor=2 if num_workers else None)


class SignalAugment:
    """Random signal augmentation of a batch ``[B, C, L]`` in torch, on the batch's device.

    Randomness comes from a CPU generator seeded with ``(seed, epoch, step, rank)``, so a batch is augmented
    the same way whether or not the run was interrupted (a resumed run keeps its world size), independently of
    the global RNG, and the ranks of a torchrun job draw different augmentations for their different shards.

    - amplitude scaling: ``x * u``, ``u ~ U[1 - scale, 1 + scale]`` per sample and lead;
    - baseline wander: a sinusoid of frequency ``U[0.05, 0.5]`` Hz (``fs`` needed; otherwise 0.5-2 cycles
      per segment), random phase, amplitude ``U[0, wander] * std(x)`` per sample and lead;
    - Gaussian noise: ``N(0, (noise * std(x))^2)`` per sample;
    - time shift: by up to ``shift * L`` samples either way, replicating the edge sample.
    """

    def __init__(self, *, seed: int, fs: float | None = None, scale: float = 0.1, wander: float = 0.1,
                 noise: float = 0.02, shift: float = 0.05, rank: int = 0) -> None:
        self.seed = int(seed)
        self.rank = int(rank)
        self.fs = fs
        self.scale, self.wander, self.noise, self.shift = scale, wander, noise, shift

    def __call__(self, x: torch.Tensor, *, epoch: int, step: int) -> torch.Tensor:
        b, c, length = x.shape
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, epoch, step, self.rank, 15485863])
                                              .generate_state(1, dtype=np.uint64)[0] % 2**63))
        dev, dt = x.device, x.dtype
        max_shift = int(self.shift * length)
        # every random number is drawn on the CPU in a fixed order, then moved to the device in one copy
        # (pinned, asynchronous on CUDA: no host synchronisation per draw)
        shapes: dict[str, tuple[int, ...]] = {}
        draws = []
        if self.scale > 0:
            shapes["scale"] = (b, c, 1)
            draws.append(torch.rand(b, c, 1, generator=g))
        if self.wander > 0:
            shapes.update(freq=(b, 1, 1), phase=(b, 1, 1), amp=(b, c, 1))
            draws += [torch.rand(b, 1, 1, generator=g), torch.rand(b, 1, 1, generator=g),
                      torch.rand(b, c, 1, generator=g)]
        if self.noise > 0:
            shapes["noise"] = (b, c, length)
            draws.append(torch.randn(b, c, length, generator=g))
        if max_shift > 0:
            shapes["shift"] = (b, 1, 1)
            draws.append(torch.randint(-max_shift, max_shift + 1, (b, 1, 1), generator=g).to(torch.float32))
        if not draws:
            return x
        flat = torch.cat([d.reshape(-1) for d in draws])
        if dev.type == "cuda":
            flat = flat.pin_memory()
        flat = flat.to(dev, non_blocking=True)
        r = dict(zip(shapes, (p.view(shape) for p, shape in
                              zip(flat.split([math.prod(v) for v in shapes.values()]), shapes.values()))))

        std = x.std(dim=-1, keepdim=True).clamp_min(1e-6)  # [B, C, 1]
        out = x
        if self.scale > 0:
            out = out * (1 - self.scale + 2 * self.scale * r["scale"].to(dt))
        if self.wander > 0:
            t = torch.arange(length, device=dev, dtype=dt)
            if self.fs:
                freq = (0.05 + 0.45 * r["freq"].to(dt)) / float(self.fs)  # cycles per sample
            else:
                freq = (0.5 + 1.5 * r["freq"].to(dt)) / length
            phase = 2 * torch.pi * r["phase"].to(dt)
            out = out + self.wander * r["amp"].to(dt) * std * torch.sin(2 * torch.pi * freq * t + phase)
        if self.noise > 0:
            out = out + self.noise * std * r["noise"].to(dt)
        if max_shift > 0:
            shifts = r["shift"].long()
            pos = (torch.arange(length, device=dev).view(1, 1, length) - shifts).clamp(0, length - 1)
            out = torch.gather(out, 2, pos.expand(b, c, length))
        return out


def split_parts(split: Any) -> dict[str, np.ndarray]:
    """``{"train", "val", "test"}`` int64 index arrays of a split given as a mapping or an object with those
    attributes (a missing or None part is empty)."""
    if isinstance(split, Mapping):
        get = split.get
    else:
        def get(name: str, default: Any = None) -> Any:
            return getattr(split, name, default)
    return {part: np.asarray(get(part, []) if get(part, None) is not None else [], dtype=np.int64)
            for part in ("train", "val", "test")}


def make_split(store: SegmentStore, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """Train/val/test indices of ``store`` by the configured split (``cfg.data_split``; its seed defaults to the
    run's ``seed``)."""
    return split_parts(cfg.data_split.apply(store, default_seed=cfg.seed))


def resolve_rr(mode: str, store: SegmentStore) -> int:
    """RR-context columns a run reads from ``store``: its ``rr`` extra's width for ``"auto"`` (0 without one) and
    ``"on"`` (a :class:`~ecgtransfer.errors.ConfigError` without one), 0 for ``"off"``."""
    from ecgtransfer.signals.beats import RR_FEATURES

    if mode == "off":
        return 0
    has = "rr" in (store.manifest.get("extras") or [])
    if not has:
        if mode == "on":
            raise ConfigError(f"rr = 'on' but store {store.path} holds no RR context (extra 'rr'); convert it with "
                              "--rr-context (the default for beats) or train with --rr off")
        return 0
    width = int(store.extra("rr").shape[1])
    if width > len(RR_FEATURES):
        raise ConfigError(f"store {store.path}: its rr extra has {width} columns, expected at most "
                          f"{len(RR_FEATURES)} ({', '.join(RR_FEATURES)})")
    return width
