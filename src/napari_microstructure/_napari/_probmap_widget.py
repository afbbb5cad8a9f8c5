"""The "Probability maps" dock widget.

Choose a trained micrograph model (the one handed over by the training widget
through :meth:`ProbabilityMapWidget.set_classifier`, or a model file) and an
image layer; Run computes :func:`~napari_microstructure.core.micrograph.probmap.probability_map`
off the GUI thread and adds, aligned with the image:

- one image layer per class and one for "none" (additive blending, contrast
  0-1, hidden except the classes with the largest areas),
- a Labels layer of the most probable class (0 not evaluated), with the class
  names in its features,
- an outlier layer: pixels whose "none" probability reaches the threshold
  slider, in a strong red, semi-transparent; moving the slider updates it
  without recomputing.

Running again on the same image replaces its layers.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
    QSlider, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from ..core.errors import MicrostructureError
from ._workers import Job, ProgressPanel, format_exception
from ._writer import METADATA_KEY

#: Class colours (RGB 0-1), in class order; "none" is grey in the stack, red in the outlier layer.
CLASS_COLOURS = [
    (0.10, 0.85, 0.25), (0.15, 0.65, 1.00), (1.00, 0.85, 0.10), (0.75, 0.35, 1.00),
    (1.00, 0.55, 0.10), (0.20, 0.95, 0.90), (0.95, 0.45, 0.70), (0.60, 0.80, 0.20),
]
NONE_COLOUR = (0.6, 0.6, 0.6)
OUTLIER_COLOUR = (1.0, 0.0, 0.0)
#: How many classes (largest area first) are visible after a run.
VISIBLE_CLASSES = 2


def class_colour(index: int, n_classes: int) -> tuple[float, float, float]:
    """Colour of class ``index``; the last index (``n_classes``) is "none"."""
    if index >= n_classes:
        return NONE_COLOUR
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]


class ProbabilityMapWidget(QWidget):
    """Dock widget computing crop-averaged probability maps of an image layer."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.classifier: Optional[Any] = None
        self.results: dict[str, Any] = {}
        self._layer_meta: dict[str, dict] = {}
        self.job: Optional[Job] = None

        self.model_label = QLabel("no model: train one, or load a model file")
        self.model_label.setWordWrap(True)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("model file (.pt)")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse_model)
        load = QPushButton("Load")
        load.clicked.connect(lambda: self.load_model_file(self.path_edit.text()))
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        row.addWidget(load)

        self.image_combo = QComboBox()
        self.stride_spin = QDoubleSpinBox()
        self.stride_spin.setRange(0, 100000)
        self.stride_spin.setDecimals(0)
        self.stride_spin.setSpecialValueText("auto (crop / 8)")
        self.stride_spin.setToolTip("grid stride in image pixels; 0: an eighth of a crop")
        self.augment_spin = QSpinBox()
        self.augment_spin.setRange(1, 8)
        self.augment_spin.setToolTip("test-time augmentations per crop (mirror, quarter turns)")
        self.method_combo = QComboBox()
        self.method_combo.addItems(["shared", "exact"])
        self.method_combo.setToolTip("shared: one fully convolutional pass over the image (fast); exact: every crop on its own (slow, for checking)")
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.panel = ProgressPanel()

        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(50)
        self.threshold_label = QLabel("0.50")
        self.threshold_slider.valueChanged.connect(self._threshold_changed)
        trow = QHBoxLayout()
        trow.addWidget(self.threshold_slider, 1)
        trow.addWidget(self.threshold_label)

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["", "class", "area %"])
        self.table.verticalHeader().setVisible(False)
        self.table.setColumnWidth(0, 24)
        self.save_button = QPushButton("Save maps as TIFF...")
        self.save_button.clicked.connect(self._save_dialog)
        self.save_button.setEnabled(False)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Stride (px)", self.stride_spin)
        form.addRow("Augmentations", self.augment_spin)
        form.addRow("Method", self.method_combo)
        form.addRow("Outlier threshold", trow)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Model</b>"))
        layout.addWidget(self.model_label)
        layout.addLayout(row)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.panel)
        layout.addWidget(QLabel("<b>Area fractions</b> (colour legend)"))
        layout.addWidget(self.table)
        layout.addWidget(self.save_button)
        layout.addStretch(1)

        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()

        # the model trained or loaded in the training widget, now and later
        from ._session import session

        session.model_changed.connect(self._on_session_model)
        if session.classifier is not None:
            self._on_session_model(session.classifier)

    def _on_session_model(self, classifier: Any) -> None:
        if getattr(classifier, "kind", None) == "micrograph" and getattr(classifier, "is_fitted", False):
            self.set_classifier(classifier, name="model from the training widget")

    # ------------------------------------------------------------ the model
    def set_classifier(self, classifier: Any, name: str = "model in memory") -> None:
        """Use ``classifier`` (a fitted FewShotClassifier), e.g. handed over by the training widget."""
        from ..core.micrograph.probmap import _check_classifier

        _check_classifier(classifier)
        self.classifier = classifier
        self.model_label.setText(f"{name}: {', '.join(classifier.classes_)} (+ none)")

    def load_model_file(self, path: str) -> bool:
        """Load a model file; on failure the reason is shown and False returned."""
        from ..api import load_model

        if not str(path).strip():
            self.panel.status.setText("choose a model file first (Browse...)")
            return False
        try:
            clf = load_model(path, device="auto")
            self.set_classifier(clf, name=str(path))
        except MicrostructureError as exc:
            self.panel.status.setText(f"error: {exc}")
            return False
        self.path_edit.setText(str(path))
        self.panel.status.setText("model loaded")
        return True

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model file", "", "Models (*.pt *.pth);;All files (*)")
        if path:
            self.load_model_file(path)

    # ------------------------------------------------------------ the image
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [lay for lay in self.viewer.layers
                if isinstance(lay, Image) and METADATA_KEY not in lay.metadata]

    def _refresh_images(self, *_: Any) -> None:
        current = self.image_combo.currentText()
        names = [lay.name for lay in self._image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    # ------------------------------------------------------------------ run
    def run(self) -> Optional[Job]:
        """Start the computation for the chosen image; returns the job (None if refused)."""
        from ..api import layer_image
        from ..core.micrograph.probmap import probability_map

        if self.panel.busy:
            self.panel.status.setText("a map is already being computed; wait or Cancel it")
            return None
        if self.classifier is None:
            self.panel.status.setText("no model: train one in the training widget, or load a model file")
            return None
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            self.panel.status.setText("choose an image layer (open a micrograph first)")
            return None
        layer = self.viewer.layers[name]
        try:
            data, size = layer_image(layer)
        except MicrostructureError as exc:
            self.panel.status.setText(f"error: {exc}")
            return None
        stride = self.stride_spin.value() or None
        job = Job(probability_map, self.classifier, data, size, stride=stride,
                  n_augment=self.augment_spin.value(), method=self.method_combo.currentText())
        self.panel.attach(job)
        job.finished.connect(lambda result: self._show(layer, result))
        job.failed.connect(lambda exc: self.panel.status.setText(f"error: {format_exception(exc)}"))
        job.finished.connect(lambda _: self.run_button.setEnabled(True))
        job.failed.connect(lambda _: self.run_button.setEnabled(True))
        job.cancelled.connect(lambda: self.run_button.setEnabled(True))
        self.run_button.setEnabled(False)
        self.job = job
        return job.start()

    # --------------------------------------------------------------- layers
    @property
    def threshold(self) -> float:
        return self.threshold_slider.value() / 100.0

    def layers_of(self, image_name: str) -> list[Any]:
        """The layers this widget made for ``image_name``."""
        return [lay for lay in self.viewer.layers
                if (lay.metadata.get(METADATA_KEY) or {}).get("image") == image_name]

    def _show(self, image_layer: Any, result: Any) -> None:
        from napari.utils.colormaps import Colormap, DirectLabelColormap

        image_name = image_layer.name
        for old in self.layers_of(image_name):
            self.viewer.layers.remove(old)
        scale = tuple(image_layer.scale[-2:])
        translate = tuple(image_layer.translate[-2:])
        # same units as the image, or napari warns about inconsistent units
        place = {"scale": scale, "translate": translate}
        if getattr(image_layer, "units", None) is not None:
            place["units"] = tuple(image_layer.units[-2:])
        n_classes = len(result.class_names) - 1
        ranked = sorted(range(n_classes), key=lambda k: -result.fractions[result.class_names[k]])
        visible = set(ranked[:VISIBLE_CLASSES])
        base = {"image": image_name, "pixel_size_um": result.pixel_size_um, "threshold": self.threshold,
                "evaluated": result.evaluated}
        for k, cname in enumerate(result.class_names):
            colour = class_colour(k, n_classes)
            cmap = Colormap([[0, 0, 0, 1], [*colour, 1]], name=f"probmap-{cname}-{k}")
            self.viewer.add_image(
                np.nan_to_num(result.probabilities[k], nan=0.0), name=f"{image_name} {cname} probability",
                colormap=cmap, blending="additive", contrast_limits=(0.0, 1.0), **place,
                visible=k in visible, opacity=0.7,
                metadata={METADATA_KEY: dict(base, class_name=cname, index=k, role="probability")},
            )
        colours = {0: (0, 0, 0, 0), None: (0, 0, 0, 0)}
        for k in range(n_classes + 1):
            colours[k + 1] = (*class_colour(k, n_classes), 1.0)
        features = {"index": list(range(n_classes + 2)), "class": ["not evaluated", *result.class_names]}
        labels = self.viewer.add_labels(
            result.labels, name=f"{image_name} classes", **place, opacity=0.5,
            visible=False, features=features,
            metadata={METADATA_KEY: dict(base, role="labels", class_names=result.class_names)},
        )
        labels.colormap = DirectLabelColormap(color_dict=colours)
        outlier_cmap = Colormap([[0, 0, 0, 0], [*OUTLIER_COLOUR, 1]], name="probmap-outlier")
        self.viewer.add_image(
            result.outlier_mask(self.threshold).astype(np.uint8), name=f"{image_name} outliers",
            colormap=outlier_cmap, contrast_limits=(0, 1), blending="translucent", opacity=0.55, **place,
            metadata={METADATA_KEY: dict(base, role="outliers")},
        )
        self.results[image_name] = result
        self._fill_table(result)
        self.save_button.setEnabled(True)
        self.viewer.layers.selection.active = image_layer

    def outlier_layer(self, image_name: str) -> Optional[Any]:
        for lay in self.layers_of(image_name):
            if lay.metadata[METADATA_KEY].get("role") == "outliers":
                return lay
        return None

    def _threshold_changed(self, value: int) -> None:
        t = value / 100.0
        self.threshold_label.setText(f"{t:.2f}")
        for image_name, result in self.results.items():
            lay = self.outlier_layer(image_name)
            if lay is not None:
                lay.data = result.outlier_mask(t).astype(np.uint8)
            for other in self.layers_of(image_name):
                other.metadata[METADATA_KEY]["threshold"] = t

    def _fill_table(self, result: Any) -> None:
        n_classes = len(result.class_names) - 1
        self.table.setRowCount(len(result.class_names))
        for k, cname in enumerate(result.class_names):
            swatch = QTableWidgetItem("")
            r, g, b = (int(255 * c) for c in class_colour(k, n_classes))
            swatch.setBackground(QColor(r, g, b))
            self.table.setItem(k, 0, swatch)
            self.table.setItem(k, 1, QTableWidgetItem(cname))
            self.table.setItem(k, 2, QTableWidgetItem(f"{100 * result.fractions[cname]:.1f}"))

    def fractions_table(self) -> dict[str, str]:
        """The table's contents as ``{class: "area %"}`` (for scripts and tests)."""
        return {self.table.item(r, 1).text(): self.table.item(r, 2).text() for r in range(self.table.rowCount())}

    # ----------------------------------------------------------------- save
    def save_maps(self, path: str, image_name: Optional[str] = None) -> str:
        """Write the last map of ``image_name`` (default: the chosen image) to a TIFF."""
        from ..io.probmap_tiff import write_probability_tiff

        name = image_name or self.image_combo.currentText()
        if name not in self.results:
            raise MicrostructureError(f"no probability map of {name!r} yet; press Run first")
        return str(write_probability_tiff(path, self.results[name], threshold=self.threshold))

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save probability maps", "", "TIFF (*.tif *.tiff)")
        if path:
            try:
                self.panel.status.setText(f"saved {self.save_maps(path)}")
            except MicrostructureError as exc:
                self.panel.status.setText(f"error: {exc}")
