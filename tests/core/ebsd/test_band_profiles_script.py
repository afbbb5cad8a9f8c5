"""scripts/train_band_profiles.py: chunks resume, export writes a model that loads offline and predicts."""

import importlib.util
import json
from pathlib import Path

import numpy as np

from napari_microstructure import BandProfileClassifier
from napari_microstructure.core.ebsd import simulate as S

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "train_band_profiles.py"
spec = importlib.util.spec_from_file_location("train_band_profiles", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

TINY = ["--sessions-per-chunk", "1", "--patterns-per-session", "2", "--workers", "1"]


def test_chunks_resume_and_export_loads(tmp_path):
    out = tmp_path / "run"
    script.main(["features", "--out", str(out), "--chunks", "1", *TINY])
    first = np.load(out / "chunk_000.npz")["features"].copy()
    script.main(["features", "--out", str(out), "--chunks", "2", *TINY])  # chunk 0 is kept, chunk 1 added
    np.testing.assert_array_equal(np.load(out / "chunk_000.npz")["features"], first)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["chunk"] for entry in log] == [0, 1]
    assert first.shape == (6 * 2, 240)
    target = tmp_path / "model.pt"
    script.main(["export", "--out", str(out), "--target", str(target), "--calibration-sessions", "1",
                 "--calibration-patterns", "2", "--workers", "1"])
    clf = BandProfileClassifier.load(target)
    assert clf.classes_.tolist() == list(S.SPACE_GROUPS)
    assert clf.simulation_pretrained and np.isfinite(clf.fit_threshold_) and np.isfinite(clf.symmetry_threshold_)
    assert clf.bank_features_.shape == (24, 240)  # all patterns of the tiny run (<= 600 per class)
    clf.set_params(pc=(0.5, 0.3, 0.6))
    assert clf.predict(np.random.default_rng(0).random((2, 40, 40))).shape == (2,)


def test_intensity_jitter_changes_the_bands_not_the_sessions(tmp_path):
    plain, jittered = tmp_path / "plain", tmp_path / "jittered"
    script.main(["features", "--out", str(plain), "--chunks", "1", *TINY])
    script.main(["features", "--out", str(jittered), "--chunks", "1", "--intensity-jitter", "1.0", *TINY])
    a, b = np.load(plain / "chunk_000.npz"), np.load(jittered / "chunk_000.npz")
    np.testing.assert_array_equal(a["labels"], b["labels"])
    # same structures, sessions and orientations; only the band intensities differ
    assert a["features"].shape == b["features"].shape and not np.allclose(a["features"], b["features"], atol=1e-3)


def test_chunks_record_each_structure_kind(tmp_path):
    """Each pattern's structure kind (prototype name or "random", for development studies): of the training
    split only, and the prototype the sampler drew for that session."""
    out = tmp_path / "run"
    script.main(["features", "--out", str(out), "--chunks", "1", "--sessions-per-chunk", "3",
                 "--patterns-per-session", "2", "--workers", "1"])
    chunk = np.load(out / "chunk_000.npz")
    kinds = chunk["kinds"]
    assert kinds.shape == (3 * 6 * 2,) and set(kinds) <= set(S.PROTOTYPES) | {"random"}
    assert not set(kinds) & set(S.HELD_OUT_PROTOTYPES)
    for kind, sg in zip(kinds, chunk["labels"]):
        assert kind == "random" or S.PROTOTYPES[kind].space_group == sg
