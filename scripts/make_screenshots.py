"""Screenshots of every workflow for ``docs/tour.md``, taken in a 1920 x 1080 napari window.

Usage (from the repository root; about three minutes on two CPU cores)::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1080x24" \\
        .venv/bin/python scripts/make_screenshots.py [MODEL] [--only ebsd,explain] [--save-model PATH]

With a model file the micrograph shots use it; without one a small model is
trained first on the sample micrographs (as the training shot shows). Writes
``docs/images/tour-*.png`` and prints what each shot shows (area fractions,
EBSD phase fractions) so the tour's captions can be checked against it.
Jobs run synchronously (``NAPARI_MICROSTRUCTURE_SYNC=1``) so each shot shows
a finished result.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("NAPARI_MICROSTRUCTURE_SYNC", "1")

import napari  # noqa: E402
import numpy as np  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
SCREEN = (1920, 1080)
#: the training settings of the tour: the defaults (frozen ImageNet features: seconds on a CPU)
#: with the paper's 2-D descriptors, which the descriptor map draws as they are
TOUR_TRAINING = {"input_size": 96, "embedding_dim": 2, "max_epochs": 40, "device": "cpu", "seed": 0}


def settle(rounds: int = 40) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


def new_viewer() -> napari.Viewer:
    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*SCREEN)
    window.move(0, 0)
    settle()
    return viewer


def dock(viewer: napari.Viewer, name: str, tabify: bool = False) -> Any:
    """Dock a plugin widget the way a user does (Plugins menu)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-microstructure", name, tabify=tabify)
    settle()
    return widget


def shoot(viewer: napari.Viewer, name: str) -> Path:
    settle()
    path = IMAGES / name
    viewer.window._qt_window.grab().save(str(path))
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def open_sample(viewer: napari.Viewer, key: str) -> None:
    viewer.open_sample("napari-microstructure", key)
    settle()


def training_shot(model_path: Optional[str]) -> Any:
    """Training widget after training on the sample micrographs, one layer classified."""
    viewer = new_viewer()
    open_sample(viewer, "micrographs")
    grid = getattr(getattr(viewer, "canvas", None), "grid", None) or viewer.grid
    grid.enabled = True
    dock(viewer, "Probability maps")  # a second dock, in a tab behind the training widget
    widget = dock(viewer, "Few-shot training", tabify=True)
    if model_path:
        widget.load_model(model_path)
    else:
        widget.classifier_options.update({k: v for k, v in TOUR_TRAINING.items()
                                          if k not in ("input_size", "embedding_dim", "max_epochs")})
        widget.input_size.setValue(TOUR_TRAINING["input_size"])
        widget.embedding_dim.setValue(TOUR_TRAINING["embedding_dim"])
        widget.epochs.setValue(TOUR_TRAINING["max_epochs"])
        widget.train()
    viewer.layers.selection.active = viewer.layers["pearlite 2"]
    widget.classify()
    settle()
    shoot(viewer, "tour-training.png")
    print("  classified 'pearlite 2':", {k: round(v, 3) for k, v in widget.probabilities.items()})
    clf = widget.classifier
    viewer.close()
    return clf


def probmap_shot(clf: Any) -> None:
    viewer = new_viewer()
    open_sample(viewer, "mixed")
    widget = dock(viewer, "Probability maps")
    widget.set_classifier(clf, "tour model")
    widget.augment_spin.setValue(2)
    widget.run()                       # the outlier slider stays at its default, 0.50
    viewer.reset_view()
    shoot(viewer, "tour-probmap.png")
    print(f"  area fractions at {widget.threshold:.2f}:", widget.fractions_table())
    viewer.close()


def explain_shots(clf: Any) -> None:
    viewer = new_viewer()
    open_sample(viewer, "micrographs")
    for layer in list(viewer.layers):
        if layer.name != "pearlite 2":
            viewer.layers.remove(layer)
    widget = dock(viewer, "Explain")
    widget.set_classifier(clf)
    widget.n_crops.setValue(48)
    widget.run_descriptor_map()
    widget.select_crop(int(np.argmax(widget.descriptor_map_result.crops.log_likelihood)))
    viewer.reset_view()
    shoot(viewer, "tour-explain-map.png")
    widget.method_combo.setCurrentText("GradientSHAP")
    widget.n_steps.setValue(16)
    widget.run_attributions()
    viewer.layers.remove("explain: selected crop")
    shoot(viewer, "tour-explain-attribution.png")
    print("  attributions:", [(a.target, round(float(a.probabilities[a.target_index]), 3))
                              for a in widget.attributions])
    viewer.close()


