import numpy as np
import pytest
import torch

from napari_microstructure.core.nn.device import ENV_VAR, autocast, select_device
from napari_microstructure.core.errors import MicrostructureError, ModelFileError
from napari_microstructure.core.nn.modelio import load_model_file, read_model_file, save_model_file


def test_auto_device_order(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type in ("cpu", "mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device().type == "cuda"


def test_environment_and_argument_override(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MicrostructureError, match="CUDA is not available"):
        select_device("cuda")
    with pytest.raises(MicrostructureError, match="unknown device"):
        select_device("tpu!")


def test_autocast_is_noop_on_cpu():
    with autocast(torch.device("cpu")):
        assert torch.ones(2).dtype == torch.float32


def test_model_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "m.pt"
    save_model_file(path, "micrograph", {"classes": ["a", "b"]}, {"w": torch.arange(3.0), "x": np.eye(2)})
    meta, tensors = load_model_file(path, "micrograph")
    assert meta == {"classes": ["a", "b"]}
    assert torch.equal(tensors["w"], torch.arange(3.0))
    assert torch.equal(tensors["x"], torch.eye(2, dtype=torch.float64))
    kind, meta_again, _ = read_model_file(path)
    assert kind == "micrograph" and meta_again == meta
    with pytest.raises(ModelFileError, match="EBSD model"):
        load_model_file(path, "ebsd")
    # corrupt: truncated file
    data = path.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model_file(bad, "micrograph")
    # unknown version
    torch.save({"format": "napari-microstructure-model", "version": 99, "kind": "micrograph",
                "metadata": "{}", "tensors": {}}, tmp_path / "v99.pt")
    with pytest.raises(ModelFileError, match="version 99"):
        load_model_file(tmp_path / "v99.pt", "micrograph")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "missing.pt", "micrograph")


class Evil:
    """Stands for any object that unpickling would construct."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "napari-microstructure-model", "version": 1, "kind": "micrograph",
                "metadata": "{}", "tensors": {}, "obj": Evil()}, path)
    with pytest.raises(ModelFileError):
        load_model_file(path, "micrograph")


def test_save_does_not_leave_partial_files(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_model_file(path, "micrograph", {}, {"w": torch.zeros(1)})
    assert list(tmp_path.iterdir()) == []
