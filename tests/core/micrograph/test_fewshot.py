import threading

import numpy as np
import pytest
import torch

from napari_microstructure import FewShotClassifier, MicrostructureError, NotFittedError, TrainingCancelled
from napari_microstructure.core.errors import ModelFileError
from napari_microstructure.core.micrograph.synthetic import make_dataset, make_micrograph


def tiny(**kw):
    params = dict(input_size=48, embedding_dim=4, max_epochs=2, steps_per_epoch=2, batch_size=12,
                  patience=5, seed=0, device="cpu", n_crops=16)
    params.update(kw)
    return FewShotClassifier(**params)


@pytest.fixture(scope="module")
def two_class():
    return make_dataset(("ferrite", "pearlite"), per_class=3, shape=(128, 128), seed=3)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda im, lab, ps: ([], [], []), "no images"),
        (lambda im, lab, ps: (im, ["ferrite"] * len(im), ps), "only one class"),
        (lambda im, lab, ps: (im[:4], lab[:3] + ["pearlite"], ps[:4]), "only one image"),
        (lambda im, lab, ps: (im, lab[:-1], ps), "labels"),
        (lambda im, lab, ps: (im, lab, None), "pixel_size is missing"),
        (lambda im, lab, ps: (im, lab, [0.1] * (len(im) - 1) + [-1.0]), "positive"),
        (lambda im, lab, ps: (im, lab, ps[:-1]), "one pixel size per image"),
        # not constant: a constant image is refused before its size is looked at
        (lambda im, lab, ps: ([np.random.default_rng(0).random((40, 40))] + im[1:], lab, ps),
         "smaller than one 48 x 48 crop"),
        (lambda im, lab, ps: ([np.full((128, 128), np.inf)] + im[1:], lab, ps), "infinite"),
        (lambda im, lab, ps: ([np.full((128, 128), np.nan)] + im[1:], lab, ps), "no finite pixel"),
        (lambda im, lab, ps: ([np.zeros((2, 128, 128, 2))] + im[1:], lab, ps), "4-D"),
        (lambda im, lab, ps: ([np.zeros((5, 128, 128))] + im[1:], lab, ps), "3-D"),
        (lambda im, lab, ps: ([im[0].astype(bool)] + im[1:], lab, ps), "dtype bool"),
        (lambda im, lab, ps: (im, ["none"] * 3 + lab[3:], ps), "reserved"),
    ],
)
def test_bad_input_is_refused_before_training(two_class, mutate, match):
    images, labels, sizes = mutate(*two_class)
    clf = tiny()
    with pytest.raises(MicrostructureError, match=match):
        clf.fit(images, labels, sizes)
    assert not clf.is_fitted


def test_label_mask_of_other_shape(two_class):
    images, _, sizes = two_class
    with pytest.raises(MicrostructureError, match="paint the labels on a layer of the same size"):
        tiny().fit(images[:1], [np.zeros((64, 64), int)], sizes[:1])


def test_bad_parameters():
    with pytest.raises(MicrostructureError, match="unknown loss"):
        tiny(loss="hinge").fit([np.zeros((64, 64))] * 2, ["a", "b"], 0.1)
    with pytest.raises(MicrostructureError, match="unknown backbone"):
        tiny(backbone="resnet").fit(*make_dataset(("ferrite", "pearlite"), 2, (64, 64)))


def test_unfitted_model_says_so():
    with pytest.raises(NotFittedError, match="not fitted"):
        FewShotClassifier().predict_proba(np.zeros((256, 256)), 0.1)


def test_rgb_is_converted_with_warning(two_class):
    images, labels, sizes = two_class
    rgb = np.repeat(images[0][..., None], 3, axis=-1)
    clf = tiny(max_epochs=1)
    with pytest.warns(UserWarning, match="RGB"):
        clf.fit([rgb] + images[1:], labels, sizes)
    assert clf.is_fitted


# ------------------------------------------------------------ core behaviour
def test_predict_proba_shape_and_sum(trained_classifier):
    image = make_micrograph("pearlite", (256, 256), 0.1, seed=5)
    p = trained_classifier.predict_proba(image, 0.1)
    assert p.shape == (len(trained_classifier.classes_) + 1,)
    assert p.sum() == pytest.approx(1.0)
    assert (p >= 0).all()
    assert trained_classifier.labels_[-1] == "none"


