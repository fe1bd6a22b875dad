"""What a single-label training run is built from, in the order :meth:`ecgtransfer.training.engine._Trainer.setup`
builds it: each builder returns one frozen dataclass.

* :func:`build_runtime` -> :class:`Runtime`: threads, device, the torchrun process group; then :func:`seed_run`:
  determinism and the seed;
* :func:`build_data` -> :class:`DataParts`: the split, the classes the run keeps, validation weights;
* :func:`build_model_parts` -> :class:`ModelParts`: the image encoders (probed on one segment), the model, precision;
* :func:`build_optimisation` -> :class:`Optimisation`: optimizer, batch plan, schedule, scaler, loss weights,
  augmentation;
* :func:`training_module`: the module the train step calls (DDP, ``torch.compile``).

The order matters and is kept: the seed is set before the model's weights are drawn, and the image settings fail on
the probe before ImageNet weights are fetched.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ecgtransfer.conversion import BEAT_TASKS
from ecgtransfer.errors import ConfigError, TrainingError
from ecgtransfer.imaging import naming_segments
from ecgtransfer.signals.template import (compose_input, input_channels, raw_lead_channels, store_templates,
                                          uses_template)
from ecgtransfer.store import SegmentStore
from ecgtransfer.training import distributed as D
from ecgtransfer.training.checkpoint import seed_everything
from ecgtransfer.training.config import TrainConfig
from ecgtransfer.training.data import (
    BatchPlan,
    SignalAugment,
    RunParts,
    class_weights,
    make_split,
    resolve_rr,
    run_parts_of,
    split_parts,
    validation_weights,
)
from ecgtransfer.training.precision import describe as describe_precision
from ecgtransfer.training.precision import run_precision
from ecgtransfer.training.runtime import resolve_device, set_determinism

#: the engine's logger: setup messages (precision, threads) keep the logger name a run has always logged under
log = logging.getLogger("ecgtransfer.training.engine")


@dataclass(frozen=True)
class Runtime:
    """Where the run executes: ``device``, this process's place in the job (``dist``), and whether this run
    opened the process group (``own_pg``: it closes it)."""

    device: torch.device
    dist: D.DistInfo
    own_pg: bool


@dataclass(frozen=True)
class DataParts:
    """The segments and labels of a run: the :class:`~ecgtransfer.training.data.RunParts` of
    :func:`~ecgtransfer.training.data.run_parts_of` (parts, classes, label map, majority and its cap), and what the
    run adds to them.

    Attributes:
        run: the parts ``{"train", "val", "test": store indices [n]}``, the classes the run keeps, ``label_map
            [K_store]`` (store label -> run label, -1: left out), the classes left out, the majority class and the
            segments its cap removed.
        val_weights: ``[len(parts["val"])]`` weights of the validation part at its true prevalence (None: nothing
            to undo); ``val_prevalence``: ``"true"`` or ``"capped"``.
        run_labels: ``[N]`` the run's label of every store segment (-1: excluded).
        rr_dim: the RR columns the model reads.
    """

    run: RunParts
    val_weights: np.ndarray | None
    val_prevalence: str
    run_labels: np.ndarray
    rr_dim: int


@dataclass(frozen=True)
class ModelParts:
    """The networks of a run: ``encoder`` (validation; None for raw-signal models), ``train_encoder`` (the same
    without its finite check), the model and its ``spec``, the autocast ``dtype`` (None: float32) and
    ``channels_last``."""

    encoder: torch.nn.Module | None
    train_encoder: torch.nn.Module | None
    spec: Any
    model: torch.nn.Module
    dtype: torch.dtype | None
    channels_last: bool


@dataclass(frozen=True)
class Optimisation:
    """How the model is trained: the tiered ``optimizer`` (and its parameters, ``clip_params``, for ``grad_clip``),
    the batch ``plan`` and its steps, the per-step ``scheduler``, the fp16 ``scaler``, the class weights of the loss
    (``weights_np [K]`` and ``loss_weight`` on the device) and the signal ``augment`` (None: off)."""

    optimizer: torch.optim.Optimizer
    clip_params: list[torch.nn.Parameter]
    plan: BatchPlan
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    scheduler: Any
    scaler: torch.amp.GradScaler
    weights_np: np.ndarray
    loss_weight: torch.Tensor
    augment: SignalAugment | None


def model_spec_of(cfg: TrainConfig, store: SegmentStore, *, num_classes: int, in_channels: int,
                  rr_dim: int) -> Any:
    """The :class:`~ecgtransfer.models.registry.ModelSpec` of a run of ``cfg`` on ``store``."""
    from ecgtransfer.models.registry import ModelSpec

    params = store.manifest.get("parameters") or {}
    return ModelSpec(kind=cfg.model, num_classes=num_classes, in_channels=in_channels, rr_dim=rr_dim,
                     length=int(store.shape[2]), fs=float(store.fs or 0.0),
                     r_index=int(params.get("before_samples") or 0),
                     n_leads=raw_lead_channels(cfg.beat_input, int(store.shape[1])) if uses_template(cfg.beat_input)
                     else 0)


def check_data(store: SegmentStore, parts: dict[str, np.ndarray]) -> None:
    """Refuse a split a run cannot train on: a store of one class, indices out of range, an empty training or
    validation part, a training part of one class."""
    if store.num_classes < 2:
        raise TrainingError(f"store {store.path} has {store.num_classes} class ({store.class_names}); "
                            "classification needs at least two")
    for part, idx in parts.items():
        if idx.size and (idx.min() < 0 or idx.max() >= len(store)):
            raise TrainingError(f"{part} indices out of range for store {store.path} with {len(store)} segments")
    if parts["train"].size == 0:
        raise TrainingError(f"the training split of store {store.path} is empty (split has "
                            f"{len(parts['val'])} val, {len(parts['test'])} test segments); use more records "
                            "or another split method")
    if parts["val"].size == 0:
        raise TrainingError(f"the validation split of store {store.path} is empty; early stopping and the best "
                            "checkpoint need validation data (use more patients or a larger val_fraction)")
    present = np.unique(store.labels[parts["train"]])
    if present.size < 2:
        name = store.class_names[int(present[0])]
        raise TrainingError(f"the training split of store {store.path} holds a single class ({name!r}); "
                            "classification needs at least two")


def set_threads(cfg: TrainConfig) -> None:
    """torch's CPU thread count from ``cfg.num_threads`` (unset: torch's own), at most :func:`max_threads`."""
    if cfg.num_threads:
        from ecgtransfer._validate import max_threads

        if cfg.num_threads > max_threads():  # a config asking for 100000 threads: libgomp aborts the process
            log.warning("num_threads %d is more than %d (4 per CPU); using %d", cfg.num_threads, max_threads(),
                        max_threads())
        torch.set_num_threads(min(cfg.num_threads, max_threads()))


def schedule_of(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, int, Any]:
    """``(total steps, warm-up steps, scheduler)`` of a run of ``steps_per_epoch``: ``epochs`` of them, at most
    ``max_steps``; warm-up ``warmup_steps`` or 5% of the total (and short of it)."""
    from ecgtransfer.training.schedules import build_scheduler

    total = cfg.epochs * steps_per_epoch
    total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(round(0.05 * total_steps))
    warmup_steps = min(warmup, max(total_steps - 1, 0))
    scheduler = build_scheduler(optimizer, kind=cfg.scheduler, total_steps=total_steps, warmup_steps=warmup_steps)
    return total_steps, warmup_steps, scheduler


def build_runtime(cfg: TrainConfig) -> Runtime:
    """Set the thread count, pick the device and join the torchrun process group (when launched by torchrun)."""
    set_threads(cfg)
    device = resolve_device(cfg.device)
    own_pg = D.launched_by_torchrun() and not torch.distributed.is_initialized()
    dist = D.init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    return Runtime(device=device, dist=dist, own_pg=own_pg)


def seed_run(cfg: TrainConfig, runtime: Runtime) -> None:
    """Determinism settings on the run's device and every generator seeded: before the split and the weights."""
    set_determinism(cfg.deterministic, runtime.device)
    seed_everything(cfg.seed)


