"""napari-microstructure: few-shot deep learning for materials microscopy.

The public API, shared by the napari widgets, napari's console and the command
line::

    import napari_microstructure as nm

    clf = nm.FewShotClassifier()
    clf.fit(images, labels, pixel_sizes)        # micrometres per pixel
    clf.predict_proba(image, pixel_size)        # classes, then "none": means over random crops
    clf.predict_image(image, pixel_size)        # .label (a class or "none"), .none_score, .probabilities
    clf.probability_map(image, pixel_size)      # (n_classes + 1, H, W)
    clf.predict_images(images, pixel_sizes)     # one answer per image: a class name or "none"

    data = nm.load_patterns("map.h5")           # lazy; .projection_centre from the header (Bruker) or None
    bands = nm.BandProfileClassifier.from_pretrained(pc=data.projection_centre)
    bands.classify_map(data.as_map())           # space groups of unseen cubic materials, no labels
    bands.fit(patterns, space_groups)           # fine-tunes on a few labelled patterns

    ebsd = nm.EBSDClassifier()                  # the CNN: learns only from labels, needs no PC
    ebsd.fit(patterns, space_groups)            # (N, h, w), N labels
    ebsd.classify_map(pattern_map)              # labels, confidence, fractions

The band-profile classifier is the default method of the EBSD widget and of
``ebsd-train``.

Heavy modules (torch) are imported on first use, so ``import
napari_microstructure`` stays fast for napari's plugin discovery.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "FewShotClassifier": "napari_microstructure.core.micrograph.fewshot",
    "EBSDClassifier": "napari_microstructure.core.ebsd.classifier",
    "BandProfileClassifier": "napari_microstructure.core.ebsd.bandclassifier",
    "MapResult": "napari_microstructure.core.ebsd",
    "classification_report": "napari_microstructure.core.ebsd",
    "load_patterns": "napari_microstructure.io.ebsd",
    "read_labelled_patterns": "napari_microstructure.io.ebsd",
    "probability_map": "napari_microstructure.core.micrograph.probmap",
    "NONE_CLASS": "napari_microstructure.core.micrograph.verdict",
    "ImagePrediction": "napari_microstructure.core.micrograph.verdict",
    "AugmentConfig": "napari_microstructure.core.micrograph.augment",
    "TrainingConfig": "napari_microstructure.core.nn.training",
    "Progress": "napari_microstructure.core.nn.progress",
    "MicrostructureError": "napari_microstructure.core.errors",
    "NotFittedError": "napari_microstructure.core.errors",
    "ModelFileError": "napari_microstructure.core.errors",
    "TrainingCancelled": "napari_microstructure.core.errors",
    "select_device": "napari_microstructure.core.nn.device",
    "read_micrograph": "napari_microstructure.io.tiff",
    "write_micrograph": "napari_microstructure.io.tiff",
    "load_model": "napari_microstructure.api",
    "layer_image": "napari_microstructure.api",
    "layer_pixel_size": "napari_microstructure.api",
    "fit_layers": "napari_microstructure.api",
    "predict_layer": "napari_microstructure.api",
}

#: sub-modules reachable as attributes, e.g. ``nm.explain.attribution``, ``nm.choices.BACKBONES``
_SUBMODULES = {"explain": "napari_microstructure.core.explain", "choices": "napari_microstructure.core.choices"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name])
    else:
        raise AttributeError(f"module 'napari_microstructure' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