def test_known_classes_recognised_at_a_new_magnification(trained_classifier):
    # trained at 0.08-0.16 um/px; predicted at 0.12 um/px with new seeds
    for cls in ("ferrite", "pearlite", "spheroidite"):
        image = make_micrograph(cls, (320, 320), 0.12, seed=77)
        assert trained_classifier.predict(image, 0.12) == cls


def test_untrained_texture_gets_more_none_than_known(trained_classifier):
    """An untrained texture is called "none" far more often than trained ones.

    How much of an unknown texture a few-shot model rejects varies from model to
    model (on generated data, 30-100 % of martensite crops for models trained on
    three other classes), so this checks the ordering, averaged over images.
    """
    def none_share(kind):
        return np.mean([trained_classifier.predict_proba(make_micrograph(kind, (256, 256), 0.1, seed=s), 0.1)[-1]
                        for s in (8, 9, 10)])

    unknown = none_share("martensite")
    known = max(none_share(k) for k in ("ferrite", "pearlite", "spheroidite"))
    assert unknown > 0.2
    assert unknown > 3 * known


def test_image_too_small_for_the_model(trained_classifier):
    lo = trained_classifier.fov_range_um_[0]
    with pytest.raises(MicrostructureError, match="smallest crop"):
        # not constant: a constant image is refused before its size is looked at
        trained_classifier.predict_proba(np.random.default_rng(0).random((32, 32)), lo / 64)


def test_save_load_round_trip_predicts_the_same(trained_classifier, tmp_path):
    path = trained_classifier.save(tmp_path / "model.pt")
    loaded = FewShotClassifier.load(path, device="cpu")
    image = make_micrograph("spheroidite", (256, 256), 0.1, seed=9)
    assert list(loaded.classes_) == list(trained_classifier.classes_)
    np.testing.assert_allclose(loaded.predict_proba(image, 0.1), trained_classifier.predict_proba(image, 0.1),
                               atol=1e-6)
    assert loaded.mixture_.threshold_ == pytest.approx(trained_classifier.mixture_.threshold_)
    # the default novelty features end with each crop's scale, and the file says so
    assert trained_classifier.novelty_scale_ and loaded.novelty_scale_
    assert loaded.scorer_.members[0][0].scale_weight == pytest.approx(trained_classifier.novelty_scale_weight)
    # ... and its granulometry in micrometres
    assert trained_classifier.novelty_granulometry_ and loaded.novelty_granulometry_
    knn = loaded.scorer_.members[0][0]
    assert knn.granulometry_weight == pytest.approx(trained_classifier.novelty_granulometry_weight)
    np.testing.assert_allclose(knn.granulometry_spread_, trained_classifier.scorer_.members[0][0].granulometry_spread_)
    # ... and measures it against the training crops' local spacing, kept in the file
    assert loaded.novelty_local_density and knn.local
    np.testing.assert_allclose(knn.reference_density_, trained_classifier.scorer_.members[0][0].reference_density_,
                               rtol=1e-5)
    # the ensemble's Gaussians reject their own, smaller share: a looser threshold than mixture_'s
    gauss = loaded.scorer_.members[1][0]
    assert gauss.rejection_quantile == pytest.approx(loaded.ensemble_mixture_quantile) == pytest.approx(0.02)
    assert gauss.novelty_threshold_ > loaded.mixture_.novelty_threshold_


def test_model_files_without_the_scale_column_still_predict(trained_classifier, tmp_path, monkeypatch):
    """Files written before novelty_scale_weight (and the granulometry, and the local spacing): no such columns
    in their k-NN reference, the plain distance."""
    old = FewShotClassifier(**trained_classifier.get_params()).set_params(novelty_scale_weight=0.0,
                                                                          novelty_granulometry_weight=0.0,
                                                                          novelty_local_density=False,
                                                                          ensemble_mixture_quantile=0.1)
    images, labels, sizes = [make_micrograph(c, (192, 192), 0.1, seed=s) for c, s in
                             (("ferrite", 1), ("ferrite", 2), ("pearlite", 3), ("pearlite", 4))], \
        ["ferrite", "ferrite", "pearlite", "pearlite"], [0.1] * 4
    old.set_params(max_epochs=1, steps_per_epoch=2).fit(images, labels, sizes)
    assert not old.novelty_scale_ and not old.novelty_granulometry_
    path = old.save(tmp_path / "old.pt")
    from napari_microstructure.core.nn.modelio import read_model_file, save_model_file

    kind, metadata, tensors = read_model_file(path)
    del metadata["novelty_scale"], metadata["novelty_granulometry"]   # as an older file has it
    del metadata["params"]["novelty_local_density"], metadata["params"]["ensemble_mixture_quantile"]
    save_model_file(path, kind, metadata, tensors)
    loaded = FewShotClassifier.load(path, device="cpu")
    assert not loaded.novelty_scale_ and not loaded.novelty_granulometry_
    assert loaded.novelty_local_density is False
    assert loaded.ensemble_mixture_quantile == pytest.approx(loaded.rejection_quantile)
    image = make_micrograph("ferrite", (192, 192), 0.1, seed=9)
    np.testing.assert_allclose(loaded.predict_proba(image, 0.1), old.predict_proba(image, 0.1), atol=1e-6)


