"""Shared fixtures: small generated data sets and one trained model per session.

Training is the slow part of the suite, so models are trained once per session
and shared; tests must not modify them (copy or re-load instead).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
torch.set_num_threads(min(2, os.cpu_count() or 1))

TRAIN_CLASSES = ("ferrite", "pearlite", "spheroidite")

#: Seed of the models that learning tests train. A learning test must pass for several
#: seeds: check with NAPARI_MICROSTRUCTURE_TEST_SEED=1 (and 2) before relying on a margin.
LEARNING_SEED = int(os.environ.get("NAPARI_MICROSTRUCTURE_TEST_SEED", "0"))


@pytest.fixture(scope="session")
def learning_seed() -> int:
    """The training seed of learning tests (``NAPARI_MICROSTRUCTURE_TEST_SEED``, default 0)."""
    return LEARNING_SEED


@pytest.fixture(scope="session")
def small_dataset():
    """Three classes x 4 generated 256 x 256 micrographs at 0.08-0.16 um per pixel."""
    from napari_microstructure.core.micrograph.synthetic import make_dataset

    return make_dataset(TRAIN_CLASSES, per_class=4, shape=(256, 256), seed=0)


@pytest.fixture(scope="session")
def trained_classifier(small_dataset, learning_seed):
    """A FewShotClassifier trained on :func:`small_dataset` (64-pixel input, 8-D descriptors)."""
    from napari_microstructure import FewShotClassifier

    images, labels, sizes = small_dataset
    clf = FewShotClassifier(
        input_size=64, embedding_dim=8, max_epochs=20, steps_per_epoch=10, batch_size=24,
        patience=20, seed=learning_seed, device="cpu",
    )
    return clf.fit(images, labels, sizes)


@pytest.fixture(scope="session")
def trained_model_path(trained_classifier, tmp_path_factory):
    """The session's trained classifier saved to a model file."""
    path = tmp_path_factory.mktemp("models") / "micrograph.pt"
    trained_classifier.save(path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def small_ebsd_map():
    """A small EBSD ensemble (Ni/Ni3Al), a dual-phase map and its in-process result (for map plumbing tests)."""
    from napari_microstructure.core.ebsd import EBSDClassifier
    from napari_microstructure.core.ebsd import simulate as S

    pats, _, rots = S.simulate_dual_phase_map((8, 10), (32, 32), n_grains=3, n_precipitates=2, seed=2,
                                              return_orientations=True)
    p, sg, _ = S.simulate_training_set(["Ni", "Ni3Al"], 12, (32, 32), seed=1, base_rotations=rots)
    torch.manual_seed(0)
    clf = EBSDClassifier(backbone="compact", input_size=32, n_models=2, max_epochs=2, device="cpu")
    clf.fit(p, sg)
    return clf, pats, clf.classify_map(pats)


@pytest.fixture(scope="session")
def small_micrograph_model(tmp_path_factory):
    """A small fitted micrograph model (a few training steps: these tests compare maps, not accuracy).

    The compact CNN, whose crops share one pass over a tile (``method="shared"``), so the
    map plumbing tests exercise the shared path too; the default (frozen ImageNet) backbone
    always computes crops on their own."""
    from napari_microstructure import FewShotClassifier
    from napari_microstructure.core.micrograph.synthetic import make_dataset

    images, labels, sizes = make_dataset(("ferrite", "pearlite"), per_class=2, shape=(192, 192), seed=0)
    clf = FewShotClassifier(backbone="compact", input_size=64, embedding_dim=4, max_epochs=1, steps_per_epoch=2,
                            batch_size=8, n_crops=16, seed=0, device="cpu").fit(images, labels, sizes)
    path = tmp_path_factory.mktemp("model") / "micrograph.pt"
    clf.save(path)
    return clf, path
