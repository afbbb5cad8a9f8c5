"""The detector's projection centre (Bruker convention) read from pattern files."""

import warnings
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from napari_microstructure.io import ebsd as eio
from napari_microstructure.io.ebsd import h5ebsd, numpy_file, tiff, vendor
from napari_microstructure.io.ebsd._common import projection_centre_from_tsl, projection_centre_to_tsl

DATA = Path(__file__).parent / "data"


def _map(shape=(2, 3, 12, 16), seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def _read(path):
    data = eio.load_patterns(path)
    data.close()
    return data


@pytest.mark.parametrize("layout", ["kikuchipy", "edax", "bruker"])
@pytest.mark.parametrize("pattern_shape", [(12, 16), (16, 12)])
def test_h5ebsd_round_trip_of_the_projection_centre(tmp_path, layout, pattern_shape):
    """Each layout stores the PC in its own place and convention; it comes back in Bruker's."""
    path = tmp_path / f"{layout}.h5"
    h5ebsd.file_writer(path, _map((2, 3, *pattern_shape)), layout=layout, projection_centre=(0.52, 0.29, 0.63))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plausible PC reads without a warning
        data = _read(path)
    assert data.projection_centre == pytest.approx((0.52, 0.29, 0.63), abs=1e-6)
    eager = h5ebsd.file_reader(path, lazy=False)  # read before the file is closed
    assert eager.projection_centre == data.projection_centre
    with h5py.File(path, "r") as f:  # stored where the vendor keeps it
        header, stored = f["Scan 1/EBSD/Header"], f["Scan 1/EBSD/Data"]
        if layout == "kikuchipy":
            assert float(header["pcy"][()]) == pytest.approx(0.29)
        elif layout == "edax":  # TSL: y* from the bottom edge, z* in units of the shorter side
            cal = header["Pattern Center Calibration"]
            h, w = pattern_shape
            assert float(cal["y-star"][()]) == pytest.approx(0.71, abs=1e-6)
            assert float(cal["z-star"][()]) == pytest.approx(0.63 * h / min(h, w), abs=1e-6)
        else:
            assert stored["DD"].shape == (6,)


def test_files_without_a_projection_centre(tmp_path):
    m = _map()
    h5ebsd.file_writer(tmp_path / "k.h5", m)
    numpy_file.file_writer(tmp_path / "m.npy", m)
    tiff.file_writer(tmp_path / "m.tif", m)
    for name in ("k.h5", "m.npy", "m.tif"):
        assert _read(tmp_path / name).projection_centre is None, name


def test_tsl_conversion_matches_kikuchipy():
    """Numbers from kikuchipy 0.13.1 (/work/venv-bench, 2026-11-29):
    ``EBSDDetector(shape=(h, w), pc=(0.52, 0.71, 0.63), convention="tsl").pc_bruker()`` gave
    [0.52, 0.29, 0.63] for shape (60, 80) and [0.52, 0.29, 0.4725] for shape (80, 60);
    ``EBSDDetector(shape=(80, 60), pc=(0.52, 0.29, 0.63)).pc_tsl()`` gave [0.52, 0.71, 0.84]."""
    assert projection_centre_from_tsl((0.52, 0.71, 0.63), (60, 80)) == pytest.approx((0.52, 0.29, 0.63))
    assert projection_centre_from_tsl((0.52, 0.71, 0.63), (80, 60)) == pytest.approx((0.52, 0.29, 0.4725))
    assert projection_centre_to_tsl((0.52, 0.29, 0.63), (80, 60)) == pytest.approx((0.52, 0.71, 0.84))
    assert projection_centre_to_tsl(projection_centre_from_tsl((0.4, 0.6, 0.7), (80, 60)), (80, 60)) == \
        pytest.approx((0.4, 0.6, 0.7))


def test_file_written_by_kikuchipy():
    """A 2 x 3 map of 12 x 16 patterns written by kikuchipy 0.13.1 (``EBSD.save``) with one PC
    per pattern (PCx 0.40-0.44 along the columns, PCy 0.20-0.22 along the rows, PCz 0.55);
    kikuchipy's own ``EBSDDetector.pc_average`` of the file is [0.42, 0.21, 0.55]."""
    data = _read(DATA / "kikuchipy_0.13.1_map_2x3_12x16.h5")
    assert data.patterns.shape == (2, 3, 12, 16) and data.step_size_um == pytest.approx((1.5, 1.5))
    assert data.projection_centre == pytest.approx((0.42, 0.21, 0.55), abs=1e-9)


def test_per_pattern_bruker_values_are_averaged(tmp_path):
    path = tmp_path / "b.h5"
    h5ebsd.file_writer(path, _map(), layout="bruker", projection_centre=(0.5, 0.3, 0.6))
    with h5py.File(path, "r+") as f:
        d = f["Scan 1/EBSD/Data"]
        d["PCX"][...] = np.linspace(0.45, 0.55, 6)
        d["DD"][...] = np.linspace(0.58, 0.64, 6)
    assert _read(path).projection_centre == pytest.approx((0.5, 0.3, 0.61), abs=1e-6)


@pytest.mark.parametrize("layout, key, value", [
    ("kikuchipy", "pcz", 0.0),        # PCz <= 0
    ("kikuchipy", "pcx", np.nan),     # not finite
    ("kikuchipy", "pcy", 7.0),        # far off the detector
    ("edax", "z-star", -0.5),
    ("bruker", "PCX", np.inf),
])
def test_implausible_projection_centre_is_ignored_with_a_warning(tmp_path, layout, key, value):
    path = tmp_path / f"bad-{layout}.h5"
    m = _map()
    h5ebsd.file_writer(path, m, layout=layout, projection_centre=(0.5, 0.3, 0.6))
    with h5py.File(path, "r+") as f:
        group = {"kikuchipy": "Scan 1/EBSD/Header", "edax": "Scan 1/EBSD/Header/Pattern Center Calibration",
                 "bruker": "Scan 1/EBSD/Data"}[layout]
        f[group][key][...] = value
    with pytest.warns(UserWarning, match=r"bad-.*\.h5.*projection centre.*implausible.*ignored"):
        data = eio.load_patterns(path)
    try:
        assert data.projection_centre is None
        np.testing.assert_array_equal(np.asarray(data.patterns), m)  # the patterns are still read
    finally:
        data.close()


def test_edax_manufacturer_with_leading_space(tmp_path):
    """EDAX OIM writes the root dataset as " Manufacturer" (as kikuchipy's EDAX example file)."""
    path = tmp_path / "oim.h5"
    h5ebsd.file_writer(path, _map(), layout="edax", projection_centre=(0.5, 0.3, 0.6))
    with h5py.File(path, "r+") as f:
        f.move("Manufacturer", " Manufacturer")
    data = _read(path)
    assert data.format == "h5ebsd-edax" and data.projection_centre == pytest.approx((0.5, 0.3, 0.6), abs=1e-6)


def test_writer_refuses_an_implausible_projection_centre(tmp_path):
    from napari_microstructure.core.errors import MicrostructureError

    with pytest.raises(MicrostructureError, match="implausible"):
        h5ebsd.file_writer(tmp_path / "x.h5", _map(), projection_centre=(0.5, 0.3, 60))
    assert not (tmp_path / "x.h5").exists()


def test_vendor_projection_centre_from_kikuchipy_detector():
    """kikuchipy's detector PC is passed on when the file gave one; its placeholder (0.5, 0.5, 0.5),
    what kikuchipy 0.13.1 holds for every EDAX/Oxford/NORDIF binary, is not."""
    per_pattern = np.array([[[0.40, 0.20, 0.60], [0.44, 0.22, 0.62]]])
    signal = SimpleNamespace(detector=SimpleNamespace(pc=per_pattern))
    assert vendor.detector_projection_centre(signal, "x.up2") == pytest.approx((0.42, 0.21, 0.61))
    placeholder = SimpleNamespace(detector=SimpleNamespace(pc=np.array([[0.5, 0.5, 0.5]])))
    assert vendor.detector_projection_centre(placeholder, "x.up2") is None
    assert vendor.detector_projection_centre(SimpleNamespace(), "x.up2") is None
    with pytest.warns(UserWarning, match="x.up2"):
        bad = SimpleNamespace(detector=SimpleNamespace(pc=np.array([0.5, 0.3, -1.0])))
        assert vendor.detector_projection_centre(bad, "x.up2") is None


@pytest.mark.parametrize("layout", ["kikuchipy", "edax", "bruker"])
def test_h5ebsd_tilts_reach_the_layer_metadata(tmp_path, layout):
    """The acquisition's tilts, where each layout's header keeps them (kikuchipy 0.13.1 reads the kikuchipy and
    EDAX files written here as sample tilt 65, detector tilt 8; for Bruker it looks for 'Sample Tilt', while
    Bruker's header, as orix lists it, names it 'SampleTilt', which is what is written and read here)."""
    from napari_microstructure._napari._ebsd_reader import layer_data_for

    path = tmp_path / f"{layout}.h5"
    h5ebsd.file_writer(path, _map(), layout=layout, tilts_deg=(65.0, 8.0))
    data = eio.load_patterns(path)
    try:
        assert data.metadata["sample_tilt_deg"] == pytest.approx(65.0)
        assert data.metadata["detector_tilt_deg"] == pytest.approx(8.0)
        for _, kwargs, _ in layer_data_for(data, "m"):
            assert kwargs["metadata"]["sample_tilt_deg"] == pytest.approx(65.0)
            assert kwargs["metadata"]["detector_tilt_deg"] == pytest.approx(8.0)
    finally:
        data.close()
    plain = tmp_path / f"{layout}-plain.h5"
    h5ebsd.file_writer(plain, _map(), layout=layout)
    assert "sample_tilt_deg" not in _read(plain).metadata  # no header field: nothing is made up


def test_implausible_tilt_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / "k.h5"
    h5ebsd.file_writer(path, _map(), layout="kikuchipy", tilts_deg=(170.0, 5.0))
    with pytest.warns(UserWarning, match=r"'sample_tilt' \(170.0\) is not a tilt in 0-90 degrees"):
        data = _read(path)
    assert "sample_tilt_deg" not in data.metadata and data.metadata["detector_tilt_deg"] == pytest.approx(5.0)
    # the file kikuchipy wrote holds its detector's tilts (its defaults, 70 and 0)
    kp = _read(DATA / "kikuchipy_0.13.1_map_2x3_12x16.h5").metadata
    assert (kp["sample_tilt_deg"], kp["detector_tilt_deg"]) == (pytest.approx(70.0), pytest.approx(0.0))


_PC_FIELDS = {"kikuchipy": ("EBSD/Header/pcx", "EBSD/Header/pcy", "EBSD/Header/pcz"),
              "edax": tuple(f"EBSD/Header/Pattern Center Calibration/{k}" for k in ("x-star", "y-star", "z-star")),
              "bruker": ("EBSD/Data/PCX", "EBSD/Data/PCY", "EBSD/Data/DD")}
_TILT_FIELDS = {"kikuchipy": ("EBSD/Header/sample_tilt", "EBSD/Header/elevation_angle"),
                "edax": ("EBSD/Header/Sample Tilt", "EBSD/Header/Camera Elevation Angle"),
                "bruker": ("EBSD/Header/SampleTilt", "EBSD/Header/CameraTilt")}
_BAD_VALUES = {"text": "abc", "nan": np.nan, "empty": np.zeros(0), "null": h5py.Empty("f"), "huge": 1e30,
               "negative": -5.0}


def _edited(tmp_path, layout, field, value, shape=(2, 3, 12, 16)):
    path = tmp_path / f"{layout}.h5"
    h5ebsd.file_writer(path, _map(shape), layout=layout, projection_centre=(0.5, 0.3, 0.6), tilts_deg=(70.0, 10.0))
    with h5py.File(path, "r+") as f:
        del f["Scan 1"][field]
        if value is not None:
            f["Scan 1"][field] = value
    return path


@pytest.mark.parametrize("layout", ["kikuchipy", "edax", "bruker"])
@pytest.mark.parametrize("which", [0, 2])
@pytest.mark.parametrize("bad", list(_BAD_VALUES) + ["missing"])
def test_bad_projection_centre_field_is_ignored_and_named(tmp_path, layout, which, bad):
    """A PC field that is text, NaN, empty, a null dataset, far off or missing: the read succeeds, the PC is
    left out and the warning names the file and the field; the tilts and patterns are still read."""
    field = _PC_FIELDS[layout][which]
    path = _edited(tmp_path, layout, field, _BAD_VALUES.get(bad))
    with pytest.warns(UserWarning) as record:
        data = h5ebsd.file_reader(path, lazy=False)
    text = " ".join(str(w.message) for w in record)
    assert path.name in text and Path(field).parent.name in text
    assert "by hand" in text
    assert data.projection_centre is None
    assert data.metadata["sample_tilt_deg"] == pytest.approx(70.0)
    assert data.metadata["detector_tilt_deg"] == pytest.approx(10.0)
    assert np.asarray(data.patterns).shape == _map().shape


@pytest.mark.parametrize("layout", ["kikuchipy", "edax", "bruker"])
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("bad", ["text", "nan", "empty", "null", "huge", "two-values"])
def test_bad_tilt_field_is_ignored_and_named(tmp_path, layout, which, bad):
    """A tilt that is text, NaN, empty, a null dataset, out of range or a list of differing values: left out
    with a warning naming the file and the field; the other tilt and the projection centre are kept."""
    field = _TILT_FIELDS[layout][which]
    value = np.array([60.0, 70.0]) if bad == "two-values" else _BAD_VALUES[bad]
    path = _edited(tmp_path, layout, field, value)
    with pytest.warns(UserWarning, match=rf"{path.name}: the header's '{Path(field).name}' .* is ignored"):
        data = h5ebsd.file_reader(path, lazy=False)
    name, other = ("sample_tilt_deg", "detector_tilt_deg")[::1 if which == 0 else -1]
    assert name not in data.metadata and other in data.metadata
    assert data.projection_centre == pytest.approx((0.5, 0.3, 0.6), abs=1e-6)


def test_per_pattern_tilt_of_one_value_and_long_per_pattern_tsl_are_read(tmp_path):
    """A tilt stored once per pattern (all equal) is that tilt; an EDAX PC stored per pattern (over 16 values,
    which the header summary leaves out) is still averaged, not silently dropped."""
    path = _edited(tmp_path, "edax", _TILT_FIELDS["edax"][0], np.full(20, 68.0), shape=(4, 5, 12, 16))
    with h5py.File(path, "r+") as f:
        cal = f["Scan 1/EBSD/Header/Pattern Center Calibration"]
        x = float(cal["x-star"][()])
        del cal["x-star"]
        cal["x-star"] = np.full(20, x)  # one per pattern of the 4 x 5 map
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = h5ebsd.file_reader(path, lazy=False)
    assert data.metadata["sample_tilt_deg"] == pytest.approx(68.0)
    assert data.projection_centre == pytest.approx((0.5, 0.3, 0.6), abs=1e-6)


@pytest.mark.parametrize("layout", ["kikuchipy", "edax", "bruker"])
def test_per_pattern_projection_centre_of_the_wrong_length_is_averaged_with_a_warning(tmp_path, layout):
    """A per-pattern PC field that does not hold one value per pattern (here 4 values for 6 patterns) is
    averaged as before, but no longer silently: the warning names the file, the dataset, its length and
    the pattern count. Values whose mean is implausible are then ignored, as any implausible PC."""
    field = _PC_FIELDS[layout][0]
    path = _edited(tmp_path, layout, field, np.array([0.40, 0.45, 0.55, 0.60]))
    with pytest.warns(UserWarning) as record:
        data = h5ebsd.file_reader(path, lazy=False)
    assert len(record) == 1, [str(w.message) for w in record]
    text = str(record[0].message)
    assert path.name in text and Path(field).name in text
    assert "4 values" in text and "6 patterns" in text and "mean is used" in text
    expected = (0.5, 0.3, 0.6) if layout != "edax" else projection_centre_from_tsl(
        (0.5, 0.7, 0.6), (12, 16))  # x-star is PCx
    assert data.projection_centre == pytest.approx(expected, abs=1e-6)
    # the right length reads without a warning
    path = _edited(tmp_path, layout, field, np.linspace(0.45, 0.55, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert h5ebsd.file_reader(path, lazy=False).projection_centre[0] == pytest.approx(0.5, abs=1e-6)
    # a mean far off the detector: named as the wrong length, then ignored as implausible
    path = _edited(tmp_path, layout, field, np.array([0.5, 9.0, 9.0, 9.0]))
    with pytest.warns(UserWarning) as record:
        data = h5ebsd.file_reader(path, lazy=False)
    text = " ".join(str(w.message) for w in record)
    assert "4 values" in text and "6 patterns" in text and "implausible" in text and "ignored" in text
    assert data.projection_centre is None


def test_reading_h5ebsd_does_not_import_torch(tmp_path):
    """Reading an h5ebsd file with its projection centre and tilts (the napari reader's path too, and a .npy
    memory map through it) imports no torch: ``core.ebsd`` imports its classifier only when it is asked for."""
    import subprocess
    import sys

    path, npy = tmp_path / "m.h5", tmp_path / "m.npy"
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from napari_microstructure.io.ebsd import h5ebsd, load_patterns\n"
        "from napari_microstructure._napari._ebsd_reader import get_reader\n"
        f"h5ebsd.file_writer({str(path)!r}, np.zeros((2, 3, 12, 16), np.uint8), "
        "projection_centre=(0.52, 0.29, 0.63), tilts_deg=(65.0, 8.0))\n"
        f"data = load_patterns({str(path)!r}, lazy=False)\n"
        f"layers = get_reader({str(path)!r})({str(path)!r})\n"
        f"np.save({str(npy)!r}, np.zeros((2, 3, 12, 16), np.float32))\n"  # a memory map: the navigator's own pass
        f"get_reader({str(npy)!r})({str(npy)!r})\n"
        "print(data.projection_centre, data.metadata['sample_tilt_deg'], data.metadata['detector_tilt_deg'],\n"
        "      layers[0][1]['metadata']['projection_centre'], 'torch' in sys.modules)\n"
        "from napari_microstructure.core.ebsd import EBSDClassifier, MapResult\n"
        "print(EBSDClassifier.__name__, MapResult.__name__, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == "(0.52, 0.29, 0.63) 65.0 8.0 [0.52, 0.29, 0.63] False", out.stdout
    assert second == "EBSDClassifier MapResult True"  # the lazy names still import on access
