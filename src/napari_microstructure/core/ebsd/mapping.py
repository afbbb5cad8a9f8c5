"""Space-group maps: classify every pattern of a (rows, cols, h, w) map in chunks.

Memory is bounded by the chunk size, not by the map: a NumPy array or memory
map is read in rectangles of at most ``chunk_size`` patterns (whole rows, or
pieces of a row); a dask array block by block (blocks much larger than
``chunk_size`` patterns are split first). Without a ``dask.distributed``
cluster the blocks are classified one after the other in this process; with
one (``client=`` a client or a scheduler address) they are tasks on the
cluster, the classifier sent to each worker once
(:mod:`~napari_microstructure.core.cluster`). Either way progress and cancel
work between blocks, and results arrive here block by block.

Only per-pattern outputs are kept: class probabilities (rows, cols, n_classes)
float32, confidence, agreement, labels (and, from the band-profile classifier,
three orientation angles): about ``4 (n_classes + 3)`` bytes per pattern (12 more
with orientations), 36 MB for a million patterns and six classes. With ``store=`` they
are written to a zarr store as they arrive instead (:mod:`..io.store`), and
the result reads them back lazily: memory no longer grows with the map.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional, Union

import numpy as np

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
    counts : ndarray (n_classes + 1,), optional
        Patterns per class, then "no solution"; set for results written to a
        store, whose arrays are lazy dask arrays (``np.asarray`` loads one).
    detector_euler : ndarray (rows, cols, 3) float32, optional
        Orientation of each pattern in the detector frame, when the classifier
        finds one (:class:`~.bandclassifier.BandProfileClassifier`): Bunge
        angles in radians of the detector-to-crystal rotation (the transpose
        of the indexer's crystal-to-detector matrix). :meth:`sample_euler`
        turns them into sample-frame orientations.
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
    counts: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    detector_euler: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)

    def sample_euler(self, sample_tilt_deg: float = 70.0, detector_tilt_deg: float = 0.0) -> np.ndarray:
        """Bunge Euler angles (rows, cols, 3) in radians of each point's orientation, sample frame.

        See :mod:`~.orientations` for the conventions (orix's and kikuchipy's).
        """
        from .orientations import euler_matrices, sample_euler

        if self.detector_euler is None:
            raise MicrostructureError(
                "this map has no orientations: only BandProfileClassifier finds them (the CNN "
                "classifier tells space groups only); classify the map with nm.BandProfileClassifier")
        rotations = np.swapaxes(euler_matrices(np.asarray(self.detector_euler, np.float64)), -1, -2)
        return sample_euler(rotations, sample_tilt_deg, detector_tilt_deg)

    def ipf_colours(self, sample_tilt_deg: float = 70.0, detector_tilt_deg: float = 0.0,
                    direction=(0.0, 0.0, 1.0)) -> np.ndarray:
        """Inverse-pole-figure colours (rows, cols, 3) in [0, 1] of each point for a sample direction.

        Default the sample normal (IPF-Z): [001] red, [101] green, [111] blue
        (:func:`~.orientations.ipf_colours`); points without a solution get
        colours too (mask them with :attr:`no_solution`).
        """
        from .orientations import euler_matrices, ipf_colours

        return ipf_colours(euler_matrices(self.sample_euler(sample_tilt_deg, detector_tilt_deg)), direction)

    def _counts(self) -> np.ndarray:
        """Patterns of each class, then of "no solution" (kept with a stored result)."""
        if self.counts is not None:
            return self.counts
        n_classes = len(self.classes)
        return np.bincount(np.where(np.asarray(self.index) < 0, n_classes, np.asarray(self.index)).ravel(),
                           minlength=n_classes + 1)

    @property
    def fractions(self) -> dict:
        """Area fraction of each class and of "no solution" (they sum to 1)."""
        counts = self._counts()
        n = self.index.size
        out = {}
        for k, c in enumerate(self.classes):
            out[c.item() if hasattr(c, "item") else c] = float(counts[k]) / n
        out["no solution"] = float(counts[-1]) / n
        return out

    def fractions_table(self) -> list[tuple[str, int, float]]:
        """Rows (class, number of patterns, fraction) for display or CSV."""
        counts = self._counts()
        n = self.index.size
        rows = [(str(c), int(counts[k])) for k, c in enumerate(self.classes)]
        rows.append(("no solution", int(counts[-1])))
        return [(c, k, k / n) for c, k in rows]


def classify_map(clf, pattern_map: Any, chunk_size: int = 2048,
                 background: Union[str, np.ndarray, None] = "model", *,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None,
                 client: Any = None, store: Any = None, overwrite: bool = False,
                 step_size_um: Optional[Any] = None) -> MapResult:
    """Classify every pattern of a map.

    Parameters
    ----------
    clf : EBSDClassifier or BandProfileClassifier
        A fitted classifier.
    pattern_map : ndarray, numpy.memmap, h5py dataset or dask array
        ``(rows, cols, h, w)`` (an ``(N, h, w)`` stack is treated as 1 x N).
    chunk_size : int
        Patterns read and classified at once; bounds the memory (about
        ``chunk_size * h * w * 12`` bytes plus the network's activations).
        The result does not depend on it.
    background : "model", "map", ndarray or None
        Static background. For an ``EBSDClassifier``: the training one stored
        in the model (default), the mean pattern of this map ("map": one extra
        streaming pass, in this process), an array from
        :meth:`PatternPreprocessor.mean_background`, or None (= "model"). For a
        ``BandProfileClassifier``: none (default: each pattern's own smooth
        background is divided out), the detector's raw static background as an
        ``(h, w)`` array (the one the file stores,
        :attr:`~napari_microstructure.io.ebsd.PatternData.static_background`),
        or "map" (:func:`mean_pattern` of this map); it is subtracted.
    progress : callable, optional
        Receives Progress(stage="map", step=patterns done, total=patterns).
    cancel : threading.Event, optional
        Raises ``TrainingCancelled`` between chunks; nothing is returned and
        no store is written.
    client : distributed.Client or str, optional
        Compute on a ``dask.distributed`` cluster: a client, or a scheduler
        address (``"tcp://host:8786"``). Default: the client created in this
        process if there is one, else the scheduler in the environment
        variable ``NAPARI_MICROSTRUCTURE_SCHEDULER``, else this process. The
        classifier is sent to each worker once; blocks of a dask array are
        read by the workers, chunks of a NumPy array or memory map are read
        here and sent with their task. See :mod:`~napari_microstructure.core.cluster`.
    store : str or Path, optional
        A ``.zarr`` folder: every block of the result is written there as it
        is computed (so the map need not fit in memory) and the returned
        result holds lazy dask arrays reading it (see
        :mod:`napari_microstructure.io.store`). The store appears only when
        the whole map is done.
    overwrite : bool
        Replace an existing ``store``.
    step_size_um : float or (float, float), optional
        Map step in micrometres (e.g. ``PatternData.step_size_um``), kept in the result.

    Returns
    -------
    MapResult
    """
    from ..base import check_is_fitted  # imports torch: not at module level (the pattern readers use this module)

    check_is_fitted(clf, "to classify a map")
    if not (isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1):
        raise MicrostructureError(f"chunk_size={chunk_size!r}; give a positive number of patterns")
    if step_size_um is not None:
        try:
            step = np.asarray(step_size_um, float).ravel()
        except (TypeError, ValueError):
            step = np.array([np.nan])
        if step.size not in (1, 2) or not np.all(np.isfinite(step)) or np.any(step <= 0):
            raise MicrostructureError(
                f"step_size_um={step_size_um!r}; give one positive number or (row, column) in micrometres")
    pattern_map = check_map(as_lazy_map(pattern_map, int(chunk_size)))  # h5py/zarr: via dask
    rows, cols, h, w = pattern_map.shape
    n = rows * cols
    pre = getattr(clf, "preprocessor_", None)  # None: the classifier removes each pattern's background
    if getattr(pre, "pattern_shape_", None) is not None and tuple(pre.pattern_shape_) != (h, w):
        check_pattern_shape((h, w), pre.pattern_shape_, "the patterns of the map")  # before any work
    if store is not None:
        from ...io.store import check_store_path

        check_store_path(store, overwrite)
    word = background if isinstance(background, str) else None
    if word not in (None, "model", "map"):
        if pre is None:  # band-profile classifier
            raise MicrostructureError(
                f"background={background!r}; this classifier takes the static background as an array of "
                "the patterns' shape, 'map' (the mean pattern of this map) or None (each pattern's own "
                "smooth background is divided out)")
        raise MicrostructureError(f"background={background!r}; use 'model', 'map' or an array")
    if word == "map":
        report(progress, "background", 0, n, "mean pattern of the map")
        # a band-profile classifier subtracts the raw mean; a CNN's preprocessor its gain-normalised one
        bg = mean_pattern(pattern_map, chunk_size, cancel,
                          None if pre is None else pre._resize_normalise_gain)
    else:
        bg = None if word == "model" else background
    n_classes = len(clf.classes_)
    classify = BlockClassifier(clf, bg, int(chunk_size), cols)
    if is_dask(pattern_map):
        regions, payloads = _dask_blocks(pattern_map, chunk_size)
    else:
        regions = list(_rectangles(rows, cols, chunk_size))
        payloads = _numpy_blocks(pattern_map, regions)
    sink = _StoreSink(clf, store, overwrite, rows, cols) if store is not None else _MemorySink(clf, rows, cols)
    done = [0]
    report(progress, "map", 0, n, f"classifying {n} patterns")

    def on_result(i: int, block: np.ndarray) -> None:
        r0, r1, c0, c1 = regions[i]
        sink.write(r0, r1, c0, c1, block)
        done[0] += (r1 - r0) * (c1 - c0)
        report(progress, "map", done[0], n, f"{done[0]} / {n} patterns")

    from ..cluster import connect, run_tasks

    try:
        with connect(client) as cluster:
            if cluster is None:
                for i, (origin, block) in enumerate(payloads):
                    check_cancel(cancel)
                    if is_dask(block):
                        block = block.compute(scheduler="synchronous")
                    on_result(i, classify((origin, block)))
            else:
                check_cancel(cancel)
                run_tasks(cluster, _classify_block, classify, payloads, on_result, cancel=cancel)
        out = sink.finish()
        if step_size_um is not None:
            out.step_size_um = tuple(float(v) for v in np.broadcast_to(np.asarray(step_size_um, float).ravel(), (2,)))
        return out
    finally:
        sink.close()


def _n_outputs(clf) -> int:
    """Per-pattern outputs of a map: probabilities, agreement, then 3 orientation angles if found."""
    return len(clf.classes_) + 1 + (3 if getattr(clf, "finds_orientations", False) else 0)


class BlockClassifier:
    """``(r, c, h, w)`` patterns -> ``(r, c, n_outputs)``: probabilities, agreement, orientation.

    The orientation (for classifiers with ``finds_orientations``) is the
    detector-frame Bunge angles of :attr:`MapResult.detector_euler`.

    What a cluster worker receives once per map (the fitted classifier, the
    background and the chunk size); picklable (the traced networks are
    rebuilt on first use in each worker process and kept for its later tasks).
    """

    def __init__(self, clf, background: Optional[np.ndarray], chunk_size: int, cols: int) -> None:
        self.clf = clf
        self.background = background
        self.chunk_size = chunk_size
        self.cols = cols

    def __call__(self, payload: tuple[tuple[int, int], Any]) -> np.ndarray:
        """``payload``: (the block's first (row, column) in the map, the block)."""
        origin, block = payload
        clf, chunk_size = self.clf, self.chunk_size
        n_classes = len(clf.classes_)
        block = np.asarray(block)
        r, c, h, w = block.shape
        check_finite_block(block, origin, self.cols)  # names a bad pattern by its map index
        flat = block.reshape(r * c, h, w)
        n_out = _n_outputs(clf)
        out = np.empty((r * c, n_out), np.float32)
        for s in range(0, r * c, chunk_size):
            part = flat[s:s + chunk_size]
            summ = clf.predict_uncertainty(part, background=self.background, check=False)
            out[s:s + len(part), :n_classes] = summ["probabilities"]
            out[s:s + len(part), n_classes] = summ["agreement"]
            if n_out > n_classes + 1:
                from .orientations import bunge_euler

                out[s:s + len(part), n_classes + 1:] = bunge_euler(np.swapaxes(summ["rotations"], -1, -2))
        return out.reshape(r, c, n_out)


def _classify_block(classify: BlockClassifier, payload: tuple) -> np.ndarray:
    """The task run on a cluster worker (module level: pickled by reference)."""
    return classify(payload)


def _rectangles(rows: int, cols: int, chunk_size: int) -> Iterator[tuple[int, int, int, int]]:
    """``(r0, r1, c0, c1)`` of at most ``chunk_size`` patterns each, in memory order.

    Whole rows when a row fits in a chunk, else pieces of one row: every
    rectangle is contiguous in a C-ordered map (one read of a memory map).
    """
    if cols <= chunk_size:
        k = chunk_size // cols
        for r0 in range(0, rows, k):
            yield r0, min(rows, r0 + k), 0, cols
    else:
        for r in range(rows):
            for c0 in range(0, cols, chunk_size):
                yield r, r + 1, c0, min(cols, c0 + chunk_size)


def _numpy_blocks(pattern_map: Any, regions: list) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """(origin, block): each rectangle read into memory (its memory-mapped pages then dropped)."""
    for r0, r1, c0, c1 in regions:
        view = pattern_map[r0:r1, c0:c1]
        block = np.array(view)
        _release_pages(view)
        yield (r0, c0), block


def _dask_blocks(pattern_map: Any, chunk_size: int) -> tuple[list, Iterator[Any]]:
    """Regions and blocks (lazy dask arrays) of a dask map, split to about ``4 * chunk_size`` patterns."""
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
    r0 = np.concatenate([[0], np.cumsum(pm.chunks[0])]).astype(int)
    c0 = np.concatenate([[0], np.cumsum(pm.chunks[1])]).astype(int)
    index = [(i, j) for i in range(len(pm.chunks[0])) for j in range(len(pm.chunks[1]))]
    regions = [(int(r0[i]), int(r0[i + 1]), int(c0[j]), int(c0[j + 1])) for i, j in index]

    def blocks() -> Iterator[tuple[tuple[int, int], Any]]:
        for i, j in index:
            yield (int(r0[i]), int(c0[j])), pm.blocks[i, j, 0, 0]

    return regions, blocks()


class _MemorySink:
    """Collects per-pattern outputs in memory: ``(rows, cols, n_outputs)`` float32."""

    def __init__(self, clf, rows: int, cols: int) -> None:
        self.clf = clf
        self.n_classes = len(clf.classes_)
        self.result = np.empty((rows, cols, _n_outputs(clf)), np.float32)

    def write(self, r0: int, r1: int, c0: int, c1: int, block: np.ndarray) -> None:
        self.result[r0:r1, c0:c1] = block

    def finish(self) -> MapResult:
        return _assemble(self.clf, self.result, self.n_classes)

    def close(self) -> None:
        pass


class _StoreSink:
    """Writes every block's outputs into a zarr store as it arrives; the result reads it lazily."""

    def __init__(self, clf, path: Any, overwrite: bool, rows: int, cols: int) -> None:
        from ...io.store import CHUNK, StoreWriter

        self.clf = clf
        self.n_classes = n_classes = len(clf.classes_)
        self.int_labels = clf.classes_.dtype.kind in "iu"
        self.writer = StoreWriter(path, "ebsd-map", overwrite)
        ch = (CHUNK, CHUNK)
        wr = self.writer
        self.arrays = {
            "probabilities": wr.create("probabilities", (rows, cols, n_classes), np.float32, ch + (n_classes,)),
            "agreement": wr.create("agreement", (rows, cols), np.float32, ch),
            "confidence": wr.create("confidence", (rows, cols), np.float32, ch),
            "index": wr.create("index", (rows, cols), np.int16, ch, fill_value=-1),
            "no_solution": wr.create("no_solution", (rows, cols), bool, ch, fill_value=True),
        }
        if self.int_labels:
            self.arrays["labels"] = wr.create("labels", (rows, cols), np.int32, ch)
        if _n_outputs(clf) > n_classes + 1:
            self.arrays["detector_euler"] = wr.create("detector_euler", (rows, cols, 3), np.float32, ch + (3,))
        self.counts = np.zeros(n_classes + 1, np.int64)

    def write(self, r0: int, r1: int, c0: int, c1: int, block: np.ndarray) -> None:
        part = _assemble(self.clf, block, self.n_classes)
        for name, arr in self.arrays.items():
            arr[r0:r1, c0:c1] = getattr(part, name)
        self.counts += np.bincount(np.where(part.index < 0, self.n_classes, part.index).ravel(),
                                   minlength=self.n_classes + 1)

    def finish(self) -> MapResult:
        from ...io.store import open_store

        clf = self.clf
        wr = self.writer
        wr.attrs.update(
            arrays=sorted(self.arrays),
            classes=[c.item() if hasattr(c, "item") else c for c in clf.classes_],
            classes_type="int" if self.int_labels else "str",
            no_solution_label=clf.no_solution_label_,
            counts=self.counts.tolist(),
            confidence_threshold=float(clf.confidence_threshold),
            agreement_threshold=float(clf.agreement_threshold),
        )
        path = wr.commit()
        arrays, _ = open_store(path)
        return map_result_from_store(arrays, wr.attrs)

    def close(self) -> None:
        self.writer.abort()


def map_result_from_store(arrays: dict, meta: dict) -> MapResult:
    """A :class:`MapResult` whose arrays are the lazy (dask) arrays of an EBSD map store."""
    classes = np.asarray(meta["classes"], dtype=np.int64 if meta["classes_type"] == "int" else str)
    nsl = meta["no_solution_label"]
    labels = arrays.get("labels")
    if labels is None:  # text classes: looked up from the index chunk by chunk
        lut = np.concatenate([classes.astype(object), [nsl]]).astype(str)
        labels = arrays["index"].map_blocks(lambda b: lut[np.where(b < 0, len(classes), b)], dtype=lut.dtype)
    counts = meta.get("counts")
    return MapResult(labels, arrays["index"], arrays["confidence"], arrays["agreement"], arrays["no_solution"],
                     arrays["probabilities"], classes, nsl,
                     counts=None if counts is None else np.asarray(counts, np.int64),
                     detector_euler=arrays.get("detector_euler"))


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


def mean_pattern(pattern_map: Any, chunk_size: int = 2048, cancel: Optional[CancelToken] = None,
                 transform: Optional[Any] = None) -> np.ndarray:
    """The mean pattern of a ``(rows, cols, h, w)`` map, float32, in one streaming pass.

    Raw (``transform`` None, ``(h, w)``): a static background for
    :class:`~.bandclassifier.BandProfileClassifier`, since the bands of a map
    of many grains average out and the detector's own pattern (backscatter
    lobe, scintillator and optics) stays. ``transform`` maps each block
    ``(n, h, w)`` to the patterns to average first (a CNN's preprocessor:
    ``PatternPreprocessor._resize_normalise_gain``). NumPy maps are read
    ``chunk_size`` patterns at a time, dask maps block by block.
    """
    rows, cols, h, w = pattern_map.shape
    flat = pattern_map.reshape(rows * cols, h, w)
    if is_dask(pattern_map):
        reads = [lambda b=b: b.compute(scheduler="synchronous") for b in flat.to_delayed().ravel()]
    else:
        reads = [lambda s=s: flat[s:s + int(chunk_size)] for s in range(0, rows * cols, int(chunk_size))]
    total = None
    for read in reads:
        check_cancel(cancel)
        block = np.asarray(read())
        part = np.asarray(block if transform is None else transform(block), np.float64).sum(0)
        total = part if total is None else total + part
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
    euler = np.ascontiguousarray(result[..., n_classes + 1:n_classes + 4]) if result.shape[-1] > n_classes + 1 \
        else None
    return MapResult(labels, index, confidence, agreement.astype(np.float32), no_solution,
                     np.ascontiguousarray(proba), classes, nsl, detector_euler=euler)
