"""``encode`` / ``ImageEncoder``: shapes, normalisation, resampling and resizing against scipy and PIL, devices."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import scipy.signal as ss
import torch

from ecgtransfer.errors import ConfigError, SignalError
from ecgtransfer.imaging import (IMAGENET_MEAN, IMAGENET_STD, ImageEncoder, encode, gramian_angular_field,
                                 markov_transition_field, recurrence_plot, resample, resize_image, spectrogram)

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def beats() -> torch.Tensor:
    """Smooth ECG-like beats [4, 2, 200] (a Gaussian QRS on noise), reproducible."""
    g = torch.Generator().manual_seed(3)
    t = torch.linspace(-1, 1, 200)
    qrs = torch.exp(-(t / 0.05) ** 2) - 0.2 * torch.exp(-((t - 0.4) / 0.1) ** 2)
    return (qrs + 0.05 * torch.randn(4, 2, 200, generator=g)).float()


@pytest.mark.parametrize("n_in,n_out", [(200, 64), (64, 200), (180, 224), (257, 32), (50, 50)])
@pytest.mark.parametrize("padtype", ["line", "constant", "reflect"])
def test_resample_equals_scipy_resample_poly(n_in: int, n_out: int, padtype: str) -> None:
    x = np.random.default_rng(n_in).standard_normal((3, n_in)).astype(np.float32)
    g = math.gcd(n_in, n_out)
    ref = ss.resample_poly(x.astype(np.float64), n_out // g, n_in // g, axis=-1, padtype=padtype)
    out = resample(torch.from_numpy(x), n_out, padtype=padtype)
    assert out.shape == (3, n_out) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=2e-5 * np.abs(ref).max())


def test_resample_is_anti_aliased() -> None:
    # a tone above the new Nyquist rate is removed, not folded back (naive decimation keeps all of it)
    n = np.arange(512)
    tone = np.sin(2 * np.pi * 0.4 * n).astype(np.float32)  # 0.4 cycles/sample; after 512 -> 128: 1.6 > 0.5
    out = resample(torch.from_numpy(tone)[None], 128)[0].numpy()
    assert np.abs(out[16:-16]).max() < 0.02
    assert np.abs(tone[::4]).max() > 0.5


def test_resize_image_equals_pil_bilinear() -> None:
    from PIL import Image

    img = np.random.default_rng(1).random((40, 90)).astype(np.float32)
    for size in [(224, 224), (20, 30)]:  # up and down (down needs the antialiasing)
        ref = np.asarray(Image.fromarray(img, mode="F").resize(size[::-1], Image.BILINEAR))
        out = resize_image(torch.from_numpy(img)[None], size)[0].numpy()
        np.testing.assert_allclose(out, ref, atol=1e-4)


@pytest.mark.parametrize("encoding", ["spectrogram", "recurrence", "gasf", "gadf", "mtf", "stack"])
def test_encode_shape_range_and_normalisation(beats: torch.Tensor, encoding: str) -> None:
    img01 = encode(beats, encoding, 48, fs=360.0, normalize=False)
    assert img01.shape == (4, 3, 48, 48) and img01.dtype == torch.float32
    assert torch.isfinite(img01).all()
    assert img01.amin() >= 0 and img01.amax() <= 1
    # per-image min-max scaling: every channel image spans exactly [0, 1]
    assert torch.allclose(img01.amin(dim=(-2, -1)), torch.zeros(4, 3))
    assert torch.allclose(img01.amax(dim=(-2, -1)), torch.ones(4, 3))
    img = encode(beats, encoding, 48, fs=360.0)
    torch.testing.assert_close(img, (img01 - MEAN) / STD)


def _np_minmax(raw: torch.Tensor) -> torch.Tensor:
    """Independent oracle: each image ``[N, H, W]`` scaled to [0, 1] in float64 numpy."""
    a = raw.double().numpy()
    lo = a.min(axis=(-2, -1), keepdims=True)
    hi = a.max(axis=(-2, -1), keepdims=True)
    return torch.from_numpy((a - lo) / (hi - lo)).to(raw.dtype)


def test_encode_images_are_the_raw_encoders(beats: torch.Tensor) -> None:
    x = beats[:, 0]
    img = encode(x, "recurrence", 40, normalize=False, dimension=2, time_delay=3)
    raw = recurrence_plot(resample(x, 40 + 3), dimension=2, time_delay=3)
    torch.testing.assert_close(img[:, 0], _np_minmax(raw))
    torch.testing.assert_close(img[:, 1], img[:, 0])
    img = encode(x, "gadf", 40, normalize=False)
    torch.testing.assert_close(img[:, 2], _np_minmax(gramian_angular_field(resample(x, 40), "difference")))
    img = encode(x, "mtf", 40, normalize=False, n_bins=5)
    torch.testing.assert_close(img[:, 1], _np_minmax(markov_transition_field(resample(x, 40), n_bins=5)))
    img = encode(x, "spectrogram", 40, fs=360.0, normalize=False, nperseg=32, hop=2, n_fft=128)
    raw = spectrogram(x, 360.0, nperseg=32, hop=2, n_fft=128, fmin=0.5, fmax=50.0, top_db=80.0)
    torch.testing.assert_close(img[:, 0], _np_minmax(resize_image(raw.flip(-2), 40)))
    stack = encode(x, "stack", 40, fs=360.0, normalize=False, recurrence={"threshold": "point"})
    torch.testing.assert_close(stack[:, 1], encode(x, "recurrence", 40, normalize=False, threshold="point")[:, 0])
    torch.testing.assert_close(stack[:, 2], encode(x, "gasf", 40, normalize=False)[:, 0])


def test_encode_224_and_colormap(beats: torch.Tensor) -> None:
    img = encode(beats[:2], "recurrence", 224, colour="colormap", normalize=False)
    assert img.shape == (2, 3, 224, 224)
    gray = encode(beats[:2], "recurrence", 224, normalize=False)[:, 0]
    ref = matplotlib.colormaps["viridis"](gray.numpy())[..., :3]
    np.testing.assert_allclose(img.permute(0, 2, 3, 1).numpy(), ref, atol=1e-6)


def test_encode_leads(beats: torch.Tensor) -> None:
    torch.testing.assert_close(encode(beats, "gasf", 32, lead=1), encode(beats[:, 1], "gasf", 32))
    per_lead = encode(beats, "gasf", 32, lead="stack", normalize=False)
    assert per_lead.shape == (4, 2, 32, 32)
    torch.testing.assert_close(per_lead[:, 1], encode(beats[:, 1], "gasf", 32, normalize=False)[:, 0])
    three = torch.cat([beats, beats[:, :1]], dim=1)
    rgb = encode(three, "gasf", 32, lead="stack")
    torch.testing.assert_close(rgb[:, 2], (per_lead[:, 0] - IMAGENET_MEAN[2]) / IMAGENET_STD[2])
    with pytest.raises(ConfigError, match="lead"):
        encode(beats, "gasf", 32, lead=2)


def test_flat_line_gives_zero_images_and_nan_raises(beats: torch.Tensor) -> None:
    x = beats[:, 0].clone()
    x[1] = 0.7  # a flat line (lead off)
    for enc in ["spectrogram", "recurrence", "gasf", "gadf", "mtf", "stack"]:
        img = encode(x, enc, 32, fs=360.0, normalize=False)
        assert torch.all(img[1] == 0), enc
        assert img[0].amax() == 1.0
        assert torch.isfinite(encode(x, enc, 32, fs=360.0)).all()
    x[2, 17] = float("nan")
    with pytest.raises(SignalError, match="NaN or infinite values in 1 of 4"):
        encode(x, "recurrence", 32)
    x[2, 17] = float("inf")
    with pytest.raises(SignalError):
        ImageEncoder("spectrogram", 32)(x)


def test_parameter_errors(beats: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="unknown encoding"):
        encode(beats, "wavelet")
    with pytest.raises(ConfigError, match="unknown parameter"):
        encode(beats, "recurrence", 32, nperseg=3)
    with pytest.raises(ConfigError, match="per encoding"):
        encode(beats, "stack", 32, threshold="point")
    with pytest.raises(ConfigError, match="positive integers"):
        encode(beats, "recurrence", 32, dimension=0.1)
    with pytest.raises(ConfigError, match="colormap"):
        encode(beats, "gasf", 32, colour="colormap", cmap="no-such-map")
    with pytest.raises(SignalError, match="shape"):
        encode(beats[None], "gasf", 32)
    with pytest.raises(ConfigError, match="makes its own colours"):
        encode(beats, "stack", 32, colour="colormap")


def test_image_encoder_module_matches_encode(beats: torch.Tensor) -> None:
    enc = ImageEncoder("spectrogram", 40, fs=360.0, colour="colormap", cmap="magma", nperseg=32)
    assert {n for n, _ in enc.named_buffers()} == {"mean", "std", "lut"}  # "hann" comes from the device cache
    assert enc.state_dict() == {}  # nothing to save: the encoder is configuration
    out = enc(beats)
    torch.testing.assert_close(out, encode(beats, "spectrogram", 40, fs=360.0, colour="colormap", cmap="magma",
                                           nperseg=32))
    double = enc.double()
    assert double(beats.double()).dtype == torch.float64


def test_image_encoder_window_never_goes_through_the_host(beats: torch.Tensor, monkeypatch) -> None:
    """Forward with a named or a tensor window copies nothing to numpy (on CUDA that is a D2H copy and a sync
    per batch) and gives the same images as the host path with the same window as a numpy array."""
    import scipy.signal as ss

    w_np = ss.get_window(("tukey", 0.25), 32)
    expected = encode(beats, "spectrogram", 40, fs=360.0, nperseg=32, window=w_np)
    named = ImageEncoder("spectrogram", 40, fs=360.0, nperseg=32, window=("tukey", 0.25))
    given = ImageEncoder("stack", 40, fs=360.0,
                         spectrogram={"nperseg": 32, "window": torch.tensor(w_np, dtype=torch.float32)})
    assert {n for n, _ in given.named_buffers()} == {"mean", "std", "window"}
    named(beats), given(beats)  # warm the per-device caches
    calls: list[str] = []
    for name in ("numpy", "cpu", "tolist", "item"):
        orig = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _o=orig, **k: calls.append(_n) or _o(self, *a, **k))
    out_named = named(beats)
    out_given = given(beats)
    monkeypatch.undo()
    assert calls == []
    torch.testing.assert_close(out_named, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_given[:, 0], encode(beats, "stack", 40, fs=360.0,
                                                       spectrogram={"nperseg": 32, "window": w_np})[:, 0],
                               atol=1e-5, rtol=0)


def _cuda_available() -> bool:
    return torch.cuda.is_available()


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("encoding", ["spectrogram", "recurrence", "gasf", "gadf", "mtf", "stack"])
def test_cuda_matches_cpu(beats: torch.Tensor, encoding: str) -> None:
    enc = ImageEncoder(encoding, 224, fs=360.0)
    cpu = enc(beats)
    gpu = enc.to("cuda")(beats.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-4, rtol=0)
    thr = encode(beats.cuda(), "recurrence", 64, threshold="point", normalize=False).cpu()
    ref = encode(beats, "recurrence", 64, threshold="point", normalize=False)
    assert (thr != ref).float().mean() < 1e-3  # binary plots: only points at the threshold may flip
