"""``EBSDClassifier``: few-shot space-group classification of Kikuchi patterns.

After Kaufmann et al., Sci. Rep. 11, 8172 (2021): a CNN pretrained on ImageNet
(here EfficientNet-Lite0, the grey pattern stacked to three channels) or a
compact CNN from scratch, fine-tuned with cross-entropy, Adam (learning rate
1e-3, weight decay 1e-5) and early stopping on a validation split (min delta
1e-3, patience 15), capped at ``max_epochs``.

Uncertainty: ``n_models`` networks are trained independently (different seeds
for the classification head, the shuffling and the validation split; the
ImageNet backbone starts from the same weights) and their probabilities are
averaged. For each pattern:

- ``confidence`` = the largest averaged class probability;
- ``agreement`` = the fraction of models whose own top class is the ensemble's;
- "no solution" when ``confidence < confidence_threshold`` or
  ``agreement < agreement_threshold``. The label is 0 for integer classes
  (space-group numbers start at 1) and ``"no solution"`` for text classes.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..base import Estimator, check_is_fitted, isolated_torch_rng
from ..choices import BACKBONES
from ..errors import MicrostructureError
from ..nn.device import autocast, select_device
from ..nn.modelio import split_prefix, with_prefix
from ..nn.progress import CancelToken, Progress, ProgressCallback
from ..nn.training import TrainingConfig, TrainingHistory, train_loop
from ._validation import check_labels, check_stack, resolve_classes
from .metrics import ClassificationReport, classification_report
from .preprocess import PatternPreprocessor

NO_SOLUTION_TEXT = "no solution"
MODEL_VERSION = 1


class EBSDNet(nn.Module):
    """A backbone followed by global average pooling, dropout and a linear layer."""

    def __init__(self, backbone: nn.Module, n_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.out_channels, n_classes)

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """Class logits for grey patterns (B, 1, H, W) in [0, 1]."""
        feats = self.backbone.forward_features(self.backbone.prepare(grey))
        return self.head(self.dropout(feats.mean(dim=(2, 3))))


class EBSDClassifier(Estimator):
    """Classify EBSD patterns into space groups (or any phase labels).

    Parameters
    ----------
    backbone : {"efficientnet-lite0", "compact"}
        ``"efficientnet-lite0"``: transfer learning from ImageNet weights;
        ``"compact"``: a small CNN trained from scratch (faster, more data-hungry).
    pretrained : bool
        Start EfficientNet from ImageNet weights (ignored for ``"compact"``).
    input_size : int
        Patterns are resized to ``input_size`` x ``input_size`` pixels.
    n_models : int
        Ensemble size (1 = a single network).
    confidence_threshold : float
        Patterns whose averaged top probability is below this are "no solution".
    agreement_threshold : float
        Patterns on whose class fewer than this fraction of the ensemble agree
        are "no solution" (no effect with ``n_models=1``).
    static_background, dynamic_sigma : see :class:`PatternPreprocessor`.
    max_epochs, learning_rate, weight_decay, patience, min_delta, batch_size,
    validation_fraction, seed : training settings (see ``TrainingConfig``).
    device : str
        ``"auto"`` (CUDA > MPS > CPU), ``"cpu"``, ``"cuda"``...
    augment : bool
        Perturb training batches with acquisition variation (projection-centre
        shift, mirror, blur, residual background, gamma, noise; see
        :class:`~.augment.PatternAugment`) so that a few patterns of one
        session do not teach that session's detector.
    simulation_pretrained : bool
        Start from the simulation-pretrained space-group model shipped with the
        package (:mod:`.pretrained`): its backbone, its preprocessing (input
        size, no static background) and the head rows of the space groups it
        knows. ``backbone`` must be that model's. Without labelled patterns,
        :meth:`from_pretrained` classifies directly.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
        Sorted class labels.
    preprocessor_ : PatternPreprocessor
    models_ : list of EBSDNet
    history_ : TrainingHistory
        Losses per epoch and best epoch; for an ensemble, ``members`` holds
        one history per network.
    """

    kind = "ebsd"
    _fitted_attribute = "models_"
    _fit_call = "fit(patterns, labels)"

    def __init__(self, backbone: str = "efficientnet-lite0", pretrained: bool = True,
                 input_size: int = 60, n_models: int = 1, confidence_threshold: float = 0.5,
                 agreement_threshold: float = 0.5, static_background: bool = True,
                 dynamic_sigma: float = 0.125, max_epochs: int = 100, learning_rate: float = 1e-3,
                 weight_decay: float = 1e-5, patience: int = 15, min_delta: float = 1e-3,
                 batch_size: int = 32, validation_fraction: float = 0.2, seed: int = 0,
                 device: str = "auto", augment: bool = True, simulation_pretrained: bool = False) -> None:
        self.backbone = backbone
        self.pretrained = pretrained
        self.input_size = input_size
        self.n_models = n_models
        self.confidence_threshold = confidence_threshold
        self.agreement_threshold = agreement_threshold
        self.static_background = static_background
        self.dynamic_sigma = dynamic_sigma
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.min_delta = min_delta
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.device = device
        self.augment = augment
        self.simulation_pretrained = simulation_pretrained

    # ------------------------------------------------------------------ params
    def __getstate__(self) -> dict:
        # traced networks do not pickle (dask.distributed); they are rebuilt on use
        state = dict(self.__dict__)
        state.pop("_frozen_cache", None)
        return state

    def _check_params(self) -> None:
        key = str(self.backbone).strip().lower().replace("_", "-")
        if key not in BACKBONES and key not in ("efficientnet", "efficientnet-lite"):
            raise MicrostructureError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if not (isinstance(self.n_models, (int, np.integer)) and 1 <= self.n_models <= 50):
            raise MicrostructureError(f"n_models={self.n_models!r}; give an ensemble size from 1 to 50")
        for name in ("confidence_threshold", "agreement_threshold"):
            v = getattr(self, name)
            if not 0 <= float(v) <= 1:
                raise MicrostructureError(f"{name}={v!r}; give a value in [0, 1]")
        if not 0 <= float(self.validation_fraction) < 1:
            raise MicrostructureError(
                f"validation_fraction={self.validation_fraction!r}; give a fraction in [0, 1)")

    def _config(self, seed: int) -> TrainingConfig:
        return TrainingConfig(max_epochs=int(self.max_epochs), learning_rate=float(self.learning_rate),
                              weight_decay=float(self.weight_decay), patience=int(self.patience),
                              min_delta=float(self.min_delta), batch_size=int(self.batch_size),
                              validation_fraction=float(self.validation_fraction), seed=seed)

    def _build_net(self, n_classes: int, pretrained: bool) -> EBSDNet:
        from ..nn.backbones import build_backbone

        return EBSDNet(build_backbone(self.backbone, pretrained=pretrained), n_classes)

    # --------------------------------------------------------------------- fit
    def fit(self, patterns: Any, labels: Sequence, classes: Optional[Sequence] = None, *,
            progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelToken] = None) -> "EBSDClassifier":
        """Train on labelled patterns.

        Parameters
        ----------
        patterns : array-like (N, h, w)
            Raw Kikuchi patterns (any numeric dtype, any size >= 8 x 8).
        labels : sequence (N,)
            One label per pattern, e.g. the space-group number.
        classes : sequence, optional
            The expected classes; each must have at least one pattern.
        progress : callable, optional
            Receives :class:`~napari_microstructure.core.nn.progress.Progress`
            (stage ``"train"``, step = epoch).
        cancel : threading.Event, optional
            When set, training stops with ``TrainingCancelled`` and the
            classifier keeps its previous state.

        Returns
        -------
        self
        """
        self._check_params()
        patterns = check_stack(patterns)
        labels = check_labels(labels, len(patterns))
        found = resolve_classes(labels, classes)
        device = select_device(self.device)
        source = self._pretrained_source()
        if source is not None:  # the pretrained model's preprocessing, so its weights fit
            pre = PatternPreprocessor(**source.preprocessor_.get_params()).fit(patterns)
        else:
            pre = PatternPreprocessor(int(self.input_size), bool(self.static_background),
                                      float(self.dynamic_sigma)).fit(patterns)
        x = torch.from_numpy(pre.transform(patterns, check=False)).unsqueeze(1)
        y = torch.from_numpy(np.searchsorted(found, labels)).long()
        models, histories = [], []
        k_total = int(self.n_models)
        for k in range(k_total):
            seed = int(self.seed) + 1000 * k
            augment = None
            if self.augment:
                from .augment import PatternAugment

                augment = PatternAugment()
                aug_gen = torch.Generator().manual_seed(seed)
            tr, va = self._split(y.numpy(), seed)
            member_progress = _prefixed(progress, f"model {k + 1}/{k_total}: ") if k_total > 1 else progress
            bs = int(self.batch_size)

            def train_batches(epoch, tr=tr, seed=seed):
                g = np.random.default_rng(seed * 7919 + epoch)
                order = tr[g.permutation(len(tr))]
                for s in range(0, len(order), bs):
                    idx = order[s:s + bs]
                    if len(idx) < 2 and len(order) > 1:  # batch norm needs two samples
                        continue
                    yield (x[idx] if augment is None else augment(x[idx], aug_gen)), y[idx]

            def val_batches(va=va):
                for s in range(0, len(va), 256):
                    idx = va[s:s + 256]
                    yield x[idx], y[idx]

            def loss_fn(model, batch):
                xb, yb = batch
                return F.cross_entropy(model(xb.to(device)), yb.to(device))

            # weights and dropout draw from torch's global generator: seeded, then restored
            with isolated_torch_rng(seed, device):
                net = self._build_net(len(found), bool(self.pretrained) and source is None)
                if source is not None:
                    from .pretrained import init_from_pretrained

                    init_from_pretrained(net, found, source)
                net = net.to(device)
                hist = train_loop(net, train_batches, loss_fn, val_batches if len(va) else None,
                                  self._config(seed), device, progress=member_progress, cancel=cancel,
                                  stage="train")
            net.eval()
            models.append(net)
            hist.n_train, hist.n_validation = int(len(tr)), int(len(va))
            histories.append(hist)
        # assign fitted state only now: a cancelled fit leaves the old state
        self.classes_ = found
        self.preprocessor_ = pre
        self.models_ = models
        self.history_ = TrainingHistory.ensemble(histories)
        self.device_ = device
        self._frozen_cache = None
        return self

    def _pretrained_source(self):
        """The shipped pretrained classifier when ``simulation_pretrained``, else None."""
        if not self.simulation_pretrained:
            return None
        from .pretrained import pretrained_path

        source = type(self).load(pretrained_path(), device="cpu")
        if str(source.backbone) != str(self.backbone):
            raise MicrostructureError(
                f"simulation_pretrained=True needs backbone={source.backbone!r} (the pretrained model's), "
                f"got {self.backbone!r}; change the backbone or set simulation_pretrained=False")
        return source

    @classmethod
    def from_pretrained(cls, device: str = "auto") -> "EBSDClassifier":
        """The simulation-pretrained space-group classifier (221, 223, 225, 227, 229, 230).

        It needs no labelled patterns; patterns of any size are resized to its
        input size. Fine-tune it with ``EBSDClassifier(simulation_pretrained=True).fit(...)``.
        """
        from .pretrained import pretrained_path

        return cls.load(pretrained_path(), device=device)

    def _split(self, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Stratified train/validation indices; no validation when classes are too small."""
        idx = np.arange(len(y))
        frac = float(self.validation_fraction)
        counts = np.bincount(y)
        n_val = int(round(frac * len(y)))
        if frac <= 0 or counts.min() < 2 or n_val < len(counts) or len(y) - n_val < len(counts):
            return idx, idx[:0]
        from sklearn.model_selection import train_test_split

        tr, va = train_test_split(idx, test_size=n_val, stratify=y, random_state=seed % (2 ** 32))
        return np.sort(tr), np.sort(va)

    # ----------------------------------------------------------------- predict
    @property
    def no_solution_label_(self) -> Any:
        """Label used for "no solution": 0 for integer classes, else ``"no solution"``."""
        check_is_fitted(self)
        return 0 if self.classes_.dtype.kind in "iu" else NO_SOLUTION_TEXT

    def _device(self) -> torch.device:
        dev = getattr(self, "device_", None)
        if dev is None:
            dev = self.device_ = select_device(self.device)
        return dev

    def _inference_nets(self) -> list:
        """The networks for large batches: on CPU traced and frozen (batch norm folded
        into the convolutions, about 1.5x faster; checked against the eager
        networks), else the models themselves. ``NAPARI_MICROSTRUCTURE_NO_JIT=1``
        turns it off."""
        dev = self._device()
        key = (id(self.models_), str(dev))
        cache = getattr(self, "_frozen_cache", None)
        if cache is not None and cache[0] == key:
            return cache[1]
        nets = list(self.models_)
        if dev.type == "cpu" and os.environ.get("NAPARI_MICROSTRUCTURE_NO_JIT") is None:
            import warnings

            size = int(self.preprocessor_.input_size)
            example = torch.rand(2, 1, size, size)
            try:
                with warnings.catch_warnings(), torch.inference_mode():
                    warnings.simplefilter("ignore")
                    frozen = [torch.jit.freeze(torch.jit.trace(net.eval(), example)) for net in nets]
                    for net, fz in zip(nets, frozen):  # check against the eager network
                        if not torch.allclose(net(example), fz(example), atol=1e-4, rtol=1e-4):
                            raise RuntimeError("traced network differs")
                nets = frozen
            except Exception:  # pragma: no cover - fall back to the eager networks
                nets = list(self.models_)
        self._frozen_cache = (key, nets)
        return nets

    def _member_probabilities(self, prepared: np.ndarray, batch: int = 256) -> np.ndarray:
        """Probabilities of every model, (n_models, N, n_classes) float32, for preprocessed input."""
        dev = self._device()
        out = np.empty((len(self.models_), len(prepared), len(self.classes_)), np.float32)
        # tracing costs a few seconds: worth it for maps, not for a handful of patterns
        nets = self._inference_nets() if len(prepared) >= 1024 else self.models_
        with torch.inference_mode():
            for s in range(0, len(prepared), batch):
                xb = torch.from_numpy(np.ascontiguousarray(prepared[s:s + batch])).unsqueeze(1).to(dev)
                for k, net in enumerate(nets):
                    with autocast(dev):
                        logits = net(xb)
                    out[k, s:s + batch] = torch.softmax(logits.float(), 1).cpu().numpy()
        return out

    def _summarise(self, members: np.ndarray) -> dict[str, np.ndarray]:
        """Mean probabilities, index, confidence, agreement and the no-solution mask."""
        proba = members.mean(0)
        index = proba.argmax(1)
        confidence = proba.max(1)
        agreement = (members.argmax(2) == index[None]).mean(0).astype(np.float32)
        no_solution = (confidence < float(self.confidence_threshold)) | (
            agreement < float(self.agreement_threshold))
        return {"probabilities": proba, "index": index, "confidence": confidence.astype(np.float32),
                "agreement": agreement, "no_solution": no_solution}

    def predict_proba(self, patterns: Any, background: Optional[np.ndarray] = None) -> np.ndarray:
        """Class probabilities (N, n_classes), averaged over the ensemble; rows sum to 1."""
        check_is_fitted(self)
        prepared = self.preprocessor_.transform(patterns, background=background)
        return self._member_probabilities(prepared).mean(0)

    def predict(self, patterns: Any, no_solution: bool = False,
                background: Optional[np.ndarray] = None) -> np.ndarray:
        """Most probable class of each pattern, (N,).

        Parameters
        ----------
        no_solution : bool
            Replace uncertain patterns (see the thresholds) with
            ``no_solution_label_``.
        """
        res = self.predict_uncertainty(patterns, background=background)
        labels = self.classes_[res["index"]]
        if no_solution and res["no_solution"].any():
            if labels.dtype.kind not in "iu":
                labels = labels.astype(object)
            labels[res["no_solution"]] = self.no_solution_label_
            if labels.dtype == object:
                labels = labels.astype(str)
        return labels

    def predict_uncertainty(self, patterns: Any, background: Optional[np.ndarray] = None, *,
                            check: bool = True) -> dict:
        """Probabilities, class index, confidence, agreement and no-solution mask per pattern.

        Parameters
        ----------
        patterns : array-like (N, h, w)
        background : ndarray, optional
            Static background instead of the training one (see :meth:`PatternPreprocessor.transform`).
        check : bool
            Validate ``patterns`` as a stack; maps pass False for chunks they
            have checked themselves (the patterns are still checked for NaN).

        Returns
        -------
        dict
            ``probabilities`` (N, n_classes) averaged over the ensemble,
            ``index`` (N,), ``confidence`` (N,), ``agreement`` (N,) and
            ``no_solution`` (N,) bool.
        """
        check_is_fitted(self)
        prepared = self.preprocessor_.transform(patterns, background=background, check=check)
        return self._summarise(self._member_probabilities(prepared))

    def report(self, patterns: Any, labels: Sequence, no_solution: bool = False) -> ClassificationReport:
        """Precision, recall, F1 (per class and class-weighted) and the confusion matrix."""
        labels = check_labels(labels, len(check_stack(patterns)))
        pred = self.predict(patterns, no_solution=no_solution)
        return classification_report(labels, pred, self.classes_)

    def classify_map(self, pattern_map: Any, chunk_size: int = 2048,
                     background: Union[str, np.ndarray, None] = "model", *,
                     progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None, client: Any = None,
                     store: Optional[Union[str, os.PathLike]] = None, overwrite: bool = False,
                     step_size_um: Optional[Any] = None):
        """Classify every pattern of a map, streaming in chunks (``step_size_um`` is kept in the result).

        ``client`` (a ``distributed.Client`` or a scheduler address) runs the
        map on a dask cluster; ``store`` (a ``.zarr`` folder) writes the result
        as it is computed. See :func:`napari_microstructure.core.ebsd.mapping.classify_map`.
        """
        from .mapping import classify_map

        return classify_map(self, pattern_map, chunk_size=chunk_size, background=background,
                            progress=progress, cancel=cancel, client=client, store=store,
                            overwrite=overwrite, step_size_um=step_size_um)

    # -------------------------------------------------------------- save/load
    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        params, arrays = self.preprocessor_.to_state()
        kind = "int" if self.classes_.dtype.kind in "iu" else "str"
        metadata = {
            "model_version": MODEL_VERSION,
            "classes": [int(c) if kind == "int" else str(c) for c in self.classes_],
            "classes_type": kind,
            "preprocessing": params,
            "history": self.history_.to_dict(),
        }
        tensors = with_prefix({k: torch.from_numpy(v) for k, v in arrays.items()}, "preprocess")
        for k, net in enumerate(self.models_):
            tensors.update(with_prefix(net.state_dict(), f"model{k}"))
        return metadata, tensors

    def _set_state(self, metadata: dict[str, Any], tensors: dict[str, torch.Tensor], device: torch.device) -> None:
        kind = metadata["classes_type"]
        classes = np.asarray(metadata["classes"], dtype=np.int64 if kind == "int" else str)
        preprocessor = PatternPreprocessor.from_state(metadata["preprocessing"], split_prefix(tensors, "preprocess"))
        models = []
        for k in range(int(self.n_models)):
            net = self._build_net(len(classes), pretrained=False)
            net.load_state_dict(split_prefix(tensors, f"model{k}"))
            models.append(net.to(device).eval())
        self.classes_ = classes
        self.preprocessor_ = preprocessor
        self.models_ = models
        self.history_ = TrainingHistory.from_dict(metadata.get("history", []))
        self.device_ = device
        self._frozen_cache = None


def _prefixed(progress: Optional[ProgressCallback], prefix: str) -> Optional[ProgressCallback]:
    if progress is None:
        return None

    def relay(p: Progress) -> None:
        progress(Progress(p.stage, p.step, p.total, prefix + p.message, dict(p.metrics)))

    return relay
