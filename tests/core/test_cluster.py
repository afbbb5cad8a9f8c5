"""Maps on a real dask.distributed LocalCluster (2 worker processes) equal the in-process maps.

One cluster serves the module (starting worker processes costs seconds). Its
scheduler allows one worker death per task (``allowed-failures=1``): a task
that kills one worker is re-run elsewhere, one that kills two fails the map.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402
import dask.array as da  # noqa: E402

from napari_microstructure.core import cluster as C  # noqa: E402
from napari_microstructure.core.ebsd import EBSDClassifier  # noqa: E402
from napari_microstructure.core.ebsd import simulate as S  # noqa: E402
from napari_microstructure.core.micrograph.probmap import probability_map  # noqa: E402
from napari_microstructure.core.micrograph.synthetic import make_composite  # noqa: E402

P = 0.1


@pytest.fixture(scope="module")
def client():
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close(timeout=20)




def test_shared_object_travels_once_per_worker(client, monkeypatch):
    def _pid_and_model(shared, payload):  # nested: pickled by value for the workers
        return os.getpid(), id(shared), int(np.asarray(payload).sum())

    installed = []
    real = client.register_plugin
    monkeypatch.setattr(client, "register_plugin", lambda plugin, **kw: installed.append(plugin) or real(plugin, **kw))
    out = {}
    n = C.run_tasks(client, _pid_and_model, np.zeros(100_000), (np.full(3, i) for i in range(16)),
                    out.__setitem__, max_in_flight=4)
    assert n == 16 and [out[i][2] for i in range(16)] == [3 * i for i in range(16)]
    assert len(installed) == 1  # the model is sent once, not with every task
    by_worker = {}
    for pid, model_id, _ in out.values():
        by_worker.setdefault(pid, set()).add(model_id)
    assert pid != os.getpid()
    # each worker process unpickled the model once and reused it for all its tasks
    assert 1 <= len(by_worker) <= 2 and all(len(ids) == 1 for ids in by_worker.values())
    # and it is removed from the workers when the map ends
    names = client.run(lambda: sorted(__import__("napari_microstructure.core._worker_cache",
                                                 fromlist=["REGISTRY"]).REGISTRY))
    assert all(v == [] for v in names.values())


def test_ebsd_map_on_cluster_equals_in_process(client, small_ebsd_map, tmp_path):
    clf, pats, ref = small_ebsd_map
    lazy = da.from_array(pats, chunks=(3, 4, 32, 32))
    seen = []
    on_cluster = clf.classify_map(lazy, chunk_size=5, client=client, progress=seen.append)
    from_address = clf.classify_map(pats, chunk_size=7, client=client.scheduler.address)
    stored = clf.classify_map(lazy, client=client, store=tmp_path / "m.zarr")
    for res in (on_cluster, from_address, stored):
        np.testing.assert_array_equal(np.asarray(res.labels), ref.labels)
        np.testing.assert_allclose(np.asarray(res.probabilities), ref.probabilities, atol=1e-5)
        np.testing.assert_allclose(np.asarray(res.agreement), ref.agreement)
        assert res.fractions == pytest.approx(ref.fractions)
    assert seen[-1].step == seen[-1].total == 80
    assert stored.labels.chunks is not None  # lazy: read from the store
    assert sorted(os.listdir(tmp_path)) == ["m.zarr"]


def test_probability_map_tiles_on_cluster_equal_in_process(client, small_micrograph_model):
    clf, _ = small_micrograph_model
    image, _ = make_composite("ferrite", "pearlite", shape=(900, 700), pixel_size_um=P, seed=7)
    ref = probability_map(clf, image, P, stride=40, tile_size=128)
    res = probability_map(clf, image, P, stride=40, tile_size=128, client=client)
    assert ref.n_crops == res.n_crops > 100
    np.testing.assert_allclose(res.probabilities, ref.probabilities, atol=1e-5)
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert res.fractions == pytest.approx(ref.fractions)


def _killer(marker: str, every_time: bool):
    """A block function that kills the worker process running it (the first time only, or always).

    Only non-empty blocks kill (dask may call block functions on empty arrays to infer
    their type); the maps below pass ``meta`` so that it does not.
    """

    def kill(block):
        import os as _os

        if block.size and (every_time or not _os.path.exists(marker)):
            open(marker, "w").close()
            _os._exit(1)
        return block

    return kill


def test_worker_dying_mid_map_is_rerun_elsewhere(client, small_ebsd_map, tmp_path):
    clf, pats, ref = small_ebsd_map
    marker = str(tmp_path / "died")
    lazy = da.from_array(pats, chunks=(2, 10, 32, 32)).map_blocks(_killer(marker, False), meta=pats[:0, :0])
    res = clf.classify_map(lazy, client=client, store=tmp_path / "m.zarr")
    assert os.path.exists(marker)  # a worker did die
    np.testing.assert_array_equal(np.asarray(res.labels), ref.labels)
    np.testing.assert_allclose(np.asarray(res.probabilities), ref.probabilities, atol=1e-5)


def test_task_killing_every_worker_fails_clearly_and_writes_nothing(client, small_ebsd_map, tmp_path):
    clf, pats, _ = small_ebsd_map
    lazy = da.from_array(pats, chunks=(4, 10, 32, 32)).map_blocks(_killer(str(tmp_path / "m"), True),
                                                                  meta=pats[:0, :0])
    with pytest.raises(C.ClusterError, match="workers running it died"):
        clf.classify_map(lazy, client=client, store=tmp_path / "m.zarr")
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no store, no partial store
    client.wait_for_workers(2, timeout=30)


def test_connect_refuses_bad_clients_clearly(monkeypatch):
    with pytest.raises(C.ClusterError, match="could not reach a dask scheduler"):
        with C.connect("tcp://127.0.0.1:9", timeout_s=1):
            pass
    with pytest.raises(C.ClusterError, match="neither a distributed.Client"):
        with C.connect(42):
            pass
    monkeypatch.delenv(C.SCHEDULER_ENV, raising=False)
    with C.connect(None) as none:
        assert none is None
    with C.connect("") as none:
        assert none is None


def test_local_worker_processes_map_band_profiles_like_this_process():
    """``client="local:2"``: worker processes started for one map, the same map as in process, then closed."""
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    rng = np.random.default_rng(4)
    session = S.sample_session(S.ALL_MATERIALS["Ni"], rng)
    pats = S.simulate_session(session, 12, rng, pc_scan=0.0).reshape(3, 4, *session.geometry.shape)
    clf = BandProfileClassifier.from_pretrained(pc=session.geometry.pc)
    ref = clf.classify_map(pats)
    opened = []
    real_connect = C._local_client

    def spy(distributed_module, spec):
        cm = real_connect(distributed_module, spec)
        opened.append(cm)
        return cm

    import unittest.mock

    with unittest.mock.patch.object(C, "_local_client", spy):
        res = clf.classify_map(pats, chunk_size=5, client="local:2")
    assert len(opened) == 1
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_allclose(res.probabilities, ref.probabilities, atol=1e-6)
    np.testing.assert_allclose(res.detector_euler, ref.detector_euler, atol=1e-5)
    with C.connect("LOCAL:1") as c:
        assert len(c.scheduler_info()["workers"]) == 1
    assert c.status == "closed"  # the call's cluster is gone with it


@pytest.mark.parametrize("spec", ["local:0", "local:two", "local:-1"])
def test_local_worker_count_refused_by_name(spec):
    with pytest.raises(C.ClusterError, match="'local:N' with N >= 1"):
        with C.connect(spec):
            pass
    assert C.local_workers("local") == max(1, os.cpu_count() or 1) and C.local_workers("local:3") == 3


@pytest.mark.parametrize("spec, n", [("local:", None), ("local: 2", 2), ("Local:2", 2), (" local :3 ", 3)])
def test_local_worker_count_spellings(spec, n):
    """Spaces and case do not matter; ``local:`` with no count is one worker per core."""
    assert C.local_workers(spec) == (n or max(1, os.cpu_count() or 1))


@pytest.mark.parametrize("spec", ["local:1.5", "local:1e3"])
def test_local_worker_count_must_be_whole(spec):
    with pytest.raises(C.ClusterError, match="'local:N' with N >= 1"):
        C.local_workers(spec)


def test_local_worker_count_capped_clearly(monkeypatch):
    """``local:999`` on a small machine: a clear error naming the cores and the largest N, not 999 processes."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert C.local_workers("local:8") == 8
    with pytest.raises(C.ClusterError, match=r"'local:999' asks for 999 worker processes .* 2 cores.*N <= 8"):
        with C.connect("local:999"):
            pass


