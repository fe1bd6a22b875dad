"""Gramian angular fields (Wang & Oates 2015) of batched series, and piecewise aggregate approximation.

Same meaning as :class:`pyts.image.GramianAngularField` (tested against it). A series is reduced to
``image_size`` points by piecewise aggregate approximation (PAA: the mean of consecutive windows, with
pyts's window bounds, optionally overlapping), min-max scaled per series into ``sample_range`` (a
constant series maps to ``sample_range[0]``), read as ``cos(phi)``, and turned into

* summation (GASF): ``cos(phi_i + phi_j) = cos_i cos_j - sin_i sin_j``,
* difference (GADF): ``sin(phi_i - phi_j) = sin_i cos_j - cos_i sin_j``,

with ``sin = sqrt(clip(1 - cos**2, 0, 1))``.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from ecgtransfer.errors import ConfigError, SignalError
from ecgtransfer.imaging._tensor import as_signal, cached, empty, flatten_series, is_number, resolve_size

METHODS = {"summation": "summation", "s": "summation", "difference": "difference", "d": "difference"}


def paa_bounds(length: int, output_size: int, overlapping: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Window ``[start, end)`` bounds of PAA reducing ``length`` samples to ``output_size`` means (pyts's)."""
    window, rem = divmod(length, output_size)
    window += rem != 0
    if not overlapping:
        bounds = np.linspace(0, length, output_size + 1).astype(np.int64)
        return bounds[:-1], bounds[1:]
    extra = output_size * window - length
    shifts = np.linspace(0, extra, output_size).astype(np.int64)
    starts = np.arange(output_size, dtype=np.int64) * window - shifts
    return starts, starts + window


@functools.lru_cache(maxsize=64)
def paa_matrix(length: int, output_size: int, overlapping: bool = False) -> np.ndarray:
    """``A [length, output_size]`` with ``x @ A`` = the PAA of ``x`` (the identity when no reduction)."""
    if output_size == length:
        return np.eye(length)
    start, end = paa_bounds(length, output_size, overlapping)
    a = np.zeros((length, output_size))
    for j, (s, e) in enumerate(zip(start, end)):
        a[s:e, j] = 1.0 / (e - s)
    a.setflags(write=False)
    return a


def paa(x: Any, output_size: int, *, overlapping: bool = False) -> torch.Tensor:
    """Piecewise aggregate approximation ``[..., L] -> [..., output_size]`` (pyts's window bounds)."""
    x = as_signal(x)
    L = int(x.shape[-1])
    if output_size == L:
        return x
    a = cached(("paa", L, int(output_size), bool(overlapping)), lambda: paa_matrix(L, int(output_size), bool(overlapping)),
               x.device, x.dtype)
    flat, lead = flatten_series(x)
    return (flat @ a).reshape(*lead, int(output_size))


def gramian_angular_field(x: Any, method: str = "summation", *, image_size: int | float = 1.0,
                          sample_range: tuple[float, float] | None = (-1.0, 1.0),
                          overlapping: bool = False) -> torch.Tensor:
    """Gramian angular fields of series ``[..., L] -> [..., S, S]``.

    Args:
        x: series ``[B, L]`` or ``[B, C, L]`` (any leading shape), tensor or array, any device.
        method: ``"summation"`` (``"s"``, GASF) or ``"difference"`` (``"d"``, GADF).
        image_size: side ``S``: an int in ``[1, L]``, or a float in ``(0, 1]`` meaning ``ceil(image_size * L)``;
            ``S < L`` reduces the series by PAA first.
        sample_range: ``(lo, hi)`` with ``-1 <= lo < hi <= 1``: each (reduced) series is min-max scaled into it;
            ``None``: no scaling, the values must already lie in ``[-1, 1]`` (else :class:`SignalError`).
        overlapping: PAA with overlapping windows of equal size (pyts's ``overlapping``).

    Returns:
        ``[..., S, S]`` with values in ``[-1, 1]``, in the input's floating dtype.
    """
    if method not in METHODS:
        raise ConfigError(f"gramian_angular_field: method must be 'summation', 's', 'difference' or 'd', got {method!r}")
    if sample_range is not None:
        if not (isinstance(sample_range, (tuple, list)) and len(sample_range) == 2
                and all(is_number(v) for v in sample_range) and -1 <= sample_range[0] < sample_range[1] <= 1):
            raise ConfigError(f"gramian_angular_field: sample_range must be None or (lo, hi) with -1 <= lo < hi <= 1, "
                              f"got {sample_range!r}")
    x = as_signal(x)
    L = int(x.shape[-1])
    size = resolve_size(image_size, L, "gramian_angular_field: image_size")
    flat, lead = flatten_series(x)
    # The per-series work (PAA, scaling, sin) is O(L) and runs in float64 where the device has it:
    # sqrt(1 - cos**2) is ill-conditioned near |cos| = 1 and would cost ~1e-4 in float32; the O(S**2)
    # image is then formed in the input's dtype.
    wide = torch.float64 if x.device.type != "mps" else x.dtype
    v = paa(flat.to(wide), size, overlapping=overlapping)
    if sample_range is None:
        if bool((v.amin() < -1) | (v.amax() > 1)):
            raise SignalError("gramian_angular_field: with sample_range=None every value must lie in [-1, 1], "
                              f"found [{float(v.amin()):.4g}, {float(v.amax()):.4g}]")
        cos = v
    else:
        lo, hi = float(sample_range[0]), float(sample_range[1])
        vmin = v.amin(dim=-1, keepdim=True)
        rng = v.amax(dim=-1, keepdim=True) - vmin
        rng = torch.where(rng < 10 * torch.finfo(torch.float64).eps, torch.ones_like(rng), rng)  # as scikit-learn
        scale = (hi - lo) / rng
        cos = v * scale + (lo - vmin * scale)
    sin = (1.0 - cos.square()).clamp_(0.0, 1.0).sqrt_()
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    # one batched GEMM with k = 2 writes the image once: [cos, sin] @ [cos, -sin]^T or [sin, cos] @ [cos, -sin]^T
    right = torch.stack([cos, -sin], dim=-1).transpose(1, 2)  # [N, 2, S]
    left = torch.stack([cos, sin] if METHODS[method] == "summation" else [sin, cos], dim=-1)  # [N, S, 2]
    out = torch.bmm(left, right, out=empty((left.shape[0], size, size), x.dtype, x.device))
    return out.reshape(*lead, size, size)
