"""Model files: weights and metadata, no pickle.

A model file is written with :func:`torch.save` and holds only tensors,
strings and numbers (a dict)::

    {"format": "napari-microstructure-model",
     "version": 2,
     "kind": "micrograph" | "ebsd" | "ebsd-bands",
     "metadata": "<JSON text>",
     "tensors": {"<group>.<name>": Tensor, ...},
     "checksum": "<SHA-256 of the metadata and every tensor>"}

It is read back with ``torch.load(..., weights_only=True)``, which refuses
anything but tensors and plain containers, so opening a model file shared by a
stranger runs no code; a file that asks for anything else is answered in one
line ("not a model this plugin wrote") and not loaded. The checksum covers the
metadata text and every tensor's name, dtype, shape and bytes: a file damaged
on disk or in transfer (a single flipped bit) is refused instead of predicting
with wrong weights. Version-1 files (written before checksums) are still read.
Files are serialised in memory, then written to a temporary name and renamed,
so a failed save (disk full, no permission) or an interrupted one never leaves
a half-written model behind and never touches the file already there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import torch

from .._files import atomic_path
from ..errors import ModelFileError

FORMAT = "napari-microstructure-model"
VERSION = 2
#: versions this code reads (1: without checksum)
READABLE_VERSIONS = (1, 2)

PathLike = Union[str, os.PathLike]

KIND_NAMES = {
    "micrograph": "a micrograph model (FewShotClassifier)",
    "ebsd": "an EBSD model (EBSDClassifier)",
    "ebsd-bands": "an EBSD band-profile model (BandProfileClassifier)",
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
    path = _model_path(path, "save the model to", "model.pt")
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
        "checksum": checksum(meta_text, flat),
    }
    # serialise in memory first: torch's own file writer answers a full disk with
    # an internal assertion; a plain write raises OSError (ENOSPC) that we can explain
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path, "model", error=ModelFileError) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
    return path


def checksum(meta_text: str, tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of the metadata text and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(meta_text.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise ModelFileError(f"model tensor {name!r} is a {type(t).__name__}, not a tensor")
        t = t.detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode("utf-8"))
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _read_payload(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of ``path``, every failure as one-line ModelFileError."""
    if path.is_dir():
        raise ModelFileError(
            f"{str(path)!r} is a folder, not a model file; give the model file itself "
            "(e.g. FOLDER/model.pt)"
        )
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's advice on pickle protocols is not for users
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused a global: the file asks to build objects (or run code)
        m = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if m is None and not _starts_like_a_pickle(path):
            raise ModelFileError(
                f"{str(path)!r} is not a readable napari-microstructure model file (it is corrupt, "
                "truncated, or of another program); choose a file saved by this plugin, or re-save "
                "the model or train it again"
            ) from None
        what = f" (it asks to run {m.group(1)})" if m else " (a pickle of Python objects)"
        raise ModelFileError(
            f"{str(path)!r} is not a model this plugin wrote{what}: it will not be loaded; "
            "choose a file saved by napari-microstructure"
        ) from None
    except OSError as exc:
        from .._files import os_error_message

        raise ModelFileError(os_error_message(exc, path, "read the model file")) from None
    except MemoryError:
        raise ModelFileError(
            f"{str(path)!r} is not a readable napari-microstructure model file (reading it ran "
            "out of memory: it is corrupt or not a model); choose a file saved by this plugin"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure of parsing an untrusted file
        raise ModelFileError(
            f"{str(path)!r} is not a readable napari-microstructure model file "
            f"(it is corrupt, truncated, or of another program: {exc.__class__.__name__}); "
            "choose a file saved by this plugin, or re-save the model or train it again"
        ) from None


def _starts_like_a_pickle(path: Path) -> bool:
    """A pickle stream (protocol 2 or later) starts with the PROTO opcode 0x80."""
    try:
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"
    except OSError:
        return False


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


def _model_path(path: Any, action: str, example: str) -> Path:
    """``Path(path)``, or a ModelFileError when ``path`` is not a file name (None, a number...)."""
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ModelFileError(
            f"cannot {action} {path!r}: it is not a file name; give the path of a model file as text "
            f"or a pathlib.Path, e.g. {example!r}"
        )
    return Path(path)


def read_model_file(path: PathLike) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """Read a model file of any kind once: ``(kind, metadata, tensors)``.

    Raises
    ------
    ModelFileError
        Missing, corrupt, or of another version.
    """
    path = _model_path(path, "load a model from", "model.pt")
    payload = _read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(
            f"{str(path)!r} is not a napari-microstructure model file; "
            "choose a file saved by this plugin (FewShotClassifier.save or EBSDClassifier.save)"
        )
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"{str(path)!r} has model-file version {version!r}, but this version of "
            f"napari-microstructure reads version {VERSION}; update napari-microstructure "
            "or re-train the model with this version"
        )
    kind = str(payload.get("kind"))
    meta_text, tensors = payload.get("metadata"), payload.get("tensors")
    if not isinstance(meta_text, str) or not isinstance(tensors, dict):
        raise ModelFileError(
            f"{str(path)!r} is damaged: its metadata or tensors are missing; re-save the model "
            "or train it again"
        )
    if version >= 2:
        stored = payload.get("checksum")
        if not isinstance(stored, str) or stored != checksum(meta_text, tensors):
            raise ModelFileError(
                f"{str(path)!r} is damaged: its checksum does not match its contents (the file "
                "was changed after it was saved, e.g. by a disk or transfer error); copy it again "
                "from the original, or train the model again"
            )
    try:
        metadata = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{str(path)!r} is damaged (metadata unreadable: {exc}); "
                             "re-save the model or train it again") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{str(path)!r} is damaged (metadata is not a dictionary); "
                             "re-save the model or train it again")
    return kind, metadata, dict(tensors)


def split_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` whose names start with ``prefix + '.'``, prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def with_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Prefix every key of ``state`` with ``prefix + '.'``."""
    return {f"{prefix}.{k}": v for k, v in state.items()}
