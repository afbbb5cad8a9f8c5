"""Symmetry of the six cubic space groups of point group m-3m.

Each space group is a list of operations ``x -> R x + t`` (fractional
coordinates) built from its generators and closed under composition modulo
its lattice translations (primitive P, body-centred I, face-centred F).
Settings follow the International Tables (ITA): origin at m-3m for 221, 225,
229; origin at m-3 for 223 (Pm-3n); origin choice 1 (at -43m) for 227
(Fd-3m); origin at -3 for 230 (Ia-3d).

:func:`allowed_reflections` states the general reflection conditions of each
group (ITA, not computed from the operations), so the tests can check the
operations against them through kinematical structure factors.
"""

from __future__ import annotations

import itertools
from typing import Iterable

import numpy as np

from ...errors import MicrostructureError

SPACE_GROUPS = (221, 223, 225, 227, 229, 230)
SYMBOLS = {221: "Pm-3m", 223: "Pm-3n", 225: "Fm-3m", 227: "Fd-3m", 229: "Im-3m", 230: "Ia-3d"}

_CENTRING = {
    "P": [(0.0, 0.0, 0.0)],
    "I": [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)],
    "F": [(0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)],
}
LATTICE = {221: "P", 223: "P", 225: "F", 227: "F", 229: "I", 230: "I"}


def _signed_permutations() -> list[np.ndarray]:
    """The 48 matrices of point group m-3m (signed permutation matrices)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3), int)
            for row, (col, s) in enumerate(zip(perm, signs)):
                m[row, col] = s
            out.append(m)
    return out


def _in_m3(m: np.ndarray) -> bool:
    """True for the 24 operations of m-3 (cyclic permutations only)."""
    perm = tuple(int(np.flatnonzero(r)[0]) for r in m)
    return perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1))


def _in_td(m: np.ndarray) -> bool:
    """True for the 24 operations of -43m (an even number of minus signs)."""
    return int(np.prod(m.sum(1))) == 1


def _key(rot: np.ndarray, t: np.ndarray) -> tuple:
    return tuple(rot.ravel().tolist()) + tuple(np.round((t % 1.0) * 8).astype(int) % 8)


def _operations(sg: int) -> list[tuple[np.ndarray, np.ndarray]]:
    mats = _signed_permutations()
    zero = np.zeros(3)
    half = np.full(3, 0.5)
    if sg in (221, 225, 229):
        return [(m, zero) for m in mats]
    if sg == 223:  # Pm-3n: the operations outside m-3 carry the n-glide translation
        return [(m, zero if _in_m3(m) else half) for m in mats]
    if sg == 227:  # Fd-3m origin choice 1: outside -43m add (1/4, 1/4, 1/4)
        return [(m, zero if _in_td(m) else np.full(3, 0.25)) for m in mats]
    if sg == 230:  # Ia-3d origin at -3: close the group from ITA generators
        gens = [
            (np.diag([-1, -1, 1]), np.array([0.5, 0.0, 0.5])),  # -x+1/2, -y, z+1/2
            (np.diag([-1, 1, -1]), np.array([0.0, 0.5, 0.5])),  # -x, y+1/2, -z+1/2
            (np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]), zero),  # z, x, y
            (np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]]), np.array([0.75, 0.25, 0.25])),  # y+3/4, x+1/4, -z+1/4
            (-np.eye(3, dtype=int), zero),  # -x, -y, -z
        ]
        return _close(gens, _CENTRING["I"])
    raise MicrostructureError(
        f"space group {sg} is not simulated; choose one of {', '.join(map(str, SPACE_GROUPS))}")


def _close(gens, centring) -> list[tuple[np.ndarray, np.ndarray]]:
    """Close operations under composition modulo the lattice; one per rotation."""
    cent = [np.asarray(c) for c in centring]
    seen = {}
    frontier = [(np.eye(3, dtype=int), np.zeros(3))]
    while frontier:
        new = []
        for r1, t1 in frontier:
            k = _key(r1, t1)
            if k in seen:
                continue
            seen[k] = (r1, t1 % 1.0)
            for r2, t2 in gens:
                new.append((r2 @ r1, (r2 @ t1 + t2) % 1.0))
        frontier = new
        if len(seen) > 48 * len(cent) * 2:
            raise RuntimeError("generators do not close into a space group")
    # one representative per rotation (the rest differ by centring vectors)
    by_rot = {}
    for r, t in seen.values():
        by_rot.setdefault(tuple(r.ravel().tolist()), (r, t))
    return list(by_rot.values())


_CACHE: dict = {}


def operations(space_group: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Symmetry operations ``(R, t)`` of a space group, one per point operation (48).

    The lattice (centring) translations come on top: see :func:`centring_vectors`.
    """
    if space_group not in _CACHE:
        _CACHE[space_group] = _operations(int(space_group))
    return _CACHE[space_group]


