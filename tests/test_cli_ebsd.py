"""ebsd-train and ebsd-map on the command line."""

import csv

import numpy as np
import pytest
import tifffile

from napari_microstructure import cli
from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.io.ebsd import write_labelled_patterns


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ebsdcli")
    pats, phase, rots = S.simulate_dual_phase_map((5, 6), (32, 32), n_grains=2, n_precipitates=1,
                                                  seed=3, return_orientations=True)
    p, sg, _ = S.simulate_training_set(["Ni", "Ni3Al"], 10, (32, 32), seed=1, base_rotations=rots)
    np.save(tmp / "train.npy", p)
    (tmp / "labels.csv").write_text("space_group\n" + "\n".join(map(str, sg)) + "\n")
    np.save(tmp / "map.npy", pats)
    return tmp


def test_train_then_map(files, capsys):
    model = files / "model.pt"
    rc = cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(model),
                   "--backbone", "compact", "--epochs", "2", "--input-size", "32", "--device", "cpu"])
    assert rc == 0 and model.is_file()
    out = files / "out"
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out), "--chunk-size", "7",
                   "--device", "cpu"])
    assert rc == 0
    labels = tifffile.imread(out / "space_groups.tif")
    conf = tifffile.imread(out / "confidence.tif")
    assert labels.shape == conf.shape == (5, 6)
    assert set(np.unique(labels)) <= {0, 221, 225}
    with open(out / "fractions.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["class", "patterns", "fraction"]
    assert sum(int(r[1]) for r in rows[1:]) == 30
    assert "patterns classified" in capsys.readouterr().out


def test_interrupted_map_writes_nothing(files, monkeypatch):
    model = files / "model2.pt"
    cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(model),
              "--backbone", "compact", "--epochs", "1", "--input-size", "32", "--device", "cpu"])

    def interrupt(self, p):
        if p.stage == "map" and p.step > 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.TerminalProgress, "__call__", interrupt)
    out = files / "out2"
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out), "--chunk-size", "5",
                   "--device", "cpu"])
    assert rc == 130
    assert not out.exists() or not any(out.iterdir())


def test_clear_errors(files, capsys):
    rc = cli.main(["ebsd-train", str(files / "train.npy"), "-o", str(files / "m.pt")])
    assert rc == 2
    assert "without labels" in capsys.readouterr().err
    rc = cli.main(["ebsd-train", str(files / "train.npy"), "-o", str(files / "m.pt"), "--backbone", "compact"])
    assert rc == 2
    assert "without labels" in capsys.readouterr().err
    write_labelled_patterns(files / "one.npz", np.load(files / "train.npy"), np.full(20, 225))
    rc = cli.main(["ebsd-train", str(files / "one.npz"), "-o", str(files / "m.pt"), "--backbone", "compact"])
    assert rc == 2
    assert "at least two classes" in capsys.readouterr().err


def test_band_profiles_train_then_map_with_another_projection_centre(files, capsys):
    """ebsd-train --backbone band-profiles fine-tunes the shipped model; ebsd-map reads either kind of model."""
    model = files / "bands.pt"
    rc = cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(model),
                   "--backbone", "band-profiles"])
    assert rc == 2 and "needs the projection centre: --pc" in capsys.readouterr().err
    assert not model.exists()
    rc = cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(model),
                   "--backbone", "band-profiles", "--pc", "0.5", "0.3", "0.6"])
    assert rc == 0 and model.is_file()
    # the label check per class, as the saved model holds it (10 patterns of each: cross-validated)
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    recall = BandProfileClassifier.load(model).labelled_recall_
    err = capsys.readouterr().err
    assert "labelled patterns called right (cross-validated" in err
    assert f"221 {recall[221]:.2f}, 225 {recall[225]:.2f}" in err
    out = files / "out-bands"
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out), "--pc", "0.5", "0.3", "0.6"])
    assert rc == 0
    # 32 x 32 patterns are below the network's training sizes: said in one line, no source location
    err = capsys.readouterr().err
    assert "warning: patterns are 32 x 32 pixels, smaller than the 40-100 pixels" in err
    assert ".py:" not in err and "UserWarning" not in err
    labels = tifffile.imread(out / "space_groups.tif")
    assert labels.shape == (5, 6)
    assert set(np.unique(labels)) <= {0, 221, 223, 225, 227, 229, 230}
    # --background map: the map's mean pattern is subtracted first
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out / "m"), "--background", "map"])
    assert rc == 0 and tifffile.imread(out / "m" / "space_groups.tif").shape == (5, 6)
    # an h5ebsd map that stores its static background: subtracted by default, and said
    from napari_microstructure.io.ebsd import h5ebsd

    pats = np.load(files / "map.npy")
    h5 = h5ebsd.file_writer(files / "map-bg.h5", pats, projection_centre=(0.5, 0.3, 0.6),
                            static_background=pats.reshape(-1, 32, 32).mean(0).astype(pats.dtype))
    capsys.readouterr()
    assert cli.main(["ebsd-map", str(model), str(h5), "-o", str(out / "h5")]) == 0
    assert "static background: the one stored in 'map-bg.h5' (subtracted)" in capsys.readouterr().err


