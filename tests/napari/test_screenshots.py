"""Screenshot checks of every dock widget in a shown 1920 x 1080 napari window.

Each test docks a widget beside another one, as a user works, runs its
workflow on the sample data and checks what a user would see: the window still
fits the screen and leaves most of it to the image, no dock content is wider
than its dock (nothing clipped on the right), every figure has drawn
something (not a blank or single-colour canvas), plugin layers share the
image's units (no "Inconsistent units" warning) and the scale bar is on where
a physical scale is set.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication, QWidget

SCREEN = (1920, 1080)
TINY = {"steps_per_epoch": 3, "batch_size": 16, "n_crops": 48, "patience": 50, "device": "cpu", "seed": 0}


def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


@pytest.fixture
def screen_viewer(make_napari_viewer, monkeypatch):
    monkeypatch.setenv("NAPARI_MICROSTRUCTURE_SYNC", "1")
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*SCREEN)
    settle()
    return viewer


def dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-microstructure", name)
    settle()
    return widget


def assert_fits_screen(viewer, widgets) -> None:
    """The window fits 1920 x 1080, the image keeps most of it, no dock content is clipped."""
    settle()
    window = viewer.window._qt_window
    assert window.width() <= SCREEN[0] and window.height() <= SCREEN[1], (window.width(), window.height())
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= SCREEN[0] // 2, f"the image keeps only {canvas.width()} px of the width"
    for widget in widgets:
        body, viewport = widget.body, widget.scroll.viewport()
        need = body.minimumSizeHint().width()
        assert need <= viewport.width(), f"{type(widget).__name__} needs {need} px, its dock gives {viewport.width()}"
        assert body.width() <= viewport.width()
        for child in body.findChildren(QWidget):
            if child.isVisible() and child.width() > 0:
                right = child.mapTo(body, child.rect().topRight()).x()
                assert right <= body.width() + 1, f"{type(widget).__name__}: {child!r} is cut at the right"


def assert_choices_fit(widget) -> None:
    """No choice of the dock's own combo boxes is cut at the dock's width (layer names, the user's, may be)."""
    from qtpy.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox

    from napari_microstructure._napari._kit import LayerPicker

    settle()
    for combo in widget.body.findChildren(QComboBox):
        if not combo.isVisible() or isinstance(combo, LayerPicker):
            continue
        option = QStyleOptionComboBox()
        combo.initStyleOption(option)
        field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                             QStyle.SubControl.SC_ComboBoxEditField, combo)
        for i in range(combo.count()):
            text = combo.itemText(i)
            need = combo.fontMetrics().horizontalAdvance(text)
            assert need <= field.width(), f"{type(widget).__name__}: {text!r} needs {need} px of {field.width()}"


def assert_figure_texts_inside(canvas, what: str) -> None:
    """Titles and axis labels (a colour bar's too) lie within the canvas: none is cut at its edges."""
    canvas.draw()
    renderer, figure = canvas.get_renderer(), canvas.figure
    texts = [t for ax in figure.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
    texts += [figure._suptitle] if getattr(figure, "_suptitle", None) is not None else []
    for text in texts:
        if text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            assert box.x0 >= -1 and box.x1 <= figure.bbox.width + 1, f"{what}: {text.get_text()!r} is cut"


def figure_pixels(canvas) -> np.ndarray:
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].reshape(-1, 3)


def assert_not_blank(canvas, what: str) -> None:
    """More than a background: a fair share of pixels differ from the most common colour, in many colours."""
    pixels = figure_pixels(canvas)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    drawn = np.abs(pixels.astype(int) - background.astype(int)).sum(1) > 30
    assert drawn.mean() > 0.05, f"{what} is blank ({100 * drawn.mean():.1f} % drawn)"
    assert len(colours) > 50, f"{what} has only {len(colours)} colours"


def assert_consistent_units(viewer) -> None:
    assert viewer.layers.extent.units is not None, [(ly.name, ly.units) for ly in viewer.layers]


def test_training_and_probmap_docks_fit_and_loss_curve_is_drawn(screen_viewer):
    viewer = screen_viewer
    viewer.open_sample("napari-microstructure", "micrographs")
    training = dock(viewer, "Few-shot training")
    probmap = dock(viewer, "Probability maps")
    assert_fits_screen(viewer, [training, probmap])
    assert viewer.scale_bar.visible  # the sample is in micrometres
    training.classifier_options.update(TINY)
    training.input_size.setValue(48)
    training.epochs.setValue(2)
    training.train()
    assert training.classifier is not None, training.panel.status.text()
    assert_not_blank(training.canvas, "the loss curve")
    assert_fits_screen(viewer, [training, probmap])


def test_probmap_layers_legend_and_units(screen_viewer, trained_classifier):
    viewer = screen_viewer
    viewer.open_sample("napari-microstructure", "mixed")
    probmap = dock(viewer, "Probability maps")
    explain = dock(viewer, "Explain")
    probmap.set_classifier(trained_classifier)
    probmap.stride_spin.setValue(48)
    probmap.run()
    assert "mixed micrograph" in probmap.results, probmap.panel.status.text()
    assert_consistent_units(viewer)
    assert viewer.scale_bar.visible
    assert probmap.table.rowCount() == len(trained_classifier.classes_) + 1  # the outlier row included
    assert_fits_screen(viewer, [probmap, explain])
    assert_choices_fit(probmap)


def test_explain_figures_are_drawn_at_dock_width(screen_viewer, trained_classifier):
    viewer = screen_viewer
    viewer.open_sample("napari-microstructure", "mixed")
    training = dock(viewer, "Few-shot training")
    explain = dock(viewer, "Explain")
    explain.set_classifier(trained_classifier)
    layer = viewer.layers["mixed micrograph"]
    layer.data = layer.data[:256, :256]
    explain.n_crops.setValue(16)
    explain.run_descriptor_map()
    explain.select_crop(0)
    assert_not_blank(explain.canvas, "the descriptor map")
    explain.n_steps.setValue(4)
    explain.run_attributions()
    assert explain.attributions, explain.panel.status.text()
    assert_not_blank(explain.canvas, "the attribution figure")
    assert_figure_texts_inside(explain.canvas, "the attribution figure")
    assert_choices_fit(explain)
    # the default score is informative for a confident prediction: the map is not empty
    assert np.abs(explain.attributions[0].attributions).max() > 0
    assert_consistent_units(viewer)
    assert_fits_screen(viewer, [training, explain])


def test_ebsd_dock_fits_and_pattern_view_is_drawn(screen_viewer):
    viewer = screen_viewer
    viewer.open_sample("napari-microstructure", "ebsd_dual_phase")
    ebsd = dock(viewer, "EBSD space-group map")
    explain = dock(viewer, "Explain")
    assert_fits_screen(viewer, [ebsd, explain])
    assert viewer.scale_bar.visible  # 0.5 um steps
    assert_choices_fit(ebsd)
    ebsd.backbone_combo.setCurrentText("compact")
    ebsd.size_spin.setValue(32)
    ebsd.epochs_spin.setValue(1)
    from napari_microstructure._napari._ebsd_widget import SOURCE_LAYER

    ebsd.source_combo.setCurrentText(SOURCE_LAYER)
    ebsd.train()
    ebsd.classify()
    assert "Ni-Ni3Al sample space groups" in viewer.layers, ebsd.panel.status.text()
    assert_consistent_units(viewer)
    ebsd.show_pattern(3, 4)
    assert_not_blank(ebsd.canvas, "the pattern view")
    assert_fits_screen(viewer, [ebsd, explain])
