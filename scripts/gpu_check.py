"""The GPU path, measured: one short prepared run for a CUDA machine (``scripts/gpu_check.sh``).

Stages (each prints its figures; all figures also go to ``--json``):

1. the device: name, memory, CUDA and torch versions;
2. training the default micrograph model (``FewShotClassifier()`` defaults:
   compact backbone, 200 px crops, 40 epochs x 16 x 32 crops) on the
   benchmark data (5 classes x 20 generated 512 x 512 images, as
   ``benchmarks/bench_training.py``), its time and held-out accuracy;
3. the EBSD benchmark map (60 x 60 patterns, six classes, compact and
   EfficientNet-Lite0, as ``benchmarks/bench_ebsd_throughput.py``) through
   ``classify_map`` with mixed precision (autocast bfloat16/float16 on CUDA),
   in patterns per second, with the split between preprocessing (CPU) and
   the network (GPU). Target: >= 6000 patterns/s;
4. a 1024 x 1024 probability map (compact, 200 px crops, stride 24, as
   ``benchmarks/bench_probmap.py``). Target: < 0.2 s;

and the peak GPU memory of each stage. ``--cpu`` runs the same stages on
the CPU with small sizes (a few seconds of work) to check the script itself.

    python scripts/gpu_check.py [--json out.json]       # on a CUDA machine
    python scripts/gpu_check.py --cpu                   # dry run here
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

EBSD_TARGET = 6000.0       # patterns per second on one GPU
PROBMAP_TARGET = 0.2       # seconds for a 1024 x 1024 map
FIGURES: dict = {}


def say(key: str, value, text: str) -> None:
    FIGURES[key] = value
    print(text, flush=True)


class Stage:
    """Times a stage and records its peak GPU memory."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name, self.device = name, device

    def __enter__(self) -> "Stage":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        print(f"\n== {self.name}", flush=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2 ** 20
            say(f"{self.name}.peak_gpu_mb", round(peak, 1), f"   peak GPU memory: {peak:.0f} MB")
        FIGURES[f"{self.name}.wall_s"] = round(time.perf_counter() - self.t0, 2)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def stage_device(device: torch.device) -> None:
    from napari_microstructure.core.nn.device import describe

    say("device", describe(device), f"device: {describe(device)}; torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, {os.cpu_count()} CPUs")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        say("gpu_memory_gb", round(props.total_memory / 2 ** 30, 1),
            f"GPU memory {props.total_memory / 2 ** 30:.1f} GiB, bf16 {torch.cuda.is_bf16_supported()}")


def stage_training(device: torch.device, small: bool) -> None:
    from napari_microstructure import FewShotClassifier
    from napari_microstructure.core.micrograph.synthetic import CLASSES, make_dataset

    per_class, shape = (2, (256, 256)) if small else (20, (512, 512))
    classes = CLASSES[:2] if small else CLASSES
    images, labels, sizes = make_dataset(classes, per_class=per_class, shape=shape,
                                         pixel_size_range_um=(0.05, 0.2), seed=0)
    kwargs = dict(max_epochs=1, steps_per_epoch=2, batch_size=8, input_size=64, n_crops=16) if small else {}
    clf = FewShotClassifier(device=str(device), **kwargs)
    with Stage("train", device):
        t = time.perf_counter()
        clf.fit(images, labels, sizes)
        sync(device)
        sec = time.perf_counter() - t
        epochs = len(clf.history_.train_loss)
        say("train.seconds", round(sec, 2), f"   trained {len(classes)} classes x {per_class} images "
            f"{shape[0]}^2 ({'small CPU check' if small else 'defaults'}): {sec:.1f} s, {epochs} epochs "
            f"({sec / max(1, epochs):.2f} s/epoch)")
        test_images, test_labels, test_sizes = make_dataset(classes, per_class=2 if small else 6, shape=shape,
                                                            pixel_size_range_um=(0.05, 0.2), seed=1)
        pred = [clf.predict(im, p) for im, p in zip(test_images, test_sizes)]
        acc = float(np.mean([a == b for a, b in zip(pred, test_labels)]))
        say("train.heldout_accuracy", acc, f"   held-out accuracy ({len(test_images)} new images): {acc:.3f}")


def stage_ebsd(device: torch.device, small: bool) -> None:
    from bench_ebsd_throughput import untrained

    n = 512 if small else 65536
    side = 32 if small else 256
    pm = np.random.default_rng(0).integers(0, 255, (n // side, side, 60, 60), dtype=np.uint8)
    for backbone in ("compact", "efficientnet-lite0"):
        clf = untrained(backbone, 60, 60)
        clf.device = str(device)
        clf.device_ = device
        clf.models_ = [m.to(device) for m in clf.models_]
        with Stage(f"ebsd.{backbone}", device):
            clf.classify_map(pm[:1, :min(side, 512)], chunk_size=8192)  # warm-up (cuDNN autotune)
            sync(device)
            t = time.perf_counter()
            clf.classify_map(pm, chunk_size=8192)
            sync(device)
            sec = time.perf_counter() - t
            rate = n / sec
            # where the time goes: preprocessing on the CPU, the network on the device
            flat = pm.reshape(-1, 60, 60)[:8192]  # one chunk
            t = time.perf_counter()
            prepared = clf.preprocessor_.transform(flat, check=False)
            t_pre = time.perf_counter() - t
            t = time.perf_counter()
            clf._member_probabilities(prepared)
            sync(device)
            t_net = time.perf_counter() - t
            met = "" if small else (" (target >= 6000: " + ("met" if rate >= EBSD_TARGET else "NOT met") + ")")
            say(f"ebsd.{backbone}.patterns_per_s", round(rate, 1),
                f"   {backbone}: {n} patterns of 60 x 60 in {sec:.2f} s = {rate:.0f} patterns/s{met}; "
                f"per {len(flat)}: preprocessing {t_pre:.3f} s ({len(flat) / t_pre:.0f}/s), network "
                f"{t_net:.3f} s ({len(flat) / t_net:.0f}/s)")


def stage_probmap(device: torch.device, small: bool) -> None:
    from bench_probmap import CROP, STRIDE, image, make_classifier

    from napari_microstructure.core.micrograph.probmap import probability_map

    size = 384 if small else 1024
    clf = make_classifier("compact")
    clf.device_ = device
    clf.model_ = clf.model_.to(device)
    img = image(size).astype(np.float32)
    p = clf.map_fov_um_ / CROP
    with Stage("probmap", device):
        probability_map(clf, img, p, stride=STRIDE)  # warm-up
        sync(device)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            r = probability_map(clf, img, p, stride=STRIDE)
            sync(device)
            times.append(time.perf_counter() - t)
        best = min(times)
        met = "" if small else (" (target < 0.2 s: " + ("met" if best < PROBMAP_TARGET else "NOT met") + ")")
        say("probmap.seconds", round(best, 4), f"   {size} x {size}, {r.n_crops} crops of {CROP} px: best of 3 "
            f"{best:.3f} s (network {r.timings['network']:.3f} s, mixture {r.timings['mixture']:.3f} s){met}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="dry run on the CPU with small sizes")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "ebsd", "probmap"])
    args = ap.parse_args()
    if args.cpu:
        device = torch.device("cpu")
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    elif not torch.cuda.is_available():
        print("CUDA is not available here; run with --cpu for a dry run", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    small = args.cpu
    stage_device(device)
    if "ebsd" not in args.skip:
        stage_ebsd(device, small)
    if "probmap" not in args.skip:
        stage_probmap(device, small)
    if "train" not in args.skip:
        stage_training(device, small)
    if args.json:
        Path(args.json).write_text(json.dumps(FIGURES, indent=1))
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
