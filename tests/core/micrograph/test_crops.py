import numpy as np
import pytest
import torch

from napari_microstructure.core.micrograph.crops import (
    CropSource, build_pyramid, draw_centres, feasible_fov, random_geometry, sample_crops,
)
from napari_microstructure.core.errors import MicrostructureError


def _grid_image(h=400, w=400, period=20):
    """Vertical bars: value 1 on even 10-pixel columns."""
    x = np.arange(w)
    return np.tile(((x // (period // 2)) % 2).astype(np.float32), (h, 1))


def test_crop_covers_requested_field_of_view():
    # a ramp along x in micrometres: value = x_um / 100
    p = 0.5  # um per pixel
    w = 400
    x_um = (np.arange(w) + 0.5) * p
    image = np.tile((x_um / (w * p)).astype(np.float32), (300, 1))
    pyr = build_pyramid(image)
    fov_um = 60.0
    crops = sample_crops(pyr, np.array([[150.0, 200.0]]), np.array([fov_um / p]), 64)
    row = crops[0, 0, 32].numpy()
    # the crop spans fov_um micrometres: the ramp rises by fov / (w p) across it
    span = (row[-1] - row[0]) * (w * p) * 64 / 63
    assert span == pytest.approx(fov_um, rel=0.05)
    # centred at x = 200 px = 100 um
    assert row.mean() * w * p == pytest.approx(100.0, rel=0.02)


def test_pyramid_level_antialiases_large_crops():
    image = _grid_image(512, 512, period=4)  # fine bars, mean 0.5
    pyr = build_pyramid(image)
    crops = sample_crops(pyr, np.array([[256.0, 256.0]]), np.array([480.0]), 32)
    # 15 pixels per output pixel: bars must average out, not alias into stripes
    assert crops.std().item() < 0.1
    assert crops.mean().item() == pytest.approx(0.5, abs=0.05)


def test_rotation_by_90_degrees_turns_bars():
    image = _grid_image(300, 300, period=20)
    pyr = build_pyramid(image)
    centre = np.array([[150.0, 150.0]])
    rot = np.array([[[0.0, -1.0], [1.0, 0.0]]])
    plain = sample_crops(pyr, centre, np.array([100.0]), 100)[0, 0].numpy()
    turned = sample_crops(pyr, centre, np.array([100.0]), 100, rot)[0, 0].numpy()
    # plain: constant along rows (vertical bars); turned: constant along columns
    assert plain.std(axis=0).mean() < 0.05 < plain.std(axis=1).mean()
    assert turned.std(axis=1).mean() < 0.05 < turned.std(axis=0).mean()


def test_random_geometry_is_rotation_or_mirror_without_warp():
    m = random_geometry(np.random.default_rng(0), 50, warp=0.0)
    dets = np.linalg.det(m)
    assert np.allclose(np.abs(dets), 1.0)
    assert (dets < 0).any() and (dets > 0).any()
    assert np.allclose(m @ m.transpose(0, 2, 1), np.eye(2), atol=1e-9)


def test_random_geometry_switches():
    rng = np.random.default_rng(0)
    mirror_only = random_geometry(rng, 50, warp=0.0, rotation=False)
    assert np.allclose(np.abs(mirror_only), np.eye(2))  # identity or x-mirror, never rotated
    assert (np.linalg.det(mirror_only) < 0).any()
    rotation_only = random_geometry(rng, 50, warp=0.0, mirror=False)
    assert np.allclose(np.linalg.det(rotation_only), 1.0)
    assert not np.allclose(rotation_only, np.eye(2))
    assert np.allclose(random_geometry(rng, 5, 0.0, rotation=False, mirror=False), np.eye(2))


def test_feasible_fov_and_too_small_image():
    assert feasible_fov((300, 500), 0.1, 200, None) == pytest.approx((20.0, 30.0))
    assert feasible_fov((300, 500), 0.1, 64, (5.0, 100.0)) == pytest.approx((5.0, 30.0))
    with pytest.raises(MicrostructureError, match="smaller than one 200 x 200 crop"):
        feasible_fov((150, 500), 0.1, 200, None)
    with pytest.raises(MicrostructureError, match="field of view"):
        feasible_fov((300, 300), 0.1, 64, (40.0, 80.0))


def test_mask_centres_lie_on_labelled_pixels():
    rng = np.random.default_rng(0)
    image = np.zeros((200, 200), np.float32)
    src = CropSource(build_pyramid(image), 1.0, (20.0, 20.0), None, {0: np.array([[100.0, 150.0]])})
    centres = draw_centres(rng, src, np.full(5, 20.0), 0)
    assert np.allclose(centres, [[100.5, 150.5]] * 5)
    # a labelled pixel near the border: centre is pulled inside so the crop fits
    src = CropSource(build_pyramid(image), 1.0, (20.0, 20.0), None, {0: np.array([[0.0, 199.0]])})
    c = draw_centres(rng, src, np.array([20.0]), 0)
    assert c[0, 0] == pytest.approx(10.0) and c[0, 1] == pytest.approx(190.0)


def test_nan_pixels_do_not_propagate():
    image = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    image[10:20, 10:20] = np.nan
    crops = sample_crops(build_pyramid(image), np.array([[64.0, 64.0]]), np.array([120.0]), 32)
    assert torch.isfinite(crops).all()
