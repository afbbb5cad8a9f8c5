"""Simulate EBSD patterns of real crystal structures with kikuchipy (development only).

Not a runtime dependency: run it in a separate environment::

    python3 -m venv /work/kikuchi-venv
    /work/kikuchi-venv/bin/pip install "kikuchipy>=0.13,<0.14"
    NUMBA_NUM_THREADS=1 /work/kikuchi-venv/bin/python scripts/simulate_ebsd_kikuchipy.py \
        --n 500 --size 60 -o benchmarks/output/kikuchipy_patterns.npz

Then load the ``.npz`` (arrays ``patterns``, ``space_groups``, ``materials``)
in the benchmarks (``bench_ebsd_fewshot.py --data ...``) or the tests.

Materials and settings
----------------------
Ni, Al (225); Ni3Al L1_2, NiAl B2 (221); Cr3Si A15 (223); Si, Ge (227);
Fe, W (229). Asymmetric-unit atoms with their space group; orix/diffsims
expand them. Reflectors with d >= 0.7 Angstrom and |F| > 0.5 (kinematical
structure factors from diffsims), Bragg angles at 20 kV, kinematical master
pattern of half size 200 (upper hemisphere, square Lambert projection) from
``KikuchiPatternSimulator.calculate_master_pattern``. Detector 60 x 60 (or
``--size``), sample tilt 70 degrees, detector tilt 0, projection centre
(0.5, 0.3, 0.6) with a uniform +-0.02 jitter per pattern. Random
orientations (``orix.quaternion.Rotation.random``). Then a Gaussian
background lobe and Poisson noise (200 counts at the maximum), as the
package's own simulator adds, so the task is not trivial.

Pitfalls of kikuchipy 0.13 handled here:

- the master-pattern kernel runs in parallel threads (numba) and a race can
  drop a band; master patterns are computed with ``NUMBA_NUM_THREADS=1`` (set
  before kikuchipy is imported) for reproducible data;
- ``EBSDMasterPattern.get_patterns`` with a different projection centre per
  pattern fails when the patterns span more than one dask chunk, so
  ``chunk_shape`` is set to the number of patterns of the call (batches of
  ``--batch`` patterns keep memory small).

Kinematical patterns differ from dynamical and real ones (no excess/deficit
lines, different band profiles); do not tune preprocessing to them alone.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba / kikuchipy are imported

import numpy as np  # noqa: E402

MATERIALS = {
    # name: (space group, a in Angstrom, [(element, (x, y, z)) asymmetric unit])
    "Ni": (225, 3.524, [("Ni", (0, 0, 0))]),
    "Al": (225, 4.049, [("Al", (0, 0, 0))]),
    "Ni3Al": (221, 3.572, [("Al", (0, 0, 0)), ("Ni", (0, 0.5, 0.5))]),
    "NiAl": (221, 2.887, [("Ni", (0, 0, 0)), ("Al", (0.5, 0.5, 0.5))]),
    "Cr3Si": (223, 4.556, [("Si", (0, 0, 0)), ("Cr", (0.25, 0, 0.5))]),
    "Si": (227, 5.431, [("Si", (0, 0, 0))]),
    "Ge": (227, 5.658, [("Ge", (0, 0, 0))]),
    "Fe": (229, 2.866, [("Fe", (0, 0, 0))]),
    "W": (229, 3.165, [("W", (0, 0, 0))]),
}


def master_pattern(name: str, kv: float = 20.0, half_size: int = 200):
    import kikuchipy as kp
    from diffpy.structure import Atom, Lattice, Structure
    from diffsims.crystallography import ReciprocalLatticeVector
    from orix.crystal_map import Phase

    sg, a, atoms = MATERIALS[name]
    structure = Structure(atoms=[Atom(el, xyz) for el, xyz in atoms], lattice=Lattice(a, a, a, 90, 90, 90))
    phase = Phase(name=name, space_group=sg, structure=structure)
    ref = ReciprocalLatticeVector.from_min_dspacing(phase, min_dspacing=0.7)
    ref.sanitise_phase()
    ref = ref.unique(use_symmetry=True).symmetrise()
    ref.calculate_structure_factor()
    ref = ref[np.abs(ref.structure_factor) > 0.5]
    ref.calculate_theta(voltage=kv * 1e3)
    simulator = kp.simulations.KikuchiPatternSimulator(ref)
    mp = simulator.calculate_master_pattern(half_size=half_size, hemisphere="upper")
    return mp.as_lambert()  # get_patterns needs the square Lambert projection


def simulate(name: str, n: int, size: int, rng, batch: int = 200, kv: float = 20.0) -> np.ndarray:
    import kikuchipy as kp
    from orix.quaternion import Rotation

    mp = master_pattern(name, kv)
    out = np.empty((n, size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    bg = np.exp(-((xx - 0.1) ** 2 + (yy - 0.15) ** 2) / (2 * 0.7 ** 2))
    bg = 0.25 + 0.75 * bg / bg.max()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        pc = np.array([0.5, 0.3, 0.6]) + rng.uniform(-0.02, 0.02, (m, 3))
        det = kp.detectors.EBSDDetector(shape=(size, size), pc=pc, sample_tilt=70, tilt=0)
        rot = Rotation.random(m)
        sim = mp.get_patterns(rot, det, energy=kv, dtype_out=np.float32, compute=True,
                              chunk_shape=m, show_progressbar=False)
        pats = np.asarray(sim.data, dtype=np.float32).reshape(m, size, size)
        # bands as relative contrast on the detector background (as the package's simulator)
        z = (pats - pats.mean(axis=(1, 2), keepdims=True)) / (pats.std(axis=(1, 2), keepdims=True) + 1e-6)
        mean = bg * (1 + 0.25 * np.clip(z, -3, 3))
        noisy = rng.poisson(mean * 200) / 200
        out[start:start + m] = np.clip(noisy * 0.45 * 255, 0, 255).astype(np.uint8)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500, help="patterns per material")
    ap.add_argument("--size", type=int, default=60)
    ap.add_argument("--materials", default=",".join(MATERIALS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default="benchmarks/output/kikuchipy_patterns.npz")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    names = args.materials.split(",")
    pats, sgs, mats = [], [], []
    for name in names:
        p = simulate(name, args.n, args.size, rng)
        pats.append(p)
        sgs.append(np.full(len(p), MATERIALS[name][0], np.int16))
        mats.append(np.full(len(p), name))
        print(f"{name}: {len(p)} patterns", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.savez_compressed(args.output, patterns=np.concatenate(pats), space_groups=np.concatenate(sgs),
                        materials=np.concatenate(mats))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
