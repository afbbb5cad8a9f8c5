"""Feature reduction and generalisation reports (after Ling et al. 2017).

- :func:`descriptor_dimension_report`: train one micrograph classifier per
  descriptor dimension and measure test accuracy: how many features suffice?
- :func:`pca_reduction_report`: keep the first k principal components of a
  trained backbone's pooled features (micrograph crops or EBSD patterns),
  fit a logistic regression on them, and measure test accuracy against k.
- :func:`generalisation_report`: train on one data set, evaluate on another
  (another magnification range, another material), with the confusion matrix.

Data sets are tuples: ``(images, labels, pixel_sizes)`` for micrographs and
``(patterns, labels)`` for EBSD.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import MicrostructureError
from ..nn.progress import CancelToken, ProgressCallback, check_cancel, report
from .adapters import as_adapter, check_fitted


@dataclasses.dataclass
class ReductionReport:
    """Accuracy against the number of features.

    Attributes
    ----------
    kind : str
        ``"descriptor dimension"`` or ``"principal components"``.
    n_features : numpy.ndarray (m,)
    accuracy : numpy.ndarray (m,)
        Test accuracy (images for micrographs, patterns for EBSD).
    explained_variance : numpy.ndarray (m,) or None
        Cumulative explained variance of the kept components.
    full_accuracy : float or None
        With all backbone features (principal components report).
    n_total_features : int or None
    models : list or None
        The trained classifiers (descriptor dimension report with ``keep_models=True``).
    """

    kind: str
    n_features: np.ndarray
    accuracy: np.ndarray
    explained_variance: Optional[np.ndarray] = None
    full_accuracy: Optional[float] = None
    n_total_features: Optional[int] = None
    models: Optional[list] = dataclasses.field(default=None, repr=False)

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            if self.full_accuracy is not None:
                w.writerow([f"# all {self.n_total_features} features: accuracy {self.full_accuracy:.4f}"])
            w.writerow(["n_features", "accuracy", "explained_variance"])
            for i, (k, a) in enumerate(zip(self.n_features, self.accuracy)):
                ev = "" if self.explained_variance is None else f"{self.explained_variance[i]:.6g}"
                w.writerow([int(k), f"{a:.6g}", ev])


@dataclasses.dataclass
class GeneralisationReport:
    """A model trained on one data set and evaluated on another.

    Attributes
    ----------
    train_name, test_name : str
    true_classes : list
        Rows of the confusion matrix (classes present in the test set).
    predicted_classes : list
        Columns: the model's classes (then "none" for micrographs).
    confusion : numpy.ndarray (rows, cols) int
    accuracy : float
        Share of test items whose prediction equals their label.
    truth, predictions : numpy.ndarray
    """

    train_name: str
    test_name: str
    true_classes: list
    predicted_classes: list
    confusion: np.ndarray
    accuracy: float
    truth: np.ndarray
    predictions: np.ndarray

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([f"# trained on {self.train_name}, tested on {self.test_name}: "
                        f"accuracy {self.accuracy:.4f}"])
            w.writerow(["true \\ predicted"] + [str(c) for c in self.predicted_classes])
            for c, row in zip(self.true_classes, self.confusion):
                w.writerow([str(c)] + [int(v) for v in row])


def _unpack(dataset: Sequence[Any], name: str, micrograph: bool):
    need = 3 if micrograph else 2
    if not isinstance(dataset, (tuple, list)) or len(dataset) != need:
        what = "(images, labels, pixel_sizes)" if micrograph else "(patterns, labels)"
        raise MicrostructureError(f"{name} must be a tuple {what}")
    return dataset


def _micrograph_accuracy(clf: Any, images, labels, sizes, cancel) -> float:
    hits = 0
    for im, lab, p in zip(images, labels, sizes):
        check_cancel(cancel)
        hits += clf.predict(im, p) == str(lab)
    return hits / max(1, len(images))


def descriptor_dimension_report(
    train: Sequence[Any], test: Sequence[Any], dims: Sequence[int] = (2, 4, 8),
    classifier_params: Optional[dict] = None, keep_models: bool = False, *,
    progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
) -> ReductionReport:
    """Train a :class:`FewShotClassifier` per descriptor dimension; test-image accuracy of each.

    Parameters
    ----------
    train, test : (images, labels, pixel_sizes)
    dims : sequence of int
        Descriptor dimensions to try (1 or more).
    classifier_params : dict, optional
        Other :class:`FewShotClassifier` parameters (keep them small: each
        dimension trains a model).
    keep_models : bool
        Keep the trained classifiers in ``report.models``.
    """
    from ..micrograph.fewshot import FewShotClassifier

    images, labels, sizes = _unpack(train, "train", True)
    t_images, t_labels, t_sizes = _unpack(test, "test", True)
    dims = [int(d) for d in dims]
    if not dims or min(dims) < 1:
        raise MicrostructureError(f"dims={dims}; give descriptor dimensions of 1 or more")
    acc, models = [], []
    for i, d in enumerate(dims):
        check_cancel(cancel)
        report(progress, "feature reduction", i, len(dims), f"training with {d}-D descriptors")
        clf = FewShotClassifier(**{**(classifier_params or {}), "embedding_dim": d})
        clf.fit(images, labels, sizes, cancel=cancel)
        acc.append(_micrograph_accuracy(clf, t_images, t_labels, t_sizes, cancel))
        if keep_models:
            models.append(clf)
    report(progress, "feature reduction", len(dims), len(dims), "done")
    return ReductionReport("descriptor dimension", np.asarray(dims), np.asarray(acc, float),
                           models=models if keep_models else None)


def backbone_features(model: Any, data: Sequence[Any], n_crops: int = 16, seed: int = 0, *,
                      cancel: Optional[CancelToken] = None) -> tuple[np.ndarray, np.ndarray]:
    """Spatially averaged backbone features.

    Micrographs: ``data = (images, labels, pixel_sizes)``; ``n_crops`` crops
    per image (see :func:`~.descriptors.sample_image_crops`). EBSD:
    ``data = (patterns, labels)``, one row per pattern.

    Returns
    -------
    features : (n, C) array
    groups : (n,) int array
        Index of the image (or pattern) each row comes from.
    """
    adapter = as_adapter(model)
    bb = adapter.backbones()[0]
    rows, groups = [], []
    if adapter.kind == "micrograph":
        from .descriptors import sample_image_crops

        images, _, sizes = _unpack(data, "data", True)
        for i, (im, p) in enumerate(zip(images, sizes)):
            check_cancel(cancel)
            crops = sample_image_crops(adapter.classifier, im, p, n_crops, seed + i, cancel=cancel)
            x = torch.from_numpy(crops.crops)[:, None].to(adapter.device)
            with torch.no_grad():
                rows.append(bb.forward_features(bb.prepare(x)).mean((2, 3)).double().cpu().numpy())
            groups.append(np.full(len(x), i))
    else:
        patterns, _ = _unpack(data, "data", False)
        prepared = adapter.prepare(np.asarray(patterns))
        for s in range(0, len(prepared), 256):
            check_cancel(cancel)
            x = torch.from_numpy(prepared[s:s + 256])[:, None].to(adapter.device)
            with torch.no_grad():
                rows.append(bb.forward_features(bb.prepare(x)).mean((2, 3)).double().cpu().numpy())
            groups.append(np.arange(s, s + len(x)))
    return np.concatenate(rows), np.concatenate(groups)


def pca_reduction_report(
    model: Any, train: Sequence[Any], test: Sequence[Any],
    n_components: Sequence[int] = (1, 2, 4, 8, 16, 32), n_crops: int = 16, seed: int = 0, *,
    progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
) -> ReductionReport:
    """Test accuracy of a logistic regression on the first k principal components of the backbone's features.

    Parameters
    ----------
    model : fitted FewShotClassifier or EBSDClassifier
        Its backbone is the feature extractor (not retrained).
    train, test : data sets (see :func:`backbone_features`)
    n_components : sequence of int
        Numbers of components to keep (clipped to what the data allow).
    n_crops : int
        Crops per micrograph; an image's prediction is the mean of its crops'.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_fitted(model)
    adapter = as_adapter(model)
    micro = adapter.kind == "micrograph"
    report(progress, "feature reduction", 0, 1, "computing backbone features")
    f_tr, g_tr = backbone_features(adapter, train, n_crops, seed, cancel=cancel)
    f_te, g_te = backbone_features(adapter, test, n_crops, seed + 10_000, cancel=cancel)
    y_tr_items = np.asarray([str(v) for v in train[1]])
    y_te_items = np.asarray([str(v) for v in test[1]])
    y_tr = y_tr_items[g_tr]
    if len(np.unique(y_tr)) < 2:
        raise MicrostructureError("the training set has one class; give at least two classes")
    max_k = min(f_tr.shape[0], f_tr.shape[1])
    ks = sorted({min(int(k), max_k) for k in n_components if int(k) >= 1})
    if not ks:
        raise MicrostructureError(f"n_components={list(n_components)}; give numbers of 1 or more")
    pca = PCA(n_components=max(ks)).fit(StandardScaler().fit_transform(f_tr))
    cum = np.cumsum(pca.explained_variance_ratio_)

    def accuracy(pipe) -> float:
        pipe.fit(f_tr, y_tr)
        proba = pipe.predict_proba(f_te)
        classes = pipe.classes_
        if micro:
            items = np.unique(g_te)
            pred = np.array([classes[np.argmax(proba[g_te == i].mean(0))] for i in items])
            return float(np.mean(pred == y_te_items[items]))
        return float(np.mean(classes[np.argmax(proba, 1)] == y_te_items[g_te]))

    acc = []
    for i, k in enumerate(ks):
        check_cancel(cancel)
        report(progress, "feature reduction", i, len(ks) + 1, f"{k} principal component(s)")
        acc.append(accuracy(make_pipeline(StandardScaler(), PCA(n_components=k),
                                          LogisticRegression(max_iter=2000))))
    full = accuracy(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)))
    report(progress, "feature reduction", len(ks) + 1, len(ks) + 1, "done")
    return ReductionReport("principal components", np.asarray(ks), np.asarray(acc), cum[np.asarray(ks) - 1],
                           full, int(f_tr.shape[1]))


