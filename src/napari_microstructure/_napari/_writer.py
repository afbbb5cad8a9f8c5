"""npe2 writer: the probability-map layers of one image to a multi-page TIFF.

The "Probability maps" widget tags its layers' metadata with
``{"probmap": {"image": ..., "class_name": ..., "index": ..., "pixel_size_um": ...,
"threshold": ...}}``; selecting those image layers and saving as a probability-map
TIFF writes them in class order ("none" last) with the outlier mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import MicrostructureError
from ..io.probmap_tiff import write_probability_stack

METADATA_KEY = "probmap"


def write_probability_layers(path: str, layer_data: list[tuple[Any, dict, str]]) -> list[str]:
    """Write probability-map image layers (classes and "none") to ``path``.

    Parameters
    ----------
    path : str
        ``.tif`` / ``.tiff`` file.
    layer_data : list of (data, attributes, layer type)
        As napari passes them to writers.

    Returns
    -------
    list of str
        The path written.
    """
    tagged = []
    for data, attributes, layer_type in layer_data:
        tag = (attributes.get("metadata") or {}).get(METADATA_KEY)
        if layer_type == "image" and tag and "class_name" in tag:
            tagged.append((int(tag["index"]), tag, np.asarray(data, dtype=np.float32)))
    if not tagged:
        raise MicrostructureError(
            "none of the selected layers is a probability map; select the class probability layers made "
            "by the 'Probability maps' widget (or use its Save button)"
        )
    images = {t["image"] for _, t, _ in tagged}
    if len(images) > 1:
        raise MicrostructureError(
            f"the selected probability layers belong to several images ({', '.join(sorted(images))}); "
            "select the layers of one image"
        )
    tagged.sort(key=lambda item: item[0])
    names = [t["class_name"] for _, t, _ in tagged]
    if names[-1] != "none":
        raise MicrostructureError("the 'none' (outlier) probability layer is not selected; select it too")
    tag = tagged[0][1]
    stack = np.stack([d for _, _, d in tagged])
    # the widget shows not-evaluated pixels as 0; the evaluated mask restores NaN
    evaluated = tag.get("evaluated")
    if evaluated is not None:
        stack[:, ~np.asarray(evaluated, bool)] = np.nan
    out = write_probability_stack(path, stack, names, float(tag["pixel_size_um"]),
                                  float(tag.get("threshold", 0.5)), {"image": tag["image"]})
    return [str(out)]
