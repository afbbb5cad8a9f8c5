"""The one physical-scale crop pipeline of the micrograph engine.

Every crop the engine sees is made here: training, validation, calibration
and prediction (:mod:`.fewshot`), probability maps (:mod:`.probmap`, through
:meth:`Micrograph.resampler`), and the explanations (descriptor maps,
attributions and their background crops, feature-reduction reports).

- :class:`Micrograph` validates an image and its pixel size, normalises its
  intensities **once** with the one rule (:func:`normalise_in_place`) and holds
  its factor-2 pyramid.
- A crop covers a field of view of ``fov_um`` micrometres and is resampled to
  a fixed network input of ``input_size`` x ``input_size`` pixels, so its
  resolution is ``input_size / fov_um`` pixels per micrometre; that number
  (as log10) is the network's magnification input (Larmuseau et al. 2020).
- Resampling reads from the pyramid level whose pixel size is just finer than
  the crop's output pixel, so crops that shrink an image many times are
  anti-aliased. Rotation, mirroring and an affine warp are folded into the
  same sampling grid and cost nothing extra.
- :class:`CropSampler` draws crops with an :class:`~.augment.AugmentConfig`;
  :meth:`~.augment.AugmentConfig.at_test_time` gives the test-time version of
  a training configuration, and :func:`dihedral_transforms` the quarter
  turns and mirrors a probability map may average over: both honour the
  training switches ``rotation`` and ``mirror``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MicrostructureError
from .augment import AugmentConfig, augment_photometric
from .images import as_grey_image, check_mask, check_pixel_size

#: Intensity percentiles mapped to 0 and 1 by the normalisation rule.
PERCENTILES = (0.5, 99.5)
#: Above this many pixels, the percentiles are taken on a regular subsample.
PERCENTILE_SAMPLE = 1 << 22
#: Pixels a window's percentiles are taken on at most (a regular subsample), in local normalisation.
LOCAL_SAMPLE = 1 << 16
#: Local normalisation stretches a region's intensity range at most this many times the whole image's.
LOCAL_STRETCH_MAX = 2.0
#: Smallest side of a normalisation window in pixels: 16 x 16 = 256 pixels, about one pixel beyond
#: each of the percentiles 0.5 and 99.5 (a smaller window normalises pixel by pixel, and takes long).
MIN_WINDOW_PX = 16
#: Quarter turns and mirror of test-time augmentation on probability maps, in order.
DIHEDRAL = ((0, False), (0, True), (2, False), (2, True), (1, False), (3, False), (1, True), (3, True))


def normalise_in_place(grey: np.ndarray, valid: Optional[np.ndarray] = None,
                       window_px: Optional[float] = None) -> np.ndarray:
    """The one intensity rule: percentiles 0.5-99.5 of the valid pixels to [0, 1].

    Parameters
    ----------
    grey : numpy.ndarray
        2-D float32, changed in place.
    valid : numpy.ndarray of bool, optional
        Pixels that count (default: the finite ones). The percentiles are
        taken on every valid pixel, or on a regular subsample of at least
        :data:`PERCENTILE_SAMPLE` pixels for larger images; values are clipped
        to [0, 1]; pixels that are not valid become 0.5 (mid-grey); a constant
        image becomes 0.5 everywhere.
    window_px : float, optional
        Normalise each region on its neighbourhood instead of the whole
        image (probability maps, whose images may hold several
        microstructures: a training image held one, normalised on itself).
        The percentiles are taken in square windows of this side, centred
        every half window, and interpolated bilinearly between the centres;
        a window's range is widened towards the whole image's where it is
        under 1 / :data:`LOCAL_STRETCH_MAX` of it, so that a flat region
        (one grain) is not stretched into noise. Images no larger than one
        window get the whole-image rule.

    Returns
    -------
    numpy.ndarray
        ``grey``.
    """
    if not (isinstance(grey, np.ndarray) and grey.ndim == 2 and grey.dtype.kind == "f"):
        got = (f"a {grey.ndim}-D {grey.dtype} array" if isinstance(grey, np.ndarray)
               else f"a {type(grey).__name__}")
        raise MicrostructureError(
            f"grey must be a 2-D float array (it is normalised in place), got {got}; pass one 2-D image "
            "converted with .astype(np.float32)"
        )
    if valid is None:
        valid = np.isfinite(grey)
    elif np.shape(valid) != grey.shape:
        raise MicrostructureError(
            f"valid has shape {np.shape(valid)} but the image has shape {grey.shape}; give a mask of the "
            "image's shape (True for pixels that count), or None for the finite pixels"
        )
    window_px = check_window(window_px, "window_px", 1.0)
    if window_px is not None and max(grey.shape) > window_px:
        return _normalise_local(grey, valid, float(window_px))
    all_valid = bool(valid.all())
    sample = None
    if grey.size > PERCENTILE_SAMPLE:
        step = int(math.ceil(math.sqrt(grey.size / PERCENTILE_SAMPLE)))
        sample = grey[::step, ::step][valid[::step, ::step]]
    if sample is None or sample.size == 0:
        # memory: one float32 scratch copy (the percentile's own, or the valid pixels')
        sample = grey if all_valid else grey[valid]
    lo, hi = np.percentile(sample, PERCENTILES, overwrite_input=sample is not grey) if sample.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        grey.fill(0.5)
    else:
        grey -= np.float32(lo)
        grey *= np.float32(1.0 / (hi - lo))
        np.clip(grey, 0.0, 1.0, out=grey)
    if not all_valid:
        grey[~valid] = 0.5
    return grey


def check_window(window: Any, name: str = "window_px", pixel_size_um: float = 1.0) -> Optional[float]:
    """A normalisation window (``window_px`` pixels, or ``window_um`` micrometres at ``pixel_size_um``).

    Returns it as a float (None: the whole image), or raises a
    :class:`MicrostructureError` for a window that is not a positive finite
    number, or that is under :data:`MIN_WINDOW_PX` pixels.
    """
    if window is None:
        return None
    unit = "pixels" if name == "window_px" else "micrometres"
    try:
        value = None if isinstance(window, (bool, np.bool_)) else float(window)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise MicrostructureError(
            f"{name} must be a positive number of {unit} (or None for the whole image), got {window!r}"
        )
    px = value / pixel_size_um
    if px < MIN_WINDOW_PX:
        at = "" if name == "window_px" else f" is {px:.3g} pixels at {pixel_size_um:g} um per pixel"
        smallest = (f"{MIN_WINDOW_PX} pixels" if name == "window_px"
                    else f"{MIN_WINDOW_PX * pixel_size_um:.3g} um, {MIN_WINDOW_PX} pixels")
        raise MicrostructureError(
            f"{name}={window!r}{at}: too small a window to hold meaningful percentiles; give at least "
            f"{smallest} (or None for the whole image)"
        )
    return value


def _percentiles(values: np.ndarray, valid: np.ndarray) -> Optional[tuple[float, float]]:
    """The rule's percentiles of the valid entries of a (sub)image, None when there is none."""
    step = max(1, int(math.ceil(math.sqrt(values.size / LOCAL_SAMPLE))))
    sample = values[::step, ::step][valid[::step, ::step]]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample, PERCENTILES)
    return float(lo), float(hi)


