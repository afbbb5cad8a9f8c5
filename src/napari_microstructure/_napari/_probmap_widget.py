"""The "Probability maps" dock widget.

Choose a trained micrograph model (the one handed over by the training widget
through :meth:`ProbabilityMapWidget.set_classifier`, or a model file) and an
image layer; Run computes :func:`~napari_microstructure.core.micrograph.probmap.probability_map`
off the GUI thread and adds, aligned with the image:

- one image layer per class and one for "none", named class first
  (``"ferrite probability · <image>"``, so napari's layer list, which cuts long
  names in the middle, still shows the class; additive blending, contrast 0-1,
  hidden except the classes with the largest areas),
- a Labels layer of the most probable class (0 not evaluated), with the class
  names in its features,
- an outlier layer: pixels whose "none" probability reaches the threshold
  slider, in red, semi-transparent; moving the slider updates it and the area
  fractions without recomputing.

The colours come from :mod:`napari_microstructure.core.colours` (the Explain
figures use the same); the table under the slider is the legend. The image
must have a known pixel size (:func:`napari_microstructure.api.layer_pixel_size`).
Running again on the same image replaces its layers.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QPushButton,
    QSlider, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout,
)

from ..core.colours import NONE_COLOUR, OUTLIER_COLOUR, hex_to_rgb
from ..core.colours import class_colour as _class_colour_hex
from ..core.errors import MicrostructureError
from ._kit import DockWidget, LayerPicker, ModelFileRow, SchedulerEdit, is_micrograph_image, place_like
from ._workers import Job
from ._writer import METADATA_KEY

#: How many classes (largest area first) are visible after a run.
VISIBLE_CLASSES = 2
#: the map methods, default first (the core's default)
METHODS = ("shared", "exact")
#: the Crop field at 0 before a field of view is known
AUTO_CROP = "auto (model's)"


def auto_crop_text(fov_um: float) -> str:
    """The Crop field at 0 once the field of view it stands for is known, e.g. ``"auto (48 µm)"``."""
    return f"auto ({fov_um:.3g} µm)"


def class_colour(index: int, n_classes: int) -> tuple[float, float, float]:
    """Colour (RGB 0-1) of class ``index``; the last index (``n_classes``) is "none" (see core.colours)."""
    return hex_to_rgb(_class_colour_hex(index, n_classes))


def probability_layer_name(class_name: str, image_name: str) -> str:
    """Class first, so napari's layer list (which cuts long names in the middle) still shows it."""
    return f"{class_name} probability · {image_name}"


