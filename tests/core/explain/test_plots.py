"""Every explanation figure renders to a non-blank PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from napari_microstructure.core.nn.backbones import CompactCNN
from napari_microstructure.core.explain import (
    GeneralisationReport, ReductionReport, TorchAdapter, attribution, descriptor_map, feature_maps,
    first_layer_kernels, plot_attribution, plot_confusion, plot_descriptor_map, plot_feature_maps,
    plot_kernel_pairs, plot_kernels, plot_reduction, save_figure, similar_kernel_pairs,
)


def _check_png(fig, path):
    save_figure(fig, path, dpi=60)
    img = imread(path)[..., :3]
    assert img.shape[0] > 100 and img.shape[1] > 100
    non_white = (img < 0.95).any(-1).mean()
    assert non_white > 0.05, f"{path.name} is nearly blank"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # more than a few flat colours


@pytest.fixture(scope="module")
def micro():
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier
    from napari_microstructure.core.micrograph.synthetic import make_dataset

    images, labels, sizes = make_dataset(("ferrite", "pearlite"), per_class=2, shape=(96, 96), seed=2)
    clf = FewShotClassifier(input_size=32, embedding_dim=2, max_epochs=1, steps_per_epoch=1, batch_size=8,
                            augment=False, seed=0, device="cpu")
    return clf.fit(images, labels, sizes), images, sizes


def test_descriptor_map_figure(micro, tmp_path):
    clf, images, sizes = micro
    dm = descriptor_map(clf, images[0], sizes[0], n_crops=10)
    _check_png(plot_descriptor_map(dm, selected=2), tmp_path / "map.png")


def test_attribution_figure(tmp_path, rng):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = CompactCNN()
            self.fc = torch.nn.Linear(128, 3)

        def forward(self, x):
            return self.fc(self.backbone.forward_features(self.backbone.prepare(x)).mean((2, 3)))

    torch.manual_seed(0)
    adapter = TorchAdapter(Net().eval(), ["x", "y", "z"], 64)
    x = rng.random((64, 64)).astype(np.float32)
    res = [attribution(adapter, x, c, n_steps=8) for c in ("x", "y")]
    _check_png(plot_attribution(res), tmp_path / "attr.png")


def test_kernel_and_feature_map_figures(tmp_path, rng):
    torch.manual_seed(0)
    a, b = CompactCNN().eval(), CompactCNN().eval()
    _check_png(plot_kernels(first_layer_kernels(a)), tmp_path / "kernels.png")
    _check_png(plot_kernel_pairs(similar_kernel_pairs(a, b, 6)), tmp_path / "pairs.png")
    adapter = TorchAdapter(a, ["a"], 64)
    _check_png(plot_feature_maps(feature_maps(adapter, rng.random((64, 64)), 0)), tmp_path / "maps.png")


def test_report_figures(tmp_path):
    red = ReductionReport("principal components", np.array([1, 2, 4, 8]), np.array([0.4, 0.6, 0.8, 0.9]),
                          np.array([0.3, 0.5, 0.7, 0.9]), 0.92, 128)
    _check_png(plot_reduction(red), tmp_path / "red.png")
    gen = GeneralisationReport("A", "B", ["a", "b"], ["a", "b", "none"], np.array([[5, 1, 0], [2, 3, 1]]), 8 / 12,
                               np.array([]), np.array([]))
    _check_png(plot_confusion(gen), tmp_path / "cm.png")


def _rendered(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_dock_width_figures_on_a_dark_theme(micro, tmp_path, rng):
    """At a dock's width (4 inches) the titles fit and do not overlap; the dark theme recolours the text."""
    from matplotlib.colors import to_hex

    from napari_microstructure.core.colours import CLASS_COLOURS
    from napari_microstructure.core.explain.plots import DARK_THEME, apply_theme

    clf, images, sizes = micro
    dm = descriptor_map(clf, images[0], sizes[0], n_crops=10)
    fig = apply_theme(plot_descriptor_map(dm, selected=2, narrow=True))
    assert tuple(fig.get_size_inches()) == pytest.approx((4.0, 6.4))
    renderer = _rendered(fig)
    width = fig.bbox.width
    for ax in fig.axes:
        box = ax.title.get_window_extent(renderer)
        if ax.get_title():
            assert box.x0 >= -1 and box.x1 <= width + 1, f"title {ax.get_title()!r} is clipped"
            assert to_hex(ax.title.get_color()) == DARK_THEME[1]
    assert to_hex(fig.get_facecolor()) == DARK_THEME[0]
    # the training descriptors use the plugin's class colours (the probability maps' legend)
    scatter_colours = {to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections
                       if len(c.get_facecolor()) and c.get_label() in dm.classes}
    assert scatter_colours <= set(CLASS_COLOURS) and scatter_colours

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = CompactCNN()
            self.fc = torch.nn.Linear(128, 2)

        def forward(self, x):
            return self.fc(self.backbone.forward_features(self.backbone.prepare(x)).mean((2, 3)))

    torch.manual_seed(0)
    adapter = TorchAdapter(Net().eval(), ["ferrite", "spheroidite"], 64)
    res = [attribution(adapter, rng.random((64, 64)).astype(np.float32), c, n_steps=4)
           for c in ("ferrite", "spheroidite")]
    fig = apply_theme(plot_attribution(res, columns=2))
    renderer = _rendered(fig)
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2 and not _boxes_overlap(*titles)
    assert all(t.x0 >= -1 and t.x1 <= fig.bbox.width + 1 for t in titles)
    assert len(fig.axes) == 3  # two panels and one shared colour bar
