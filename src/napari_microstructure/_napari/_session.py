"""The model in memory, shared by the dock widgets of one napari viewer.

The training widget publishes the model it trained or loaded in the session of
its viewer; the probability-map and explanation widgets of the same viewer pick
it up, so a user trains once and uses the result everywhere without saving a
file first. Each viewer (window) has its own session: a model trained in one
window is not handed to the widgets of another (nor to a later viewer of the
same process, e.g. the next test or script). From napari's console:
``from napari_microstructure._napari._session import session_for;
session_for(viewer).classifier``.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional

from psygnal import Signal


class Session:
    """Holds the most recent model; ``model_changed(classifier)`` fires on change."""

    model_changed = Signal(object)

    def __init__(self) -> None:
        self.classifier: Optional[Any] = None

    def set_classifier(self, classifier: Any) -> None:
        self.classifier = classifier
        self.model_changed.emit(classifier)


#: one session per live viewer, keyed by the viewer's id (removed when the viewer is collected)
_SESSIONS: dict[int, Session] = {}


def session_for(viewer: Any) -> Session:
    """The session of ``viewer`` (napari's plugin proxy of it gives the same one), created on first use."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    key = id(viewer)
    found = _SESSIONS.get(key)
    if found is None:
        found = _SESSIONS[key] = Session()
        try:
            weakref.finalize(viewer, _SESSIONS.pop, key, None)
        except TypeError:  # an object without weak references (a test stub): the session lives on
            pass
    return found
