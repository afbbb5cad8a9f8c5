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
