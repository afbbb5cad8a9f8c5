"""The original fast kinematical Kikuchi-pattern generator (sample data, tests).

Kept unchanged for the shipped sample data and the fast tests; the
domain-randomised generator for pretraining is :mod:`.domain`.

Used for the shipped sample data, for fast tests and for the benchmarks. It
is deliberately simple and is *not* a replacement for dynamical simulations
(EMsoft) or for kikuchipy's kinematical simulator: each reflector ``g = (hkl)``
of a crystal structure contributes a band of half-width ``sin(theta_B) =
lambda / (2 d_hkl)`` (in direction cosines) around its trace in the gnomonic
projection, weighted by ``|F_hkl|``, where ``F_hkl`` is the kinematical
structure factor of the real atomic basis. Extinction rules of the space
group therefore come out of the structure, superlattice bands of ordered
phases (L1_2 Ni3Al, B2 NiAl) are weak, and higher-order reflections give the
nested bands seen in real patterns.

Approximations (documented so that nobody tunes preprocessing to them):

- atomic scattering factor ``f(Z, s) = Z**(2/3) * exp(-B s**2)`` with
  ``s = 1 / (2 d)`` in 1/Angstrom and ``B = 2.5`` Angstrom**2 (form-factor
  fall-off and Debye-Waller together);
- band weight ``|F|`` rather than the kinematical ``|F|**2``, which makes weak
  bands more visible, as dynamical scattering does in real patterns;
- band edges are logistic with a softness of ``0.25 sin(theta_B) + 0.002``;
- detector: flat, projection centre ``(PCx, PCy, PCz)`` in Bruker convention
  (fractions of the pattern width / height from the top-left, distance in
  pattern heights); the sample tilt is folded into the random orientation;
- the background is a smooth Gaussian lobe, the noise Poisson.

Named materials: :data:`~.structures.ALL_MATERIALS` (all six groups; the
legacy :data:`MATERIALS` cover 221, 223, 225, 227, 229 and keep the sample data
unchanged; 230 garnets and Al4Ni3 are in ``EXTRA_MATERIALS``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ...errors import MicrostructureError

from .detector import band_image, detector_directions  # noqa: F401
from .kinematics import Reflectors, electron_wavelength, reflectors  # noqa: F401
from .structures import ALL_MATERIALS, MATERIALS, CubicStructure  # noqa: F401

# --------------------------------------------------------------------------
# Orientations


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices uniformly distributed on SO(3), shape (n, 3, 3)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return quaternions_to_matrices(q)


def quaternions_to_matrices(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z), shape (n, 4), to rotation matrices (n, 3, 3)."""
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


def small_rotations(n: int, max_angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Rotations about random axes by angles uniform in [0, max_angle_deg]."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    ang = np.deg2rad(rng.uniform(0, max_angle_deg, n))
    q = np.concatenate([np.cos(ang / 2)[:, None], np.sin(ang / 2)[:, None] * axis], 1)
    return quaternions_to_matrices(q)


# --------------------------------------------------------------------------
# Patterns


def simulate_patterns(
    structure: Union[str, CubicStructure],
    rotations: np.ndarray,
    shape: tuple[int, int] = (60, 60),
    pc: Sequence[float] = (0.5, 0.3, 0.6),
    pc_per_pattern: Optional[np.ndarray] = None,
    kv: float = 20.0,
    band_contrast: float = 0.25,
    counts: float = 200.0,
    background_centre: Sequence[float] = (0.1, 0.15),
    background_width: float = 0.7,
    rng: Optional[np.random.Generator] = None,
    dtype=np.uint8,
) -> np.ndarray:
    """Simulate noisy Kikuchi patterns with a detector background.

    Parameters
    ----------
    structure : str or CubicStructure
        A name from :data:`MATERIALS` or a structure.
    rotations : ndarray, shape (n, 3, 3)
        Crystal-to-detector rotation of each pattern.
    shape : (int, int)
        Pattern height and width in pixels.
    pc : (float, float, float)
        Projection centre (Bruker convention), used for every pattern unless
        ``pc_per_pattern`` is given.
    pc_per_pattern : ndarray, shape (n, 3), optional
        A projection centre per pattern (beam shift across a map).
    kv : float
        Accelerating voltage in kV.
    band_contrast : float
        Relative amplitude of the bands on the background.
    counts : float
        Mean electron counts per pixel at the background maximum (Poisson
        noise); ``np.inf`` for no noise.
    background_centre, background_width : float
        Centre (detector units, relative to the pattern centre) and width (in
        pattern heights) of the Gaussian background lobe.
    rng : numpy Generator, optional
    dtype : numpy dtype
        ``uint8`` or ``uint16`` scale to the full range; float types keep counts.

    Returns
    -------
    ndarray, shape (n, h, w)
    """
    if isinstance(structure, str):
        if structure not in ALL_MATERIALS:
            raise MicrostructureError(
                f"unknown material {structure!r}; choose one of {', '.join(ALL_MATERIALS)}"
            )
        structure = ALL_MATERIALS[structure]
    rng = np.random.default_rng() if rng is None else rng
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    h, w = shape
    refl = reflectors(structure, kv, scattering="z23")
    n = len(rotations)
    if pc_per_pattern is None:
        bands = band_image(refl, rotations, detector_directions(shape, pc)).reshape(n, h, w)
    else:
        pcs = np.asarray(pc_per_pattern, float).reshape(n, 3)
        bands = np.empty((n, h, w), np.float32)
        for k in range(n):
            bands[k] = band_image(refl, rotations[k:k + 1], detector_directions(shape, pcs[k]))[0].reshape(h, w)
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h - 0.5, (np.arange(w) + 0.5) / h - 0.5 * w / h, indexing="ij")
    bg = np.exp(-((xx - background_centre[0]) ** 2 + (yy - background_centre[1]) ** 2) / (2 * background_width ** 2))
    bg = (0.25 + 0.75 * bg / bg.max()).astype(np.float32)
    mean = bg[None] * (1.0 + band_contrast * bands)
    mean = np.clip(mean, 0, None)
    if np.isfinite(counts):
        img = rng.poisson(mean * counts).astype(np.float32) / counts
    else:
        img = mean.astype(np.float32)
    if np.issubdtype(np.dtype(dtype), np.integer):
        # a fixed camera gain: the background maximum is near 1.0 -> 45 % of full range
        top = np.iinfo(dtype).max
        return np.clip(np.rint(img * 0.45 * top), 0, top).astype(dtype)
    return img.astype(dtype)


