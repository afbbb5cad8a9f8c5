"""Open set: do patterns of a phase the model was not taught come out as "no solution"?

A compact classifier is fine-tuned on three cubic phases of a textured sample
(Ni 225, Ni3Al 221, Fe 229; patterns around four grain orientations, as in
the learning test). Known test patterns: new patterns of the same phases.
Novel patterns: hexagonal Ti and Mg, tetragonal beta-Sn and rutile, in the
same grain orientations. Scores: max-softmax confidence (the classifier's
``confidence_threshold``) and the k-NN feature distance
(:class:`~napari_microstructure.core.ebsd.openset.KNNOpenSet`, threshold
accepting 95 % of held-out known patterns). Printed: AUROC (novel vs known)
and the novel patterns accepted at 95 % known acceptance (FPR95), and the
share of novel patterns called "no solution" by each rule.

    PYTHONPATH=src python benchmarks/bench_ebsd_openset.py --per-class 50 --size 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import header
from bench_ebsd_heldout import auroc_fpr95

from napari_microstructure.core.ebsd import EBSDClassifier
from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.ebsd.openset import KNNOpenSet, pattern_features


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    header("EBSD open set: non-cubic phases against a three-phase cubic model")
    base = S.random_rotations(4, np.random.default_rng(42))
    mats = ["Ni", "Ni3Al", "Fe"]
    shape = (args.size, args.size)
    p, sg, _ = S.simulate_training_set(mats, args.per_class, shape, seed=args.seed, base_rotations=base)
    pk, sk, _ = S.simulate_training_set(mats, args.per_class // 2, shape, seed=args.seed + 5, base_rotations=base)
    rng = np.random.default_rng(args.seed + 9)
    novel = []
    for s in S.NON_CUBIC.values():
        rots = np.einsum("nij,njk->nik", S.small_rotations(args.per_class // 2, 3.0, rng),
                         base[rng.integers(0, len(base), args.per_class // 2)])
        novel.append(S.simulate_patterns(s, rots, shape, rng=rng))
    novel = np.concatenate(novel)
    t = time.perf_counter()
    clf = EBSDClassifier(backbone="compact", input_size=args.size, max_epochs=args.epochs, patience=5,
                         device="cpu", seed=args.seed).fit(p, sg)
    print(f"trained on {len(p)} patterns in {time.perf_counter() - t:.0f} s; known-test accuracy "
          f"{clf.report(pk, sk).accuracy:.2f}")
    conf_k = clf.predict_proba(pk).max(1)
    conf_n = clf.predict_proba(novel).max(1)
    auc, fpr = auroc_fpr95(-conf_k, -conf_n)
    print(f"max softmax: AUROC {auc:.2f}, FPR95 {fpr:.2f}; 'no solution' at confidence < "
          f"{clf.confidence_threshold}: known {np.mean(conf_k < clf.confidence_threshold):.2f}, "
          f"novel {np.mean(conf_n < clf.confidence_threshold):.2f}")
    # k-NN: bank = training patterns, calibration = half of the known test patterns
    half = len(pk) // 2
    knn = KNNOpenSet(k=5, rejection_rate=0.05).fit(pattern_features(clf, p), pattern_features(clf, pk[:half]))
    s_k = knn.score(pattern_features(clf, pk[half:]))
    s_n = knn.score(pattern_features(clf, novel))
    auc, fpr = auroc_fpr95(s_k, s_n)
    print(f"k-NN distance: AUROC {auc:.2f}, FPR95 {fpr:.2f}; 'no solution' at the calibrated threshold: "
          f"known {np.mean(s_k > knn.threshold_):.2f}, novel {np.mean(s_n > knn.threshold_):.2f}")
    for name, part in zip(S.NON_CUBIC, np.array_split(s_n, len(S.NON_CUBIC))):
        print(f"  {name:<12} rejected {np.mean(part > knn.threshold_):.2f}")


if __name__ == "__main__":
    main()