def train_classify_click_shoot(viewer: napari.Viewer, widget: Any, name: str) -> None:
    """Train and classify the EBSD sample, click map pixel (12, 20) as a user does, take the shot."""
    from types import SimpleNamespace

    widget.train()
    widget.classify()
    sg = viewer.layers["Ni-Ni3Al sample space groups"]
    widget._on_click(viewer, SimpleNamespace(position=(0.0, 0.0, *sg.data_to_world((12, 20)))))
    viewer.reset_view()
    shoot(viewer, name)


def ebsd_shot() -> None:
    viewer = new_viewer()
    open_sample(viewer, "ebsd_dual_phase")
    widget = dock(viewer, "EBSD space-group map")
    widget.backbone_combo.setCurrentText("compact")
    widget.size_spin.setValue(40)
    widget.epochs_spin.setValue(4)
    train_classify_click_shoot(viewer, widget, "tour-ebsd.png")
    rows = [(widget.fraction_table.item(r, 0).text(), widget.fraction_table.item(r, 2).text())
            for r in range(widget.fraction_table.rowCount())]
    print("  phase fractions:", rows)
    viewer.close()


def bands_shot() -> None:
    """The EBSD widget with the band-profile classifier: shipped model fine-tuned on the sample's labels."""
    from napari_microstructure._napari._ebsd_widget import BAND_PROFILES, SOURCE_LAYER

    viewer = new_viewer()
    open_sample(viewer, "ebsd_dual_phase")
    widget = dock(viewer, "EBSD space-group map")
    # what a user gets with nothing typed: band profiles by default, the projection centre from the sample
    assert widget.backbone_combo.currentText() == BAND_PROFILES, widget.backbone_combo.currentText()
    assert widget.pc_edit.text().strip(), "the sample's projection centre should fill the field"
    widget.source_combo.setCurrentText(SOURCE_LAYER)
    train_classify_click_shoot(viewer, widget, "ebsd-bands.png")
    truth = viewer.layers["Ni-Ni3Al true space groups"].data
    print(f"  pixel accuracy {np.mean(widget.result.labels == truth):.3f}")
    # the orientations the band classifier found, as an IPF-Z map (cube-on-cube precipitates vanish in it)
    viewer.layers["Ni-Ni3Al sample space groups"].visible = False
    viewer.layers["Ni-Ni3Al sample orientation IPF-Z"].visible = True
    viewer.layers.selection.active = viewer.layers["Ni-Ni3Al sample orientation IPF-Z"]
    shoot(viewer, "ebsd-orientations.png")
    viewer.close()


def reopen_shot(clf: Any, tmp: Path) -> None:
    """File > Open on the plugin's own probability-map TIFF."""
    from napari_microstructure._napari._sample_data import mixed_micrograph
    from napari_microstructure.io.probmap_tiff import write_probability_tiff

    image, _ = mixed_micrograph()
    result = clf_map(clf, image)
    path = write_probability_tiff(tmp / "mixed-maps.tif", result, threshold=0.3)
    viewer = new_viewer()
    viewer.open(str(path), plugin="napari-microstructure")
    viewer.reset_view()
    shoot(viewer, "tour-reopen.png")
    viewer.close()


def clf_map(clf: Any, image: np.ndarray) -> Any:
    from napari_microstructure.core.micrograph.probmap import probability_map

    return probability_map(clf, image, 0.1, n_augment=2)


SHOTS = ("training", "probmap", "explain", "ebsd", "bands", "reopen")


def main() -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", help="a micrograph model file (default: train one)")
    parser.add_argument("--only", default=",".join(SHOTS), help=f"comma-separated shots of {SHOTS}")
    parser.add_argument("--save-model", help="write the model of the training shot here (reuse it with MODEL)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    IMAGES.mkdir(parents=True, exist_ok=True)
    clf = None
    if not only & {"training", "probmap", "explain", "reopen"}:
        pass  # EBSD shots only: no micrograph model needed
    elif "training" in only or not args.model:
        clf = training_shot(args.model)
        if args.save_model:
            clf.save(args.save_model)
    else:
        from napari_microstructure import load_model

        clf = load_model(args.model, device="cpu")
    if "probmap" in only:
        probmap_shot(clf)
    if "explain" in only:
        explain_shots(clf)
    if "ebsd" in only:
        ebsd_shot()
    if "bands" in only:
        bands_shot()
    if "reopen" in only:
        with tempfile.TemporaryDirectory() as tmp:
            reopen_shot(clf, Path(tmp))


if __name__ == "__main__":
    main()
