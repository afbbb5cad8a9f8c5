"""Shared set-up for the benchmarks: 2 CPU threads, generated data, timing."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
os.environ.setdefault("NAPARI_MICROSTRUCTURE_DEVICE", "cpu")


def timed(fn, *args, repeat: int = 1, **kwargs):
    """(result, best seconds over ``repeat`` runs)."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t)
    return result, best


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def header(title: str) -> None:
    print(f"# {title}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")


def painted_labels(rng, blobs, n_blobs, truth, rows, cols, around):
    """Patterns a user paints on a dual-phase map (flat indices): 10 in each of two random precipitates
    (``blobs``: flat precipitate numbers 1..``n_blobs``), then 10 matrix (225) patterns around each
    precipitate (``around``) or in two random matrix spots; ``rows``, ``cols``: flat map coordinates."""
    import numpy as np

    picked, matrix = [], np.flatnonzero(truth == 225)
    for k in rng.choice(np.arange(1, n_blobs + 1), 2, replace=False):
        inside = np.flatnonzero(blobs == k)
        picked.append(rng.choice(inside, min(10, inside.size), replace=False))
        if around:
            dist = (rows[matrix] - rows[inside].mean()) ** 2 + (cols[matrix] - cols[inside].mean()) ** 2
            picked.append(matrix[np.argsort(dist, kind="stable")[:10]])
    for _ in range(0 if around else 2):
        centre = rng.choice(matrix)
        dist = (rows[matrix] - rows[centre]) ** 2 + (cols[matrix] - cols[centre]) ** 2
        picked.append(matrix[np.argsort(dist, kind="stable")[:10]])
    return np.unique(np.concatenate(picked))
