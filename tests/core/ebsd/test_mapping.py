"""classify_map: NumPy, memory map and dask give the same map; chunking does not matter."""

import threading

import numpy as np
import pytest
import torch

from napari_microstructure.core.ebsd import EBSDClassifier
from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.errors import MicrostructureError, TrainingCancelled


@pytest.fixture(scope="module")
def setup():
    pats, phase, rots = S.simulate_dual_phase_map((6, 9), (32, 32), n_grains=3, n_precipitates=2,
                                                  seed=2, return_orientations=True)
    p, sg, _ = S.simulate_training_set(["Ni", "Ni3Al"], 12, (32, 32), seed=1, base_rotations=rots)
    torch.manual_seed(0)
    clf = EBSDClassifier(backbone="compact", input_size=32, n_models=2, max_epochs=2, device="cpu")
    clf.fit(p, sg)
    return clf, pats


def test_numpy_memmap_dask_agree(setup, tmp_path):
    import dask.array as da

    clf, pats = setup
    ref = clf.classify_map(pats)
    assert ref.labels.shape == (6, 9) and ref.confidence.shape == (6, 9)
    assert ref.probabilities.shape == (6, 9, 2)
    np.save(tmp_path / "m.npy", pats)
    mm = np.load(tmp_path / "m.npy", mmap_mode="r")
    res_mm = clf.classify_map(mm, chunk_size=7)
    lazy = da.from_array(pats, chunks=(2, 4, 32, 16))
    res_da = clf.classify_map(lazy, chunk_size=5)
    for res in (res_mm, res_da):
        np.testing.assert_array_equal(res.labels, ref.labels)
        np.testing.assert_allclose(res.probabilities, ref.probabilities, atol=1e-5)
        np.testing.assert_allclose(res.agreement, ref.agreement)


def test_chunk_size_does_not_change_the_result(setup):
    clf, pats = setup
    a = clf.classify_map(pats, chunk_size=5)
    b = clf.classify_map(pats, chunk_size=1000)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)


def test_result_contents_and_predict_consistency(setup):
    clf, pats = setup
    res = clf.classify_map(pats)
    fr = res.fractions
    assert set(fr) == {221, 225, "no solution"}
    assert sum(fr.values()) == pytest.approx(1.0)
    np.testing.assert_array_equal(res.labels[~res.no_solution],
                                  clf.predict(pats.reshape(-1, 32, 32)).reshape(6, 9)[~res.no_solution])
    assert np.all(res.labels[res.no_solution] == 0)
    assert np.all(res.index[res.no_solution] == -1)
    rows = res.fractions_table()
    assert sum(r[1] for r in rows) == 54


def test_map_background_and_stack_input(setup):
    clf, pats = setup
    res = clf.classify_map(pats, background="map")
    assert res.labels.shape == (6, 9)
    res = clf.classify_map(pats.reshape(54, 32, 32))
    assert res.labels.shape == (1, 54)
    with pytest.raises(MicrostructureError, match="4-D"):
        clf.classify_map(pats[0, 0])


def test_progress_and_cancel(setup):
    clf, pats = setup
    seen = []
    clf.classify_map(pats, chunk_size=10, progress=seen.append)
    assert seen[-1].step == seen[-1].total == 54 and seen[-1].stage == "map"
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelled):
        clf.classify_map(pats, cancel=cancel)


def test_nan_pattern_in_map(setup):
    clf, pats = setup
    bad = pats.astype(np.float32)
    bad[2, 3] = np.nan
    with pytest.raises(MicrostructureError, match="NaN"):
        clf.classify_map(bad)
