"""Model adapters: one interface over micrograph and EBSD classifiers.

Every explanation in :mod:`napari_microstructure.core.explain` talks to a
model through a :class:`ModelAdapter`: a differentiable torch callable that
maps a batch of network inputs ``(B, 1, S, S)`` (grey values in [0, 1]) to
class scores ``(B, n_classes)``, plus how to turn the user's data (a crop, an
image, an EBSD pattern) into such an input and how to read the backbone.

- :class:`MicrographAdapter` wraps a fitted
  :class:`~napari_microstructure.core.micrograph.fewshot.FewShotClassifier`. Its class
  score is computed from the descriptor by :class:`GaussianMixtureHead`, a
  differentiable copy of the open-set mixture: the log posterior of the class
  (default) or the class's log joint likelihood ``log w_k + log N(f | mu_k,
  Sigma_k)``.
- :class:`EBSDAdapter` wraps a fitted
  :class:`~napari_microstructure.core.ebsd.classifier.EBSDClassifier`: the log
  of the ensemble-averaged softmax probability (or the logits of one member).
- :class:`TorchAdapter` wraps any ``torch.nn.Module`` returning class scores.

:func:`as_adapter` picks the right one.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..base import Estimator, check_is_fitted
from ..choices import BACKBONES
from ..errors import MicrostructureError, NotFittedError

MICROGRAPH_SCORES = ("log-posterior", "log-joint")
EBSD_SCORES = ("log-probability", "probability", "logit")


class GaussianMixtureHead(nn.Module):
    """Differentiable class scores of a full-covariance Gaussian mixture.

    Built from the mixture's means ``(K, D)``, Cholesky factors of the
    precisions ``(K, D, D)`` (scikit-learn's ``precisions_cholesky_``) and
    weights ``(K,)``; it reproduces ``GaussianMixture.score_samples`` and
    ``predict_proba`` in torch so gradients flow back to the image.

    Parameters
    ----------
    means, precisions_cholesky, weights : numpy.ndarray
    score : {"log-posterior", "log-joint"}
        ``"log-posterior"``: ``log p(k | f)``; ``"log-joint"``: ``log w_k +
        log N(f | k)`` (the class's log-likelihood, in nats).
    """

    def __init__(self, means: np.ndarray, precisions_cholesky: np.ndarray, weights: np.ndarray,
                 score: str = "log-posterior") -> None:
        super().__init__()
        if score not in MICROGRAPH_SCORES:
            raise MicrostructureError(
                f"unknown score {score!r}; choose one of {', '.join(MICROGRAPH_SCORES)}")
        self.score = score
        self.register_buffer("means", torch.as_tensor(np.asarray(means), dtype=torch.float64))
        self.register_buffer("prec_chol", torch.as_tensor(np.asarray(precisions_cholesky), dtype=torch.float64))
        self.register_buffer("log_weights", torch.log(torch.as_tensor(np.asarray(weights), dtype=torch.float64)))

    @classmethod
    def from_mixture(cls, mixture: Any, score: str = "log-posterior") -> "GaussianMixtureHead":
        """From an :class:`~napari_microstructure.core.micrograph.openset.OpenSetMixture` or a GaussianMixture."""
        gmm = getattr(mixture, "gmm_", mixture)
        if gmm is None or not hasattr(gmm, "precisions_cholesky_"):
            raise NotFittedError("the Gaussian mixture is not fitted; fit or load the classifier first")
        return cls(gmm.means_, gmm.precisions_cholesky_, gmm.weights_, score)

    def log_joint(self, descriptors: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(f | k)`` for descriptors ``(B, D)`` -> ``(B, K)`` (float64)."""
        x = descriptors.to(torch.float64)
        d = x.shape[1]
        # y_k = (x - mu_k) @ L_k  with L_k the precision Cholesky factor
        y = torch.einsum("bd,kde->bke", x, self.prec_chol) - torch.einsum(
            "kd,kde->ke", self.means, self.prec_chol)[None]
        log_det = torch.log(torch.diagonal(self.prec_chol, dim1=1, dim2=2)).sum(1)
        log_norm = -0.5 * d * math.log(2 * math.pi) + log_det - 0.5 * (y ** 2).sum(2)
        return log_norm + self.log_weights[None]

    def log_likelihood(self, descriptors: torch.Tensor) -> torch.Tensor:
        """The mixture's log-likelihood ``(B,)``, as ``score_samples``."""
        return torch.logsumexp(self.log_joint(descriptors), dim=1)

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        joint = self.log_joint(descriptors)
        if self.score == "log-joint":
            return joint
        return joint - torch.logsumexp(joint, dim=1, keepdim=True)


class ModelAdapter:
    """What the explanations need from a model.

    Attributes
    ----------
    kind : str
        ``"micrograph"``, ``"ebsd"`` or ``"torch"``.
    classes : list
        Class labels, in the order of the score columns.
    input_size : int
        Side ``S`` of the square network input.
    score_name : str
        What the scores are (for axis labels).
    """

    kind = "torch"
    score_name = "score"

    def __init__(self, classes: Sequence[Any], input_size: int) -> None:
        self.classes = list(classes)
        self.input_size = int(input_size)

    # -- the differentiable model ---------------------------------------
    def forward(self, x: torch.Tensor, *extra: Any) -> torch.Tensor:
        """Class scores ``(B, n_classes)`` of inputs ``(B, 1, S, S)`` in [0, 1]."""
        raise NotImplementedError

    def backbones(self) -> list[nn.Module]:
        """The feature extractors (one per ensemble member), each with ``prepare``/``forward_features``."""
        raise NotImplementedError

    def member_modules(self) -> list[nn.Module]:
        """Modules whose parameters the explanations read (for the device and eval mode)."""
        return self.backbones()

    @property
    def device(self) -> torch.device:
        for m in self.member_modules():
            for p in m.parameters():
                return p.device
        return torch.device("cpu")

    # -- classes ----------------------------------------------------------
    def class_index(self, target: Any) -> int:
        """Column of ``target`` (a class label; or an index when labels are not integers)."""
        for i, c in enumerate(self.classes):
            if _same_label(c, target):
                return i
        all_int = all(isinstance(c, (int, np.integer)) for c in self.classes)
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and not all_int:
            if 0 <= int(target) < len(self.classes):
                return int(target)
        raise MicrostructureError(
            f"the model does not know the class {target!r}; choose one of "
            f"{', '.join(map(str, self.classes))} (or target=None for the predicted class)"
        )


def _same_label(a: Any, b: Any) -> bool:
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        return int(a) == int(b)
    return str(a) == str(b) and type(b) is not bool and not isinstance(b, (int, np.integer))


class TorchAdapter(ModelAdapter):
    """Any module mapping ``(B, 1, S, S)`` inputs in [0, 1] to class scores.

    Parameters
    ----------
    module : torch.nn.Module
    classes : sequence
        One label per score column.
    input_size : int
    backbone : torch.nn.Module, optional
        For kernels and feature maps; default ``module``.
    """

    kind = "torch"

    def __init__(self, module: nn.Module, classes: Sequence[Any], input_size: int,
                 backbone: Optional[nn.Module] = None) -> None:
        super().__init__(classes, input_size)
        self.module = module.eval()
        self.backbone = backbone if backbone is not None else module

    def forward(self, x: torch.Tensor, *extra: Any) -> torch.Tensor:
        return self.module(x, *extra)

    def backbones(self) -> list[nn.Module]:
        return [self.backbone]

    def member_modules(self) -> list[nn.Module]:
        return [self.module]


class MicrographAdapter(ModelAdapter):
    """A fitted :class:`FewShotClassifier` as ``(crop, log10 px/um) -> class scores``.

    Parameters
    ----------
    classifier : FewShotClassifier
    score : {"log-posterior", "log-joint"}
        See :class:`GaussianMixtureHead`.
    """

    kind = "micrograph"

    def __init__(self, classifier: Any, score: str = "log-posterior") -> None:
        check_fitted(classifier)
        super().__init__(classifier.classes_, classifier.input_size)
        self.classifier = classifier
        self.head = GaussianMixtureHead.from_mixture(classifier.mixture_, score).to(classifier.device_)
        self.score_name = "log posterior" if score == "log-posterior" else "class log-likelihood"

    def forward(self, x: torch.Tensor, log_ppum: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, K)`` of crops ``(B, 1, S, S)``; ``log_ppum`` is log10 pixels per um of each crop."""
        desc = self.classifier.model_(x, log_ppum)
        return self.head(desc).to(x.dtype)

    def class_index(self, target: Any) -> int:
        if str(target) == "none" and "none" not in self.classes:
            raise MicrostructureError(
                "'none' is the mixture's rejection (a log-likelihood below the threshold), not a class "
                f"score; explain one of {', '.join(map(str, self.classes))}, or use descriptor_map to see "
                "how far the crops are from the threshold")
        return super().class_index(target)

    def descriptors(self, x: torch.Tensor, log_ppum: torch.Tensor) -> torch.Tensor:
        return self.classifier.model_(x, log_ppum)

    def backbones(self) -> list[nn.Module]:
        return [self.classifier.model_.backbone]

    def member_modules(self) -> list[nn.Module]:
        return [self.classifier.model_]


class EBSDAdapter(ModelAdapter):
    """A fitted :class:`EBSDClassifier` as ``preprocessed pattern -> class scores``.

    Parameters
    ----------
    classifier : EBSDClassifier
    score : {"log-probability", "probability", "logit"}
        ``"log-probability"``: log of the ensemble-mean softmax probability
        (default); ``"probability"``: that probability; ``"logit"``: the mean
        logit of the members.
    member : int, optional
        Explain one member of an ensemble instead of the ensemble.
    """

    kind = "ebsd"

    def __init__(self, classifier: Any, score: str = "log-probability", member: Optional[int] = None) -> None:
        check_fitted(classifier)
        if score not in EBSD_SCORES:
            raise MicrostructureError(f"unknown score {score!r}; choose one of {', '.join(EBSD_SCORES)}")
        classes = [c.item() if hasattr(c, "item") else c for c in np.asarray(classifier.classes_)]
        super().__init__(classes, classifier.preprocessor_.input_size)
        self.classifier = classifier
        models = list(classifier.models_)
        if member is not None:
            if not 0 <= int(member) < len(models):
                raise MicrostructureError(
                    f"member={member} but the ensemble has {len(models)} model(s); give 0 to {len(models) - 1}")
            models = [models[int(member)]]
        self.models = [m.eval() for m in models]
        self.score = score
        self.score_name = score.replace("-", " ")

    def forward(self, x: torch.Tensor, *extra: Any) -> torch.Tensor:
        logits = torch.stack([m(x) for m in self.models])
        if self.score == "logit":
            return logits.mean(0)
        prob = torch.softmax(logits, dim=2).mean(0)
        return prob if self.score == "probability" else torch.log(prob.clamp_min(1e-30))

    def prepare(self, patterns: Any) -> np.ndarray:
        """Raw patterns ``(N, h, w)`` or ``(h, w)`` -> preprocessed ``(N, S, S)`` in [0, 1]."""
        p = np.asarray(patterns)
        if p.ndim == 2:
            p = p[None]
        return self.classifier.preprocessor_.transform(p)

    def backbones(self) -> list[nn.Module]:
        return [m.backbone for m in self.models]

    def member_modules(self) -> list[nn.Module]:
        return list(self.models)


#: why a band-profile EBSD model has no attributions, kernels or feature maps, and what to use instead
BAND_PROFILES_NOT_EXPLAINED = (
    "a band-profile EBSD model (BandProfileClassifier) cannot be explained: it classifies the band profiles "
    "indexed from each pattern, not the pattern's pixels, so it has no pixel attributions, kernels or "
    "feature maps; its class probabilities per pattern are predict_proba(patterns). For attribution maps, "
    "train an EBSDClassifier with a CNN backbone (backbone=" + " or ".join(repr(b) for b in BACKBONES) + ")"
)


def check_fitted(classifier: Any) -> None:
    """Raise :class:`NotFittedError` naming the fix if ``classifier`` is not fitted."""
    if isinstance(classifier, (ModelAdapter, nn.Module)):
        return
    check_is_fitted(classifier, "so there is nothing to explain")


def as_adapter(model: Any, **kwargs: Any) -> ModelAdapter:
    """A :class:`ModelAdapter` for a classifier (micrograph or EBSD) or an adapter itself."""
    if isinstance(model, ModelAdapter):
        return model
    kind = getattr(model, "kind", None) if isinstance(model, Estimator) else None
    if kind == "micrograph":
        check_fitted(model)
        return MicrographAdapter(model, **kwargs)
    if kind == "ebsd":
        check_fitted(model)
        return EBSDAdapter(model, **kwargs)
    if kind == "ebsd-bands":
        raise MicrostructureError(BAND_PROFILES_NOT_EXPLAINED)
    raise MicrostructureError(
        f"cannot explain a {type(model).__name__}; give a fitted FewShotClassifier or EBSDClassifier, "
        "or wrap a torch module in TorchAdapter(module, classes, input_size)"
    )
