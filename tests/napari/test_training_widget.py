"""The "Few-shot training" dock widget, driven through a real napari viewer.

Training runs in napari's worker thread exactly as for a user; the
configurations are tiny (64-pixel inputs, a few short epochs) to keep the suite
fast on a CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_microstructure._napari._sample_data import SAMPLE_CLASSES, sample_micrographs
from napari_microstructure._napari._training_widget import TrainingWidget

TINY = {"steps_per_epoch": 3, "batch_size": 16, "n_crops": 48, "patience": 50, "device": "cpu", "seed": 0}


def _add_sample(viewer, per_class=2, shape=(256, 256)):
    for data, kwargs, _ in sample_micrographs(per_class=per_class, shape=shape):
        viewer.add_image(data, **kwargs)


def _widget(make_napari_viewer, **sample):
    viewer = make_napari_viewer()
    _add_sample(viewer, **sample)
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Few-shot training")
    widget.classifier_options.update(TINY)
    widget.input_size.setValue(64)
    widget.embedding_dim.setValue(4)
    return viewer, widget


def _row(widget, name):
    return next(r for r, layer in enumerate(widget._row_layers) if layer.name == name)


def _status(widget):
    return widget.panel.status.text()


def test_widget_docks_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-microstructure", "Few-shot training")
    assert isinstance(widget, TrainingWidget)
    # the widget follows this viewer's layers (napari hands plugins a proxy of the viewer)
    viewer.add_image(np.zeros((32, 32), np.uint8), name="later", scale=(0.2, 0.2),
                     metadata={"class": "bainite"})
    assert widget.image_table.rowCount() == 1
    assert widget.image_table.item(0, 1).text() == "bainite"
    assert widget.image_table.item(0, 2).text() == "0.2"
    assert widget.classifier is None
    assert not widget.save_button.isEnabled()
    assert not widget.classify_button.isEnabled()


def test_rows_follow_layers_with_class_and_pixel_size(make_napari_viewer):
    viewer, widget = _widget(make_napari_viewer, per_class=1, shape=(96, 96))
    table = widget.image_table
    assert table.rowCount() == len(SAMPLE_CLASSES)
    for r, layer in enumerate(widget._row_layers):
        assert table.item(r, 0).text() == layer.name
        assert table.item(r, 0).checkState() == Qt.CheckState.Checked
        assert table.item(r, 1).text() == layer.metadata["class"]
        assert float(table.item(r, 2).text()) == pytest.approx(layer.scale[-1])
    # an image without class or scale: unticked, no class, no pixel size
    viewer.add_image(np.zeros((64, 64), np.uint8), name="unknown")
    assert table.rowCount() == len(SAMPLE_CLASSES) + 1
    r = _row(widget, "unknown")
    assert table.item(r, 0).checkState() == Qt.CheckState.Unchecked
    assert table.item(r, 1).text() == "" and table.item(r, 2).text() == ""
    # edits survive a layer change; removed layers lose their row
    table.item(0, 1).setText("renamed")
    viewer.layers.remove("unknown")
    assert table.rowCount() == len(SAMPLE_CLASSES)
    assert table.item(0, 1).text() == "renamed"
    # a Labels layer is not a training image but a scribble source
    viewer.add_labels(np.zeros((96, 96), np.uint8), name="scribbles")
    assert table.rowCount() == len(SAMPLE_CLASSES)
    assert widget.scribble_labels.findText("scribbles") >= 0


def test_the_plugins_result_layers_are_not_offered_as_training_images(make_napari_viewer):
    """Probability maps, outliers, the most probable class, attribution overlays and EBSD results are
    the plugin's outputs: neither the table, nor the classify list, nor the scribble lists offer them
    (the Probability maps widget's filter, :func:`is_micrograph_image`, is the one rule), nor the EBSD
    reader's inputs (a pattern map and its navigator)."""
    from napari_microstructure._napari._probmap_widget import ProbabilityMapWidget

    viewer, widget = _widget(make_napari_viewer, per_class=1, shape=(96, 96))
    images = [layer.name for layer in widget._row_layers]
    tag = {"image": images[0], "role": "probability", "class_name": "ferrite", "index": 0}
    viewer.add_image(np.zeros((96, 96)), name="ferrite probability · x", metadata={"probmap": tag})
    viewer.add_image(np.zeros((96, 96)), name="outliers · x", metadata={"probmap": dict(tag, role="outliers")})
    viewer.add_labels(np.zeros((96, 96), np.uint8), name="most probable class · x",
                      metadata={"probmap": dict(tag, role="labels")})
    viewer.add_image(np.zeros((96, 96)), name="attribution (predicted): ferrite", metadata={"role": "attribution"})
    viewer.add_image(np.zeros((8, 8)), name="EBSD confidence", metadata={"ebsd": True, "role": "confidence"})
    # the EBSD reader's inputs are the EBSD widget's: a pattern map and its navigator are not micrographs
    viewer.add_image(np.zeros((8, 8)), name="map navigator", metadata={"ebsd": True, "role": "navigator"})
    viewer.add_image(np.zeros((3, 4, 16, 16)), name="map patterns", metadata={"ebsd": True, "role": "patterns"})
    offered = [layer.name for layer in widget._row_layers]
    assert offered == images
    classify = [widget.classify_layer.itemText(i) for i in range(widget.classify_layer.count())]
    assert classify == offered
    assert [widget.scribble_image.itemText(i) for i in range(widget.scribble_image.count())] == offered
    assert widget.scribble_labels.count() == 0
    probmap = ProbabilityMapWidget(viewer)                  # the same rule as the map widget's
    assert [layer.name for layer in probmap.image_combo.layers()] == offered
    from napari_microstructure._napari._kit import is_micrograph_image, is_source_image

    assert all(is_micrograph_image(layer) == (layer.name in offered) for layer in viewer.layers)
    # Explain takes EBSD inputs too (an EBSD model explains patterns): they stay source images
    assert is_source_image(viewer.layers["map patterns"]) and is_source_image(viewer.layers["map navigator"])


def test_train_in_worker_fills_classifier_and_loss_curve(make_napari_viewer, qtbot):
    viewer, widget = _widget(make_napari_viewer, per_class=3, shape=(192, 192))
    widget.epochs.setValue(3)
    emitted = []
    widget.model_changed.connect(emitted.append)
    job = widget.train()
    assert job is not None and widget.busy
    assert job.worker is not None  # a real napari thread worker, not the synchronous path
    assert not widget.train_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert "error" not in _status(widget), _status(widget)
    clf = widget.classifier
    assert clf is not None and emitted == [clf]
    assert sorted(clf.classes_) == sorted(SAMPLE_CLASSES)
    assert clf.input_size == 64 and clf.embedding_dim == 4 and clf.max_epochs == 3
    x, y = widget.train_line.get_data()
    assert len(x) == len(clf.history_.train_loss) >= 1
    assert np.allclose(y, clf.history_.train_loss)
    assert len(widget.val_line.get_data()[1]) == len(x)
    assert all(math.isfinite(v) for v in widget.val_line.get_data()[1])
    assert widget.panel.bar.value() == 100
    assert widget.save_button.isEnabled() and widget.classify_button.isEnabled()
    assert widget._napari_progress is None  # napari's progress bar was closed
    # the time said is the whole job's (crops, features, epochs, calibration), the epochs' share named
    from napari_microstructure._napari._workers import format_seconds

    assert job.seconds >= clf.history_.seconds > 0
    assert _status(widget).startswith(f"trained in {format_seconds(job.seconds)} "
                                      f"({format_seconds(clf.history_.seconds)} of epochs), "
                                      f"{len(clf.history_.train_loss)} epochs"), _status(widget)


def test_cancel_keeps_earlier_model(make_napari_viewer, qtbot, trained_model_path):
    viewer, widget = _widget(make_napari_viewer, per_class=3, shape=(192, 192))
    widget.load_model(trained_model_path)
    before = widget.classifier
    classes = list(before.classes_)
    weights = {k: v.clone() for k, v in before.model_.state_dict().items()}
    emitted = []
    widget.model_changed.connect(emitted.append)
    widget.epochs.setValue(500)
    assert widget.train() is not None
    qtbot.waitUntil(lambda: len(widget.loss_history["epoch"]) >= 1, timeout=60_000)
    assert widget.panel.cancel_button.isEnabled()
    widget.panel.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert "cancelled" in _status(widget)
    assert widget.classifier is before and list(before.classes_) == classes
    for k, v in before.model_.state_dict().items():
        assert np.array_equal(v.numpy(), weights[k].numpy())
    assert emitted == []
    assert widget.train_button.isEnabled()


def test_classify_fills_probability_table(make_napari_viewer, qtbot, trained_model_path):
    viewer, widget = _widget(make_napari_viewer, per_class=1, shape=(256, 256))
    widget.load_model(trained_model_path)
    layer = viewer.layers["pearlite 1"]
    viewer.layers.selection.active = layer
    assert widget.classify_layer.currentData() is layer
    job = widget.classify()
    assert job is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    labels = widget.classifier.labels_
    table = widget.result_table
    assert table.rowCount() == len(labels)
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == labels
    assert labels[-1] == "none"
    values = [table.item(r, 1).data(Qt.ItemDataRole.UserRole) for r in range(table.rowCount())]
    assert sum(values) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert widget.probabilities == pytest.approx(dict(zip(labels, values)))
    # the same numbers as the console call on that layer
    from napari_microstructure import predict_layer

    assert predict_layer(widget.classifier, layer) == pytest.approx(widget.probabilities, abs=1e-6)
    # the answer shown (bold row, caption, status) is the console's predict_image of that layer
    from napari_microstructure import layer_image

    answer = widget.classifier.predict_image(*layer_image(layer))
    assert widget.prediction.label == answer.label
    assert widget.prediction.none_score == pytest.approx(answer.none_score)
    bold = [table.item(r, 0).text() for r in range(table.rowCount()) if table.item(r, 0).font().bold()]
    assert bold == [answer.label]
    assert f"<b>{answer.label}</b>" in widget.result_caption.text()
    assert _status(widget).startswith(f"'pearlite 1': {answer.label} (most probable")
    # a model answering with the field-of-view bins shows its none score against the threshold
    assert widget.image_rule.currentData() == "most-probable"
    widget.image_rule.setCurrentIndex(widget.image_rule.findData("fov-bins"))
    assert widget.classifier.image_rule == "fov-bins" and widget.probabilities == {}
    try:
        widget.classify()
        qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
        answer = widget.classifier.predict_image(*layer_image(layer))
        side = ">" if answer.none_score > 0.5 else "\u2264"
        assert widget.prediction.label == answer.label
        assert f"none score {answer.none_score:.2f} {side} 0.50" in _status(widget)
    finally:
        widget.classifier.set_params(image_rule="most-probable")


def test_save_load_round_trip(make_napari_viewer, tmp_path, trained_model_path):
    viewer, widget = _widget(make_napari_viewer, per_class=1, shape=(96, 96))
    emitted = []
    widget.model_changed.connect(emitted.append)
    widget.load_model(trained_model_path)
    first = widget.classifier
    assert emitted == [first]
    assert len(widget.train_line.get_data()[0]) == len(first.history_.train_loss) > 0
    out = tmp_path / "copy.pt"
    widget.save_model(out)
    assert out.exists() and "saved" in _status(widget)
    widget.load_model(out)
    second = widget.classifier
    assert second is not first and emitted == [first, second]
    assert list(second.classes_) == list(first.classes_)
    assert second.mixture_.threshold_ == pytest.approx(first.mixture_.threshold_)
    for (k1, v1), (k2, v2) in zip(first.model_.state_dict().items(), second.model_.state_dict().items()):
        assert k1 == k2 and np.array_equal(v1.numpy(), v2.numpy())
    # a damaged file: the error is shown and the model stays
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    widget.load_model(bad)
    assert _status(widget).startswith("error:") and widget.classifier is second
    assert emitted == [first, second]
    # the options and the answer rule show the loaded model's (the fixture: 64 px input, 8-D, 20 epochs)
    assert (widget.input_size.value(), widget.embedding_dim.value(), widget.epochs.value()) == (64, 8, 20)
    assert (widget.backbone.currentText(), widget.loss.currentText()) == (second.backbone, second.loss)
    # the crop fields of view the model chose itself (no size was set) are shown, with the maps' size
    lo, hi = second.fov_range_um_
    assert second.fov_um is None
    assert f"crops {lo:.3g}-{hi:.3g} µm (auto), maps {second.map_fov_um_:.3g} µm" in widget.model_label.text()
    assert widget.image_rule.currentData() == "most-probable"
    second.set_params(image_rule="fov-bins")
    widget.save_model(tmp_path / "fov.pt")
    widget.load_model(trained_model_path)
    assert widget.image_rule.currentData() == "most-probable"
    widget.load_model(tmp_path / "fov.pt")
    assert widget.classifier.image_rule == "fov-bins" and widget.image_rule.currentData() == "fov-bins"


def test_one_class_shows_core_error_and_changes_nothing(make_napari_viewer, qtbot):
    viewer, widget = _widget(make_napari_viewer, per_class=2, shape=(96, 96))
    for r, layer in enumerate(widget._row_layers):
        if layer.metadata["class"] != "ferrite":
            widget.image_table.item(r, 0).setCheckState(Qt.CheckState.Unchecked)
    emitted = []
    widget.model_changed.connect(emitted.append)
    widget.train()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert "only one class" in _status(widget) and _status(widget).startswith("error:")
    assert widget.classifier is None and emitted == []
    assert widget.train_button.isEnabled()


def test_missing_pixel_size_is_refused_before_training(make_napari_viewer):
    viewer, widget = _widget(make_napari_viewer, per_class=2, shape=(96, 96))
    widget.image_table.item(0, 2).setText("")
    assert widget.train() is None
    assert not widget.busy
    name = widget._row_layers[0].name
    assert f"the pixel size of {name!r} is missing" in _status(widget)
    widget.image_table.item(0, 2).setText("abc")
    assert widget.train() is None and "not a number" in _status(widget)
    assert widget.classifier is None


def test_scribbles_of_another_shape_show_core_error(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8),
                     name="micrograph", scale=(0.1, 0.1))
    scribbles = np.zeros((64, 64), np.uint8)
    scribbles[5:20, 5:20] = 1
    scribbles[30:50, 30:50] = 2
    viewer.add_labels(scribbles, name="scribbles", metadata={"class_names": {1: "ferrite"}})
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.data_tabs.setCurrentIndex(1)
    assert widget.scribble_pixel_size.text() == "0.1"
    assert widget.scribble_class_names() == {1: "ferrite", 2: "class 2"}
    widget.train()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert "same size as the image" in _status(widget)
    assert widget.classifier is None


