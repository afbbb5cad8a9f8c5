"""scripts/pretrain_ebsd.py: a resumed run equals an uninterrupted one; export loads offline."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from napari_microstructure.core.ebsd import EBSDClassifier

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "pretrain_ebsd.py"
spec = importlib.util.spec_from_file_location("pretrain_ebsd", SCRIPT)
pretrain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pretrain)

TINY = ["--input-size", "32", "--batch-size", "8", "--session-size", "2", "--sessions-per-step", "2",
        "--pool", "1", "--buffer", "32", "--eval-sessions", "1", "--eval-per-material", "1",
        "--checkpoint-every", "2", "--eval-every", "1000", "--threads", "1"]


def test_resume_is_bit_identical_and_export_loads(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    pretrain.main(["--out", str(a), "--max-steps", "4", *TINY])
    pretrain.main(["--out", str(b), "--max-steps", "2", *TINY])
    pretrain.main(["--out", str(b), "--max-steps", "4", *TINY])  # continues from step 2
    ca = torch.load(a / "checkpoint.pt", weights_only=True)
    cb = torch.load(b / "checkpoint.pt", weights_only=True)
    assert ca["step"] == cb["step"] == 4
    for k in ca["model"]:
        torch.testing.assert_close(ca["model"][k], cb["model"][k], atol=0, rtol=0)
    assert (a / "log.jsonl").read_text().count('"final": true') == 1
    out = tmp_path / "model.pt"
    pretrain.main(["--out", str(a), "--export", str(out), *TINY])
    clf = EBSDClassifier.load(out, device="cpu")
    assert clf.classes_.tolist() == [221, 223, 225, 227, 229, 230]
    assert clf.history_.n_train == 4 * 2 * 2  # steps x sessions per step x session size
    assert clf.predict(np.random.default_rng(0).random((2, 40, 40))).shape == (2,)
