"""npe2 hooks: the TIFF reader, the sample data and the manifest itself."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_microstructure._napari._reader import read_tiffs, get_reader, read_micrographs
from napari_microstructure._napari._sample_data import (
    SAMPLE_CLASSES,
    make_sample_micrographs,
    make_sample_mixed,
    mixed_micrograph,
)
from napari_microstructure.io.tiff import write_micrograph


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 255, (40, 56), dtype=np.uint8)


def test_reader_refuses_other_files(tmp_path, image):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG")
    assert get_reader(str(png)) is None
    assert get_reader([str(tmp_path / "a.tif"), str(png)]) is None
    assert get_reader([]) is None
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([image] * 3))
    assert get_reader(str(stack)) is None  # stacks and pattern maps belong to other readers
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"not a tiff at all")
    assert get_reader(str(corrupt)) is None


def test_reader_sets_scale_from_tags(tmp_path, image):
    path = write_micrograph(tmp_path / "ferrite.tif", image, 0.125)
    reader = get_reader(str(path))
    assert callable(reader)
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image" and np.array_equal(data, image)
    assert kwargs["name"] == "ferrite"
    assert kwargs["scale"] == pytest.approx((0.125, 0.125))
    assert kwargs["units"] == ("um", "um")
    assert kwargs["metadata"]["pixel_size_um"] == pytest.approx(0.125)


def test_reader_without_tags_and_several_files(tmp_path, image):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, image)
    cm = tmp_path / "cm.tif"
    tifffile.imwrite(cm, image, resolution=(1e4 / 0.4, 1e4 / 0.4), resolutionunit="CENTIMETER")
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.stack([image] * 3, axis=-1), photometric="rgb")
    paths = [str(plain), str(cm), str(rgb)]
    # one TIFF reader looks inside each file; micrographs are read by read_micrographs
    assert get_reader(paths) is read_tiffs
    layers = read_tiffs(paths)
    assert [kw["name"] for _, kw, _ in read_micrographs(paths)] == ["plain", "cm", "rgb"]
    assert [kw["name"] for _, kw, _ in layers] == ["plain", "cm", "rgb"]
    assert "scale" not in layers[0][1]  # unknown pixel size: napari's default, not a guess
    assert layers[1][1]["scale"] == pytest.approx((0.4, 0.4))
    assert layers[2][1]["rgb"] is True and layers[2][0].shape == (40, 56, 3)


def test_reader_through_napari(make_napari_viewer, tmp_path, image):
    path = write_micrograph(tmp_path / "pearlite.tif", image, 0.05)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-microstructure")
    layer = viewer.layers["pearlite"]
    assert tuple(layer.scale) == pytest.approx((0.05, 0.05))
    assert np.array_equal(layer.data, image)


def test_sample_micrographs_hook():
    layers = make_sample_micrographs()
    assert len(layers) == 4 * len(SAMPLE_CLASSES)  # four images of each class
    seen = set()
    for data, kwargs, kind in layers:
        assert kind == "image" and data.ndim == 2 and data.dtype == np.uint8
        p = kwargs["scale"][0]
        assert kwargs["scale"] == (p, p) and p > 0
        assert kwargs["metadata"]["class"] in SAMPLE_CLASSES
        assert kwargs["metadata"]["pixel_size_um"] == p
        assert data.std() > 5  # a textured micrograph, not a blank
        seen.add(kwargs["metadata"]["class"])
    assert seen == set(SAMPLE_CLASSES)
    # rendered from fixed seeds: the same images every time
    again = make_sample_micrographs()
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(layers, again))


def test_sample_mixed_hook():
    [(data, kwargs, kind)] = make_sample_mixed()
    assert kind == "image" and data.shape == (768, 1024)
    assert kwargs["scale"] == (0.1, 0.1) and kwargs["metadata"]["pixel_size_um"] == 0.1
    image, truth = mixed_micrograph()
    assert np.array_equal(image, data)
    assert set(np.unique(truth)) == {1, 2, 3}


def test_sample_data_through_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-microstructure", "micrographs")
    assert len(viewer.layers) == 4 * len(SAMPLE_CLASSES)
    for layer in viewer.layers:
        assert layer.metadata["class"] in SAMPLE_CLASSES
        assert layer.scale[-1] == pytest.approx(layer.metadata["pixel_size_um"])


def test_manifest_validates_and_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-microstructure")
    assert manifest.name == "napari-microstructure"
    manifest.validate_imports()  # every python_name resolves
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands["napari-microstructure.training_widget"] == (
        "napari_microstructure._napari._training_widget:TrainingWidget"
    )
    readers = {r.command: r for r in manifest.contributions.readers}
    assert set(readers["napari-microstructure.read_micrograph"].filename_patterns) >= {"*.tif", "*.tiff"}
    assert "napari-microstructure.read_ebsd" in readers
    assert {s.key for s in manifest.contributions.sample_data} >= {"micrographs", "mixed", "ebsd_dual_phase"}
    assert {w.display_name for w in manifest.contributions.widgets} == {
        "Few-shot training", "Probability maps", "Explain", "EBSD space-group map"}
