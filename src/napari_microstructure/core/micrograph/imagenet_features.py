"""Frozen ImageNet features for open-set scoring.

A network trained from scratch on a few classes keeps only what separates
them, so an untrained texture can land among the trained ones in its feature
space. ImageNet features were not shaped by the trained classes: here the
frozen EfficientNet-Lite0 (ImageNet weights) is run on the same crop the
classifier sees, its feature maps after three stages (blocks 4, 10 and 15:
40, 112 and 320 channels at strides 8, 16 and 32) are averaged over the crop,
each L2-normalised, and concatenated (472 values). The k-NN scorer measures
novelty on them (:class:`.openset.KNNScorer` with ``split``).

Measured on generated micrographs (a compact model trained on ferrite,
pearlite and spheroidite; crops of held-out images of those classes against
crops of martensite and porous images, 64-pixel crops): crop-level AUROC of
the 10-NN distance 0.994 with these features, 0.854 with the trained
network's own pooled features.

Unlike the classifier's backbone, whose receptive field (127 pixels) is
about a crop, EfficientNet's is several crops wide: windows of one pass over
a whole image see context that an isolated crop does not, and on generated
composites the two disagreed badly. :mod:`.probmap` therefore computes these
features crop by crop.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

#: Blocks after which the feature maps are pooled, and their strides.
STAGES = ((4, 8), (10, 16), (15, 32))
#: Crops larger than this many pixels are downsampled to it first (EfficientNet costs ~10x
#: the compact CNN on a CPU; the features separate textures as well at 64-128 pixels).
MAX_INPUT = 128

_NETS: dict[str, torch.nn.Module] = {}


def imagenet_network(device: torch.device) -> torch.nn.Module:
    """The frozen EfficientNet-Lite0 with ImageNet weights, loaded once per device."""
    key = str(device)
    if key not in _NETS:
        from ..nn.efficientnet import load_imagenet_efficientnet_lite0

        from ..nn.padding import set_padding_mode

        net = load_imagenet_efficientnet_lite0(include_classifier=False).eval().to(device)
        # reflection, as the micrograph backbones: an isolated crop and a window of a
        # whole-image pass then see the same borders (see probmap)
        set_padding_mode(net, "reflect")
        for p in net.parameters():
            p.requires_grad_(False)
        _NETS[key] = net
    return _NETS[key]


@torch.inference_mode()
def stage_maps(grey: torch.Tensor, input_size: int, net: Optional[torch.nn.Module] = None
               ) -> list[tuple[torch.Tensor, float]]:
    """Feature maps ``[(map (B, C, h, w), stride), ...]`` of grey images ``(B, 1, H, W)`` in [0, 1].

    ``input_size`` is the classifier's crop side: above :data:`MAX_INPUT` the
    images are first downsampled by ``MAX_INPUT / input_size``, and the strides
    are given in pixels of ``grey``.
    """
    net = net or imagenet_network(grey.device)
    factor = min(1.0, MAX_INPUT / float(input_size))
    x = grey.float()
    if factor < 1.0:
        x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False, antialias=True)
    x = F.relu6(net._bn0(net._conv_stem(net.prepare(x))))
    out = []
    wanted = dict(STAGES)
    for i, block in enumerate(net._blocks):
        x = block(x)
        if i in wanted:
            out.append((x, wanted[i] / factor))
        if i >= STAGES[-1][0]:
            break
    return out


def normalise_stages(pooled: list[torch.Tensor]) -> torch.Tensor:
    """L2-normalise each stage's pooled features ``(B, C_i)`` and concatenate them."""
    return torch.cat([p / p.norm(dim=1, keepdim=True).clamp_min(1e-6) for p in pooled], dim=1)


def crop_features(grey: torch.Tensor) -> torch.Tensor:
    """``(B, 472)`` novelty features of crops ``(B, 1, S, S)`` in [0, 1]."""
    return normalise_stages([m.mean(dim=(2, 3)) for m, _ in stage_maps(grey, grey.shape[-1])])
