"""Domain-randomised pattern generation for pretraining and held-out evaluation.

A *session* is what one acquisition records: one structure, one detector
set-up, one set of acquisition settings, many orientations (uniformly
random) and a projection centre that drifts by up to ``pc_scan`` across the
session (beam scan). Everything else is drawn at random:

- the structure (:class:`StructureSampler`): half from the prototypes of
  :mod:`.structures` with random species, lattice parameter, free
  coordinates and order, half random Wyckoff structures; only structures whose
  label is unambiguous (:func:`~.kinematics.is_unambiguous`);
- accelerating voltage 10-30 kV; the atomic scattering factors of
  :data:`~.kinematics.SCATTERING` (:mod:`.kinematics`) with ``B`` from
  :data:`FALLOFF_RANGES`: 1.5-3.5 A^2 for ``"z23"``, 2-5 A^2 for
  ``"electron"`` (around the 3.5 A^2 fitted to dynamical Ni patterns);
- detector geometry (:data:`~.detector.GEOMETRY_RANGES`);
- acquisition (:data:`~.noise.NOISE_RANGES`).

Training and evaluation use disjoint sources: the held-out split draws only
:data:`~.structures.HELD_OUT_PROTOTYPES` (never used in training) and random
structures, and evaluation also runs on the named real materials.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from ...errors import MicrostructureError
from ._legacy import random_rotations
from .detector import DetectorGeometry, band_image, detector_directions, sample_geometry
from .kinematics import SCATTERING, is_unambiguous, reflectors, resolve_scattering
from .noise import Acquisition, acquire, sample_acquisition
from .structures import HELD_OUT_PROTOTYPES, PROTOTYPES, CubicStructure, draw_prototype, random_structure
from .symmetry import SPACE_GROUPS

SPLITS = ("train", "heldout")
#: ``B`` (Angstrom**2) of a session is drawn uniformly from this range of its model.
FALLOFF_RANGES = {"z23": (1.5, 3.5), "electron": (2.0, 5.0)}


class StructureSampler:
    """Draw structures of a space group for one split.

    Parameters
    ----------
    split : {"train", "heldout"}
        ``"train"``: prototypes except :data:`HELD_OUT_PROTOTYPES`, and random
        structures; ``"heldout"``: only the held-out prototypes, and random
        structures (from the caller's own seed).
    prototype_fraction : float
        Chance of a prototype rather than a random Wyckoff structure.
    scattering : str, optional
        Scattering-factor model under which a drawn structure's label must be
        unambiguous (default :data:`~.kinematics.SCATTERING`).
    """

    def __init__(self, split: str = "train", prototype_fraction: float = 0.5,
                 scattering: Optional[str] = None) -> None:
        if split not in SPLITS:
            raise MicrostructureError(f"split={split!r}; choose 'train' or 'heldout'")
        self.split = split
        self.prototype_fraction = float(prototype_fraction)
        self.scattering = resolve_scattering(scattering)
        held = set(HELD_OUT_PROTOTYPES)
        self.prototypes = {sg: [name for name, p in PROTOTYPES.items() if p.space_group == sg
                                and ((name in held) == (split == "heldout"))] for sg in SPACE_GROUPS}

    def draw(self, space_group: int, rng: np.random.Generator) -> CubicStructure:
        """An unambiguous structure of ``space_group``."""
        names = self.prototypes.get(space_group)
        if names is None:
            raise MicrostructureError(
                f"space group {space_group} is not simulated; choose one of {', '.join(map(str, SPACE_GROUPS))}")
        for _ in range(200):
            if names and rng.random() < self.prototype_fraction:
                s = draw_prototype(names[int(rng.integers(0, len(names)))], rng)
            else:
                s = random_structure(space_group, rng)
            if is_unambiguous(s, scattering=self.scattering):
                return s
        raise RuntimeError(f"no unambiguous structure of {space_group} drawn")  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class Session:
    """Settings of one simulated acquisition."""

    structure: CubicStructure
    geometry: DetectorGeometry
    acquisition: Acquisition
    kv: float
    debye_waller: float
    scattering: str = SCATTERING


def sample_session(structure: CubicStructure, rng: np.random.Generator,
                   geometry: Optional[DetectorGeometry] = None,
                   acquisition: Optional[Acquisition] = None, scattering: Optional[str] = None) -> Session:
    """Random detector, acquisition, voltage and fall-off for a structure.

    ``scattering`` (default :data:`~.kinematics.SCATTERING`) names the scattering-factor
    model; the random draws do not depend on it (only ``B``'s range does).
    """
    scattering = resolve_scattering(scattering)
    return Session(structure, geometry or sample_geometry(rng), acquisition or sample_acquisition(rng),
                   float(rng.uniform(10.0, 30.0)), float(rng.uniform(*FALLOFF_RANGES[scattering])), scattering)


def session_reflectors(session: Session, max_reflectors: int = 100):
    """The reflectors :func:`simulate_session` uses for a session (structure, voltage, fall-off)."""
    return reflectors(session.structure, session.kv, d_min=0.6, min_weight=0.02,
                      debye_waller=session.debye_waller, max_reflectors=max_reflectors,
                      scattering=session.scattering)


def jitter_families(refl, sigma: float, rng: np.random.Generator):
    """Reflectors with each family's weight scaled by its own random factor ``exp(sigma * N(0, 1))``.

    A family is the set of reflectors equivalent under m-3m (the same sorted
    ``|h|, |k|, |l|``), so a pattern keeps its cubic symmetry, and a reflection
    its space group forbids stays absent. Domain randomisation of the band
    intensities: a classifier trained on jittered sessions cannot lean on the
    intensity ratios of the structures it was shown, only on which families
    are there. Measured on a development split of structure types and not
    used by the shipped model (docs/benchmarks.md, stop 30).
    """
    if not np.isfinite(sigma) or sigma < 0:
        raise MicrostructureError(f"sigma={sigma!r}; give a finite spread of at least 0")
    if sigma == 0 or not len(refl.weight):
        return refl
    key = np.sort(np.abs(np.asarray(refl.hkl)), axis=1)
    _, family = np.unique(key, axis=0, return_inverse=True)
    family = family.ravel()
    w = refl.weight * np.exp(sigma * rng.standard_normal(family.max() + 1))[family]
    return dataclasses.replace(refl, weight=(w / w.max()).astype(np.float32))


def simulate_session(session: Session, n: int, rng: np.random.Generator,
                     rotations: Optional[np.ndarray] = None, pc_scan: float = 0.01,
                     max_reflectors: int = 100, render_height: Optional[int] = 64,
                     refl=None) -> np.ndarray:
    """Record ``n`` patterns of a session.

    Parameters
    ----------
    session : Session
    n : int
        Number of patterns.
    rng : numpy Generator
    rotations : ndarray (n, 3, 3), optional
        Crystal-to-detector rotations; default uniformly random.
    pc_scan : float
        The projection centre moves linearly by up to this (fractions) across
        the session, as a beam scan does.
    max_reflectors : int
        Strongest reflectors kept (speed).
    render_height : int, optional
        Render the noise-free bands at most this many pixels high and
        interpolate (bilinear) to the screen resolution before the noise is
        applied (speed: the network sees 60 x 60 pixels); None renders at
        full resolution.
    refl : Reflectors, optional
        Precomputed reflectors of the session's structure, voltage and fall-off (speed).

    Returns
    -------
    ndarray (n, h, w) uint8 or uint16
    """
    geo = session.geometry
    if refl is None:
        refl = session_reflectors(session, max_reflectors)
    rot = random_rotations(n, rng) if rotations is None else np.asarray(rotations, float).reshape(n, 3, 3)
    fine = geo.fine_shape
    if render_height is not None and fine[0] > render_height:
        render = (int(render_height), max(1, int(round(fine[1] * render_height / fine[0]))))
    else:
        render = fine
    if pc_scan > 0:
        step = rng.uniform(-pc_scan, pc_scan, 3) * np.array([1, 1, 0.5])
        frac = np.linspace(0, 1, n)[:, None]
        pcs = np.asarray(geo.pc)[None] + frac * step[None]
        dirs = np.stack([detector_directions(render, pc) for pc in pcs]).astype(np.float32)
    else:
        dirs = detector_directions(render, geo.pc)
    bands = band_image(refl, rot, dirs, batch=16).reshape(n, *render)
    if render != fine:
        from scipy import ndimage

        zoom = (1, fine[0] / render[0], fine[1] / render[1])
        bands = ndimage.zoom(bands, zoom, order=1, mode="nearest", grid_mode=True)
    defects = np.random.default_rng(rng.integers(0, 2 ** 32))
    return acquire(bands, geo, session.acquisition, rng, defects)


def simulate_space_groups(space_groups: Sequence[int], n_per_session: int, rng: np.random.Generator,
                          sampler: Optional[StructureSampler] = None) -> list[tuple[np.ndarray, int, Session]]:
    """One random session per entry of ``space_groups``: [(patterns, space_group, session), ...]."""
    sampler = sampler or StructureSampler("train")
    out = []
    for sg in space_groups:
        session = sample_session(sampler.draw(int(sg), rng), rng)
        out.append((simulate_session(session, n_per_session, rng), int(sg), session))
    return out
