"""NumPy ``.npy`` pattern stacks (N, h, w) and maps (rows, cols, h, w), memory-mapped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from ...core.errors import MicrostructureError
from ._common import PatternData

_MAGIC = b"\x93NUMPY"   # the first bytes of every .npy file


def file_writer(filename: Union[str, os.PathLike], patterns: np.ndarray) -> Path:
    """Write patterns with :func:`numpy.save`."""
    np.save(filename, np.asarray(patterns))
    return Path(filename)


def file_reader(filename: Union[str, os.PathLike], lazy: bool = True) -> PatternData:
    """Open a ``.npy`` file; ``lazy=True`` memory-maps it (nothing is read)."""
    filename = str(filename)
    try:
        with open(filename, "rb") as fh:
            magic = fh.read(len(_MAGIC))
    except OSError:
        magic = _MAGIC   # np.load reports it below
    if magic != _MAGIC:
        raise MicrostructureError(
            f"{filename!r} is not a readable .npy file: it does not start with NumPy's .npy header (a text "
            "file, or another format renamed .npy?); save the patterns again with numpy.save"
        )
    try:
        data = np.load(filename, mmap_mode="r" if lazy else None, allow_pickle=False)
    except Exception as exc:
        # numpy's own text may advise allow_pickle=True: unsafe for a file the user did not write
        detail = ("it holds Python objects, which are not loaded because loading them can run code"
                  if "pickle" in str(exc) else f"{exc.__class__.__name__}: {exc}")
        raise MicrostructureError(
            f"{filename!r} is not a readable .npy file ({detail}); it "
            "may be truncated or of another format: save the patterns again with numpy.save"
        ) from exc
    if data.ndim not in (3, 4):
        raise MicrostructureError(
            f"{filename!r} holds an array of shape {data.shape}; EBSD patterns must be a "
            "stack (N, h, w) or a map (rows, cols, h, w)"
        )
    return PatternData(data, None, "npy", filename, {})
