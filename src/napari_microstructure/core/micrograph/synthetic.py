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
- ``austenite``: equiaxed grains (~20 um) crossed by straight annealing-twin
  bands (parallel boundaries, a different grey level inside).
- ``nodular``: ductile cast iron, a ferrite matrix (grains ~15 um) with dark,
  round graphite nodules (radius ~8 um).

Untrained classes for "none of these" (each shares local features with a
trained one, so that rejecting it takes more than noticing a new grey level):

- ``porous``: a smooth matrix with dark round pores of very different sizes
  (next to spheroidite's carbides and the nodules).
- ``bainite``: sheaves of long parallel laths with rows of fine carbides
  between them (next to martensite's laths).
- ``widmanstatten``: ferrite grains from whose boundaries parallel side plates
  grow (next to ferrite's boundaries and pearlite's lamellae).

Pixel integration: a feature finer than a pixel loses its contrast as an
optical system would (a Gaussian transfer function of the pixel size), rather
than aliasing into a pattern no microscope records.

Degradations (``modality``): ``None`` keeps the clean rendering (a mild
illumination gradient and noise); ``"light"`` adds the faults of light
micrographs (uneven illumination and etching, scratches, dust, defocus, noise,
JPEG); ``"sem"`` those of SEM images (charging streaks, scan-line jitter,
edge brightness, dust, defocus, shot noise, JPEG); ``"random"`` picks one per
image. They are meant to have the properties of real micrographs that matter
for recognition, not to be realistic in detail.
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

#: Classes used by the sample data and most tests (the first four) and "porous" (never trained).
CLASSES = ("ferrite", "pearlite", "spheroidite", "martensite", "porous",
           "austenite", "nodular", "bainite", "widmanstatten")
TRAINING_CLASSES = ("ferrite", "pearlite", "spheroidite", "martensite")
#: The open-set benchmark: trained classes, and untrained ones that share local features with them.
KNOWN_CLASSES = ("ferrite", "pearlite", "spheroidite", "martensite", "austenite", "nodular")
UNKNOWN_CLASSES = ("porous", "bainite", "widmanstatten")
MODALITIES = (None, "light", "sem", "random")


def _voronoi_labels(shape, pixel_size_um, cell_um, rng):
    h, w = shape
    area_um2 = h * w * pixel_size_um**2
    n = max(2, int(area_um2 / cell_um**2 * 1.2))
    seeds = rng.uniform(0, 1, size=(n, 2)) * np.array([h, w])
    yy, xx = np.mgrid[0:h, 0:w]
    tree = cKDTree(seeds)
    d, lab = tree.query(np.stack([yy.ravel(), xx.ravel()], -1), k=2)
    return lab[:, 0].reshape(h, w), (d[:, 1] - d[:, 0]).reshape(h, w), n


def _mtf(p: float, period_um) -> np.ndarray:
    """Contrast left of a periodic feature of ``period_um`` after pixel integration (pixel ``p`` um)."""
    return np.exp(-0.5 * (np.pi * p / np.asarray(period_um, dtype=np.float64)) ** 2)


def _line_profile(gap_px, p, width_um):
    """A dark line of ``width_um`` along zero of ``gap_px``, integrated over pixels."""
    sigma = np.sqrt((width_um / p) ** 2 + 0.25)
    return np.minimum(1.0, width_um / p) * np.exp(-(gap_px / sigma) ** 2)


def _illumination(shape, rng):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a, b, c = rng.normal(0, 0.15, 3)
    return 1.0 + a * (yy - 0.5) + b * (xx - 0.5) + c * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2)


def _ferrite(shape, p, rng):
    lab, gap, n = _voronoi_labels(shape, p, 8.0, rng)
    tones = rng.uniform(0.6, 0.9, n)
    img = tones[lab]
    return img * (1 - 0.7 * _line_profile(gap, p, 0.25))


def _lamellae(shape, p, lab, n, rng, spacing_range):
    theta = rng.uniform(0, np.pi, n)
    spacing = rng.uniform(*spacing_range, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] * p
    proj = xx * np.cos(theta[lab]) + yy * np.sin(theta[lab])
    wave = np.sin(2 * np.pi * proj / spacing[lab] + phase[lab])
    return 0.5 + 0.5 * wave * _mtf(p, spacing)[lab]


def _pearlite(shape, p, rng):
    lab, gap, n = _voronoi_labels(shape, p, 12.0, rng)
    img = 0.35 + 0.45 * _lamellae(shape, p, lab, n, rng, (0.6, 1.0))
    return img * (1 - 0.5 * _line_profile(gap, p, 0.3))


def _discs(shape, p, rng, radius_um, density_per_um2, radius_spread=0.3):
    """Coverage (0-1) of random discs; discs under ~1.5 pixels are splatted by area."""
    h, w = shape
    n = rng.poisson(h * w * p * p * density_per_um2)
    img = np.zeros(shape)
    ys, xs = rng.uniform(0, h, n), rng.uniform(0, w, n)
    radii = radius_um * np.exp(rng.normal(0, radius_spread, n)) / p
    small = radii < 1.5
    if small.any():
        yi = np.clip(ys[small].astype(int), 0, h - 1)
        xi = np.clip(xs[small].astype(int), 0, w - 1)
        np.add.at(img, (yi, xi), np.pi * radii[small] ** 2)
    for y, x, r in zip(ys[~small], xs[~small], radii[~small]):
        y0, y1 = int(max(0, y - r - 2)), int(min(h, y + r + 3))
        x0, x1 = int(max(0, x - r - 2)), int(min(w, x + r + 3))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.sqrt((yy - y) ** 2 + (xx - x) ** 2)
        img[y0:y1, x0:x1] = np.maximum(img[y0:y1, x0:x1], np.clip(r + 0.5 - d, 0, 1))
    return np.clip(img, 0, 1)


def _spheroidite(shape, p, rng):
    carbides = _discs(shape, p, rng, 0.35, 0.6)
    return 0.85 - 0.6 * carbides


def _segments(shape, p, ys, xs, angles, lengths_um, values, width_um):
    """Straight segments (centre, angle, length) drawn with ``values``, ``width_um`` wide."""
    h, w = shape
    canvas = np.zeros(shape)
    if len(ys) == 0:
        return canvas
    steps_n = np.maximum(2, np.ceil(lengths_um / p)).astype(int)
    owner = np.repeat(np.arange(len(ys)), steps_n)
    start = np.cumsum(steps_n) - steps_n
    t = (np.arange(owner.size) - start[owner]) / (steps_n[owner] - 1) - 0.5
    along = t * lengths_um[owner] / p
    yy = np.clip((ys[owner] + along * np.sin(angles[owner])).astype(int), 0, h - 1)
    xx = np.clip((xs[owner] + along * np.cos(angles[owner])).astype(int), 0, w - 1)
    canvas[yy, xx] = values[owner]
    width_px = width_um / p
    if width_px >= 1.5:
        size = (int(np.ceil(width_px)),) * 2
        canvas = ndimage.grey_dilation(canvas, size=size) + ndimage.grey_erosion(canvas, size=size)
    else:
        canvas = canvas * min(1.0, width_px)
    return canvas


def _martensite(shape, p, rng):
    h, w = shape
    lab, gap, n = _voronoi_labels(shape, p, 15.0, rng)
    base_angle = rng.uniform(0, np.pi, n)
    n_laths = rng.poisson(h * w * p * p * 0.35)
    ys, xs = rng.uniform(0, h, n_laths), rng.uniform(0, w, n_laths)
    packet = lab[ys.astype(int).clip(0, h - 1), xs.astype(int).clip(0, w - 1)]
    angles = base_angle[packet] + rng.choice([0.0, np.pi / 3, -np.pi / 3], n_laths)
    lengths = rng.uniform(2.0, 8.0, n_laths)
    tones = rng.uniform(-0.3, 0.3, n_laths)
    return 0.55 + 0.5 * _segments(shape, p, ys, xs, angles, lengths, tones, 0.4)


def _austenite(shape, p, rng):
    h, w = shape
    lab, gap, n = _voronoi_labels(shape, p, 20.0, rng)
    tones = rng.uniform(0.55, 0.9, n)
    img = tones[lab]
    # one or two straight twin bands per grain: a band of another grey level
    theta = rng.uniform(0, np.pi, n)
    spacing = rng.uniform(4.0, 9.0, n)
    phase = rng.uniform(0, 1, n)
    yy, xx = np.mgrid[0:h, 0:w] * p
    proj = (xx * np.cos(theta[lab]) + yy * np.sin(theta[lab])) / spacing[lab] + phase[lab]
    frac = proj - np.floor(proj)
    band = (frac < 0.3).astype(np.float64)
    twin_tone = rng.uniform(-0.25, 0.25, n)
    img = img + band * twin_tone[lab] * rng.uniform(0.5, 1.0, n)[lab]
    edge = np.minimum(frac, np.abs(frac - 0.3)) * spacing[lab] / p
    img = img * (1 - 0.4 * _line_profile(edge, p, 0.2))
    return img * (1 - 0.7 * _line_profile(gap, p, 0.3))


def _nodular(shape, p, rng):
    lab, gap, n = _voronoi_labels(shape, p, 15.0, rng)
    matrix = rng.uniform(0.7, 0.9, n)[lab] * (1 - 0.5 * _line_profile(gap, p, 0.25))
    nodules = _discs(shape, p, rng, 8.0, 0.0012, radius_spread=0.25)
    return matrix * (1 - 0.85 * nodules)


def _porous(shape, p, rng):
    pores = np.maximum(_discs(shape, p, rng, 1.5, 0.02, radius_spread=0.8), _discs(shape, p, rng, 0.2, 0.1))
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, shape), min(3.0 / p, 50.0))
    smooth = smooth / (np.abs(smooth).max() + 1e-9)
    return 0.7 + 0.1 * smooth - 0.55 * pores


