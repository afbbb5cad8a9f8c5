"""The console helpers: layers in, estimators out, one model loader for every kind."""

import types

import numpy as np
import pytest

import napari_microstructure as nm
from napari_microstructure.api import fit_layers, layer_image, load_model, predict_layer
from napari_microstructure.core.errors import MicrostructureError, ModelFileError


def _layer(data, scale=(1.0, 1.0), name="img", rgb=False):
    return types.SimpleNamespace(data=data, scale=scale, name=name, rgb=rgb)


def test_layer_image_reads_the_pixel_size_from_the_scale():
    data = np.zeros((8, 9))
    image, size = layer_image(_layer(data, (0.25, 0.25)))
    assert image.shape == (8, 9) and size == 0.25
    rgb = np.zeros((8, 9, 3))
    assert layer_image(_layer(rgb, (0.5, 0.5), rgb=True))[0].shape == (8, 9, 3)
    with pytest.raises(MicrostructureError, match="non-square pixels"):
        layer_image(_layer(data, (0.25, 0.5)))
    with pytest.raises(MicrostructureError, match="3-D"):
        layer_image(_layer(np.zeros((2, 8, 9)), (1, 1, 1)))
    with pytest.raises(MicrostructureError, match="no pixel size"):
        layer_image(_layer(data))  # a scale never set is not taken as 1 um per pixel


def test_fit_and_predict_layers(small_dataset):
    images, labels, sizes = small_dataset
    layers = [_layer(im, (p, p)) for im, p in zip(images, sizes)]
    clf = nm.FewShotClassifier(input_size=48, embedding_dim=4, max_epochs=1, steps_per_epoch=2,
                               batch_size=12, device="cpu", n_crops=16)
    assert fit_layers(layers, labels, clf) is clf and clf.is_fitted
    probs = predict_layer(clf, layers[0], n_crops=16)
    assert list(probs) == clf.labels_ and sum(probs.values()) == pytest.approx(1.0)


def test_load_model_returns_the_estimator_of_the_file(trained_model_path, tmp_path):
    clf = load_model(trained_model_path, device="cpu")
    assert isinstance(clf, nm.FewShotClassifier) and clf.is_fitted
    assert nm.load_model is load_model
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a readable napari-microstructure model file"):
        load_model(tmp_path / "text.pt")
