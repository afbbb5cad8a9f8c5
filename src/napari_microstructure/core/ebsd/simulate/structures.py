"""Cubic crystal structures: named materials, prototypes and random structures.

A structure is a lattice parameter and a list of atoms ``(Z, x, y, z)`` in
the conventional cubic cell. ``Z`` may be an *effective* atomic number for a
site shared by several species (disorder): the first simulator's scattering
power ``Z**(2/3)`` of the site is the occupancy-weighted mean, so
``Z_eff = (sum_i c_i Z_i**(2/3))**(3/2)``; the structure keeps the species
and occupancies behind each ``Z_eff`` (``mixtures``) for the electron
scattering factors, which mix the species' factors instead.

Three sources, all for the space groups 221, 223, 225, 227, 229 and 230:

- :data:`MATERIALS`: named real materials (Ni, Ni3Al, Cr3Si, Si, Fe,
  garnet...), used for held-out evaluation and the sample data;
- :data:`PROTOTYPES`: structure types (B2, L1_2, perovskite, A15, clathrate,
  rocksalt, fluorite, Heusler, diamond, spinel, Laves C15, bcc, H3S, garnet,
  Al4Ni3...) drawn with random lattice parameter, species, free coordinates and
  long-range order parameter (ordered and partially ordered variants; fully
  disordered L1_2 / B2 appear as fcc / bcc solid solutions);
- :func:`random_structure`: 1-4 random Wyckoff orbits of the group (special
  or general positions, random species, lattice parameter from the atomic
  volume).

Every drawn structure is checked with :func:`~.kinematics.is_unambiguous`:
its visible reflections must not all satisfy the conditions of a more
restrictive group among the six (e.g. an A15 cell with atoms on 2a only is
bcc), otherwise it is drawn again.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from ...errors import MicrostructureError
from .symmetry import SPACE_GROUPS, orbit


@dataclasses.dataclass(frozen=True)
class CubicStructure:
    """A cubic crystal structure.

    Attributes
    ----------
    name : str
        Material or prototype name, e.g. ``"Ni3Al"``.
    space_group : int
        International space-group number.
    a : float
        Lattice parameter in Angstrom.
    atoms : tuple of (Z, x, y, z)
        (Effective) atomic number and fractional coordinates of every atom of the cell.
    mixtures : tuple of (Z_eff, ((Z, occupancy), ...))
        The species behind each effective (mixed-site) atomic number of ``atoms``,
        for the electron scattering factors (:mod:`.scattering`).
    """

    name: str
    space_group: int
    a: float
    atoms: tuple
    mixtures: tuple = ()

    def species(self, z: float) -> tuple:
        """``((Z, occupancy), ...)`` of the atoms with (effective) atomic number ``z``."""
        for key, mix in self.mixtures:
            if abs(key - z) < 1e-9:
                return mix
        return ((z, 1.0),)


@dataclasses.dataclass(frozen=True)
class CrystalStructure:
    """A non-cubic crystal structure (for "not taught" phases in open-set tests).

    Attributes
    ----------
    name : str
    space_group : int
    lattice : tuple of 3 tuples
        Direct basis vectors a, b, c as rows, Cartesian, in Angstrom.
    atoms : tuple of (Z, x, y, z)
        Fractional coordinates in that basis.
    """

    name: str
    space_group: int
    lattice: tuple
    atoms: tuple


def hexagonal_lattice(a: float, c: float) -> tuple:
    """Direct basis rows of a hexagonal cell (a along x, c along z), Angstrom."""
    return ((a, 0.0, 0.0), (-a / 2, a * np.sqrt(3) / 2, 0.0), (0.0, 0.0, c))


def _atoms(z: float, positions) -> list:
    return [(z, *p) for p in positions]


def _sites(sg: int, z_and_points) -> tuple:
    """Atoms of the orbits ``[(Z, point), ...]`` of space group ``sg``."""
    out = []
    for z, p in z_and_points:
        out += _atoms(z, [tuple(q) for q in orbit(sg, p)])
    return tuple(out)


_FCC = [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)]
_BCC = [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)]
_DIAMOND = _FCC + [(x + 0.25, y + 0.25, z + 0.25) for x, y, z in _FCC]
_A15_B = [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)]
_A15_A = [(0.25, 0, 0.5), (0.75, 0, 0.5), (0.5, 0.25, 0), (0.5, 0.75, 0), (0, 0.5, 0.25), (0, 0.5, 0.75)]


def effective_z(zs: Sequence[float], fractions: Sequence[float]) -> float:
    """Effective atomic number of a mixed site (occupancy-weighted ``Z**(2/3)``)."""
    zs, c = np.asarray(zs, float), np.asarray(fractions, float)
    return float(((c / c.sum()) @ zs ** (2.0 / 3.0)) ** 1.5)


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

# Materials added with the domain-randomised simulator (not in the legacy sample
# data): a second set of real materials, each space group, for evaluation.
EXTRA_MATERIALS: dict[str, CubicStructure] = {
    s.name: s
    for s in [
        # grossular garnet Ca3Al2Si3O12, Ia-3d origin at -3 (Novak & Gibbs 1971, rounded)
        CubicStructure("Ca3Al2Si3O12", 230, 11.85, _sites(230, [
            (20, (0.125, 0.0, 0.25)), (13, (0.0, 0.0, 0.0)), (14, (0.375, 0.0, 0.25)),
            (8, (0.038, 0.045, 0.651))])),
        # yttrium aluminium garnet Y3Al5O12
        CubicStructure("Y3Al5O12", 230, 12.01, _sites(230, [
            (39, (0.125, 0.0, 0.25)), (13, (0.0, 0.0, 0.0)), (13, (0.375, 0.0, 0.25)),
            (8, (-0.0306, 0.0512, 0.1500))])),
        # Al4Ni3 (Ia-3d, a = 11.41 A): Ni on 24c and 24d-like sites, Al on 16b and 48g (approximate)
        CubicStructure("Al4Ni3", 230, 11.41, _sites(230, [
            (28, (0.125, 0.0, 0.25)), (28, (0.375, 0.0, 0.25)), (13, (0.125, 0.125, 0.125)),
            (13, (0.125, 0.030, 0.220))])),
        CubicStructure("SrTiO3", 221, 3.905, _sites(221, [(38, (0, 0, 0)), (22, (0.5, 0.5, 0.5)),
                                                         (8, (0.5, 0.5, 0.0))])),
        CubicStructure("beta-W", 223, 5.05, _sites(223, [(74, (0, 0, 0)), (74, (0.25, 0, 0.5))])),
        CubicStructure("MgO", 225, 4.212, _sites(225, [(12, (0, 0, 0)), (8, (0.5, 0.5, 0.5))])),
        CubicStructure("CaF2", 225, 5.463, _sites(225, [(20, (0, 0, 0)), (9, (0.25, 0.25, 0.25))])),
        CubicStructure("MgAl2O4", 227, 8.08, _sites(227, [(12, (0, 0, 0)), (13, (0.625, 0.625, 0.625)),
                                                         (8, (0.387, 0.387, 0.387))])),
        CubicStructure("Nb", 229, 3.300, tuple(_atoms(41, _BCC))),
        CubicStructure("Ta", 229, 3.303, tuple(_atoms(73, _BCC))),
    ]
}

ALL_MATERIALS: dict[str, CubicStructure] = {**MATERIALS, **EXTRA_MATERIALS}

# Phases outside the six cubic groups: what a six-class model was never taught.
NON_CUBIC: dict[str, CrystalStructure] = {s.name: s for s in [
    CrystalStructure("Ti-hcp", 194, hexagonal_lattice(2.951, 4.686),
                     ((22, 1 / 3, 2 / 3, 0.25), (22, 2 / 3, 1 / 3, 0.75))),
    CrystalStructure("Mg-hcp", 194, hexagonal_lattice(3.209, 5.211),
                     ((12, 1 / 3, 2 / 3, 0.25), (12, 2 / 3, 1 / 3, 0.75))),
    # beta-Sn, I4_1/amd: (0,0,0), (0,1/2,1/4) + I-centring
    CrystalStructure("beta-Sn", 141, ((5.832, 0, 0), (0, 5.832, 0), (0, 0, 3.182)),
                     ((50, 0, 0, 0), (50, 0, .5, .25), (50, .5, .5, .5), (50, .5, 0, .75))),
    # rutile TiO2, P4_2/mnm, x(O) = 0.305
    CrystalStructure("TiO2-rutile", 136, ((4.594, 0, 0), (0, 4.594, 0), (0, 0, 2.959)),
                     ((22, 0, 0, 0), (22, .5, .5, .5), (8, .305, .305, 0), (8, .695, .695, 0),
                      (8, .805, .195, .5), (8, .195, .805, .5))),
]}

# --------------------------------------------------------------------------
# Prototypes with random parameters

METALS = np.array([3, 4, 11, 12, 13, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 37, 38,
                   39, 40, 41, 42, 44, 45, 46, 47, 48, 49, 50, 56, 57, 58, 72, 73, 74, 75, 76,
                   77, 78, 79, 81, 82, 83])
LIGHT = np.array([1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 34, 35])


@dataclasses.dataclass(frozen=True)
class Prototype:
    """A structure type: sites as (role, point function) and a lattice-parameter range.

    ``roles``: one per site, ``"M"`` (metal), ``"X"`` (light element) or an
    integer naming a previous site whose species it repeats. ``orderable``:
    the first two distinct species may be partially exchanged (order
    parameter S in [0.35, 1]) without changing the space group.
    """

    name: str
    space_group: int
    a_range: tuple[float, float]
    sites: tuple  # ((role, point or callable(rng) -> point), ...)
    orderable: bool = False


def _p(*xyz) -> Callable:
    return lambda rng: xyz


PROTOTYPES: dict[str, Prototype] = {p.name: p for p in [
    # 221 Pm-3m
    Prototype("B2", 221, (2.75, 3.45), (("M", _p(0, 0, 0)), ("M", _p(.5, .5, .5))), orderable=True),
    Prototype("L1_2", 221, (3.5, 4.15), (("M", _p(0, 0, 0)), ("M", _p(0, .5, .5))), orderable=True),
    Prototype("perovskite", 221, (3.7, 4.3), (("M", _p(0, 0, 0)), ("M", _p(.5, .5, .5)), ("X", _p(.5, .5, 0)))),
    Prototype("ReO3", 221, (3.6, 3.95), (("M", _p(0, 0, 0)), ("X", _p(.5, 0, 0)))),
    Prototype("CaB6", 221, (4.0, 4.3), (("M", _p(0, 0, 0)), ("X", lambda r: (r.uniform(.18, .22), .5, .5)))),
    Prototype("Fe4N", 221, (3.6, 3.9), (("M", _p(0, 0, 0)), (0, _p(0, .5, .5)), ("X", _p(.5, .5, .5)))),
    # 223 Pm-3n
    Prototype("A15", 223, (4.5, 5.4), (("M", _p(0, 0, 0)), ("M", _p(.25, 0, .5))), orderable=True),
    Prototype("beta-W", 223, (4.9, 5.1), (("M", _p(0, 0, 0)), (0, _p(.25, 0, .5)))),
    Prototype("clathrate-I", 223, (10.0, 10.8), (
        ("M", _p(0, 0, 0)), (0, _p(.25, .5, 0)), ("X", _p(.25, 0, .5)),
        (2, lambda r: (r.uniform(.18, .19),) * 3), (2, lambda r: (0, r.uniform(.30, .32), r.uniform(.11, .13))))),
    Prototype("Cr3O-type", 223, (4.5, 5.2), (("X", _p(0, 0, 0)), ("M", _p(.25, 0, .5)))),
    # 225 Fm-3m
    Prototype("A1", 225, (3.5, 5.6), (("M", _p(0, 0, 0)),)),
    Prototype("A1-solid-solution", 225, (3.5, 4.2), (("MM", _p(0, 0, 0)),)),
    Prototype("rocksalt", 225, (4.0, 6.0), (("M", _p(0, 0, 0)), ("X", _p(.5, .5, .5)))),
    Prototype("fluorite", 225, (5.0, 5.9), (("M", _p(0, 0, 0)), ("X", _p(.25, .25, .25)))),
    Prototype("Heusler-L2_1", 225, (5.6, 6.3), (("M", _p(0, 0, 0)), ("M", _p(.5, .5, .5)),
                                                ("M", _p(.25, .25, .25))), orderable=True),
    # 227 Fd-3m (origin choice 1)
    Prototype("diamond", 227, (3.5, 6.5), (("M", _p(0, 0, 0)),)),
    Prototype("spinel", 227, (7.9, 8.6), (("M", _p(0, 0, 0)), ("M", _p(.625, .625, .625)),
                                          ("X", lambda r: (r.uniform(.37, .40),) * 3))),
    Prototype("Laves-C15", 227, (6.8, 7.8), (("M", _p(0, 0, 0)), ("M", _p(.625, .625, .625))), orderable=True),
    Prototype("pyrochlore-lattice", 227, (9.8, 10.6), (("M", _p(.625, .625, .625)), ("M", _p(.125, .125, .125)),
                                                      ("X", lambda r: (r.uniform(.30, .34), .125, .125)))),
    # 229 Im-3m
    Prototype("A2", 229, (2.8, 3.6), (("M", _p(0, 0, 0)),)),
    Prototype("A2-solid-solution", 229, (2.85, 3.3), (("MM", _p(0, 0, 0)),)),
    Prototype("H3S-type", 229, (3.0, 4.2), (("M", _p(0, 0, 0)), ("X", _p(0, .5, .5)))),
    Prototype("W-Cr-12e", 229, (5.8, 6.6), (("M", _p(0, 0, 0)), ("M", lambda r: (r.uniform(.32, .36), 0, 0)))),
    # 230 Ia-3d (origin at -3)
    Prototype("garnet", 230, (11.4, 12.9), (
        ("M", _p(.125, 0, .25)), ("M", _p(0, 0, 0)), ("M", _p(.375, 0, .25)),
        ("X", lambda r: (r.uniform(-.04, -.025), r.uniform(.045, .06), r.uniform(.145, .16))))),
    Prototype("Al4Ni3-type", 230, (11.0, 11.8), (
        ("M", _p(.125, 0, .25)), (0, _p(.375, 0, .25)), ("M", _p(.125, .125, .125)),
        (2, lambda r: (.125, r.uniform(.02, .05), .25 - r.uniform(.02, .05))))),
    Prototype("Ia-3d-48g", 230, (8.0, 11.0), (("M", _p(.125, .125, .125)),
                                              ("M", lambda r: (.125, r.uniform(.05, .20), .125 - r.uniform(.05, .2))))),
]}

# Prototypes never used in pretraining, for the held-out evaluation (one per group).
HELD_OUT_PROTOTYPES = ("Fe4N", "Cr3O-type", "fluorite", "pyrochlore-lattice", "W-Cr-12e", "Ia-3d-48g")


def _species(role, rng: np.random.Generator, chosen: list, mixtures: dict) -> float:
    if isinstance(role, (int, np.integer)):
        return chosen[int(role)]
    if role == "M":
        return float(rng.choice(METALS))
    if role == "X":
        return float(rng.choice(LIGHT))
    if role == "MM":  # a random binary solid solution
        return _mix(rng.choice(METALS, 2, replace=False), [1.0 - (c := rng.uniform(0.05, 0.5)), c], mixtures)
    raise MicrostructureError(f"unknown site role {role!r}")


def _mix(zs: Sequence[float], fractions: Sequence[float], mixtures: dict) -> float:
    """The effective Z of a mixed site, recording its species in ``mixtures``."""
    z = effective_z(zs, fractions)
    c = np.asarray(fractions, float) / np.sum(fractions)
    mixtures[z] = tuple((float(zz), float(cc)) for zz, cc in zip(zs, c) if cc > 0)
    return z


def draw_prototype(name: str, rng: np.random.Generator) -> CubicStructure:
    """A structure of a prototype with random species, lattice parameter, coordinates and order."""
    if name not in PROTOTYPES:
        raise MicrostructureError(f"unknown prototype {name!r}; choose one of {', '.join(PROTOTYPES)}")
    proto = PROTOTYPES[name]
    zs: list = []
    mixtures: dict = {}
    for role, _ in proto.sites:
        zs.append(_species(role, rng, zs, mixtures))
    if proto.orderable and len(set(zs[:2])) == 2 and rng.random() < 0.5:
        s = rng.uniform(0.35, 1.0)  # long-range order parameter: exchange part of the first two species
        m = len(orbit(proto.space_group, proto.sites[0][1](rng)))
        n = len(orbit(proto.space_group, proto.sites[1][1](rng)))
        xa = m / (m + n)
        za = _mix([zs[0], zs[1]], [xa + (1 - xa) * s, (1 - xa) * (1 - s)], mixtures)
        zb = _mix([zs[0], zs[1]], [xa * (1 - s), (1 - xa) + xa * s], mixtures)
        zs[0], zs[1] = za, zb
    pts = [fn(rng) for _, fn in proto.sites]
    a = float(rng.uniform(*proto.a_range))
    used = set(zs)
    return CubicStructure(name, proto.space_group, a, _sites(proto.space_group, zip(zs, pts)),
                          tuple((z, mix) for z, mix in mixtures.items() if z in used))


_SPECIAL = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)


def random_structure(space_group: int, rng: np.random.Generator, max_atoms: int = 200) -> CubicStructure:
    """A random structure of a space group: 1-4 Wyckoff orbits, random species and positions.

    Each orbit's representative point is, with equal chance, a special point
    (coordinates from multiples of 1/8), a point on a special line (x, x, x),
    (x, 0, 0) or (x, 1/4, 1/8)-like, or a general point. The lattice parameter
    follows from 8-22 cubic Angstrom per atom, clipped to 2.7-13 Angstrom.
    """
    if space_group not in SPACE_GROUPS:
        raise MicrostructureError(
            f"space group {space_group} is not simulated; choose one of {', '.join(map(str, SPACE_GROUPS))}")
    for _ in range(100):
        n_orbits = int(rng.integers(1, 5))
        atoms: list = []
        for _k in range(n_orbits):
            kind = rng.integers(0, 3)
            if kind == 0:
                p = tuple(rng.choice(_SPECIAL, 3))
            elif kind == 1:
                x = rng.uniform(0.02, 0.48)
                p = [(x, x, x), (x, 0, 0), (x, 0.25, 0.125), (0, x, 0.5), (x, x, 0)][rng.integers(0, 5)]
            else:
                p = tuple(rng.uniform(0, 1, 3))
            pts = orbit(space_group, p)
            if any(np.all(np.abs(((pts[0] - np.array(q[1:])) + 0.5) % 1 - 0.5) < 0.03) for q in atoms):
                continue  # two orbits on top of each other
            z = float(rng.choice(METALS if rng.random() < 0.7 else LIGHT))
            atoms += _atoms(z, [tuple(q) for q in pts])
        if not atoms or len(atoms) > max_atoms:
            continue
        a = float(np.clip((len(atoms) * rng.uniform(8.0, 22.0)) ** (1 / 3), 2.7, 13.0))
        return CubicStructure(f"random-{space_group}", space_group, a, tuple(atoms))
    raise RuntimeError("could not draw a random structure")  # pragma: no cover


# --------------------------------------------------------------------------
# Random non-cubic structures (open-set development sets and tests)

#: Axial ratios a non-cubic cell keeps away from (by 8 %): 1 (cubic), sqrt(2) and
#: 1/sqrt(2) (a body-centred tetragonal cell with c/a = sqrt(2) is face-centred cubic).
_PSEUDO_CUBIC_RATIOS = (1.0, np.sqrt(2.0), 1.0 / np.sqrt(2.0))


def _non_cubic_ratio(rng: np.random.Generator, low: float, high: float) -> float:
    while True:
        r = float(rng.uniform(low, high))
        if all(abs(r / q - 1.0) > 0.08 for q in _PSEUDO_CUBIC_RATIOS):
            return r


def random_non_cubic_structure(rng: np.random.Generator) -> CrystalStructure:
    """A random hexagonal, tetragonal or orthorhombic structure (a phase a cubic model was not taught).

    With equal chance: an hcp metal (c/a 1.45-1.95); a hexagonal, a
    (primitive or body-centred) tetragonal or an orthorhombic cell holding
    1-4 atoms at random positions (each coordinate a multiple of 1/4 or
    random), random species, 10-25 cubic Angstrom per atom. Axial ratios stay
    8 % away from those of a cubic cell (see ``_PSEUDO_CUBIC_RATIOS``).
    Distinct from :data:`NON_CUBIC` (the named phases of the benchmark).
    """
    kind = ("hcp", "hexagonal", "tetragonal", "orthorhombic")[int(rng.integers(0, 4))]
    z = lambda: float(rng.choice(METALS if rng.random() < 0.7 else LIGHT))  # noqa: E731
    if kind == "hcp":
        a = float(rng.uniform(2.5, 3.7))
        return CrystalStructure("random-hcp", 194, hexagonal_lattice(a, a * float(rng.uniform(1.45, 1.95))),
                                ((zz := z(), 1 / 3, 2 / 3, 0.25), (zz, 2 / 3, 1 / 3, 0.75)))
    atoms = [(z(), 0.0, 0.0, 0.0)]
    for _ in range(int(rng.integers(0, 4))):
        atoms.append((z(), *(float(rng.choice((0.0, 0.25, 0.5, 0.75))) if rng.random() < 0.5
                            else float(rng.uniform(0, 1)) for _ in range(3))))
    centred = kind == "tetragonal" and rng.random() < 0.5
    if centred:
        atoms += [(zz, (x + 0.5) % 1, (y + 0.5) % 1, (w + 0.5) % 1) for zz, x, y, w in atoms]
    volume = len(atoms) * float(rng.uniform(10.0, 25.0))
    if kind == "hexagonal":
        c_a = _non_cubic_ratio(rng, 0.6, 2.0)
        a = (volume / (np.sqrt(3) / 2 * c_a)) ** (1 / 3)
        return CrystalStructure("random-hexagonal", 191, hexagonal_lattice(a, a * c_a), tuple(atoms))
    b_a = 1.0 if kind == "tetragonal" else _non_cubic_ratio(rng, 0.6, 1.8)
    c_a = _non_cubic_ratio(rng, 0.55, 2.0)
    while kind == "orthorhombic" and abs(c_a / b_a - 1) < 0.08:
        c_a = _non_cubic_ratio(rng, 0.55, 2.0)
    a = (volume / (b_a * c_a)) ** (1 / 3)
    name, sg = ("random-tetragonal", 139 if centred else 123) if kind == "tetragonal" else ("random-orthorhombic", 47)
    return CrystalStructure(name, sg, ((a, 0.0, 0.0), (0.0, a * b_a, 0.0), (0.0, 0.0, a * c_a)), tuple(atoms))
