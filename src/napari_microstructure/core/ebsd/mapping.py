"""Space-group maps: classify every pattern of a (rows, cols, h, w) map in chunks.

Memory is bounded by the chunk size, not by the map: a NumPy array or memory
map is read ``chunk_size`` patterns at a time; a dask array is processed block
by block with :meth:`dask.array.Array.map_blocks` (blocks larger than
``chunk_size`` patterns are split first). Without a ``dask.distributed``
client the blocks are computed one after the other in this process, with
progress and cancel between blocks; with a client (``distributed.Client()``
created by the user) the whole graph is submitted to the cluster.

Only per-pattern outputs are kept: class probabilities (rows, cols, n_classes)
float32, confidence, agreement, labels: about ``4 (n_classes + 3)`` bytes per
pattern, 36 MB for a million patterns and six classes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

import numpy as np

from ..base import check_is_fitted
from ..errors import MicrostructureError
from ..nn.progress import CancelToken, ProgressCallback, check_cancel, report
from ._validation import as_lazy_map, check_finite_block, check_map, check_pattern_shape, is_dask


@dataclasses.dataclass
class MapResult:
    """The result of :func:`classify_map`.

    Attributes
    ----------
    labels : ndarray (rows, cols)
        Class label of each pattern; ``no_solution_label`` where uncertain.
    index : ndarray (rows, cols) int16
        Index into ``classes``; -1 for "no solution".
    confidence : ndarray (rows, cols) float32
        Largest ensemble-averaged class probability.
    agreement : ndarray (rows, cols) float32
        Fraction of ensemble members voting for the ensemble's class.
    no_solution : ndarray (rows, cols) bool
    probabilities : ndarray (rows, cols, n_classes) float32
    classes : ndarray (n_classes,)
    no_solution_label : int or str
    step_size_um : (float, float) or None
        Map step (row, column) in micrometres when known: napari layers get
        ``scale=step_size_um``; :func:`napari_microstructure.io.ebsd.export.write_map`
        writes it to ``.ang`` / ``.ctf``.
    """

    labels: np.ndarray
    index: np.ndarray
    confidence: np.ndarray
    agreement: np.ndarray
    no_solution: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray
    no_solution_label: Any
    step_size_um: Optional[tuple] = None

    @property
    def fractions(self) -> dict:
        """Area fraction of each class and of "no solution" (they sum to 1)."""
        n = self.index.size
        out = {}
        for k, c in enumerate(self.classes):
            out[c.item() if hasattr(c, "item") else c] = float(np.count_nonzero(self.index == k)) / n
        out["no solution"] = float(np.count_nonzero(self.index < 0)) / n
        return out

    def fractions_table(self) -> list[tuple[str, int, float]]:
        """Rows (class, number of patterns, fraction) for display or CSV."""
        n = self.index.size
        rows = [(str(c), int(np.count_nonzero(self.index == k)), 0.0) for k, c in enumerate(self.classes)]
        rows.append(("no solution", int(np.count_nonzero(self.index < 0)), 0.0))
        return [(c, k, k / n) for c, k, _ in rows]


def _distributed_client():
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None


def classify_map(clf, pattern_map: Any, chunk_size: int = 2048,
                 background: Union[str, np.ndarray, None] = "model", *,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None,
                 step_size_um: Optional[Any] = None) -> MapResult:
    """Classify every pattern of a map.

    Parameters
    ----------
    clf : EBSDClassifier
        A fitted classifier.
    pattern_map : ndarray, numpy.memmap, h5py dataset or dask array
        ``(rows, cols, h, w)`` (an ``(N, h, w)`` stack is treated as 1 x N).
    chunk_size : int
        Patterns read and classified at once; bounds the memory (about
        ``chunk_size * h * w * 12`` bytes plus the network's activations).
        The result does not depend on it.
    background : "model", "map", ndarray or None
        Static background: the training one stored in the model (default),
        the mean pattern of this map ("map": one extra streaming pass), an
        array from :meth:`PatternPreprocessor.mean_background`, or None (=
        "model").
    progress : callable, optional
        Receives Progress(stage="map", step=patterns done, total=patterns).
    cancel : threading.Event, optional
        Raises ``TrainingCancelled`` between chunks; nothing is returned.
    step_size_um : float or (float, float), optional
        Map step in micrometres (e.g. ``PatternData.step_size_um``), kept in the result.

    Returns
    -------
    MapResult
    """
    check_is_fitted(clf, "to classify a map")
    if not (isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1):
        raise MicrostructureError(f"chunk_size={chunk_size!r}; give a positive number of patterns")
    if step_size_um is not None:
        step = np.asarray(step_size_um, float).ravel()
        if step.size not in (1, 2) or not np.all(np.isfinite(step)) or np.any(step <= 0):
            raise MicrostructureError(
                f"step_size_um={step_size_um!r}; give one positive number or (row, column) in micrometres")
    pattern_map = check_map(as_lazy_map(pattern_map, int(chunk_size)))  # h5py/zarr: via dask
    rows, cols, h, w = pattern_map.shape
    n = rows * cols
    pre = clf.preprocessor_
    if getattr(pre, "pattern_shape_", None) is not None and tuple(pre.pattern_shape_) != (h, w):
        check_pattern_shape((h, w), pre.pattern_shape_, "the patterns of the map")  # before any work
    if isinstance(background, str):
        if background == "map":
            report(progress, "background", 0, n, "mean pattern of the map")
            bg = pre.mean_background(pattern_map.reshape(n, h, w), chunk=chunk_size) \
                if not is_dask(pattern_map) else _dask_mean_background(pre, pattern_map)
        elif background == "model":
            bg = None
        else:
            raise MicrostructureError(f"background={background!r}; use 'model', 'map' or an array")
    else:
        bg = background
    n_classes = len(clf.classes_)

    def block_fn(block: np.ndarray, block_info=None, origin=None) -> np.ndarray:
        """(r, c, h, w) patterns -> (r, c, n_classes + 1): probabilities and agreement."""
        r, c = block.shape[:2]
        if origin is None:
            loc = (block_info or {}).get(0, {}).get("array-location")
            origin = (loc[0][0], loc[1][0]) if loc else (0, 0)
        check_finite_block(np.asarray(block), origin, cols)
        flat = np.asarray(block).reshape(r * c, h, w)
        out = np.empty((r * c, n_classes + 1), np.float32)
        for s in range(0, r * c, chunk_size):
            part = flat[s:s + chunk_size]
            summ = clf.predict_uncertainty(part, background=bg, check=False)
            out[s:s + len(part), :n_classes] = summ["probabilities"]
            out[s:s + len(part), n_classes] = summ["agreement"]
        return out.reshape(r, c, n_classes + 1)

    result = np.empty((rows, cols, n_classes + 1), np.float32)
    report(progress, "map", 0, n, f"classifying {n} patterns")
    if is_dask(pattern_map):
        _classify_dask(pattern_map, block_fn, result, chunk_size, n_classes, progress, cancel)
    else:
        flat_out = result.reshape(n, n_classes + 1)
        flat_in = pattern_map.reshape(n, h, w) if hasattr(pattern_map, "reshape") else pattern_map
        for s in range(0, n, chunk_size):
            check_cancel(cancel)
            view = flat_in[s:s + chunk_size]
            block = np.array(view)
            _release_pages(view)
            flat_out[s:s + len(block)] = block_fn(block[None], origin=divmod(s, cols))[0]
            report(progress, "map", s + len(block), n, f"{s + len(block)} / {n} patterns")
    out = _assemble(clf, result, n_classes)
    if step_size_um is not None:
        out.step_size_um = tuple(float(v) for v in np.broadcast_to(np.asarray(step_size_um, float).ravel(), (2,)))
    return out


def _release_pages(view: Any) -> None:
    """Tell the kernel a memory-mapped chunk already read is not needed any more.

    Pages of a read-only file mapping stay in the process's resident set after
    reading; dropping them (``MADV_DONTNEED``, re-read from the file if touched
    again) keeps the memory of a pass over a huge memory map bounded.
    """
    mm = getattr(view, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not view.flags.c_contiguous:
        return
    import mmap as _mmap

    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):  # pragma: no cover - writable or closed maps
        return
    page = _mmap.PAGESIZE
    start = view.ctypes.data - base
    stop = start + view.nbytes
    first = -(-start // page) * page  # only whole pages inside the chunk
    last = (stop // page) * page
    if last > first:
        try:
            mm.madvise(_mmap.MADV_DONTNEED, first, last - first)
        except (OSError, ValueError):  # pragma: no cover
            pass


def _classify_dask(pattern_map, block_fn, result, chunk_size, n_classes, progress, cancel) -> None:
    rows, cols, h, w = pattern_map.shape
    pm = pattern_map
    if pm.chunks[2] != (h,) or pm.chunks[3] != (w,):
        pm = pm.rechunk({2: -1, 3: -1})
    # split blocks holding many more patterns than chunk_size
    max_block = max(4 * chunk_size, 1)
    if max(pm.chunks[0]) * max(pm.chunks[1]) > max_block:
        c_cols = min(cols, max_block)
        c_rows = max(1, min(rows, max_block // c_cols))
        pm = pm.rechunk({0: c_rows, 1: c_cols})
    out = pm.map_blocks(block_fn, dtype=np.float32, drop_axis=[2, 3], new_axis=[2],
                        chunks=(pm.chunks[0], pm.chunks[1], (n_classes + 1,)),
                        meta=np.empty((0, 0, 0), np.float32))
    client = _distributed_client()
    if client is not None:
        check_cancel(cancel)
        result[...] = client.compute(out).result()
        report(progress, "map", rows * cols, rows * cols, "done")
        return
    r0 = np.concatenate([[0], np.cumsum(pm.chunks[0])])
    c0 = np.concatenate([[0], np.cumsum(pm.chunks[1])])
    done, total = 0, rows * cols
    for i in range(len(pm.chunks[0])):
        for j in range(len(pm.chunks[1])):
            check_cancel(cancel)
            block = out.blocks[i, j, 0].compute(scheduler="synchronous")
            result[r0[i]:r0[i + 1], c0[j]:c0[j + 1]] = block
            done += block.shape[0] * block.shape[1]
            report(progress, "map", done, total, f"{done} / {total} patterns")


def _dask_mean_background(pre, pattern_map) -> np.ndarray:
    rows, cols, h, w = pattern_map.shape
    total = np.zeros((pre.input_size,) * 2, np.float64)
    flat = pattern_map.reshape(rows * cols, h, w)
    for block in flat.to_delayed().ravel():
        arr = block.compute(scheduler="synchronous")
        total += pre._resize_normalise_gain(arr).sum(0)
    return (total / (rows * cols)).astype(np.float32)


def _assemble(clf, result: np.ndarray, n_classes: int) -> MapResult:
    proba = result[..., :n_classes]
    agreement = result[..., n_classes]
    index = proba.argmax(-1).astype(np.int16)
    confidence = proba.max(-1).astype(np.float32)
    no_solution = (confidence < float(clf.confidence_threshold)) | (agreement < float(clf.agreement_threshold))
    index[no_solution] = -1
    nsl = clf.no_solution_label_
    classes = clf.classes_
    if classes.dtype.kind in "iu":
        lut = np.concatenate([classes, [nsl]]).astype(np.int32)
    else:
        lut = np.concatenate([classes.astype(object), [nsl]]).astype(str)
    labels = lut[np.where(index < 0, n_classes, index)]
    return MapResult(labels, index, confidence, agreement.astype(np.float32), no_solution,
                     np.ascontiguousarray(proba), classes, nsl)