def test_band_profiles_map_exports_ang_and_ctf_with_orientations(files, capsys):
    model = files / "bands-export.pt"
    assert cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(model),
                     "--backbone", "band-profiles", "--pc", "0.5", "0.3", "0.6"]) == 0
    out = files / "out-export"
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out), "--export", "ang"])
    assert rc == 2 and "needs the map's step size" in capsys.readouterr().err and not out.exists()
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out), "--export", "ang",
                   "--step-size", "0.5", "--sample-tilt", "700"])
    assert rc == 2 and "--sample-tilt 700 is not a tilt in 0 to 90 degrees" in capsys.readouterr().err  # names the flag
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out), "--export", "ang", "ctf",
                   "--step-size", "0.5", "--detector-tilt", "4"])
    assert rc == 0 and (out / "map.ang").is_file() and (out / "map.ctf").is_file()
    text = (out / "map.ang").read_text().splitlines()
    assert "# XSTEP: 0.500000" in text and "# NROWS: 5" in text
    ang = np.loadtxt([line for line in text if not line.startswith("#")])
    indexed = ang[:, 7] > 0
    assert indexed.any() and np.all(np.abs(ang[indexed, :3]).sum(1) > 0) and np.all(ang[~indexed, :3] == 0)
    # a later run into the same folder is refused, and the earlier results are left as they were
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "already holds the results of an earlier run" in err and "--overwrite" in err
    assert "map.ang" in err and {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # with --overwrite, a run without --export replaces them and leaves no stale map files behind
    assert cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out), "--overwrite"]) == 0
    assert not (out / "map.ang").exists() and not (out / "map.ctf").exists()
    assert (out / "space_groups.tif").is_file()
    # without the flags the tilts come from the map file's header (here 65 and 4 degrees), as if typed
    from napari_microstructure.io.ebsd import h5ebsd

    h5 = files / "tilted-map.h5"
    h5ebsd.file_writer(h5, np.load(files / "map.npy"), step_size_um=(0.5, 0.5), tilts_deg=(65.0, 4.0),
                       projection_centre=(0.5, 0.3, 0.6))
    assert cli.main(["ebsd-map", str(model), str(h5), "-o", str(files / "out-h5"), "--export", "ang"]) == 0
    assert cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(files / "out-typed"), "--export",
                     "ang", "--step-size", "0.5", "--sample-tilt", "65", "--detector-tilt", "4"]) == 0

    def euler(folder):
        return np.loadtxt([line for line in (folder / "map.ang").read_text().splitlines()
                           if not line.startswith("#")])[:, :3]

    np.testing.assert_allclose(euler(files / "out-h5"), euler(files / "out-typed"), atol=1e-5)
    assert not np.allclose(euler(files / "out-h5"), ang[:, :3], atol=1e-3)  # and not the 70 / 4 of the run above


def test_default_method_needs_a_projection_centre_from_pc_or_the_file(files, capsys):
    """ebsd-train defaults to band profiles; a .npy gives no projection centre: the error says how to give one."""
    model = files / "default.pt"
    rc = cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(model)])
    err = capsys.readouterr().err
    assert rc == 2 and not model.exists()
    assert "band-profiles (the default) needs the projection centre: --pc" in err
    assert "'train.npy' does not give one" in err and "--backbone efficientnet-lite0" in err
    # CNN options with the band-profile default: refused, not silently ignored
    rc = cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(model),
                   "--pc", "0.5", "0.3", "0.6", "--epochs", "2", "--input-size", "32"])
    err = capsys.readouterr().err
    assert rc == 2 and not model.exists()
    assert "--input-size, --epochs are for CNN backbones" in err and "--backbone efficientnet-lite0" in err


