"""The descriptor network f(x, l): shapes, pooled head, magnification, classifier head."""

import torch

from napari_microstructure.core.nn.networks import DescriptorNet


def _net(**kw):
    torch.manual_seed(0)
    return DescriptorNet("compact", embedding_dim=3, pretrained=False, **kw).eval()


def test_descriptor_shape_and_head_from_pooled_features():
    net = _net()
    x = torch.rand(4, 1, 64, 64)
    mag = torch.full((4,), 1.2)
    with torch.no_grad():
        d = net(x, mag)
        feats = net.feature_map(x)
        assert feats.shape[-1] == 64 // net.stride
        pooled = net.head_from_pooled(feats.mean((2, 3)), mag)
    assert d.shape == (4, 3)
    torch.testing.assert_close(d, pooled)


def test_magnification_is_standardised_and_optional():
    net = _net()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        d1 = net(x, torch.tensor([1.0, 1.0]))
        net.mag_center.fill_(1.0)
        net.mag_scale.fill_(2.0)
        # (l - centre) / scale: l = 3 with centre 1, scale 2 equals l = 1 with centre 0, scale 1
        d2 = net(x, torch.tensor([3.0, 3.0]))
    torch.testing.assert_close(d1, d2)
    blind = _net(use_magnification=False)
    with torch.no_grad():
        torch.testing.assert_close(blind(x, torch.tensor([0.0, 0.0])), blind(x, torch.tensor([5.0, 5.0])))


def test_classifier_head_only_for_cross_entropy():
    assert _net().classifier is None
    net = _net(n_classes=4)
    assert net.classifier(torch.zeros(2, 3)).shape == (2, 4)
