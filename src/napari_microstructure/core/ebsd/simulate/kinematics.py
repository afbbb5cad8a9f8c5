"""Kinematical reflectors: structure factors, Bragg angles, visible bands.

Each reflector ``g = (hkl)`` contributes a Kikuchi band of half-width
``sin(theta_B) = lambda / (2 d_hkl)`` (direction cosines) around its trace,
weighted by ``|F_hkl|``. Approximations (documented so that nobody tunes
preprocessing to them):

- atomic scattering factor, ``s = 1 / (2 d)`` in 1/Angstrom, one of two
  models (``scattering``): ``"electron"``, the electron scattering factors of
  Doyle and Turner (:mod:`.scattering`) times ``exp(-B s**2)``, ``B``
  (default 3.5 Angstrom**2) standing for the Debye-Waller factor and the
  damping of high-order bands by dynamical scattering together (fitted to
  EMsoft's dynamical Ni patterns, docs/ebsd.md); or ``"z23"``, the first
  simulator's ``Z**(2/3) * exp(-B s**2)`` with ``B`` (default 2.5
  Angstrom**2) standing for form-factor fall-off and Debye-Waller together;
- band weight ``|F|`` rather than ``|F|**2``: weak bands stay visible, as
  dynamical scattering makes them in real patterns;
- reflectors weaker than ``min_weight`` times the strongest are dropped;
  ``max_reflectors`` caps their number (speed) by whole families of
  equivalent planes, the strongest first, but never drops a visible
  low-index family (``d >= d_max / sqrt(12)``, ``{100}`` to ``{222}`` in a
  cubic cell). The ``"z23"`` fall-off is gentler than real electron
  scattering factors, so strong high-order reflections would otherwise crowd
  out weak low-index ones: the superlattice bands that tell ordered B2 and
  L1_2 cells from bcc and fcc (dropped in most sessions until 2026-11-30,
  stop 28).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from ...errors import MicrostructureError
from .scattering import site_scattering_factor
from .structures import CubicStructure
from .symmetry import SPACE_GROUPS, allowed_reflections

#: The atomic scattering-factor models, and the default ``B`` (Angstrom**2) of each.
SCATTERING_MODELS = ("electron", "z23")
DEFAULT_DEBYE_WALLER = {"electron": 3.5, "z23": 2.5}
#: The model used when none is named (the legacy generator names ``"z23"``).
SCATTERING = "electron"

#: Families with ``d`` at least the largest ``d`` over this are always rendered when visible.
LOW_INDEX_D_RATIO = 1.0 / np.sqrt(12.0)


def electron_wavelength(kv: float) -> float:
    """Relativistic electron wavelength in Angstrom for an accelerating voltage in kV."""
    v = float(kv) * 1e3
    return 12.2643 / np.sqrt(v * (1.0 + 0.97848e-6 * v))


@dataclasses.dataclass
class Reflectors:
    """Unit plane normals, band half-widths (direction cosines), weights and Miller indices."""

    normals: np.ndarray  # (n, 3) float32
    half_width: np.ndarray  # (n,) float32
    weight: np.ndarray  # (n,) float32, strongest = 1
    hkl: Optional[np.ndarray] = None  # (n, 3) int


def structure_factors(structure: CubicStructure, d_min: float = 0.6, debye_waller: Optional[float] = None,
                      scattering: Optional[str] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``|F_hkl|`` of one of each ``+-g`` pair with ``d >= d_min``.

    Returns
    -------
    hkl : ndarray (n, 3) int
    d : ndarray (n,) interplanar spacing in Angstrom
    amplitude : ndarray (n,) ``|F|``, in Angstrom (``"electron"``) or in units
        of the scattering power ``Z**(2/3)`` (``"z23"``)
    """
    scattering = resolve_scattering(scattering)
    debye_waller = DEFAULT_DEBYE_WALLER[scattering] if debye_waller is None else float(debye_waller)
    if hasattr(structure, "lattice"):
        return _structure_factors_general(structure, d_min, debye_waller, scattering)
    n = int(np.ceil(structure.a / d_min))
    # |F| is the same for all reflections related by the Laue class m-3m: compute it
    # on the unique indices h >= k >= l >= 0 and expand to every equivalent
    r = np.arange(0, n + 1)
    uniq = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    uniq = uniq[(uniq[:, 0] >= uniq[:, 1]) & (uniq[:, 1] >= uniq[:, 2]) & (uniq[:, 0] > 0)]
    d_u = structure.a / np.sqrt((uniq ** 2).sum(1))
    uniq, d_u = uniq[d_u >= d_min], d_u[d_u >= d_min]
    atoms = np.asarray(structure.atoms, dtype=float)
    z, xyz = atoms[:, 0], atoms[:, 1:]
    amp_u = np.zeros(len(uniq), complex)
    s_u = 1.0 / (2.0 * d_u)
    for zz in np.unique(z):  # one matrix product per species
        amp_u += _factor(structure, zz, s_u, scattering) * np.exp(2j * np.pi * (uniq @ xyz[z == zz].T)).sum(1)
    amp_u = np.abs(amp_u) * np.exp(-debye_waller * s_u ** 2)
    hkl, src = _expand_m3m(uniq)
    # one of each +-g pair: first non-zero index positive
    first = np.where(hkl[:, 0] != 0, hkl[:, 0], np.where(hkl[:, 1] != 0, hkl[:, 1], hkl[:, 2]))
    keep = first > 0
    hkl, src = hkl[keep], src[keep]
    order = np.lexsort(hkl.T[::-1])
    hkl, src = hkl[order], src[order]
    d = d_u[src]
    amp = amp_u[src]
    return hkl, d, amp


