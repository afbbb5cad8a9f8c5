"""Exceptions raised by napari-microstructure.

Every error names the problem and the fix, so that a user in napari's console or
in the widgets knows what to change.
"""

from __future__ import annotations


class MicrostructureError(ValueError):
    """Invalid input or state: the message says what is wrong and how to fix it."""


class NotFittedError(MicrostructureError, AttributeError):
    """A classifier was used before ``fit`` (or ``load``)."""


class ModelFileError(MicrostructureError):
    """A model file is corrupt, of an unknown version, or of the wrong kind."""


class TrainingCancelled(RuntimeError):
    """Raised inside a long computation when its cancel event is set.

    The object being fitted keeps whatever state it had before the call.
    """
