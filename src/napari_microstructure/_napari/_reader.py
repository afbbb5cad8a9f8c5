"""npe2 reader for every TIFF the plugin knows, each opened as the layers it stands for.

One reader claims ``*.tif``/``*.tiff`` and looks inside (cheaply) before it
says yes, so napari never offers it a file it would refuse:

- a probability-map TIFF written by the plugin (widget Save, ``map`` command):
  one image layer per class and "none" (named class first, the plugin's class
  colours, additive) and the outlier mask, in micrometres;
- an EBSD result map of the ``ebsd-map`` command (``space_groups.tif``,
  ``confidence.tif``, ``no_solution.tif``): a Labels layer (space groups,
  "no solution") or an image (confidence), in micrometres when the step size is
  stored;
- an EBSD pattern TIFF: handed to the EBSD reader (patterns + navigator);
- a micrograph (one grey or RGB page): an image layer, ``scale`` in
  micrometres per pixel when the file says so.

Anything else (other stacks, broken files) returns None.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Union

PathOrPaths = Union[str, list[str]]

PROBMAP, RESULT_MAP, EBSD_PATTERNS, MICROGRAPH = "probability map", "result map", "ebsd patterns", "micrograph"


def tiff_kind(path: Union[str, os.PathLike]) -> Optional[str]:
    """What a TIFF holds (one of the module's kinds), or None when the plugin cannot open it."""
    import tifffile

    from ..io.tiff import MAP_KINDS, read_result_map_kind

    info = read_result_map_kind(path)
    if info is not None:
        if "class_names" in info:
            return PROBMAP
        if info.get("kind") in MAP_KINDS:
            return RESULT_MAP
    try:
        from ..io.ebsd.tiff import read_description

        if read_description(path):
            return EBSD_PATTERNS
    except Exception:  # noqa: BLE001 - not an EBSD TIFF
        pass
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    except Exception:  # noqa: BLE001 - not a readable TIFF
        return None
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4)):
        return MICROGRAPH
    return None  # stacks and other pattern files belong to other readers


def get_reader(path: PathOrPaths) -> Optional[Callable[[PathOrPaths], list[tuple]]]:
    """Return :func:`read_tiffs` when every path is a TIFF this plugin can open, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(str(p).lower().endswith((".tif", ".tiff")) for p in paths):
        return None
    kinds = [tiff_kind(p) for p in paths]
    if any(k is None for k in kinds):
        return None
    if EBSD_PATTERNS in kinds and len(paths) > 1:
        return None  # one pattern map at a time
    return read_tiffs


def read_tiffs(path: PathOrPaths) -> list[tuple[Any, dict, str]]:
    """Read TIFFs as the layers they stand for (see the module notes)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[tuple[Any, dict, str]] = []
    for p in paths:
        kind = tiff_kind(p)
        if kind == PROBMAP:
            layers.extend(read_probability_layers(p))
        elif kind == RESULT_MAP:
            layers.append(read_result_map(p))
        elif kind == EBSD_PATTERNS:
            from ._ebsd_reader import read_ebsd

            layers.extend(read_ebsd(p))
        else:
            layers.extend(read_micrographs(p))
    if any("units" in kwargs for _, kwargs, _ in layers):
        from ._kit import show_scale_bar_in_current_viewer

        show_scale_bar_in_current_viewer()
    return layers


def _stem(path: Union[str, os.PathLike]) -> str:
    return os.path.splitext(os.path.basename(str(path)))[0]


def _physical(size: Optional[float]) -> dict[str, Any]:
    return {"scale": (size, size), "units": ("um", "um")} if size is not None else {}


def read_micrographs(path: PathOrPaths) -> list[tuple[Any, dict, str]]:
    """Read TIFF micrographs; ``scale`` is micrometres per pixel when the file says so."""
    from ..io.tiff import read_micrograph

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = []
    for p in paths:
        image, size, meta = read_micrograph(p)
        kwargs: dict[str, Any] = {"name": _stem(p), "metadata": meta, **_physical(size)}
        if size is not None:
            meta["pixel_size_um"] = size
        if image.ndim == 3:
            kwargs["rgb"] = True
        layers.append((image, kwargs, "image"))
    return layers


