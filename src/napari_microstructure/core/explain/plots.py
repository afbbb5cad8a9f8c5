"""Matplotlib figures of the explanations (no pyplot: safe in threads and headless).

Every function returns a :class:`matplotlib.figure.Figure`; pass ``fig=`` to
draw into an existing one (the napari widget's canvas). Attributions use a
diverging red/blue map centred on zero: red raises the class, blue lowers it.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

ATTRIBUTION_CMAP = "bwr"


def _figure(fig: Optional[Figure], size: tuple[float, float]) -> Figure:
    if fig is None:
        return Figure(figsize=size, layout="constrained")
    fig.clear()
    return fig


def attribution_limit(values: np.ndarray, percentile: float = 99.5) -> float:
    """Symmetric colour limit of an attribution map (robust to a few extreme pixels)."""
    v = np.abs(np.asarray(values, np.float64))
    v = v[np.isfinite(v)]
    lim = float(np.percentile(v, percentile)) if v.size else 0.0
    return lim if lim > 0 else 1e-12


def plot_descriptor_map(dmap: Any, fig: Optional[Figure] = None, selected: Optional[int] = None,
                        show_crops: bool = True) -> Figure:
    """Training descriptors by class over the mixture's log-likelihood, the threshold, an image's crops.

    The image crops are drawn with ``picker`` enabled (``gid="crops"``) so a
    canvas can report which one was clicked; ``selected`` highlights one
    and shows it in an inset.
    """
    show_selected = (selected is not None and show_crops and dmap.crops is not None
                     and 0 <= selected < len(dmap.crops_xy))
    fig = _figure(fig, (8.4 if show_selected else 6.4, 5.2))
    if show_selected:
        grid = fig.add_gridspec(1, 2, width_ratios=(4.0, 1.4))
        ax = fig.add_subplot(grid[0, 0])
        crop_ax = fig.add_subplot(grid[0, 1])
    else:
        ax = fig.add_subplot(1, 1, 1)
    X, Y = np.meshgrid(dmap.grid_x, dmap.grid_y)
    ll = dmap.log_likelihood
    floor = min(dmap.threshold, float(np.percentile(ll, 50))) - 5.0
    levels = np.linspace(floor, float(ll.max()), 14)
    cf = ax.contourf(X, Y, np.maximum(ll, floor), levels=levels, cmap="Greys", alpha=0.55)
    cbar = fig.colorbar(cf, ax=ax, shrink=0.85, format="%.3g")
    cbar.set_label("mixture log-likelihood")
    ax.contour(X, Y, ll, levels=[dmap.threshold], colors="k", linewidths=1.8, linestyles="--")
    colours = [f"C{i}" for i in range(10)]
    for k, name in enumerate(dmap.classes):
        sel = dmap.training_labels == k
        ax.scatter(*dmap.training_xy[sel].T, s=9, alpha=0.55, color=colours[k % 10], label=str(name),
                   edgecolors="none")
        ax.scatter(*dmap.means_xy[k], marker="P", s=140, color=colours[k % 10], edgecolors="k", linewidths=1)
    ax.plot([], [], "k--", label="threshold (none below)")
    if show_crops and dmap.crops_xy is not None:
        acc = dmap.crops.accepted
        ax.scatter(*dmap.crops_xy[acc].T, marker="*", s=90, color="gold", edgecolors="k", linewidths=0.6,
                   label="image crops (accepted)", zorder=4)
        if (~acc).any():
            ax.scatter(*dmap.crops_xy[~acc].T, marker="X", s=60, color="magenta", edgecolors="k",
                       linewidths=0.6, label="image crops (rejected: none)", zorder=4)
        # an invisible layer with every crop, for picking in index order
        ax.scatter(*dmap.crops_xy.T, s=90, alpha=0.0, picker=6, gid="crops", zorder=5)
        if show_selected:
            ax.scatter(*dmap.crops_xy[selected], s=320, facecolors="none", edgecolors="red", linewidths=2,
                       zorder=6)
            c = dmap.crops
            names = list(dmap.classes) + ["none"]
            crop_ax.imshow(c.crops[selected], cmap="gray", vmin=0, vmax=1)
            crop_ax.set_xticks([])
            crop_ax.set_yticks([])
            for side in crop_ax.spines.values():
                side.set_edgecolor("red")
                side.set_linewidth(2)
            crop_ax.set_title(f"crop {selected}\n{c.fov_um[selected]:.3g} um field of view", fontsize=8)
            crop_ax.set_xlabel(f"{names[int(np.argmax(c.probabilities[selected]))]}\n"
                               f"log-likelihood {c.log_likelihood[selected]:.2f}", fontsize=8)
    if dmap.explained_variance_ratio is not None:
        e = dmap.explained_variance_ratio
        ax.set_xlabel(f"PC 1 ({100 * e[0]:.1f} % of variance)")
        ax.set_ylabel(f"PC 2 ({100 * e[1]:.1f} % of variance)")
        ax.set_title(f"{dmap.dimension}-D descriptors, PCA projection")
    else:
        ax.set_xlabel("descriptor 1")
        ax.set_ylabel("descriptor 2")
        ax.set_title("2-D descriptors and the open-set mixture")
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    return fig


def draw_attribution(ax: Any, attr: Any, limit: Optional[float] = None, alpha: float = 0.65,
                     colorbar: bool = True) -> Any:
    """Draw one :class:`~.attribution.Attribution` as a red/blue overlay on its grey input."""
    lim = attribution_limit(attr.attributions) if limit is None else float(limit)
    ax.imshow(attr.image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    im = ax.imshow(attr.attributions, cmap=ATTRIBUTION_CMAP, norm=TwoSlopeNorm(0.0, -lim, lim),
                   alpha=alpha, interpolation="nearest")
    p = float(attr.probabilities[attr.target_index])
    method = "IG" if attr.method == "integrated-gradients" else "GradientSHAP"
    ax.set_title(f"{method}: {attr.target} (p = {p:.2f})", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, shrink=0.8)
        cb.set_label(f"attribution to {attr.score_name}", fontsize=8)
    return im


def plot_attribution(attributions: Union[Any, Sequence[Any]], fig: Optional[Figure] = None,
                     shared_limit: bool = True) -> Figure:
    """One or several attributions side by side (e.g. predicted and runner-up class)."""
    items = list(attributions) if isinstance(attributions, (list, tuple)) else [attributions]
    fig = _figure(fig, (4.2 * len(items) + 0.6, 4.0))
    lim = max(attribution_limit(a.attributions) for a in items) if shared_limit else None
    for i, a in enumerate(items):
        draw_attribution(fig.add_subplot(1, len(items), i + 1), a, lim)
    return fig


def _grid(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def plot_kernels(kernels: Any, fig: Optional[Figure] = None, max_kernels: int = 64) -> Figure:
    """The first layer's grey-equivalent kernels, each on a symmetric red/blue scale."""
    g = kernels.grey[:max_kernels]
    rows, cols = _grid(len(g))
    fig = _figure(fig, (1.0 * cols + 0.8, 1.0 * rows + 0.6))
    lim = float(np.abs(g).max()) or 1.0
    for i, k in enumerate(g):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(k, cmap=ATTRIBUTION_CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=7, pad=1)
    fig.suptitle(f"first-layer kernels ({kernels.layer}, {g.shape[1]}x{g.shape[2]})", fontsize=10)
    return fig


