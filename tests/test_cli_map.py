"""The ``map`` subcommand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microstructure.core.micrograph.synthetic import make_composite
from napari_microstructure.io.probmap_tiff import read_probability_tiff
from napari_microstructure.io.tiff import write_micrograph


def _main(argv):
    from napari_microstructure.cli import main

    return main(argv)


def test_map_writes_tiff_and_prints_fractions(tmp_path, trained_model_path, capsys):
    image, _ = make_composite("ferrite", "spheroidite", shape=(320, 320), pixel_size_um=0.1, seed=2)
    src = write_micrograph(tmp_path / "img.tif", image, 0.1)
    out = tmp_path / "map.tif"
    code = _main(["map", str(trained_model_path), str(src), "-o", str(out), "--stride", "40"])
    assert code == 0
    probs, names, size, info = read_probability_tiff(out)
    assert probs.shape == (4, 320, 320) and names[-1] == "none"
    assert size == pytest.approx(0.1)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    printed = capsys.readouterr().out
    for name, frac in info["fractions"].items():
        assert f"{100 * frac:6.2f}" in printed and name in printed


def test_map_refuses_wrong_inputs(tmp_path, trained_model_path, capsys):
    # smaller than the smallest crop the model was trained on (64 pixels of 0.1 um)
    image, _ = make_composite("ferrite", "pearlite", shape=(48, 48), pixel_size_um=0.1, seed=2)
    src = write_micrograph(tmp_path / "small.tif", image, 0.1)
    assert _main(["map", str(trained_model_path), str(src), "-o", str(tmp_path / "m.tif")]) == 2
    err = capsys.readouterr().err
    assert "smaller --fov" in err and "fov_um" not in err  # the command's option, not the API's name
    assert not (tmp_path / "m.tif").exists()
    # not constant: a constant image is refused before the options are looked at
    noise = (np.random.default_rng(0).random((300, 300)) * 255).astype(np.uint8)
    big = write_micrograph(tmp_path / "big.tif", noise, 0.1)
    assert _main(["map", str(trained_model_path), str(big), "-o", str(tmp_path / "m.tif"), "--stride", "0"]) == 2
    assert "stride" in capsys.readouterr().err
    assert _main(["map", str(trained_model_path), str(big), "-o", str(tmp_path / "m.tif"), "--fov", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--fov 0.5 is too small" in err and "give --fov of at least" in err and "fov_um" not in err
    assert _main(["map", str(trained_model_path), str(big), "-o", str(tmp_path / "m.png")]) == 2
    assert ".tif" in capsys.readouterr().err
