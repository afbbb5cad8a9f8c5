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
