"""Matplotlib figures of the explanations (no pyplot: safe in threads and headless).

Every function returns a :class:`matplotlib.figure.Figure`; pass ``fig=`` to
draw into an existing one (the napari widget's canvas). Attributions use a
diverging red/blue map centred on zero: red raises the class, blue lowers it.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
from matplotlib.colors import TwoSlopeNorm, to_rgba
from matplotlib.figure import Figure

from ..colours import CLASS_COLOURS, OUTLIER_COLOUR

ATTRIBUTION_CMAP = "bwr"
#: napari's dark theme (background, text): what :func:`apply_theme` uses by default
DARK_THEME = ("#262930", "#f0f1f2")


def apply_theme(fig: Figure, background: str = DARK_THEME[0], foreground: str = DARK_THEME[1]) -> Figure:
    """Recolour a drawn figure for a dark (or any) background: faces, text, ticks, spines, legends.

    Black lines and contours (thresholds, outlines) take the foreground colour;
    images keep their colours.
    """
    black = to_rgba("k")
    fig.set_facecolor(background)
    for text in fig.texts + ([fig._suptitle] if getattr(fig, "_suptitle", None) is not None else []):
        text.set_color(foreground)
    for ax in fig.axes:
        ax.set_facecolor(background)
        for spine in ax.spines.values():
            if to_rgba(spine.get_edgecolor()) == black:
                spine.set_edgecolor(foreground)
        ax.tick_params(colors=foreground, which="both")
        for label in (ax.title, ax.xaxis.label, ax.yaxis.label, getattr(ax, "_left_title", None),
                      getattr(ax, "_right_title", None)):
            if label is not None:
                label.set_color(foreground)
        for text in ax.texts:
            if to_rgba(text.get_color()) == black:
                text.set_color(foreground)
        for line in ax.lines:
            if to_rgba(line.get_color()) == black:
                line.set_color(foreground)
        for coll in ax.collections:
            try:
                edges = coll.get_edgecolor()
                if len(edges) and all(tuple(e) == black for e in edges) and not len(coll.get_facecolor()):
                    coll.set_edgecolor(foreground)
                elif len(edges) and all(tuple(e) == black for e in edges):
                    coll.set_edgecolor(foreground)
            except (TypeError, ValueError):
                pass
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(background)
            legend.get_frame().set_edgecolor(foreground)
            for text in legend.get_texts():
                text.set_color(foreground)
            handles = getattr(legend, "legend_handles", None) or getattr(legend, "legendHandles", [])
            for h in handles:
                if hasattr(h, "get_color") and to_rgba(h.get_color()) == black:
                    h.set_color(foreground)
    return fig


def _figure(fig: Optional[Figure], size: tuple[float, float]) -> Figure:
    """A new figure of ``size`` inches, or ``fig`` cleared and set to that size.

    A figure on a GUI canvas keeps the canvas's pixel size when drawn; its
    :meth:`~matplotlib.figure.Figure.get_size_inches` then tells the canvas the
    intended proportions (the napari widget sizes its canvas by them).
    """
    if fig is None:
        return Figure(figsize=size, layout="constrained")
    fig.clear()
    fig.set_size_inches(*size, forward=False)
    return fig


def attribution_limit(values: np.ndarray, percentile: float = 99.5) -> float:
    """Symmetric colour limit of an attribution map (robust to a few extreme pixels)."""
    v = np.abs(np.asarray(values, np.float64))
    v = v[np.isfinite(v)]
    lim = float(np.percentile(v, percentile)) if v.size else 0.0
    return lim if lim > 0 else 1e-12


def plot_descriptor_map(dmap: Any, fig: Optional[Figure] = None, selected: Optional[int] = None,
                        show_crops: bool = True, narrow: bool = False) -> Figure:
    """Training descriptors by class over the mixture's log-likelihood, the threshold, an image's crops.

    The image crops are drawn with ``picker`` enabled (``gid="crops"``) so a
    canvas can report which one was clicked; ``selected`` highlights one
    and shows it in an inset. ``narrow`` stacks the parts for a dock-wide
    canvas (about 4 inches): legend and colour bar below the map, the inset
    under them.
    """
    show_selected = (selected is not None and show_crops and dmap.crops is not None
                     and 0 <= selected < len(dmap.crops_xy))
    if narrow:
        fig = _figure(fig, (4.0, 6.4 if show_selected else 5.0))
        grid = fig.add_gridspec(2 if show_selected else 1, 1, height_ratios=(3.2, 1.3) if show_selected else None)
        ax = fig.add_subplot(grid[0, 0])
        crop_ax = fig.add_subplot(grid[1, 0]) if show_selected else None
    elif show_selected:
        fig = _figure(fig, (8.4, 5.2))
        grid = fig.add_gridspec(1, 2, width_ratios=(4.0, 1.4))
        ax = fig.add_subplot(grid[0, 0])
        crop_ax = fig.add_subplot(grid[0, 1])
    else:
        fig = _figure(fig, (6.4, 5.2))
        ax = fig.add_subplot(1, 1, 1)
    X, Y = np.meshgrid(dmap.grid_x, dmap.grid_y)
    ll = dmap.log_likelihood
    floor = min(dmap.threshold, float(np.percentile(ll, 50))) - 5.0
    levels = np.linspace(floor, float(ll.max()), 14)
    cf = ax.contourf(X, Y, np.maximum(ll, floor), levels=levels, cmap="Greys", alpha=0.55)
    if narrow:
        cbar = fig.colorbar(cf, ax=ax, location="bottom", shrink=0.8, aspect=30, pad=0.02, format="%.3g")
        cbar.set_label("mixture log-likelihood", fontsize=8)
        cbar.ax.tick_params(labelsize=7)
    else:
        cbar = fig.colorbar(cf, ax=ax, shrink=0.85, format="%.3g")
        cbar.set_label("mixture log-likelihood")
    ax.contour(X, Y, ll, levels=[dmap.threshold], colors="k", linewidths=1.8, linestyles="--")
    colours = list(CLASS_COLOURS)
    n_col = len(colours)
    for k, name in enumerate(dmap.classes):
        sel = dmap.training_labels == k
        ax.scatter(*dmap.training_xy[sel].T, s=9, alpha=0.7, color=colours[k % n_col], label=str(name),
                   edgecolors="none")
        ax.scatter(*dmap.means_xy[k], marker="P", s=140, color=colours[k % n_col], edgecolors="k", linewidths=1)
    contour = {"gmm": "threshold (none below)",
               "ensemble": "Gaussians' threshold (none below; the\nk-NN on image features also rejects)"}
    ax.plot([], [], "k--", label=contour.get(getattr(dmap, "scorer", "gmm"),
                                             f"Gaussians' threshold (the model decides by {dmap.scorer})"))
    if show_crops and dmap.crops_xy is not None:
        acc = dmap.crops.accepted
        if acc.any():
            ax.scatter(*dmap.crops_xy[acc].T, marker="*", s=90, color="white", edgecolors="k", linewidths=0.6,
                       label="image crops (accepted)", zorder=4)
        if (~acc).any():
            ax.scatter(*dmap.crops_xy[~acc].T, marker="X", s=60, color=OUTLIER_COLOUR, edgecolors="k",
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
            if narrow:
                crop_ax.set_title(f"crop {selected}: {names[int(np.argmax(c.probabilities[selected]))]}, "
                                  f"{c.fov_um[selected]:.3g} um wide, log-lik. {c.log_likelihood[selected]:.2f}",
                                  fontsize=7)
            else:
                crop_ax.set_title(f"crop {selected}\n{c.fov_um[selected]:.3g} um field of view", fontsize=8)
                crop_ax.set_xlabel(f"{names[int(np.argmax(c.probabilities[selected]))]}\n"
                                   f"log-likelihood {c.log_likelihood[selected]:.2f}", fontsize=8)
    size = 8 if narrow else None
    if dmap.explained_variance_ratio is not None:
        e = dmap.explained_variance_ratio
        ax.set_xlabel(f"PC 1 ({100 * e[0]:.1f} % of variance)", fontsize=size)
        ax.set_ylabel(f"PC 2 ({100 * e[1]:.1f} % of variance)", fontsize=size)
        ax.set_title(f"{dmap.dimension}-D descriptors (PCA)" if narrow
                     else f"{dmap.dimension}-D descriptors, PCA projection", fontsize=9 if narrow else None)
    else:
        ax.set_xlabel("descriptor 1", fontsize=size)
        ax.set_ylabel("descriptor 2", fontsize=size)
        ax.set_title("descriptors and the open-set mixture" if narrow
                     else "2-D descriptors and the open-set mixture", fontsize=9 if narrow else None)
    if narrow:
        # the legend above the map (it would hide descriptors inside it), in two columns
        ax.set_title("")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False,
                  markerscale=0.9, handlelength=1.4, columnspacing=1.0, borderaxespad=0.3)
    else:
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    return fig


def attribution_rgba(values: np.ndarray, limit: float) -> np.ndarray:
    """``(H, W, 4)`` red/blue overlay whose opacity grows with ``|value|`` (transparent at zero).

    Unlike a uniformly semi-transparent overlay, the image stays visible where
    the attribution is small.
    """
    from matplotlib import colormaps

    v = np.nan_to_num(np.asarray(values, np.float64)) / max(float(limit), 1e-12)
    rgba = colormaps[ATTRIBUTION_CMAP](np.clip(0.5 + 0.5 * v, 0.0, 1.0))
    rgba[..., 3] = np.clip(np.abs(v), 0.0, 1.0) ** 0.7
    return rgba


def draw_attribution(ax: Any, attr: Any, limit: Optional[float] = None, alpha: float = 0.65,
                     colorbar: bool = True, title: Optional[str] = None) -> Any:
    """Draw one :class:`~.attribution.Attribution` as a red/blue overlay on its grey input.

    The overlay's opacity follows the attribution's magnitude (see
    :func:`attribution_rgba`), at most ``alpha``... times 1/0.65 for the strongest pixels.
    """
    lim = attribution_limit(attr.attributions) if limit is None else float(limit)
    ax.imshow(attr.image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    rgba = attribution_rgba(attr.attributions, lim)
    rgba[..., 3] *= min(1.0, alpha / 0.65)
    ax.imshow(rgba, interpolation="nearest")
    # an invisible mappable carries the colour scale for the colour bar
    im = ax.imshow(attr.attributions, cmap=ATTRIBUTION_CMAP, norm=TwoSlopeNorm(0.0, -lim, lim), alpha=0.0)
    p = float(attr.probabilities[attr.target_index])
    method = "IG" if attr.method == "integrated-gradients" else "GradientSHAP"
    ax.set_title(title if title is not None else f"{attr.target} (p = {p:.2f})\n{method}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, shrink=0.8)
        cb.solids.set_alpha(1.0)
        cb.set_label(f"attribution to {attr.score_name}", fontsize=8)
    return im


def plot_attribution(attributions: Union[Any, Sequence[Any]], fig: Optional[Figure] = None,
                     shared_limit: bool = True, columns: Optional[int] = None) -> Figure:
    """One or several attributions (e.g. predicted and runner-up class) with one shared colour bar.

    ``columns`` (default: all in one row) sets the grid; a dock-wide canvas
    uses 2 columns. The colour bar is horizontal, under the panels.
    """
    items = list(attributions) if isinstance(attributions, (list, tuple)) else [attributions]
    cols = max(1, min(len(items), columns or len(items)))
    rows = int(np.ceil(len(items) / cols))
    fig = _figure(fig, (2.1 * cols + 0.4, 2.3 * rows + 0.9) if columns else (4.2 * len(items) + 0.6, 4.0))
    lim = max(attribution_limit(a.attributions) for a in items) if shared_limit else None
    axes, im = [], None
    for i, a in enumerate(items):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = draw_attribution(ax, a, lim, colorbar=not shared_limit)
        axes.append(ax)
    if shared_limit and im is not None:
        cb = fig.colorbar(im, ax=axes, location="bottom", shrink=0.9, aspect=30, pad=0.03)
        cb.solids.set_alpha(1.0)
        # two short lines: a dock-wide figure cut the one long line at both ends
        cb.set_label(f"attribution to {items[0].score_name}\nred raises the class, blue lowers it", fontsize=7)
        cb.ax.tick_params(labelsize=7)
    return fig


def _layer_title(result: Any) -> str:
    """The layer of kernels or feature maps as a reader says it (its module name when it has no label)."""
    return getattr(result, "label", "") or str(result.layer)


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
    fig.suptitle(f"kernels of the {_layer_title(kernels)}, {g.shape[1]}x{g.shape[2]}", fontsize=10)
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
    channels, h, w = maps.maps.shape
    fig.suptitle(f"feature maps of the {_layer_title(maps)}\n{channels} channels of {h}x{w}", fontsize=10)
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
