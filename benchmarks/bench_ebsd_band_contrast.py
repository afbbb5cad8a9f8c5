"""How strong each band family is in dynamical Ni patterns, against the simulator's band weights.

The kinematical simulator weights each Kikuchi band by ``|F|`` with a
scattering-factor fall-off in ``s = 1 / (2 d)``
(:mod:`napari_microstructure.core.ebsd.simulate.kinematics`). How fast that
fall-off is decides how much faint high-order clutter surrounds the
low-index bands that tell the space groups apart. This measures it on
patterns of another simulator, kikuchipy's EMsoft master pattern of Ni
(dynamical, 20 kV; ``bench_ebsd_real_ni.py --dump-dynamical F``)::

    PYTHONPATH=src python benchmarks/bench_ebsd_band_contrast.py --dyn dyn.npz

Method: each pattern's orientation is found by the package's band indexer
(:class:`~napari_microstructure.core.ebsd.bands.BandIndexer`). One
column per family of first-order reflections (``{222}`` and ``{400}`` lie on
the traces of ``{111}`` and ``{200}``: left out, as the fit cannot tell a
row's orders apart) is the family's noise-free band image at that
orientation (the simulator's own band profile, :func:`band_image` with unit
weights). After each pattern's cubic background is projected out, one
least-squares fit over all pixels of all patterns gives every family's
contrast, printed relative to ``{111}``. The fall-off ``B`` of each weight
model that best matches the first eight families follows. The 9 real Ni
patterns are too few, small and noisy for this fit: its contrasts change
sign between the static-corrected and the raw patterns (R^2 0.07-0.11), so
they are not used.
"""

from __future__ import annotations

import argparse
from math import gcd

import numpy as np

from napari_microstructure.core.ebsd.bands import BandIndexer
from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS, band_image, detector_directions
from napari_microstructure.core.ebsd.simulate.kinematics import Reflectors, electron_wavelength, structure_factors
from napari_microstructure.core.ebsd.simulate.scattering import scattering_factor

N_FIT = 8  # families the fall-off is fitted on ({111} ... {511}): the higher ones carry little signal


def first_order_families(d_min: float = 0.6):
    """Ni's allowed reflections without the higher orders of a systematic row, grouped by family."""
    hkl, d, amp = structure_factors(ALL_MATERIALS["Ni"], d_min=d_min, scattering="electron")
    keep = amp > 1e-3 * amp.max()
    hkl, d = hkl[keep], d[keep]
    allowed = {tuple(x) for x in hkl.tolist()}
    first = []
    for x in hkl:
        k = gcd(gcd(abs(int(x[0])), abs(int(x[1]))), abs(int(x[2])))
        first.append(not any(tuple((x // k * m).tolist()) in allowed for m in range(1, k)))
    hkl, d = hkl[np.array(first)], d[np.array(first)]
    key = [tuple(sorted(np.abs(x)))[::-1] for x in hkl]
    families = sorted(set(key), key=lambda k: sum(v * v for v in k))
    return hkl, d, np.array([families.index(k) for k in key]), families


def family_contrast(patterns: np.ndarray, pc, kv: float = 20.0):
    """Contrast of each first-order family relative to {111}, the families, their s and the fit's R^2."""
    patterns = np.asarray(patterns, np.float32)
    n, h, w = patterns.shape
    rotations = BandIndexer((h, w), pc).describe(patterns)["rotations"]
    hkl, d, fam, families = first_order_families()
    g = hkl / np.linalg.norm(hkl, axis=1, keepdims=True)
    half = electron_wavelength(kv) / (2.0 * d)
    dirs = detector_directions((h, w), pc)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    x, y = xx.ravel(), yy.ravel()
    q, _ = np.linalg.qr(np.stack([np.ones_like(x), x, y, x * x, x * y, y * y, x ** 3, y ** 3, x * x * y, x * y * y], 1))
    refls = [Reflectors(g[fam == f].astype(np.float32), half[fam == f].astype(np.float32),
                        np.ones(int((fam == f).sum()), np.float32)) for f in range(len(families))]
    # normal equations summed pattern by pattern (a 480 x 640 set would otherwise hold gigabytes of columns)
    ata, atb, btb = np.zeros((len(refls), len(refls))), np.zeros(len(refls)), 0.0
    for i in range(n):  # project each pattern's cubic background out of it and of its columns
        a = np.stack([band_image(r, rotations[i:i + 1], dirs, normalise=False)[0] for r in refls], 1).astype(np.float64)
        b = patterns[i].ravel().astype(np.float64)
        a -= q @ (q.T @ a)
        b -= q @ (q.T @ b)
        b /= b.std()
        ata += a.T @ a
        atb += a.T @ b
        btb += b @ b
    coef = np.linalg.lstsq(ata, atb, rcond=None)[0]
    r2 = 1.0 - (btb - 2.0 * coef @ atb + coef @ ata @ coef) / btb  # b has zero mean (the constant is projected out)
    s = np.array([np.sqrt(sum(v * v for v in k)) / (2.0 * ALL_MATERIALS["Ni"].a) for k in families])
    return coef / coef[0], families, s, float(r2)


def model_weights(s: np.ndarray, scattering: str, b: float) -> np.ndarray:
    """Band weight of Ni's families relative to the first under a scattering model (one element: ``f(s)``)."""
    f = scattering_factor(28, s) if scattering == "electron" else np.ones_like(s)
    w = f * np.exp(-b * s ** 2)
    return w / w[0]


def best_falloff(rel: np.ndarray, s: np.ndarray, scattering: str) -> tuple[float, float]:
    grid = np.linspace(0.0, 15.0, 301)
    err = [float(np.sum((rel[:N_FIT] - model_weights(s, scattering, b)[:N_FIT]) ** 2)) for b in grid]
    i = int(np.argmin(err))
    return float(grid[i]), err[i]


def report(name: str, patterns: np.ndarray, pc) -> None:
    rel, families, s, r2 = family_contrast(patterns, pc)
    print(f"\n{name}: {len(patterns)} patterns {patterns.shape[1]} x {patterns.shape[2]}, fit R^2 {r2:.3f}")
    print(f"{'family':>7} {'d (A)':>6} {'measured':>9} {'z23 B=1.5':>10} {'z23 B=3.5':>10} {'electron B=3.5':>15}")
    d = 1.0 / (2.0 * s)
    cols = [model_weights(s, "z23", 1.5), model_weights(s, "z23", 3.5), model_weights(s, "electron", 3.5)]
    for i, k in enumerate(families[:12]):
        print(f"{''.join(map(str, k)):>7} {d[i]:6.2f} {rel[i]:9.3f} {cols[0][i]:10.3f} {cols[1][i]:10.3f} {cols[2][i]:15.3f}")
    for sc in ("z23", "electron"):
        b, err = best_falloff(rel, s, sc)
        print(f"  best {sc} fall-off over the first {N_FIT} families: B = {b:.2f} A^2 (squared error {err:.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dyn", required=True, help="dump of bench_ebsd_real_ni.py --dump-dynamical")
    args = ap.parse_args()
    with np.load(args.dyn) as z:
        pc = tuple(z["pc"])
        for key in ("60x80_counts0", "120x160_counts0", "480x640_counts0"):
            if key in z.files:
                report(f"dynamical Ni {key}", z[key], pc)


if __name__ == "__main__":
    main()
