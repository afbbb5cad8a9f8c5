"""Band geometry of cubic Kikuchi patterns: orientation search and band profiles.

A Kikuchi band is centred on the trace of a lattice plane: the pixels whose
direction ``r`` from the source point is perpendicular to the plane normal
``n`` (``r . n = 0``); its half-width is the Bragg angle, ``sin(theta_B) =
lambda |g| / 2``. Which orders ``g = m (hkl)`` of a plane family are allowed
is what tells the space groups apart (the reflection conditions), and since
``|g|`` of every family scales with the same ``1 / a``, the *ratios* of the
band widths and intensities of different families do not depend on the
material's lattice parameter or the voltage. The band-profile description
uses exactly that, after finding the orientation:

1. :func:`prepare_patterns`: subtract the detector's static background
   when one is given, else divide out the smooth background (static lobe
   and dynamic gradients, which multiply the signal); remove what is left
   of it, zero mean and unit variance, clip hot pixels.
2. A spherical Hough transform (:class:`BandIndexer`): the mean intensity
   along the trace of every plane normal on a 1-degree hemisphere grid, one
   sparse matrix product per pattern (the matrix depends only on the
   detector: pattern shape and projection centre).
3. Orientation search: the cubic orientation whose low-index plane traces
   ({100}, {110}, {111}, {210}, {211}, {311}) are brightest, over 20,000
   orientations of the cubic fundamental zone, then refined locally. The
   traces do not depend on the lattice parameter, so one search serves all
   six space groups (and any cubic material).
4. Band profiles (:meth:`BandIndexer.profiles`): for each of the twelve
   lowest plane families, the mean intensity against the distance from the
   family's traces (``|r . n|`` in bins of 0.004 up to 0.08): the band's
   width, its nested higher orders and its contrast, 240 numbers per pattern
   that a classifier (:mod:`.bandclassifier`) maps to a space group.

Two numbers say whether a cubic crystal explains the pattern at all (the
classifier's "no solution"):

- the *fit* of the orientation: the mean Hough value on the search families'
  traces, in standard deviations of the pattern (a blank or very noisy
  pattern fits badly); a hexagonal or tetragonal phase often fits almost as
  well as a cubic one, since its bands line up with some cubic traces;
- the *symmetry* (:meth:`BandIndexer.symmetry`): in a cubic crystal all
  planes of a family ``{hkl}`` are equivalent, so at the right orientation
  every trace of a bright family lies on an equally bright band. For the three
  brightest families, the dimmest of their (well covered) traces over the
  family's mean Hough value, averaged: near 1 for a cubic pattern, low when
  only some of a family's traces meet a band (a non-cubic phase, or a cubic
  pattern indexed at a wrong orientation).
"""

from __future__ import annotations

import functools
import itertools
from math import gcd
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage, sparse
from threadpoolctl import threadpool_limits

from ..errors import MicrostructureError
from ..nn.progress import CancelToken, ProgressCallback, check_cancel, report
from .simulate._legacy import quaternions_to_matrices

#: Plane families described, in order of increasing ``h^2 + k^2 + l^2``.
N_FAMILIES = 12
#: Distance bins of a band profile: ``|r . n|`` (direction cosines) from 0 to 0.08.
PROFILE_BIN = 0.004
PROFILE_BINS = 20
#: The families whose traces the orientation search matches.
SEARCH_FAMILIES = ((1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 1, 0), (2, 1, 1), (3, 1, 1))
#: Orientations of the cubic fundamental zone tried before refinement.
N_ORIENTATIONS = 20000
#: Hough line half-width (direction cosines) and the pixel count that shrinks short traces to 0.
HOUGH_HALF_WIDTH = 0.012
HOUGH_SHRINK = 8.0
#: Local refinement: perturbation sizes (degrees), perturbations per step, candidates kept.
REFINE_STEPS_DEG = (2.5, 1.2, 0.6)
REFINE_PERTURBATIONS = 40
REFINE_KEEP = 3
#: Symmetry score: traces crossing the detector over fewer pixels than this share of the
#: longest trace are left out; the families averaged; the score's range.
SYMMETRY_MIN_COVERAGE = 0.3
SYMMETRY_FAMILIES = 3
SYMMETRY_RANGE = (-1.0, 1.0)
#: Patterns prepared and indexed together (bounds the temporaries of a batch).
PREPARE_CHUNK = 64
#: Band profiles gather pixels by square tiles of this side that can reach a trace (speed only).
PROFILE_TILE = 4