def _bainite(shape, p, rng):
    h, w = shape
    lab, gap, n = _voronoi_labels(shape, p, 25.0, rng)
    angle = rng.uniform(0, np.pi, n)
    n_laths = rng.poisson(h * w * p * p * 0.12)
    ys, xs = rng.uniform(0, h, n_laths), rng.uniform(0, w, n_laths)
    packet = lab[ys.astype(int).clip(0, h - 1), xs.astype(int).clip(0, w - 1)]
    angles = angle[packet] + rng.normal(0, 0.05, n_laths)
    lengths = rng.uniform(8.0, 20.0, n_laths)
    laths = _segments(shape, p, ys, xs, angles, lengths, rng.uniform(0.1, 0.3, n_laths), 0.6)
    # rows of fine carbides aligned with the sheaf
    n_c = rng.poisson(h * w * p * p * 0.5)
    cy, cx = rng.uniform(0, h, n_c), rng.uniform(0, w, n_c)
    cpack = lab[cy.astype(int).clip(0, h - 1), cx.astype(int).clip(0, w - 1)]
    carbides = _segments(shape, p, cy, cx, angle[cpack] + np.pi / 3, np.full(n_c, 0.4),
                         np.full(n_c, 1.0), 0.15)
    return 0.6 + laths - 0.45 * np.clip(carbides, 0, 1)