def _normalise_local(grey: np.ndarray, valid: np.ndarray, window_px: float) -> np.ndarray:
    """:func:`normalise_in_place` with ``window_px``: percentiles of neighbourhoods."""
    whole = _percentiles(grey, valid)
    if whole is None or whole[1] - whole[0] < 1e-12:
        return normalise_in_place(grey, valid)
    g_lo, g_hi = whole
    g_range = g_hi - g_lo
    h, w = grey.shape
    half = window_px / 2.0

    def centres(n: int) -> np.ndarray:
        if n <= window_px:
            return np.array([(n - 1) / 2.0])
        return np.linspace(half - 0.5, n - half - 0.5, int(math.ceil((n - window_px) / half)) + 1)

    cy, cx = centres(h), centres(w)
    lo = np.empty((len(cy), len(cx)))
    hi = np.empty_like(lo)
    for i, y in enumerate(cy):
        r0, r1 = max(0, int(round(y - half + 0.5))), min(h, int(round(y + half + 0.5)))
        for j, x in enumerate(cx):
            c0, c1 = max(0, int(round(x - half + 0.5))), min(w, int(round(x + half + 0.5)))
            got = _percentiles(grey[r0:r1, c0:c1], valid[r0:r1, c0:c1])
            lo[i, j], hi[i, j] = got if got is not None else whole
    # a narrow local range moves towards the whole image's: never stretched over LOCAL_STRETCH_MAX times
    narrow = hi - lo < g_range / LOCAL_STRETCH_MAX
    a = np.where(narrow, (g_range - g_range / LOCAL_STRETCH_MAX) / np.maximum(g_range - (hi - lo), 1e-12), 1.0)
    lo, hi = g_lo + a * (lo - g_lo), g_hi + a * (hi - g_hi)
    cols = np.arange(w)
    lo_x = np.stack([np.interp(cols, cx, row) for row in lo]).astype(np.float32)   # (len(cy), W)
    hi_x = np.stack([np.interp(cols, cx, row) for row in hi]).astype(np.float32)
    for r0 in range(0, h, 256):                  # row blocks: two (256, W) scratch arrays
        rows = np.arange(r0, min(h, r0 + 256))
        k = np.clip(np.searchsorted(cy, rows, side="right") - 1, 0, len(cy) - 1)
        k1 = np.minimum(k + 1, len(cy) - 1)
        t = np.where(k1 > k, (rows - cy[k]) / np.maximum(cy[k1] - cy[k], 1e-12), 0.0)
        t = np.clip(t, 0.0, 1.0).astype(np.float32)[:, None]
        block_lo = lo_x[k] * (1 - t) + lo_x[k1] * t
        block_hi = hi_x[k] * (1 - t) + hi_x[k1] * t
        block = grey[rows[0]:rows[-1] + 1]
        block -= block_lo
        block /= block_hi - block_lo
        np.clip(block, 0.0, 1.0, out=block)
    if not valid.all():
        grey[~valid] = 0.5
    return grey


