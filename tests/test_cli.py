import csv
import io

import numpy as np
import pytest

from napari_microstructure.cli import main
from napari_microstructure.core.micrograph.synthetic import make_micrograph
from napari_microstructure.io.tiff import write_micrograph


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for cls in ("ferrite", "pearlite"):
        (root / cls).mkdir()
        for i in range(3):
            write_micrograph(root / cls / f"{i}.tif", make_micrograph(cls, (160, 160), 0.1, seed=i), 0.1)
    return root


def test_train_then_predict(class_dir, tmp_path, capsys):
    model = tmp_path / "model.pt"
    rc = main(["train", str(class_dir), "-o", str(model), "--input-size", "48", "--epochs", "2",
               "--embedding-dim", "4", "--device", "cpu"])
    assert rc == 0 and model.is_file()
    out = capsys.readouterr().out
    assert "ferrite, pearlite" in out
    image = tmp_path / "query.tif"
    write_micrograph(image, make_micrograph("pearlite", (200, 200), 0.1, seed=50), 0.1)
    rc = main(["predict", str(model), str(image), "--csv", "--crops", "16", "--device", "cpu"])
    assert rc == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["image", "prediction", "none score", "ferrite", "pearlite", "none"]
    probs = np.array(rows[1][3:], dtype=float)
    assert probs.sum() == pytest.approx(1.0, abs=0.01)
    # the default answer is the most probable entry; its none score is P(none)
    assert rows[1][1] == ["ferrite", "pearlite", "none"][int(np.argmax(probs))]
    assert float(rows[1][2]) == pytest.approx(probs[2], abs=1e-3)
    # with the field-of-view bins: "none" above a none score of 0.5, else the larger class
    rc = main(["predict", str(model), str(image), "--csv", "--crops", "16", "--device", "cpu",
               "--image-rule", "fov-bins"])
    assert rc == 0
    row = list(csv.reader(io.StringIO(capsys.readouterr().out)))[1]
    score, probs = float(row[2]), np.array(row[3:], dtype=float)
    assert 0.0 <= score <= 1.0
    assert row[1] == ("none" if score > 0.5 else ["ferrite", "pearlite"][int(np.argmax(probs[:2]))])


def test_errors_are_reported_not_raised(tmp_path, capsys, class_dir):
    rc = main(["train", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m.pt")])
    assert rc == 2
    assert "one sub-folder per class" in capsys.readouterr().err
    # images without resolution tags and no --pixel-size
    import tifffile

    plain = tmp_path / "plain"
    for cls in ("a", "b"):
        (plain / cls).mkdir(parents=True)
        for i in range(2):
            tifffile.imwrite(plain / cls / f"{i}.tif", np.zeros((64, 64), np.uint8))
    rc = main(["train", str(plain), "-o", str(tmp_path / "m.pt")])
    assert rc == 2
    assert "--pixel-size" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    rc = main(["predict", str(bad), str(class_dir / "ferrite" / "0.tif")])
    assert rc == 2
    assert "not a readable" in capsys.readouterr().err


def test_demo_quick_run(tmp_path):
    from napari_microstructure.demo import run_demo

    report = run_demo(str(tmp_path / "out"), quick=True, show=False)
    for name in ("report.md", "report.json", "model.pt", "loss_curve.png", "predictions.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert len(report["held_out"]) == 4
    # EBSD: the bundled dual-phase map, with no labels and fine-tuned on its 150 labelled patterns per phase
    assert (tmp_path / "out" / "ebsd_map.png").is_file()
    runs = list(report["ebsd"]["runs"].values())
    assert len(runs) == 2 and all(0 <= r["pixel_accuracy"] <= 1 for r in runs)
    true_fraction = report["ebsd"]["true_ni3al_fraction"]
    assert runs[1]["pixel_accuracy"] >= 0.95 and abs(runs[1]["ni3al_fraction"] - true_fraction) <= 0.03
    assert "EBSD" in (tmp_path / "out" / "report.md").read_text()
    for row in report["held_out"]:
        assert sum(row["probabilities"]) == pytest.approx(1.0)


def test_help_and_other_commands_start_without_torch():
    """Only ``train`` reads the estimator's defaults (a torch import, seconds); ``--help`` starts at once."""
    import subprocess
    import sys

    code = ("import sys\nfrom napari_microstructure.cli import main\n"
            "for argv in ({}):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "    print(argv[0], 'torch' in sys.modules, file=sys.stderr)\n")
    quick = subprocess.run([sys.executable, "-c", code.format("['--help'], ['ebsd-map', '--help'], ['map', '--help']")],
                           capture_output=True, text=True, timeout=120)
    assert quick.stderr.split()[-6:] == ["--help", "False", "ebsd-map", "False", "map", "False"], quick.stderr
    train = subprocess.run([sys.executable, "-c", code.format("['train', '--help'],")], capture_output=True, text=True,
                           timeout=120)
    assert train.stderr.split()[-2:] == ["train", "True"], train.stderr
    assert "--embedding-dim" in train.stdout
    # and train's options still default to the estimator's own values
    from napari_microstructure.cli import build_parser
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier

    args = build_parser().parse_args(["train", "images", "-o", "model.pt"])
    d = FewShotClassifier.default_params()
    assert (args.backbone, args.loss, args.embedding_dim, args.input_size, args.epochs) == \
        (d["backbone"], d["loss"], d["embedding_dim"], d["input_size"], d["max_epochs"])
