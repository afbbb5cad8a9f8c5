"""Compare band-profile model files on a development set (the model choice of train_band_profiles.py).

The development set: 12 fresh sessions per space group of *training-split*
structures (seeds from 777,000, used by no training chunk, test or
benchmark), 8 patterns each, orientations found by the search. The
benchmark's named materials and held-out structures are not used, so the
choice does not tune on what ``bench_ebsd_bands.py`` reports.

Usage: ``python scripts/select_band_profiles_model.py MODEL.pt [MODEL.pt ...]``
"""

from __future__ import annotations

import sys

import numpy as np


def main(paths: list[str]) -> None:
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier
    from napari_microstructure.core.ebsd.simulate import (SPACE_GROUPS, StructureSampler, sample_session,
                                                           simulate_session)

    models = [BandProfileClassifier.load(p) for p in paths]
    truth, predictions = [], [[] for _ in models]
    sampler = StructureSampler("train", 0.5)
    for k, sg in enumerate(SPACE_GROUPS):
        for j in range(12):
            rng = np.random.default_rng(777_000 + 100 * k + j)
            session = sample_session(sampler.draw(sg, rng), rng)
            patterns = simulate_session(session, 8, rng, pc_scan=0.0)
            features = None
            for i, model in enumerate(models):
                model.set_params(pc=session.geometry.pc)
                if features is None:  # the search does not depend on the model
                    features = model.describe(patterns)["features"]
                predictions[i] += model.classes_[model.predict_proba_features(features).argmax(1)].tolist()
            truth += [sg] * len(patterns)
    truth = np.array(truth)
    for path, pred in zip(paths, predictions):
        print(f"{path}: development accuracy {np.mean(np.array(pred) == truth):.3f} ({len(truth)} patterns)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
