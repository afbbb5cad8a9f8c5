"""A fast kinematical Kikuchi-pattern generator in NumPy.

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

Space groups covered with real structures: 221 (Ni3Al L1_2, NiAl B2, Cu3Au),
223 (Cr3Si, V3Si, Nb3Sn A15), 225 (Ni, Al, Cu), 227 (Si, Ge, diamond C),
229 (Fe, W, Mo). 230 (Al4Ni3) is not included.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import MicrostructureError

# --------------------------------------------------------------------------
# Crystal structures

_FCC = [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)]
_BCC = [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)]
_DIAMOND = _FCC + [(x + 0.25, y + 0.25, z + 0.25) for x, y, z in _FCC]
_A15_B = [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)]
_A15_A = [(0.25, 0, 0.5), (0.75, 0, 0.5), (0.5, 0.25, 0), (0.5, 0.75, 0), (0, 0.5, 0.25), (0, 0.5, 0.75)]


@dataclasses.dataclass(frozen=True)
class CubicStructure:
    """A cubic crystal structure.

    Attributes
    ----------
    name : str
        Material name, e.g. ``"Ni3Al"``.
    space_group : int
        International space-group number.
    a : float
        Lattice parameter in Angstrom.
    atoms : tuple of (Z, x, y, z)
        Atomic number and fractional coordinates of every atom of the cell.
    """

    name: str
    space_group: int
    a: float
    atoms: tuple


def _atoms(z: int, positions) -> list:
    return [(z, *p) for p in positions]


MATERIALS: dict[str, CubicStructure] = {
    s.name: s
    for s in [
        CubicStructure("Ni", 225, 3.524, tuple(_atoms(28, _FCC))),
        CubicStructure("Al", 225, 4.049, tuple(_atoms(13, _FCC))),
        CubicStructure("Cu", 225, 3.615, tuple(_atoms(29, _FCC))),
        CubicStructure("Ni3Al", 221, 3.572, tuple(_atoms(13, _FCC[:1]) + _atoms(28, _FCC[1:]))),
        CubicStructure("Cu3Au", 221, 3.749, tuple(_atoms(79, _FCC[:1]) + _atoms(29, _FCC[1:]))),
        CubicStructure("NiAl", 221, 2.887, tuple(_atoms(28, _BCC[:1]) + _atoms(13, _BCC[1:]))),
        CubicStructure("Cr3Si", 223, 4.556, tuple(_atoms(14, _A15_B) + _atoms(24, _A15_A))),
        CubicStructure("V3Si", 223, 4.725, tuple(_atoms(14, _A15_B) + _atoms(23, _A15_A))),
        CubicStructure("Nb3Sn", 223, 5.290, tuple(_atoms(50, _A15_B) + _atoms(41, _A15_A))),
        CubicStructure("Si", 227, 5.431, tuple(_atoms(14, _DIAMOND))),
        CubicStructure("Ge", 227, 5.658, tuple(_atoms(32, _DIAMOND))),
        CubicStructure("C", 227, 3.567, tuple(_atoms(6, _DIAMOND))),
        CubicStructure("Fe", 229, 2.866, tuple(_atoms(26, _BCC))),
        CubicStructure("W", 229, 3.165, tuple(_atoms(74, _BCC))),
        CubicStructure("Mo", 229, 3.147, tuple(_atoms(42, _BCC))),
    ]
}


def electron_wavelength(kv: float) -> float:
    """Relativistic electron wavelength in Angstrom for an accelerating voltage in kV."""
    v = float(kv) * 1e3
    return 12.2643 / np.sqrt(v * (1.0 + 0.97848e-6 * v))


@dataclasses.dataclass
class Reflectors:
    """Unit plane normals, band half-widths (direction cosines) and weights."""

    normals: np.ndarray  # (n, 3)
    half_width: np.ndarray  # (n,)
    weight: np.ndarray  # (n,)


def reflectors(structure: CubicStructure, kv: float = 20.0, d_min: float = 0.6,
               min_weight: float = 0.02) -> Reflectors:
    """Kinematical reflectors of a structure.

    Parameters
    ----------
    structure : CubicStructure
    kv : float
        Accelerating voltage in kV.
    d_min : float
        Smallest interplanar spacing kept, in Angstrom.
    min_weight : float
        Reflectors whose ``|F|`` is below this fraction of the strongest are dropped.
    """
    lam = electron_wavelength(kv)
    n = int(np.ceil(structure.a / d_min))
    rng = np.arange(-n, n + 1)
    hkl = np.stack(np.meshgrid(rng, rng, rng, indexing="ij"), -1).reshape(-1, 3)
    # one of each +-g pair
    first = np.where(hkl[:, 0] != 0, hkl[:, 0], np.where(hkl[:, 1] != 0, hkl[:, 1], hkl[:, 2]))
    hkl = hkl[first > 0]
    g2 = (hkl ** 2).sum(1)
    d = structure.a / np.sqrt(g2)
    hkl, d = hkl[d >= d_min], d[d >= d_min]
    s = 1.0 / (2.0 * d)
    atoms = np.asarray(structure.atoms, dtype=float)
    z, xyz = atoms[:, 0], atoms[:, 1:]
    f = z[None, :] ** (2.0 / 3.0) * np.exp(-2.5 * s[:, None] ** 2)
    phase = np.exp(2j * np.pi * hkl @ xyz.T)
    amp = np.abs((f * phase).sum(1))
    keep = amp > min_weight * amp.max()
    hkl, d, amp = hkl[keep], d[keep], amp[keep]
    normals = hkl / np.linalg.norm(hkl, axis=1, keepdims=True)
    return Reflectors(normals.astype(np.float32), (lam / (2.0 * d)).astype(np.float32),
                      (amp / amp.max()).astype(np.float32))


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


def detector_directions(shape: tuple[int, int], pc: Sequence[float]) -> np.ndarray:
    """Unit vectors from the source point to each detector pixel, (h*w, 3).

    ``pc = (PCx, PCy, PCz)``: fractions of the width and height from the
    top-left corner, and the detector distance in pattern heights.
    """
    h, w = shape
    pcx, pcy, pcz = pc
    j = (np.arange(w) + 0.5 - pcx * w) / h
    i = (pcy * h - (np.arange(h) + 0.5)) / h
    x, y = np.meshgrid(j, i)
    r = np.stack([x, y, np.full_like(x, pcz)], -1).reshape(-1, 3)
    return r / np.linalg.norm(r, axis=1, keepdims=True)


def band_image(refl: Reflectors, rotations: np.ndarray, directions: np.ndarray,
               batch: int = 64) -> np.ndarray:
    """Noise-free kinematical band intensity, (n, n_pixels) float32, mean 0 per pattern."""
    n = len(rotations)
    out = np.empty((n, directions.shape[0]), np.float32)
    soft = (0.25 * refl.half_width + 0.002).astype(np.float32)
    hw = refl.half_width.astype(np.float32)
    for start in range(0, n, batch):
        rot = rotations[start:start + batch]
        # plane normals in the detector frame: (b, n_refl, 3)
        g = np.einsum("bij,nj->bni", rot, refl.normals).astype(np.float32)
        t = np.abs(np.einsum("bni,pi->bnp", g, directions.astype(np.float32)))
        prof = 1.0 / (1.0 + np.exp(np.clip((t - hw[None, :, None]) / soft[None, :, None], -30, 30)))
        img = np.einsum("bnp,n->bp", prof, refl.weight.astype(np.float32))
        img -= img.mean(1, keepdims=True)
        img /= img.std(1, keepdims=True) + 1e-6
        out[start:start + batch] = img
    return out


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
        if structure not in MATERIALS:
            raise MicrostructureError(
                f"unknown material {structure!r}; choose one of {', '.join(MATERIALS)}"
            )
        structure = MATERIALS[structure]
    rng = np.random.default_rng() if rng is None else rng
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    h, w = shape
    refl = reflectors(structure, kv)
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
        sgs.append(np.full(n_per_material, MATERIALS[name].space_group))
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
                       counts=400.0)


def make_sample_data(settings: Optional[dict] = None) -> dict[str, np.ndarray]:
    """The dual-phase sample: a Ni (225) map with cube-on-cube Ni3Al (221) precipitates.

    Returns a dict with ``patterns`` (rows, cols, h, w) uint8, ``phase_map``
    (rows, cols) with the true space group, ``train_patterns`` (n, h, w)
    uint8 and ``train_labels`` (n,) space groups. The training patterns are
    new patterns of each phase in the orientations of the map's grains (3
    degree spread), as if recorded on reference areas of the same sample.
    """
    cfg = dict(SAMPLE_SETTINGS)
    cfg.update(settings or {})
    n_train = cfg.pop("n_train_per_phase")
    kv, counts = cfg.pop("kv"), cfg.pop("counts")
    pats, phase, rots = simulate_dual_phase_map(**cfg, return_orientations=True, kv=kv, counts=counts)
    sg = np.array([MATERIALS[cfg["matrix"]].space_group, MATERIALS[cfg["precipitate"]].space_group])
    tp, tl, _ = simulate_training_set([cfg["matrix"], cfg["precipitate"]], n_train, cfg["pattern_shape"],
                                      seed=cfg["seed"] + 100, base_rotations=rots, kv=kv, counts=counts)
    return {"patterns": pats, "phase_map": sg[phase].astype(np.int16), "train_patterns": tp,
            "train_labels": tl.astype(np.int16)}


def write_sample_data(path: Union[str, Path], settings: Optional[dict] = None) -> Path:
    """Write :func:`make_sample_data` to a compressed ``.npz``."""
    data = make_sample_data(settings)
    np.savez_compressed(path, **data)
    return Path(path)
