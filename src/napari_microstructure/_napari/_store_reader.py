"""npe2 reader for result stores: the ``.zarr`` folders that ``probability_map(..., store=...)``,
``classify_map(..., store=...)`` and the command line's ``--store`` write.

The layers are dask arrays read chunk by chunk as napari shows them
(:func:`napari_microstructure.io.store.store_layer_data`), so a map larger
than memory opens in a moment. Any other folder is left to other readers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

PathLike = Union[str, os.PathLike]


def single_path(path: Union[PathLike, list]) -> Optional[Path]:
    """The one path napari hands a reader (a path or a one-element list), else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(path)


def get_reader(path: Union[PathLike, list]) -> Optional[Callable[[Any], list]]:
    """Return :func:`read_store` when ``path`` is one result store of this plugin, else None."""
    from ..io.store import is_store

    p = single_path(path)
    return read_store if p is not None and is_store(p) else None


def read_store(path: Union[PathLike, list]) -> list[tuple]:
    """Layer-data tuples of a result store, lazily."""
    from ..io.store import store_layer_data

    if isinstance(path, (list, tuple)):
        path = path[0]
    return store_layer_data(Path(path))
