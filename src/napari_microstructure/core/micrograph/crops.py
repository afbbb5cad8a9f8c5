"""Crops at a physical scale.

A crop covers a field of view of ``fov_um`` micrometres and is resampled to a
fixed network input of ``input_size`` x ``input_size`` pixels, so its resolution
after resampling is ``input_size / fov_um`` pixels per micrometre; that number
(as log10) is the network's magnification input (Larmuseau et al. 2020).

Resampling reads from an image pyramid (factor-2 box averages) at the level
whose pixel size is just finer than the crop's output pixel, so crops that
shrink an image many times are anti-aliased. Rotation, mirroring and an affine
warp are folded into the same sampling grid and cost nothing extra.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MicrostructureError


def build_pyramid(image01: np.ndarray, min_size: int = 16) -> list[torch.Tensor]:
    """Factor-2 box-average pyramid of a [0, 1] image; NaN pixels become 0.5.

    Returns a list of ``(1, 1, h, w)`` float32 tensors, finest first.
    """
    if image01.dtype == np.float32 and np.isfinite(image01).all():
        img = image01  # no copy: the finest level shares the caller's array
    else:
        img = np.where(np.isfinite(image01), image01, np.float32(0.5)).astype(np.float32, copy=False)
    level = torch.from_numpy(img)[None, None]
    levels = [level]
    while min(level.shape[-2:]) >= 2 * min_size:
        level = F.avg_pool2d(level, 2, ceil_mode=False)
        levels.append(level)
    return levels


def log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` values drawn log-uniformly from [lo, hi]."""
    if hi <= lo:
        return np.full(n, lo, dtype=np.float64)
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size=n))


def random_geometry(
    rng: np.random.Generator, n: int, warp: float = 0.1, rotation: bool = True, mirror: bool = True
) -> np.ndarray:
    """Random 2x2 matrices: rotation (any angle), mirroring, and an affine warp.

    ``warp`` is the standard deviation of the shear/stretch added to the identity;
    ``rotation`` and ``mirror`` switch those parts off.
    """
    angles = rng.uniform(0.0, 2.0 * math.pi, n) if rotation else np.zeros(n)
    c, s = np.cos(angles), np.sin(angles)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    if mirror:
        flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        rot[:, :, 0] *= flip[:, None]
    if warp > 0:
        w = np.eye(2)[None] + rng.normal(0.0, warp, size=(n, 2, 2))
        rot = rot @ w
    return rot


def sample_crops(
    pyramid: Sequence[torch.Tensor],
    centres_px: np.ndarray,
    crop_px: np.ndarray,
    input_size: int,
    geometry: Optional[np.ndarray] = None,
    device: torch.device = torch.device("cpu"),
) -> torch.Tensor:
    """Cut and resample crops from an image pyramid.

    Parameters
    ----------
    pyramid : list of tensors
        From :func:`build_pyramid`.
    centres_px : (n, 2) array
        Crop centres (row, column) in full-resolution pixel coordinates, where
        pixel ``i`` spans ``[i, i + 1)``.
    crop_px : (n,) array
        Side of each crop in full-resolution pixels (field of view / pixel size).
    input_size : int
        Output side in pixels.
    geometry : (n, 2, 2) array, optional
        Rotation / mirror / warp matrices acting on the crop's own coordinates.

    Returns
    -------
    torch.Tensor
        ``(n, 1, input_size, input_size)`` on ``device``.
    """
    n = len(crop_px)
    h0, w0 = pyramid[0].shape[-2:]
    out = torch.empty((n, 1, input_size, input_size), dtype=torch.float32, device=device)
    if n == 0:
        return out
    # the level whose pixels are at most as large as the output pixels
    ratio = np.asarray(crop_px, dtype=np.float64) / input_size
    levels = np.clip(np.floor(np.log2(np.maximum(ratio, 1e-9))), 0, len(pyramid) - 1).astype(int)
    if geometry is None:
        geometry = np.broadcast_to(np.eye(2), (n, 2, 2))
    for lv in np.unique(levels):
        idx = np.nonzero(levels == lv)[0]
        src = pyramid[lv].to(device)
        hl, wl = src.shape[-2:]
        sy, sx = hl / h0, wl / w0
        half = np.asarray(crop_px)[idx] / 2.0
        theta = np.zeros((len(idx), 2, 3), dtype=np.float32)
        a = geometry[idx]
        # x row (columns), y row (rows) in normalised coordinates of this level
        theta[:, 0, 0] = a[:, 0, 0] * half * sx * 2.0 / wl
        theta[:, 0, 1] = a[:, 0, 1] * half * sx * 2.0 / wl
        theta[:, 1, 0] = a[:, 1, 0] * half * sy * 2.0 / hl
        theta[:, 1, 1] = a[:, 1, 1] * half * sy * 2.0 / hl
        theta[:, 0, 2] = 2.0 * centres_px[idx, 1] * sx / wl - 1.0
        theta[:, 1, 2] = 2.0 * centres_px[idx, 0] * sy / hl - 1.0
        grid = F.affine_grid(
            torch.from_numpy(theta).to(device), [len(idx), 1, input_size, input_size], align_corners=False
        )
        out[torch.as_tensor(idx, device=device)] = F.grid_sample(
            src.expand(len(idx), -1, -1, -1), grid, mode="bilinear",
            padding_mode="reflection", align_corners=False,
        )
    return out


