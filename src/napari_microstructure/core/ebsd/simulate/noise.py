"""Acquisition: background, optics blur, shot and read noise, detector defects, digitisation.

For a noise-free band image ``B`` (zero mean, unit standard deviation) the
expected signal of an unbinned screen pixel is::

    counts * S(p) * D_k(p) * (1 + contrast * (PSF * B)(p))

with ``S`` the static background (a Gaussian backscatter lobe below the
projection centre whose position follows the tilts, times a ``cos**n``
vignetting of the screen), ``D_k`` a per-pattern dynamic background (a
linear ramp in a random direction: topography, grain-dependent
backscatter), ``PSF`` a Gaussian blur (phosphor and optics). The pixel
records a Poisson number of electrons; ``binning x binning`` pixels are
summed; read noise (Gaussian, in counts), a per-pixel flat-field gain and
hot pixels are added; then the camera scales (exposure fill of the bit
depth) and clips to ``uint8`` or 12-bit-in-``uint16``.

:data:`NOISE_RANGES` gives the ranges :func:`sample_acquisition` draws from.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .detector import DetectorGeometry

NOISE_RANGES = {
    "counts": (15.0, 3000.0),  # mean electrons per unbinned pixel at the lobe maximum (log-uniform)
    "read_noise": (0.3, 8.0),  # counts, after binning (log-uniform)
    "contrast": (0.08, 0.40),  # band amplitude relative to the background
    "blur_px": (0.0, 1.2),  # PSF standard deviation in binned pixels
    "lobe_width": (0.35, 1.0),  # in pattern heights
    "lobe_floor": (0.1, 0.5),  # background far from the lobe, relative to its maximum
    "vignetting_power": (0.0, 4.0),  # cos**n of the angle to the screen normal
    "dynamic_amplitude": (0.0, 0.15),  # per-pattern ramp amplitude
    "flat_field": (0.0, 0.03),  # per-pixel gain spread (standard deviation)
    "hot_fraction": (0.0, 5e-4),
    "fill": (0.3, 0.95),  # lobe maximum as a fraction of full range
    "uint16_probability": 0.4,
}


@dataclasses.dataclass(frozen=True)
class Acquisition:
    """Noise and background settings of one acquisition (see the module docstring)."""

    counts: float = 200.0
    read_noise: float = 1.0
    contrast: float = 0.25
    blur_px: float = 0.5
    lobe_width: float = 0.7
    lobe_floor: float = 0.25
    vignetting_power: float = 1.0
    dynamic_amplitude: float = 0.05
    flat_field: float = 0.01
    hot_fraction: float = 1e-4
    fill: float = 0.45
    dtype: str = "uint8"


def _log_uniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_acquisition(rng: np.random.Generator, ranges: dict = NOISE_RANGES) -> Acquisition:
    """Random acquisition settings within ``ranges``."""
    u = lambda k: float(rng.uniform(*ranges[k]))  # noqa: E731
    return Acquisition(
        counts=_log_uniform(rng, *ranges["counts"]), read_noise=_log_uniform(rng, *ranges["read_noise"]),
        contrast=u("contrast"), blur_px=u("blur_px"), lobe_width=u("lobe_width"),
        lobe_floor=u("lobe_floor"), vignetting_power=u("vignetting_power"),
        dynamic_amplitude=u("dynamic_amplitude"), flat_field=u("flat_field"),
        hot_fraction=u("hot_fraction"), fill=u("fill"),
        dtype="uint16" if rng.random() < ranges["uint16_probability"] else "uint8")


def _screen(geometry: DetectorGeometry):
    """Screen coordinates (pattern heights) of the unbinned pixels and the lobe centre."""
    h, w = geometry.fine_shape
    pcx, pcy, pcz = geometry.pc
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / h, indexing="ij")
    # the lobe sits below the projection centre, the more so the steeper the tilt
    tilt = np.deg2rad(geometry.sample_tilt_deg - 70.0 + geometry.detector_tilt_deg)
    cy = pcy + 0.15 + 0.6 * np.tan(tilt) * pcz
    cx = pcx * w / h
    return xx, yy, cx, cy


def static_background(geometry: DetectorGeometry, acquisition: Acquisition) -> np.ndarray:
    """Static background at the unbinned resolution, (H, W) float32 with maximum 1."""
    acq = acquisition
    xx, yy, cx, cy = _screen(geometry)
    lobe = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * acq.lobe_width ** 2))
    pcz = geometry.pc[2]
    cos = pcz / np.sqrt((xx - geometry.pc[0] * xx.shape[1] / xx.shape[0]) ** 2
                        + (yy - geometry.pc[1]) ** 2 + pcz ** 2)
    static = (acq.lobe_floor + (1 - acq.lobe_floor) * lobe / lobe.max()) * cos ** acq.vignetting_power
    return (static / static.max()).astype(np.float32)


def acquire(bands: np.ndarray, geometry: DetectorGeometry, acquisition: Acquisition,
            rng: np.random.Generator, defects_rng: np.random.Generator | None = None) -> np.ndarray:
    """Turn noise-free band images into recorded patterns.

    Parameters
    ----------
    bands : ndarray (n, H, W) float
        Band images at the unbinned resolution ``geometry.fine_shape``, zero
        mean and unit standard deviation per pattern.
    geometry : DetectorGeometry
    acquisition : Acquisition
    rng : numpy Generator
        Shot and read noise, dynamic background.
    defects_rng : numpy Generator, optional
        Fixed-pattern defects (flat field, hot pixels) of the camera; give the
        same seed for patterns of one camera. Default: ``rng``.

    Returns
    -------
    ndarray (n, h, w) uint8 or uint16
    """
    acq = acquisition
    defects_rng = rng if defects_rng is None else defects_rng
    n = len(bands)
    b = geometry.binning
    h, w = geometry.shape
    xx, yy, _, _ = _screen(geometry)
    static = static_background(geometry, acq)
    if acq.blur_px > 0:
        s = acq.blur_px * b
        bands = ndimage.gaussian_filter(bands, sigma=(0, s, s), mode="nearest", truncate=3.0)
    angle = rng.uniform(0, 2 * np.pi, n)
    amp = rng.uniform(0, acq.dynamic_amplitude, n)
    ramp = (np.cos(angle)[:, None, None] * (xx - xx.mean())[None]
            + np.sin(angle)[:, None, None] * (yy - yy.mean())[None])
    dynamic = np.clip(1.0 + 2.0 * amp[:, None, None] * ramp, 0.2, None)
    mean = acq.counts * static[None] * dynamic * np.clip(1.0 + acq.contrast * bands, 0.0, None)
    electrons = rng.poisson(mean).astype(np.float32)
    if b > 1:
        electrons = electrons.reshape(n, h, b, w, b).sum((2, 4))
    gain = 1.0 + defects_rng.normal(0, acq.flat_field, (h, w)).astype(np.float32)
    signal = electrons * gain[None] + rng.normal(0, acq.read_noise, electrons.shape).astype(np.float32)
    full = acq.counts * b * b  # expected counts at the lobe maximum
    dtype = np.dtype(acq.dtype)
    top = 255.0 if dtype == np.uint8 else 4095.0
    image = signal * (acq.fill * top / full)
    n_hot = defects_rng.binomial(h * w, acq.hot_fraction)
    if n_hot:
        hot = defects_rng.choice(h * w, n_hot, replace=False)
        image.reshape(n, -1)[:, hot] = top
    return np.clip(np.rint(image), 0, top).astype(dtype)
