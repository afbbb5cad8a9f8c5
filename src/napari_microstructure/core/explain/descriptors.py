"""The descriptor map: training descriptors, the mixture's contours, and new crops.

As in Larmuseau et al. (2020, 2021): every training crop's descriptor,
coloured by class, over the Gaussian mixture's log-likelihood, with the
outlier threshold as a contour; the crops of a new image are placed on it.

Two-dimensional descriptors are drawn as they are, and the log-likelihood on
the grid is the model's own, so a point outside the threshold contour is a
point the model rejects ("none").

Descriptors of more than two dimensions are projected on their first two
principal components (PCA of the training descriptors; the explained
variance is reported). The contours are then those of the *projected*
mixture (each Gaussian's mean and covariance projected on the plane), and its
threshold is set so that it rejects the same share of the validation
descriptors as the full model does. Points are marked by the full model's
decision, which near the contour may differ from what the projection suggests.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Any, Optional, Union

import numpy as np
from ..errors import MicrostructureError
from ..nn.progress import CancelToken, ProgressCallback, check_cancel, report
from .adapters import check_fitted


@dataclasses.dataclass
class ImageCrops:
    """Crops of one image as the model sees them, with the model's verdict.

    Attributes
    ----------
    crops : numpy.ndarray (n, S, S)
        Network inputs, grey in [0, 1].
    centres_px : numpy.ndarray (n, 2)
        Crop centres (row, column) in the image's pixels.
    size_px : numpy.ndarray (n,)
        Crop sides in the image's pixels.
    fov_um : numpy.ndarray (n,)
    descriptors : numpy.ndarray (n, D)
    log_likelihood : numpy.ndarray (n,)
    probabilities : numpy.ndarray (n, n_classes + 1)
        Classes then "none" (a rejected crop is all "none").
    accepted : numpy.ndarray (n,) bool
        The model's own verdict: not rejected by its open-set scorer (with the
        default ensemble a crop inside the mixture's contour can still be
        rejected by the k-NN distance on frozen ImageNet features).
    """

    crops: np.ndarray
    centres_px: np.ndarray
    size_px: np.ndarray
    fov_um: np.ndarray
    descriptors: np.ndarray
    log_likelihood: np.ndarray
    probabilities: np.ndarray
    accepted: np.ndarray


def sample_image_crops(classifier: Any, image: Any, pixel_size: float, n_crops: int = 64,
                       seed: int = 0, *, cancel: Optional[CancelToken] = None) -> ImageCrops:
    """Random crops of ``image`` (no augmentation) with their descriptors and the model's verdict.

    The crops of :meth:`FewShotClassifier.crop_predictions` (fields of view
    drawn log-uniformly within the model's training range, clipped to the
    image) without augmentation, kept so that they can be shown.
    """
    check_fitted(classifier)
    if int(n_crops) < 1:
        raise MicrostructureError(f"n_crops={n_crops}; give at least 1")
    out = classifier.crop_predictions(image, pixel_size, int(n_crops), augment=False, seed=seed,
                                      keep_crops=True, cancel=cancel)
    ll = out["log_likelihood"]
    return ImageCrops(out["crops"], out["centres_px"], out["size_px"], out["fov_um"], out["descriptors"], ll,
                      out["probabilities"], out["probabilities"][:, -1] < 1.0)


@dataclasses.dataclass
class DescriptorMap:
    """Everything :func:`~.plots.plot_descriptor_map` draws.

    Attributes
    ----------
    classes : list of str
    training_descriptors : (N, D), training_labels : (N,)
    training_xy : (N, 2)
        Training descriptors in the plotted plane.
    projection : (2, D) or None
        PCA axes (rows) when D > 2; ``xy = (d - mean) @ projection.T``.
    projection_mean : (D,) or None
    explained_variance_ratio : (2,) or None
        Share of the descriptors' variance along each plotted axis.
    grid_x, grid_y : (G,), (G,)
    log_likelihood : (G, G)
        Mixture log-likelihood on the grid (rows follow ``grid_y``).
    threshold : float
        Contour level: the model's threshold (D = 2) or the projected
        mixture's matched threshold (D > 2; see the module docstring).
    model_threshold : float
        The model's own threshold.
    means_xy : (K, 2)
        Class centres in the plane.
    crops : ImageCrops or None
    scorer : str
        The model's open-set scorer: the contour is its rule only for ``"gmm"``
        (one of its two rules for ``"ensemble"``).
    crops_xy : (n, 2) or None
    """

    classes: list
    training_descriptors: np.ndarray
    training_labels: np.ndarray
    training_xy: np.ndarray
    projection: Optional[np.ndarray]
    projection_mean: Optional[np.ndarray]
    explained_variance_ratio: Optional[np.ndarray]
    grid_x: np.ndarray
    grid_y: np.ndarray
    log_likelihood: np.ndarray
    threshold: float
    model_threshold: float
    means_xy: np.ndarray
    crops: Optional[ImageCrops] = None
    crops_xy: Optional[np.ndarray] = None
    scorer: str = "gmm"

    @property
    def dimension(self) -> int:
        return int(self.training_descriptors.shape[1])

    def project(self, descriptors: np.ndarray) -> np.ndarray:
        """Descriptors ``(n, D)`` -> points ``(n, 2)`` in the plotted plane."""
        d = np.asarray(descriptors, np.float64)
        if self.projection is None:
            return d[:, :2].copy()
        return (d - self.projection_mean) @ self.projection.T

    def nearest_crop(self, x: float, y: float) -> Optional[int]:
        """Index of the image crop nearest to a point of the plot (None without crops)."""
        if self.crops_xy is None or len(self.crops_xy) == 0:
            return None
        return int(np.argmin(((self.crops_xy - [x, y]) ** 2).sum(1)))

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        """One row per point: source, class, plotted x, y, log-likelihood, accepted, descriptor."""
        D = self.dimension
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            if self.explained_variance_ratio is not None:
                w.writerow([f"# PCA of {D}-D descriptors; explained variance ratio "
                            f"{self.explained_variance_ratio[0]:.4f} {self.explained_variance_ratio[1]:.4f}"])
            w.writerow([f"# threshold {self.threshold:.6g} (model threshold {self.model_threshold:.6g})"])
            w.writerow(["source", "class", "x", "y", "log_likelihood", "accepted"]
                       + [f"d{i}" for i in range(D)])
            for (px, py), k, d in zip(self.training_xy, self.training_labels, self.training_descriptors):
                w.writerow(["training", self.classes[int(k)], f"{px:.6g}", f"{py:.6g}", "", ""]
                           + [f"{v:.6g}" for v in d])
            if self.crops is not None:
                c = self.crops
                names = list(self.classes) + ["none"]
                for i, ((px, py), d) in enumerate(zip(self.crops_xy, c.descriptors)):
                    w.writerow(["image crop", names[int(np.argmax(c.probabilities[i]))], f"{px:.6g}",
                                f"{py:.6g}", f"{c.log_likelihood[i]:.6g}", int(c.accepted[i])]
                               + [f"{v:.6g}" for v in d])


def _gauss_ll(points: np.ndarray, means: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Log-likelihood of a full-covariance mixture at points ``(n, d)``."""
    n, d = points.shape
    out = np.empty((len(means), n))
    for k, (m, c, w) in enumerate(zip(means, covs, weights)):
        chol = np.linalg.cholesky(c)
        z = np.linalg.solve(chol, (points - m).T)
        out[k] = (math.log(w) - 0.5 * (z ** 2).sum(0) - np.log(np.diag(chol)).sum()
                  - 0.5 * d * math.log(2 * math.pi))
    mx = out.max(0)
    return mx + np.log(np.exp(out - mx).sum(0))


