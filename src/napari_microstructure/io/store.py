"""Chunked result stores (zarr): map results written as they are computed, opened lazily.

A map of 10^7 EBSD patterns or a 20000 x 20000 probability map does not have
to fit in memory: :func:`~napari_microstructure.core.ebsd.mapping.classify_map`
and :func:`~napari_microstructure.core.micrograph.probmap.probability_map`
take ``store="result.zarr"`` and write each block of the result into a zarr
group as soon as it is computed. The group is written under a temporary name
beside the target and renamed into place only when the map is complete, so
an interrupted or failed map leaves nothing half-written (:class:`StoreWriter`).

:func:`open_store` opens a store lazily: every array is a dask array reading
its chunks on demand (what napari displays without loading the whole map),
plus the metadata (kind, class names, pixel size...). :func:`store_layer_data`
turns it into napari layer-data tuples without importing napari.

Layout (zarr group attributes ``napari_microstructure``: ``format``,
``version``, ``kind`` and kind-specific metadata):

- ``kind="probability-map"``: ``probabilities`` (n_classes + 1, H, W) float16
  or float32 (NaN = not evaluated), ``labels`` (H, W) uint8/uint16 (0 = not
  evaluated, k + 1 = class k), ``evaluated`` (H, W) bool; metadata
  ``class_names``, ``pixel_size_um``, ``fov_um``, ``fractions``...
- ``kind="ebsd-map"``: ``probabilities`` (rows, cols, n_classes) float32,
  ``agreement``, ``confidence`` (rows, cols) float32, ``index`` int16 (-1 = no
  solution), ``labels`` (rows, cols) int32 or str, ``no_solution`` bool;
  metadata ``classes``, ``no_solution_label``, ``counts``.

Requires ``zarr`` (``pip install napari-microstructure[cluster]``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..core.errors import MicrostructureError

FORMAT = "napari-microstructure-store"
VERSION = 1
KINDS = ("ebsd-map", "probability-map")
#: Side of the square 2-D chunks of stored maps (pixels or patterns).
CHUNK = 512

PathLike = Union[str, os.PathLike]


def _zarr():
    try:
        import zarr
    except ImportError as exc:
        raise MicrostructureError(
            "writing or reading a result store needs the 'zarr' package; install it with "
            "`pip install napari-microstructure[cluster]` (or `pip install zarr`)"
        ) from exc
    return zarr


def check_store_path(path: PathLike, overwrite: bool = False) -> Path:
    """Check that a store can be written at ``path`` (a ``.zarr`` folder) before any work is done.

    Raises
    ------
    MicrostructureError
        The name does not end in ``.zarr``, its folder does not exist, or it
        exists and ``overwrite`` is False.
    """
    p = Path(path)
    if p.suffix.lower() != ".zarr":
        raise MicrostructureError(f"store {str(p)!r} must be a folder name ending in .zarr; e.g. map.zarr")
    if not p.parent.is_dir():
        raise MicrostructureError(f"folder {str(p.parent)!r} does not exist; create it first")
    if p.exists() and not overwrite:
        raise MicrostructureError(
            f"{str(p)!r} already exists; choose another name, delete it, or pass overwrite=True"
        )
    if p.exists() and not is_store(p):
        raise MicrostructureError(
            f"{str(p)!r} exists and is not a napari-microstructure store; it is not overwritten: "
            "choose another name"
        )
    from ..core._files import probe_folder

    probe_folder(p, "store")   # a read-only, forbidden or full folder: now, not after the map is computed
    return p


class StoreWriter:
    """A zarr group written under a temporary name and moved to ``path`` by :meth:`commit`.

    Use as a context manager: leaving the block with an exception (or without
    calling :meth:`commit`) removes the temporary group, so a failed or
    cancelled map leaves no partial store.

    Parameters
    ----------
    path : str or Path
        The store to create (a folder ending in ``.zarr``).
    kind : {"ebsd-map", "probability-map"}
    overwrite : bool
        Replace an existing store at ``path`` (only once the new one is complete).
    """

    def __init__(self, path: PathLike, kind: str, overwrite: bool = False) -> None:
        if kind not in KINDS:
            raise MicrostructureError(f"unknown store kind {kind!r}; one of {', '.join(KINDS)}")
        self.path = check_store_path(path, overwrite)
        self.kind = kind
        self.overwrite = overwrite
        self.tmp = self.path.parent / f".{self.path.name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            self.group = _zarr().open_group(str(self.tmp), mode="w")
        except OSError as exc:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise self.os_error(exc) from exc
        self.attrs: dict[str, Any] = {}
        self._committed = False

    def os_error(self, exc: OSError) -> MicrostructureError:
        """An OS failure while writing the store, as one line naming the store, the problem and the fix."""
        from ..core._files import os_error_message

        return MicrostructureError(os_error_message(exc, self.path, "write the store to"))

    def create(self, name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...],
               fill_value: Any = 0) -> Any:
        """A new zarr array in the group (zarr 3 ``create_array`` or zarr 2 ``create_dataset``)."""
        dtype = np.dtype(dtype)
        chunks = tuple(max(1, min(int(c), int(s))) for c, s in zip(chunks, shape))
        make = getattr(self.group, "create_array", None) or self.group.create_dataset
        return make(name, shape=tuple(int(s) for s in shape), chunks=chunks, dtype=dtype, fill_value=fill_value)

    def commit(self) -> Path:
        """Write the metadata and move the finished store into place."""
        meta = {"format": FORMAT, "version": VERSION, "kind": self.kind, **self.attrs}
        self.group.attrs["napari_microstructure"] = json.loads(json.dumps(meta, default=_jsonable))
        old = None
        if self.path.exists():
            if not self.overwrite:
                raise MicrostructureError(f"{str(self.path)!r} appeared while the map was computed; "
                                          f"the result is kept at {str(self.tmp)!r}")
            old = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Remove the temporary group."""
        if not self._committed:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _meta(path: Path) -> Optional[dict]:
    """The store's metadata from its group attributes, or None (cheap: reads one JSON file)."""
    for name in ("zarr.json", ".zattrs"):
        f = path / name
        if f.is_file():
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                return None
            attrs = doc.get("attributes", doc) if name == "zarr.json" else doc
            meta = attrs.get("napari_microstructure") if isinstance(attrs, dict) else None
            if isinstance(meta, dict) and meta.get("format") == FORMAT:
                return meta
    return None


