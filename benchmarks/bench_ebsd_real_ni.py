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
    args = ap.parse_args()
    if args.dump:
        dump(args.dump)
    if args.patterns:
        classify(args.patterns, args.pretrained)
    if not (args.dump or args.patterns):
        ap.error("give --dump and/or --patterns")


if __name__ == "__main__":
    main()
