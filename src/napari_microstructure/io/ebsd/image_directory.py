"""A folder of pattern images (PNG, TIFF, BMP, JPEG), one pattern per file.

Files are sorted naturally (``p2.png`` before ``p10.png``). Read lazily
through dask in blocks of files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ...core.ebsd._validation import same_shapes
from ...core.errors import MicrostructureError
from ._common import PatternData

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_images(folder: Union[str, os.PathLike]) -> list[Path]:
    """Image files directly inside ``folder``, naturally sorted."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith(".")), key=_natural_key)


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """One grey pattern image as a 2-D array (colour images are averaged)."""
    import imageio.v3 as iio

    try:
        img = np.asarray(iio.imread(path))
    except Exception as exc:
        raise MicrostructureError(
            f"{str(path)!r} is not a readable image ({exc.__class__.__name__}); it may be "
            "truncated: remove it or export it again"
        ) from exc
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        img = img[..., :3].mean(-1).astype(img.dtype)
    if img.ndim != 2:
        raise MicrostructureError(f"{str(path)!r} has shape {img.shape}; expected a 2-D grey pattern")
    return img


def _image_shape(path: Path) -> tuple:
    import imageio.v3 as iio

    try:
        props = iio.improps(path)
    except Exception as exc:
        raise MicrostructureError(
            f"{str(path)!r} is not a readable image ({exc.__class__.__name__}); it may be "
            "truncated: remove it or export it again"
        ) from exc
    shape = tuple(props.shape)
    if len(shape) == 3 and shape[-1] in (3, 4):
        shape = shape[:2]
    return shape, props.dtype


def file_writer(folder: Union[str, os.PathLike], patterns: np.ndarray, suffix: str = ".png") -> Path:
    """Write each pattern of an (N, h, w) stack as ``pattern_00000.png`` etc."""
    import imageio.v3 as iio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    patterns = np.asarray(patterns)
    patterns = patterns.reshape(-1, *patterns.shape[-2:])
    width = max(5, len(str(len(patterns))))
    for i, p in enumerate(patterns):
        iio.imwrite(folder / f"pattern_{i:0{width}d}{suffix}", p)
    return folder


def file_reader(folder: Union[str, os.PathLike], lazy: bool = True,
                map_shape: Optional[tuple[int, int]] = None, files_per_chunk: int = 512) -> PatternData:
    """Read a folder of pattern images as an (N, h, w) stack (or a map).

    Parameters
    ----------
    folder : path-like
    lazy : bool
        Read the images only when a block is computed (dask).
    map_shape : (rows, cols), optional
        Reshape the stack into a map; rows * cols must equal the file count.
    """
    folder = Path(folder)
    files = list_images(folder)
    if not files:
        raise MicrostructureError(
            f"folder {str(folder)!r} holds no pattern images ({', '.join(IMAGE_SUFFIXES)}); "
            "choose a folder with one image per pattern"
        )
    infos = [_image_shape(f) for f in files]
    shape = same_shapes([s for s, _ in infos], f"folder {str(folder)!r}")
    if len(shape) != 2:
        raise MicrostructureError(f"images in {str(folder)!r} have shape {shape}; expected 2-D grey patterns")
    dtype = np.dtype(infos[0][1])
    if lazy:
        import dask
        import dask.array as da

        def read(chunk):
            return np.stack([read_image(f) for f in chunk]).astype(dtype, copy=False)

        blocks = [da.from_delayed(dask.delayed(read)(files[i:i + files_per_chunk]),
                                  (len(files[i:i + files_per_chunk]), *shape), dtype)
                  for i in range(0, len(files), files_per_chunk)]
        data = da.concatenate(blocks, axis=0)
    else:
        data = np.stack([read_image(f) for f in files])
    if map_shape is not None:
        rows, cols = map_shape
        if rows * cols != len(files):
            raise MicrostructureError(
                f"map shape {rows} x {cols} needs {rows * cols} images but {str(folder)!r} "
                f"holds {len(files)}; give the right map shape"
            )
        data = data.reshape(rows, cols, *shape)
    return PatternData(data, None, "image-directory", str(folder), {"files": [f.name for f in files]})
