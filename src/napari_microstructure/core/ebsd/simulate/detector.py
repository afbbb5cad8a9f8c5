"""Detector geometry and the noise-free band image.

Projection centre ``(PCx, PCy, PCz)`` in the Bruker convention: PCx and PCy
are fractions of the pattern width and height from the top-left corner,
PCz is the source-to-screen distance in pattern heights. The screen is flat
(gnomonic projection). Sample tilt (about 70 degrees) and detector tilt
rotate the crystal frame relative to the screen; for uniformly random
orientations they fold into the orientation, and the simulator uses them
only to place the backscatter background lobe (:mod:`.noise`).

Realistic ranges (:data:`GEOMETRY_RANGES`) follow common set-ups: PCx
0.40-0.60, PCy 0.15-0.45, PCz 0.45-0.80; patterns 40-100 pixels high after
1x or 2x binning, square or 4:3.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from .kinematics import Reflectors

GEOMETRY_RANGES = {
    "pcx": (0.40, 0.60),
    "pcy": (0.15, 0.45),
    "pcz": (0.45, 0.80),
    "height": (40, 100),
    "wide_probability": 0.3,  # 4:3 detectors
    "max_fine_pixels": 128,  # binning only while the unbinned height stays below this
    "sample_tilt_deg": (65.0, 75.0),
    "detector_tilt_deg": (-5.0, 12.0),
}


@dataclasses.dataclass(frozen=True)
class DetectorGeometry:
    """One detector set-up.

    Attributes
    ----------
    shape : (int, int)
        Pattern height and width in (binned) pixels.
    binning : int
        Hardware binning factor (the screen is simulated at ``binning`` times the size).
    pc : (float, float, float)
        Projection centre (Bruker convention).
    sample_tilt_deg, detector_tilt_deg : float
        Tilts in degrees; they place the background lobe.
    """

    shape: tuple[int, int]
    binning: int
    pc: tuple[float, float, float]
    sample_tilt_deg: float = 70.0
    detector_tilt_deg: float = 0.0

    @property
    def fine_shape(self) -> tuple[int, int]:
        return (self.shape[0] * self.binning, self.shape[1] * self.binning)


def sample_geometry(rng: np.random.Generator, ranges: dict = GEOMETRY_RANGES) -> DetectorGeometry:
    """A random detector set-up within ``ranges``."""
    h = int(rng.integers(ranges["height"][0], ranges["height"][1] + 1))
    w = int(round(h * 4 / 3)) if rng.random() < ranges["wide_probability"] else h
    binning = 2 if 2 * max(h, w) <= ranges["max_fine_pixels"] and rng.random() < 0.5 else 1
    pc = (rng.uniform(*ranges["pcx"]), rng.uniform(*ranges["pcy"]), rng.uniform(*ranges["pcz"]))
    return DetectorGeometry((h, w), binning, tuple(float(v) for v in pc),
                            float(rng.uniform(*ranges["sample_tilt_deg"])),
                            float(rng.uniform(*ranges["detector_tilt_deg"])))


def detector_directions(shape: tuple[int, int], pc: Sequence[float]) -> np.ndarray:
    """Unit vectors from the source point to each detector pixel, (h*w, 3).

    ``pc = (PCx, PCy, PCz)``: fractions of the width and height from the
    top-left corner, and the detector distance in pattern heights. The
    detector frame: x to the right, y up, z from the screen towards the source.
    """
    h, w = shape
    pcx, pcy, pcz = pc
    j = (np.arange(w) + 0.5 - pcx * w) / h
    i = (pcy * h - (np.arange(h) + 0.5)) / h
    x, y = np.meshgrid(j, i)
    r = np.stack([x, y, np.full_like(x, pcz)], -1).reshape(-1, 3)
    return r / np.linalg.norm(r, axis=1, keepdims=True)


def band_image(refl: Reflectors, rotations: np.ndarray, directions: np.ndarray,
               batch: int = 64, normalise: bool = True) -> np.ndarray:
    """Noise-free kinematical band intensity, (n, n_pixels) float32, zero mean, unit std per pattern.

    ``normalise=False`` returns the weighted sum of the band profiles as it is.

    Parameters
    ----------
    refl : Reflectors
    rotations : ndarray (n, 3, 3)
        Crystal-to-detector rotations.
    directions : ndarray (n_pixels, 3) or (n, n_pixels, 3)
        Pixel directions, shared or one set per pattern (projection centre per pattern).

    Notes
    -----
    A pixel in direction ``r`` lies in the band of plane normal ``n`` when
    ``|r . n| < sin(theta_B)``; the edges are logistic with a softness of
    ``0.25 sin(theta_B) + 0.002``.
    """
    n = len(rotations)
    per_pattern = directions.ndim == 3
    n_pix = directions.shape[-2]
    out = np.empty((n, n_pix), np.float32)
    soft = (0.25 * refl.half_width + 0.002).astype(np.float32)
    hw = refl.half_width.astype(np.float32)
    w = refl.weight.astype(np.float32)
    dirs = directions.astype(np.float32)
    for start in range(0, n, batch):
        rot = rotations[start:start + batch]
        g = np.einsum("bij,nj->bni", rot, refl.normals).astype(np.float32)
        if per_pattern:
            t = np.abs(np.einsum("bni,bpi->bnp", g, dirs[start:start + batch]))
        else:
            t = np.abs(np.einsum("bni,pi->bnp", g, dirs))
        prof = 1.0 / (1.0 + np.exp(np.clip((t - hw[None, :, None]) / soft[None, :, None], -30, 30)))
        img = np.einsum("bnp,n->bp", prof, w)
        if normalise:
            img -= img.mean(1, keepdims=True)
            img /= img.std(1, keepdims=True) + 1e-6
        out[start:start + batch] = img
    return out
