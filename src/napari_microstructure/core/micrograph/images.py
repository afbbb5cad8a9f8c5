"""Input checks for micrographs.

Everything that enters the engine passes through here, so every bad input is
caught at the boundary with a message that names the problem and the fix.
Intensity normalisation is :func:`.crops.normalise_in_place` (one rule).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from ..errors import MicrostructureError


def as_grey_image(image: Any, name: str = "image") -> np.ndarray:
    """Return a 2-D float32 copy of ``image``.

    Accepts uint8, uint16, other integer and float 2-D arrays. RGB(A) arrays
    ``(H, W, 3|4)`` are converted to grey (ITU-R 601 luma) with a warning.
    NaN pixels are kept (they are masked downstream); an image that is all
    NaN or contains infinities is refused.

    Raises
    ------
    MicrostructureError
        Wrong dimensionality, non-numeric dtype, infinities, or no finite pixel.
    """
    arr = np.asarray(image)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise MicrostructureError(
            f"{name} has dtype {arr.dtype}; give a grey image as uint8, uint16 or float"
        )
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        warnings.warn(
            f"{name} is RGB{'A' if arr.shape[-1] == 4 else ''} {arr.shape}; converting to grey "
            "(0.299 R + 0.587 G + 0.114 B). Convert it yourself to silence this warning.",
            UserWarning,
            stacklevel=3,
        )
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.ndim != 2:
        raise MicrostructureError(
            f"{name} has shape {arr.shape} ({arr.ndim}-D); a micrograph must be a 2-D grey "
            "image (H, W). Pass one slice or channel at a time, e.g. image[0] or image[..., 0]."
        )
    out = arr.astype(np.float32, copy=True)
    if np.isinf(out).any():
        raise MicrostructureError(
            f"{name} contains infinite values; replace them (e.g. np.nan_to_num) or mask them as NaN"
        )
    if not np.isfinite(out).any():
        raise MicrostructureError(f"{name} has no finite pixel (all NaN); check the data")
    return out


def check_pixel_size(pixel_size: Any, name: str = "pixel_size") -> float:
    """Return ``pixel_size`` (micrometres per pixel) as a positive float."""
    if pixel_size is None:
        raise MicrostructureError(
            f"{name} is missing; give the size of one pixel in micrometres "
            "(e.g. 0.05 for 20 pixels per micrometre), or read it from the TIFF tags"
        )
    if isinstance(pixel_size, (tuple, list, np.ndarray)):
        values = np.asarray(pixel_size, dtype=float).ravel()
        if values.size == 0:
            raise MicrostructureError(f"{name} is empty; give micrometres per pixel")
        if not np.allclose(values, values[0], rtol=1e-3):
            raise MicrostructureError(
                f"{name} {tuple(values)} differs between axes; resample the image to square pixels first"
            )
        pixel_size = float(values[0])
    try:
        value = float(pixel_size)
    except (TypeError, ValueError) as exc:
        raise MicrostructureError(f"{name} {pixel_size!r} is not a number; give micrometres per pixel") from exc
    if not math.isfinite(value) or value <= 0:
        raise MicrostructureError(
            f"{name} must be a positive number of micrometres per pixel, got {pixel_size!r}"
        )
    return value


def as_image_list(images: Any) -> list[Any]:
    """Accept one 2-D image or a sequence of images."""
    if isinstance(images, np.ndarray) and images.ndim == 2:
        return [images]
    if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] not in (3, 4):
        return list(images)
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, np.ndarray):
        return [images]
    raise MicrostructureError(
        f"images must be a 2-D array or a list of 2-D arrays, got {type(images).__name__}"
    )


def as_pixel_sizes(pixel_sizes: Any, n: int) -> list[float]:
    """One pixel size per image; a single number applies to all."""
    if pixel_sizes is None:
        return [check_pixel_size(None)] * n  # raises
    if np.isscalar(pixel_sizes):
        return [check_pixel_size(pixel_sizes)] * n
    values = list(pixel_sizes)
    if len(values) != n:
        raise MicrostructureError(
            f"got {len(values)} pixel sizes for {n} images; give one pixel size per image "
            "(or a single number for all)"
        )
    return [check_pixel_size(v, f"pixel_sizes[{i}]") for i, v in enumerate(values)]


def check_mask(mask: Any, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    """A label or boolean mask of the same shape as its image."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise MicrostructureError(
            f"{name} has shape {m.shape} but its image has shape {tuple(shape)}; "
            "paint the labels on a layer of the same size as the image"
        )
    return m


def class_names_from(labels: Sequence[Any]) -> list[str]:
    """Sorted unique class names (as strings)."""
    return sorted({str(x) for x in labels})
