"""The container returned by every EBSD pattern reader."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ...core.errors import MicrostructureError

#: patterns smaller than this (pixels per side) are not EBSD patterns
MIN_PATTERN_SIDE = 8


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
        Header values worth keeping (voltage, the vendor's own projection centre fields, ...).
    projection_centre : (float, float, float) or None
        The detector's projection centre ``(PCx, PCy, PCz)`` in the Bruker
        convention (fractions of the pattern width and height from the
        top-left corner, detector distance in pattern heights) when the file
        gives a plausible one: the mean over the map when it is stored per
        pattern. ``None`` when the format stores none (NumPy, plain TIFF,
        folders, EDAX/Oxford/NORDIF binaries) or the stored one is implausible
        (then a warning names the file).
    static_background : ndarray (h, w) float32 or None
        The detector's static background as the acquisition stored it (h5ebsd:
        kikuchipy ``EBSD/Header/static_background``, Bruker
        ``EBSD/Header/StaticBackground``), for
        :meth:`~napari_microstructure.core.ebsd.bandclassifier.BandProfileClassifier.classify_map`'s
        ``background``. ``None`` when the file stores none, or one of another
        size than the patterns or with non-finite values (a warning names it).
    """

    patterns: Any
    step_size_um: Optional[tuple[float, float]] = None
    format: str = ""
    source: str = ""
    metadata: dict = dataclasses.field(default_factory=dict)
    projection_centre: Optional[tuple[float, float, float]] = None
    static_background: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    _close: Optional[Callable[[], None]] = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            check_pattern_array(self.patterns, self.source or "the file", self.format)
        except MicrostructureError:
            self.close()
            raise

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


def check_pattern_array(patterns: Any, source: str, format: str = "") -> None:
    """Refuse what a reader found that is not a stack or map of grey patterns.

    Cheap: looks at the shape and type only, never at the pixels. Catches a
    single micrograph (one 2-D image), a colour image read as patterns
    ``(H, W, 3)``, patterns smaller than ``MIN_PATTERN_SIDE`` pixels and
    non-numeric data, each with a message that names the file and the fix.
    """
    shape = tuple(int(v) for v in getattr(patterns, "shape", ()))
    dtype = np.dtype(getattr(patterns, "dtype", np.float32))
    where = repr(str(source))
    if len(shape) == 2:
        raise MicrostructureError(
            f"{where} holds one 2-D image of {shape[0]} x {shape[1]} pixels, not a stack of EBSD "
            "patterns; a pattern file holds one pattern per page (TIFF) or an array (N, h, w) or "
            "(rows, cols, h, w); for micrographs use the micrograph reader or widgets"
        )
    if len(shape) not in (3, 4):
        raise MicrostructureError(
            f"{where} holds an array of shape {shape}; EBSD patterns must be a stack (N, h, w) or "
            "a map (rows, cols, h, w)"
        )
    if shape[-1] in (3, 4) and shape[-2] >= MIN_PATTERN_SIDE:
        raise MicrostructureError(
            f"{where} looks like a colour image of shape {shape} (the last axis holds "
            f"{shape[-1]} channels), not grey EBSD patterns; convert it to grey patterns first"
        )
    if min(shape[-2:]) < MIN_PATTERN_SIDE:
        raise MicrostructureError(
            f"{where} would give patterns of {shape[-2]} x {shape[-1]} pixels (array shape "
            f"{shape}); EBSD patterns are at least {MIN_PATTERN_SIDE} x {MIN_PATTERN_SIDE} pixels: "
            "check that the file holds patterns"
        )
    if 0 in shape:
        raise MicrostructureError(f"{where} holds no patterns (shape {shape}); choose a file with patterns")
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise MicrostructureError(f"{where} holds {dtype} data; EBSD patterns must be numeric intensities")


def projection_centre_from_tsl(pc_tsl: Sequence[float], pattern_shape: Sequence[int]) -> tuple[float, float, float]:
    """An EDAX/TSL projection centre ``(x*, y*, z*)`` in the Bruker convention.

    EDAX/TSL measure ``x*`` in pattern widths from the left edge, ``y*`` in
    pattern heights from the *bottom* edge and ``z*`` in units of the shorter
    pattern side; Bruker measures ``PCy`` from the top edge and ``PCz`` in
    pattern heights (the conventions of kikuchipy's ``EBSDDetector``)::

        PCx = x*,   PCy = 1 - y*,   PCz = z* min(h, w) / h

    Parameters
    ----------
    pc_tsl : (float, float, float)
        ``(x*, y*, z*)`` as stored under ``Pattern Center Calibration``.
    pattern_shape : (int, int)
        Pattern height and width in pixels (``h``, ``w``).
    """
    x, y, z = (float(v) for v in pc_tsl)
    h, w = (int(s) for s in pattern_shape)
    return (x, 1.0 - y, z * min(h, w) / h)


