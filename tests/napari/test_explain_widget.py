"""The "Explain" dock widget in a real napari viewer: layers align with the data."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from napari_microstructure._napari._explain_widget import SELECTED_CROP_LAYER, ExplainWidget
from napari_microstructure.core.errors import NotFittedError

CLASSES = ("ferrite", "pearlite")


@pytest.fixture(scope="module")
def micro():
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier
    from napari_microstructure.core.micrograph.synthetic import make_dataset

    images, labels, sizes = make_dataset(CLASSES, per_class=2, shape=(128, 128), seed=4)
    clf = FewShotClassifier(input_size=32, embedding_dim=2, max_epochs=1, steps_per_epoch=1, batch_size=8,
                            augment=False, seed=0, device="cpu")
    return clf.fit(images, labels, sizes), images, sizes


@pytest.fixture(scope="module")
def ebsd():
    from napari_microstructure.core.ebsd.classifier import EBSDClassifier
    from napari_microstructure.core.ebsd.simulate import simulate_training_set

    patterns, groups, _ = simulate_training_set(["Ni", "NiAl"], 6, shape=(36, 36), seed=0)
    clf = EBSDClassifier(backbone="compact", input_size=32, max_epochs=1, batch_size=12,
                         validation_fraction=0.0, seed=0, device="cpu")
    return clf.fit(patterns, groups), patterns


def _non_blank(path):
    img = imread(path)[..., :3]
    return (img < 0.95).any(-1).mean() > 0.05


def test_micrograph_attribution_layers_align(make_napari_viewer, micro, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MICROSTRUCTURE_SYNC", "1")
    clf, images, sizes = micro
    viewer = make_napari_viewer()
    image_layer = viewer.add_image(images[1][:96, :100], name="sample", scale=(sizes[1],) * 2, translate=(5.0, -3.0))
    widget = ExplainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Explain")
    with pytest.raises(NotFittedError):
        widget.set_classifier(type(clf)())
    assert not widget.attr_button.isEnabled()
    widget.set_classifier(clf)
    assert widget.layer_combo.currentText() == "sample"
    widget.method_combo.setCurrentText("Integrated gradients")
    widget.n_steps.setValue(8)
    widget.run_attributions()
    assert widget.panel.status.text() == "done"
    layers = [lay for lay in viewer.layers if lay.name.startswith("attribution")]
    assert len(layers) == 2
    ranking = [r.target for r in widget.attributions]
    assert layers[0].name == f"attribution (predicted): {ranking[0]}"
    for lay in layers:
        assert lay.data.shape == image_layer.data.shape
        np.testing.assert_allclose(lay.scale, image_layer.scale)
        np.testing.assert_allclose(lay.translate, image_layer.translate)
        lo, hi = lay.contrast_limits
        assert lo == pytest.approx(-hi) and hi > 0
    np.testing.assert_allclose(layers[0].data, widget.attributions[0].attributions)
    # the same world point falls on the same pixel of the image and of the overlay
    world = image_layer.data_to_world((17, 42))
    np.testing.assert_allclose(layers[0].world_to_data(world), (17, 42))
    widget.export_png(tmp_path / "attr.png")
    assert _non_blank(tmp_path / "attr.png")
    widget.export_csv(str(tmp_path / "attr.csv"))
    assert (tmp_path / "attr-predicted.csv").exists() and (tmp_path / "attr-runner-up.csv").exists()
    # running again replaces the overlays instead of piling them up
    widget.method_combo.setCurrentText("GradientSHAP")
    widget.n_steps.setValue(4)
    widget.run_attributions()
    assert len([lay for lay in viewer.layers if lay.name.startswith("attribution")]) == 2


def test_descriptor_map_in_a_worker_and_crop_selection(make_napari_viewer, micro, qtbot, tmp_path, monkeypatch):
    monkeypatch.delenv("NAPARI_MICROSTRUCTURE_SYNC", raising=False)
    clf, images, sizes = micro
    viewer = make_napari_viewer()
    image_layer = viewer.add_image(images[0], name="img", scale=(sizes[0],) * 2, translate=(2.0, 1.0))
    widget = ExplainWidget(viewer)
    widget.set_classifier(clf)
    widget.n_crops.setValue(12)
    job = widget.run_descriptor_map()
    assert job is not None and job.worker is not None  # a napari worker thread, not the GUI thread
    qtbot.waitUntil(lambda: widget.descriptor_map_result is not None, timeout=60000)
    dmap = widget.descriptor_map_result
    assert dmap is not None and len(dmap.crops_xy) == 12
    widget.select_crop(3)
    rect = viewer.layers[SELECTED_CROP_LAYER]
    np.testing.assert_allclose(rect.scale, image_layer.scale)
    np.testing.assert_allclose(rect.translate, image_layer.translate)
    corners = rect.data[0]
    centre = corners.mean(0) + 0.5
    np.testing.assert_allclose(centre, dmap.crops.centres_px[3], rtol=1e-5)
    np.testing.assert_allclose(np.ptp(corners, 0), dmap.crops.size_px[3], rtol=1e-5)
    widget.export_png(tmp_path / "map.png")
    assert _non_blank(tmp_path / "map.png")
    widget.export_csv(tmp_path / "map.csv")
    assert (tmp_path / "map.csv").read_text().count("image crop") == 12


def test_ebsd_pattern_at_the_current_slice(make_napari_viewer, ebsd, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MICROSTRUCTURE_SYNC", "1")
    clf, patterns = ebsd
    path = tmp_path / "ebsd.pt"
    clf.save(path)
    viewer = make_napari_viewer()
    layer = viewer.add_image(patterns, name="patterns", scale=(1.0, 0.5, 0.5))
    widget = ExplainWidget(viewer)
    widget.load_model(str(path))
    assert not widget.map_button.isEnabled()  # no descriptors in an EBSD model
    viewer.dims.set_current_step(0, 3)
    data, pixel, _ = widget.current_data()
    np.testing.assert_array_equal(data, patterns[3])
    widget.method_combo.setCurrentText("GradientSHAP")
    widget.n_steps.setValue(8)
    widget.run_attributions()
    assert widget.panel.status.text() == "done"
    overlay = viewer.layers[f"attribution (predicted): {widget.attributions[0].target}"]
    assert overlay.data.shape == patterns.shape[1:]
    np.testing.assert_allclose(overlay.scale, layer.scale[-2:])
    assert widget.attributions[0].target == widget.classifier.predict(patterns[3:4])[0]
    widget.show_kernels()
    widget.export_png(tmp_path / "kernels.png")
    assert _non_blank(tmp_path / "kernels.png")
    # the convolutions by readable names, not module names such as "features.6"
    names = [widget.conv_layer.itemText(i) for i in range(widget.conv_layer.count())]
    assert names == ["first convolution", "convolution 2 of 6", "convolution 3 of 6", "convolution 4 of 6",
                     "convolution 5 of 6", "last convolution (6 of 6)"]
    widget.conv_layer.setCurrentIndex(2)
    widget.run_feature_maps()
    assert widget.result.layer == "features.6" and widget.result.label == "convolution 3 of 6"
    title = widget.figure._suptitle.get_text()
    assert "convolution 3 of 6" in title and "features" not in title
    widget.export_png(tmp_path / "fmaps.png")
    assert _non_blank(tmp_path / "fmaps.png")


def test_a_band_profile_model_is_refused_in_user_terms(make_napari_viewer, micro, tmp_path):
    """The band-profile EBSD model has no pixels to attribute: Explain says so in the widgets' terms,
    where its probabilities are shown instead, and how to get attribution maps; the model it had stays."""
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier
    from napari_microstructure.core.errors import MicrostructureError

    clf = micro[0]
    widget = ExplainWidget(make_napari_viewer())
    widget.set_classifier(clf)
    bands = BandProfileClassifier.from_pretrained(pc=(0.5, 0.3, 0.6))
    bands.save(tmp_path / "bands.pt")
    assert widget.load_model_file(str(tmp_path / "bands.pt")) is False
    status = widget.panel.status.text()
    assert status.startswith("error: this is a band-profile EBSD model")
    assert "pattern panel" in status and "CNN backbone" in status and "Backbone: compact" in status
    assert "FewShotClassifier" not in status and "TorchAdapter" not in status
    assert widget.classifier is clf
    from napari_microstructure.core.explain.adapters import as_adapter

    with pytest.raises(MicrostructureError, match=r"band profiles indexed .* predict_proba\(patterns\).*"
                                                  r"backbone='compact'"):
        as_adapter(bands)                                   # the API says it in the API's terms


def test_the_model_in_memory_belongs_to_its_viewer(make_napari_viewer, micro):
    """A model published in one viewer (the training widget's) reaches that viewer's docks, also through
    napari's plugin proxy, and no other viewer's: a later viewer of the process starts without it."""
    from napari_microstructure._napari._session import session_for

    clf = micro[0]
    first, second = make_napari_viewer(), make_napari_viewer()
    session_for(first).set_classifier(clf)
    assert ExplainWidget(second).classifier is None
    assert not ExplainWidget(second).attr_button.isEnabled()
    _, docked = first.window.add_plugin_dock_widget("napari-microstructure", "Explain")
    assert docked.classifier is clf
    assert session_for(docked.viewer) is session_for(first)
    # published later: the docks of that viewer follow, the other viewer's do not
    later = ExplainWidget(second)
    session_for(first).set_classifier(clf)
    assert later.classifier is None


def test_data_layer_follows_the_selected_layer_but_not_mid_job(make_napari_viewer, micro):
    from types import SimpleNamespace

    clf, images, sizes = micro
    viewer = make_napari_viewer()
    first = viewer.add_image(images[0], name="first", scale=(sizes[0],) * 2)
    second = viewer.add_image(images[1], name="second", scale=(sizes[1],) * 2)
    widget = ExplainWidget(viewer)
    assert widget.layer_combo.currentText() == "second"       # the active layer when docked
    viewer.layers.selection.active = first
    assert widget.layer_combo.currentText() == "first"
    viewer.add_labels(np.zeros((8, 8), np.int32), name="scribbles")   # not an input: the choice stays
    assert widget.layer_combo.currentText() == "first"
    widget.job = SimpleNamespace(running=True)                 # a job explains "first": it stays chosen
    viewer.layers.selection.active = second
    assert widget.layer_combo.currentText() == "first"
    widget.job = None
    viewer.layers.selection.active = first
    viewer.layers.selection.active = second
    assert widget.layer_combo.currentText() == "second"


def test_figure_follows_the_viewer_theme(make_napari_viewer, micro):
    """No white canvas in napari's dark theme, before and after a figure is drawn; a theme change redraws."""
    from matplotlib.colors import to_hex
    from napari.utils.theme import get_theme

    clf, images, sizes = micro
    viewer = make_napari_viewer()
    viewer.add_image(images[0], name="img", scale=(sizes[0],) * 2)
    viewer.theme = "dark"
    widget = ExplainWidget(viewer)
    dark, light = get_theme("dark"), get_theme("light")
    assert to_hex(widget.figure.get_facecolor()) == dark.background.as_hex() != "#ffffff"
    widget.set_classifier(clf)
    widget.show_kernels()
    assert to_hex(widget.figure._suptitle.get_color()) == dark.text.as_hex()
    viewer.theme = "light"
    assert to_hex(widget.figure.get_facecolor()) == light.background.as_hex()
    assert to_hex(widget.figure._suptitle.get_color()) == light.text.as_hex()


def test_messages_name_the_widgets_controls(make_napari_viewer, micro, monkeypatch):
    """The core's warning about too few integration steps is told in the widget's terms."""
    import importlib

    attribution = importlib.import_module("napari_microstructure.core.explain.attribution")
    monkeypatch.setenv("NAPARI_MICROSTRUCTURE_SYNC", "1")
    monkeypatch.setattr(attribution, "COMPLETENESS_TOLERANCE", -1.0)  # always short of the score difference
    clf, images, sizes = micro
    viewer = make_napari_viewer()
    viewer.add_image(images[1][:96, :96], name="sample", scale=(sizes[1],) * 2)
    widget = ExplainWidget(viewer)
    widget.set_classifier(clf)
    widget.method_combo.setCurrentText("Integrated gradients")
    widget.n_steps.setValue(4)
    widget.run_attributions()
    warning = widget.panel.warning.text()
    assert "'Steps / samples' at 4" in warning and "raise 'Steps / samples'" in warning, warning
    assert "choose GradientSHAP under 'Attribution'" in warning, warning
    assert "n_steps" not in warning and "method=" not in warning and "gradient-shap" not in warning
