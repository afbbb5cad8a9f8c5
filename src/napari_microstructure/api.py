"""Helpers for napari's console: work directly with layers.

These accept anything with ``.data`` and ``.scale`` (a napari Image or Labels
layer) and never import napari, so they also work on plain objects::

    import napari_microstructure as nm
    clf = nm.fit_layers([viewer.layers[n] for n in ("ferrite 1", "ferrite 2", "pearlite 1", "pearlite 2")],
                        ["ferrite", "ferrite", "pearlite", "pearlite"])
    clf.predict_proba(*nm.layer_image(viewer.layers["ferrite 3"]))
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from .core.errors import MicrostructureError


#: length units napari layers may carry, in micrometres (pint's spellings and common ones)
_UNIT_UM = {"nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "um": 1.0, "µm": 1.0, "micrometer": 1.0,
            "micrometre": 1.0, "micron": 1.0, "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
            "m": 1e6, "meter": 1e6, "metre": 1e6}


def _layer_unit_um(layer: Any) -> Optional[float]:
    """Micrometres per unit of the layer's last axis, or None when it has no length unit."""
    units = getattr(layer, "units", None)
    if units is None:
        return None
    try:
        name = str(tuple(units)[-1]).strip()
    except TypeError:
        name = str(units).strip()
    return _UNIT_UM.get(name.lower() if name != "µm" else name)


def layer_pixel_size(layer: Any) -> float:
    """The pixel size of a 2-D layer in micrometres: the one rule every widget and helper follows.

    The pixel size is known when the layer's ``scale`` was set (any value but
    napari's default of 1), when the layer carries a length unit (``units``
    ``"nm"``, ``"um"``, ``"mm"``...; the scale is converted to micrometres),
    or when its metadata holds ``"pixel_size_um"`` (the plugin's readers and
    samples set it). A layer whose scale was never set is refused, never
    taken as 1 um per pixel.

    Parameters
    ----------
    layer : napari layer or any object with ``scale`` (and optionally ``units``, ``metadata``)

    Returns
    -------
    float
        Micrometres per pixel.

    Raises
    ------
    MicrostructureError
        When the scale was never set, or the pixels are not square.
    """
    from .core.micrograph.images import check_pixel_size

    name = getattr(layer, "name", "")
    scale = [float(s) for s in getattr(layer, "scale", (1.0, 1.0))][-2:]
    meta = getattr(layer, "metadata", None) or {}
    unit_um = _layer_unit_um(layer)
    if unit_um is None and all(s == 1.0 for s in scale):
        if meta.get("pixel_size_um") is not None:
            return check_pixel_size(meta["pixel_size_um"], f"the pixel size of {name!r}")
        raise MicrostructureError(
            f"layer {name!r} has no pixel size (its scale was never set, and 1 um per pixel would be a "
            f"guess); set it in micrometres per pixel, e.g. viewer.layers[{name!r}].scale = (0.1, 0.1), "
            "or open the image from a TIFF with resolution tags"
        )
    if abs(scale[-1] - scale[-2]) > 1e-6 * max(scale[-1], scale[-2]):
        raise MicrostructureError(
            f"layer {name!r} has non-square pixels (scale {tuple(scale)}); resample it first"
        )
    return check_pixel_size(scale[-1] * (unit_um or 1.0), f"the pixel size of {name!r}")


def layer_array(layer: Any) -> np.ndarray:
    """The data of a 2-D grey (or RGB) image layer, checked; see :func:`layer_image`."""
    data = np.asarray(layer.data)
    if data.ndim == 3 and data.shape[-1] in (3, 4) and getattr(layer, "rgb", False):
        return data
    if data.ndim != 2:
        raise MicrostructureError(
            f"layer {getattr(layer, 'name', '')!r} is {data.ndim}-D {data.shape}; choose a 2-D image layer "
            "(or take one plane, e.g. layer.data[0])"
        )
    return data


def layer_image(layer: Any) -> tuple[np.ndarray, float]:
    """``(data, pixel_size_um)`` of a 2-D image layer.

    The pixel size follows :func:`layer_pixel_size`: a layer whose scale was
    never set is refused with a message saying how to set it.
    """
    return layer_array(layer), layer_pixel_size(layer)


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
