"""Per-pixel crop-averaged probability maps (the saliency maps of Larmuseau et al.).

Every pixel receives the mean class probabilities (each class, then "none of
these") of all evaluated crops that cover it. Crops are taken at the physical
scale the model was trained on: the image is resampled so that one pixel is
``fov_um / input_size`` micrometres, and a crop is ``input_size`` x
``input_size`` of those pixels (its field of view is ``fov_um``).

Shared computation
------------------
The descriptor network sees a crop only through the spatial *mean* of its
backbone feature map (:meth:`.networks.DescriptorNet.head_from_pooled`). So the
backbone runs once, fully convolutionally, over the whole resampled image
(tile by tile for large images); the pooled features of any crop are the mean
of the feature map over the crop's window, read in O(1) per crop from an
integral image (windows may start and end inside a feature cell: the feature
map is treated as constant over each 32 x 32 cell, for which bilinear
interpolation of the integral image is exact). Only the small head and the
Gaussian mixture then run per crop. A feature cell near a crop's edge sees
the real neighbouring texture instead of the padding an isolated crop gets;
because micrograph backbones pad by *reflection* (:mod:`.padding`), a crop's
border looks like more of the same texture in both cases and the two agree.
Measured on generated ferrite/pearlite images with a 64-pixel model: with
reflection padding the shared and the per-crop ("exact") label maps agree on
100 % of pixels (with zero padding: 34 %), at 0.06 s instead of 0.41 s for a
384 x 384 image. ``"shared"`` is therefore the default and ``method="exact"``
(every crop evaluated on its own) remains for checking.

Accumulation
------------
Crop origins are snapped to a lattice of :data:`ACC_STEP` network-input pixels
(a quarter of a feature cell). Per-crop probabilities are added to sums and
counts on that lattice through 2-D difference arrays, so memory does not grow
with the number of crops, and the per-pixel mean is constant on each lattice
cell; a pixel of the original image takes the value of the lattice cell its
centre falls in.

Not evaluated
-------------
NaN pixels, and pixels where ``mask`` is False, are not evaluated: their
probabilities are NaN, their label is 0 (:data:`NOT_EVALUATED`) and
``evaluated`` is False. A crop with more than ``max_invalid_fraction`` of such
pixels is skipped (NaN pixels are shown to the network as mid-grey 0.5, as in
training). A valid pixel that no evaluable crop covers is also not evaluated.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
import warnings
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ..base import check_is_fitted
from ..choices import MAP_METHODS
from ..errors import MicrostructureError
from ..nn.progress import CancelToken, ProgressCallback, check_cancel, report
from .augment import AugmentConfig
from .crops import DIHEDRAL, MIN_WINDOW_PX, Micrograph, Resampler, dihedral_transforms
from .images import check_pixel_size

#: Label value of pixels that were not evaluated.
NOT_EVALUATED = 0
#: Lattice of crop origins and of the accumulated map, in network-input pixels.
ACC_STEP = 8
#: Default side of the neighbourhood each pixel's intensities are normalised on, in crop fields of view.
NORMALISE_FOVS = 1.5
#: A map whose crop covers more than this share of the image's shorter side warns that it is coarse.
COARSE_MAP_SHARE = 0.5
#: Image pixels a crop of a requested ``fov_um`` covers at least (see :func:`_check_crop_pixels`).
MIN_CROP_PX = MIN_WINDOW_PX
#: Input pixels per batch of crops that pass through a network on their own ("exact", frozen ImageNet
#: features), on a CPU and elsewhere. On 2 CPU cores a CPU batch (56 crops of 96 px) takes about a
#: second, so progress is reported that often. EfficientNet-Lite0 ran 45-54 crops of 96 px per second
#: in batches of 32 to 256 on a loaded 2-core machine; whether smaller batches cost anything there is
#: not settled (see the commit that set this): re-measure on an idle machine before changing it.
BATCH_PIXELS = {"cpu": 1 << 19, "other": 1 << 22}
METHODS = MAP_METHODS


# --------------------------------------------------------------------- result
@dataclasses.dataclass
class ProbabilityMapResult:
    """A crop-averaged probability map.

    Attributes
    ----------
    probabilities : numpy.ndarray
        ``(n_classes + 1, H, W)`` float32: per pixel, the mean probability of
        each class, then "none of these". Sums to 1 over the first axis on
        evaluated pixels; NaN where not evaluated.
    labels : numpy.ndarray
        ``(H, W)`` uint8 (uint16 for more than 253 classes): 0 not evaluated,
        ``k + 1`` for class ``k``, ``n_classes + 1`` for "none".
    evaluated : numpy.ndarray
        ``(H, W)`` bool.
    class_names : list of str
        The classes, then ``"none"`` (``n_classes + 1`` names).
    fractions : dict
        ``{name: fraction}``: the share of the evaluated area whose most
        probable label is each class or "none" (sums to 1).
    evaluated_fraction : float
        The share of the image's area that was evaluated.
    pixel_size_um : float
        Micrometres per pixel of the image.
    fov_um : float
        Field of view of one crop, micrometres.
    crop_size_px : float
        Side of one crop in image pixels.
    stride_px : float
        Grid stride in image pixels, after snapping to the crop lattice.
    n_crops : int
        Crops evaluated (each with ``n_augment`` transforms).
    n_augment : int
    method : str
        ``"shared"`` or ``"exact"``.
    timings : dict
        Seconds: ``"total"``, ``"network"`` (backbone and head), ``"mixture"``.
    normalise_window_um : float or None
        Side of the neighbourhoods the intensities were normalised on, in
        micrometres (``normalise_fovs`` crop fields of view); None: the whole
        image (also for maps stored before this was recorded).
    """

    probabilities: np.ndarray
    labels: np.ndarray
    evaluated: np.ndarray
    class_names: list[str]
    fractions: dict[str, float]
    evaluated_fraction: float
    pixel_size_um: float
    fov_um: float
    crop_size_px: float
    stride_px: float
    n_crops: int
    n_augment: int
    method: str
    timings: dict[str, float]
    normalise_window_um: Optional[float] = None

    @property
    def none(self) -> np.ndarray:
        """``(H, W)`` probability of "none of these" (the outlier channel); NaN where not evaluated."""
        return self.probabilities[-1]

    def outlier_mask(self, threshold: float = 0.5) -> np.ndarray:
        """Evaluated pixels whose "none" probability is at least ``threshold`` (0-1)."""
        t = float(threshold)
        if not 0.0 <= t <= 1.0:
            raise MicrostructureError(f"threshold must be between 0 and 1, got {threshold}; e.g. 0.5")
        with np.errstate(invalid="ignore"):
            return (self.none >= t) & self.evaluated

    def fractions_at(self, threshold: float = 0.5) -> dict[str, float]:
        """Area fractions with the outliers at ``threshold`` counted as "none".

        A pixel counts for its most probable class unless its "none"
        probability reaches ``threshold``; then (and when "none" is its most
        probable label) it counts for ``"none"``. The fractions are shares of
        the evaluated area and sum to 1; at ``threshold`` 0.5 they equal
        :attr:`fractions` up to ties.
        """
        outlier = self.outlier_mask(threshold)
        n_eval = int(self.evaluated.sum())
        n_classes = len(self.class_names) - 1
        out = {}
        for k, name in enumerate(self.class_names[:-1]):
            count = int(((self.labels == k + 1) & ~outlier).sum())
            out[name] = count / n_eval if n_eval else 0.0
        none = int(((self.labels == n_classes + 1) | outlier).sum())
        out[self.class_names[-1]] = none / n_eval if n_eval else 0.0
        return out

    def class_probability(self, name: str) -> np.ndarray:
        """``(H, W)`` probability of one class (or ``"none"``) by name."""
        if name not in self.class_names:
            raise MicrostructureError(
                f"no class {name!r} in this map; choose one of {', '.join(self.class_names)}"
            )
        return self.probabilities[self.class_names.index(name)]


# ------------------------------------------------------------------ geometry
def receptive_field(backbone: nn.Module) -> int:
    """Receptive field (pixels) of a chain of convolutions, in module order."""
    rf, jump = 1, 1
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            rf += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return rf


def _dihedral(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    if mirror:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, turns, dims=(-2, -1)) if turns else x


def _dihedral_inverse(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    if turns:
        x = torch.rot90(x, -turns, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if mirror else x


@dataclasses.dataclass
class _Plan:
    """Sizes in network-input pixels (the image resampled to the model's scale)."""

    height: int              # original image
    width: int
    ratio: float             # original pixels per network-input pixel
    crop: int                # crop side, network-input pixels
    pad_h: int               # padded extent, multiple of the feature stride
    pad_w: int
    last_y: int              # largest crop origin (multiple of ACC_STEP)
    last_x: int
    stride: int              # grid stride, multiple of ACC_STEP
    fov_um: float            # field of view of one crop

    @property
    def log_ppum(self) -> float:
        """log10 of network-input pixels per micrometre (the magnification input)."""
        return math.log10(self.crop / self.fov_um)

    @property
    def acc_shape(self) -> tuple[int, int]:
        return self.pad_h // ACC_STEP, self.pad_w // ACC_STEP

    @property
    def crop_cells(self) -> int:
        """Crop side on the accumulation lattice (rounded)."""
        return max(1, int(round(self.crop / ACC_STEP)))


def _lattice_of_pixels(n: int, ratio: float, n_acc: int) -> np.ndarray:
    """Accumulation cell of each original pixel (by its centre)."""
    u = (np.arange(n, dtype=np.float64) + 0.5) / ratio
    return np.clip(np.floor(u / ACC_STEP).astype(np.int64), 0, n_acc - 1)


def _axis_origins(last: int, stride: int) -> np.ndarray:
    o = np.arange(0, last + 1, stride, dtype=np.int64)
    if o[-1] != last:
        o = np.append(o, last)
    return o


# ---------------------------------------------------------------- crop plan
def _plan_origins(
    plan: _Plan, acc_invalid: Optional[np.ndarray], max_invalid: float, jitter: float,
    n_random: Optional[int], rng: np.random.Generator,
) -> np.ndarray:
    """Crop origins ``(n, 2)`` (network-input pixels, multiples of ACC_STEP)."""
    if n_random is None:
        oy = _axis_origins(plan.last_y, plan.stride)
        ox = _axis_origins(plan.last_x, plan.stride)
        origins = np.stack(np.meshgrid(oy, ox, indexing="ij"), -1).reshape(-1, 2)
        if jitter > 0:
            shift = rng.uniform(-0.5 * jitter * plan.stride, 0.5 * jitter * plan.stride, origins.shape)
            origins = np.round((origins + shift) / ACC_STEP).astype(np.int64) * ACC_STEP
    else:
        ly, lx = plan.last_y // ACC_STEP, plan.last_x // ACC_STEP
        origins = np.stack([rng.integers(0, ly + 1, n_random), rng.integers(0, lx + 1, n_random)], -1) * ACC_STEP
    origins[:, 0] = np.clip(origins[:, 0], 0, plan.last_y)
    origins[:, 1] = np.clip(origins[:, 1], 0, plan.last_x)
    origins = _drop_invalid(plan, origins.astype(np.int64), acc_invalid, max_invalid)
    # coverage: add crops over any valid lattice cell that no crop covers
    covered = _coverage(plan, origins) > 0
    if acc_invalid is None:
        need = ~covered
        # lattice cells inside the image only
        need[int(math.ceil(plan.height / plan.ratio / ACC_STEP)):] = False
        need[:, int(math.ceil(plan.width / plan.ratio / ACC_STEP)):] = False
    else:
        need = ~covered & (acc_invalid[2] > 0)
    if need.any():
        half = max(ACC_STEP, (plan.crop // 2) // ACC_STEP * ACC_STEP)
        a, b = np.nonzero(need)
        fy = np.minimum((a * ACC_STEP) // half * half, plan.last_y)
        fx = np.minimum((b * ACC_STEP) // half * half, plan.last_x)
        extra = np.unique(np.stack([fy, fx], -1), axis=0)
        extra = _drop_invalid(plan, extra, acc_invalid, max_invalid)
        origins = np.concatenate([origins, extra])
    return origins


def _coverage(plan: _Plan, origins: np.ndarray) -> np.ndarray:
    ha, wa = plan.acc_shape
    diff = np.zeros((ha + 1, wa + 1))
    _spread(diff[None], origins, plan.crop_cells, np.ones((len(origins), 1)))
    return np.cumsum(np.cumsum(diff, 0), 1)[:ha, :wa]


def _spread(diff: np.ndarray, origins: np.ndarray, size: int, values: np.ndarray) -> None:
    """Add ``values`` (n, k) over each crop's lattice box in difference arrays ``(k, ha+1, wa+1)``."""
    if len(origins) == 0:
        return
    hp1, wp1 = diff.shape[-2:]
    a0 = origins[:, 0] // ACC_STEP
    b0 = origins[:, 1] // ACC_STEP
    a1 = np.minimum(a0 + size, hp1 - 1)
    b1 = np.minimum(b0 + size, wp1 - 1)
    idx = np.concatenate([a0 * wp1 + b0, a0 * wp1 + b1, a1 * wp1 + b0, a1 * wp1 + b1])
    sign = np.repeat(np.array([1.0, -1.0, -1.0, 1.0]), len(origins))
    flat = diff.reshape(diff.shape[0], -1)
    for k in range(diff.shape[0]):
        flat[k] += np.bincount(idx, weights=sign * np.tile(values[:, k], 4), minlength=flat.shape[1])


def _drop_invalid(plan: _Plan, origins: np.ndarray, acc_invalid: Optional[np.ndarray], max_invalid: float) -> np.ndarray:
    if acc_invalid is None or len(origins) == 0:
        return origins
    invalid, total = acc_invalid[0], acc_invalid[1]
    size = plan.crop_cells

    def box_sums(arr: np.ndarray) -> np.ndarray:
        integ = np.zeros((arr.shape[0] + 1, arr.shape[1] + 1))
        integ[1:, 1:] = np.cumsum(np.cumsum(arr, 0), 1)
        a0 = origins[:, 0] // ACC_STEP
        b0 = origins[:, 1] // ACC_STEP
        a1 = np.minimum(a0 + size, arr.shape[0])
        b1 = np.minimum(b0 + size, arr.shape[1])
        return integ[a1, b1] - integ[a0, b1] - integ[a1, b0] + integ[a0, b0]

    bad = box_sums(invalid)
    tot = box_sums(total)
    frac = np.where(tot > 0, bad / np.maximum(tot, 1), 1.0)
    return origins[frac <= max_invalid]


def _lattice_invalid(valid: np.ndarray, plan: _Plan, rows_acc: np.ndarray, cols_acc: np.ndarray) -> np.ndarray:
    """``(3, ha, wa)``: invalid pixel count, pixel count, and 'has a valid pixel' per lattice cell."""
    ha, wa = plan.acc_shape
    invalid = np.zeros(ha * wa)
    total = np.zeros(ha * wa)
    chunk = max(1, (1 << 21) // max(1, valid.shape[1]))
    for r0 in range(0, valid.shape[0], chunk):
        v = valid[r0:r0 + chunk]
        flat = (rows_acc[r0:r0 + chunk, None] * wa + cols_acc[None, :]).ravel()
        total += np.bincount(flat, minlength=ha * wa)
        invalid += np.bincount(flat, weights=(~v).ravel().astype(np.float64), minlength=ha * wa)
    invalid = invalid.reshape(ha, wa)
    total = total.reshape(ha, wa)
    has_valid = (total - invalid > 0).astype(np.float64)
    return np.stack([invalid, total, has_valid])


# -------------------------------------------------------------------- main
def probability_map(
    classifier: Any,
    image: Any,
    pixel_size: Any,
    *,
    stride: Optional[float] = None,
    fov_um: Optional[float] = None,
    jitter: float = 0.0,
    n_augment: int = 1,
    n_random_crops: Optional[int] = None,
    mask: Any = None,
    max_invalid_fraction: float = 0.25,
    method: str = "shared",
    tile_size: int = 2048,
    batch_size: int = 1024,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    seed: Optional[int] = 0,
    dtype: Any = "float32",
    client: Any = None,
    store: Any = None,
    overwrite: bool = False,
    normalise_fovs: Optional[float] = NORMALISE_FOVS,
) -> ProbabilityMapResult:
    """Per-pixel crop-averaged class probabilities of one micrograph.

    Parameters
    ----------
    classifier : FewShotClassifier
        A fitted micrograph classifier (not an EBSD model).
    image : array-like
        2-D grey micrograph (uint8, uint16 or float; RGB converted with a
        warning). NaN pixels are not evaluated.
    pixel_size : float
        Micrometres per pixel of ``image``.
    stride : float, optional
        Step of the regular grid of crops, in image pixels; more than 0 and at
        most one crop. Snapped to the crop lattice (:data:`ACC_STEP`
        network-input pixels). Default: one eighth of a crop.
    fov_um : float, optional
        Field of view of one crop in micrometres. Default: the classifier's
        ``map_fov_um_`` (the median training field of view), or the image's
        shorter side when that is smaller (but not below the smallest
        training field of view). Either way, a crop covering more than
        :data:`COARSE_MAP_SHARE` of the image's shorter side gives a
        ``UserWarning`` naming the finer fields of view the model can read.
    jitter : float
        0-1: each grid crop is shifted at random by up to ``jitter * stride / 2``
        along each axis.
    n_augment : int
        1-8 test-time augmentations per crop (mirror and quarter turns); the
        crop's probabilities are averaged over them. Only the transforms the
        model was trained with count (:func:`.crops.dihedral_transforms`): a
        model trained without rotation and mirroring is never shown a turned
        or mirrored crop, so it gets at most 1 whatever is asked (the result's
        ``n_augment`` says how many were used).
    n_random_crops : int, optional
        Use this many crops at random positions instead of a grid (plus, where
        they leave valid pixels uncovered, a few crops over those pixels).
    mask : array-like of bool, optional
        ``(H, W)``; True where pixels are evaluated, False for pixels left out.
    max_invalid_fraction : float
        Crops with a larger share of NaN or masked-out pixels are skipped (0-1).
    method : {"shared", "exact"}
        ``"shared"`` (default): one fully convolutional pass per tile, crops
        pooled from its feature map (10-100x faster; faithful because the
        backbones pad by reflection, see the module notes). ``"exact"``: every
        crop through the whole network on its own, in batches, as in
        :meth:`predict_proba`. Models whose crops cannot share a pass (the
        frozen ImageNet backbone, ``model_.shares_windows`` False) always use
        ``"exact"``.
    tile_size : int
        Side of the tiles the image is processed in, in network-input pixels
        (at least 128; rounded down to a multiple of 32). Bounds memory; tiles
        overlap by one crop plus the receptive field so results do not depend
        on it.
    batch_size : int
        Crops per batch through the head (``"shared"``) or the network
        (``"exact"``, and the frozen ImageNet features of each crop; capped at
        :data:`BATCH_PIXELS` input pixels per batch: about 0.5 M on a CPU,
        4 M on an accelerator).
    progress : callable, optional
        Receives :class:`~.progress.Progress` reports (stage ``"map"``, in
        crop evaluations): after every batch of crops in this process (on a
        CPU, about every second whatever the image's size), after every tile
        on a cluster.
    cancel : threading.Event, optional
        Set it to stop: :class:`~.errors.TrainingCancelled` is raised.
    seed : int, optional
        Seed of jitter and random crops.
    dtype : {"float32", "float16"}
        Storage type of ``probabilities``. ``"float16"`` halves the memory (an
        8192 x 8192 map with 3 classes: 512 MB instead of 1 GB) at a
        resolution of about 5e-4; the sums and labels are computed in float32
        either way.
    client : distributed.Client or str, optional
        Run the tiles on a ``dask.distributed`` cluster (a client or a
        scheduler address ``"tcp://host:8786"``); default: the client created
        in this process if there is one, else the scheduler in the environment
        variable ``NAPARI_MICROSTRUCTURE_SCHEDULER``, else this process. The
        classifier is sent to each worker once; each task carries one
        resampled tile (at most about ``(tile_size + 2 crops)^2`` float32) and
        returns the probabilities of its crops. Same result as in-process.
    store : str or Path, optional
        A ``.zarr`` folder: the per-pixel arrays are written there in row
        blocks as they are computed, never held whole in memory, and the
        result's arrays are lazy dask arrays reading the store (see
        :mod:`napari_microstructure.io.store`; napari displays them lazily).
        The store appears only when the map is complete. Default dtype in a
        store: as ``dtype``.
    overwrite : bool
        Replace an existing ``store``.
    normalise_fovs : float, optional
        Intensities are normalised (the training rule, percentiles 0.5-99.5 to
        [0, 1]) on neighbourhoods of this many crop fields of view
        (:func:`.crops.normalise_in_place`), not on the whole image: a region
        is then seen as a training image of its microstructure alone would
        have been, whatever the rest of the image holds (a porous region's
        black pores no longer dim its neighbour). None: on the whole image.

    Returns
    -------
    ProbabilityMapResult

    Raises
    ------
    MicrostructureError
        Unfitted or wrong kind of model, an image smaller than one crop, a bad
        stride, mask or option.
    """
    t_start = time.perf_counter()
    _check_classifier(classifier)
    out_dtype = _check_dtype(dtype)
    if store is not None:
        from ...io.store import check_store_path

        check_store_path(store, overwrite)
    if method == "shared" and not getattr(classifier.model_, "shares_windows", True):
        method = "exact"   # frozen ImageNet features: a window of a whole-image pass is not the crop's
    opts = _check_options(stride, jitter, n_augment, n_random_crops, max_invalid_fraction, method,
                          tile_size, batch_size, normalise_fovs, seed)
    opts["transforms"] = dihedral_transforms(AugmentConfig.coerce(classifier.augment))[: opts["n_augment"]]
    device = getattr(getattr(classifier, "device_", None), "type", str(getattr(classifier, "device_", "cpu")))
    opts["batch_pixels"] = BATCH_PIXELS["cpu" if device == "cpu" else "other"]
    fov = _check_fov(classifier, fov_um)
    _check_crop_pixels(classifier, fov_um, fov, pixel_size)
    # the window follows the requested field of view (a crop shrunk to fit leaves one window: the whole image)
    window = opts["normalise_fovs"]
    source = Micrograph(image, pixel_size, mask=mask, window_um=None if window is None else window * fov)
    p = source.pixel_size_um
    height, width = source.shape
    window_um = source.normalise_window_um
    S = int(classifier.input_size)
    if fov_um is None and fov > min(height, width) * p:
        # the model's map field of view (the median of training) does not fit this image:
        # the largest that does, as long as the model was trained on crops that small
        fov = max(min(height, width) * p * (1 - 1e-6), float(classifier.fov_range_um_[0]))
    ratio = (fov / S) / p                      # image pixels per network-input pixel
    crop_px = S * ratio
    if min(height, width) < crop_px * (1 - 1e-6):
        raise MicrostructureError(
            f"the image is {height} x {width} pixels ({height * p:.3g} x {width * p:.3g} um) but one crop "
            f"covers {fov:.3g} um ({crop_px:.0f} x {crop_px:.0f} pixels at {p:.3g} um per pixel); use a "
            f"larger image, check the pixel size, or pass a smaller fov_um (at least "
            f"{classifier.fov_range_um_[0]:.3g} um, the smallest the model was trained on)"
        )
    share = crop_px / min(height, width)
    finest = max(float(classifier.fov_range_um_[0]), S * p)
    # whether the field of view is the model's (auto) or the caller's: a crop this large blurs the map
    if share > COARSE_MAP_SHARE and finest < 0.9 * fov:
        warnings.warn(
            f"one crop of the map covers {share:.0%} of the image's shorter side ({fov:.3g} of "
            f"{min(height, width) * p:.3g} um), so regions narrower than a crop blur into their neighbours; "
            f"for a finer map choose a smaller field of view (fov_um) between {finest:.3g} um (the finest crop "
            f"the model reads at {p:.3g} um per pixel) and {fov:.3g} um, knowing that smaller crops show less "
            "of an untrained structure to flag",
            UserWarning, stacklevel=2,
        )
    if stride is None:
        stride_r = max(ACC_STEP, int(round(S / 8 / ACC_STEP)) * ACC_STEP)
    else:
        if not (0 < float(stride) <= crop_px * (1 + 1e-6)):
            raise MicrostructureError(
                f"stride {stride!r} is not in (0, {crop_px:.0f}] image pixels; give a positive stride no "
                f"larger than one crop ({crop_px:.0f} pixels), e.g. {max(1, int(crop_px / 8))}"
            )
        stride_r = max(ACC_STEP, int(round(float(stride) / ratio / ACC_STEP)) * ACC_STEP)
    ext_h, ext_w = height / ratio, width / ratio
    last_y = int(math.ceil(max(0.0, ext_h - S) / ACC_STEP - 1e-9)) * ACC_STEP
    last_x = int(math.ceil(max(0.0, ext_w - S) / ACC_STEP - 1e-9)) * ACC_STEP
    cell = int(classifier.model_.stride)
    plan = _Plan(
        height, width, ratio, S,
        pad_h=int(math.ceil(max(last_y + S, ext_h) / cell)) * cell,
        pad_w=int(math.ceil(max(last_x + S, ext_w) / cell)) * cell,
        last_y=last_y, last_x=last_x, stride=stride_r, fov_um=fov,
    )
    ha, wa = plan.acc_shape
    _check_crop_count(plan, opts["n_random"], stride_r * ratio)
    rows_acc = _lattice_of_pixels(height, ratio, ha)
    cols_acc = _lattice_of_pixels(width, ratio, wa)

    valid = source.valid_mask()
    acc_invalid = None if source.valid is None else _lattice_invalid(valid, plan, rows_acc, cols_acc)
    rng = np.random.default_rng(seed)
    origins = _plan_origins(plan, acc_invalid, opts["max_invalid"], opts["jitter"], opts["n_random"], rng)
    if len(origins) == 0:
        raise MicrostructureError(
            f"every crop has more than {opts['max_invalid']:.0%} NaN or masked-out pixels, so nothing "
            "was evaluated; evaluate a larger region, or raise max_invalid_fraction"
        )

    n_out = len(classifier.classes_) + 1
    diff = np.zeros((n_out + 1, ha + 1, wa + 1))   # sums per class, then the count
    timings = {"network": 0.0, "mixture": 0.0}
    resampler = source.resampler(ratio)
    _run_tiles(classifier, plan, resampler, origins, opts, diff, timings, progress, cancel, client)
    if hasattr(classifier, "check_magnification") and not classifier.check_magnification(p):
        diff[: n_out - 1] = 0.0            # beyond the trained magnifications: all "none"
        diff[n_out - 1] = diff[-1]
    del resampler, source

    acc = np.cumsum(np.cumsum(diff, 1), 2)[:, :ha, :wa]
    counts = acc[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.clip(acc[:-1] / counts, 0.0, 1.0).astype(np.float32)
    covered = counts > 0.5
    mean[:, ~covered] = np.nan
    label_dtype = np.uint8 if n_out + 1 <= 255 else np.uint16
    lattice_labels = np.where(covered, np.argmax(np.nan_to_num(mean, nan=-1.0), 0) + 1, NOT_EVALUATED).astype(label_dtype)

    sink = None
    try:
        sink = _PixelSink(store, overwrite, n_out, height, width, out_dtype, label_dtype)
        probabilities, labels, evaluated = sink.probabilities, sink.labels, sink.evaluated
        chunk = max(1, (1 << 24) // max(1, width * n_out))
        if store is not None:  # whole store chunks per write
            from ...io.store import CHUNK

            chunk = max(1, chunk // CHUNK) * CHUNK
        area = np.zeros(n_out + 1, dtype=np.int64)
        for r0 in range(0, height, chunk):
            r1 = min(height, r0 + chunk)
            rows = rows_acc[r0:r1]
            block = mean[:, rows][:, :, cols_acc]
            lab = lattice_labels[rows][:, cols_acc]
            v = valid[r0:r1]
            if not v.all():
                block[:, ~v] = np.nan
                lab[~v] = NOT_EVALUATED
            probabilities[:, r0:r1] = block
            labels[r0:r1] = lab
            evaluated[r0:r1] = lab != NOT_EVALUATED
            area += np.bincount(lab.ravel(), minlength=n_out + 1)[: n_out + 1]
        n_eval = int(area[1:].sum())
        names = list(classifier.labels_)
        fractions = {n: (float(area[k + 1]) / n_eval if n_eval else 0.0) for k, n in enumerate(names)}
        timings["total"] = time.perf_counter() - t_start
        report(progress, "map", 1, 1, f"{len(origins)} crops in {timings['total']:.1f} s ({method})")
        result = ProbabilityMapResult(
            probabilities=probabilities, labels=labels, evaluated=evaluated, class_names=names,
            fractions=fractions, evaluated_fraction=n_eval / float(height * width), pixel_size_um=p,
            fov_um=fov, crop_size_px=crop_px, stride_px=stride_r * ratio, n_crops=int(len(origins)),
            n_augment=len(opts["transforms"]), method=method, timings=timings,
            normalise_window_um=window_um,
        )
        return sink.finish(result)
    except OSError as exc:
        if sink is None or sink.writer is None:
            raise
        raise sink.writer.os_error(exc) from exc   # a full disk: named; the partial store is removed
    finally:
        if sink is not None:
            sink.close()


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise MicrostructureError(f"dtype {dtype!r} is not a NumPy type; use 'float32' or 'float16'") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise MicrostructureError(f"dtype {dtype!r} is not supported; use 'float32' (default) or 'float16' (half the memory)")
    return dt


class _PixelSink:
    """Where the per-pixel arrays go: NumPy arrays, or a zarr store written row block by row block."""

    def __init__(self, store: Any, overwrite: bool, n_out: int, height: int, width: int,
                 dtype: np.dtype, label_dtype: Any) -> None:
        self.writer = None
        if store is None:
            self.probabilities = np.empty((n_out, height, width), dtype=dtype)
            self.labels = np.empty((height, width), dtype=label_dtype)
            self.evaluated = np.empty((height, width), dtype=bool)
            return
        from ...io.store import CHUNK, StoreWriter

        self.writer = StoreWriter(store, "probability-map", overwrite)
        try:
            self.probabilities = self.writer.create("probabilities", (n_out, height, width), dtype,
                                                    (1, CHUNK, CHUNK), fill_value=np.nan)
            self.labels = self.writer.create("labels", (height, width), label_dtype, (CHUNK, CHUNK))
            self.evaluated = self.writer.create("evaluated", (height, width), bool, (CHUNK, CHUNK), fill_value=False)
        except BaseException as exc:
            self.writer.abort()   # the caller never gets this sink to close: no partial store left
            if isinstance(exc, OSError):
                raise self.writer.os_error(exc) from exc
            raise

    def finish(self, result: "ProbabilityMapResult") -> "ProbabilityMapResult":
        if self.writer is None:
            return result
        from ...io.store import open_store

        self.writer.attrs.update(
            arrays=["probabilities", "labels", "evaluated"], class_names=result.class_names,
            fractions=result.fractions, evaluated_fraction=result.evaluated_fraction,
            pixel_size_um=result.pixel_size_um, fov_um=result.fov_um, crop_size_px=result.crop_size_px,
            stride_px=result.stride_px, n_crops=result.n_crops, n_augment=result.n_augment,
            method=result.method, timings=result.timings, normalise_window_um=result.normalise_window_um,
        )
        path = self.writer.commit()
        arrays, _ = open_store(path)
        return dataclasses.replace(result, probabilities=arrays["probabilities"], labels=arrays["labels"],
                                   evaluated=arrays["evaluated"])

    def close(self) -> None:
        """Remove an unfinished store (after an error); no effect once committed."""
        if self.writer is not None:
            self.writer.abort()


def result_from_store(arrays: dict, meta: dict) -> "ProbabilityMapResult":
    """A :class:`ProbabilityMapResult` whose arrays are the lazy (dask) arrays of a probability-map store."""
    fields = {f.name for f in dataclasses.fields(ProbabilityMapResult)}
    kwargs = {k: v for k, v in meta.items() if k in fields}
    return ProbabilityMapResult(probabilities=arrays["probabilities"], labels=arrays["labels"],
                                evaluated=arrays["evaluated"], **kwargs)


def _check_classifier(classifier: Any) -> None:
    kind = getattr(classifier, "kind", None)
    if kind == "ebsd":
        raise MicrostructureError(
            "this is an EBSD pattern model; probability maps need a micrograph model "
            "(FewShotClassifier). For EBSD maps use EBSDClassifier.classify_map"
        )
    if kind == "micrograph":
        check_is_fitted(classifier, "so it cannot map an image")
    else:
        raise MicrostructureError(
            f"expected a fitted FewShotClassifier, got {type(classifier).__name__}; load a micrograph "
            "model with napari_microstructure.load_model(path)"
        )


def _check_fov(classifier: Any, fov_um: Optional[float]) -> float:
    if fov_um is None:
        return float(classifier.map_fov_um_)
    try:
        fov = float(fov_um)
    except (TypeError, ValueError) as exc:
        raise MicrostructureError(f"fov_um {fov_um!r} is not a number; give micrometres") from exc
    if not (math.isfinite(fov) and fov > 0):
        raise MicrostructureError(f"fov_um must be a positive number of micrometres, got {fov_um!r}")
    lo, hi = classifier.fov_range_um_
    if not lo * 0.99 <= fov <= hi * 1.01:
        warnings.warn(
            f"fov_um {fov:.3g} um is outside the fields of view the model was trained on "
            f"({lo:.3g}-{hi:.3g} um); its predictions there are extrapolations",
            UserWarning, stacklevel=3,
        )
    return fov


def _as_float(value: Any) -> Optional[float]:
    """``float(value)`` for a number or a numeric string; None for a bool, None or anything else."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _check_crop_pixels(classifier: Any, fov_um: Any, fov: float, pixel_size: Any) -> None:
    """Refuse a requested ``fov_um`` whose crops cover too few image pixels, before any work.

    Each crop is resampled to the network input, so a crop of a few pixels
    blows the image up by the square of the factor (minutes or hours, for a
    meaningless map). The smallest usable crop covers :data:`MIN_CROP_PX`
    image pixels (at least ``input_size / 16``, as
    :func:`~.images.check_scale_against_model`) and half the smallest field of
    view the model was trained on; between that and the training range the
    map is computed, with the extrapolation warning of :func:`_check_fov`.
    """
    if fov_um is None:
        return
    p = check_pixel_size(pixel_size)
    S = int(classifier.input_size)
    lo, hi = (float(v) for v in classifier.fov_range_um_)
    min_px = max(float(MIN_CROP_PX), S / 16)
    smallest = max(lo / 2, min_px * p)
    if fov >= smallest * (1 - 1e-9):
        return
    crop_px = fov / p
    if crop_px < min_px * (1 - 1e-9):
        why = (f"one crop would cover {crop_px:.3g} image pixels at {p:g} um per pixel, under the {min_px:g} "
               f"a crop needs (each crop is enlarged {S / crop_px:.3g} times to the network's {S} pixels)")
    else:
        why = f"{fov:.3g} um is under half the smallest field of view the model was trained on"
    raise MicrostructureError(
        f"fov_um={fov_um!r} is too small: {why}; give fov_um of at least {smallest:.3g} um (the model was "
        f"trained on {lo:.3g}-{hi:.3g} um)"
    )


def _check_crop_count(plan: "_Plan", n_random: Optional[int], stride_px: float) -> None:
    """Refuse a map that would need more crops than the image has pixels (crops less than a pixel apart)."""
    n_pixels = plan.height * plan.width
    if n_random is not None:
        n = n_random
    else:
        n = (plan.last_y // plan.stride + 2) * (plan.last_x // plan.stride + 2)
    if n <= n_pixels:
        return
    raise MicrostructureError(
        f"the map would need about {n:,} crops for an image of {n_pixels:,} pixels (crops "
        f"{'at random' if n_random is not None else f'{stride_px:.2g} pixels apart'}), more than one per "
        "pixel; give a larger stride or fov_um" + (", or fewer n_random_crops" if n_random is not None else "")
    )


def _is_whole(value: Any) -> bool:
    """A whole number (``2`` or ``2.0``), not a bool, a string, None or ``2.5``."""
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(float(value)) and float(value) == int(value))


def _check_options(stride, jitter, n_augment, n_random, max_invalid, method, tile_size, batch_size,
                   normalise_fovs=None, seed=0) -> dict:
    if stride is not None:
        s = _as_float(stride)
        if s is None:
            raise MicrostructureError(f"stride {stride!r} is not a number; give image pixels")
        if not math.isfinite(s) or s <= 0:
            raise MicrostructureError(
                f"stride must be a positive number of image pixels, got {stride!r}; e.g. an eighth of a crop"
            )
    j = _as_float(jitter)
    if j is None or not 0.0 <= j <= 1.0:
        raise MicrostructureError(f"jitter must be a number between 0 and 1 (a fraction of the stride), "
                                  f"got {jitter!r}")
    if not (_is_whole(n_augment) and 1 <= int(n_augment) <= len(DIHEDRAL)):
        raise MicrostructureError(
            f"n_augment must be an integer from 1 to {len(DIHEDRAL)} (mirror and quarter turns), got {n_augment!r}"
        )
    if n_random is not None and not (_is_whole(n_random) and int(n_random) >= 1):
        raise MicrostructureError(f"n_random_crops must be a positive integer or None, got {n_random!r}")
    mi = _as_float(max_invalid)
    if mi is None or not 0.0 <= mi <= 1.0:
        raise MicrostructureError(f"max_invalid_fraction must be a number between 0 and 1, got {max_invalid!r}")
    if method not in METHODS:
        raise MicrostructureError(f"unknown method {method!r}; choose 'shared' (fast) or 'exact' (per crop)")
    if not (_is_whole(tile_size) and int(tile_size) >= 128):
        raise MicrostructureError(f"tile_size must be an integer of at least 128 network-input pixels, "
                                  f"got {tile_size!r}")
    if not (_is_whole(batch_size) and int(batch_size) >= 1):
        raise MicrostructureError(f"batch_size must be a positive integer (crops per batch), got {batch_size!r}")
    if seed is not None and not (_is_whole(seed) and int(seed) >= 0):
        raise MicrostructureError(f"seed must be a non-negative integer or None (a new seed each run), got {seed!r}")
    window = None
    if normalise_fovs is not None:
        window = _as_float(normalise_fovs)
        if window is None:
            raise MicrostructureError(f"normalise_fovs {normalise_fovs!r} is not a number; give a number of "
                                      "crop fields of view (at least 1), or None")
        if not (math.isfinite(window) and window >= 1):
            raise MicrostructureError(f"normalise_fovs must be at least 1 crop field of view (or None for the "
                                      f"whole image), got {normalise_fovs!r}")
    return {"jitter": j, "n_augment": int(n_augment), "n_random": None if n_random is None else int(n_random),
            "normalise_fovs": window, "max_invalid": mi, "method": method,
            "tile": int(tile_size) // 32 * 32, "batch": int(batch_size)}


# ------------------------------------------------------------------- tiles
def _tiles(plan: _Plan, tile: int, halo: int) -> Iterator[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Tile cores (origins assigned to it) and computed regions, all multiples of the feature stride."""
    for t0 in range(0, plan.pad_h, tile):
        for u0 in range(0, plan.pad_w, tile):
            core = (t0, t0 + tile, u0, u0 + tile)
            region = (
                max(0, t0 - halo), min(plan.pad_h, t0 + tile + plan.crop + halo),
                max(0, u0 - halo), min(plan.pad_w, u0 + tile + plan.crop + halo),
            )
            yield core, region


def _run_tiles(classifier, plan: _Plan, resampler: Resampler, origins: np.ndarray, opts: dict,
               diff: np.ndarray, timings: dict, progress, cancel, client: Any = None) -> None:
    model = classifier.model_
    cell = int(model.stride)
    halo = int(math.ceil(receptive_field(model.backbone) / cell)) * cell
    tile = max(opts["tile"], cell)
    if plan.pad_h <= tile + plan.crop + halo and plan.pad_w <= tile + plan.crop + halo:
        tile = max(plan.pad_h, plan.pad_w)      # one pass over the whole image
    tiles = []
    for core, region in _tiles(plan, tile, halo):
        sel = ((origins[:, 0] >= core[0]) & (origins[:, 0] < core[1])
               & (origins[:, 1] >= core[2]) & (origins[:, 1] < core[3]))
        if sel.any():
            tiles.append((region, origins[sel]))
    worker = TileWorker(classifier, plan.crop, plan.log_ppum, opts)
    # progress counts crop evaluations (crops x test-time transforms): in this process after every
    # batch of crops (about a second or less, whatever the image's size), on a cluster per tile
    n_crops, n_views = len(origins), len(opts["transforms"])
    total = n_crops * n_views
    done = [0]

    def advance(n: int) -> None:
        done[0] += int(n)
        what = (f"{done[0]} of {n_crops} crops" if n_views == 1
                else f"{done[0]} of {total} crop views ({n_crops} crops x {n_views} transforms)")
        report(progress, "map", done[0], total + 1, what)   # + 1: the per-pixel maps once all are done

    def payloads() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for (r0, r1, c0, c1), own in tiles:
            yield resampler.tile(r0, r1, c0, c1).numpy(), own - np.array([r0, c0])

    def on_result(i: int, out: tuple[np.ndarray, dict], per_tile: bool = True) -> None:
        probs, tile_timings = out
        for k, v in tile_timings.items():
            timings[k] += v
        own = tiles[i][1]
        values = np.concatenate([probs, np.ones((len(own), 1))], 1)
        _spread(diff, own, plan.crop_cells, values)
        if per_tile:
            advance(len(own) * n_views)

    from ..cluster import connect, run_tasks

    with connect(client) as cluster:
        if cluster is None:
            worker.cancel = cancel
            worker.on_crops = advance if progress is not None else None
            for i, payload in enumerate(payloads()):
                check_cancel(cancel)
                on_result(i, worker(payload), per_tile=False)
        else:
            check_cancel(cancel)
            run_tasks(cluster, _tile_task, worker, payloads(), on_result, cancel=cancel,
                      max_in_flight=_tiles_in_flight(cluster, tile + plan.crop + 2 * halo))


def _tiles_in_flight(cluster: Any, side: int) -> int:
    """Tiles submitted at once: twice the workers' threads, within about 1 GB of tiles in transit."""
    from ..cluster import n_threads

    return max(1, min(2 * n_threads(cluster), (1 << 30) // max(1, 4 * side * side)))


class TileWorker:
    """One tile -> the mean class probabilities of the crops it owns, over the test-time transforms.

    What a cluster worker receives once per map (the fitted classifier and
    the map settings); a task then carries one resampled tile and the crop
    origins in it.
    """

    def __init__(self, classifier: Any, crop: int, log_ppum: float, opts: dict) -> None:
        self.classifier = classifier
        self.crop = crop
        self.log_ppum = log_ppum
        self.opts = opts
        self.cancel: Optional[CancelToken] = None
        #: called with the number of crops after each batch (in this process: progress within a tile)
        self.on_crops: Optional[Callable[[int], None]] = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["cancel"] = None  # an Event does not travel; cancel is checked between tasks
        state["on_crops"] = None  # nor does a callback: a cluster reports per tile
        return state

    def __call__(self, payload: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, dict]:
        tile, local = payload
        classifier, opts, cancel = self.classifier, self.opts, self.cancel
        model = classifier.model_
        timings = {"network": 0.0, "mixture": 0.0}
        x = torch.from_numpy(np.ascontiguousarray(tile)).to(classifier.device_)
        transforms = opts["transforms"]
        probs = np.zeros((len(local), len(classifier.classes_) + 1))
        scorer = getattr(classifier, "scorer_", classifier.mixture_)
        # what the scorer reads: descriptors, or descriptors and novelty features
        to_input = getattr(classifier, "open_set_input", None)
        novelty_cache: dict = {}     # frozen ImageNet features: once per crop, not per transform
        for turns, mirror in transforms:
            check_cancel(cancel)
            if opts["method"] == "exact":
                desc = _exact_descriptors(model, x, local, self.crop, turns, mirror, self.log_ppum, opts, timings,
                                          cancel, to_input, on_crops=self.on_crops)
            else:
                desc = _shared_descriptors(model, x, local, self.crop, turns, mirror, self.log_ppum, opts, timings,
                                           cancel, to_input, novelty_cache, on_crops=self.on_crops)
            t0 = time.perf_counter()
            probs += scorer.crop_probabilities(desc)
            timings["mixture"] += time.perf_counter() - t0
        probs /= len(transforms)
        return probs, timings


def _tile_task(worker: TileWorker, payload: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, dict]:
    """The task run on a cluster worker (module level: pickled by reference)."""
    return worker(payload)


def _as_input(to_input, pooled, desc, log_ppum, crops=None, imagenet=None, granulometry=None) -> np.ndarray:
    if to_input is None:
        return desc.float().cpu().numpy()
    extra = {} if granulometry is None else {"granulometry_values": granulometry}
    return to_input(pooled, desc, crops, imagenet=imagenet, log_ppum=log_ppum, **extra)


def _wants_granulometry(to_input) -> bool:
    owner = getattr(to_input, "__self__", None)
    return bool(getattr(owner, "novelty_granulometry_", False)) and _wants_imagenet(to_input)


def _wants_imagenet(to_input) -> bool:
    owner = getattr(to_input, "__self__", None)
    return getattr(owner, "scorer_features", None) == "imagenet" and getattr(owner, "scorer", None) != "gmm"


@torch.inference_mode()
def _shared_descriptors(model, x, local, crop, turns, mirror, mag, opts, timings, cancel, to_input=None,
                        novelty_cache=None, on_crops=None) -> np.ndarray:
    cell = int(model.stride)
    t0 = time.perf_counter()
    feat = _dihedral_inverse(model.feature_map(_dihedral(x, turns, mirror)), turns, mirror)[0]
    c, h, w = feat.shape
    flat = _integral(feat)
    # Frozen ImageNet features (open-set novelty) are computed on each crop on its own:
    # EfficientNet's receptive field is far larger than a crop, so windows of a whole-tile
    # pass see context an isolated crop does not, and measured on generated composites the
    # two disagreed (a trained half rejected entirely). Costly, but the answers are the crop's.
    per_crop = _wants_imagenet(to_input)
    # crops through the ImageNet network one by one: batches of the per-crop size (progress as often)
    batch = _crop_batch(opts, crop) if per_crop else opts["batch"]
    out = []
    for s in range(0, len(local), batch):
        check_cancel(cancel)
        o = torch.as_tensor(local[s:s + batch], dtype=torch.float64, device=feat.device)
        ya, xa = o[:, 0] / cell, o[:, 1] / cell
        yb, xb = (o[:, 0] + crop) / cell, (o[:, 1] + crop) / cell
        total = (_integral_at(flat, h, w, yb, xb) - _integral_at(flat, h, w, ya, xb)
                 - _integral_at(flat, h, w, yb, xa) + _integral_at(flat, h, w, ya, xa))
        pooled = (total / ((yb - ya) * (xb - xa))[None]).T.float()
        logp = torch.full((len(o),), mag, dtype=torch.float32, device=feat.device)
        imagenet = grains = None
        if per_crop:
            # the scorer's reference holds rotated and mirrored crops: one transform suffices (the
            # granulometry's square elements do not see a turn or a mirror either)
            cache = {} if novelty_cache is None else novelty_cache
            if s not in cache:
                from .imagenet_features import crop_features

                stack = torch.stack([x[0, :, a:a + crop, b:b + crop] for a, b in local[s:s + batch]])
                grains = None
                if _wants_granulometry(to_input):
                    from .granulometry import granulometry

                    owner = to_input.__self__
                    fov = int(owner.input_size) / 10.0 ** float(mag)
                    grains = granulometry(stack, np.full(len(stack), fov))
                cache[s] = (crop_features(stack), grains)
            imagenet, grains = cache[s]
        out.append(_as_input(to_input, pooled, model.head_from_pooled(pooled, logp), logp, imagenet=imagenet,
                             granulometry=grains))
        if on_crops is not None:
            on_crops(len(o))
    timings["network"] += time.perf_counter() - t0
    return np.concatenate(out)


def _crop_batch(opts: dict, crop: int) -> int:
    """Crops per batch through a network on their own: ``batch_size``, within :data:`BATCH_PIXELS`."""
    return max(1, min(opts["batch"], opts.get("batch_pixels", BATCH_PIXELS["other"]) // (crop * crop)))


def _integral(feat: torch.Tensor) -> torch.Tensor:
    """Flattened integral image ``(C, (h+1)(w+1))`` of a feature map ``(C, h, w)``."""
    c, h, w = feat.shape
    integ = torch.zeros((c, h + 1, w + 1), dtype=torch.float64, device=feat.device)
    integ[:, 1:, 1:] = feat.double().cumsum(1).cumsum(2)
    return integ.reshape(c, -1)


def _integral_at(flat: torch.Tensor, h: int, w: int, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear read of an integral image ``(C, (h+1)(w+1))`` at cell coordinates -> ``(C, n)``."""
    iy = torch.clamp(torch.floor(y), 0, h - 1)
    ix = torch.clamp(torch.floor(x), 0, w - 1)
    fy = torch.clamp(y - iy, 0, 1)
    fx = torch.clamp(x - ix, 0, 1)
    iy, ix = iy.long(), ix.long()
    w1 = w + 1
    i00 = iy * w1 + ix
    v00, v01 = flat[:, i00], flat[:, i00 + 1]
    v10, v11 = flat[:, i00 + w1], flat[:, i00 + w1 + 1]
    return ((1 - fy) * (1 - fx)) * v00 + ((1 - fy) * fx) * v01 + (fy * (1 - fx)) * v10 + (fy * fx) * v11


@torch.inference_mode()
def _exact_descriptors(model, x, local, crop, turns, mirror, mag, opts, timings, cancel, to_input=None,
                       on_crops=None) -> np.ndarray:
    batch = _crop_batch(opts, crop)
    out = []
    for s in range(0, len(local), batch):
        check_cancel(cancel)
        o = local[s:s + batch]
        crops = torch.stack([x[0, :, a:a + crop, b:b + crop] for a, b in o])
        t0 = time.perf_counter()
        logp = torch.full((len(o),), mag, dtype=torch.float32, device=x.device)
        turned = _dihedral(crops, turns, mirror)
        pooled = model.pooled(turned)
        out.append(_as_input(to_input, pooled, model.head_from_pooled(pooled, logp), logp, turned))
        timings["network"] += time.perf_counter() - t0
        if on_crops is not None:
            on_crops(len(o))
    return np.concatenate(out)