def centring_vectors(space_group: int) -> np.ndarray:
    """Lattice centring translations of a space group, (k, 3) fractional."""
    if space_group not in LATTICE:
        raise MicrostructureError(
            f"space group {space_group} is not simulated; choose one of {', '.join(map(str, SPACE_GROUPS))}")
    return np.asarray(_CENTRING[LATTICE[space_group]])


def orbit(space_group: int, point: Iterable[float], tol: float = 1e-4) -> np.ndarray:
    """All positions in the unit cell equivalent to ``point`` (a Wyckoff orbit), (m, 3) in [0, 1)."""
    p = np.asarray(list(point), float)
    pts = []
    for r, t in operations(space_group):
        q = r @ p + t
        for c in centring_vectors(space_group):
            pts.append((q + c) % 1.0)
    grid = np.rint(np.asarray(pts) / tol).astype(np.int64) % int(round(1 / tol))
    _, first = np.unique(grid, axis=0, return_index=True)
    return grid[np.sort(first)] * tol


def allowed_reflections(space_group: int, hkl: np.ndarray) -> np.ndarray:
    """Boolean mask: reflections allowed by the general reflection conditions (ITA).

    Parameters
    ----------
    space_group : int
        221, 223, 225, 227, 229 or 230.
    hkl : ndarray (n, 3) int
        Miller indices in the conventional cubic cell.

    Notes
    -----
    - 221 Pm-3m: no condition.
    - 223 Pm-3n: hhl: l = 2n (so h00: h = 2n).
    - 225 Fm-3m: h, k, l all even or all odd.
    - 227 Fd-3m: F, and 0kl: k + l = 4n (so h00: h = 4n).
    - 229 Im-3m: h + k + l = 2n.
    - 230 Ia-3d: I, and 0kl: k, l = 2n; hhl: 2h + l = 4n; h00: h = 4n.

    Conditions written for one setting apply to every permutation and sign
    change of the indices (the point group is m-3m).
    """
    hkl = np.asarray(hkl, int).reshape(-1, 3)
    ok = np.ones(len(hkl), bool)
    a = np.abs(hkl)
    par = hkl % 2
    if space_group == 221:
        return ok
    if space_group in (225, 227):
        ok &= (par.sum(1) == 0) | (par.sum(1) == 3)
    if space_group in (229, 230):
        ok &= hkl.sum(1) % 2 == 0
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        zero = hkl[:, i] == 0  # 0kl type with the zero at position i
        same = a[:, i] == a[:, j]  # hhl type with l at position k
        if space_group == 223:
            ok &= ~same | (hkl[:, k] % 2 == 0)
        if space_group == 227:
            ok &= ~zero | ((hkl[:, j] + hkl[:, k]) % 4 == 0)
        if space_group == 230:
            ok &= ~zero | ((hkl[:, j] % 2 == 0) & (hkl[:, k] % 2 == 0))
            ok &= ~same | ((2 * hkl[:, i] + hkl[:, k]) % 4 == 0)
    return ok
