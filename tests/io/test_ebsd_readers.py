"""Round trips of every EBSD pattern layout: write, then read back lazily."""

import json

import numpy as np
import pytest

from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.io import ebsd as eio
from napari_microstructure.io.ebsd import h5ebsd, image_directory, numpy_file, tiff


@pytest.fixture(scope="module")
def pattern_map():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (3, 4, 12, 10), dtype=np.uint8)


def _is_lazy(arr):
    return isinstance(arr, np.memmap) or type(arr).__module__.startswith("dask")


def test_npy_map_and_stack_are_memory_mapped(tmp_path, pattern_map):
    numpy_file.file_writer(tmp_path / "m.npy", pattern_map)
    data = eio.load_patterns(tmp_path / "m.npy")
    assert isinstance(data.patterns, np.memmap)
    assert data.map_shape == (3, 4) and data.pattern_shape == (12, 10)
    np.testing.assert_array_equal(data.patterns, pattern_map)
    np.save(tmp_path / "s.npy", pattern_map.reshape(12, 12, 10))
    stack = eio.load_patterns(tmp_path / "s.npy")
    assert not stack.is_map and stack.n_patterns == 12
    assert stack.as_map().shape == (1, 12, 12, 10)


def test_tiff_map_round_trip_keeps_map_shape(tmp_path, pattern_map):
    tiff.file_writer(tmp_path / "m.tif", pattern_map, step_size_um=(0.5, 0.5))
    data = eio.load_patterns(tmp_path / "m.tif")
    assert _is_lazy(data.patterns)
    assert data.patterns.shape == pattern_map.shape
    assert data.step_size_um == (0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(data.patterns), pattern_map)
    eager = tiff.file_reader(tmp_path / "m.tif", lazy=False)
    np.testing.assert_array_equal(eager.patterns, pattern_map)


def test_plain_multipage_tiff_is_a_stack(tmp_path, pattern_map):
    import tifffile

    flat = pattern_map.reshape(-1, 12, 10)
    tifffile.imwrite(tmp_path / "plain.tif", flat, compression="zlib")  # not memory-mappable
    data = eio.load_patterns(tmp_path / "plain.tif")
    assert type(data.patterns).__module__.startswith("dask")
    np.testing.assert_array_equal(np.asarray(data.patterns), flat)


def test_image_directory_round_trip(tmp_path, pattern_map):
    flat = pattern_map.reshape(-1, 12, 10)
    image_directory.file_writer(tmp_path / "pats", flat)
    data = eio.load_patterns(tmp_path / "pats")
    assert type(data.patterns).__module__.startswith("dask")
    np.testing.assert_array_equal(np.asarray(data.patterns), flat)
    m = image_directory.file_reader(tmp_path / "pats", map_shape=(3, 4))
    assert m.patterns.shape == (3, 4, 12, 10)


@pytest.mark.parametrize("layout", ["kikuchipy", "edax", "bruker"])
def test_h5ebsd_round_trip(tmp_path, pattern_map, layout):
    path = tmp_path / f"{layout}.h5"
    h5ebsd.file_writer(path, pattern_map, layout=layout, step_size_um=(0.2, 0.3), chunk_patterns=5)
    data = eio.load_patterns(path)
    try:
        assert type(data.patterns).__module__.startswith("dask")
        assert data.patterns.shape == pattern_map.shape
        assert data.step_size_um == pytest.approx((0.2, 0.3))
        np.testing.assert_array_equal(data.patterns.compute(), pattern_map)
        assert data.format.startswith("h5ebsd")
    finally:
        data.close()


def test_bruker_region_of_interest_order(tmp_path, pattern_map):
    import h5py

    path = tmp_path / "roi.h5"
    h5ebsd.file_writer(path, pattern_map, layout="bruker")
    # store the patterns column by column with their beam positions
    rows, cols = pattern_map.shape[:2]
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    order = np.argsort(cc.ravel() * rows + rr.ravel(), kind="stable")
    with h5py.File(path, "r+") as f:
        f["Scan 1/EBSD/Data/RawPatterns"][...] = pattern_map.reshape(-1, 12, 10)[order]
        f["Scan 1/EBSD/SEM/IY"][...] = rr.ravel()[order] + 5
        f["Scan 1/EBSD/SEM/IX"][...] = cc.ravel()[order] + 7
    data = h5ebsd.file_reader(path, lazy=False)
    np.testing.assert_array_equal(data.patterns, pattern_map)


