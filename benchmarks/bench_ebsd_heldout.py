"""Space groups on materials the model has never seen: few-shot curve, held-out structures,
open-set rejection of non-cubic phases, a dual-phase map and prediction speed.

Data: the domain-randomised simulator (:mod:`napari_microstructure.core.ebsd.simulate`).
For each space group, ``--structures`` training-split structures, each recorded
in its own session (detector, noise); the labelled patterns are drawn from
those sessions, the "seen" test patterns are other patterns of the same
sessions, the "unseen" test patterns come from held-out structures (held-out
prototypes and random structures never used in training or pretraining).

Models, side by side:

- ``default``: ``EBSDClassifier()`` (EfficientNet-Lite0 from ImageNet, augmentation on);
- ``compact``: the compact CNN from scratch;
- ``pretrained-zero-shot``: the simulation-pretrained model, no labelled patterns;
- ``pretrained-finetuned``: ``EBSDClassifier(backbone="compact", simulation_pretrained=True)``.

Open set: patterns of hexagonal (Ti, Mg) and tetragonal (beta-Sn, rutile)
phases; AUROC and FPR at 95 % TPR of the k-NN feature distance and of the
max-softmax confidence (known = unseen cubic test patterns).

    PYTHONPATH=src python benchmarks/bench_ebsd_heldout.py --shots 10,20,50,100,400 \\
        --pretrained src/napari_microstructure/data/ebsd/spacegroup_pretrained.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import header

from napari_microstructure.core.ebsd import EBSDClassifier, classification_report
from napari_microstructure.core.ebsd import pretrained as P
from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.ebsd.openset import KNNOpenSet, pattern_features

CLASSES = np.array(S.SPACE_GROUPS)


def sessions(split: str, n_structures: int, n_per: int, seed: int, size: int):
    """Patterns (N, size, size) uint16-scaled floats, labels, session id: one session per structure."""
    rng = np.random.default_rng(seed)
    sampler = S.StructureSampler(split)
    xs, ys, sid = [], [], []
    k = 0
    for sg in CLASSES:
        for _ in range(n_structures):
            geo = S.sample_geometry(rng)
            geo = S.DetectorGeometry((size, size), 1, geo.pc, geo.sample_tilt_deg, geo.detector_tilt_deg)
            session = S.sample_session(sampler.draw(int(sg), rng), rng, geometry=geo)
            xs.append(S.simulate_session(session, n_per, rng).astype(np.float32))
            ys.append(np.full(n_per, sg))
            sid.append(np.full(n_per, k))
            k += 1
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(sid)


def non_cubic(n_per: int, seed: int, size: int):
    rng = np.random.default_rng(seed)
    out = []
    for s in S.NON_CUBIC.values():
        geo = S.sample_geometry(rng)
        geo = S.DetectorGeometry((size, size), 1, geo.pc, geo.sample_tilt_deg, geo.detector_tilt_deg)
        out.append(S.simulate_session(S.sample_session(s, rng, geometry=geo), n_per, rng).astype(np.float32))
    return np.concatenate(out)


def auroc_fpr95(known_scores, novel_scores):
    """Novel = positive (higher score = more novel): AUROC and FPR at 95 % TPR of known acceptance."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(known_scores)), np.ones(len(novel_scores))]
    s = np.r_[known_scores, novel_scores]
    auc = roc_auc_score(y, s)
    thr = np.quantile(known_scores, 0.95)  # 95 % of known patterns accepted
    fpr = float((novel_scores <= thr).mean())  # novel patterns accepted as known
    return auc, fpr


def evaluate(name, clf, data, fit_s, args, bank=None):
    x_seen, y_seen, x_unseen, y_unseen, x_novel = data
    rep_seen = classification_report(y_seen, clf.predict(x_seen), CLASSES)
    t = time.perf_counter()
    pred_unseen = clf.predict(x_unseen)
    speed = len(x_unseen) / (time.perf_counter() - t)
    rep_unseen = classification_report(y_unseen, pred_unseen, CLASSES)
    line = (f"{name:<22} {args.current_shots:>5} {rep_seen.weighted_precision:6.2f}/{rep_seen.weighted_recall:4.2f} "
            f"{rep_seen.accuracy:6.2f} {rep_unseen.weighted_precision:6.2f}/{rep_unseen.weighted_recall:4.2f} "
            f"{rep_unseen.accuracy:6.2f} {fit_s:7.0f} {speed:7.0f}")
    # open set
    conf_known = clf.predict_proba(x_unseen).max(1)
    conf_novel = clf.predict_proba(x_novel).max(1)
    auc_sm, fpr_sm = auroc_fpr95(-conf_known, -conf_novel)
    if bank is not None and len(bank) > 6:
        knn = KNNOpenSet(k=5).fit(pattern_features(clf, bank))
        auc_k, fpr_k = auroc_fpr95(knn.score(pattern_features(clf, x_unseen)),
                                   knn.score(pattern_features(clf, x_novel)))
        line += f"  softmax {auc_sm:.2f}/{fpr_sm:.2f}  kNN {auc_k:.2f}/{fpr_k:.2f}"
    else:
        line += f"  softmax {auc_sm:.2f}/{fpr_sm:.2f}"
    print(line, flush=True)
    return rep_unseen


