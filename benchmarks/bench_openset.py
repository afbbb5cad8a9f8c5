"""Open-set benchmark: closed-set and open-set accuracy on classes and images never trained on.

Data (:mod:`napari_microstructure.core.micrograph.synthetic`): the six
:data:`KNOWN_CLASSES` are trained; the three :data:`UNKNOWN_CLASSES` (porous,
bainite, Widmanstatten: each shares local features with a trained class) are
only ever tested. Every image gets light-microscope or SEM degradations
(``modality="random"``); pixel sizes are log-uniform over 0.025-0.75 um (30x).
Training, test and mixed images come from disjoint seeds; nothing here is
tuned on the test images (the threshold is cross-validated over the training
images inside ``fit``).

Modes: full (20 training images per class of 1000 x 1200 pixels, 10 test
images per known and per unknown class, 18 mixed images; 6 before 2026-11-30, the first
6 of the 18 are those, and their figure is printed too) and ``--quick``
(8 training images of 400 x 480, 4 test images per class, 4 mixed images).
Generated data are cached under ``--cache`` (default /tmp/openset-bench).

Printed: closed-set accuracy (known test images, argmax over the known
classes), open-set accuracy (known and unknown images, "none" is the right
answer for unknown ones; the package's answer, ``predict`` under the model's
``image_rule``, :mod:`napari_microstructure.core.micrograph.verdict`), AUROC
of the image's none score known vs unknown, FPR at 95 % TPR (unknown =
positive), per-class open-set accuracy, the same figures under the other
image rule, pixel accuracy of the
probability map on half/half mixed images away from the seam (farther than
one crop field of view), training time, and ``predict_proba`` time on a
1024 x 1024 image; every scorer is evaluated on the same trained network and
the same crops. The classical baseline in the same run: uniform local binary
patterns + grey-level co-occurrence features of the image resampled to a
common reference scale, logistic regression (closed set) and the distance to
the k nearest training images (open set, threshold at the 90th percentile of
the training images' leave-one-out distances).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import header

from napari_microstructure import FewShotClassifier
from napari_microstructure.core.micrograph.openset import SCORERS, make_scorer
from napari_microstructure.core.choices import IMAGE_RULES
from napari_microstructure.core.micrograph.verdict import image_prediction
from napari_microstructure.core.micrograph.synthetic import (
    KNOWN_CLASSES, UNKNOWN_CLASSES, make_composite, make_micrograph,
)

PIXEL_RANGE_UM = (0.025, 0.75)
REFERENCE_PIXEL_UM = 0.137      # geometric mean of the range: the baseline's common scale
MODES = {
    "full": dict(train=20, test=10, shape=(1000, 1200), mixed=18, mixed_shape=(768, 768)),
    "quick": dict(train=8, test=4, shape=(400, 480), mixed=4, mixed_shape=(512, 512)),
}


# ------------------------------------------------------------------ data
def _sizes(rng, n):
    return np.exp(rng.uniform(*np.log(PIXEL_RANGE_UM), n))


def _render(classes, per_class, shape, seed):
    rng = np.random.default_rng(seed)
    images, labels, sizes = [], [], []
    for c in classes:
        for p in _sizes(rng, per_class):
            images.append(make_micrograph(c, shape, float(p), seed=int(rng.integers(2**31)), modality="random"))
            labels.append(c)
            sizes.append(float(p))
    return images, labels, sizes


def load_data(mode: str, cache: Path):
    cfg = MODES[mode]
    path = cache / f"{mode}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        def unpack(prefix):
            n = int(z[f"{prefix}_n"])
            return ([z[f"{prefix}_{i}"] for i in range(n)], list(z[f"{prefix}_labels"]),
                    list(map(float, z[f"{prefix}_sizes"])))
        if int(z["mixed_n"]) == cfg["mixed"]:
            mixed = [(z[f"mixed_{i}"], str(z["mixed_right"][i]), str(z["mixed_left"][i]),
                      float(z["mixed_sizes"][i])) for i in range(int(z["mixed_n"]))]
            return unpack("train"), unpack("known"), unpack("unknown"), mixed
        # a cache of an earlier version (fewer mixed images): keep its images, make the mixed ones again
        data = unpack("train"), unpack("known"), unpack("unknown")
    else:
        data = None
    t = time.perf_counter()
    if data is None:
        data = (_render(KNOWN_CLASSES, cfg["train"], cfg["shape"], 1), _render(KNOWN_CLASSES, cfg["test"], cfg["shape"], 2),
                _render(UNKNOWN_CLASSES, cfg["test"], cfg["shape"], 3))
    train, known, unknown = data
    # the first mixed images are the same whatever their number (one random stream)
    rng = np.random.default_rng(4)
    mixed = []
    for i in range(cfg["mixed"]):
        left = KNOWN_CLASSES[i % len(KNOWN_CLASSES)]
        right = (UNKNOWN_CLASSES[i % len(UNKNOWN_CLASSES)] if i % 2 == 0
                 else KNOWN_CLASSES[(i + 1) % len(KNOWN_CLASSES)])
        p = float(np.exp(rng.uniform(np.log(0.06), np.log(0.3))))
        img, _ = make_composite(left, right, cfg["mixed_shape"], p, seed=int(rng.integers(2**31)), modality="random")
        mixed.append((img, right, left, p))
    cache.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, (ims, labs, ps) in (("train", train), ("known", known), ("unknown", unknown)):
        arrays[f"{prefix}_n"] = len(ims)
        arrays[f"{prefix}_labels"] = np.array(labs)
        arrays[f"{prefix}_sizes"] = np.array(ps)
        arrays.update({f"{prefix}_{i}": im for i, im in enumerate(ims)})
    arrays.update({f"mixed_{i}": m[0] for i, m in enumerate(mixed)})
    arrays.update(mixed_n=len(mixed), mixed_right=np.array([m[1] for m in mixed]),
                  mixed_left=np.array([m[2] for m in mixed]), mixed_sizes=np.array([m[3] for m in mixed]))
    np.savez(path, **arrays)
    print(f"generated and cached {path} in {time.perf_counter() - t:.0f} s")
    return train, known, unknown, mixed


# ------------------------------------------------------------------ metrics
def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    gt = (pos[:, None] > neg[None]).mean()
    eq = (pos[:, None] == neg[None]).mean()
    return float(gt + 0.5 * eq)


def fpr_at_95(neg: np.ndarray, pos: np.ndarray) -> float:
    """Share of negatives at or above the score that keeps 95 % of positives."""
    t = np.quantile(np.asarray(pos, float), 0.05)
    return float(np.mean(np.asarray(neg, float) >= t))


def summarise(name, p_known, y_known, p_unknown, y_unknown, classes, seconds=None, answers=None) -> dict:
    """Figures from image probabilities ``(n, K + 1)`` (last column: none).

    ``answers``: the package's :class:`~napari_microstructure.core.micrograph.verdict.ImagePrediction`
    of the known and of the unknown images; their labels are the decisions and their none
    scores rank for AUROC / FPR@95. Without: the most probable entry, ranked by P(none).
    """
    p_known, p_unknown = np.asarray(p_known), np.asarray(p_unknown)
    K = len(classes)
    closed = np.mean([classes[int(np.argmax(p[:K]))] == y for p, y in zip(p_known, y_known)])
    labels = list(classes) + ["none"]
    if answers is None:
        dec_k = [labels[int(np.argmax(p))] for p in p_known]
        dec_u = [labels[int(np.argmax(p))] for p in p_unknown]
        s_k, s_u = p_known[:, -1], p_unknown[:, -1]
    else:
        dec_k, dec_u = [a.label for a in answers[0]], [a.label for a in answers[1]]
        s_k, s_u = np.array([a.none_score for a in answers[0]]), np.array([a.none_score for a in answers[1]])
    open_acc = np.mean([d == y for d, y in zip(dec_k, y_known)] + [d == "none" for d in dec_u])
    per_class = {c: float(np.mean([d == c for d, y in zip(dec_k, y_known) if y == c])) for c in classes}
    per_class.update({c: float(np.mean([d == "none" for d, y in zip(dec_u, y_unknown) if y == c]))
                      for c in dict.fromkeys(y_unknown)})
    out = dict(name=name, closed=float(closed), open=float(open_acc),
               auroc=auroc(s_k, s_u), fpr95=fpr_at_95(s_k, s_u),
               known_none=float(np.mean([d == "none" for d in dec_k])), per_class=per_class)
    print(f"{name:>34}: closed {out['closed']:.3f}  open {out['open']:.3f}  AUROC {out['auroc']:.3f}  "
          f"FPR@95 {out['fpr95']:.3f}  known->none {out['known_none']:.2f}"
          + (f"  ({seconds:.0f} s)" if seconds is not None else ""))
    print(" " * 36 + "per class: " + ", ".join(f"{c} {v:.2f}" for c, v in per_class.items()))
    return out


# ------------------------------------------------------------------ baseline
def texture_features(image: np.ndarray, pixel_size: float, max_side: int = 768) -> np.ndarray:
    """Uniform LBP histograms (R = 1, 2, 4) + GLCM statistics at the reference scale."""
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.transform import rescale

    img = image.astype(float) / 255.0
    factor = pixel_size / REFERENCE_PIXEL_UM
    if factor > 1:            # upsampling: cut the centre first so the result stays small
        keep = int(np.ceil(max_side / factor))
        h, w = img.shape
        img = img[max(0, (h - keep) // 2):(h + keep) // 2 + 1, max(0, (w - keep) // 2):(w + keep) // 2 + 1]
    img = rescale(img, factor, anti_aliasing=factor < 1, order=1)
    lo, hi = np.percentile(img, [0.5, 99.5])
    q = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    feats = []
    for radius in (1, 2, 4):
        codes = local_binary_pattern((q * 255).astype(np.uint8), 8, radius, method="uniform")
        feats.append(np.histogram(codes, bins=np.arange(11), density=True)[0])
    g = (q * 31).astype(np.uint8)
    glcm = graycomatrix(g, [1, 2, 4, 8], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, symmetric=True,
                        normed=True)
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        feats.append(graycoprops(glcm, prop).mean(1))
    return np.concatenate(feats)


def baseline(train, known, unknown, mixed, classes, crop_um):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t = time.perf_counter()
    Xtr = np.array([texture_features(im, p) for im, p in zip(train[0], train[2])])
    scaler = StandardScaler().fit(Xtr)
    Z = scaler.transform(Xtr)
    ytr = np.array(train[1])
    lr = LogisticRegression(max_iter=2000, C=1.0).fit(Z, ytr)
    k = 3
    d = np.linalg.norm(Z[:, None] - Z[None], axis=2)
    np.fill_diagonal(d, np.inf)
    loo = np.sort(d, 1)[:, k - 1]
    thr = np.quantile(loo, 0.9)

    def probs(ims, ps):
        X = scaler.transform(np.array([texture_features(im, p) for im, p in zip(ims, ps)]))
        post = lr.predict_proba(X)
        order = [list(lr.classes_).index(c) for c in classes]
        post = post[:, order]
        dist = np.sort(np.linalg.norm(X[:, None] - Z[None], axis=2), 1)[:, k - 1]
        # P(none): 1 beyond the threshold; below it, the distance as a share of the threshold
        # (monotone in the distance, so AUROC is the distance's own)
        none = np.where(dist > thr, 1.0, 0.5 * dist / thr)
        return np.concatenate([post * (1 - none[:, None]), none[:, None]], 1), dist

    pk, _ = probs(known[0], known[2])
    pu, _ = probs(unknown[0], unknown[2])
    res = summarise("LBP+GLCM, logistic / 3-NN dist", pk, known[1], pu, unknown[1], classes,
                    time.perf_counter() - t)
    # mixed images, half-wise (each half away from the seam as one image)
    correct = []
    for img, right, left, p in mixed:
        w = img.shape[1]
        margin = int(min(crop_um / p, w / 4))
        halves = [(img[:, : max(8, w // 2 - margin)], left), (img[:, min(w - 8, w // 2 + margin):], right)]
        pr, _ = probs([h for h, _ in halves], [p, p])
        for (_, truth), row in zip(halves, pr):
            lab = (list(classes) + ["none"])[int(np.argmax(row))]
            correct.append(lab == (truth if truth in classes else "none"))
    res["mixed_halves"] = float(np.mean(correct))
    print(f"{'':>36}mixed images, half-wise: {res['mixed_halves']:.3f}")
    return res


# ------------------------------------------------------------------ the model
def recalibrate(clf, train, features, seed):
    """Describe the training images again with other novelty features (same held-out split as fit)."""
    import torch

    from napari_microstructure.core.micrograph.crops import CropSampler

    clf.scorer_features = features
    prep = clf._prepare(train[0], train[1], train[2], None, np.random.default_rng(seed))
    aug, dev, S = clf.test_time_augment(), clf.device_, int(clf.input_size)
    gen = torch.Generator(device=dev).manual_seed(seed)
    mixture, scorer, calib = clf._fit_scorers(
        clf.model_, prep, len(clf.classes_), CropSampler(S, aug, np.random.default_rng(seed), gen, dev),
        CropSampler(S, aug, np.random.default_rng(seed + 1), gen, dev), None)
    clf.mixture_, clf.scorer_, clf.calibration_set_ = mixture, scorer, calib["set"]
    clf.calibration_fov_um_ = calib["fov_um"]
    clf.verdict_ = clf._fit_verdict(scorer, calib["set"], calib["fov_um"], clf.fov_range_um_)


def evaluate_model(clf, train_s, train, known, unknown, mixed, scorers, features_list, n_crops, seed):
    classes = clf.classes_
    D = int(clf.embedding_dim)
    results = {}
    for features in features_list:
        t = time.perf_counter()
        if features != clf.scorer_features or not hasattr(clf, "calibration_set_"):
            recalibrate(clf, train, features, seed)
        clf.scorer = "knn"
        out_k = [clf.crop_predictions(im, p, n_crops=n_crops) for im, p in zip(known[0], known[2])]
        out_u = [clf.crop_predictions(im, p, n_crops=n_crops) for im, p in zip(unknown[0], unknown[2])]
        desc_k, desc_u = [o["features"] for o in out_k], [o["features"] for o in out_u]
        fov_k, fov_u = [o["fov_um"] for o in out_k], [o["fov_um"] for o in out_u]
        print(f"  [{features}] calibrated and described {len(desc_k) + len(desc_u)} test images x {n_crops} "
              f"crops in {time.perf_counter() - t:.0f} s", flush=True)
        for name in scorers:
            if name == "energy" and clf.model_.classifier is None:
                continue
            if name == "gmm" and features == "backbone":
                continue
            clf.refit_scorer(name)
            cut = (lambda d: d[:, :D]) if name == "gmm" else (lambda d: d)
            ck = [clf.scorer_.crop_probabilities(cut(d)) for d in desc_k]
            cu = [clf.scorer_.crop_probabilities(cut(d)) for d in desc_u]
            pk, pu = [c.mean(0) for c in ck], [c.mean(0) for c in cu]
            # the package's answers under each image rule (predict / predict_image), the model's rule first
            for rule in sorted(IMAGE_RULES, key=lambda r: r != clf.image_rule):
                verdict = clf.verdict_ if rule == "fov-bins" else None
                answers = ([image_prediction(c, f, clf.labels_, verdict) for c, f in zip(ck, fov_k)],
                           [image_prediction(c, f, clf.labels_, verdict) for c, f in zip(cu, fov_u)])
                row = summarise(f"{clf.loss} {D}-D, {name} on {features}, {rule}" if rule == clf.image_rule
                                else f"image_rule={rule}", pk, known[1], pu, unknown[1], classes, answers=answers)
                if rule == clf.image_rule:
                    res = row
                else:
                    results[(f"{name}, {rule}", features)] = row
            if name in ("ensemble", "knn", "gmm"):
                t = time.perf_counter()
                res["mixed_pixels"], first = mixed_accuracy(clf, mixed)
                print(f"{'':>36}mixed images, pixels away from the seam: {res['mixed_pixels']:.3f}; the first 6 "
                      f"images (the set before 2026-11-30): {first:.3f} ({time.perf_counter() - t:.0f} s)", flush=True)
                res["mixed_pixels_whole"], first = mixed_accuracy(clf, mixed, normalise_fovs=None)
                print(f"{'':>36}  the same, intensities normalised on the whole image (before 2026-11-30): "
                      f"{res['mixed_pixels_whole']:.3f}; the first 6: {first:.3f}", flush=True)
            res["train_s"] = train_s
            results[(name, features)] = res
        if features == "imagenet":
            results[("logistic", features)] = frozen_linear(clf, desc_k, desc_u, known, unknown)
    return results


def frozen_linear(clf, desc_k, desc_u, known, unknown):
    """Item 3 without training a network: a logistic regression on the frozen ImageNet features
    of the calibration crops (every training image), "none" from the fitted k-NN scorer."""
    from sklearn.linear_model import LogisticRegression

    D = int(clf.embedding_dim)
    clf.refit_scorer("knn")
    x, y = clf.calibration_set_[0], clf.calibration_set_[1]
    t = time.perf_counter()
    lr = LogisticRegression(max_iter=3000, C=10.0).fit(x[:, D:], y)
    fit_s = time.perf_counter() - t

    def probs(d):
        post = lr.predict_proba(d[:, D:])
        rej = clf.scorer_.rejected(d)
        post[rej] = 0.0
        return np.concatenate([post, rej[:, None].astype(float)], 1).mean(0)

    res = summarise("frozen ImageNet + logistic, k-NN none", [probs(d) for d in desc_k], known[1],
                    [probs(d) for d in desc_u], unknown[1], clf.classes_, fit_s)
    return res


def mixed_accuracy(clf, mixed, **map_options) -> tuple[float, float]:
    """Pixel accuracy of the probability maps away from the seam: all mixed images, and the first 6."""
    from napari_microstructure.core.micrograph.probmap import probability_map

    labels = clf.labels_
    hits, total, first = 0, 0, None
    for i, (img, right, left, p) in enumerate(mixed):
        if i == 6:
            first = hits / max(total, 1)
        r = probability_map(clf, img, p, **map_options)
        w = img.shape[1]
        margin = int(np.ceil(r.crop_size_px))
        lab = r.labels.astype(int) - 1
        for cols, truth in ((slice(0, max(1, w // 2 - margin)), left), (slice(min(w - 1, w // 2 + margin), w), right)):
            want = labels.index(truth) if truth in labels else len(labels) - 1
            block = lab[:, cols]
            ok = block >= 0
            hits += int((block[ok] == want).sum())
            total += int(ok.sum())
    every = hits / max(total, 1)
    return every, (every if first is None else first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller images (iterate with this)")
    parser.add_argument("--cache", default="/tmp/openset-bench")
    parser.add_argument("--configs", default="default",
                        help="comma-separated: default, or loss:embedding_dim[:input_size[:backbone]]")
    parser.add_argument("--scorers", default=",".join(SCORERS))
    parser.add_argument("--features", default="imagenet,backbone,descriptor")
    parser.add_argument("--n-crops", type=int, default=None, help="crops per test image (default: the model's)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    header(f"open-set benchmark ({mode} mode): {len(KNOWN_CLASSES)} known + {len(UNKNOWN_CLASSES)} unknown classes")
    train, known, unknown, mixed = load_data(mode, Path(args.cache))
    print(f"train {len(train[0])} images {train[0][0].shape}, test {len(known[0])} known + {len(unknown[0])} "
          f"unknown, {len(mixed)} mixed; pixel sizes {PIXEL_RANGE_UM[0]}-{PIXEL_RANGE_UM[1]} um")
    classes = sorted(KNOWN_CLASSES)
    if not args.no_baseline:
        baseline(train, known, unknown, mixed, classes, crop_um=10.0)
    for spec in args.configs.split(","):
        kw = {}
        if spec != "default":
            parts = spec.split(":")
            kw = dict(loss=parts[0], embedding_dim=int(parts[1]))
            if len(parts) > 2:
                kw["input_size"] = int(parts[2])
            if len(parts) > 3:
                kw["backbone"] = parts[3]
        if args.epochs:
            kw["max_epochs"] = args.epochs
        clf = FewShotClassifier(device="cpu", seed=args.seed, **kw)
        print(f"\n## {spec}: {clf.get_params()}")
        t = time.perf_counter()
        clf.fit(train[0], train[1], train[2])
        train_s = time.perf_counter() - t
        print(f"  trained in {train_s:.0f} s ({len(clf.history_.train_loss)} epochs)", flush=True)
        big = make_micrograph("pearlite", (1024, 1024), 0.1, seed=99, modality="light")
        clf.predict_proba(big, 0.1)
        t = time.perf_counter()
        clf.predict_proba(big, 0.1)
        print(f"  predict_proba on 1024 x 1024: {time.perf_counter() - t:.2f} s ({clf.n_crops} crops, "
              f"{clf.scorer} on {clf.scorer_features})", flush=True)
        evaluate_model(clf, train_s, train, known, unknown, mixed, args.scorers.split(","),
                       args.features.split(","), args.n_crops or clf.n_crops, args.seed)


if __name__ == "__main__":
    main()
