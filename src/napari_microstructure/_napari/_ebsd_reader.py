"""npe2 reader for EBSD pattern maps and stacks.

Opens a map as two layers: the patterns as a (rows, cols, h, w) image layer
(lazy: memory map or dask array; its pixels square, scaled so that one
pattern fits in the map's extent (:func:`pattern_pixel_scale`), hidden at
first; the sliders of the first two axes pick the pattern) and its navigator, the mean intensity of every pattern as a
(rows, cols) image (computed in one streaming pass), on which training
labels are painted and where the space-group map appears.

Both layers' metadata hold ``projection_centre``: the detector's projection
centre ``[PCx, PCy, PCz]`` (Bruker convention) when the file gives one
(:attr:`~napari_microstructure.io.ebsd.PatternData.projection_centre`), else
``None``; the EBSD widget fills its Projection centre field from it. The
pattern layer's metadata also holds ``static_background``: the detector's
static background the file stores (an ``(h, w)`` array,
:attr:`~napari_microstructure.io.ebsd.PatternData.static_background`) or
``None``; the EBSD widget's band-profile classifier subtracts it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

PathLike = Union[str, os.PathLike]
EBSD_SUFFIXES = (".h5", ".hdf5", ".h5ebsd", ".h5oina", ".npy", ".up1", ".up2", ".ebsp", ".dat", ".tif", ".tiff")


def get_reader(path: Union[PathLike, list]) -> Optional[Callable[[Any], list]]:
    """Return :func:`read_ebsd` if ``path`` looks like EBSD patterns, else None (cheap checks)."""
    from ._store_reader import single_path

    p = single_path(path)
    if p is None:
        return None
    suffix = p.suffix.lower()
    if p.is_dir():
        return None  # folders of images are opened from the EBSD widget or load_patterns()
    if suffix not in EBSD_SUFFIXES:
        return None
    if suffix in (".h5", ".hdf5", ".h5ebsd", ".h5oina"):
        from ..io.ebsd.h5ebsd import is_hdf5

        return read_ebsd if is_hdf5(p) else None
    if suffix == ".dat":  # NORDIF's Pattern.dat sits beside its Setting.txt; other .dat files are not ours
        return read_ebsd if (p.parent / "Setting.txt").is_file() else None
    if suffix == ".npy":
        try:
            with open(p, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                shape, _, _ = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(fh))
        except Exception:
            return None
        return read_ebsd if len(shape) in (3, 4) and min(shape[-2:]) >= 8 else None
    if suffix in (".tif", ".tiff"):
        # only TIFFs written as EBSD pattern files (JSON description); plain
        # TIFFs are micrographs for the other reader
        try:
            from ..io.ebsd.tiff import read_description

            return read_ebsd if read_description(p) else None
        except Exception:
            return None
    return read_ebsd


def navigator_image(patterns: Any, chunk: int = 4096) -> np.ndarray:
    """Mean intensity of each pattern, (rows, cols) float32, in one streaming pass."""
    shape = patterns.shape
    rows, cols = (shape[0], shape[1]) if len(shape) == 4 else (1, shape[0])
    n = rows * cols
    flat = patterns.reshape(n, *shape[-2:])
    out = np.empty(n, np.float32)
    if type(flat).__module__.startswith("dask"):
        out[:] = flat.mean(axis=(1, 2), dtype=np.float32).compute(scheduler="threads")
    else:
        from ..core.ebsd.mapping import _release_pages

        for s in range(0, n, chunk):
            view = flat[s:s + chunk]
            out[s:s + chunk] = np.asarray(view, dtype=np.float32).mean(axis=(1, 2))
            _release_pages(view)  # keep the resident memory of a pass over a huge memory map small
    return out.reshape(rows, cols)


def pattern_pixel_scale(rows: int, cols: int, h: int, w: int, sy: float = 1.0, sx: float = 1.0
                        ) -> tuple[float, float]:
    """World size of one pattern pixel: square, so a detector image keeps its shape.

    The pattern axes are displayed over the map (the navigator, in micrometres
    from the step size); the pattern is scaled to fit inside the map's extent,
    its longer side spanning the map's shorter one. Scaling each axis to the
    map's extent on its own stretched a square pattern of a 30 x 40 map to 4:3.
    """
    s = min(sy * rows / h, sx * cols / w)
    return s, s


def layer_data_for(data, name: str) -> list:
    """Layer data tuples (patterns, navigator) for a :class:`PatternData`."""
    patterns = data.as_map()
    rows, cols, h, w = patterns.shape
    nav = navigator_image(patterns)
    first = np.asarray(patterns[0, 0], dtype=np.float32)
    lo, hi = float(first.min()), float(first.max())
    meta = {"ebsd": True, "source": data.source, "format": data.format, "map_shape": (rows, cols),
            "pattern_shape": (h, w), "step_size_um": tuple(data.step_size_um) if data.step_size_um else None,
            "projection_centre": ([float(v) for v in data.projection_centre]
                                  if data.projection_centre is not None else None)}
    for key in ("sample_tilt_deg", "detector_tilt_deg"):  # the acquisition's tilts, where the file gives them
        if data.metadata.get(key) is not None:
            meta[key] = float(data.metadata[key])
    # the map in micrometres when the file gives its step size (napari's scale bar then reads um)
    if data.step_size_um:
        sy, sx = (float(s) for s in data.step_size_um)
        units: dict = {"units": ("um",) * 4}
        nav_units: dict = {"units": ("um", "um")}
    else:
        sy, sx, units, nav_units = 1.0, 1.0, {}, {}
    pattern_layer = (
        patterns,
        {"name": f"{name} patterns", "visible": False, "contrast_limits": (lo, hi if hi > lo else lo + 1),
         "scale": (sy, sx, *pattern_pixel_scale(rows, cols, h, w, sy, sx)),
         "metadata": dict(meta, role="patterns", static_background=data.static_background),
         "colormap": "gray", **units},
        "image",
    )
    nav_layer = (
        nav,
        {"name": f"{name} navigator", "metadata": dict(meta, role="navigator"), "colormap": "gray",
         "scale": (sy, sx), **nav_units},
        "image",
    )
    return [pattern_layer, nav_layer]


def read_ebsd(path: Union[PathLike, list]) -> list:
    """Read an EBSD pattern file into napari layer data (patterns + navigator)."""
    from ..io.ebsd import load_patterns

    if isinstance(path, (list, tuple)):
        path = path[0]
    data = load_patterns(path, lazy=True)
    if data.step_size_um:
        from ._kit import show_scale_bar_in_current_viewer

        show_scale_bar_in_current_viewer()
    return layer_data_for(data, Path(path).stem)
