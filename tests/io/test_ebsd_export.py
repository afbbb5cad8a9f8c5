"""Export of space-group maps as .ang / .ctf text files."""

import numpy as np
import pytest

from napari_microstructure.core.ebsd.mapping import MapResult
from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.io.ebsd.export import write_ang, write_ctf, write_map


def _result(step=(0.5, 0.25)):
    labels = np.array([[225, 225, 221], [0, 221, 225]])
    classes = np.array([221, 225])
    index = np.where(labels == 221, 0, np.where(labels == 225, 1, -1))
    conf = np.array([[0.9, 0.8, 0.7], [0.2, 0.95, 0.6]], np.float32)
    return MapResult(labels, index, conf, np.ones_like(conf), index < 0,
                     np.zeros((2, 3, 2), np.float32), classes, 0, step)


def _ctf_table(path):
    lines = path.read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("Phase\tX\tY"))
    return lines[:start], np.loadtxt(lines[start + 1:])


def test_ctf_has_grid_phases_and_not_indexed_points(tmp_path):
    path = write_map(tmp_path / "map.ctf", _result(), phase_names={221: "Ni3Al", 225: "Ni"},
                     lattice_angstrom={221: 3.572, 225: 3.524})
    head, data = _ctf_table(path)
    assert "XCells\t3" in head and "YCells\t2" in head and "XStep\t0.25" in head and "YStep\t0.5" in head
    i = head.index("Phases\t2")
    assert head[i + 1].split("\t")[2:5] == ["Ni3Al", "11", "221"]
    assert head[i + 2].startswith("3.5240;3.5240;3.5240")
    assert data.shape == (6, 11)
    np.testing.assert_array_equal(data[:, 0], [2, 2, 1, 0, 1, 2])  # phase ids, 0 = not indexed
    np.testing.assert_allclose(data[:, 1], [0, 0.25, 0.5, 0, 0.25, 0.5])  # x = column * step
    np.testing.assert_allclose(data[:, 2], [0, 0, 0, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(data[:, 4], [0, 0, 0, 3, 0, 0])  # error code where not indexed
    np.testing.assert_array_equal(data[:, 9], np.rint(255 * _result().confidence.astype(float).ravel()))


def test_ang_columns_and_header(tmp_path):
    path = write_map(tmp_path / "map.ang", _result(step=1.5))
    text = path.read_text().splitlines()
    header = [l for l in text if l.startswith("#")]
    assert "# Phase 1" in header and "# Phase 2" in header and "# MaterialName  \tFm-3m" in header
    assert "# XSTEP: 1.500000" in header and "# NCOLS_ODD: 3" in header and "# NROWS: 2" in header
    data = np.loadtxt([l for l in text if not l.startswith("#")])
    assert data.shape == (6, 10)
    np.testing.assert_array_equal(data[:, 7], [2, 2, 1, 0, 1, 2])
    assert data[3, 6] == -1 and np.all(data[[0, 1, 2, 4, 5], 6] > 0)  # CI -1 = not indexed
    np.testing.assert_allclose(data[:, 3], [0, 1.5, 3, 0, 1.5, 3])


def test_phase_names_and_lattice_parameters_default_to_what_is_known(tmp_path):
    head, _ = _ctf_table(write_map(tmp_path / "groups.ctf", _result()))
    i = head.index("Phases\t2")
    # space groups: Hermann-Mauguin symbols; lattice unknown -> 1 Angstrom
    assert [head[i + k].split("\t")[2:5] for k in (1, 2)] == [["Pm-3m", "11", "221"], ["Fm-3m", "11", "225"]]
    assert head[i + 1].startswith("1.0000;1.0000;1.0000")
    # text classes naming known materials: their space group and lattice parameter
    res = _result()
    names = np.where(res.labels == 221, "Ni3Al", np.where(res.labels == 225, "Ni", "no solution"))
    named = MapResult(names, res.index, res.confidence, res.agreement, res.no_solution, res.probabilities,
                      np.array(["Ni", "Ni3Al"]), "no solution", res.step_size_um)
    text = write_map(tmp_path / "named.ang", named).read_text().splitlines()
    assert "# LatticeConstants      3.524 3.524 3.524  90.000  90.000  90.000" in text
    assert "# LatticeConstants      3.572 3.572 3.572  90.000  90.000  90.000" in text
    head, _ = _ctf_table(write_map(tmp_path / "named.ctf", named, lattice_angstrom={"Ni": 3.52}))
    i = head.index("Phases\t2")
    assert head[i + 1].startswith("3.5200;") and head[i + 1].split("\t")[2:5] == ["Ni", "11", "225"]
    assert head[i + 2].startswith("3.5720;") and head[i + 2].split("\t")[2:5] == ["Ni3Al", "11", "221"]
    with pytest.raises(MicrostructureError, match="lattice parameter in Angstrom"):
        write_map(tmp_path / "bad.ctf", named, lattice_angstrom={"Ni": -1})


def test_os_failures_are_named_and_keep_the_existing_file(tmp_path):
    import os

    (tmp_path / "folder.ang").mkdir()
    with pytest.raises(MicrostructureError, match="it is a folder"):
        write_map(tmp_path / "folder.ang", _result())
    with pytest.raises(MicrostructureError, match="does not exist"):
        write_map(tmp_path / "missing" / "m.ctf", _result())
    old = tmp_path / "old.ctf"
    old.write_text("the user's file")
    if os.geteuid() != 0:  # root writes anywhere
        old.chmod(0o444)
        with pytest.raises(MicrostructureError, match="read-only"):
            write_map(old, _result())
        old.chmod(0o644)
    if os.path.exists("/dev/full"):
        with pytest.raises(MicrostructureError, match="special file"):
            write_ang("/dev/full", _result().labels, 1.0)
    assert old.read_text() == "the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.ang", "old.ctf"]


def test_a_full_disk_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    import builtins
    import errno

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Full(f) if "w" in mode and str(path).endswith(".ang") else f

    old = tmp_path / "map.ang"
    old.write_text("the user's file")
    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(MicrostructureError, match="disk is full"):
        write_map(old, _result(step=1.0))
    monkeypatch.undo()
    assert old.read_text() == "the user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["map.ang"]


def test_export_errors_leave_nothing_behind(tmp_path):
    res = _result(step=None)
    with pytest.raises(MicrostructureError, match="step size is unknown"):
        write_map(tmp_path / "m.ctf", res)
    with pytest.raises(MicrostructureError, match="step_size_um"):
        write_ctf(tmp_path / "m.ctf", res.labels, -1.0)
    with pytest.raises(MicrostructureError, match=r"\.ang or \.ctf"):
        write_map(tmp_path / "m.txt", _result())
    with pytest.raises(MicrostructureError, match="labels 229"):
        write_ang(tmp_path / "m.ang", np.array([[229, 225]]), 1.0, classes=[225])
    with pytest.raises(MicrostructureError, match="2-D"):
        write_ang(tmp_path / "m.ang", np.array([225, 225]), 1.0)
    assert list(tmp_path.iterdir()) == []


def test_classify_map_keeps_the_step_size():
    from napari_microstructure.core.ebsd import EBSDClassifier
    from napari_microstructure.core.ebsd import simulate as S

    pats, sg, _ = S.simulate_training_set(["Ni", "Fe"], 6, (24, 24), seed=0)
    clf = EBSDClassifier(backbone="compact", input_size=24, max_epochs=1, validation_fraction=0.0,
                         device="cpu", augment=False).fit(pats, sg)
    res = clf.classify_map(pats.reshape(3, 4, 24, 24), step_size_um=(0.2, 0.3))
    assert res.step_size_um == (0.2, 0.3)
    assert clf.classify_map(pats.reshape(3, 4, 24, 24)).step_size_um is None
    with pytest.raises(MicrostructureError, match="step_size_um"):
        clf.classify_map(pats.reshape(3, 4, 24, 24), step_size_um=(0.2, -1.0))


def test_orix_reads_the_files_back(tmp_path):
    io = pytest.importorskip("orix.io")  # optional: orix is a benchmark dependency
    res = _result()
    for suffix in (".ang", ".ctf"):
        xmap = io.load(write_map(tmp_path / f"map{suffix}", res, phase_names={221: "Ni3Al", 225: "Ni"}))
        assert xmap.shape == (2, 3) and xmap.dx == 0.25 and xmap.dy == 0.5
        np.testing.assert_array_equal(xmap.get_map_data("phase_id"), [[2, 2, 1], [-1, 1, 2]])
        assert xmap.phases[1].name == "Ni3Al" and xmap.phases[2].name == "Ni"


def test_orientations_are_written_where_indexed(tmp_path):
    from napari_microstructure.core.ebsd.orientations import bunge_euler, euler_matrices

    res = _result(step=1.0)
    rng = np.random.default_rng(1)
    euler = np.stack([rng.uniform(0, 2 * np.pi, (2, 3)), rng.uniform(0.1, 3.0, (2, 3)),
                      rng.uniform(0, 2 * np.pi, (2, 3))], -1)
    # the map stores detector-frame angles; with tilts 70 / 0 these are the sample-frame ones
    from napari_microstructure.core.ebsd.orientations import sample_to_detector

    s = sample_to_detector(70, 0)
    detector = bunge_euler(np.swapaxes(s @ np.swapaxes(euler_matrices(euler), -1, -2), -1, -2))
    res.detector_euler = detector.astype(np.float32)
    indexed = (res.index >= 0).ravel()
    _, ctf = _ctf_table(write_map(tmp_path / "o.ctf", res))
    np.testing.assert_allclose(ctf[indexed, 5:8], np.degrees(euler.reshape(-1, 3)[indexed]), atol=2e-3)
    assert np.all(ctf[~indexed, 5:8] == 0)
    text = write_map(tmp_path / "o.ang", res).read_text().splitlines()
    ang = np.loadtxt([l for l in text if not l.startswith("#")])
    np.testing.assert_allclose(ang[indexed, :3], euler.reshape(-1, 3)[indexed], atol=2e-5)
    assert np.all(ang[~indexed, :3] == 0)
    with pytest.raises(MicrostructureError, match=r"euler has shape \(2, 3\)"):
        write_ang(tmp_path / "bad.ang", res.labels, 1.0, euler=np.zeros((2, 3)))
    with pytest.raises(MicrostructureError, match="not finite at 1 indexed points"):
        write_ang(tmp_path / "bad.ang", res.labels, 1.0, euler=np.where(np.arange(6).reshape(2, 3, 1) == 0,
                                                                         np.nan, euler))
    with pytest.raises(MicrostructureError, match="no orientations"):
        _result().sample_euler()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.ang", "o.ctf"]


def _ang_header(path):
    return {f[1]: f[2:] for f in (l.split() for l in path.read_text().splitlines() if l.startswith("# "))
            if len(f) > 1}


def test_a_known_projection_centre_round_trips_through_the_ang_header(tmp_path):
    """The .ang header holds the projection centre in the EDAX/TSL convention (x*, y* from the bottom,
    z* in pattern widths): read back with projection_centre_from_tsl it is the Bruker one written,
    also for patterns that are not square. An unknown one is left out, not written as 0.5, 0.5, 0.5."""
    from napari_microstructure.io.ebsd import projection_centre_from_tsl

    pc, shape = (0.52, 0.31, 0.62), (30, 40)
    path = write_map(tmp_path / "pc.ang", _result(), projection_centre=pc, pattern_shape=shape)
    head = _ang_header(path)
    tsl = [float(head[k][0]) for k in ("x-star", "y-star", "z-star")]
    np.testing.assert_allclose(tsl, (0.52, 0.69, 0.62 * 30 / 30), atol=1e-6)
    np.testing.assert_allclose(projection_centre_from_tsl(tsl, shape), pc, atol=1e-6)
    tall = write_ang(tmp_path / "tall.ang", _result().labels, 1.0, projection_centre=pc, pattern_shape=(40, 30))
    tsl = [float(_ang_header(tall)[k][0]) for k in ("x-star", "y-star", "z-star")]
    assert tsl[2] == pytest.approx(0.62 * 40 / 30)             # z* in widths: the shorter side
    np.testing.assert_allclose(projection_centre_from_tsl(tsl, (40, 30)), pc, atol=1e-6)
    unknown = _ang_header(write_map(tmp_path / "unknown.ang", _result()))
    assert not {"x-star", "y-star", "z-star", "WorkingDistance"} & set(unknown)
    assert "Phase" in unknown and unknown["XSTEP:"] == ["0.250000"]
    write_map(tmp_path / "pc.ctf", _result(), projection_centre=pc, pattern_shape=shape)   # no place in a .ctf
    with pytest.raises(MicrostructureError, match="pattern_shape"):
        write_ang(tmp_path / "bad.ang", _result().labels, 1.0, projection_centre=pc)
    with pytest.raises(MicrostructureError, match="three numbers"):
        write_ang(tmp_path / "bad.ang", _result().labels, 1.0, projection_centre=(0.5, 0.3), pattern_shape=shape)
    assert not (tmp_path / "bad.ang").exists()
