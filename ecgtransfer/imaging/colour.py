"""From one-channel images to three channels: per-image scaling, colormap lookup, ImageNet normalisation."""
from __future__ import annotations

import functools

import numpy as np
import torch

from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging._tensor import cached, empty
from ecgtransfer.models.weight_registry import DEFAULT_META

#: torchvision's ImageNet statistics (RGB), the normalisation the pretrained ResNet50 expects: read from the weight
#: entry (:attr:`~ecgtransfer.models.weight_registry.WeightMeta.mean` / ``std`` of the default weights)
IMAGENET_MEAN: tuple[float, float, float] = DEFAULT_META.mean
IMAGENET_STD: tuple[float, float, float] = DEFAULT_META.std
LUT_SIZE = 256


def scale_terms(img: torch.Tensor, flat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image of ``img [..., H, W]``: ``lo`` (its minimum) and ``inv = 1 / (max - min)``, both ``[...]``.

    ``inv`` is 0 (the image scales to all zeros) for an image without range: a range of zero, or below 64
    float epsilons of its magnitude (rounding noise of a constant image), and where ``flat [...]`` (images of
    flat-line series) is true.
    """
    v = img.reshape(*img.shape[:-2], -1)
    lo, hi = v.amin(dim=-1), v.amax(dim=-1)
    rng = hi - lo
    dead = (rng <= 64 * torch.finfo(img.dtype).eps * torch.maximum(hi.abs(), lo.abs())) | (rng == 0)
    if flat is not None:
        dead = dead | flat
    inv = torch.where(dead, torch.zeros_like(rng), 1.0 / torch.where(dead, torch.ones_like(rng), rng))
    return lo, inv


def minmax_scale(img: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
    """Scale each image ``[..., H, W]`` to ``[0, 1]`` by its own minimum and maximum (see :func:`scale_terms`
    for the images that become all zeros)."""
    lo, inv = scale_terms(img, flat)
    return (img - lo[..., None, None]).mul_(inv[..., None, None]).clamp_(0, 1)


@functools.lru_cache(maxsize=16)
def colormap_table(name: str = "viridis") -> np.ndarray:
    """The ``[256, 3]`` RGB table of a matplotlib colormap (values in ``[0, 1]``)."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name].resampled(LUT_SIZE)
    except KeyError as exc:
        raise ConfigError(f"unknown matplotlib colormap {name!r}; try 'viridis', 'magma', 'jet', 'gray'") from exc
    table = np.asarray(cmap(np.arange(LUT_SIZE))[:, :3], dtype=np.float64)
    table.setflags(write=False)
    return table


def apply_colormap(img: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Images ``[..., H, W]`` in ``[0, 1]`` -> ``[..., 3, H, W]`` through a ``[K, 3]`` table.

    Entry ``min(floor(v * K), K - 1)``, the bin matplotlib's ``Colormap.__call__`` picks for a float. Each
    output channel is one gather (``torch.take``) into its column of the table.
    """
    k = lut.shape[0]
    idx = (img * k).floor_().clamp_(0, k - 1).long()
    out = empty((*img.shape[:-2], 3, *img.shape[-2:]), lut.dtype, img.device)
    for c in range(3):
        torch.take(lut[:, c].contiguous(), idx, out=out[..., c, :, :])
    return out


def colormap_lut(name: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """:func:`colormap_table` as a tensor on ``device`` (cached)."""
    return cached(("cmap", name), lambda: colormap_table(name), device, dtype)


def imagenet_stats(channels: int, device: torch.device | str,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet ``mean`` and ``std`` as ``[channels, 1, 1]``; for ``channels != 3`` the average of the three."""
    if channels == 3:
        mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
    else:
        mean = np.full(channels, np.mean(IMAGENET_MEAN))
        std = np.full(channels, np.mean(IMAGENET_STD))
    return (cached(("mean", channels), lambda: mean.reshape(-1, 1, 1), device, dtype),
            cached(("std", channels), lambda: std.reshape(-1, 1, 1), device, dtype))


def imagenet_normalise(img: torch.Tensor, mean: torch.Tensor | None = None,
                       std: torch.Tensor | None = None) -> torch.Tensor:
    """``(img - mean) / std`` per channel of ``[B, C, H, W]`` images in ``[0, 1]``."""
    if mean is None or std is None:
        mean, std = imagenet_stats(img.shape[-3], img.device, img.dtype)
    return (img - mean) / std
