"""Train the shipped band-profile space-group classifier on simulated patterns.

Data: sessions of the domain-randomised simulator
(:mod:`napari_microstructure.core.ebsd.simulate.domain`), training split only
(prototypes except the held-out ones, with random species, lattice
parameters and order, and random Wyckoff structures; never the named
materials), one structure, detector and acquisition per session, uniformly
random orientations. Each pattern is described by its band profiles
(:mod:`napari_microstructure.core.ebsd.bands`) at the simulated orientation,
jittered by 0.8 degrees (the orientation search's typical error) so that
the classifier learns from what the search will give it.

Stages (each resumable; finished chunks are kept in ``--out``):

1. ``features``: chunks of ``--sessions-per-chunk`` sessions per space group,
   each written as ``chunk_XXX.npz`` (features, labels); a rerun skips the
   chunks that exist. Seeded: chunk ``i`` uses seed ``--seed * 1000 + i``.
2. ``export``: trains :class:`BandProfileClassifier` on all chunks and
   writes the model file shipped in the package
   (``src/napari_microstructure/data/ebsd/band_profiles.pt``) with a bank of
   simulated features for fine-tuning.

Usage::

    python scripts/train_band_profiles.py features --chunks 32 --out /tmp/band-profiles
    python scripts/train_band_profiles.py export --out /tmp/band-profiles

The shipped model (2026-11-29): ``features --chunks 32`` (defaults: 50 sessions
per space group per chunk, 10 patterns each: 96,000 patterns, 40-68 s per
chunk on two cores; the chunks' log is ``pretraining/band-profiles/log.jsonl``),
then ``export`` (training and calibration 349 s; fit threshold 0.051 at 2 % of
600 indexed simulated patterns). It was chosen over the 16-chunk model (48,000
patterns) on a development set of fresh training-split sessions (seeds from
777,000; found orientations): 0.550 against 0.538. Figures:
``benchmarks/bench_ebsd_bands.py`` and docs/ebsd.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

JITTER_DEG = 0.8


def _session(args):
    seed, sg, n = args
    from napari_microstructure.core.ebsd.bands import BandIndexer, prepare_patterns
    from napari_microstructure.core.ebsd.simulate import (StructureSampler, random_rotations, sample_session,
                                                           simulate_session)

    rng = np.random.default_rng(seed)
    session = sample_session(StructureSampler("train", 0.5).draw(sg, rng), rng)
    rot = random_rotations(n, rng)
    patterns = simulate_session(session, n, rng, rotations=rot, pc_scan=0.0)
    indexer = BandIndexer(patterns.shape[1:], session.geometry.pc)
    prepared = prepare_patterns(patterns)
    v = rng.normal(size=(n, 3)) * np.deg2rad(JITTER_DEG)
    feats = np.stack([indexer.profiles(p, _small_rotation(vv) @ r).ravel()
                      for p, r, vv in zip(prepared, rot, v)])
    return feats.astype(np.float32), np.full(n, sg)


def _small_rotation(v):
    angle = float(np.linalg.norm(v))
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]]) / max(angle, 1e-12)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _map(func, jobs, workers: int) -> list:
    """``func`` over ``jobs``: in ``workers`` processes, or in this one for ``workers=1``."""
    if workers <= 1:
        return [func(job) for job in jobs]
    with Pool(workers) as pool:
        return pool.map(func, jobs, chunksize=4)


def features(args) -> None:
    from napari_microstructure.core.ebsd.simulate import SPACE_GROUPS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for c in range(args.chunks):
        path = out / f"chunk_{c:03d}.npz"
        if path.exists():
            continue
        t = time.time()
        jobs = [((args.seed * 1000 + c) * 100000 + i * 10 + k, sg, args.patterns_per_session)
                for i in range(args.sessions_per_chunk) for k, sg in enumerate(SPACE_GROUPS)]
        res = _map(_session, jobs, args.workers)
        x = np.concatenate([r[0] for r in res])
        y = np.concatenate([r[1] for r in res])
        np.savez(path.with_suffix(".tmp.npz"), features=x, labels=y)
        path.with_suffix(".tmp.npz").rename(path)
        line = {"chunk": c, "patterns": int(len(y)), "seconds": round(time.time() - t, 1)}
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        print(line, flush=True)


def _indexed_fits(args):
    """Orientation fits of simulated patterns found by the search (not the simulated orientation)."""
    seed, sg = args
    from napari_microstructure.core.ebsd.bands import BandIndexer
    from napari_microstructure.core.ebsd.simulate import StructureSampler, sample_session, simulate_session

    rng = np.random.default_rng(seed)
    session = sample_session(StructureSampler("train", 0.5).draw(sg, rng), rng)
    patterns = simulate_session(session, 2, rng, pc_scan=0.0)
    return BandIndexer(patterns.shape[1:], session.geometry.pc).describe(patterns)["fit"]


def export(args) -> None:
    from napari_microstructure.core.ebsd.bandclassifier import BANK_PER_CLASS, BandProfileClassifier
    from napari_microstructure.core.ebsd.pretrained import BAND_PROFILES_FILE

    chunks = sorted(Path(args.out).glob("chunk_*.npz"))
    if not chunks:
        sys.exit(f"no chunks in {args.out}; run the 'features' stage first")
    data = [np.load(p) for p in chunks]
    x = np.concatenate([d["features"] for d in data])
    y = np.concatenate([d["labels"] for d in data])
    t = time.time()
    clf = BandProfileClassifier(simulation_pretrained=False, seed=args.seed)
    clf.fit_features(x, y)
    rng = np.random.default_rng(args.seed)
    bank = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:BANK_PER_CLASS] for c in np.unique(y)])
    clf.bank_features_, clf.bank_labels_ = x[bank].astype(np.float16), y[bank]
    from napari_microstructure.core.ebsd.simulate import SPACE_GROUPS

    jobs = [(10 ** 9 + args.seed * 10000 + i * 10 + k, sg) for i in range(args.calibration_sessions)
            for k, sg in enumerate(SPACE_GROUPS)]
    fits = np.concatenate(_map(_indexed_fits, jobs, args.workers))
    clf.fit_threshold_ = float(np.quantile(fits, clf.rejection_rate))
    print(f"fit threshold {clf.fit_threshold_:.3f} ({clf.rejection_rate:.0%} of {len(fits)} indexed "
          f"simulated patterns below; fits {np.percentile(fits, [5, 50, 95]).round(3).tolist()})")
    clf.set_params(simulation_pretrained=True)  # fit() on the shipped file fine-tunes it
    target = Path(args.target) if args.target else BAND_PROFILES_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    clf.save(target)
    print(f"trained on {len(y)} patterns in {time.time() - t:.1f} s; wrote {target} "
          f"({target.stat().st_size / 1e6:.2f} MB)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("features", "export"))
    ap.add_argument("--out", required=True, help="folder of the feature chunks and log")
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--sessions-per-chunk", type=int, default=50, help="sessions per space group per chunk")
    ap.add_argument("--patterns-per-session", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibration-sessions", type=int, default=50,
                    help="sessions per space group (2 patterns each) indexed to set the fit threshold")
    ap.add_argument("--target", default=None, help="model file to write (default: the package's)")
    args = ap.parse_args(argv)
    (features if args.stage == "features" else export)(args)


if __name__ == "__main__":
    main()