def _widmanstatten(shape, p, rng):
    h, w = shape
    lab, gap, n = _voronoi_labels(shape, p, 40.0, rng)
    tones = rng.uniform(0.3, 0.5, n)       # dark pearlitic grains ...
    theta = rng.uniform(0, np.pi, n)
    spacing = rng.uniform(2.5, 4.0, n)
    yy, xx = np.mgrid[0:h, 0:w] * p
    proj = (xx * np.cos(theta[lab]) + yy * np.sin(theta[lab])) / spacing[lab]
    frac = proj - np.floor(proj)
    reach = rng.uniform(6.0, 15.0, n)      # ... with bright ferrite side plates from the boundaries
    plate = (frac < 0.35) & (gap * p < reach[lab] * (1 - 0.6 * np.abs(frac - 0.17) / 0.17))
    plate = plate.astype(np.float64) * _mtf(p, spacing)[lab]
    allotriomorph = np.exp(-((gap * p) / 1.5) ** 2)   # ferrite film along the prior boundaries
    img = tones[lab] + (0.85 - tones[lab]) * np.maximum(plate, allotriomorph)
    return img


_RECIPES = {
    "ferrite": _ferrite,
    "pearlite": _pearlite,
    "spheroidite": _spheroidite,
    "martensite": _martensite,
    "porous": _porous,
    "austenite": _austenite,
    "nodular": _nodular,
    "bainite": _bainite,
    "widmanstatten": _widmanstatten,
}


