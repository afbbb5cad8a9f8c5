"""Peak memory of classify_map over a 1,000,000-pattern memory-mapped map (60 x 60 uint8).

The map (1000 x 1000 x 60 x 60, 3.6 GB) is written to a ``.npy`` file in a
temporary folder (``--dir``), memory-mapped read-only and classified with the
compact backbone. Classifying all of it takes about half an hour on 2 cores,
so by default the run stops (cancel event) after ``--limit`` patterns; all
outputs are allocated for the whole map from the start, so the peak resident
memory (ru_maxrss) and the throughput measured over the first patterns are
those of the full run: memory does not grow with the patterns processed.
Target: <= 2 GB, throughput as in bench_ebsd_throughput.py.

    python benchmarks/bench_ebsd_memory.py [--limit 50000] [--dir /tmp]
    python benchmarks/bench_ebsd_memory.py --limit 0     # the full pass (prints figures as it goes)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import header, peak_rss_mb
from bench_ebsd_throughput import untrained

from napari_microstructure.core.errors import TrainingCancelled


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=50000, help="stop after this many patterns (0: all)")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--chunk-size", type=int, default=2048)
    ap.add_argument("--report-every", type=int, default=50000, help="print figures every this many patterns")
    ap.add_argument("--classify", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.classify:
        return classify(Path(args.classify), args)
    header("EBSD classify_map peak memory over a memory-mapped map")
    rows = cols = args.rows
    path = Path(args.dir) / "ebsd_bench_map.npy"
    t = time.perf_counter()
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, cols, 60, 60))
    tile = np.random.default_rng(0).integers(0, 255, (cols, 60, 60), dtype=np.uint8)
    for r in range(rows):
        mm[r] = tile
    mm.flush()
    del mm
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    try:
        # classify in a fresh process so that writing the file does not count
        subprocess.run([sys.executable, __file__, "--classify", str(path), "--limit", str(args.limit),
                        "--chunk-size", str(args.chunk_size), "--rows", str(rows),
                        "--report-every", str(args.report_every)], check=True)
    finally:
        os.remove(path)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_mb() -> float:
    """Peak resident set of this process (VmHWM; ru_maxrss would include the parent that wrote the file)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    return peak_rss_mb()


def classify(path: Path, args) -> None:
    rows = cols = args.rows
    pm = np.load(path, mmap_mode="r")
    clf = untrained("compact", 60, 60)
    rss0 = _peak_mb()
    cancel = threading.Event()
    done = [0]
    samples = []

    last = [0]

    def progress(p):
        done[0] = p.step
        samples.append((p.step, _rss_mb()))
        if p.step - last[0] >= args.report_every:  # figures so far, in case the pass is stopped
            last[0] = p.step
            el = time.perf_counter() - t
            print(f"  {p.step} patterns, {el:.0f} s, {p.step / el:.0f} patterns/s, resident {samples[-1][1]:.0f} MB, "
                  f"peak {_peak_mb():.0f} MB, load {os.getloadavg()[0]:.1f}", flush=True)
        if args.limit and p.step >= args.limit:
            cancel.set()

    t = time.perf_counter()
    try:
        clf.classify_map(pm, chunk_size=args.chunk_size, progress=progress, cancel=cancel)
    except TrainingCancelled:
        pass
    dt = time.perf_counter() - t
    print(f"map {rows} x {cols} = {rows * cols} patterns of 60 x 60 uint8 (memory-mapped .npy), "
          f"compact backbone, chunk {args.chunk_size}")
    print(f"classified {done[0]} patterns in {dt:.1f} s: {done[0] / dt:.0f} patterns/s")
    picks = [samples[1], samples[len(samples) // 2], samples[-1]] if len(samples) > 2 else samples
    print("resident memory after " + ", ".join(f"{s} patterns: {m:.0f} MB" for s, m in picks))
    print(f"peak RSS before classify_map {rss0:.0f} MB, peak after {_peak_mb():.0f} MB "
          f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