@dataclasses.dataclass(eq=False)
class CropSource:
    """One image ready for crop sampling.

    ``label`` is the image's class index for image-level labels; ``mask`` a
    label mask (0 unlabelled, k+1 for class k) for scribbles.
    """

    pyramid: list[torch.Tensor]
    pixel_size_um: float
    fov_range_um: tuple[float, float]
    label: Optional[int] = None
    mask_coords: Optional[dict[int, np.ndarray]] = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pyramid[0].shape[-2:])  # type: ignore[return-value]


def feasible_fov(
    shape: tuple[int, int],
    pixel_size_um: float,
    input_size: int,
    fov_range_um: Optional[tuple[float, float]],
    name: str = "image",
) -> tuple[float, float]:
    """The range of crop fields of view (micrometres) that fit inside an image.

    Without an explicit range: from native resolution (``input_size`` pixels)
    to the image's shorter side. With a range: its part that fits.

    Raises
    ------
    MicrostructureError
        If no crop of the requested range fits.
    """
    side_um = min(shape) * pixel_size_um
    if fov_range_um is None:
        lo = input_size * pixel_size_um
        if lo > side_um * (1 + 1e-6):
            raise MicrostructureError(
                f"{name} is {shape[0]} x {shape[1]} pixels, smaller than one {input_size} x "
                f"{input_size} crop; use a larger image or a smaller input_size "
                f"(at most {min(shape)})"
            )
        return lo, side_um
    lo, hi = float(fov_range_um[0]), float(fov_range_um[1])
    if lo > side_um * (1 + 1e-6):
        raise MicrostructureError(
            f"{name} covers {side_um:.3g} um on its shorter side, less than the smallest crop "
            f"field of view {lo:.3g} um; use a larger image, or lower the smallest field of view "
            f"(fov_um) to at most {side_um:.3g} um"
        )
    return lo, min(hi, side_um)


def draw_centres(
    rng: np.random.Generator, source: CropSource, crop_px: np.ndarray, class_id: Optional[int] = None
) -> np.ndarray:
    """Crop centres that keep each crop inside the image; on labelled pixels for masks."""
    h, w = source.shape
    half = np.minimum(crop_px / 2.0, min(h, w) / 2.0)
    n = len(crop_px)
    if source.mask_coords is not None and class_id is not None:
        coords = source.mask_coords[class_id]
        pick = coords[rng.integers(0, len(coords), n)] + 0.5
        cy = np.clip(pick[:, 0], half, h - half)
        cx = np.clip(pick[:, 1], half, w - half)
    else:
        cy = rng.uniform(half, h - half)
        cx = rng.uniform(half, w - half)
    return np.stack([cy, cx], -1)
