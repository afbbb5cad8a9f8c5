"""The bad-input catalogue: every way a user can get an input wrong, and the answer they get.

Each case asserts the exception type, that the message names the problem and a
fix (in one line), and that no file the user had is changed and none is left
half-written. Sections: the micrograph API, the EBSD API, model files, readers,
the command line, the widgets. Cases are data (parametrized); nothing trains
inside the loop: one tiny fitted model of each kind is shared by the session.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import tifffile
import torch

from napari_microstructure import EBSDClassifier, FewShotClassifier
from napari_microstructure.cli import main as cli_main
from napari_microstructure.core.errors import MicrostructureError, ModelFileError, NotFittedError
from napari_microstructure.core.micrograph.synthetic import make_dataset, make_micrograph
from napari_microstructure.io.tiff import write_micrograph

def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """``{relative path: (size, sha1)}`` of every file under ``folder`` (hidden ones included)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            out[str(p.relative_to(folder))] = (len(data), hashlib.sha1(data).hexdigest())
    return out


@contextlib.contextmanager
def untouched(folder: Path, allowed_new: tuple[str, ...] = ()) -> Iterator[None]:
    """Assert that the block changes no file under ``folder`` and leaves no new one.

    Temporary files (``.tmp-*``), half-written outputs and changed user files all fail.
    """
    before = snapshot(folder)
    yield
    after = snapshot(folder)
    new = sorted(set(after) - set(before) - set(allowed_new))
    assert not new, f"files left behind: {new}"
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"user files changed or removed: {changed}"


def check_message(exc: BaseException, problem: str, fix: str) -> str:
    """The message is one line, names the problem and says what to do."""
    text = str(exc)
    assert "\n" not in text.strip(), f"message is not one line: {text!r}"
    assert "Traceback" not in text
    assert re.search(problem, text, re.I), f"problem {problem!r} not named in: {text}"
    assert re.search(fix, text, re.I), f"fix {fix!r} not given in: {text}"
    return text


def check_cli(rc: int, err: str, problem: str, fix: str, expected_rc: int = 2) -> str:
    """A command ended in one clear line on stderr and a non-zero exit, no traceback."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("[")]  # progress bars
    assert rc == expected_rc, f"exit {rc}, stderr: {err}"
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error")]
    # informational lines ("training on 4 images...") may come first; the failure is one last line
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one closing error line, got: {lines}"
    line = errors[0]
    assert line.startswith("error: "), line
    assert re.search(problem, line, re.I), f"problem {problem!r} not named in: {line}"
    assert re.search(fix, line, re.I), f"fix {fix!r} not given in: {line}"
    return line


# ----------------------------------------------------------------- bad model files
class OpensAFile:
    """Unpickling it would call ``io.open(marker, "w")``: the marker shows code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (io.open, (self.marker, "w"))


