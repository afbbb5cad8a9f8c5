"""A learning test: three space groups of a textured sample, few patterns each.

Materials Ni (225), Ni3Al (221, L1_2: differs from Ni only by weak
superlattice bands) and Fe (229); 32 x 32 patterns at 20 kV around four grain
orientations (3 degree spread), 50 training patterns per space group, compact
CNN from scratch. Measured on this machine: 0.71 on 150 held-out
patterns (chance 0.33); the test requires 0.6.
"""

import numpy as np
import torch

from napari_microstructure.core.ebsd import EBSDClassifier
from napari_microstructure.core.ebsd import simulate as S


def test_learns_three_space_groups(learning_seed):
    base = S.random_rotations(4, np.random.default_rng(42))
    mats = ["Ni", "Ni3Al", "Fe"]
    p, sg, _ = S.simulate_training_set(mats, 50, (32, 32), seed=0, base_rotations=base)
    pt, st, _ = S.simulate_training_set(mats, 50, (32, 32), seed=5, base_rotations=base)
    torch.manual_seed(learning_seed)
    clf = EBSDClassifier(backbone="compact", input_size=32, max_epochs=20, patience=5,
                         device="cpu", seed=learning_seed).fit(p, sg)
    rep = clf.report(pt, st)
    assert rep.accuracy >= 0.6, str(rep)
    assert rep.weighted_recall >= 0.6
