"""Multi-page TIFF pattern stacks and maps.

A stack is one page per pattern. Files written by :func:`file_writer` carry a
JSON image description ``{"napari-microstructure": "ebsd", "map_shape":
[rows, cols]}`` so that a map comes back as (rows, cols, h, w).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ...core.ebsd._validation import same_shapes
from ...core.errors import MicrostructureError
from ._common import PatternData

TAG = "napari-microstructure"


def file_writer(filename: Union[str, os.PathLike], patterns: np.ndarray,
                step_size_um: Optional[Sequence[float]] = None) -> Path:
    """Write a stack (N, h, w) or a map (rows, cols, h, w) as a multi-page TIFF."""
    import tifffile

    patterns = np.asarray(patterns)
    desc = {TAG: "ebsd"}
    if patterns.ndim == 4:
        desc["map_shape"] = list(patterns.shape[:2])
        patterns = patterns.reshape(-1, *patterns.shape[2:])
    if step_size_um is not None:
        desc["step_size_um"] = [float(s) for s in step_size_um]
    tifffile.imwrite(filename, patterns, description=json.dumps(desc), metadata=None,
                     photometric="minisblack")
    return Path(filename)


def read_description(filename: Union[str, os.PathLike]) -> dict:
    """The JSON description written by :func:`file_writer`, or {}."""
    import tifffile

    with tifffile.TiffFile(filename) as tif:
        text = tif.pages[0].description or ""
    try:
        desc = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return {}
    return desc if isinstance(desc, dict) and desc.get(TAG) == "ebsd" else {}


def file_reader(filename: Union[str, os.PathLike], lazy: bool = True) -> PatternData:
    """Read a multi-page TIFF of patterns.

    Parameters
    ----------
    filename : path-like
    lazy : bool
        Uncompressed contiguous files are memory-mapped; others are read page
        block by page block through dask. ``False`` reads everything.
    """
    import tifffile

    from ..tiff import open_complete

    filename = str(filename)
    try:
        tif = open_complete(filename)
    except MicrostructureError:
        raise
    except Exception as exc:
        raise MicrostructureError(
            f"{filename!r} is not a readable TIFF file ({exc.__class__.__name__}: {exc}); "
            "it may be truncated: copy it again or export the patterns anew"
        ) from exc
    try:
        pages = tif.pages
        shapes = [tuple(p.shape) for p in pages]
        if not shapes:
            raise MicrostructureError(f"{filename!r} holds no images; choose a TIFF of patterns")
        shape = same_shapes([s[-2:] if len(s) >= 2 else s for s in shapes], repr(filename))
        if any(len(s) != 2 for s in shapes):
            if len(shapes) == 1 and len(shapes[0]) == 3:
                shape = shapes[0][1:]
            else:
                raise MicrostructureError(
                    f"{filename!r} has colour or multi-sample pages {shapes[0]}; EBSD patterns "
                    "must be grey (one sample per pixel): convert them to greyscale"
                )
        desc = {}
        try:
            d = json.loads(pages[0].description or "")
            if isinstance(d, dict) and d.get(TAG) == "ebsd":
                desc = d
        except (json.JSONDecodeError, TypeError):
            pass
        if len(shapes) == 1 and len(shapes[0]) == 2 and not desc:
            raise MicrostructureError(
                f"{filename!r} holds one 2-D image of {shapes[0][0]} x {shapes[0][1]} pixels, not a "
                "stack of EBSD patterns (one page per pattern); open micrographs with the micrograph "
                "reader; a single pattern can be given as a folder of pattern images or a .npy (1, h, w)"
            )
        n = len(pages) if len(shapes) > 1 or len(shapes[0]) == 2 else shapes[0][0]
        dtype = pages[0].dtype
    except MicrostructureError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise MicrostructureError(
            f"{filename!r} could not be read as a TIFF stack ({exc}); it may be truncated"
        ) from exc
    data = None
    if lazy:
        try:
            data = tifffile.memmap(filename, mode="r")
            data = data.reshape(n, *shape)
        except Exception:
            data = None
        if data is None:
            data = _dask_pages(filename, n, shape, dtype)
        tif.close()
    else:
        try:
            data = tif.asarray().reshape(n, *shape)
        except Exception as exc:
            raise MicrostructureError(
                f"{filename!r} could not be read completely ({exc}); it is probably truncated"
            ) from exc
        finally:
            tif.close()
    map_shape = desc.get("map_shape")
    if map_shape:
        rows, cols = int(map_shape[0]), int(map_shape[1])
        if rows * cols != n:
            raise MicrostructureError(
                f"{filename!r} says the map is {rows} x {cols} but holds {n} patterns; the file "
                "is truncated or its description was edited"
            )
        data = data.reshape(rows, cols, *shape)
    step = desc.get("step_size_um")
    return PatternData(data, tuple(step) if step else None, "tiff", filename, {})


def _dask_pages(filename: str, n: int, shape, dtype, pages_per_chunk: int = 1024):
    import dask
    import dask.array as da
    import tifffile

    def read(start, stop):
        with tifffile.TiffFile(filename) as tif:
            return np.stack([tif.pages[i].asarray() for i in range(start, stop)])

    blocks = []
    for start in range(0, n, pages_per_chunk):
        stop = min(n, start + pages_per_chunk)
        blocks.append(da.from_delayed(dask.delayed(read)(start, stop), (stop - start, *shape), dtype))
    return da.concatenate(blocks, axis=0)