def resolve_scattering(scattering: Optional[str]) -> str:
    """The scattering-factor model named (None: :data:`SCATTERING`); a clear error for an unknown one."""
    scattering = SCATTERING if scattering is None else scattering
    if scattering not in SCATTERING_MODELS:
        raise MicrostructureError(f"scattering={scattering!r}; choose one of {', '.join(SCATTERING_MODELS)}")
    return scattering


def _factor(structure, z: float, s: np.ndarray, scattering: str):
    """Scattering factor of the atoms with (effective) number ``z`` at ``s``: array or scalar."""
    if scattering == "z23":
        return z ** (2.0 / 3.0)
    species = structure.species(z) if hasattr(structure, "species") else ((z, 1.0),)
    return site_scattering_factor(species, s)


def _structure_factors_general(structure, d_min: float, debye_waller: float, scattering: str):
    """``|F|`` for any lattice (full index grid; returns Cartesian reciprocal vectors' hkl)."""
    direct = np.asarray(structure.lattice, float)
    recip = np.linalg.inv(direct).T  # rows: a*, b*, c* (no 2 pi)
    n = [int(np.ceil(np.linalg.norm(direct[i]) / d_min)) for i in range(3)]
    axes = [np.arange(-m, m + 1) for m in n]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    first = np.where(hkl[:, 0] != 0, hkl[:, 0], np.where(hkl[:, 1] != 0, hkl[:, 1], hkl[:, 2]))
    hkl = hkl[first > 0]
    g = hkl @ recip
    d = 1.0 / np.linalg.norm(g, axis=1)
    hkl, d = hkl[d >= d_min], d[d >= d_min]
    atoms = np.asarray(structure.atoms, dtype=float)
    z, xyz = atoms[:, 0], atoms[:, 1:]
    amp = np.zeros(len(hkl), complex)
    s = 1.0 / (2.0 * d)
    for zz in np.unique(z):
        amp += _factor(structure, zz, s, scattering) * np.exp(2j * np.pi * (hkl @ xyz[z == zz].T)).sum(1)
    return hkl, d, np.abs(amp) * np.exp(-debye_waller * s ** 2)


