import numpy as np
import pytest

from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.core.micrograph.openset import OpenSetMixture


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([0, 0], 0.3, (200, 2)), rng.normal([5, 0], 0.3, (200, 2))])
    y = np.repeat([0, 1], 200)
    return x, y, rng


def test_components_are_classes_and_far_points_are_rejected(blobs):
    x, y, rng = blobs
    m = OpenSetMixture(rejection_quantile=0.02).fit(x, y, 2)
    held = np.concatenate([rng.normal([0, 0], 0.3, (100, 2)), rng.normal([5, 0], 0.3, (100, 2))])
    m.calibrate(held)
    assert np.allclose(m.means_, [[0, 0], [5, 0]], atol=0.1)
    probs = m.crop_probabilities(np.array([[0.1, 0.0], [4.9, 0.1], [2.5, 8.0], [-20.0, 0.0]]))
    assert probs.shape == (4, 3)
    assert np.allclose(probs.sum(1), 1.0)
    assert probs[0].argmax() == 0 and probs[1].argmax() == 1
    assert probs[2, 2] == 1.0 and probs[3, 2] == 1.0  # far away: none of these
    # about the calibrated share of held-out known points is rejected
    rejected = (m.log_likelihood(held) < m.threshold_).mean()
    assert rejected == pytest.approx(0.02, abs=0.011)


def test_parameters_round_trip(blobs):
    x, y, _ = blobs
    m = OpenSetMixture().fit(x, y, 2)
    m.calibrate(x)
    r = OpenSetMixture.from_parameters(m.means_, m.covariances_, m.weights_, m.threshold_)
    q = np.array([[0.2, 0.1], [3.0, 3.0]])
    assert np.allclose(r.log_likelihood(q), m.log_likelihood(q))
    assert np.allclose(r.crop_probabilities(q), m.crop_probabilities(q))


def test_bad_inputs(blobs):
    x, y, _ = blobs
    with pytest.raises(MicrostructureError, match="at least 2"):
        OpenSetMixture().fit(x[:201], y[:201], 2)
    with pytest.raises(MicrostructureError, match="NaN"):
        OpenSetMixture().fit(np.full_like(x, np.nan), y, 2)
    with pytest.raises(MicrostructureError, match="rejection_quantile"):
        OpenSetMixture(rejection_quantile=0.7)