def test_corrupt_model_file(tmp_path, trained_model_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(trained_model_path.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="corrupt"):
        FewShotClassifier.load(bad)


def test_seeded_cpu_runs_give_the_same_model(two_class):
    a = tiny().fit(*two_class)
    b = tiny().fit(*two_class)
    for (ka, va), (kb, vb) in zip(a.model_.state_dict().items(), b.model_.state_dict().items()):
        assert ka == kb
        assert torch.equal(va, vb), ka
    assert a.mixture_.threshold_ == b.mixture_.threshold_


def test_cancel_keeps_the_previous_model(two_class):
    clf = tiny().fit(*two_class)
    before = {k: v.clone() for k, v in clf.model_.state_dict().items()}
    cancel = threading.Event()

    def progress(p):
        if p.stage == "train":
            cancel.set()

    with pytest.raises(TrainingCancelled):
        clf.fit(*two_class, progress=progress, cancel=cancel)
    after = clf.model_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_losses_and_backbone_options_train(two_class):
    for loss in ("contrastive", "cross-entropy"):
        clf = tiny(loss=loss, max_epochs=1).fit(*two_class)
        assert len(clf.history_.train_loss) == 1
        assert np.isfinite(clf.history_.train_loss[0])
    assert clf.model_.classifier is not None


def test_scribble_masks(two_class):
    # one image: left half ferrite, right half pearlite, scribbles in each half
    ferrite = make_micrograph("ferrite", (160, 320), 0.1, seed=1)
    pearlite = make_micrograph("pearlite", (160, 320), 0.1, seed=2)
    image = np.concatenate([ferrite[:, :160], pearlite[:, 160:]], axis=1)
    mask = np.zeros(image.shape, np.uint8)
    mask[40:120, 30:60] = 1
    mask[40:120, 250:290] = 2
    clf = tiny(max_epochs=1).fit([image], [mask], [0.1], class_names={1: "ferrite", 2: "pearlite"})
    assert clf.classes_.tolist() == ["ferrite", "pearlite"]
    empty = np.zeros_like(mask)
    with pytest.raises(MicrostructureError, match="empty"):
        tiny().fit([image], [empty], [0.1])


def test_magnification_input_changes_the_descriptor(trained_classifier):
    model = trained_classifier.model_
    crops = torch.rand(2, 1, 64, 64)
    d1 = model(crops, torch.tensor([0.5, 0.5]))
    d2 = model(crops, torch.tensor([2.0, 2.0]))
    assert not torch.allclose(d1, d2)


def test_learning_two_textures_on_held_out_images(learning_seed):
    """A small two-class set reaches at least 90 % on held-out images."""
    images, labels, sizes = make_dataset(("ferrite", "pearlite"), per_class=4, shape=(192, 192), seed=11)
    clf = FewShotClassifier(input_size=64, embedding_dim=2, max_epochs=12, steps_per_epoch=8,
                            batch_size=16, patience=12, seed=learning_seed, device="cpu", n_crops=48)
    clf.fit(images, labels, sizes)
    test_images, test_labels, test_sizes = make_dataset(("ferrite", "pearlite"), per_class=5,
                                                         shape=(192, 192), seed=99)
    predictions = [clf.predict(im, p) for im, p in zip(test_images, test_sizes)]
    accuracy = np.mean([a == b for a, b in zip(predictions, test_labels)])
    assert accuracy >= 0.9, (accuracy, predictions)


# ------------------------------------------------------------ open set and magnification
def test_pixel_size_beyond_the_trained_range_warns_and_answers_none(trained_classifier):
    lo, hi = trained_classifier.pixel_size_range_um_
    image = make_micrograph("pearlite", (256, 256), 2.5 * hi, seed=5)
    with pytest.warns(UserWarning, match="outside the range the model was trained on"):
        p = trained_classifier.predict_proba(image, 2.5 * hi)
    assert p[-1] == pytest.approx(1.0)
    # inside the range: no warning, and a trained class is recognised
    inside = make_micrograph("pearlite", (256, 256), hi, seed=5)
    import warnings as _w
    with _w.catch_warnings():
        _w.simplefilter("error")
        assert trained_classifier.predict(inside, hi) == "pearlite"


def test_implausible_pixel_size_is_named(trained_classifier):
    with pytest.warns(UserWarning, match="implausible pixel size"):
        assert trained_classifier.check_magnification(72.0) is False


def test_class_at_one_magnification_warns(two_class):
    images, labels, sizes = two_class
    sizes = [0.1 if lab == "ferrite" else s * (1 + i) for i, (lab, s) in enumerate(zip(labels, sizes))]
    with pytest.warns(UserWarning, match="'ferrite' has pixel size 0.1"):
        tiny(max_epochs=1).fit(images, labels, sizes)


def test_scorers_switch_without_retraining_and_survive_save(two_class, tmp_path):
    clf = tiny(loss="cross-entropy", max_epochs=1).fit(*two_class)
    image = make_micrograph("ferrite", (128, 128), 0.1, seed=3)
    for name in ("knn", "mahalanobis", "energy", "gmm"):
        clf.refit_scorer(name)
        assert clf.scorer == name
        p = clf.predict_proba(image, 0.1)
        assert p.shape == (3,) and p.sum() == pytest.approx(1.0)
        loaded = FewShotClassifier.load(clf.save(tmp_path / f"{name}.pt"), device="cpu")
        np.testing.assert_allclose(loaded.predict_proba(image, 0.1), p, atol=1e-6)
        # the image verdict is recalibrated for each scorer and saved with it
        assert loaded.verdict_.state() == clf.verdict_.state()
        fov = loaded.set_params(image_rule="fov-bins").predict_image(image, 0.1)
        assert fov.none_score == pytest.approx(clf.set_params(image_rule="fov-bins").predict_image(image, 0.1).none_score)
        clf.set_params(image_rule="most-probable")
    with pytest.raises(MicrostructureError, match="cross-entropy"):
        tiny(scorer="energy").fit(*two_class)
    with pytest.raises(MicrostructureError, match="unknown scorer"):
        clf.refit_scorer("lof")
    assert clf.scorer == "gmm"


def _vertical_bars(crops):
    """Per crop: True when its texture varies across columns only (vertical bars)."""
    x = np.asarray(crops)
    return x.std(axis=2).mean(1) > 4 * x.std(axis=1).mean(1)


def test_rotation_and_mirror_switches_hold_at_prediction_time(two_class):
    """A model trained without rotation and mirroring is shown upright crops at prediction too."""
    upright = tiny(max_epochs=1, augment={"rotation": False, "mirror": False}).fit(*two_class)
    x = np.arange(256)
    bars = np.tile(((x // 10) % 2).astype(np.float32), (256, 1))   # vertical bars, 20 px period
    crops = upright.crop_predictions(bars, 0.1, 48, keep_crops=True)["crops"]
    turned = upright.crop_predictions(np.rot90(bars).copy(), 0.1, 48, keep_crops=True)["crops"]
    assert crops.shape == (48, 48, 48)
    assert _vertical_bars(crops).all()            # never rotated ...
    assert not _vertical_bars(turned).any()       # ... so the turned image shows turned bars
    # a model trained with rotation is shown rotated crops of the same image (any angle)
    rotating = tiny(max_epochs=1).fit(*two_class)
    assert _vertical_bars(rotating.crop_predictions(bars, 0.1, 48, keep_crops=True)["crops"]).mean() < 0.5
    # probability maps average only over the transforms training used
    from napari_microstructure.core.micrograph.probmap import probability_map

    assert probability_map(upright, bars, 0.1, n_augment=8).n_augment == 1
    assert probability_map(rotating, bars, 0.1, n_augment=8).n_augment == 8


def test_batch_prediction_names(trained_classifier):
    images = [make_micrograph(k, (256, 256), 0.1, seed=21) for k in ("ferrite", "pearlite")]
    proba = trained_classifier.predict_proba_images(images, 0.1, n_crops=32)
    assert proba.shape == (2, len(trained_classifier.labels_))
    np.testing.assert_allclose(proba[1], trained_classifier.predict_proba(images[1], 0.1, n_crops=32))
    names = trained_classifier.predict_images(images, [0.1, 0.1], n_crops=32)
    assert names.tolist() == [trained_classifier.predict_image(im, 0.1, n_crops=32).label for im in images]
    assert names.tolist() == ["ferrite", "pearlite"]
