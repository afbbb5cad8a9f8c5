"""Vendor formats (EDAX .up1/.up2, Oxford .ebsp and .h5oina, NORDIF .dat, and HDF5 layouts
that :mod:`.h5ebsd` does not read) through kikuchipy.

kikuchipy is an optional dependency: ``pip install "napari-microstructure[ebsd]"``.

The projection centre is taken from kikuchipy's ``EBSDDetector`` (Bruker
convention, averaged over the map) when kikuchipy found one in the file. In
kikuchipy 0.13.1 none of these binary formats carries one: the detector then
holds kikuchipy's placeholder (0.5, 0.5, 0.5), which is not a measurement and
is not passed on. The static background kikuchipy reads (NORDIF's background
acquisition pattern) becomes :attr:`PatternData.static_background`.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

import numpy as np

from ...core.errors import MicrostructureError
from ._common import BACKGROUND_CHECK_PATTERNS, PatternData, plausible_projection_centre, usable_static_background

VENDOR_SUFFIXES = {".up1": "EDAX binary", ".up2": "EDAX binary", ".ebsp": "Oxford binary",
                   ".dat": "NORDIF", ".h5oina": "Oxford h5oina"}
#: what kikuchipy's EBSDDetector holds when the file gave no projection centre
KIKUCHIPY_PLACEHOLDER_PC = (0.5, 0.5, 0.5)


def detector_projection_centre(signal: Any, filename: str) -> Optional[tuple[float, float, float]]:
    """The mean Bruker projection centre of a kikuchipy signal's detector, or None (placeholder or none)."""
    detector = getattr(signal, "detector", None)
    if detector is None:
        return None
    try:
        pc = np.asarray(detector.pc, dtype=float).reshape(-1, 3).mean(0)
    except Exception:  # an unexpected detector object: no projection centre rather than no patterns
        return None
    if np.allclose(pc, KIKUCHIPY_PLACEHOLDER_PC):
        return None
    return plausible_projection_centre(pc, filename, "kikuchipy's EBSDDetector")


def file_reader(filename: Union[str, os.PathLike], lazy: bool = True) -> PatternData:
    """Read a vendor binary file with :func:`kikuchipy.load` (lazily by default)."""
    filename = str(filename)
    suffix = os.path.splitext(filename)[1].lower()
    what = VENDOR_SUFFIXES.get(suffix, "this vendor format")
    try:
        import kikuchipy as kp
    except ImportError as exc:
        raise MicrostructureError(
            f"reading {what} files ({filename!r}) needs kikuchipy, which is not installed; "
            "install the optional extra: pip install \"napari-microstructure[ebsd]\""
        ) from exc
    try:
        signal = kp.load(filename, lazy=lazy)
    except Exception as exc:
        raise MicrostructureError(
            f"kikuchipy could not read {filename!r} as {what} ({exc.__class__.__name__}: {exc}); "
            "the file may be truncated or of another format"
        ) from exc
    if isinstance(signal, list):
        signal = signal[0]
    data = signal.data
    nav = signal.axes_manager.navigation_axes
    step = None
    if len(nav) == 2:
        step = (float(nav[1].scale), float(nav[0].scale))
    static = getattr(signal, "static_background", None)  # NORDIF's "Background acquisition pattern"
    if static is not None and not isinstance(static, np.ndarray):
        static = None  # a lazy or unexpected object: classify without it rather than fail
    first = None
    if static is not None:  # Oxford's processed patterns were corrected with it already: checked here
        flat = data.reshape(-1, *data.shape[-2:])
        first = np.asarray(flat[:BACKGROUND_CHECK_PATTERNS])
    return PatternData(data, step, f"kikuchipy-{suffix.lstrip('.') or 'hdf5'}", filename, {},
                       projection_centre=detector_projection_centre(signal, filename),
                       static_background=usable_static_background(static, data.shape[-2:], filename,
                                                                  "kikuchipy's static_background", first))
