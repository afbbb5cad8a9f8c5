"""The simulation-pretrained space-group model shipped with the package.

``data/ebsd/spacegroup_pretrained.pt`` is an ordinary EBSD model file (see
:mod:`napari_microstructure.core.nn.modelio`: tensors and JSON only, read
with ``torch.load(weights_only=True)``, no download), written by
``scripts/pretrain_ebsd.py --export``. Its classes are the space groups 221,
223, 225, 227, 229 and 230; how it was trained and what it scores on
structures held out of training is in the run's ``log.jsonl`` and in
``docs/ebsd.md``.

``data/ebsd/band_profiles.pt`` is the band-profile space-group classifier
(:class:`~.bandclassifier.BandProfileClassifier`), written by
``scripts/train_band_profiles.py export``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelFileError

PRETRAINED_FILE = Path(__file__).resolve().parents[2] / "data" / "ebsd" / "spacegroup_pretrained.pt"
#: The band-profile classifier trained on simulated patterns (``scripts/train_band_profiles.py``).
BAND_PROFILES_FILE = Path(__file__).resolve().parents[2] / "data" / "ebsd" / "band_profiles.pt"


def pretrained_available() -> bool:
    """True when the shipped pretrained model file is present."""
    return PRETRAINED_FILE.is_file()


def pretrained_path() -> Path:
    """The shipped model file's path; a clear error when it is not installed.

    ``EBSDClassifier.from_pretrained()`` loads it (this module does not import
    the classifier, so the two never import each other).
    """
    if not pretrained_available():
        raise ModelFileError(
            f"the simulation-pretrained CNN {str(PRETRAINED_FILE)!r} is not installed: this version ships "
            "none (on unseen structures it did not beat training from labels; docs/ebsd.md, section 7). "
            "To classify space groups with no labelled patterns use "
            "BandProfileClassifier.from_pretrained(pc=...); to train the CNN on labelled patterns use "
            "EBSDClassifier(simulation_pretrained=False), the default")
    return PRETRAINED_FILE


def band_profiles_path() -> Path:
    """The shipped band-profile model's path; a clear error when it is not installed."""
    if not BAND_PROFILES_FILE.is_file():
        raise ModelFileError(
            f"the band-profile model {str(BAND_PROFILES_FILE)!r} is not installed; reinstall "
            "napari-microstructure or train with simulation_pretrained=False")
    return BAND_PROFILES_FILE


def init_from_pretrained(net: torch.nn.Module, classes, source) -> None:
    """Copy the pretrained backbone into ``net``; head rows of classes the source knows.

    Parameters
    ----------
    net : EBSDNet
        A freshly built network of the same backbone.
    classes : array-like
        The classes of ``net``'s head, in order.
    source : EBSDClassifier
        The pretrained classifier.
    """
    src = source.models_[0]
    net.backbone.load_state_dict(src.backbone.state_dict())
    known = {int(c): i for i, c in enumerate(source.classes_)} if source.classes_.dtype.kind in "iu" else {}
    with torch.no_grad():
        for row, c in enumerate(classes):
            try:
                i = known.get(int(c))
            except (TypeError, ValueError):
                i = None
            if i is not None:
                net.head.weight[row] = src.head.weight[i]
                net.head.bias[row] = src.head.bias[i]
