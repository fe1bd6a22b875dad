"""Run-time pieces shared by training, evaluation and prediction: device, precision, model forward, inference."""
from __future__ import annotations

import contextlib
import os
import resource
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging import naming_segments
from ecgtransfer.training.precision import amp_dtype, cpu_info, use_channels_last

__all__ = ["amp_dtype", "autocast", "environment", "infer", "logits_of", "parse_tiers", "peak_memory_mb",
           "reset_peak_memory", "resolve_device", "set_determinism", "use_channels_last"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is a :class:`ConfigError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here (torch {torch.__version__}); "
                          "use --device cpu")
    return dev


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing for ``None`` (exact fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_determinism(enabled: bool, device: torch.device) -> None:
    """Deterministic algorithms (warn-only where none exists) and cuDNN settings."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = not enabled
        torch.backends.cudnn.deterministic = enabled
    torch.use_deterministic_algorithms(enabled, warn_only=True)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA ``max_memory_allocated`` on GPU, otherwise the process's peak resident set size, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def logits_of(model: nn.Module, encoder: nn.Module | None, x: torch.Tensor, *, dtype: torch.dtype | None,
              channels_last: bool, rr: torch.Tensor | None = None) -> torch.Tensor:
    """Render ``x [B, C, L]`` to images ``[B, 3, H, W]`` (``[B, C, H, W]`` with ``lead="stack"``) on its device
    and return float32 logits ``[B, K]``; a model of raw signals (``encoder=None``) reads ``x`` itself.

    ``rr [B, R]`` (RR context, on ``x``'s device) goes to a model that fuses it. The images are rendered in float32
    outside autocast (the encoders are exact against their references); ``dtype`` autocast covers the model only,
    so the cast happens at its input."""
    inputs = x
    if encoder is not None:
        with torch.no_grad():
            inputs = encoder(x)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
    with autocast(x.device, dtype):
        logits = model(inputs) if rr is None else model(inputs, rr)
    return logits.float()


#: the output activations of :func:`infer`: softmax over classes, sigmoid per label
ACTIVATIONS = ("softmax", "sigmoid")


@torch.no_grad()
def infer(model: nn.Module, encoder: nn.Module, batches: Any, device: torch.device, *, dtype: torch.dtype | None,
          channels_last: bool, weight: torch.Tensor | None = None, store: Any = None,
          activation: str = "softmax") -> dict[str, np.ndarray | float]:
    """Probabilities for an iterable of ``(x [b, C, L], y [b] or None, idx [b])`` or
    ``(x, y, idx, rr [b, R] or None)`` (see :func:`logits_of`).

    A batch with NaN or infinite samples raises :class:`~ecgtransfer.errors.SignalError` naming its ``idx``
    entries (and their records when ``store``, the store they index, is given).

    ``activation``: ``"softmax"`` (single-label classes) or ``"sigmoid"`` (one independent probability per label of
    a multilabel model; no loss is summed then).

    Returns ``{"probs": [n, K] float32, "labels": [n] int64, "indices": [n] int64, "loss_sum": float}``
    (``loss_sum`` is the summed, class-weighted cross-entropy when labels are given).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    was_training = model.training
    model.eval()
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    # summed on the device in float64 (as Python floats would be) and read back once, after the loop
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    weight_sum = torch.zeros((), dtype=torch.float64, device=device)
    for item in batches:
        x, y, idx = item[:3]
        rr = item[3] if len(item) > 3 and item[3] is not None else None
        x = x.to(device, non_blocking=True)
        if rr is not None:
            rr = torch.as_tensor(rr).to(device, non_blocking=True)
        with naming_segments(x, idx, store):
            logits = logits_of(model, encoder, x, dtype=dtype, channels_last=channels_last, rr=rr)
        p = torch.softmax(logits, dim=1) if activation == "softmax" else torch.sigmoid(logits)
        probs.append(p.cpu().numpy().astype(np.float32))
        indices.append(np.asarray(idx, dtype=np.int64))
        if y is not None:
            labels.append(np.asarray(y, dtype=np.int64))  # the host copy: no device round trip
            if activation == "softmax":  # a class loss (sigmoid outputs of a multilabel model have none here)
                y = y.to(device)
                loss_sum += F.cross_entropy(logits, y, weight=weight, reduction="sum").double()
                weight_sum += weight[y].sum().double() if weight is not None else float(len(y))
    model.train(was_training)
    k = getattr(model, "num_classes", None)
    empty = np.zeros((0, k or 0), dtype=np.float32)
    return {
        "probs": np.concatenate(probs) if probs else empty,
        "labels": np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
        "indices": np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
        "loss_sum": float(loss_sum),
        "weight_sum": float(weight_sum),
    }


def environment(device: torch.device) -> dict[str, Any]:
    """Package, torch, CUDA versions and the device name, for ``run.json``."""
    import platform

    from ecgtransfer import __version__

    env: dict[str, Any] = {
        "ecgtransfer": __version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else str(cpu_info()["model"]),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cpu":
        info = cpu_info()
        env.update(cpu_model=info["model"], cpu_capability=info["capability"], cpu_native_bf16=info["native_bf16"])
    return env


def parse_tiers(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"1e-5,1e-4,1e-3"`` -> ``(1e-5, 1e-4, 1e-3)``."""
    if not isinstance(text, str):
        vals = [float(v) for v in text]
    else:
        try:
            vals = [float(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise ConfigError(f"--tiers expects three comma-separated learning rates, got {text!r}") from exc
    if len(vals) != 3:
        raise ConfigError(f"--tiers expects three learning rates (features_1, features_2, classifier), got {text!r}")
    return (vals[0], vals[1], vals[2])
