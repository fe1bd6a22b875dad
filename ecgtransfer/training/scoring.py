"""The one path that runs a model over part of a store: the engine's validation and test, ``evaluate``, ``predict``
on store segments and the bench's extra passes all call :func:`score_part` (and then
:func:`ecgtransfer.training.decision.scored` for the metrics).

A part is a set of store indices; the scores come back ordered by store index, whatever order (or shard, under
DDP) the batches ran in, so two callers scoring the same part get the same rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ecgtransfer.store import SegmentStore
from ecgtransfer.training.data import batch_loader, eval_batches
from ecgtransfer.training.runtime import infer

#: what :func:`~ecgtransfer.training.runtime.infer` returns, before ordering (see ``gather`` of :func:`score_part`)
RawScores = Mapping[str, Any]


@dataclass(frozen=True)
class PartScores:
    """A model's outputs on a part of a store, ordered by store index.

    Attributes:
        labels: the part's labels in the run's numbering ``[n]``.
        probs: softmax probabilities ``[n, K]`` (float32; sigmoid ones of a multilabel model).
        indices: the store indices ``[n]``, ascending.
        loss_sum: the summed class-weighted cross-entropy (0 for sigmoid outputs).
        weight_sum: the summed class weights of the part's labels (the loss's denominator).
    """

    labels: np.ndarray
    probs: np.ndarray
    indices: np.ndarray
    loss_sum: float
    weight_sum: float

    @property
    def loss(self) -> float:
        """The class-weighted mean cross-entropy (NaN for an empty part)."""
        return self.loss_sum / self.weight_sum if self.weight_sum else math.nan

    def __len__(self) -> int:
        return int(len(self.indices))

    def probs_in_order_of(self, indices: np.ndarray) -> np.ndarray:
        """The probabilities ``[n, K]`` in the order of ``indices``: the store indices this part was scored on, in
        the order the caller gave them (undoes the ordering by store index)."""
        out = np.empty_like(self.probs)
        out[np.argsort(np.asarray(indices), kind="stable")] = self.probs
        return out


def score_part(model: nn.Module, encoder: nn.Module | None, store: SegmentStore, indices: np.ndarray, *,
               label_map: np.ndarray | None, rr_dim: int, beat_input: str, batch_size: int,
               device: torch.device, dtype: torch.dtype | None, channels_last: bool,
               weight: torch.Tensor | None = None, num_workers: int = 0,
               gather: Callable[[RawScores], RawScores] | None = None, activation: str = "softmax") -> PartScores:
    """Run ``model`` (with its image ``encoder``; None for a model of raw signals ``[B, C, L]``) over the store
    segments ``indices [n]`` in batches of ``batch_size``, as the run reads them (``label_map [K_store]`` from store
    labels to the run's, ``rr_dim`` RR columns, ``beat_input``), and order the result by store index.

    ``gather``: applied to the raw outputs of this process before ordering (the engine's DDP all-gather, where each
    rank scored its shard). ``activation``: ``"softmax"`` (single-label runs) or ``"sigmoid"`` (multilabel runs:
    independent label probabilities, no loss; :func:`~ecgtransfer.training.runtime.infer`).
    """
    loader = batch_loader(store, eval_batches(np.asarray(indices, dtype=np.int64), batch_size),
                          num_workers=num_workers, pin_memory=device.type == "cuda", label_map=label_map,
                          rr_dim=rr_dim, beat_input=beat_input)
    out = infer(model, encoder, loader, device, dtype=dtype, channels_last=channels_last, weight=weight,
                store=store, activation=activation)
    if gather is not None:
        out = gather(out)
    order = np.argsort(np.asarray(out["indices"]), kind="stable")
    return PartScores(labels=np.asarray(out["labels"])[order], probs=np.asarray(out["probs"])[order],
                      indices=np.asarray(out["indices"], dtype=np.int64)[order],
                      loss_sum=float(out["loss_sum"]), weight_sum=float(out["weight_sum"]))


__all__ = ["PartScores", "score_part"]
