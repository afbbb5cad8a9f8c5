"""Peers side by side: the band-profile classifier, kikuchipy dictionary indexing, PyEBSDIndex.

One run, the same patterns for the three methods:

1. **real Ni**: the 9 patterns (3 x 3, 60 x 60, space group 225) that ship
   inside kikuchipy's wheel (``kikuchipy.data.nickel_ebsd_small()``), with
   kikuchipy's static-background removal and the projection centre stored in
   the data set;
2. **simulated held-out patterns**: the 25 named materials of the package's
   simulator (``--sessions`` random acquisition sessions x ``--per-session``
   random orientations each, fixed seeds), on the detector of the real Ni
   patterns (60 x 60, the same projection centre, 2x binning), so one
   dictionary per phase serves both sets.

Methods:

- ``BandProfileClassifier.from_pretrained(pc=...)`` (zero-shot: trained on
  random simulated structures only; each pattern's own smooth background is
  divided out);
- **kikuchipy dictionary indexing as a space-group classifier**: one
  dictionary per space group from one representative material each (Ni 225,
  NiAl 221, Cr3Si 223, Si 227, Fe 229, Y3Al5O12 230: the "seen" materials;
  the other 19 are "unseen"). Kinematical master pattern
  (``KikuchiPatternSimulator``: reflectors with d >= 0.7 Angstrom and
  |F| > 0.5, 20 kV, half size 200, upper hemisphere), cubic fundamental-zone
  orientations (cubochoric, ``--resolution`` degrees), the patterns'
  detector. Each pattern (dynamic background removed) is indexed against every
  dictionary (normalised cross-correlation, ``EBSD.dictionary_indexing``);
  the call is the phase with the highest score;
- **PyEBSDIndex Hough (Radon) indexing**: (a) its generic FCC and BCC
  phases (calls 225 or 229), (b) six phases built from the same representative
  materials (space group, lattice parameter and the four largest-d reflector
  families whose kinematical |F| is at least 25 % of the strongest family's).
  The call is PyEBSDIndex's best-fit phase. Hough indexing sees band
  *positions* only: space groups whose strong bands lie along the same
  crystal directions (fcc / primitive cubic / bcc all have <100>, <110>,
  <111> band normals) cannot be told apart reliably, whatever the patterns.

Nothing is tuned on these patterns: representatives, reflector rules,
resolution, seeds and PyEBSDIndex settings are fixed before the run.

kikuchipy and PyEBSDIndex are optional benchmark dependencies (the package
itself never imports them); run in an environment that has them::

    pip install "kikuchipy>=0.13" pyebsdindex
    nice -n 10 python benchmarks/bench_ebsd_peers.py [--quick]

Without them the script says what to install and exits with status 0.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", os.environ.get("BENCH_THREADS", "2"))  # before numba is imported

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402
from bench_ebsd_bands import SET_A  # noqa: E402  (one representative material per space group)

DETECTOR_SHAPE = (60, 60)
KV = 20.0
# element symbols by atomic number (the simulator stores Z)
_SYMBOLS = ("H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
            "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy "
            "Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi").split()


def missing_peers() -> list[str]:
    """Optional benchmark packages that are not installed."""
    need = {"kikuchipy": "kikuchipy>=0.13", "pyebsdindex": "pyebsdindex", "orix": "orix",
            "diffsims": "diffsims"}
    return [pip for mod, pip in need.items() if importlib.util.find_spec(mod) is None]


@contextlib.contextmanager
def quiet():
    """Silence kikuchipy's progress bars and per-call indexing reports."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def call_phase(scores: np.ndarray, labels) -> np.ndarray:
    """The label of the best-scoring phase per pattern.

    Parameters
    ----------
    scores : ndarray (n_phases, n_patterns)
        Similarity of each pattern to each phase (higher is better; NaN = no match).
    labels : sequence of length n_phases

    Returns
    -------
    ndarray (n_patterns,)
    """
    scores = np.where(np.isnan(scores), -np.inf, np.asarray(scores, float))
    return np.asarray(labels)[np.argmax(scores, axis=0)]


# --------------------------------------------------------------------------- data