def _expand_m3m(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All distinct signed permutations of each row: (indices (m, 3), source row (m,))."""
    perms = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
    signs = np.array([(a, b, c) for a in (1, -1) for b in (1, -1) for c in (1, -1)])
    allh = np.concatenate([uniq[:, p][:, None, :] * signs[None] for p in perms], 1)  # (u, 48, 3)
    src = np.repeat(np.arange(len(uniq)), allh.shape[1])
    allh = allh.reshape(-1, 3)
    _, first = np.unique(allh, axis=0, return_index=True)
    return allh[first], src[first]


def reflectors(structure: CubicStructure, kv: float = 20.0, d_min: float = 0.6,
               min_weight: float = 0.02, debye_waller: Optional[float] = None,
               max_reflectors: Optional[int] = None, scattering: Optional[str] = None) -> Reflectors:
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
    debye_waller : float, optional
        ``B`` in Angstrom**2 (default :data:`DEFAULT_DEBYE_WALLER` of the model).
    max_reflectors : int, optional
        Keep about this many: whole families of equivalent reflectors, the
        visible low-index ones (``d >= d_max / sqrt(12)``) always, then the
        strongest families that fit.
    scattering : {"electron", "z23"}, optional
        Atomic scattering-factor model (see the module's docstring); default :data:`SCATTERING`.
    """
    lam = electron_wavelength(kv)
    hkl, d, amp = structure_factors(structure, d_min, debye_waller, scattering)
    low_index = d >= d.max() * LOW_INDEX_D_RATIO - 1e-9
    keep = amp > min_weight * amp.max()
    hkl, d, amp, low_index = hkl[keep], d[keep], amp[keep], low_index[keep]
    if max_reflectors is not None and len(amp) > max_reflectors:
        top = _whole_families(d, amp, low_index, max_reflectors)
        hkl, d, amp = hkl[top], d[top], amp[top]
    if hasattr(structure, "lattice"):  # plane normals along the reciprocal vectors
        g = hkl @ np.linalg.inv(np.asarray(structure.lattice, float)).T
    else:
        g = hkl.astype(float)
    normals = g / np.linalg.norm(g, axis=1, keepdims=True)
    return Reflectors(normals.astype(np.float32), (lam / (2.0 * d)).astype(np.float32),
                      (amp / amp.max()).astype(np.float32), hkl.astype(int))


def _whole_families(d: np.ndarray, amp: np.ndarray, low_index: np.ndarray, budget: int) -> np.ndarray:
    """Indices of the reflectors kept under a budget, family by family (see :func:`reflectors`).

    Equivalent reflectors share ``d`` and ``|F|``; a family is kept or dropped
    whole, so that no pattern shows some of a family's bands and not the rest.
    The low-index families come first whatever the budget; the others follow
    strongest first while they fit.
    """
    key = np.stack([np.round(d, 5), np.round(amp / amp.max(), 5)], 1)
    _, family = np.unique(key, axis=0, return_inverse=True)
    family = family.ravel()
    n_fam = family.max() + 1
    size = np.bincount(family, minlength=n_fam)
    strength = np.zeros(n_fam)
    np.maximum.at(strength, family, amp)
    forced = np.zeros(n_fam, bool)
    forced[family[low_index]] = True
    chosen = forced.copy()
    used = int(size[forced].sum())
    for f in np.argsort(-strength, kind="stable"):
        if not chosen[f] and used + size[f] <= budget:
            chosen[f] = True
            used += int(size[f])
    return np.flatnonzero(chosen[family])


def consistent_space_groups(structure: CubicStructure, min_weight: float = 0.03, d_min: float = 0.7,
                            debye_waller: Optional[float] = None, scattering: Optional[str] = None) -> list[int]:
    """The space groups among the six whose reflection conditions all visible reflections obey."""
    hkl, _, amp = structure_factors(structure, d_min, debye_waller, scattering)
    visible = hkl[amp > min_weight * amp.max()]
    return [sg for sg in SPACE_GROUPS if allowed_reflections(sg, visible).all()]


def is_unambiguous(structure: CubicStructure, min_weight: float = 0.03, d_min: float = 0.7,
                   debye_waller: Optional[float] = None, scattering: Optional[str] = None) -> bool:
    """True when no group more restrictive than the structure's own explains its visible bands.

    A group Y is more restrictive than X when every reflection Y allows, X
    allows too (checked on indices up to 8). The label X of a structure is
    ambiguous when its visible reflections (``|F|`` above ``min_weight`` of
    the strongest, ``d >= d_min``) all obey such a Y, e.g. an A15 cell with
    atoms on 2a only (a bcc lattice) or a B2 cell with equal species.
    """
    own = int(structure.space_group)
    ok = consistent_space_groups(structure, min_weight, d_min, debye_waller, scattering)
    if own not in ok:
        return False
    r = np.arange(-8, 9)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    mine = allowed_reflections(own, hkl)
    for sg in ok:
        if sg == own:
            continue
        theirs = allowed_reflections(sg, hkl)
        if np.all(mine | ~theirs) and theirs.sum() < mine.sum():  # Y is a strict subset of X
            return False
    return True
