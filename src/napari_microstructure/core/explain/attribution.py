"""Attributions: which pixels raise or lower a class score.

Two estimators from `captum <https://captum.ai>`_:

- ``"integrated-gradients"`` (Sundararajan et al. 2017): the path integral of
  the gradient from a baseline (default: uniform mid-grey) to the input.
  Completeness: the attributions sum to ``score(input) - score(baseline)``;
  :attr:`Attribution.delta` is captum's measure of how far they are from it.
- ``"gradient-shap"``: expected gradients against a background set, an
  estimate of Shapley values (Kaufmann et al. 2021 use DeepSHAP with 100
  background patterns per class; :func:`background_set` draws such a set).

Inputs:

- a micrograph model and an image: the image is tiled with crops of the
  model's map field of view (``map_fov_um_``, half-overlapping), each crop is
  attributed at the network's input size, and the crop attributions are
  resampled back onto the image's pixels and averaged where crops overlap, as
  the probability maps do; ``region="crop"`` treats the whole input as one crop;
- an EBSD model and one raw pattern ``(h, w)``: the pattern is preprocessed as
  for prediction and the attribution is resampled back to ``(h, w)``.

Resampling keeps the attributions' sum exactly (each network pixel's
attribution is shared among the data pixels it overlaps, by area): a map's
values are attributions per pixel of the input grid, and the overlay aligns
with the data layer. Where tiles overlap, the map is their mean.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..base import isolated_torch_rng
from ..choices import ATTRIBUTION_METHODS
from ..errors import MicrostructureError
from ..micrograph.augment import AugmentConfig
from ..micrograph.crops import CropSampler, CropSource, Micrograph
from ..nn.progress import CancelToken, ProgressCallback, check_cancel, report
from .adapters import ModelAdapter, as_adapter

#: Integrated gradients whose completeness error (|sum of attributions - score difference|)
#: exceeds this share of the difference get a warning.
COMPLETENESS_TOLERANCE = 0.1

METHODS = ATTRIBUTION_METHODS
_ALIASES = {"ig": "integrated-gradients", "integrated_gradients": "integrated-gradients",
            "shap": "gradient-shap", "gradientshap": "gradient-shap", "gradient_shap": "gradient-shap"}


@dataclasses.dataclass
class Attribution:
    """Attributions of one input for one class.

    Attributes
    ----------
    attributions : numpy.ndarray (H, W)
        Per pixel of the input's grid; positive raises the class score,
        negative lowers it (red / blue in :func:`~.plots.plot_attribution`).
    image : numpy.ndarray (H, W)
        The input, grey in [0, 1], for display.
    target : object
        The explained class label; ``target_index`` its score column.
    method : str
    score_name : str
        What was attributed (e.g. ``"log posterior"``).
    scores : numpy.ndarray (n_classes,)
        Mean class scores of the input (over tiles).
    probabilities : numpy.ndarray (n_classes,)
        Mean class probabilities of the input (over tiles).
    classes : list
    network_inputs : numpy.ndarray (n, S, S)
        What the network saw (one per tile).
    network_attributions : numpy.ndarray (n, S, S)
        Attributions at the network's input, before resampling.
    score_differences : numpy.ndarray (n,)
        ``score(input) - score(baseline)`` per tile (integrated gradients; for
        GradientSHAP the mean over the background).
    delta : float
        Largest completeness error over tiles (``sum(attr) - difference``).
    tiles : numpy.ndarray (n, 4)
        ``row0, col0, rows, cols`` of each tile on the input grid.
    pixel_size_um : float or None
    """

    attributions: np.ndarray
    image: np.ndarray
    target: Any
    target_index: int
    method: str
    score_name: str
    scores: np.ndarray
    probabilities: np.ndarray
    classes: list
    network_inputs: np.ndarray
    network_attributions: np.ndarray
    score_differences: np.ndarray
    delta: float
    tiles: np.ndarray
    pixel_size_um: Optional[float] = None

    @property
    def predicted(self) -> Any:
        return self.classes[int(np.argmax(self.probabilities))]

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        """Write ``row, col, attribution`` for every pixel."""
        rows, cols = np.indices(self.attributions.shape)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([f"# {self.method} for class {self.target} ({self.score_name})"])
            w.writerow(["row", "col", "attribution"])
            for r, c, a in zip(rows.ravel(), cols.ravel(), self.attributions.ravel()):
                w.writerow([int(r), int(c), f"{a:.6g}"])


@dataclasses.dataclass
class _Prepared:
    x: torch.Tensor                    # (n, 1, S, S)
    extra: Optional[torch.Tensor]      # log10 px/um per tile, or None
    tiles: np.ndarray                  # (n, 4) row0, col0, rows, cols
    shape: tuple[int, int]
    image: np.ndarray
    pixel_size_um: Optional[float]
    raw_shape: Optional[tuple[int, int]] = None
    micrograph: Any = None             # the crops' Micrograph (micrograph models)


def _method(method: str) -> str:
    key = str(method).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise MicrostructureError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    return key


def _tile_starts(length: int, tile: int, overlap: float) -> np.ndarray:
    if tile >= length:
        return np.zeros(1, dtype=int)
    step = max(1.0, tile * (1.0 - overlap))
    n = int(math.ceil((length - tile) / step)) + 1
    return np.unique(np.round(np.linspace(0, length - tile, n)).astype(int))


def prepare_input(model: Any, data: Any, pixel_size: Optional[float] = None, region: str = "auto",
                  overlap: float = 0.5, fov_um: Optional[float] = None) -> _Prepared:
    """Network inputs for ``data`` and where each lies on the data's grid (see module docstring)."""
    adapter = as_adapter(model)
    S = adapter.input_size
    if adapter.kind == "micrograph":
        if pixel_size is None:
            raise MicrostructureError(
                "a micrograph needs its pixel size; pass pixel_size= in micrometres per pixel "
                "(napari: the layer's scale)")
        clf = adapter.classifier
        micrograph = Micrograph(data, pixel_size)
        p = micrograph.pixel_size_um
        H, W = micrograph.shape
        side_um = min(H, W) * p
        fov = float(fov_um) if fov_um is not None else float(clf.map_fov_um_)
        if region not in ("auto", "image", "crop"):
            raise MicrostructureError(f"region={region!r}; choose 'auto', 'image' or 'crop'")
        if region == "auto":
            region = "image" if side_um >= 1.5 * fov else "crop"
        c = min(H, W) if region == "crop" else int(round(min(fov, side_um) / p))
        c = max(1, min(c, H, W))
        rows = _tile_starts(H, c, overlap) if region == "image" else np.array([(H - c) // 2])
        cols = _tile_starts(W, c, overlap) if region == "image" else np.array([(W - c) // 2])
        r0, c0 = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
        centres = np.stack([r0 + c / 2.0, c0 + c / 2.0], 1)
        crop_px = np.full(len(r0), float(c))
        plain = CropSampler(S, AugmentConfig.off(), np.random.default_rng(0), None, adapter.device)
        batch = plain.sample_at(CropSource(micrograph, (c * p, c * p)), centres, crop_px)
        tiles = np.stack([r0, c0, np.full_like(r0, c), np.full_like(r0, c)], 1)
        return _Prepared(batch.crops, batch.log_ppum, tiles, (H, W), micrograph.image, p, micrograph=micrograph)
    arr = np.asarray(data)
    if adapter.kind == "ebsd":
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise MicrostructureError(
                f"give one EBSD pattern (h, w), got an array of shape {arr.shape}; take one pattern, "
                "e.g. patterns[i]")
        x = torch.from_numpy(adapter.prepare(arr)).unsqueeze(1).to(adapter.device)
        lo, hi = np.nanpercentile(arr.astype(np.float64), [0.5, 99.5])
        image = np.clip((arr - lo) / max(hi - lo, 1e-12), 0, 1)
    else:
        if arr.ndim != 2:
            raise MicrostructureError(f"give one 2-D input, got an array of shape {arr.shape}")
        t = torch.as_tensor(arr, dtype=torch.float32)[None, None]
        if t.shape[-2:] != (S, S):
            t = F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False, antialias=True)
        x = t.to(adapter.device)
        image = arr.astype(np.float64)
    H, W = arr.shape
    return _Prepared(x, None, np.array([[0, 0, H, W]]), (H, W), image, None)


def _box_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` weights: the share of input pixel j that falls in output pixel i.

    Input pixel j spans ``[j, j + 1)`` and output pixel i spans
    ``[i, i + 1) * n_in / n_out`` on the same axis; every column sums to 1.
    """
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo = np.maximum(edges[:-1, None], np.arange(n_in)[None])
    hi = np.minimum(edges[1:, None], np.arange(n_in)[None] + 1)
    return np.clip(hi - lo, 0, None)


def _resample_sum(a: torch.Tensor, rows: int, cols: int) -> np.ndarray:
    """Resample ``(S, S)`` attributions to ``(rows, cols)`` keeping their sum exactly.

    Each network pixel's attribution is shared among the data pixels it
    overlaps, in proportion to the overlap (area weighting).
    """
    arr = a.detach().cpu().double().numpy()
    if arr.shape == (rows, cols):
        return arr
    return _box_matrix(rows, arr.shape[0]) @ arr @ _box_matrix(cols, arr.shape[1]).T


def _as_background(adapter: ModelAdapter, background: Any, prepared: _Prepared) -> torch.Tensor:
    S = adapter.input_size
    if isinstance(background, torch.Tensor):
        bg = background.detach().float()
    else:
        bg = np.asarray(background)
        if adapter.kind == "ebsd":
            if bg.ndim == 2:
                bg = bg[None]
            if bg.ndim != 3:
                raise MicrostructureError(
                    f"the background set must be raw patterns (M, h, w); got shape {bg.shape}")
            if prepared.image.shape != bg.shape[1:]:
                raise MicrostructureError(
                    f"the background patterns are {bg.shape[1]} x {bg.shape[2]} pixels but the pattern "
                    f"explained is {prepared.image.shape[0]} x {prepared.image.shape[1]}; give background "
                    "patterns from the same detector at the same size (e.g. background_set(patterns, labels))")
            bg = torch.from_numpy(adapter.prepare(bg))
        else:
            bg = torch.as_tensor(np.asarray(bg, dtype=np.float32))
    if bg.ndim == 2:
        bg = bg[None]
    if bg.ndim == 3:
        bg = bg[:, None]
    if bg.ndim != 4 or bg.shape[1:] != (1, S, S):
        raise MicrostructureError(
            f"the background set has shape {tuple(bg.shape)} but the network input is {S} x {S}; give "
            f"background inputs of {S} x {S} pixels (for micrographs: crops from sample_image_crops)")
    if len(bg) < 1:
        raise MicrostructureError("the background set is empty; give at least one background input")
    return bg.to(adapter.device)


def default_background(adapter: ModelAdapter, prepared: _Prepared, n: int = 16, seed: int = 0) -> torch.Tensor:
    """A background set when none is given.

    Micrographs: ``n`` random crops of the same image at the tiles' field of
    view; other models: mid-grey with Gaussian noise (standard deviation 0.1).
    For Shapley values against real data pass ``background=`` (see
    :func:`background_set`).
    """
    g = torch.Generator().manual_seed(seed)
    S = adapter.input_size
    if adapter.kind == "micrograph" and prepared.micrograph is not None:
        fov = float(prepared.tiles[0, 2]) * prepared.pixel_size_um
        plain = CropSampler(S, AugmentConfig.off(), np.random.default_rng(seed), None, adapter.device)
        return plain.sample(CropSource(prepared.micrograph, (fov, fov)), n, fov_um=fov).crops
    noise = torch.randn((n, 1, S, S), generator=g) * 0.1
    return (0.5 + noise).clamp(0, 1).to(adapter.device)


def micrograph_background(classifier: Any, images: Sequence[Any], pixel_sizes: Sequence[float],
                          n_per_image: int = 8, fov_um: Optional[float] = None, seed: int = 0) -> np.ndarray:
    """Random crops ``(M, S, S)`` of several micrographs at one field of view, as a background set.

    The default field of view is the model's map field of view
    (``map_fov_um_``), that of the tiles :func:`attribution` explains, so
    the background crops look like what the network sees there. Images
    smaller than the field of view give crops of their shorter side.
    """
    adapter = as_adapter(classifier)
    if adapter.kind != "micrograph":
        raise MicrostructureError("micrograph_background needs a micrograph model; for EBSD use background_set")
    if len(images) != len(pixel_sizes):
        raise MicrostructureError(f"{len(images)} images but {len(pixel_sizes)} pixel sizes; give one each")
    fov = float(fov_um) if fov_um is not None else float(adapter.classifier.map_fov_um_)
    plain = CropSampler(adapter.input_size, AugmentConfig.off(), np.random.default_rng(seed))
    out = []
    for i, (image, p) in enumerate(zip(images, pixel_sizes)):
        micrograph = Micrograph(image, p, name=f"images[{i}]")
        c_um = min(fov, micrograph.side_um)
        batch = plain.sample(CropSource(micrograph, (c_um, c_um)), n_per_image, fov_um=c_um)
        out.append(batch.crops[:, 0].numpy())
    return np.concatenate(out)


def background_set(patterns: Any, labels: Sequence[Any], per_class: int = 100, seed: int = 0) -> np.ndarray:
    """Up to ``per_class`` random patterns of each class (Kaufmann et al.: 100), as a background set."""
    p = np.asarray(patterns)
    y = np.asarray(labels)
    if len(p) != len(y):
        raise MicrostructureError(f"{len(p)} patterns but {len(y)} labels; give one label per pattern")
    rng = np.random.default_rng(seed)
    idx = []
    for c in np.unique(y):
        members = np.nonzero(y == c)[0]
        idx.extend(rng.choice(members, min(per_class, len(members)), replace=False).tolist())
    return p[np.sort(np.asarray(idx, dtype=int))]


def _scores(adapter: ModelAdapter, x: torch.Tensor, extra: Optional[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = []
        for s in range(0, len(x), 64):
            args = (extra[s:s + 64],) if extra is not None else ()
            out.append(adapter.forward(x[s:s + 64], *args).double())
        return torch.cat(out)


def _probabilities(adapter: ModelAdapter, scores: torch.Tensor) -> np.ndarray:
    if adapter.kind == "micrograph":
        return torch.softmax(scores, 1).mean(0).cpu().numpy()  # both scores give the posterior
    if adapter.kind == "ebsd" and adapter.score == "probability":
        return scores.mean(0).cpu().numpy()
    return torch.softmax(scores, 1).mean(0).cpu().numpy()


def class_ranking(model: Any, data: Any, pixel_size: Optional[float] = None, region: str = "auto",
                  **model_kwargs: Any) -> list[tuple[Any, float]]:
    """Classes of ``data`` from most to least probable, with their mean probabilities.

    ``class_ranking(...)[0]`` is the predicted class and ``[1]`` the runner-up.
    """
    adapter = as_adapter(model, **model_kwargs)
    prep = prepare_input(adapter, data, pixel_size, region)
    probs = _probabilities(adapter, _scores(adapter, prep.x, prep.extra))
    order = np.argsort(-probs)
    return [(adapter.classes[i], float(probs[i])) for i in order]


def attribution(
    model: Any,
    data: Any,
    target: Any = None,
    method: str = "integrated-gradients",
    *,
    pixel_size: Optional[float] = None,
    region: str = "auto",
    baseline: Union[float, np.ndarray, None] = None,
    background: Any = None,
    n_steps: int = 64,
    n_samples: int = 32,
    stdevs: float = 0.0,
    overlap: float = 0.5,
    fov_um: Optional[float] = None,
    score: Optional[str] = None,
    seed: int = 0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> Attribution:
    """Attribute one input's class score to its pixels.

    Parameters
    ----------
    model : FewShotClassifier, EBSDClassifier or ModelAdapter
        A fitted classifier.
    data : array
        Micrograph models: a 2-D image (or crop) with ``pixel_size``. EBSD
        models: one raw pattern ``(h, w)``. Adapters: an ``(S, S)`` input in [0, 1].
    target : class label, optional
        The class to explain; ``None`` explains the predicted class.
    method : {"integrated-gradients", "gradient-shap"}
    pixel_size : float
        Micrometres per pixel (micrographs only).
    region : {"auto", "image", "crop"}
        Micrographs: tile the image with crops of the map field of view
        (``"image"``), or treat the whole input as one crop (``"crop"``).
        ``"auto"`` tiles when the image is at least 1.5 fields of view wide.
    baseline : float or array (S, S), optional
        Integrated gradients' baseline input; default 0.5 (mid-grey).
    background : array, optional
        GradientSHAP's background set: raw patterns ``(M, h, w)`` of the same
        size as ``data`` (EBSD), or inputs ``(M, S, S)`` in [0, 1]
        (micrographs: crops from :func:`~.descriptors.sample_image_crops`).
        Default: see :func:`default_background`.
    n_steps : int
        Integration steps (Gauss-Legendre) of integrated gradients.
    n_samples, stdevs : int, float
        GradientSHAP's samples per input and input noise.
    overlap : float
        Tile overlap as a fraction of the tile side (0 to 0.9).
    fov_um : float, optional
        Tile field of view in micrometres (default: the model's ``map_fov_um_``).
    score : str, optional
        Which score to attribute (see :class:`~.adapters.MicrographAdapter`,
        :class:`~.adapters.EBSDAdapter`).
    seed : int
    progress, cancel
        Progress reports (stage ``"attribution"``) and cancellation.

    Returns
    -------
    Attribution
    """
    from captum.attr import GradientShap, IntegratedGradients

    method = _method(method)
    if not 0 <= float(overlap) <= 0.9:
        raise MicrostructureError(f"overlap={overlap}; give a fraction from 0 to 0.9")
    adapter = as_adapter(model, **({"score": score} if score is not None else {}))
    for m in adapter.member_modules():
        m.eval()
    prep = prepare_input(adapter, data, pixel_size, region, overlap, fov_um)
    scores = _scores(adapter, prep.x, prep.extra)
    probs = _probabilities(adapter, scores)
    t = int(np.argmax(probs)) if target is None else adapter.class_index(target)
    S = adapter.input_size
    n = len(prep.x)
    # seeded sampling without touching the global generators: captum's GradientSHAP draws its
    # baselines with numpy's global generator and its noise with torch's
    with isolated_torch_rng(seed, adapter.device, numpy_global=True):
        if method == "integrated-gradients":
            if baseline is None:
                base = torch.full((1, 1, S, S), 0.5, device=adapter.device)
            elif np.ndim(baseline) == 0:
                base = torch.full((1, 1, S, S), float(baseline), device=adapter.device)
            else:
                base = _as_background(adapter, baseline, prep)[:1]
            explainer = IntegratedGradients(adapter.forward)
        else:
            bg = _as_background(adapter, background, prep) if background is not None else \
                default_background(adapter, prep, seed=seed)
            explainer = GradientShap(adapter.forward)
        attrs = torch.zeros((n, S, S), dtype=torch.float64)
        diffs = np.zeros(n)
        deltas = np.zeros(n)
        chunk = 4 if method == "integrated-gradients" else 2
        report(progress, "attribution", 0, n, f"{method}: {n} input(s)")
        for s in range(0, n, chunk):
            check_cancel(cancel)
            xb = prep.x[s:s + chunk].clone().requires_grad_(True)
            extra = (prep.extra[s:s + chunk],) if prep.extra is not None else None
            if method == "integrated-gradients":
                a, delta = explainer.attribute(
                    xb, baselines=base.expand(len(xb), -1, -1, -1), target=t, additional_forward_args=extra,
                    n_steps=int(n_steps), method="gausslegendre", internal_batch_size=max(16, int(n_steps)),
                    return_convergence_delta=True)
                with torch.no_grad():
                    args = extra or ()
                    f_in = adapter.forward(xb, *args)[:, t].double()
                    f_base = adapter.forward(base.expand(len(xb), -1, -1, -1), *args)[:, t].double()
                diffs[s:s + chunk] = (f_in - f_base).cpu().numpy()
            else:
                a, delta = explainer.attribute(
                    xb, baselines=bg, target=t, additional_forward_args=extra, n_samples=int(n_samples),
                    stdevs=float(stdevs), return_convergence_delta=True)
                delta = delta.reshape(len(xb), -1).mean(1)
                with torch.no_grad():
                    args = extra or ()
                    f_in = adapter.forward(xb, *args)[:, t].double()
                    bg_args = tuple(e[:1].expand(len(bg)) for e in args)
                    f_bg = adapter.forward(bg, *bg_args)[:, t].double().mean()
                diffs[s:s + chunk] = (f_in - f_bg).cpu().numpy()
            attrs[s:s + chunk] = a.detach()[:, 0].double().cpu()
            deltas[s:s + chunk] = np.abs(delta.detach().double().cpu().numpy())
            report(progress, "attribution", min(n, s + chunk), n, f"{method}: {min(n, s + chunk)} / {n}")

    H, W = prep.shape
    total = np.zeros((H, W))
    count = np.zeros((H, W))
    for k, (r0, c0, rh, cw) in enumerate(prep.tiles):
        total[r0:r0 + rh, c0:c0 + cw] += _resample_sum(attrs[k], int(rh), int(cw))
        count[r0:r0 + rh, c0:c0 + cw] += 1
    amap = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    if method == "integrated-gradients" and n:
        worst = float(np.max(deltas / np.maximum(np.abs(diffs), 1e-12)))
        if worst > COMPLETENESS_TOLERANCE:
            # measured: the frozen ImageNet backbone's path from grey to a crop is rough, and
            # 64 steps can miss the score difference several times over
            warnings.warn(
                f"the integrated gradients miss the score difference by up to {worst:.0%} (n_steps={n_steps}); "
                "the map is only roughly right: raise n_steps (e.g. 512), or use method='gradient-shap'",
                UserWarning, stacklevel=2)
    return Attribution(
        attributions=amap.astype(np.float32), image=np.asarray(prep.image, np.float32),
        target=adapter.classes[t], target_index=t, method=method, score_name=adapter.score_name,
        scores=scores.mean(0).cpu().numpy(), probabilities=probs, classes=list(adapter.classes),
        network_inputs=prep.x[:, 0].detach().cpu().numpy(), network_attributions=attrs.numpy(),
        score_differences=diffs, delta=float(deltas.max()) if n else 0.0, tiles=prep.tiles,
        pixel_size_um=prep.pixel_size_um,
    )


def explain_top_classes(model: Any, data: Any, method: str = "integrated-gradients", k: int = 2, *,
                        progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                        **kwargs: Any) -> list[Attribution]:
    """Attributions for the ``k`` most probable classes (predicted, runner-up, ...)."""
    adapter = as_adapter(model, **({"score": kwargs.pop("score")} if "score" in kwargs else {}))
    ranking = class_ranking(adapter, data, kwargs.get("pixel_size"), kwargs.get("region", "auto"))
    out = []
    for i, (label, _) in enumerate(ranking[:max(1, int(k))]):
        sub = None
        if progress is not None:
            def sub(p, i=i):  # noqa: E306
                progress(dataclasses.replace(p, message=f"class {label}: {p.message}"))
        out.append(attribution(adapter, data, label, method, progress=sub, cancel=cancel, **kwargs))
    return out
