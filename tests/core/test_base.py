"""The one estimator contract: parameters, clone, fitted check, random state, model files."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from napari_microstructure.core.base import (
    MODEL_KINDS, Estimator, check_is_fitted, estimator_class, isolated_torch_rng, load_estimator, torch_threads,
)
from napari_microstructure.core.ebsd import EBSDClassifier
from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.errors import MicrostructureError, ModelFileError, NotFittedError
from napari_microstructure.core.micrograph.augment import AugmentConfig
from napari_microstructure.core.micrograph.fewshot import FewShotClassifier
from napari_microstructure.core.micrograph.synthetic import make_dataset
from napari_microstructure.core.nn import modelio
from napari_microstructure.core.nn.training import TrainingHistory

ESTIMATORS = (FewShotClassifier, EBSDClassifier)


@pytest.fixture(scope="module")
def patterns():
    base = S.random_rotations(2, np.random.default_rng(4))
    p, sg, _ = S.simulate_training_set(["Ni", "Fe"], 8, (32, 32), seed=1, base_rotations=base)
    return p, sg


@pytest.fixture(scope="module")
def micrographs():
    return make_dataset(("ferrite", "pearlite"), per_class=3, shape=(128, 128), seed=3)


def tiny_micrograph_model(**kw):
    params = dict(input_size=48, embedding_dim=4, max_epochs=1, steps_per_epoch=2, batch_size=12,
                  patience=5, seed=0, device="cpu", n_crops=16)
    params.update(kw)
    return FewShotClassifier(**params)


def tiny_ebsd_model(**kw):
    params = dict(backbone="compact", input_size=32, max_epochs=1, device="cpu", seed=3)
    params.update(kw)
    return EBSDClassifier(**params)


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_params_come_from_the_signature_and_clone_works(cls):
    est = cls(seed=7, device="cpu")
    params = est.get_params()
    assert list(params) == cls._get_param_names()
    assert params["seed"] == 7 and params["device"] == "cpu"
    copy = clone(est)
    assert type(copy) is cls and copy is not est
    assert copy.get_params() == params
    assert est.set_params(seed=8) is est and est.seed == 8
    assert copy.seed == 7  # the clone does not share state
    with pytest.raises(MicrostructureError, match="has no parameter 'sed'.*valid parameters: .*seed"):
        est.set_params(sed=1)


def test_clone_copies_nested_parameter_values():
    augment = AugmentConfig(rotation=False)
    est = FewShotClassifier(augment=augment, fov_um=(2.0, 8.0))
    copy = clone(est)
    assert copy.augment == augment and copy.augment is not augment
    assert copy.fov_um == (2.0, 8.0)


def test_clone_of_fitted_estimators_is_unfitted(trained_classifier, patterns):
    ebsd = tiny_ebsd_model().fit(*patterns)
    for fitted in (trained_classifier, ebsd):
        assert fitted.is_fitted and fitted.__sklearn_is_fitted__()
        check_is_fitted(fitted)
        copy = clone(fitted)
        assert not copy.is_fitted
        assert copy.get_params() == fitted.get_params()


def test_repr_names_changed_parameters_only():
    assert repr(FewShotClassifier()) == "FewShotClassifier()"
    assert repr(EBSDClassifier(n_models=3, backbone="compact")) == "EBSDClassifier(backbone='compact', n_models=3)"


# ---------------------------------------------------------------------- fitted
@pytest.mark.parametrize("cls, call", [(FewShotClassifier, "fit(images, labels, pixel_sizes)"),
                                       (EBSDClassifier, "fit(patterns, labels)")])
def test_one_fitted_check_with_one_message(cls, call, tmp_path):
    est = cls()
    assert not est.is_fitted
    expected = f"this {cls.__name__} is not fitted yet; call {call} or {cls.__name__}.load(path) first"
    with pytest.raises(NotFittedError) as info:
        check_is_fitted(est)
    assert str(info.value) == expected
    with pytest.raises(NotFittedError, match=r"not fitted yet, to save; call"):
        est.save(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_fitted_attributes_have_the_same_types(trained_classifier, patterns):
    ebsd = tiny_ebsd_model(n_models=2).fit(*patterns)
    for est in (trained_classifier, ebsd):
        assert isinstance(est.classes_, np.ndarray)
        assert isinstance(est.history_, TrainingHistory)
        assert est.history_.n_train > 0
    assert len(ebsd.history_.members) == 2
    assert ebsd.history_.train_loss == ebsd.history_.members[0].train_loss


# ------------------------------------------------------------------ randomness
def test_isolated_torch_rng_seeds_and_restores():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with isolated_torch_rng(5):
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with isolated_torch_rng(5):
        b = torch.rand(3)
    assert torch.equal(a, b)
    np.random.seed(9)
    state = np.random.get_state()[1].copy()
    with isolated_torch_rng(5, numpy_global=True):
        first = np.random.rand()
    assert np.array_equal(np.random.get_state()[1], state)
    with isolated_torch_rng(5, numpy_global=True):
        assert np.random.rand() == first


def test_fit_leaves_the_global_random_state_alone_and_repeats(micrographs, patterns):
    images, labels, sizes = micrographs
    torch.manual_seed(2024)
    np.random.seed(2024)
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()[1].copy()
    a = tiny_micrograph_model().fit(images, labels, sizes)
    e = tiny_ebsd_model(n_models=2).fit(*patterns)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    # the same seed gives the same model, whatever the global state
    torch.manual_seed(99)
    b = tiny_micrograph_model().fit(images, labels, sizes)
    f = tiny_ebsd_model(n_models=2).fit(*patterns)
    for (name, wa), wb in zip(a.model_.state_dict().items(), b.model_.state_dict().values()):
        assert torch.equal(wa, wb), name
    np.testing.assert_array_equal(a.training_descriptors_, b.training_descriptors_)
    for na, nb in zip(e.models_, f.models_):
        for wa, wb in zip(na.state_dict().values(), nb.state_dict().values()):
            assert torch.equal(wa, wb)


# ----------------------------------------------------------------- model files
def test_save_returns_the_path_and_load_model_reads_once(trained_model_path, patterns, tmp_path, monkeypatch):
    ebsd = tiny_ebsd_model().fit(*patterns)
    ebsd_path = ebsd.save(tmp_path / "e.pt")
    assert ebsd_path == tmp_path / "e.pt" and ebsd_path.is_file()
    calls = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        calls.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(modelio.torch, "load", counting_load)
    from napari_microstructure import load_model

    for path, cls in ((trained_model_path, FewShotClassifier), (ebsd_path, EBSDClassifier)):
        calls.clear()
        model = load_model(path, device="cpu")
        assert type(model) is cls and model.is_fitted
        # the model file once (the frozen ImageNet weights come from their own package's file)
        assert [c for c in calls if str(c) == str(path)] == [path]
        assert len([c for c in calls if "efficientnet" not in str(c)]) == 1
    assert isinstance(load_estimator(ebsd_path, device="cpu"), EBSDClassifier)
    # a class's own load refuses the other kind, naming both
    with pytest.raises(ModelFileError, match="holds an EBSD model.*micrograph model .* is needed"):
        FewShotClassifier.load(ebsd_path)


def test_every_kind_has_its_class_and_unknown_kinds_are_refused(tmp_path):
    for kind in MODEL_KINDS:
        cls = estimator_class(kind)
        assert issubclass(cls, Estimator) and cls.kind == kind
    path = modelio.save_model_file(tmp_path / "x.pt", "hologram", {"params": {}}, {})
    with pytest.raises(ModelFileError, match="unknown kind 'hologram'"):
        load_estimator(path)


def test_incomplete_model_file_is_a_clear_error(trained_model_path, tmp_path):
    metadata, tensors = modelio.load_model_file(trained_model_path, "micrograph")
    del metadata["history"]
    path = modelio.save_model_file(tmp_path / "broken.pt", "micrograph", metadata, tensors)
    with pytest.raises(ModelFileError, match=r"damaged or incomplete \(missing 'history'\); re-save"):
        load_estimator(path)
    metadata, tensors = modelio.load_model_file(trained_model_path, "micrograph")
    del tensors["mixture.means"]
    path = modelio.save_model_file(tmp_path / "broken2.pt", "micrograph", metadata, tensors)
    with pytest.raises(ModelFileError, match="mixture.means"):
        FewShotClassifier.load(path)


def test_torch_threads_sets_and_restores_the_thread_count():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
