"""Speed of the domain-randomised Kikuchi-pattern simulator (patterns per second).

Times, per space group, drawing a structure (prototype or random Wyckoff,
with the ambiguity check), computing its reflectors, and simulating a
session of patterns (random detector and acquisition), on one thread.

    PYTHONPATH=src python benchmarks/bench_ebsd_simulator.py --sessions 3 --session-size 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import header

from napari_microstructure.core.ebsd import simulate as S


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=3, help="sessions per space group")
    ap.add_argument("--session-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    header("EBSD simulator speed")
    rng = np.random.default_rng(args.seed)
    sampler = S.StructureSampler("train")
    total_n, total_t = 0, 0.0
    print(f"{'group':>6} {'draw s':>8} {'sim s':>8} {'patterns/s':>11}  mean pattern size")
    for sg in S.SPACE_GROUPS:
        t_draw = t_sim = 0.0
        sizes = []
        for _ in range(args.sessions):
            t0 = time.perf_counter()
            session = S.sample_session(sampler.draw(sg, rng), rng)
            t1 = time.perf_counter()
            pats = S.simulate_session(session, args.session_size, rng)
            t2 = time.perf_counter()
            t_draw += t1 - t0
            t_sim += t2 - t1
            sizes.append(pats.shape[1] * pats.shape[2])
        n = args.sessions * args.session_size
        total_n += n
        total_t += t_draw + t_sim
        print(f"{sg:>6} {t_draw:8.2f} {t_sim:8.2f} {n / (t_draw + t_sim):11.1f}  {np.mean(sizes) ** 0.5:.0f}^2 px")
    print(f"all groups: {total_n / total_t:.1f} patterns/s (one thread, structure draw included)")
    # fixed structure, fixed 60 x 60 detector: the rendering cost alone
    geo = S.DetectorGeometry((60, 60), 1, (0.5, 0.3, 0.6))
    session = S.sample_session(S.ALL_MATERIALS["Ni"], rng, geometry=geo)
    t0 = time.perf_counter()
    S.simulate_session(session, 256, rng)
    print(f"Ni, 60 x 60, 256 patterns: {256 / (time.perf_counter() - t0):.1f} patterns/s")


if __name__ == "__main__":
    main()
