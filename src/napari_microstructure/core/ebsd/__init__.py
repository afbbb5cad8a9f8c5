"""EBSD pattern classification: preprocessing, the classifier, maps, metrics, simulation.

The names below are imported on first access: the classifier imports torch,
and the pattern readers (:mod:`napari_microstructure.io.ebsd`), which use the
light sub-modules (``bands``, ``orientations``, ``_validation``), must not.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "EBSDClassifier": ".classifier",
    "EBSDNet": ".classifier",
    "MapResult": ".mapping",
    "classify_map": ".mapping",
    "ClassificationReport": ".metrics",
    "classification_report": ".metrics",
    "PatternPreprocessor": ".preprocess",
}

__all__ = ["EBSDClassifier", "EBSDNet", "MapResult", "classify_map", "ClassificationReport",
           "classification_report", "PatternPreprocessor"]


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