def test_scribble_inputs_follow_painting(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((80, 80), np.uint8), name="micrograph", scale=(0.05, 0.05))
    labels = viewer.add_labels(np.zeros((80, 80), np.uint8), name="scribbles")
    widget = TrainingWidget(viewer)
    widget.data_tabs.setCurrentIndex(1)
    assert widget.value_table.rowCount() == 0
    labels.paint((10, 10), 3, refresh=True)
    labels.paint((40, 40), 5, refresh=True)
    qtbot.waitUntil(lambda: widget.value_table.rowCount() == 2, timeout=5_000)
    widget.value_table.item(0, 1).setText("pearlite")
    images, masks, sizes, names = widget.training_inputs()
    assert sizes == [0.05] and names == {3: "pearlite", 5: "class 5"}
    assert masks[0].shape == (80, 80) and set(np.unique(masks[0])) == {0, 3, 5}
    assert masks[0] is not labels.data  # a copy: painting during training does not race


def test_loss_plot_follows_the_viewer_theme(make_napari_viewer):
    """The loss plot is drawn in the viewer's colours, and recoloured when the theme changes."""
    from matplotlib.colors import to_hex
    from napari.utils.theme import get_theme

    viewer, widget = _widget(make_napari_viewer, per_class=1, shape=(96, 96))
    for name in ("dark", "light", "dark"):
        viewer.theme = name
        theme = get_theme(name)
        assert to_hex(widget.figure.get_facecolor()) == theme.background.as_hex()
        assert to_hex(widget.loss_axes.xaxis.label.get_color()) == theme.text.as_hex()
        assert to_hex(widget.loss_axes.get_legend().get_texts()[0].get_color()) == theme.text.as_hex()
