"""The plugin's own TIFFs open in napari as what they hold, in micrometres."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_microstructure._napari._reader import get_reader, tiff_kind
from napari_microstructure.io.probmap_tiff import write_probability_stack
from napari_microstructure.io.tiff import read_result_map_kind, write_result_map


@pytest.fixture
def probmap_file(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.random((3, 24, 32)).astype(np.float32)
    probs /= probs.sum(0)
    probs[:, :2, :] = np.nan  # not evaluated
    path = write_probability_stack(tmp_path / "maps.tif", probs, ["ferrite", "pearlite", "none"], 0.1, 0.4,
                                   {"image": "mixed micrograph", "fractions": {"ferrite": 0.2, "pearlite": 0.7}})
    return path, probs


def test_probability_map_opens_as_named_class_layers(make_napari_viewer, probmap_file):
    path, probs = probmap_file
    assert tiff_kind(path) == "probability map"
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-microstructure")
    names = [layer.name for layer in layers]
    assert names == ["ferrite probability · mixed micrograph", "pearlite probability · mixed micrograph",
                     "none probability · mixed micrograph", "outliers · mixed micrograph"]
    for layer in layers:
        np.testing.assert_allclose(layer.scale, (0.1, 0.1))
        assert str(layer.units[-1]) == "micrometer"
    np.testing.assert_allclose(layers[1].data, np.nan_to_num(probs[1]))
    assert layers[1].visible and layers[0].visible and not layers[2].visible  # the two largest classes
    expected = (probs[-1] >= 0.4) & ~np.isnan(probs[-1])
    np.testing.assert_array_equal(layers[-1].data.astype(bool), expected)
    assert viewer.layers.extent.units is not None  # no "Inconsistent units" warning


def test_saved_layers_can_be_written_again(probmap_file, tmp_path):
    """The reopened layers carry the writer's tags: File > Save Selected Layers works on them."""
    from napari_microstructure._napari._reader import read_tiffs
    from napari_microstructure._napari._writer import write_probability_layers
    from napari_microstructure.io.probmap_tiff import read_probability_tiff

    path, probs = probmap_file
    layers = [ld for ld in read_tiffs(str(path)) if ld[1]["metadata"]["probmap"].get("role") == "probability"]
    out = write_probability_layers(str(tmp_path / "again.tif"), layers)[0]
    again, names, size, _ = read_probability_tiff(out)
    assert names == ["ferrite", "pearlite", "none"] and size == pytest.approx(0.1)
    np.testing.assert_allclose(again, probs, equal_nan=True)


def test_ebsd_result_maps_open_as_labels_in_micrometres(make_napari_viewer, tmp_path):
    labels = np.zeros((5, 6), np.int64)
    labels[1:3] = 221
    labels[3:] = 225
    path = write_result_map(tmp_path / "space_groups.tif", labels, "ebsd-space-groups", 0.5,
                            {"classes": ["221", "225"], "legend": [[221, "221"], [225, "225"]]})
    write_result_map(tmp_path / "no_solution.tif", (labels == 0).astype(np.uint8), "ebsd-no-solution", 0.5)
    assert read_result_map_kind(path)["kind"] == "ebsd-space-groups"
    assert tifffile.imread(path).dtype == np.uint16
    viewer = make_napari_viewer()
    [sg] = viewer.open(str(path), plugin="napari-microstructure")
    [ns] = viewer.open(str(tmp_path / "no_solution.tif"), plugin="napari-microstructure")
    assert sg._type_string == "labels" and ns._type_string == "labels"
    np.testing.assert_array_equal(sg.data, labels)
    np.testing.assert_allclose(sg.scale, (0.5, 0.5))
    assert str(sg.units[-1]) == "micrometer"
    assert dict(zip(sg.features["index"], sg.features["class"])) == {0: "no solution", 221: "221", 225: "225"}
    from napari_microstructure.core.colours import NO_SOLUTION_COLOUR, SPACE_GROUP_COLOURS, hex_to_rgb

    np.testing.assert_allclose(sg.colormap.map(np.array([221]))[0][:3], hex_to_rgb(SPACE_GROUP_COLOURS[221]),
                               atol=1e-2)
    np.testing.assert_allclose(ns.colormap.map(np.array([1]))[0][:3], hex_to_rgb(NO_SOLUTION_COLOUR), atol=1e-2)


def test_cli_space_groups_carry_the_step_size(tmp_path):
    """``ebsd-map`` on an h5ebsd file with 0.5 um steps writes maps that open in micrometres."""
    from napari_microstructure import cli
    from napari_microstructure.core.ebsd.simulate import simulate_training_set
    from napari_microstructure.io.ebsd import h5ebsd

    patterns, groups, _ = simulate_training_set(["Ni", "NiAl"], 6, shape=(32, 32), seed=0)
    np.save(tmp_path / "train.npy", patterns)
    (tmp_path / "labels.csv").write_text("space_group\n" + "\n".join(map(str, groups)) + "\n")
    h5ebsd.file_writer(tmp_path / "map.h5", patterns.reshape(3, 4, 32, 32), step_size_um=(0.5, 0.5))
    assert cli.main(["ebsd-train", str(tmp_path / "train.npy"), str(tmp_path / "labels.csv"), "-o",
                     str(tmp_path / "m.pt"), "--backbone", "compact", "--epochs", "1", "--input-size", "32",
                     "--device", "cpu"]) == 0
    assert cli.main(["ebsd-map", str(tmp_path / "m.pt"), str(tmp_path / "map.h5"), "-o", str(tmp_path / "out"),
                     "--device", "cpu"]) == 0
    reader = get_reader(str(tmp_path / "out" / "space_groups.tif"))
    [(data, kwargs, kind)] = reader(str(tmp_path / "out" / "space_groups.tif"))
    assert kind == "labels" and data.shape == (3, 4)
    assert kwargs["scale"] == pytest.approx((0.5, 0.5)) and kwargs["units"] == ("um", "um")
    assert set(np.unique(data)) <= {0, 221, 225}


def test_reader_claims_only_what_it_opens(tmp_path):
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((5, 16, 16), np.uint8))
    assert get_reader(str(stack)) is None
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-microstructure")
    readers = {r.command: r for r in manifest.contributions.readers}
    # one reader claims TIFFs (and hands EBSD pattern TIFFs on), so napari never asks which one
    assert not {"*.tif", "*.tiff"} & set(readers["napari-microstructure.read_ebsd"].filename_patterns)


def test_result_map_without_step_size_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from napari_microstructure.core.errors import MicrostructureError

    path = tmp_path / "confidence.tif"
    write_result_map(path, np.full((4, 5), 0.25), "ebsd-confidence")
    before = path.read_bytes()
    assert read_result_map_kind(path)["kind"] == "ebsd-confidence"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full_disk)
    with pytest.raises(MicrostructureError, match="space"):
        write_result_map(path, np.full((4, 5), 0.75), "ebsd-confidence")
    assert path.read_bytes() == before                       # the old map is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confidence.tif"]   # no temporary file left
