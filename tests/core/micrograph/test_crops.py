import numpy as np
import pytest
import torch

from napari_microstructure.core.micrograph.augment import AugmentConfig
from napari_microstructure.core.micrograph.crops import (
    DIHEDRAL, CropSampler, CropSource, Micrograph, build_pyramid, draw_centres, feasible_fov, normalise_in_place,
    random_geometry, sample_crops, dihedral_transforms,
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
    image = rng.random((200, 200)).astype(np.float32)
    src = CropSource(Micrograph(image, 1.0), (20.0, 20.0), None, {0: np.array([[100.0, 150.0]])})
    centres = draw_centres(rng, src, np.full(5, 20.0), 0)
    assert np.allclose(centres, [[100.5, 150.5]] * 5)
    # a labelled pixel near the border: centre is pulled inside so the crop fits
    src = CropSource(Micrograph(image, 1.0), (20.0, 20.0), None, {0: np.array([[0.0, 199.0]])})
    c = draw_centres(rng, src, np.array([20.0]), 0)
    assert c[0, 0] == pytest.approx(10.0) and c[0, 1] == pytest.approx(190.0)


def test_nan_pixels_do_not_propagate():
    image = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    image[10:20, 10:20] = np.nan
    crops = sample_crops(build_pyramid(image), np.array([[64.0, 64.0]]), np.array([120.0]), 32)
    assert torch.isfinite(crops).all()


# ------------------------------------------------------------ the one pipeline
def _bars_orientation(crops):
    """Per crop: True for vertical bars (constant down the columns), False for horizontal."""
    x = np.asarray(crops)[:, 0] if np.ndim(crops) == 4 else np.asarray(crops)
    along_rows = x.std(axis=2).mean(1)     # varies across columns: vertical bars
    along_cols = x.std(axis=1).mean(1)     # varies across rows: horizontal bars
    return along_rows > along_cols


def test_normalisation_rule_percentiles_invalid_pixels_and_constant_images():
    rng = np.random.default_rng(0)
    grey = rng.normal(100.0, 10.0, (300, 300)).astype(np.float32)
    grey[0, 0] = np.nan
    expect_lo, expect_hi = np.nanpercentile(grey, [0.5, 99.5])
    out = normalise_in_place(grey.copy())
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[0, 0] == 0.5  # invalid pixels become mid-grey
    i, j = 5, 7
    assert out[i, j] == pytest.approx(np.clip((grey[i, j] - expect_lo) / (expect_hi - expect_lo), 0, 1), abs=1e-5)
    # pixels outside `valid` neither count for the percentiles nor keep their value
    valid = np.ones_like(grey, bool)
    valid[:, :150] = False
    shifted = grey.copy()
    shifted[:, :150] += 1000.0
    out2 = normalise_in_place(shifted, valid & np.isfinite(grey))
    assert np.all(out2[:, :150] == 0.5)
    np.testing.assert_allclose(out2[:, 150:], normalise_in_place(grey[:, 150:].copy()), atol=1e-5)
    assert np.all(normalise_in_place(np.full((20, 20), 3.0, np.float32)) == 0.5)


def test_large_images_use_a_regular_subsample_for_the_percentiles(monkeypatch):
    import napari_microstructure.core.micrograph.crops as crops_module

    grey = np.random.default_rng(1).random((400, 400)).astype(np.float32)
    full = normalise_in_place(grey.copy())
    monkeypatch.setattr(crops_module, "PERCENTILE_SAMPLE", 10_000)
    sub = normalise_in_place(grey.copy())
    assert not np.array_equal(full, sub)            # another sample ...
    assert np.abs(full - sub).max() < 0.02           # ... giving nearly the same scale


def _two_regions(rng, shape=(240, 480)):
    """Left half a texture spanning 60 % of the image's range, right half the full range (dark pores)."""
    grey = np.empty(shape, np.float32)
    w = shape[1] // 2
    grey[:, :w] = rng.normal(150.0, 30.0, (shape[0], w))
    grey[:, w:] = rng.uniform(0.0, 255.0, (shape[0], shape[1] - w))
    return grey, w


def test_local_normalisation_sees_each_region_as_if_alone():
    """With a window, a region far from another one is normalised as the region alone would be;
    on the whole image the other region's range compresses it."""
    rng = np.random.default_rng(3)
    grey, w = _two_regions(rng)
    window = 60
    local = normalise_in_place(grey.copy(), window_px=window)
    alone = normalise_in_place(grey[:, :w].copy())
    whole = normalise_in_place(grey.copy())
    far = slice(0, w - 2 * window)            # a window and its interpolation span away from the seam
    assert np.abs(local[:, far] - alone[:, far]).mean() < 0.02
    assert np.abs(whole[:, far] - alone[:, far]).mean() > 0.05
    assert local.dtype == np.float32 and local.min() >= 0.0 and local.max() <= 1.0
    # no seams between windows: neighbouring columns of the uniform region differ by noise only
    step = np.abs(np.diff(local[:, far].mean(0)))
    assert step.max() < 0.05
    # an image no larger than one window is normalised on the whole image, exactly
    small = grey[:50, :50].copy()
    np.testing.assert_array_equal(normalise_in_place(small.copy(), window_px=50), normalise_in_place(small.copy()))


def test_local_normalisation_does_not_stretch_a_flat_region_into_noise():
    """A nearly flat region (one grain) is stretched at most LOCAL_STRETCH_MAX times the whole image's range."""
    from napari_microstructure.core.micrograph.crops import LOCAL_STRETCH_MAX

    rng = np.random.default_rng(4)
    grey, w = _two_regions(rng)
    grey[:, :w] = rng.normal(200.0, 1.0, (grey.shape[0], w))      # range about 5 of the image's 255
    local = normalise_in_place(grey.copy(), window_px=60)
    whole = normalise_in_place(grey.copy())
    far = slice(0, w - 120)
    spread_local = np.percentile(local[:, far], 99.5) - np.percentile(local[:, far], 0.5)
    spread_whole = np.percentile(whole[:, far], 99.5) - np.percentile(whole[:, far], 0.5)
    assert spread_local == pytest.approx(LOCAL_STRETCH_MAX * spread_whole, rel=0.15)
    assert spread_local < 0.1                  # still flat, not stretched over [0, 1]


def test_local_normalisation_masks_invalid_pixels_and_micrograph_takes_micrometres():
    rng = np.random.default_rng(5)
    grey, w = _two_regions(rng)
    valid = np.ones(grey.shape, bool)
    valid[:, :100] = False                     # whole windows without a valid pixel
    shifted = grey.copy()
    shifted[:, :100] = 1e6
    out = normalise_in_place(shifted, valid, window_px=60)
    assert np.all(out[:, :100] == 0.5) and np.isfinite(out).all()
    ref = normalise_in_place(grey.copy(), valid, window_px=60)
    np.testing.assert_allclose(out[:, 160:], ref[:, 160:], atol=1e-6)   # invalid values never counted
    m = Micrograph(grey, 0.5, window_um=30.0)  # 60 pixels
    np.testing.assert_array_equal(m.image, normalise_in_place(grey.copy(), window_px=60.0))
    assert m.normalise_window_um == 30.0
    whole = Micrograph(grey, 0.5, window_um=240.0)   # 480 pixels: the image is no larger than one window
    assert whole.normalise_window_um is None
    np.testing.assert_array_equal(whole.image, normalise_in_place(grey.copy()))


def test_micrograph_validates_normalises_once_and_masks():
    image = np.arange(64 * 80, dtype=np.uint16).reshape(64, 80)
    m = Micrograph(image, 0.5)
    assert m.image.dtype == np.float32 and m.image.min() == 0.0 and m.image.max() == 1.0
    assert m.valid is None and m.side_um == 32.0 and m.shape == (64, 80)
    assert m.pyramid[0].data_ptr() == torch.from_numpy(m.image).data_ptr()  # no copy
    mask = np.zeros((64, 80), bool)
    mask[:, 40:] = True
    masked = Micrograph(image, 0.5, mask=mask)
    assert masked.valid_mask().sum() == 64 * 40 and np.all(masked.image[:, :40] == 0.5)
    with pytest.raises(MicrostructureError, match="no pixel is left"):
        Micrograph(image, 0.5, mask=np.zeros((64, 80), bool))
    with pytest.raises(MicrostructureError, match=r"mask has shape \(10, 10\) but its image has shape \(64, 80\); give a mask of the image.s shape"):
        Micrograph(image, 0.5, mask=np.ones((10, 10), bool))
    with pytest.raises(MicrostructureError, match="pixel_size"):
        Micrograph(image, -1.0)


def test_lazy_pyramid_equals_repeated_box_averages():
    image = np.random.default_rng(2).random((130, 100)).astype(np.float32)
    pyr = build_pyramid(image)
    assert len(pyr) == 3  # 130x100, 65x50, 32x25 (the next would be under 2 x 16)
    level = torch.from_numpy(image)[None, None]
    for k in range(len(pyr)):
        assert torch.equal(pyr[k], level)
        level = torch.nn.functional.avg_pool2d(level, 2)
    assert [p.shape[-1] for p in pyr[:]] == [100, 50, 25]


def test_test_time_augmentation_follows_the_training_switches():
    assert AugmentConfig().at_test_time() == AugmentConfig.test_time()
    assert AugmentConfig.off().at_test_time() == AugmentConfig.off()
    fixed = AugmentConfig(rotation=False, mirror=False).at_test_time()
    assert not fixed.rotation and not fixed.mirror and fixed.brightness > 0
    assert dihedral_transforms(AugmentConfig()) == DIHEDRAL
    assert dihedral_transforms(AugmentConfig(rotation=False)) == ((0, False), (0, True))
    assert dihedral_transforms(AugmentConfig(mirror=False)) == ((0, False), (2, False), (1, False), (3, False))
    assert dihedral_transforms(AugmentConfig.off()) == ((0, False),)


def test_sampler_without_rotation_and_mirror_keeps_crops_upright():
    bars = _grid_image(400, 400, period=20)
    source = CropSource(Micrograph(bars, 0.1), (8.0, 12.0))
    turned = CropSource(Micrograph(np.rot90(bars).copy(), 0.1), (8.0, 12.0))
    upright = AugmentConfig(rotation=False, mirror=False).at_test_time()
    sampler = CropSampler(48, upright, np.random.default_rng(0))
    assert sampler.geometry(5) is None
    assert _bars_orientation(sampler.sample(source, 32).crops).all()
    assert not _bars_orientation(sampler.sample(turned, 32).crops).any()
    # with rotation on, some crops of the same image are turned
    rotating = CropSampler(48, AugmentConfig().at_test_time(), np.random.default_rng(0))
    orient = _bars_orientation(rotating.sample(source, 64).crops)
    assert orient.any() and not orient.all()


def test_training_batches_hold_each_class_from_its_own_sources():
    ramp = np.tile(np.linspace(0, 1, 200), (200, 1))
    across = CropSource(Micrograph(ramp, 0.1), (5.0, 10.0), label=0)       # varies across columns
    down = CropSource(Micrograph(ramp.T.copy(), 0.1), (5.0, 10.0), label=1)  # varies down rows
    sampler = CropSampler(32, AugmentConfig.off(), np.random.default_rng(0))
    ids = np.array([0, 1, 1, 0, 1])
    batch = sampler.sample_classes([across, down], ids)
    assert batch.crops.shape == (5, 1, 32, 32)
    assert np.array_equal(_bars_orientation(batch.crops.numpy()), ids == 0)
    assert np.all((batch.fov_um >= 5.0) & (batch.fov_um <= 10.0))
    np.testing.assert_allclose(batch.log_ppum.numpy(), np.log10(32 / batch.fov_um), rtol=1e-6)
    np.testing.assert_allclose(batch.size_px, batch.fov_um / 0.1)
