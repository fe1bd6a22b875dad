"""ECG segments to images, batched in torch on any device, exact against pyts and scipy.signal.

Raw encoders (``[..., L] -> [..., H, W]``): :func:`spectrogram`, :func:`recurrence_plot`,
:func:`gramian_angular_field`, :func:`markov_transition_field`; images for a network: :func:`encode` and :class:`ImageEncoder`
(``[B, C, L] -> [B, 3, size, size]``, ImageNet-normalised); files: :func:`materialise`.
See ``docs/imaging.md``.
"""
from __future__ import annotations

# the input checks the training loop applies to a batch too (public here; defined with the encoders' helpers)
from ecgtransfer.imaging._tensor import check_finite, naming_segments
from ecgtransfer.imaging.colour import IMAGENET_MEAN, IMAGENET_STD, apply_colormap, imagenet_normalise, minmax_scale
from ecgtransfer.imaging.encode import ENCODINGS, ImageEncoder, encode, grid_layout, grid_tiles
from ecgtransfer.imaging.export import materialise
from ecgtransfer.imaging.gramian import gramian_angular_field, paa
from ecgtransfer.imaging.markov import markov_transition_field
from ecgtransfer.imaging.recurrence import recurrence_plot
from ecgtransfer.imaging.resample import resample, resize_image
from ecgtransfer.imaging.spectrogram import spectrogram, spectrogram_frequencies

__all__ = [
    "ENCODINGS", "IMAGENET_MEAN", "IMAGENET_STD", "ImageEncoder", "apply_colormap", "check_finite", "encode",
    "gramian_angular_field", "grid_layout", "grid_tiles", "imagenet_normalise", "markov_transition_field", "materialise", "minmax_scale", "naming_segments", "paa", "recurrence_plot",
    "resample", "resize_image", "spectrogram", "spectrogram_frequencies",
]

