"""Open-set prediction: class probabilities plus "none of these" per crop.

Several scorers share one interface (:class:`OpenSetScorer`): each is fitted on
labelled descriptors of training crops, gives per-crop class posteriors and a
*novelty* score (higher: further from everything trained), and rejects a crop
as "none of these" when its novelty exceeds a threshold. :data:`SCORERS`:

- ``"gmm"`` (:class:`OpenSetMixture`): the paper's one Gaussian per class
  (Larmuseau et al. 2020); novelty is minus the mixture log-likelihood. Meant
  for 2-D descriptors.
- ``"knn"`` (:class:`KNNScorer`): distance from the L2-normalised descriptor to
  its k-th nearest training descriptor (Sun et al., ICML 2022); posteriors from
  the network's classifier head when it has one, else from the class-wise
  nearest distances.
- ``"mahalanobis"`` (:class:`MahalanobisScorer`): class means with one shared
  covariance (linear discriminant); novelty is the smallest squared
  Mahalanobis distance to a class mean.
- ``"energy"`` (:class:`EnergyScorer`): minus the log-sum-exp of the classifier
  head's logits (Liu et al., NeurIPS 2020); needs a cross-entropy head.
- ``"ensemble"`` (:class:`EnsembleScorer`): rejected when any member rejects
  (the micrograph default: k-NN on frozen ImageNet features, measured against
  the local spacing of the training crops, OR the Gaussians at a smaller share).

Threshold rule (all scorers): the novelty of crops of *held-out images* of the
known classes (images the network was not trained on and the scorer's
reference set does not contain when they are scored: the classifier scores
each held-out image against a reference that leaves that image out), and the
threshold is their ``1 - rejection_quantile`` quantile: with the default 0.1,
90 % of held-out known crops are accepted. An image's (or a pixel's)
probabilities are means over many crops, so a few rejected crops of a known
class do not change its decision, while an untrained texture needs a tight
threshold to be rejected at all.

:class:`OpenSetMixture` keeps the scikit-learn mixture (``gmm_``) that the
explanations and the descriptor map draw; its threshold is stored on the
log-likelihood scale (a crop is rejected when ``log_likelihood < threshold_``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.mixture import GaussianMixture

from ..errors import MicrostructureError


class OpenSetScorer:
    """Common interface of the open-set scorers (see the module text).

    Subclasses implement :meth:`fit`, :meth:`novelty`, :meth:`class_posteriors`
    and :meth:`state` / :meth:`from_state` (arrays and JSON-safe numbers only,
    so model files need no pickle).

    Attributes
    ----------
    novelty_threshold_ : float
        Crops with ``novelty > novelty_threshold_`` are "none of these".
    """

    name = ""

    def __init__(self, rejection_quantile: float = 0.1) -> None:
        if not 0.0 <= rejection_quantile < 0.5:
            raise MicrostructureError(
                f"rejection_quantile must be in [0, 0.5), got {rejection_quantile}"
            )
        self.rejection_quantile = rejection_quantile
        self.novelty_threshold_: float = np.inf

    # -- to implement
    def fit(self, descriptors: np.ndarray, labels: np.ndarray, n_classes: int,
            groups: Optional[np.ndarray] = None) -> "OpenSetScorer":
        """Fit on labelled descriptors; ``groups`` (one image id per row) where the scorer
        needs to know which rows share an image (the local k-NN density), else ignored."""
        raise NotImplementedError

    def novelty(self, descriptors: np.ndarray) -> np.ndarray:
        """``(N,)`` novelty of each descriptor: higher is further from the trained classes."""
        raise NotImplementedError

    def class_posteriors(self, descriptors: np.ndarray) -> np.ndarray:
        """``(N, n_classes)`` class probabilities, ignoring "none"."""
        raise NotImplementedError

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        raise NotImplementedError

    # -- shared
    def calibrate(self, held_out: np.ndarray) -> float:
        """Set the threshold from held-out *descriptors* of known classes; returns it."""
        return self.calibrate_novelty(self.novelty(held_out))

    def calibrate_novelty(self, held_out_novelty: np.ndarray) -> float:
        """Set the threshold from novelty scores of held-out crops of known classes."""
        v = np.asarray(held_out_novelty, np.float64)
        if v.size == 0 or not np.isfinite(v).any():
            raise MicrostructureError("no finite held-out scores to calibrate the threshold on")
        q = self.rejection_quantile
        self.novelty_threshold_ = float(np.quantile(v[np.isfinite(v)], 1.0 - q)) if q > 0 else np.inf
        return self.novelty_threshold_

    def rejected(self, descriptors: np.ndarray) -> np.ndarray:
        return self.novelty(descriptors) > self.novelty_threshold_

    def describe(self) -> str:
        """One line for reports: the scorer and its threshold."""
        return f"{self.name}, novelty threshold {self.novelty_threshold_:.3g}"

    def crop_probabilities(self, descriptors: np.ndarray) -> np.ndarray:
        """Per crop: class posteriors, then "none"; a rejected crop is all "none".

        Returns an ``(N, n_classes + 1)`` array whose rows sum to 1.
        """
        x = _check_descriptors(descriptors)
        post = self.class_posteriors(x)
        out = np.zeros((len(x), post.shape[1] + 1))
        out[:, :-1] = post
        rej = self.rejected(x)
        out[rej, :-1] = 0.0
        out[rej, -1] = 1.0
        return out


def _check_descriptors(descriptors: np.ndarray, labels: Optional[np.ndarray] = None) -> np.ndarray:
    x = np.asarray(descriptors, dtype=np.float64)
    if x.ndim != 2 or (labels is not None and len(x) != len(labels)):
        raise MicrostructureError("descriptors must be (N, D) with one label each")
    if not np.isfinite(x).all():
        raise MicrostructureError("descriptors contain NaN or inf; the network diverged: retrain")
    return x


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(1)
    return m + np.log(np.exp(z - m[:, None]).sum(1))


class OpenSetMixture(OpenSetScorer):
    """Class-conditional Gaussian mixture with a log-likelihood threshold.

    Attributes
    ----------
    gmm_ : GaussianMixture
    threshold_ : float
        Crops with ``score_samples < threshold_`` are rejected.
    """

    name = "gmm"

    def __init__(self, reg_covar: float = 1e-3, rejection_quantile: float = 0.1) -> None:
        super().__init__(rejection_quantile)
        self.reg_covar = reg_covar
        self.gmm_: Optional[GaussianMixture] = None

    @property
    def threshold_(self) -> float:
        """Log-likelihood threshold: crops below it are rejected."""
        return -self.novelty_threshold_

    @threshold_.setter
    def threshold_(self, value: float) -> None:
        self.novelty_threshold_ = -float(value)

    def novelty(self, descriptors: np.ndarray) -> np.ndarray:
        return -self.log_likelihood(descriptors)

    def class_posteriors(self, descriptors: np.ndarray) -> np.ndarray:
        self._check()
        return self.gmm_.predict_proba(np.asarray(descriptors, np.float64))

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        return ({"means": self.means_, "covariances": self.covariances_, "weights": self.weights_},
                {"threshold": self.threshold_, "rejection_quantile": self.rejection_quantile})

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> "OpenSetMixture":
        m = cls.from_parameters(arrays["means"], arrays["covariances"], arrays["weights"], meta["threshold"])
        m.rejection_quantile = float(meta.get("rejection_quantile", m.rejection_quantile))
        return m

    @staticmethod
    def from_parameters(means: np.ndarray, covariances: np.ndarray, weights: np.ndarray,
                        threshold: float) -> "OpenSetMixture":
        """Rebuild a fitted mixture from stored parameters."""
        m = OpenSetMixture()
        m.gmm_ = _make_gmm(np.asarray(means, np.float64), np.asarray(covariances, np.float64),
                           np.asarray(weights, np.float64))
        m.threshold_ = float(threshold)
        return m

    def fit(self, descriptors: np.ndarray, labels: np.ndarray, n_classes: int,
            groups: Optional[np.ndarray] = None) -> "OpenSetMixture":
        """Fit one Gaussian per class to labelled descriptors ``(N, D)``."""
        y = np.asarray(labels)
        x = _check_descriptors(descriptors, y)
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
        """Set the threshold from held-out *descriptors* of known classes (rule above).

        Returns the log-likelihood threshold.
        """
        self.calibrate_novelty(self.novelty(held_out))
        return self.threshold_

    def log_likelihood(self, descriptors: np.ndarray) -> np.ndarray:
        self._check()
        return self.gmm_.score_samples(np.asarray(descriptors, np.float64))

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


#: Smallest spread a granulometry column is divided by (units of a crop's intensity range): a size no
#: reference crop resolves (all 0) must not turn a tiny value of a finer image into a huge distance.
GRANULOMETRY_SPREAD_FLOOR = 0.02
#: A reference crop's local spacing is at least this (duplicated crops would divide by 0).
LOCAL_SPACING_FLOOR = 1e-6


class KNNScorer(OpenSetScorer):
    """k-nearest-neighbour distance on L2-normalised descriptors (Sun et al. 2022).

    Parameters
    ----------
    k : int
        The novelty is the distance to the k-th nearest reference descriptor.
    split : int
        With ``split > 0`` each row is a descriptor (the first ``split``
        columns, read by the head or the class-wise distances) followed by the
        features the novelty is measured on (the other columns); 0: both use all.
    normalise : bool
        Compare directions (L2-normalised descriptors, as Sun et al. do with
        cross-entropy features) or raw positions (metric-learning descriptors).
    head_weight, head_bias : arrays, optional
        A linear classifier on the descriptors ``(n_classes, D)``, ``(n_classes,)``;
        its softmax gives the class posteriors. Without it, the posteriors are a
        softmax of minus the nearest distance to each class over ``temperature``.
    scale_weight : float, optional
        A column after the features is each crop's scale (log10 pixels per
        micrometre), not a feature: it is kept out of the normalisation and
        joins the distance times this weight (0: ignored). None: there is no
        such column.
    granulometry_weight : float, optional
        The last :data:`.granulometry.N_VALUES` columns are each crop's
        granulometry in micrometres (:mod:`.granulometry`): kept out of the
        normalisation, standardised by the reference crops' spread (at least
        :data:`GRANULOMETRY_SPREAD_FLOOR`) and joining the distance times
        this weight over the square root of their number. None: there are no
        such columns.
    local : bool
        Divide each distance by the *local spacing* of the reference: the mean,
        over the query's k nearest reference crops, of their own k-th neighbour
        distance measured with the crops of their own image left out (the
        reference density of the local outlier factor, Breunig et al. 2000).
        A crop is then far when it is far *for its neighbourhood*: training
        crops lie sparsely at the ends of the pixel-size range and in varied
        classes, and tightly in uniform ones, so one global distance rejects
        known crops of the first and accepts untrained crops next to the
        second. :meth:`fit` needs ``groups`` (the image of each row) for it;
        without, or for an image holding all but fewer than k rows (one
        labelled image), only the row itself is left out.
    """

    name = "knn"

    def __init__(self, k: int = 10, rejection_quantile: float = 0.1, head_weight=None, head_bias=None,
                 temperature: float = 0.05, normalise: bool = True, split: int = 0,
                 scale_weight: Optional[float] = None, granulometry_weight: Optional[float] = None,
                 local: bool = False) -> None:
        super().__init__(rejection_quantile)
        self.local = bool(local)
        self.reference_density_: Optional[np.ndarray] = None
        for name, value in (("scale_weight", scale_weight), ("granulometry_weight", granulometry_weight)):
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise MicrostructureError(f"{name} must be a finite number >= 0, got {value}")
        self.scale_weight = None if scale_weight is None else float(scale_weight)
        self.granulometry_weight = None if granulometry_weight is None else float(granulometry_weight)
        self.granulometry_mean_: Optional[np.ndarray] = None
        self.granulometry_spread_: Optional[np.ndarray] = None
        self.normalise = bool(normalise)
        self.split = int(split)
        if int(k) < 1:
            raise MicrostructureError(f"k must be at least 1, got {k}")
        self.k = int(k)
        self.head_weight = None if head_weight is None else np.asarray(head_weight, np.float64)
        self.head_bias = None if head_bias is None else np.asarray(head_bias, np.float64)
        self.temperature = float(temperature)
        self.reference_: Optional[np.ndarray] = None
        self.reference_labels_: Optional[np.ndarray] = None
        self._tree = None

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        if not self.normalise:
            return x
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def _n_granulometry(self) -> int:
        from .granulometry import N_VALUES

        return 0 if self.granulometry_weight is None else N_VALUES

    def _novelty_space(self, x: np.ndarray) -> np.ndarray:
        """The columns the novelty distance is measured on: the normalised features, then the
        weighted scale and the weighted, standardised granulometry where the rows have them."""
        n_g = self._n_granulometry()
        end = x.shape[1] - n_g - (self.scale_weight is not None)
        parts = [self._normalise(x[:, self.split:end])]
        if self.scale_weight is not None:
            parts.append(self.scale_weight * x[:, end:end + 1])
        if n_g:
            g = (x[:, -n_g:] - self.granulometry_mean_) / self.granulometry_spread_
            parts.append(g * (self.granulometry_weight / np.sqrt(n_g)))
        return np.concatenate(parts, axis=1)

    def fit(self, descriptors, labels, n_classes, groups=None, density=None) -> "KNNScorer":
        """``groups``: the image of each row (for ``local``); ``density``: the rows' local
        spacing computed beforehand on a superset (:func:`cross_validated_novelty` passes it,
        so that the folds do not each recompute it)."""
        from scipy.spatial import cKDTree

        y = np.asarray(labels, np.int64)
        x = _check_descriptors(descriptors, y)
        for c in range(n_classes):
            if (y == c).sum() < 1:
                raise MicrostructureError(f"class {c} has no descriptors; the scorer needs some of every class")
        if len(x) <= self.k:
            raise MicrostructureError(f"k={self.k} needs more than {self.k} reference descriptors, got {len(x)}")
        self.n_classes_ = int(n_classes)
        self.reference_ = x
        self.reference_labels_ = y
        n_g = self._n_granulometry()
        if n_g:
            g = x[:, -n_g:]
            self.granulometry_mean_ = g.mean(0)
            self.granulometry_spread_ = np.maximum(g.std(0), GRANULOMETRY_SPREAD_FLOOR)
        space = self._novelty_space(x)
        self._tree = cKDTree(space)
        if self.local:
            if density is None:
                density = self._spacing(space, groups)
            density = np.asarray(density, np.float64).reshape(-1)
            if len(density) != len(x) or not np.isfinite(density).all():
                raise MicrostructureError(
                    f"the k-NN scorer's reference spacing has {len(density)} finite values for {len(x)} "
                    "reference crops; the model file is damaged: train the model again")
            self.reference_density_ = np.maximum(density, LOCAL_SPACING_FLOOR)
        post = self._normalise(x[:, : self.split] if self.split else x)
        self._class_trees = [cKDTree(post[y == c]) for c in range(n_classes)]
        return self

    def _check(self) -> None:
        if self.reference_ is None:
            raise MicrostructureError("the k-NN scorer is not fitted")

    def novelty(self, descriptors) -> np.ndarray:
        self._check()
        d, i = self._tree.query(self._novelty_space(_check_descriptors(descriptors)), k=self.k)
        d, i = d.reshape(len(d), -1), i.reshape(len(i), -1)
        if not self.local:
            return d[:, -1]
        return d[:, -1] / self.reference_density_[i].mean(1)

    def _spacing(self, space: np.ndarray, groups) -> np.ndarray:
        """Each row's k-th neighbour distance among the rows of other groups (images)."""
        n = len(space)
        g = np.arange(n) if groups is None else np.asarray(groups).reshape(-1)
        if len(g) != n:
            raise MicrostructureError(f"{len(g)} image ids for {n} reference crops; give one per crop")
        if n <= self.k:
            raise MicrostructureError(f"k={self.k} needs more than {self.k} reference descriptors, got {n}")
        _, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
        # an image holding all but fewer than k crops (one labelled image with scribbles) can only
        # leave its row out: the threshold there is calibrated on the image itself anyway
        g = np.where(n - counts[inverse] >= self.k, inverse, -1 - np.arange(n))
        sq = (space ** 2).sum(1)
        out = np.empty(n)
        for start in range(0, n, 1024):      # brute force: in these dimensions a tree does not prune
            a = slice(start, min(n, start + 1024))
            d2 = sq[a, None] + sq[None] - 2.0 * space[a] @ space.T
            d2[g[a, None] == g[None]] = np.inf
            d2[np.arange(a.stop - a.start), np.arange(a.start, a.stop)] = np.inf
            out[a] = np.sqrt(np.maximum(np.partition(d2, self.k - 1, axis=1)[:, self.k - 1], 0.0))
        return out

    def class_posteriors(self, descriptors) -> np.ndarray:
        self._check()
        x = _check_descriptors(descriptors)
        if self.head_weight is not None:     # the head reads the descriptor, the first columns
            return _softmax(x[:, : self.head_weight.shape[1]] @ self.head_weight.T + self.head_bias)
        z = self._normalise(x[:, : self.split] if self.split else x)
        dist = np.stack([t.query(z, k=1)[0] for t in self._class_trees], 1)
        return _softmax(-dist / self.temperature)

    def state(self):
        arrays = {"reference": self.reference_.astype(np.float32), "reference_labels": self.reference_labels_}
        if self.local:
            arrays["reference_density"] = self.reference_density_.astype(np.float32)
        if self.head_weight is not None:
            arrays.update(head_weight=self.head_weight, head_bias=self.head_bias)
        return arrays, {"k": self.k, "threshold": self.novelty_threshold_, "n_classes": self.n_classes_,
                        "normalise": self.normalise, "split": self.split, "scale_weight": self.scale_weight,
                        "granulometry_weight": self.granulometry_weight, "local": self.local,
                        "temperature": self.temperature, "rejection_quantile": self.rejection_quantile}

    @classmethod
    def from_state(cls, arrays, meta) -> "KNNScorer":
        s = cls(int(meta["k"]), float(meta["rejection_quantile"]), arrays.get("head_weight"),
                arrays.get("head_bias"), float(meta["temperature"]), bool(meta.get("normalise", True)),
                int(meta.get("split", 0)), meta.get("scale_weight"), meta.get("granulometry_weight"),
                bool(meta.get("local", False)))
        ref = np.asarray(arrays["reference"], np.float64)
        if s.local and "reference_density" not in arrays:
            raise MicrostructureError("the model file's k-NN scorer lacks its reference spacing; it is damaged: "
                                      "train the model again")
        s.fit(ref, np.asarray(arrays["reference_labels"]), int(meta["n_classes"]),
              density=arrays.get("reference_density"))
        s.novelty_threshold_ = float(meta["threshold"])
        return s