def dual_phase(clf, size: int, seed: int):
    pats, phase = S.simulate_dual_phase_map((20, 25), (size, size), matrix="Ni", precipitate="Ni3Al",
                                            n_grains=4, n_precipitates=6, seed=seed)
    truth = np.where(phase == 1, 221, 225)
    res = clf.classify_map(pats, background="model", step_size_um=0.5)
    acc = float((res.labels == truth).mean())
    frac = float((res.labels == 221).mean())
    other = float((~np.isin(res.labels, [221, 225])).mean())
    return acc, frac, float((truth == 221).mean()), other


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", default="10,50", help="labelled patterns per space group")
    ap.add_argument("--models", default="pretrained-zero-shot,pretrained-finetuned,compact,default")
    ap.add_argument("--structures", type=int, default=5, help="training structures per space group")
    ap.add_argument("--test-per-class", type=int, default=60)
    ap.add_argument("--size", type=int, default=60)
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--pretrained", default=None, help="a pretrained model file (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--map", action="store_true", help="also classify the dual-phase map")
    ap.add_argument("--cache", default=None, help="an .npz to keep the simulated patterns in (reused if present)")
    args = ap.parse_args()
    header("EBSD space groups on unseen materials")
    if args.pretrained:
        P.PRETRAINED_FILE = Path(args.pretrained)
    shots = [int(s) for s in args.shots.split(",")]
    models = args.models.split(",")
    n_per = int(np.ceil((max(shots) + args.test_per_class) / args.structures))
    t = time.perf_counter()
    if args.cache and Path(args.cache).exists():
        with np.load(args.cache) as z:
            x_tr_all, y_tr_all, sid, x_un, y_un, x_novel = (z[k] for k in ("x_tr", "y_tr", "sid", "x_un", "y_un",
                                                                          "x_novel"))
    else:
        x_tr_all, y_tr_all, sid = sessions("train", args.structures, n_per, args.seed, args.size)
        x_un, y_un, _ = sessions("heldout", max(2, args.test_per_class // 10), 10, args.seed + 1, args.size)
        x_novel = non_cubic(args.test_per_class // 2, args.seed + 2, args.size)
        if args.cache:
            np.savez(args.cache, x_tr=x_tr_all, y_tr=y_tr_all, sid=sid, x_un=x_un, y_un=y_un, x_novel=x_novel)
    print(f"simulated {len(x_tr_all) + len(x_un) + len(x_novel)} patterns in {time.perf_counter() - t:.0f} s "
          f"({args.size} x {args.size}); {args.structures} training structures per group, "
          f"{len(np.unique(sid))} sessions")
    # per class: the first patterns of each session for training, the last ones for the seen test
    rng = np.random.default_rng(args.seed)
    test_idx = np.concatenate([np.flatnonzero(y_tr_all == sg)[-args.test_per_class:] for sg in CLASSES])
    x_seen, y_seen = x_tr_all[test_idx], y_tr_all[test_idx]
    pool = np.setdiff1d(np.arange(len(y_tr_all)), test_idx)
    data = (x_seen, y_seen, x_un, y_un, x_novel)
    print(f"{'model':<22} {'shots':>5} {'seen P/R':>11} {'acc':>6} {'unseen P/R':>11} {'acc':>6} "
          f"{'fit s':>7} {'pat/s':>7}  open set AUROC/FPR95")
    if "pretrained-zero-shot" in models:
        clf = EBSDClassifier.from_pretrained(device="cpu")
        args.current_shots = 0
        evaluate("pretrained-zero-shot", clf, data, 0.0, args)
        if args.map:
            acc, frac, true_frac, other = dual_phase(clf, 48, args.seed)
            print(f"  dual-phase map: pixel accuracy {acc:.2f}, Ni3Al fraction {frac:.3f} (true {true_frac:.3f}), "
                  f"other groups {other:.3f}")
    for n in shots:
        args.current_shots = n
        idx = np.concatenate([rng.permutation(pool[y_tr_all[pool] == sg])[:n] for sg in CLASSES])
        x_tr, y_tr = x_tr_all[idx], y_tr_all[idx]
        for name in models:
            if name == "pretrained-zero-shot":
                continue
            kw = dict(max_epochs=args.max_epochs, patience=args.patience, device="cpu", seed=args.seed)
            if name == "default":
                clf = EBSDClassifier(**kw)
            elif name == "compact":
                clf = EBSDClassifier(backbone="compact", **kw)
            elif name == "pretrained-finetuned":
                clf = EBSDClassifier(backbone="compact", simulation_pretrained=True, **kw)
            else:
                raise SystemExit(f"unknown model {name}")
            t = time.perf_counter()
            clf.fit(x_tr, y_tr)
            evaluate(name, clf, data, time.perf_counter() - t, args, bank=x_tr)
            if args.map:
                acc, frac, true_frac, other = dual_phase(clf, 48, args.seed)
                print(f"  dual-phase map: pixel accuracy {acc:.2f}, Ni3Al fraction {frac:.3f} "
                      f"(true {true_frac:.3f}), other groups {other:.3f}")


if __name__ == "__main__":
    main()
