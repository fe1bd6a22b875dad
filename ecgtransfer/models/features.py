"""The ``features`` reference: de Chazal et al. (2004) heartbeat features with weighted linear discriminants.

de Chazal, O'Dwyer and Reilly, "Automatic classification of heartbeats using ECG morphology and heartbeat interval
features", IEEE TBME 51(7):1196-1206, 2004, classify MIT-BIH beats inter-patient with linear discriminants on RR
intervals, heartbeat intervals (QRS duration, T-wave duration, P wave present) and sampled QRS and T morphology of
both leads. This module computes that feature set from one stored beat and its RR context, in torch (so it runs
batched on the training device, and at predict time exactly as at training time), and classifies it with one
linear layer fitted in closed form (:meth:`BeatFeatureModel.fit`) and copied into the layer, so the fitted model is
an ordinary weights-only state dict.

Features of a beat ``x [C, L]`` with the R peak (the fiducial point) at sample ``r`` (the store's
``before_samples``). Every amplitude is relative to the beat's baseline, the mean of ``-120..-80 ms`` (the PR
segment), per channel. Times are relative to R; every position is clamped to the segment.

Per channel (every input channel, leads and difference channels alike; :func:`feature_names` names them):

- ``qrs0..qrs9``: QRS morphology, 10 samples at equally spaced times from -50 ms to +100 ms, linearly interpolated;
- ``t0..t8``: T-wave morphology, 9 samples from +150 ms to +500 ms, linearly interpolated;
- ``energy``: log of the summed squared samples from -50 to +100 ms (not in the paper).

Per raw lead (the first ``n_leads`` channels; no delineator, fixed rules instead of ecgpuwave):

- ``qrs_duration`` (s): within -150..+150 ms, the absolute first difference ``|x[t+1] - x[t]|`` above
  :data:`QRS_SLOPE_FRACTION` of its largest value there marks "QRS activity"; gaps shorter than
  :data:`QRS_GAP` (the low-slope R apex) are closed (binary closing); the QRS is the active run containing the
  steepest slope, its duration the run's length in samples over ``fs``;
- ``t_duration`` (s): the T peak is the largest ``|x - baseline|`` in +150..+500 ms; the T wave ends at the first
  sample after the peak where ``|x - baseline|`` falls to :data:`T_FRACTION` of the peak's (the segment's end if
  it never does) and begins at the last such sample before the peak, not earlier than the QRS offset (the QRS
  offset if none);
- ``p_present`` (0/1): a positive deflection in -240..-80 ms: the window's maximum stands out above the higher of
  the lowest samples on either side of it within the window (its prominence; 0 when the maximum is at an edge of
  the window, a slope rather than a wave) by more than :data:`P_FRACTION` of the QRS amplitude (the largest
  ``|x - baseline|`` in -50..+100 ms). Measured on the MLII lead of DS1 records: set for 94-100 % of the N beats
  of 101, 115, 116, 208 and 209 and for 2-16 % of the V beats of 116, 201, 207 and 208 (203, atrial
  fibrillation and noise: 65 %; 220's small MLII P waves: 1 %).

RR context (once per beat): ``log_rr_prev``, ``log_rr_next``, ``log_rr_avg``, ``log_rr_local``, the logarithms
of the paper's four RR intervals in seconds, :data:`DECHAZAL_RR` (pre-RR, post-RR, the 5-minute average RR, the
local average RR of 10 intervals), from the store's ``rr`` extra (:data:`ecgtransfer.signals.beats.RR_FEATURES`;
the model is given its first ``rr_dim`` columns and reads those of :data:`DECHAZAL_RR` among them: a 6-column store
of older conversions has no ``rr_avg``, so three). The store's ratio columns (each RR over the record's mean RR)
are not read: as logarithms they are exactly collinear with the seconds (``log(a / m) = log a - log m``), so they
add one direction only, the record's mean RR, a per-patient constant that the discriminant uses as a patient
identity when few patients are trained on (with it, trained on 208 and 209, every beat of 207 became V); and
all eight logarithms make the covariance singular (three exact dependencies), which, before the fit used a
pseudo-inverse, made the unshrunk discriminant unusable in float32 (validation macro-F1 0.15).

``F = 20 C + 3 n_leads + R'`` (``R'`` the RR features, 4, or 3 from a 6-column store): 50 for two leads (the
paper's 45, plus the two energies and the second lead's intervals), 90 for two leads plus two difference
channels (``C = 4``, ``n_leads = 2``); 49 and 89 from a 6-column store.

Classifier: linear discriminants with equal class priors and each class's examples weighted so that every class
counts equally (de Chazal's "weighted LDA"): the class means, and as covariance the mean of the per-class
(maximum-likelihood) covariances. scikit-learn's
:class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis` estimates exactly these with ``solver="lsqr"``
and equal ``priors`` (its within-class covariance is the prior-weighted sum of the class covariances); the
discriminant is computed from them with a pseudo-inverse (:meth:`BeatFeatureModel.fit`), so exactly collinear
features (T samples clamped to the end of a short segment) leave a usable fit. ``lda_shrinkage = "auto"``
(Ledoit-Wolf) is the option for a poorly estimated covariance (few examples of a class); ``"none"``, as
published, is the default: it does not fail on the DS1 records, though shrinkage scored higher there (see
``docs/training.md``).

Differences from the paper, stated:

- interval features from fixed rules on the stored beat, not from ecgpuwave delineation; they are computed per
  raw lead, and the T-wave duration is cut at the segment's end (stores with
  ``after >= 0.5 s`` hold the whole T window; the default 0.45 s clamps its last sample);
- the baseline is the PR-segment mean of the band-pass filtered beat (the paper removed baseline wander with
  200 ms and 600 ms median filters); morphology is sampled at the stored rate by linear interpolation;
- additions: a QRS energy per channel and the interval features of each raw lead (the paper: one set per beat);
- RR values enter as logarithms (the paper: seconds). Measured on the 20 two-lead DS1 records, patient-wise
  5-fold cross-validation, N capped at 150 per training patient: macro-F1 0.27 (seconds) against 0.37 (logs)
  unshrunk, 0.31 against 0.41 with ``shrinkage="auto"``;
- features are standardised (z-scored on the training beats) before the fit: an affine change that leaves the
  LDA decisions unchanged, with ``shrinkage="auto"`` it sets the scale the shrinkage works on;
- a record's first and last 150 s use a truncated (shorter) 5-minute window for the average RR.

Shapes: ``x [B, C, L]``, ``rr [B, R]`` -> features ``[B, F]`` -> logits ``[B, K]``.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as tf

from ecgtransfer.models.base import TieredModel
from ecgtransfer.models.fusion import RR_FLOOR

log = logging.getLogger(__name__)

#: morphology samples of every channel: name -> (first, last, count), times in seconds relative to the R peak
MORPHOLOGY_SAMPLES: dict[str, tuple[float, float, int]] = {"qrs": (-0.05, 0.10, 10), "t": (0.15, 0.50, 9)}
#: the baseline: mean of this window (s), the PR segment
BASELINE_WINDOW = (-0.12, -0.08)
#: the QRS energy window (s)
ENERGY_WINDOW = (-0.05, 0.10)
#: per-channel features after the morphology samples
CHANNEL_EXTRAS: tuple[str, ...] = ("energy",)
#: per-lead heartbeat-interval features (raw leads only), in order
INTERVAL_FEATURES: tuple[str, ...] = ("qrs_duration", "t_duration", "p_present")
#: QRS search window (s) and the fraction of the largest absolute slope there that counts as QRS activity
QRS_SEARCH = (-0.15, 0.15)
QRS_SLOPE_FRACTION = 0.2
#: low-slope gaps inside the QRS shorter than this (s) are bridged (the R apex, notches)
QRS_GAP = 0.04
#: T-peak search window (s) and the fraction of the T peak's amplitude where the T wave begins and ends
T_WINDOW = (0.15, 0.50)
T_FRACTION = 0.2
#: P-wave search window (s) and the fraction of the QRS amplitude the P deflection's prominence must exceed
P_WINDOW = (-0.24, -0.08)
P_FRACTION = 0.05
#: the RR columns the model reads (names of :data:`ecgtransfer.signals.beats.RR_FEATURES`), de Chazal's four
DECHAZAL_RR: tuple[str, ...] = ("rr_prev", "rr_next", "rr_avg", "rr_local")
#: relative cutoff of the covariance's pseudo-inverse in :meth:`BeatFeatureModel.fit`: directions with less variance
#: than this fraction of the largest are left out (exact collinearity, far above float64 rounding at 1e-16)
PINV_RTOL = 1e-10
#: ``lda_shrinkage`` choices: ``"none"`` (the paper's plain weighted LDA) or ``"auto"`` (Ledoit-Wolf)
LDA_SHRINKAGE: tuple[str, ...] = ("none", "auto")


def _per_channel_names() -> list[str]:
    return [f"{g}{i}" for g, (_, _, n) in MORPHOLOGY_SAMPLES.items() for i in range(n)] + list(CHANNEL_EXTRAS)


def rr_columns_read(rr_dim: int) -> list[int]:
    """Indices into the first ``rr_dim`` columns of the store's ``rr`` extra of the intervals the model reads
    (:data:`DECHAZAL_RR` present there, in that order)."""
    from ecgtransfer.signals.beats import RR_FEATURES

    return [RR_FEATURES.index(n) for n in DECHAZAL_RR if RR_FEATURES.index(n) < rr_dim]


def rr_feature_names(rr_dim: int) -> list[str]:
    """Names of the RR features read from ``rr_dim`` store columns: ``log_rr_prev`` ... ``log_rr_local``."""
    from ecgtransfer.signals.beats import RR_FEATURES

    return [f"log_{RR_FEATURES[i]}" for i in rr_columns_read(rr_dim)]


def feature_count(in_channels: int, rr_dim: int, n_leads: int | None = None) -> int:
    """``F``, the width of the feature vector: ``20 * in_channels + 3 * n_leads`` plus the RR columns read
    (:func:`rr_columns_read`; ``n_leads`` defaults to ``in_channels``)."""
    n_leads = in_channels if n_leads is None else n_leads
    return (in_channels * len(_per_channel_names()) + n_leads * len(INTERVAL_FEATURES)
            + len(rr_feature_names(rr_dim)))


def feature_names(in_channels: int, rr_dim: int, n_leads: int | None = None) -> list[str]:
    """The ``F`` feature names in order: ``ch{c}.qrs0`` ... ``ch{c}.energy`` per channel, ``ch{c}.qrs_duration``,
    ``ch{c}.t_duration``, ``ch{c}.p_present`` per raw lead, then the RR features (:func:`rr_feature_names`)."""
    n_leads = in_channels if n_leads is None else n_leads
    per = _per_channel_names()
    names = [f"ch{c}.{n}" for c in range(in_channels) for n in per]
    names += [f"ch{c}.{n}" for c in range(n_leads) for n in INTERVAL_FEATURES]
    return names + rr_feature_names(rr_dim)


class BeatFeatures(nn.Module):
    """de Chazal features, no parameters: ``(x [B, C, L], rr [B, R >= rr_dim] or None) -> [B, F]`` (see the
    module docstring).

    Args:
        length: samples per segment ``L``.
        fs: sampling rate in Hz.
        r_index: sample of the R peak inside the segment.
        n_leads: the raw leads, the first ``n_leads`` channels, which get interval features (``None``: every
            channel); the others (differences to a template) get morphology samples and energy only.
        rr_dim: the RR columns given (the first ``rr_dim`` of the store's), read by :func:`rr_feature_names`.
    """

    def __init__(self, length: int, fs: float, r_index: int, n_leads: int | None = None, rr_dim: int = 0) -> None:
        super().__init__()
        self.length, self.fs, self.r_index = int(length), float(fs), int(r_index)
        self.n_leads = n_leads
        self.rr_index = rr_columns_read(rr_dim)
        last = self.length - 1
        positions = np.concatenate([self.r_index + np.linspace(t0, t1, n) * self.fs
                                    for t0, t1, n in MORPHOLOGY_SAMPLES.values()])
        positions = np.clip(positions, 0, last)
        lo = np.floor(positions).astype(np.int64)
        self.register_buffer("idx_lo", torch.as_tensor(lo), persistent=False)
        self.register_buffer("idx_hi", torch.as_tensor(np.minimum(lo + 1, last)), persistent=False)
        self.register_buffer("frac", torch.as_tensor(positions - lo, dtype=torch.float32), persistent=False)

        def span(t0: float, t1: float, min_len: int = 1) -> tuple[int, int]:
            """Samples ``[a, b)`` from ``r + t0 fs`` to ``r + t1 fs`` (both included), clamped, at least min_len."""
            a = int(np.clip(round(self.r_index + t0 * self.fs), 0, last))
            b = int(np.clip(round(self.r_index + t1 * self.fs) + 1, 0, self.length))
            return a, max(b, min(a + min_len, self.length))

        self.baseline = span(*BASELINE_WINDOW)
        self.energy = span(*ENERGY_WINDOW)
        self.qrs_search = span(*QRS_SEARCH, min_len=2)
        self.t_window = span(*T_WINDOW)
        self.p_window = span(*P_WINDOW)
        gap = max(1, int(round(QRS_GAP * self.fs)))
        self.gap = gap + 1 - gap % 2  # odd, for a centred pooling window

    def _closing(self, active: torch.Tensor) -> torch.Tensor:
        """Binary closing of ``active [N, S]`` (0/1 float) with a window of :attr:`gap` samples (dilate, erode)."""
        k = self.gap
        dil = tf.max_pool1d(active.unsqueeze(1), k, stride=1, padding=k // 2)
        return (1.0 - tf.max_pool1d(1.0 - dil, k, stride=1, padding=k // 2)).squeeze(1)

    def intervals(self, xb: torch.Tensor) -> torch.Tensor:
        """Heartbeat intervals ``[B, C', 3]`` (QRS duration s, T duration s, P present 0/1) of baseline-relative raw
        leads ``xb [B, C', L]``."""
        b, c, length = xb.shape
        flat = xb.reshape(b * c, length)
        ar = torch.arange(length, device=xb.device)
        # QRS: the active-slope run around the steepest slope
        a, z = self.qrs_search
        slope = (flat[:, a + 1:z] - flat[:, a:z - 1]).abs()  # [N, S]; slope j spans samples a+j .. a+j+1
        s = slope.shape[1]
        peak_slope = slope.amax(dim=1, keepdim=True)
        active = (slope > QRS_SLOPE_FRACTION * peak_slope.clamp_min(1e-12)).float()
        closed = self._closing(active) > 0.5
        anchor = slope.argmax(dim=1, keepdim=True)
        js = torch.arange(s, device=xb.device)
        before = torch.where(~closed & (js < anchor), js, -1).amax(dim=1)  # last inactive slope before the anchor
        after = torch.where(~closed & (js > anchor), js, s).amin(dim=1)  # first inactive slope after it
        qrs_n = (after - before - 1).clamp_min(0)
        qrs_off = a + after  # the first sample after the last active slope's end
        # T wave: peak of |xb| in the T window, then the samples where |xb| falls to T_FRACTION of it
        mag = flat.abs()
        t0, t1 = self.t_window
        t_peak = t0 + mag[:, t0:t1].argmax(dim=1)
        level = T_FRACTION * mag.gather(1, t_peak[:, None])
        low = mag <= level  # [N, L]
        t_end = torch.where(low & (ar > t_peak[:, None]), ar, length - 1).amin(dim=1)
        t_start_min = torch.minimum(qrs_off, t_peak)
        t_on = torch.where(low & (ar < t_peak[:, None]) & (ar >= t_start_min[:, None]), ar, -1).amax(dim=1)
        t_on = torch.where(t_on < 0, t_start_min, t_on)
        t_dur = (t_end - t_on).clamp_min(0)
        # P wave: a positive deflection above P_FRACTION of the QRS amplitude
        e0, e1 = self.energy
        qrs_amp = mag[:, e0:e1].amax(dim=1)
        p0, p1 = self.p_window
        w = flat[:, p0:p1]  # [N, W]
        p_peak = w.argmax(dim=1, keepdim=True)
        jw = torch.arange(w.shape[1], device=xb.device)
        left = torch.where(jw <= p_peak, w, torch.inf).amin(dim=1)
        right = torch.where(jw >= p_peak, w, torch.inf).amin(dim=1)
        prominence = w.amax(dim=1) - torch.maximum(left, right)
        p_present = prominence > P_FRACTION * qrs_amp
        out = torch.stack([qrs_n.float() / self.fs, t_dur.float() / self.fs, p_present.float()], dim=1)
        return out.reshape(b, c, len(INTERVAL_FEATURES))

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        x = x.float()
        base = x[..., self.baseline[0]:self.baseline[1]].mean(dim=-1, keepdim=True)
        xb = x - base  # [B, C, L]
        morph = xb[..., self.idx_lo] * (1 - self.frac) + xb[..., self.idx_hi] * self.frac  # [B, C, 19]
        energy = torch.log((xb[..., self.energy[0]:self.energy[1]] ** 2).sum(dim=-1, keepdim=True) + 1e-6)
        leads = x.shape[1] if self.n_leads is None else self.n_leads
        feats = [torch.cat([morph, energy], dim=-1).flatten(1), self.intervals(xb[:, :leads]).flatten(1)]
        if rr is not None and self.rr_index:
            feats.append(torch.log(rr[:, self.rr_index].float().clamp_min(RR_FLOOR)))
        return torch.cat(feats, dim=1)


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
        in_channels: input channels ``C``.
        length, fs, r_index: see :class:`BeatFeatures`.
        rr_dim: RR columns given, the store's first ``rr_dim`` (0: no RR context); those of :data:`DECHAZAL_RR`
            among them are read (:func:`rr_feature_names`).
        n_leads: raw leads among the channels (the first ``n_leads``; ``None`` or 0: all of them).

    Forward: ``(x [B, C, L], rr [B, rr_dim] or None) -> logits [B, K]`` (LDA decision values: their softmax is
    the LDA posterior under the fitted priors).
    """

    def __init__(self, num_classes: int, in_channels: int, length: int, fs: float, r_index: int,
                 rr_dim: int = 0, n_leads: int | None = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.rr_dim = int(rr_dim)
        self.n_leads = int(n_leads) if n_leads else self.in_channels
        if not 1 <= self.n_leads <= self.in_channels:
            raise ValueError(f"n_leads must be in 1..{self.in_channels} (the input channels), got {n_leads}")
        n = feature_count(self.in_channels, self.rr_dim, self.n_leads)
        self.features_1 = nn.Sequential(OrderedDict(extract=BeatFeatures(length, fs, r_index, self.n_leads,
                                                                         self.rr_dim)))
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
    def fit(self, features: np.ndarray, labels: np.ndarray, shrinkage: str = "none") -> dict:
        """Fit the standardiser and the linear layer on raw features ``[n, F]`` and labels ``[n]``.

        de Chazal's weighted LDA over the classes present, with equal priors: scikit-learn's
        :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis` (``solver="lsqr"``, equal ``priors``)
        estimates the class means ``mu_k`` and the covariance ``S``, the mean of the per-class covariances (each
        class weighted equally, however many examples it has; ``shrinkage`` one of :data:`LDA_SHRINKAGE`:
        ``"none"`` as published, ``"auto"`` Ledoit-Wolf per class); the discriminant is then
        ``w_k = S^+ mu_k``, ``b_k = -mu_k . w_k / 2 + log(1 / K)`` with ``S^+`` the pseudo-inverse that drops the
        directions whose variance is under :data:`PINV_RTOL` of the largest (:func:`scipy.linalg.pinvh`): exactly
        collinear features, such as morphology samples clamped to the same last sample of a short segment, make
        ``S`` singular, and a least-squares solve then returns huge cancelling weights that float32 cannot
        evaluate. Classes absent from ``labels`` get a logit of -1e4 (never predicted). Returns a summary.
        """
        from scipy.linalg import pinvh
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        if shrinkage not in LDA_SHRINKAGE:
            raise ValueError(f"shrinkage must be one of {LDA_SHRINKAGE}, got {shrinkage!r}")
        f = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        mean = f.mean(axis=0)
        std = f.std(axis=0)
        std[std < 1e-8] = 1.0
        z = (f - mean) / std
        present = np.unique(y)
        priors = np.full(len(present), 1.0 / len(present))
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=None if shrinkage == "none" else shrinkage,
                                         priors=priors)
        lda.fit(z, y)
        inverse, rank = pinvh(lda.covariance_, rtol=PINV_RTOL, return_rank=True)
        coef_ = lda.means_ @ inverse  # [K', F]
        bias_ = -0.5 * np.einsum("kf,kf->k", lda.means_, coef_) + np.log(priors)
        coef = np.zeros((self.num_classes, f.shape[1]))
        bias = np.full(self.num_classes, -1e4)
        coef[present] = coef_
        bias[present] = bias_
        dev = self.features_2.standardize.mean.device
        self.features_2.standardize.mean.copy_(torch.as_tensor(mean, dtype=torch.float32, device=dev))
        self.features_2.standardize.std.copy_(torch.as_tensor(std, dtype=torch.float32, device=dev))
        self.classifier.fc.weight.copy_(torch.as_tensor(coef, dtype=torch.float32, device=dev))
        self.classifier.fc.bias.copy_(torch.as_tensor(bias, dtype=torch.float32, device=dev))
        counts = {int(c): int((y == c).sum()) for c in present}
        if rank < f.shape[1]:
            log.info("weighted LDA: the covariance of the %d features has rank %d (collinear or constant features; "
                     "their dependent directions are left out)", f.shape[1], rank)
        return {"classifier": f"weighted LDA (LinearDiscriminantAnalysis(solver='lsqr', shrinkage={shrinkage!r}) "
                              "covariance: mean of the class covariances; equal priors; pseudo-inverse)",
                "shrinkage": shrinkage, "covariance_rank": int(rank), "n_train": int(len(y)),
                "n_features": int(f.shape[1]), "classes_fitted": [int(c) for c in present], "class_counts": counts}
