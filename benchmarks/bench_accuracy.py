"""Accuracy on a held-out split of a generated multi-class micrograph set.

Data: :func:`napari_microstructure.core.micrograph.synthetic.make_dataset`, 5 classes (ferrite,
pearlite, spheroidite, martensite, porous), 8 training and 6 test images per class,
384 x 384 pixels, pixel sizes log-uniform in 0.05-0.2 um (a factor of 4 in
magnification), different seeds for training and test.

Compared on the same split: EfficientNet-Lite0 from ImageNet weights, the same network
from scratch, the compact CNN from scratch (all cross-entropy heads on the descriptor,
open set on), and the classical baseline of local-binary-pattern histograms plus
k-nearest neighbours (uniform LBP, P=8, R=1 and R=3, on the image resampled to
0.1 um per pixel; k=3).
"""

from __future__ import annotations

import time

import numpy as np
from _common import header
from skimage.feature import local_binary_pattern
from skimage.transform import rescale
from sklearn.neighbors import KNeighborsClassifier

from napari_microstructure import FewShotClassifier
from napari_microstructure.core.micrograph.synthetic import CLASSES, make_dataset


def lbp_features(image: np.ndarray, pixel_size: float) -> np.ndarray:
    img = rescale(image.astype(float) / 255.0, pixel_size / 0.1, anti_aliasing=True)
    feats = []
    for radius in (1, 3):
        codes = local_binary_pattern((img * 255).astype(np.uint8), 8, radius, method="uniform")
        hist, _ = np.histogram(codes, bins=np.arange(11), density=True)
        feats.append(hist)
    return np.concatenate(feats)


def main() -> None:
    header("accuracy on held-out generated micrographs (5 classes)")
    train = make_dataset(CLASSES, per_class=8, shape=(384, 384), pixel_size_range_um=(0.05, 0.2), seed=0)
    test = make_dataset(CLASSES, per_class=6, shape=(384, 384), pixel_size_range_um=(0.05, 0.2), seed=1)
    configs = [
        ("EfficientNet-Lite0, ImageNet init", dict(backbone="efficientnet-lite0", pretrained=True)),
        ("EfficientNet-Lite0, from scratch", dict(backbone="efficientnet-lite0", pretrained=False)),
        ("compact CNN, from scratch", dict(backbone="compact")),
    ]
    for name, kw in configs:
        clf = FewShotClassifier(loss="cross-entropy", embedding_dim=8, input_size=96, max_epochs=25,
                                steps_per_epoch=10, batch_size=30, patience=6, device="cpu", n_crops=64, **kw)
        t = time.perf_counter()
        clf.fit(*train)
        fit_s = time.perf_counter() - t
        pred = [clf.predict(im, p) for im, p in zip(test[0], test[2])]
        acc = np.mean([a == b for a, b in zip(pred, test[1])])
        print(f"{name:>36}: accuracy {acc:.3f}  ({len(clf.history_.train_loss)} epochs, {fit_s:.0f} s)")
    knn = KNeighborsClassifier(n_neighbors=3)
    knn.fit([lbp_features(im, p) for im, p in zip(train[0], train[2])], train[1])
    pred = knn.predict([lbp_features(im, p) for im, p in zip(test[0], test[2])])
    print(f"{'LBP histograms + 3-NN':>36}: accuracy {np.mean(pred == np.array(test[1])):.3f}")


if __name__ == "__main__":
    main()
