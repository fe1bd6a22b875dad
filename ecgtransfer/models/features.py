"""The ``features`` reference: RR intervals plus beat morphology with a linear classifier (after de Chazal 2004).

de Chazal, O'Dwyer and Reilly (IEEE TBME 51(7), 2004) classify MIT-BIH beats inter-patient with linear
discriminants on RR intervals and a handful of morphology features. This module computes a feature vector of
the same kind from one stored beat and its RR context, in torch (so it runs on the training device and at
predict time exactly as at training time), and classifies it with one linear layer fitted in closed form by
scikit-learn's :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis` (shrinkage covariance, equal
class priors: the class weighting of the paper) and copied into the layer, so the fitted model is an ordinary
weights-only state dict.

Features of a beat ``x [C, L]`` with the R peak at sample ``r`` (the store's ``before_samples``), per lead:

- QRS morphology: 10 samples from -50 ms to +100 ms around R; T wave: 9 samples from +150 ms to +440 ms;
  P wave: 5 samples from -240 ms to -80 ms (each relative to the baseline, the mean of -120..-80 ms, the PR
  segment), clamped to the window;
- QRS width: the span around R (within +-150 ms) where the slope exceeds 20 % of its largest value, in seconds;
- QRS energy: log of the summed squared baseline-relative samples from -50 to +100 ms;
- RR: the log of each RR column of the store (:data:`ecgtransfer.signals.beats.RR_FEATURES`).

Differences from the paper, stated: one lead by default (the paper used both), no wave delineation (fixed
sample positions stand in for the P-wave flag and T-wave duration), shrinkage LDA instead of plain LDA.

Shapes: ``x [B, C, L]``, ``rr [B, R]`` -> features ``[B, F]`` -> logits ``[B, K]``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from ecgtransfer.models.base import TieredModel
from ecgtransfer.models.fusion import RR_FLOOR

#: (start, stop, count) in seconds relative to the R peak of each group of morphology samples
MORPHOLOGY_SAMPLES: dict[str, tuple[float, float, int]] = {
    "qrs": (-0.05, 0.10, 10), "t": (0.15, 0.44, 9), "p": (-0.24, -0.08, 5)}
BASELINE_WINDOW = (-0.12, -0.08)
QRS_SEARCH = 0.15
SLOPE_FRACTION = 0.2


def feature_count(in_channels: int, rr_dim: int) -> int:
    """``F``, the width of the feature vector."""
    per_lead = sum(n for _, _, n in MORPHOLOGY_SAMPLES.values()) + 2
    return in_channels * per_lead + rr_dim


class BeatFeatures(nn.Module):
    """Morphology + RR features, no parameters: ``(x [B, C, L], rr [B, R] or None) -> [B, F]``.

    Args:
        length: samples per segment ``L``.
        fs: sampling rate in Hz.
        r_index: sample of the R peak inside the segment.
    """

    def __init__(self, length: int, fs: float, r_index: int) -> None:
        super().__init__()
        self.length, self.fs, self.r_index = int(length), float(fs), int(r_index)

        def pos(t0: float, t1: float, n: int) -> torch.Tensor:
            idx = np.round(self.r_index + np.linspace(t0, t1, n) * self.fs).astype(np.int64)
            return torch.as_tensor(np.clip(idx, 0, self.length - 1))

        for name, (t0, t1, n) in MORPHOLOGY_SAMPLES.items():
            self.register_buffer(f"idx_{name}", pos(t0, t1, n), persistent=False)
        b0, b1 = (int(np.clip(round(self.r_index + t * self.fs), 0, self.length - 1)) for t in BASELINE_WINDOW)
        self.baseline = (b0, max(b1, b0 + 1))
        q0, q1 = (int(np.clip(round(self.r_index + t * self.fs), 0, self.length)) for t in (-0.05, 0.10))
        self.qrs_span = (q0, max(q1, q0 + 1))
        s = int(round(QRS_SEARCH * self.fs))
        self.search = (max(0, self.r_index - s), min(self.length, self.r_index + s))

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        x = x.float()
        base = x[..., self.baseline[0]:self.baseline[1]].mean(dim=-1, keepdim=True)
        xb = x - base  # [B, C, L]
        parts = [xb[..., getattr(self, f"idx_{name}")] for name in MORPHOLOGY_SAMPLES]  # [B, C, n] each
        seg = x[..., self.search[0]:self.search[1]]
        slope = (seg[..., 1:] - seg[..., :-1]).abs()  # [B, C, S]
        above = slope > SLOPE_FRACTION * slope.amax(dim=-1, keepdim=True).clamp_min(1e-12)
        ar = torch.arange(above.shape[-1], device=x.device)
        first = torch.where(above, ar, above.shape[-1]).amin(dim=-1)
        last = torch.where(above, ar, -1).amax(dim=-1)
        width = ((last - first).clamp_min(0).float() / self.fs).unsqueeze(-1)  # [B, C, 1]
        energy = torch.log((xb[..., self.qrs_span[0]:self.qrs_span[1]] ** 2).sum(dim=-1, keepdim=True) + 1e-6)
        feats = torch.cat(parts + [width, energy], dim=-1).flatten(1)  # [B, C * per_lead]
        if rr is not None:
            feats = torch.cat([feats, torch.log(rr.float().clamp_min(RR_FLOOR))], dim=1)
        return feats


class Standardizer(nn.Module):
    """``(f - mean) / std`` with buffers set by :meth:`BeatFeatureModel.fit`: ``[B, F] -> [B, F]``."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mean) / self.std


