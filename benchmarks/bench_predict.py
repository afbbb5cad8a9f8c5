"""predict_proba with 256 crops of a 1024 x 1024 image on 2 CPU cores, each backbone.

Target (issue 2): at most 1.5 s with the compact backbone (the default of that time). The
default model today (``FewShotClassifier()``: frozen ImageNet features, the ensemble scorer) is
printed first.
"""

from __future__ import annotations

from _common import header, timed

from napari_microstructure import FewShotClassifier
from napari_microstructure.core.micrograph.synthetic import make_dataset, make_micrograph


def main() -> None:
    header("predict_proba: 256 crops of a 1024 x 1024 image")
    images, labels, sizes = make_dataset(("ferrite", "pearlite"), per_class=2, shape=(512, 512), seed=0)
    image = make_micrograph("pearlite", (1024, 1024), 0.1, seed=3)
    for backbone in ("imagenet-frozen", "compact", "efficientnet-lite0"):
        clf = FewShotClassifier(backbone=backbone, max_epochs=1, steps_per_epoch=1, batch_size=8,
                                device="cpu", n_crops=256)
        clf.fit(images, labels, sizes)  # a barely trained model: only speed is measured here
        clf.predict_proba(image, 0.1, n_crops=16)  # warm-up
        _, seconds = timed(clf.predict_proba, image, 0.1, repeat=2)
        target = " (target <= 1.5 s)" if backbone == "compact" else ""
        name = f"{backbone} (default)" if backbone == FewShotClassifier().backbone else backbone
        print(f"{name:>27}: {seconds:.2f} s for 256 crops of {clf.input_size} x {clf.input_size}"
              f" = {256 / seconds:.0f} crops/s{target}")


if __name__ == "__main__":
    main()
