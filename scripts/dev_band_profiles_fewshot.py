"""Few-shot fine-tuning of the band-profile classifier on a development set (the choice of ``augment``).

Per draw: one random detector; per space group two *training-split* structures
(seeds ``draw * 1000 + group index``; the draws 888-893 used for the choice are
used by no training chunk, test or benchmark): one labelled session of 20
patterns of the first, and three new sessions of 20 patterns of each structure
to test on. Printed per draw and averaged: accuracy on the labelled structures
in the new sessions ("seen") and on the other structures ("held-out"), zero-shot
and fine-tuned with each ``augment`` value. The benchmark's named materials and
held-out structures are not used.

Usage: ``python scripts/dev_band_profiles_fewshot.py [--augment 0,8] DRAW [DRAW ...]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def draw_set(draw: int, n_label: int = 20, n_test: int = 20, sessions: int = 3):
    from napari_microstructure.core.ebsd.simulate import (SPACE_GROUPS, StructureSampler, sample_geometry,
                                                           sample_session, simulate_session)

    sampler = StructureSampler("train", 0.5)
    geometry = sample_geometry(np.random.default_rng(draw))
    labelled, labels, test = [], [], {"seen": ([], []), "held-out": ([], [])}
    for k, sg in enumerate(SPACE_GROUPS):
        rng = np.random.default_rng(draw * 1000 + k)
        seen, other = sampler.draw(sg, rng), sampler.draw(sg, rng)
        labelled.append(simulate_session(sample_session(seen, rng, geometry=geometry), n_label, rng, pc_scan=0.0))
        labels += [sg] * n_label
        for key, structure in (("seen", seen), ("held-out", other)):
            for _ in range(sessions):
                session = sample_session(structure, rng, geometry=geometry)
                test[key][0].append(simulate_session(session, n_test, rng, pc_scan=0.0))
                test[key][1].extend([sg] * n_test)
    test = {k: (np.concatenate(p), np.array(y)) for k, (p, y) in test.items()}
    return geometry.pc, np.concatenate(labelled), np.array(labels), test


def main() -> None:
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("draws", nargs="+", type=int)
    ap.add_argument("--augment", default="0,8", help="comma-separated augment values to compare")
    args = ap.parse_args()
    values = [int(v) for v in args.augment.split(",")]
    scores: dict[str, list] = {}
    for draw in args.draws:
        pc, patterns, labels, test = draw_set(draw)
        zero = BandProfileClassifier.from_pretrained(pc=pc)
        features = {k: zero.describe(p)["features"] for k, (p, _) in test.items()}

        def accuracy(clf):
            return [float(np.mean(clf.classes_[clf.predict_proba_features(features[k]).argmax(1)] == test[k][1]))
                    for k in ("seen", "held-out")]

        rows = {"zero-shot": accuracy(zero)}
        for v in values:
            t = time.perf_counter()
            rows[f"augment={v}"] = accuracy(BandProfileClassifier(pc=pc, augment=v).fit(patterns, labels))
            rows[f"augment={v}"].append(time.perf_counter() - t)
        for name, r in rows.items():
            scores.setdefault(name, []).append(r[:2])
            print(f"draw {draw} {name:>12}: seen {r[0]:.3f}  held-out {r[1]:.3f}"
                  + (f"  (fit {r[2]:.1f} s)" if len(r) > 2 else ""), flush=True)
    for name, rs in scores.items():
        m = np.mean(rs, 0)
        print(f"mean over {len(rs)} draws {name:>12}: seen {m[0]:.3f}  held-out {m[1]:.3f}")


if __name__ == "__main__":
    main()