def _rule_threshold(classifier: Any) -> float:
    """The log-likelihood threshold the model's rule applies to the Gaussians: the ensemble
    member's own (it rejects ``ensemble_mixture_quantile`` of held-out known crops), else ``mixture_``'s."""
    for member, _ in getattr(getattr(classifier, "scorer_", None), "members", []):
        if hasattr(member, "gmm_"):
            return float(member.threshold_)
    return float(classifier.mixture_.threshold_)


def descriptor_map(classifier: Any, image: Any = None, pixel_size: Optional[float] = None,
                   n_crops: int = 64, grid_size: int = 150, margin: float = 0.15, seed: int = 0, *,
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None) -> DescriptorMap:
    """Training descriptors, the mixture's log-likelihood and threshold, and an image's crops.

    Parameters
    ----------
    classifier : FewShotClassifier
        A fitted (or loaded) micrograph classifier with two or more descriptor dimensions.
    image : 2-D array, optional
        Place ``n_crops`` random crops of it on the map.
    pixel_size : float
        Micrometres per pixel of ``image``.
    n_crops : int
    grid_size : int
        Points per side of the log-likelihood grid.
    margin : float
        Extra space around the points, as a fraction of their range.
    seed : int
    progress, cancel

    Returns
    -------
    DescriptorMap
    """
    check_fitted(classifier)
    if not hasattr(classifier, "mixture_"):
        raise MicrostructureError(
            f"a descriptor map needs a micrograph model (FewShotClassifier); a {type(classifier).__name__} "
            "has no descriptors: use feature reduction or attributions for it")
    train = np.asarray(classifier.training_descriptors_, np.float64)
    labels = np.asarray(classifier.training_labels_, np.int64)
    D = train.shape[1]
    if D < 2:
        raise MicrostructureError(
            "the model's descriptors have one dimension, which cannot be drawn as a map; train with "
            "embedding_dim=2 or more (Larmuseau et al. use 2)")
    report(progress, "descriptor map", 0, 2, "projecting descriptors")
    mix = classifier.mixture_
    means, covs, weights = mix.means_, mix.covariances_, mix.weights_
    model_threshold = _rule_threshold(classifier)
    if D == 2:
        proj = mean = evr = None
        xy = train.copy()
        means_xy = means.copy()
        threshold = model_threshold
        ll_fn = mix.log_likelihood
        if not np.isfinite(threshold):       # Gaussians that reject nothing: the contour encloses every point
            threshold = float(ll_fn(train).min() - 1.0)
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2).fit(train)
        proj, mean, evr = pca.components_, pca.mean_, pca.explained_variance_ratio_
        xy = (train - mean) @ proj.T
        means_xy = (means - mean) @ proj.T
        covs_xy = np.einsum("id,kde,je->kij", proj, covs, proj)
        val = np.asarray(getattr(classifier, "validation_descriptors_", train), np.float64)
        rejected = float(np.mean(mix.log_likelihood(val) < model_threshold))
        val_ll = _gauss_ll((val - mean) @ proj.T, means_xy, covs_xy, weights)
        threshold = float(np.quantile(val_ll, rejected)) if rejected > 0 else float(val_ll.min() - 1.0)

        def ll_fn(points: np.ndarray) -> np.ndarray:
            return _gauss_ll(points, means_xy, covs_xy, weights)

    crops = crops_xy = None
    if image is not None:
        if pixel_size is None:
            raise MicrostructureError("an image needs its pixel_size in micrometres per pixel")
        report(progress, "descriptor map", 1, 2, f"describing {n_crops} crops of the image")
        crops = sample_image_crops(classifier, image, pixel_size, n_crops, seed, cancel=cancel)
        crops_xy = crops.descriptors[:, :2].astype(np.float64) if D == 2 else (crops.descriptors - mean) @ proj.T
    check_cancel(cancel)
    pts = np.concatenate([xy, means_xy] + ([crops_xy] if crops_xy is not None else []))
    lo, hi = pts.min(0), pts.max(0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - margin * span, hi + margin * span
    gx = np.linspace(lo[0], hi[0], int(grid_size))
    gy = np.linspace(lo[1], hi[1], int(grid_size))
    X, Y = np.meshgrid(gx, gy)
    ll = ll_fn(np.stack([X.ravel(), Y.ravel()], 1)).reshape(X.shape)
    report(progress, "descriptor map", 2, 2, "done")
    return DescriptorMap(
        classes=[str(c) for c in classifier.classes_], training_descriptors=train.astype(np.float32), training_labels=labels,
        training_xy=xy, projection=proj, projection_mean=mean, explained_variance_ratio=evr,
        grid_x=gx, grid_y=gy, log_likelihood=ll, threshold=threshold,
        model_threshold=model_threshold, means_xy=means_xy, crops=crops, crops_xy=crops_xy,
        scorer=str(getattr(classifier, "scorer", "gmm")),
    )
