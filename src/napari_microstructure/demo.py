"""The main job on bundled sample data: ``python -m napari_microstructure.demo``.

1. Generates the sample micrographs (four steel microstructures at three
   magnifications, see :mod:`napari_microstructure.core.micrograph.synthetic`).
2. Trains a few-shot model (triplet loss, magnification input, open-set mixture).
3. Predicts held-out images, one of them of a class that was never trained.
4. Computes the probability map of a mixed micrograph.
5. Classifies the bundled EBSD map (Ni with Ni3Al precipitates) into space
   groups with the shipped band-profile model, with no labels and fine-tuned on
   the sample's labelled patterns (150 per phase).
6. Writes ``report.md``, ``report.json``, PNG figures and the model to the
   output folder, and opens napari with the results when a display is available.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence


def _figures(out: Path, clf, rows, mixed, map_result) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    h = clf.history_
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(range(1, len(h.train_loss) + 1), h.train_loss, label="training")
    if h.val_loss:
        ax.plot(range(1, len(h.val_loss) + 1), h.val_loss, label="validation")
    ax.axvline(h.best_epoch + 1, color="0.6", ls=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{clf.loss} loss")
    ax.legend(frameon=False)
    ax.set_title("Training")
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png")
    plt.close(fig)
    written.append("loss_curve.png")

    labels = clf.labels_
    fig, axes = plt.subplots(2, len(rows), figsize=(2.3 * len(rows), 4.6), dpi=120,
                             gridspec_kw={"height_ratios": [1.2, 1]})
    for col, r in enumerate(rows):
        axes[0, col].imshow(r["image"], cmap="gray")
        axes[0, col].set_axis_off()
        ok = r["prediction"] == r["expected"]
        axes[0, col].set_title(f"{r['truth']}\n-> {r['prediction']}", fontsize=9,
                               color="tab:green" if ok else "tab:red")
        colors = ["tab:blue"] * (len(labels) - 1) + ["tab:gray"]
        axes[1, col].bar(range(len(labels)), r["probabilities"], color=colors)
        axes[1, col].set_xticks(range(len(labels)), labels, rotation=70, fontsize=7)
        axes[1, col].set_ylim(0, 1)
        if col:
            axes[1, col].set_yticklabels([])
    axes[1, 0].set_ylabel("probability")
    fig.suptitle("Held-out images: mean over random crops (last bar: none of these)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "predictions.png")
    plt.close(fig)
    written.append("predictions.png")

    from .core.explain import descriptor_map, plot_descriptor_map, save_figure

    unknown = next((r for r in rows if r["expected"] == "none"), None)
    dmap = (descriptor_map(clf, unknown["image"], unknown["pixel_size_um"]) if unknown is not None
            else descriptor_map(clf))
    fig = plot_descriptor_map(dmap)
    save_figure(fig, out / "descriptors.png")
    written.append("descriptors.png")

    if map_result is not None:
        image, _ = mixed
        probs = map_result.probabilities
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
        axes[0].imshow(image, cmap="gray")
        axes[0].set_title("mixed micrograph: ferrite | pearlite | untrained (martensite)", fontsize=9)
        k = probs.shape[0] - 1
        cmap = plt.get_cmap("tab10")
        rgb = np.zeros(probs.shape[1:] + (3,))
        for c in range(k):
            rgb += probs[c][..., None] * np.array(cmap(c)[:3])
        rgb += probs[k][..., None] * np.array([1.0, 0.0, 1.0])
        axes[1].imshow(image, cmap="gray")
        axes[1].imshow(np.clip(rgb, 0, 1), alpha=0.55)
        handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(c)) for c in range(k)]
        handles.append(plt.Rectangle((0, 0), 1, 1, color=(1, 0, 1)))
        axes[1].legend(handles, clf.labels_, loc="lower left", fontsize=7, framealpha=0.8)
        axes[1].set_title("crop-averaged probability map (magenta: none of these)", fontsize=9)
        for a in axes:
            a.set_axis_off()
        fig.tight_layout()
        fig.savefig(out / "probability_map.png")
        plt.close(fig)
        written.append("probability_map.png")
    return written


def _ebsd_demo(out: Path) -> tuple[dict, list[str]]:
    """Space-group maps of the bundled dual-phase sample: shipped model with no labels, then fine-tuned."""
    import numpy as np

    from ._napari._ebsd_sample import load_sample_arrays
    from .core.colours import NO_SOLUTION_COLOUR, label_colour
    from .core.ebsd.bandclassifier import BandProfileClassifier

    arrays = load_sample_arrays()
    truth = arrays["phase_map"].astype(int)
    pc = tuple(float(v) for v in arrays["projection_centre"])
    labels = arrays["train_labels"]
    runs = {}
    t = time.perf_counter()
    shipped = BandProfileClassifier.from_pretrained(pc=pc)
    runs["no labels (shipped model)"] = (shipped.classify_map(arrays["patterns"]), time.perf_counter() - t)
    t = time.perf_counter()
    tuned = BandProfileClassifier(pc=pc).fit(arrays["train_patterns"], labels)
    runs[f"fine-tuned on {len(labels) // len(np.unique(labels))} labelled patterns per phase"] = (
        tuned.classify_map(arrays["patterns"]), time.perf_counter() - t)
    true_fraction = float(np.mean(truth == 221))
    report = {"map_shape": list(truth.shape), "pattern_shape": list(arrays["patterns"].shape[2:]),
              "projection_centre": list(pc), "true_ni3al_fraction": round(true_fraction, 4), "runs": {}}
    for name, (res, seconds) in runs.items():
        labels_map = np.asarray(res.labels).astype(int)
        report["runs"][name] = {"pixel_accuracy": round(float(np.mean(labels_map == truth)), 4),
                                "ni3al_fraction": round(float(np.mean(labels_map == 221)), 4),
                                "no_solution_fraction": round(float(np.mean(labels_map == 0)), 4),
                                "seconds": round(seconds, 1)}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    values = [0, 221, 225, -1]  # -1: any other space group (a wrong one: the map holds 221 and 225)
    cmap = ListedColormap([NO_SOLUTION_COLOUR, label_colour(221, 0), label_colour(225, 1), "#7f7f7f"])
    panels = [("true phases", truth)] + [(name, np.asarray(res.labels).astype(int)) for name, (res, _) in runs.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), constrained_layout=True)
    for ax, (name, lab) in zip(axes, panels):
        shown = np.select([lab == v for v in values[:3]], [0, 1, 2], default=3)
        ax.imshow(shown, cmap=cmap, vmin=-0.5, vmax=3.5, interpolation="nearest")
        acc = "" if name == "true phases" else f"\naccuracy {np.mean(lab == truth):.3f}"
        ax.set_title(f"{name}{acc}", fontsize=10)
        ax.set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(4)]
    fig.legend(handles, ["no solution", "221 (Ni3Al)", "225 (Ni)", "other space group"], loc="lower center", ncol=4,
               fontsize=9,
               bbox_to_anchor=(0.5, -0.08))
    fig.savefig(out / "ebsd_map.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return report, ["ebsd_map.png"]


def run_demo(output: str = "demo-output", quick: bool = False, show: Optional[bool] = None) -> dict:
    """Train, predict and map on the sample data; returns the report as a dict."""
    import numpy as np

    from ._napari._sample_data import SAMPLE_CLASSES, UNKNOWN_CLASS, mixed_micrograph, sample_micrographs
    from .cli import TerminalProgress
    from .core.nn.device import describe, select_device
    from .core.micrograph.fewshot import FewShotClassifier
    from .core.micrograph.synthetic import make_micrograph

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    layers = sample_micrographs(per_class=4 if not quick else 3)
    images = [d for d, _, _ in layers]
    labels = [m["metadata"]["class"] for _, m, _ in layers]
    sizes = [m["scale"][0] for _, m, _ in layers]
    print(f"sample data: {len(images)} generated micrographs of {', '.join(SAMPLE_CLASSES)}; "
          f"device: {describe(select_device())}")
    # the defaults (frozen ImageNet features, trained head), with the paper's 2-D descriptors to draw
    clf = FewShotClassifier(embedding_dim=2,
                            max_epochs=6 if quick else 40, steps_per_epoch=8 if quick else 16,
                            patience=8)
    clf.fit(images, labels, sizes, progress=TerminalProgress())
    train_s = time.perf_counter() - t0
    model_path = clf.save(out / "model.pt")

    held_out = [(c, c, 0.08) for c in SAMPLE_CLASSES] + [(UNKNOWN_CLASS, "none", 0.1)]
    rows = []
    for i, (truth, expected, p) in enumerate(held_out):
        image = make_micrograph(truth, (512, 512), p, seed=1000 + i)
        t = time.perf_counter()
        answer = clf.predict_image(image, p)
        rows.append({"truth": truth, "expected": expected, "pixel_size_um": p, "image": image,
                     "prediction": answer.label,
                     "probabilities": answer.probabilities.tolist(), "seconds": time.perf_counter() - t})
    mixed = mixed_micrograph()
    map_result = None
    try:
        from .core.micrograph.probmap import probability_map

        map_result = probability_map(clf, mixed[0], 0.1)
    except ImportError:
        pass
    figures = _figures(out, clf, rows, mixed, map_result)
    ebsd, ebsd_figures = _ebsd_demo(out)
    figures += ebsd_figures

    correct = sum(r["prediction"] == r["expected"] for r in rows)
    report = {
        "classes": clf.classes_.tolist(),
        "training_images": len(images),
        "training_seconds": round(train_s, 1),
        "epochs": len(clf.history_.train_loss),
        "open_set": {"scorer": clf.scorer, "features": clf.scorer_features,
                     "novelty_threshold": clf.scorer_.novelty_threshold_,
                     "rule": clf.scorer_.describe(),
                     "image_rule": clf.image_rule},
        "held_out": [{k: v for k, v in r.items() if k != "image"} for r in rows],
        "held_out_correct": f"{correct}/{len(rows)}",
        "model": str(model_path),
        "figures": figures,
        "ebsd": ebsd,
    }
    if map_result is not None:
        report["map_fractions"] = {k: round(float(v), 3) for k, v in map_result.fractions.items()}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# napari-microstructure demo", "",
        f"Trained on {len(images)} generated micrographs ({', '.join(clf.classes_)}) in "
        f"{train_s:.0f} s ({report['epochs']} epochs, {clf.backbone} backbone, {clf.loss} loss).", "",
        "| image | expected | prediction | " + " | ".join(clf.labels_) + " |",
        "|---|---|---|" + "---|" * len(clf.labels_),
    ]
    for r in rows:
        lines.append(f"| {r['truth']} | {r['expected']} | {r['prediction']} | "
                     + " | ".join(f"{p:.2f}" for p in r["probabilities"]) + " |")
    rule = ("their most probable entry" if clf.image_rule == "most-probable" else
            f"'none' when the image's none score exceeds {clf.verdict_.none_above:.2f}, else the most probable class")
    lines += ["", f"Correct: {report['held_out_correct']} (the martensite image belongs to no trained class; "
              f"the right answer is 'none'). The probabilities are means over random crops; the answer is {rule} "
              f"(`image_rule={clf.image_rule!r}`).", ""]
    if map_result is not None:
        lines.append("Area fractions of the mixed micrograph: " + ", ".join(
            f"{k} {v:.0%}" for k, v in map_result.fractions.items()))
    lines += ["", f"EBSD: the bundled {ebsd['map_shape'][0]} x {ebsd['map_shape'][1]} map of "
              f"{ebsd['pattern_shape'][0]} x {ebsd['pattern_shape'][1]} patterns, a Ni (225) matrix with "
              f"{ebsd['true_ni3al_fraction']:.1%} Ni3Al (221) precipitates, classified pattern by pattern:", "",
              "| model | pixel accuracy | Ni3Al fraction | no solution | seconds |", "|---|---|---|---|---|"]
    for name, r in ebsd["runs"].items():
        lines.append(f"| {name} | {r['pixel_accuracy']:.3f} | {r['ni3al_fraction']:.1%} | "
                     f"{r['no_solution_fraction']:.1%} | {r['seconds']:.0f} |")
    lines += ["", "Ni3Al differs from Ni only by faint superlattice bands: with no labels the shipped model "
              "calls its patterns 225; labelled patterns of the map teach the difference.", "",
              "Figures: " + ", ".join(figures)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:4 + len(rows) + 2]))
    start = next(i for i, line in enumerate(lines) if line.startswith("EBSD:"))
    print("\n" + "\n".join(lines[start:start + 4 + len(ebsd["runs"])]))
    print(f"\nwrote {out.resolve()}/: report.md, report.json, model.pt, {', '.join(figures)}")

    if show is None:
        show = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and not os.environ.get("CI")
    if show:
        _open_napari(clf, layers, mixed, map_result)
    else:
        print("no display: napari was not opened; the results are in the files above")
    return report


def _open_napari(clf, layers, mixed, map_result) -> None:  # pragma: no cover - interactive
    try:
        import napari
    except ImportError:
        print("napari is not installed; install the 'all' extra to see the results in napari")
        return
    viewer = napari.Viewer(title="napari-microstructure demo")
    viewer.add_image(mixed[0], name="mixed micrograph", scale=(0.1, 0.1), units=("um", "um"))
    if map_result is not None:
        for k, name in enumerate(clf.labels_):
            viewer.add_image(map_result.probabilities[k], name=f"P({name})", scale=(0.1, 0.1),
                             blending="additive", contrast_limits=(0, 1),
                             colormap="magenta" if name == "none" else ["green", "cyan", "yellow", "red"][k % 4],
                             visible=k < 2 or name == "none")
    try:
        _, widget = viewer.window.add_plugin_dock_widget("napari-microstructure", "Few-shot training")
        widget.classifier = clf
    except Exception as exc:  # noqa: BLE001 - the demo still shows the layers
        print(f"could not dock the training widget: {exc}")
    napari.run()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="demo-output")
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    parser.add_argument("--no-viewer", action="store_true", help="do not open napari")
    args = parser.parse_args(argv)
    run_demo(args.output, quick=args.quick, show=False if args.no_viewer else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