def real_ni():
    """kikuchipy's 9 Ni patterns after static-background removal (9, 60, 60) and the projection centre."""
    import kikuchipy as kp

    s = kp.data.nickel_ebsd_small()
    s.remove_static_background(show_progressbar=False)
    pc = np.asarray(s.detector.pc, float).reshape(-1, 3).mean(0)
    return np.asarray(s.data, np.float32).reshape(-1, *DETECTOR_SHAPE), tuple(float(v) for v in pc)


def simulated(pc, sessions: int, per_session: int):
    """Patterns of the 25 named materials on the real-Ni detector; (patterns, space groups, materials)."""
    from napari_microstructure.core.ebsd.simulate import (ALL_MATERIALS, DetectorGeometry, random_rotations,
                                                          sample_session, simulate_session)

    geometry = DetectorGeometry(DETECTOR_SHAPE, 2, tuple(pc), 70.0, 0.0)
    pats, sgs, names = [], [], []
    for i, (name, st) in enumerate(ALL_MATERIALS.items()):
        for j in range(sessions):
            rng = np.random.default_rng(123000 + 100 * i + j)
            s = sample_session(st, rng, geometry=geometry)
            pats.append(simulate_session(s, per_session, rng, rotations=random_rotations(per_session, rng),
                                         pc_scan=0.0).astype(np.float32))
            sgs += [int(st.space_group)] * per_session
            names += [name] * per_session
    return np.concatenate(pats), np.array(sgs), np.array(names)


# --------------------------------------------------------------------------- methods

def band_classifier(patterns: np.ndarray, pc) -> tuple[np.ndarray, float]:
    """Zero-shot calls of the shipped band-profile classifier and patterns per second (warm)."""
    from napari_microstructure import BandProfileClassifier

    clf = BandProfileClassifier.from_pretrained(pc=pc)
    clf.predict(patterns[:2])  # detector set-up once per detector
    t = time.perf_counter()
    pred = clf.predict(patterns)
    return np.asarray(pred), len(patterns) / (time.perf_counter() - t)


def kikuchipy_phase(structure):
    """orix Phase of a simulator structure (all atoms of the conventional cell)."""
    from diffpy.structure import Atom, Lattice, Structure
    from orix.crystal_map import Phase

    atoms = [Atom(_SYMBOLS[int(round(z)) - 1], (x, y, zz)) for z, x, y, zz in structure.atoms]
    a = structure.a
    return Phase(name=structure.name, space_group=int(structure.space_group),
                 structure=Structure(atoms=atoms, lattice=Lattice(a, a, a, 90, 90, 90)))


def reflectors(structure, d_min: float = 0.7, min_f: float = 0.5):
    """diffsims reflectors of a structure with structure factors and Bragg angles at :data:`KV`."""
    from diffsims.crystallography import ReciprocalLatticeVector

    ref = ReciprocalLatticeVector.from_min_dspacing(kikuchipy_phase(structure), min_dspacing=d_min)
    ref = ref.unique(use_symmetry=True)
    ref.calculate_structure_factor()
    ref = ref[np.abs(ref.structure_factor) > min_f]
    ref = ref.symmetrise()
    ref.calculate_structure_factor()
    ref.calculate_theta(voltage=KV * 1e3)
    return ref


def dictionary(structure, pc, resolution: float):
    """Kinematical dictionary (kikuchipy EBSD signal with orientations) of one structure on the detector."""
    import kikuchipy as kp
    import numba
    from orix.sampling import get_sample_fundamental

    ref = reflectors(structure)
    numba.set_num_threads(1)  # kikuchipy 0.13's master-pattern kernel can drop a band when threaded
    try:
        with quiet():
            mp = kp.simulations.KikuchiPatternSimulator(ref).calculate_master_pattern(half_size=200,
                                                                                      hemisphere="upper")
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    mp = mp.as_lambert()
    rot = get_sample_fundamental(resolution=resolution, point_group=mp.phase.point_group, method="cubochoric")
    det = kp.detectors.EBSDDetector(shape=DETECTOR_SHAPE, pc=pc, sample_tilt=70.0, tilt=0.0)
    d = mp.get_patterns(rot, det, energy=KV, dtype_out=np.float32, compute=True, show_progressbar=False)
    return d, ref.size