class Pyramid(Sequence[torch.Tensor]):
    """Factor-2 box-average pyramid of a [0, 1] image, levels built on first use.

    Items are ``(1, 1, h, w)`` float32 tensors, finest first; level 0 shares
    memory with the image. Levels are halved while the shorter side is at
    least ``2 * min_size``.
    """

    def __init__(self, image01: np.ndarray, min_size: int = 16) -> None:
        img = np.ascontiguousarray(image01, dtype=np.float32)
        self._levels = [torch.from_numpy(img)[None, None]]
        side, n = min(img.shape), 1
        while side >= 2 * min_size:
            side //= 2
            n += 1
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._n))]
        k = int(k) + (self._n if int(k) < 0 else 0)
        if not 0 <= k < self._n:
            raise IndexError(k)
        while len(self._levels) <= k:
            self._levels.append(F.avg_pool2d(self._levels[-1], 2, ceil_mode=False))
        return self._levels[k]


def build_pyramid(image01: np.ndarray, min_size: int = 16) -> Pyramid:
    """Pyramid of a [0, 1] image (NaN pixels become 0.5); see :class:`Pyramid`."""
    img = np.asarray(image01, dtype=np.float32)
    if not np.isfinite(img).all():
        img = np.where(np.isfinite(img), img, np.float32(0.5))
    return Pyramid(img, min_size)


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


