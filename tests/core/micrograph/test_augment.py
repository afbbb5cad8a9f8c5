import numpy as np
import pytest
import torch

from napari_microstructure.core.micrograph.augment import AugmentConfig, augment_photometric, gaussian_blur, sobel_magnitude


@pytest.fixture
def crops():
    g = torch.Generator().manual_seed(0)
    return torch.rand(16, 1, 48, 48, generator=g)


def test_augmentation_keeps_shape_and_range(crops):
    cfg = AugmentConfig(dust_probability=1.0, edge_probability=1.0, noise=0.2, brightness=0.5)
    out = augment_photometric(crops, cfg, torch.Generator().manual_seed(1))
    assert out.shape == crops.shape
    assert out.dtype == crops.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.allclose(out, crops)


def test_no_augmentation_is_identity(crops):
    out = augment_photometric(crops, AugmentConfig.off())
    assert torch.equal(out, crops)


def test_seeded_augmentation_repeats(crops):
    cfg = AugmentConfig()
    a = augment_photometric(crops, cfg, torch.Generator().manual_seed(5))
    b = augment_photometric(crops, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_dust_blurs_locally():
    # a checkerboard: dust lowers local contrast somewhere but not everywhere
    x = torch.from_numpy((np.indices((64, 64)).sum(0) % 2).astype(np.float32))[None, None].repeat(8, 1, 1, 1)
    cfg = AugmentConfig.off()
    cfg.dust_probability = 1.0
    cfg.dust_radius = (0.15, 0.2)
    out = augment_photometric(x, cfg, torch.Generator().manual_seed(0))
    local_contrast = (out[:, :, 1:, :] - out[:, :, :-1, :]).abs()
    assert float(local_contrast.min()) < 0.2  # blurred inside the particle
    assert float(local_contrast.max()) > 0.9  # untouched outside


def test_blur_and_edges_basic_properties():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 16:] = 1.0
    assert torch.allclose(gaussian_blur(x, 2.0).sum(), x.sum(), rtol=1e-3)
    e = sobel_magnitude(x)[0, 0]
    assert float(e[:, 15:17].mean()) > 0.3 and float(e[:, :10].max()) == pytest.approx(0.0, abs=1e-5)


def test_coerce():
    assert AugmentConfig.coerce(False) == AugmentConfig.off()
    assert AugmentConfig.coerce({"noise": 0.1}).noise == 0.1
    with pytest.raises(TypeError):
        AugmentConfig.coerce("strong")
