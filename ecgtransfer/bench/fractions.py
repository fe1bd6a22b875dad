"""Data-efficiency subsampling of the training split: seeded, documented, nested.

Two modes:

``per-class``
    For each class, the training segments of that class are put in a random order (seeded) and the first
    ``ceil(fraction * n_class)`` are kept, at least one per class present in the training split. Every
    class stays represented, in its original proportion (rounded up). Segments of one patient may be kept
    in part.
``per-patient``
    The training patients are put in a random order (seeded) and the first ``ceil(fraction * n_patients)``
    are kept with all their segments (at least one patient). This is what "we labelled k patients" means,
    but with few patients a rare class may vanish from a small fraction; the report gives the class counts
    of every cell.

Nesting: for one seed, the order is fixed and only the cut point moves with ``fraction``, so the subsample
of a smaller fraction is always a subset of that of a larger one (learning curves compare like with like).
The validation and test splits are never subsampled. All arms of a seed see exactly the same subsample,
so differences between arms are paired by seed.
"""
from __future__ import annotations

import math

import numpy as np

from ecgtransfer.errors import ConfigError

#: Mixed into the seed so the subsample stream is independent of the training RNG of the same seed.
_SALT = 0x5EB5A3


def _keep(n: int, fraction: float) -> int:
    return max(1, min(n, math.ceil(fraction * n - 1e-9)))


def subsample(train: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray, fraction: float, *,
              mode: str = "per-class", seed: int = 0) -> np.ndarray:
    """Indices of the training subsample.

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
    rng = np.random.default_rng([_SALT, int(seed)])
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


def cap_evaluation(indices: np.ndarray, labels: np.ndarray, max_segments: int | None, *, seed: int = 0
                   ) -> np.ndarray:
    """At most about ``max_segments`` of an evaluation split, keeping each class's share (for CPU budgets).

    Each class keeps ``max(1, floor(max_segments * n_class / n))`` of its segments, drawn at random (seeded):
    the class proportions, hence positive predictivity (+P), stay those of the full split. The same
    subset is used by every cell. ``None`` or a split no larger than the cap returns ``indices`` (sorted).
    """
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    if max_segments is None or indices.size <= max_segments:
        return indices
    rng = np.random.default_rng([_SALT, 0xE7A1, int(seed)])
    lab = np.asarray(labels)[indices]
    kept = []
    for c in np.unique(lab):
        members = indices[lab == c]
        k = max(1, int(max_segments * members.size // indices.size))
        kept.append(members[rng.permutation(members.size)[:k]])
    return np.sort(np.concatenate(kept))