class Micrograph:
    """One micrograph ready for crops: validated, normalised once, with its pyramid.

    Parameters
    ----------
    image : array-like
        2-D grey image (uint8, uint16 or float; RGB converted with a warning,
        see :func:`~.images.as_grey_image`). NaN pixels are not valid.
    pixel_size : float
        Micrometres per pixel.
    mask : array-like, optional
        ``(H, W)``; nonzero / True where pixels are valid.
    name : str
        How messages call the image.
    window_um : float, optional
        Normalise intensities on neighbourhoods of this side in micrometres
        rather than on the whole image (``window_px`` of :func:`normalise_in_place`).

    Attributes
    ----------
    image : numpy.ndarray
        ``(H, W)`` float32 in [0, 1] (:func:`normalise_in_place`); invalid
        pixels are 0.5.
    pixel_size_um : float
    valid : numpy.ndarray of bool or None
        None when every pixel is valid.
    normalise_window_um : float or None
        ``window_um`` when the intensities were normalised on neighbourhoods;
        None when on the whole image (also for an image no larger than one window).
    """

    def __init__(self, image: Any, pixel_size: Any, *, mask: Any = None, name: str = "image",
                 window_um: Optional[float] = None) -> None:
        grey = as_grey_image(image, name)
        self.pixel_size_um = check_pixel_size(pixel_size)
        valid = np.isfinite(grey)
        if mask is not None:
            m = check_mask(mask, grey.shape, "mask" if name == "image" else f"the mask of {name}",
                           f"give a mask of the image's shape {grey.shape} (True for pixels to evaluate)")
            valid &= m if m.dtype == bool else m != 0
            if not valid.any():
                raise MicrostructureError(
                    "no pixel is left to evaluate (all NaN or masked out); check the mask: True marks "
                    "pixels to evaluate"
                )
        window_um = check_window(window_um, "window_um", self.pixel_size_um)
        window_px = None if window_um is None else window_um / self.pixel_size_um
        if window_px is not None and max(grey.shape) <= window_px:
            window_um = window_px = None          # no larger than one window: the whole-image rule
        self.normalise_window_um = None if window_um is None else float(window_um)
        self.image = normalise_in_place(grey, valid, window_px)
        self.valid = None if valid.all() else valid
        self.pyramid = Pyramid(self.image)

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]

    @property
    def side_um(self) -> float:
        """The shorter side in micrometres."""
        return min(self.shape) * self.pixel_size_um

    def valid_mask(self) -> np.ndarray:
        """``(H, W)`` bool: the valid pixels."""
        return np.ones(self.shape, bool) if self.valid is None else self.valid

    def resampler(self, ratio: float) -> "Resampler":
        """Rows and columns resampled to ``ratio`` image pixels per output pixel (see :class:`Resampler`)."""
        return Resampler(self.pyramid, ratio)