def test_localhost_is_a_scheduler_address_not_a_local_cluster():
    """``localhost:8786`` goes to a scheduler (unreachable here), never to worker processes of this machine."""
    with pytest.raises(C.ClusterError, match="is not a local cluster"):
        C.local_workers("localhost:8786")
    with pytest.raises(C.ClusterError, match="could not reach a dask scheduler at 'localhost:1'"):
        with C.connect("localhost:1", timeout_s=1):
            pass


def test_command_line_on_a_scheduler_with_stores(client, small_ebsd_map, small_micrograph_model, tmp_path, capsys):
    import tifffile

    from napari_microstructure import cli
    from napari_microstructure.io.store import open_store
    from napari_microstructure.io.tiff import write_micrograph

    clf, pats, ref = small_ebsd_map
    micrograph, trained_model_path = small_micrograph_model
    clf.save(tmp_path / "ebsd.pt")
    np.save(tmp_path / "map.npy", pats)
    address = client.scheduler.address
    rc = cli.main(["ebsd-map", str(tmp_path / "ebsd.pt"), str(tmp_path / "map.npy"), "-o", str(tmp_path / "out"),
                   "--device", "cpu", "--chunk-size", "16", "--scheduler", address,
                   "--store", str(tmp_path / "ebsd.zarr")])
    assert rc == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "space_groups.tif"), ref.labels)
    arrays, meta = open_store(tmp_path / "ebsd.zarr")
    np.testing.assert_array_equal(arrays["labels"].compute(), ref.labels)

    image, _ = make_composite("ferrite", "spheroidite", shape=(320, 320), pixel_size_um=P, seed=2)
    src = write_micrograph(tmp_path / "img.tif", image, P)
    local = probability_map(micrograph, image, P, stride=40)
    rc = cli.main(["map", str(trained_model_path), str(src), "-o", str(tmp_path / "pm.zarr"), "--stride", "40",
                   "--device", "cpu", "--scheduler", address])
    assert rc == 0 and "zarr store" in capsys.readouterr().out
    arrays, meta = open_store(tmp_path / "pm.zarr")
    assert meta["kind"] == "probability-map" and arrays["probabilities"].dtype == np.float16
    np.testing.assert_allclose(arrays["probabilities"].compute(), local.probabilities, atol=1e-3)
    np.testing.assert_array_equal(arrays["labels"].compute(), local.labels)
