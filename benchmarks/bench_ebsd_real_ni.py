"""The 9 real Ni patterns (space group 225) that ship inside kikuchipy's wheel.

kikuchipy is an optional benchmark dependency; install it in a separate
environment (it pins its own numpy / numba). Two steps when the package's
environment has no kikuchipy::

    /work/venv-bench/bin/python benchmarks/bench_ebsd_real_ni.py --dump benchmarks/output/ni9.npz
    PYTHONPATH=src python benchmarks/bench_ebsd_real_ni.py --patterns benchmarks/output/ni9.npz

The dump holds the raw patterns (3 x 3 x 60 x 60), kikuchipy's
static-background-corrected ones (``remove_static_background`` with the
background stored in the data set), that stored background and the data
set's mean projection centre. The second step classifies both with the
simulation-pretrained model (no labelled pattern) and reports how many come
out 225 and the class probabilities.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def dump(path: str) -> None:
    import kikuchipy as kp

    s = kp.data.nickel_ebsd_small()
    raw = np.asarray(s.data).copy()
    s2 = s.deepcopy()
    s2.remove_static_background()
    np.savez(path, raw=raw, static_removed=np.asarray(s2.data).copy(),
             static_background=np.asarray(s.static_background).copy(),
             pc=np.asarray(s.detector.pc, float).reshape(-1, 3).mean(0))
    print(f"wrote {path}: {raw.shape} {raw.dtype}, kikuchipy {kp.__version__}")


#: detector shapes and Poisson count levels (mean electrons per pixel; 0: noise-free) of the dynamical dump
DYNAMICAL_SHAPES = ((60, 80), (120, 160), (480, 640))
DYNAMICAL_COUNTS = (0, 300, 30)
DYNAMICAL_PC = (0.47, 0.46, 0.63)


def dump_dynamical(path: str, n: int = 40, seed: int = 0) -> None:
    """Dynamical Ni patterns from the master pattern inside kikuchipy's wheel (EMsoft, 20 kV).

    An independent simulator (dynamical, not the package's kinematical one),
    ``n`` random orientations (orix, ``seed``) on a detector with projection
    centre :data:`DYNAMICAL_PC`, sample tilt 70 and detector tilt 10 degrees,
    at each shape of :data:`DYNAMICAL_SHAPES`, noise-free and with Poisson
    noise at the counts of :data:`DYNAMICAL_COUNTS` (the pattern, which
    kikuchipy gives in [-1, 1], shifted to [0, 1] and scaled to that mean
    first).
    """
    import kikuchipy as kp
    from orix.quaternion import Rotation

    np.random.seed(seed)  # orix draws from NumPy's global generator
    rot = Rotation.random(n)
    mp = kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="both")
    rng = np.random.default_rng(seed)
    out = {"pc": np.asarray(DYNAMICAL_PC)}
    for h, w in DYNAMICAL_SHAPES:
        det = kp.detectors.EBSDDetector(shape=(h, w), pc=DYNAMICAL_PC, sample_tilt=70, tilt=10)
        clean = np.asarray(mp.get_patterns(rot, det, energy=20, compute=True, dtype_out=np.float32).data,
                           np.float32).reshape(n, h, w)
        for counts in DYNAMICAL_COUNTS:
            if counts:  # kikuchipy's float patterns span [-1, 1]: to [0, 1], then that mean count
                unit = (clean - clean.min(axis=(1, 2), keepdims=True)) / np.ptp(clean, axis=(1, 2), keepdims=True)
                scaled = unit / unit.mean(axis=(1, 2), keepdims=True) * counts
                pats = rng.poisson(np.clip(scaled, 0, None)).astype(np.float32)
            else:
                pats = clean
            out[f"{h}x{w}_counts{counts}"] = pats
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {n} dynamical Ni patterns at {DYNAMICAL_SHAPES} x counts {DYNAMICAL_COUNTS}, "
          f"kikuchipy {kp.__version__}")


def classify(path: str, pretrained: str | None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import header

    from napari_microstructure.core.ebsd import EBSDClassifier
    from napari_microstructure.core.ebsd import pretrained as P

    header("real Ni patterns (kikuchipy.data.nickel_ebsd_small), space group 225")
    if pretrained:
        P.PRETRAINED_FILE = Path(pretrained)
    clf = EBSDClassifier.from_pretrained(device="cpu")
    with np.load(path) as z:
        for name in ("raw", "static_removed"):
            pats = z[name].reshape(-1, *z[name].shape[-2:]).astype(np.float32)
            proba = clf.predict_proba(pats)
            pred = clf.classes_[proba.argmax(1)]
            mean = proba.mean(0)
            print(f"{name:>15}: {int((pred == 225).sum())} of {len(pred)} called 225; predictions "
                  f"{pred.tolist()}; mean probabilities "
                  + ", ".join(f"{c}: {p:.2f}" for c, p in zip(clf.classes_, mean)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", help="write the patterns (needs kikuchipy)")
    ap.add_argument("--patterns", help="classify patterns written by --dump")
    ap.add_argument("--pretrained", help="a pretrained model file (default: the shipped one)")
    ap.add_argument("--dump-dynamical", help="write dynamical Ni patterns from kikuchipy's master pattern "
                                             "(needs kikuchipy and orix; classify with bench_ebsd_bands.py --dyn)")
    args = ap.parse_args()
    if args.dump_dynamical:
        dump_dynamical(args.dump_dynamical)
    if args.dump:
        dump(args.dump)
    if args.patterns:
        classify(args.patterns, args.pretrained)
    if not (args.dump or args.patterns or args.dump_dynamical):
        ap.error("give --dump, --dump-dynamical and/or --patterns")


if __name__ == "__main__":
    main()