class MahalanobisScorer(OpenSetScorer):
    """Class means with one shared covariance; novelty = smallest squared Mahalanobis distance."""

    name = "mahalanobis"

    def __init__(self, rejection_quantile: float = 0.1, reg_covar: float = 1e-4, split: int = 0) -> None:
        super().__init__(rejection_quantile)
        self.reg_covar = float(reg_covar)
        self.split = int(split)     # uses the columns from ``split`` on (see KNNScorer)
        self.means_: Optional[np.ndarray] = None

    def fit(self, descriptors, labels, n_classes, groups=None) -> "MahalanobisScorer":
        y = np.asarray(labels, np.int64)
        x = _check_descriptors(descriptors, y)[:, self.split:]
        means = np.zeros((n_classes, x.shape[1]))
        for c in range(n_classes):
            if (y == c).sum() < 2:
                raise MicrostructureError(f"class {c} has {(y == c).sum()} descriptors; at least 2 are needed")
            means[c] = x[y == c].mean(0)
        centred = x - means[y]
        cov = centred.T @ centred / max(1, len(x) - n_classes)
        cov += self.reg_covar * np.trace(cov) / len(cov) * np.eye(len(cov)) + 1e-9 * np.eye(len(cov))
        self._set(means, np.linalg.inv(cov))
        return self

    def _set(self, means, precision) -> None:
        self.means_ = np.asarray(means, np.float64)
        self.precision_ = np.asarray(precision, np.float64)

    def _d2(self, x) -> np.ndarray:
        if self.means_ is None:
            raise MicrostructureError("the Mahalanobis scorer is not fitted")
        diff = _check_descriptors(x)[:, self.split:][:, None, :] - self.means_[None]
        return np.einsum("nkd,de,nke->nk", diff, self.precision_, diff)

    def novelty(self, descriptors) -> np.ndarray:
        return self._d2(descriptors).min(1)

    def class_posteriors(self, descriptors) -> np.ndarray:
        return _softmax(-0.5 * self._d2(descriptors))

    def state(self):
        return ({"means": self.means_, "precision": self.precision_},
                {"threshold": self.novelty_threshold_, "rejection_quantile": self.rejection_quantile,
                 "split": self.split})

    @classmethod
    def from_state(cls, arrays, meta) -> "MahalanobisScorer":
        s = cls(float(meta["rejection_quantile"]), split=int(meta.get("split", 0)))
        s._set(arrays["means"], arrays["precision"])
        s.novelty_threshold_ = float(meta["threshold"])
        return s


