"""Filters and activations: first-layer kernels, feature maps, similar kernels.

Kaufmann et al. (2021) show the first convolution's kernels, the feature maps
of a pattern, and the most similar kernel pairs between two networks (by
Euclidean distance). Backbones may see the grey input stacked to three
channels with per-channel normalisation; the *grey-equivalent* kernel of an
output channel is then ``sum_c W[o, c] * a_c``, where ``a_c`` is the slope of
the backbone's ``prepare`` for channel ``c``: the kernel that the network
effectively applies to the grey image.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import MicrostructureError
from .adapters import ModelAdapter, as_adapter


def _backbone(model: Any, member: int = 0) -> nn.Module:
    if isinstance(model, nn.Module) and not isinstance(model, ModelAdapter):
        inner = getattr(model, "backbone", None)
        return inner if isinstance(inner, nn.Module) else model
    adapter = as_adapter(model)
    members = adapter.backbones()
    if not 0 <= int(member) < len(members):
        raise MicrostructureError(
            f"member={member} but the model has {len(members)} network(s); give 0 to {len(members) - 1}")
    return members[int(member)]


def conv_layers(model: Any, member: int = 0) -> list[str]:
    """Names of the backbone's convolutions (for :func:`feature_maps`), input first."""
    return [n for n, m in _backbone(model, member).named_modules() if isinstance(m, nn.Conv2d)]


#: the convolutions of an EfficientNet block (short: the names fill a dock-wide list)
_EFFICIENTNET_PARTS = {"expand": "expansion", "depthwise": "depthwise", "project": "projection"}


def readable_layer_name(name: str, position: int, count: int) -> str:
    """A convolution's module name as a reader says it, e.g. ``"_conv_stem"``: "first convolution (stem)".

    ``position`` and ``count`` place it among the backbone's convolutions
    (:func:`conv_layers`); module names without meaning (``"features.6"``)
    are told by their place ("convolution 3 of 6").
    """
    import re

    if name == "_conv_stem":
        return "first convolution (stem)"
    if name == "_conv_head":
        return "last convolution (head)"
    block = re.fullmatch(r"_blocks\.(\d+)\._(expand|depthwise|project)_conv", name)
    if block:
        return f"block {int(block[1]) + 1}: {_EFFICIENTNET_PARTS[block[2]]}"
    if position == 0:
        return "first convolution"
    if position == count - 1:
        return f"last convolution ({count} of {count})"
    return f"convolution {position + 1} of {count}"


def conv_layer_labels(model: Any, member: int = 0) -> list[str]:
    """Readable names of :func:`conv_layers`, in the same order (:func:`readable_layer_name`)."""
    names = conv_layers(model, member)
    return [readable_layer_name(n, i, len(names)) for i, n in enumerate(names)]