# ------------------------------------------------------------------ degradations
def _smooth_field(shape, rng, scale_frac: float) -> np.ndarray:
    """A smooth random field (zero mean, unit max) varying over ``scale_frac`` of the image."""
    h, w = shape
    gh, gw = max(2, int(np.ceil(1 / scale_frac)) + 1), max(2, int(np.ceil(w / h / scale_frac)) + 1)
    coarse = rng.normal(0, 1, (gh, gw))
    field = ndimage.zoom(coarse, (h / gh, w / gw), order=3)[:h, :w]
    field = np.pad(field, ((0, h - field.shape[0]), (0, w - field.shape[1])), mode="edge")
    return field / (np.abs(field).max() + 1e-9)


def _scratches(img, rng, dark: bool):
    h, w = img.shape
    out = img.copy()
    for _ in range(rng.poisson(3)):
        a = rng.uniform(0, np.pi)
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        length = rng.uniform(0.3, 1.5) * max(h, w)
        n = int(length)
        t = np.linspace(-0.5, 0.5, n) * length
        yy = (y0 + t * np.sin(a)).astype(int)
        xx = (x0 + t * np.cos(a)).astype(int)
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        line = np.zeros((h, w))
        line[yy[ok], xx[ok]] = 1.0
        line = ndimage.gaussian_filter(line, rng.uniform(0.6, 1.5)) * 2.5
        out = out + (-1 if dark else 1) * rng.uniform(0.1, 0.3) * np.clip(line, 0, 1)
    return out


def _dust(img, rng, bright: bool):
    h, w = img.shape
    out = img
    for _ in range(rng.poisson(2)):
        r = rng.uniform(0.01, 0.05) * min(h, w)
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        y0, y1, x0, x1 = int(max(0, y - 3 * r)), int(min(h, y + 3 * r)), int(max(0, x - 3 * r)), int(min(w, x + 3 * r))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        blob = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * r * r))
        out = out.copy() if out is img else out
        s = rng.uniform(0.2, 0.5)
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - s * blob) + (s * blob if bright else 0)
    return out