class EnergyScorer(OpenSetScorer):
    """Energy of a linear classifier head: novelty = ``-logsumexp(W f + b)`` (Liu et al. 2020)."""

    name = "energy"

    def __init__(self, head_weight=None, head_bias=None, rejection_quantile: float = 0.1) -> None:
        super().__init__(rejection_quantile)
        if head_weight is None:
            raise MicrostructureError(
                "the energy scorer needs a classifier head; train with loss='cross-entropy' "
                "or choose scorer='knn' or 'mahalanobis'")
        self.head_weight = np.asarray(head_weight, np.float64)
        self.head_bias = np.asarray(head_bias, np.float64)

    def fit(self, descriptors, labels, n_classes, groups=None) -> "EnergyScorer":
        return self

    def _logits(self, x) -> np.ndarray:
        x = _check_descriptors(x)
        return x[:, : self.head_weight.shape[1]] @ self.head_weight.T + self.head_bias

    def novelty(self, descriptors) -> np.ndarray:
        return -_logsumexp(self._logits(descriptors))

    def class_posteriors(self, descriptors) -> np.ndarray:
        return _softmax(self._logits(descriptors))

    def state(self):
        return ({"head_weight": self.head_weight, "head_bias": self.head_bias},
                {"threshold": self.novelty_threshold_, "rejection_quantile": self.rejection_quantile})

    @classmethod
    def from_state(cls, arrays, meta) -> "EnergyScorer":
        s = cls(arrays["head_weight"], arrays["head_bias"], float(meta["rejection_quantile"]))
        s.novelty_threshold_ = float(meta["threshold"])
        return s