def build_data(store: SegmentStore, cfg: TrainConfig, split: Any | None) -> DataParts:
    """The run's parts: ``split`` (explicit indices) or the configured split, checked, then the classes, caps and
    validation weights of :func:`~ecgtransfer.training.data.run_parts_of`."""
    parts = split_parts(split) if split is not None else make_split(store, cfg)
    check_data(store, parts)
    rp = run_parts_of(store, parts, cfg)
    check_data(store, rp.parts)
    # the validation part at its true prevalence: weights undoing the majority cap (None: nothing to undo)
    val_weights = validation_weights(store, rp, cfg.validation_prevalence)
    return DataParts(
        run=rp, val_weights=val_weights,
        val_prevalence="capped" if rp.majority_capped.get("val") and val_weights is None else "true",
        run_labels=rp.label_map[np.asarray(store.labels)],  # [N] the run's labels (-1: excluded)
        rr_dim=resolve_rr(cfg.rr, store))


def _encoders(store: SegmentStore, cfg: TrainConfig, train: np.ndarray, device: torch.device
              ) -> tuple[torch.nn.Module | None, torch.nn.Module | None, int]:
    """``(encoder, train_encoder, model input channels)``; the encoder renders the first training segment once, so
    image size and encoding settings fail here, before the run directory is written."""
    from ecgtransfer.models.registry import MODEL_INPUT

    if uses_template(cfg.beat_input) and store.manifest.get("task") not in BEAT_TASKS:
        raise ConfigError(f"beat_input {cfg.beat_input!r} needs a beat store (tasks {list(BEAT_TASKS)}); "
                          f"{store.path} holds {store.manifest.get('task')!r} segments")
    in_channels = input_channels(cfg.beat_input, int(store.shape[1]))
    if MODEL_INPUT[cfg.model] != "images":
        return None, None, in_channels
    encoder = cfg.image_encoder(store.fs).to(device)
    first = train[:1]
    probe_np = store.batch(first)
    if uses_template(cfg.beat_input):
        templates, index = store_templates(store)
        probe_np = compose_input(probe_np, templates[index[first]], cfg.beat_input)
    probe = torch.from_numpy(probe_np).to(device)
    with naming_segments(probe, train[:1], store):
        encoder(probe)  # image size and encoding settings fail here, before the run directory is written
    # the train step checks its batch for NaN/inf inside its one device sync (the loss read-back) instead of
    # the encoder's own check, which would add a second sync per step before the forward pass
    train_encoder = cfg.image_encoder(store.fs, check_finite_values=False).to(device)
    return encoder, train_encoder, encoder.out_channels(in_channels)


