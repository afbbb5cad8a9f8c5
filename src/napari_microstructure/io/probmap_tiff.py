"""Probability maps as multi-page TIFF files.

Pages, all float32 ``(H, W)``: one per class, then "none" (the outlier
channel), then the outlier mask at the chosen threshold (1 outlier, 0 not, NaN
not evaluated). Not-evaluated pixels are NaN on every page. The pixel size is
in the resolution tags in ImageJ's convention (pixels per micron, ImageJ
``unit=micron``; as :func:`~napari_microstructure.io.tiff.write_micrograph`), so
Fiji, napari and :func:`~napari_microstructure.io.tiff.read_micrograph` read
the same scale; the page names are ImageJ slice labels, and the class names,
threshold and map settings are JSON in the ImageJ ``Info`` field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import tifffile

from ..core.errors import MicrostructureError
from ..core.micrograph.images import check_pixel_size

PathLike = Union[str, os.PathLike]
OUTLIER_PAGE = "outlier"


def write_probability_stack(
    path: PathLike,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    pixel_size_um: float,
    threshold: float = 0.5,
    info: Optional[dict[str, Any]] = None,
) -> Path:
    """Write a ``(n_classes + 1, H, W)`` probability stack plus its outlier mask.

    Parameters
    ----------
    path : path-like
        ``.tif`` or ``.tiff`` file to write (replaced atomically).
    probabilities : numpy.ndarray
        Classes, then "none"; NaN where not evaluated.
    class_names : sequence of str
        One name per page of ``probabilities`` ("none" last).
    pixel_size_um : float
        Micrometres per pixel of the image the map was computed on.
    threshold : float
        "none" probability (0-1) from which a pixel is an outlier.
    info : dict, optional
        Extra JSON-serialisable settings stored with the class names.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise MicrostructureError(f"{str(path)!r} does not end in .tif or .tiff; name the output file *.tif")
    stack = np.asarray(probabilities, dtype=np.float32)
    names = [str(n) for n in class_names]
    if stack.ndim != 3 or stack.shape[0] != len(names):
        raise MicrostructureError(
            f"probabilities have shape {stack.shape} but {len(names)} class names were given; pass a "
            "(n_classes + 1, H, W) stack with one name per page"
        )
    p = check_pixel_size(pixel_size_um, "pixel_size_um")
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise MicrostructureError(f"threshold must be between 0 and 1, got {threshold}")
    with np.errstate(invalid="ignore"):
        outlier = (stack[-1] >= t).astype(np.float32)
    outlier[np.isnan(stack[-1])] = np.nan
    pages = np.concatenate([stack, outlier[None]])
    meta = dict(info or {})
    meta.update({"class_names": names, "outlier_threshold": t, "pixel_size_um": p,
                 "pages": names + [OUTLIER_PAGE]})
    from ..core._files import atomic_path

    with atomic_path(path, "probability map") as tmp:
        tifffile.imwrite(
            tmp, pages, imagej=True, resolution=(1.0 / p, 1.0 / p), resolutionunit="NONE",
            metadata={"unit": "micron", "axes": "ZYX", "Labels": names + [OUTLIER_PAGE],
                      "Info": json.dumps(meta)},
        )
    return path


def write_probability_tiff(path: PathLike, result: Any, pixel_size_um: Optional[float] = None,
                           threshold: float = 0.5) -> Path:
    """Write a :class:`~napari_microstructure.core.micrograph.probmap.ProbabilityMapResult` (see the module notes).

    ``pixel_size_um`` defaults to the result's own pixel size.
    """
    p = result.pixel_size_um if pixel_size_um is None else pixel_size_um
    info = {"fov_um": result.fov_um, "stride_px": result.stride_px, "n_crops": result.n_crops,
            "n_augment": result.n_augment, "method": result.method, "fractions": result.fractions,
            "normalise_window_um": getattr(result, "normalise_window_um", None)}
    return write_probability_stack(path, result.probabilities, result.class_names, p, threshold, info)


def read_probability_tiff(path: PathLike) -> tuple[np.ndarray, list[str], Optional[float], dict[str, Any]]:
    """Read a file written by :func:`write_probability_tiff`.

    Returns
    -------
    probabilities : numpy.ndarray
        ``(n_classes + 1, H, W)`` float32 (the outlier-mask page is not included).
    class_names : list of str
    pixel_size_um : float or None
    info : dict
        The stored settings, and ``"outlier"``: the outlier mask page.
    """
    from .tiff import read_micrograph

    pages, size, _ = read_micrograph(path)
    with tifffile.TiffFile(path) as tif:
        ij = tif.imagej_metadata or {}
    try:
        info = json.loads(ij.get("Info", ""))
        names = list(info["class_names"])
    except (ValueError, KeyError, TypeError) as exc:
        raise MicrostructureError(
            f"{str(path)!r} is not a probability-map TIFF (no class names in its metadata); write it with "
            "write_probability_tiff"
        ) from exc
    info["outlier"] = pages[len(names)]
    return pages[: len(names)], names, size, info
