"""Study (stop 32, not shipped): do a map's grains carry labels painted in a few grains to the others?

A grain's orientation changes the band profiles about as much as the phase does (on the development
dual-phase maps a grain's mean Ni profile lies 0.5-1.5 from the map's mean, Ni3Al lies 0.6 from Ni
within a grain), and much the same for both phases. The idea studied here: move each augmented copy of a
labelled profile by the difference between the mean profile of a random grain of the map and that of its
own grain, so that the labels' phases are seen as they look in every grain. Built into
``BandProfileClassifier.fit(map_patterns=...)`` it helped on the development maps and hurt the shipped
sample, so ``fit`` keeps it only when its check across grains says so (``chosen`` below; docs/benchmarks.md,
stop 32).

Variants, each fine-tuned on the same augmented labelled profiles (no label check):

- ``none``: the shipped behaviour;
- ``plain``: copies moved by the difference of grain means (only when some labelled grain holds both
  phases; else as ``none``);
- ``two-way``: the grains' offsets fitted with the phases apart (``profile = phase mean + grain offset``
  over the (grain, phase) cells of at least 10 patterns, the phases called by the ``none`` model), since a
  grain rich in one phase skews its mean;
- ``chosen``: ``plain`` where three folds of whole labelled grains call the labels (mean over the phases)
  at least as well with the shift as without it, else ``none`` (the rule of ``fit``);
- ``any`` (stop 34): copies moved as ``plain`` whether or not a labelled grain holds both phases;
- ``targeted`` (stop 34): as ``any``, but a copy of a label of phase c moves only to its own grain or to grains
  of which the ``none`` model calls at least ``TARGET_SHARE`` of the patterns c (precipitates with grains of
  their own should then move among precipitate grains, not onto the matrix's profiles).

The check score printed beside each variant (in brackets) is that of ``chosen``'s check, run for the variant.

Test beds: the development maps (seeds 101-103, 40 x 50, 60 x 60 patterns; precipitates cube-on-cube with
their grain, and with ``--orientations own`` or ``both`` also maps whose precipitates have orientations of
their own) labelled in two precipitates and two matrix spots ("painted") or in two precipitates and the
matrix around each ("around"), two draws each;
the shipped sample (30 x 40, 40 x 40 patterns) painted in its two largest precipitates, whole, and the 12
matrix patterns nearest each. Prints pixel accuracy and the Ni3Al fraction error of each fit.

    PYTHONPATH=src python benchmarks/bench_ebsd_map_shifts.py [--draws 2] [--orientations shared|own|both]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier, _map_grains

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import painted_labels  # noqa: E402

CELL_MIN = 10    # patterns of a (grain, phase) cell in the two-way fit
TARGET_SHARE = 0.05  # ``targeted``: a grain takes copies of phase c where the first model calls this share c


def grain_offsets(features, grain, phase=None, iterations=20):
    """Mean profile of each grain, or (``phase`` given) the grain offsets of the two-way additive model."""
    k = int(grain.max()) + 1
    means = np.stack([features[grain == g].mean(0) for g in range(k)]).astype(float)
    if phase is None:
        return means
    classes = np.unique(phase)
    n = np.array([[np.sum((grain == g) & (phase == c)) for c in classes] for g in range(k)], float)
    n[n < CELL_MIN] = 0
    cell = np.zeros((k, len(classes), features.shape[1]))
    for g, j in zip(*np.nonzero(n)):
        cell[g, j] = features[(grain == g) & (phase == classes[j])].mean(0)
    offsets, used = means.copy(), n.sum(0) > 0
    for _ in range(iterations):
        phase_mean = np.einsum("gj,gjf->jf", n, cell - offsets[:, None]) / np.maximum(n.sum(0), 1)[:, None]
        fitted = np.einsum("gj,gjf->gf", n, cell - phase_mean[None]) / np.maximum(n.sum(1), 1)[:, None]
        offsets = np.where(n.sum(1)[:, None] > 0, fitted, offsets)
    spare = n.sum(1) == 0  # grains without a cell: their mean less the phase means, weighted as the map's
    offsets[spare] = means[spare] - (n.sum(0)[used] / n.sum()) @ phase_mean[used]
    return offsets


def targeted_copies(clf, x, y, own, offsets, allowed):
    """``clf._augmented`` with shifts, each copy of a phase-c label moved only to a grain ``allowed[c]`` holds
    (its own grain where none is)."""
    from napari_microstructure.core.ebsd.augment import augment_profiles

    rng = np.random.default_rng(int(clf.seed))
    extra = augment_profiles(x, rng, int(clf.augment))
    source, phase = np.tile(own, int(clf.augment)), np.tile(y, int(clf.augment))
    target = source.copy()
    for c, row in allowed.items():
        idx, ok = np.flatnonzero(phase == c), np.flatnonzero(row)
        if len(ok):
            target[idx] = ok[rng.integers(0, len(ok), len(idx))]
    moved = source >= 0
    extra[moved] += offsets[target[moved]] - offsets[source[moved]]
    return np.concatenate([x, extra]), np.concatenate([y] * (1 + int(clf.augment)))


def fine_tune(pc, x, y, own=None, offsets=None, seed=0, allowed=None):
    """The shipped model fine-tuned on ``x`` and its augmented copies, moved between grains if given (fit's
    ``_augmented``, without fit's label checks; only to ``allowed`` grains if given)."""
    clf = BandProfileClassifier(pc=pc, seed=seed)
    clf._check_params()
    if allowed is not None:
        clf._fit(*targeted_copies(clf, x, y, own, offsets.astype(np.float32), allowed), np.unique(y), None)
        return clf
    shifts = None if offsets is None else (offsets.astype(np.float32), own)
    clf._fit(*clf._augmented(x, y, shifts), np.unique(y), None)
    return clf


def grain_check(pc, x, y, own, offsets, allowed=None):
    """Mean over classes of the share of labels called right by models fine-tuned without their grain (three
    folds of whole labelled grains, as ``fit``'s check across grains), with or without the shift."""
    from napari_microstructure.core.ebsd.bandclassifier import _balanced_folds

    classes = np.unique(y)
    groups = np.unique(own, return_inverse=True)[1]  # labels outside every map grain: one group
    fold = _balanced_folds(y, classes, groups, np.random.default_rng(1))
    pred = np.empty(len(y), y.dtype)
    for f in np.unique(fold):
        keep = fold != f
        clf = fine_tune(pc, x[keep], y[keep], None if offsets is None else own[keep], offsets, allowed=allowed)
        pred[~keep] = clf.classes_[clf._logits(x[~keep]).argmax(1)]
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def study(name, features, grain, truth, train, pc, rows, bed="shared"):
    x, y, own = features[train], truth[train], grain[train]
    shared = any(len(np.unique(y[own == g])) > 1 for g in np.unique(own[own >= 0]))
    fits = {"none": fine_tune(pc, x, y)}
    base_phase = fits["none"].classes_[fits["none"]._logits(features).argmax(1)]
    checks = ""
    offsets = grain_offsets(features, grain)
    allowed = {c: np.array([np.mean(base_phase[grain == g] == c) >= TARGET_SHARE for g in range(len(offsets))])
               for c in np.unique(y)}
    score = {"none": grain_check(pc, x, y, own, None), "any": grain_check(pc, x, y, own, offsets),
             "targeted": grain_check(pc, x, y, own, offsets, allowed)}
    fits["any"] = fine_tune(pc, x, y, own, offsets)
    fits["targeted"] = fine_tune(pc, x, y, own, offsets, allowed=allowed)
    if shared:
        fits["plain"] = fits["any"]
        fits["two-way"] = fine_tune(pc, x, y, own, grain_offsets(features, grain, base_phase))
        fits["chosen"] = fits["plain"] if score["any"] >= score["none"] else fits["none"]
        checks = f"  (check across grains: none {score['none']:.2f}, plain {score['any']:.2f})"
    line = []
    for variant in ("none", "plain", "two-way", "chosen", "any", "targeted"):
        clf = fits.get(variant, fits["none"])
        pred = clf.classes_[clf._logits(features).argmax(1)]
        rest = np.ones(len(truth), bool)
        rest[train] = False
        acc, err = np.mean(pred[rest] == truth[rest]), 100 * abs(np.mean(pred == 221) - np.mean(truth == 221))
        rows.setdefault((bed, "around" if "around" in name else "painted", variant), []).append((acc, err))
        line.append(f"{variant} {acc:.3f} / {err:.1f}" + (f" [{score[variant]:.2f}]" if variant in score else ""))
    print(f"{name}: " + "; ".join(line) + (checks if shared else "  (no labelled grain holds both phases)"), flush=True)


def described(pats, pc):
    d = BandProfileClassifier.from_pretrained(pc=pc).describe(pats.reshape(-1, *pats.shape[2:]), check=False)
    return d["features"], _map_grains(d["rotations"], np.empty((0, 3, 3)))[0]  # fit's grains of a map


def main() -> None:
    from napari_microstructure._napari._ebsd_sample import load_sample_arrays
    from napari_microstructure.core.ebsd.simulate import simulate_dual_phase_map

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=2, help="label draws per map and way of painting")
    ap.add_argument("--orientations", choices=("shared", "own", "both"), default="shared",
                    help="precipitates cube-on-cube with their grain (shared), with orientations of their own, or both")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    t0, rows = time.perf_counter(), {}
    beds = [(coc, seed, pc) for coc in {"shared": (True,), "own": (False,), "both": (True, False)}[args.orientations]
            for seed, pc in ((101, (0.5, 0.3, 0.6)), (102, (0.48, 0.32, 0.62)), (103, (0.52, 0.28, 0.58)))]
    for coc, seed, pc in beds:
        pats, phase = simulate_dual_phase_map(map_shape=(40, 50), pattern_shape=(60, 60), seed=seed, pc=pc,
                                              cube_on_cube=coc)
        truth = np.where(phase == 1, 221, 225).ravel()
        features, grain = described(pats, pc)
        blobs, n = ndimage.label(phase == 1)
        r, c = (a.ravel() for a in np.meshgrid(np.arange(40), np.arange(50), indexing="ij"))
        for around in (False, True):
            for draw in range(args.draws):
                train = painted_labels(np.random.default_rng(100 + draw), blobs.ravel(), n, truth, r, c, around)
                study(f"map {seed}{'' if coc else ' (own orientations)'} {'around' if around else 'painted'} "
                      f"draw {draw}", features, grain, truth, train, pc, rows, "shared" if coc else "own")
    sample = load_sample_arrays()
    pats, pc, truth = sample["patterns"], tuple(sample["projection_centre"]), sample["phase_map"].ravel()
    features, grain = described(pats, pc)
    blobs, _ = ndimage.label(truth.reshape(pats.shape[:2]) == 221)
    r, c = (a.ravel() for a in np.meshgrid(*map(np.arange, pats.shape[:2]), indexing="ij"))
    train = []
    for k in np.argsort(-np.bincount(blobs.ravel())[1:])[:2] + 1:  # two largest precipitates, whole
        inside = np.flatnonzero(blobs.ravel() == k)
        d = (r - r[inside].mean()) ** 2 + (c - c[inside].mean()) ** 2
        d[truth != 225] = np.inf
        train += [inside, np.argsort(d, kind="stable")[:12]]
    study("shipped sample, whole precipitates and the matrix around", features, grain, truth,
          np.unique(np.concatenate(train)), pc, rows, "sample")
    for (bed, painting, variant), r in sorted(rows.items()):
        r = np.array(r)
        print(f"{bed:6s} {painting:7s} {variant:8s}: pixel accuracy mean {r[:, 0].mean():.3f} (min "
              f"{r[:, 0].min():.3f}); Ni3Al fraction error mean {r[:, 1].mean():.1f}, max {r[:, 1].max():.1f} points "
              f"over {len(r)} fits")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
