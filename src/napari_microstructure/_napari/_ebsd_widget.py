"""The "EBSD space-group map" dock widget.

Choose the pattern map layer (opened by the EBSD reader or the sample), give
training patterns (painted on the navigator in a Labels layer, each label
value a space group named in the table, or a file/folder of labelled
patterns, or the sample's labelled patterns), train off the GUI thread with
progress and Cancel, classify the map into a Labels layer (fixed colour per
space group, names in the layer's features, a legend), a confidence image
and a "no solution" mask, see the phase fractions, click the map to see a
pattern and its class probabilities, save and load models.

The method is the band-profile classifier by default (the shipped model
classifies the space groups of materials it never saw, with no labels, and
fine-tunes on a few labelled patterns); the CNN backbones are offered beside
it. Band profiles need the detector's projection centre: the field is filled
from the chosen pattern layer's metadata (the file's header, or the sample's
simulated detector) unless the user typed one.

All computation is in :mod:`napari_microstructure.core.ebsd`; this module
only collects inputs and shows results. Result layers are created only when
a job has finished, so a cancelled job leaves no half-made layers.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..core.colours import NO_SOLUTION_COLOUR, label_colour
from ..core.errors import MicrostructureError
from ._kit import (BACKBONES, DockWidget, LayerPicker, ModelFileRow, SchedulerEdit, estimator_defaults, place_like,
                   on_theme_change, theme_figure)
from ._workers import Job

# the Training choices: short enough for the dock's width, the detail in their tooltips (SOURCE_TIPS)
SOURCE_PAINTED = "Paint on the navigator"
SOURCE_FILE = "File or folder"
SOURCE_LAYER = "Layer's own labelled patterns"
SOURCE_TIPS = {
    SOURCE_PAINTED: "labels painted on the navigator (press New), one label value per phase; type each value's "
                    "space group in the table",
    SOURCE_FILE: "a file or folder of labelled patterns: .npz (patterns, labels), a folder of class folders, "
                 "or a pattern file with a labels file",
    SOURCE_LAYER: "the labelled patterns stored with the pattern layer (the sample data has 150 per phase)",
}
#: the brush of a new training Labels layer: one map pixel, one pattern
TRAINING_BRUSH_SIZE = 1

RESULT_SUFFIXES = ("space groups", "confidence", "no solution", "orientation IPF-Z")
#: the Backbone choice that trains a :class:`~napari_microstructure.core.ebsd.bandclassifier.BandProfileClassifier`
BAND_PROFILES = "band profiles"
#: what a painted label value's class cell says until the user types a space group
ASK_SPACE_GROUP = "type a space group, e.g. 225"


def class_colour(label: Any, k: int) -> str:
    """Fixed colour of a class: one per cubic space group, else from the class table (core.colours)."""
    return label_colour(label, k)


def _is_pattern_map(layer: Any) -> bool:
    return getattr(layer, "_type_string", "") == "image" and layer.ndim == 4


def _is_training_labels(layer: Any) -> bool:
    return (getattr(layer, "_type_string", "") == "labels" and layer.ndim == 2
            and not layer.name.endswith(RESULT_SUFFIXES) and layer.metadata.get("role") != "ground truth"
            and not layer.metadata.get("ebsd"))


def _row_widgets(form: QFormLayout, row: Any) -> list:
    """The widgets of a form row: its label, if any, and its field (a widget, or a layout's widgets)."""
    from qtpy.QtWidgets import QLayout

    label = form.labelForField(row)
    if isinstance(row, QLayout):
        fields = [row.itemAt(i).widget() for i in range(row.count()) if row.itemAt(i).widget() is not None]
    else:
        fields = [row]
    return ([label] if label is not None else []) + fields


def _pc_text(pc: Any) -> str:
    """A projection centre as the field shows it, e.g. ``"0.5, 0.3, 0.6"``."""
    return ", ".join(f"{float(v):.4g}" for v in pc)


def _same_pc(a: Any, b: Any) -> bool:
    """Two projection centres the same to the field's precision."""
    return bool(np.allclose(a, b, atol=5e-5))


def _parse_class(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


def _classify(classifier, pattern_map, chunk_size, client=None, background=None, progress=None, cancel=None):
    extra = {} if background is None else {"background": background}  # a band-profile model's static background
    return classifier.classify_map(pattern_map, chunk_size=chunk_size, client=client, progress=progress,
                                   cancel=cancel, **extra)


def _fit(classifier, patterns, labels, map_patterns=None, background=None, progress=None, cancel=None):
    extra = {} if background is None else {"background": background}
    if map_patterns is not None:  # a band-profile model: the map's grains carry the labels to every orientation
        extra["map_patterns"] = map_patterns
    return classifier.fit(patterns, labels, progress=progress, cancel=cancel, **extra)


class EBSDWidget(DockWidget):
    """Dock widget: train an EBSD space-group classifier and map a pattern map."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        from ..core.ebsd.bandclassifier import BandProfileClassifier
        from ..core.ebsd.classifier import EBSDClassifier

        defaults = estimator_defaults(EBSDClassifier)
        # each method's own "no solution" threshold; the spin box follows the method until the user sets it
        self._thresholds = {True: float(estimator_defaults(BandProfileClassifier)["confidence_threshold"]),
                            False: float(defaults.get("confidence_threshold", 0.5))}
        self.classifier: Any = None
        self._trained_warnings: list[str] = []  # the warnings of the model's training (Train)
        self.result: Any = None
        self.last_probabilities: Optional[np.ndarray] = None
        self._result_map_name: Optional[str] = None
        self._map_background = False  # whether the last map subtracted the file's static background
        # where the Projection centre field's text came from when the widget wrote it:
        # (id of the pattern layer or "model", the text); text the user typed differs from it
        self._pc_filled: Optional[tuple[Any, str]] = None
        self.progress_panel = self.panel

        # --- inputs
        form = QFormLayout(self.section("Pattern map and training patterns"))
        form.setContentsMargins(2, 0, 2, 0)
        self.map_combo = LayerPicker(self.viewer, _is_pattern_map)
        form.addRow("Pattern map", self.map_combo)
        self.source_combo = QComboBox()
        for i, source in enumerate((SOURCE_PAINTED, SOURCE_FILE, SOURCE_LAYER)):
            self.source_combo.addItem(source)
            self.source_combo.setItemData(i, SOURCE_TIPS[source], Qt.ItemDataRole.ToolTipRole)
        self.source_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source_combo.setMinimumContentsLength(14)
        self.source_combo.setToolTip("where the training patterns come from; only that source's fields are shown")
        form.addRow("Training", self.source_combo)
        self.labels_combo = LayerPicker(self.viewer, _is_training_labels)
        new_labels = QPushButton("New")
        new_labels.setToolTip("Add a Labels layer over the navigator to paint training pixels")
        new_labels.clicked.connect(self._on_new_labels)
        labels_row = QHBoxLayout()
        labels_row.addWidget(self.labels_combo, 1)
        labels_row.addWidget(new_labels)
        form.addRow("Painted labels", labels_row)
        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["label", "space group (type it)"])
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.setMaximumHeight(110)
        self.class_table.setToolTip("each painted label value needs its space group number (221-230) or class name")
        self.class_table.itemChanged.connect(self._colour_training_labels)
        form.addRow(self.class_table)
        self.file_edit = QLineEdit()
        self.file_edit.setPlaceholderText(".npz, folder of class folders, or pattern file")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_training)
        file_row = QHBoxLayout()
        file_row.addWidget(self.file_edit, 1)
        file_row.addWidget(browse)
        form.addRow("Pattern file", file_row)
        self.labels_file_edit = QLineEdit()
        self.labels_file_edit.setPlaceholderText("only with a plain pattern file")
        self.labels_file_edit.setToolTip("the labels of a plain pattern file (.npy, or text/CSV with one label per "
                                         "line or a column space_group); not needed for .npz or a folder")
        form.addRow("Labels file", self.labels_file_edit)
        self.layer_source_note = QLabel("trains on the labelled patterns stored with the pattern layer")
        self.layer_source_note.setWordWrap(True)
        form.addRow(self.layer_source_note)
        # each Training choice shows its own fields only
        self._source_form = form
        self._source_rows = {SOURCE_PAINTED: [labels_row, self.class_table],
                             SOURCE_FILE: [file_row, self.labels_file_edit],
                             SOURCE_LAYER: [self.layer_source_note]}
        self.source_combo.currentTextChanged.connect(self._source_changed)
        self._source_changed()

        # --- options
        opts = QFormLayout(self.section("Classifier"))
        opts.setContentsMargins(2, 0, 2, 0)
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems([BAND_PROFILES, *BACKBONES])
        self.backbone_combo.setCurrentText(BAND_PROFILES)  # the method that classifies unseen materials
        self.backbone_combo.setToolTip(
            "band profiles (default) index each pattern (needs the projection centre) and classify space "
            "groups of materials never seen, even with no labels; CNN backbones learn only from your "
            "labelled patterns and need no projection centre")
        opts.addRow("Backbone", self.backbone_combo)
        self.pc_edit = QLineEdit()
        self.pc_edit.setPlaceholderText("PCx, PCy, PCz (Bruker), e.g. 0.5, 0.3, 0.6")
        self.pc_edit.setToolTip("projection centre, needed by band profiles: fractions of the pattern width "
                                "and height from the top-left corner, detector distance in pattern heights; "
                                "filled from the pattern file when it gives one (a value you type is kept)")
        # at dock width the field is narrow: show the start of the three numbers, not their end
        self.pc_edit.editingFinished.connect(lambda: self.pc_edit.setCursorPosition(0))
        self.pc_edit.setMinimumWidth(self.pc_edit.fontMetrics().horizontalAdvance("0.50, 0.30, 0.60") + 14)
        self.shipped_button = QPushButton("Shipped model")
        self.shipped_button.setToolTip("band profiles: use the shipped simulation-trained model, no training")
        self.shipped_button.clicked.connect(self._on_shipped_clicked)
        row = QHBoxLayout()
        row.addWidget(self.pc_edit, 1)
        row.addWidget(self.shipped_button)
        opts.addRow("Projection centre", row)
        self.ensemble_spin = QSpinBox()
        self.ensemble_spin.setRange(1, 10)
        self.ensemble_spin.setValue(int(defaults.get("n_models", 1)))
        opts.addRow("Ensemble size", self.ensemble_spin)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(int(defaults.get("max_epochs", 100)))
        opts.addRow("Max epochs", self.epochs_spin)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(16, 512)
        self.size_spin.setValue(int(defaults.get("input_size", 60)))
        opts.addRow("Input size (px)", self.size_spin)
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(self._thresholds[True])
        self.threshold_spin.setToolTip("patterns whose top probability is below this are 'no solution'")
        opts.addRow("Confidence threshold", self.threshold_spin)
        self.scheduler_edit = SchedulerEdit()
        opts.addRow("Cluster", self.scheduler_edit)
        self.backbone_combo.currentTextChanged.connect(self._backbone_changed)
        self._backbone_changed()

        # --- actions
        av = QVBoxLayout(self.section("Train and classify"))
        av.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self._on_train_clicked)
        self.classify_button = QPushButton("Classify map")
        self.classify_button.clicked.connect(self._on_classify_clicked)
        row.addWidget(self.train_button)
        row.addWidget(self.classify_button)
        av.addLayout(row)
        self.model_files = ModelFileRow(self._load_clicked, self._save_clicked, "ebsd-model.pt")
        av.addWidget(self.model_files)
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        av.addWidget(self.model_label)

        # --- results
        rv = QVBoxLayout(self.section("Space-group map"))
        rv.setContentsMargins(0, 0, 0, 0)
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.RichText)
        self.legend.setWordWrap(True)
        rv.addWidget(self.legend)
        self.fraction_table = QTableWidget(0, 3)
        self.fraction_table.setHorizontalHeaderLabels(["class", "patterns", "fraction"])
        self.fraction_table.horizontalHeader().setStretchLastSection(True)
        self.fraction_table.verticalHeader().setVisible(False)
        self.fraction_table.setMaximumHeight(130)
        rv.addWidget(self.fraction_table)
        from ..core.ebsd.orientations import DEFAULT_TILTS, TILT_RANGES

        self.sample_tilt_spin = QDoubleSpinBox()
        self.sample_tilt_spin.setRange(*TILT_RANGES["sample_tilt_deg"])
        self.sample_tilt_spin.setDecimals(1)
        self.sample_tilt_spin.setValue(DEFAULT_TILTS["sample_tilt_deg"])
        self.sample_tilt_spin.setSuffix(" °")
        self.detector_tilt_spin = QDoubleSpinBox()
        self.detector_tilt_spin.setRange(*TILT_RANGES["detector_tilt_deg"])  # as the orientations accept
        self.detector_tilt_spin.setDecimals(1)
        self.detector_tilt_spin.setValue(DEFAULT_TILTS["detector_tilt_deg"])
        self.detector_tilt_spin.setSuffix(" °")
        tilt_tip = ("the acquisition's tilts: the sample's from the horizontal, the detector's from the vertical "
                    "(degrees). They turn each pattern's orientation into the sample frame: the IPF-Z layer "
                    "and the exported Euler angles. Filled from the pattern file when it gives them.")
        row = QHBoxLayout()
        for text, spin in (("Tilts: sample", self.sample_tilt_spin), ("detector", self.detector_tilt_spin)):
            label = QLabel(text)
            label.setToolTip(tilt_tip)
            spin.setToolTip(tilt_tip)
            spin.valueChanged.connect(self._tilts_changed)
            row.addWidget(label)
            row.addWidget(spin, 1)
        rv.addLayout(row)
        self.export_button = QPushButton("Export .ang / .ctf…")
        self.export_button.setToolTip(
            "write the map for orix, MTEX and vendor software: phase per point, the step size, the "
            "confidence and, from the band-profile classifier, each point's orientation in the sample frame "
            "(for the tilts above)")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._on_export_clicked)
        rv.addWidget(self.export_button)
        self._build_pattern_view(rv)
        self.finish_layout()
        # every button that changes the model is off while a job runs (a model set meanwhile would be
        # replaced, silently, by the job's when it ends)
        self.actions(self.train_button, self.classify_button, self.shipped_button, *self.model_files.buttons())

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.labels_combo.currentIndexChanged.connect(self._refresh_class_table)
        self.map_combo.currentIndexChanged.connect(self._fill_projection_centre)
        self.map_combo.currentIndexChanged.connect(self._band_model_label)  # after the field is filled
        self.map_combo.currentIndexChanged.connect(lambda *_: self._tilts_from_layer(self.map_combo.currentData()))
        self._tilts_from_layer(self.map_combo.currentData())
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        self._watched: set[int] = set()
        self._refresh_layers()

    def action_states(self) -> dict[Any, bool]:
        has = self.classifier is not None
        return {self.classify_button: has, self.model_files.save_button: has}

    # ------------------------------------------------------------- layers
    def _alive(self) -> bool:
        try:
            self.isVisible()
        except RuntimeError:  # pragma: no cover - widget deleted
            return False
        return True

    def _labels_layers(self) -> list:
        return self.labels_combo.layers()

    def _refresh_layers(self, event: Any = None) -> None:
        if not self._alive():
            return
        for picker in (self.map_combo, self.labels_combo):
            picker.refresh()
        for ly in self._labels_layers():
            if id(ly) not in self._watched:
                self._watched.add(id(ly))
                ly.events.paint.connect(self._refresh_class_table)
                ly.events.data.connect(self._refresh_class_table)
        if self._navigator() is not None and self._navigator().metadata.get("train_patterns") is not None:
            if not self._labels_layers():
                self.source_combo.setCurrentText(SOURCE_LAYER)
        self._refresh_class_table()
        self._fill_projection_centre()

    def _pc_typed(self) -> bool:
        """True when the Projection centre field holds text the user typed (the widget never overwrites it)."""
        text = self.pc_edit.text().strip()
        return bool(text) and (self._pc_filled is None or text != self._pc_filled[1])

    def _set_pc_field(self, pc: Any, source: Any) -> None:
        text = _pc_text(pc)
        self.pc_edit.setText(text)
        self.pc_edit.setCursorPosition(0)
        self._pc_filled = (source, text)

    def _fill_projection_centre(self, *_: Any) -> None:
        """Fill the Projection centre field from the chosen pattern layer's metadata (its file's header).

        Only when the field is empty or was filled by the widget (from another
        layer or a model): a typed value is kept. A field filled from another
        layer is cleared when this layer's file gives none: that projection
        centre belongs to the other acquisition.
        """
        if not self._alive() or self._pc_typed():
            return
        layer = self.map_combo.layer()
        pc = layer.metadata.get("projection_centre") if layer is not None else None
        if pc is not None:
            if self._pc_filled is None or self._pc_filled[0] != id(layer) or \
                    self.pc_edit.text().strip() != _pc_text(pc):
                self._set_pc_field(pc, id(layer))
        elif self._pc_filled is not None and self._pc_filled[0] != "model":
            self.pc_edit.clear()
            self._pc_filled = None

    def pattern_layer(self):
        """The chosen (rows, cols, h, w) pattern layer."""
        name = self.map_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise MicrostructureError(
                "no pattern map layer; open an EBSD map (File > Open: .h5, .npy, EBSD .tif) or the "
                "sample (File > Open Sample > EBSD dual-phase map)"
            )
        return self.viewer.layers[name]

    def _navigator(self):
        try:
            pl = self.pattern_layer()
        except MicrostructureError:
            return None
        prefix = pl.name[: -len(" patterns")] if pl.name.endswith(" patterns") else pl.name
        name = f"{prefix} navigator"
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_new_labels(self) -> None:
        try:
            self.add_training_labels_layer()
        except MicrostructureError as exc:
            self.error(exc)

    def _map_place(self) -> dict[str, Any]:
        """Scale, translate and units of the map's navigator (micrometres when the step size is known)."""
        nav = self._navigator()
        if nav is not None:
            return place_like(nav)
        try:
            step = self.pattern_layer().metadata.get("step_size_um")
        except MicrostructureError:
            step = None
        if step:
            return {"scale": tuple(float(s) for s in step), "units": ("um", "um")}
        return {}

    def add_training_labels_layer(self):
        """Add an empty Labels layer the size of the map (aligned with it) for painting training pixels."""
        pl = self.pattern_layer()
        rows, cols = pl.data.shape[:2]
        layer = self.viewer.add_labels(np.zeros((rows, cols), np.int32), name="EBSD training labels",
                                       colormap=self._training_colormap({}), **self._map_place())
        layer.brush_size = TRAINING_BRUSH_SIZE  # one pattern per map pixel: label patterns, not areas
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        self.set_status("paint a few pixels of each phase with its own label value, then type each "
                        "value's space group in the table")
        self.labels_combo.setCurrentText(layer.name)
        self.source_combo.setCurrentText(SOURCE_PAINTED)
        return layer

    def _refresh_class_table(self, event: Any = None) -> None:
        if not self._alive():
            return
        name = self.labels_combo.currentText()
        values = []
        if name and name in self.viewer.layers:
            values = [int(v) for v in np.unique(np.asarray(self.viewer.layers[name].data)) if v > 0]
        known = self.class_names()
        self.class_table.blockSignals(True)
        self.class_table.setRowCount(len(values))
        for i, v in enumerate(values):
            item = QTableWidgetItem(str(v))
            item.setFlags(item.flags() & ~Qt.ItemIsEditable)
            self.class_table.setItem(i, 0, item)
            # a label value is not a space group: the cell stays empty until the user types one
            cell = QTableWidgetItem(str(known[v]) if v in known else "")
            cell.setToolTip(ASK_SPACE_GROUP)
            if v not in known:
                cell.setBackground(QColor("#7a5a00"))
            self.class_table.setItem(i, 1, cell)
        self.class_table.blockSignals(False)
        self._colour_training_labels()
        missing = [v for v in values if v not in known]
        if missing and not self.busy:
            self.set_status(f"label value(s) {missing}: {ASK_SPACE_GROUP} in the table")

    @staticmethod
    def _training_colormap(names: dict[int, Any]) -> Any:
        """Colours of training label values in the space-group scheme of the result layers.

        A value with a class in the table takes the colour that class gets in
        the space-group map (225 is blue in both); a value without one the
        colour of value N of a map (``label_colour``), so label N looks like
        result N.
        """
        from napari.utils.colormaps import DirectLabelColormap

        # the classes in the order a trained model sorts them (numbers first), as the result layers index them
        order = sorted(set(names.values()), key=lambda c: (isinstance(c, str), c))
        colours: dict[Any, str] = {v: class_colour(names[v], order.index(names[v])) if v in names
                                   else class_colour(None, v - 1) for v in range(1, 256)}
        colours.update({0: "transparent", None: "transparent"})
        return DirectLabelColormap(color_dict=colours)

    def _colour_training_labels(self, *_: Any) -> None:
        """The chosen training Labels layer follows the class table's colours."""
        name = self.labels_combo.currentText()
        if not name or name not in self.viewer.layers:
            return
        layer, names = self.viewer.layers[name], self.class_names()
        key = (id(layer), tuple(sorted(names.items(), key=str)))
        if getattr(self, "_training_colours_of", None) != key:  # (not on every paint stroke)
            layer.colormap = self._training_colormap(names)
            self._training_colours_of = key

    def _painted_values(self) -> list[int]:
        return [int(self.class_table.item(i, 0).text()) for i in range(self.class_table.rowCount())
                if self.class_table.item(i, 0) is not None]

    def class_names(self) -> dict[int, Any]:
        """``{painted label value: class}`` from the table (numbers become ints)."""
        out = {}
        for i in range(self.class_table.rowCount()):
            v, c = self.class_table.item(i, 0), self.class_table.item(i, 1)
            if v is not None and c is not None and c.text().strip():
                out[int(v.text())] = _parse_class(c.text())
        return out

    def set_class_name(self, value: int, name: Any) -> None:
        """Name the class of a painted label value (e.g. its space group)."""
        for i in range(self.class_table.rowCount()):
            if self.class_table.item(i, 0).text() == str(value):
                self.class_table.setItem(i, 1, QTableWidgetItem(str(name)))
                self._colour_training_labels()
                if not [v for v in self._painted_values() if v not in self.class_names()]:
                    self.set_status("every painted label value has a space group; press Train")
                return
        raise MicrostructureError(f"label value {value} is not painted; paint it first")

    # ------------------------------------------------------ training data
    def training_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Patterns (N, h, w) and labels (N,) from the chosen source."""
        source = self.source_combo.currentText()
        if source == SOURCE_FILE:
            from ..io.ebsd import read_labelled_patterns

            path = self.file_edit.text().strip()
            if not path:
                raise MicrostructureError("choose a file or folder of labelled patterns first ('...')")
            labels = self.labels_file_edit.text().strip() or None
            return read_labelled_patterns(path, labels)
        if source == SOURCE_LAYER:
            nav = self._navigator()
            meta = nav.metadata if nav is not None else {}
            if meta.get("train_patterns") is None:
                raise MicrostructureError(
                    "the pattern layer has no labelled training patterns; paint labels on the "
                    "navigator or choose a file of labelled patterns"
                )
            return np.asarray(meta["train_patterns"]), np.asarray(meta["train_labels"])
        name = self.labels_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise MicrostructureError(
                "no Labels layer to train from; press 'New' and paint pixels of each phase on the "
                "navigator, one label value per space group"
            )
        painted = np.asarray(self.viewer.layers[name].data)
        pl = self.pattern_layer()
        if painted.shape != tuple(pl.data.shape[:2]):
            raise MicrostructureError(
                f"labels layer {name!r} is {painted.shape} but the map is {tuple(pl.data.shape[:2])}; "
                "paint on a Labels layer of the map's size ('New')"
            )
        rr, cc = np.nonzero(painted > 0)
        if rr.size == 0:
            raise MicrostructureError(f"nothing is painted in {name!r}; paint pixels of each phase first")
        names = self.class_names()
        values = painted[rr, cc]
        missing = sorted(set(values.tolist()) - set(names))
        if missing:
            raise MicrostructureError(
                f"label value(s) {missing} have no space group in the table; type one for each "
                "(e.g. 225 for Ni, 221 for Ni3Al)"
            )
        data = pl.data
        if type(data).__module__.startswith("dask"):
            patterns = np.asarray(data.vindex[rr, cc].compute())
        else:
            patterns = np.asarray(data[rr, cc])
        labels = np.asarray([names[int(v)] for v in values])
        return patterns, labels

    def _backbone_changed(self, *_: Any) -> None:
        """The CNN settings apply to CNN backbones only (the projection centre stays editable:
        the Shipped model button needs it whatever the backbone)."""
        band = self.band_profiles()
        for w in (self.ensemble_spin, self.epochs_spin, self.size_spin):
            w.setEnabled(not band)
        if self.threshold_spin.value() == self._thresholds[not band]:  # the other method's default
            self.threshold_spin.setValue(self._thresholds[band])

    def _source_changed(self, *_: Any) -> None:
        """Show the fields of the chosen Training source, hide the others'."""
        chosen = self.source_combo.currentText()
        for source, rows in self._source_rows.items():
            for row in rows:
                self._source_form.setRowVisible(row, source == chosen)

    def source_fields_visible(self) -> dict[str, bool]:
        """``{Training choice: whether its fields are shown}`` (what a user sees; for tests)."""
        return {source: all(w.isVisibleTo(self) for row in rows for w in _row_widgets(self._source_form, row))
                for source, rows in self._source_rows.items()}

    def band_profiles(self) -> bool:
        """True when the Backbone choice is the band-profile classifier."""
        return self.backbone_combo.currentText() == BAND_PROFILES

    def projection_centre(self) -> tuple[float, float, float]:
        """The Projection centre field, checked; a clear error when empty or implausible."""
        from ..core.ebsd.bands import check_projection_centre

        text = self.pc_edit.text().strip()
        if not text:
            raise MicrostructureError(
                "band profiles need the projection centre and the pattern layer's file gives none: type PCx, "
                "PCy, PCz (Bruker convention) in the Projection centre field, e.g. 0.5, 0.3, 0.6, or choose a "
                "CNN backbone (it needs none)")
        import re

        parts = [p for p in re.split(r"[\s,;]+", text) if p]  # "0.5, 0.3, 0.6" or "0.5 0.3 0.6" (as --pc takes it)
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3:
            raise MicrostructureError(
                f"the Projection centre field reads {text!r}, not three numbers; type PCx, PCy, PCz (Bruker "
                "convention), e.g. 0.5, 0.3, 0.6")
        return check_projection_centre(values)

    def new_classifier(self) -> Any:
        """An untrained classifier of the chosen kind with the widget's options."""
        if self.band_profiles():
            from ..core.ebsd.bandclassifier import BandProfileClassifier

            return BandProfileClassifier(pc=self.projection_centre(),
                                         confidence_threshold=self.threshold_spin.value())
        from ..core.ebsd import EBSDClassifier

        return EBSDClassifier(**self.options())

    def use_shipped_model(self) -> None:
        """The shipped band-profile model, with the projection centre of the field (no training)."""
        from ..core.ebsd.bandclassifier import BandProfileClassifier

        self._refuse_while_busy()
        clf = BandProfileClassifier.from_pretrained(pc=self.projection_centre())
        self.backbone_combo.setCurrentText(BAND_PROFILES)
        self.set_classifier(clf)
        self.set_status("shipped band-profile model: space groups 221-230 of any cubic material, no training")

    def _on_shipped_clicked(self) -> None:
        try:
            self.use_shipped_model()
        except MicrostructureError as exc:
            self._error(str(exc))

    def options(self) -> dict[str, Any]:
        return {"backbone": self.backbone_combo.currentText(), "n_models": self.ensemble_spin.value(),
                "max_epochs": self.epochs_spin.value(), "input_size": self.size_spin.value(),
                "confidence_threshold": self.threshold_spin.value()}

    # ------------------------------------------------------------ actions
    def _error(self, message: str) -> None:
        self.error(message)

    def _refuse_while_busy(self) -> None:
        """The model stays the running job's: nothing else may replace it until the job ends."""
        if self.busy:
            raise MicrostructureError("a job is running; wait or press Cancel")

    def _start(self, job_func: Any, *args: Any, on_done: Any, message: str) -> Optional[Job]:
        return self.start_job(job_func, *args, on_done=on_done, message=message)

    def _set_buttons(self, enabled: bool) -> None:
        self.refresh_actions()

    def static_background(self) -> Optional[np.ndarray]:
        """The static background the chosen map's file stores, or None (also when there is no map)."""
        try:
            bg = self.pattern_layer().metadata.get("static_background")
        except MicrostructureError:
            return None
        return None if bg is None else np.asarray(bg, np.float32)

    def train(self) -> Optional[Job]:
        """Train a new classifier off the GUI thread; returns the job."""
        self._refuse_while_busy()
        classifier = self.new_classifier()
        patterns, labels = self.training_data()
        classes = sorted({str(c) for c in labels.tolist()})
        # patterns painted on the map come from its detector: a band-profile model subtracts its
        # stored static background, as when the map is classified
        painted = self.band_profiles() and self.source_combo.currentText() == SOURCE_PAINTED
        bg = self.static_background() if painted else None
        pattern_map = self.pattern_layer().data if painted else None
        return self._start(_fit, classifier, patterns, labels, pattern_map, bg, on_done=self._on_trained,
                           message=f"training on {len(labels)} patterns of {', '.join(classes)}"
                           + (" (the file's static background subtracted)" if bg is not None else "")
                           + ": preparing…")

    def _on_trained(self, classifier: Any) -> None:
        # Train's warnings describe the model (e.g. a grain it has likely learnt by orientation): they stay with
        # it in the model label, since the panel's give way to the next job's
        self.set_classifier(classifier, warned=self.panel.warnings)
        self.set_status(f"trained; {self.model_label.text()}")

    def set_classifier(self, classifier: Any, warned: Sequence[str] = ()) -> None:
        """Use ``classifier``; ``warned``: the warnings its training gave, kept in the model label's tooltip."""
        self.classifier = classifier
        self._trained_warnings = list(warned)
        band = not hasattr(classifier, "models_")
        # the method first: choosing it moves the threshold to the method's default, the model's then wins
        self.backbone_combo.setCurrentText(BAND_PROFILES if band else str(classifier.backbone))
        self.threshold_spin.setValue(float(classifier.confidence_threshold))
        classes = ", ".join(str(c) for c in classifier.classes_)
        if band:
            if classifier.pc is not None:
                own = self.pc_edit.text().strip()
                from_model = self._pc_filled is not None and self._pc_filled[0] == "model" and not self._pc_typed()
                if not own or from_model:
                    self._set_pc_field(classifier.pc, "model")
            self._band_model_label()
            self._update_legend()
            self.refresh_actions()
            return
        self.ensemble_spin.setValue(len(classifier.models_))
        self.size_spin.setValue(int(classifier.input_size))
        epochs = classifier.history_.epochs
        note, tip = self._warned_note()
        self.model_label.setText(
            f"model: {classifier.backbone}, {len(classifier.models_)} network(s), classes {classes}"
            + (f"; {epochs} epochs" if epochs else "") + note)
        self.model_label.setToolTip(tip)
        self._update_legend()
        self.refresh_actions()

    def _band_model_label(self, *_: Any) -> None:
        """The band-profile model's label, with notes where the chosen map's acquisition is not the model's."""
        clf = self.classifier
        if clf is None or hasattr(clf, "models_"):
            return
        try:
            field_pc = self.projection_centre()
        except MicrostructureError:  # classify() says what is wrong with it
            field_pc = None
        note = ""
        if clf.pc is not None and field_pc is not None and not _same_pc(field_pc, clf.pc):
            # the projection centre belongs to the acquisition: the map's (typed or from its file) wins
            note = (f"; maps use the projection centre of the field ({self.pc_edit.text().strip()}), not the "
                    f"model's ({_pc_text(clf.pc)})")
        check = clf.label_check_text()  # what to expect of each labelled class on the rest of the map
        if check:
            note += f"\nlabel check (share of each class's labels called right): {check}"
        if getattr(clf, "map_grains_", None) == 0 and getattr(clf, "map_check_", None) is None:
            # painted labels: the map was given to fit and left out before its check (the label check says why
            # when the check chose without it)
            note += ("\nthe map's grains were not used: that needs labels in two or more grains, one of them "
                     "holding two phases (where the phases share orientations: a precipitate and the matrix "
                     "around it)")
        layer = self.map_combo.layer()
        differs = [] if layer is None else clf.acquisition_differences(layer.data.shape, field_pc)
        tip = ""
        if differs:
            note += "\nfine-tuned labels may not carry: label a few here"
            tip = (f"the model was fine-tuned on {clf.labelled_acquisition_['n_patterns']} labelled patterns of "
                   f"another acquisition ({'; '.join(differs)}). Labels of one acquisition classify about 0.8 of "
                   "another's patterns right, against 0.73-1.00 of their own map's (simulated maps of six "
                   "phases, by acquisition): "
                   "label a few patterns of this map and train again.")
        warned, warned_tip = self._warned_note()
        self.model_label.setText(f"model: band profiles (indexed patterns), classes "
                                 f"{', '.join(str(c) for c in clf.classes_)}{note}{warned}")
        self.model_label.setToolTip("\n\n".join(t for t in (tip, warned_tip) if t))

    def _warned_note(self) -> tuple[str, str]:
        """A line for the model label and the text for its tooltip about the warnings of the model's training."""
        warned = self._trained_warnings
        if not warned:
            return "", ""
        n = len(warned)
        return (f"\ntraining gave {n} warning{'s' if n > 1 else ''}: hover here to read {'them' if n > 1 else 'it'}",
                "\n\n".join(f"training warning: {m}" for m in warned))

    def classify(self) -> Optional[Job]:
        """Classify the chosen map off the GUI thread; result layers appear when done."""
        self._refuse_while_busy()
        if self.classifier is None:
            raise MicrostructureError("no model; train one or load a model file first")
        self.classifier.confidence_threshold = self.threshold_spin.value()
        if not hasattr(self.classifier, "models_") and self.pc_edit.text().strip():
            self.classifier.pc = self.projection_centre()  # the field may have been corrected
        pl = self.pattern_layer()
        self._result_map_name = pl.name
        self.fraction_table.setRowCount(0)
        band = not hasattr(self.classifier, "models_")
        bg = self.static_background() if band else None  # a CNN model keeps its own (training) background
        self._map_background = bg is not None
        # the map's projection centre, for the export: the one it was indexed with (band profiles), else the
        # pattern file's when it gives one; None: not known (the .ang then leaves it out)
        pc = self.classifier.pc if band else pl.metadata.get("projection_centre")
        self._map_detector = {"projection_centre": None if pc is None else tuple(float(v) for v in pc),
                              "pattern_shape": tuple(int(v) for v in pl.data.shape[-2:])}
        return self._start(_classify, self.classifier, pl.data, 2048, self.scheduler_edit.client(), bg,
                           on_done=self.show_result,
                           message=f"classifying {int(np.prod(pl.data.shape[:2]))} patterns"
                           + (" (the file's static background subtracted)" if bg is not None else "") + "…")

    def _on_train_clicked(self) -> None:
        try:
            self.train()
        except MicrostructureError as exc:
            self._error(str(exc))

    def _on_classify_clicked(self) -> None:
        try:
            self.classify()
        except MicrostructureError as exc:
            self._error(str(exc))

    def save_model(self, path: str | os.PathLike) -> None:
        if self.classifier is None:
            raise MicrostructureError("no model to save; train one first")
        self.classifier.save(path)
        self.set_status(f"saved {path}")

    def load_model(self, path: str | os.PathLike) -> None:
        """Load an EBSD model of either kind (a micrograph model is refused with a clear message)."""
        from ..core.ebsd.bandclassifier import load_ebsd_model

        self._refuse_while_busy()
        self.set_classifier(load_ebsd_model(path))
        self.set_status(f"loaded {path}")

    def _save_clicked(self, path: str) -> None:
        try:
            self.save_model(path)
        except MicrostructureError as exc:
            self.error(exc)

    def _load_clicked(self, path: str) -> None:
        try:
            self.load_model(path)
        except MicrostructureError as exc:
            self.error(exc)

    def export_map(self, path: str | os.PathLike) -> None:
        """Write the last map as ``.ang`` / ``.ctf`` (:func:`~napari_microstructure.io.ebsd.export.write_map`)."""
        from ..io.ebsd.export import write_map

        if self.result is None:
            raise MicrostructureError("no map to export yet; classify a map first")
        step = self.result.step_size_um
        if step is None:  # the reader puts the file's step size in the pattern layer's metadata
            try:
                step = self.pattern_layer().metadata.get("step_size_um")
            except MicrostructureError:
                step = None
        if step is None:
            raise MicrostructureError(
                "the map's step size is unknown (its file does not give one); in napari's console: "
                "from napari_microstructure.io.ebsd.export import write_map; "
                "write_map(path, widget.result, step_size_um=0.5)  # micrometres")
        written = write_map(path, self.result, step_size_um=step, **self.tilts(),
                            **(getattr(self, "_map_detector", None) or {}))
        what = "phases and orientations" if self.result.detector_euler is not None else "phases"
        self.set_status(f"wrote {what} to {written}")

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export map", f"{self._result_base()}.ang",
                                              "EBSD maps (*.ang *.ctf)")
        if path:
            try:
                self.export_map(path)
            except MicrostructureError as exc:
                self.error(exc)

    def _browse_training(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Labelled patterns", "",
                                              "Patterns (*.npz *.npy *.tif *.tiff *.h5 *.hdf5)")
        if path:
            self.file_edit.setText(path)
            self.source_combo.setCurrentText(SOURCE_FILE)

    # ------------------------------------------------------------ results
    def _update_legend(self) -> None:
        if self.classifier is None:
            self.legend.setText("")
            return
        # each item unbreakable, the line wraps only between items (at dock width "no" and
        # "solution" landed on two lines)
        items = [f'<span style="color:{class_colour(c, k)}">&#9632;</span>&nbsp;{c}'
                 for k, c in enumerate(self.classifier.classes_)]
        items.append(f'<span style="color:{NO_SOLUTION_COLOUR}">&#9632;</span>&nbsp;no&nbsp;solution')
        text = "&nbsp; ".join(items)
        if self.result is not None and getattr(self.result, "detector_euler", None) is not None:
            # the key of the IPF-Z layer: the crystal direction along the sample normal
            key = "&nbsp;&nbsp;".join(f'<span style="color:{c}">&#9632;</span> {d}' for c, d in
                                      (("#ff0000", "[001]"), ("#00ff00", "[101]"), ("#0000ff", "[111]")))
            text += f"<br>orientation IPF-Z: {key}; black: no solution"  # a black square vanishes on the dock
        self.legend.setText(text)

    def show_result(self, result: Any) -> None:
        """Add or update the space-group, confidence and no-solution layers and the table."""
        from napari.utils.colormaps import DirectLabelColormap

        self.result = result
        self.export_button.setEnabled(True)
        base = self._result_map_name or "EBSD"
        base = base[: -len(" patterns")] if base.endswith(" patterns") else base
        classes = list(result.classes)
        colours = {k + 1: class_colour(c, k) for k, c in enumerate(classes)}
        colours[0] = "transparent"
        colours[None] = "transparent"
        data = (result.index.astype(np.int32) + 1)
        features = {"index": list(range(len(classes) + 1)),
                    "class": ["no solution"] + [str(c) for c in classes]}
        sg_name, conf_name, ns_name, ipf_name = (f"{base} {s}" for s in RESULT_SUFFIXES)
        meta = {"ebsd": True, "role": "space groups", "classes": [str(c) for c in classes]}
        place = self._map_place()
        if sg_name in self.viewer.layers:
            layer = self.viewer.layers[sg_name]
            layer.data = data
            layer.colormap = DirectLabelColormap(color_dict=colours)
            layer.features = features
        else:
            layer = self.viewer.add_labels(data, name=sg_name, features=features, metadata=meta,
                                           colormap=DirectLabelColormap(color_dict=colours), opacity=0.8,
                                           **place)
        if conf_name in self.viewer.layers:
            self.viewer.layers[conf_name].data = result.confidence
        else:
            self.viewer.add_image(result.confidence, name=conf_name, colormap="viridis",
                                  contrast_limits=(0.0, 1.0), visible=False, **place,
                                  metadata={"ebsd": True, "role": "confidence"})
        mask = result.no_solution.astype(np.int32)
        if ns_name in self.viewer.layers:
            self.viewer.layers[ns_name].data = mask
        else:
            self.viewer.add_labels(mask, name=ns_name, opacity=0.9, **place,
                                   colormap=DirectLabelColormap(color_dict={0: "transparent", None: "transparent",
                                                                            1: NO_SOLUTION_COLOUR}),
                                   metadata={"ebsd": True, "role": "no solution"})
        if result.detector_euler is not None:  # band profiles: each point's orientation, coloured IPF-Z
            ipf = self._ipf_image(result)
            if ipf_name in self.viewer.layers:
                self.viewer.layers[ipf_name].data = ipf
            else:
                self.viewer.add_image(ipf, name=ipf_name, rgb=True, visible=False, **place,
                                      metadata={"ebsd": True, "role": "orientation"})
        elif ipf_name in self.viewer.layers:  # a CNN map finds no orientations: drop a stale one
            self.viewer.layers.remove(ipf_name)
        # the space groups stay the active layer: a click anywhere on the map shows its pattern
        self.viewer.layers.selection.active = layer
        # classes the map does not hold would fill the dock with 0 % rows (the shipped model knows six)
        rows = [r for r in result.fractions_table() if r[1] > 0 or r[0] == "no solution"]
        self.fraction_table.setRowCount(len(rows))
        for i, (c, n, f) in enumerate(rows):
            for j, text in enumerate((c, str(n), f"{100 * f:.1f} %")):
                self.fraction_table.setItem(i, j, QTableWidgetItem(text))
        self._update_legend()
        n_ns = int(result.no_solution.sum())
        used = " The file's static background was subtracted." if self._map_background else ""
        self.set_status(f"{data.size} patterns classified; {n_ns} without a solution (magenta).{used} "
                        "Click the map to see a pattern.")
        self.show_scale_bar()

    def tilts(self) -> dict[str, float]:
        """The Tilts fields: ``sample_tilt_deg`` and ``detector_tilt_deg`` (as ``write_map`` takes them)."""
        return {"sample_tilt_deg": float(self.sample_tilt_spin.value()),
                "detector_tilt_deg": float(self.detector_tilt_spin.value())}

    def _tilts_changed(self, *_: Any) -> None:
        """New tilts: the IPF-Z layer of the current map follows (the export reads them when it runs)."""
        if self.result is None or getattr(self.result, "detector_euler", None) is None:
            return
        name = f"{self._result_base()} {RESULT_SUFFIXES[3]}"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = self._ipf_image(self.result)

    def _tilts_from_layer(self, layer: Any) -> None:
        """Take the acquisition's tilts from a pattern layer's metadata (put there by the reader), if it has them."""
        meta = getattr(layer, "metadata", {}) or {}
        for key, spin in (("sample_tilt_deg", self.sample_tilt_spin), ("detector_tilt_deg", self.detector_tilt_spin)):
            try:
                value = float(meta.get(key))
            except (TypeError, ValueError):
                continue
            if spin.minimum() <= value <= spin.maximum():  # NaN too is left out
                spin.setValue(value)
            else:  # the field would clamp it to its end: a tilt the user never gave
                self.set_status(f"the layer's {key} ({value:g}) is not a tilt in {spin.minimum():g} to "
                                f"{spin.maximum():g} degrees and is ignored; type the acquisition's tilt in the "
                                "Tilts fields")

    def _ipf_image(self, result: Any) -> np.ndarray:
        """RGBA (rows, cols, 4) float32: IPF-Z colours for the Tilts fields, opaque black where not indexed.

        Black is outside the IPF key (its colours have a full channel), whereas the no-solution layer's
        magenta is the colour of grains between [001] and [111]: showing it through would read as a grain.
        """
        rgb = result.ipf_colours(**self.tilts()).astype(np.float32)
        rgb[np.asarray(result.no_solution)] = 0.0
        return np.concatenate([rgb, np.ones((*rgb.shape[:2], 1), np.float32)], -1)

    # ------------------------------------------------------- pattern view
    def _build_pattern_view(self, layout: QVBoxLayout) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(190)
        self.ax_pattern = self.figure.add_subplot(1, 2, 1)
        self.ax_proba = self.figure.add_subplot(1, 2, 2)
        self.ax_pattern.set_axis_off()
        self.ax_proba.set_axis_off()
        hint = QLabel("Click the map (any layer active): the pattern there and its class probabilities")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        layout.addWidget(self.canvas)
        self._shown: Optional[tuple[int, int]] = None
        self._theme_figure()
        on_theme_change(self.viewer, self._on_theme)

    def _theme_figure(self) -> None:
        theme_figure(self.figure, self.viewer)

    def _on_theme(self, event: Any = None) -> None:
        """The viewer's theme changed: draw the pattern view again in its colours."""
        if not self._alive():
            return
        if self._shown is not None:
            try:
                self.show_pattern(*self._shown)
                return
            except (MicrostructureError, KeyError, IndexError):  # the pattern layer has gone
                self._shown = None
        self._theme_figure()
        self.canvas.draw_idle()

    def _on_click(self, source: Any, event: Any) -> None:
        """Show the pattern under a click, whichever layer is active (a viewer mouse callback)."""
        if not self._alive():
            return
        reference = self._navigator()
        if reference is None:
            name = f"{self._result_base()} space groups"
            reference = self.viewer.layers[name] if name in self.viewer.layers else None
        if reference is None:
            return
        position = tuple(event.position)[-reference.ndim:]
        pos = reference.world_to_data(tuple(event.position)) if len(event.position) >= reference.ndim \
            else reference.world_to_data(position)
        r, c = int(np.floor(pos[-2] + 0.5)), int(np.floor(pos[-1] + 0.5))
        try:
            self.show_pattern(r, c)
        except MicrostructureError:
            pass

    def _result_base(self) -> str:
        base = self._result_map_name or self.map_combo.currentText() or "EBSD"
        return base[: -len(" patterns")] if base.endswith(" patterns") else base

    def show_pattern(self, row: int, col: int) -> Optional[np.ndarray]:
        """Show the pattern at map pixel (row, col) and its class probabilities."""
        pl = self.pattern_layer()
        rows, cols = pl.data.shape[:2]
        if not (0 <= row < rows and 0 <= col < cols):
            raise MicrostructureError(f"({row}, {col}) is outside the {rows} x {cols} map")
        pattern = np.asarray(pl.data[row, col], dtype=np.float32)
        self.ax_pattern.clear()
        self.ax_pattern.imshow(pattern, cmap="gray")
        self.ax_pattern.set_title(f"({row}, {col})", fontsize=8)
        self.ax_pattern.set_axis_off()
        self.ax_proba.clear()
        proba = None
        if self.result is not None and self.result.probabilities.shape[:2] == (rows, cols):
            proba = self.result.probabilities[row, col]
        elif self.classifier is not None:
            proba = self.classifier.predict_proba(pattern[None])[0]
        if proba is not None:
            classes = [str(c) for c in self.classifier.classes_] if self.classifier is not None else \
                [str(c) for c in self.result.classes]
            self.ax_proba.set_axis_on()
            self.ax_proba.barh(classes, proba,
                               color=[class_colour(c, k) for k, c in enumerate(classes)])
            threshold = float(getattr(self.classifier, "confidence_threshold", self.threshold_spin.value()))
            self.ax_proba.axvline(threshold, color="k", lw=0.8, ls=":")
            self.ax_proba.set_xlim(0, 1)
            self.ax_proba.tick_params(labelsize=7)
            self.ax_proba.set_title("probability", fontsize=8)
        self._theme_figure()
        self.canvas.draw_idle()
        self._shown = (row, col)
        try:
            self.viewer.dims.set_current_step(0, row)
            self.viewer.dims.set_current_step(1, col)
        except Exception:  # pragma: no cover - dims of other layouts
            pass
        self.last_probabilities = proba
        return proba