class Resampler:
    """A micrograph resampled to a coarser (or equal) grid, read tile by tile.

    Reads from the pyramid level whose pixels are just finer than the output
    pixels, then bilinear (as :func:`sample_crops`). Coordinates are global,
    so tiles agree with an untiled run; beyond the image the content is
    mirrored. Used by probability maps, which evaluate every crop of a grid
    from one pass over the resampled image.
    """

    def __init__(self, pyramid: Sequence[torch.Tensor], ratio: float) -> None:
        self.ratio = float(ratio)
        self.identity = abs(self.ratio - 1.0) < 1e-9
        level = int(np.clip(math.floor(math.log2(max(self.ratio, 1e-9))), 0, len(pyramid) - 1))
        self.image = pyramid[level]
        h0, w0 = pyramid[0].shape[-2:]
        self.scale = h0 / self.image.shape[-2], w0 / self.image.shape[-1]

    def tile(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """Output rows ``r0:r1`` and columns ``c0:c1`` as a ``(1, 1, r1 - r0, c1 - c0)`` tensor."""
        h, w = self.image.shape[-2:]
        if self.identity:
            rows = _mirror_index(np.arange(r0, r1), h)
            cols = _mirror_index(np.arange(c0, c1), w)
            if rows[0] + len(rows) - 1 == rows[-1] and cols[0] + len(cols) - 1 == cols[-1]:
                return self.image[:, :, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].contiguous()
            return self.image[:, :, torch.from_numpy(rows)][:, :, :, torch.from_numpy(cols)].contiguous()
        uy = (np.arange(r0, r1, dtype=np.float64) + 0.5) * self.ratio / self.scale[0]
        ux = (np.arange(c0, c1, dtype=np.float64) + 0.5) * self.ratio / self.scale[1]
        gy = torch.from_numpy((2.0 * uy / h - 1.0).astype(np.float32))
        gx = torch.from_numpy((2.0 * ux / w - 1.0).astype(np.float32))
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)[None]
        return F.grid_sample(self.image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _mirror_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Symmetric (edge-repeating) reflection of indices into [0, n)."""
    period = 2 * n
    m = np.mod(idx, period)
    return np.where(m < n, m, period - 1 - m)


@dataclasses.dataclass(eq=False)
class CropSource:
    """A micrograph with the range of fields of view its crops are drawn from.

    ``label`` is the image's class index for image-level labels;
    ``mask_coords`` maps a class index to the ``(n, 2)`` labelled pixels of
    that class (scribbles).
    """

    micrograph: Micrograph
    fov_range_um: tuple[float, float]
    label: Optional[int] = None
    mask_coords: Optional[dict[int, np.ndarray]] = None

    @property
    def pyramid(self) -> Sequence[torch.Tensor]:
        return self.micrograph.pyramid

    @property
    def pixel_size_um(self) -> float:
        return self.micrograph.pixel_size_um

    @property
    def shape(self) -> tuple[int, int]:
        return self.micrograph.shape

    def has_class(self, k: int) -> bool:
        return self.label == k or (self.mask_coords is not None and k in self.mask_coords)


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


def dihedral_transforms(augment: AugmentConfig) -> tuple[tuple[int, bool], ...]:
    """The quarter turns and mirrors allowed at test time by a training configuration.

    Returns the items of :data:`DIHEDRAL` (in its order) that use a turn only
    when ``augment.rotation`` and a mirror only when ``augment.mirror``.
    """
    return tuple((turns, mirror) for turns, mirror in DIHEDRAL
                 if (turns == 0 or augment.rotation) and (not mirror or augment.mirror))


@dataclasses.dataclass
class CropBatch:
    """Crops as the network sees them, and where they came from.

    Attributes
    ----------
    crops : torch.Tensor
        ``(n, 1, S, S)`` in [0, 1], on the sampler's device.
    log_ppum : torch.Tensor
        ``(n,)`` log10 of the crops' pixels per micrometre (the magnification input).
    centres_px : numpy.ndarray
        ``(n, 2)`` centres (row, column) in the image's pixels.
    size_px : numpy.ndarray
        ``(n,)`` sides in the image's pixels.
    fov_um : numpy.ndarray
        ``(n,)`` fields of view in micrometres.
    """

    crops: torch.Tensor
    log_ppum: torch.Tensor
    centres_px: np.ndarray
    size_px: np.ndarray
    fov_um: np.ndarray


class CropSampler:
    """Draws crops of a field of view in micrometres, augmented by one configuration.

    Parameters
    ----------
    input_size : int
        Side ``S`` of the network input in pixels.
    augment : AugmentConfig
        Geometry (``rotation``, ``mirror``, ``warp``) is folded into the
        sampling grid; the photometric part runs on the crops.
    rng : numpy.random.Generator
        Fields of view, centres and geometry.
    generator : torch.Generator, optional
        Photometric augmentation, on ``device``.
    device : torch.device
    """

    def __init__(self, input_size: int, augment: AugmentConfig, rng: np.random.Generator,
                 generator: Optional[torch.Generator] = None, device: torch.device = torch.device("cpu")) -> None:
        self.input_size = int(input_size)
        self.augment = augment
        self.rng = rng
        self.generator = generator
        self.device = torch.device(device)

    def geometry(self, n: int) -> Optional[np.ndarray]:
        """Random rotation / mirror / warp matrices, or None when the configuration has none."""
        a = self.augment
        if not (a.rotation or a.mirror or a.warp > 0):
            return None
        return random_geometry(self.rng, n, a.warp, a.rotation, a.mirror)

    def sample(self, source: CropSource, n: int, *, fov_um: Optional[float] = None,
               class_ids: Optional[np.ndarray] = None, photometric: bool = True) -> CropBatch:
        """``n`` crops at random positions of one source.

        Fields of view are drawn log-uniformly from ``source.fov_range_um``
        (or fixed at ``fov_um``); with ``class_ids`` (one per crop) and a
        scribble source, each crop is centred on a labelled pixel of its class.
        """
        p = source.pixel_size_um
        fov = np.full(n, float(fov_um)) if fov_um is not None else log_uniform(self.rng, *source.fov_range_um, n)
        crop_px = fov / p
        if source.mask_coords is not None and class_ids is not None:
            centres = np.concatenate([
                draw_centres(self.rng, source, crop_px[j:j + 1], int(k)) for j, k in enumerate(class_ids)
            ]) if n else np.zeros((0, 2))
        else:
            centres = draw_centres(self.rng, source, crop_px)
        return self._cut(source, centres, crop_px, fov, self.geometry(n), photometric)

    def sample_at(self, source: CropSource, centres_px: np.ndarray, size_px: np.ndarray) -> CropBatch:
        """Crops at given centres and sides (image pixels), with the configuration's augmentation."""
        size_px = np.asarray(size_px, np.float64)
        fov = size_px * source.pixel_size_um
        return self._cut(source, np.asarray(centres_px, np.float64), size_px, fov, self.geometry(len(size_px)), True)

    def sample_classes(self, sources: Sequence[CropSource], class_ids: np.ndarray) -> CropBatch:
        """One crop per entry of ``class_ids``, each from a random source holding that class.

        The training batch: sources are chosen per class, crops are cut source
        by source, and the photometric augmentation runs once on the batch.
        """
        n = len(class_ids)
        S = self.input_size
        crops = torch.empty((n, 1, S, S), device=self.device)
        log_ppum = np.zeros(n)
        centres, size, fov = np.zeros((n, 2)), np.zeros(n), np.zeros(n)
        choices = np.zeros(n, dtype=int)
        for k in np.unique(class_ids):
            eligible = [i for i, s in enumerate(sources) if s.has_class(int(k))]
            sel = np.nonzero(class_ids == k)[0]
            choices[sel] = self.rng.choice(eligible, len(sel))
        for i in np.unique(choices):
            sel = np.nonzero(choices == i)[0]
            part = self.sample(sources[i], len(sel), class_ids=class_ids[sel], photometric=False)
            crops[torch.as_tensor(sel, device=self.device)] = part.crops
            log_ppum[sel] = np.log10(S / part.fov_um)
            centres[sel], size[sel], fov[sel] = part.centres_px, part.size_px, part.fov_um
        crops = augment_photometric(crops, self.augment, self.generator)
        return CropBatch(crops, torch.as_tensor(log_ppum, dtype=torch.float32, device=self.device),
                         centres, size, fov)

    def _cut(self, source: CropSource, centres: np.ndarray, crop_px: np.ndarray, fov: np.ndarray,
             geometry: Optional[np.ndarray], photometric: bool) -> CropBatch:
        S = self.input_size
        crops = sample_crops(source.pyramid, centres, crop_px, S, geometry, self.device)
        if photometric:
            crops = augment_photometric(crops, self.augment, self.generator)
        mag = torch.as_tensor(np.log10(S / fov), dtype=torch.float32, device=self.device)
        return CropBatch(crops, mag, centres, crop_px, fov)
