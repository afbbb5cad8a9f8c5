"""Attributions: completeness, locality, tiling, EBSD support and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_microstructure.core.errors import MicrostructureError, NotFittedError
from napari_microstructure.core.explain import (
    GaussianMixtureHead, MicrographAdapter, TorchAdapter, attribution, background_set, class_ranking,
    explain_top_classes,
)

CLASSES = ("ferrite", "pearlite", "spheroidite")

#: integrated gradients (Gauss-Legendre, 128 steps): |sum(attr) - (f(x) - f(b))| must stay below
#: this share of |f(x) - f(b)| plus an absolute 1e-4
IG_RTOL = 0.02


@pytest.fixture(scope="module")
def micro():
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier
    from napari_microstructure.core.micrograph.synthetic import make_dataset

    images, labels, sizes = make_dataset(CLASSES, per_class=2, shape=(128, 128), seed=3)
    # the compact CNN: smooth enough along the path for 128 steps to check completeness to 2 %
    # (the default frozen ImageNet backbone needs far more steps; see the warning test below)
    clf = FewShotClassifier(backbone="compact", input_size=32, embedding_dim=2, max_epochs=1, steps_per_epoch=2,
                            batch_size=12, augment=False, seed=0, device="cpu")
    return clf.fit(images, labels, sizes), images, sizes


@pytest.fixture(scope="module")
def ebsd():
    from napari_microstructure.core.ebsd.classifier import EBSDClassifier
    from napari_microstructure.core.ebsd.simulate import simulate_training_set

    patterns, groups, _ = simulate_training_set(["Ni", "NiAl", "W"], 8, shape=(40, 40), seed=0)
    clf = EBSDClassifier(backbone="compact", input_size=32, max_epochs=1, batch_size=12,
                         validation_fraction=0.0, seed=0, device="cpu")
    return clf.fit(patterns, groups), patterns, groups


def test_mixture_head_reproduces_scikit_learn(micro):
    clf = micro[0]
    d = clf.training_descriptors_[:50].astype(np.float64)
    head = GaussianMixtureHead.from_mixture(clf.mixture_, "log-joint")
    ll = head.log_likelihood(torch.as_tensor(d)).numpy()
    np.testing.assert_allclose(ll, clf.mixture_.log_likelihood(d), rtol=1e-9, atol=1e-9)
    post = torch.exp(GaussianMixtureHead.from_mixture(clf.mixture_)(torch.as_tensor(d))).numpy()
    np.testing.assert_allclose(post, clf.mixture_.gmm_.predict_proba(d), atol=1e-9)


def test_integrated_gradients_completeness_micrograph_crop(micro):
    clf, images, sizes = micro
    crop = images[0][:64, :64]
    res = attribution(clf, crop, "pearlite", "integrated-gradients", pixel_size=sizes[0], region="crop",
                      n_steps=128)
    adapter = MicrographAdapter(clf)
    x = torch.as_tensor(res.network_inputs)[:, None]
    mag = torch.full((1,), np.log10(32 / (64 * sizes[0])), dtype=torch.float32)
    with torch.no_grad():
        diff = float(adapter.forward(x, mag)[0, 1] - adapter.forward(torch.full_like(x, 0.5), mag)[0, 1])
    total = float(res.network_attributions.sum())
    assert abs(diff) > 1e-6
    assert abs(total - diff) <= IG_RTOL * abs(diff) + 1e-4
    # resampling onto the data grid keeps the sum
    assert res.attributions.shape == crop.shape
    assert res.attributions.sum() == pytest.approx(total, rel=1e-4, abs=1e-6)
    assert res.target == "pearlite" and res.target_index == 1


def test_integrated_gradients_completeness_ebsd(ebsd):
    clf, patterns, _ = ebsd
    res = attribution(clf, patterns[0], None, "integrated-gradients", n_steps=128)
    assert res.attributions.shape == patterns[0].shape
    diff = float(res.score_differences[0])
    assert abs(res.network_attributions.sum() - diff) <= IG_RTOL * abs(diff) + 1e-4
    assert res.attributions.sum() == pytest.approx(res.network_attributions.sum(), rel=1e-4, abs=1e-6)
    assert res.target == clf.predict(patterns[:1])[0]


class LeftHalfNet(nn.Module):
    """Reads only the left half of its input, by construction."""

    def __init__(self, size: int = 24) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)
        mask = torch.zeros(1, 1, size, size)
        mask[..., : size // 2] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x * self.mask)).mean((2, 3)))


@pytest.mark.parametrize("method", ["integrated-gradients", "gradient-shap"])
def test_model_reading_left_half_gets_no_attribution_on_the_right(method, rng):
    adapter = TorchAdapter(LeftHalfNet(24), ["a", "b"], 24)
    x = rng.random((24, 24)).astype(np.float32)
    background = rng.random((6, 24, 24)).astype(np.float32)
    res = attribution(adapter, x, "b", method, background=background, n_steps=32, n_samples=16)
    left, right = np.abs(res.attributions[:, :12]), np.abs(res.attributions[:, 12:])
    assert left.sum() > 1e-4
    assert right.max() <= 1e-6 * left.max()


def test_image_tiles_cover_the_image_and_rank_classes(micro):
    clf, images, sizes = micro
    image = images[2]
    ranking = class_ranking(clf, image, sizes[2])
    assert sorted(c for c, _ in ranking) == sorted(CLASSES)
    assert sum(p for _, p in ranking) == pytest.approx(1.0)
    res = explain_top_classes(clf, image, pixel_size=sizes[2], n_steps=8, overlap=0.0, k=2)
    assert [r.target for r in res] == [ranking[0][0], ranking[1][0]]
    first = res[0]
    assert first.attributions.shape == image.shape
    assert len(first.tiles) > 1  # the image is wider than the map field of view
    covered = np.zeros(image.shape, bool)
    for r0, c0, h, w in first.tiles:
        covered[r0:r0 + h, c0:c0 + w] = True
        assert h == w == round(clf.map_fov_um_ / sizes[2])
    assert covered.all()
    assert np.isfinite(first.attributions).all() and np.abs(first.attributions).max() > 0


def test_gradient_shap_with_pattern_background(ebsd):
    clf, patterns, groups = ebsd
    bg = background_set(patterns, groups, per_class=2)
    assert len(bg) == 6 and set(np.unique(groups)) == {221, 225, 229}
    res = attribution(clf, patterns[1], 225, "gradient-shap", background=bg, n_samples=8)
    assert res.target == 225 and res.attributions.shape == (40, 40)
    assert np.abs(res.attributions).max() > 0


def test_bad_input_errors(micro, ebsd):
    from napari_microstructure.core.ebsd.classifier import EBSDClassifier
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier

    clf, images, sizes = micro
    with pytest.raises(NotFittedError, match="fit"):
        attribution(FewShotClassifier(), images[0], pixel_size=0.1)
    with pytest.raises(NotFittedError, match="fit"):
        attribution(EBSDClassifier(), np.zeros((40, 40)))
    with pytest.raises(MicrostructureError, match="does not know the class 'martensite'.*ferrite"):
        attribution(clf, images[0], "martensite", pixel_size=sizes[0])
    with pytest.raises(MicrostructureError, match="'none' is the mixture's rejection"):
        attribution(clf, images[0], "none", pixel_size=sizes[0])
    with pytest.raises(MicrostructureError, match="pixel_size"):
        attribution(clf, images[0])
    with pytest.raises(MicrostructureError, match="unknown attribution method"):
        attribution(clf, images[0], method="lime", pixel_size=sizes[0])
    eclf, patterns, _ = ebsd
    with pytest.raises(MicrostructureError, match="background patterns are 30 x 30.*40 x 40"):
        attribution(eclf, patterns[0], method="gradient-shap", background=np.zeros((4, 30, 30)))
    with pytest.raises(MicrostructureError, match="does not know the class 230"):
        attribution(eclf, patterns[0], 230)
    with pytest.raises(MicrostructureError, match="network input is 32 x 32"):
        attribution(clf, images[0][:60, :60], method="gradient-shap", pixel_size=sizes[0], region="crop",
                    background=np.zeros((3, 16, 16)))


def test_gradient_shap_is_seeded_and_leaves_the_global_generator_alone(rng):
    adapter = TorchAdapter(LeftHalfNet(24), ["a", "b"], 24)
    x = rng.random((24, 24)).astype(np.float32)
    background = rng.random((5, 24, 24)).astype(np.float32)
    torch.manual_seed(123)
    np.random.seed(123)
    expected_next = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    first = attribution(adapter, x, "a", "gradient-shap", background=background, n_samples=8, stdevs=0.1, seed=4)
    np.testing.assert_array_equal(torch.rand(3), expected_next[0])
    np.testing.assert_array_equal(np.random.rand(3), expected_next[1])
    again = attribution(adapter, x, "a", "gradient-shap", background=background, n_samples=8, stdevs=0.1, seed=4)
    other = attribution(adapter, x, "a", "gradient-shap", background=background, n_samples=8, stdevs=0.1, seed=5)
    np.testing.assert_array_equal(first.attributions, again.attributions)
    assert not np.array_equal(first.attributions, other.attributions)


def test_incomplete_integrated_gradients_warn(micro):
    """The default frozen ImageNet backbone is rough along the path: 16 steps miss by far, and say so."""
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier

    _, images, sizes = micro
    labels = [c for c in CLASSES for _ in range(2)]
    frozen = FewShotClassifier(input_size=32, embedding_dim=2, max_epochs=1, steps_per_epoch=2, batch_size=12,
                               augment=False, seed=0, device="cpu").fit(images, labels, sizes)
    with pytest.warns(UserWarning, match="integrated gradients miss the score difference.*raise n_steps"):
        res = attribution(frozen, images[0][:64, :64], "pearlite", "integrated-gradients", pixel_size=sizes[0],
                          region="crop", n_steps=16)
    assert res.delta > 0.1 * abs(float(res.score_differences[0]))
