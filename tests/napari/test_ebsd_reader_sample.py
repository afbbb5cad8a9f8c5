"""npe2 EBSD reader and sample data, without a viewer."""

import numpy as np
import pytest

from napari_microstructure._napari._ebsd_reader import get_reader, navigator_image
from napari_microstructure._napari._ebsd_sample import make_ebsd_sample
from napari_microstructure.io.ebsd import h5ebsd, tiff


def test_reader_returns_none_for_other_files(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "micrograph.tif", np.zeros((64, 64), np.uint8))
    assert get_reader(str(tmp_path / "micrograph.tif")) is None
    (tmp_path / "fake.h5").write_text("not hdf5")
    assert get_reader(str(tmp_path / "fake.h5")) is None
    np.save(tmp_path / "image.npy", np.zeros((30, 30)))
    assert get_reader(str(tmp_path / "image.npy")) is None
    assert get_reader(str(tmp_path / "x.png")) is None
    (tmp_path / "log.dat").write_text("1 2 3")  # a .dat without NORDIF's Setting.txt beside it
    assert get_reader(str(tmp_path / "log.dat")) is None


def test_reader_takes_oxford_and_nordif_files(tmp_path):
    """.h5oina (HDF5) and NORDIF's Pattern.dat (with its Setting.txt) are offered to the EBSD reader;
    both open through kikuchipy (tests/io: routing, and the install message without it)."""
    import h5py

    with h5py.File(tmp_path / "scan.h5oina", "w") as f:
        f["Manufacturer"] = np.bytes_("Oxford Instruments")
    assert get_reader(str(tmp_path / "scan.h5oina")) is not None
    (tmp_path / "fake.h5oina").write_text("not hdf5")
    assert get_reader(str(tmp_path / "fake.h5oina")) is None
    (tmp_path / "Pattern.dat").write_bytes(b"\0" * 64)
    (tmp_path / "Setting.txt").write_text("[NORDIF]")
    assert get_reader(str(tmp_path / "Pattern.dat")) is not None


def test_reader_opens_maps(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.integers(0, 200, (4, 5, 16, 16), dtype=np.uint8)
    h5ebsd.file_writer(tmp_path / "m.h5", m, layout="edax")
    tiff.file_writer(tmp_path / "m.tif", m)
    np.save(tmp_path / "m.npy", m)
    for name in ("m.h5", "m.tif", "m.npy"):
        reader = get_reader(str(tmp_path / name))
        assert reader is not None, name
        layers = reader(str(tmp_path / name))
        (pats, pmeta, ptype), (nav, nmeta, ntype) = layers
        assert ptype == "image" and pats.shape == (4, 5, 16, 16)
        assert nav.shape == (4, 5) and ntype == "image"
        np.testing.assert_allclose(nav, m.mean(axis=(2, 3)), rtol=1e-5)
        assert pmeta["metadata"]["role"] == "patterns" and nmeta["metadata"]["role"] == "navigator"


def test_navigator_of_dask_map():
    import dask.array as da

    m = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    np.testing.assert_allclose(navigator_image(da.from_array(m, chunks=(1, 3, 8, 8))), m.mean((2, 3)))


def test_sample_data():
    layers = make_ebsd_sample()
    (pats, pmeta, _), (nav, nmeta, _), (truth, _, ttype) = layers
    assert pats.ndim == 4 and nav.shape == pats.shape[:2] == truth.shape
    assert ttype == "labels" and set(np.unique(truth)) == {221, 225}
    tp, tl = nmeta["metadata"]["train_patterns"], nmeta["metadata"]["train_labels"]
    assert tp.shape[1:] == pats.shape[2:] and len(tp) == len(tl)
    assert set(np.unique(tl)) == {221, 225}


def test_reader_puts_the_projection_centre_in_the_layer_metadata(tmp_path):
    m = np.random.default_rng(0).integers(0, 200, (2, 3, 16, 20), dtype=np.uint8)
    h5ebsd.file_writer(tmp_path / "k.h5", m, projection_centre=(0.42, 0.21, 0.55))
    h5ebsd.file_writer(tmp_path / "e.h5", m, layout="edax", projection_centre=(0.42, 0.21, 0.55))
    np.save(tmp_path / "m.npy", m)
    for name in ("k.h5", "e.h5"):
        (_, pmeta, _), (_, nmeta, _) = get_reader(str(tmp_path / name))(str(tmp_path / name))
        assert pmeta["metadata"]["projection_centre"] == pytest.approx([0.42, 0.21, 0.55], abs=1e-6)
        assert nmeta["metadata"]["projection_centre"] == pmeta["metadata"]["projection_centre"]
    (_, pmeta, _), _ = get_reader(str(tmp_path / "m.npy"))(str(tmp_path / "m.npy"))
    assert pmeta["metadata"]["projection_centre"] is None
    assert pmeta["metadata"]["static_background"] is None


def test_reader_puts_the_stored_static_background_in_the_pattern_layer_metadata(tmp_path):
    bg = np.random.default_rng(1).integers(20, 120, (16, 20), dtype=np.uint8)
    m = (bg * np.random.default_rng(0).uniform(0.8, 1.2, (2, 3, 16, 20))).astype(np.uint8)  # raw: they carry it
    h5ebsd.file_writer(tmp_path / "k.h5", m, static_background=bg)
    (_, pmeta, _), (_, nmeta, _) = get_reader(str(tmp_path / "k.h5"))(str(tmp_path / "k.h5"))
    np.testing.assert_array_equal(pmeta["metadata"]["static_background"], bg)
    assert "static_background" not in nmeta["metadata"]  # the navigator is not a detector image


def test_sample_layer_has_the_simulated_projection_centre():
    from napari_microstructure.core.ebsd.simulate import SAMPLE_SETTINGS

    (_, pmeta, _), _, _ = make_ebsd_sample()
    assert pmeta["metadata"]["projection_centre"] == [0.5, 0.3, 0.6] == list(SAMPLE_SETTINGS["pc"])


def test_a_pattern_keeps_square_pixels_on_a_map_in_micrometres():
    """The sample's 30 x 40 map of 40 x 40 patterns: the map layers are in micrometres from the 0.5 um step,
    the pattern's pixels are square (it was drawn 4:3) and the pattern lies within the map's extent."""
    (pats, pmeta, _), (nav, nmeta, _), (_, tmeta, _) = make_ebsd_sample()
    rows, cols, h, w = pats.shape
    assert (rows, cols) != (h, w) and rows / cols != h / w        # a case where per-axis fitting distorts
    assert nmeta["scale"] == (0.5, 0.5) == tmeta["scale"] and nmeta["units"] == ("um", "um")
    sy, sx, py, px = pmeta["scale"]
    assert (sy, sx) == (0.5, 0.5)
    assert py == pytest.approx(px)
    assert h * py <= rows * sy + 1e-9 and w * px <= cols * sx + 1e-9
    assert max(h * py, w * px) == pytest.approx(min(rows * sy, cols * sx))  # as large as fits


def test_a_pattern_of_a_map_without_step_size_keeps_square_pixels(tmp_path):
    m = np.random.default_rng(0).integers(0, 200, (3, 8, 16, 20), dtype=np.uint8)
    np.save(tmp_path / "m.npy", m)
    (_, pmeta, _), (_, nmeta, _) = get_reader(str(tmp_path / "m.npy"))(str(tmp_path / "m.npy"))
    _, _, py, px = pmeta["scale"]
    assert py == pytest.approx(px) and 16 * py <= 3 and 20 * px <= 8
