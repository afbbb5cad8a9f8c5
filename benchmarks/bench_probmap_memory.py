"""Peak resident memory of an 8192 x 8192 probability map: float32, float16, or written to a zarr store.

Each case runs in a fresh process; the figure is the process's peak resident
set (``VmHWM`` in ``/proc/self/status``, which, unlike ``ru_maxrss``, is not
inherited from the parent) and the resident set just before the map (torch,
the model and the input image). Compact backbone, 200 px crops, stride 48 px,
as in ``bench_probmap.py --memory``. Target: <= 2 GB (2048 MB).

    python benchmarks/bench_probmap_memory.py                      # float16 and store
    python benchmarks/bench_probmap_memory.py --modes float32 float16 store --size 8192
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("float32", "float16", "store")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(size: int, mode: str, folder: str) -> None:
    import numpy as np
    from _common import header  # noqa: F401  (2 threads, src on the path)
    from bench_probmap import CROP, image, make_classifier

    from napari_microstructure.core.micrograph.probmap import probability_map

    clf = make_classifier("compact")
    img = image(size).astype(np.float32)
    before = _status_mb("VmRSS")
    kwargs = {"dtype": "float16" if mode != "float32" else "float32"}
    if mode == "store":
        kwargs["store"] = Path(folder) / "map.zarr"
    t0 = time.perf_counter()
    r = probability_map(clf, img, clf.map_fov_um_ / CROP, stride=48, **kwargs)
    sec = time.perf_counter() - t0
    after = _status_mb("VmRSS")
    held = r.probabilities.nbytes / 2 ** 20 if mode != "store" else 0.0
    print(json.dumps({"size": size, "mode": mode, "peak_mb": _status_mb("VmHWM"), "before_mb": before,
                      "after_mb": after, "seconds": sec, "crops": r.n_crops, "result_in_memory_mb": held,
                      "load": os.getloadavg()[0]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--modes", nargs="+", default=["float16", "store"], choices=MODES)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.size, args.child, args.dir)
        return
    print(f"# probability map peak memory, {args.size} x {args.size}, compact, stride 48 (target <= 2048 MB)")
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    for mode in args.modes:
        folder = tempfile.mkdtemp(dir=args.dir)
        try:
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--size", str(args.size),
                                  "--dir", folder], capture_output=True, text=True)
            if out.returncode:
                print(f"{mode}: failed\n{out.stderr[-2000:]}")
                continue
            m = json.loads(out.stdout.strip().splitlines()[-1])
            store_mb = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2 ** 20
            print(f"{mode:>8}: peak {m['peak_mb']:.0f} MB (before the map {m['before_mb']:.0f} MB, after "
                  f"{m['after_mb']:.0f} MB; result held in memory {m['result_in_memory_mb']:.0f} MB"
                  + (f"; store on disk {store_mb:.0f} MB" if mode == "store" else "")
                  + f"), {m['seconds']:.1f} s, {m['crops']} crops, load {m['load']:.1f}", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
