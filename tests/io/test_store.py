"""Result stores: maps written as computed to zarr, opened lazily, never half-written."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")

from napari_microstructure.core.ebsd import EBSDClassifier  # noqa: E402
from napari_microstructure.core.ebsd import simulate as S  # noqa: E402
from napari_microstructure.core.errors import MicrostructureError, TrainingCancelled  # noqa: E402
from napari_microstructure.core.micrograph.probmap import probability_map, result_from_store  # noqa: E402
from napari_microstructure.core.micrograph.synthetic import make_composite  # noqa: E402
from napari_microstructure.io.store import is_store, open_store, store_layer_data  # noqa: E402

P = 0.1




@pytest.fixture(scope="module")
def micrograph():
    return make_composite("ferrite", "pearlite", shape=(520, 600), pixel_size_um=P, seed=3)[0]


def test_ebsd_map_store_equals_memory_and_opens_lazily(small_ebsd_map, tmp_path):
    clf, pats, ref = small_ebsd_map
    path = tmp_path / "ebsd.zarr"
    res = clf.classify_map(pats, chunk_size=4, store=path)
    assert is_store(path) and sorted(os.listdir(tmp_path)) == ["ebsd.zarr"]
    arrays, meta = open_store(path)
    assert meta["kind"] == "ebsd-map" and meta["classes"] == [221, 225]
    for r in (res, arrays):
        get = (lambda n: getattr(r, n)) if r is res else r.__getitem__
        assert type(get("labels")).__module__.startswith("dask")
        np.testing.assert_array_equal(np.asarray(get("labels")), ref.labels)
        np.testing.assert_array_equal(np.asarray(get("index")), ref.index)
        np.testing.assert_array_equal(np.asarray(get("no_solution")), ref.no_solution)
        np.testing.assert_allclose(np.asarray(get("probabilities")), ref.probabilities, atol=1e-5)
        np.testing.assert_allclose(np.asarray(get("confidence")), ref.confidence, atol=1e-5)
    assert res.fractions == pytest.approx(ref.fractions)
    assert res.fractions_table() == [(c, n, pytest.approx(f)) for c, n, f in ref.fractions_table()]
    layers = store_layer_data(path)
    assert [t for _, _, t in layers] == ["labels", "image"]
    np.testing.assert_array_equal(np.asarray(layers[0][0]), ref.index + 1)


def test_text_classes_and_overwrite(small_ebsd_map, tmp_path):
    clf, pats, _ = small_ebsd_map
    p, sg, _ = S.simulate_training_set(["Ni", "Ni3Al"], 8, (32, 32), seed=1)
    names = np.where(sg == 221, "Ni3Al", "Ni")
    torch.manual_seed(0)
    txt = EBSDClassifier(backbone="compact", input_size=32, max_epochs=1, device="cpu",
                         confidence_threshold=0.55).fit(p, names)
    path = tmp_path / "t.zarr"
    ref = txt.classify_map(pats)
    res = txt.classify_map(pats, store=path)
    np.testing.assert_array_equal(np.asarray(res.labels), ref.labels)
    with pytest.raises(MicrostructureError, match="already exists"):
        txt.classify_map(pats, store=path)
    res2 = clf.classify_map(pats, store=path, overwrite=True)
    assert open_store(path)[1]["classes"] == [221, 225]
    assert np.asarray(res2.labels).dtype.kind == "i"
    assert sorted(os.listdir(tmp_path)) == ["t.zarr"]


def test_cancelled_or_failed_map_leaves_no_store(small_ebsd_map, micrograph, small_micrograph_model, tmp_path):
    clf, pats, _ = small_ebsd_map
    cancel = threading.Event()

    def stop_after_first(p):
        if p.step > 0:
            cancel.set()

    with pytest.raises(TrainingCancelled):
        clf.classify_map(pats, chunk_size=9, store=tmp_path / "a.zarr", progress=stop_after_first, cancel=cancel)
    bad = pats.astype(np.float32)
    bad[5, 5] = np.nan
    with pytest.raises(MicrostructureError, match="NaN"):
        clf.classify_map(bad, chunk_size=9, store=tmp_path / "b.zarr")
    cancel = threading.Event()
    with pytest.raises(TrainingCancelled):
        probability_map(small_micrograph_model[0], micrograph, P, tile_size=128, store=tmp_path / "c.zarr",
                        progress=lambda p: cancel.set(), cancel=cancel)
    assert os.listdir(tmp_path) == []


def test_bad_store_paths_are_refused_before_any_work(small_ebsd_map, tmp_path):
    clf, pats, _ = small_ebsd_map
    with pytest.raises(MicrostructureError, match="ending in .zarr"):
        clf.classify_map(pats, store=tmp_path / "m.h5")
    with pytest.raises(MicrostructureError, match="does not exist"):
        clf.classify_map(pats, store=tmp_path / "no" / "m.zarr")
    (tmp_path / "other.zarr").mkdir()
    with pytest.raises(MicrostructureError, match="not a napari-microstructure store"):
        clf.classify_map(pats, store=tmp_path / "other.zarr", overwrite=True)
    with pytest.raises(MicrostructureError, match="not a napari-microstructure result store"):
        open_store(tmp_path / "other.zarr")
    assert not is_store(tmp_path / "other.zarr") and not is_store(tmp_path / "missing.zarr")


def test_probability_map_store_and_float16(small_micrograph_model, micrograph, tmp_path):
    trained_classifier = small_micrograph_model[0]
    ref = probability_map(trained_classifier, micrograph, P, stride=40)
    half = probability_map(trained_classifier, micrograph, P, stride=40, dtype="float16")
    assert half.probabilities.dtype == np.float16 and half.probabilities.nbytes * 2 == ref.probabilities.nbytes
    np.testing.assert_allclose(half.probabilities, ref.probabilities, atol=1e-3)
    np.testing.assert_array_equal(half.labels, ref.labels)
    path = tmp_path / "pm.zarr"
    res = probability_map(trained_classifier, micrograph, P, stride=40, dtype="float16", store=path)
    assert type(res.probabilities).__module__.startswith("dask")
    np.testing.assert_array_equal(np.asarray(res.probabilities), half.probabilities)
    np.testing.assert_array_equal(np.asarray(res.labels), ref.labels)
    np.testing.assert_array_equal(np.asarray(res.evaluated), ref.evaluated)
    np.testing.assert_array_equal(np.asarray(res.outlier_mask(0.5)), ref.outlier_mask(0.5))
    arrays, meta = open_store(path)
    assert meta["kind"] == "probability-map" and meta["class_names"] == ref.class_names
    assert meta["pixel_size_um"] == P and meta["fractions"] == pytest.approx(ref.fractions)
    again = result_from_store(arrays, meta)
    np.testing.assert_array_equal(np.asarray(again.class_probability("none")), half.none)
    assert again.normalise_window_um == ref.normalise_window_um      # None or the window, kept either way
    layers = store_layer_data(path)
    assert [t for _, _, t in layers] == ["image"] * len(ref.class_names) + ["labels"]
    assert layers[0][1]["scale"] == (P, P) and layers[0][0].shape == micrograph.shape
    with pytest.raises(MicrostructureError, match="float16"):
        probability_map(trained_classifier, micrograph, P, dtype="uint8")
