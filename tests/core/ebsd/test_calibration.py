"""Temperature scaling and the expected calibration error (core/ebsd/calibration.py)."""

import numpy as np
import pytest

from napari_microstructure.core.ebsd.calibration import (TEMPERATURE_BOUNDS, expected_calibration_error,
                                                         fit_temperature, softmax)
from napari_microstructure.core.errors import MicrostructureError


def _draw(rng, n, temperature, classes=6, scale=3.0):
    """Logits and classes drawn from softmax(logits / temperature): calibrated at exactly that temperature."""
    logits = rng.normal(0.0, scale, (n, classes))
    p = softmax(logits, temperature)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return logits, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_the_classes_were_drawn_with(seed, true_temperature):
    logits, y = _draw(np.random.default_rng(seed), 4000, true_temperature)
    assert fit_temperature(logits, y) == pytest.approx(true_temperature, rel=0.12)
    # log-probabilities give the same temperature as the logits (a constant per row)
    log_p = np.log(softmax(logits))
    assert fit_temperature(log_p, y) == pytest.approx(fit_temperature(logits, y), abs=2e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_overconfident_network_is_calibrated_by_the_fitted_temperature(seed):
    """Classes drawn at temperature 2 but read at 1: confidence far above accuracy. The temperature fitted on
    one draw brings the calibration error of another draw down to sampling noise."""
    rng = np.random.default_rng(seed)
    fit_logits, fit_y = _draw(rng, 3000, 2.0)
    logits, y = _draw(rng, 3000, 2.0)
    raw = expected_calibration_error(softmax(logits), y)
    t = fit_temperature(fit_logits, fit_y)
    calibrated = expected_calibration_error(softmax(logits, t), y)
    assert raw > 0.1 and calibrated < 0.04
    # the call never changes
    np.testing.assert_array_equal(softmax(logits, t).argmax(1), logits.argmax(1))


def test_expected_calibration_error_by_hand():
    # two patterns at confidence 0.9 (one right), two at 0.6 (both right): 0.5 * 0.4 + 0.5 * 0.4
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    assert expected_calibration_error(proba, np.array([0, 1, 0, 1])) == pytest.approx(0.4)
    assert expected_calibration_error(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])) == 0.0


def test_fit_temperature_stays_in_its_bounds_and_names_bad_input():
    logits = np.array([[5.0, 0.0], [0.0, 5.0]] * 20)
    assert fit_temperature(logits, np.array([0, 1] * 20)) == pytest.approx(TEMPERATURE_BOUNDS[0], abs=0.01)
    assert fit_temperature(logits, np.array([1, 0] * 20)) == pytest.approx(TEMPERATURE_BOUNDS[1], abs=0.05)
    with pytest.raises(MicrostructureError, match="not finite"):
        fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(MicrostructureError, match=r"\(N, n_classes\) logits and N class indices"):
        fit_temperature(np.zeros((3, 2)), np.zeros(2, int))
    with pytest.raises(MicrostructureError, match=r"class indices must lie in 0..1; got 0..2"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))
