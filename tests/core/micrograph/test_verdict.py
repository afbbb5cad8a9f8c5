"""The image verdict: a trained class or "none" from an image's crops (core/micrograph/verdict.py)."""

import copy

import numpy as np
import pytest

from napari_microstructure import FewShotClassifier, MicrostructureError
from napari_microstructure.core.micrograph.synthetic import make_micrograph
from napari_microstructure.core.micrograph.verdict import (RATE_PRIOR_CROPS, FieldOfViewVerdict, ImagePrediction,
                                                           image_prediction)

# one inner edge at 10 um: crops of 5 um fall in bin 0, crops of 20 um in bin 1
EDGES = [np.log(10.0)]


def crops(n_small, rejected_small, n_large, rejected_large):
    rejected = np.r_[np.arange(n_small) < rejected_small, np.arange(n_large) < rejected_large]
    fov = np.r_[np.full(n_small, 5.0), np.full(n_large, 20.0)]
    return rejected, fov


def test_none_score_follows_its_formula():
    v = FieldOfViewVerdict(EDGES, 0.1, [0.1, 0.1])
    # rejected at small fields of view only: m = 0.375, bin 0's excess 0.65 beyond m - q = 0.275
    assert v.none_score(*crops(16, 12, 16, 0)) == pytest.approx(0.375 + (0.75 - 0.1) - (0.375 - 0.1))
    # rejected evenly across scales: no bin stands out, the score is the rejected share
    assert v.none_score(*crops(16, 5, 16, 5)) == pytest.approx(10 / 32)
    # nothing rejected: 0; everything rejected: 1 (clipped)
    assert v.none_score(*crops(16, 0, 16, 0)) == 0.0
    assert v.none_score(*crops(16, 16, 16, 16)) == 1.0
    # a bin with fewer than min_crops crops does not count
    assert v.none_score(*crops(5, 5, 27, 0)) == pytest.approx(5 / 32)
    # where known images are often rejected (bin 0: 0.7), the same crops stand out less: 0.45, not "none"
    high = FieldOfViewVerdict(EDGES, 0.4, [0.7, 0.1])
    assert high.none_score(*crops(16, 12, 16, 0)) == pytest.approx(0.375 + (0.75 - 0.7) - (0.375 - 0.4))
    # never below the rejected share
    rng = np.random.default_rng(0)
    for _ in range(50):
        rejected, fov = rng.random(40) < rng.random(), np.exp(rng.uniform(np.log(2), np.log(50), 40))
        assert v.none_score(rejected, fov) >= rejected.mean() - 1e-12


def test_calibration_rates_per_bin_and_file_state():
    rejected, fov = crops(20, 4, 10, 0)
    v = FieldOfViewVerdict.calibrate(rejected, fov, (2.5, 40.0))
    assert np.exp(v.log_edges) == pytest.approx([10.0])
    q, k = 4 / 30, RATE_PRIOR_CROPS
    assert v.known_rate == pytest.approx(q)
    # each bin's rate (0.2 and 0.0 measured) is shrunk towards q with the weight of k crops
    assert v.bin_rates == pytest.approx([(4 + k * q) / (20 + k), (0 + k * q) / (10 + k)])
    assert v.bin_rates[1] < q < v.bin_rates[0]
    many = FieldOfViewVerdict.calibrate(*crops(20_000, 4_000, 10_000, 0), (2.5, 40.0))
    assert many.bin_rates == pytest.approx([0.2, 0.0], abs=0.01)      # many crops: the measured rates
    # a bin without held-out crops has no rate (NaN), saved as None and read back
    empty = FieldOfViewVerdict.calibrate(*crops(20, 4, 0, 0), (2.5, 40.0))
    assert np.isnan(empty.bin_rates[1])
    state = empty.state()
    assert state["bin_rates"][1] is None
    back = FieldOfViewVerdict.from_state(state)
    assert back.state() == state
    assert back.none_score(*crops(16, 12, 16, 0)) == empty.none_score(*crops(16, 12, 16, 0))
    with pytest.raises(MicrostructureError, match="damaged"):
        FieldOfViewVerdict.from_state({"log_edges": [1.0]})
    with pytest.raises(MicrostructureError, match="one field of view per held-out crop"):
        FieldOfViewVerdict.calibrate(rejected, fov[:-1], (2.5, 40.0))
    with pytest.raises(MicrostructureError, match="0 < lo <= hi"):
        FieldOfViewVerdict.calibrate(rejected, fov, (0.0, 40.0))


