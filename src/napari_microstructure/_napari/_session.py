"""The model in memory, shared by the dock widgets of one napari session.

The training widget (and the EBSD widget) publish the model they trained or
loaded here; the probability-map and explanation widgets pick it up, so a user
trains once and uses the result everywhere without saving a file first. From
napari's console: ``from napari_microstructure._napari._session import session;
session.classifier``.
"""

from __future__ import annotations

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


session = Session()
