"""Descriptor map: the threshold contour is the model's rejection boundary."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from matplotlib.path import Path

from napari_microstructure.core.errors import MicrostructureError, NotFittedError
from napari_microstructure.core.explain import descriptor_map, sample_image_crops

CLASSES = ("ferrite", "pearlite", "spheroidite")


def _fit(dim: int):
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier
    from napari_microstructure.core.micrograph.synthetic import make_dataset

    images, labels, sizes = make_dataset(CLASSES, per_class=2, shape=(128, 128), seed=5)
    clf = FewShotClassifier(input_size=32, embedding_dim=dim, max_epochs=1, steps_per_epoch=2, batch_size=12,
                            augment=False, seed=0, device="cpu")
    return clf.fit(images, labels, sizes), images, sizes


@pytest.fixture(scope="module")
def model2d():
    return _fit(2)


@pytest.fixture(scope="module")
def model3d():
    return _fit(3)


def _inside(lines: list[np.ndarray], points: np.ndarray) -> np.ndarray:
    """Even-odd rule over closed contour lines."""
    count = np.zeros(len(points), int)
    for v in lines:
        assert np.allclose(v[0], v[-1]), "the threshold contour must be closed inside the grid"
        count += Path(v).contains_points(points)
    return count % 2 == 1


def test_threshold_contour_matches_rejection(model2d, rng):
    import contourpy

    clf, images, sizes = model2d
    dm = descriptor_map(clf, images[0], sizes[0], n_crops=20, grid_size=200, margin=2.0)
    # the contour is the threshold the model's rule applies: its ensemble's own Gaussians', which reject a
    # smaller share than mixture_ (ensemble_mixture_quantile)
    gauss = clf.scorer_.members[1][0]
    assert dm.projection is None and dm.threshold == gauss.threshold_ == dm.model_threshold
    assert gauss.threshold_ < clf.mixture_.threshold_
    lines = contourpy.contour_generator(dm.grid_x, dm.grid_y, dm.log_likelihood).lines(dm.threshold)
    assert len(lines) >= 1
    # random points over the whole map, away from the contour itself
    lo = np.array([dm.grid_x[0], dm.grid_y[0]])
    hi = np.array([dm.grid_x[-1], dm.grid_y[-1]])
    pts = lo + rng.random((3000, 2)) * (hi - lo)
    ll = gauss.log_likelihood(pts)
    far = np.abs(ll - dm.threshold) > 0.05
    inside = _inside(lines, pts)
    none = gauss.crop_probabilities(pts)[:, -1] == 1.0
    assert far.sum() > 2000 and inside[far].any() and (~inside[far]).any()
    # points outside the contour are rejected ("none"), points inside are accepted
    np.testing.assert_array_equal(none[far], ~inside[far])
    # the crops of the image carry the model's own decision; its default rule (the ensemble)
    # rejects whatever lies outside the contour, and may reject more
    np.testing.assert_array_equal(dm.crops.accepted, dm.crops.probabilities[:, -1] < 1.0)
    mixture_none = gauss.crop_probabilities(dm.crops.descriptors)[:, -1] == 1.0
    assert dm.scorer == "ensemble" and not (dm.crops.accepted & mixture_none).any()
    np.testing.assert_allclose(dm.crops_xy, dm.crops.descriptors)


def test_image_crops_are_what_the_model_sees(model2d):
    clf, images, sizes = model2d
    crops = sample_image_crops(clf, images[1], sizes[1], n_crops=10, seed=1)
    S = clf.input_size
    assert crops.crops.shape == (10, S, S)
    lo, hi = clf.fov_range_um_
    assert np.all((crops.fov_um >= lo * (1 - 1e-9)) & (crops.fov_um <= hi * (1 + 1e-9)))
    np.testing.assert_allclose(crops.size_px, crops.fov_um / sizes[1])
    mag = torch.as_tensor(np.log10(S / crops.fov_um), dtype=torch.float32)
    with torch.no_grad():
        again = clf.model_(torch.as_tensor(crops.crops)[:, None], mag).numpy()
    np.testing.assert_allclose(again, crops.descriptors, rtol=1e-4, atol=1e-5)
    # each crop lies inside the image
    half = crops.size_px / 2
    assert np.all(crops.centres_px - half[:, None] >= -1e-6)
    assert np.all(crops.centres_px + half[:, None] <= np.array(images[1].shape) + 1e-6)


def test_pca_projection_for_more_than_two_dimensions(model3d, tmp_path):
    clf, images, sizes = model3d
    dm = descriptor_map(clf, images[0], sizes[0], n_crops=12)
    assert dm.projection.shape == (2, 3)
    ev = dm.explained_variance_ratio
    assert 0 < ev[1] <= ev[0] and ev.sum() <= 1 + 1e-9
    np.testing.assert_allclose(dm.project(clf.training_descriptors_), dm.training_xy, atol=1e-5)
    # the projected threshold rejects the same share of validation descriptors as the model
    val = clf.validation_descriptors_.astype(np.float64)
    model_share = np.mean(clf.mixture_.log_likelihood(val) < clf.scorer_.members[1][0].threshold_)
    from napari_microstructure.core.explain.descriptors import _gauss_ll

    covs = np.einsum("id,kde,je->kij", dm.projection, clf.mixture_.covariances_, dm.projection)
    ll2 = _gauss_ll(dm.project(val), dm.means_xy, covs, clf.mixture_.weights_)
    assert np.mean(ll2 < dm.threshold) == pytest.approx(model_share, abs=1.5 / len(val))
    i = dm.nearest_crop(*dm.crops_xy[4])
    assert i == 4
    dm.to_csv(tmp_path / "map.csv")
    text = (tmp_path / "map.csv").read_text()
    assert "explained variance" in text and text.count("image crop") == 12


def test_bad_input(model2d):
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier

    clf, images, sizes = model2d
    with pytest.raises(NotFittedError, match="fit"):
        descriptor_map(FewShotClassifier())
    one_d = copy.copy(clf)
    one_d.training_descriptors_ = clf.training_descriptors_[:, :1]
    with pytest.raises(MicrostructureError, match="one dimension.*embedding_dim=2"):
        descriptor_map(one_d)
    with pytest.raises(MicrostructureError, match="pixel_size"):
        descriptor_map(clf, images[0])