def is_store(path: PathLike) -> bool:
    """True if ``path`` is a result store written by this package (a cheap check for readers)."""
    p = Path(path)
    return p.is_dir() and _meta(p) is not None


def open_store(path: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open a result store lazily.

    Parameters
    ----------
    path : str or Path
        A ``.zarr`` folder written by ``classify_map(..., store=...)`` or
        ``probability_map(..., store=...)``.

    Returns
    -------
    arrays : dict of str to dask.array.Array
        Every array of the store, read chunk by chunk on demand.
    metadata : dict
        ``kind`` (``"ebsd-map"`` or ``"probability-map"``) and its metadata
        (class names, pixel size in micrometres, fractions...).

    Raises
    ------
    MicrostructureError
        Not a store of this package, or of a newer version.
    """
    import dask.array as da

    p = Path(path)
    meta = _meta(p) if p.is_dir() else None
    if meta is None:
        raise MicrostructureError(
            f"{str(p)!r} is not a napari-microstructure result store (a .zarr folder written with store=...)"
        )
    if int(meta.get("version", 0)) > VERSION:
        raise MicrostructureError(
            f"{str(p)!r} was written by a newer napari-microstructure (store version {meta['version']}); "
            "upgrade the package to read it"
        )
    group = _zarr().open_group(str(p), mode="r")
    arrays = {}
    for name in meta.get("arrays", []):
        arr = group[name]
        arrays[name] = da.from_array(arr, chunks=arr.chunks, name=f"{p.name}-{name}-{uuid.uuid4().hex[:6]}",
                                     lock=False, asarray=True)
    return arrays, dict(meta)


def store_layer_data(path: PathLike) -> list[tuple[Any, dict, str]]:
    """napari layer-data tuples ``(data, kwargs, layer_type)`` for a store, all lazy (dask).

    A probability map gives one image layer per class and "none" (scale =
    pixel size in micrometres) and a labels layer; an EBSD map gives the
    space-group labels and the confidence map.
    """
    arrays, meta = open_store(path)
    name = Path(path).stem
    if meta["kind"] == "probability-map":
        scale = (float(meta["pixel_size_um"]),) * 2
        layers = []
        for k, cls in enumerate(meta["class_names"]):
            layers.append((arrays["probabilities"][k], {
                "name": f"{name}: {cls}", "scale": scale, "colormap": "magma", "contrast_limits": (0.0, 1.0),
                "blending": "additive", "visible": k == len(meta["class_names"]) - 1,
                "metadata": {"napari_microstructure": meta, "class_name": cls}}, "image"))
        layers.append((arrays["labels"], {"name": f"{name}: labels", "scale": scale,
                                          "metadata": {"napari_microstructure": meta}}, "labels"))
        return layers
    labels = arrays["index"] + 1  # 0 = no solution, k + 1 = class k
    return [
        (labels, {"name": f"{name}: space groups", "metadata": {"napari_microstructure": meta}}, "labels"),
        (arrays["confidence"], {"name": f"{name}: confidence", "colormap": "gray",
                                "contrast_limits": (0.0, 1.0), "visible": False}, "image"),
    ]
