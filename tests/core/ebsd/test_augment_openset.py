"""Acquisition augmentation, the k-NN open-set score and the pretrained starting point."""

import numpy as np
import pytest
import torch

from napari_microstructure.core.ebsd import EBSDClassifier, PatternPreprocessor
from napari_microstructure.core.ebsd import pretrained as P
from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.ebsd.augment import PatternAugment
from napari_microstructure.core.ebsd.openset import KNNOpenSet, pattern_features
from napari_microstructure.core.errors import MicrostructureError, ModelFileError


def _prepared(n=8, size=40, seed=0):
    pats, _, _ = S.simulate_training_set(["Ni", "Fe"], n // 2, (size, size), seed=seed)
    x = PatternPreprocessor(size, static_background=False).fit(pats).transform(pats)
    return torch.from_numpy(x).unsqueeze(1)


def _corr(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def test_augment_is_seeded_bounded_and_varies():
    x = _prepared()
    aug = PatternAugment()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    # augmented patterns still resemble the originals (or their mirror images), but are not them
    for i in range(len(x)):
        r = max(_corr(a[i], x[i]), _corr(a[i], torch.flip(x[i], dims=(-1,))))
        assert 0.3 < r < 0.999


def test_augment_off_is_identity_and_mirror_is_exact():
    x = _prepared()
    off = PatternAugment(probability=0.0, mirror=False)(x, torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert _corr(off[i], x[i]) > 0.99  # identity up to the repeated clip and normalisation
    mirrored = PatternAugment(probability=0.0, mirror=True)(x, torch.Generator().manual_seed(0))
    flipped = [_corr(mirrored[i], torch.flip(x[i], dims=(-1,))) > 0.99 for i in range(len(x))]
    assert any(flipped) and not all(flipped)
    with pytest.raises(MicrostructureError, match="gamma"):
        PatternAugment(gamma=(1.2, 0.8))


def test_knn_open_set_flags_far_features():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    known = np.concatenate([c + 0.15 * rng.normal(size=(200, 16)) for c in centres])
    known /= np.linalg.norm(known, axis=1, keepdims=True)
    held = np.concatenate([c + 0.15 * rng.normal(size=(100, 16)) for c in centres])
    held /= np.linalg.norm(held, axis=1, keepdims=True)
    novel = rng.normal(size=(300, 16)) + 0.0
    novel /= np.linalg.norm(novel, axis=1, keepdims=True)
    os_ = KNNOpenSet(k=5, rejection_rate=0.05).fit(known[::2], calibration=known[1::2])
    assert 0.0 <= os_.is_novel(held).mean() <= 0.12
    assert os_.is_novel(novel).mean() > 0.9
    loo = KNNOpenSet(k=5).fit(known)  # leave-one-out calibration
    assert loo.is_novel(held).mean() < 0.15
    with pytest.raises(MicrostructureError, match="more than k"):
        KNNOpenSet(k=5).fit(known[:3])


@pytest.fixture()
def tiny_pretrained(tmp_path, monkeypatch):
    pats, sg, _ = S.simulate_training_set(["Ni3Al", "Cr3Si", "Ni", "Si", "Fe", "Al4Ni3"], 12, (32, 32), seed=3)
    clf = EBSDClassifier(backbone="compact", input_size=32, static_background=False, max_epochs=2,
                         validation_fraction=0.0, device="cpu", augment=False).fit(pats, sg)
    path = tmp_path / "spacegroup_pretrained.pt"
    clf.save(path)
    monkeypatch.setattr(P, "PRETRAINED_FILE", path)
    return clf


def test_from_pretrained_classifies_without_labels(tiny_pretrained):
    clf = EBSDClassifier.from_pretrained(device="cpu")
    assert clf.classes_.tolist() == [221, 223, 225, 227, 229, 230]
    pats, _, _ = S.simulate_training_set(["Ni"], 3, (50, 50), seed=9)  # another size: resized
    assert clf.predict_proba(pats).shape == (3, 6)
    feats = pattern_features(clf, pats)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)


def test_fine_tuning_starts_from_the_pretrained_weights(tiny_pretrained):
    pats, sg, _ = S.simulate_training_set(["Ni", "Ni3Al"], 6, (32, 32), seed=4)
    ft = EBSDClassifier(backbone="compact", simulation_pretrained=True, learning_rate=1e-12, max_epochs=1,
                        validation_fraction=0.0, device="cpu").fit(pats, sg)
    src = tiny_pretrained.models_[0]
    net = ft.models_[0]
    w_src = src.backbone.first_conv.weight if hasattr(src.backbone, "first_conv") else None
    torch.testing.assert_close(net.backbone.first_conv.weight, w_src, atol=1e-6, rtol=0)
    rows = [list(tiny_pretrained.classes_).index(c) for c in ft.classes_]
    torch.testing.assert_close(net.head.weight, src.head.weight[rows], atol=1e-6, rtol=0)
    assert ft.preprocessor_.get_params() == tiny_pretrained.preprocessor_.get_params()
    with pytest.raises(MicrostructureError, match="backbone='compact'"):
        EBSDClassifier(backbone="efficientnet-lite0", simulation_pretrained=True).fit(pats, sg)
    with pytest.raises(MicrostructureError, match=r"BandProfileClassifier\.from_pretrained\(pc=\.\.\.\) classifies"):
        EBSDClassifier(backbone="compact").fit(pats[:4], [225] * 4)


def test_missing_pretrained_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "PRETRAINED_FILE", tmp_path / "absent.pt")
    # the package ships no simulation-pretrained CNN: the error must point to the model that does ship
    with pytest.raises(ModelFileError, match=r"not installed: this version ships none .*"
                                             r"BandProfileClassifier\.from_pretrained\(pc=\.\.\.\)"):
        EBSDClassifier.from_pretrained()


# ------------------------------------------------------- band-profile augmentation
def _band_profiles(half_width_bins, n=4):
    """Profiles of a band of the given half width (bins) in every family."""
    from napari_microstructure.core.ebsd.bands import N_FAMILIES, PROFILE_BINS

    centres = np.arange(PROFILE_BINS) + 0.5
    band = np.where(centres < half_width_bins, 1.0, -0.3)
    return np.tile(band, (n, N_FAMILIES)).astype(np.float32)


def _edges(features):
    """Half width (bins) of each family's band: where its profile first drops below half the contrast."""
    from napari_microstructure.core.ebsd.bands import N_FAMILIES, PROFILE_BINS

    p = features.reshape(len(features), N_FAMILIES, PROFILE_BINS)
    mid = 0.5 * (p.max(2, keepdims=True) + p.min(2, keepdims=True))
    return (p > mid).argmin(2)


def test_profile_augmentation_stretches_bands_and_keeps_the_layout():
    from napari_microstructure.core.ebsd.augment import augment_profiles
    from napari_microstructure.core.ebsd.bands import N_FEATURES

    x = _band_profiles(6)
    rng = np.random.default_rng(3)
    off = augment_profiles(x, rng, 2, stretch=1.0, falloff=0.0, contrast=0.0)
    np.testing.assert_allclose(off, np.concatenate([x, x]), atol=1e-6)     # nothing drawn: copies
    a = augment_profiles(x, np.random.default_rng(3), 50, stretch=1.5, falloff=0.0, contrast=0.0)
    assert a.shape == (200, N_FEATURES) and a.dtype == np.float32
    edges = _edges(a)
    assert (edges == edges[:, :1]).all()              # one stretch per pattern, the same for every family
    assert edges.min() >= 3 and edges.max() <= 9      # 6 bins stretched by 1/1.5-1.5
    assert len(np.unique(edges)) >= 4                 # and the widths vary
    # fall-off weakens (or strengthens) the high-order families more than {100}
    f = augment_profiles(x, np.random.default_rng(4), 20, stretch=1.0, falloff=0.8, contrast=0.0)
    c = f.reshape(len(f), 12, -1).max(2) - f.reshape(len(f), 12, -1).min(2)
    spread = np.log(c / c[:, :1]).std(0)
    assert spread[0] == 0 and spread[-1] > 0.1
    with pytest.raises(MicrostructureError, match="stretch >= 1"):
        augment_profiles(x, rng, 2, stretch=0.5)
    with pytest.raises(MicrostructureError, match="band profiles"):
        augment_profiles(x[:, :10], rng, 2)
