"""Input checks for pattern arrays, shared by the EBSD readers and estimators."""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import MicrostructureError

#: The label of patterns no class explains (text classes; integer classes use 0).
NO_SOLUTION_TEXT = "no solution"


def is_dask(array: Any) -> bool:
    """True for a dask array (without importing dask when it is not loaded)."""
    return type(array).__module__.startswith("dask.")


def check_stack(patterns: Any, name: str = "patterns") -> np.ndarray:
    """Validate an (N, h, w) stack held in memory and return it as an array.

    Raises
    ------
    MicrostructureError
        For lists of patterns of different sizes, wrong dimensionality, an
        empty stack, non-numeric data or NaN / infinite values.
    """
    if isinstance(patterns, (list, tuple)):
        shapes = {np.shape(p) for p in patterns}
        if len(shapes) > 1:
            raise MicrostructureError(
                f"{name} have different sizes {sorted(shapes)}; all patterns of one stack "
                "must have the same height and width: resize or crop them to one size first"
            )
        patterns = np.stack([np.asarray(p) for p in patterns]) if patterns else np.empty((0, 0, 0))
    if is_dask(patterns):
        patterns = patterns.compute()
    patterns = np.asarray(patterns)
    if patterns.ndim == 2:
        raise MicrostructureError(
            f"{name} is a single 2-D image of shape {patterns.shape}, but a stack (N, h, w) "
            "is expected; for one pattern use patterns[None]"
        )
    if patterns.ndim == 4:
        patterns = patterns.reshape(-1, *patterns.shape[2:])
    if patterns.ndim != 3:
        raise MicrostructureError(
            f"{name} has {patterns.ndim} dimensions (shape {patterns.shape}); expected a "
            "stack (N, h, w) or a map (rows, cols, h, w)"
        )
    if patterns.shape[0] == 0:
        raise MicrostructureError(f"{name} is empty; give at least one pattern")
    if min(patterns.shape[1:]) < 8:
        raise MicrostructureError(
            f"{name} are {patterns.shape[1]} x {patterns.shape[2]} pixels; patterns must be at "
            "least 8 x 8 pixels"
        )
    if not (np.issubdtype(patterns.dtype, np.number) or patterns.dtype == bool):
        raise MicrostructureError(f"{name} have dtype {patterns.dtype}; give numeric intensities")
    check_finite(patterns, name)
    return patterns


def check_finite(patterns: np.ndarray, name: str = "patterns", offset: int = 0) -> None:
    """Raise if any pattern holds NaN or infinite values (names the first one)."""
    if np.issubdtype(patterns.dtype, np.floating):
        bad = ~np.isfinite(patterns.reshape(len(patterns), -1)).all(1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0]) + offset
            raise MicrostructureError(
                f"{name} contain NaN or infinite values ({int(bad.sum())} patterns, the first "
                f"at index {first}); remove those patterns or replace the values "
                "(e.g. numpy.nan_to_num)"
            )


def check_map(pattern_map: Any, name: str = "pattern_map") -> Any:
    """Validate a (rows, cols, h, w) map without reading it; returns it unchanged
    (an (N, h, w) stack is accepted and viewed as a 1 x N map)."""
    shape = getattr(pattern_map, "shape", None)
    if shape is None:
        pattern_map = np.asarray(pattern_map)
        shape = pattern_map.shape
    if len(shape) == 3:
        pattern_map = pattern_map.reshape(1, *shape)
        shape = pattern_map.shape
    if len(shape) != 4:
        raise MicrostructureError(
            f"{name} has shape {tuple(shape)}; a pattern map must be 4-D (rows, cols, h, w) "
            "(or a 3-D stack (N, h, w))"
        )
    if 0 in shape:
        raise MicrostructureError(f"{name} of shape {tuple(shape)} is empty")
    return pattern_map