class EnsembleScorer(OpenSetScorer):
    """A crop is "none of these" when any member rejects it; class posteriors from the first member.

    Members are fitted, calibrated scorers, each reading its own columns (all of
    them, or the first ``columns``: the descriptors). The novelty is the largest
    member novelty on a common scale, ``(novelty - threshold) / (threshold -
    median)`` of that member's held-out novelty: 0 at a member's threshold, -1 at
    its median. So the threshold is 0, and ``rejected`` is the OR of the members.

    The micrograph default (``scorer="ensemble"``): k-NN distance on frozen
    ImageNet features (against the local spacing) OR the paper's per-class
    Gaussians on the descriptors, which reject 2 % of held-out known crops; the
    Gaussians catch untrained textures of small models that the neighbours miss
    (docs/benchmarks.md, "Local spacing").

    Parameters
    ----------
    members : list of (OpenSetScorer, int or None)
        Fitted and calibrated scorers with the columns they read (None: all).
    scales : list of float
        Per member, its threshold minus the median of its held-out novelty (> 0).
    """

    name = "ensemble"

    def __init__(self, members, scales, rejection_quantile: float = 0.1) -> None:
        super().__init__(rejection_quantile)
        if len(members) < 1 or len(members) != len(scales):
            raise MicrostructureError("an ensemble needs at least one member and one scale per member")
        self.members = [(m, None if c is None else int(c)) for m, c in members]
        self.scales = [max(float(v), 1e-12) for v in scales]
        self.novelty_threshold_ = 0.0

    @staticmethod
    def _cols(x: np.ndarray, columns: Optional[int]) -> np.ndarray:
        return x if columns is None else x[:, :columns]

    def fit(self, descriptors, labels, n_classes, groups=None) -> "EnsembleScorer":
        """Refit every member on its columns (their thresholds stay)."""
        x = _check_descriptors(descriptors, labels)
        for m, c in self.members:
            thr = m.novelty_threshold_
            m.fit(self._cols(x, c), labels, n_classes, groups=groups)
            m.novelty_threshold_ = thr
        return self

    def novelty(self, descriptors) -> np.ndarray:
        x = _check_descriptors(descriptors)
        z = [(m.novelty(self._cols(x, c)) - m.novelty_threshold_) / s
             for (m, c), s in zip(self.members, self.scales)]
        return np.max(np.stack(z), axis=0)

    def class_posteriors(self, descriptors) -> np.ndarray:
        m, c = self.members[0]
        return m.class_posteriors(self._cols(_check_descriptors(descriptors), c))

    def state(self):
        arrays, metas = {}, []
        for i, (m, c) in enumerate(self.members):
            a, meta = m.state()
            arrays.update({f"m{i}.{k}": v for k, v in a.items()})
            metas.append({"name": m.name, "columns": c, "meta": meta})
        return arrays, {"members": metas, "scales": self.scales, "rejection_quantile": self.rejection_quantile,
                        "threshold": 0.0}

    @classmethod
    def from_state(cls, arrays, meta) -> "EnsembleScorer":
        members = []
        for i, m in enumerate(meta["members"]):
            prefix = f"m{i}."
            own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            members.append((scorer_from_state(m["name"], own, m["meta"]), m["columns"]))
        return cls(members, meta["scales"], float(meta.get("rejection_quantile", 0.1)))

    def describe(self) -> str:
        return " OR ".join(f"[{m.describe()}]" for m, _ in self.members)

    @staticmethod
    def scale_of(member: OpenSetScorer, held_out_novelty: np.ndarray) -> float:
        """The member's threshold minus the median of its held-out novelty."""
        v = np.asarray(held_out_novelty, np.float64)
        v = v[np.isfinite(v)]
        return float(member.novelty_threshold_ - np.median(v)) if v.size else 1.0


