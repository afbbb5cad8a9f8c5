"""Kernels, feature maps and similar kernel pairs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_microstructure.core.nn.backbones import CompactCNN
from napari_microstructure.core.nn.efficientnet import EfficientNetLite0
from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.core.explain import (
    TorchAdapter, conv_layers, feature_maps, first_layer_kernels, similar_kernel_pairs,
)


@pytest.mark.parametrize("backbone_cls", [CompactCNN, EfficientNetLite0])
def test_grey_equivalent_kernels_act_on_the_grey_image(backbone_cls, rng):
    torch.manual_seed(0)
    bb = backbone_cls().eval()
    k = first_layer_kernels(bb)
    conv = bb.features[0] if backbone_cls is CompactCNN else bb._conv_stem
    assert k.weights.shape == tuple(conv.weight.shape)
    assert k.grey.shape == (conv.out_channels, *conv.kernel_size)
    # conv(prepare(g)) - conv(prepare(0)) is the grey-equivalent kernel applied to g
    g = torch.as_tensor(rng.random((1, 1, 16, 16)), dtype=torch.float32)
    with torch.no_grad():
        lhs = F.conv2d(bb.prepare(g), conv.weight, padding=1) - F.conv2d(
            bb.prepare(torch.zeros_like(g)), conv.weight, padding=1)
        rhs = F.conv2d(g, torch.as_tensor(k.grey, dtype=torch.float32)[:, None], padding=1)
    np.testing.assert_allclose(lhs.numpy(), rhs.numpy(), rtol=1e-4, atol=1e-4)


def test_feature_maps_are_the_layer_output(rng):
    torch.manual_seed(1)
    bb = CompactCNN().eval()
    adapter = TorchAdapter(bb, ["a"], 32, backbone=bb)
    layers = conv_layers(adapter)
    assert layers[0] == "features.0" and len(layers) == 6
    x = rng.random((32, 32)).astype(np.float32)
    fm = feature_maps(adapter, x, 1)
    with torch.no_grad():
        expected = bb.features[:4](bb.prepare(torch.as_tensor(x)[None, None]))[0].numpy()
    assert fm.layer == "features.3" and fm.maps.shape == (32, 8, 8)
    np.testing.assert_allclose(fm.maps, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fm.input, x)
    with pytest.raises(MicrostructureError, match="no layer 'nope'.*conv_layers"):
        feature_maps(adapter, x, "nope")
    with pytest.raises(MicrostructureError, match="out of range"):
        feature_maps(adapter, x, 17)


def test_similar_kernel_pairs_find_a_permuted_copy():
    torch.manual_seed(2)
    a = CompactCNN()
    b = copy.deepcopy(a)
    perm = torch.randperm(16)
    with torch.no_grad():
        b.features[0].weight.copy_(a.features[0].weight[perm])
    pairs = similar_kernel_pairs(a, b, n_pairs=16)
    assert len(pairs.pairs) == 16
    for i, j, d in pairs.pairs:
        assert int(perm[j]) == i and d == pytest.approx(0.0, abs=1e-9)
    other = similar_kernel_pairs(a, CompactCNN(), n_pairs=4)
    dists = [d for _, _, d in other.pairs]
    assert dists == sorted(dists) and dists[0] > 0
    assert dists[0] == pytest.approx(other.distances.min())
    # EfficientNet's stem is also 3x3 (32 kernels): comparable; a 5x5 first layer is not
    assert len(similar_kernel_pairs(a, EfficientNetLite0(), n_pairs=3).pairs) == 3
    with pytest.raises(MicrostructureError, match="3x3 in one model and 5x5.*same backbone"):
        similar_kernel_pairs(a, torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5)))


def test_readable_layer_names():
    """Users see what a convolution is, not a module name such as ``_conv_stem`` or ``features.6``."""
    from napari_microstructure.core.explain.filters import readable_layer_name

    assert readable_layer_name("_conv_stem", 0, 49) == "first convolution (stem)"
    assert readable_layer_name("_blocks.0._depthwise_conv", 1, 49) == "block 1: depthwise"
    assert readable_layer_name("_blocks.3._expand_conv", 9, 49) == "block 4: expansion"
    assert readable_layer_name("_blocks.15._project_conv", 47, 49) == "block 16: projection"
    assert readable_layer_name("_conv_head", 48, 49) == "last convolution (head)"
    assert [readable_layer_name(f"features.{3 * i}", i, 3) for i in range(3)] == [
        "first convolution", "convolution 2 of 3", "last convolution (3 of 3)"]
