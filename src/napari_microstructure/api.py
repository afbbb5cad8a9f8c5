"""Helpers for napari's console: work directly with layers.

These accept anything with ``.data`` and ``.scale`` (a napari Image or Labels
layer) and never import napari, so they also work on plain objects::

    import napari_microstructure as nm
    clf = nm.fit_layers([viewer.layers["a"], viewer.layers["b"]], ["ferrite", "pearlite"])
    clf.predict_proba(*nm.layer_image(viewer.layers["c"]))
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from .core.errors import MicrostructureError


def layer_image(layer: Any) -> tuple[np.ndarray, float]:
    """``(data, pixel_size_um)`` of a 2-D image layer; the pixel size comes from ``layer.scale``.

    napari's ``scale`` is taken to be in micrometres per pixel. A layer whose
    scale was never set (all ones) is accepted with pixel size 1.0 um; set the
    scale when opening the image, or pass the pixel size yourself.
    """
    data = np.asarray(layer.data)
    scale = tuple(float(s) for s in getattr(layer, "scale", (1.0, 1.0)))
    if data.ndim == 3 and data.shape[-1] in (3, 4) and getattr(layer, "rgb", False):
        return data, scale[-1]
    if data.ndim != 2:
        raise MicrostructureError(
            f"layer {getattr(layer, 'name', '')!r} is {data.ndim}-D {data.shape}; choose a 2-D image layer "
            "(or take one plane, e.g. layer.data[0])"
        )
    if abs(scale[-1] - scale[-2]) > 1e-6 * max(scale[-1], scale[-2]):
        raise MicrostructureError(
            f"layer {getattr(layer, 'name', '')!r} has non-square pixels (scale {scale}); resample it first"
        )
    return data, scale[-1]


def fit_layers(
    layers: Sequence[Any],
    labels: Sequence[Any],
    classifier: Optional[Any] = None,
    **fit_kwargs: Any,
):
    """Fit a classifier on napari layers.

    Parameters
    ----------
    layers : sequence of image layers
    labels : sequence
        One class name per layer, or one Labels layer (or array) of scribbles per layer.
    classifier : FewShotClassifier, optional
        A configured classifier; a default one otherwise.
    """
    from .core.micrograph.fewshot import FewShotClassifier

    clf = classifier if classifier is not None else FewShotClassifier()
    images, sizes = zip(*(layer_image(layer) for layer in layers)) if layers else ((), ())
    labs = [np.asarray(lab.data) if hasattr(lab, "data") else lab for lab in labels]
    return clf.fit(list(images), labs, list(sizes), **fit_kwargs)


def predict_layer(classifier: Any, layer: Any, **kwargs: Any) -> dict[str, float]:
    """Class probabilities of an image layer as ``{class name: probability}``, "none" last."""
    image, size = layer_image(layer)
    probs = classifier.predict_proba(image, size, **kwargs)
    return dict(zip(classifier.labels_, (float(p) for p in probs)))


def load_model(path: Union[str, os.PathLike], device: str = "auto"):
    """Load any napari-microstructure model file (micrograph or EBSD).

    The file is read once; the kind recorded in it chooses the estimator
    (:data:`napari_microstructure.core.base.MODEL_KINDS`).

    Returns
    -------
    FewShotClassifier or EBSDClassifier
    """
    from .core.base import load_estimator

    return load_estimator(path, device=device)
