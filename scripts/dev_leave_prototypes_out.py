"""Leave-prototypes-out: how well the band-profile recipe carries to structure types it was not trained on.

The benchmark's held-out structures (``HELD_OUT_PROTOTYPES``) must not steer
design choices, so this development study makes its own held-out split out of
the *training* prototypes: a fold leaves one training prototype per space group
out of the training chunks, trains a model on the rest, and scores it on fresh
development sessions (seeds from 7,760,000: no training chunk, test, benchmark
or other development set uses them) of the prototypes it left out ("held"),
of the ones it kept ("kept") and of random Wyckoff structures ("random").
The gap between held and kept is this recipe's generalisation gap to new
structure types; a change to the recipe is worth keeping when it narrows the
gap without losing the kept prototypes.

Stages:

1. ``evalset OUT.npz``: the development sessions (8 per prototype and per group of
   random structures, under each scattering model, 8 patterns each, at most 100
   bands, full resolution), described by the orientation search.
2. ``run CHUNKS EVAL.npz [VARIANT ...]``: for each fold and variant, train on the
   chunks of ``train_band_profiles.py features`` (which record each pattern's
   structure kind; chunks written before stop 30 do not, and the same command
   writes them again identically with the kinds) and print held / kept / random
   accuracy per scattering model. A variant is ``name`` or
   ``name:param=value,...`` (:class:`BandProfileClassifier` parameters).

3. ``familiarity CHUNKS EVAL.npz`` (stop 34): for each fold, whether a score says that a session's
   structure type was left out of training: one minus the top probability, the negative energy
   (log-sum-exp of the logits), and the mean distance to the 10 nearest of 600 training profiles per
   space group (as many as the shipped model's bank), in the network's last hidden layer and in its
   standardised input. Prints the AUROC of left-out against other sessions (per pattern and by session
   mean), of sessions whose majority call is wrong against right, and the share of each left-out type's
   sessions flagged at a threshold that flags 10 % of the other sessions.

Usage::

    python scripts/dev_leave_prototypes_out.py evalset /tmp/lpo-eval.npz
    python scripts/dev_leave_prototypes_out.py run /tmp/band-profiles /tmp/lpo-eval.npz base drop:dropout=0.5
    python scripts/dev_leave_prototypes_out.py familiarity /tmp/band-profiles /tmp/lpo-eval.npz

Figures (2026-12-01): docs/benchmarks.md, "Leave-prototypes-out".
"""

from __future__ import annotations

import argparse
import glob
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

#: One training prototype per space group (221, 223, 225, 227, 229, 230) left out per fold.
FOLDS = {"A": ("perovskite", "clathrate-I", "rocksalt", "spinel", "H3S-type", "garnet"),
         "B": ("ReO3", "beta-W", "Heusler-L2_1", "Laves-C15", "A2-solid-solution", "Al4Ni3-type")}
EVAL_SEED = 7_760_000
EVAL_SESSIONS, EVAL_PATTERNS = 8, 8


def _map(func, jobs, workers: int, chunksize: int) -> list:
    if workers <= 1:
        return [func(job) for job in jobs]
    with Pool(workers) as pool:
        return pool.map(func, jobs, chunksize=chunksize)


def _eval_session(job):
    ki, name, sg, j, scattering = job
    from napari_microstructure.core.ebsd.bands import BandIndexer
    from napari_microstructure.core.ebsd.simulate import sample_session, simulate_session
    from napari_microstructure.core.ebsd.simulate.kinematics import is_unambiguous
    from napari_microstructure.core.ebsd.simulate.structures import draw_prototype, random_structure

    rng = np.random.default_rng(EVAL_SEED + 1000 * ki + 10 * j + (scattering == "z23"))
    for _ in range(200):
        st = random_structure(sg, rng) if name == "random" else draw_prototype(name, rng)
        if is_unambiguous(st, scattering=scattering):
            break
    session = sample_session(st, rng, scattering=scattering)
    patterns = simulate_session(session, EVAL_PATTERNS, rng, pc_scan=0.0, render_height=None, max_reflectors=100)
    features = BandIndexer(patterns.shape[1:], session.geometry.pc).describe(patterns)["features"]
    return features.astype(np.float32), sg, name, scattering


def evalset(args) -> None:
    from napari_microstructure.core.ebsd.simulate import SPACE_GROUPS, StructureSampler

    sampler = StructureSampler("train", 0.5)
    kinds_ = [(n, sg) for sg in SPACE_GROUPS for n in sampler.prototypes[sg]] + [("random", sg) for sg in SPACE_GROUPS]
    jobs = [(ki, n, sg, j, sc) for ki, (n, sg) in enumerate(kinds_) for j in range(EVAL_SESSIONS)
            for sc in ("electron", "z23")]
    t = time.time()
    res = _map(_eval_session, jobs, args.workers, 4)
    rep = lambda i: np.repeat([r[i] for r in res], EVAL_PATTERNS)  # noqa: E731
    np.savez(args.out, features=np.concatenate([r[0] for r in res]), labels=rep(1), names=rep(2), scattering=rep(3))
    print(f"{len(jobs)} sessions in {time.time() - t:.0f} s; wrote {args.out}")


def _parse_variant(text: str) -> tuple[str, dict]:
    tag, _, kv = text.partition(":")
    params = {}
    for item in filter(None, kv.split(",")):
        key, value = item.split("=")
        params[key] = float(value) if any(c in value for c in ".e") else int(value)
    return tag, params


