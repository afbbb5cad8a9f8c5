"""How much of a space group the band profiles carry across acquisitions, pair by pair.

The band-profile classifier misses ordered superstructures (Ni3Al, NiAl) zero-shot, and
labels of them from one acquisition do not carry to the next (``bench_ebsd_bands.py``,
sections ``named`` and ``fewshot``). This benchmark asks whether *any* classifier could do
better on the same profiles: for pairs of materials whose space groups differ only in
weak or nested bands, it records sessions of both (random detector, noise, voltage and
Debye-Waller fall-off, as the simulator draws them) at several pattern sizes, describes
them with the package's band indexer (its own orientation search, no oracle), and trains
plain classifiers on the 240 profile numbers. Both materials of a pair are recorded in
the same sessions (detector, voltage, noise, blur and orientations), so only the crystal
tells them apart:

- **across sessions**: logistic regression and boosted trees trained on 3/4 of the
  sessions, tested on the other quarter (grouped folds): a label carried from one
  acquisition to another; **pooled**: that decision averaged over each test session's
  patterns of one material (a map of one phase);
- **within each session**: one logistic regression per session, trained on half of its
  patterns and tested on the other half (a user labelling part of one map holding both
  phases); also the share of sessions where that reaches 0.9.

A control pair (Ni 225 against Fe 229, different lattices) shows the set-up works.
Nothing in the package is tuned on these figures.

    PYTHONPATH=src python benchmarks/bench_ebsd_pairs.py [--sizes 60,120,180] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

#: (material of the first group, material of the second), what tells them apart
PAIRS = (
    ("NiAl", "Fe", "B2 (221) / bcc (229): {100} superlattice band nested in the {200} band"),
    ("Ni3Al", "Ni", "L1_2 (221) / fcc (225): {100}, {110} superlattice bands, nested"),
    ("CaF2", "Si", "fluorite (225) / diamond (227): weak {200} nested in {400}"),
    ("Ni", "Fe", "control: fcc (225) / bcc (229), different traces"),
)
FOLDS = 4


def record(name: str, size: int, sessions: int, per_session: int) -> tuple[np.ndarray, np.ndarray]:
    """Profile features of ``sessions`` random sessions of a named material at ``size`` pixels."""
    from napari_microstructure.core.ebsd.bands import BandIndexer
    from napari_microstructure.core.ebsd.simulate import (ALL_MATERIALS, random_rotations, sample_session,
                                                           simulate_session)

    feats, groups = [], []
    for k in range(sessions):
        rng = np.random.default_rng(1000 * k + 7)  # the same sessions for every material and size
        s = sample_session(ALL_MATERIALS[name], rng)
        s = dataclasses.replace(s, geometry=dataclasses.replace(s.geometry, shape=(size, size), binning=1))
        rot = random_rotations(per_session, rng)
        pats = simulate_session(s, per_session, rng, rotations=rot, pc_scan=0.0, render_height=None)
        feats.append(BandIndexer((size, size), s.geometry.pc).describe(pats)["features"])
        groups += [k] * per_session
    return np.concatenate(feats), np.array(groups)


def scores(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict[str, tuple]:
    """Accuracy across sessions (two classifiers, and pooled per session) and within each session."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models = {
        "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)),
        "boosted trees": lambda: HistGradientBoostingClassifier(max_iter=200, random_state=seed),
    }
    runs = groups * 2 + y  # one material in one session
    out = {}
    for name, make in models.items():
        across = np.zeros(len(y))
        for tr, te in GroupKFold(FOLDS).split(x, y, groups):
            across[te] = make().fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
        pooled = np.mean([(across[runs == r].mean() > 0.5) == y[runs == r][0] for r in np.unique(runs)])
        out[name] = (float(np.mean((across > 0.5) == y)), float(pooled))
    # within: one classifier per session, trained on the first half of its patterns of both
    # materials and tested on the second half (a user labelling part of one map)
    right = []
    for g in np.unique(groups):
        idx = [np.flatnonzero((groups == g) & (y == c)) for c in (0, 1)]
        tr = np.concatenate([i[: len(i) // 2] for i in idx])
        te = np.concatenate([i[len(i) // 2:] for i in idx])
        right.append(models["logistic"]().fit(x[tr], y[tr]).predict(x[te]) == y[te])
    per_session = np.array([r.mean() for r in right])
    out["within"] = (float(np.mean(np.concatenate(right))), float(np.mean(per_session >= 0.9)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="60,120,180", help="pattern heights (square patterns)")
    ap.add_argument("--quick", action="store_true", help="fewer sessions and patterns (a smoke run)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    n_sessions, per_session = (6, 12) if args.quick else (16, 24)
    header(f"pseudo-symmetric pairs: {n_sessions} sessions x {per_session} patterns per material; across "
           f"sessions: {FOLDS} folds of sessions; within: half of each session's patterns labelled")
    for a, b, what in PAIRS:
        print(f"\n{a} / {b}: {what}")
        for size in sizes:
            t = time.perf_counter()
            xa, ga = record(a, size, n_sessions, per_session)
            xb, gb = record(b, size, n_sessions, per_session)
            x = np.concatenate([xa, xb])
            y = np.r_[np.zeros(len(xa), int), np.ones(len(xb), int)]
            # a material's session k and the other's session k share detector and noise: one group
            res = scores(x, y, np.r_[ga, gb])
            print(f"  {size:3d} x {size:<3d}: across sessions: logistic {res['logistic'][0]:.3f} (pooled "
                  f"{res['logistic'][1]:.3f}), boosted trees {res['boosted trees'][0]:.3f} (pooled "
                  f"{res['boosted trees'][1]:.3f}); within each session (logistic, half labelled): "
                  f"{res['within'][0]:.3f}, sessions >= 0.9: {res['within'][1]:.2f}  "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)

if __name__ == "__main__":
    main()
