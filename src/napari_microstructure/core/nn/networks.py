"""The descriptor network: backbone, magnification input, descriptor head.

``f(x, l)`` of Larmuseau et al.: the backbone's feature map is averaged over
space, the crop's resolution (log10 pixels per micrometre, standardised) is
appended, and a small MLP maps both to a low-dimensional descriptor (2-D by
default). For the cross-entropy loss a linear classifier sits on top of the
descriptor, so the open-set mixture works on the same descriptors whatever the
loss.

Because the head only sees the spatial mean of the features, the descriptor of
any window of a feature map can be computed from that map alone: this is how
:mod:`.probmap` evaluates thousands of overlapping crops from one pass.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .backbones import build_backbone


class DescriptorNet(nn.Module):
    """Backbone + magnification + descriptor head.

    Parameters
    ----------
    backbone : str
        Name for :func:`~.backbones.build_backbone`.
    embedding_dim : int
        Descriptor dimension.
    n_classes : int or None
        If given, a linear classifier on the descriptor (cross-entropy training).
    use_magnification : bool
        Append the standardised log10 resolution to the pooled features.
    pretrained : bool
        ImageNet initialisation where the backbone has it.
    """

    def __init__(
        self,
        backbone: str = "compact",
        embedding_dim: int = 2,
        n_classes: Optional[int] = None,
        use_magnification: bool = True,
        pretrained: bool = True,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        # reflection padding: crops and whole-image passes see the same borders
        self.backbone = build_backbone(backbone, pretrained=pretrained, padding="reflect")
        self.use_magnification = bool(use_magnification)
        c = self.backbone.out_channels + (1 if self.use_magnification else 0)
        self.head = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embedding_dim))
        self.classifier = nn.Linear(embedding_dim, n_classes) if n_classes else None
        # standardisation of log10(pixels per micrometre), set from the training crops
        self.register_buffer("mag_center", torch.zeros(()))
        self.register_buffer("mag_scale", torch.ones(()))

    @property
    def stride(self) -> int:
        return int(self.backbone.stride)

    @property
    def shares_windows(self) -> bool:
        """Whether a window of a whole-image feature map equals the crop's own (see :mod:`.frozen`)."""
        return bool(getattr(self.backbone, "shares_windows", True))

    @property
    def frozen_backbone(self) -> bool:
        """Whether the backbone is never trained (its weights then come from ImageNet, not the model file)."""
        return bool(getattr(self.backbone, "frozen", False))

    def pooled(self, grey: torch.Tensor) -> torch.Tensor:
        """Spatially averaged backbone features ``(B, C)`` of crops ``(B, 1, S, S)`` in [0, 1]."""
        own = getattr(self.backbone, "pooled", None)
        return own(grey) if own is not None else self.feature_map(grey).mean(dim=(2, 3))

    def feature_map(self, grey: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` grey in [0, 1] -> backbone feature map ``(B, C, h, w)``."""
        return self.backbone.forward_features(self.backbone.prepare(grey))

    def head_from_pooled(self, pooled: torch.Tensor, log_ppum: torch.Tensor) -> torch.Tensor:
        """Descriptors from spatially averaged features ``(B, C)`` and log10 resolution ``(B,)``."""
        normalise = getattr(self.backbone, "normalise_pooled", None)
        if normalise is not None:
            pooled = normalise(pooled)
        if self.use_magnification:
            mag = ((log_ppum.to(pooled.dtype) - self.mag_center) / self.mag_scale)[:, None]
            pooled = torch.cat([pooled, mag], dim=1)
        return self.head(pooled)

    def forward(self, grey: torch.Tensor, log_ppum: torch.Tensor) -> torch.Tensor:
        """Descriptors ``(B, embedding_dim)`` of crops ``(B, 1, S, S)`` in [0, 1]."""
        return self.head_from_pooled(self.pooled(grey), log_ppum)