def read_probability_layers(path: Union[str, os.PathLike]) -> list[tuple[Any, dict, str]]:
    """A probability-map TIFF as the layers the "Probability maps" widget makes.

    One image layer per class and "none" (class first in the name, the plugin's
    colours, additive, 0-1; the two largest classes visible) and the outlier
    mask, all tagged like the widget's layers so they can be saved again.
    """
    import numpy as np
    from napari.utils.colormaps import Colormap

    from ..core.colours import OUTLIER_COLOUR, hex_to_rgb
    from ..io.probmap_tiff import read_probability_tiff
    from ._probmap_widget import VISIBLE_CLASSES, class_colour, probability_layer_name
    from ._writer import METADATA_KEY

    probabilities, names, size, info = read_probability_tiff(path)
    image = str(info.get("image") or _stem(path))
    evaluated = ~np.isnan(probabilities[-1])
    threshold = float(info.get("outlier_threshold", 0.5))
    n_classes = len(names) - 1
    fractions = info.get("fractions") or {}
    ranked = sorted(range(n_classes), key=lambda k: -float(fractions.get(names[k], 0.0)))
    visible = set(ranked[:VISIBLE_CLASSES])
    place = _physical(size)
    base = {"image": image, "pixel_size_um": size, "threshold": threshold, "evaluated": evaluated}
    layers: list[tuple[Any, dict, str]] = []
    for k, name in enumerate(names):
        colour = class_colour(k, n_classes)
        layers.append((np.nan_to_num(probabilities[k], nan=0.0), {
            "name": probability_layer_name(name, image), "blending": "additive", "opacity": 0.7,
            "colormap": Colormap([[0, 0, 0, 1], [*colour, 1]], name=f"probmap-{name}-{k}"),
            "contrast_limits": (0.0, 1.0), "visible": k in visible, **place,
            "metadata": {METADATA_KEY: dict(base, class_name=name, index=k, role="probability")},
        }, "image"))
    outliers = np.nan_to_num(info["outlier"], nan=0.0).astype(np.uint8)
    layers.append((outliers, {
        "name": f"outliers · {image}", "blending": "translucent", "opacity": 0.55, "contrast_limits": (0, 1),
        "colormap": Colormap([[0, 0, 0, 0], [*hex_to_rgb(OUTLIER_COLOUR), 1]], name="probmap-outlier"), **place,
        "metadata": {METADATA_KEY: dict(base, role="outliers")},
    }, "image"))
    return layers


def read_result_map(path: Union[str, os.PathLike]) -> tuple[Any, dict, str]:
    """An EBSD result map of the ``ebsd-map`` command as a Labels layer (or an image for confidence)."""
    from napari.utils.colormaps import DirectLabelColormap

    from ..core.colours import NO_SOLUTION_COLOUR, label_colour
    from ..io.tiff import read_micrograph, read_result_map_kind

    data, size, _ = read_micrograph(path)
    info = read_result_map_kind(path) or {}
    kind = info.get("kind")
    place = _physical(size)
    meta = {"ebsd": True, "source": str(path), "role": kind}
    if kind == "ebsd-confidence":
        return data, {"name": _stem(path), "colormap": "viridis", "contrast_limits": (0.0, 1.0), **place,
                      "metadata": meta}, "image"
    if kind == "ebsd-no-solution":
        colours = {0: "transparent", None: "transparent", 1: NO_SOLUTION_COLOUR}
        return data.astype("int32"), {"name": _stem(path), "colormap": DirectLabelColormap(color_dict=colours),
                                      "opacity": 0.9, **place, "metadata": meta}, "labels"
    classes = [str(c) for c in info.get("classes", [])]
    colours: dict = {0: "transparent", None: "transparent"}
    names = {0: "no solution"}
    if info.get("legend"):  # [[value, class], ...] as the ebsd-map command writes it
        pairs = [(int(v), str(c)) for v, c in info["legend"]]
    else:
        numeric = info.get("values") == "space group"
        pairs = [(int(c) if numeric and c.lstrip("-").isdigit() else k + 1, c) for k, c in enumerate(classes)]
    for k, (value, c) in enumerate(pairs):
        colours[value] = label_colour(c, k)
        names[value] = c
    values = sorted(names)
    features = {"index": values, "class": [names[v] for v in values]}
    return data.astype("int32"), {"name": _stem(path), "colormap": DirectLabelColormap(color_dict=colours),
                                  "opacity": 0.8, "features": features, **place,
                                  "metadata": dict(meta, classes=classes)}, "labels"