class ProbabilityMapWidget(DockWidget):
    """Dock widget computing crop-averaged probability maps of an image layer."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        from ..core.micrograph.probmap import probability_map
        from ._kit import estimator_defaults

        self.classifier: Optional[Any] = None
        self.results: dict[str, Any] = {}
        self._result_layers: dict[str, Any] = {}
        defaults = estimator_defaults(probability_map)

        mv = QVBoxLayout(self.section("Model"))
        mv.setContentsMargins(0, 0, 0, 0)
        self.model_label = QLabel("no model: train one in the training widget, or load a model file")
        self.model_label.setWordWrap(True)
        self.model_files = ModelFileRow(self.load_model_file)
        mv.addWidget(self.model_label)
        mv.addWidget(self.model_files)

        form = QFormLayout(self.section("Map"))
        form.setContentsMargins(2, 0, 2, 0)
        self.image_combo = LayerPicker(self.viewer, is_micrograph_image)
        self.stride_spin = QDoubleSpinBox()
        self.stride_spin.setRange(0, 100000)
        self.stride_spin.setDecimals(0)
        self.stride_spin.setSpecialValueText("auto (crop / 8)")
        self.stride_spin.setToolTip("grid stride in image pixels; 0: an eighth of a crop")
        self.fov_spin = QDoubleSpinBox()
        self.fov_spin.setRange(0, 100000)
        self.fov_spin.setDecimals(1)
        self.fov_spin.setSpecialValueText(AUTO_CROP)
        self.fov_spin.setToolTip("field of view of one crop in micrometres; 0: the model's (the median training "
                                 "field of view, or the image's shorter side when smaller). Smaller crops give a "
                                 "finer map but show less of an untrained structure to flag")
        self.augment_spin = QSpinBox()
        self.augment_spin.setRange(1, 8)
        self.augment_spin.setValue(int(defaults.get("n_augment", 1)))
        self.augment_spin.setToolTip("test-time augmentations per crop (mirror, quarter turns)")
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(METHODS))
        self.method_combo.setCurrentText(str(defaults.get("method", METHODS[0])))
        self.method_combo.setToolTip("shared: one fully convolutional pass over the image (fast); "
                                     "exact: every crop on its own (slow, for checking). Models with "
                                     "frozen ImageNet features (the default) always map exactly")
        self.normalise_fovs = defaults.get("normalise_fovs")
        self.intensity_combo = QComboBox()
        # short items (the dock may be narrow); the neighbourhood's size is in the tooltip
        self.intensity_combo.addItems(["per region", "whole image"])
        self.intensity_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.intensity_combo.setMinimumContentsLength(10)
        self.intensity_combo.setToolTip(
            f"how intensities are scaled before the crops are read: per region (each neighbourhood of "
            f"{self.normalise_fovs:g} crops as a training image of it alone would be, whatever the rest of the "
            "image holds: a porous region's black pores no longer dim its neighbour), or over the whole image "
            "at once")
        self.scheduler_edit = SchedulerEdit()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        form.addRow("Image", self.image_combo)
        form.addRow("Stride (px)", self.stride_spin)
        form.addRow("Crop (µm)", self.fov_spin)
        self.panel.control_names["fov_um"] = "Crop (µm)"      # the core's messages name the field
        form.addRow("Augmentations", self.augment_spin)
        form.addRow("Method", self.method_combo)
        form.addRow("Intensities", self.intensity_combo)
        form.addRow("Cluster", self.scheduler_edit)
        form.addRow(self.run_button)

        rv = QVBoxLayout(self.section("Outliers and area fractions"))
        rv.setContentsMargins(0, 0, 0, 0)
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(50)
        self.threshold_label = QLabel("0.50")
        self.threshold_slider.valueChanged.connect(self._threshold_changed)
        trow = QHBoxLayout()
        trow.addWidget(QLabel("Outlier threshold"))
        trow.addWidget(self.threshold_slider, 1)
        trow.addWidget(self.threshold_label)
        rv.addLayout(trow)
        self.table_caption = QLabel("")
        self.table_caption.setWordWrap(True)
        rv.addWidget(self.table_caption)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["", "class (colour legend)", "area %"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setColumnWidth(0, 24)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(60)
        self.table.setMaximumHeight(60)
        rv.addWidget(self.table)
        self.save_button = QPushButton("Save maps as TIFF…")
        self.save_button.clicked.connect(self._save_dialog)
        rv.addWidget(self.save_button)
        self.finish_layout()
        self.actions(self.run_button, self.save_button, *self.model_files.buttons())

        # the model trained or loaded in the training widget, now and later
        from ._session import session_for

        session = session_for(self.viewer)
        session.model_changed.connect(self._on_session_model)
        if session.classifier is not None:
            self._on_session_model(session.classifier)

    @property
    def job_running(self) -> bool:
        return self.busy

    def action_states(self) -> dict[Any, bool]:
        return {self.run_button: self.classifier is not None,
                self.save_button: self.image_combo.currentText() in self.results}

    def _on_session_model(self, classifier: Any) -> None:
        try:
            self.objectName()
        except RuntimeError:
            return
        if getattr(classifier, "kind", None) == "micrograph" and getattr(classifier, "is_fitted", False):
            self.set_classifier(classifier, name="model from the training widget")

    # ------------------------------------------------------------ the model
    def set_classifier(self, classifier: Any, name: str = "model in memory") -> None:
        """Use ``classifier`` (a fitted FewShotClassifier), e.g. handed over by the training widget."""
        from ..core.micrograph.probmap import _check_classifier

        _check_classifier(classifier)
        self.classifier = classifier
        self.model_label.setText(f"{name}: {', '.join(classifier.classes_)} (+ none)")
        # what "auto" stands for with this model (an image smaller than it gets its shorter side)
        fov = getattr(classifier, "map_fov_um_", None)
        self.fov_spin.setSpecialValueText(auto_crop_text(float(fov)) if fov else AUTO_CROP)
        self.refresh_actions()

    def load_model_file(self, path: str) -> bool:
        """Load a model file; on failure the reason is shown and False returned."""
        from ..api import load_model

        if not str(path).strip():
            self.set_status("choose a model file first (Load model…)")
            return False
        try:
            clf = load_model(path, device="auto")
            self.set_classifier(clf, name=str(path))
        except MicrostructureError as exc:
            self.error(exc)
            return False
        self.set_status("model loaded")
        return True

    # ------------------------------------------------------------------ run
    def run(self) -> Optional[Job]:
        """Start the computation for the chosen image; returns the job (None if refused)."""
        from ..api import layer_image
        from ..core.micrograph.probmap import probability_map

        if self.busy:
            self.set_status("a map is already being computed; wait or Cancel it")
            return None
        if self.classifier is None:
            self.error("no model: train one in the training widget, or load a model file")
            return None
        layer = self.image_combo.layer()
        if layer is None:
            self.error("choose an image layer (open a micrograph first)")
            return None
        try:
            data, size = layer_image(layer)
        except MicrostructureError as exc:
            self.error(exc)
            return None
        stride = self.stride_spin.value() or None
        auto_fov = not self.fov_spin.value()
        self._clear_table()
        return self.start_job(probability_map, self.classifier, data, size, stride=stride,
                              fov_um=self.fov_spin.value() or None,
                              n_augment=self.augment_spin.value(), method=self.method_combo.currentText(),
                              normalise_fovs=self.normalise_fovs if self.intensity_combo.currentIndex() == 0 else None,
                              client=self.scheduler_edit.client(),
                              on_done=lambda result: self._show(layer, result, auto_fov),
                              message=f"mapping {layer.name!r}…")

    # --------------------------------------------------------------- layers
    @property
    def threshold(self) -> float:
        return self.threshold_slider.value() / 100.0

    def layers_of(self, image_name: str) -> list[Any]:
        """The layers this widget made for ``image_name``."""
        return [lay for lay in self.viewer.layers
                if (lay.metadata.get(METADATA_KEY) or {}).get("image") == image_name]

    def _show(self, image_layer: Any, result: Any, auto_fov: bool = False) -> None:
        from napari.utils.colormaps import Colormap, DirectLabelColormap

        image_name = image_layer.name
        for old in self.layers_of(image_name):
            self.viewer.layers.remove(old)
        # same scale, translate and units as the image (napari warns about inconsistent units otherwise)
        place = place_like(image_layer)
        n_classes = len(result.class_names) - 1
        ranked = sorted(range(n_classes), key=lambda k: -result.fractions[result.class_names[k]])
        visible = set(ranked[:VISIBLE_CLASSES])
        base = {"image": image_name, "pixel_size_um": result.pixel_size_um, "threshold": self.threshold,
                "evaluated": result.evaluated}
        for k, cname in enumerate(result.class_names):
            colour = class_colour(k, n_classes)
            cmap = Colormap([[0, 0, 0, 1], [*colour, 1]], name=f"probmap-{cname}-{k}")
            self.viewer.add_image(
                np.nan_to_num(result.probabilities[k], nan=0.0), name=probability_layer_name(cname, image_name),
                colormap=cmap, blending="additive", contrast_limits=(0.0, 1.0), **place,
                visible=k in visible, opacity=0.7,
                metadata={METADATA_KEY: dict(base, class_name=cname, index=k, role="probability")},
            )
        colours = {0: (0, 0, 0, 0), None: (0, 0, 0, 0)}
        for k in range(n_classes + 1):
            colours[k + 1] = (*class_colour(k, n_classes), 1.0)
        features = {"index": list(range(n_classes + 2)), "class": ["not evaluated", *result.class_names]}
        labels = self.viewer.add_labels(
            result.labels, name=f"most probable class · {image_name}", **place, opacity=0.5,
            visible=False, features=features,
            metadata={METADATA_KEY: dict(base, role="labels", class_names=result.class_names)},
        )
        labels.colormap = DirectLabelColormap(color_dict=colours)
        outlier_cmap = Colormap([[0, 0, 0, 0], [*hex_to_rgb(OUTLIER_COLOUR), 1]], name="probmap-outlier")
        self.viewer.add_image(
            result.outlier_mask(self.threshold).astype(np.uint8), name=f"outliers · {image_name}",
            colormap=outlier_cmap, contrast_limits=(0, 1), blending="translucent", opacity=0.55, **place,
            metadata={METADATA_KEY: dict(base, role="outliers")},
        )
        self.results[image_name] = result
        self._shown = image_name
        self._fill_table(result)
        self.viewer.layers.selection.active = image_layer
        self.show_scale_bar()
        self.refresh_actions()
        auto = " (auto)" if auto_fov else ""
        if auto_fov:  # the value the map used: the model's, or the image's shorter side when smaller
            self.fov_spin.setSpecialValueText(auto_crop_text(result.fov_um))
        self.set_status(f"{image_name!r}: {result.n_crops} crops of {result.fov_um:.3g} µm{auto} in "
                        f"{result.timings.get('total', 0):.0f} s")

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
        shown = getattr(self, "_shown", None)
        if shown in self.results:
            self._fill_table(self.results[shown])

    def _clear_table(self) -> None:
        self.table.setRowCount(0)
        self.table_caption.setText("")

    def _fill_table(self, result: Any) -> None:
        """The colour legend with the area fractions at the current outlier threshold."""
        n_classes = len(result.class_names) - 1
        fractions = result.fractions_at(self.threshold)
        self.table_caption.setText(
            f"<b>{getattr(self, '_shown', '')}</b>: share of the evaluated area; a pixel whose "
            f"\"none\" probability reaches {self.threshold:.2f} counts as an outlier")
        self.table.setRowCount(len(result.class_names))
        for k, cname in enumerate(result.class_names):
            swatch = QTableWidgetItem("")
            is_none = k == n_classes
            r, g, b = (int(255 * c) for c in (hex_to_rgb(OUTLIER_COLOUR) if is_none else class_colour(k, n_classes)))
            swatch.setBackground(QColor(r, g, b))
            text = f"outliers (none ≥ {self.threshold:.2f})" if is_none else cname
            name_item = QTableWidgetItem(text)
            name_item.setData(Qt.ItemDataRole.UserRole, cname)
            if is_none:
                name_item.setToolTip(f"red overlay; the grey layer 'none probability' shows the "
                                     f"\"none\" probability itself ({NONE_COLOUR})")
            self.table.setItem(k, 0, swatch)
            self.table.setItem(k, 1, name_item)
            self.table.setItem(k, 2, QTableWidgetItem(f"{100 * fractions[cname]:.1f}"))
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        height = rows + self.table.horizontalHeader().height() + 2 * self.table.frameWidth() + 2
        self.table.setMinimumHeight(height)
        self.table.setMaximumHeight(height)

    def fractions_table(self) -> dict[str, str]:
        """The table's contents as ``{class: "area %"}`` ("none": the outliers) for scripts and tests."""
        return {self.table.item(r, 1).data(Qt.ItemDataRole.UserRole): self.table.item(r, 2).text()
                for r in range(self.table.rowCount())}

    # ----------------------------------------------------------------- save
    def save_maps(self, path: str, image_name: Optional[str] = None) -> str:
        """Write the last map of ``image_name`` (default: the chosen image) to a TIFF."""
        from ..io.probmap_tiff import write_probability_tiff

        name = image_name or getattr(self, "_shown", None) or self.image_combo.currentText()
        if name not in self.results:
            raise MicrostructureError(f"no probability map of {name!r} yet; press Run first")
        return str(write_probability_tiff(path, self.results[name], threshold=self.threshold))

    def _save_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Save probability maps", "", "TIFF (*.tif *.tiff)")
        if path:
            try:
                self.set_status(f"saved {self.save_maps(path)}")
            except MicrostructureError as exc:
                self.error(exc)
