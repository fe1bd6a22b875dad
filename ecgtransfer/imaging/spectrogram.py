"""Short-time Fourier power spectrograms of batched series, in decibels.

Relation to scipy (tested): for a series ``x`` of ``L`` samples,
``spectrogram(x, fs, nperseg=P, hop=H, n_fft=N, window=w, detrend=d, scaling=s, db=False)`` equals::

    f, t, S = scipy.signal.spectrogram(x, fs, window=w, nperseg=P, noverlap=P - H, nfft=N,
                                       detrend=d, scaling=s, mode="psd")
    S[(f >= fmin) & (f <= fmax)]

that is: frames start at sample 0 every ``H`` samples, a trailing partial frame is dropped (no padding,
``T = 1 + (L - P) // H`` frames), each frame is detrended, windowed and zero-padded to ``N`` points, the
one-sided power is doubled except at DC (and Nyquist for even ``N``), and scaled by ``1 / (fs * sum(w**2))``
(``"density"``, V**2/Hz) or ``1 / sum(w)**2`` (``"spectrum"``, V**2). With ``db=True`` (the default) the
result is ``10 * log10(max(S, amin))``, optionally floored at ``max - top_db`` per image.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging._tensor import as_signal, cached, flatten_series, is_int


def scipy_window(window: Any, nperseg: int) -> np.ndarray:
    """A window of ``nperseg`` samples as a host array: a scipy spec (cached) or an array (never a tensor)."""
    if isinstance(window, (str, tuple)):
        return _named_window(window, nperseg)
    w = np.asarray(window, dtype=np.float64)
    if w.shape != (nperseg,):
        raise ConfigError(f"spectrogram: window array must have nperseg={nperseg} samples, got shape {w.shape}")
    return w


@functools.lru_cache(maxsize=64)
def _named_window(window: str | tuple, nperseg: int) -> np.ndarray:
    from scipy.signal import get_window

    try:
        w = get_window(window, nperseg)  # periodic ("fftbins") windows, as scipy.signal.spectrogram uses
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"spectrogram: unknown window {window!r}: {exc}") from exc
    w.setflags(write=False)
    return w


def _device_window(window: Any, nperseg: int, device: torch.device, dtype: torch.dtype
                   ) -> tuple[torch.Tensor, torch.Tensor | float, torch.Tensor | float]:
    """``(window [P], sum(w), sum(w**2))`` for frames on ``device``.

    Named windows come from the per-device cache with their sums computed on the host; a tensor window stays
    a tensor (moved to ``device`` if it is elsewhere) and its sums stay on the device: no host round trip, no
    synchronisation.
    """
    if isinstance(window, torch.Tensor):
        if tuple(window.shape) != (nperseg,):
            raise ConfigError(f"spectrogram: window tensor must have nperseg={nperseg} samples, "
                              f"got shape {tuple(window.shape)}")
        win = window.to(device=device, dtype=dtype)
        return win, win.sum(), win.square().sum()
    w_np = scipy_window(window, nperseg)
    if isinstance(window, (str, tuple)):
        win = cached(("window", window, nperseg), lambda: w_np, device, dtype)
    else:
        win = torch.as_tensor(w_np, dtype=dtype, device=device)
    return win, float(w_np.sum()), float((w_np ** 2).sum())


def spectrogram_frequencies(fs: float = 1.0, *, nperseg: int = 64, n_fft: int | None = None,
                            fmin: float | None = None, fmax: float | None = None) -> np.ndarray:
    """The frequencies (Hz when ``fs`` is in Hz) of the rows that :func:`spectrogram` returns, ascending."""
    n_fft = nperseg if n_fft is None else int(n_fft)
    f = np.arange(n_fft // 2 + 1) * (float(fs) / n_fft)
    return f[_band(f, fmin, fmax)]


def _band(f: np.ndarray, fmin: float | None, fmax: float | None) -> np.ndarray:
    keep = np.ones(f.shape, dtype=bool)
    if fmin is not None:
        keep &= f >= fmin
    if fmax is not None:
        keep &= f <= fmax
    return keep


def spectrogram(x: Any, fs: float = 1.0, *, nperseg: int = 64, hop: int = 4, n_fft: int | None = 256,
                window: Any = "hann", detrend: str | bool = "constant", scaling: str = "density",
                fmin: float | None = None, fmax: float | None = None, db: bool = True, amin: float = 1e-10,
                top_db: float | None = None) -> torch.Tensor:
    """STFT power spectrogram of series ``[..., L] -> [..., F, T]`` (rows: ascending frequency).

    Args:
        x: series ``[B, L]`` or ``[B, C, L]`` (any leading shape), tensor or array, any device.
        fs: sampling rate in Hz (``1.0``: frequencies in cycles per sample).
        nperseg: samples per frame, ``1 <= nperseg <= L``.
        hop: samples between frame starts, ``>= 1`` (scipy's ``noverlap = nperseg - hop``).
        n_fft: FFT length ``>= nperseg`` (zero-padding refines the frequency grid); ``None``: ``nperseg``.
        window: a scipy window name or tuple (``"hann"``, ``("tukey", 0.25)``, ``("kaiser", 8)``) built
            periodic as ``scipy.signal.get_window``, or an array or tensor of ``nperseg`` values (a tensor is
            used on the input's device without a host round trip).
        detrend: ``"constant"`` (subtract each frame's mean), ``"linear"`` (subtract its least-squares
            line) or ``False``.
        scaling: ``"density"`` (power spectral density, V**2/Hz) or ``"spectrum"`` (power, V**2).
        fmin, fmax: keep rows with ``fmin <= f <= fmax`` (Hz); ``None``: no bound. ECG: 0.5 and 50.
        db: return ``10 * log10(max(S, amin))`` instead of the power ``S``.
        amin: floor of the power before the logarithm, ``> 0``.
        top_db: with ``db``, floor each image at its maximum minus ``top_db`` dB (``None``: no floor).

    Returns:
        ``[..., F, T]`` in the input's floating dtype (float32 for other dtypes), on the input's device.
    """
    x = as_signal(x)
    n_fft, keep = _checked_grid(int(x.shape[-1]), fs, nperseg=nperseg, hop=hop, n_fft=n_fft, detrend=detrend,
                                scaling=scaling, fmin=fmin, fmax=fmax, amin=amin)

    win, w_sum, w_sq = _device_window(window, nperseg, x.device, x.dtype)
    flat, lead = flatten_series(x)
    out = _power(flat, fs, win, w_sum, w_sq, nperseg=nperseg, hop=hop, n_fft=n_fft, detrend=detrend,
                 scaling=scaling, keep=keep)  # [N, F, T]
    if db:
        out = _decibels(out, amin, top_db)
    return out.reshape(*lead, *out.shape[-2:])


def _checked_grid(L: int, fs: float, *, nperseg: Any, hop: Any, n_fft: Any, detrend: Any, scaling: str,
                  fmin: float | None, fmax: float | None, amin: float) -> tuple[int, np.ndarray]:
    """:func:`spectrogram`'s settings checked for a series of ``L`` samples: (n_fft, indices of the kept
    frequency bins)."""
    if not is_int(nperseg) or not 1 <= nperseg <= L:
        raise ConfigError(f"spectrogram: nperseg must be an integer in [1, {L}] (the series length), got {nperseg!r}")
    if not is_int(hop) or hop < 1:
        raise ConfigError(f"spectrogram: hop must be a positive integer, got {hop!r}")
    n_fft = nperseg if n_fft is None else n_fft
    if not is_int(n_fft) or n_fft < nperseg:
        raise ConfigError(f"spectrogram: n_fft must be an integer >= nperseg={nperseg}, got {n_fft!r}")
    if detrend not in ("constant", "linear", False, None):
        raise ConfigError(f"spectrogram: detrend must be 'constant', 'linear' or False, got {detrend!r}")
    if scaling not in ("density", "spectrum"):
        raise ConfigError(f"spectrogram: scaling must be 'density' or 'spectrum', got {scaling!r}")
    if not fs > 0:
        raise ConfigError(f"spectrogram: fs must be positive, got {fs!r}")
    if not amin > 0:
        raise ConfigError(f"spectrogram: amin must be positive, got {amin!r}")
    freqs = np.arange(n_fft // 2 + 1) * (float(fs) / n_fft)
    keep = np.flatnonzero(_band(freqs, fmin, fmax))
    if keep.size == 0:
        raise ConfigError(f"spectrogram: no frequency bin lies in [{fmin}, {fmax}] Hz (fs={fs}, n_fft={n_fft}, "
                          f"bin spacing {fs / n_fft:.4g} Hz)")
    return n_fft, keep


def _power(flat: torch.Tensor, fs: float, win: torch.Tensor, w_sum: torch.Tensor | float,
           w_sq: torch.Tensor | float, *, nperseg: int, hop: int, n_fft: int, detrend: Any, scaling: str,
           keep: np.ndarray) -> torch.Tensor:
    """Scaled one-sided power of the frames of series ``flat`` ``[N, L]`` -> ``[N, F, T]`` (rows: the ``keep``
    bins)."""
    frames = flat.unfold(-1, nperseg, hop)  # [N, T, P]
    if detrend == "constant":
        frames = frames - frames.mean(dim=-1, keepdim=True)
    elif detrend == "linear":
        proj = cached(("detrend-linear", nperseg), lambda: _linear_detrend_matrix(nperseg), flat.device,
                      flat.dtype)
        frames = frames @ proj
    spec = torch.fft.rfft(frames * win, n=int(n_fft), dim=-1)  # [N, T, n_fft//2+1]
    lo, hi = int(keep[0]), int(keep[-1]) + 1
    spec = spec[..., lo:hi]
    power = spec.real.square() + spec.imag.square()
    scale = 1.0 / (float(fs) * w_sq) if scaling == "density" else 1.0 / w_sum ** 2
    gain = cached(("one-sided-gain", lo, hi, int(n_fft)), lambda: _one_sided_gain(lo, hi, int(n_fft)),
                  power.device, power.dtype)
    power = power * (gain * scale)
    return power.transpose(-1, -2)  # [N, F, T]


def _decibels(out: torch.Tensor, amin: float, top_db: float | None) -> torch.Tensor:
    """Power ``[N, F, T]`` -> ``10 * log10(max(S, amin))``, each image floored at its maximum minus ``top_db``."""
    out = 10.0 * torch.log10(out.clamp_min(amin))
    if top_db is not None:
        if not top_db >= 0:
            raise ConfigError(f"spectrogram: top_db must be >= 0 or None, got {top_db!r}")
        peak = out.amax(dim=(-2, -1), keepdim=True)
        out = torch.maximum(out, peak - float(top_db))
    return out

def _one_sided_gain(lo: int, hi: int, n_fft: int) -> np.ndarray:
    """``[hi - lo]``: 2 for the bins a one-sided spectrum doubles, 1 at DC (and Nyquist for even ``n_fft``)."""
    bins = np.arange(lo, hi)
    return np.where((bins > 0) & ~((n_fft % 2 == 0) & (bins == n_fft // 2)), 2.0, 1.0)


def _linear_detrend_matrix(n: int) -> np.ndarray:
    """``P [n, n]`` with ``frame @ P`` = frame minus its least-squares line (as ``scipy.signal.detrend``)."""
    a = np.stack([np.ones(n), np.arange(n, dtype=np.float64)], axis=1)
    q, _ = np.linalg.qr(a)
    return np.eye(n) - q @ q.T
