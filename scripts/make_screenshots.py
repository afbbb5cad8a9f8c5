"""Screenshots of the widgets for the docs, taken under Xvfb.

Usage (after ``make demo``, which writes ``demo-output/model.pt``)::

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python scripts/make_screenshots.py demo-output/model.pt

Writes ``docs/images/training-widget.png`` and ``docs/images/probmap-overlay.png``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("NAPARI_MICROSTRUCTURE_SYNC", "1")

import napari  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_microstructure import FewShotClassifier  # noqa: E402
from napari_microstructure._napari._probmap_widget import ProbabilityMapWidget  # noqa: E402
from napari_microstructure._napari._sample_data import make_sample_mixed, sample_micrographs  # noqa: E402
from napari_microstructure._napari._training_widget import TrainingWidget  # noqa: E402

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def settle() -> None:
    for _ in range(30):
        QApplication.processEvents()


def training_shot(clf: FewShotClassifier) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 1000)
    for data, kwargs, _ in sample_micrographs():
        viewer.add_image(data, **kwargs)
    viewer.grid.enabled = True
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Few-shot training", area="right")
    widget.set_classifier(clf)
    viewer.layers.selection.active = viewer.layers["pearlite 2"]
    widget.classify()
    settle()
    viewer.window._qt_window.grab().save(str(IMAGES / "training-widget.png"))
    viewer.close()


def probmap_shot(clf: FewShotClassifier) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 820)
    data, kwargs, _ = make_sample_mixed()[0]
    viewer.add_image(data, **kwargs)
    widget = ProbabilityMapWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Probability maps", area="right")
    widget.set_classifier(clf, "demo model")
    widget.image_combo.setCurrentText(kwargs["name"])
    widget.augment_spin.setValue(8)
    widget.run()
    widget.threshold_slider.setValue(30)
    settle()
    viewer.reset_view()
    settle()
    viewer.window._qt_window.grab().save(str(IMAGES / "probmap-overlay.png"))
    print("area fractions:", widget.results[kwargs["name"]].fractions)
    viewer.close()


def main() -> None:
    clf = FewShotClassifier.load(sys.argv[1] if len(sys.argv) > 1 else "demo-output/model.pt", device="cpu")
    training_shot(clf)
    probmap_shot(clf)


if __name__ == "__main__":
    main()
