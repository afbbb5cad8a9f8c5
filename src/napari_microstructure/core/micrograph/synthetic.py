"""Generated micrographs of steel-like microstructures at a physical scale.

The sample data, the demo, the tests and the benchmarks use these images. Each
class is drawn from a simple physical recipe with features sized in
micrometres, so the same class can be rendered at any pixel size:

- ``ferrite``: equiaxed grains (a Voronoi tessellation, ~8 um), grey levels
  varying per grain (etch contrast), dark grain boundaries.
- ``pearlite``: colonies (~12 um) of alternating ferrite/cementite lamellae,
  spacing ~0.8 um, a random orientation per colony.
- ``spheroidite``: a bright matrix with dark spheroidised carbides, radius ~0.35 um.
- ``martensite``: packets of thin parallel laths (~0.4 um wide, up to 8 um long)
  at a few orientations.
- ``porous`` (for "none of these" tests): a smooth matrix with dark round pores
  of very different sizes and soft shading; not among the trained classes.

All images get vignetting-like illumination gradients and noise. They are not
meant to be realistic in detail, only to have the property real micrographs
have: the class is a texture with a characteristic physical length scale.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

CLASSES = ("ferrite", "pearlite", "spheroidite", "martensite", "porous")
TRAINING_CLASSES = ("ferrite", "pearlite", "spheroidite", "martensite")


def _voronoi_labels(shape, pixel_size_um, cell_um, rng):
    h, w = shape
    area_um2 = h * w * pixel_size_um**2
    n = max(2, int(area_um2 / cell_um**2 * 1.2))
    seeds = rng.uniform(0, 1, size=(n, 2)) * np.array([h, w])
    yy, xx = np.mgrid[0:h, 0:w]
    tree = cKDTree(seeds)
    d, lab = tree.query(np.stack([yy.ravel(), xx.ravel()], -1), k=2)
    return lab[:, 0].reshape(h, w), (d[:, 1] - d[:, 0]).reshape(h, w), n


def _illumination(shape, rng):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a, b, c = rng.normal(0, 0.15, 3)
    return 1.0 + a * (yy - 0.5) + b * (xx - 0.5) + c * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2)


def _ferrite(shape, p, rng):
    lab, gap, n = _voronoi_labels(shape, p, 8.0, rng)
    tones = rng.uniform(0.6, 0.9, n)
    img = tones[lab]
    boundary = np.exp(-((gap * p) / 0.25) ** 2)
    return img * (1 - 0.7 * boundary)


def _pearlite(shape, p, rng):
    lab, gap, n = _voronoi_labels(shape, p, 12.0, rng)
    theta = rng.uniform(0, np.pi, n)
    spacing = rng.uniform(0.6, 1.0, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] * p
    proj = xx * np.cos(theta[lab]) + yy * np.sin(theta[lab])
    lamellae = 0.5 + 0.5 * np.sin(2 * np.pi * proj / spacing[lab] + phase[lab])
    img = 0.35 + 0.45 * lamellae
    return img * (1 - 0.5 * np.exp(-((gap * p) / 0.3) ** 2))


def _discs(shape, p, rng, radius_um, density_per_um2, radius_spread=0.3):
    h, w = shape
    n = rng.poisson(h * w * p * p * density_per_um2)
    img = np.zeros(shape)
    ys, xs = rng.uniform(0, h, n), rng.uniform(0, w, n)
    radii = np.maximum(radius_um * np.exp(rng.normal(0, radius_spread, n)) / p, 0.5)
    for y, x, r in zip(ys, xs, radii):
        y0, y1 = int(max(0, y - r - 2)), int(min(h, y + r + 3))
        x0, x1 = int(max(0, x - r - 2)), int(min(w, x + r + 3))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.sqrt((yy - y) ** 2 + (xx - x) ** 2)
        img[y0:y1, x0:x1] = np.maximum(img[y0:y1, x0:x1], np.clip(r + 0.5 - d, 0, 1))
    return img


def _spheroidite(shape, p, rng):
    carbides = _discs(shape, p, rng, 0.35, 0.6)
    return 0.85 - 0.6 * carbides


def _martensite(shape, p, rng):
    h, w = shape
    lab, gap, n = _voronoi_labels(shape, p, 15.0, rng)
    base_angle = rng.uniform(0, np.pi, n)
    img = np.full(shape, 0.55)
    n_laths = rng.poisson(h * w * p * p * 0.35)
    ys, xs = rng.uniform(0, h, n_laths).astype(int), rng.uniform(0, w, n_laths).astype(int)
    packet = lab[ys.clip(0, h - 1), xs.clip(0, w - 1)]
    angles = base_angle[packet] + rng.choice([0.0, np.pi / 3, -np.pi / 3], n_laths)
    lengths = rng.uniform(2.0, 8.0, n_laths) / p
    tones = rng.uniform(-0.3, 0.3, n_laths)
    width = max(0.4 / p, 0.7)
    canvas = np.zeros(shape)
    for y, x, a, length, t in zip(ys, xs, angles, lengths, tones):
        steps = np.linspace(-length / 2, length / 2, max(2, int(length)))
        yy = np.clip((y + steps * np.sin(a)).astype(int), 0, h - 1)
        xx = np.clip((x + steps * np.cos(a)).astype(int), 0, w - 1)
        canvas[yy, xx] = t
    canvas = ndimage.grey_dilation(canvas, size=(int(np.ceil(width)),) * 2) + ndimage.grey_erosion(
        canvas, size=(int(np.ceil(width)),) * 2
    )
    return img + 0.5 * canvas


def _porous(shape, p, rng):
    pores = np.maximum(_discs(shape, p, rng, 1.5, 0.02, radius_spread=0.8), _discs(shape, p, rng, 0.2, 0.1))
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, shape), 3.0 / p)
    smooth = smooth / (np.abs(smooth).max() + 1e-9)
    return 0.7 + 0.1 * smooth - 0.55 * pores


_RECIPES = {
    "ferrite": _ferrite,
    "pearlite": _pearlite,
    "spheroidite": _spheroidite,
    "martensite": _martensite,
    "porous": _porous,
}


def make_micrograph(
    kind: str,
    shape: tuple[int, int] = (256, 256),
    pixel_size_um: float = 0.1,
    seed: Optional[int] = None,
    noise: float = 0.04,
    dtype: type = np.uint8,
) -> np.ndarray:
    """Render one generated micrograph.

    Parameters
    ----------
    kind : str
        One of :data:`CLASSES`.
    shape : (int, int)
        Image size in pixels.
    pixel_size_um : float
        Micrometres per pixel; features keep their physical size.
    seed : int, optional
    noise : float
        Standard deviation of additive Gaussian noise (intensity units 0-1).
    dtype : numpy dtype
        ``np.uint8`` (0-255), ``np.uint16`` (0-65535) or a float type (0-1).
    """
    if kind not in _RECIPES:
        raise ValueError(f"unknown microstructure {kind!r}; choose one of {', '.join(CLASSES)}")
    rng = np.random.default_rng(seed)
    img = _RECIPES[kind](tuple(shape), float(pixel_size_um), rng)
    img = ndimage.gaussian_filter(img, max(0.5, 0.05 / pixel_size_um))  # optics
    img = img * _illumination(shape, rng) + rng.normal(0, noise, shape)
    img = np.clip(img, 0, 1)
    if np.dtype(dtype) == np.uint8:
        return (img * 255).round().astype(np.uint8)
    if np.dtype(dtype) == np.uint16:
        return (img * 65535).round().astype(np.uint16)
    return img.astype(dtype)


def make_dataset(
    classes=TRAINING_CLASSES,
    per_class: int = 4,
    shape: tuple[int, int] = (256, 256),
    pixel_size_range_um: tuple[float, float] = (0.08, 0.16),
    seed: int = 0,
) -> tuple[list[np.ndarray], list[str], list[float]]:
    """A labelled set: images, class names and pixel sizes (log-uniform in the range)."""
    rng = np.random.default_rng(seed)
    images, labels, sizes = [], [], []
    for c in classes:
        for _ in range(per_class):
            p = float(np.exp(rng.uniform(*np.log(pixel_size_range_um))))
            images.append(make_micrograph(c, shape, p, seed=int(rng.integers(2**31))))
            labels.append(c)
            sizes.append(p)
    return images, labels, sizes


def make_composite(
    left: str, right: str, shape: tuple[int, int] = (512, 512), pixel_size_um: float = 0.1,
    seed: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An image whose left half is ``left`` and right half ``right``.

    Returns the uint8 image and a truth mask (0 left, 1 right).
    """
    rng = np.random.default_rng(seed)
    a = make_micrograph(left, shape, pixel_size_um, seed=int(rng.integers(2**31)))
    b = make_micrograph(right, shape, pixel_size_um, seed=int(rng.integers(2**31)))
    truth = np.zeros(shape, dtype=np.uint8)
    truth[:, shape[1] // 2 :] = 1
    return np.where(truth == 1, b, a), truth
