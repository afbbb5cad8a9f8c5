"""Open-set scoring for EBSD patterns: k-nearest-neighbour distance in feature space.

A pattern of a phase the classifier was not taught (a hexagonal or
tetragonal phase, say) still gets a confident class from a softmax. Feature
distances do better (Sun et al., ICML 2022: k-NN distance on normalised
features beat Mahalanobis and softmax scores): the network's pooled
features (before the linear head) are L2-normalised; the score of a pattern
is its distance to the ``k``-th nearest training pattern; a threshold set so
that a fraction ``1 - rejection_rate`` of *held-out* patterns of the known
classes is accepted separates "no solution" (score above it).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..errors import MicrostructureError, NotFittedError


def pattern_features(classifier: Any, patterns: Any, batch: int = 256) -> np.ndarray:
    """Pooled, L2-normalised backbone features (N, C) of a fitted ``EBSDClassifier``.

    With an ensemble the members' features are concatenated.
    """
    if not hasattr(classifier, "models_"):
        raise NotFittedError("the EBSDClassifier is not trained; fit it or load a model first")
    prepared = classifier.preprocessor_.transform(patterns)
    dev = classifier._device()
    feats = []
    with torch.inference_mode():
        for s in range(0, len(prepared), batch):
            xb = torch.from_numpy(np.ascontiguousarray(prepared[s:s + batch])).unsqueeze(1).to(dev)
            parts = []
            for net in classifier.models_:
                f = net.backbone.forward_features(net.backbone.prepare(xb)).mean(dim=(2, 3))
                parts.append(torch.nn.functional.normalize(f.float(), dim=1))
            feats.append(torch.cat(parts, 1).cpu().numpy())
    out = np.concatenate(feats)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)


class KNNOpenSet:
    """k-NN distance open-set score with a calibrated threshold.

    Parameters
    ----------
    k : int
        Neighbour whose distance is the score.
    rejection_rate : float
        Fraction of held-out known patterns allowed to be rejected (sets the threshold).

    Attributes
    ----------
    bank_ : ndarray (n, C) float32
        Normalised features of the known (training) patterns.
    threshold_ : float
    """

    def __init__(self, k: int = 5, rejection_rate: float = 0.05) -> None:
        if int(k) < 1:
            raise MicrostructureError(f"k={k!r}; give a positive number of neighbours")
        if not 0 < rejection_rate < 0.5:
            raise MicrostructureError(f"rejection_rate={rejection_rate!r}; give a fraction in (0, 0.5)")
        self.k = int(k)
        self.rejection_rate = float(rejection_rate)

    def fit(self, bank: np.ndarray, calibration: Optional[np.ndarray] = None) -> "KNNOpenSet":
        """Store the known features; calibrate on held-out known features (or leave-one-out)."""
        bank = np.asarray(bank, np.float32)
        if bank.ndim != 2 or len(bank) <= self.k:
            raise MicrostructureError(
                f"the open-set score needs more than k={self.k} known patterns, got {len(bank)}")
        self.bank_ = bank
        if calibration is None or len(calibration) == 0:
            scores = self._scores(bank, skip_self=True)
        else:
            scores = self._scores(np.asarray(calibration, np.float32))
        self.threshold_ = float(np.quantile(scores, 1.0 - self.rejection_rate))
        return self

    def _scores(self, feats: np.ndarray, skip_self: bool = False) -> np.ndarray:
        out = np.empty(len(feats), np.float32)
        k = self.k + (1 if skip_self else 0)
        for s in range(0, len(feats), 1024):
            d2 = 2.0 - 2.0 * feats[s:s + 1024] @ self.bank_.T  # unit vectors
            out[s:s + 1024] = np.sqrt(np.clip(np.partition(d2, k - 1, axis=1)[:, k - 1], 0, None))
        return out

    def score(self, feats: np.ndarray) -> np.ndarray:
        """Distance to the k-th nearest known pattern (higher = more novel)."""
        if not hasattr(self, "bank_"):
            raise NotFittedError("this KNNOpenSet is not fitted; call fit(features) first")
        return self._scores(np.asarray(feats, np.float32))

    def is_novel(self, feats: np.ndarray) -> np.ndarray:
        """True where the score is above the threshold ("no solution")."""
        return self.score(feats) > self.threshold_