SCORERS = {"ensemble": EnsembleScorer, "gmm": OpenSetMixture, "knn": KNNScorer, "mahalanobis": MahalanobisScorer,
           "energy": EnergyScorer}


def make_scorer(name: str, rejection_quantile: float = 0.1, head=None, k: int = 10,
                normalise: bool = True, split: int = 0, scale_weight: Optional[float] = None,
                granulometry_weight: Optional[float] = None, local: bool = False) -> OpenSetScorer:
    """A new, unfitted scorer by name; ``head`` is ``(weight, bias)`` of a linear classifier or None.

    ``k``, ``normalise``, ``split``, ``scale_weight``, ``granulometry_weight`` and ``local`` are the
    k-NN scorer's (see :class:`KNNScorer`); the Mahalanobis scorer also reads the columns
    from ``split`` on (the scale and granulometry columns among them).
    """
    if name not in SCORERS or name == "ensemble":
        raise MicrostructureError(f"unknown scorer {name!r}; choose one of {', '.join(n for n in SCORERS if n != 'ensemble')}"
                                  " (an ensemble is built from fitted members: EnsembleScorer)")
    w, b = (None, None) if head is None else head
    if name == "gmm":
        return OpenSetMixture(rejection_quantile=rejection_quantile)
    if name == "knn":
        return KNNScorer(k, rejection_quantile, w, b, normalise=normalise, split=split, scale_weight=scale_weight,
                         granulometry_weight=granulometry_weight, local=local)
    if name == "mahalanobis":
        return MahalanobisScorer(rejection_quantile, split=split)
    return EnergyScorer(w, b, rejection_quantile)


