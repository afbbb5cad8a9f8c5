"""Border padding for the convolutions of the backbones.

Micrograph models pad with *reflection*: a crop's border then looks like more
of the same texture, as it does inside a whole image. That is what lets a
probability map evaluate thousands of overlapping crops from one fully
convolutional pass over the image and still agree with evaluating each crop on
its own (with zero padding the descriptors of the two differ by about 1.5x and
the labels agree on only a third of the pixels; with reflection they agree on
all of them, measured on generated textures). ImageNet weights were trained
with zero padding, which stays the default of EfficientNet-Lite0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PADDING_MODES = ("zeros", "reflect")


def pad2d(x: torch.Tensor, left: int, right: int, top: int, bottom: int, mode: str) -> torch.Tensor:
    """Pad the last two axes; reflection falls back to replication on maps too small to reflect."""
    if not (left or right or top or bottom):
        return x
    if mode == "zeros":
        return F.pad(x, (left, right, top, bottom))
    h, w = x.shape[-2:]
    if max(top, bottom) >= h or max(left, right) >= w:
        return F.pad(x, (left, right, top, bottom), mode="replicate")
    return F.pad(x, (left, right, top, bottom), mode="reflect")


def set_padding_mode(module: torch.nn.Module, mode: str) -> None:
    """Set the padding of every convolution of ``module`` that supports it."""
    if mode not in PADDING_MODES:
        raise ValueError(f"padding mode must be one of {PADDING_MODES}, not {mode!r}")
    for m in module.modules():
        if hasattr(m, "border_mode"):
            m.border_mode = mode
