"""Device selection: CUDA, then Apple MPS, then CPU.

The environment variable ``NAPARI_MICROSTRUCTURE_DEVICE`` (``cpu``, ``cuda``,
``cuda:1``, ``mps``) overrides the automatic choice; an explicit argument other
than ``"auto"`` overrides both.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Union

import torch

from ..errors import MicrostructureError

ENV_VAR = "NAPARI_MICROSTRUCTURE_DEVICE"

DeviceLike = Union[str, torch.device, None]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(device: DeviceLike = "auto") -> torch.device:
    """Return the torch device to compute on.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` or None: the environment variable if set, else CUDA, then
        MPS, then CPU. Anything else is taken literally and checked.

    Raises
    ------
    MicrostructureError
        If the requested device is not available on this machine.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        env = os.environ.get(ENV_VAR, "").strip()
        if env and env.lower() != "auto":
            return select_device(env)
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise MicrostructureError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MicrostructureError(
            f"device {device!r} was requested but CUDA is not available here; "
            "use device='auto' or 'cpu'"
        )
    if dev.type == "mps" and not _mps_available():
        raise MicrostructureError(
            f"device {device!r} was requested but Apple MPS is not available here; "
            "use device='auto' or 'cpu'"
        )
    return dev


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); no-op elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(device_type="cuda", dtype=dtype):
            yield
    else:
        yield


def describe(device: Optional[torch.device] = None) -> str:
    """A one-line description of the device, for logs and the widgets."""
    dev = device or select_device()
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return dev.type