def generalisation_report(
    model: Any, train: Optional[Sequence[Any]], test: Sequence[Any], train_name: str = "train",
    test_name: str = "test", *, progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> GeneralisationReport:
    """Train on ``train`` (unless ``train`` is None and ``model`` is fitted), evaluate on ``test``.

    Parameters
    ----------
    model : FewShotClassifier or EBSDClassifier
        Configured (it is copied before fitting, so the original is unchanged) or fitted.
    train : data set or None
        ``(images, labels, pixel_sizes)`` or ``(patterns, labels)``; None
        evaluates an already fitted model.
    test : data set of the same kind
    train_name, test_name : str
        Shown in the report, e.g. ``"x500-x2000"`` and ``"x5000"``.
    """
    from sklearn.metrics import confusion_matrix

    micro = hasattr(model, "embedding_dim")
    if train is not None:
        report(progress, "generalisation", 0, 2, f"training on {train_name}")
        model = copy.deepcopy(model)
        if micro:
            images, labels, sizes = _unpack(train, "train", True)
            model.fit(images, labels, sizes, progress=progress, cancel=cancel)
        else:
            patterns, labels = _unpack(train, "train", False)
            model.fit(patterns, labels, progress=progress, cancel=cancel)
    check_fitted(model)
    report(progress, "generalisation", 1, 2, f"evaluating on {test_name}")
    if micro:
        t_images, t_labels, t_sizes = _unpack(test, "test", True)
        pred = []
        for im, p in zip(t_images, t_sizes):
            check_cancel(cancel)
            pred.append(model.predict(im, p))
        truth = np.asarray([str(v) for v in t_labels])
        pred = np.asarray(pred)
        cols = list(model.classes_) + ["none"]
    else:
        patterns, t_labels = _unpack(test, "test", False)
        pred = np.asarray(model.predict(patterns))
        truth = np.asarray(t_labels)
        cols = [c.item() if hasattr(c, "item") else c for c in np.asarray(model.classes_)]
    rows = list(dict.fromkeys(truth.tolist()))
    try:
        rows = sorted(rows)
    except TypeError:
        pass
    labels_all = list(dict.fromkeys(rows + cols))
    cm = confusion_matrix(truth, pred, labels=labels_all)
    cm = cm[[labels_all.index(r) for r in rows]][:, [labels_all.index(c) for c in cols]]
    report(progress, "generalisation", 2, 2, "done")
    return GeneralisationReport(train_name, test_name, rows, cols, cm.astype(int),
                                float(np.mean(pred == truth)), truth, pred)
