"""The result-store reader: napari opens a map's .zarr folder lazily, as the layers it stands for."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr")

from napari_microstructure._napari._store_reader import get_reader  # noqa: E402
from napari_microstructure.core.micrograph.probmap import probability_map  # noqa: E402
from napari_microstructure.core.micrograph.synthetic import make_composite  # noqa: E402

P = 0.1


def test_reader_claims_stores_only(small_ebsd_map, tmp_path):
    clf, pats, _ = small_ebsd_map
    path = tmp_path / "ebsd.zarr"
    clf.classify_map(pats, chunk_size=4, store=path)
    assert get_reader(str(path)) is not None and get_reader([str(path)]) is not None
    other = tmp_path / "other.zarr"
    other.mkdir()
    (other / "zarr.json").write_text('{"attributes": {}}')
    assert get_reader(str(other)) is None            # a zarr folder someone else wrote
    assert get_reader(str(tmp_path / "missing.zarr")) is None
    assert get_reader([str(path), str(path)]) is None


def test_napari_opens_a_probability_map_store_lazily(make_napari_viewer, small_micrograph_model, tmp_path):
    clf = small_micrograph_model[0]
    image = make_composite("ferrite", "pearlite", shape=(400, 440), pixel_size_um=P, seed=3)[0]
    path = tmp_path / "pm.zarr"
    ref = probability_map(clf, image, P, stride=40, dtype="float16", store=path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-microstructure")
    names = [layer.name for layer in viewer.layers]
    assert names == [f"pm: {c}" for c in ref.class_names] + ["pm: labels"]
    none = viewer.layers["pm: none"]
    assert type(none.data).__module__.startswith("dask")          # read chunk by chunk
    assert tuple(none.scale) == pytest.approx((P, P))                # micrometres
    np.testing.assert_array_equal(np.asarray(none.data), np.asarray(ref.class_probability("none")))
    np.testing.assert_array_equal(np.asarray(viewer.layers["pm: labels"].data), np.asarray(ref.labels))