def run(args) -> None:
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    x, y, names = _training_chunks(args.chunks, args.max_chunks)
    ev = np.load(args.eval)
    for variant in args.variants:
        tag, params = _parse_variant(variant)
        for fold, held in FOLDS.items():
            t = time.time()
            keep = ~np.isin(names, held)
            clf = BandProfileClassifier(simulation_pretrained=False, **params).fit_features(x[keep], y[keep])
            right = clf.classes_[clf.predict_proba_features(ev["features"]).argmax(1)] == ev["labels"]
            in_held = np.isin(ev["names"], held)
            parts = {"held": in_held, "kept": ~in_held & (ev["names"] != "random"), "random": ev["names"] == "random"}
            cells = []
            for sc in ("electron", "z23"):
                s = ev["scattering"] == sc
                cells.append(f"{sc} " + " / ".join(f"{right[s & m].mean():.3f}" for m in parts.values()))
            means = " / ".join(f"{right[m].mean():.3f}" for m in parts.values())
            print(f"{tag:<12} fold {fold} ({time.time() - t:.0f} s) held / kept / random: {'; '.join(cells)}; "
                  f"both {means}; " + ", ".join(f"{n} {right[ev['names'] == n].mean():.2f}" for n in held), flush=True)


def _training_chunks(folder: str, max_chunks=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chunks = sorted(glob.glob(str(Path(folder) / "chunk_*.npz")))[:max_chunks]
    data = [np.load(c) for c in chunks]
    if not all("kinds" in d.files for d in data):
        raise SystemExit(f"chunks in {folder} do not record structure kinds (written before stop 30); write "
                         "them again with train_band_profiles.py features (same settings, same features)")
    return tuple(np.concatenate([d[k] for d in data]) for k in ("features", "labels", "kinds"))


def familiarity(args) -> None:
    import torch
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    x, y, names = _training_chunks(args.chunks, args.max_chunks)
    x = x.astype(np.float32)
    ev = np.load(args.eval)
    ef, el, en = ev["features"].astype(np.float32), ev["labels"], ev["names"]
    session = np.arange(len(ef)) // EVAL_PATTERNS
    n_sessions = int(session.max()) + 1
    by_session = lambda v: np.bincount(session, v, n_sessions) / EVAL_PATTERNS  # noqa: E731
    rng = np.random.default_rng(0)
    for fold, held in FOLDS.items():
        t = time.time()
        keep = ~np.isin(names, held)
        clf = BandProfileClassifier(simulation_pretrained=False).fit_features(x[keep], y[keep])
        logits = clf._logits(ef)
        proba = clf.predict_proba_features(ef)
        pred = proba.argmax(1)
        truth = np.searchsorted(clf.classes_, el)
        bank = np.concatenate([rng.choice(np.flatnonzero(keep & (y == c)), 600, replace=False) for c in clf.classes_])

        def standard(f):
            return (f - clf.feature_mean_) / clf.feature_std_

        def hidden(f):
            with torch.inference_mode():
                return clf.net_[:5](torch.from_numpy(standard(f))).numpy()

        def knn(space):
            return NearestNeighbors(n_neighbors=10).fit(space(x[bank])).kneighbors(space(ef))[0].mean(1)

        scores = {"1 - top probability": 1 - proba.max(1),
                  "negative energy": -np.log(np.exp(logits.astype(np.float64)).sum(1)),
                  "k-NN, hidden layer": knn(hidden), "k-NN, input": knn(standard)}
        held_pattern = np.isin(en, held)
        held_session = by_session(held_pattern) > 0
        vote_right = np.array([np.bincount(pred[session == k], minlength=len(clf.classes_)).argmax()
                               == truth[session == k][0] for k in range(n_sessions)])
        right = pred == truth
        print(f"fold {fold} ({time.time() - t:.0f} s): patterns right, left-out {right[held_pattern].mean():.3f}, "
              f"others {right[~held_pattern].mean():.3f}; sessions voted right, left-out "
              f"{vote_right[held_session].mean():.3f}, others {vote_right[~held_session].mean():.3f}", flush=True)
        for name, score in scores.items():
            mean = by_session(score)
            flagged = mean > np.quantile(mean[~held_session], 0.9)
            kinds = ", ".join(f"{n} {flagged[by_session(en == n) > 0].mean():.2f} ({vote_right[by_session(en == n) > 0].mean():.2f})"
                              for n in held)
            print(f"  {name}: AUROC left-out vs others {roc_auc_score(held_pattern, score):.3f} per pattern, "
                  f"{roc_auc_score(held_session, mean):.3f} per session; wrong vs right sessions "
                  f"{roc_auc_score(~vote_right, mean):.3f}; flagged at 10 % of other sessions "
                  f"(voted right): {kinds}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    e = sub.add_parser("evalset")
    e.add_argument("out")
    e.add_argument("--workers", type=int, default=2)
    r = sub.add_parser("run")
    r.add_argument("chunks")
    r.add_argument("eval")
    r.add_argument("variants", nargs="*", default=["base"])
    r.add_argument("--max-chunks", type=int, default=None)
    f = sub.add_parser("familiarity")
    f.add_argument("chunks")
    f.add_argument("eval")
    f.add_argument("--max-chunks", type=int, default=None)
    args = ap.parse_args(argv)
    {"evalset": evalset, "run": run, "familiarity": familiarity}[args.stage](args)


if __name__ == "__main__":
    main()
