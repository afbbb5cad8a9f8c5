"""The "EBSD space-group map" dock widget.

Choose the pattern map layer (opened by the EBSD reader or the sample), give
training patterns (painted on the navigator in a Labels layer, each label
value a space group named in the table, or a file/folder of labelled
patterns, or the sample's labelled patterns), train off the GUI thread with
progress and Cancel, classify the map into a Labels layer (fixed colour per
space group, names in the layer's features, a legend), a confidence image
and a "no solution" mask, see the phase fractions, click the map to see a
pattern and its class probabilities, save and load models.

All computation is in :mod:`napari_microstructure.core.ebsd`; this module
only collects inputs and shows results. Result layers are created only when
a job has finished, so a cancelled job leaves no half-made layers.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import MicrostructureError
from ._workers import Job, ProgressPanel, format_exception

SOURCE_PAINTED = "Labels painted on the navigator"
SOURCE_FILE = "File or folder of labelled patterns"
SOURCE_LAYER = "Labelled patterns of the layer (sample)"

SPACE_GROUP_COLOURS = {221: "#e41a1c", 223: "#377eb8", 225: "#4daf4a", 227: "#984ea3",
                       229: "#ff7f00", 230: "#a65628"}
PALETTE = ["#f781bf", "#999999", "#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f"]
NO_SOLUTION_COLOUR = "#000000"
RESULT_SUFFIXES = ("space groups", "confidence", "no solution")


def class_colour(label: Any, k: int) -> str:
    """Fixed colour of a class: one per cubic space group, else from a palette."""
    try:
        return SPACE_GROUP_COLOURS[int(label)]
    except (KeyError, ValueError, TypeError):
        return PALETTE[k % len(PALETTE)]


def _parse_class(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


def _classify(classifier, pattern_map, chunk_size, progress=None, cancel=None):
    return classifier.classify_map(pattern_map, chunk_size=chunk_size, progress=progress, cancel=cancel)


def _fit(classifier, patterns, labels, progress=None, cancel=None):
    return classifier.fit(patterns, labels, progress=progress, cancel=cancel)


class EBSDWidget(QWidget):
    """Dock widget: train an EBSD space-group classifier and map a pattern map."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.classifier: Any = None
        self.result: Any = None
        self._result_map_name: Optional[str] = None
        layout = QVBoxLayout(self)

        # --- inputs
        form = QFormLayout()
        self.map_combo = QComboBox()
        form.addRow("Pattern map", self.map_combo)
        self.source_combo = QComboBox()
        self.source_combo.addItems([SOURCE_PAINTED, SOURCE_FILE, SOURCE_LAYER])
        form.addRow("Training patterns", self.source_combo)
        self.labels_combo = QComboBox()
        new_labels = QPushButton("New")
        new_labels.setToolTip("Add a Labels layer over the navigator to paint training pixels")
        new_labels.clicked.connect(self.add_training_labels_layer)
        row = QHBoxLayout()
        row.addWidget(self.labels_combo, 1)
        row.addWidget(new_labels)
        form.addRow("Painted labels", row)
        self.file_edit = QLineEdit()
        self.file_edit.setPlaceholderText(".npz, folder of class folders, or pattern file")
        browse = QPushButton("...")
        browse.clicked.connect(self._browse_training)
        row = QHBoxLayout()
        row.addWidget(self.file_edit, 1)
        row.addWidget(browse)
        form.addRow("Pattern file", row)
        self.labels_file_edit = QLineEdit()
        self.labels_file_edit.setPlaceholderText("labels file (only with a plain pattern file)")
        form.addRow("Labels file", self.labels_file_edit)
        layout.addLayout(form)

        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["label value", "space group / class"])
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.setMaximumHeight(120)
        layout.addWidget(QLabel("Painted label values and their space groups:"))
        layout.addWidget(self.class_table)

        # --- options
        box = QGroupBox("Classifier")
        opts = QFormLayout(box)
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(["efficientnet-lite0", "compact"])
        opts.addRow("Backbone", self.backbone_combo)
        self.ensemble_spin = QSpinBox()
        self.ensemble_spin.setRange(1, 10)
        opts.addRow("Ensemble size", self.ensemble_spin)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(100)
        opts.addRow("Max epochs", self.epochs_spin)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(16, 512)
        self.size_spin.setValue(60)
        opts.addRow("Input size (px)", self.size_spin)
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(0.5)
        self.threshold_spin.setToolTip("patterns whose top probability is below this are 'no solution'")
        opts.addRow("Confidence threshold", self.threshold_spin)
        layout.addWidget(box)

        # --- actions
        row = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self._on_train_clicked)
        self.classify_button = QPushButton("Classify map")
        self.classify_button.clicked.connect(self._on_classify_clicked)
        row.addWidget(self.train_button)
        row.addWidget(self.classify_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        save = QPushButton("Save model...")
        save.clicked.connect(self._ask_save)
        load = QPushButton("Load model...")
        load.clicked.connect(self._ask_load)
        row.addWidget(save)
        row.addWidget(load)
        layout.addLayout(row)
        self.progress_panel = ProgressPanel()
        layout.addWidget(self.progress_panel)
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        layout.addWidget(self.model_label)

        # --- results
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.RichText)
        layout.addWidget(self.legend)
        self.fraction_table = QTableWidget(0, 3)
        self.fraction_table.setHorizontalHeaderLabels(["class", "patterns", "fraction"])
        self.fraction_table.horizontalHeader().setStretchLastSection(True)
        self.fraction_table.setMaximumHeight(150)
        layout.addWidget(self.fraction_table)
        self._build_pattern_view(layout)
        layout.addStretch(1)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.labels_combo.currentIndexChanged.connect(self._refresh_class_table)
        self._watched: set[int] = set()
        self._refresh_layers()

    # ------------------------------------------------------------- layers
    def _alive(self) -> bool:
        try:
            self.isVisible()
        except RuntimeError:  # pragma: no cover - widget deleted
            return False
        return True

    def _pattern_layers(self) -> list:
        return [ly for ly in self.viewer.layers if ly._type_string == "image" and ly.ndim == 4]

    def _labels_layers(self) -> list:
        return [ly for ly in self.viewer.layers if ly._type_string == "labels" and ly.ndim == 2
                and not ly.name.endswith(RESULT_SUFFIXES) and ly.metadata.get("role") != "ground truth"]

    def _refresh_layers(self, event: Any = None) -> None:
        if not self._alive():
            return
        for combo, layers in ((self.map_combo, self._pattern_layers()), (self.labels_combo, self._labels_layers())):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([ly.name for ly in layers])
            if current in [ly.name for ly in layers]:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        for ly in self._labels_layers():
            if id(ly) not in self._watched:
                self._watched.add(id(ly))
                ly.events.paint.connect(self._refresh_class_table)
                ly.events.data.connect(self._refresh_class_table)
        if self._navigator() is not None and self._navigator().metadata.get("train_patterns") is not None:
            if not self._labels_layers():
                self.source_combo.setCurrentText(SOURCE_LAYER)
        self._refresh_class_table()

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

    def add_training_labels_layer(self):
        """Add an empty Labels layer the size of the map for painting training pixels."""
        pl = self.pattern_layer()
        rows, cols = pl.data.shape[:2]
        layer = self.viewer.add_labels(np.zeros((rows, cols), np.int32), name="EBSD training labels")
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
        self.class_table.setRowCount(len(values))
        for i, v in enumerate(values):
            item = QTableWidgetItem(str(v))
            item.setFlags(item.flags() & ~Qt.ItemIsEditable)
            self.class_table.setItem(i, 0, item)
            self.class_table.setItem(i, 1, QTableWidgetItem(str(known.get(v, v))))

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
                f"label value(s) {missing} have no space group in the table; type one for each"
            )
        data = pl.data
        if type(data).__module__.startswith("dask"):
            patterns = np.asarray(data.vindex[rr, cc].compute())
        else:
            patterns = np.asarray(data[rr, cc])
        labels = np.asarray([names[int(v)] for v in values])
        return patterns, labels

    def options(self) -> dict[str, Any]:
        return {"backbone": self.backbone_combo.currentText(), "n_models": self.ensemble_spin.value(),
                "max_epochs": self.epochs_spin.value(), "input_size": self.size_spin.value(),
                "confidence_threshold": self.threshold_spin.value()}

    # ------------------------------------------------------------ actions
    @property
    def busy(self) -> bool:
        return self.progress_panel.busy

    def _error(self, message: str) -> None:
        self.progress_panel.status.setText(message)

    def _start(self, job: Job) -> Job:
        self.progress_panel.attach(job)
        job.finished.connect(lambda _: self._set_buttons(True))
        job.failed.connect(lambda exc: (self._set_buttons(True), self._error(format_exception(exc))))
        job.cancelled.connect(lambda: self._set_buttons(True))
        self._set_buttons(False)
        return job.start()

    def _set_buttons(self, enabled: bool) -> None:
        if self._alive():
            self.train_button.setEnabled(enabled)
            self.classify_button.setEnabled(enabled)

    def train(self) -> Optional[Job]:
        """Train a new classifier off the GUI thread; returns the job."""
        from ..core.ebsd import EBSDClassifier

        if self.busy:
            raise MicrostructureError("a job is running; wait or press Cancel")
        patterns, labels = self.training_data()
        classifier = EBSDClassifier(**self.options())
        job = Job(_fit, classifier, patterns, labels)
        job.finished.connect(self.set_classifier)
        return self._start(job)

    def set_classifier(self, classifier: Any) -> None:
        self.classifier = classifier
        self.threshold_spin.setValue(float(classifier.confidence_threshold))
        self.backbone_combo.setCurrentText(str(classifier.backbone))
        self.ensemble_spin.setValue(len(classifier.models_))
        self.size_spin.setValue(int(classifier.input_size))
        classes = ", ".join(str(c) for c in classifier.classes_)
        hist = classifier.history_[0] if classifier.history_ else {}
        epochs = len(hist.get("train_loss", []))
        self.model_label.setText(
            f"model: {classifier.backbone}, {len(classifier.models_)} network(s), classes {classes}"
            + (f"; {epochs} epochs" if epochs else ""))
        self._update_legend()

    def classify(self) -> Optional[Job]:
        """Classify the chosen map off the GUI thread; result layers appear when done."""
        if self.busy:
            raise MicrostructureError("a job is running; wait or press Cancel")
        if self.classifier is None:
            raise MicrostructureError("no model; train one or load a model file first")
        self.classifier.confidence_threshold = self.threshold_spin.value()
        pl = self.pattern_layer()
        self._result_map_name = pl.name
        job = Job(_classify, self.classifier, pl.data, 2048)
        job.finished.connect(self.show_result)
        return self._start(job)

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

    def cancel(self) -> None:
        if self.progress_panel.job is not None:
            self.progress_panel.job.cancel()

    def save_model(self, path: str | os.PathLike) -> None:
        if self.classifier is None:
            raise MicrostructureError("no model to save; train one first")
        self.classifier.save(path)
        self.progress_panel.status.setText(f"saved {path}")

    def load_model(self, path: str | os.PathLike) -> None:
        """Load an EBSD model (a micrograph model is refused with a clear message)."""
        from ..core.ebsd import EBSDClassifier

        self.set_classifier(EBSDClassifier.load(path))
        self.progress_panel.status.setText(f"loaded {path}")

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save EBSD model", "ebsd-model.pt", "Model (*.pt)")
        if path:
            try:
                self.save_model(path)
            except MicrostructureError as exc:
                self._error(str(exc))

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load EBSD model", "", "Model (*.pt)")
        if path:
            try:
                self.load_model(path)
            except MicrostructureError as exc:
                self._error(str(exc))

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
        items = [f'<span style="color:{class_colour(c, k)}">&#9632;</span> {c}'
                 for k, c in enumerate(self.classifier.classes_)]
        items.append(f'<span style="color:{NO_SOLUTION_COLOUR}">&#9632;</span> no solution (transparent)')
        self.legend.setText("&nbsp;&nbsp;".join(items))

    def show_result(self, result: Any) -> None:
        """Add or update the space-group, confidence and no-solution layers and the table."""
        from napari.utils.colormaps import DirectLabelColormap

        self.result = result
        base = self._result_map_name or "EBSD"
        base = base[: -len(" patterns")] if base.endswith(" patterns") else base
        classes = list(result.classes)
        colours = {k + 1: class_colour(c, k) for k, c in enumerate(classes)}
        colours[0] = "transparent"
        colours[None] = "transparent"
        data = (result.index.astype(np.int32) + 1)
        features = {"index": list(range(len(classes) + 1)),
                    "class": ["no solution"] + [str(c) for c in classes]}
        sg_name, conf_name, ns_name = (f"{base} {s}" for s in RESULT_SUFFIXES)
        meta = {"ebsd": True, "role": "space groups", "classes": [str(c) for c in classes]}
        if sg_name in self.viewer.layers:
            layer = self.viewer.layers[sg_name]
            layer.data = data
            layer.colormap = DirectLabelColormap(color_dict=colours)
            layer.features = features
        else:
            layer = self.viewer.add_labels(data, name=sg_name, features=features, metadata=meta,
                                           colormap=DirectLabelColormap(color_dict=colours), opacity=0.8)
            layer.mouse_drag_callbacks.append(self._on_click)
        if conf_name in self.viewer.layers:
            self.viewer.layers[conf_name].data = result.confidence
        else:
            self.viewer.add_image(result.confidence, name=conf_name, colormap="viridis",
                                  contrast_limits=(0.0, 1.0), visible=False,
                                  metadata={"ebsd": True, "role": "confidence"})
        mask = result.no_solution.astype(np.int32)
        if ns_name in self.viewer.layers:
            self.viewer.layers[ns_name].data = mask
        else:
            self.viewer.add_labels(mask, name=ns_name, opacity=0.9,
                                   colormap=DirectLabelColormap(color_dict={0: "transparent", None: "transparent",
                                                                            1: "magenta"}),
                                   metadata={"ebsd": True, "role": "no solution"})
        rows = result.fractions_table()
        self.fraction_table.setRowCount(len(rows))
        for i, (c, n, f) in enumerate(rows):
            for j, text in enumerate((c, str(n), f"{100 * f:.1f} %")):
                self.fraction_table.setItem(i, j, QTableWidgetItem(text))
        self._update_legend()
        nav = self._navigator()
        if nav is not None and self._on_click not in nav.mouse_drag_callbacks:
            nav.mouse_drag_callbacks.append(self._on_click)

    # ------------------------------------------------------- pattern view
    def _build_pattern_view(self, layout: QVBoxLayout) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.ax_pattern = self.figure.add_subplot(1, 2, 1)
        self.ax_proba = self.figure.add_subplot(1, 2, 2)
        self.ax_pattern.set_axis_off()
        layout.addWidget(QLabel("Click the map: pattern and class probabilities"))
        layout.addWidget(self.canvas)

    def _on_click(self, layer: Any, event: Any) -> None:
        pos = layer.world_to_data(event.position)
        r, c = int(round(pos[-2])), int(round(pos[-1]))
        try:
            self.show_pattern(r, c)
        except MicrostructureError:
            pass

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
            self.ax_proba.barh(classes, proba,
                               color=[class_colour(c, k) for k, c in enumerate(classes)])
            self.ax_proba.set_xlim(0, 1)
            self.ax_proba.tick_params(labelsize=7)
            self.ax_proba.set_title("probability", fontsize=8)
        self.canvas.draw_idle()
        try:
            self.viewer.dims.set_current_step(0, row)
            self.viewer.dims.set_current_step(1, col)
        except Exception:  # pragma: no cover - dims of other layouts
            pass
        self.last_probabilities = proba
        return proba
