"""Feature reduction and generalisation reports (small EBSD and micrograph models)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microstructure.core.errors import NotFittedError
from napari_microstructure.core.explain import (
    descriptor_dimension_report, generalisation_report, pca_reduction_report,
)


@pytest.fixture(scope="module")
def ebsd_data():
    from napari_microstructure.core.ebsd.simulate import simulate_training_set

    train = simulate_training_set(["Ni", "NiAl"], 10, shape=(32, 32), seed=0)[:2]
    test = simulate_training_set(["Cu", "Ni3Al"], 6, shape=(32, 32), seed=1)[:2]  # other materials, same groups
    return train, test


def _ebsd_model():
    from napari_microstructure.core.ebsd.classifier import EBSDClassifier

    return EBSDClassifier(backbone="compact", input_size=32, max_epochs=1, batch_size=10,
                          validation_fraction=0.0, seed=0, device="cpu")


def test_generalisation_to_other_materials(ebsd_data):
    train, test = ebsd_data
    model = _ebsd_model()
    rep = generalisation_report(model, train, test, "Ni + NiAl", "Cu + Ni3Al")
    assert not hasattr(model, "models_")  # the configured model is copied, not fitted
    assert rep.true_classes == [221, 225] and rep.predicted_classes == [221, 225]
    assert rep.confusion.sum() == len(test[1])
    np.testing.assert_array_equal(rep.confusion.sum(1), [np.sum(test[1] == 221), np.sum(test[1] == 225)])
    assert rep.accuracy == pytest.approx(np.trace(rep.confusion) / len(test[1]))
    with pytest.raises(NotFittedError, match="fit"):
        generalisation_report(model, None, test)


def test_pca_reduction_on_backbone_features(ebsd_data, tmp_path):
    train, test = ebsd_data
    model = _ebsd_model().fit(*train)
    rep = pca_reduction_report(model, train, test, n_components=(1, 2, 4, 500))
    assert list(rep.n_features) == [1, 2, 4, 20]  # clipped to the 20 training patterns
    assert np.all(np.diff(rep.explained_variance) >= 0) and rep.explained_variance[-1] <= 1 + 1e-9
    assert np.all((rep.accuracy >= 0) & (rep.accuracy <= 1)) and rep.n_total_features == 128
    rep.to_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().count("\n") == 6


def test_descriptor_dimension_and_micrograph_generalisation():
    from napari_microstructure.core.micrograph.synthetic import make_dataset

    train = make_dataset(("ferrite", "pearlite"), per_class=2, shape=(96, 96), seed=0)
    # same classes at a coarser magnification
    test = make_dataset(("ferrite", "pearlite"), per_class=1, shape=(96, 96), pixel_size_range_um=(0.2, 0.25), seed=1)
    params = dict(input_size=32, max_epochs=1, steps_per_epoch=1, batch_size=8, augment=False, n_crops=8,
                  device="cpu", fov_um=(3.0, 9.0))
    rep = descriptor_dimension_report(train, test, dims=(1, 2), classifier_params=params, keep_models=True)
    assert list(rep.n_features) == [1, 2] and rep.accuracy.shape == (2,)
    assert [m.embedding_dim for m in rep.models] == [1, 2]
    assert [m.training_descriptors_.shape[1] for m in rep.models] == [1, 2]
    g = generalisation_report(rep.models[1], None, test, "0.08-0.16 um", "0.2-0.25 um")
    expected = np.mean([rep.models[1].predict(im, p) == c for im, c, p in zip(*test)])
    assert g.accuracy == pytest.approx(expected) == pytest.approx(rep.accuracy[1])
    assert g.predicted_classes == ["ferrite", "pearlite", "none"]
    assert g.confusion.shape == (2, 3) and g.confusion.sum() == 2
