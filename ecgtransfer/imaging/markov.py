"""Markov transition fields (Wang & Oates 2015) of batched series.

Same meaning as :class:`pyts.image.MarkovTransitionField` (tested against it). Each series is discretised
into ``n_bins`` bins (pyts's ``KBinsDiscretizer``: a value's bin is the number of bin edges strictly below
it), the first-order transition counts between consecutive samples form a matrix ``M [n_bins, n_bins]``
normalised per row (rows with no transition stay zero), and the field is ``MTF[i, j] = M[b_i, b_j]``. With
``image_size < L`` the field is averaged over blocks of pyts's PAA windows. Because ``MTF`` only depends on
the bins, the averaged field is computed without building the ``L x L`` field:
``AMTF = Q^T M Q`` with ``Q [n_bins, S]`` the fraction of each window's samples in each bin.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging._tensor import as_signal, cached, empty, flatten_series, is_int, resolve_size
from ecgtransfer.imaging.gramian import paa_matrix
from ecgtransfer.imaging.recurrence import percentile

STRATEGIES = ("quantile", "uniform", "normal")


def bin_edges(x: torch.Tensor, n_bins: int, strategy: str) -> torch.Tensor:
    """Bin edges ``[N, n_bins - 1]`` of series ``x [N, L]`` (float64; NaN marks a dropped edge).

    ``"quantile"``: the ``100 k / n_bins`` percentiles of each series; an edge within 1e-8 of the next one
    is dropped (for ``n_bins > 2``), as pyts does. ``"uniform"``: equal widths between each series'
    minimum and maximum. ``"normal"``: standard normal quantiles, the same for every series.
    """
    n = x.shape[0]
    if strategy == "normal":
        from scipy.stats import norm

        e = cached(("mtf-normal", n_bins), lambda: norm.ppf(np.linspace(0, 1, n_bins + 1)[1:-1]), x.device, x.dtype)
        return e.expand(n, n_bins - 1)
    if strategy == "uniform":
        lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
        step = (hi - lo) / n_bins
        ks = torch.arange(1, n_bins, dtype=x.dtype, device=x.device)
        return ks * step + lo
    qs = np.linspace(0, 100, n_bins + 1)[1:-1]
    edges = torch.stack([percentile(x, float(q)) for q in qs], dim=-1)  # [N, n_bins - 1]
    if n_bins > 2:
        keep = torch.ones_like(edges, dtype=torch.bool)
        keep[:, :-1] = (edges[:, 1:] - edges[:, :-1]).abs() > 1e-8
        edges = torch.where(keep, edges, torch.full_like(edges, float("nan")))
    return edges


def markov_transition_field(x: Any, image_size: int | float = 1.0, n_bins: int = 8, strategy: str = "quantile",
                            overlapping: bool = False) -> torch.Tensor:
    """Markov transition fields of series ``[..., L] -> [..., S, S]``.

    Args:
        x: series ``[B, L]`` or ``[B, C, L]`` (any leading shape), tensor or array, any device.
        image_size: side ``S``: an int in ``[1, L]``, or a float in ``(0, 1]`` meaning ``ceil(image_size * L)``;
            ``S < L`` averages the field over blocks of PAA windows (pyts's bounds).
        n_bins: number of bins (alphabet size), ``>= 2``.
        strategy: ``"quantile"`` (equally populated bins per series), ``"uniform"`` (equal widths per series)
            or ``"normal"`` (standard normal quantiles).
        overlapping: overlapping equal windows for the averaging (pyts's ``overlapping``).

    Returns:
        ``[..., S, S]`` transition probabilities in ``[0, 1]``, in the input's floating dtype. Binning runs
        in float64 (where the device has it) so bins equal pyts's.
    """
    if not is_int(n_bins) or n_bins < 2:
        raise ConfigError(f"markov_transition_field: n_bins must be an integer >= 2, got {n_bins!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"markov_transition_field: strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    x = as_signal(x)
    L = int(x.shape[-1])
    if L < 2:
        raise ConfigError(f"markov_transition_field: a series needs at least 2 samples, got {L}")
    size = resolve_size(image_size, L, "markov_transition_field: image_size")
    flat, lead = flatten_series(x)
    n = flat.shape[0]
    wide = torch.float64 if x.device.type != "mps" else x.dtype
    v = flat.to(wide)
    edges = bin_edges(v, n_bins, strategy)  # [N, E]
    bins = (edges[:, None, :] < v[:, :, None]).sum(dim=-1)  # [N, L]: edges strictly below (NaN never is)
    pair = bins[:, :-1] * n_bins + bins[:, 1:]
    counts = torch.zeros(n, n_bins * n_bins, dtype=wide, device=x.device)
    counts.scatter_add_(1, pair, torch.ones_like(pair, dtype=wide))
    mtm = counts.view(n, n_bins, n_bins)
    rows = mtm.sum(dim=-1, keepdim=True)
    mtm = (mtm / torch.where(rows == 0, torch.ones_like(rows), rows)).to(x.dtype)
    onehot = torch.nn.functional.one_hot(bins, n_bins).to(x.dtype)  # [N, L, n_bins]
    if size == L:
        q = onehot.transpose(1, 2)  # [N, n_bins, L]
    else:
        # pyts takes equal windows when S divides L and segmentation() otherwise: the same bounds as PAA's
        a = cached(("paa", L, size, bool(overlapping)), lambda: paa_matrix(L, size, bool(overlapping)), x.device,
                   x.dtype)
        q = onehot.transpose(1, 2) @ a  # [N, n_bins, S]
    out = torch.bmm(q.transpose(1, 2), torch.bmm(mtm, q), out=empty((n, size, size), x.dtype, x.device))
    return out.reshape(*lead, size, size)