def dictionary_scores(sets: dict, pc, resolution: float):
    """Best NCC of every pattern of every set against each representative's dictionary.

    Returns ``({set: (n_phases, n) scores}, build seconds, matching seconds per set, dictionary sizes)``.
    """
    import kikuchipy as kp
    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS

    scores = {k: [] for k in sets}
    match_s = dict.fromkeys(sets, 0.0)
    build_s, sizes = 0.0, []
    signals = {}
    for k, pats in sets.items():  # preprocessing counts towards the matching time
        t = time.perf_counter()
        s = kp.signals.EBSD(pats.copy())
        s.remove_dynamic_background(show_progressbar=False)
        signals[k] = s
        match_s[k] += time.perf_counter() - t
    for sg, name in SET_A.items():
        t = time.perf_counter()
        d, n_refl = dictionary(ALL_MATERIALS[name], pc, resolution)
        build_s += time.perf_counter() - t
        sizes.append(d.axes_manager.navigation_size)
        print(f"  dictionary {name} ({sg}): {sizes[-1]} patterns, {n_refl} reflectors, "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        for k, s in signals.items():
            t = time.perf_counter()
            with quiet():
                xmap = s.dictionary_indexing(d, metric="ncc", keep_n=1)
            match_s[k] += time.perf_counter() - t
            scores[k].append(np.asarray(xmap.prop["scores"], float).reshape(-1))
        del d
    return {k: np.stack(v) for k, v in scores.items()}, build_s, match_s, sizes


def pole_families(structure, n: int = 4, rel_f: float = 0.25) -> np.ndarray:
    """The ``n`` largest-d reflector families with |F| >= ``rel_f`` x the strongest family's."""
    from diffsims.crystallography import ReciprocalLatticeVector

    ref = ReciprocalLatticeVector.from_min_dspacing(kikuchipy_phase(structure), min_dspacing=0.7)
    ref = ref.unique(use_symmetry=True)
    ref.calculate_structure_factor()
    f = np.abs(ref.structure_factor)
    keep = f >= rel_f * f.max()
    hkl = np.round(ref.hkl[keep]).astype(int)
    d = ref.dspacing[keep]
    order = np.argsort(-d, kind="stable")[:n]
    return np.sort(np.abs(hkl[order]), axis=1)[:, ::-1].astype(np.int32)


def hough_phases(six: bool):
    """PyEBSDIndex phase list and the space group of each entry."""
    if not six:
        return ["FCC", "BCC"], [225, 229]
    from pyebsdindex import tripletvote
    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS

    phases, groups = [], []
    for sg, name in SET_A.items():
        st = ALL_MATERIALS[name]
        fam = pole_families(st)
        phases.append(tripletvote.addphase(phasename=name, spacegroup=sg,
                                           latticeparameter=[st.a / 10, st.a / 10, st.a / 10, 90, 90, 90],
                                           polefamilies=fam))
        groups.append(sg)
        print(f"  PyEBSDIndex phase {name} ({sg}): families {[tuple(int(v) for v in f) for f in fam]}")
    return phases, groups


def hough(patterns: np.ndarray, pc, phases: list, groups: list) -> tuple[np.ndarray, float]:
    """PyEBSDIndex calls (space groups; 0 = not indexed) and patterns per second (indexer set up once)."""
    from pyebsdindex import ebsd_index

    indexer = ebsd_index.EBSDIndexer(phaselist=phases, vendor="BRUKER", PC=np.asarray(pc), sampleTilt=70.0,
                                     camElev=0.0, patDim=np.array(DETECTOR_SHAPE), nband_earlyexit=100)
    indexer.index_pats(patsin=patterns[:2], verbose=0)  # numba compilation
    t = time.perf_counter()
    data = indexer.index_pats(patsin=patterns, verbose=0)[0]
    rate = len(patterns) / (time.perf_counter() - t)
    best = data[-1]
    ph = best["phase"]
    calls = np.where((ph >= 0) & (best["nmatch"] > 0), np.asarray(groups)[np.clip(ph, 0, len(groups) - 1)], 0)
    return calls, rate


def speed_rounds(patterns: np.ndarray, pc, hough_setups: dict, n: int, rounds: int) -> dict[str, list[float]]:
    """Patterns per second of the band-profile classifier and each Hough set-up on ``n`` patterns (the
    simulated ones repeated), the methods taking turns ``rounds`` times: a short timing on a shared
    machine is mostly noise, and taking turns spreads a busy spell over every method."""
    from napari_microstructure import BandProfileClassifier
    from pyebsdindex import ebsd_index

    big = np.ascontiguousarray(patterns[np.arange(n) % len(patterns)])
    clf = BandProfileClassifier.from_pretrained(pc=pc)
    clf.predict(big[:2])
    indexers = {}
    for key, (phases, _) in hough_setups.items():
        indexers[key] = ebsd_index.EBSDIndexer(phaselist=phases, vendor="BRUKER", PC=np.asarray(pc), sampleTilt=70.0,
                                               camElev=0.0, patDim=np.array(DETECTOR_SHAPE), nband_earlyexit=100)
        indexers[key].index_pats(patsin=big[:2], verbose=0)
    rates = {"band-profile classifier (zero-shot)": [], **{k: [] for k in indexers}}
    for _ in range(rounds):
        t = time.perf_counter()
        clf.predict(big)
        rates["band-profile classifier (zero-shot)"].append(n / (time.perf_counter() - t))
        for key, indexer in indexers.items():
            t = time.perf_counter()
            indexer.index_pats(patsin=big, verbose=0)
            rates[key].append(n / (time.perf_counter() - t))
    return rates


# --------------------------------------------------------------------------- report

def summary(name: str, pred: np.ndarray, y: np.ndarray, seen: np.ndarray, groups) -> str:
    acc = np.mean(pred == y)
    per = " ".join(f"{g} {np.mean(pred[y == g] == g):.2f}" for g in groups)
    return (f"{name:<34} {acc:6.3f} {np.mean(pred[seen] == y[seen]):6.3f} {np.mean(pred[~seen] == y[~seen]):6.3f}"
            f"   {per}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 session x 2 patterns, 6 degree dictionary")
    ap.add_argument("--sessions", type=int, default=3, help="acquisition sessions per named material")
    ap.add_argument("--per-session", type=int, default=4, help="patterns per session")
    ap.add_argument("--resolution", type=float, default=3.0, help="dictionary orientation step, degrees")
    ap.add_argument("--speed-patterns", type=int, default=3000,
                    help="patterns per timing of the band classifier and Hough indexing (the simulated ones repeated)")
    ap.add_argument("--speed-rounds", type=int, default=3, help="timings per method, taking turns")
    args = ap.parse_args()
    missing = missing_peers()
    if missing:
        print("bench_ebsd_peers.py needs the optional benchmark dependencies; install them in a separate "
              "environment: pip install " + " ".join(f'"{m}"' for m in missing))
        return
    if args.quick:
        args.sessions, args.per_session, args.resolution = 1, 2, 6.0
    import kikuchipy as kp
    import pyebsdindex

    header("peers side by side: band-profile classifier, kikuchipy dictionary indexing, PyEBSDIndex")
    print(f"kikuchipy {kp.__version__}, pyebsdindex {pyebsdindex.__version__}, numba threads "
          f"{os.environ['NUMBA_NUM_THREADS']}")
    from napari_microstructure.core.ebsd.simulate import SPACE_GROUPS

    t0 = time.perf_counter()
    ni, pc = real_ni()
    sim, y, names = simulated(pc, args.sessions, args.per_session)
    seen = np.isin(names, list(SET_A.values()))
    print(f"real Ni: {len(ni)} patterns, pc {tuple(round(v, 4) for v in pc)}; simulated: {len(sim)} patterns of "
          f"{len(set(names))} materials ({seen.sum()} of the 6 dictionary materials), 60 x 60, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)

    results, rates = {}, {}
    ni_calls = {}
    pred_ni, _ = band_classifier(ni, pc)
    pred, rate = band_classifier(sim, pc)
    results["band-profile classifier (zero-shot)"], rates["band-profile classifier (zero-shot)"] = pred, rate
    ni_calls["band-profile classifier (zero-shot)"] = pred_ni
    print(f"band-profile classifier done ({time.perf_counter() - t0:.0f} s)", flush=True)

    hough_setups = {}
    for six in (False, True):
        key = "PyEBSDIndex Hough, " + ("6 phases" if six else "FCC + BCC")
        phases, hough_groups = hough_setups[key] = hough_phases(six)
        ni_calls[key], _ = hough(ni, pc, phases, hough_groups)
        results[key], rates[key] = hough(sim, pc, phases, hough_groups)
        print(f"{key} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    print(f"kikuchipy dictionaries ({args.resolution:g} degree cubochoric sampling of the cubic fundamental zone):",
          flush=True)
    scores, build_s, match_s, sizes = dictionary_scores({"ni": ni, "sim": sim}, pc, args.resolution)
    groups = list(SET_A)
    key = f"kikuchipy dictionary, {args.resolution:g} deg"
    ni_calls[key] = call_phase(scores["ni"], groups)
    results[key] = call_phase(scores["sim"], groups)
    rates[key] = len(sim) / match_s["sim"]
    print(f"dictionaries done ({time.perf_counter() - t0:.0f} s)", flush=True)

    header("real Ni (kikuchipy.data.nickel_ebsd_small, space group 225, static background removed)")
    for k, p in ni_calls.items():
        print(f"{k:<40} {int(np.sum(p == 225))} of {len(p)} called 225; calls {np.asarray(p).tolist()}")
    print("dictionary NCC (mean over the 9) per phase: "
          + ", ".join(f"{SET_A[g]} {s:.3f}" for g, s in zip(groups, scores["ni"].mean(1))))

    header(f"simulated, 25 named materials, {len(sim)} patterns on the real-Ni detector "
           "(seen = the 6 dictionary / PyEBSDIndex materials)")
    print(f"{'method':<34} {'all':>6} {'seen':>6} {'unseen':>6}   per space group {' '.join(map(str, SPACE_GROUPS))}")
    for k, p in results.items():
        print(summary(k, p, y, seen, SPACE_GROUPS))
    print("not indexed (PyEBSDIndex): " + ", ".join(f"{k.split(', ')[1]} {np.mean(p == 0):.2f}"
                                                   for k, p in results.items() if k.startswith("PyEBSD")))
    for k, p in results.items():
        print(f"{k}, calls by true group: " + "; ".join(
            f"{g} -> " + " ".join(f"{c}:{n}" for c, n in zip(*np.unique(p[y == g], return_counts=True)))
            for g in SPACE_GROUPS))
    print("dictionary mean best NCC by true group (rows) and dictionary (columns "
          + " ".join(SET_A.values()) + "): "
          + "; ".join(f"{g} " + " ".join(f"{v:.3f}" for v in scores["sim"][:, y == g].mean(1)) for g in SPACE_GROUPS))
    per_mat = {n: np.mean(results[key][names == n] == y[names == n]) for n in dict.fromkeys(names)}
    print("dictionary per material: " + ", ".join(f"{n} {v:.2f}" for n, v in per_mat.items()))

    header("speed, 60 x 60 patterns (numba / torch threads as above)")
    for k, r in rates.items():
        print(f"{k:<40} {r:8.1f} patterns/s")
    total = match_s["sim"] + match_s["ni"] + build_s
    print(f"dictionary build (6 phases, {sum(sizes)} patterns, once per detector / projection centre): "
          f"{build_s:.0f} s; matching only {rates[key]:.1f} patterns/s; with the build spread over these "
          f"{len(sim) + len(ni)} patterns {(len(sim) + len(ni)) / total:.2f} patterns/s")
    if args.speed_patterns > 0 and args.speed_rounds > 0:
        n = 20 if args.quick else args.speed_patterns
        header(f"speed, {n} patterns of 60 x 60 (the simulated ones repeated), {args.speed_rounds} rounds "
               "taking turns")
        for k, r in speed_rounds(sim, pc, hough_setups, n, 1 if args.quick else args.speed_rounds).items():
            print(f"{k:<40} median {np.median(r):8.1f} patterns/s  (rounds: {', '.join(f'{v:.1f}' for v in r)})")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