@dataclasses.dataclass
class Kernels:
    """First-layer kernels.

    Attributes
    ----------
    weights : numpy.ndarray (O, C, k, k)
    grey : numpy.ndarray (O, k, k)
        Grey-equivalent kernels (see the module docstring).
    layer : str
        The convolution's module name.
    label : str
        The same, as a reader says it (:func:`readable_layer_name`).
    """

    weights: np.ndarray
    grey: np.ndarray
    layer: str
    label: str = ""

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        """One row per kernel: index, then its grey-equivalent weights row by row."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            k = self.grey.shape[-1]
            w.writerow(["kernel"] + [f"w{r}_{c}" for r in range(k) for c in range(k)])
            for i, g in enumerate(self.grey):
                w.writerow([i] + [f"{v:.6g}" for v in g.ravel()])


def first_layer_kernels(model: Any, member: int = 0) -> Kernels:
    """The first convolution's kernels of a classifier's (or module's) backbone."""
    from ..nn.backbones import first_conv

    bb = _backbone(model, member)
    conv = first_conv(bb)
    name = next((n for n, m in bb.named_modules() if m is conv), "conv")
    w = conv.weight.detach().double().cpu()
    prepare = getattr(bb, "prepare", None)
    if prepare is not None:
        with torch.no_grad():
            dev = conv.weight.device
            slope = (prepare(torch.ones(1, 1, 1, 1, device=dev)) - prepare(torch.zeros(1, 1, 1, 1, device=dev)))
        slope = slope.double().cpu().reshape(-1)
    else:
        slope = torch.ones(w.shape[1], dtype=torch.float64)
    if slope.numel() != w.shape[1]:
        slope = torch.ones(w.shape[1], dtype=torch.float64)
    grey = (w * slope[None, :, None, None]).sum(1)
    names = conv_layers(bb)
    label = readable_layer_name(name, names.index(name), len(names)) if name in names else name
    return Kernels(w.numpy(), grey.numpy(), name, label)


@dataclasses.dataclass
class FeatureMaps:
    """Activations of one layer for one input.

    Attributes
    ----------
    maps : numpy.ndarray (C, h, w)
    layer : str
        The layer's module name.
    input : numpy.ndarray (S, S)
        The network input, grey in [0, 1].
    label : str
        The layer as a reader says it (:func:`readable_layer_name`).
    """

    maps: np.ndarray
    layer: str
    input: np.ndarray
    label: str = ""

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        """Per channel: mean, standard deviation, minimum, maximum of the activation."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([f"# layer {self.layer}, maps {self.maps.shape}"])
            w.writerow(["channel", "mean", "std", "min", "max"])
            for c, m in enumerate(self.maps):
                w.writerow([c, f"{m.mean():.6g}", f"{m.std():.6g}", f"{m.min():.6g}", f"{m.max():.6g}"])


def feature_maps(model: Any, data: Any, layer: Union[str, int, None] = None, *,
                 pixel_size: Optional[float] = None, member: int = 0) -> FeatureMaps:
    """The output of one backbone layer for one input.

    Parameters
    ----------
    model : FewShotClassifier, EBSDClassifier or ModelAdapter
    data : array
        As for :func:`~.attribution.attribution`: a micrograph (the crop of the
        map field of view at its centre is used), an EBSD pattern, or an input.
    layer : str or int, optional
        A module name of the backbone (``conv_layers(model)`` lists the
        convolutions), or an index into that list; default the first convolution.
    pixel_size : float
        Micrometres per pixel (micrographs).
    member : int
        Ensemble member (EBSD).
    """
    from .attribution import prepare_input

    adapter = as_adapter(model)
    bb = _backbone(adapter, member)
    convs = conv_layers(adapter, member)
    modules = dict(bb.named_modules())
    if layer is None:
        layer = convs[0]
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(convs) <= int(layer) < len(convs):
            raise MicrostructureError(f"layer {layer} is out of range; the backbone has {len(convs)} convolutions")
        layer = convs[int(layer)]
    if layer not in modules or layer == "":
        raise MicrostructureError(
            f"the backbone has no layer {layer!r}; choose one of {', '.join(convs[:8])}... "
            "(conv_layers(model) lists them)")
    prep = prepare_input(adapter, data, pixel_size, "auto")
    H, W = prep.shape
    centre = prep.tiles[:, :2] + prep.tiles[:, 2:] / 2.0
    k = int(np.argmin(((centre - [H / 2.0, W / 2.0]) ** 2).sum(1)))
    x = prep.x[k:k + 1]
    captured: list[torch.Tensor] = []
    handle = modules[layer].register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    try:
        bb.eval()
        with torch.no_grad():
            bb.forward_features(bb.prepare(x))
    finally:
        handle.remove()
    label = readable_layer_name(layer, convs.index(layer), len(convs)) if layer in convs else layer
    return FeatureMaps(captured[0][0].double().cpu().numpy(), layer, x[0, 0].cpu().numpy(), label)


@dataclasses.dataclass
class KernelPairs:
    """The most similar first-layer kernels of two models.

    Attributes
    ----------
    pairs : list of (int, int, float)
        ``(kernel of model A, kernel of model B, Euclidean distance)``, most
        similar first; each kernel appears at most once.
    kernels_a, kernels_b : numpy.ndarray (O, k, k)
        Grey-equivalent kernels.
    distances : numpy.ndarray (O_a, O_b)
    """

    pairs: list
    kernels_a: np.ndarray
    kernels_b: np.ndarray
    distances: np.ndarray

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["kernel_a", "kernel_b", "euclidean_distance"])
            for i, j, d in self.pairs:
                w.writerow([i, j, f"{d:.6g}"])


def similar_kernel_pairs(model_a: Any, model_b: Any, n_pairs: int = 8, member_a: int = 0,
                         member_b: int = 0) -> KernelPairs:
    """The ``n_pairs`` closest first-layer kernels (grey-equivalent) of two models.

    Pairs are chosen greedily by Euclidean distance, each kernel used once.
    """
    ka = first_layer_kernels(model_a, member_a).grey
    kb = first_layer_kernels(model_b, member_b).grey
    if ka.shape[1:] != kb.shape[1:]:
        raise MicrostructureError(
            f"the first-layer kernels are {ka.shape[1]}x{ka.shape[2]} in one model and "
            f"{kb.shape[1]}x{kb.shape[2]} in the other; compare models with the same backbone")
    dist = np.sqrt(((ka[:, None] - kb[None]) ** 2).sum((2, 3)))
    order = np.argsort(dist, axis=None)
    used_a, used_b, pairs = set(), set(), []
    for flat in order:
        i, j = np.unravel_index(flat, dist.shape)
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((int(i), int(j), float(dist[i, j])))
        if len(pairs) >= int(n_pairs):
            break
    return KernelPairs(pairs, ka, kb, dist)
