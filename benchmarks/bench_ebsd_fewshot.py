"""Few-shot curve: class-weighted precision / recall vs training patterns per space group.

Transfer learning (EfficientNet-Lite0 from ImageNet) against a compact CNN from
scratch, on held-out simulated patterns, and on a material held out of
training for its space group (e.g. trained on Ni for 225, tested on Al).
Paper (Kaufmann et al. 2021, real patterns, Xception, 400 per class, six
space groups): 0.97 / 0.96 transfer, 0.93 / 0.92 scratch.

Data: the package's NumPy simulator (random orientations, the paper's
setting), or a kikuchipy ``.npz`` from scripts/simulate_ebsd_kikuchipy.py
(``--data``).

    python benchmarks/bench_ebsd_fewshot.py --shots 10,50,100,400 --backbones efficientnet-lite0,compact
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import header

from napari_microstructure.core.ebsd import EBSDClassifier, classification_report
from napari_microstructure.core.ebsd import simulate as S

TRAIN = {225: "Ni", 221: "Ni3Al", 223: "Cr3Si", 227: "Si", 229: "Fe"}
HELD_OUT = {225: "Al", 221: "NiAl", 223: "V3Si", 227: "Ge", 229: "W"}


def simulated(materials, n, size, seed, textured):
    base = S.random_rotations(6, np.random.default_rng(42)) if textured else None
    p, sg, _ = S.simulate_training_set(materials, n, (size, size), seed=seed, base_rotations=base)
    return p, sg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", default="10,50,100,400")
    ap.add_argument("--backbones", default="efficientnet-lite0,compact")
    ap.add_argument("--space-groups", default="221,223,225,227,229")
    ap.add_argument("--size", type=int, default=60)
    ap.add_argument("--test", type=int, default=200, help="test patterns per space group")
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--patience", type=int, default=15)
    ap.add_argument("--textured", action="store_true", help="orientations around 6 grains (a textured map)")
    ap.add_argument("--data", default=None, help="kikuchipy .npz (patterns, space_groups, materials)")
    args = ap.parse_args()
    header("EBSD few-shot curve")
    sgs = [int(s) for s in args.space_groups.split(",")]
    train_mats = [TRAIN[s] for s in sgs]
    held_mats = [HELD_OUT[s] for s in sgs]
    t = time.perf_counter()
    if args.data:
        z = np.load(args.data)
        mats = z["materials"]
        pool = {str(m): z["patterns"][mats == m] for m in np.unique(mats)}
        pool_sg = {str(m): int(z["space_groups"][mats == m][0]) for m in pool}

        def take(materials, n, offset):
            p = np.concatenate([pool[m][offset:offset + n] for m in materials])
            return p, np.concatenate([np.full(len(pool[m][offset:offset + n]), pool_sg[m]) for m in materials])

        pt, st = take(train_mats, args.test, 0)
        ph, sh = take(held_mats, args.test, 0)
    else:
        pt, st = simulated(train_mats, args.test, args.size, 101, args.textured)
        ph, sh = simulated(held_mats, args.test, args.size, 202, args.textured)
    print(f"space groups {sgs}; train materials {train_mats}; held-out materials {held_mats}; "
          f"{args.size} x {args.size} px; test sets {len(pt)} + {len(ph)} patterns "
          f"({time.perf_counter() - t:.0f} s to simulate)")
    print(f"{'backbone':>20} {'per class':>9} {'epochs':>6} {'train s':>8} {'P test':>7} {'R test':>7} "
          f"{'P held-out':>10} {'R held-out':>10}")
    for n in [int(s) for s in args.shots.split(",")]:
        if args.data:
            p, sg = take(train_mats, n, args.test)  # disjoint from the test patterns
        else:
            p, sg = simulated(train_mats, n, args.size, n, args.textured)
        for bb in args.backbones.split(","):
            torch.manual_seed(0)
            clf = EBSDClassifier(backbone=bb, input_size=args.size, max_epochs=args.max_epochs,
                                 patience=args.patience, device="cpu")
            t = time.perf_counter()
            clf.fit(p, sg)
            dt = time.perf_counter() - t
            r1 = classification_report(st, clf.predict(pt), clf.classes_)
            r2 = classification_report(sh, clf.predict(ph), clf.classes_)
            print(f"{bb:>20} {n:>9} {len(clf.history_[0]['train_loss']):>6} {dt:>8.0f} "
                  f"{r1.weighted_precision:>7.3f} {r1.weighted_recall:>7.3f} "
                  f"{r2.weighted_precision:>10.3f} {r2.weighted_recall:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