def plane_families(n: int = N_FAMILIES) -> list[tuple[int, int, int]]:
    """The ``n`` lowest cubic plane families ``{hkl}`` (h >= k >= l >= 0, coprime)."""
    fams = [(h, k, l) for h in range(1, 7) for k in range(h + 1) for l in range(k + 1)
            if gcd(gcd(h, k), l) == 1]
    fams.sort(key=lambda f: (f[0] ** 2 + f[1] ** 2 + f[2] ** 2, f))
    return fams[:n]


def family_normals(family: Sequence[int]) -> np.ndarray:
    """Unit normals of every plane of a family, one of each ``+-n`` pair, (m, 3)."""
    out = set()
    for perm in itertools.permutations(family):
        for signs in itertools.product((1, -1), repeat=3):
            v = tuple(a * s for a, s in zip(perm, signs))
            if next(x for x in v if x != 0) < 0:
                v = tuple(-x for x in v)
            out.add(v)
    v = np.array(sorted(out), float)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


FAMILIES = plane_families()
_NORMALS = [family_normals(f) for f in FAMILIES]
ALL_NORMALS = np.concatenate(_NORMALS).astype(np.float32)
FAMILY_INDEX = np.concatenate([np.full(len(n), i) for i, n in enumerate(_NORMALS)])
SEARCH_NORMALS = np.concatenate([family_normals(f) for f in SEARCH_FAMILIES]).astype(np.float32)
N_FEATURES = N_FAMILIES * PROFILE_BINS
#: Each plane's first bin in :meth:`BandIndexer.profiles`' count (its family's bins and one beyond them).
_FAMILY_OFFSET = (FAMILY_INDEX * (PROFILE_BINS + 1)).astype(np.int32)


