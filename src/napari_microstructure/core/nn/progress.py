"""Progress reporting and cancellation shared by every long computation.

Long computations take ``progress`` (a callable receiving :class:`Progress`)
and ``cancel`` (a :class:`threading.Event`, or anything with ``is_set()``).
Widgets relay the callback to napari's progress bar; the command line prints it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Protocol

from ..errors import TrainingCancelled


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclasses.dataclass
class Progress:
    """One progress report.

    Attributes
    ----------
    stage : str
        What is running, e.g. ``"train"``, ``"calibrate"``, ``"map"``.
    step, total : int
        Position within the stage (``total`` may be 0 when unknown).
    message : str
        A short human-readable line.
    metrics : dict
        Numbers worth plotting, e.g. ``{"train_loss": 0.3, "val_loss": 0.4}``.
    """

    stage: str
    step: int
    total: int
    message: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return float(self.step) / self.total if self.total else 0.0


ProgressCallback = Callable[[Progress], None]


def report(progress: Optional[ProgressCallback], *args: Any, **kwargs: Any) -> None:
    """Send a :class:`Progress` to ``progress`` if a callback was given."""
    if progress is not None:
        progress(Progress(*args, **kwargs))


def check_cancel(cancel: Optional[CancelToken]) -> None:
    """Raise :class:`TrainingCancelled` if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled("cancelled by the user; nothing was changed")
