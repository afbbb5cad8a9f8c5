"""NumPy ``.npy`` pattern stacks (N, h, w) and maps (rows, cols, h, w), memory-mapped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from ...core.errors import MicrostructureError
from ._common import PatternData


def file_writer(filename: Union[str, os.PathLike], patterns: np.ndarray) -> Path:
    """Write patterns with :func:`numpy.save`."""
    np.save(filename, np.asarray(patterns))
    return Path(filename)


def file_reader(filename: Union[str, os.PathLike], lazy: bool = True) -> PatternData:
    """Open a ``.npy`` file; ``lazy=True`` memory-maps it (nothing is read)."""
    filename = str(filename)
    try:
        data = np.load(filename, mmap_mode="r" if lazy else None, allow_pickle=False)
    except Exception as exc:
        raise MicrostructureError(
            f"{filename!r} is not a readable .npy file ({exc.__class__.__name__}: {exc}); it "
            "may be truncated or of another format: save the patterns again with numpy.save"
        ) from exc
    if data.ndim not in (3, 4):
        raise MicrostructureError(
            f"{filename!r} holds an array of shape {data.shape}; EBSD patterns must be a "
            "stack (N, h, w) or a map (rows, cols, h, w)"
        )
    return PatternData(data, None, "npy", filename, {})