def init_weights(cfg: TrainConfig, dist: D.DistInfo, *, resuming: bool) -> str | None:
    """The ``weights`` the model is built with.

    ``None`` for ``init="scratch"`` and when ``resuming`` from an existing ``last.pt`` (its weights replace the
    initial ones, so a deleted init file or an offline machine must not matter). Under torchrun, ImageNet
    weights are resolved by local rank 0 first (downloading them once per node), then the other ranks read
    the cached file after a barrier.
    """
    from ecgtransfer.errors import WeightsError
    from ecgtransfer.models.weight_registry import imagenet_file, is_weight_name

    init = cfg.init
    if init == "scratch" or resuming:
        return None
    if dist.enabled and is_weight_name(init):
        failed: WeightsError | None = None
        if dist.local_rank == 0:
            try:
                imagenet_file(str(init).lower(), progress=cfg.progress)
            except WeightsError as exc:  # the other ranks must still reach the barrier
                failed = exc
        D.barrier(dist)
        if failed is not None:
            raise failed
    return init


def build_model_parts(store: SegmentStore, cfg: TrainConfig, data: DataParts, runtime: Runtime, *,
                      resuming: bool) -> ModelParts:
    """The encoders (probed), the model (its initial weights: :func:`init_weights`; ``resuming``: a ``last.pt``
    will replace them), and the precision it runs at."""
    from ecgtransfer.models.registry import build_model

    device = runtime.device
    encoder, train_encoder, in_channels = _encoders(store, cfg, data.run.parts["train"], device)
    spec = model_spec_of(cfg, store, num_classes=len(data.run.class_names), in_channels=in_channels,
                         rr_dim=data.rr_dim)
    weights = init_weights(cfg, runtime.dist, resuming=resuming)
    model = build_model(spec, weights=weights, class_names=data.run.class_names, head=cfg.init_head).to(device)
    dtype, channels_last = run_precision(cfg.amp, cfg.channels_last, device)
    if runtime.dist.is_main:
        log.info("%s", describe_precision(cfg.amp, cfg.channels_last, device, dtype, channels_last))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return ModelParts(encoder=encoder, train_encoder=train_encoder, spec=spec, model=model, dtype=dtype,
                      channels_last=channels_last)


def build_optimisation(store: SegmentStore, cfg: TrainConfig, data: DataParts, nets: ModelParts,
                       runtime: Runtime) -> Optimisation:
    """The tiered optimizer of ``nets.model``, the batch plan of this rank, the schedule over the run's steps
    (warm-up: ``warmup_steps`` or 5% of them), the fp16 scaler, the loss's class weights and the augmentation."""
    from ecgtransfer.models.tiers import build_optimizer

    device, dist = runtime.device, runtime.dist
    optimizer = build_optimizer(nets.model, cfg.tier_config())
    clip_params = [p for g in optimizer.param_groups for p in g["params"]]  # for grad_clip
    plan = BatchPlan(data.run.parts["train"], data.run_labels, cfg.batch_size, cfg.seed,
                     balanced=cfg.imbalance == "sampler", rank=dist.rank, world_size=dist.world_size)
    steps_per_epoch = len(plan)
    total_steps, warmup_steps, scheduler = schedule_of(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=nets.dtype == torch.float16)
    k = len(data.run.class_names)
    w = class_weights(data.run_labels[data.run.parts["train"]], k) if cfg.imbalance == "weighted" else np.ones(k)
    augment = (SignalAugment(seed=cfg.seed, fs=store.fs, scale=cfg.aug_scale, wander=cfg.aug_wander,
                             noise=cfg.aug_noise, shift=cfg.aug_shift, rank=dist.rank)
               if cfg.augment else None)
    return Optimisation(optimizer=optimizer, clip_params=clip_params, plan=plan, steps_per_epoch=steps_per_epoch,
                        total_steps=total_steps, warmup_steps=warmup_steps, scheduler=scheduler, scaler=scaler,
                        weights_np=w, loss_weight=torch.tensor(w, dtype=torch.float32, device=device),
                        augment=augment)


def training_module(model: torch.nn.Module, cfg: TrainConfig, runtime: Runtime) -> torch.nn.Module:
    """The module the train step calls: ``model``, wrapped in DistributedDataParallel under torchrun, compiled with
    ``cfg.compile``."""
    train_model: torch.nn.Module = model
    if runtime.dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    return train_model


__all__ = ["Runtime", "DataParts", "ModelParts", "Optimisation", "model_spec_of", "check_data", "build_runtime",
           "seed_run", "build_data", "init_weights", "build_model_parts", "build_optimisation", "training_module"]