def test_labelled_sets(tmp_path, pattern_map):
    flat = pattern_map.reshape(-1, 12, 10)
    labels = np.repeat([221, 225], 6)
    eio.write_labelled_patterns(tmp_path / "train.npz", flat, labels)
    p, lab = eio.read_labelled_patterns(tmp_path / "train.npz")
    np.testing.assert_array_equal(p, flat)
    np.testing.assert_array_equal(lab, labels)
    # pattern file + CSV labels with a header
    np.save(tmp_path / "p.npy", flat)
    (tmp_path / "labels.csv").write_text("space_group\n" + "\n".join(map(str, labels)) + "\n")
    p, lab = eio.read_labelled_patterns(tmp_path / "p.npy", tmp_path / "labels.csv")
    np.testing.assert_array_equal(lab, labels)
    # folder of class folders
    for sg in (221, 225):
        image_directory.file_writer(tmp_path / "classes" / str(sg), flat[labels == sg])
    p, lab = eio.read_labelled_patterns(tmp_path / "classes")
    assert sorted(lab.tolist()) == sorted(labels.tolist())
    assert lab.dtype.kind == "i"


def _without_kikuchipy(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kikuchipy" else real(name, *a))


def test_bad_files_give_clear_errors(tmp_path, pattern_map, monkeypatch):
    _without_kikuchipy(monkeypatch)
    # truncated npy
    numpy_file.file_writer(tmp_path / "t.npy", pattern_map)
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MicrostructureError, match="truncated"):
        eio.load_patterns(tmp_path / "t.npy")
    # truncated h5
    h5ebsd.file_writer(tmp_path / "t.h5", pattern_map)
    raw = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(raw[:1000])
    with pytest.raises(MicrostructureError, match="truncated"):
        eio.load_patterns(tmp_path / "t.h5")
    # unrecognised
    (tmp_path / "x.xyz").write_text("hello")
    with pytest.raises(MicrostructureError, match="not a recognised EBSD pattern file"):
        eio.load_patterns(tmp_path / "x.xyz")
    # an HDF5 file that is not h5ebsd
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(MicrostructureError, match="not a supported h5ebsd"):
        eio.load_patterns(tmp_path / "other.h5")
    # wrong dimensionality
    np.save(tmp_path / "2d.npy", np.zeros((10, 10)))
    with pytest.raises(MicrostructureError, match="stack"):
        eio.load_patterns(tmp_path / "2d.npy")


def test_patterns_of_different_sizes_are_refused(tmp_path):
    import imageio.v3 as iio
    import tifffile

    folder = tmp_path / "mixed"
    folder.mkdir()
    iio.imwrite(folder / "a.png", np.zeros((10, 10), np.uint8))
    iio.imwrite(folder / "b.png", np.zeros((12, 10), np.uint8))
    with pytest.raises(MicrostructureError, match="different sizes"):
        eio.load_patterns(folder)
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        tw.write(np.zeros((10, 10), np.uint8))
        tw.write(np.zeros((12, 10), np.uint8))
    with pytest.raises(MicrostructureError, match="different sizes"):
        eio.load_patterns(tmp_path / "mixed.tif")


def test_labels_count_mismatch(tmp_path, pattern_map):
    np.save(tmp_path / "p.npy", pattern_map.reshape(-1, 12, 10))
    (tmp_path / "l.txt").write_text("221\n225\n")
    with pytest.raises(MicrostructureError, match="2 labels for 12 patterns"):
        eio.read_labelled_patterns(tmp_path / "p.npy", tmp_path / "l.txt")
    with pytest.raises(MicrostructureError, match="without labels"):
        eio.read_labelled_patterns(tmp_path / "p.npy")