# --------------------------------------------------------------------- helpers
def check_background(background: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A static background as float32, refused by name unless it has the patterns' ``(h, w)`` and finite values."""
    bg = np.asarray(background, np.float32)
    if bg.shape != tuple(shape):
        raise MicrostructureError(
            f"the background is {' x '.join(map(str, bg.shape))} pixels but the patterns are "
            f"{shape[0]} x {shape[1]}; give the static background of the same detector")
    if not np.all(np.isfinite(bg)):
        raise MicrostructureError(
            "the static background holds NaN or infinite values; give the detector's background as finite "
            "numbers (e.g. the mean pattern of the map: background='map'), or none")
    return bg


def prepare_patterns(patterns: np.ndarray, background: Optional[np.ndarray] = None) -> np.ndarray:
    """Background-free, normalised patterns (N, h, w) float32.

    A static ``background`` (the detector's, e.g. the mean pattern of a map
    with many grains, or the one an acquisition stores) is subtracted from
    each pattern first, as kikuchipy's ``remove_static_background`` does by
    default; the result then takes the path of background-subtracted input
    below. Subtracting, not dividing: on kikuchipy's nine real Ni patterns with
    their stored background, 9 of 9 are indexed and called 225 after
    subtraction, against 7 of 9 called 225 (5 without a solution) after
    division, which lifts the noise of the dim corners; on simulated sessions
    (a smooth static background) both give the same accuracy (0.775 / 0.770
    on 600 patterns of 25 materials; ``docs/benchmarks.md``). Without one,
    each pattern is divided by a heavy Gaussian blur of itself (standard
    deviation h / 8: the static lobe and dynamic gradients multiply the
    signal); input that is already background-subtracted (negative values)
    has the blur subtracted instead. Then a lighter blur (h / 16) of the result is subtracted, the
    pattern is scaled to zero mean and unit variance and clipped at +-4
    (hot pixels). Unlike :class:`~.preprocess.PatternPreprocessor` it keeps the
    native resolution and aspect ratio: the band geometry needs the pixels
    where the projection centre puts them.
    """
    p = np.asarray(patterns, np.float32)
    h = p.shape[1]
    if background is not None:
        bg = check_background(background, p.shape[1:])
        p = p - bg[None]
        p -= p.mean(axis=(1, 2), keepdims=True)  # zero mean: the subtract path below, whatever the offset
    out = np.empty_like(p)
    for s in range(0, len(p), PREPARE_CHUNK):  # whole chunks at once; temporaries stay small
        img = p[s:s + PREPARE_CHUNK]
        bg = ndimage.gaussian_filter(img, h / 8.0, mode="nearest", axes=(1, 2))
        counts = img.min(axis=(1, 2)) >= 0  # counts: the background multiplies the signal
        floor = (1e-3 * np.maximum(bg.max(axis=(1, 2)), 1e-6) + 1e-6)[:, None, None]
        # else already background-subtracted (zero-mean) input
        q = np.where(counts[:, None, None], img / (bg + floor), img - bg)
        q -= ndimage.gaussian_filter(q, h / 16.0, mode="nearest", axes=(1, 2))
        sd = q.std(axis=(1, 2))
        q -= q.mean(axis=(1, 2), keepdims=True)
        q /= np.where(sd > 0, sd, 1.0)[:, None, None]
        np.clip(q, -4.0, 4.0, out=out[s:s + PREPARE_CHUNK])
    return out


def binning_factor(height: int, max_height: int) -> int:
    """Smallest integer binning that brings a pattern ``height`` to at most ``max_height`` pixels."""
    return max(1, -(-int(height) // int(max_height)))


def bin_patterns(patterns: np.ndarray, pc: Sequence[float], factor: int,
                 background: Optional[np.ndarray] = None) -> tuple[np.ndarray, tuple[float, float, float],
                                                                  Optional[np.ndarray]]:
    """Bin patterns ``factor`` x ``factor`` (block mean) and move the projection centre with them.

    Rows and columns beyond the last whole block are dropped; the projection
    centre (Bruker convention, :func:`pixel_directions`) is rescaled so that
    every binned pixel keeps the direction of its block's centre.

    Parameters
    ----------
    patterns : ndarray (N, h, w)
    pc : (float, float, float)
    factor : int
        Binning factor, at least 1 (1 returns the input unchanged).
    background : ndarray (h, w), optional
        A static background of the same detector (refused unless it is h x w), binned the same way.

    Returns
    -------
    (ndarray (N, h // factor, w // factor) float32, pc, background or None)
    """
    if background is not None:
        background = check_background(background, patterns.shape[1:])
    k = int(factor)
    if k <= 1:
        return patterns, tuple(float(v) for v in pc), background
    n, h, w = patterns.shape
    hb, wb = h // k, w // k
    if min(hb, wb) < 1:
        raise MicrostructureError(f"cannot bin {h} x {w} patterns by {k}: give a smaller factor")

    def block_mean(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float32)[..., :hb * k, :wb * k]
        return a.reshape(*a.shape[:-2], hb, k, wb, k).mean((-3, -1), dtype=np.float32)

    pcx, pcy, pcz = (float(v) for v in pc)
    # block j's centre lies at (j + 0.5) k original pixels; directions only need the ratios
    scale = h / (k * hb)
    new_pc = (pcx * w / (k * wb), pcy * scale, pcz * scale)
    return block_mean(patterns), new_pc, (None if background is None else block_mean(background))


def check_projection_centre(pc: Sequence[float]) -> tuple[float, float, float]:
    """``(PCx, PCy, PCz)`` as floats; a clear error when it is not a plausible projection centre."""
    try:
        vals = tuple(float(v) for v in pc)
    except (TypeError, ValueError):
        raise MicrostructureError(
            f"pc={pc!r} is not a projection centre; give (PCx, PCy, PCz) in the Bruker convention, "
            "e.g. pc=(0.5, 0.3, 0.6) (from the acquisition software or kikuchipy's EBSDDetector.pc)") from None
    if len(vals) != 3 or not np.all(np.isfinite(vals)):
        raise MicrostructureError(
            f"pc={pc!r} must be three finite numbers (PCx, PCy, PCz) in the Bruker convention, "
            "e.g. pc=(0.5, 0.3, 0.6)")
    pcx, pcy, pcz = vals
    if not (-0.5 <= pcx <= 1.5 and -0.5 <= pcy <= 1.5 and 0.2 <= pcz <= 3.0):
        raise MicrostructureError(
            f"pc={vals} is implausible: PCx and PCy are fractions of the pattern width and height "
            "(usually 0.3-0.7 and 0.1-0.5) and PCz the detector distance in pattern heights (usually "
            "0.4-1.0); convert an EDAX/TSL or Oxford projection centre to the Bruker convention first")
    return vals


def pixel_directions(shape: Sequence[int], pc: Sequence[float]) -> np.ndarray:
    """Unit vectors from the source point to each pixel, (h*w, 3) float32.

    The detector frame of :func:`~.simulate.detector_directions`: x to the
    right, y up, z from the screen towards the source; ``pc`` in the Bruker
    convention (fractions of the width and height from the top-left corner,
    distance in pattern heights).
    """
    h, w = (int(s) for s in shape)
    pcx, pcy, pcz = pc
    x, y = np.meshgrid((np.arange(w) + 0.5 - pcx * w) / h, (pcy * h - (np.arange(h) + 0.5)) / h)
    r = np.stack([x, y, np.full_like(x, pcz)], -1).reshape(-1, 3)
    return (r / np.linalg.norm(r, axis=1, keepdims=True)).astype(np.float32)


_N_POLAR, _N_AZIMUTH = 91, 360  # hemisphere at 1 degree


def _hemisphere_grid() -> np.ndarray:
    th = np.deg2rad(np.linspace(0.0, 90.0, _N_POLAR))
    ph = np.deg2rad(np.arange(_N_AZIMUTH, dtype=float))
    t, p = np.meshgrid(th, ph, indexing="ij")
    return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)


def _grid_index(v: np.ndarray) -> np.ndarray:
    """Index of the nearest hemisphere-grid normal (``n`` and ``-n`` are one trace)."""
    return _grid_index_xyz(v[..., 0], v[..., 1], v[..., 2])


_DEGREES = np.float32(180.0 / np.pi)


def _grid_index_xyz(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """:func:`_grid_index` of unit vectors given as components (any equal shapes).

    ``-n`` (for ``z < 0``) has the polar angle of ``|z|`` and the azimuth turned by 180 degrees.
    """
    th = np.rint(np.arccos(np.minimum(np.abs(z), 1.0)) * _DEGREES).astype(np.int64)
    ph = np.rint(np.arctan2(y, x) * _DEGREES).astype(np.int64)
    ph += np.where(z < 0, _N_AZIMUTH // 2, 0)
    ph %= _N_AZIMUTH
    th *= _N_AZIMUTH
    th += ph
    return th


@functools.lru_cache(maxsize=2)
def fundamental_zone_orientations(n: int = N_ORIENTATIONS, seed: int = 0) -> np.ndarray:
    """``n`` random orientations (crystal-to-detector matrices, (n, 3, 3)) of the cubic fundamental zone.

    Uniform quaternions kept when their Rodrigues vector lies in the m-3m
    fundamental zone (``|r_i| <= sqrt(2) - 1`` and ``|r_1| + |r_2| + |r_3| <= 1``).
    """
    rng = np.random.default_rng(seed)
    kept = []
    while sum(len(k) for k in kept) < n:
        q = rng.normal(size=(30 * n, 4))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        r = q[:, 1:] / q[:, :1]
        kept.append(q[(np.abs(r).max(1) <= np.sqrt(2) - 1) & (np.abs(r).sum(1) <= 1)])
    return quaternions_to_matrices(np.concatenate(kept)[:n]).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _search_matrix(n: int = N_ORIENTATIONS) -> sparse.csr_matrix:
    """Sparse (n, n_grid): row ``o`` averages the Hough values on the search normals at orientation ``o``."""
    rot = fundamental_zone_orientations(n)
    idx = _grid_index(np.einsum("oij,nj->oni", rot, SEARCH_NORMALS))
    rows = np.repeat(np.arange(n), idx.shape[1])
    data = np.full(idx.size, 1.0 / idx.shape[1], np.float32)
    return sparse.csr_matrix((data, (rows, idx.ravel())), shape=(n, _N_POLAR * _N_AZIMUTH))


@functools.lru_cache(maxsize=len(REFINE_STEPS_DEG))
def _perturbations(step_deg: float) -> np.ndarray:
    """Fixed small rotations of about ``step_deg`` degrees, (REFINE_PERTURBATIONS, 3, 3)."""
    rng = np.random.default_rng(int(step_deg * 1000))
    v = rng.normal(size=(REFINE_PERTURBATIONS, 3)) * np.deg2rad(step_deg)
    angle = np.linalg.norm(v, axis=1)
    axis = v / angle[:, None]
    q = np.concatenate([np.cos(angle / 2)[:, None], axis * np.sin(angle / 2)[:, None]], 1)
    return quaternions_to_matrices(q).astype(np.float32)


# --------------------------------------------------------------------- indexer
class BandIndexer:
    """Orientation search and band profiles for one detector set-up.

    Parameters
    ----------
    shape : (int, int)
        Pattern height and width in pixels.
    pc : (float, float, float)
        Projection centre, Bruker convention (see :func:`pixel_directions`).
    n_orientations : int
        Candidate orientations of the coarse search.
    """

    def __init__(self, shape: Sequence[int], pc: Sequence[float], n_orientations: int = N_ORIENTATIONS) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.pc = check_projection_centre(pc)
        self.n_orientations = int(n_orientations)
        self.directions = pixel_directions(self.shape, self.pc)
        self._hough: Optional[sparse.csr_matrix] = None  # built on first use (profiles do not need it)
        self._trace_pixels: Optional[np.ndarray] = None  # pixels on each grid normal's trace
        self._tiles: Optional[tuple[np.ndarray, ...]] = None  # see _profile_tiles
        self._search: Optional[sparse.csr_matrix] = None  # the search matrix on the cells below
        self._seen: Optional[np.ndarray] = None  # grid normals whose trace crosses the detector

    def _hough_matrix(self) -> sparse.csr_matrix:
        """Rows: hemisphere normals; the mean of the pixels within the trace's half-width."""
        normals = _hemisphere_grid().astype(np.float32)
        rows, cols = [], []
        for s in range(0, len(normals), 4096):
            r, c = np.nonzero(np.abs(normals[s:s + 4096] @ self.directions.T) < HOUGH_HALF_WIDTH)
            rows.append(r + s)
            cols.append(c)
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        counts = np.bincount(rows, minlength=len(normals)).astype(np.float32)
        self._trace_pixels = counts
        data = (1.0 / (counts[rows] + HOUGH_SHRINK)).astype(np.float32)
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(normals), len(self.directions)))

    def hough(self, prepared: np.ndarray) -> np.ndarray:
        """Spherical Hough transforms of prepared patterns, (N, n_grid) float32."""
        if self._hough is None:
            self._hough = self._hough_matrix()
        flat = np.asarray(prepared, np.float32).reshape(len(prepared), -1)
        return np.asarray((self._hough @ flat.T).T, np.float32)

    def coarse_scores(self, hough_values: np.ndarray) -> np.ndarray:
        """Mean Hough value on the search traces at every candidate orientation, (N, n_orientations)."""
        if self._search is None:
            if self._trace_pixels is None:
                self._hough = self._hough_matrix()
            # normals whose trace misses the detector have Hough value 0: leaving them out is exact
            self._seen = np.flatnonzero(self._trace_pixels > 0)
            self._search = _search_matrix(self.n_orientations)[:, self._seen].tocsr()
        seen = np.asarray(hough_values, np.float32)[:, self._seen]
        return np.asarray((self._search @ seen.T).T)

    def orient(self, hough_values: np.ndarray, coarse: Optional[np.ndarray] = None) -> tuple[np.ndarray, float]:
        """Best cubic orientation of one pattern from its Hough transform: (matrix (3, 3), fit).

        ``coarse``: the pattern's :meth:`coarse_scores` when computed for a batch.
        See :meth:`orient_many`.
        """
        hough_values = np.asarray(hough_values, np.float32)[None]
        rots, fit = self.orient_many(hough_values, None if coarse is None else np.asarray(coarse)[None])
        return rots[0], float(fit[0])

    def orient_many(self, hough_values: np.ndarray,
                    coarse: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """Best cubic orientations of patterns from their Hough transforms.

        The ``REFINE_KEEP`` best of the coarse search's candidates are refined:
        at each step of ``REFINE_STEPS_DEG``, ``REFINE_PERTURBATIONS`` small
        rotations of each are scored and the best ``REFINE_KEEP`` kept.

        Parameters
        ----------
        hough_values : ndarray (N, n_grid)
            :meth:`hough` of the patterns.
        coarse : ndarray (N, n_orientations), optional
            Their :meth:`coarse_scores`, when already computed.

        Returns
        -------
        (ndarray (N, 3, 3) crystal-to-detector float32, ndarray (N,) float32)
            The orientations and their fit (mean Hough value on the search
            families' traces, in standard deviations of the pattern).
        """
        hough_values = np.asarray(hough_values, np.float32)
        if coarse is None:
            coarse = self.coarse_scores(hough_values)
        n, n_grid = hough_values.shape
        # the REFINE_KEEP best candidates (repeated argmax: several times faster than argpartition)
        # on a row-major copy: the sparse product's transpose is column-major, and argmax along
        # its rows then strides through memory (three times slower)
        scores = np.array(coarse, np.float32, order="C")
        rows = np.arange(n)
        top = np.empty((n, REFINE_KEEP), np.int64)
        for j in range(REFINE_KEEP):
            top[:, j] = scores.argmax(1)
            scores[rows, top[:, j]] = -np.inf
        cands = fundamental_zone_orientations(self.n_orientations)[top]          # (N, keep, 3, 3)
        flat = hough_values.reshape(-1)
        offset = (rows * n_grid)[:, None, None]
        for step in REFINE_STEPS_DEG:
            moved = np.matmul(_perturbations(step)[None, None], cands[:, :, None]).reshape(n, -1, 3, 3)
            allc = np.concatenate([cands, moved], 1)                             # (N, c, 3, 3)
            # component i of every rotated search normal j: (N, c, 3, n_search)
            normals = (allc.reshape(-1, 3) @ SEARCH_NORMALS.T).reshape(n, allc.shape[1], 3, -1)
            cells = _grid_index_xyz(normals[:, :, 0], normals[:, :, 1], normals[:, :, 2])
            score = flat[cells + offset].mean(2)                                 # (N, c)
            order = np.argsort(-score, axis=1)[:, :REFINE_KEEP]
            cands = allc[rows[:, None], order]
            best = score[rows, order[:, 0]]
        return np.ascontiguousarray(cands[:, 0]), best.astype(np.float32)

    def symmetry(self, hough_values: np.ndarray, rotation: np.ndarray) -> float:
        """How equally the symmetry-equivalent traces of the brightest plane families are lit.

        At ``rotation``, the traces of the twelve lowest families that cross the
        detector over at least ``SYMMETRY_MIN_COVERAGE`` of the longest trace's
        pixels are kept; for the ``SYMMETRY_FAMILIES`` families with the highest
        mean Hough value (among those with two or more kept traces), the lowest
        Hough value of a trace over the family's mean, averaged, clipped to
        ``SYMMETRY_RANGE``. About 1 when every plane of a bright family lies on
        a band (a cubic crystal at its orientation); low when some of them
        fall between bands. ``SYMMETRY_RANGE[0]`` when no family qualifies.
        See :meth:`symmetry_many`.
        """
        return float(self.symmetry_many(np.asarray(hough_values, np.float32)[None],
                                        np.asarray(rotation, np.float32)[None])[0])

    def symmetry_many(self, hough_values: np.ndarray, rotations: np.ndarray) -> np.ndarray:
        """:meth:`symmetry` of patterns (N, n_grid) at orientations (N, 3, 3): (N,) float32."""
        if self._trace_pixels is None:
            self._hough = self._hough_matrix()
        hough_values = np.asarray(hough_values, np.float32)
        n = len(hough_values)
        rows = np.arange(n)[:, None]
        cells = _grid_index(np.matmul(ALL_NORMALS[None], np.asarray(rotations, np.float32).transpose(0, 2, 1)))
        pixels = self._trace_pixels[cells]                                       # (N, planes)
        values = hough_values[rows, cells].astype(np.float64)
        # the threshold in float64, as for one pattern (a float32 0.3 x 90 is above 27)
        kept = pixels >= SYMMETRY_MIN_COVERAGE * np.maximum(pixels.max(1), 1.0).astype(np.float64)[:, None]
        in_family = kept[:, None, :] & (FAMILY_INDEX[None, None, :] == np.arange(N_FAMILIES)[None, :, None])
        traces = in_family.sum(2)                                                # (N, families)
        mean = np.where(in_family, values[:, None, :], 0.0).sum(2) / np.maximum(traces, 1)
        low = np.where(in_family, values[:, None, :], np.inf).min(2)
        qualifies = traces >= 2
        # the brightest qualifying families, ties in family order (as a stable sort)
        order = np.argsort(-np.where(qualifies, mean, -np.inf), axis=1, kind="stable")[:, :SYMMETRY_FAMILIES]
        top_mean, top_low, top_ok = mean[rows, order], low[rows, order], qualifies[rows, order]
        used = top_ok.sum(1)
        dimmest_mean = top_mean[rows[:, 0], np.maximum(used - 1, 0)]
        # a family mean <= 0 makes the dimmest one <= 0: that pattern's score is replaced below
        ratio = np.where(top_ok, top_low / np.where(top_ok & (top_mean > 0), top_mean, 1.0), 0.0).sum(1)
        ratio /= np.maximum(used, 1)
        out = np.clip(ratio, *SYMMETRY_RANGE)
        return np.where((used == 0) | (dimmest_mean <= 0), SYMMETRY_RANGE[0], out).astype(np.float32)

    def _profile_tiles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Square tiles of ``PROFILE_TILE`` pixels a side, for :meth:`profiles`.

        Returns the pixel index of every tile slot (T * t * t,), tile by tile
        (0 where a tile at the edge has no pixel), the slots' directions
        (3, T * t * t) float32, NaN where padded (never near a trace), each
        tile's mean direction (T, 3) and its reach (T, 1): the profile's span
        plus the largest distance of its pixels' directions from the mean (a
        tile holds a pixel within the span of a plane only if its mean
        direction lies within that reach).
        """
        if self._tiles is None:
            h, w = self.shape
            t = PROFILE_TILE
            rr, cc = np.divmod(np.arange(h * w), w)
            slot = ((rr // t) * -(-w // t) + cc // t) * t * t + (rr % t) * t + cc % t
            n_slots = -(-h // t) * -(-w // t) * t * t
            pixels = np.zeros(n_slots, np.int64)
            pixels[slot] = np.arange(h * w)
            dirs = np.full((n_slots, 3), np.nan, np.float32)
            dirs[slot] = self.directions
            by_tile = dirs.reshape(-1, t * t, 3)
            centre = np.nanmean(by_tile, axis=1)
            centre /= np.linalg.norm(centre, axis=1, keepdims=True)
            radius = np.nanmax(np.linalg.norm(by_tile - centre[:, None], axis=2), axis=1)
            reach = PROFILE_BIN * PROFILE_BINS + radius[:, None] + 1e-5
            self._tiles = (pixels, np.ascontiguousarray(dirs.T), centre.astype(np.float32),
                           reach.astype(np.float32))
        return self._tiles

    def profiles(self, prepared: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """Band profiles of one prepared pattern at an orientation, (N_FAMILIES, PROFILE_BINS).

        Mean intensity against ``|r . n|`` over all traces of each family;
        bins no pixel falls in (a family with no trace on the detector) are 0,
        the mean of a prepared pattern.
        """
        normals = ALL_NORMALS @ np.asarray(rotation, np.float32).T                 # (planes, 3)
        pixels, dirs, centre, reach = self._profile_tiles()
        per_tile = PROFILE_TILE * PROFILE_TILE
        # only the (tile, plane) pairs whose tile can reach within the profile's span of the trace
        # are binned, and |r . n| is computed for those pairs' slots alone (about a tenth of all)
        tiles, planes = np.divmod(np.flatnonzero(np.abs(centre @ normals.T) < reach), len(normals))
        by_tile = dirs.reshape(3, len(centre), per_tile)
        n_sel = normals[planes]                                                   # (pairs, 3)
        q = by_tile[0][tiles] * n_sel[:, :1]
        q += by_tile[1][tiles] * n_sel[:, 1:2]
        q += by_tile[2][tiles] * n_sel[:, 2:]
        np.abs(q, out=q)
        q *= 1.0 / PROFILE_BIN
        np.fmin(q, PROFILE_BINS, out=q)  # beyond the profile, and padding (NaN): one extra bin, dropped
        idx = q.astype(np.int32)
        idx += _FAMILY_OFFSET[planes][:, None]
        vals = np.asarray(prepared, np.float32).reshape(-1)[pixels].reshape(len(centre), per_tile)[tiles]
        total = np.bincount(idx.ravel(), weights=vals.ravel(), minlength=N_FAMILIES * (PROFILE_BINS + 1))
        count = np.bincount(idx.ravel(), minlength=N_FAMILIES * (PROFILE_BINS + 1))
        means = (total / np.maximum(count, 1)).reshape(N_FAMILIES, PROFILE_BINS + 1)
        return means[:, :PROFILE_BINS].astype(np.float32)

    def describe(self, patterns: np.ndarray, background: Optional[np.ndarray] = None, *,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None, stage: str = "index") -> dict[str, np.ndarray]:
        """Orientation, fit, symmetry and band-profile features of every pattern.

        ``background``: see :func:`prepare_patterns`.

        Returns
        -------
        dict
            ``features`` (N, N_FEATURES) float32, ``rotations`` (N, 3, 3)
            crystal-to-detector, ``fit`` (N,) float32 (standard deviations),
            ``symmetry`` (N,) float32 (see :meth:`symmetry`, dimensionless).
        """
        patterns = np.asarray(patterns)
        if patterns.shape[1:] != self.shape:
            raise MicrostructureError(
                f"patterns are {patterns.shape[1]} x {patterns.shape[2]} pixels but the indexer was set up "
                f"for {self.shape[0]} x {self.shape[1]}; give patterns of one detector set-up")
        n = len(patterns)
        feats = np.empty((n, N_FEATURES), np.float32)
        rots = np.empty((n, 3, 3), np.float32)
        fit = np.empty(n, np.float32)
        symmetry = np.empty(n, np.float32)
        # the products here are small: BLAS threads only wait for each other (ten times slower
        # on a busy machine), so one thread; the sparse products and NumPy are single-threaded anyway
        with threadpool_limits(1, user_api="blas"):
            for s in range(0, n, PREPARE_CHUNK):
                check_cancel(cancel)
                e = min(s + PREPARE_CHUNK, n)
                prepared = prepare_patterns(patterns[s:e], background)
                hough = self.hough(prepared)
                rots[s:e], fit[s:e] = self.orient_many(hough)
                symmetry[s:e] = self.symmetry_many(hough, rots[s:e])
                for i in range(s, e):
                    feats[i] = self.profiles(prepared[i - s], rots[i]).ravel()
                report(progress, stage=stage, step=e, total=n)
        return {"features": feats, "rotations": rots, "fit": fit, "symmetry": symmetry}


def _cubic_rotations() -> np.ndarray:
    """The 24 proper rotations of the cubic point group (signed permutation matrices of determinant 1)."""
    ops = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            op = np.zeros((3, 3))
            op[range(3), perm] = signs
            if np.linalg.det(op) > 0:
                ops.append(op)
    return np.array(ops)


_CUBIC_ROTATIONS = _cubic_rotations()


def _misorientation_cosines(rotations: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine of the smallest misorientation (cubic symmetry) of each rotation to each reference, (N, K).

    ``trace(R op F^T)`` is the dot product of the flattened ``R op`` and ``F``: one matrix product.
    """
    turned = np.einsum("nij,ojk->noik", rotations, _CUBIC_ROTATIONS.astype(rotations.dtype))  # R op
    traces = turned.reshape(-1, 9) @ reference.reshape(len(reference), 9).T
    return (traces.reshape(len(rotations), len(_CUBIC_ROTATIONS), len(reference)).max(1) - 1) / 2


def misorientation_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest rotation angle (degrees) between two cubic orientations, over the 24 symmetry operations."""
    cosine = _misorientation_cosines(np.asarray(a, float)[None], np.asarray(b, float)[None])[0, 0]
    return float(np.degrees(np.arccos(np.clip(cosine, -1, 1))))


def orientation_groups(rotations: np.ndarray, tolerance_deg: float) -> np.ndarray:
    """Group the patterns of one orientation (a grain) together: a group index per rotation.

    Each rotation joins the first group whose first member lies within ``tolerance_deg``
    (cubic symmetry, :func:`misorientation_deg`), else starts a group; groups are numbered
    in order of appearance.

    Parameters
    ----------
    rotations : ndarray (N, 3, 3)
        Crystal-to-detector rotations (``describe(...)["rotations"]``).
    tolerance_deg : float
        Largest misorientation (degrees) from a group's first member.

    Returns
    -------
    ndarray (N,) int
    """
    rotations = np.asarray(rotations, float)
    cos_tolerance = np.cos(np.radians(float(tolerance_deg)))
    first: list[np.ndarray] = []
    groups = np.empty(len(rotations), np.int64)
    for i, rotation in enumerate(rotations):
        if first:
            near = np.flatnonzero(_misorientation_cosines(rotation[None], np.asarray(first))[0] >= cos_tolerance)
            if near.size:
                groups[i] = near[0]
                continue
        first.append(rotation)
        groups[i] = len(first) - 1
    return groups


def near_orientations(rotations: np.ndarray, reference: np.ndarray, tolerance_deg: float,
                      chunk: int = 256) -> np.ndarray:
    """True for each rotation within ``tolerance_deg`` of one of ``reference`` (cubic symmetry).

    Parameters
    ----------
    rotations : ndarray (N, 3, 3)
    reference : ndarray (K, 3, 3)
        Crystal-to-detector rotations, as :func:`orientation_groups` takes.
    tolerance_deg : float

    Returns
    -------
    ndarray (N,) bool
    """
    rotations, reference = np.asarray(rotations, np.float32), np.asarray(reference, np.float32)
    out = np.zeros(len(rotations), bool)
    if not len(reference):
        return out
    cos_tolerance = np.cos(np.radians(float(tolerance_deg)))
    for s in range(0, len(rotations), chunk):
        out[s:s + chunk] = _misorientation_cosines(rotations[s:s + chunk], reference).max(1) >= cos_tolerance
    return out
