"""Readers and writers for EBSD patterns.

One module per format, each with ``file_reader(filename, lazy=...)`` returning
a :class:`PatternData`; :func:`load_patterns` picks the reader from the name.

=====================  ============================  ==================================
format                 module                        lazy as
=====================  ============================  ==================================
multi-page TIFF        :mod:`.tiff`                  memory map (uncompressed) / dask
folder of images       :mod:`.image_directory`       dask (blocks of files)
NumPy ``.npy``         :mod:`.numpy_file`            memory map
h5ebsd (3 layouts)     :mod:`.h5ebsd`                dask over the h5py dataset
EDAX/Oxford/NORDIF     :mod:`.vendor` (kikuchipy)    dask (kikuchipy lazy signal)
labelled training set  :mod:`.labelled`              in memory (small)
=====================  ============================  ==================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from ...core.errors import MicrostructureError
from . import h5ebsd, image_directory, labelled, numpy_file, tiff, vendor
from ._common import PatternData, projection_centre_from_tsl, projection_centre_to_tsl
from .labelled import read_labelled_patterns, read_labels, write_labelled_patterns

__all__ = [
    "PatternData",
    "load_patterns",
    "read_projection_centre",
    "projection_centre_from_tsl",
    "projection_centre_to_tsl",
    "read_labelled_patterns",
    "read_labels",
    "write_labelled_patterns",
    "SUFFIXES",
]

SUFFIXES = {
    ".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".h5": "h5ebsd", ".hdf5": "h5ebsd",
    ".h5ebsd": "h5ebsd", ".h5oina": "h5ebsd", ".up1": "vendor", ".up2": "vendor", ".ebsp": "vendor",
    ".dat": "vendor",
}


def load_patterns(path: Union[str, os.PathLike], lazy: bool = True, **kwargs) -> PatternData:
    """Open EBSD patterns from any supported file or folder.

    Parameters
    ----------
    path : path-like
        File (``.tif``, ``.npy``, ``.h5``/``.hdf5``/``.h5ebsd``, and with
        kikuchipy Oxford ``.h5oina``, ``.up1``, ``.up2``, ``.ebsp``, NORDIF
        ``.dat``) or folder of pattern images.
    lazy : bool
        Do not read the patterns now (memory map or dask array).
    **kwargs
        Passed to the format's ``file_reader``.

    Raises
    ------
    MicrostructureError
        Unknown format, truncated file, inconsistent sizes.
    """
    path = Path(path)
    if not path.exists():
        raise MicrostructureError(f"{str(path)!r} does not exist; check the path")
    if path.is_dir():
        return image_directory.file_reader(path, lazy=lazy, **kwargs)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None and h5ebsd.is_hdf5(path):
        kind = "h5ebsd"
    if kind == "tiff":
        return tiff.file_reader(path, lazy=lazy)
    if kind == "npy":
        return numpy_file.file_reader(path, lazy=lazy)
    if kind == "h5ebsd":
        return h5ebsd.file_reader(path, lazy=lazy, **kwargs)
    if kind == "vendor":
        return vendor.file_reader(path, lazy=lazy)
    if path.suffix.lower() == ".npz":
        pats, labs = read_labelled_patterns(path)
        return PatternData(pats, None, "npz", str(path), {"labels": labs})
    raise MicrostructureError(
        f"{str(path)!r} is not a recognised EBSD pattern file; supported: multi-page TIFF, "
        ".npy, h5ebsd (.h5, .hdf5, .h5ebsd: kikuchipy, EDAX, Bruker), a folder of images, and "
        "with kikuchipy EDAX .up1/.up2, Oxford .ebsp and .h5oina, NORDIF .dat"
    )


def read_projection_centre(path: Union[str, os.PathLike]) -> Optional[tuple[float, float, float]]:
    """The projection centre a pattern file gives, Bruker convention, or None.

    Opens the file lazily (no patterns are read) and returns
    :attr:`PatternData.projection_centre`. Labelled ``.npz`` sets and folders
    of images give none.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".npz":
        return None
    data = load_patterns(path, lazy=True)
    try:
        return data.projection_centre
    finally:
        data.close()
