"""Open-set prediction: a Gaussian mixture on the descriptors.

One Gaussian per class (Larmuseau et al. 2020), fitted to that class's
descriptors (the classifier passes crops of the training images *and* of the
held-out images: the network pulls its own training crops into tight clusters,
so Gaussians fitted on those alone are too narrow for new images): its mean, its full covariance (plus ``reg_covar`` on the diagonal)
and a weight equal to the class's share of the crops. Because each component
is fitted to one class, component k *is* class k, and the mixture's posterior
responsibilities are the class probabilities. The object is a fitted
:class:`sklearn.mixture.GaussianMixture`, so ``score_samples`` (log-likelihood)
and ``predict_proba`` are scikit-learn's.

Threshold rule: the log-likelihood under the mixture of held-out crops of the
known classes (augmented as at prediction) is computed, and the threshold is
its ``rejection_quantile`` quantile (default 0.10): 90 % of held-out crops of
known classes are accepted, and a crop whose log-likelihood falls below the
threshold is "none of these". Why 10 % and not 1-2 %: an image's (or a
pixel's) probabilities are means over many crops, so a few rejected crops of a
known class do not change its decision, while an untrained texture needs a
tight threshold to be rejected at all. Measured on generated textures with a
model trained on three classes: at 0.02, known images got 0-1 % "none" and an
untrained one 9 %; at 0.10, known 2-4 % and untrained 51 %; at 0.20, known
6-12 % and untrained 76 %.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.mixture import GaussianMixture

from ..errors import MicrostructureError


class OpenSetMixture:
    """Class-conditional Gaussian mixture with a log-likelihood threshold.

    Attributes
    ----------
    gmm_ : GaussianMixture
    threshold_ : float
        Crops with ``score_samples < threshold_`` are rejected.
    """

    def __init__(self, reg_covar: float = 1e-3, rejection_quantile: float = 0.1) -> None:
        if not 0.0 <= rejection_quantile < 0.5:
            raise MicrostructureError(
                f"rejection_quantile must be in [0, 0.5), got {rejection_quantile}"
            )
        self.reg_covar = reg_covar
        self.rejection_quantile = rejection_quantile
        self.gmm_: Optional[GaussianMixture] = None
        self.threshold_: float = -np.inf

    @staticmethod
    def from_parameters(means: np.ndarray, covariances: np.ndarray, weights: np.ndarray,
                        threshold: float) -> "OpenSetMixture":
        """Rebuild a fitted mixture from stored parameters."""
        m = OpenSetMixture()
        m.gmm_ = _make_gmm(np.asarray(means, np.float64), np.asarray(covariances, np.float64),
                           np.asarray(weights, np.float64))
        m.threshold_ = float(threshold)
        return m

    def fit(self, descriptors: np.ndarray, labels: np.ndarray, n_classes: int) -> "OpenSetMixture":
        """Fit one Gaussian per class to labelled descriptors ``(N, D)``."""
        x = np.asarray(descriptors, dtype=np.float64)
        y = np.asarray(labels)
        if x.ndim != 2 or len(x) != len(y):
            raise MicrostructureError("descriptors must be (N, D) with one label each")
        if not np.isfinite(x).all():
            raise MicrostructureError("descriptors contain NaN or inf; the network diverged: retrain")
        d = x.shape[1]
        means = np.zeros((n_classes, d))
        covs = np.zeros((n_classes, d, d))
        weights = np.zeros(n_classes)
        for k in range(n_classes):
            xk = x[y == k]
            if len(xk) < 2:
                raise MicrostructureError(
                    f"class {k} has {len(xk)} descriptors; the mixture needs at least 2 per class"
                )
            means[k] = xk.mean(0)
            covs[k] = np.cov(xk, rowvar=False).reshape(d, d) + self.reg_covar * np.eye(d)
            weights[k] = len(xk)
        self.gmm_ = _make_gmm(means, covs, weights / weights.sum())
        return self

    def calibrate(self, held_out: np.ndarray) -> float:
        """Set the threshold from held-out descriptors of known classes (rule above)."""
        ll = self.log_likelihood(held_out)
        self.threshold_ = float(np.quantile(ll, self.rejection_quantile)) if self.rejection_quantile > 0 else -np.inf
        return self.threshold_

    def log_likelihood(self, descriptors: np.ndarray) -> np.ndarray:
        self._check()
        return self.gmm_.score_samples(np.asarray(descriptors, np.float64))

    def crop_probabilities(self, descriptors: np.ndarray) -> np.ndarray:
        """Per crop: class posteriors, then "none"; a rejected crop is all "none".

        Returns an ``(N, n_classes + 1)`` array whose rows sum to 1.
        """
        self._check()
        x = np.asarray(descriptors, np.float64)
        post = self.gmm_.predict_proba(x)
        rejected = self.gmm_.score_samples(x) < self.threshold_
        out = np.zeros((len(x), post.shape[1] + 1))
        out[:, :-1] = post
        out[rejected, :-1] = 0.0
        out[rejected, -1] = 1.0
        return out

    def _check(self) -> None:
        if self.gmm_ is None:
            raise MicrostructureError("the open-set mixture is not fitted")

    @property
    def means_(self) -> np.ndarray:
        self._check()
        return self.gmm_.means_

    @property
    def covariances_(self) -> np.ndarray:
        self._check()
        return self.gmm_.covariances_

    @property
    def weights_(self) -> np.ndarray:
        self._check()
        return self.gmm_.weights_


def _make_gmm(means: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> GaussianMixture:
    k, d = means.shape
    gmm = GaussianMixture(n_components=k, covariance_type="full")
    gmm.weights_ = weights
    gmm.means_ = means
    gmm.covariances_ = covs
    chol = np.linalg.cholesky(covs)
    gmm.precisions_cholesky_ = np.stack([np.linalg.inv(c).T for c in chol])
    gmm.precisions_ = np.stack([p @ p.T for p in gmm.precisions_cholesky_])
    gmm.converged_ = True
    gmm.n_iter_ = 0
    gmm.n_features_in_ = d
    return gmm