def test_vendor_formats_without_kikuchipy(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "kikuchipy":
            raise ImportError("no kikuchipy")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    (tmp_path / "scan.up2").write_bytes(b"\0" * 64)
    with pytest.raises(MicrostructureError, match=r"napari-microstructure\[ebsd\]"):
        eio.load_patterns(tmp_path / "scan.up2")


def test_tiff_description_is_json(tmp_path, pattern_map):
    tiff.file_writer(tmp_path / "m.tif", pattern_map)
    desc = tiff.read_description(tmp_path / "m.tif")
    assert desc["map_shape"] == [3, 4]
    json.dumps(desc)


@pytest.mark.parametrize("layout, field", [("kikuchipy", "step_x"), ("edax", "Step X"), ("bruker", "XSTEP")])
@pytest.mark.parametrize("bad", ["text", "nan", "empty", "negative"])
def test_h5ebsd_bad_step_size_is_ignored_with_a_warning(tmp_path, layout, field, bad):
    """A header step that is text, NaN, empty or negative: the patterns are read, the step is left out
    (no NaN or negative step reaches a scale bar or an .ang) and the warning names the file and the fix."""
    import h5py

    from napari_microstructure.io.ebsd import h5ebsd

    pats = np.random.default_rng(0).integers(0, 255, (2, 3, 12, 16), dtype=np.uint8)
    path = h5ebsd.file_writer(tmp_path / "m.h5", pats, layout=layout, step_size_um=(0.5, 0.5))
    with h5py.File(path, "r+") as f:
        del f["Scan 1/EBSD/Header"][field]
        f["Scan 1/EBSD/Header"][field] = {"text": "abc", "nan": np.nan, "empty": h5py.Empty("f"), "negative": -0.5}[bad]
    with pytest.warns(UserWarning, match=r"m\.h5: the header's step size .* is not a positive step .*--step-size"):
        data = h5ebsd.file_reader(path, lazy=False)
    assert data.step_size_um is None
    np.testing.assert_array_equal(np.asarray(data.patterns), pats)


@pytest.mark.parametrize("bad", ["abc", np.nan, -1.0, 2.5])
def test_h5ebsd_bad_row_count_is_named(tmp_path, bad):
    import h5py

    from napari_microstructure.io.ebsd import h5ebsd

    pats = np.random.default_rng(0).integers(0, 255, (2, 3, 12, 16), dtype=np.uint8)
    path = h5ebsd.file_writer(tmp_path / "m.h5", pats, layout="edax")
    with h5py.File(path, "r+") as f:
        del f["Scan 1/EBSD/Header/nRows"]
        f["Scan 1/EBSD/Header/nRows"] = bad
    with pytest.raises(MicrostructureError, match=r"m\.h5.*the header's 'nRows' .* is not a number of map rows"
                                                  r".*export the map again"):
        h5ebsd.file_reader(path, lazy=False)


@pytest.mark.parametrize("layout, field", [("kikuchipy", "static_background"), ("bruker", "StaticBackground")])
def test_h5ebsd_static_background_round_trip(tmp_path, pattern_map, layout, field):
    """The detector's static background the header stores comes back as a float image of the patterns' size."""
    import h5py

    rng = np.random.default_rng(1)
    bg = rng.integers(20, 120, pattern_map.shape[2:], dtype=np.uint8)
    raw = (bg * rng.uniform(0.8, 1.2, pattern_map.shape)).astype(np.uint8)  # patterns that carry it
    path = tmp_path / f"{layout}-bg.h5"
    h5ebsd.file_writer(path, raw, layout=layout, static_background=bg)
    with h5py.File(path, "r") as f:
        assert f"Scan 1/EBSD/Header/{field}" in f
    data = eio.load_patterns(path)
    try:
        assert data.static_background.dtype == np.float32
        np.testing.assert_array_equal(data.static_background, bg)
    finally:
        data.close()
    # none stored: None
    h5ebsd.file_writer(tmp_path / "plain.h5", pattern_map, layout=layout)
    assert eio.load_patterns(tmp_path / "plain.h5", lazy=False).static_background is None
    # patterns corrected with it already (their mean no longer follows it): not subtracted twice, silently
    corrected = (raw.astype(float) - bg + 128).clip(0, 255).astype(np.uint8)
    h5ebsd.file_writer(tmp_path / "corrected.h5", corrected, layout=layout, static_background=bg)
    assert eio.load_patterns(tmp_path / "corrected.h5", lazy=False).static_background is None


def test_kikuchipy_placeholder_means_no_static_background():
    """kikuchipy 0.13.1 (EBSD.save) writes -1 in static_background when the signal has none: no warning."""
    import warnings
    from pathlib import Path

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = eio.load_patterns(Path(__file__).parent / "data" / "kikuchipy_0.13.1_map_2x3_12x16.h5", lazy=False)
    assert data.static_background is None


@pytest.mark.parametrize("bad, found", [(np.ones((5, 5), np.uint8), "uint8 5 x 5"),
                                        (np.full((12, 10), np.nan, np.float32), "NaN")])
def test_unusable_static_background_is_ignored_by_name(tmp_path, pattern_map, bad, found):
    import h5py

    path = tmp_path / "k.h5"
    h5ebsd.file_writer(path, pattern_map, layout="kikuchipy")
    with h5py.File(path, "r+") as f:
        f["Scan 1/EBSD/Header/static_background"] = bad
    with pytest.warns(UserWarning, match=f"k.h5: the static background in EBSD/Header/static_background.*{found}"):
        data = eio.load_patterns(path, lazy=False)
    assert data.static_background is None
    np.testing.assert_array_equal(data.patterns, pattern_map)  # the patterns are read all the same


def test_writer_refuses_a_static_background_it_cannot_store(tmp_path, pattern_map):
    with pytest.raises(MicrostructureError, match="edax layout has no static background field"):
        h5ebsd.file_writer(tmp_path / "e.h5", pattern_map, layout="edax", static_background=np.ones((12, 10)))
    with pytest.raises(MicrostructureError, match="static_background is 10 x 12 but the patterns are 12 x 10"):
        h5ebsd.file_writer(tmp_path / "k.h5", pattern_map, static_background=np.ones((10, 12)))


def _oxford_like(path):
    import h5py

    with h5py.File(path, "w") as f:
        f["Manufacturer"] = np.bytes_("Oxford Instruments")
        f["1/EBSD/Data/Processed Patterns"] = np.zeros((4, 12, 10), np.uint8)
    return path


def test_oxford_h5oina_without_kikuchipy_names_the_install(tmp_path, monkeypatch):
    _without_kikuchipy(monkeypatch)
    with pytest.raises(MicrostructureError, match=r"manufacturer 'oxford instruments'.*h5oina.*"
                                                  r"pip install 'napari-microstructure\[ebsd\]'"):
        eio.load_patterns(_oxford_like(tmp_path / "scan.h5oina"))


def test_hdf5_layouts_it_does_not_read_go_to_kikuchipy(tmp_path, monkeypatch):
    """With kikuchipy installed, an Oxford .h5oina (or any HDF5 layout kikuchipy reads) opens through it,
    static background and all (here a stand-in for kikuchipy's load)."""
    import importlib.util
    import sys
    import types

    path = _oxford_like(tmp_path / "scan.h5oina")
    rng = np.random.default_rng(0)
    bg = rng.uniform(20, 120, (12, 10)).astype(np.float32)
    pats = (bg * rng.uniform(0.8, 1.2, (2, 2, 12, 10))).astype(np.uint8)
    axes = [types.SimpleNamespace(scale=0.5), types.SimpleNamespace(scale=0.25)]
    signal = types.SimpleNamespace(data=pats, static_background=bg, detector=None,
                                   axes_manager=types.SimpleNamespace(navigation_axes=axes))
    loaded = []
    fake = types.ModuleType("kikuchipy")
    fake.load = lambda name, lazy=True: loaded.append(str(name)) or signal
    monkeypatch.setitem(sys.modules, "kikuchipy", fake)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "kikuchipy" else real(name, *a))
    data = eio.load_patterns(path)
    assert loaded == [str(path)] and data.format == "kikuchipy-h5oina"
    assert data.patterns.shape == (2, 2, 12, 10) and data.step_size_um == (0.25, 0.5)
    np.testing.assert_array_equal(data.static_background, bg)
