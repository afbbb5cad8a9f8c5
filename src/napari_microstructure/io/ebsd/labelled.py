"""Labelled training patterns: what ``EBSDClassifier.fit`` needs, from files.

Three ways to give them:

1. a ``.npz`` file with arrays ``patterns`` (N, h, w) and ``labels`` (N,);
2. a folder with one sub-folder per class, named by the class (e.g. ``221/``,
   ``225/``), each holding pattern images;
3. any pattern file readable by :func:`~napari_microstructure.io.ebsd.load_patterns`
   plus a labels file: ``.npy``, or text / CSV with one label per pattern
   (one per line, or a column named ``label``, ``space_group`` or ``class``).

Training sets are small: they are read into memory.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ...core.ebsd._validation import check_labels, check_stack, same_shapes
from ...core.errors import MicrostructureError
from . import image_directory

PathLike = Union[str, os.PathLike]


def write_labelled_patterns(filename: PathLike, patterns: np.ndarray, labels) -> Path:
    """Write patterns and labels as a compressed ``.npz``."""
    patterns = check_stack(patterns)
    labels = check_labels(labels, len(patterns))
    np.savez_compressed(filename, patterns=patterns, labels=labels)
    return Path(filename)


def _parse_label(text: str):
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value == int(value) else value


def read_labels(filename: PathLike) -> np.ndarray:
    """Labels from ``.npy`` or text/CSV (one per line or a ``label`` column)."""
    filename = Path(filename)
    if not filename.is_file():
        raise MicrostructureError(f"labels file {str(filename)!r} does not exist; check the path")
    if filename.suffix.lower() == ".npy":
        try:
            return np.load(filename, allow_pickle=False).reshape(-1)
        except Exception as exc:
            raise MicrostructureError(f"{str(filename)!r} is not a readable .npy labels file: {exc}") from exc
    with open(filename, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise MicrostructureError(f"labels file {str(filename)!r} is empty; write one label per pattern")
    col = 0
    header = [c.strip().lower() for c in rows[0]]
    for name in ("label", "labels", "space_group", "spacegroup", "class"):
        if name in header:
            col = header.index(name)
            rows = rows[1:]
            break
    else:
        first = _parse_label(rows[0][0])
        second = _parse_label(rows[1][0]) if len(rows) > 1 else None
        if isinstance(first, str) and not isinstance(second, str) and second is not None:
            rows = rows[1:]
    values = [_parse_label(r[col]) for r in rows]
    if all(isinstance(v, int) for v in values):
        return np.asarray(values, dtype=np.int64)
    return np.asarray([str(v) for v in values])


def read_labelled_patterns(path: PathLike, labels: Optional[PathLike] = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a labelled training set.

    Parameters
    ----------
    path : path-like
        ``.npz`` with ``patterns`` and ``labels``; a folder of class
        sub-folders; or a pattern file (then ``labels`` is required).
    labels : path-like, optional
        Labels file for a plain pattern file.

    Returns
    -------
    patterns : ndarray (N, h, w)
    labels : ndarray (N,)
    """
    from . import load_patterns

    path = Path(path)
    if not path.exists():
        raise MicrostructureError(f"{str(path)!r} does not exist; check the path")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "patterns" not in z or "labels" not in z:
                    raise MicrostructureError(
                        f"{str(path)!r} must hold arrays named 'patterns' and 'labels' (it has "
                        f"{sorted(z.files)}); save with numpy.savez(path, patterns=..., labels=...)"
                    )
                pats, labs = z["patterns"], z["labels"]
        except MicrostructureError:
            raise
        except Exception as exc:
            raise MicrostructureError(f"{str(path)!r} is not a readable .npz file ({exc}); it may be truncated") from exc
        pats = check_stack(pats)
        return pats, check_labels(labs, len(pats))
    if path.is_dir():
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if subdirs and labels is None:
            pats, labs, shapes = [], [], []
            for sub in subdirs:
                files = image_directory.list_images(sub)
                for f in files:
                    img = image_directory.read_image(f)
                    shapes.append(img.shape)
                    pats.append(img)
                    labs.append(_parse_label(sub.name))
            if not pats:
                raise MicrostructureError(
                    f"the class folders of {str(path)!r} hold no images; put pattern images in "
                    "one sub-folder per class"
                )
            same_shapes(shapes, f"folder {str(path)!r}")
            labs = np.asarray(labs) if not all(isinstance(v, int) for v in labs) else np.asarray(labs, np.int64)
            return check_stack(np.stack(pats)), labs
    if labels is None:
        raise MicrostructureError(
            f"{str(path)!r} holds patterns without labels; give a labels file (one label per "
            "pattern), or use a .npz with 'patterns' and 'labels', or a folder of class sub-folders"
        )
    data = load_patterns(path, lazy=False)
    pats = check_stack(np.asarray(data.patterns))
    data.close()
    return pats, check_labels(read_labels(labels), len(pats))