class BeatFeatureModel(TieredModel):
    """Features + linear classifier, in the three tiers (``features_1`` extracts, ``features_2`` standardises,
    ``classifier`` is the linear layer), fitted by :meth:`fit`, not by gradient descent.

    Args:
        num_classes: ``K``.
        in_channels: leads ``C``.
        length, fs, r_index: see :class:`BeatFeatures`.
        rr_dim: RR columns read (0: morphology only).

    Forward: ``(x [B, C, L], rr [B, rr_dim] or None) -> logits [B, K]`` (LDA decision values: their softmax is
    the LDA posterior under the fitted priors).
    """

    def __init__(self, num_classes: int, in_channels: int, length: int, fs: float, r_index: int,
                 rr_dim: int = 0) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.rr_dim = int(rr_dim)
        n = feature_count(self.in_channels, self.rr_dim)
        self.features_1 = nn.Sequential(OrderedDict(extract=BeatFeatures(length, fs, r_index)))
        self.features_2 = nn.Sequential(OrderedDict(standardize=Standardizer(n)))
        self.classifier = nn.Sequential(OrderedDict(fc=nn.Linear(n, self.num_classes)))

    def features(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Raw (unstandardised) features ``[B, F]``."""
        return self.features_1.extract(x, rr if self.rr_dim else None)

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.features_2(self.features(x, rr)))

    def group_matcher(self) -> dict[str, tuple[str, ...]]:
        """Tiers and block units (see :meth:`TieredModel.group_matcher`); only the linear layer has parameters."""
        return {"features_1": (r"features_1\.extract",), "features_2": (r"features_2\.standardize",),
                "classifier": (r"classifier\.fc",)}

    @torch.no_grad()
    def fit(self, features: np.ndarray, labels: np.ndarray) -> dict:
        """Fit the standardiser and the linear layer on raw features ``[n, F]`` and labels ``[n]``.

        Linear discriminant analysis (``solver="lsqr"``, Ledoit-Wolf shrinkage, equal priors over the classes
        present); classes absent from ``labels`` get a logit of -1e4 (never predicted). Returns a summary.
        """
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        f = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        mean = f.mean(axis=0)
        std = f.std(axis=0)
        std[std < 1e-8] = 1.0
        z = (f - mean) / std
        present = np.unique(y)
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto",
                                         priors=np.full(len(present), 1.0 / len(present)))
        lda.fit(z, y)
        coef = np.zeros((self.num_classes, f.shape[1]))
        bias = np.full(self.num_classes, -1e4)
        coef_, bias_ = np.atleast_2d(lda.coef_), np.atleast_1d(lda.intercept_)
        if len(present) == 2:  # sklearn keeps one discriminant for two classes: logit(class 1) - logit(class 0)
            coef_ = np.vstack([np.zeros_like(coef_[0]), coef_[0]])
            bias_ = np.array([0.0, bias_[0]])
        coef[present] = coef_
        bias[present] = bias_
        dev = self.features_2.standardize.mean.device
        self.features_2.standardize.mean.copy_(torch.as_tensor(mean, dtype=torch.float32, device=dev))
        self.features_2.standardize.std.copy_(torch.as_tensor(std, dtype=torch.float32, device=dev))
        self.classifier.fc.weight.copy_(torch.as_tensor(coef, dtype=torch.float32, device=dev))
        self.classifier.fc.bias.copy_(torch.as_tensor(bias, dtype=torch.float32, device=dev))
        return {"classifier": "LinearDiscriminantAnalysis(solver='lsqr', shrinkage='auto', equal priors)",
                "n_train": int(len(y)), "n_features": int(f.shape[1]),
                "classes_fitted": [int(c) for c in present]}
