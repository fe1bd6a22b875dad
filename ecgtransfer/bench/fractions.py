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


import numpy as np

from ecgtransfer.training.data import SUBSAMPLE_SALT, subsample  # the one subsampler (also train_fraction's)

__all__ = ["subsample", "cap_evaluation"]

#: Mixed into the seed so the evaluation caps' stream is independent of the training RNG of the same seed.
_SALT = SUBSAMPLE_SALT


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