def _charging(img, rng):
    h, w = img.shape
    out = img.copy()
    for _ in range(rng.poisson(4)):
        r = int(rng.integers(0, h))
        thick = int(rng.integers(1, max(2, h // 150)))
        x0 = rng.uniform(0, w)
        decay = rng.uniform(0.05, 0.4) * w
        xx = np.arange(w)
        profile = np.where(xx >= x0, np.exp(-(xx - x0) / decay), 0.0)
        out[r : r + thick] += rng.uniform(0.1, 0.35) * profile
    return out


def _jpeg(img01, rng) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(img01, 0, 1) * 255).round().astype(np.uint8)).save(
        buf, format="JPEG", quality=int(rng.integers(35, 90)))
    buf.seek(0)
    return np.asarray(Image.open(buf), dtype=np.float64) / 255.0


def degrade(img: np.ndarray, modality: str, rng: np.random.Generator) -> np.ndarray:
    """Apply light-microscope or SEM faults to a clean rendering in [0, 1] (see the module text)."""
    h, w = img.shape
    if modality == "random":
        modality = "light" if rng.random() < 0.5 else "sem"
    if modality not in ("light", "sem"):
        raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")
    # uneven etching: contrast varies smoothly over the surface
    etch = 1.0 + rng.uniform(0.1, 0.4) * _smooth_field((h, w), rng, rng.uniform(0.3, 0.8))
    img = 0.6 + (img - 0.6) * etch
    img = ndimage.gaussian_filter(img, rng.uniform(0.0, 1.8))       # defocus
    if modality == "light":
        illum = 1.0 + rng.uniform(0.1, 0.35) * _smooth_field((h, w), rng, rng.uniform(0.5, 1.0))
        img = img * illum
        if rng.random() < 0.7:
            img = _scratches(img, rng, dark=True)
        img = _dust(img, rng, bright=False)
        img = img + rng.normal(0, rng.uniform(0.01, 0.05), img.shape)
        img = (img - img.mean()) * rng.uniform(0.7, 1.3) + img.mean() + rng.normal(0, 0.08)
    else:
        sob = np.hypot(ndimage.sobel(img, 0), ndimage.sobel(img, 1))
        img = img + rng.uniform(0.0, 0.4) * sob                      # edge brightness
        img = img * (1.0 + rng.uniform(0.05, 0.2) * _smooth_field((h, w), rng, 0.7))
        if rng.random() < 0.7:
            img = _charging(img, rng)
        img = _dust(img, rng, bright=True)
        img = img + rng.normal(0, 0.03, (h, 1))                       # scan-line offsets
        lam = rng.uniform(30, 200)                                     # shot noise
        img = rng.poisson(np.clip(img, 0, 2) * lam) / lam
        if rng.random() < 0.5:
            img = 1.0 - 0.8 * (1.0 - img)                              # lower contrast
    img = np.clip(img, 0, 1)
    if rng.random() < 0.7:
        img = _jpeg(img, rng)
    return img


def make_micrograph(
    kind: str,
    shape: tuple[int, int] = (256, 256),
    pixel_size_um: float = 0.1,
    seed: Optional[int] = None,
    noise: float = 0.04,
    dtype: type = np.uint8,
    modality: Optional[str] = None,
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
    modality : {None, "light", "sem", "random"}
        Degradations of a real instrument on top of the clean rendering (see the module text).
    """
    if kind not in _RECIPES:
        raise ValueError(f"unknown microstructure {kind!r}; choose one of {', '.join(CLASSES)}")
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")
    rng = np.random.default_rng(seed)
    img = _RECIPES[kind](tuple(shape), float(pixel_size_um), rng)
    img = ndimage.gaussian_filter(img, max(0.5, 0.05 / pixel_size_um))  # optics
    img = img * _illumination(shape, rng) + rng.normal(0, noise, shape)
    img = np.clip(img, 0, 1)
    if modality is not None:
        img = degrade(img, modality, rng)
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
    modality: Optional[str] = None,
) -> tuple[list[np.ndarray], list[str], list[float]]:
    """A labelled set: images, class names and pixel sizes (log-uniform in the range)."""
    rng = np.random.default_rng(seed)
    images, labels, sizes = [], [], []
    for c in classes:
        for _ in range(per_class):
            p = float(np.exp(rng.uniform(*np.log(pixel_size_range_um))))
            images.append(make_micrograph(c, shape, p, seed=int(rng.integers(2**31)), modality=modality))
            labels.append(c)
            sizes.append(p)
    return images, labels, sizes


def make_composite(
    left: str, right: str, shape: tuple[int, int] = (512, 512), pixel_size_um: float = 0.1,
    seed: Optional[int] = None, modality: Optional[str] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An image whose left half is ``left`` and right half ``right``.

    Both halves share one instrument's degradations when ``modality`` is given.
    Returns the uint8 image and a truth mask (0 left, 1 right).
    """
    rng = np.random.default_rng(seed)
    a = make_micrograph(left, shape, pixel_size_um, seed=int(rng.integers(2**31)), dtype=np.float64)
    b = make_micrograph(right, shape, pixel_size_um, seed=int(rng.integers(2**31)), dtype=np.float64)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[:, shape[1] // 2 :] = 1
    img = np.where(truth == 1, b, a)
    if modality is not None:
        img = degrade(img, modality, np.random.default_rng(int(rng.integers(2**31))))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), truth
