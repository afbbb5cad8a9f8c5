"""The "Probability maps" dock widget, driven through a napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microstructure.core.micrograph.synthetic import make_composite, make_micrograph


@pytest.fixture
def sync_jobs(monkeypatch):
    monkeypatch.setenv("NAPARI_MICROSTRUCTURE_SYNC", "1")


@pytest.fixture
def widget_and_image(make_napari_viewer, trained_classifier, sync_jobs):
    from napari_microstructure._napari._probmap_widget import ProbabilityMapWidget

    viewer = make_napari_viewer()
    image, _ = make_composite("ferrite", "martensite", shape=(360, 360), pixel_size_um=0.1, seed=1)
    layer = viewer.add_image(image, name="sample", scale=(0.1, 0.1), translate=(5.0, -2.0))
    widget = ProbabilityMapWidget(viewer)
    widget.set_classifier(trained_classifier)
    widget.image_combo.setCurrentText("sample")
    widget.stride_spin.setValue(40)
    return viewer, widget, layer


def test_run_adds_aligned_layers_and_table(widget_and_image):
    viewer, widget, layer = widget_and_image
    widget.run()
    made = widget.layers_of("sample")
    n_names = len(widget.results["sample"].class_names)
    assert len(made) == n_names + 2  # one per class and none, labels, outliers
    for lay in made:
        np.testing.assert_allclose(lay.scale, layer.scale)
        np.testing.assert_allclose(lay.translate, layer.translate)
    probs = [lay for lay in made if lay.metadata["probmap"]["role"] == "probability"]
    assert all(lay.blending == "additive" and tuple(lay.contrast_limits) == (0.0, 1.0) for lay in probs)
    assert 1 <= sum(lay.visible for lay in probs) <= 2
    labels = next(lay for lay in made if lay.metadata["probmap"]["role"] == "labels")
    assert list(labels.features["class"])[1:] == widget.results["sample"].class_names
    table = widget.fractions_table()
    result = widget.results["sample"]
    assert set(table) == set(result.class_names)
    # the table honours the outlier slider: "none" counts the outliers at its threshold
    fractions = result.fractions_at(widget.threshold)
    assert float(table["none"]) == pytest.approx(100 * fractions["none"], abs=0.06)
    assert sum(float(v) for v in table.values()) == pytest.approx(100, abs=0.3)
    outliers = result.outlier_mask(widget.threshold) & result.evaluated
    assert fractions["none"] >= outliers.sum() / result.evaluated.sum() - 1e-9
    widget.threshold_slider.setValue(5)
    low = widget.fractions_table()
    assert float(low["none"]) == pytest.approx(100 * result.fractions_at(0.05)["none"], abs=0.06)
    assert float(low["none"]) >= float(table["none"])
    # layer names start with the class (napari's layer list cuts long names in the middle)
    assert all(lay.name.startswith(lay.metadata["probmap"]["class_name"]) for lay in probs)


def test_auto_crop_shows_the_field_of_view_used(widget_and_image, trained_classifier):
    """"auto" in the Crop field says which field of view it stands for: the model's, then the map's."""
    viewer, widget, layer = widget_and_image
    assert widget.fov_spin.value() == 0
    assert widget.fov_spin.text() == f"auto ({trained_classifier.map_fov_um_:.3g} µm)"
    widget.run()
    result = widget.results["sample"]
    assert widget.fov_spin.value() == 0                                   # still auto for the next image
    assert widget.fov_spin.text() == f"auto ({result.fov_um:.3g} µm)"
    assert f"crops of {result.fov_um:.3g} µm (auto)" in widget.panel.status.text()
    widget.fov_spin.setValue(round(result.fov_um * 0.8, 1))              # a size set: no "(auto)"
    widget.run()
    assert "(auto)" not in widget.panel.status.text()
    assert f"crops of {widget.results['sample'].fov_um:.3g} µm" in widget.panel.status.text()


def test_slider_updates_outliers_and_rerun_replaces(widget_and_image):
    viewer, widget, layer = widget_and_image
    widget.run()
    outliers = widget.outlier_layer("sample")
    widget.threshold_slider.setValue(99)
    high = int(np.asarray(outliers.data).sum())
    widget.threshold_slider.setValue(1)
    low = int(np.asarray(outliers.data).sum())
    assert low > high
    assert low == int(widget.results["sample"].outlier_mask(0.01).sum())
    n_layers = len(viewer.layers)
    assert widget.results["sample"].normalise_window_um is not None      # per neighbourhood by default
    widget.intensity_combo.setCurrentIndex(1)                              # "whole image"
    widget.run()
    assert len(viewer.layers) == n_layers
    assert widget.outlier_layer("sample") is not outliers
    assert widget.results["sample"].normalise_window_um is None


def test_untrained_half_is_flagged_at_the_default_threshold(widget_and_image):
    """Ferrite (trained) | martensite (never trained): the outlier layer marks the martensite.

    Pixels within half a crop of the seam are left out: most crops covering them
    see both halves. Margins measured with models trained with seeds 0, 1 and 2:
    100 % of the untrained half flagged and 0 % of the trained half (76-85 % and
    0 % counting the seam band); pearlite | ferrite composites: 0 % flagged.
    """
    viewer, widget, layer = widget_and_image
    widget.run()
    result = widget.results["sample"]
    flagged = np.asarray(widget.outlier_layer("sample").data).astype(bool)
    assert widget.threshold_slider.value() == 50          # the default threshold, 0.5
    np.testing.assert_array_equal(flagged, result.outlier_mask(0.5))
    w = flagged.shape[1]
    band = int(np.ceil(result.crop_size_px / 2))
    assert w // 2 - band > 20, "the composite is too narrow for the crop size"
    assert flagged[:, w // 2 + band:].mean() >= 0.8       # untrained martensite
    assert flagged[:, : w // 2 - band].mean() <= 0.05     # trained ferrite


def test_cancel_and_bad_model_leave_no_layers(widget_and_image, tmp_path, monkeypatch):
    viewer, widget, layer = widget_and_image
    from napari_microstructure._napari import _workers

    original = _workers.Job._run

    def cancelled_run(self):
        self.cancel_event.set()
        return original(self)

    monkeypatch.setattr(_workers.Job, "_run", cancelled_run)
    widget.run()
    assert widget.layers_of("sample") == [] and len(viewer.layers) == 1
    assert "cancelled" in widget.panel.status.text()
    assert widget.load_model_file(str(tmp_path / "missing.pt")) is False
    assert "error" in widget.panel.status.text()
    assert widget.classifier is not None


def test_save_button_writes_tiff(widget_and_image, tmp_path):
    from napari_microstructure.io.probmap_tiff import read_probability_tiff

    viewer, widget, layer = widget_and_image
    widget.run()
    path = widget.save_maps(str(tmp_path / "maps.tif"))
    probs, names, size, _ = read_probability_tiff(path)
    assert names == widget.results["sample"].class_names and size == pytest.approx(0.1)


def test_cluster_field_sends_the_map_to_that_scheduler(widget_and_image):
    """The "Cluster" field reaches probability_map(client=...): a scheduler that is not there is
    named in the widget's error, and nothing is added to the viewer."""
    pytest.importorskip("distributed")
    viewer, widget, layer = widget_and_image
    assert widget.scheduler_edit.client() is None            # empty: this process
    widget.scheduler_edit.setText("  tcp://127.0.0.1:9  ")
    assert widget.scheduler_edit.client() == "tcp://127.0.0.1:9"
    widget.run()
    status = widget.panel.status.text()
    assert "could not reach a dask scheduler at 'tcp://127.0.0.1:9'" in status
    assert widget.layers_of("sample") == [] and len(viewer.layers) == 1


