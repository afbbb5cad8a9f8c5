"""The container returned by every EBSD pattern reader."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import numpy as np


@dataclasses.dataclass
class PatternData:
    """Patterns read from a file, possibly lazily.

    Attributes
    ----------
    patterns : ndarray, numpy.memmap or dask.array.Array
        ``(rows, cols, h, w)`` for a map, ``(N, h, w)`` for a stack. Lazy
        readers return a memory map or a dask array: nothing is read until
        sliced or computed.
    step_size_um : (float, float) or None
        Map step (row, column) in micrometres, when the file says.
    format : str
        Reader that produced it, e.g. ``"h5ebsd-edax"``.
    source : str
        File or folder name.
    metadata : dict
        Header values worth keeping (projection centre, voltage, ...).
    """

    patterns: Any
    step_size_um: Optional[tuple[float, float]] = None
    format: str = ""
    source: str = ""
    metadata: dict = dataclasses.field(default_factory=dict)
    _close: Optional[Callable[[], None]] = dataclasses.field(default=None, repr=False)

    @property
    def is_map(self) -> bool:
        return len(self.patterns.shape) == 4

    @property
    def map_shape(self) -> Optional[tuple[int, int]]:
        return tuple(self.patterns.shape[:2]) if self.is_map else None

    @property
    def pattern_shape(self) -> tuple[int, int]:
        return tuple(self.patterns.shape[-2:])

    @property
    def n_patterns(self) -> int:
        return int(np.prod(self.patterns.shape[:-2]))

    def as_map(self) -> Any:
        """The patterns as (rows, cols, h, w); a stack becomes a 1 x N map."""
        if self.is_map:
            return self.patterns
        return self.patterns.reshape(1, *self.patterns.shape)

    def close(self) -> None:
        """Release the file handle held by a lazy reader (safe to call twice)."""
        if self._close is not None:
            self._close()
            self._close = None
