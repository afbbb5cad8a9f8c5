"""Vendor binary formats (EDAX .up1/.up2, Oxford .ebsp, NORDIF .dat) through kikuchipy.

kikuchipy is an optional dependency: ``pip install "napari-microstructure[ebsd]"``.
"""

from __future__ import annotations

import os
from typing import Union

from ...core.errors import MicrostructureError
from ._common import PatternData

VENDOR_SUFFIXES = {".up1": "EDAX binary", ".up2": "EDAX binary", ".ebsp": "Oxford binary",
                   ".dat": "NORDIF"}


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
    return PatternData(data, step, f"kikuchipy-{suffix.lstrip('.')}", filename, {})
