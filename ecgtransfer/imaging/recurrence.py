"""Recurrence plots (Eckmann, Oliffson Kamphorst & Ruelle 1987) of batched series.

Same meaning as :class:`pyts.image.RecurrencePlot` (tested against it). From a series
``(x_1, ..., x_L)`` with embedding dimension ``m`` and time delay ``tau`` the trajectories are
``v_i = (x_i, x_{i+tau}, ..., x_{i+(m-1)tau})`` for ``i = 1 .. n`` with ``n = L - (m - 1) tau``, and the
plot is ``R[i, j] = ||v_i - v_j||`` (Euclidean; ``|x_i - x_j|`` for ``m = 1``), or with a threshold
``eps`` the binary ``R[i, j] = 1 if ||v_i - v_j|| < eps else 0``.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging._tensor import as_signal, empty, flatten_series, is_number, resolve_size

_CDIST_FROM_DIMENSION = 9  # from this embedding dimension on, one cdist beats a loop of broadcast differences


def trajectory_count(length: int, dimension: int, time_delay: int) -> int:
    """``n = L - (m - 1) tau``: the side of the recurrence plot of a series of ``length`` samples."""
    return int(length) - (int(dimension) - 1) * int(time_delay)


def _check(L: int, dimension: Any, time_delay: Any, threshold: Any, percentage: Any) -> tuple[int, int]:
    m = resolve_size(dimension, L, "recurrence_plot: dimension")
    tau = resolve_size(time_delay, L, "recurrence_plot: time_delay")
    if trajectory_count(L, m, tau) < 1:
        raise ConfigError(f"recurrence_plot: no trajectory fits: dimension={m} and time_delay={tau} need more than "
                          f"{(m - 1) * tau} samples, the series has {L}; lower them")
    if threshold is not None and threshold not in ("point", "distance") and not is_number(threshold):
        raise ConfigError(f"recurrence_plot: threshold must be None, 'point', 'distance' or a number, got {threshold!r}")
    if is_number(threshold) and not threshold > 0:
        raise ConfigError(f"recurrence_plot: a numeric threshold must be > 0, got {threshold}")
    if not is_number(percentage) or not 0 <= percentage <= 100:
        raise ConfigError(f"recurrence_plot: percentage must be a number in [0, 100], got {percentage!r}")
    return m, tau


def distance_matrix(x: torch.Tensor, dimension: int, time_delay: int) -> torch.Tensor:
    """Pairwise Euclidean distances of the delay-embedded trajectories, ``[N, L] -> [N, n, n]``."""
    n = trajectory_count(x.shape[-1], dimension, time_delay)
    N = x.shape[0]
    if dimension == 1:
        return torch.sub(x[:, :, None], x[:, None, :], out=empty((N, n, n), x.dtype, x.device)).abs_()
    if dimension >= _CDIST_FROM_DIMENSION:
        traj = x.unfold(-1, (dimension - 1) * time_delay + 1, 1)[..., ::time_delay]  # [N, n, m]
        return torch.cdist(traj, traj, compute_mode="donot_use_mm_for_euclid_dist")
    acc = empty((N, n, n), x.dtype, x.device)
    diff = empty((N, n, n), x.dtype, x.device)
    for k in range(dimension):
        seg = x[:, k * time_delay:k * time_delay + n]
        if k == 0:
            torch.sub(seg[:, :, None], seg[:, None, :], out=acc).square_()
        else:
            acc.addcmul_(torch.sub(seg[:, :, None], seg[:, None, :], out=diff), diff)
    return acc.sqrt_()


def percentile(v: torch.Tensor, q: float) -> torch.Tensor:
    """Row-wise ``q``-th percentile of ``v [N, K]`` -> ``[N]``, numpy's default (linear) method step by step.

    The virtual index ``K * p + (1 - p) - 1`` (``p = q / 100``) and the two-sided interpolation are
    numpy's own formulas, so a percentile that lands on a data value is that value exactly.
    """
    k = v.shape[-1]
    p = float(q) / 100.0
    virtual = k * p + (1.0 + p * (1.0 - 1.0 - 1.0)) - 1.0
    if virtual >= k - 1:
        return v.amax(dim=-1)
    if virtual < 0:
        return v.amin(dim=-1)
    lo = int(math.floor(virtual))
    t = virtual - lo
    a = torch.kthvalue(v, lo + 1, dim=-1).values
    b = torch.kthvalue(v, lo + 2, dim=-1).values
    d = b - a
    return b - d * (1.0 - t) if t >= 0.5 else a + d * t


def recurrence_plot(x: Any, dimension: int | float = 1, time_delay: int | float = 1,
                    threshold: float | str | None = None, percentage: float = 10) -> torch.Tensor:
    """Recurrence plots of series ``[..., L] -> [..., n, n]``, ``n = L - (dimension - 1) * time_delay``.

    Args:
        x: series ``[B, L]`` or ``[B, C, L]`` (any leading shape), tensor or array, any device.
        dimension: embedding dimension ``m``: an int in ``[1, L]``, or a float in ``(0, 1]`` meaning
            ``ceil(dimension * L)``.
        time_delay: delay ``tau`` between the coordinates of a trajectory, in samples: an int in ``[1, L]``,
            or a float in ``(0, 1]`` meaning ``ceil(time_delay * L)``.
        threshold: ``None``: unthresholded distances; a number ``eps > 0``: ``1`` where the distance is
            below ``eps``; ``"point"``: ``eps`` is the ``percentage``-th percentile of each plot's
            distances (about ``percentage`` % of the points are 1); ``"distance"``: ``eps`` is
            ``percentage`` % of each plot's largest distance.
        percentage: in ``[0, 100]``, used by ``"point"`` and ``"distance"``.

    Returns:
        ``[..., n, n]`` distances, or 0/1 values with a threshold, in the input's floating dtype.
    """
    x = as_signal(x)
    flat, lead = flatten_series(x)
    m, tau = _check(int(x.shape[-1]), dimension, time_delay, threshold, percentage)
    dist = distance_matrix(flat, m, tau)
    n = dist.shape[-1]
    if threshold is None:
        out = dist
    else:
        if threshold == "point":
            eps = percentile(dist.reshape(dist.shape[0], n * n), percentage)[:, None, None]
        elif threshold == "distance":
            eps = (float(percentage) / 100.0) * dist.amax(dim=(-2, -1), keepdim=True)
        else:
            eps = float(threshold)
        out = torch.lt(dist, eps, out=dist)  # 1.0 where closer than eps, in place
    return out.reshape(*lead, n, n)
