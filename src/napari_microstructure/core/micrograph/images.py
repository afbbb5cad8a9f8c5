"""Input checks for micrographs.

Everything that enters the engine passes through here, so every bad input is
caught at the boundary with a message that names the problem and the fix.
Intensity normalisation is :func:`.crops.normalise_in_place` (one rule).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import MicrostructureError

#: Bytes per pixel that preparing one image for crops needs at its peak: the
#: float32 copy, the percentile scratch copy, a boolean mask and the pyramid.
PREPARE_BYTES_PER_PIXEL = 10

#: Pixel sizes outside this range (micrometres per pixel) are not those of a
#: microscope: 0.1 nm (atomic-resolution TEM) to 50 um (a low-magnification
#: optical overview). Outside it the unit is almost certainly wrong.
PLAUSIBLE_PIXEL_SIZE_UM = (1e-4, 50.0)


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate, or None when unknown.

    The smallest of the system's available memory (``MemAvailable``), the
    cgroup's limit less its usage, and the address-space limit (``ulimit -v``)
    less what the process already maps.
    """
    limits = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            text = fh.read().strip()
        if text != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                limits.append(int(text) - int(fh.read().strip()))
    except (OSError, ValueError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = 0
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmSize:"):
                        used = int(line.split()[1]) * 1024
                        break
            limits.append(soft - used)
    except (ImportError, OSError, ValueError, AttributeError):
        pass
    return max(0, min(limits)) if limits else None


def check_memory(n_bytes: float, what: str, fix: str) -> None:
    """Refuse, before starting, a computation that needs more memory than is available.

    Parameters
    ----------
    n_bytes : float
        Estimated peak memory of the computation in bytes.
    what : str
        The computation, e.g. ``"preparing the 20000 x 20000 image"``.
    fix : str
        What the user can do instead.

    Raises
    ------
    MicrostructureError
        With the estimate, the memory available and ``fix``.
    """
    available = available_memory()
    if available is not None and n_bytes > available:
        raise MicrostructureError(
            f"{what} needs about {n_bytes / 1e9:.2f} GB of memory but only {available / 1e9:.2f} GB "
            f"is available; {fix}"
        )


def _finite_range(arr: np.ndarray) -> tuple[Optional[float], Optional[float]]:
    """Smallest and largest finite value (None, None when there is none)."""
    if arr.dtype.kind in "iu":
        return (float(arr.min()), float(arr.max())) if arr.size else (None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(arr) if arr.size else np.nan, np.nanmax(arr) if arr.size else np.nan
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None, None
    return float(lo), float(hi)


def as_grey_image(image: Any, name: str = "image") -> np.ndarray:
    """Return a 2-D float32 copy of ``image``.

    Accepts uint8, uint16, other integer and float 2-D arrays (also memory
    maps: they are converted block by block, never to float64). RGB(A) arrays
    ``(H, W, 3|4)`` are converted to grey (ITU-R 601 luma) with a warning.
    NaN pixels are kept (they are masked downstream); an image that is all
    NaN, contains infinities, or is constant (every pixel the same value: no
    structure to learn or classify) is refused. Before the copy is made, the
    memory that preparing the image needs (about
    ``PREPARE_BYTES_PER_PIXEL`` bytes per pixel) is checked against the memory
    available.

    Raises
    ------
    MicrostructureError
        Wrong dimensionality, non-numeric dtype, infinities, no finite pixel,
        a constant image, or not enough memory.
    """
    arr = image if isinstance(image, np.ndarray) else np.asarray(image)
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
    height, width = arr.shape
    check_memory(
        float(height) * width * PREPARE_BYTES_PER_PIXEL,
        f"preparing {name} ({height} x {width} pixels)",
        "crop or downsample the image, or close other programs to free memory",
    )
    out = np.empty(arr.shape, np.float32)
    rows = max(1, (1 << 24) // max(1, width))  # convert about 16 M pixels at a time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float64 beyond float32: checked below
        for r in range(0, height, rows):
            out[r:r + rows] = arr[r:r + rows]
    if out.dtype.kind == "f" and np.isinf(out).any():
        if arr.dtype.kind == "f" and np.isinf(arr).any():
            raise MicrostructureError(
                f"{name} contains infinite values; replace them (e.g. np.nan_to_num) or mask them as NaN"
            )
        raise MicrostructureError(
            f"{name} holds values beyond the float32 range (about 3e38); rescale the image"
        )
    lo, hi = _finite_range(out)
    if lo is None:
        raise MicrostructureError(f"{name} has no finite pixel (all NaN); check the data")
    if hi == lo:
        raise MicrostructureError(
            f"{name} is constant (every pixel is {lo:g}): it holds no structure to learn or classify; "
            "check the acquisition or export (a blank, saturated or unscaled image)"
        )
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
    lo, hi = PLAUSIBLE_PIXEL_SIZE_UM
    if not lo <= value <= hi:
        raise MicrostructureError(
            f"{name} {value:g} um per pixel is outside the range of microscopes ({lo:g} to {hi:g} um "
            "per pixel); give it in micrometres per pixel (e.g. 0.05 for 50 nm; a value in "
            "nanometres is 1000 times too large)"
        )
    return value


def check_scale_against_model(shape: tuple[int, int], pixel_size_um: float,
                              fov_range_um: tuple[float, float], input_size: int,
                              name: str = "image") -> None:
    """Refuse an image whose pixel size makes the model's crops absurdly small.

    A crop of ``fov_um`` micrometres covers ``fov_um / pixel_size_um`` image
    pixels. When even the model's largest crop would cover fewer than
    ``input_size / 16`` pixels (every crop magnified more than 16 times), the
    image is far coarser than anything the model was trained on: almost
    always a pixel size in the wrong unit.
    """
    largest_px = float(fov_range_um[1]) / float(pixel_size_um)
    if largest_px < max(4.0, int(input_size) / 16):
        raise MicrostructureError(
            f"at {pixel_size_um:g} um per pixel the model's largest crop ({fov_range_um[1]:.3g} um) "
            f"covers only {largest_px:.2g} pixels of {name}: the image is far coarser than the "
            "training images, or its pixel size is in the wrong unit; check the pixel size "
            "(micrometres per pixel, e.g. 0.05 for 50 nm)"
        )


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


def check_mask(mask: Any, shape: tuple[int, int], name: str = "mask",
               fix: str = "paint the labels on a layer of the same size as the image") -> np.ndarray:
    """A label or boolean mask of the same shape as its image (``fix``: what to do when it is not)."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise MicrostructureError(
            f"{name} has shape {m.shape} but its image has shape {tuple(shape)}; {fix}"
        )
    return m


def class_names_from(labels: Sequence[Any]) -> list[str]:
    """Sorted unique class names (as strings).

    Raises
    ------
    MicrostructureError
        An empty name, or two names that differ only by spaces (``"ferrite"``
        and ``"ferrite "``): almost always a typing slip that would split one
        class in two.
    """
    names = [str(x) for x in labels]
    if any(n.strip() == "" for n in names):
        raise MicrostructureError("a class name is empty; name every image's class")
    unique = sorted(set(names))
    seen: dict[str, str] = {}
    for n in unique:
        key = " ".join(n.split())
        if key in seen:
            raise MicrostructureError(
                f"class names {seen[key]!r} and {n!r} differ only by spaces; use one spelling "
                "for one class (remove the extra spaces)"
            )
        seen[key] = n
    return unique


def as_label_list(labels: Any, n_images: int) -> list[Any]:
    """One label (a class name or a 2-D label mask) per image.

    Accepts a list or tuple, a 1-D array of names, a column ``(N, 1)`` or row
    ``(1, N)`` array of names for N images (flattened), and, for one image, a
    single 2-D mask.
    """
    if isinstance(labels, (list, tuple)):
        return list(labels)
    if isinstance(labels, str):
        return [labels]
    arr = np.asarray(labels)
    if arr.ndim == 2 and n_images > 1 and arr.size == n_images and 1 in arr.shape:
        return list(arr.ravel())
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        return list(arr)
    return list(arr.ravel())
