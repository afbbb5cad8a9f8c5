"""Generate the figures of docs/explanations.md (``docs/images/explain-*.png``).

Run from the repository root::

    python scripts/make_explain_figures.py            # about 5-10 minutes on 2 CPU cores

It trains a small micrograph model on the plugin's sample micrographs and a
small EBSD model on simulated patterns, then draws the four kinds of
explanation: the descriptor map, attributions, kernels and feature maps, and
the feature-reduction and generalisation reports. Everything is seeded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from matplotlib.figure import Figure

from napari_microstructure._napari._sample_data import sample_micrographs
from napari_microstructure.core import explain as ex
from napari_microstructure.core.ebsd.classifier import EBSDClassifier
from napari_microstructure.core.ebsd.simulate import make_sample_data
from napari_microstructure.core.micrograph.fewshot import FewShotClassifier
from napari_microstructure.core.micrograph.synthetic import make_composite, make_micrograph

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def log(msg: str, t0: float) -> None:
    print(f"[{time.time() - t0:6.1f} s] {msg}", flush=True)


def micrographs(out: Path, t0: float, quick: bool, cache: Optional[Path] = None) -> None:
    layers = sample_micrographs(per_class=3, shape=(384, 384))
    images = [d for d, _, _ in layers]
    labels = [k["metadata"]["class"] for _, k, _ in layers]
    sizes = [k["scale"][0] for _, k, _ in layers]
    path = cache / "micrograph.pt" if cache is not None else None
    if path is not None and path.exists():
        clf = FewShotClassifier.load(path, device="cpu")
    else:
        clf = FewShotClassifier(input_size=64, embedding_dim=2, max_epochs=4 if quick else 25,
                                steps_per_epoch=12, batch_size=32, patience=8, n_crops=64, seed=0, device="cpu")
        clf.fit(images, labels, sizes)
        if path is not None:
            clf.save(path)
    log(f"micrograph model: {clf.classes_}, map field of view {clf.map_fov_um_:.2f} um", t0)

    # 1. descriptor map: crops of a new pearlite image and of an unknown class (porous)
    new = make_micrograph("pearlite", (384, 384), 0.1, seed=123)
    dmap = ex.descriptor_map(clf, new, 0.1, n_crops=60, seed=1)
    unknown = ex.sample_image_crops(clf, make_micrograph("porous", (384, 384), 0.1, seed=5), 0.1, 40, seed=2)
    fig = ex.plot_descriptor_map(dmap, selected=int(np.argmax(dmap.crops.log_likelihood)))
    ax = fig.axes[0]
    ax.scatter(*unknown.descriptors[:, :2].T, marker="v", s=40, color="white", edgecolors="k",
               label=f"porous crops ({100 * (~unknown.accepted).mean():.0f} % rejected)", zorder=4)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    ex.save_figure(fig, out / "explain-descriptor-map.png")
    log(f"descriptor map: pearlite crops accepted {dmap.crops.accepted.mean():.2f}, "
        f"porous rejected {(~unknown.accepted).mean():.2f}", t0)

    # 2. attribution of a two-phase image, predicted and runner-up class
    comp, _ = make_composite("ferrite", "pearlite", (256, 384), 0.1, seed=3)
    background = ex.micrograph_background(clf, images, sizes, n_per_image=4)   # 36 crops of the sample images
    atts = ex.explain_top_classes(clf, comp, "gradient-shap", pixel_size=0.1, n_samples=32, background=background)
    fig = ex.plot_attribution(atts, shared_limit=False)
    fig.suptitle("GradientSHAP of the log posterior against 36 crops of the sample images; "
                 "left half ferrite, right half pearlite", fontsize=9)
    ex.save_figure(fig, out / "explain-attribution-micrograph.png")
    log(f"micrograph attribution: {[(a.target, round(float(a.probabilities[a.target_index]), 2)) for a in atts]}",
        t0)


def ebsd(out: Path, t0: float, quick: bool, cache: Optional[Path] = None) -> None:
    # the plugin's EBSD sample: a Ni (225) map with Ni3Al (221) precipitates, and reference patterns
    sample = make_sample_data()
    train_p, train_g = sample["train_patterns"], sample["train_labels"].astype(int)
    h, w = train_p.shape[1:]
    map_p, map_g = sample["patterns"].reshape(-1, h, w), sample["phase_map"].ravel().astype(int)
    path = cache / "ebsd.pt" if cache is not None else None
    if path is not None and path.exists():
        clf = EBSDClassifier.load(path, device="cpu")
    else:
        clf = EBSDClassifier(backbone="compact", input_size=40, n_models=2, max_epochs=3 if quick else 20,
                             patience=5, batch_size=32, seed=0, device="cpu")
        clf.fit(train_p, train_g)
        if path is not None:
            clf.save(path)
    log(f"EBSD model trained on {len(train_p)} reference patterns", t0)

    # attributions of a precipitate pattern: GradientSHAP against 50 background patterns per phase
    index = int(np.nonzero(map_g == 221)[0][len(np.nonzero(map_g == 221)[0]) // 2])
    bg = ex.background_set(train_p, train_g, per_class=50)
    atts = ex.explain_top_classes(clf, map_p[index], "gradient-shap", background=bg, n_samples=64)
    fig = ex.plot_attribution(atts)
    fig.suptitle(f"map pattern {index} (true space group {map_g[index]}): GradientSHAP, "
                 "50 background patterns per class", fontsize=10)
    ex.save_figure(fig, out / "explain-attribution-ebsd.png")
    log(f"EBSD attribution: true {map_g[index]}, {[a.target for a in atts]}", t0)

    # filters: kernels, feature maps, most similar kernels of the two ensemble members
    ex.save_figure(ex.plot_kernels(ex.first_layer_kernels(clf)), out / "explain-kernels.png")
    ex.save_figure(ex.plot_feature_maps(ex.feature_maps(clf, map_p[index], "features.2"), max_maps=15),
                   out / "explain-feature-maps.png")
    pairs = ex.similar_kernel_pairs(clf, clf, n_pairs=8, member_a=0, member_b=1)
    ex.save_figure(ex.plot_kernel_pairs(pairs, labels=("member 1", "member 2")), out / "explain-kernel-pairs.png")
    log("filters drawn", t0)

    # feature reduction (tested on the map) and generalisation to another material pair
    red = ex.pca_reduction_report(clf, (train_p, train_g), (map_p, map_g), n_components=(1, 2, 3, 4, 8, 16, 32))
    ex.save_figure(ex.plot_reduction(red), out / "explain-reduction.png")
    log(f"reduction: {dict(zip(red.n_features.tolist(), red.accuracy.round(2).tolist()))}, "
        f"all {red.full_accuracy:.2f}", t0)
    same = ex.generalisation_report(clf, None, (map_p, map_g), "Ni / Ni3Al references", "Ni / Ni3Al map")
    other = make_sample_data({"matrix": "Cu", "precipitate": "Cu3Au"})
    other_p = other["patterns"].reshape(-1, h, w)
    other_g = other["phase_map"].ravel().astype(int)
    gen = ex.generalisation_report(clf, None, (other_p, other_g), "Ni / Ni3Al references", "Cu / Cu3Au map")
    fig = Figure(figsize=(8.4, 3.6), layout="constrained")
    sub = fig.subfigures(1, 2)
    ex.plot_confusion(same, fig=sub[0])
    ex.plot_confusion(gen, fig=sub[1])
    ex.save_figure(fig, out / "explain-generalisation.png")
    log(f"generalisation: same sample {same.accuracy:.2f}, other material {gen.accuracy:.2f}", t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="few epochs (for checking the script)")
    parser.add_argument("--only", choices=("micrographs", "ebsd"), default=None)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the trained models in this folder and reuse them on the next run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    t0 = time.time()
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "micrographs"):
        micrographs(args.out, t0, args.quick, args.cache)
    if args.only in (None, "ebsd"):
        ebsd(args.out, t0, args.quick, args.cache)
    log(f"figures in {args.out}", t0)


if __name__ == "__main__":
    main()
