"""Model files: weights and metadata, no pickle.

A model file is written with :func:`torch.save` and holds only tensors,
strings and numbers (a dict)::

    {"format": "napari-microstructure-model",
     "version": 1,
     "kind": "micrograph" | "ebsd",
     "metadata": "<JSON text>",
     "tensors": {"<group>.<name>": Tensor, ...}}

It is read back with ``torch.load(..., weights_only=True)``, which refuses
anything but tensors and plain containers, so opening a model file shared by a
stranger runs no code. Files are written to a temporary name and renamed, so an
interrupted save never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import torch

from ..errors import ModelFileError

FORMAT = "napari-microstructure-model"
VERSION = 1

PathLike = Union[str, os.PathLike]

KIND_NAMES = {
    "micrograph": "a micrograph model (FewShotClassifier)",
    "ebsd": "an EBSD model (EBSDClassifier)",
}


def save_model_file(
    path: PathLike,
    kind: str,
    metadata: Mapping[str, Any],
    tensors: Mapping[str, Union[torch.Tensor, np.ndarray]],
) -> Path:
    """Write a model file atomically.

    Parameters
    ----------
    path : path-like
        Destination; parent folders must exist.
    kind : str
        ``"micrograph"`` or ``"ebsd"``.
    metadata : mapping
        JSON-serialisable description (classes, sizes, thresholds, ...).
    tensors : mapping of str to tensor or array
        Weights and numeric parameters, flattened names.
    """
    path = Path(path)
    if not path.parent.exists():
        raise ModelFileError(
            f"cannot save the model to {str(path)!r}: folder {str(path.parent)!r} "
            "does not exist; create it or choose another path"
        )
    try:
        meta_text = json.dumps(metadata)
    except TypeError as exc:  # pragma: no cover - programming error
        raise ModelFileError(f"model metadata is not JSON-serialisable: {exc}") from exc
    flat = {}
    for name, value in tensors.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        flat[name] = value.detach().cpu().contiguous()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "metadata": meta_text,
        "tensors": flat,
    }
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=str(path.parent))
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_model_file(path: PathLike, expected_kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a model file written by :func:`save_model_file`, of a known kind.

    Returns
    -------
    metadata : dict
    tensors : dict of str to torch.Tensor

    Raises
    ------
    ModelFileError
        Missing, corrupt, of another version, or of another kind than expected.
    """
    kind, metadata, tensors = read_model_file(path)
    if kind != expected_kind:
        raise ModelFileError(
            f"{str(path)!r} holds {KIND_NAMES.get(kind, repr(kind))}, but "
            f"{KIND_NAMES.get(expected_kind, repr(expected_kind))} is needed here; "
            "load it with the matching classifier"
        )
    return metadata, tensors


def read_model_file(path: PathLike) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """Read a model file of any kind once: ``(kind, metadata, tensors)``.

    Raises
    ------
    ModelFileError
        Missing, corrupt, or of another version.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist; check the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelFileError(
            f"{str(path)!r} is not a readable napari-microstructure model file "
            f"(it is corrupt, truncated, or of another program): {exc.__class__.__name__}. "
            "Re-save the model or train it again."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(
            f"{str(path)!r} is not a napari-microstructure model file; "
            "choose a file saved by this plugin (FewShotClassifier.save or EBSDClassifier.save)"
        )
    version = payload.get("version")
    if version != VERSION:
        raise ModelFileError(
            f"{str(path)!r} has model-file version {version!r}, but this version of "
            f"napari-microstructure reads version {VERSION}; update napari-microstructure "
            "or re-train the model with this version"
        )
    kind = str(payload.get("kind"))
    try:
        metadata = json.loads(payload["metadata"])
        tensors = dict(payload["tensors"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{str(path)!r} is damaged (metadata unreadable): {exc}") from exc
    return kind, metadata, tensors


def split_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` whose names start with ``prefix + '.'``, prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def with_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Prefix every key of ``state`` with ``prefix + '.'``."""
    return {f"{prefix}.{k}": v for k, v in state.items()}
