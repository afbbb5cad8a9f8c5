"""TIFF micrographs with their pixel size.

The pixel size (micrometres per pixel) is read, in this order, from ImageJ
metadata (``unit`` and the resolution tags), from the TIFF resolution tags
(``XResolution`` with ``ResolutionUnit`` centimetre or inch), or from an
OME-XML ``PhysicalSizeX``. Files written by :func:`write_micrograph` follow
ImageJ's convention (resolution in pixels per micron, ``unit=micron`` in the
ImageJ description) for uint8, uint16 and float32 images, so ImageJ/Fiji and
this plugin read the same scale; other types get plain resolution tags in
pixels per centimetre.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import tifffile

from ..core.errors import MicrostructureError

PathLike = Union[str, os.PathLike]

_UNIT_TO_UM = {
    "um": 1.0, "µm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "\\u00b5m": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3,
    "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6,
}


def _resolution_um(page: tifffile.TiffPage, imagej: Optional[dict]) -> Optional[float]:
    tags = page.tags
    if "XResolution" not in tags:
        return None
    num, den = tags["XResolution"].value
    if not num or not den:
        return None
    pixels_per_unit = num / den
    if pixels_per_unit <= 0:
        return None
    unit_tag = tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2
    if imagej and imagej.get("unit"):
        factor = _UNIT_TO_UM.get(str(imagej["unit"]).strip().lower())
        if factor is not None:
            return factor / pixels_per_unit
    if unit == 3:  # centimetre
        return 1e4 / pixels_per_unit
    if unit == 2 and imagej is None:  # inch, unless it is a screen or print setting
        if is_print_resolution(pixels_per_unit):
            warnings.warn(
                f"the TIFF says {pixels_per_unit:g} dots per inch, a screen or print setting, not a "
                f"pixel size ({25400.0 / pixels_per_unit:.3g} um per pixel would be far too coarse "
                "for a micrograph); it is ignored: give the pixel size yourself",
                UserWarning, stacklevel=3,
            )
            return None
        return 25400.0 / pixels_per_unit
    return None


def is_print_resolution(dots_per_inch: float) -> bool:
    """True for a resolution in dots per inch that is a screen or print setting.

    Whole numbers up to 2400 dpi (72, 96, 150, 300, 600, 1200...) are what
    image editors write; they mean 10.6 um or more per pixel, coarser than
    any micrograph a microscope writes in inches.
    """
    return dots_per_inch <= 2400 and abs(dots_per_inch - round(dots_per_inch)) < 1e-6


def _ome_um(tif: tifffile.TiffFile) -> Optional[float]:
    xml = tif.ome_metadata
    if not xml:
        return None
    m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', xml)
    if not m:
        return None
    unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', xml)
    factor = _UNIT_TO_UM.get(unit.group(1).lower(), 1.0) if unit else 1.0
    return float(m.group(1)) * factor


def open_complete(path: PathLike) -> tifffile.TiffFile:
    """Open a TIFF and check that its page chain and its pages' data are all in the file.

    A file cut short (an interrupted copy or download) often still opens: the
    pages before the cut read, the rest are dropped with a line in the log, and
    a stack of 20 patterns reads as one 2-D image. This refuses it instead.

    Raises
    ------
    MicrostructureError
        Naming the file, where it breaks off, and the fix.
    """
    import logging
    import struct

    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)  # tifffile's own line about the broken chain: the error below says it
    try:
        tif = tifffile.TiffFile(path)
        try:
            n = len(tif.pages)
            size = os.path.getsize(path)
            fmt = tif.tiff
            last = tif.pages[n - 1]
            fh = tif.filehandle
            fh.seek(last.offset)
            tags = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))[0]
            fh.seek(last.offset + fmt.tagnosize + tags * fmt.tagsize)
            raw = fh.read(fmt.offsetsize)
            following = struct.unpack(fmt.offsetformat, raw)[0] if len(raw) == fmt.offsetsize else 0
            ends = [o + c for page in tif.pages for o, c in zip(page.dataoffsets, page.databytecounts)]
        except Exception:
            tif.close()
            raise
    finally:
        log.setLevel(level)
    if following != 0 or len(raw) != fmt.offsetsize or (ends and max(ends) > size):
        tif.close()
        raise MicrostructureError(
            f"{str(path)!r} is truncated or damaged: it breaks off after {n} readable page"
            f"{'s' if n != 1 else ''} ({size:,} bytes){' and the data of its pages run past its end' if ends and max(ends) > size else ''}; "
            "copy or export the file again"
        )
    return tif


def read_micrograph(path: PathLike) -> tuple[np.ndarray, Optional[float], dict[str, Any]]:
    """Read a grey micrograph and its pixel size.

    Returns
    -------
    image : numpy.ndarray
        2-D (or the file's own shape if it is a stack or RGB).
    pixel_size_um : float or None
        Micrometres per pixel, None when the file does not say.
    metadata : dict
        ``{"source": path, "description": ...}``.

    Raises
    ------
    MicrostructureError
        If the file cannot be read as a TIFF.
    """
    path = Path(path)
    if not path.is_file():
        raise MicrostructureError(
            f"{str(path)!r} {'is a folder' if path.is_dir() else 'does not exist'}; give a TIFF file"
        )
    try:
        with open_complete(path) as tif:
            image = tif.asarray()
            page = tif.pages[0]
            imagej = tif.imagej_metadata
            size = _ome_um(tif) or _resolution_um(page, imagej)
            description = page.description or ""
    except (MemoryError, MicrostructureError):
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged header makes tifffile raise anything
        message = " ".join(str(exc).split())[:120]
        raise MicrostructureError(
            f"cannot read {str(path)!r} as a TIFF ({exc.__class__.__name__}: {message}); "
            "check that the file is complete and is a TIFF image"
        ) from exc
    return image, size, {"source": str(path), "description": description}


def write_micrograph(
    path: PathLike, image: np.ndarray, pixel_size_um: float, metadata: Optional[dict] = None
) -> Path:
    """Write a micrograph (or a stack of pages) with its pixel size in the resolution tags.

    Parameters
    ----------
    path : path-like
    image : numpy.ndarray
        ``(H, W)`` or ``(pages, H, W)``.
    pixel_size_um : float
        Micrometres per pixel.
    metadata : dict, optional
        Stored in the ImageJ metadata (strings and numbers).
    """
    from ..core.micrograph.images import check_pixel_size

    from ..core._files import atomic_path

    p = check_pixel_size(pixel_size_um)
    path = Path(path)
    imagej = image.dtype in (np.uint8, np.uint16, np.float32)
    meta: dict[str, Any] = {"unit": "micron"} if imagej else {}
    meta.update(metadata or {})
    if imagej:
        # ImageJ's convention: XResolution in pixels per ``unit``, ResolutionUnit NONE
        # (Fiji ignores ResolutionUnit when the description names a unit)
        resolution, resolution_unit = (1.0 / p, 1.0 / p), "NONE"
    else:
        resolution, resolution_unit = (1e4 / p, 1e4 / p), "CENTIMETER"
    with atomic_path(path, "micrograph") as tmp:
        tifffile.imwrite(
            tmp, image, imagej=imagej, resolution=resolution, resolutionunit=resolution_unit,
            metadata=meta,
        )
    return path


#: the ``kind`` of the result maps the EBSD command line writes (see :func:`write_result_map`)
MAP_KINDS = ("ebsd-space-groups", "ebsd-confidence", "ebsd-no-solution")


def write_result_map(path: PathLike, data: np.ndarray, kind: str, step_size_um: Optional[float] = None,
                     info: Optional[dict[str, Any]] = None) -> Path:
    """Write a map (labels, confidence, mask) that napari reopens as the right kind of layer.

    ImageJ TIFF: the map's step size in the resolution tags (micrometres, as
    :func:`write_micrograph`) when known, and ``{"kind": kind, ...info}`` as
    JSON in the ImageJ ``Info`` field, which :func:`read_result_map_kind`
    reads back. Integer labels are stored as uint16 (ImageJ's integer type).

    Parameters
    ----------
    path : path-like
    data : numpy.ndarray
        ``(rows, cols)``.
    kind : str
        One of :data:`MAP_KINDS`.
    step_size_um : float, optional
        Micrometres between neighbouring map points.
    info : dict, optional
        More JSON-serialisable facts (e.g. the class names).
    """
    import json

    if kind not in MAP_KINDS:
        raise MicrostructureError(f"unknown map kind {kind!r}; choose one of {', '.join(MAP_KINDS)}")
    arr = np.asarray(data)
    if arr.dtype.kind in "iub":
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise MicrostructureError(f"{kind} values must lie in 0-65535 to be stored, got {arr.min()}-{arr.max()}")
        arr = arr.astype(np.uint16)
    else:
        arr = arr.astype(np.float32)
    meta = {"Info": json.dumps(dict(info or {}, kind=kind))}
    if step_size_um is not None:
        return write_micrograph(path, arr, step_size_um, meta)
    from ..core._files import atomic_path

    with atomic_path(path, f"{kind} map") as tmp:
        tifffile.imwrite(tmp, arr, imagej=True, metadata=meta)
    return Path(path)


def read_result_map_kind(path: PathLike) -> Optional[dict[str, Any]]:
    """The JSON ``Info`` of a TIFF written by :func:`write_result_map` or a probability map, else None.

    Cheap: reads the ImageJ metadata only.
    """
    import json

    try:
        with tifffile.TiffFile(path) as tif:
            ij = tif.imagej_metadata or {}
        info = json.loads(ij.get("Info", ""))
    except (OSError, ValueError, TypeError, tifffile.TiffFileError):
        return None
    return info if isinstance(info, dict) else None
