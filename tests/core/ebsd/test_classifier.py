"""EBSDClassifier: input validation, fit/predict contract, uncertainty, save/load."""

import threading

import numpy as np
import pytest
import torch

from napari_microstructure.core.ebsd import EBSDClassifier
from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.errors import (
    MicrostructureError,
    ModelFileError,
    NotFittedError,
    TrainingCancelled,
)
from napari_microstructure.core.nn.modelio import save_model_file


@pytest.fixture(scope="module")
def data():
    base = S.random_rotations(3, np.random.default_rng(4))
    p, sg, _ = S.simulate_training_set(["Ni", "Fe"], 16, (32, 32), seed=1, base_rotations=base)
    return p, sg


@pytest.fixture(scope="module")
def fitted(data):
    torch.manual_seed(0)
    clf = EBSDClassifier(backbone="compact", input_size=32, n_models=2, max_epochs=2,
                         device="cpu", seed=3)
    return clf.fit(*data)


def test_fit_predict_contract(fitted, data):
    p, sg = data
    assert fitted.classes_.tolist() == [225, 229]
    proba = fitted.predict_proba(p)
    assert proba.shape == (len(p), 2)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
    pred = fitted.predict(p)
    assert pred.shape == (len(p),) and set(pred) <= {225, 229}
    assert len(fitted.models_) == 2 and len(fitted.history_.members) == 2
    unc = fitted.predict_uncertainty(p)
    assert set(unc) == {"probabilities", "index", "confidence", "agreement", "no_solution"}
    assert np.all((unc["agreement"] == 0.5) | (unc["agreement"] == 1.0))


def test_no_solution_thresholds(fitted, data):
    p, _ = data
    fitted.confidence_threshold = 1.0
    try:
        pred = fitted.predict(p, no_solution=True)
        assert np.all(pred == 0)
        assert fitted.no_solution_label_ == 0
    finally:
        fitted.confidence_threshold = 0.5


def test_save_load_repeats_predictions_exactly(fitted, data, tmp_path):
    p, _ = data
    fitted.save(tmp_path / "m.pt")
    again = EBSDClassifier.load(tmp_path / "m.pt", device="cpu")
    np.testing.assert_array_equal(again.preprocessor_.static_background_, fitted.preprocessor_.static_background_)
    np.testing.assert_array_equal(again.preprocessor_.transform(p), fitted.preprocessor_.transform(p))
    np.testing.assert_allclose(again.predict_proba(p), fitted.predict_proba(p), atol=1e-6)
    assert again.get_params()["n_models"] == 2


def test_micrograph_model_is_refused(tmp_path):
    save_model_file(tmp_path / "micro.pt", "micrograph", {"x": 1}, {"w": torch.zeros(2)})
    with pytest.raises(ModelFileError, match="micrograph model"):
        EBSDClassifier.load(tmp_path / "micro.pt")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ModelFileError, match="truncated"):
        EBSDClassifier.load(tmp_path / "trunc.pt")


def test_string_labels(data):
    p, sg = data
    names = np.where(sg == 225, "Ni", "Fe")
    clf = EBSDClassifier(backbone="compact", input_size=32, max_epochs=1, device="cpu").fit(p, names)
    assert clf.classes_.tolist() == ["Fe", "Ni"]
    clf.confidence_threshold = 1.0
    assert set(clf.predict(p[:3], no_solution=True)) == {"no solution"}


def test_bad_input(data):
    p, sg = data
    clf = EBSDClassifier(backbone="compact", input_size=32, max_epochs=1, device="cpu")
    with pytest.raises(NotFittedError):
        clf.predict(p)
    with pytest.raises(MicrostructureError, match="at least two"):
        clf.fit(p, np.full(len(p), 225))
    with pytest.raises(MicrostructureError, match="labels for"):
        clf.fit(p, sg[:-1])
    with pytest.raises(MicrostructureError, match="221 have no training patterns"):
        clf.fit(p, sg, classes=[221, 225, 229])
    with pytest.raises(MicrostructureError, match="single 2-D image"):
        clf.fit(p[0], sg[:1])
    bad = p.astype(np.float32)
    bad[1] = np.nan
    with pytest.raises(MicrostructureError, match="NaN"):
        clf.fit(bad, sg)
    with pytest.raises(MicrostructureError, match="different sizes"):
        clf.fit([p[0], p[1][:20]], sg[:2])
    with pytest.raises(MicrostructureError, match="backbone"):
        EBSDClassifier(backbone="resnet").fit(p, sg)
    with pytest.raises(MicrostructureError, match="reserved"):
        clf.fit(p, np.where(sg == 225, 0, 1))


def test_progress_and_cancel_keep_previous_state(fitted, data):
    p, sg = data
    seen = []
    cancel = threading.Event()

    def progress(prog):
        seen.append(prog)
        cancel.set()

    before = fitted.models_
    with pytest.raises(TrainingCancelled):
        fitted.fit(p, sg, progress=progress, cancel=cancel)
    assert fitted.models_ is before
    assert seen and seen[0].stage == "train" and "model 1/2" in seen[0].message