def test_answer_can_differ_from_the_most_probable_entry():
    v = FieldOfViewVerdict(EDGES, 0.1, [0.1, 0.1])
    labels = ["ferrite", "pearlite", "none"]
    # 12 of 16 small crops rejected, the rest pearlite: pearlite is the most probable entry (0.625),
    # but one scale rejects far more than known images do there
    rejected, fov = crops(16, 12, 16, 0)
    p = np.zeros((32, 3))
    p[rejected, 2] = 1.0
    p[~rejected, 1] = 1.0
    answer = image_prediction(p, fov, labels, v)
    assert isinstance(answer, ImagePrediction)
    assert answer.label == "none" and answer.is_none
    assert answer.none_score == pytest.approx(0.75) and answer.none_threshold == 0.5
    np.testing.assert_allclose(answer.probabilities, p.mean(0))
    assert answer.as_dict() == pytest.approx({"ferrite": 0.0, "pearlite": 0.625, "none": 0.375})
    assert answer.summary() == "none (none score 0.75 > 0.50)"
    # without a verdict (older model files): the most probable entry
    assert image_prediction(p, fov, labels, None).label == "pearlite"
    # P(none) the largest entry, yet rejection is even and below half: the top trained class
    rejected, fov = crops(16, 7, 16, 7)
    p = np.zeros((32, 3))
    p[rejected, 2] = 1.0
    p[~rejected] = [0.6, 0.4, 0.0]
    even = FieldOfViewVerdict(EDGES, 0.4, [0.4, 0.4])
    assert image_prediction(p, fov, labels, None).label == "none"
    assert image_prediction(p, fov, labels, even).label == "ferrite"
    with pytest.raises(MicrostructureError, match="expected"):
        image_prediction(p[:, :2], fov, labels, v)


def with_rule(clf, rule):
    """The session's model with another image rule (a shallow copy: the fixture stays as it is)."""
    other = copy.copy(clf)
    return other.set_params(image_rule=rule)


def test_fitted_model_answers_with_its_verdict(trained_classifier, tmp_path):
    clf = with_rule(trained_classifier, "fov-bins")
    v = clf.verdict_
    assert isinstance(v, FieldOfViewVerdict)
    # its edges split the training fields of view; its rates come from held-out known crops
    lo, hi = clf.fov_range_um_
    assert lo < np.exp(v.log_edges[0]) < hi
    assert 0.0 < v.known_rate < 0.5
    image = make_micrograph("pearlite", (256, 256), 0.1, seed=5)
    answer = clf.predict_image(image, 0.1)
    # the same crops as predict_proba, the same answer as predict
    np.testing.assert_allclose(answer.probabilities, clf.predict_proba(image, 0.1))
    assert answer.label == clf.predict(image, 0.1) == "pearlite"
    assert answer.n_crops == clf.n_crops
    out = clf.crop_predictions(image, 0.1)
    assert answer.rejected_share == pytest.approx(np.mean(out["probabilities"][:, -1] > 0.5))
    assert answer.none_score == pytest.approx(v.none_score(out["probabilities"][:, -1] > 0.5, out["fov_um"]))
    # saved and read back with the model and its rule
    loaded = FewShotClassifier.load(clf.save(tmp_path / "m.pt"), device="cpu")
    assert loaded.verdict_.state() == v.state() and loaded.image_rule == "fov-bins"
    assert loaded.predict_image(image, 0.1).none_score == pytest.approx(answer.none_score)


def test_default_rule_is_the_most_probable_entry(trained_classifier):
    clf = trained_classifier
    assert clf.image_rule == "most-probable" and clf.verdict_ is not None   # fitted either way
    for kind, seed in (("pearlite", 5), ("martensite", 8)):
        image = make_micrograph(kind, (256, 256), 0.1, seed=seed)
        answer = clf.predict_image(image, 0.1)
        p = clf.predict_proba(image, 0.1)
        assert answer.none_threshold is None
        assert answer.label == clf.predict(image, 0.1) == clf.labels_[int(np.argmax(p))]
        assert answer.none_score == pytest.approx(p[-1])
    with pytest.raises(MicrostructureError, match="image_rule"):
        with_rule(clf, "vote").predict_image(image, 0.1)

@pytest.mark.parametrize("rule", ["most-probable", "fov-bins"])
def test_untrained_structure_is_answered_none(trained_classifier, rule):
    """Martensite was never trained (ferrite, pearlite, spheroidite were): its images are "none",
    the known classes' images are not, with either rule."""
    clf = with_rule(trained_classifier, rule)
    for seed in (8, 9, 10):
        answer = clf.predict_image(make_micrograph("martensite", (256, 256), 0.1, seed=seed), 0.1)
        assert answer.label == "none", answer.summary()
        for kind in ("ferrite", "pearlite", "spheroidite"):
            known = clf.predict_image(make_micrograph(kind, (256, 256), 0.1, seed=seed), 0.1)
            assert known.label == kind, (kind, known.summary())


def test_files_without_a_verdict_answer_with_the_most_probable_entry(trained_classifier, tmp_path):
    from napari_microstructure.core.nn.modelio import read_model_file, save_model_file

    path = with_rule(trained_classifier, "fov-bins").save(tmp_path / "old.pt")
    kind, metadata, tensors = read_model_file(path)
    del metadata["image_verdict"]                                  # as files written before it have it
    save_model_file(path, kind, metadata, tensors)
    loaded = FewShotClassifier.load(path, device="cpu")
    assert loaded.verdict_ is None and loaded.image_rule == "fov-bins"
    image = make_micrograph("martensite", (256, 256), 0.1, seed=8)
    answer = loaded.predict_image(image, 0.1)
    assert answer.none_threshold is None
    assert answer.label == loaded.labels_[int(np.argmax(answer.probabilities))]
    assert answer.none_score == pytest.approx(answer.probabilities[-1])
