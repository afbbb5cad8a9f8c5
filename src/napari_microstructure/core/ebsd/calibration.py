"""Confidence calibration: one temperature for a classifier's logits, and the calibration error.

A network's top probability is its *confidence*; it is calibrated when, of
the patterns called with confidence 0.8, about 0.8 are right. Training does
not guarantee that: fine-tuned on a few labelled patterns with rehearsal and
label smoothing, the band-profile network said 0.89 on average on a map's
other patterns and was right on 0.98 (one development acquisition, 20
labels per space group). Temperature scaling (Guo et al., ICML 2017)
divides the logits by one number ``T`` fitted by likelihood on calls the
network did not train on (there: the label check's cross-validated calls):
``T > 1`` softens overconfident probabilities, ``T < 1`` sharpens timid
ones. The class called never changes.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from ..errors import MicrostructureError

#: The temperatures :func:`fit_temperature` searches.
TEMPERATURE_BOUNDS = (0.25, 10.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (rows sum to 1)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _nll(temperature: float, logits: np.ndarray, y: np.ndarray) -> float:
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that maximises the likelihood of the true classes ``y`` (indices into the columns).

    ``logits`` (N, n_classes): a network's outputs (or log-probabilities: the same up to a constant per
    row) on patterns it did not train on. The result lies in :data:`TEMPERATURE_BOUNDS`.
    """
    logits = np.asarray(logits, np.float64)
    y = np.asarray(y, np.int64)
    if logits.ndim != 2 or len(logits) != len(y) or not len(y):
        raise MicrostructureError(f"fit_temperature needs (N, n_classes) logits and N class indices; got "
                                  f"{logits.shape} and {y.shape}")
    if not np.isfinite(logits).all():
        raise MicrostructureError("fit_temperature got logits that are not finite (NaN or infinite)")
    if y.min() < 0 or y.max() >= logits.shape[1]:
        raise MicrostructureError(f"class indices must lie in 0..{logits.shape[1] - 1}; got {y.min()}..{y.max()}")
    lo, hi = TEMPERATURE_BOUNDS
    return float(minimize_scalar(_nll, bounds=(lo, hi), args=(logits, y), method="bounded",
                                 options={"xatol": 1e-3}).x)


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by their counts."""
    proba = np.asarray(proba, np.float64)
    y = np.asarray(y, np.int64)
    confidence = proba.max(1)
    right = proba.argmax(1) == y
    which = np.clip((confidence * bins).astype(int), 0, bins - 1)
    gap = 0.0
    for b in np.unique(which):
        sel = which == b
        gap += sel.mean() * abs(confidence[sel].mean() - right[sel].mean())
    return float(gap)
