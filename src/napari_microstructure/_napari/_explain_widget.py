"""The "Explain" dock widget: descriptor map, attributions, kernels and feature maps.

The figures are drawn by :mod:`napari_microstructure.core.explain.plots` on an
embedded matplotlib canvas; attributions also become red/blue overlay layers
aligned with the explained image (same scale and translate). Heavy work runs
in a worker thread through :class:`~._workers.Job`, with progress and Cancel.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout

from ..core.choices import BACKBONES
from ..core.errors import MicrostructureError
from ._kit import (DockWidget, LayerPicker, ModelFileRow, add_buttons, is_source_image, place_like, theme_figure,
                   on_theme_change, unwrap)
from ._workers import Job

METHOD_LABELS = {"Integrated gradients": "integrated-gradients", "GradientSHAP": "gradient-shap"}
#: micrograph scores, default first (EBSD models always use the log of the class probability). The
#: log posterior saturates where the model is sure (p = 1.00 gives an empty map), so the default is
#: the class log-likelihood under the mixture.
SCORE_LABELS = {"class log-likelihood": "log-joint", "log posterior": "log-posterior"}
#: opacity of the attribution overlays (their colour map is transparent at zero)
OVERLAY_OPACITY = 0.9
SELECTED_CROP_LAYER = "explain: selected crop"
#: what Explain can and cannot do with a band-profile EBSD model, in the widgets' terms
BAND_PROFILES_HERE = (
    "this is a band-profile EBSD model: it classifies the band profiles indexed from each pattern, not the "
    "pattern's pixels, so there are no attribution maps, kernels or feature maps to show. Its probabilities "
    "for a pattern are in the EBSD widget: click a point of the map and its pattern panel shows them. For "
    f"attribution maps, train a model with a CNN backbone in the EBSD widget (Backbone: {' or '.join(BACKBONES)}) "
    "and load it here"
)


def _overlay_colormap() -> Any:
    """Blue (negative) - transparent (zero) - red (positive): the image stays visible where nothing happens."""
    from napari.utils.colormaps import Colormap

    return Colormap([[0.0, 0.25, 1.0, 1.0], [0.0, 0.25, 1.0, 0.0], [1.0, 0.1, 0.1, 0.0], [1.0, 0.1, 0.1, 1.0]],
                    controls=[0.0, 0.5, 0.5, 1.0], name="attribution-overlay", interpolation="linear")


class ExplainWidget(DockWidget):
    """Explain a micrograph or EBSD classifier on the data in the viewer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.classifier: Any = None
        self.result: Any = None          # what the canvas shows (for CSV export)
        self.attributions: list = []
        self.descriptor_map_result: Any = None
        self._map_layer: Any = None
        self._selected_crop: Optional[int] = None

        mv = QVBoxLayout(self.section("Model"))
        mv.setContentsMargins(0, 0, 0, 0)
        self.model_label = QLabel("no model: train one, or load a model file")
        self.model_label.setWordWrap(True)
        self.model_files = ModelFileRow(self.load_model_file)
        self.load_button = self.model_files.load_button
        mv.addWidget(self.model_label)
        mv.addWidget(self.model_files)

        self.layer_combo = LayerPicker(self.viewer, is_source_image)
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(METHOD_LABELS))
        self.score_combo = QComboBox()
        self.score_combo.addItems(list(SCORE_LABELS))
        self.score_combo.setToolTip(
            "micrograph models: the class log-likelihood under the mixture (informative even where the "
            "model is sure) or the class's log posterior (saturates, so a sure prediction gives an empty map)")
        # the backbone's convolutions by readable name (item data: the index feature_maps takes)
        self.conv_layer = QComboBox()
        self.conv_layer.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.conv_layer.setMinimumContentsLength(12)
        self.conv_layer.setToolTip("the convolution whose outputs Feature maps shows, input side first")
        self.n_crops = QSpinBox()
        self.n_crops.setRange(4, 2000)
        self.n_crops.setValue(64)
        self.n_steps = QSpinBox()
        self.n_steps.setRange(4, 512)
        self.n_steps.setValue(32)
        self.n_steps.setToolTip("integration steps (integrated gradients) or samples (GradientSHAP)")
        # the core's messages name its parameters: say the controls' names instead
        self.panel.control_names.update({"n_steps": "Steps / samples", "n_samples": "Steps / samples",
                                         "n_crops": "Crops on map"})
        self.panel.control_phrases.update({
            f"use method='{api}'": f"choose {label} under 'Attribution'" for label, api in METHOD_LABELS.items()})
        self.panel.control_phrases.update({
            f"method='{api}'": f"'Attribution' {label}" for label, api in METHOD_LABELS.items()})
        form = QFormLayout(self.section("Data and settings"))
        form.setContentsMargins(2, 0, 2, 0)
        form.addRow("Data layer", self.layer_combo)
        form.addRow("Attribution", self.method_combo)
        form.addRow("Score", self.score_combo)
        form.addRow("Steps / samples", self.n_steps)
        form.addRow("Crops on map", self.n_crops)
        # the convolutions' names are long for the field column: the list spans the dock's width
        form.addRow(QLabel("Feature maps of the"))
        form.addRow(self.conv_layer)

        self.map_button = QPushButton("Descriptor map")
        self.attr_button = QPushButton("Attributions")
        self.kernel_button = QPushButton("Kernels")
        self.fmap_button = QPushButton("Feature maps")
        self.png_button = QPushButton("Export PNG…")
        self.csv_button = QPushButton("Export CSV…")
        self.map_button.clicked.connect(self.run_descriptor_map)
        self.attr_button.clicked.connect(self.run_attributions)
        self.kernel_button.clicked.connect(self.show_kernels)
        self.fmap_button.clicked.connect(self.run_feature_maps)
        self.png_button.clicked.connect(lambda: self._export("png"))
        self.csv_button.clicked.connect(lambda: self._export("csv"))
        fv = QVBoxLayout(self.section("Explain"))
        fv.setContentsMargins(0, 0, 0, 0)
        add_buttons(fv, (self.map_button, self.attr_button, self.kernel_button, self.fmap_button))

        self.figure = Figure(figsize=(4, 3.6), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(300)
        self.canvas.mpl_connect("pick_event", self._on_pick)
        self._drawn: Optional[tuple] = None   # (plot, args, kwargs) of the figure on the canvas
        theme_figure(self.figure, self.viewer)  # the empty canvas too: no white block in a dark viewer
        on_theme_change(self.viewer, self._on_theme)
        fv.addWidget(self.canvas)
        add_buttons(fv, (self.png_button, self.csv_button))
        self.finish_layout()
        # the Data layer follows the layer selected in the viewer (when it is an input to explain)
        self.viewer.layers.selection.events.active.connect(self._follow_active_layer)
        self._follow_active_layer()
        self.actions(self.map_button, self.attr_button, self.kernel_button, self.fmap_button,
                     self.png_button, self.csv_button, self.load_button)

        # the model trained or loaded in the other widgets, now and later
        from ._session import session_for

        session = session_for(self.viewer)
        session.model_changed.connect(self._on_session_model)
        if session.classifier is not None:
            self._on_session_model(session.classifier)

    def _on_session_model(self, classifier: Any) -> None:
        try:
            self.objectName()
        except RuntimeError:
            return
        if getattr(classifier, "is_fitted", True) and getattr(classifier, "classes_", None) is not None:
            try:
                self.set_classifier(classifier)
            except Exception:  # noqa: BLE001 - a model this widget cannot explain is simply not picked up
                pass

    # ------------------------------------------------------------- the model
    def set_classifier(self, classifier: Any) -> None:
        """Explain ``classifier`` (a fitted FewShotClassifier or EBSDClassifier)."""
        from ..core.explain.adapters import as_adapter
        from ..core.explain.filters import conv_layer_labels

        if getattr(classifier, "kind", None) == "ebsd-bands":
            raise MicrostructureError(BAND_PROFILES_HERE)
        adapter = as_adapter(classifier)  # raises NotFittedError for an unfitted model
        self.classifier = classifier
        kind = "micrograph" if adapter.kind == "micrograph" else "EBSD"
        self.model_label.setText(f"{kind} model: {', '.join(map(str, adapter.classes))}")
        self.conv_layer.clear()
        for i, label in enumerate(conv_layer_labels(adapter)):
            self.conv_layer.addItem(label, i)
        self.score_combo.setEnabled(adapter.kind == "micrograph")
        self._update_buttons()

    def load_model(self, path: str) -> None:
        """Load a model file (micrograph or EBSD) and explain it."""
        from ..api import load_model

        self.set_classifier(load_model(path))

    def load_model_file(self, path: str) -> bool:
        """Load a model file; a problem is shown in the status line (False returned)."""
        try:
            self.load_model(path)
        except MicrostructureError as exc:
            self.error(exc)
            return False
        self.set_status(f"model loaded from {path}")
        return True

    @property
    def kind(self) -> Optional[str]:
        if self.classifier is None:
            return None
        return "micrograph" if hasattr(self.classifier, "mixture_") else "ebsd"

    def action_states(self) -> dict[Any, bool]:
        has = self.classifier is not None
        return {self.attr_button: has, self.kernel_button: has, self.fmap_button: has,
                self.map_button: self.kind == "micrograph",
                self.png_button: self.result is not None, self.csv_button: self.result is not None}

    def _update_buttons(self) -> None:
        self.refresh_actions()

    # ----------------------------------------------------------------- data
    def _follow_active_layer(self, event: Any = None) -> None:
        """Choose the viewer's active layer as Data layer when it is an image to explain.

        Not while a job runs: the layer it explains stays chosen (and the
        choice made for it is not overridden); other layers (labels, the
        plugin's results) leave the choice as it is.
        """
        try:
            self.objectName()
        except RuntimeError:
            return
        if self.busy:
            return
        active = unwrap(self.viewer.layers.selection.active)  # (napari's proxy warns on the layer's type)
        if active is not None and is_source_image(active):
            self.layer_combo.set_layer(active)

    def current_layer(self) -> Any:
        layer = self.layer_combo.layer()
        if layer is None:
            raise MicrostructureError("choose an image layer to explain (open a micrograph or EBSD patterns)")
        return layer

    def current_data(self) -> tuple[np.ndarray, Optional[float], Any]:
        """The 2-D image (micrograph) or pattern (EBSD, at the viewer's current position), its pixel size."""
        layer = self.current_layer()
        data = layer.data
        if self.kind == "micrograph":
            from ..api import layer_image

            image, pixel = layer_image(layer)
            return np.asarray(image), pixel, layer
        lead = data.ndim - 2
        if lead < 0:
            raise MicrostructureError(f"layer {layer.name!r} is not an image of patterns")
        step = tuple(self.viewer.dims.current_step)
        offset = self.viewer.dims.ndim - data.ndim
        index = []
        for axis in range(lead):
            world = step[offset + axis] if offset + axis < len(step) else 0
            index.append(int(np.clip(world, 0, data.shape[axis] - 1)))
        return np.asarray(data[tuple(index)]), None, layer

    # ------------------------------------------------------------------ jobs
    def _start(self, func: Any, on_done: Any, *args: Any, message: str = "working…", **kwargs: Any
               ) -> Optional[Job]:
        return self.start_job(func, *args, on_done=on_done, message=message, **kwargs)

    def _guard(self) -> bool:
        if self.classifier is None:
            self.error("load or train a model first")
            return False
        return True

    def run_descriptor_map(self) -> Optional[Job]:
        """Compute the descriptor map with crops of the current image (off the GUI thread)."""
        if not self._guard():
            return None
        from ..core.explain.descriptors import descriptor_map

        try:
            image, pixel, layer = self.current_data()
        except MicrostructureError as exc:
            self.error(exc)
            return None
        self._map_layer = layer
        return self._start(descriptor_map, self._show_descriptor_map, self.classifier, image, pixel,
                           n_crops=int(self.n_crops.value()), message="descriptor map: crops of the image…")

    def _show_descriptor_map(self, dmap: Any) -> None:
        from ..core.explain.plots import plot_descriptor_map

        self.descriptor_map_result = self.result = dmap
        self._selected_crop = None
        self._draw(plot_descriptor_map, dmap, narrow=True)
        self._update_buttons()

    def select_crop(self, index: int) -> None:
        """Highlight crop ``index`` of the descriptor map: inset on the map, rectangle on the image."""
        from ..core.explain.plots import plot_descriptor_map

        dmap = self.descriptor_map_result
        if dmap is None or dmap.crops is None:
            return
        self._selected_crop = int(index)
        self._draw(plot_descriptor_map, dmap, selected=self._selected_crop, narrow=True)
        layer = self._map_layer
        cy, cx = dmap.crops.centres_px[index]
        half = dmap.crops.size_px[index] / 2.0
        # pixel i spans [i, i + 1) in the crop sampler and is centred on i in napari: shift by 0.5
        rect = np.array([[cy - half, cx - half], [cy + half, cx + half]]) - 0.5
        if SELECTED_CROP_LAYER in self.viewer.layers:
            self.viewer.layers.remove(SELECTED_CROP_LAYER)
        self.viewer.add_shapes([rect], shape_type="rectangle", name=SELECTED_CROP_LAYER, **place_like(layer),
                               edge_color="red", face_color="transparent", edge_width=2)
        self.viewer.layers.selection.active = layer

    def _on_pick(self, event: Any) -> None:
        if getattr(event.artist, "get_gid", lambda: None)() == "crops" and len(event.ind):
            self.select_crop(int(event.ind[0]))

    def run_attributions(self) -> Optional[Job]:
        """Attributions of the current image or pattern for the predicted and runner-up class."""
        if not self._guard():
            return None
        from ..core.explain.attribution import explain_top_classes

        try:
            data, pixel, layer = self.current_data()
        except MicrostructureError as exc:
            self.error(exc)
            return None
        method = METHOD_LABELS[self.method_combo.currentText()]
        kwargs = {"pixel_size": pixel, "score": SCORE_LABELS[self.score_combo.currentText()]} \
            if pixel is not None else {}
        kwargs.update(n_steps=int(self.n_steps.value()), n_samples=int(self.n_steps.value()))
        return self._start(explain_top_classes, lambda res: self._show_attributions(res, layer),
                           self.classifier, data, method, k=2, message="attributions…", **kwargs)

    def _show_attributions(self, results: list, layer: Any) -> None:
        from ..core.explain.plots import attribution_limit, plot_attribution

        self.attributions = results
        self.result = results[0] if len(results) == 1 else results
        self._draw(plot_attribution, results, columns=2)
        lim = max(attribution_limit(r.attributions) for r in results)
        place = place_like(layer)
        for rank, r in zip(("predicted", "runner-up"), results):
            name = f"attribution ({rank}): {r.target}"
            for old in [lay.name for lay in self.viewer.layers if lay.name.startswith(f"attribution ({rank})")]:
                self.viewer.layers.remove(old)
            self.viewer.add_image(r.attributions, name=name, colormap=_overlay_colormap(),
                                  contrast_limits=(-lim, lim), **place, opacity=OVERLAY_OPACITY,
                                  blending="translucent", visible=rank == "predicted",
                                  metadata={"role": "attribution", "method": r.method, "target": r.target,
                                            "score": r.score_name})
        self.viewer.layers.selection.active = layer  # the explained image stays the active layer
        self._update_buttons()

    def show_kernels(self) -> None:
        """The first-layer kernels of the model (fast: on the GUI thread)."""
        if not self._guard():
            return
        from ..core.explain.filters import first_layer_kernels
        from ..core.explain.plots import plot_kernels

        self.result = first_layer_kernels(self.classifier)
        self._draw(plot_kernels, self.result)
        self.set_status("first-layer kernels of the model")  # (the last job's warnings no longer apply)
        self._update_buttons()

    def run_feature_maps(self) -> Optional[Job]:
        """Feature maps of the chosen convolution for the current image or pattern."""
        if not self._guard():
            return None
        from ..core.explain.filters import feature_maps

        try:
            data, pixel, _ = self.current_data()
        except MicrostructureError as exc:
            self.error(exc)
            return None

        def compute(progress=None, cancel=None):
            return feature_maps(self.classifier, data, int(self.conv_layer.currentData() or 0), pixel_size=pixel)

        return self._start(compute, self._show_feature_maps, message="feature maps…")

    def _show_feature_maps(self, fmaps: Any) -> None:
        from ..core.explain.plots import plot_feature_maps

        self.result = fmaps
        self._draw(plot_feature_maps, fmaps)
        self._update_buttons()

    def _on_theme(self, event: Any = None) -> None:
        """The viewer's theme changed: draw the figure again in its colours."""
        try:
            self.objectName()
        except RuntimeError:
            return
        if self._drawn is not None:
            plot, args, kwargs = self._drawn
            self._draw(plot, *args, **kwargs)
        else:
            theme_figure(self.figure, self.viewer)
            self.canvas.draw_idle()

    def _draw(self, plot: Any, *args: Any, **kwargs: Any) -> None:
        """Draw a core figure on the canvas in napari's theme, the canvas as tall as the figure needs."""
        self._drawn = (plot, args, kwargs)
        plot(*args, fig=self.figure, **kwargs)
        theme_figure(self.figure, self.viewer)
        w_in, h_in = self.figure.get_size_inches()  # the proportions the plot asked for
        width = max(self.canvas.width(), 300)
        height = int(min(900, max(260, width * h_in / max(w_in, 1e-6))))
        self.canvas.setFixedHeight(height)
        ratio = float(getattr(self.canvas, "device_pixel_ratio", 1.0) or 1.0)
        self.figure.set_size_inches(width * ratio / self.figure.dpi, height * ratio / self.figure.dpi, forward=False)
        self.canvas.draw_idle()

    # --------------------------------------------------------------- export
    def export_png(self, path: str) -> None:
        """Save the figure on the canvas."""
        from ..core.explain.plots import save_figure

        save_figure(self.figure, path)

    def export_csv(self, path: str) -> None:
        """Save the numbers behind the figure (for attributions: one file per class)."""
        if self.result is None:
            raise MicrostructureError("nothing to export yet; compute an explanation first")
        if isinstance(self.result, list):
            stem, ext = os.path.splitext(path)
            for rank, r in zip(("predicted", "runner-up"), self.result):
                r.to_csv(f"{stem}-{rank}{ext or '.csv'}")
        else:
            self.result.to_csv(path)

    def _export(self, kind: str) -> None:
        filt = "PNG image (*.png)" if kind == "png" else "CSV table (*.csv)"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", f"explanation.{kind}", filt)
        if not path:
            return
        try:
            (self.export_png if kind == "png" else self.export_csv)(path)
            self.set_status(f"saved {path}")
        except (OSError, MicrostructureError) as exc:
            self.error(exc)
