"""Sample data (File > Open Sample): generated steel micrographs.

The images are rendered by :mod:`napari_microstructure.core.micrograph.synthetic` from
fixed seeds each time they are opened (a few hundred milliseconds), so nothing
binary is shipped for them. Each layer's ``scale`` is its pixel size in
micrometres and ``metadata["class"]`` its microstructure.
"""

from __future__ import annotations

from typing import Any

#: The classes of the labelled sample micrographs. Martensite is left out on purpose: it is
#: the "unknown" region of the mixed sample, which a model trained on these should call "none".
SAMPLE_CLASSES = ("ferrite", "pearlite", "spheroidite")
UNKNOWN_CLASS = "martensite"
PIXEL_SIZES_UM = (0.06, 0.1, 0.16)


def sample_micrographs(per_class: int = 4, shape=(384, 384), seed: int = 7) -> list[tuple[Any, dict, str]]:
    """Generated micrographs, ``per_class`` of each class, at three magnifications."""
    import numpy as np

    from ..core.micrograph.synthetic import make_micrograph

    rng = np.random.default_rng(seed)
    layers = []
    for cls in SAMPLE_CLASSES:
        for i in range(per_class):
            p = PIXEL_SIZES_UM[i % len(PIXEL_SIZES_UM)]
            image = make_micrograph(cls, shape, p, seed=int(rng.integers(2**31)))
            layers.append((image, {
                "name": f"{cls} {i + 1}", "scale": (p, p), "units": ("um", "um"),
                "metadata": {"class": cls, "pixel_size_um": p},
            }, "image"))
    return layers


def _scale_bar() -> None:
    from ._kit import show_scale_bar_in_current_viewer

    show_scale_bar_in_current_viewer()


def make_sample_micrographs() -> list[tuple[Any, dict, str]]:
    """npe2 sample-data hook: twelve labelled micrographs (three classes), in micrometres."""
    _scale_bar()
    return sample_micrographs()


def mixed_micrograph(shape=(768, 1024), pixel_size_um: float = 0.1, seed: int = 11):
    """Ferrite on the left, pearlite in the middle, an untrained texture (martensite) on the right.

    Returns the image and the truth labels (1 ferrite, 2 pearlite, 3 unknown).
    """
    import numpy as np

    from ..core.micrograph.synthetic import make_micrograph

    rng = np.random.default_rng(seed)
    parts = [make_micrograph(c, shape, pixel_size_um, seed=int(rng.integers(2**31)))
             for c in ("ferrite", "pearlite", UNKNOWN_CLASS)]
    truth = np.ones(shape, dtype=np.uint8)
    w = shape[1]
    truth[:, w * 2 // 5 : w * 4 // 5] = 2
    truth[:, w * 4 // 5 :] = 3
    image = np.choose(truth - 1, parts).astype(np.uint8)
    return image, truth


def make_sample_mixed() -> list[tuple[Any, dict, str]]:
    """npe2 sample-data hook: one mixed micrograph, in micrometres."""
    _scale_bar()
    image, _ = mixed_micrograph()
    p = 0.1
    return [(image, {"name": "mixed micrograph", "scale": (p, p), "units": ("um", "um"),
                     "metadata": {"pixel_size_um": p}}, "image")]