def _run_a_coarse_map(viewer, widget):
    """Map a 30 um image whose crop covers more than half of it (the coarse-map warning); returns the image."""
    small = make_micrograph("ferrite", (300, 300), 0.1, seed=2)
    viewer.add_image(small, name="small", scale=(0.1, 0.1))
    widget.image_combo.setCurrentText("small")
    with pytest.warns(UserWarning, match="covers"):
        widget.run()
    return small


def test_a_warning_of_the_map_stays_under_the_status_line(widget_and_image):
    """A map whose crop covers more than half the image says so under the status line, and a
    later run that does not warn clears it."""
    viewer, widget, layer = widget_and_image
    _run_a_coarse_map(viewer, widget)
    assert "small" in widget.results
    text = widget.panel.warning.text()
    assert text.startswith("warning: one crop of the map covers")
    # in the widget's terms: the field's name, not the API's parameter, and micrometres as the fields write them
    assert "choose a smaller field of view ('Crop (µm)') between" in text and "fov_um" not in text
    assert " µm" in text and " um" not in text
    assert not widget.panel.warning.isHidden()
    coarse = widget.results["small"]
    widget.fov_spin.setValue(round(0.5 * coarse.fov_um, 1))   # what the warning suggests: a smaller crop
    widget.run()
    assert widget.results["small"].fov_um == pytest.approx(round(0.5 * coarse.fov_um, 1))
    assert widget.results["small"].crop_size_px < coarse.crop_size_px
    assert widget.panel.warning.isHidden()
    widget.fov_spin.setValue(0)                                # auto again
    widget.image_combo.setCurrentText("sample")      # 360 x 360: crops of 42 % of the side, no warning
    widget.run()
    assert widget.panel.warning.text() == "" and widget.panel.warning.isHidden()


def test_a_warning_goes_when_the_next_action_starts_even_if_it_is_refused(widget_and_image):
    """The orange warning belongs to the run it describes: a later Run refused before its job
    starts (an image with no pixel size), or a job that fails, does not leave it under its error."""
    viewer, widget, layer = widget_and_image
    small = _run_a_coarse_map(viewer, widget)
    assert not widget.panel.warning.isHidden()
    viewer.add_image(small, name="no scale image")
    widget.image_combo.setCurrentText("no scale image")
    assert widget.run() is None                                  # refused: no pixel size
    assert "pixel size" in widget.panel.status.text()
    assert widget.panel.warning.isHidden() and widget.panel.warning.text() == ""
    widget.image_combo.setCurrentText("small")
    widget.fov_spin.setValue(40.0)                              # larger than the image: refused in its terms
    assert widget.run() is None or "error" in widget.panel.status.text()
    assert "pass a smaller 'Crop (µm)'" in widget.panel.status.text() and "fov_um" not in widget.panel.status.text()
    widget.fov_spin.setValue(0)
    with pytest.warns(UserWarning, match="covers"):
        widget.run()
    assert not widget.panel.warning.isHidden()
    widget.image_combo.setCurrentText("sample")
    widget.scheduler_edit.setText("tcp://127.0.0.1:9")          # the next job fails with an error
    widget.run()
    assert widget.panel.status.text().startswith("error:")
    assert widget.panel.warning.isHidden()