def check_labels(labels: Any, n: int) -> np.ndarray:
    """Validate labels for ``n`` patterns; returns a 1-D array."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        labels = labels.reshape(-1) if labels.size == n else labels
    if labels.ndim != 1 or len(labels) != n:
        raise MicrostructureError(
            f"got {labels.size} labels for {n} patterns; give exactly one label per pattern"
        )
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise MicrostructureError("labels contain NaN; give a label to every pattern")
        if np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
    return labels


def same_shapes(shapes: Sequence[tuple], what: str) -> tuple:
    """Return the common shape or raise naming the sizes found."""
    uniq = sorted(set(tuple(s) for s in shapes))
    if len(uniq) > 1:
        raise MicrostructureError(
            f"{what} holds patterns of different sizes {uniq[:5]}; all patterns must have the "
            "same height and width: resize or crop them to one size first"
        )
    return uniq[0]


def warn_if_not_square(shape: Sequence[int], input_size: int, name: str = "patterns") -> None:
    """Warn that non-square patterns are squashed to the square network input."""
    h, w = int(shape[-2]), int(shape[-1])
    if h != w:
        warnings.warn(
            f"{name} are {h} x {w} pixels (not square); they are resized to {input_size} x "
            f"{input_size}, which changes their aspect ratio by {max(h, w) / min(h, w):.2f}. "
            "Patterns classified later must have the same aspect ratio; crop them to a square "
            "around the pattern centre to avoid the distortion.",
            UserWarning, stacklevel=3,
        )


def check_pattern_shape(shape: Sequence[int], trained_shape: Optional[Sequence[int]],
                        name: str = "patterns") -> None:
    """Compare patterns at prediction with those the model was trained on.

    A different aspect ratio is refused (resizing to the square network input
    would distort them differently than in training); a different size with
    the same aspect ratio is accepted with a warning (the detail differs).
    """
    if trained_shape is None:
        return
    h, w = int(shape[-2]), int(shape[-1])
    th, tw = int(trained_shape[0]), int(trained_shape[1])
    if (h, w) == (th, tw):
        return
    if abs((h / w) / (th / tw) - 1.0) > 0.02:
        raise MicrostructureError(
            f"{name} are {h} x {w} pixels (aspect ratio {h / w:.2f}) but the model was trained on "
            f"{th} x {tw} patterns (aspect ratio {th / tw:.2f}); resizing would distort them: crop "
            "or bin them to the training shape, or train a model on patterns of this shape"
        )
    warnings.warn(
        f"{name} are {h} x {w} pixels but the model was trained on {th} x {tw}; they are resized "
        "to the same network input, but the detail differs: bin them like the training patterns "
        "if you can",
        UserWarning, stacklevel=3,
    )


def check_finite_block(block: np.ndarray, origin: tuple[int, int], cols: int,
                       name: str = "pattern_map") -> None:
    """Raise if a (r, c, h, w) block of a map holds NaN or infinite values.

    ``origin`` is the (row, column) of the block's first pattern in the map and
    ``cols`` the map's width, so the message names the first bad pattern by its
    index in the whole map (row-major) and by its row and column.
    """
    if not np.issubdtype(block.dtype, np.floating):
        return
    r, c = block.shape[:2]
    bad = ~np.isfinite(block.reshape(r, c, -1)).all(-1)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        index = (int(origin[0]) + i) * int(cols) + int(origin[1]) + j
        row, col = divmod(index, int(cols))
        raise MicrostructureError(
            f"{name} contains NaN or infinite values ({int(bad.sum())} patterns in this part of the "
            f"map, the first at index {index}: row {row}, column {col}); remove those "
            "patterns or replace the values (e.g. numpy.nan_to_num)"
        )


def as_lazy_map(pattern_map: Any, chunk_size: int) -> Any:
    """View an array-like without ``reshape`` (an h5py or zarr dataset) as a dask array.

    NumPy arrays, memory maps and dask arrays are returned unchanged. The
    dataset is not read: dask reads about ``chunk_size`` patterns per block.
    """
    if isinstance(pattern_map, np.ndarray) or is_dask(pattern_map) or hasattr(pattern_map, "reshape"):
        return pattern_map
    shape = getattr(pattern_map, "shape", None)
    if shape is None or len(shape) not in (3, 4) or not hasattr(pattern_map, "__getitem__"):
        return pattern_map
    import dask.array as da

    if len(shape) == 3:
        chunks = (max(1, min(shape[0], chunk_size)), shape[1], shape[2])
    else:
        cols = max(1, shape[1])
        chunks = (max(1, min(shape[0], chunk_size // cols)), shape[1], shape[2], shape[3])
    return da.from_array(pattern_map, chunks=chunks, lock=True)


def resolve_classes(labels: np.ndarray, classes: Optional[Sequence] = None,
                    zero_shot: str = "BandProfileClassifier.from_pretrained(pc=...)") -> np.ndarray:
    """The sorted classes of a training set: ``classes`` checked against ``labels``, or the labels found.

    Raises
    ------
    MicrostructureError
        A class without patterns, a label outside ``classes``, a single
        class, or the label 0 (reserved for "no solution" in maps). ``zero_shot``
        names the model that needs no labels, for the single-class message.
    """
    found = np.unique(labels)
    if classes is not None:
        classes = np.asarray(list(classes))
        missing = [c for c in classes if c not in set(found.tolist())]
        if missing:
            raise MicrostructureError(
                f"class(es) {', '.join(map(str, missing))} have no training patterns; give at "
                "least one pattern for every class or remove the class"
            )
        extra = [c for c in found if c not in set(classes.tolist())]
        if extra:
            raise MicrostructureError(
                f"labels {', '.join(map(str, extra))} are not among the classes {classes.tolist()}; "
                "add them to the classes or relabel those patterns"
            )
        found = np.sort(classes)
    if len(found) < 2:
        raise MicrostructureError(
            f"all training patterns have the label {found[0].item() if hasattr(found[0], 'item') else found[0]!r}; "
            "a classifier needs at least two "
            "classes (space groups): add patterns of another class. Without labelled patterns, "
            f"{zero_shot} classifies the space groups 221-230 as it is"
        )
    if labels.dtype.kind in "iu" and np.any(np.isin(found, [0])):
        raise MicrostructureError(
            "label 0 is reserved for 'no solution' in maps; number the classes from 1 "
            "(space groups are 1-230)"
        )
    if labels.dtype.kind in "UO" and any(str(c).strip().lower() == NO_SOLUTION_TEXT for c in found):
        raise MicrostructureError(
            f"the label {NO_SOLUTION_TEXT!r} is what maps call patterns no class explains, so it cannot be "
            "a class: leave such patterns out of the training set (the model finds them by itself), or "
            "name the phase"
        )
    return found