def scorer_from_state(name: str, arrays: dict, meta: dict) -> OpenSetScorer:
    """Rebuild a fitted scorer from :meth:`OpenSetScorer.state`."""
    if name not in SCORERS:
        raise MicrostructureError(f"unknown scorer {name!r} in the model file; choose one of {', '.join(SCORERS)}")
    return SCORERS[name].from_state({k: np.asarray(v) for k, v in arrays.items()}, meta)


def cross_validated_novelty(scorer: OpenSetScorer, descriptors: np.ndarray, labels: np.ndarray,
                            groups: np.ndarray, score: np.ndarray, n_classes: int) -> np.ndarray:
    """Novelty of the crops marked ``score``, each image's crops scored with that image left out.

    For each group (image) ``g`` holding crops to score, the scorer is fitted on
    every crop of the other images and scores ``g``'s marked crops; so no crop is
    scored by a scorer fitted on its own image. A class that only ``g`` holds
    (possible with scribbles) is represented by ``g``'s unmarked crops of it.
    The scorer is left fitted on the last fold: refit it on everything afterwards.

    Returns
    -------
    numpy.ndarray
        ``(score.sum(),)`` novelty, in the order of the marked crops.
    """
    x = np.asarray(descriptors, np.float64)
    y = np.asarray(labels, np.int64)
    groups = np.asarray(groups)
    score = np.asarray(score, bool)
    out = np.full(len(x), np.nan)
    fold_kw = {}
    if getattr(scorer, "local", False):
        # the reference crops' local spacing, each with its own image left out, once on every
        # crop; a fold reuses it (the left-out image may have been a neighbour: a small bias)
        scorer.fit(x, y, n_classes, groups=groups)
        fold_kw["density"] = scorer.reference_density_
    for g in np.unique(groups[score]):
        own = groups == g
        keep = ~own
        for c in range(n_classes):
            if not (keep & (y == c)).any():
                keep = keep | (own & ~score & (y == c))
        scorer.fit(x[keep], y[keep], n_classes, **{k: v[keep] for k, v in fold_kw.items()})
        sel = own & score
        out[sel] = scorer.novelty(x[sel])
    return out[score]
