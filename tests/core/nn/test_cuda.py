"""The CUDA path: device choice, mixed precision, and maps on the GPU agreeing with the CPU.

Skipped without CUDA; ``scripts/gpu_check.sh`` runs them on a CUDA machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_microstructure.core.nn.device import autocast, describe, select_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_auto_selects_cuda_and_env_overrides(monkeypatch):
    monkeypatch.delenv("NAPARI_MICROSTRUCTURE_DEVICE", raising=False)
    assert select_device("auto").type == "cuda"
    assert describe(torch.device("cuda")).startswith("cuda (")
    monkeypatch.setenv("NAPARI_MICROSTRUCTURE_DEVICE", "cpu")
    assert select_device("auto").type == "cpu"
    assert select_device("cuda:0") == torch.device("cuda:0")


def test_autocast_runs_convolutions_in_half_precision():
    dev = torch.device("cuda")
    conv = torch.nn.Conv2d(1, 8, 3).to(dev)
    x = torch.rand(4, 1, 32, 32, device=dev)
    with torch.inference_mode():
        full = conv(x)
        with autocast(dev):
            half = conv(x)
        with autocast(dev, enabled=False):
            off = conv(x)
    assert full.dtype == off.dtype == torch.float32
    assert half.dtype in (torch.bfloat16, torch.float16)
    torch.testing.assert_close(half.float(), full, atol=5e-2, rtol=5e-2)


@pytest.fixture(scope="module")
def ebsd_setup():
    from napari_microstructure.core.ebsd import EBSDClassifier
    from napari_microstructure.core.ebsd import simulate as S

    pats, _, rots = S.simulate_dual_phase_map((8, 10), (32, 32), n_grains=3, n_precipitates=2, seed=2,
                                              return_orientations=True)
    p, sg, _ = S.simulate_training_set(["Ni", "Ni3Al"], 16, (32, 32), seed=1, base_rotations=rots)
    torch.manual_seed(0)
    clf = EBSDClassifier(backbone="compact", input_size=32, max_epochs=5, device="cuda").fit(p, sg)
    return clf, pats


def test_ebsd_fit_and_classify_map_on_cuda_match_cpu(ebsd_setup, tmp_path):
    from napari_microstructure.core.ebsd import EBSDClassifier

    clf, pats = ebsd_setup
    assert next(clf.models_[0].parameters()).is_cuda
    gpu = clf.classify_map(pats)
    clf.save(tmp_path / "m.pt")
    cpu = EBSDClassifier.load(tmp_path / "m.pt", device="cpu").classify_map(pats)
    # mixed precision: probabilities within about 1e-2, labels equal except near-ties
    np.testing.assert_allclose(gpu.probabilities, cpu.probabilities, atol=3e-2)
    margin = np.abs(cpu.probabilities[..., 0] - cpu.probabilities[..., 1])
    clear = margin > 0.1
    np.testing.assert_array_equal(gpu.labels[clear], cpu.labels[clear])


def test_probability_map_on_cuda_matches_cpu(trained_model_path):
    from napari_microstructure import load_model
    from napari_microstructure.core.micrograph.probmap import probability_map
    from napari_microstructure.core.micrograph.synthetic import make_composite

    image, _ = make_composite("ferrite", "pearlite", shape=(512, 512), pixel_size_um=0.1, seed=3)
    gpu_clf = load_model(trained_model_path, device="cuda")
    assert gpu_clf.device_.type == "cuda"
    gpu = probability_map(gpu_clf, image, 0.1, stride=40)
    cpu = probability_map(load_model(trained_model_path, device="cpu"), image, 0.1, stride=40)
    np.testing.assert_allclose(gpu.probabilities, cpu.probabilities, atol=5e-2)
    assert (gpu.labels == cpu.labels).mean() > 0.98