def simulate_training_set(
    materials: Sequence[str],
    n_per_material: int,
    shape: tuple[int, int] = (60, 60),
    seed: int = 0,
    pc_jitter: float = 0.02,
    base_rotations: Optional[np.ndarray] = None,
    spread_deg: float = 3.0,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patterns of several materials, in random orientations or around given ones.

    Parameters
    ----------
    materials : sequence of str
        Names from :data:`MATERIALS`.
    n_per_material : int
    shape : (int, int)
    seed : int
    pc_jitter : float
        Projection-centre spread (uniform, +-).
    base_rotations : ndarray (k, 3, 3), optional
        Orientations of a textured sample (e.g. the grains of a map): each
        pattern takes one of them, disturbed by up to ``spread_deg`` degrees.
        Default: uniformly random orientations (the paper's setting).
    **kwargs
        Passed to :func:`simulate_patterns`.

    Returns
    -------
    patterns : ndarray (n, h, w) uint8
    space_groups : ndarray (n,) int
    material_index : ndarray (n,) int, index into ``materials``
    """
    rng = np.random.default_rng(seed)
    pats, sgs, mats = [], [], []
    base_pc = np.asarray(kwargs.pop("pc", (0.5, 0.3, 0.6)), float)
    for m, name in enumerate(materials):
        if base_rotations is None:
            rot = random_rotations(n_per_material, rng)
        else:
            base = np.asarray(base_rotations)[rng.integers(0, len(base_rotations), n_per_material)]
            rot = np.einsum("nij,njk->nik", small_rotations(n_per_material, spread_deg, rng), base)
        pcs = base_pc + rng.uniform(-pc_jitter, pc_jitter, (n_per_material, 3)) if pc_jitter else None
        if pcs is None:
            p = simulate_patterns(name, rot, shape, pc=base_pc, rng=rng, **kwargs)
        else:
            p = _simulate_grouped_pc(name, rot, shape, pcs, rng, **kwargs)
        pats.append(p)
        sgs.append(np.full(n_per_material, ALL_MATERIALS[name].space_group))
        mats.append(np.full(n_per_material, m))
    order = rng.permutation(sum(len(p) for p in pats))
    return (np.concatenate(pats)[order], np.concatenate(sgs)[order], np.concatenate(mats)[order])


def _simulate_grouped_pc(name, rot, shape, pcs, rng, n_groups: int = 8, **kwargs):
    """Simulate with a handful of distinct projection centres (fast, still varied)."""
    n = len(rot)
    centres = pcs[:n_groups] if len(pcs) >= n_groups else pcs
    n_groups = min(n_groups, len(centres))  # fewer patterns than groups: every pattern in a group
    group = rng.integers(0, n_groups, n)
    out = None
    for g in range(n_groups):
        idx = np.flatnonzero(group == g)
        if idx.size == 0:
            continue
        p = simulate_patterns(name, rot[idx], shape, pc=centres[g], rng=rng, **kwargs)
        if out is None:
            out = np.empty((n, *shape), p.dtype)
        out[idx] = p
    return out


# --------------------------------------------------------------------------
# A dual-phase map


def simulate_dual_phase_map(
    map_shape: tuple[int, int] = (40, 50),
    pattern_shape: tuple[int, int] = (48, 48),
    matrix: str = "Ni",
    precipitate: str = "Ni3Al",
    n_grains: int = 6,
    n_precipitates: int = 9,
    seed: int = 1,
    cube_on_cube: bool = True,
    return_orientations: bool = False,
    **kwargs,
):
    """A map of a matrix phase with grains and round precipitates.

    The matrix is a Voronoi tessellation of ``n_grains`` grains with random
    orientations; precipitates are discs of 2-6 map pixels radius. With
    ``cube_on_cube`` (as gamma' Ni3Al in a gamma Ni matrix) a precipitate
    takes the orientation of the grain it sits in, else a random one. Within
    a grain the orientation spreads by up to 1 degree and the projection
    centre shifts linearly across the map (beam scan).

    Returns
    -------
    patterns : ndarray (rows, cols, h, w) uint8
    phase : ndarray (rows, cols) int: 0 matrix, 1 precipitate
    orientations : ndarray (n_grains, 3, 3), only with ``return_orientations``
    """
    rng = np.random.default_rng(seed)
    rows, cols = map_shape
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    seeds = rng.uniform([0, 0], [rows, cols], (n_grains, 2))
    grain = np.argmin(((rr[..., None] - seeds[:, 0]) ** 2 + (cc[..., None] - seeds[:, 1]) ** 2), -1)
    phase = np.zeros(map_shape, int)
    for k in range(n_precipitates):
        r0, c0 = rng.uniform([0, 0], [rows, cols])
        rad = rng.uniform(2, 6)
        inside = (rr - r0) ** 2 + (cc - c0) ** 2 <= rad ** 2
        phase[inside] = 1
        if not cube_on_cube:
            grain[inside] = n_grains + k
    grain_rot = random_rotations(n_grains + n_precipitates, rng)
    rots = np.einsum("nij,njk->nik", small_rotations(rows * cols, 1.0, rng), grain_rot[grain.ravel()])
    pc0 = np.asarray(kwargs.pop("pc", (0.5, 0.3, 0.6)), float)
    pcs = pc0 + np.stack([(cc.ravel() / cols - 0.5) * 0.02, (rr.ravel() / rows - 0.5) * 0.02,
                          np.zeros(rows * cols)], -1)
    out = np.empty((rows * cols, *pattern_shape), np.uint8)
    for ph, name in enumerate([matrix, precipitate]):
        idx = np.flatnonzero(phase.ravel() == ph)
        # group patterns into a few projection-centre bands for speed
        band = np.round(rr.ravel()[idx] / max(rows // 8, 1)).astype(int)
        for b in np.unique(band):
            sel = idx[band == b]
            out[sel] = simulate_patterns(name, rots[sel], pattern_shape, pc=pcs[sel].mean(0),
                                         rng=rng, **kwargs)
    out = out.reshape(rows, cols, *pattern_shape)
    if return_orientations:
        return out, phase, grain_rot[:n_grains]
    return out, phase


# --------------------------------------------------------------------------
# The sample data shipped with the plugin

SAMPLE_SETTINGS = dict(map_shape=(30, 40), pattern_shape=(40, 40), matrix="Ni", precipitate="Ni3Al",
                       n_grains=5, n_precipitates=7, seed=7, n_train_per_phase=150, kv=20.0,
                       counts=400.0, pc=(0.5, 0.3, 0.6))


def make_sample_data(settings: Optional[dict] = None) -> dict[str, np.ndarray]:
    """The dual-phase sample: a Ni (225) map with cube-on-cube Ni3Al (221) precipitates.

    Returns a dict with ``patterns`` (rows, cols, h, w) uint8, ``phase_map``
    (rows, cols) with the true space group, ``train_patterns`` (n, h, w)
    uint8, ``train_labels`` (n,) space groups and ``projection_centre`` (3,)
    float64, the detector's projection centre in the Bruker convention
    (``settings["pc"]``; the map's drifts by +-0.01 in PCx and PCy about it,
    the training patterns' by +-0.02). The training patterns are
    new patterns of each phase in the orientations of the map's grains (3
    degree spread), as if recorded on reference areas of the same sample.
    """
    cfg = dict(SAMPLE_SETTINGS)
    cfg.update(settings or {})
    n_train = cfg.pop("n_train_per_phase")
    kv, counts, pc = cfg.pop("kv"), cfg.pop("counts"), tuple(float(v) for v in cfg.pop("pc"))
    pats, phase, rots = simulate_dual_phase_map(**cfg, return_orientations=True, kv=kv, counts=counts, pc=pc)
    sg = np.array([MATERIALS[cfg["matrix"]].space_group, MATERIALS[cfg["precipitate"]].space_group])
    tp, tl, _ = simulate_training_set([cfg["matrix"], cfg["precipitate"]], n_train, cfg["pattern_shape"],
                                      seed=cfg["seed"] + 100, base_rotations=rots, kv=kv, counts=counts, pc=pc)
    return {"patterns": pats, "phase_map": sg[phase].astype(np.int16), "train_patterns": tp,
            "train_labels": tl.astype(np.int16), "projection_centre": np.asarray(pc, np.float64)}


def write_sample_data(path: Union[str, Path], settings: Optional[dict] = None) -> Path:
    """Write :func:`make_sample_data` to a compressed ``.npz``."""
    data = make_sample_data(settings)
    np.savez_compressed(path, **data)
    return Path(path)
