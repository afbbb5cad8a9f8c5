"""Memory of preparing one micrograph for prediction: bytes per pixel at the peak.

``predict_proba`` and ``fit`` turn each image into a normalised float32 image
pyramid. Before the reliability work this made a float32 copy, then float64
copies in the percentile scaling (about 28 bytes per pixel measured on
2000 x 2000); now the image is converted once to float32 (block by block) and
scaled in place (:class:`~napari_microstructure.core.micrograph.crops.Micrograph`). Measured with ``tracemalloc`` (NumPy and torch CPU
allocations), on uint8 images of several sizes, plus the whole
``predict_proba`` call of a small model (64 crops).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
from _common import header

from napari_microstructure import FewShotClassifier
from napari_microstructure.core.micrograph.crops import Micrograph
from napari_microstructure.core.micrograph.synthetic import make_dataset


def peak_bytes(fn, *args, **kwargs) -> int:
    tracemalloc.start()
    fn(*args, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def prepare(image):
    return Micrograph(image, 0.1).pyramid


def main() -> None:
    header("image preparation memory")
    rng = np.random.default_rng(0)
    for side in (1000, 2000, 4000):
        image = (rng.random((side, side)) * 255).astype(np.uint8)
        peak = peak_bytes(prepare, image)
        print(f"prepare {side} x {side} uint8: peak {peak / 1e6:8.1f} MB = {peak / image.size:5.1f} bytes per pixel")
    images, labels, sizes = make_dataset(("ferrite", "pearlite"), per_class=3, shape=(128, 128), seed=0)
    clf = FewShotClassifier(input_size=64, max_epochs=1, steps_per_epoch=2, batch_size=8, device="cpu")
    clf.fit(images, labels, sizes)
    image = (rng.random((2000, 2000)) * 255).astype(np.uint8)
    peak = peak_bytes(clf.predict_proba, image, 0.1, n_crops=64)
    print(f"predict_proba 2000 x 2000 uint8 (64 crops): peak {peak / 1e6:.1f} MB = "
          f"{peak / image.size:.1f} bytes per pixel")


if __name__ == "__main__":
    main()
