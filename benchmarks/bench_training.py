"""Training time on 2 CPU cores: 5 classes x 20 generated 512 x 512 micrographs, to early stopping.

Target (issue 2): at most 3 minutes with the default configuration.
"""

from __future__ import annotations

import numpy as np
from _common import header, timed

from napari_microstructure import FewShotClassifier
from napari_microstructure.core.micrograph.synthetic import CLASSES, make_dataset


def main() -> None:
    header("training: 5 classes x 20 images of 512 x 512, default FewShotClassifier")
    images, labels, sizes = make_dataset(CLASSES, per_class=20, shape=(512, 512),
                                         pixel_size_range_um=(0.05, 0.2), seed=0)
    clf = FewShotClassifier(device="cpu")
    _, seconds = timed(clf.fit, images, labels, sizes)
    h = clf.history_
    print(f"backbone {clf.backbone}, loss {clf.loss}/{clf.mining}, input {clf.input_size}, "
          f"{clf.steps_per_epoch} x {clf.batch_size} crops per epoch")
    print(f"epochs run: {len(h.train_loss)} (best {h.best_epoch + 1}, stopped early: {h.stopped_early})")
    print(f"training time: {seconds:.1f} s (target <= 180 s) -> {'OK' if seconds <= 180 else 'OVER'}")
    test_images, test_labels, test_sizes = make_dataset(CLASSES, per_class=6, shape=(512, 512),
                                                        pixel_size_range_um=(0.05, 0.2), seed=1)
    pred = [clf.predict(im, p) for im, p in zip(test_images, test_sizes)]
    print(f"held-out accuracy (30 new images): {np.mean([a == b for a, b in zip(pred, test_labels)]):.3f}")


if __name__ == "__main__":
    main()