def test_default_method_takes_the_projection_centre_of_the_pattern_file(files, capsys, monkeypatch):
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier, load_ebsd_model
    from napari_microstructure.io.ebsd import h5ebsd

    train = np.load(files / "train.npy")
    h5ebsd.file_writer(files / "train.h5", train[None], projection_centre=(0.5, 0.3, 0.6))
    model = files / "from-file.pt"
    rc = cli.main(["ebsd-train", str(files / "train.h5"), str(files / "labels.csv"), "-o", str(model)])
    assert rc == 0, capsys.readouterr().err
    assert "projection centre (Bruker) 0.5, 0.3, 0.6 from the header of 'train.h5'" in capsys.readouterr().err
    clf = load_ebsd_model(model)
    assert isinstance(clf, BandProfileClassifier) and clf.pc == pytest.approx((0.5, 0.3, 0.6))
    assert clf.classes_.tolist() == [221, 223, 225, 227, 229, 230]
    # ebsd-map: the map file's projection centre, when it differs from the model's, is used and said
    used = []
    original = BandProfileClassifier.classify_map

    def spy(self, *args, **kwargs):
        used.append(tuple(self.pc))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BandProfileClassifier, "classify_map", spy)
    pattern_map = np.load(files / "map.npy")
    h5ebsd.file_writer(files / "map-other.h5", pattern_map, layout="bruker", projection_centre=(0.52, 0.31, 0.6))
    h5ebsd.file_writer(files / "map-same.h5", pattern_map, layout="edax", projection_centre=(0.5, 0.3, 0.6))
    out = files / "out-file-pc"
    assert cli.main(["ebsd-map", str(model), str(files / "map-other.h5"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "using the projection centre of 'map-other.h5' (0.52, 0.31, 0.6, Bruker), not the model's " \
           "(0.5, 0.3, 0.6)" in err
    assert used[-1] == pytest.approx((0.52, 0.31, 0.6), abs=1e-6)
    assert cli.main(["ebsd-map", str(model), str(files / "map-other.h5"), "-o", str(out),
                     "--pc", "0.49", "0.29", "0.61", "--overwrite"]) == 0  # --pc overrides the file
    assert "using the projection centre" not in capsys.readouterr().err
    assert used[-1] == pytest.approx((0.49, 0.29, 0.61))
    assert cli.main(["ebsd-map", str(model), str(files / "map-same.h5"), "-o", str(out), "--overwrite"]) == 0
    assert "using the projection centre" not in capsys.readouterr().err
    assert used[-1] == pytest.approx((0.5, 0.3, 0.6), abs=1e-6)
    # a model without a projection centre and a map file without one: a clear error
    BandProfileClassifier.from_pretrained().save(files / "no-pc.pt")
    rc = cli.main(["ebsd-map", str(files / "no-pc.pt"), str(files / "map.npy"), "-o", str(files / "out-no-pc")])
    assert rc == 2 and "gives none; add --pc PCX PCY PCZ" in capsys.readouterr().err
    assert cli.main(["ebsd-map", str(files / "no-pc.pt"), str(files / "map-other.h5"), "-o", str(out),
                     "--overwrite"]) == 0
    assert used[-1] == pytest.approx((0.52, 0.31, 0.6), abs=1e-6)


def test_band_model_without_a_projection_centre_on_a_npy_map(files, capsys):
    """A band model saved without a projection centre and a .npy map (which gives none): one line naming --pc,
    exit 2, no output folder; with --pc the same map is classified."""
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    model = BandProfileClassifier.from_pretrained().save(files / "no-pc.pt")
    out = files / "out-no-pc"
    rc = cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert err[-1] == ("error: the model has no projection centre and 'map.npy' gives none; add --pc PCX PCY PCZ "
                       "(Bruker convention), e.g. --pc 0.5 0.3 0.6")
    assert cli.main(["ebsd-map", str(model), str(files / "map.npy"), "-o", str(out), "--pc", "0.5", "0.3", "0.6"]) == 0
    assert (out / "space_groups.tif").is_file()


def test_band_profiles_train_with_the_map_the_labels_came_from(files, capsys):
    """--map gives fit the map (map_patterns) and says whether its grains were used; a CNN refuses it."""
    model = files / "bands-map.pt"
    rc = cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(model),
                   "--backbone", "band-profiles", "--pc", "0.5", "0.3", "0.6", "--map", str(files / "map.npy")])
    err = capsys.readouterr().err
    assert rc == 0 and model.is_file()
    from napari_microstructure.core.ebsd.bandclassifier import load_ebsd_model

    used = load_ebsd_model(model).map_grains_
    # a map of 30 patterns in two grains with a precipitate: under two grains of 20 patterns
    assert used == 0 and "'map.npy': its grains not used to carry the labels: that needs labels in two or " \
        "more grains" in err
    assert "and a map of two or more grains of 20 sampled patterns" in err
    rc = cli.main(["ebsd-train", str(files / "train.npy"), str(files / "labels.csv"), "-o", str(files / "c.pt"),
                   "--backbone", "compact", "--map", str(files / "map.npy")])
    assert rc == 2 and "--map is for --backbone band-profiles" in capsys.readouterr().err
