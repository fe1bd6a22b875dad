"""Anti-aliased resampling of series and resizing of images, batched in torch.

:func:`resample` changes the length of series ``[..., L] -> [..., M]`` with the polyphase windowed-sinc
filter of :func:`scipy.signal.resample_poly` (Kaiser window, beta 5, ten zero crossings, cut-off at the
lower of the two Nyquist rates). Because that filter, its edge extension and the keep-window are linear
in the input, the whole operation is one matrix ``W [L, M]``: column ``j`` is ``resample_poly`` of the
``j``-th unit impulse. ``W`` is built once per ``(L, M, padtype)`` with scipy and applied as a matrix
product on any device, so ``resample(x, M)`` equals ``scipy.signal.resample_poly(x, M/g, L/g,
padtype=padtype)`` (``g = gcd(L, M)``) to float32 rounding, and costs one GEMM.

:func:`resize_image` resizes images ``[..., H, W]`` with antialiased bilinear interpolation
(``torch.nn.functional.interpolate(mode="bilinear", antialias=True)``, the same triangle filter as PIL's
``Image.resize(..., BILINEAR)``).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging._tensor import as_signal, cached, flatten_series

#: extension modes of :func:`scipy.signal.upfirdn` that keep the operation linear
PADTYPES = ("line", "constant", "edge", "symmetric", "reflect", "antisymmetric", "antireflect", "smooth",
            "wrap", "mean", "median")


@functools.lru_cache(maxsize=64)
def resample_matrix(n_in: int, n_out: int, padtype: str = "line") -> np.ndarray:
    """The float64 matrix ``W [n_in, n_out]`` with ``x @ W == resample_poly(x, up, down, padtype=padtype)``.

    ``up = n_out / g`` and ``down = n_in / g`` with ``g = gcd(n_in, n_out)``. ``median`` is not linear in
    general and is refused.
    """
    from scipy.signal import resample_poly

    if n_in < 1 or n_out < 1:
        raise ConfigError(f"resample: lengths must be positive, got {n_in} -> {n_out}")
    if padtype not in PADTYPES or padtype == "median":
        raise ConfigError(f"resample: padtype must be one of {[p for p in PADTYPES if p != 'median']}, got {padtype!r}")
    if n_in == n_out:
        return np.eye(n_in)
    g = math.gcd(n_in, n_out)
    eye = np.eye(n_in)
    w = resample_poly(eye, n_out // g, n_in // g, axis=1, padtype=padtype)
    if w.shape != (n_in, n_out):  # pragma: no cover - scipy guarantees ceil(n_in * up / down) == n_out here
        raise ConfigError(f"resample: scipy returned {w.shape}, expected {(n_in, n_out)}")
    w.setflags(write=False)
    return w


def resample(x: torch.Tensor, n_out: int, *, padtype: str = "line") -> torch.Tensor:
    """Resample series ``[..., L]`` to ``[..., n_out]`` with an anti-aliasing polyphase filter.

    Equal (to float32 rounding) to ``scipy.signal.resample_poly(x, n_out/g, L/g, axis=-1, padtype=padtype)``.
    The identity when ``L == n_out``.
    """
    x = as_signal(x)
    n_in = int(x.shape[-1])
    n_out = int(n_out)
    if n_in == n_out:
        return x
    w = cached(("resample", n_in, n_out, padtype), lambda: resample_matrix(n_in, n_out, padtype), x.device, x.dtype)
    flat, lead = flatten_series(x)
    return (flat @ w).reshape(*lead, n_out)


def resize_image(img: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize images ``[..., H, W] -> [..., h, w]`` with antialiased bilinear interpolation.

    When neither side shrinks the antialiasing filter is the plain bilinear one, so the faster
    non-antialiased kernel is used (same values to float32 rounding).
    """
    h, w = (size, size) if isinstance(size, int) else size
    if tuple(img.shape[-2:]) == (h, w):
        return img
    lead = img.shape[:-2]
    flat = img.reshape(-1, 1, *img.shape[-2:])
    shrinks = h < img.shape[-2] or w < img.shape[-1]
    out = F.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False, antialias=shrinks)
    return out.reshape(*lead, h, w)
