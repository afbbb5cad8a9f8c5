"""Probability-map TIFF files: pages, pixel size and class names survive a round trip."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.io.probmap_tiff import read_probability_tiff, write_probability_stack
from napari_microstructure.io.tiff import read_micrograph


def _stack(rng, shape=(3, 40, 50)):
    raw = rng.random(shape).astype(np.float32)
    stack = raw / raw.sum(0)
    stack[:, :5, :7] = np.nan
    return stack


def test_round_trip_keeps_pages_scale_and_names(tmp_path, rng):
    stack = _stack(rng)
    path = write_probability_stack(tmp_path / "map.tif", stack, ["ferrite", "pearlite", "none"], 0.25,
                                   threshold=0.4, info={"fov_um": 12.5})
    probs, names, size, info = read_probability_tiff(path)
    assert names == ["ferrite", "pearlite", "none"]
    assert size == pytest.approx(0.25, rel=1e-6)
    np.testing.assert_array_equal(probs, stack)
    assert info["fov_um"] == 12.5 and info["outlier_threshold"] == 0.4
    expected = (stack[-1] >= 0.4).astype(np.float32)
    expected[np.isnan(stack[-1])] = np.nan
    np.testing.assert_array_equal(info["outlier"], expected)
    # the generic micrograph reader and ImageJ see the same scale and the page names
    pages, size2, _ = read_micrograph(path)
    assert pages.shape == (4, 40, 50) and size2 == pytest.approx(0.25, rel=1e-6)
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["Labels"] == ["ferrite", "pearlite", "none", "outlier"]


def test_writer_result_and_bad_arguments(tmp_path, rng, trained_classifier):
    from napari_microstructure.core.micrograph.probmap import probability_map
    from napari_microstructure.core.micrograph.synthetic import make_micrograph
    from napari_microstructure.io.probmap_tiff import write_probability_tiff

    image = make_micrograph("ferrite", (300, 300), 0.1, seed=1)
    result = probability_map(trained_classifier, image, 0.1, stride=40)
    path = write_probability_tiff(tmp_path / "r.tiff", result)
    probs, names, size, info = read_probability_tiff(path)
    assert names == result.class_names and size == pytest.approx(0.1)
    np.testing.assert_array_equal(probs, result.probabilities)
    assert info["fractions"] == pytest.approx(result.fractions)
    assert result.normalise_window_um is not None      # 30 um image, neighbourhoods of about 23 um
    assert info["normalise_window_um"] == pytest.approx(result.normalise_window_um)
    with pytest.raises(MicrostructureError, match=r"\.tif"):
        write_probability_stack(tmp_path / "map.png", _stack(rng), ["a", "b", "none"], 0.1)
    with pytest.raises(MicrostructureError, match="one name per page"):
        write_probability_stack(tmp_path / "m.tif", _stack(rng), ["a", "none"], 0.1)
    with pytest.raises(MicrostructureError, match="pixel"):
        write_probability_stack(tmp_path / "m.tif", _stack(rng), ["a", "b", "none"], 0)
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.float32))
    with pytest.raises(MicrostructureError, match="not a probability-map"):
        read_probability_tiff(tmp_path / "plain.tif")


def test_npe2_writer_stacks_tagged_layers_in_class_order(tmp_path, rng):
    from napari_microstructure._napari._writer import write_probability_layers

    stack = np.nan_to_num(_stack(rng), nan=0.0)
    evaluated = np.ones(stack.shape[1:], bool)
    evaluated[:5, :7] = False
    names = ["ferrite", "pearlite", "none"]
    layers = [
        (stack[k], {"metadata": {"probmap": {"image": "img", "class_name": n, "index": k,
                                             "pixel_size_um": 0.5, "threshold": 0.5, "evaluated": evaluated}}},
         "image")
        for k, n in enumerate(names)
    ][::-1]
    out = write_probability_layers(str(tmp_path / "w.tif"), layers)
    probs, got, size, _ = read_probability_tiff(out[0])
    assert got == names and size == pytest.approx(0.5)
    assert np.isnan(probs[:, :5, :7]).all()
    np.testing.assert_array_equal(probs[:, 5:, 7:], stack[:, 5:, 7:])
    with pytest.raises(MicrostructureError, match="not selected"):
        write_probability_layers(str(tmp_path / "x.tif"), layers[1:])
    with pytest.raises(MicrostructureError, match="probability map"):
        write_probability_layers(str(tmp_path / "x.tif"), [(stack[0], {"metadata": {}}, "image")])
