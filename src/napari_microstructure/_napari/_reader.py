"""npe2 reader: TIFF micrographs with their pixel size as the layer's scale."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Union

PathOrPaths = Union[str, list[str]]


def get_reader(path: PathOrPaths) -> Optional[Callable[[PathOrPaths], list[tuple]]]:
    """Return :func:`read_micrographs` for TIFF files of one page or an RGB page, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(str(p).lower().endswith((".tif", ".tiff")) for p in paths):
        return None
    import tifffile

    try:
        for p in paths:
            with tifffile.TiffFile(p) as tif:
                series = tif.series[0]
                shape = series.shape
                if len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4)):
                    continue
                return None  # stacks and pattern maps belong to other readers
    except Exception:
        return None
    return read_micrographs


def read_micrographs(path: PathOrPaths) -> list[tuple[Any, dict, str]]:
    """Read TIFF micrographs; ``scale`` is micrometres per pixel when the file says so."""
    from ..io.tiff import read_micrograph

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = []
    for p in paths:
        image, size, meta = read_micrograph(p)
        kwargs: dict[str, Any] = {"name": os.path.splitext(os.path.basename(str(p)))[0], "metadata": meta}
        if size is not None:
            kwargs["scale"] = (size, size)
            kwargs["units"] = ("um", "um")
            meta["pixel_size_um"] = size
        if image.ndim == 3:
            kwargs["rgb"] = True
        layers.append((image, kwargs, "image"))
    return layers