def projection_centre_to_tsl(pc_bruker: Sequence[float], pattern_shape: Sequence[int]) -> tuple[float, float, float]:
    """A Bruker projection centre in the EDAX/TSL convention (inverse of :func:`projection_centre_from_tsl`)."""
    x, y, z = (float(v) for v in pc_bruker)
    h, w = (int(s) for s in pattern_shape)
    return (x, 1.0 - y, z * h / min(h, w))


def plausible_projection_centre(pc: Any, source: str, where: str = "") -> Optional[tuple[float, float, float]]:
    """``pc`` as three floats when it is a plausible Bruker projection centre, else ``None``.

    A file's projection centre that is not finite or outside the ranges of
    :func:`~napari_microstructure.core.ebsd.bands.check_projection_centre`
    (an uncalibrated EDAX header stores zeros, for instance) is ignored with a
    ``UserWarning`` that names the file: the patterns are still read, and the
    user gives the projection centre by hand.

    Parameters
    ----------
    pc : sequence of 3 numbers or None
        Bruker convention.
    source : str
        File name, for the warning.
    where : str
        Where in the file it was found, for the warning (e.g. ``"EBSD/Header/pcx"``).
    """
    from ...core.ebsd.bands import check_projection_centre

    if pc is None:
        return None
    try:
        return check_projection_centre(pc)
    except MicrostructureError:
        at = f" ({where})" if where else ""
        shown = ", ".join(f"{float(v):.4g}" for v in np.ravel(np.asarray(pc, dtype=float)))
        warnings.warn(
            f"{str(source)!r}: the projection centre in the file{at}, ({shown}) in the Bruker convention, "
            "is implausible (not finite, PCz <= 0 or far off the detector) and is ignored; give the "
            "projection centre by hand (PCx, PCy, PCz)", UserWarning, stacklevel=3)
        return None


#: patterns whose mean pattern correlates less than this with the stored static background have had it
#: removed already (kikuchipy's nine raw Ni patterns: 0.998; the same after kikuchipy's
#: remove_static_background: 0.56 subtracted, -0.18 divided, 0.16 with the dynamic background too)
CARRIES_BACKGROUND_CORRELATION = 0.9
#: patterns read from the start of the file for that check
BACKGROUND_CHECK_PATTERNS = 256


def usable_static_background(value: Any, shape: Sequence[int], source: str, where: str,
                             patterns: Any = None) -> Optional[np.ndarray]:
    """A stored static background as ``(h, w)`` float32, or None (with a warning naming the file when unusable).

    ``value`` is what the file holds (None, or one number such as kikuchipy's
    placeholder -1: nothing stored); usable means a numeric image of the
    patterns' ``shape`` with finite values. ``patterns`` (the first patterns
    of the file, ``(N, h, w)``): None is returned, silently, when their mean
    pattern does not follow the background (correlation under
    :data:`CARRIES_BACKGROUND_CORRELATION`): the file's patterns were
    corrected with it already (Oxford's processed patterns, a kikuchipy file
    saved after ``remove_static_background``), and subtracting it again would
    hurt (kikuchipy's nine Ni patterns corrected twice: 7 of 9 called 225 and 2
    without a solution, against 9 of 9).
    """
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.size <= 1:  # kikuchipy writes -1 when it has none
        return None
    if arr.dtype.kind not in "uif" or arr.squeeze().shape != tuple(shape):
        found = f"{arr.dtype} {' x '.join(map(str, arr.shape)) or 'scalar'}"
        warnings.warn(f"{source}: the static background in {where} ({found}) is not a {shape[0]} x {shape[1]} "
                      "image like the patterns; it is ignored (each pattern's own smooth background is divided "
                      "out instead)", UserWarning, stacklevel=4)
        return None
    arr = arr.squeeze().astype(np.float32)
    if not np.all(np.isfinite(arr)):
        warnings.warn(f"{source}: the static background in {where} holds NaN or infinite values; it is ignored",
                      UserWarning, stacklevel=4)
        return None
    if patterns is not None:
        sample = np.asarray(patterns, np.float64).reshape(-1, *arr.shape)
        mean = sample.mean(0).ravel()
        bg = arr.astype(np.float64).ravel()
        if mean.std() == 0 or bg.std() == 0 or np.corrcoef(mean, bg)[0, 1] < CARRIES_BACKGROUND_CORRELATION:
            return None  # already removed from these patterns
    return arr
