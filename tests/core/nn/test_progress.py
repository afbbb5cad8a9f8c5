"""Progress reports and cancellation."""

import threading

import pytest

from napari_microstructure.core.errors import TrainingCancelled
from napari_microstructure.core.nn.progress import Progress, check_cancel, report


def test_report_builds_progress_only_with_a_callback():
    seen = []
    report(seen.append, "map", 3, 4, "tile 3", {"crops": 10})
    report(None, "map", 4, 4)  # no callback: nothing happens
    assert seen == [Progress("map", 3, 4, "tile 3", {"crops": 10})]
    assert seen[0].fraction == 0.75
    assert Progress("train", 5, 0).fraction == 0.0  # unknown total


def test_check_cancel():
    check_cancel(None)
    event = threading.Event()
    check_cancel(event)
    event.set()
    with pytest.raises(TrainingCancelled, match="nothing was changed"):
        check_cancel(event)
