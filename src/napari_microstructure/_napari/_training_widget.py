"""The "Few-shot training" dock widget.

A thin front end on the public API: it gathers image layers, their classes and
pixel sizes (or one image and a Labels layer of scribbles), builds a
:class:`~napari_microstructure.FewShotClassifier` and calls its ``fit`` in a
worker thread (:class:`~._workers.Job`), plots the losses it reports, and calls
``predict_proba``, ``save`` and :func:`napari_microstructure.load_model`. What
it does can be done in napari's console with the same calls (see
``docs/training.md``).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtGui import QFont
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import MicrostructureError
from ._kit import (
    LOSSES, MICROGRAPH_BACKBONES, DockWidget, LayerPicker, ModelFileRow, estimator_defaults, is_result_layer,
    is_micrograph_image, on_theme_change, theme_colours, unwrap,
)
from ._workers import Job, format_exception, format_seconds

_unwrap = unwrap


def _is_labels(layer: Any) -> bool:
    """Painted scribbles: a Labels layer the plugin did not compute (not a map's most probable class)."""
    return getattr(layer, "_type_string", "") == "labels" and not is_result_layer(layer)


def _classifier_defaults() -> dict[str, Any]:
    """Constructor defaults of FewShotClassifier (one source of truth for the widget's options)."""
    from ..core.micrograph.fewshot import FewShotClassifier

    return estimator_defaults(FewShotClassifier)


def _scale_pixel_size(layer: Any) -> Optional[float]:
    """The layer's pixel size in um (:func:`napari_microstructure.api.layer_pixel_size`); None when unknown."""
    from ..api import layer_pixel_size

    try:
        return layer_pixel_size(layer)
    except MicrostructureError:
        return None


def _format_size(size: Optional[float]) -> str:
    return "" if size is None else f"{size:.4g}"


def _crop_sizes_text(classifier: Any) -> str:
    """The crop fields of view a fitted model used, e.g. ``"; crops 6.4-26 µm (auto), maps 13 µm"``.

    The sizes the model chose itself ("auto": no field of view was set) are
    otherwise nowhere to be seen; the Probability maps widget's "auto" crop
    is the maps' size.
    """
    fov_range = getattr(classifier, "fov_range_um_", None)
    if fov_range is None:
        return ""
    lo, hi = (float(v) for v in fov_range)
    auto = " (auto)" if getattr(classifier, "fov_um", None) is None else ""
    crops = f"{lo:.3g} µm" if abs(hi - lo) <= 1e-9 * max(hi, 1.0) else f"{lo:.3g}-{hi:.3g} µm"
    maps = getattr(classifier, "map_fov_um_", None)
    return f"; crops {crops}{auto}" + (f", maps {float(maps):.3g} µm" if maps else "")


def _predict(classifier: Any, image: np.ndarray, pixel_size_um: float, progress=None, cancel=None):
    """Adapter for :class:`Job`: the image's answer and probabilities (``predict_image``)."""
    return classifier.predict_image(image, pixel_size_um, progress=progress, cancel=cancel)


class TrainingWidget(DockWidget):
    """Few-shot training of a micrograph classifier on napari layers.

    Attributes
    ----------
    classifier : FewShotClassifier or None
        The model trained or loaded last; replaced only when training succeeds
        or a model file loads.
    classifier_options : dict
        Extra constructor arguments for the next training (e.g.
        ``{"steps_per_epoch": 8, "device": "cpu"}``), set from the console.
    probabilities : dict
        The last classification result, ``{class: probability}`` with "none" last.
    prediction : ImagePrediction or None
        The last classification's answer (a class or "none") and none score.

    Signals
    -------
    model_changed(object)
        Emitted with the new classifier after training or loading.
    """

    model_changed = Signal(object)

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.classifier: Any = None
        self.classifier_options: dict[str, Any] = {}
        self.probabilities: dict[str, float] = {}
        self.prediction = None
        self.loss_history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": []}
        self._napari_progress: Any = None
        self._row_layers: list[Any] = []
        self._watched_layers: set[int] = set()
        defaults = _classifier_defaults()

        # --- training data -------------------------------------------------
        data = QVBoxLayout(self.section("Training data"))
        data.setContentsMargins(0, 0, 0, 0)
        self.data_tabs = QTabWidget()
        images_tab = QWidget()
        v = QVBoxLayout(images_tab)
        v.setContentsMargins(2, 2, 2, 2)
        hint = QLabel("Tick the image layers to train on; name each one's class. "
                      "The pixel size comes from the layer's scale.")
        hint.setWordWrap(True)
        v.addWidget(hint)
        self.image_table = QTableWidget(0, 3)
        self.image_table.setHorizontalHeaderLabels(["Image layer", "Class", "Pixel (µm)"])
        self.image_table.verticalHeader().setVisible(False)
        header = self.image_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.image_table.setMinimumHeight(150)
        v.addWidget(self.image_table)
        self.data_tabs.addTab(images_tab, "Images + classes")

        scribble_tab = QWidget()
        form = QFormLayout(scribble_tab)
        form.setContentsMargins(2, 2, 2, 2)
        self.scribble_image = LayerPicker(self.viewer, is_micrograph_image)
        self.scribble_pixel_size = QLineEdit()
        self.scribble_pixel_size.setPlaceholderText("micrometres per pixel")
        self.scribble_labels = LayerPicker(self.viewer, _is_labels)
        self.value_table = QTableWidget(0, 2)
        self.value_table.setHorizontalHeaderLabels(["Label value", "Class"])
        self.value_table.verticalHeader().setVisible(False)
        self.value_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.value_table.setMinimumHeight(90)
        form.addRow("Image", self.scribble_image)
        form.addRow("Pixel size (µm)", self.scribble_pixel_size)
        form.addRow("Scribbles", self.scribble_labels)
        form.addRow(self.value_table)
        self.data_tabs.addTab(scribble_tab, "Image + scribbles")
        data.addWidget(self.data_tabs)

        # --- options -------------------------------------------------------
        of = QFormLayout(self.section("Options"))
        of.setContentsMargins(2, 0, 2, 0)
        self.backbone = QComboBox()
        self.backbone.addItems(MICROGRAPH_BACKBONES)
        self.backbone.setCurrentText(str(defaults.get("backbone", MICROGRAPH_BACKBONES[0])))
        self.loss = QComboBox()
        self.loss.addItems(LOSSES)
        self.loss.setCurrentText(str(defaults.get("loss", LOSSES[0])))
        self.embedding_dim = QSpinBox()
        self.embedding_dim.setRange(1, 256)
        self.embedding_dim.setValue(int(defaults.get("embedding_dim", 2)))
        self.input_size = QSpinBox()
        self.input_size.setRange(32, 512)
        self.input_size.setSingleStep(16)
        self.input_size.setSuffix(" px")
        self.input_size.setValue(int(defaults.get("input_size", 200)))
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(int(defaults.get("max_epochs", 40)))
        of.addRow("Backbone", self.backbone)
        of.addRow("Loss", self.loss)
        of.addRow("Descriptor size", self.embedding_dim)
        of.addRow("Input size", self.input_size)
        of.addRow("Max. epochs", self.epochs)

        # --- train, loss curve, model file ----------------------------------
        tv = QVBoxLayout(self.section("Train"))
        tv.setContentsMargins(0, 0, 0, 0)
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.train)
        tv.addWidget(self.train_button)
        self._build_loss_plot()
        tv.addWidget(self.canvas)
        self.model_files = ModelFileRow(self.load_model, self.save_model, "micrograph-model.pt")
        self.save_button, self.load_button = self.model_files.save_button, self.model_files.load_button
        tv.addWidget(self.model_files)
        self.model_label = QLabel("No model yet.")
        self.model_label.setWordWrap(True)
        tv.addWidget(self.model_label)

        # --- classification ------------------------------------------------
        cv = QVBoxLayout(self.section("Classify an image layer"))
        cv.setContentsMargins(0, 0, 0, 0)
        crow = QHBoxLayout()
        self.classify_layer = LayerPicker(self.viewer, is_micrograph_image)
        self.classify_button = QPushButton("Classify")
        self.classify_button.clicked.connect(self.classify)
        crow.addWidget(self.classify_layer, 1)
        crow.addWidget(self.classify_button)
        cv.addLayout(crow)
        rrow = QHBoxLayout()
        rrow.addWidget(QLabel("Answer"))
        self.image_rule = QComboBox()
        for text, rule in (("most probable entry", "most-probable"), ("field-of-view bins", "fov-bins")):
            self.image_rule.addItem(text, rule)
        self.image_rule.setToolTip(
            "How an image's answer is decided from its crops (the model's image_rule). Most probable entry: "
            "the largest of the class and 'none' probabilities. Field-of-view bins: 'none' when the none "
            "score exceeds 0.5, which also catches untrained structures rejected at some magnifications "
            "only; on small models it calls more known images 'none' (docs/benchmarks.md).")
        self.image_rule.currentIndexChanged.connect(self._on_image_rule)
        rrow.addWidget(self.image_rule, 1)
        cv.addLayout(rrow)
        self.result_table = QTableWidget(0, 2)
        self.result_table.setHorizontalHeaderLabels(["Class", "Probability"])
        self.result_table.verticalHeader().setVisible(False)
        self.result_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.result_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.result_table.setMinimumHeight(80)
        self.result_caption = QLabel("")
        self.result_caption.setWordWrap(True)
        cv.addWidget(self.result_caption)
        cv.addWidget(self.result_table)
        self.finish_layout()

        # --- follow the viewer's layers ------------------------------------
        self._scribble_timer = QTimer(self)
        self._scribble_timer.setSingleShot(True)
        self._scribble_timer.setInterval(300)
        self._scribble_timer.timeout.connect(self._refresh_values)
        layers = self.viewer.layers
        for name in ("inserted", "removed", "moved", "reordered"):
            emitter = getattr(layers.events, name, None)
            if emitter is not None:
                emitter.connect(self._on_layers_changed)
        layers.selection.events.active.connect(self._on_active_layer)
        self.scribble_labels.currentIndexChanged.connect(lambda _: self._refresh_values())
        self.scribble_image.currentIndexChanged.connect(lambda _: self._on_scribble_image())
        self.classify_layer.currentIndexChanged.connect(lambda _: self._clear_result())
        self._refresh_layers()
        self.actions(self.train_button, self.classify_button, *self.model_files.buttons())

    # ================================================================= layers
    def _alive(self) -> bool:
        try:
            self.objectName()  # raises RuntimeError once the C++ widget is gone
        except RuntimeError:
            return False
        return True

    def _on_layers_changed(self, event: Any = None) -> None:
        if self._alive():
            self._refresh_layers()

    def _image_layers(self) -> list[Any]:
        return [_unwrap(layer) for layer in self.viewer.layers if is_micrograph_image(layer)]

    def _labels_layers(self) -> list[Any]:
        return [_unwrap(layer) for layer in self.viewer.layers if _is_labels(layer)]

    def _watch(self, layer: Any) -> None:
        if id(layer) in self._watched_layers:
            return
        self._watched_layers.add(id(layer))
        layer.events.name.connect(self._on_layers_changed)
        if hasattr(layer.events, "paint"):
            layer.events.paint.connect(self._on_paint)
            layer.events.data.connect(self._on_paint)

    def _on_paint(self, event: Any = None) -> None:
        if self._alive():
            self._scribble_timer.start()

    def _refresh_layers(self) -> None:
        """Rebuild the tables and lists from the viewer's layers, keeping what was edited."""
        kept = {id(layer): state for layer, state in zip(self._row_layers, self._row_states())}
        images = self._image_layers()
        for layer in images + self._labels_layers():
            self._watch(layer)
        table = self.image_table
        table.blockSignals(True)
        table.setRowCount(len(images))
        for r, layer in enumerate(images):
            checked, cls, size = kept.get(id(layer), self._initial_state(layer))
            name_item = QTableWidgetItem(layer.name)
            name_item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsSelectable)
            name_item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            table.setItem(r, 0, name_item)
            table.setItem(r, 1, QTableWidgetItem(cls))
            size_item = QTableWidgetItem(size)
            size_item.setToolTip("micrometres per pixel (from the layer's scale; edit if wrong)")
            table.setItem(r, 2, size_item)
        table.blockSignals(False)
        self._row_layers = images

        for picker in (self.scribble_image, self.scribble_labels, self.classify_layer):
            picker.refresh()  # (each also follows the layer list itself; here: before the values below)
        active = _unwrap(self.viewer.layers.selection.active)
        if active is not None:
            self.classify_layer.set_layer(active)
        self._refresh_values()

    @staticmethod
    def _initial_state(layer: Any) -> tuple[bool, str, str]:
        meta = getattr(layer, "metadata", {}) or {}
        cls = str(meta.get("class", "") or "")
        return bool(cls), cls, _format_size(_scale_pixel_size(layer))

    def _row_states(self) -> list[tuple[bool, str, str]]:
        states = []
        for r in range(min(self.image_table.rowCount(), len(self._row_layers))):
            items = [self.image_table.item(r, c) for c in range(3)]
            states.append((
                items[0] is not None and items[0].checkState() == Qt.CheckState.Checked,
                items[1].text() if items[1] is not None else "",
                items[2].text() if items[2] is not None else "",
            ))
        return states

    def _on_active_layer(self, event: Any = None) -> None:
        if not self._alive():
            return
        self.classify_layer.set_layer(_unwrap(self.viewer.layers.selection.active))

    def _on_scribble_image(self) -> None:
        layer = self.scribble_image.currentData()
        if layer is not None:
            self.scribble_pixel_size.setText(self._table_size_text(layer) or _format_size(_scale_pixel_size(layer)))

    def _table_size_text(self, layer: Any) -> Optional[str]:
        for r, row_layer in enumerate(self._row_layers):
            if row_layer is layer:
                item = self.image_table.item(r, 2)
                return item.text() if item is not None else ""
        return None

    def _refresh_values(self) -> None:
        """One row per label value painted in the chosen Labels layer (names kept when edited)."""
        if not self._alive():
            return
        if self.scribble_image.currentData() is not None and not self.scribble_pixel_size.text():
            self._on_scribble_image()
        names = self.scribble_class_names()
        labels = self.scribble_labels.currentData()
        values: list[int] = []
        if labels is not None:
            data = np.asarray(labels.data)
            if data.size:
                values = [int(v) for v in np.unique(data) if v > 0]
            meta_names = (getattr(labels, "metadata", {}) or {}).get("class_names", {}) or {}
            for v in values:
                names.setdefault(v, str(meta_names.get(v, meta_names.get(str(v), f"class {v}"))))
        self.value_table.setRowCount(len(values))
        for r, v in enumerate(values):
            item = QTableWidgetItem(str(v))
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.value_table.setItem(r, 0, item)
            self.value_table.setItem(r, 1, QTableWidgetItem(names[v]))

    def scribble_class_names(self) -> dict[int, str]:
        """``{label value: class name}`` as shown in the scribbles table."""
        names = {}
        for r in range(self.value_table.rowCount()):
            value, name = self.value_table.item(r, 0), self.value_table.item(r, 1)
            if value is not None and name is not None:
                names[int(value.text())] = name.text().strip()
        return names

    # ================================================================ inputs
    def _pixel_size(self, text: str, layer_name: str) -> float:
        from ..core.micrograph.images import check_pixel_size

        text = text.strip()
        return check_pixel_size(text if text else None, f"the pixel size of {layer_name!r}")

    def training_inputs(self) -> tuple[list[np.ndarray], list[Any], list[float], Optional[dict[int, str]]]:
        """``(images, labels, pixel_sizes, class_names)`` for ``FewShotClassifier.fit``.

        Raises
        ------
        MicrostructureError
            When a pixel size is missing or a layer is not a 2-D image.
        """
        from ..api import layer_array

        if self.data_tabs.currentIndex() == 1:
            image_layer = self.scribble_image.currentData()
            labels_layer = self.scribble_labels.currentData()
            if image_layer is None or labels_layer is None:
                raise MicrostructureError(
                    "choose an image layer and a Labels layer of scribbles (add one with the "
                    "'new labels layer' button and paint each class with its own label value)"
                )
            image = layer_array(image_layer)
            size = self._pixel_size(self.scribble_pixel_size.text(), image_layer.name)
            mask = np.array(labels_layer.data)  # a copy: painting may go on while training
            return [image], [mask], [size], self.scribble_class_names()
        images, classes, sizes = [], [], []
        for layer, (checked, cls, size_text) in zip(self._row_layers, self._row_states()):
            if not checked:
                continue
            images.append(layer_array(layer))
            classes.append(cls.strip())
            sizes.append(self._pixel_size(size_text, layer.name))
        if not images:
            raise MicrostructureError(
                "no image layer is ticked; tick at least two images of each of two classes"
            )
        return images, classes, sizes, None

    def options(self) -> dict[str, Any]:
        """Constructor arguments of the next classifier."""
        opts = {
            "backbone": self.backbone.currentText(),
            "loss": self.loss.currentText(),
            "embedding_dim": self.embedding_dim.value(),
            "input_size": self.input_size.value(),
            "max_epochs": self.epochs.value(),
        }
        opts.update(self.classifier_options)
        return opts

    # ============================================================== training
    def action_states(self) -> dict[Any, bool]:
        has_model = self.classifier is not None
        return {self.classify_button: has_model, self.save_button: has_model}

    def _update_buttons(self) -> None:
        self.refresh_actions()

    def _error(self, message: str) -> None:
        self.error(message)

    def train(self) -> Optional[Job]:
        """Start training in a worker thread; returns the job (None if the inputs are bad)."""
        if self.busy:
            return None
        from ..core.micrograph.fewshot import FewShotClassifier

        try:
            images, labels, sizes, class_names = self.training_inputs()
            classifier = FewShotClassifier(**self.options())
        except (MicrostructureError, TypeError) as exc:
            self._error(format_exception(exc))
            return None
        self.loss_history = {"epoch": [], "train_loss": [], "val_loss": []}
        self._update_plot()
        self._start_napari_progress(int(classifier.max_epochs))
        return self.start_job(
            classifier.fit, images, labels, sizes, class_names=class_names,
            on_done=self._on_trained, on_failed=self._on_failed, on_cancelled=self._on_job_end,
            on_progress=self._on_train_progress,
            message=f"training on {len(images)} image(s): preparing crops…",
        )

    def _start_napari_progress(self, total: int) -> None:
        try:
            from napari.utils import progress
        except ImportError:  # pragma: no cover - napari is there whenever this widget is
            return
        self._close_napari_progress()
        self._napari_progress = progress(total=total, desc="Few-shot training")

    def _close_napari_progress(self) -> None:
        if self._napari_progress is not None:
            self._napari_progress.close()
            self._napari_progress = None

    def _on_train_progress(self, report: Any) -> None:
        bar = self._napari_progress
        if report.stage == "train" and "train_loss" in report.metrics:
            self.loss_history["epoch"].append(int(report.metrics.get("epoch", report.step)))
            self.loss_history["train_loss"].append(float(report.metrics["train_loss"]))
            self.loss_history["val_loss"].append(float(report.metrics.get("val_loss", np.nan)))
            self._update_plot()
            if bar is not None:
                bar.update(max(0, int(report.step) - bar.n))
        elif bar is not None and report.stage == "calibrate":
            bar.set_description("Few-shot training: calibrating")

    def _on_trained(self, classifier: Any) -> None:
        self._close_napari_progress()
        self.set_classifier(classifier)
        history = classifier.history_
        # the whole job (crops, features, epochs, calibration), and the epochs' share of it
        total = self.job.seconds if self.job is not None else history.seconds
        self.set_status(
            f"trained in {format_seconds(total)} ({format_seconds(history.seconds)} of epochs), "
            f"{len(history.train_loss)} epochs (best {history.best_epoch + 1}"
            + (", stopped early" if history.stopped_early else "") + ")"
        )

    def _on_failed(self, exc: Any = None) -> None:
        self._on_job_end()
        if exc is not None:
            self._error(format_exception(exc))

    def _on_job_end(self, *args: Any) -> None:
        """After a failed or cancelled job: close napari's bar, show the current model's curve again."""
        self._close_napari_progress()
        self._show_history(self.classifier)
        self.refresh_actions()

    def _show_history(self, classifier: Any) -> None:
        history = getattr(classifier, "history_", None)
        if history is None:
            self.loss_history = {"epoch": [], "train_loss": [], "val_loss": []}
            self._update_plot()
            return
        n = len(history.train_loss)
        self.loss_history = {
            "epoch": list(range(1, n + 1)),
            "train_loss": list(history.train_loss),
            "val_loss": list(history.val_loss) if len(history.val_loss) == n else [np.nan] * n,
        }
        self._update_plot(best_epoch=history.best_epoch + 1)

    def set_classifier(self, classifier: Any) -> None:
        """Make ``classifier`` the widget's model and emit ``model_changed``."""
        self.classifier = classifier
        if not self.busy:
            self._show_history(classifier)
        self.model_label.setText(
            f"Model: {classifier.backbone}, {classifier.loss} loss, "
            f"{classifier.embedding_dim}-D descriptors; classes {', '.join(classifier.classes_)} (+ none)"
            + _crop_sizes_text(classifier)
        )
        # the options show what this model was trained with (training again starts from them)
        self.backbone.setCurrentText(str(classifier.backbone))
        self.loss.setCurrentText(str(classifier.loss))
        self.embedding_dim.setValue(int(classifier.embedding_dim))
        self.input_size.setValue(int(classifier.input_size))
        self.epochs.setValue(int(classifier.max_epochs))
        index = self.image_rule.findData(getattr(classifier, "image_rule", "most-probable"))
        self.image_rule.blockSignals(True)
        self.image_rule.setCurrentIndex(max(index, 0))
        self.image_rule.blockSignals(False)
        self._clear_result()
        self._update_buttons()
        self.model_changed.emit(classifier)
        from ._session import session_for

        session = session_for(self.viewer)
        if session.classifier is not classifier:
            session.set_classifier(classifier)

    # ============================================================ loss plot
    def _build_loss_plot(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.6, 2.2), dpi=100, layout="constrained")
        ax = self.figure.add_subplot(111)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel("loss", fontsize=9)
        (self.train_line,) = ax.plot([], [], "o-", color="#5aa9e6", ms=3, lw=1.5, label="training")
        (self.val_line,) = ax.plot([], [], "s-", color="#f4a259", ms=3, lw=1.5, label="validation")
        self.best_marker = ax.axvline(np.nan, lw=0.8, ls=":", alpha=0.7)
        ax.set_xlim(0.5, 10.5)  # before any epoch: whole epochs, not matplotlib's -0.04..0.04
        ax.set_ylim(0, 1)
        self.loss_axes = ax
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self._style_loss_plot()
        on_theme_change(self.viewer, self._style_loss_plot)

    def _style_loss_plot(self, event: Any = None) -> None:
        """Colour the loss plot in the viewer's theme (at creation and when the theme changes)."""
        try:
            self.objectName()
        except RuntimeError:  # the widget is gone
            return
        background, text = theme_colours(self.viewer)
        ax = self.loss_axes
        self.figure.set_facecolor(background)
        ax.set_facecolor(background)
        for spine in ax.spines.values():
            spine.set_color(text)
        ax.tick_params(colors=text)
        ax.xaxis.label.set_color(text)
        ax.yaxis.label.set_color(text)
        self.best_marker.set_color(text)
        legend = ax.legend(fontsize=8, facecolor=background, edgecolor=text, labelcolor=text, loc="upper right")
        legend.get_frame().set_alpha(0.8)
        if event is not None:  # a theme change (at creation the canvas draws when first shown)
            self.canvas.draw_idle()

    def _update_plot(self, best_epoch: Optional[int] = None) -> None:
        h = self.loss_history
        self.train_line.set_data(h["epoch"], h["train_loss"])
        self.val_line.set_data(h["epoch"], h["val_loss"])
        self.best_marker.set_xdata([np.nan if best_epoch is None else best_epoch] * 2)
        ax = self.loss_axes
        ax.relim()
        ax.autoscale_view()
        if h["epoch"]:
            ax.set_xlim(0.5, max(h["epoch"]) + 0.5)
        self.canvas.draw_idle()

    # =========================================================== model files
    def save_model(self, path: str | os.PathLike) -> None:
        """Write the current model to ``path`` (``FewShotClassifier.save``)."""
        if self.classifier is None:
            self._error("there is no model to save; train or load one first")
            return
        try:
            saved = self.classifier.save(path)
        except (MicrostructureError, OSError) as exc:
            self._error(format_exception(exc))
            return
        self.set_status(f"model saved to {saved}")

    def load_model(self, path: str | os.PathLike) -> None:
        """Read a micrograph model (:func:`napari_microstructure.load_model`) and make it current."""
        from ..api import load_model

        try:
            classifier = load_model(path)
        except (MicrostructureError, OSError) as exc:
            self._error(format_exception(exc))
            return
        if getattr(classifier, "kind", None) != "micrograph":
            self._error(f"{os.fspath(path)!r} holds an EBSD model; open it in the EBSD widget")
            return
        self.set_classifier(classifier)
        self.set_status(f"model loaded from {path}")

    # ======================================================== classification
    def classify(self) -> Optional[Job]:
        """The answer and class probabilities of the chosen image layer, computed in a worker thread."""
        if self.busy:
            return None
        from ..api import layer_array

        layer = self.classify_layer.currentData()
        try:
            if self.classifier is None:
                raise MicrostructureError("there is no model yet; train or load one first")
            if layer is None:
                raise MicrostructureError("there is no image layer to classify")
            image = layer_array(layer)
            text = self._table_size_text(layer)
            size = self._pixel_size(text if text is not None else _format_size(_scale_pixel_size(layer)), layer.name)
        except MicrostructureError as exc:
            self._error(format_exception(exc))
            return None
        self._clear_result()
        name = layer.name
        return self.start_job(_predict, self.classifier, image, size,
                              on_done=lambda answer: self._on_classified(name, answer),
                              on_failed=self._on_failed, on_cancelled=self._on_job_end,
                              message=f"classifying {name!r}…")

    def _on_image_rule(self, _index: int) -> None:
        """The model answers with the chosen rule from now on (its ``image_rule``; saved with it)."""
        if self.classifier is not None:
            self.classifier.set_params(image_rule=self.image_rule.currentData())
            self._clear_result()

    def _clear_result(self) -> None:
        """Forget the last classification (a new layer, a new model or a new run)."""
        self.result_table.setRowCount(0)
        self.result_caption.setText("")
        self.probabilities = {}
        self.prediction = None

    def _fit_result_table(self) -> None:
        """Tall enough for every class and "none" without scrolling."""
        table = self.result_table
        rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setMinimumHeight(max(80, rows + table.horizontalHeader().height() + 2 * table.frameWidth() + 2))

    def _on_classified(self, layer_name: str, answer: Any) -> None:
        """Show an :class:`~napari_microstructure.core.micrograph.verdict.ImagePrediction`."""
        probabilities = answer.as_dict()
        self.prediction = answer
        self.probabilities = dict(probabilities)
        why = answer.reason()
        self.result_caption.setText(f"<b>{layer_name}</b>: <b>{answer.label}</b> ({why})")
        self.result_caption.setToolTip(
            "Probabilities: means over random crops of the image. With the model's image_rule 'most-probable' "
            "the answer is the largest of them; with 'fov-bins' it is 'none' when the none score exceeds its "
            "threshold (the share of crops the open-set scorer rejects, raised when crops of one range of "
            "fields of view are rejected far more often than crops of known images are there), otherwise the "
            "most probable class.")
        self.result_table.setRowCount(len(probabilities))
        bold = QFont()
        bold.setBold(True)
        for r, (name, p) in enumerate(probabilities.items()):
            name_item = QTableWidgetItem(name)
            value_item = QTableWidgetItem(f"{100 * p:.1f} %")
            value_item.setData(Qt.ItemDataRole.UserRole, float(p))
            value_item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
            if name == answer.label:
                name_item.setFont(bold)
                value_item.setFont(bold)
            self.result_table.setItem(r, 0, name_item)
            self.result_table.setItem(r, 1, value_item)
        self._fit_result_table()
        self.set_status(f"{layer_name!r}: {answer.label} ({why})")
