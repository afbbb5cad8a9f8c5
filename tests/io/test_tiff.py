"""TIFF micrographs: the pixel size survives writing and reading, in every convention."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.io.tiff import read_micrograph, write_micrograph


@pytest.fixture
def image():
    return (np.arange(48 * 64) % 251).astype(np.uint8).reshape(48, 64)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("pixel_size_um", [0.0625, 0.37, 2.5])
def test_write_read_round_trip(tmp_path, image, dtype, pixel_size_um):
    path = write_micrograph(tmp_path / "m.tif", image.astype(dtype), pixel_size_um)
    data, size, meta = read_micrograph(path)
    assert data.dtype == dtype and np.array_equal(data, image.astype(dtype))
    assert size == pytest.approx(pixel_size_um, rel=1e-6)
    assert meta["source"] == str(path)
    assert not list(tmp_path.glob(".tmp-*"))  # written atomically, no leftovers


def test_written_file_follows_imagej_convention(tmp_path, image):
    """Fiji reads XResolution as pixels per ImageJ ``unit``: it must be pixels per micron."""
    path = write_micrograph(tmp_path / "m.tif", image, 0.25)
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["unit"] == "micron"
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(4.0)  # 4 pixels per micrometre


def test_stack_round_trip(tmp_path, image):
    stack = np.stack([image, image[::-1], image[:, ::-1]])
    data, size, _ = read_micrograph(write_micrograph(tmp_path / "s.tif", stack, 0.5))
    assert data.shape == (3, 48, 64) and np.array_equal(data, stack)
    assert size == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("unit", "pixels_per_unit", "expected_um"),
    [("micron", 20.0, 0.05), ("um", 2.0, 0.5), ("\\u00B5m", 10.0, 0.1), ("nm", 0.5, 0.002), ("mm", 1000.0, 1.0)],
)
def test_imagej_files(tmp_path, image, unit, pixels_per_unit, expected_um):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, image, imagej=True, resolution=(pixels_per_unit, pixels_per_unit),
                     metadata={"unit": unit})
    _, size, _ = read_micrograph(path)
    assert size == pytest.approx(expected_um)


@pytest.mark.parametrize(
    ("unit", "pixels_per_unit", "expected_um"),
    [("CENTIMETER", 1e4 / 0.3, 0.3), ("INCH", 25400 / 2.0, 2.0)],
)
def test_plain_resolution_tags(tmp_path, image, unit, pixels_per_unit, expected_um):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, image, resolution=(pixels_per_unit, pixels_per_unit), resolutionunit=unit)
    _, size, _ = read_micrograph(path)
    assert size == pytest.approx(expected_um)


def test_ome_physical_size(tmp_path, image):
    path = tmp_path / "m.ome.tif"
    tifffile.imwrite(path, image, ome=True,
                     metadata={"PhysicalSizeX": 250.0, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 250.0})
    _, size, _ = read_micrograph(path)
    assert size == pytest.approx(0.25)


@pytest.mark.parametrize("resolution", [None, (72.0, 72.0), (96.0, 96.0)])
def test_unknown_pixel_size_is_none(tmp_path, image, resolution):
    """No tags, or a screen default of 72/96 dpi, does not pretend to know the pixel size."""
    path = tmp_path / "n.tif"
    kwargs = {} if resolution is None else {"resolution": resolution, "resolutionunit": "INCH"}
    tifffile.imwrite(path, image, **kwargs)
    data, size, _ = read_micrograph(path)
    assert size is None and np.array_equal(data, image)


def test_corrupt_files_raise_microstructure_error(tmp_path, image):
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a TIFF file" * 10)
    with pytest.raises(MicrostructureError, match="cannot read .* as a TIFF"):
        read_micrograph(garbage)
    good = write_micrograph(tmp_path / "good.tif", image, 0.1)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MicrostructureError, match="truncated or damaged.*copy or export the file again"):
        read_micrograph(truncated)
    with pytest.raises(MicrostructureError):
        read_micrograph(tmp_path / "missing.tif")


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), None])
def test_write_refuses_bad_pixel_size(tmp_path, image, bad):
    with pytest.raises(MicrostructureError, match="pixel"):
        write_micrograph(tmp_path / "m.tif", image, bad)
    assert not list(tmp_path.iterdir())
