"""Frozen ImageNet features: EfficientNet-Lite0 pooled over three stages, never trained.

A network trained from scratch on a few classes keeps only what separates
them; frozen ImageNet features also keep what an untrained texture does
differently, and they need no training at all. :class:`FrozenImageNet` is a
backbone (the default of the micrograph classifier, ``"imagenet-frozen"``):
the ImageNet-trained EfficientNet-Lite0 run up to block 15, its feature maps
after blocks 4, 10 and 15 (40, 112 and 320 channels at strides 8, 16 and 32)
each averaged over the crop and L2-normalised, then concatenated (472 values).

Why these choices (measured on generated micrographs, a development set
disjoint from the benchmark's images): one stage alone separates the trained
textures less well than three; per-stage normalisation stops the 320 deep
channels from drowning the 40 shallow ones; and the weights stay frozen, batch
normalisation included, so a few labelled images cannot bend them.

The pooled features of a crop depend on the crop's borders: EfficientNet's
receptive field is several crops wide, so windows of one pass over a whole
image see context an isolated crop does not. Every crop is therefore computed
on its own (``shares_windows = False``; the probability maps follow it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet import EfficientNetLite0, load_imagenet_efficientnet_lite0
from .padding import set_padding_mode

#: Blocks after which the feature maps are pooled, and their strides.
STAGES = ((4, 8), (10, 16), (15, 32))
#: Channels of those feature maps.
STAGE_CHANNELS = (40, 112, 320)
#: On a CPU, crops go through in batches of this many, channels-last: measured on 2 cores at
#: 96 pixels, 420 crops/s against 115 for one batch of 128 in the default layout.
CPU_BATCH = 16


def normalise_stages(pooled: torch.Tensor) -> torch.Tensor:
    """L2-normalise each stage's block of pooled features ``(B, 472)``."""
    parts = torch.split(pooled, STAGE_CHANNELS, dim=1)
    return torch.cat([p / p.norm(dim=1, keepdim=True).clamp_min(1e-6) for p in parts], dim=1)


class FrozenImageNet(nn.Module):
    """The ImageNet EfficientNet-Lite0 as a frozen feature extractor (see the module text).

    Parameters
    ----------
    pretrained : bool
        Load the ImageNet weights (the point of this backbone; False only
        builds the architecture, e.g. for tests of shapes).
    padding : {"zeros", "reflect"}
        Border padding of the convolutions.

    Attributes
    ----------
    out_channels : int
        472: the pooled, concatenated stages.
    stride : int
        32, the deepest stage's.
    shares_windows : bool
        False: a crop's features must be computed on the crop alone.
    """

    out_channels = sum(STAGE_CHANNELS)
    stride = 32
    shares_windows = False
    frozen = True

    def __init__(self, pretrained: bool = True, padding: str = "reflect") -> None:
        super().__init__()
        net = load_imagenet_efficientnet_lite0(include_classifier=False) if pretrained \
            else EfficientNetLite0(num_classes=0)
        set_padding_mode(net, padding)
        last = STAGES[-1][0]
        # keep what is used: the stem and blocks 0-15 (the 1280-channel head is not)
        self._conv_stem, self._bn0 = net._conv_stem, net._bn0
        self._blocks = nn.ModuleList(list(net._blocks)[: last + 1])
        for p in self.parameters():
            p.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenImageNet":
        """Always evaluation mode: batch-norm statistics never change."""
        return super().train(False)

    prepare = staticmethod(EfficientNetLite0.prepare)

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after the blocks of :data:`STAGES` of a prepared input ``(B, 3, H, W)``."""
        wanted = {i for i, _ in STAGES}
        out = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for i, block in enumerate(self._blocks):
                x = block(x)
                if i in wanted:
                    out.append(x)
        return out

    def pooled(self, grey: torch.Tensor) -> torch.Tensor:
        """Spatially averaged stage features ``(B, 472)`` of grey crops ``(B, 1, S, S)`` (not normalised)."""
        x = self.prepare(grey)
        step = CPU_BATCH if x.device.type == "cpu" else len(x)
        parts = []
        for i in range(0, len(x), max(1, step)):
            xb = x[i:i + step].contiguous(memory_format=torch.channels_last)
            parts.append(torch.cat([m.mean(dim=(2, 3)) for m in self.stage_maps(xb)], dim=1))
        return torch.cat(parts) if len(parts) != 1 else parts[0]

    normalise_pooled = staticmethod(normalise_stages)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The deepest stage's feature map ``(B, 320, h, w)`` of a prepared input (for explanations)."""
        return self.stage_maps(x)[-1]
