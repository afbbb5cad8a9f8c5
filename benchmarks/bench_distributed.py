"""Scaling of EBSD maps and probability maps with dask.distributed worker processes.

For 1 and 2 worker processes (one thread each, a ``LocalCluster`` on this
machine) against the same map computed in this process with 1 and 2 torch
threads: an EBSD map of 60 x 60 patterns (compact backbone, untrained: the
weights do not change the speed) given as a dask array, and a probability map
of a generated micrograph in tiles (compact, 200 px crops, stride 48,
``tile_size=512``). Starting the cluster (worker processes importing torch)
is timed separately and not counted. Results are checked against the
in-process map.

    python benchmarks/bench_distributed.py [--patterns 16384] [--size 2048]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import header

import torch


def ebsd_case(n_patterns: int):
    import dask.array as da
    from bench_ebsd_throughput import untrained

    clf = untrained("compact", 60, 60)
    side = 128
    rows = max(1, n_patterns // side)
    pm = np.random.default_rng(0).integers(0, 255, (rows, side, 60, 60), dtype=np.uint8)
    return clf, da.from_array(pm, chunks=(16, side, 60, 60)), rows * side


def probmap_case(size: int):
    from bench_probmap import CROP, image, make_classifier

    clf = make_classifier("compact")
    return clf, image(size).astype(np.float32), clf.map_fov_um_ / CROP


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patterns", type=int, default=16384)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    header("dask.distributed scaling: EBSD map and probability map")
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    from distributed import Client, LocalCluster

    from napari_microstructure.core.micrograph.probmap import probability_map

    clf_e, lazy, n = ebsd_case(args.patterns)
    clf_p, img, p = probmap_case(args.size)
    clf_e.classify_map(lazy[:1, :64])  # warm-up (tracing)
    ref_e = ref_p = None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t = time.perf_counter()
        ref_e = clf_e.classify_map(lazy)
        te = time.perf_counter() - t
        t = time.perf_counter()
        ref_p = probability_map(clf_p, img, p, stride=48, tile_size=512)
        tp = time.perf_counter() - t
        print(f"in process, {threads} torch thread(s): EBSD {n / te:.0f} patterns/s ({te:.1f} s for {n}); "
              f"probability map {args.size}^2 {tp:.1f} s ({ref_p.n_crops} crops)", flush=True)
    torch.set_num_threads(2)
    for workers in args.workers:
        t = time.perf_counter()
        with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster, set_as_default=False) as client:
            start = time.perf_counter() - t
            clf_e.classify_map(lazy[:1, :64], client=client)  # each worker traces its network once
            t = time.perf_counter()
            res_e = clf_e.classify_map(lazy, client=client)
            te = time.perf_counter() - t
            t = time.perf_counter()
            res_p = probability_map(clf_p, img, p, stride=48, tile_size=512, client=client)
            tp = time.perf_counter() - t
        same_e = np.array_equal(res_e.labels, ref_e.labels)
        dp = float(np.nanmax(np.abs(res_p.probabilities - ref_p.probabilities)))
        print(f"{workers} worker process(es) x 1 thread (cluster start {start:.1f} s): EBSD {n / te:.0f} "
              f"patterns/s ({te:.1f} s; labels equal to in-process: {same_e}); probability map {tp:.1f} s "
              f"(max |difference| {dp:.1e})", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
