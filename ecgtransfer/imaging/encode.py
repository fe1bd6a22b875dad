"""ECG segments to ImageNet-ready images ``[B, 3, size, size]``, batched in torch on any device.

Pipeline of :func:`encode` for each series (one lead, or every lead with ``lead="stack"``):

1. check: NaN or infinite samples raise :class:`~ecgtransfer.errors.SignalError` (``check_finite``).
2. render one ``size x size`` image per encoding:

   * ``"spectrogram"``: :func:`~ecgtransfer.imaging.spectrogram.spectrogram` in dB (defaults: Hann window,
     ``nperseg=64`` (at most ``L``), ``hop=4``, ``n_fft=256``, band 0.5-50 Hz when ``fs`` is given, full band
     otherwise, ``top_db=80``), low frequencies at the bottom row, resized with antialiased bilinear
     interpolation;
   * ``"recurrence"``: the series resampled (anti-aliased polyphase filter, see
     :mod:`~ecgtransfer.imaging.resample`) to ``size + (dimension - 1) * time_delay`` samples, then
     :func:`~ecgtransfer.imaging.recurrence.recurrence_plot` (``size x size`` exactly);
   * ``"gasf"`` / ``"gadf"``: the series resampled to ``size`` samples, then
     :func:`~ecgtransfer.imaging.gramian.gramian_angular_field` (summation / difference);
   * ``"mtf"``: the series resampled to ``size`` samples, then
     :func:`~ecgtransfer.imaging.markov.markov_transition_field` (``n_bins=8``, quantile bins).

3. scale each image to ``[0, 1]`` by its own minimum and maximum; an image of a flat-line series (or any
   image with no range) is all zeros;
4. compose three channels: ``colour="gray"`` (replicated), ``colour="colormap"`` (``cmap``, a matplotlib
   colormap as a 256-entry lookup table), or ``encoding="stack"`` (three encodings as R, G, B);
   ``lead="stack"`` puts the gray image of every lead in its own channel instead (``C`` channels);
   ``lead="grid"`` tiles one image per lead in the printed ECG's layout (:func:`grid_layout`: 12 leads in 3 rows x 4
   columns, I II III / aVR aVL aVF / V1 V2 V3 / V4 V5 V6 down the columns), scaled together, then as ``gray`` or
   ``colormap``;
5. ``normalize=True``: ImageNet normalisation ``(v - mean) / std`` with torchvision's statistics
   (for ``C != 3`` lead channels, the average mean 0.449 and std 0.226).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ecgtransfer.errors import ConfigError, SignalError
from ecgtransfer.imaging._tensor import as_signal, check_finite, empty, is_int
from ecgtransfer.imaging.colour import (
    apply_colormap,
    colormap_lut,
    colormap_table,
    imagenet_stats,
    minmax_scale,
    scale_terms,
)
from ecgtransfer.imaging.gramian import gramian_angular_field
from ecgtransfer.imaging.markov import markov_transition_field
from ecgtransfer.imaging.recurrence import recurrence_plot
from ecgtransfer.imaging.resample import resample, resize_image
from ecgtransfer.imaging.spectrogram import spectrogram

#: the side of the square images in pixels unless told otherwise (ImageNet's 224 x 224, what the pretrained
#: ResNet50 saw); the one default of ``encode``, ``images --size``, ``TrainConfig.image_size`` and the bench
IMAGE_SIZE = 224
#: rows of the ``lead="grid"`` layout: a 12-lead ECG printed as 3 rows x 4 columns
GRID_ROWS = 3
#: the single encodings ``encode`` renders, and the composite
ENCODINGS = ("spectrogram", "recurrence", "gasf", "gadf", "mtf", "stack")
#: the default R, G, B encodings of ``encoding="stack"``
DEFAULT_STACK = ("spectrogram", "recurrence", "gasf")


def check_encoding(encoding: str, where: str = "encoding") -> str:
    """``encoding`` if it is one of :data:`ENCODINGS`, else :class:`ConfigError` naming ``where`` (the one rule that
    ``encode``, :class:`ImageEncoder`, the training config and the bench config apply)."""
    if encoding not in ENCODINGS:
        raise ConfigError(f"{where}: unknown encoding {encoding!r}; expected one of {list(ENCODINGS)}")
    return encoding
#: defaults of the spectrogram inside ``encode`` (override any by keyword)
SPECTROGRAM_DEFAULTS: dict[str, Any] = {"nperseg": 64, "hop": 4, "n_fft": 256, "window": "hann",
                                        "detrend": "constant", "scaling": "density", "top_db": 80.0}
ECG_BAND_HZ = (0.5, 50.0)
_RENDER_KEYS = {
    "spectrogram": {"nperseg", "hop", "n_fft", "window", "detrend", "scaling", "fmin", "fmax", "amin", "top_db"},
    "recurrence": {"dimension", "time_delay", "threshold", "percentage", "padtype"},
    "gasf": {"sample_range", "padtype"},
    "gadf": {"sample_range", "padtype"},
    "mtf": {"n_bins", "strategy", "padtype"},
}


def grid_layout(n_leads: int, size: int) -> tuple[int, int, int, int]:
    """``(rows, cols, tile_h, tile_w)`` of the ``lead="grid"`` image of ``n_leads`` leads at ``size`` pixels.

    Lead ``k`` (in the store's order) is the tile at row ``k % rows``, column ``k // rows``, pixels
    ``[r * tile_h, (r + 1) * tile_h) x [c * tile_w, (c + 1) * tile_w)``; ``rows = min(3, n_leads)``,
    ``cols = ceil(n_leads / rows)``, ``tile_h = size // rows``, ``tile_w = size // cols``. For the standard order
    (I, II, III, aVR, aVL, aVF, V1-V6) that is the printed 12-lead ECG: columns I-III, aVR-aVF, V1-V3, V4-V6. At 224
    pixels a tile is 74 x 56; the last ``size - rows * tile_h`` rows and ``size - cols * tile_w`` columns (2 and 0)
    hold the image's minimum.
    """
    if not is_int(n_leads) or n_leads < 1:
        raise ConfigError(f"grid_layout: n_leads must be a positive integer, got {n_leads!r}")
    rows = min(GRID_ROWS, int(n_leads))
    cols = -(-int(n_leads) // rows)
    th, tw = int(size) // rows, int(size) // cols
    if th < 2 or tw < 2:
        raise ConfigError(f"encode: lead='grid' of {n_leads} leads needs tiles of at least 2 x 2 pixels; size {size} "
                          f"gives {th} x {tw}")
    return rows, cols, th, tw


def _render_spectrogram(x: torch.Tensor, shape: tuple[int, int], fs: float | None, params: Mapping[str, Any],
                        window: torch.Tensor | None) -> torch.Tensor:
    """The dB spectrogram of each series, low frequencies at the bottom row, resized to ``shape``."""
    L = int(x.shape[-1])
    q = {**SPECTROGRAM_DEFAULTS, **dict(params)}
    if fs is not None:
        q.setdefault("fmin", ECG_BAND_HZ[0])
        q.setdefault("fmax", min(ECG_BAND_HZ[1], fs / 2))
    for k in ("nperseg", "hop", "n_fft"):
        if not (is_int(q[k]) and q[k] >= 1) and not (k == "n_fft" and q[k] is None):
            raise ConfigError(f"encode: spectrogram {k} must be a positive integer, got {q[k]!r}")
    q["nperseg"] = min(int(q["nperseg"]), L)
    if q["n_fft"] is not None:
        q["n_fft"] = max(int(q["n_fft"]), q["nperseg"])
    if window is not None and window.shape[0] == q["nperseg"]:
        q["window"] = window
    img = spectrogram(x, 1.0 if fs is None else float(fs), **q).flip(-2)
    img = resize_image(img, shape)
    return img


def _render(x: torch.Tensor, encoding: str, size: int | tuple[int, int], fs: float | None,
            params: Mapping[str, Any], window: torch.Tensor | None = None) -> torch.Tensor:
    """One image per series, not yet scaled: ``[N, L] -> [N, size, size]`` (``[N, h, w]`` for ``size = (h, w)``:
    a spectrogram is resized to it, the square encodings are rendered at ``max(h, w)`` and resized)."""
    unknown = set(params) - _RENDER_KEYS[encoding]
    if unknown:
        raise ConfigError(f"encode: unknown parameter(s) {sorted(unknown)} for encoding {encoding!r}; "
                          f"it takes {sorted(_RENDER_KEYS[encoding])}")
    if isinstance(size, tuple):
        if encoding == "spectrogram":
            return _render_spectrogram(x, size, fs, params, window)
        return resize_image(_render(x, encoding, max(size), fs, params, window), size)
    L = int(x.shape[-1])
    p = dict(params)
    if encoding == "spectrogram":
        return _render_spectrogram(x, (size, size), fs, p, window)
    if encoding == "recurrence":
        m, tau = p.pop("dimension", 1), p.pop("time_delay", 1)
        if not (is_int(m) and is_int(tau) and m >= 1 and tau >= 1):
            raise ConfigError("encode: recurrence dimension and time_delay must be positive integers (samples of "
                              f"the resampled series), got {m!r} and {tau!r}")
        padtype = p.pop("padtype", "line")
        xr = resample(x, size + (m - 1) * tau, padtype=padtype)
        img = recurrence_plot(xr, m, tau, **p)
    elif encoding == "mtf":
        xr = resample(x, size, padtype=p.pop("padtype", "line"))
        img = markov_transition_field(xr, size, **p)
    else:
        padtype = p.pop("padtype", "line")
        xr = resample(x, size, padtype=padtype)
        img = gramian_angular_field(xr, "summation" if encoding == "gasf" else "difference", image_size=size, **p)
    return img


def _split_stack_params(channels: Sequence[str], params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    per: dict[str, dict[str, Any]] = {c: {} for c in channels}
    for key, value in params.items():
        if key not in per:
            raise ConfigError(f"encode: with encoding='stack', pass parameters per encoding, e.g. "
                              f"recurrence={{'threshold': 'point'}}; got {key!r} (channels are {list(channels)})")
        if not isinstance(value, Mapping):
            raise ConfigError(f"encode: {key}= must be a dict of parameters, got {type(value).__name__}")
        per[key] = dict(value)
    return per


def encode(x: Any, encoding: str = "spectrogram", size: int = IMAGE_SIZE, *, fs: float | None = None,
           lead: int | str = 0, colour: str = "gray", cmap: str = "viridis", normalize: bool = True,
           channels: Sequence[str] = DEFAULT_STACK, check_finite_values: bool = True,
           **params: Any) -> torch.Tensor:
    """Images of ECG segments: ``[B, L]`` or ``[B, C, L]`` -> float32 ``[B, 3, size, size]``.

    Args:
        x: segments ``[B, L]`` or ``[B, C, L]`` (tensor on any device, or array); computed in float32
            (float64 input stays float64).
        encoding: ``"spectrogram"``, ``"recurrence"``, ``"gasf"``, ``"gadf"``, ``"mtf"`` or ``"stack"``.
        size: side of the square output image, ``>= 2``.
        fs: sampling rate in Hz; the spectrogram keeps 0.5-50 Hz when given (its full band otherwise).
        lead: index of the lead to image for ``[B, C, L]`` input, or ``"stack"``: one gray image per lead,
            leads as channels (output ``[B, C, size, size]``; ``C == 3`` gives an RGB-shaped image), or
            ``"grid"``: every lead's image as a tile of one ``[B, 3, size, size]`` image in the printed ECG's layout
            (:func:`grid_layout`; 12 leads: 3 rows x 4 columns, tiles of 74 x 56 at 224 pixels).
        colour: ``"gray"`` (image replicated to R, G, B) or ``"colormap"`` (``cmap`` lookup).
        cmap: matplotlib colormap name for ``colour="colormap"``.
        normalize: apply ImageNet mean/std normalisation; ``False`` returns images in ``[0, 1]``.
        channels: the three encodings of ``encoding="stack"`` (R, G, B).
        check_finite_values: raise :class:`SignalError` on NaN/inf input (one device sync).
        **params: parameters of the encoding (``nperseg``, ``hop``, ``n_fft``, ``window``, ``fmin``, ``fmax``,
            ``top_db``, ... for spectrograms; ``dimension``, ``time_delay``, ``threshold``, ``percentage`` for
            recurrence plots; ``sample_range`` for Gramian fields; ``n_bins``, ``strategy`` for Markov
            transition fields; ``padtype`` of the resampling). With
            ``"stack"``, a dict per encoding: ``recurrence={"threshold": "point"}``.

    Returns:
        ``[B, 3, size, size]`` (``[B, C, size, size]`` with ``lead="stack"``) on the input's device.
    """
    return _encode(x, encoding, size, fs=fs, lead=lead, colour=colour, cmap=cmap, normalize=normalize,
                   channels=channels, check=check_finite_values, params=params)


def _encode(x: Any, encoding: str, size: int, *, fs: float | None, lead: int | str, colour: str, cmap: str,
            normalize: bool, channels: Sequence[str], check: bool, params: Mapping[str, Any],
            lut: torch.Tensor | None = None, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
            window: torch.Tensor | None = None) -> torch.Tensor:
    x = _checked_segments(x, encoding, size, colour, check)
    if x.ndim == 3 and lead == "grid":
        return _encode_grid(x, encoding, size, fs=fs, colour=colour, cmap=cmap, normalize=normalize, params=params,
                            lut=lut, mean=mean, std=std, window=window)
    series = _series_of(x, lead)
    B = x.shape[0]
    flat_input = series.amax(dim=-1) == series.amin(dim=-1)  # [N]: flat-line series give zero images

    sources, n_out = _render_sources(x, series, encoding, size, fs=fs, lead=lead, colour=colour, channels=channels,
                                     params=params, window=window)
    mean, std = _normalisation(normalize, mean, std, n_out, series.device, series.dtype)
    if colour == "colormap" and encoding != "stack":
        table = lut if lut is not None else colormap_lut(cmap, series.device, series.dtype)
        return _colormap(sources[0], flat_input, table.to(series.dtype), mean, std)
    if lead == "stack" and x.ndim == 3:  # image i of the flattened [B * C] batch belongs to lead i % C
        if mean is not None:
            which = torch.arange(series.shape[0], device=series.device) % n_out
            mean, std = mean[which], std[which]
        return _scale(sources[0], flat_input, mean, std).reshape(B, n_out, size, size)
    return _compose(sources, flat_input, mean, std)


def _checked_segments(x: Any, encoding: str, size: int, colour: str, check: bool) -> torch.Tensor:
    """The settings checked and ``x`` as segments ``[B, L]`` or ``[B, C, L]`` (a single series ``[L]`` becomes
    ``[1, L]``), finite when ``check``."""
    check_encoding(encoding, "encode")
    if not is_int(size) or size < 2:
        raise ConfigError(f"encode: size must be an integer >= 2, got {size!r}")
    from ecgtransfer._validate import MAX_IMAGE_SIZE

    if size > MAX_IMAGE_SIZE:
        raise ConfigError(f"encode: size must be at most {MAX_IMAGE_SIZE} pixels, got {size!r}")
    if colour not in ("gray", "colormap"):
        raise ConfigError(f"encode: colour must be 'gray' or 'colormap', got {colour!r}")
    x = as_signal(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim not in (2, 3):
        raise SignalError(f"encode: expected segments [B, L] or [B, C, L], got shape {tuple(x.shape)}")
    if check:
        check_finite(x, name="encode")
    return x


def _series_of(x: torch.Tensor, lead: int | str) -> torch.Tensor:
    """The series to image, ``[N, L]``: ``x`` ``[B, L]`` itself, lead ``lead`` of ``[B, C, L]``, or every lead
    (``lead="stack"``, ``N = B * C``)."""
    if x.ndim == 3:
        if lead == "stack":
            series = x.reshape(-1, x.shape[-1])
        elif is_int(lead) and -x.shape[1] <= lead < x.shape[1]:
            series = x[:, lead]
        else:
            raise ConfigError(f"encode: lead must be an index in [0, {x.shape[1]}), 'stack' or 'grid', got {lead!r}")
    else:
        series = x
    return series


def _render_sources(x: torch.Tensor, series: torch.Tensor, encoding: str, size: int, *, fs: float | None,
                    lead: int | str, colour: str, channels: Sequence[str], params: Mapping[str, Any],
                    window: torch.Tensor | None) -> tuple[list[torch.Tensor], int]:
    """(the rendered images ``[N, size, size]`` of each source: three for ``encoding="stack"``, else one; the
    number of output channels)."""
    if encoding == "stack":
        if len(channels) != 3 or any(c not in _RENDER_KEYS for c in channels):
            raise ConfigError(f"encode: channels must be three of {list(_RENDER_KEYS)}, got {list(channels)}")
        if lead == "stack" and x.ndim == 3:
            raise ConfigError("encode: encoding='stack' (three encodings) and lead='stack' (leads as channels) "
                              "cannot be combined; choose one lead")
        if colour != "gray":
            raise ConfigError("encode: encoding='stack' makes its own colours (three encodings as R, G, B); "
                              "colour must be 'gray'")
        per = _split_stack_params(channels, params)
        sources = [_render(series, c, size, fs, per[c], window) for c in channels]
        n_out = 3
    else:
        sources = [_render(series, encoding, size, fs, params, window)]
        if lead == "stack" and x.ndim == 3:
            if colour != "gray":
                raise ConfigError("encode: lead='stack' puts one gray image per lead in each channel; "
                                  "colour must be 'gray'")
            n_out = x.shape[1]
        else:
            n_out = 3
    return sources, n_out


def _normalisation(normalize: bool, mean: torch.Tensor | None, std: torch.Tensor | None, n_out: int,
                   device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The per-channel ``(mean [n_out], std [n_out])`` of the ImageNet normalisation in ``dtype`` (the given ones
    when they fit ``n_out`` channels, else :func:`imagenet_stats`); ``(None, None)`` without ``normalize``."""
    if not normalize:
        return None, None
    if mean is None or std is None or mean.shape[0] != n_out:
        mean, std = imagenet_stats(n_out, device, dtype)
    return mean.to(dtype).reshape(-1), std.to(dtype).reshape(-1)


def _encode_grid(x: torch.Tensor, encoding: str, size: int, *, fs: float | None, colour: str, cmap: str,
                 normalize: bool, params: Mapping[str, Any], lut: torch.Tensor | None, mean: torch.Tensor | None,
                 std: torch.Tensor | None, window: torch.Tensor | None) -> torch.Tensor:
    """``lead="grid"``: ``[B, C, L] -> [B, 3, size, size]``, one tile per lead (:func:`grid_layout`), the tiles of
    an image scaled together (so the leads' levels stay comparable), then gray or colormap as one image."""
    if encoding == "stack":
        raise ConfigError("encode: encoding='stack' (three encodings) and lead='grid' (leads as tiles) cannot be "
                          "combined; choose one encoding")
    B, C, L = (int(v) for v in x.shape)
    rows, cols, th, tw = grid_layout(C, size)
    tiles = _render(x.reshape(B * C, L), encoding, (th, tw), fs, params, window).reshape(B, C, th, tw)
    grid = tiles.amin(dim=(1, 2, 3))[:, None, None].expand(B, size, size).clone()  # the gaps hold the minimum
    for k in range(C):
        r, c = k % rows, k // rows
        grid[:, r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tiles[:, k]
    flat = (x.amax(dim=-1) == x.amin(dim=-1)).all(dim=1)  # [B]: every lead flat gives a zero image
    mean, std = _normalisation(normalize, mean, std, 3, x.device, x.dtype)
    if colour == "colormap":
        table = lut if lut is not None else colormap_lut(cmap, x.device, x.dtype)
        return _colormap(grid, flat, table.to(x.dtype), mean, std)
    return _compose([grid], flat, mean, std)


def grid_tiles(image: torch.Tensor, n_leads: int) -> torch.Tensor:
    """The tiles of ``lead="grid"`` images, back in lead order: ``[B, S, S]`` (or ``[B, ch, S, S]``, the first
    channel is read) -> ``[B, n_leads, tile_h, tile_w]`` (:func:`grid_layout`)."""
    img = image[:, 0] if image.ndim == 4 else image
    rows, cols, th, tw = grid_layout(n_leads, int(img.shape[-1]))
    return torch.stack([img[:, (k % rows) * th:(k % rows + 1) * th, (k // rows) * tw:(k // rows + 1) * tw]
                        for k in range(n_leads)], dim=1)


def image_channels(lead: int | str, n_leads: int) -> int:
    """Channels of :func:`encode`'s images for segments ``[B, n_leads, L]``: ``n_leads`` when ``lead="stack"``,
    else 3 (gray replicated, colormap, three encodings, or the lead tiles of ``lead="grid"``)."""
    if lead == "stack":
        if not is_int(n_leads) or n_leads < 1:
            raise ConfigError(f"image_channels: n_leads must be a positive integer, got {n_leads!r}")
        return int(n_leads)
    return 3


def _scale(src: torch.Tensor, flat: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """Min-max scale images ``[N, S, S]`` to [0, 1], then ``(v - mean[i]) / std[i]`` (``[N]``) if given.

    Normalised, both steps fold into one multiply-add per pixel, ``v * a + b``; without normalisation the
    result is ``clamp((v - lo) * inv, 0, 1)``, exactly 0 at the minimum.
    """
    lo, inv = scale_terms(src, flat)
    if out is None:
        out = empty(tuple(src.shape), src.dtype, src.device)
    if mean is None:
        return torch.sub(src, lo[:, None, None], out=out).mul_(inv[:, None, None]).clamp_(0, 1)
    a = inv / std
    b = (-lo * inv) / std - mean / std
    return torch.mul(src, a[:, None, None], out=out).add_(b[:, None, None])


def _compose(sources: list[torch.Tensor], flat: torch.Tensor, mean: torch.Tensor | None,
             std: torch.Tensor | None) -> torch.Tensor:
    """Three channels ``[N, 3, S, S]`` from one gray source (replicated) or three sources (R, G, B).

    Each output channel is written once (one multiply-add per pixel); ``mean``/``std`` are ``[3]`` or None.
    """
    n, s1, s2 = sources[0].shape
    dtype, device = sources[0].dtype, sources[0].device
    out = empty((n, 3, s1, s2), dtype, device)
    if len(sources) == 1:
        lo, inv = scale_terms(sources[0], flat)
        if mean is None:
            gray = _scale(sources[0], flat, None, None)
            out.copy_(gray[:, None].expand(n, 3, s1, s2))
            return out
        a = inv[:, None] / std[None, :]  # [N, 3]
        b = (-lo * inv)[:, None] / std[None, :] - (mean / std)[None, :]
        torch.mul(sources[0].reshape(n, 1, s1 * s2), a[:, :, None], out=out.view(n, 3, s1 * s2)).add_(b[:, :, None])
        return out
    for c, src in enumerate(sources):
        m = None if mean is None else mean[c].expand(n)
        sd = None if std is None else std[c].expand(n)
        _scale(src, flat, m, sd, out=out[:, c])
    return out


def _colormap(src: torch.Tensor, flat: torch.Tensor, table: torch.Tensor, mean: torch.Tensor | None,
              std: torch.Tensor | None) -> torch.Tensor:
    """``[N, S, S]`` -> ``[N, 3, S, S]`` through a colormap table (normalised first when ``mean`` is given)."""
    if mean is not None:
        table = (table - mean[None, :]) / std[None, :]
    return apply_colormap(minmax_scale(src, flat), table)


class ImageEncoder(nn.Module):
    """:func:`encode` as a module, to render images per batch on the training device.

    ``forward(x [B, C, L] or [B, L]) -> [B, 3, size, size]`` (``[B, C, size, size]`` with ``lead="stack"``; see
    :meth:`out_channels`, the ``in_channels`` of the network) on ``x``'s device. The ImageNet statistics,
    the colormap table and a tensor spectrogram window are buffers, so ``.to(device)`` moves them; named
    windows, resampling matrices and other constants are cached per device on first use (no host round trip
    per batch). Parameters as :func:`encode`.
    """

    def __init__(self, encoding: str = "spectrogram", size: int = IMAGE_SIZE, fs: float | None = None, *,
                 lead: int | str = 0, colour: str = "gray", cmap: str = "viridis", normalize: bool = True,
                 channels: Sequence[str] = DEFAULT_STACK, check_finite_values: bool = True, **params: Any) -> None:
        super().__init__()
        check_encoding(encoding, "ImageEncoder")
        self.encoding, self.size, self.fs, self.lead = encoding, int(size), fs, lead
        self.colour, self.cmap, self.normalize = colour, cmap, normalize
        self.channels, self.check, self.params = tuple(channels), check_finite_values, dict(params)
        mean, std = imagenet_stats(3, "cpu")
        self.register_buffer("mean", mean.clone(), persistent=False)
        self.register_buffer("std", std.clone(), persistent=False)
        lut = torch.as_tensor(colormap_table(cmap).copy(), dtype=torch.float32) if colour == "colormap" else None
        self.register_buffer("lut", lut, persistent=False)
        # string windows come from the per-device cache inside spectrogram(); a tensor window given by the
        # caller is a buffer, so .to(device) moves it once and forward never copies it
        spec_params = self.params if encoding == "spectrogram" else self.params.get("spectrogram", {})
        win = spec_params.get("window") if isinstance(spec_params, Mapping) else None
        if isinstance(win, (str, tuple)):
            from ecgtransfer.imaging.spectrogram import scipy_window

            scipy_window(win, int(spec_params.get("nperseg", SPECTROGRAM_DEFAULTS["nperseg"])))  # fail early on a bad name
        self.register_buffer("window", win.detach().clone() if isinstance(win, torch.Tensor) else None,
                             persistent=False)

    def out_channels(self, n_leads: int) -> int:
        """Channels ``C`` of the images rendered from segments ``[B, n_leads, L]``: ``n_leads`` with
        ``lead="stack"`` (one gray image per lead), 3 otherwise. The network's ``in_channels``."""
        return image_channels(self.lead, n_leads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _encode(x, self.encoding, self.size, fs=self.fs, lead=self.lead, colour=self.colour, cmap=self.cmap,
                       normalize=self.normalize, channels=self.channels, check=self.check, params=self.params,
                       lut=self.lut, mean=self.mean, std=self.std, window=self.window)

    def extra_repr(self) -> str:
        return (f"encoding={self.encoding!r}, size={self.size}, fs={self.fs}, lead={self.lead!r}, "
                f"colour={self.colour!r}, params={self.params}")
