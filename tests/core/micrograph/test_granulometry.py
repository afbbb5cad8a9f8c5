"""The granulometry in micrometres (core.micrograph.granulometry) on crops of known feature sizes."""

import numpy as np
import pytest
import torch

from napari_microstructure.core.micrograph.granulometry import N_VALUES, RADII_UM, SIDE, granulometry


def _discs(fov_um, radius_um, n_px=96, seed=0, dark=True):
    """A crop ``n_px`` pixels a side covering ``fov_um``: discs of one radius on a plain matrix."""
    rng = np.random.default_rng(seed)
    p = fov_um / n_px
    yy, xx = np.mgrid[:n_px, :n_px] * p
    img = np.full((n_px, n_px), 0.8)
    for _ in range(int(0.15 * fov_um ** 2 / (np.pi * radius_um ** 2)) + 1):   # about 15 % covered
        cy, cx = rng.uniform(0, fov_um, 2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius_um ** 2] = 0.2 if dark else 0.95
    return torch.from_numpy(img[None, None].astype(np.float32))


def test_dark_features_are_counted_from_their_size_in_micrometres_on():
    """Discs of radius 3 um: the dark values stay small at radii of 0.5-1 um and reach their full value
    at 4 um, at any field of view (pixels per micrometre) that resolves them."""
    k1, k4 = RADII_UM.index(1.0), RADII_UM.index(4.0)
    spectra = []
    for fov, seed in ((40.0, 0), (80.0, 1)):
        g = granulometry(_discs(fov, 3.0, seed=seed), np.array([fov]))[0]
        dark = g[0::2]
        assert dark[k1] < 0.35 * dark[k4], (fov, dark.round(3))
        assert dark[k4] == pytest.approx(dark[-1], rel=0.15)       # all removed by 4 um and beyond
        assert np.all(np.diff(dark) >= -1e-6)
        spectra.append(dark)
    np.testing.assert_allclose(spectra[0][k4:], spectra[1][k4:], atol=0.05)  # the same structure, another scale


def test_bright_features_use_the_odd_values_and_contrast_does_not_count():
    crop = _discs(40.0, 1.5, dark=False)
    g = granulometry(crop, np.array([40.0]))[0]
    k2 = RADII_UM.index(2.0)
    assert g[2 * k2 + 1] > 0.05 and g[2 * k2 + 1] > 1.5 * g[2 * k2]   # the bright discs count as bright
    assert g[0] < 0.02                                                # nothing small and dark
    brighter = granulometry(crop * 3.0 + 7.0, np.array([40.0]))[0]
    np.testing.assert_allclose(brighter, g, atol=1e-5)


def test_sizes_under_a_pixel_give_zero_and_shapes():
    fov = np.array([SIDE * 2.5, 20.0])      # 2.5 um per measured pixel: the 0.5 um radius is not resolved
    x = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    g = granulometry(x, fov)
    assert g.shape == (2, N_VALUES) and g.dtype == np.float32
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[1, 0] > 0
    assert np.all(np.diff(g[:, 0::2], axis=1) >= -1e-6)     # larger elements remove at least as much