def plot_feature_maps(maps: Any, fig: Optional[Figure] = None, max_maps: int = 16) -> Figure:
    """The input and the first ``max_maps`` channels of one layer's activation."""
    m = maps.maps[:max_maps]
    rows, cols = _grid(len(m) + 1)
    fig = _figure(fig, (1.5 * cols + 0.4, 1.5 * rows + 0.6))
    ax = fig.add_subplot(rows, cols, 1)
    ax.imshow(maps.input, cmap="gray", vmin=0, vmax=1)
    ax.set_title("input", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    for i, fmap in enumerate(m):
        ax = fig.add_subplot(rows, cols, i + 2)
        ax.imshow(fmap, cmap="viridis", interpolation="nearest")
        ax.set_title(f"channel {i}", fontsize=7, pad=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"feature maps of {maps.layer} {tuple(maps.maps.shape)}", fontsize=10)
    return fig


def plot_kernel_pairs(pairs: Any, fig: Optional[Figure] = None, labels: tuple[str, str] = ("model A", "model B")
                      ) -> Figure:
    """The most similar kernel pairs of two models, one pair per column."""
    n = len(pairs.pairs)
    fig = _figure(fig, (1.2 * n + 0.6, 2.9))
    lim = float(max(np.abs(pairs.kernels_a).max(), np.abs(pairs.kernels_b).max())) or 1.0
    for c, (i, j, d) in enumerate(pairs.pairs):
        panels = ((pairs.kernels_a[i], f"{labels[0]} #{i}"), (pairs.kernels_b[j], f"{labels[1]} #{j}"))
        for r, (k, lab) in enumerate(panels):
            ax = fig.add_subplot(2, n, r * n + c + 1)
            ax.imshow(k, cmap=ATTRIBUTION_CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(lab, fontsize=7, pad=1)
            if r == 1:
                ax.set_xlabel(f"d = {d:.2f}", fontsize=7)
    fig.suptitle("most similar first-layer kernels (Euclidean distance)", fontsize=10)
    return fig


def plot_reduction(report: Any, fig: Optional[Figure] = None) -> Figure:
    """Accuracy against the number of features (and the explained variance kept)."""
    fig = _figure(fig, (5.2, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(report.n_features, report.accuracy, "o-", color="C0", label="test accuracy")
    if report.full_accuracy is not None:
        ax.axhline(report.full_accuracy, color="C0", ls=":",
                   label=f"all {report.n_total_features} features")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("principal components kept" if report.kind == "principal components" else "descriptor dimension")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    if report.explained_variance is not None:
        ax2 = ax.twinx()
        ax2.plot(report.n_features, report.explained_variance, "s--", color="C1", label="explained variance")
        ax2.set_ylabel("cumulative explained variance", color="C1")
        ax2.set_ylim(-0.02, 1.02)
        ax2.legend(loc="lower right", fontsize=8)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"feature reduction: {report.kind}")
    return fig


def plot_confusion(report: Any, fig: Optional[Figure] = None) -> Figure:
    """Confusion matrix of a generalisation report (rows: truth; columns: prediction)."""
    cm = np.asarray(report.confusion)
    fig = _figure(fig, (1.0 + 0.8 * cm.shape[1], 1.2 + 0.7 * cm.shape[0]))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(cm, cmap="Blues", vmin=0)
    for (r, c), v in np.ndenumerate(cm):
        ax.text(c, r, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(cm.shape[1]), [str(c) for c in report.predicted_classes], rotation=30, ha="right")
    ax.set_yticks(range(cm.shape[0]), [str(c) for c in report.true_classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"trained on {report.train_name}, tested on {report.test_name}\n"
                 f"accuracy {100 * report.accuracy:.1f} %", fontsize=9)
    return fig


def save_figure(fig: Figure, path: Union[str, os.PathLike], dpi: int = 120) -> None:
    """Write a figure as PNG (or any format matplotlib knows from the suffix)."""
    fig.savefig(os.fspath(path), dpi=dpi)