def _payload(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _resave(payload: dict, dest: Path) -> Path:
    from napari_microstructure.core.nn.modelio import checksum

    payload["checksum"] = checksum(payload["metadata"], payload["tensors"])
    torch.save(payload, dest)
    return dest


def _flip_tensor_bit(good: Path, dest: Path) -> Path:
    payload = _payload(good)
    raw = bytearray(good.read_bytes())
    # the largest tensor's bytes are stored verbatim in the zip: flip one bit in the middle
    name, t = max(payload["tensors"].items(), key=lambda kv: kv[1].numel() * kv[1].element_size())
    data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    start = bytes(raw).find(data)
    assert start > 0, "tensor bytes not found in the file"
    raw[start + len(data) // 2] ^= 0x04
    dest.write_bytes(bytes(raw))
    return dest


def _flip_metadata(good: Path, dest: Path) -> Path:
    payload = _payload(good)
    payload["metadata"] = payload["metadata"].replace('"', "'", 0) + " "  # changed text, old checksum
    torch.save(payload, dest)
    return dest


def _drop_tensor(good: Path, dest: Path) -> Path:
    payload = _payload(good)
    name = sorted(payload["tensors"])[-1]
    del payload["tensors"][name]
    return _resave(payload, dest)


def _drop_history(good: Path, dest: Path) -> Path:
    import json

    payload = _payload(good)
    meta = json.loads(payload["metadata"])
    meta.pop("history", None)
    meta.pop("classes", None)
    payload["metadata"] = json.dumps(meta)
    return _resave(payload, dest)


def _bad_json(good: Path, dest: Path) -> Path:
    payload = _payload(good)
    payload["metadata"] = "{not json"
    return _resave(payload, dest)


def _version(good: Path, dest: Path) -> Path:
    payload = _payload(good)
    payload["version"] = 99
    torch.save(payload, dest)
    return dest


def _malicious_torch(good: Path, dest: Path) -> Path:
    torch.save({"format": "napari-microstructure-model", "version": 2, "kind": "micrograph",
                "metadata": "{}", "tensors": {}, "x": OpensAFile(dest.parent / "PWNED")}, dest)
    return dest


def _malicious_pickle(good: Path, dest: Path) -> Path:
    with open(dest, "wb") as fh:
        pickle.dump(OpensAFile(dest.parent / "PWNED"), fh)
    return dest


def _truncated(good: Path, dest: Path) -> Path:
    data = good.read_bytes()
    dest.write_bytes(data[: len(data) // 3])
    return dest


def _npy(good: Path, dest: Path) -> Path:
    with open(dest, "wb") as fh:
        np.save(fh, np.zeros((4, 4)))
    return dest


def _tiff(good: Path, dest: Path) -> Path:
    import tifffile

    tifffile.imwrite(dest, np.zeros((8, 8), np.uint8))
    return dest


def _zip(good: Path, dest: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(dest, "w") as z:
        z.writestr("readme.txt", "hello")
    return dest


#: (name, builder, problem regex, fix regex): files that are not a loadable model
BAD_MODEL_FILES = [
    ("missing", lambda g, d: d, r"does not exist", r"check the path"),
    ("folder", lambda g, d: (d.mkdir(), d)[1], r"is a folder", r"model file itself"),
    ("empty", lambda g, d: (d.write_bytes(b""), d)[1], r"not a readable", r"choose a file saved"),
    ("text", lambda g, d: (d.write_text("hello, model\n" * 50), d)[1], r"not a readable", r"choose a file saved"),
    ("random-bytes", lambda g, d: (d.write_bytes(np.random.default_rng(0).bytes(4096)), d)[1],
     r"not a readable|not a model", r"choose a file saved"),
    ("truncated", _truncated, r"not a readable|corrupt", r"re-save|train it again|choose a file"),
    ("numpy-file", _npy, r"not a (readable|model)", r"choose a file saved"),
    ("tiff-file", _tiff, r"not a (readable|model)", r"choose a file saved"),
    ("zip-not-torch", _zip, r"not a readable", r"choose a file saved"),
    ("malicious-torch", _malicious_torch, r"not a model this plugin wrote.*will not be loaded", r"choose a file saved"),
    ("malicious-pickle", _malicious_pickle, r"not a model this plugin wrote.*will not be loaded", r"choose a file saved"),
    ("bit-flip-weights", _flip_tensor_bit, r"checksum does not match", r"copy it again|train the model again"),
    ("edited-metadata", _flip_metadata, r"checksum does not match", r"copy it again|train the model again"),
    ("missing-tensor", _drop_tensor, r"damaged|incomplete", r"train .*again|re-save"),
    ("missing-history", _drop_history, r"damaged|incomplete", r"train .*again|re-save"),
    ("metadata-not-json", _bad_json, r"metadata unreadable", r"re-save|train it again"),
    ("future-version", _version, r"version 99", r"update napari-microstructure|re-train"),
]


# ======================================================================= fixtures
def _tiny(**kw) -> FewShotClassifier:
    params = dict(input_size=32, embedding_dim=2, max_epochs=1, steps_per_epoch=2, batch_size=8,
                  patience=5, n_crops=8, device="cpu", seed=0)
    params.update(kw)
    return FewShotClassifier(**params)


@pytest.fixture(scope="module")
def data2():
    """Two classes x 3 generated 96 x 96 micrographs."""
    return make_dataset(("ferrite", "pearlite"), per_class=3, shape=(96, 96), seed=3)


@pytest.fixture(scope="module")
def tiny_clf(data2):
    """A micrograph model fitted for one short epoch: enough for every bad-input path."""
    images, labels, sizes = data2
    return _tiny().fit(images, labels, sizes)


@pytest.fixture(scope="module")
def model_file(tiny_clf, tmp_path_factory):
    return tiny_clf.save(tmp_path_factory.mktemp("catalogue-model") / "micrograph.pt")


@pytest.fixture(scope="module")
def ebsd_data():
    from napari_microstructure.core.ebsd import simulate as S

    patterns, labels, _ = S.simulate_training_set(["Ni", "Ni3Al"], 6, (32, 32), seed=1)
    return patterns.astype(np.float32), np.asarray(labels)


@pytest.fixture(scope="module")
def tiny_ebsd(ebsd_data):
    patterns, labels = ebsd_data
    clf = EBSDClassifier(backbone="compact", input_size=16, max_epochs=1, batch_size=8, device="cpu", seed=0)
    return clf.fit(patterns, labels)


@pytest.fixture(scope="module")
def ebsd_file(tiny_ebsd, tmp_path_factory):
    path = tmp_path_factory.mktemp("catalogue-ebsd") / "ebsd.pt"
    tiny_ebsd.save(path)
    return path


@pytest.fixture
def image_file(tmp_path):
    """A user's micrograph TIFF with its pixel size."""
    path = tmp_path / "user.tif"
    write_micrograph(path, make_micrograph("pearlite", (96, 96), 0.1, seed=7), 0.1)
    return path


def _noise(shape=(96, 96), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# ==================================================== 1. micrograph API: fit
def _replace_first(images, new):
    return [new] + list(images[1:])


FIT_CASES = [
    # (id, mutate(images, labels, sizes) -> (images, labels, sizes), error type, problem, fix)
    ("no-images", lambda i, l, s: ([], [], []), MicrostructureError, r"no images", r"pass a list"),
    ("fewer-labels", lambda i, l, s: (i, l[:-1], s), MicrostructureError, r"6 images but 5 labels", r"one class name"),
    ("more-labels", lambda i, l, s: (i, l + ["ferrite"], s), MicrostructureError, r"6 images but 7 labels", r"one class name"),
    ("one-class", lambda i, l, s: (i, ["ferrite"] * 6, s), MicrostructureError, r"only one class", r"at least two"),
    ("one-image-class", lambda i, l, s: (i[:4], l[:3] + ["pearlite"], s[:4]), MicrostructureError,
     r"only one image", r"at least two images"),
    ("reserved-none", lambda i, l, s: (i, ["none"] * 3 + l[3:], s), MicrostructureError, r"reserved", r"rename"),
    ("empty-name", lambda i, l, s: (i, [""] + l[1:], s), MicrostructureError, r"class name is empty", r"name every"),
    ("blank-name", lambda i, l, s: (i, ["   "] + l[1:], s), MicrostructureError, r"class name is empty", r"name every"),
    ("trailing-space", lambda i, l, s: (i, ["ferrite "] + l[1:], s), MicrostructureError,
     r"'ferrite' and 'ferrite ' differ only by spaces", r"one spelling"),
    ("leading-space", lambda i, l, s: (i, l[:3] + [" pearlite"] + l[4:], s), MicrostructureError,
     r"differ only by spaces", r"remove the extra spaces"),
    ("double-space", lambda i, l, s: (i, ["fer rite", "fer  rite"] + l[2:], s), MicrostructureError,
     r"differ only by spaces", r"one spelling"),
    ("no-pixel-size", lambda i, l, s: (i, l, None), MicrostructureError, r"pixel_size is missing", r"micrometres"),
    ("negative-pixel-size", lambda i, l, s: (i, l, [0.1] * 5 + [-1.0]), MicrostructureError, r"positive", r"micrometres per pixel"),
    ("zero-pixel-size", lambda i, l, s: (i, l, 0.0), MicrostructureError, r"positive", r"micrometres per pixel"),
    ("nan-pixel-size", lambda i, l, s: (i, l, float("nan")), MicrostructureError, r"positive", r"micrometres per pixel"),
    ("inf-pixel-size", lambda i, l, s: (i, l, float("inf")), MicrostructureError, r"positive", r"micrometres per pixel"),
    ("text-pixel-size", lambda i, l, s: (i, l, ["abc"] * 6), MicrostructureError, r"not a number", r"micrometres per pixel"),
    ("pixel-size-in-nm", lambda i, l, s: (i, l, [100.0] * 6), MicrostructureError,
     r"outside the range of microscopes", r"nanometres is 1000 times too large"),
    ("pixel-size-1000x-one-image", lambda i, l, s: (i, l, list(s[:5]) + [s[5] * 1000]), MicrostructureError,
     r"outside the range of microscopes", r"micrometres per pixel"),
    ("pixel-size-tiny", lambda i, l, s: (i, l, [1e-7] * 6), MicrostructureError,
     r"outside the range", r"micrometres per pixel"),
    ("pixel-size-count", lambda i, l, s: (i, l, s[:-1]), MicrostructureError, r"5 pixel sizes for 6 images", r"one pixel size per image"),
    ("non-square-pixels", lambda i, l, s: (i, l, [(0.1, 0.2)] * 6), MicrostructureError, r"differs between axes", r"resample"),
    ("all-zero-image", lambda i, l, s: (_replace_first(i, np.zeros((96, 96))), l, s), MicrostructureError,
     r"images\[0\] is constant \(every pixel is 0\)", r"check the acquisition"),
    ("constant-image", lambda i, l, s: (_replace_first(i, np.full((96, 96), 255, np.uint8)), l, s),
     MicrostructureError, r"constant \(every pixel is 255\)", r"check the acquisition"),
    ("all-nan-image", lambda i, l, s: (_replace_first(i, np.full((96, 96), np.nan)), l, s), MicrostructureError,
     r"no finite pixel", r"check the data"),
    ("inf-image", lambda i, l, s: (_replace_first(i, np.where(_noise() > 0.5, np.inf, 1.0)), l, s),
     MicrostructureError, r"infinite", r"nan_to_num|mask them"),
    ("float64-overflow", lambda i, l, s: (_replace_first(i, _noise().astype(np.float64) * 1e300), l, s),
     MicrostructureError, r"beyond the float32 range", r"rescale"),
    ("bool-image", lambda i, l, s: (_replace_first(i, _noise() > 0.5), l, s), MicrostructureError,
     r"dtype bool", r"uint8, uint16 or float"),
    ("complex-image", lambda i, l, s: (_replace_first(i, _noise().astype(np.complex64)), l, s), MicrostructureError,
     r"dtype complex64", r"uint8, uint16 or float"),
    ("text-image", lambda i, l, s: (_replace_first(i, np.full((96, 96), "a")), l, s), MicrostructureError,
     r"dtype <U1", r"uint8, uint16 or float"),
    ("stack-image", lambda i, l, s: (_replace_first(i, np.zeros((5, 96, 96))), l, s), MicrostructureError,
     r"3-D", r"one slice or channel"),
    ("4d-image", lambda i, l, s: (_replace_first(i, np.zeros((2, 96, 96, 2))), l, s), MicrostructureError,
     r"4-D", r"one slice or channel"),
    ("1d-image", lambda i, l, s: (_replace_first(i, np.arange(96.0)), l, s), MicrostructureError,
     r"1-D", r"2-D grey image"),
    ("tiny-image", lambda i, l, s: (_replace_first(i, _noise((20, 20))), l, s), MicrostructureError,
     r"smaller than one 32 x 32 crop", r"larger image|pixel size"),
    ("mask-of-other-shape", lambda i, l, s: (i[:1], [np.zeros((64, 64), int)], s[:1]), MicrostructureError,
     r"has shape \(64, 64\) but its image has shape \(96, 96\)", r"same size"),
    ("empty-masks", lambda i, l, s: (i[:2], [np.zeros((96, 96), int)] * 2, s[:2]), MicrostructureError,
     r"label masks are empty", r"paint at least two classes"),
    ("names-and-masks", lambda i, l, s: (i[:2], ["ferrite", np.ones((96, 96), int)], s[:2]), MicrostructureError,
     r"mix class names and label masks", r"either one class name"),
    ("mask-one-class", lambda i, l, s: (i[:1], [np.ones((96, 96), int)], s[:1]), MicrostructureError,
     r"only one class", r"at least two"),
    ("mask-few-pixels", lambda i, l, s: (i[:1], [np.pad(np.ones((90, 96), int), ((0, 6), (0, 0)),
                                                         constant_values=0) + _px2()], s[:1]),
     MicrostructureError, r"has 2 labelled pixels", r"paint at least"),
]


def _px2():
    m = np.zeros((96, 96), int)
    m[95, :2] = 2
    return m


@pytest.mark.parametrize("mutate, error, problem, fix", [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_fit_refuses(data2, tmp_path, mutate, error, problem, fix):
    images, labels, sizes = mutate(*data2)
    clf = _tiny()
    with untouched(tmp_path), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(error) as info:
            clf.fit(images, labels, sizes)
    check_message(info.value, problem, fix)
    assert not clf.is_fitted


PARAM_CASES = [
    ("loss", {"loss": "hinge"}, r"unknown loss 'hinge'", r"choose one of"),
    ("mining", {"mining": "hardest"}, r"unknown mining", r"choose one of"),
    ("embedding-dim", {"embedding_dim": 0}, r"embedding_dim must be at least 1", r"at least 1"),
    ("input-size", {"input_size": 16}, r"input_size must be at least 32", r"at least 32"),
    ("n-crops-zero", {"n_crops": 0}, r"n_crops must be at least 1", r"at least 1"),
    ("steps", {"steps_per_epoch": 0}, r"steps_per_epoch must be at least 1", r"at least 1"),
    ("fov-reversed", {"fov_um": (5.0, 1.0)}, r"fov_um must be", r"positive micrometres"),
    ("fov-negative", {"fov_um": (-1.0, 5.0)}, r"fov_um must be", r"positive micrometres"),
    ("scale-weight-negative", {"novelty_scale_weight": -1.0}, r"novelty_scale_weight=-1.0",
     r"finite number >= 0 \(0: no scale\)"),
    ("scale-weight-nan", {"novelty_scale_weight": float("nan")}, r"novelty_scale_weight=nan", r"finite number >= 0"),
    ("scale-weight-text", {"novelty_scale_weight": "strong"}, r"novelty_scale_weight='strong'", r"finite number >= 0"),
    ("granulometry-weight-negative", {"novelty_granulometry_weight": -0.5}, r"novelty_granulometry_weight=-0.5",
     r"finite number >= 0 \(0: no granulometry\)"),
    ("local-density-text", {"novelty_local_density": "yes"}, r"novelty_local_density='yes'", r"True \(the local spacing\) or False"),
    ("mixture-quantile-half", {"ensemble_mixture_quantile": 0.5}, r"ensemble_mixture_quantile=0.5", r"in \[0, 0.5\)"),
]


@pytest.mark.parametrize("params, problem, fix", [c[1:] for c in PARAM_CASES], ids=[c[0] for c in PARAM_CASES])
def test_fit_refuses_bad_parameters(data2, params, problem, fix):
    images, labels, sizes = data2
    clf = _tiny(**params)
    with pytest.raises(MicrostructureError) as info:
        clf.fit(images, labels, sizes)
    check_message(info.value, problem, fix)


def test_labels_as_a_column_are_one_label_per_image(data2):
    """An (N, 1) array of names is N labels, not one label mask ("6 images but 1 labels")."""
    images, labels, sizes = data2
    column = np.asarray(labels)[:, None]
    clf = _tiny(max_epochs=1, steps_per_epoch=1).fit(images, column, sizes)
    assert clf.classes_.tolist() == ["ferrite", "pearlite"]


# ============================================== 2. micrograph API: prediction
PREDICT_CASES = [
    ("constant-image", lambda: (np.zeros((96, 96)), 0.1), {}, MicrostructureError,
     r"constant \(every pixel is 0\)", r"check the acquisition"),
    ("constant-uint16", lambda: (np.full((96, 96), 4095, np.uint16), 0.1), {}, MicrostructureError,
     r"constant", r"check the acquisition"),
    ("all-nan", lambda: (np.full((96, 96), np.nan), 0.1), {}, MicrostructureError, r"no finite pixel", r"check the data"),
    ("inf", lambda: (np.where(_noise() > 0.9, -np.inf, 0.0), 0.1), {}, MicrostructureError, r"infinite", r"nan_to_num"),
    ("stack", lambda: (np.zeros((3, 96, 96)), 0.1), {}, MicrostructureError, r"3-D", r"one slice"),
    ("bool", lambda: (_noise() > 0.5, 0.1), {}, MicrostructureError, r"dtype bool", r"uint8"),
    ("no-pixel-size", lambda: (_noise(), None), {}, MicrostructureError, r"pixel_size is missing", r"micrometres"),
    ("negative-pixel-size", lambda: (_noise(), -0.1), {}, MicrostructureError, r"positive", r"micrometres per pixel"),
    ("pixel-size-in-nm", lambda: (_noise(), 100.0), {}, MicrostructureError, r"outside the range", r"nanometres"),
    ("pixel-size-far-too-coarse", lambda: (_noise((400, 400)), 40.0), {}, MicrostructureError,
     r"covers only .* pixels", r"check the pixel size"),
    ("image-too-small", lambda: (_noise((24, 24)), 0.01), {}, MicrostructureError,
     r"less than the smallest crop", r"larger image|pixel size"),
    ("n-crops-zero", lambda: (_noise(), 0.1), {"n_crops": 0}, MicrostructureError, r"n_crops=0", r"positive number"),
    ("n-crops-negative", lambda: (_noise(), 0.1), {"n_crops": -1}, MicrostructureError, r"n_crops=-1", r"positive number"),
    ("n-crops-float", lambda: (_noise(), 0.1), {"n_crops": 2.5}, MicrostructureError, r"n_crops=2.5", r"positive number"),
    ("n-crops-text", lambda: (_noise(), 0.1), {"n_crops": "10"}, MicrostructureError, r"n_crops='10'", r"positive number"),
]


@pytest.mark.parametrize("make, kwargs, error, problem, fix", [c[1:] for c in PREDICT_CASES],
                         ids=[c[0] for c in PREDICT_CASES])
def test_predict_refuses(tiny_clf, make, kwargs, error, problem, fix):
    image, size = make()
    with pytest.raises(error) as info:
        tiny_clf.predict_proba(image, size, **kwargs)
    check_message(info.value, problem, fix)


@pytest.mark.parametrize("method", ["predict_proba", "predict", "probability_map", "save"])
def test_unfitted_classifier(method, tmp_path):
    clf = _tiny()
    args = (tmp_path / "m.pt",) if method == "save" else (_noise(), 0.1)
    with untouched(tmp_path), pytest.raises(NotFittedError) as info:
        getattr(clf, method)(*args)
    check_message(info.value, r"not fitted", r"call fit|load")


def test_probability_map_of_a_constant_image(tiny_clf):
    with pytest.raises(MicrostructureError) as info:
        tiny_clf.probability_map(np.full((96, 96), 7.0), 0.1)
    check_message(info.value, r"constant", r"check the acquisition")


# ========================================================== 3. EBSD API
def _ebsd_fit_cases():
    return [
        ("2d-patterns", lambda p, l: (p[0], l), r"single 2-D image", r"patterns\[None\]"),
        ("empty", lambda p, l: (p[:0], l[:0]), r"empty", r"at least one pattern"),
        ("nan-pattern", lambda p, l: (np.where(np.arange(len(p))[:, None, None] == 3, np.nan, p), l),
         r"NaN or infinite values \(1 patterns, the first at index 3\)", r"nan_to_num|remove"),
        ("one-class", lambda p, l: (p, np.full(len(l), 225)), r"at least two classes", r"add patterns"),
        ("label-zero", lambda p, l: (p, np.where(l == l[0], 0, l)), r"label 0 is reserved", r"number the classes from 1"),
        ("labels-count", lambda p, l: (p, l[:-2]), r"got 10 labels for 12 patterns", r"one label per pattern"),
        ("labels-nan", lambda p, l: (p, np.where(np.arange(len(l)) == 0, np.nan, l.astype(float))),
         r"labels contain NaN", r"give a label to every pattern"),
        ("tiny-patterns", lambda p, l: (p[:, :4, :4], l), r"4 x 4 pixels", r"at least 8 x 8"),
        ("5d", lambda p, l: (p[None, None], l), r"5 dimensions", r"stack \(N, h, w\)"),
        ("text-patterns", lambda p, l: (np.full(p.shape, "x"), l), r"dtype <U1", r"numeric"),
        ("ragged-list", lambda p, l: ([p[0], p[1][:20]] + list(p[2:]), l), r"different sizes", r"resize or crop"),
    ]


@pytest.mark.parametrize("case", _ebsd_fit_cases(), ids=lambda c: c[0])
def test_ebsd_fit_refuses(ebsd_data, case):
    _, mutate, problem, fix = case
    patterns, labels = mutate(*ebsd_data)
    clf = EBSDClassifier(backbone="compact", input_size=16, max_epochs=1, device="cpu")
    with pytest.raises(MicrostructureError) as info:
        clf.fit(patterns, labels)
    check_message(info.value, problem, fix)
    assert not hasattr(clf, "models_")


def test_ebsd_non_square_patterns_warn_at_fit(ebsd_data):
    patterns, labels = ebsd_data
    clf = EBSDClassifier(backbone="compact", input_size=16, max_epochs=1, device="cpu")
    with pytest.warns(UserWarning, match=r"32 x 24 pixels \(not square\).*crop them to a square"):
        clf.fit(patterns[:, :, :24], labels)
    assert clf.preprocessor_.pattern_shape_ == (32, 24)


EBSD_PREDICT_CASES = [
    ("other-aspect", lambda p: p[:, :, :24], MicrostructureError, r"32 x 24 pixels \(aspect ratio 1.33\).*32 x 32",
     r"crop or bin them|train a model"),
    ("other-aspect-wide", lambda p: np.concatenate([p, p], 2), MicrostructureError, r"aspect ratio 0.50",
     r"crop or bin"),
    ("nan", lambda p: np.where(np.arange(len(p))[:, None, None] == 5, np.nan, p), MicrostructureError,
     r"the first at index 5", r"nan_to_num"),
    ("2d", lambda p: p[0], MicrostructureError, r"single 2-D image", r"patterns\[None\]"),
    ("tiny", lambda p: p[:, :6, :6], MicrostructureError, r"6 x 6 pixels", r"at least 8 x 8"),
]


@pytest.mark.parametrize("mutate, error, problem, fix", [c[1:] for c in EBSD_PREDICT_CASES],
                         ids=[c[0] for c in EBSD_PREDICT_CASES])
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_ebsd_predict_refuses(tiny_ebsd, ebsd_data, method, mutate, error, problem, fix):
    with pytest.raises(error) as info:
        getattr(tiny_ebsd, method)(mutate(ebsd_data[0]))
    check_message(info.value, problem, fix)


def test_ebsd_other_size_same_aspect_warns(tiny_ebsd, ebsd_data):
    patterns = np.repeat(np.repeat(ebsd_data[0][:4], 2, 1), 2, 2)  # 64 x 64, same aspect
    with pytest.warns(UserWarning, match=r"64 x 64 pixels but the model was trained on 32 x 32"):
        tiny_ebsd.predict(patterns)


# band-profile classifier: the same fit checks (before any indexing), its own inputs
@pytest.mark.parametrize("case", _ebsd_fit_cases(), ids=lambda c: c[0])
def test_band_profiles_fit_refuses(ebsd_data, case):
    from napari_microstructure import BandProfileClassifier

    _, mutate, problem, fix = case
    patterns, labels = mutate(*ebsd_data)
    clf = BandProfileClassifier(pc=(0.5, 0.3, 0.6), max_epochs=1)
    with pytest.raises(MicrostructureError) as info:
        clf.fit(patterns, labels)
    check_message(info.value, problem, fix)
    assert not hasattr(clf, "net_")


BAND_CASES = [
    ("no-pc", dict(pc=None), lambda c, p: c.predict(p), r"no projection centre", r"give pc="),
    ("two-value-pc", dict(pc=(0.5, 0.3)), lambda c, p: c.predict(p), r"three finite numbers", r"pc=\(0.5, 0.3, 0.6\)"),
    ("pc-in-pixels", dict(pc=(16.0, 10.0, 0.6)), lambda c, p: c.predict(p), r"implausible",
     r"convert .* to the Bruker convention"),
    ("nan-pattern", dict(), lambda c, p: c.predict(np.where(np.arange(len(p))[:, None, None] == 2, np.nan, p)),
     r"the first at index 2", r"nan_to_num"),
    ("2d", dict(), lambda c, p: c.predict(p[0]), r"single 2-D image", r"patterns\[None\]"),
    ("background-shape", dict(), lambda c, p: c.predict(p, background=np.ones((5, 5))),
     r"background is 5 x 5 pixels but the patterns are 32 x 32", r"same detector"),
    ("background-nan", dict(), lambda c, p: c.predict(p, background=np.full((32, 32), np.nan)),
     r"static background holds NaN", r"background='map'"),
    ("background-word", dict(), lambda c, p: c.classify_map(p[None], background="mean"), r"background='mean'",
     r"as an array of the patterns' shape, 'map'"),
    ("features-shape", dict(), lambda c, p: c.fit_features(np.zeros((4, 10)), [221, 221, 225, 225]),
     r"features have shape \(4, 10\)", r"from describe\(\)"),
    ("augment-negative", dict(augment=-2), lambda c, p: c.fit(p, [221, 221, 225, 225]), r"augment=-2",
     r"number of augmented copies in 0-100"),
    ("augment-float", dict(augment=0.5), lambda c, p: c.fit(p, [221, 221, 225, 225]), r"augment=0.5",
     r"number of augmented copies in 0-100"),
    ("one-space-group", dict(), lambda c, p: c.fit(p, [225] * len(p)), r"have the label 225;",
     r"from_pretrained\(pc=\.\.\.\) classifies"),
    ("max-height-zero", dict(max_height=0), lambda c, p: c.predict(p), r"max_height=0",
     r"pattern height in pixels of at least 16"),
    # a pattern array with its axes the wrong way round: binned to the trained height, 1 pixel wide
    ("narrow-after-binning", dict(), lambda c, p: c.predict(np.zeros((3, 1000, 17), np.uint8)),
     r"1000 x 17 pixels: binned by 10 .* 100 x 1", r"reorder them"),
    ("space-group-typo", dict(), lambda c, p: c.fit(p, [224, 224, 225, 225]),
     r"labels 224 are not among the space groups the shipped model knows \(221, 223, 225, 227, 229, 230\)",
     r"check them for typos.*text names"),
    ("label-no-solution", dict(), lambda c, p: c.fit(p, ["Ni", "Ni", "no solution", "no solution"]),
     r"'no solution' is what maps call patterns no class explains", r"leave such patterns out"),
    ("learning-rate-nan", dict(learning_rate=float("nan")), lambda c, p: c.fit(p, [221, 221, 225, 225]),
     r"learning_rate=nan", r"give a number in \[1e-07, 1\]"),
    ("learning-rate-negative", dict(learning_rate=-1), lambda c, p: c.fit(p, [221, 221, 225, 225]),
     r"learning_rate=-1", r"give a number in"),
    ("weight-decay-nan", dict(weight_decay=float("nan")), lambda c, p: c.fit(p, [221, 221, 225, 225]),
     r"weight_decay=nan", r"give a number in \[0, 1\]"),
    ("feature-noise-negative", dict(feature_noise=-1), lambda c, p: c.fit(p, [221, 221, 225, 225]),
     r"feature_noise=-1", r"give a number in \[0, 5\]"),
    ("confidence-text", dict(confidence_threshold="x"), lambda c, p: c.predict(p), r"confidence_threshold='x'",
     r"give a number in \[0, 1\]"),
    ("orientations-zero", dict(n_orientations=0), lambda c, p: c.predict(p), r"n_orientations=0",
     r"whole number of at least 100"),
    ("seed-text", dict(seed="x"), lambda c, p: c.predict(p), r"seed='x'", r"whole number of at least 0"),
    ("step-text", dict(), lambda c, p: c.classify_map(p[None], step_size_um="x"), r"step_size_um='x'",
     r"give one positive number or \(row, column\) in micrometres"),
]


@pytest.mark.parametrize("params, call, problem, fix", [c[1:] for c in BAND_CASES], ids=[c[0] for c in BAND_CASES])
def test_band_profiles_refuses(ebsd_data, params, call, problem, fix):
    from napari_microstructure import BandProfileClassifier

    clf = BandProfileClassifier.from_pretrained(pc=(0.5, 0.3, 0.6))
    clf.set_params(**params)
    with pytest.raises(MicrostructureError) as info:
        call(clf, ebsd_data[0][:4])
    check_message(info.value, problem, fix)


def test_band_profiles_unfitted():
    from napari_microstructure import BandProfileClassifier

    with pytest.raises(NotFittedError) as info:
        BandProfileClassifier(pc=(0.5, 0.3, 0.6)).predict(np.zeros((2, 32, 32)))
    check_message(info.value, r"not fitted yet", r"call fit|from_pretrained")


def test_ebsd_unfitted():
    with pytest.raises(NotFittedError) as info:
        EBSDClassifier().predict(np.zeros((2, 32, 32)))
    check_message(info.value, r"not fitted yet", r"call fit|load")


def test_classify_map_names_the_nan_pattern_by_its_map_index(tiny_ebsd, ebsd_data):
    """Pattern 50 of a 10 x 6 map is reported as index 50 (row 8, column 2), not by its index in a chunk."""
    patterns = ebsd_data[0]
    pmap = patterns[np.arange(60) % len(patterns)].reshape(10, 6, 32, 32).copy()
    pmap[8, 2, 3, 3] = np.nan
    for chunk in (7, 16, 2048):
        with pytest.raises(MicrostructureError) as info:
            tiny_ebsd.classify_map(pmap, chunk_size=chunk)
        check_message(info.value, r"the first at index 50: row 8, column 2", r"nan_to_num|remove")
    import dask.array as da

    with pytest.raises(MicrostructureError) as info:
        tiny_ebsd.classify_map(da.from_array(pmap, chunks=(3, 4, 32, 32)), chunk_size=5)
    check_message(info.value, r"the first at index 50: row 8, column 2", r"nan_to_num|remove")


def test_classify_map_reads_an_h5py_dataset(tiny_ebsd, ebsd_data, tmp_path):
    import h5py

    patterns = ebsd_data[0]
    pmap = patterns[np.arange(24) % len(patterns)].reshape(4, 6, 32, 32)
    with h5py.File(tmp_path / "map.h5", "w") as f:
        f["map"] = pmap
        f["stack"] = pmap.reshape(24, 32, 32)
    expected = tiny_ebsd.classify_map(pmap, chunk_size=5)
    with h5py.File(tmp_path / "map.h5", "r") as f:
        for key, chunk in (("map", 5), ("stack", 7), ("map", 2048)):
            res = tiny_ebsd.classify_map(f[key], chunk_size=chunk)
            np.testing.assert_allclose(res.probabilities.reshape(-1), expected.probabilities.reshape(-1), atol=1e-5)


@pytest.mark.parametrize("args, problem, fix", [
    ({"chunk_size": 0}, r"chunk_size=0", r"positive number"),
    ({"chunk_size": -5}, r"chunk_size=-5", r"positive number"),
    ({"background": "mean"}, r"background='mean'", r"use 'model', 'map'"),
], ids=["chunk-0", "chunk-negative", "background-name"])
def test_classify_map_refuses_options(tiny_ebsd, ebsd_data, args, problem, fix):
    pmap = ebsd_data[0][:6].reshape(2, 3, 32, 32)
    with pytest.raises(MicrostructureError) as info:
        tiny_ebsd.classify_map(pmap, **args)
    check_message(info.value, problem, fix)


@pytest.mark.parametrize("shape, problem", [((2, 2, 2, 32, 32), r"must be 4-D"), ((0, 3, 32, 32), r"is empty")],
                         ids=["5d-map", "empty-map"])
def test_classify_map_refuses_shapes(tiny_ebsd, shape, problem):
    with pytest.raises(MicrostructureError) as info:
        tiny_ebsd.classify_map(np.zeros(shape, np.float32))
    check_message(info.value, problem, r"rows, cols, h, w|empty")


def test_classify_map_other_aspect_refused_before_any_work(tiny_ebsd, ebsd_data):
    pmap = ebsd_data[0][:6, :, :20].reshape(2, 3, 32, 20)
    calls = []
    with pytest.raises(MicrostructureError) as info:
        tiny_ebsd.classify_map(pmap, progress=calls.append)
    check_message(info.value, r"aspect ratio", r"crop or bin")
    assert not [c for c in calls if c.step > 0]


# ============================================================ 4. model files
LOADERS = {
    "FewShotClassifier.load": lambda p: FewShotClassifier.load(p, device="cpu"),
    "EBSDClassifier.load": lambda p: EBSDClassifier.load(p, device="cpu"),
    "load_model": lambda p: __import__("napari_microstructure.api", fromlist=["load_model"]).load_model(p, device="cpu"),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("name, build, problem, fix", BAD_MODEL_FILES, ids=[c[0] for c in BAD_MODEL_FILES])
def test_bad_model_files_are_refused(model_file, ebsd_file, tmp_path, loader, name, build, problem, fix):
    good = ebsd_file if loader == "EBSDClassifier.load" else model_file
    path = build(good, tmp_path / "model.pt")
    with untouched(tmp_path), pytest.raises(ModelFileError) as info:
        LOADERS[loader](path)
    check_message(info.value, problem, fix)
    assert not (tmp_path / "PWNED").exists(), "unpickling ran code from the file"


def test_bit_flip_is_caught_for_every_tensor_group(model_file, tmp_path):
    """A flipped bit anywhere in the tensors (weights, mixture, descriptors) is refused."""
    payload = torch.load(model_file, weights_only=True)
    raw = model_file.read_bytes()
    groups = {}
    for name, t in payload["tensors"].items():
        groups.setdefault(name.split(".")[0], (name, t))
    for group, (name, t) in groups.items():
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        start = raw.find(data)
        if start < 0 or len(data) < 4:
            continue
        bad = bytearray(raw)
        bad[start + len(data) - 1] ^= 0x01
        (tmp_path / f"{group}.pt").write_bytes(bytes(bad))
        with pytest.raises(ModelFileError, match="checksum does not match"):
            FewShotClassifier.load(tmp_path / f"{group}.pt", device="cpu")


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("path", [None, 123, ""], ids=["None", "number", "empty"])
def test_a_model_path_that_is_not_a_file_name(loader, path):
    with pytest.raises(ModelFileError) as info:
        LOADERS[loader](path)
    check_message(info.value, r"cannot load a model from .*: it is not a file name", r"path of a model file")


@pytest.mark.parametrize("path", [None, 123], ids=["None", "number"])
def test_saving_to_a_path_that_is_not_a_file_name(tiny_clf, path):
    with pytest.raises(ModelFileError) as info:
        tiny_clf.save(path)
    check_message(info.value, r"cannot save the model to .*: it is not a file name", r"e.g. 'model.pt'")


@pytest.mark.parametrize("which, loader, problem", [
    ("micrograph", "EBSDClassifier.load", r"holds a micrograph model .* an EBSD model .* is needed"),
    ("ebsd", "FewShotClassifier.load", r"holds an EBSD model .* a micrograph model .* is needed"),
], ids=["micrograph-as-ebsd", "ebsd-as-micrograph"])
def test_model_of_the_other_kind(model_file, ebsd_file, which, loader, problem):
    path = model_file if which == "micrograph" else ebsd_file
    with pytest.raises(ModelFileError) as info:
        LOADERS[loader](path)
    check_message(info.value, problem, r"load it with the matching classifier")


# ---------------------------------------------------------------- saving
def _fail_write(code):
    def write(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return write


SAVE_CASES = [
    ("missing-folder", lambda d, mp: d / "missing" / "m.pt", None, r"folder .* does not exist", r"create it first"),
    ("path-is-folder", lambda d, mp: (d / "existing").mkdir() or d / "existing", None, r"it is a folder",
     r"give a file name inside it"),
    ("parent-is-file", lambda d, mp: (d / "afile").write_text("x") and d / "afile" / "m.pt", None,
     r"is a file, not a folder|does not exist", r"check the path|create it"),
    ("disk-full", lambda d, mp: d / "user-model.pt", errno.ENOSPC, r"the disk is full", r"free some space"),
    ("permission", lambda d, mp: d / "user-model.pt", errno.EACCES, r"permission denied", r"folder you may write to"),
    ("read-only-fs", lambda d, mp: d / "user-model.pt", errno.EROFS, r"read-only", r"writable disk"),
    ("quota", lambda d, mp: d / "user-model.pt", errno.EDQUOT, r"quota", r"free some space"),
]


@pytest.mark.parametrize("which", ["micrograph", "ebsd"])
@pytest.mark.parametrize("target, code, problem, fix", [c[1:] for c in SAVE_CASES], ids=[c[0] for c in SAVE_CASES])
def test_failed_saves_keep_the_users_file(tiny_clf, tiny_ebsd, tmp_path, monkeypatch, which, target, code,
                                          problem, fix):
    from napari_microstructure.core.nn import modelio

    clf = tiny_clf if which == "micrograph" else tiny_ebsd
    (tmp_path / "user-model.pt").write_bytes(b"the user's earlier model")
    path = target(tmp_path, None)
    if code is not None:  # the operating system refuses the write itself
        monkeypatch.setattr(modelio, "open", _fail_write(code), raising=False)
    with untouched(tmp_path), pytest.raises(ModelFileError) as info:
        clf.save(path)
    check_message(info.value, problem, fix)


def test_saves_keep_links_and_refuse_special_files(tiny_clf, tmp_path):
    """A save to a symbolic link writes the file it points to and keeps the link; a device or pipe is
    refused (before, the save replaced it with a regular file: as root, /dev/full itself)."""
    target = tmp_path / "models" / "current.pt"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "model.pt"
    link.symlink_to(target)
    tiny_clf.save(link)
    assert link.is_symlink() and link.resolve() == target
    assert type(tiny_clf).load(link).classes_.tolist() == tiny_clf.classes_.tolist()
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    for special in (fifo, Path("/dev/null")):
        with pytest.raises(ModelFileError) as info:
            tiny_clf.save(special)
        check_message(info.value, r"device or other special file", r"give the path of a regular file")
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()


@contextlib.contextmanager
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted under ``tmp_path`` (needs root; the test is skipped elsewhere)."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_real_full_disk_keeps_the_users_file(tiny_clf, tmp_path):
    """On a tiny tmpfs the save fails cleanly."""
    with tiny_disk(tmp_path) as mount:
        (mount / "model.pt").write_bytes(b"old model")
        with untouched(mount), pytest.raises(ModelFileError) as info:
            tiny_clf.save(mount / "model.pt")
        check_message(info.value, r"the disk is full", r"free some space")


def _probability_result():
    from napari_microstructure.core.micrograph.probmap import ProbabilityMapResult

    probs = np.full((3, 16, 16), 1 / 3, np.float32)
    return ProbabilityMapResult(
        probabilities=probs, labels=np.ones((16, 16), np.uint8), evaluated=np.ones((16, 16), bool),
        class_names=["a", "b", "none"], fractions={"a": 1.0, "b": 0.0}, evaluated_fraction=1.0,
        pixel_size_um=0.1, fov_um=1.0, crop_size_px=10.0, stride_px=2.0, n_crops=4, n_augment=1,
        method="shared", timings={})


def _short_write(*args, **kwargs):
    """What tifffile raises on a full disk: NumPy's ``tofile`` reports a short write, with no errno."""
    raise OSError("65536 requested and 5844 written")


@pytest.mark.parametrize("writer", ["probability map", "micrograph"])
def test_a_full_disk_is_named_by_every_tiff_writer(tmp_path, monkeypatch, writer):
    from napari_microstructure.io import probmap_tiff, tiff

    target = tmp_path / "earlier.tif"
    target.write_bytes(b"the user's earlier file")
    monkeypatch.setattr(tifffile, "imwrite", _short_write)
    with untouched(tmp_path), pytest.raises(MicrostructureError) as info:
        if writer == "probability map":
            probmap_tiff.write_probability_tiff(target, _probability_result())
        else:
            tiff.write_micrograph(target, _noise(), 0.1)
    check_message(info.value, rf"cannot write the {writer} to .*earlier.tif.*: the disk is full", r"free some space")


def test_a_real_full_disk_is_named_by_the_probability_map_writer(tmp_path):
    """On a tiny tmpfs."""
    from napari_microstructure.io.probmap_tiff import write_probability_tiff

    with tiny_disk(tmp_path) as mount:
        (mount / "map.tif").write_bytes(b"old map")
        result = _probability_result()
        result.probabilities = np.full((3, 128, 128), 1 / 3, np.float32)   # 256 KB: more than the disk
        with untouched(mount), pytest.raises(MicrostructureError) as info:
            write_probability_tiff(mount / "map.tif", result)
        check_message(info.value, r"the disk is full \(0.0 MB free\)", r"free some space")


# ------------------------------------------------------- intensity normalisation
def _grey(shape=(64, 64)):
    return _noise(shape)


NORMALISE_CASES = [
    # Micrograph(image, 0.1, window_um=...)
    ("window-um-zero", "micrograph", {"window_um": 0}, r"window_um must be a positive number of micrometres.*got 0",
     r"None for the whole image"),
    ("window-um-negative", "micrograph", {"window_um": -1}, r"window_um must be a positive number.*got -1",
     r"None for the whole image"),
    ("window-um-nan", "micrograph", {"window_um": float("nan")}, r"window_um must be a positive number.*nan",
     r"None for the whole image"),
    ("window-um-text", "micrograph", {"window_um": "abc"}, r"window_um must be a positive number.*'abc'",
     r"None for the whole image"),
    ("window-um-list", "micrograph", {"window_um": [1]}, r"window_um must be a positive number.*\[1\]",
     r"None for the whole image"),
    ("window-um-bool", "micrograph", {"window_um": True}, r"window_um must be a positive number.*True",
     r"None for the whole image"),
    ("window-um-half-a-pixel", "micrograph", {"window_um": 0.05}, r"window_um=0.05 is 0.5 pixels at 0.1 um per "
     r"pixel: too small a window", r"at least 1.6 um, 16 pixels"),
    # normalise_in_place(grey, valid, window_px)
    ("window-px-zero", "in-place", {"window_px": 0}, r"window_px must be a positive number of pixels.*got 0",
     r"None for the whole image"),
    ("window-px-negative", "in-place", {"window_px": -5}, r"window_px must be a positive number.*-5",
     r"None for the whole image"),
    ("window-px-text", "in-place", {"window_px": "abc"}, r"window_px must be a positive number.*'abc'",
     r"None for the whole image"),
    ("window-px-fraction", "in-place", {"window_px": 0.3}, r"window_px=0.3: too small a window",
     r"at least 16 pixels"),
    ("uint8", "in-place", {"grey": (_grey() * 200).astype(np.uint8)}, r"got a 2-D uint8 array",
     r"astype\(np.float32\)"),
    ("3-d", "in-place", {"grey": np.random.rand(3, 64, 64).astype(np.float32), "window_px": 30},
     r"got a 3-D float32 array", r"one 2-D image"),
    ("valid-wrong-shape-window", "in-place", {"valid": np.ones((10, 10), bool), "window_px": 30},
     r"valid has shape \(10, 10\) but the image has shape \(64, 64\)", r"mask of the image's shape"),
    ("valid-wrong-shape-whole", "in-place", {"valid": np.ones((10, 10), bool)},
     r"valid has shape \(10, 10\) but the image has shape \(64, 64\)", r"mask of the image's shape"),
]


@pytest.mark.parametrize("call, kwargs, problem, fix", [c[1:] for c in NORMALISE_CASES],
                         ids=[c[0] for c in NORMALISE_CASES])
def test_normalisation_refuses(call, kwargs, problem, fix):
    from napari_microstructure.core.micrograph.crops import Micrograph, normalise_in_place

    kwargs = dict(kwargs)
    grey = kwargs.pop("grey", _grey())
    before = grey.copy()
    with pytest.raises(MicrostructureError) as info:
        if call == "micrograph":
            Micrograph(grey, 0.1, **kwargs)
        else:
            normalise_in_place(grey, **kwargs)
    check_message(info.value, problem, fix)
    np.testing.assert_array_equal(grey, before)   # nothing was changed in place


def test_normalisation_window_of_the_smallest_size_still_works():
    from napari_microstructure.core.micrograph.crops import MIN_WINDOW_PX, Micrograph, normalise_in_place

    out = normalise_in_place(_grey(), window_px=MIN_WINDOW_PX)
    assert out.min() >= 0 and out.max() <= 1
    assert Micrograph(_grey(), 0.1, window_um=MIN_WINDOW_PX * 0.1).normalise_window_um == pytest.approx(1.6)


# ------------------------------------------------------- probability-map options
MAP_OPTION_CASES = [
    ("jitter", "abc", r"jitter must be a number between 0 and 1", r"fraction of the stride"),
    ("jitter", None, r"jitter must be a number between 0 and 1.*got None", r"fraction of the stride"),
    ("n_augment", None, r"n_augment must be an integer from 1 to 8.*got None", r"mirror and quarter turns"),
    ("n_augment", 2.5, r"n_augment must be an integer from 1 to 8.*got 2.5", r"mirror and quarter turns"),
    ("tile_size", None, r"tile_size must be an integer .*got None", r"at least 128"),
    ("tile_size", "abc", r"tile_size must be an integer .*got 'abc'", r"at least 128"),
    ("batch_size", "x", r"batch_size must be a positive integer.*got 'x'", r"crops per batch"),
    ("batch_size", 2.5, r"batch_size must be a positive integer.*got 2.5", r"crops per batch"),
    ("batch_size", -1, r"batch_size must be a positive integer.*got -1", r"crops per batch"),
    ("max_invalid_fraction", "x", r"max_invalid_fraction must be a number between 0 and 1.*'x'", r"between 0 and 1"),
    ("max_invalid_fraction", None, r"max_invalid_fraction must be a number.*None", r"between 0 and 1"),
    ("seed", "abc", r"seed must be a non-negative integer.*got 'abc'", r"or None"),
    ("seed", -1, r"seed must be a non-negative integer.*got -1", r"or None"),
    ("seed", 2.5, r"seed must be a non-negative integer.*got 2.5", r"or None"),
    ("n_random_crops", 2.5, r"n_random_crops must be a positive integer.*got 2.5", r"or None"),
    ("stride", True, r"stride True is not a number", r"give image pixels"),
    ("normalise_fovs", True, r"normalise_fovs True is not a number", r"at least 1\), or None"),
]


@pytest.mark.parametrize("option, value, problem, fix", MAP_OPTION_CASES,
                         ids=[f"{c[0]}={c[1]!r}" for c in MAP_OPTION_CASES])
def test_probability_map_options_that_are_not_numbers(tiny_clf, option, value, problem, fix):
    from napari_microstructure.core.micrograph.probmap import probability_map

    with pytest.raises(MicrostructureError) as info:
        probability_map(tiny_clf, _noise(), 0.1, **{option: value})
    check_message(info.value, problem, fix)


def test_probability_map_options_of_other_number_types_still_work(tiny_clf):
    from napari_microstructure.core.micrograph.probmap import probability_map

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        r = probability_map(tiny_clf, _noise(), 0.1, seed=None, batch_size=np.int64(64), tile_size=256.0,
                            n_augment=np.int32(1), jitter="0.5", normalise_fovs="2", max_invalid_fraction=np.float32(0.5))
    assert r.evaluated.all()


# ------------------------------------------------------- probability-map field of view
def test_probability_map_refuses_a_crop_of_a_few_pixels_at_once(tiny_clf, monkeypatch):
    """fov_um=1e-3 ran for minutes (killed): refused before any work, naming the smallest usable value."""
    from napari_microstructure.core.micrograph import crops, probmap

    monkeypatch.setattr(crops.Micrograph, "__init__", lambda *a, **k: pytest.fail("the image was prepared"))
    for fov in (1e-3, 0.5):   # 0.01 and 5 pixels of 0.1 um
        with pytest.raises(MicrostructureError) as info:
            probmap.probability_map(tiny_clf, _noise(), 0.1, fov_um=fov)
        check_message(info.value, rf"fov_um={fov!r} is too small: one crop would cover [0-9.e-]+ image pixels at "
                      r"0.1 um per pixel, under the 16 a crop needs", r"give fov_um of at least 1.6 um")


def test_probability_map_refuses_a_crop_far_below_the_training_fields_of_view(tiny_clf):
    from napari_microstructure.core.micrograph.probmap import probability_map

    lo, hi = tiny_clf.fov_range_um_
    p = 0.2 * lo / 16                     # a crop of 0.4 lo covers 32 pixels: enough pixels, too small a field
    with pytest.raises(MicrostructureError) as info:
        probability_map(tiny_clf, _noise((400, 400)), p, fov_um=0.4 * lo)
    check_message(info.value, r"under half the smallest field of view the model was trained on",
                  rf"at least {lo / 2:.3g} um \(the model was trained on {lo:.3g}-{hi:.3g} um\)")


def test_probability_map_mask_of_the_wrong_shape(tiny_clf):
    from napari_microstructure.core.micrograph.probmap import probability_map

    with pytest.raises(MicrostructureError) as info:
        probability_map(tiny_clf, _noise(), 0.1, mask=np.ones((10, 10), bool))
    text = check_message(info.value, r"mask has shape \(10, 10\) but its image has shape \(96, 96\)",
                         r"give a mask of the image's shape \(96, 96\)")
    assert "paint" not in text and "labels" not in text


def test_probability_map_refuses_more_crops_than_pixels(tiny_clf):
    from napari_microstructure.core.micrograph.probmap import probability_map

    with pytest.raises(MicrostructureError) as info:
        probability_map(tiny_clf, _noise(), 0.1, n_random_crops=10 ** 5)
    check_message(info.value, r"about 100,000 crops for an image of 9,216 pixels", r"fewer n_random_crops")


# ------------------------------------------------------- probability-map stores
def _failing_store(monkeypatch, when):
    """The OS refuses the store: when its arrays are created, or when their blocks are written."""
    from napari_microstructure.io import store as store_mod

    real_create = store_mod.StoreWriter.create

    class Full:
        def __init__(self, arr):
            self.arr = arr

        def __setitem__(self, key, value):
            raise OSError(errno.ENOSPC, "No space left on device")

    def create(self, *args, **kwargs):
        if when == "create":
            raise OSError(errno.ENOSPC, "No space left on device")
        return Full(real_create(self, *args, **kwargs))

    monkeypatch.setattr(store_mod.StoreWriter, "create", create)


@pytest.mark.parametrize("when", ["create", "write"])
def test_probability_map_store_on_a_full_disk(tiny_clf, tmp_path, monkeypatch, when):
    """The error names the store and the disk; no partial store (.m.zarr.partial-*) is left."""
    pytest.importorskip("zarr")
    from napari_microstructure.core.micrograph.probmap import probability_map

    _failing_store(monkeypatch, when)
    with untouched(tmp_path), pytest.raises(MicrostructureError) as info:
        probability_map(tiny_clf, _noise(), 0.1, store=tmp_path / "m.zarr")
    check_message(info.value, r"cannot write the store to .*m.zarr.*: the disk is full", r"free some space")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("code, problem, fix", [
    (errno.EROFS, r"the file system is read-only", r"writable disk"),
    (errno.ENOSPC, r"the disk is full", r"free some space"),
    (errno.EACCES, r"permission denied", r"folder you may write to"),
], ids=["read-only", "disk-full", "permission"])
def test_probability_map_store_folder_is_checked_before_the_map(tiny_clf, tmp_path, monkeypatch, code, problem,
                                                                 fix):
    from napari_microstructure.core import _files
    from napari_microstructure.core.micrograph import probmap

    monkeypatch.setattr(_files.tempfile, "mkstemp", _fail_write(code))
    monkeypatch.setattr(probmap, "_run_tiles", lambda *a, **k: pytest.fail("the map was computed first"))
    with untouched(tmp_path), pytest.raises(MicrostructureError) as info:
        probmap.probability_map(tiny_clf, _noise(), 0.1, store=tmp_path / "m.zarr")
    check_message(info.value, rf"cannot write the store to .*m.zarr.*: {problem}", fix)


# =============================================================== 5. readers
def _garbage_tiff(path):
    path.write_bytes(b"II*\x00" + bytes([0xFF]) * 60)
    return path


def _truncated_tiff(path, pages=None):
    """A TIFF cut in half, as an interrupted copy leaves it: one image, or a stack of ``pages``."""
    tifffile.imwrite(path, (_noise((256, 256) if pages is None else (pages, 60, 60)) * 255).astype(np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _dpi_tiff(dpi):
    def build(path):
        tifffile.imwrite(path, (_noise() * 255).astype(np.uint8), resolution=(dpi, dpi), resolutionunit="INCH")
        return path
    return build


MICROGRAPH_READER_CASES = [
    ("missing", lambda p: p, r"does not exist", r"give a TIFF file"),
    ("folder", lambda p: (p.mkdir(), p)[1], r"is a folder", r"give a TIFF file"),
    ("empty", lambda p: (p.write_bytes(b""), p)[1], r"cannot read .* as a TIFF", r"check that the file is complete"),
    ("text", lambda p: (p.write_text("not an image\n"), p)[1], r"cannot read .* as a TIFF", r"is a TIFF image"),
    ("garbage-header", _garbage_tiff, r"cannot read .* as a TIFF", r"check that the file is complete"),
    ("truncated", _truncated_tiff, r"truncated or damaged.*data of its pages run past its end", r"copy or export"),
    # a stack cut short still opens with its first page: not a 60 x 60 micrograph
    ("truncated-stack", lambda p: _truncated_tiff(p, pages=20), r"truncated or damaged: it breaks off after 1 readable page",
     r"copy or export the file again"),
    ("png-named-tif", lambda p: (__import__("imageio").v3.imwrite(p, np.zeros((8, 8), np.uint8), extension=".png"), p)[1],
     r"cannot read .* as a TIFF", r"is a TIFF image"),
]


@pytest.mark.parametrize("build, problem, fix", [c[1:] for c in MICROGRAPH_READER_CASES],
                         ids=[c[0] for c in MICROGRAPH_READER_CASES])
def test_micrograph_reader_refuses(tmp_path, build, problem, fix):
    from napari_microstructure.io.tiff import read_micrograph

    path = build(tmp_path / "image.tif")
    with untouched(tmp_path), pytest.raises(MicrostructureError) as info:
        read_micrograph(path)
    check_message(info.value, problem, fix)


@pytest.mark.parametrize("dpi", [72, 96, 150, 300, 600, 1200])
def test_print_resolution_is_not_a_pixel_size(tmp_path, dpi):
    """A 300 dpi TIFF is not 84.7 um per pixel: the pixel size is unknown, with a warning."""
    from napari_microstructure.io.tiff import read_micrograph

    path = _dpi_tiff(dpi)(tmp_path / "print.tif")
    with pytest.warns(UserWarning, match=rf"{dpi} dots per inch.*not a pixel size.*give the pixel size"):
        _, size, _ = read_micrograph(path)
    assert size is None


def test_a_real_inch_resolution_is_still_read(tmp_path):
    from napari_microstructure.io.tiff import read_micrograph

    tifffile.imwrite(tmp_path / "a.tif", (_noise() * 255).astype(np.uint8), resolution=(254000.0 / 3, 254000.0 / 3),
                     resolutionunit="INCH")
    _, size, _ = read_micrograph(tmp_path / "a.tif")
    assert size == pytest.approx(0.3)


def _rgb_tiff(path):
    tifffile.imwrite(path, (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8), photometric="rgb")
    return path


def _micrograph_tiff(path):
    write_micrograph(path, make_micrograph("ferrite", (128, 160), 0.1, seed=1), 0.1)
    return path


def _npy(shape, dtype=np.float32):
    def build(path):
        np.save(path, np.zeros(shape, dtype))
        return path
    return build


PATTERN_READER_CASES = [
    ("missing.npy", lambda p: p, r"does not exist", r"check the path"),
    ("unknown.xyz", lambda p: (p.write_text("x"), p)[1], r"not a recognised EBSD pattern file", r"supported"),
    ("micrograph.tif", _micrograph_tiff, r"one 2-D image of 128 x 160 pixels, not a stack", r"micrograph reader"),
    ("rgb.tif", _rgb_tiff, r"colour", r"grey|convert"),
    ("garbage.tif", _garbage_tiff, r"not a readable TIFF|could not be read|holds no images", r"truncated|export|choose a TIFF"),
    ("text.tif", lambda p: (p.write_text("hello"), p)[1], r"not a readable TIFF", r"copy it again|export"),
    # was "holds one 2-D image of 60 x 60 pixels, not a stack" (the pages before the cut)
    ("truncated-stack.tif", lambda p: _truncated_tiff(p, pages=20),
     r"truncated or damaged: it breaks off after 1 readable page", r"copy or export the file again"),
    ("image2d.npy", _npy((64, 64)), r"shape \(64, 64\)", r"stack \(N, h, w\)"),
    ("five-d.npy", _npy((2, 2, 2, 16, 16)), r"shape \(2, 2, 2, 16, 16\)", r"stack \(N, h, w\)"),
    ("tiny.npy", _npy((10, 4, 4)), r"patterns of 4 x 4 pixels", r"at least 8 x 8"),
    ("rgb.npy", _npy((96, 96, 3), np.uint8), r"colour image", r"convert it to grey"),
    ("text.npy", lambda p: (p.write_text("not numpy"), p)[1], r"not a readable .npy", r"numpy.save"),
    ("pickle.npy", lambda p: (np.save(p, np.array([{"a": 1}], dtype=object)), p)[1], r"not a readable .npy", r"numpy.save"),
    ("strings.npy", lambda p: (np.save(p, np.full((2, 16, 16), "a")), p)[1], r"<U1 data", r"numeric"),
    ("empty-folder", lambda p: (p.mkdir(), p)[1], r"no .*image|holds no", r"folder|image"),
    ("garbage.h5", lambda p: (p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40), p)[1], r"HDF5|h5ebsd|readable", r"file"),
    ("text.h5", lambda p: (p.write_text("not hdf5"), p)[1], r"not an HDF5|h5ebsd", r"file"),
]


@pytest.mark.parametrize("name, build, problem, fix", PATTERN_READER_CASES, ids=[c[0] for c in PATTERN_READER_CASES])
def test_pattern_readers_refuse(tmp_path, name, build, problem, fix):
    from napari_microstructure.io.ebsd import load_patterns

    path = build(tmp_path / name)
    with untouched(tmp_path), pytest.raises(MicrostructureError) as info:
        data = load_patterns(path, lazy=True)
        data.close()
    check_message(info.value, problem, fix)


@pytest.mark.parametrize("name, build", [c[:2] for c in PATTERN_READER_CASES if c[0] in ("text.npy", "pickle.npy")],
                         ids=["text.npy", "pickle.npy"])
def test_npy_reader_gives_no_unsafe_pickle_advice(tmp_path, name, build):
    from napari_microstructure.io.ebsd import load_patterns

    with pytest.raises(MicrostructureError) as info:
        load_patterns(build(tmp_path / name))
    text = str(info.value)
    assert "allow_pickle" not in text and "trust" not in text and "pickle.load" not in text, text


@pytest.mark.parametrize("lazy", [True, False])
def test_ebsd_tiff_written_by_us_still_reads(tmp_path, ebsd_data, lazy):
    from napari_microstructure.io.ebsd import load_patterns
    from napari_microstructure.io.ebsd.tiff import file_writer

    file_writer(tmp_path / "one.tif", ebsd_data[0][:1])  # a single pattern with our description
    data = load_patterns(tmp_path / "one.tif", lazy=lazy)
    assert data.n_patterns == 1 and data.pattern_shape == (32, 32)
    data.close()


LABELLED_CASES = [
    ("labels-missing", lambda d, p: (p, None), r"without labels", r"labels file"),
    ("labels-file-missing", lambda d, p: (p, d / "nope.csv"), r"does not exist", r"check the path"),
    ("labels-count", lambda d, p: (p, (d / "l.csv").write_text("225\n221\n") and d / "l.csv"),
     r"labels for \d+ patterns", r"one label per pattern"),
    ("npz-without-labels", lambda d, p: (np.savez(d / "x.npz", patterns=np.load(p)) or d / "x.npz", None),
     r"must hold arrays named 'patterns' and 'labels'", r"numpy.savez"),
]


@pytest.mark.parametrize("build, problem, fix", [c[1:] for c in LABELLED_CASES], ids=[c[0] for c in LABELLED_CASES])
def test_labelled_pattern_readers_refuse(tmp_path, ebsd_data, build, problem, fix):
    from napari_microstructure.io.ebsd import read_labelled_patterns

    np.save(tmp_path / "p.npy", ebsd_data[0])
    args = build(tmp_path, tmp_path / "p.npy")
    with untouched(tmp_path), pytest.raises(MicrostructureError) as info:
        read_labelled_patterns(*args)
    check_message(info.value, problem, fix)


# ========================================================== 6. command line
@pytest.fixture
def class_dir(tmp_path):
    """DIR/<class>/<image>.tif, two classes x 2 images with pixel sizes."""
    root = tmp_path / "data"
    for cls in ("ferrite", "pearlite"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            write_micrograph(root / cls / f"{i}.tif", make_micrograph(cls, (96, 96), 0.1, seed=i), 0.1)
    return root


def _run(argv, capsys):
    rc = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.err


def _cli_cases():
    """(id, setup(tmp, model, ebsd_model, image, class_dir) -> argv, problem, fix)."""
    return [
        # train
        ("train-missing-dir", lambda t, m, e, i, c: ["train", t / "nowhere", "-o", t / "m.pt"],
         r"not a folder", r"one sub-folder per class"),
        ("train-output-folder-missing", lambda t, m, e, i, c: ["train", c, "-o", t / "missing" / "m.pt"],
         r"folder .*missing.* does not exist", r"create it first"),
        ("train-output-is-folder", lambda t, m, e, i, c: ["train", c, "-o", c],
         r"it is a folder", r"give a file name inside it"),
        ("train-no-images", lambda t, m, e, i, c: ["train", (t / "empty" / "a").mkdir(parents=True) or t / "empty",
                                                   "-o", t / "m.pt"], r"no images found", r"own sub-folder"),
        ("train-no-pixel-size", lambda t, m, e, i, c: ["train", _plain_dir(t), "-o", t / "m.pt"],
         r"no pixel size", r"--pixel-size"),
        ("train-garbage-tiff", lambda t, m, e, i, c: ["train", _with_bad(c, "ferrite/bad.tif", b"II*\0garbage"),
                                                      "-o", t / "m.pt"], r"cannot read .*bad.tif.* as a TIFF",
         r"check that the file is complete"),
        ("train-text-as-png", lambda t, m, e, i, c: ["train", _with_bad(c, "ferrite/bad.png", b"just text"),
                                                     "-o", t / "m.pt"], r"cannot read .*bad.png.* as an image",
         r"PNG, JPEG"),
        ("train-constant-image", lambda t, m, e, i, c: ["train", _with_constant(c), "-o", t / "m.pt",
                                                        "--epochs", "1", "--input-size", "32"],
         r"constant", r"check the acquisition"),
        ("train-one-class", lambda t, m, e, i, c: ["train", _one_class(c), "-o", t / "m.pt"],
         r"only one class", r"at least two"),
        ("train-pixel-size-in-nm", lambda t, m, e, i, c: ["train", _plain_dir(t), "-o", t / "m.pt", "--pixel-size", "100"],
         r"outside the range of microscopes", r"nanometres"),
        ("train-negative-pixel-size", lambda t, m, e, i, c: ["train", _plain_dir(t), "-o", t / "m.pt",
                                                             "--pixel-size", "-0.1"], r"positive", r"micrometres per pixel"),
        # predict
        ("predict-model-missing", lambda t, m, e, i, c: ["predict", t / "nope.pt", i], r"does not exist", r"check the path"),
        ("predict-model-folder", lambda t, m, e, i, c: ["predict", t, i], r"is a folder", r"model file itself"),
        ("predict-model-text", lambda t, m, e, i, c: ["predict", _text(t / "m.pt"), i], r"not a readable", r"choose a file saved"),
        ("predict-model-malicious", lambda t, m, e, i, c: ["predict", _malicious_torch(m, t / "evil.pt"), i],
         r"not a model this plugin wrote.*will not be loaded", r"choose a file saved"),
        ("predict-model-pickle", lambda t, m, e, i, c: ["predict", _malicious_pickle(m, t / "evil.pkl"), i],
         r"not a model this plugin wrote", r"choose a file saved"),
        ("predict-model-bitflip", lambda t, m, e, i, c: ["predict", _flip_tensor_bit(m, t / "flip.pt"), i],
         r"checksum does not match", r"copy it again"),
        ("predict-model-no-history", lambda t, m, e, i, c: ["predict", _drop_history(m, t / "h.pt"), i],
         r"damaged or incomplete", r"train it again"),
        ("predict-ebsd-model", lambda t, m, e, i, c: ["predict", e, i], r"holds an EBSD model", r"matching classifier"),
        ("predict-image-missing", lambda t, m, e, i, c: ["predict", m, t / "nope.tif"], r"does not exist", r"check the path|give a TIFF"),
        ("predict-image-folder", lambda t, m, e, i, c: ["predict", m, c], r"is a folder", r"give an image file"),
        ("predict-garbage-tiff", lambda t, m, e, i, c: ["predict", m, _garbage_tiff(t / "g.tif")],
         r"cannot read .* as a TIFF", r"check that the file is complete"),
        ("predict-garbage-png", lambda t, m, e, i, c: ["predict", m, _text(t / "g.png")],
         r"cannot read .* as an image", r"PNG, JPEG"),
        ("predict-png-without-pixel-size", lambda t, m, e, i, c: ["predict", m, _png(t / "a.png")],
         r"no pixel size", r"--pixel-size"),
        ("predict-constant", lambda t, m, e, i, c: ["predict", m, _constant_tiff(t / "c.tif")],
         r"constant", r"check the acquisition"),
        ("predict-300dpi-tiff", lambda t, m, e, i, c: ["predict", m, _dpi_tiff(300)(t / "dpi.tif")],
         r"no pixel size", r"--pixel-size"),
        ("predict-pixel-size-1000x", lambda t, m, e, i, c: ["predict", m, i, "--pixel-size", "100"],
         r"outside the range of microscopes", r"nanometres"),
        # map
        ("map-output-not-tif", lambda t, m, e, i, c: ["map", m, i, "-o", t / "out.png"], r"must end in .tif", r"-o map.tif"),
        ("map-output-folder-missing", lambda t, m, e, i, c: ["map", m, i, "-o", t / "missing" / "o.tif"],
         r"does not exist", r"create it first"),
        ("map-ebsd-model", lambda t, m, e, i, c: ["map", e, i, "-o", t / "o.tif"], r"is an ebsd model", r"ebsd-map"),
        ("map-garbage-image", lambda t, m, e, i, c: ["map", m, _garbage_tiff(t / "g.tif"), "-o", t / "o.tif"],
         r"cannot read", r"check that the file is complete"),
        ("map-constant-image", lambda t, m, e, i, c: ["map", m, _constant_tiff(t / "c.tif"), "-o", t / "o.tif"],
         r"constant", r"check the acquisition"),
        # the output must never replace the user's micrograph (or model), nor an earlier map without --overwrite
        ("map-output-is-the-input", lambda t, m, e, i, c: ["map", m, i, "-o", i],
         r"is the input image", r"choose another output name, e.g. -o .*user_map.tif"),
        ("map-output-is-the-input-overwrite", lambda t, m, e, i, c: ["map", m, i, "-o", i, "--overwrite"],
         r"is the input image", r"choose another output name"),
        ("map-output-links-to-the-input", lambda t, m, e, i, c: ["map", m, i, "-o", _link(t / "link.tif", i),
                                                                 "--overwrite"],
         r"is the input image", r"choose another output name"),
        # checked before the map is computed (the model is a text file: it would fail if it were loaded)
        ("map-threshold-above-1", lambda t, m, e, i, c: ["map", _text(t / "m.pt"), i, "-o", t / "o.tif",
                                                         "--threshold", "1.5"],
         r"--threshold 1.5 is not a probability", r"between 0 and 1"),
        ("map-threshold-nan", lambda t, m, e, i, c: ["map", _text(t / "m.pt"), i, "-o", t / "o.tif",
                                                     "--threshold", "nan"],
         r"--threshold nan is not a probability", r"between 0 and 1"),
        ("map-fov-tiny", lambda t, m, e, i, c: ["map", m, i, "-o", t / "o.tif", "--fov", "0.001"],
         r"--fov 0.001 is too small", r"give --fov of at least 1.6 um"),
        ("map-output-exists", lambda t, m, e, i, c: ["map", m, i, "-o", _text(t / "earlier.tif")],
         r"earlier.tif' already exists", r"pass --overwrite"),
        # ebsd-train
        ("ebsd-train-no-labels", lambda t, m, e, i, c: ["ebsd-train", _patterns_npy(t), "-o", t / "e.pt"],
         r"without labels", r"labels file"),
        ("ebsd-train-output-folder-missing", lambda t, m, e, i, c: ["ebsd-train", _patterns_npy(t), _labels_csv(t),
                                                                    "-o", t / "missing" / "e.pt"],
         r"does not exist", r"create it first"),
        ("ebsd-train-micrograph-tiff", lambda t, m, e, i, c: ["ebsd-train", _micrograph_tiff(t / "m.tif"),
                                                              _labels_csv(t), "-o", t / "e.pt"],
         r"one 2-D image", r"micrograph reader"),
        ("ebsd-train-labels-count", lambda t, m, e, i, c: ["ebsd-train", _patterns_npy(t),
                                                           (t / "l.csv").write_text("225\n") and t / "l.csv",
                                                           "-o", t / "e.pt"], r"labels for \d+ patterns",
         r"one label per pattern"),
        # ebsd-map
        ("ebsd-map-micrograph-model", lambda t, m, e, i, c: ["ebsd-map", m, _map_npy(t), "-o", t / "out"],
         r"holds a micrograph model", r"matching classifier"),
        ("ebsd-map-micrograph-tiff", lambda t, m, e, i, c: ["ebsd-map", e, _micrograph_tiff(t / "m.tif"), "-o", t / "out"],
         r"one 2-D image of 128 x 160", r"micrograph reader"),
        ("ebsd-map-rgb-tiff", lambda t, m, e, i, c: ["ebsd-map", e, _rgb_tiff(t / "rgb.tif"), "-o", t / "out"],
         r"colour", r"convert"),
        ("ebsd-map-output-is-file", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", _text(t / "out")],
         r"is a file", r"-o takes a folder"),
        ("ebsd-map-output-parent-missing", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", t / "a" / "b"],
         r"does not exist", r"create it first"),
        # an earlier run's results are never replaced without --overwrite (checked before the work)
        ("ebsd-map-output-has-results", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", _earlier_results(t / "out")],
         r"already holds the results of an earlier run \(space_groups.tif, fractions.csv\)", r"--overwrite"),
        ("ebsd-map-store-exists", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", t / "out",
                                                         "--store", _earlier_results(t / "s.zarr")],
         r"store .*s.zarr' already exists", r"--overwrite"),
        ("ebsd-map-chunk-zero", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", t / "out", "--chunk-size", "0"],
         r"--chunk-size 0", r"positive number"),
        ("ebsd-map-shape-mismatch", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t, stack=True), "-o", t / "out",
                                                           "--map-shape", "5", "5"], r"needs 25 patterns", r"holds"),
        ("ebsd-map-other-aspect", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t, width=24), "-o", t / "out"],
         r"aspect ratio", r"crop or bin"),
        ("ebsd-map-nan-pattern", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t, nan_at=(3, 4)), "-o", t / "out",
                                                        "--chunk-size", "4"], r"the first at index 22: row 3, column 4",
         r"nan_to_num|remove"),
        ("ebsd-map-model-truncated", lambda t, m, e, i, c: ["ebsd-map", _truncated(e, t / "e.pt"), _map_npy(t),
                                                            "-o", t / "out"], r"not a readable|corrupt", r"choose a file"),
        ("ebsd-train-patterns-12px", lambda t, m, e, i, c: ["ebsd-train", _patterns_npy(t, side=12), _labels_csv(t),
                                                            "-o", t / "e.pt", "--pc", "0.5", "0.3", "0.6"],
         r"patterns are 12 x 12 pixels, too small for band profiles", r"less binning|CNN backbone"),
        ("ebsd-train-pc-implausible", lambda t, m, e, i, c: ["ebsd-train", _patterns_npy(t), _labels_csv(t),
                                                             "-o", t / "e.pt", "--pc", "0.5", "0.3", "60"],
         r"implausible", r"Bruker convention"),
        # tilts: refused before the map is classified, with --export or without (they were ignored silently)
        ("ebsd-map-sample-tilt-95", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", t / "out",
                                                           "--sample-tilt", "95"],
         r"--sample-tilt 95 is not a tilt in 0 to 90 degrees", r"give --sample-tilt DEG"),
        ("ebsd-map-detector-tilt-nan", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", t / "out",
                                                              "--detector-tilt", "nan", "--export", "ang",
                                                              "--step-size", "1"],
         r"--detector-tilt nan is not a tilt in -45 to 45 degrees", r"give --detector-tilt DEG"),
        ("ebsd-map-scheduler-local-0", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", t / "out",
                                                              "--scheduler", "local:0"],
         r"'local:0'", r"'local:N' with N >= 1"),
        ("ebsd-map-scheduler-local-huge", lambda t, m, e, i, c: ["ebsd-map", e, _map_npy(t), "-o", t / "out",
                                                                 "--scheduler", "local:100000"],
         r"asks for 100000 worker processes", r"'local:N' with N <= \d+"),
    ]


def _plain_dir(t):
    root = t / "plain"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(2):
            tifffile.imwrite(root / cls / f"{k}.tif", (_noise(seed=k) * 255).astype(np.uint8))
    return root


def _with_bad(c, rel, data):
    (c / rel).write_bytes(data)
    return c


def _with_constant(c):
    write_micrograph(c / "ferrite" / "z.tif", np.zeros((96, 96), np.uint8), 0.1)
    return c


def _one_class(c):
    import shutil

    shutil.rmtree(c / "pearlite")
    return c


def _earlier_results(folder):
    folder.mkdir()
    for name in ("space_groups.tif", "fractions.csv"):
        (folder / name).write_bytes(b"an earlier run's " + name.encode())
    return folder


def _text(p):
    p.write_text("hello\n" * 20)
    return p


def _link(p, target):
    p.symlink_to(target)
    return p


def _png(p):
    import imageio.v3 as iio

    iio.imwrite(p, (_noise() * 255).astype(np.uint8))
    return p


def _constant_tiff(p):
    write_micrograph(p, np.full((96, 96), 128, np.uint8), 0.1)
    return p


def _patterns_npy(t, side=32):
    from napari_microstructure.core.ebsd import simulate as S

    p, _, _ = S.simulate_training_set(["Ni", "Ni3Al"], 3, (side, side), seed=2)
    assert np.isfinite(p).all()
    np.save(t / "p.npy", p.astype(np.float32))
    return t / "p.npy"


def _labels_csv(t):
    (t / "labels.csv").write_text("space_group\n" + "\n".join(["225"] * 3 + ["221"] * 3) + "\n")
    return t / "labels.csv"


def _map_npy(t, stack=False, width=32, nan_at=None):
    from napari_microstructure.core.ebsd import simulate as S

    p, _, _ = S.simulate_training_set(["Ni", "Ni3Al"], 15, (32, width), seed=2)
    pmap = p.astype(np.float32).reshape(5, 6, 32, width)
    if nan_at is not None:
        pmap[nan_at][0, 0] = np.nan
    np.save(t / "map.npy", pmap.reshape(30, 32, width) if stack else pmap)
    return t / "map.npy"


@pytest.mark.parametrize("case", _cli_cases(), ids=lambda c: c[0])
def test_cli_answers_in_one_line(model_file, ebsd_file, image_file, class_dir, tmp_path, capsys, case):
    _, setup, problem, fix = case
    # the user's files: copies of the models beside the data (a failing command must not touch them)
    m = tmp_path / "user-model.pt"
    m.write_bytes(model_file.read_bytes())
    e = tmp_path / "user-ebsd.pt"
    e.write_bytes(ebsd_file.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        argv = setup(tmp_path, m, e, image_file, class_dir) + ["--device", "cpu"] * (case[0].split("-")[0] in
                                                                                       ("train", "predict", "map", "ebsd"))
        with untouched(tmp_path):
            rc, err = _run(argv, capsys)
    check_cli(rc, err, problem, fix)
    assert not (tmp_path / "PWNED").exists()


def test_cli_map_overwrite_replaces_an_earlier_map_only(model_file, image_file, tmp_path, capsys):
    """--overwrite replaces an existing .tif output; the input image is left as it was."""
    from napari_microstructure.io.probmap_tiff import read_probability_tiff

    out = tmp_path / "earlier.tif"
    out.write_bytes(b"an earlier map")
    image_bytes = image_file.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rc, err = _run(["map", model_file, image_file, "-o", out, "--overwrite", "--device", "cpu"], capsys)
    assert rc == 0, err
    assert read_probability_tiff(out)[0].shape[1:] == (96, 96)
    assert image_file.read_bytes() == image_bytes


@pytest.mark.parametrize("crops, message", [("0", "0 is not allowed"), ("-1", "-1 is not allowed"), ("x", "not a whole number")])
def test_cli_crops_must_be_positive(model_file, image_file, capsys, crops, message):
    with pytest.raises(SystemExit) as info:
        cli_main(["predict", str(model_file), str(image_file), "--crops", crops])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --crops" in err and message in err and "positive number" in err or "whole number" in err
    assert "Traceback" not in err


def test_cli_train_output_checked_before_training(class_dir, tmp_path, capsys, monkeypatch):
    """-o into a missing folder fails at once: fit is never called."""
    called = []
    monkeypatch.setattr(FewShotClassifier, "fit", lambda *a, **k: called.append(1))
    rc, err = _run(["train", class_dir, "-o", tmp_path / "missing" / "m.pt"], capsys)
    check_cli(rc, err, r"does not exist", r"create it first")
    assert called == []


def test_cli_ebsd_train_output_checked_before_training(tmp_path, capsys, monkeypatch):
    called = []
    monkeypatch.setattr(EBSDClassifier, "fit", lambda *a, **k: called.append(1))
    rc, err = _run(["ebsd-train", _patterns_npy(tmp_path), _labels_csv(tmp_path), "-o", tmp_path / "x" / "e.pt"], capsys)
    check_cli(rc, err, r"does not exist", r"create it first")
    assert called == []


@pytest.mark.parametrize("code, problem, fix", [
    (errno.ENOSPC, r"the disk is full", r"free some space"),
    (errno.EACCES, r"permission denied", r"folder you may write to"),
], ids=["disk-full", "permission"])
def test_cli_save_failures_are_one_line(class_dir, tmp_path, capsys, monkeypatch, code, problem, fix):
    from napari_microstructure.core.nn import modelio

    (tmp_path / "m.pt").write_bytes(b"an older model")
    monkeypatch.setattr(modelio, "open", _fail_write(code), raising=False)
    with untouched(tmp_path, allowed_new=()):
        rc, err = _run(["train", class_dir, "-o", tmp_path / "m.pt", "--epochs", "1", "--input-size", "32",
                        "--embedding-dim", "2", "--device", "cpu"], capsys)
    check_cli(rc, err, problem, fix)


def test_cli_os_errors_outside_our_checks_are_one_line(model_file, image_file, capsys, monkeypatch):
    """A PermissionError raised anywhere (here: reading the image) ends in one line, exit 2."""
    import napari_microstructure.cli as cli

    def denied(path, pixel_size):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(cli, "read_image_file", denied)
    rc, err = _run(["predict", model_file, image_file, "--device", "cpu"], capsys)
    check_cli(rc, err, r"permission denied", r"permissions|folder you may")


def test_cli_os_errors_without_a_file_name_name_no_placeholder(model_file, image_file, capsys, monkeypatch):
    """An OSError that names no file: no made-up 'a file' path, no free space of an unrelated disk."""
    import napari_microstructure.cli as cli

    def full(path, pixel_size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "read_image_file", full)
    rc, err = _run(["predict", model_file, image_file, "--device", "cpu"], capsys)
    line = check_cli(rc, err, r"cannot read or write a file: the disk is full;", r"free some space")
    assert "'a file'" not in line and "MB free" not in line


def test_cli_internal_errors_say_they_are_bugs(model_file, image_file, capsys, monkeypatch):
    """A genuine bug of ours is not disguised as bad input: exit 3, says so, --debug shows the traceback."""
    import napari_microstructure.cli as cli

    def bug(*args, **kwargs):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(cli, "read_image_file", bug)
    rc, err = _run(["predict", model_file, image_file, "--device", "cpu"], capsys)
    check_cli(rc, err, r"internal error .*TypeError: unsupported operand", r"this is a bug.*--debug", expected_rc=3)
    with pytest.raises(TypeError):
        cli_main(["--debug", "predict", str(model_file), str(image_file), "--device", "cpu"])


def test_cli_registers_subcommands_without_hiding_import_errors(monkeypatch):
    """A broken module of ours surfaces as ImportError, not as a missing subcommand."""
    import sys

    import napari_microstructure.cli as cli

    import napari_microstructure

    monkeypatch.setitem(sys.modules, "napari_microstructure.cli_map", None)  # import now fails
    monkeypatch.delattr(napari_microstructure, "cli_map", raising=False)
    with pytest.raises(ImportError):
        cli.build_parser()


# ========================================================== 7. ebsd-map outputs
@pytest.fixture
def ebsd_map_run(ebsd_data, tmp_path):
    pmap = ebsd_data[0][np.arange(30) % 12].reshape(5, 6, 32, 32)
    np.save(tmp_path / "map.npy", pmap)
    return tmp_path / "map.npy"


def _fit_save(patterns, labels, path):
    clf = EBSDClassifier(backbone="compact", input_size=16, max_epochs=1, batch_size=8, device="cpu", seed=0,
                         confidence_threshold=0.0)
    clf.fit(patterns, labels).save(path)
    return clf


@pytest.mark.parametrize("labels, expected", [
    (("ferrite", "austenite"), {"austenite": 1, "ferrite": 2}),
    ((50000, 60000), {50000: 50000, 60000: 60000}),
    ((225, 221), {221: 221, 225: 225}),
], ids=["text-classes", "large-integers", "space-groups"])
def test_ebsd_map_writes_true_labels(ebsd_data, ebsd_map_run, tmp_path, capsys, labels, expected):
    import csv

    patterns, sg = ebsd_data
    lab = np.where(sg == sg[0], labels[0], labels[1])
    clf = _fit_save(patterns, lab, tmp_path / "e.pt")
    rc, err = _run(["ebsd-map", tmp_path / "e.pt", ebsd_map_run, "-o", tmp_path / "out", "--device", "cpu"], capsys)
    assert rc == 0, err
    written = tifffile.imread(tmp_path / "out" / "space_groups.tif")
    result = clf.classify_map(np.load(ebsd_map_run))
    legend = {row["class"]: int(row["value"]) for row in csv.DictReader(open(tmp_path / "out" / "legend.csv"))}
    assert legend["no solution"] == 0
    for cls, value in expected.items():
        assert legend[str(cls)] == value
        np.testing.assert_array_equal(written == value, result.labels.astype(str) == str(cls))
    assert not np.any(written[~result.no_solution] == 0)  # 0 only where there is no solution
    assert np.iinfo(written.dtype).max >= max(expected.values())


def test_ebsd_map_removes_outputs_of_an_earlier_run(tiny_ebsd, ebsd_file, ebsd_map_run, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _ = _run(["ebsd-map", ebsd_file, ebsd_map_run, "-o", out, "--probabilities", "--device", "cpu"], capsys)
    assert rc == 0 and (out / "probabilities.tif").is_file()
    (out / "notes.txt").write_text("the user's own notes")
    rc, _ = _run(["ebsd-map", ebsd_file, ebsd_map_run, "-o", out, "--device", "cpu", "--overwrite"], capsys)
    assert rc == 0
    assert not (out / "probabilities.tif").exists(), "an earlier run's probabilities sit beside the new map"
    assert (out / "notes.txt").read_text() == "the user's own notes"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["space_groups.tif", "legend.csv", "confidence.tif", "no_solution.tif", "fractions.csv", "notes.txt"])


def test_ebsd_map_failed_write_keeps_the_earlier_run(ebsd_file, ebsd_map_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    rc, _ = _run(["ebsd-map", ebsd_file, ebsd_map_run, "-o", out, "--device", "cpu"], capsys)
    assert rc == 0

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full)
    with untouched(tmp_path):
        rc, err = _run(["ebsd-map", ebsd_file, ebsd_map_run, "-o", out, "--device", "cpu", "--overwrite"], capsys)
    check_cli(rc, err, r"the disk is full", r"free some space")


# ================================================================ 8. memory
def test_preparing_an_image_makes_no_float64_copy():
    """Peak memory of turning a uint8 image into the normalised float32 pyramid: about 10 bytes per pixel."""
    import tracemalloc

    from napari_microstructure.core.micrograph.crops import Micrograph

    image = (np.random.default_rng(0).random((1500, 1500)) * 255).astype(np.uint8)
    tracemalloc.start()
    pyramid = Micrograph(image, 0.1).pyramid
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert pyramid[0].dtype == torch.float32
    assert peak / image.size < 11, f"{peak / image.size:.1f} bytes per pixel"


def test_memory_is_checked_before_the_work(tiny_clf, monkeypatch):
    from napari_microstructure.core.micrograph import images

    monkeypatch.setattr(images, "available_memory", lambda: 50_000_000)
    with pytest.raises(MicrostructureError) as info:
        tiny_clf.predict_proba(np.zeros((4000, 4000), np.uint8), 0.1)
    check_message(info.value, r"needs about 0.16 GB of memory but only 0.05 GB is available",
                  r"crop or downsample the image")


def test_available_memory_sees_the_address_space_limit():
    import resource

    from napari_microstructure.core.micrograph.images import available_memory

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    free = available_memory()
    assert free is not None and free > 0
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 200_000_000, hard))
    try:
        assert available_memory() <= 200_000_000 + 50_000_000
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_simulated_training_sets_smaller_than_the_pc_groups_are_complete():
    """Fewer patterns than projection-centre groups: every pattern is simulated (none left as np.empty)."""
    from napari_microstructure.core.ebsd import simulate as S

    for n in (1, 3, 6):
        p, sg, _ = S.simulate_training_set(["Ni", "Ni3Al"], n, (32, 32), seed=2)
        assert p.shape == (2 * n, 32, 32) and np.isfinite(p).all()
        assert (p.reshape(2 * n, -1).std(1) > 0).all()


# ================================================================ 9. widgets
WIDGET_MODEL_FILES = [c for c in BAD_MODEL_FILES if c[0] in ("folder", "malicious-torch", "bit-flip-weights", "text")]


@pytest.mark.parametrize("name, build, problem, fix", WIDGET_MODEL_FILES, ids=[c[0] for c in WIDGET_MODEL_FILES])
def test_training_widget_load_refuses(make_napari_viewer, model_file, tmp_path, name, build, problem, fix):
    from napari_microstructure._napari._training_widget import TrainingWidget

    widget = TrainingWidget(make_napari_viewer())
    path = build(model_file, tmp_path / "model.pt")
    with untouched(tmp_path):
        widget.load_model(path)
    status = widget.panel.status.text()
    assert status.startswith("error: ")
    check_message(status, problem, fix)
    assert widget.classifier is None and not widget.classify_button.isEnabled()
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name, build, problem, fix", WIDGET_MODEL_FILES[:2], ids=[c[0] for c in WIDGET_MODEL_FILES[:2]])
def test_probability_map_widget_load_refuses(make_napari_viewer, model_file, tmp_path, name, build, problem, fix):
    from napari_microstructure._napari._probmap_widget import ProbabilityMapWidget

    widget = ProbabilityMapWidget(make_napari_viewer())
    path = build(model_file, tmp_path / "model.pt")
    with untouched(tmp_path):
        assert widget.load_model_file(str(path)) is False
    check_message(widget.panel.status.text(), problem, fix)


def test_training_widget_save_into_a_missing_folder(make_napari_viewer, tiny_clf, tmp_path):
    from napari_microstructure._napari._training_widget import TrainingWidget

    widget = TrainingWidget(make_napari_viewer())
    widget.set_classifier(tiny_clf)
    with untouched(tmp_path):
        widget.save_model(tmp_path / "missing" / "model.pt")
    check_message(widget.panel.status.text(), r"does not exist", r"create it first")


def test_ebsd_map_refuses_labels_it_cannot_store_before_the_work(ebsd_data, ebsd_map_run, tmp_path, capsys):
    patterns, sg = ebsd_data
    _fit_save(patterns, np.where(sg == sg[0], 70000, 80000), tmp_path / "e.pt")
    with untouched(tmp_path):
        rc, err = _run(["ebsd-map", tmp_path / "e.pt", ebsd_map_run, "-o", tmp_path / "out", "--device", "cpu"], capsys)
    check_cli(rc, err, r"classes run from 70000 to 80000", r"relabel the classes")
