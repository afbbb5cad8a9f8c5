"""Benchmark of crop-averaged probability maps (figures printed).

Usage::

    python benchmarks/bench_probmap.py            # 1024 x 1024, both backbones, both methods
    python benchmarks/bench_probmap.py --memory   # also peak memory of an 8192 x 8192 map

A 1024 x 1024 image at the model's crop pixel size, 200 x 200 crops on a grid of
stride 24 pixels: 35 x 35 = 1225 crops (coverage of 1225 crops, more than the
thousand of Larmuseau et al.). Timing does not depend on the weights, so the
classifiers here are built untrained (EfficientNet-Lite0 with ImageNet weights)
with a mixture fitted on random descriptors.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))

SIZE, CROP, STRIDE = 1024, 200, 24


def make_classifier(backbone: str, input_size: int = CROP, fov_um: float = 20.0):
    from napari_microstructure import FewShotClassifier
    from napari_microstructure.core.nn.networks import DescriptorNet
    from napari_microstructure.core.micrograph.openset import OpenSetMixture

    # an untrained network with a hand-made mixture: the paper's scorer on the descriptors alone
    clf = FewShotClassifier(backbone=backbone, input_size=input_size, embedding_dim=2, scorer="gmm", device="cpu")
    clf.model_ = DescriptorNet(backbone, 2, None, True, pretrained=backbone != "compact").eval()
    clf.device_ = torch.device("cpu")
    clf.classes_ = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(90, 2)) + np.repeat(np.eye(3, 2) * 3, 30, axis=0)
    clf.mixture_ = OpenSetMixture().fit(desc, np.repeat(np.arange(3), 30), 3)
    clf.mixture_.calibrate(desc)
    clf.scorer_ = clf.mixture_
    clf.fov_range_um_ = (fov_um / 2, fov_um * 2)
    clf.map_fov_um_ = fov_um
    return clf


def image(size: int) -> np.ndarray:
    from napari_microstructure.core.micrograph.synthetic import make_micrograph

    tile = make_micrograph("pearlite", (1024, 1024), 0.1, seed=0)
    reps = -(-size // 1024)
    return np.tile(tile, (reps, reps))[:size, :size]


def full_pass_seconds(clf, size: int, repeats: int = 3) -> float:
    x = torch.rand(1, 1, size, size)
    with torch.inference_mode():
        clf.model_.feature_map(x)
        t0 = time.perf_counter()
        for _ in range(repeats):
            clf.model_.feature_map(x)
    return (time.perf_counter() - t0) / repeats


def bench_1024(backbone: str, exact_crops: int | None) -> None:
    from napari_microstructure.core.micrograph.probmap import probability_map

    clf = make_classifier(backbone)
    p = clf.map_fov_um_ / CROP               # image at the model's crop pixel size: crops are 200 px
    img = image(SIZE)
    probability_map(clf, img[:256, :256], p, method="shared")  # warm-up
    full = full_pass_seconds(clf, SIZE)
    t0 = time.perf_counter()
    r = probability_map(clf, img, p, stride=STRIDE, method="shared")
    shared = time.perf_counter() - t0
    print(f"{backbone:>18} shared: {r.n_crops} crops of {CROP} px, {shared:.3f} s "
          f"(network {r.timings['network']:.3f} s; total / network {shared / r.timings['network']:.2f}; "
          f"total / one full-image pass {shared / full:.2f}; full pass {full:.3f} s)")
    if exact_crops:
        t0 = time.perf_counter()
        e = probability_map(clf, img, p, n_random_crops=exact_crops, method="exact", seed=0)
        sec = time.perf_counter() - t0
        rate = e.n_crops / sec
        print(f"{backbone:>18} exact: {e.n_crops} crops in {sec:.2f} s = {rate:.0f} crops/s "
              f"(network share {e.timings['network'] / sec:.2f}); {r.n_crops} crops would take "
              f"{r.n_crops / rate:.1f} s")
    else:
        t0 = time.perf_counter()
        e = probability_map(clf, img, p, stride=STRIDE, method="exact")
        sec = time.perf_counter() - t0
        print(f"{backbone:>18} exact: {e.n_crops} crops, {sec:.2f} s ({e.n_crops / sec:.0f} crops/s; "
              f"total / network {sec / e.timings['network']:.2f}; total / one full-image pass {sec / full:.1f})")


def memory_child(size: int, method: str) -> None:
    from napari_microstructure.core.micrograph.probmap import probability_map

    clf = make_classifier("compact")
    img = image(size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    r = probability_map(clf, img, clf.map_fov_um_ / CROP, stride=48, method=method)
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"size": size, "peak_mb": peak, "before_mb": base, "seconds": sec, "crops": r.n_crops,
                      "output_mb": r.probabilities.nbytes / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--memory-size", type=int, default=8192)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="shared")
    ap.add_argument("--skip-1024", action="store_true")
    args = ap.parse_args()
    if args.child:
        memory_child(args.memory_size, args.method)
        return
    print(f"torch threads: {torch.get_num_threads()}")
    if not args.skip_1024:
        bench_1024("compact", None)
        bench_1024("efficientnet-lite0", 48)
    if args.memory:
        out = subprocess.run([sys.executable, __file__, "--child", "--memory-size", str(args.memory_size),
                              "--method", args.method], capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{m['size']} x {m['size']} ({args.method}, compact, stride 48): peak RSS {m['peak_mb']:.0f} MB "
              f"(process before the map {m['before_mb']:.0f} MB; output {m['output_mb']:.0f} MB), "
              f"{m['seconds']:.1f} s, {m['crops']} crops")


if __name__ == "__main__":
    main()
