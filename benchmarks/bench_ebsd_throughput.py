"""Throughput of EBSDClassifier.classify_map in patterns per second on 2 CPU threads.

For 60 x 60 and 120 x 120 patterns and both backbones (network weights do not
change the speed, so the networks are untrained). Input size = pattern size
("native"), and for 120 x 120 also resized to 60 x 60. Targets at 60 x 60:
>= 100 patterns/s transfer-learned (EfficientNet-Lite0), >= 500 compact.

    python benchmarks/bench_ebsd_throughput.py [--patterns 2000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import header

from napari_microstructure.core.ebsd import EBSDClassifier, EBSDNet
from napari_microstructure.core.ebsd.preprocess import PatternPreprocessor


def untrained(backbone: str, input_size: int, pattern_size: int) -> EBSDClassifier:
    """A classifier with random weights for timing (no training)."""
    from napari_microstructure.core.nn.backbones import build_backbone

    clf = EBSDClassifier(backbone=backbone, input_size=input_size, device="cpu")
    clf.classes_ = np.array([221, 223, 225, 227, 229, 230])
    clf.preprocessor_ = PatternPreprocessor(input_size).fit(
        np.random.default_rng(0).integers(0, 255, (4, pattern_size, pattern_size), dtype=np.uint8))
    clf.models_ = [EBSDNet(build_backbone(backbone, pretrained=False), 6).eval()]
    clf.history_ = []
    return clf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patterns", type=int, default=2000)
    args = ap.parse_args()
    header("EBSD classify_map throughput")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    cases = [(60, 60, "compact"), (60, 60, "efficientnet-lite0"), (120, 120, "compact"),
             (120, 120, "efficientnet-lite0"), (120, 60, "compact"), (120, 60, "efficientnet-lite0")]
    print(f"{'pattern':>8} {'input':>6} {'backbone':>20} {'patterns/s':>11}")
    for size, inp, bb in cases:
        n = args.patterns if bb == "compact" else max(args.patterns // 4, 256)
        side = int(np.sqrt(n))
        pm = rng.integers(0, 255, (side, n // side, size, size), dtype=np.uint8)
        clf = untrained(bb, inp, size)
        clf.classify_map(pm[:1, :16])  # warm-up
        t = time.perf_counter()
        clf.classify_map(pm, chunk_size=1024)
        dt = time.perf_counter() - t
        print(f"{size:>5}x{size:<3}{inp:>5}  {bb:>20} {pm.shape[0] * pm.shape[1] / dt:>11.0f}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
