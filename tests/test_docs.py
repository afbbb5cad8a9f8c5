"""Every code block in README.md and docs/*.md runs as written.

Python blocks run in order, one shared namespace per page (as a user types
them into one console session), in a temporary folder holding the files the
pages name (``model.pt``, ``steels.pt``, ``mixed.tif``, ``train.npz``,
``scan.h5``...) and with ``viewer``: a napari viewer with the sample data open
(the pages say when a block is meant for napari's console). The blocks are not
edited; only the training budget of the two estimators is shrunk (a couple of
short epochs of small crops) so that the suite stays fast: what is tested is
that the documented calls, names and files work together, not the accuracy.

Shell blocks: every ``napari-microstructure ...`` line must parse with the
command line's own parser (the subcommand and its options exist) and every
``make <target>`` must name a target of the Makefile; installation commands
(git, pip, apt-get...) are not run.
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*\n(.*?)^```\s*$", re.S | re.M)


def code_blocks(page: Path, languages: tuple[str, ...]) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text(encoding="utf-8")) if lang in languages]


def _pages_with(languages):
    return [p for p in PAGES if code_blocks(p, languages)]


def _shrink(cls, **caps):
    """Wrap ``cls.__init__`` so every new instance trains with at most ``caps`` (signature kept)."""
    original = cls.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        for name, cap in caps.items():
            if hasattr(self, name):
                value = getattr(self, name)
                setattr(self, name, cap if name == "device" else min(value, cap))

    return init


@pytest.fixture
def docs_session(tmp_path, monkeypatch, make_napari_viewer):
    """A folder with the pages' files, a viewer with the samples, fast estimators."""
    import tifffile  # noqa: F401 - the pages' files are TIFFs

    import napari_microstructure as nm
    from napari_microstructure._napari._sample_data import make_sample_mixed, sample_micrographs
    from napari_microstructure.core.ebsd.classifier import EBSDClassifier
    from napari_microstructure.core.ebsd.simulate import simulate_training_set
    from napari_microstructure.core.micrograph.fewshot import FewShotClassifier
    from napari_microstructure.core.micrograph.synthetic import make_dataset
    from napari_microstructure.io.ebsd import h5ebsd

    monkeypatch.setenv("NAPARI_MICROSTRUCTURE_SYNC", "1")
    monkeypatch.setattr(FewShotClassifier, "__init__", _shrink(
        FewShotClassifier, max_epochs=2, steps_per_epoch=2, batch_size=12, input_size=48, n_crops=24,
        device="cpu"))
    monkeypatch.setattr(EBSDClassifier, "__init__", _shrink(
        EBSDClassifier, max_epochs=1, input_size=32, batch_size=16, n_models=2, device="cpu"))
    monkeypatch.chdir(tmp_path)

    images, labels, sizes = make_dataset(("ferrite", "pearlite", "spheroidite"), per_class=2,
                                         shape=(160, 160), seed=3)
    for name, seed in (("model.pt", 0), ("steels.pt", 0), ("steels-2.pt", 1)):
        FewShotClassifier(seed=seed).fit(images, labels, sizes).save(tmp_path / name)
    mixed, kwargs, _ = make_sample_mixed()[0]
    nm.write_micrograph(tmp_path / "mixed.tif", mixed[:256, 256:640], kwargs["scale"][0])
    for name, n, seed in (("train.npz", 8, 0), ("test.npz", 4, 1)):
        patterns, groups, _ = simulate_training_set(["Ni", "NiAl"], n, shape=(36, 36), seed=seed)
        np.savez(tmp_path / name, patterns=patterns, labels=groups)
    scan, _, _ = simulate_training_set(["Ni", "NiAl"], 6, shape=(36, 36), seed=2)
    h5ebsd.file_writer(tmp_path / "scan.h5", scan.reshape(3, 4, 36, 36), step_size_um=(0.5, 0.5))

    viewer = make_napari_viewer()
    for data, kw, _ in sample_micrographs():
        viewer.add_image(data, **kw)
    viewer.add_image(mixed, **kwargs)
    return {"viewer": viewer}


#: pages whose blocks fail because of a known bug outside the docs (strict: the mark must go once fixed)
KNOWN_BUGS: dict[str, str] = {}


def _python_pages():
    return [pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_BUGS[p.name], strict=True))
            if p.name in KNOWN_BUGS else p for p in _pages_with(("python",))]


@pytest.mark.timeout(1800)  # a page trains several small models (explanations.md: five)
@pytest.mark.parametrize("page", _python_pages(), ids=lambda p: p.name)
def test_python_blocks_run(page, docs_session):
    namespace = dict(docs_session, __name__="__docs__")
    for i, block in enumerate(code_blocks(page, ("python",))):
        try:
            exec(compile(block, f"{page.name}[block {i + 1}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{page.name}, python block {i + 1} fails: {type(exc).__name__}: {exc}\n\n{block}")


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:", text, re.M))


@pytest.mark.parametrize("page", _pages_with(("bash", "sh", "console")), ids=lambda p: p.name)
def test_shell_blocks_name_real_commands(page):
    from napari_microstructure.cli import build_parser

    parser = build_parser()
    targets = _make_targets()
    checked = 0
    for block in code_blocks(page, ("bash", "sh", "console")):
        for raw in block.splitlines():
            line = raw.split(" #")[0].strip().lstrip("$ ").strip()
            if line.startswith("napari-microstructure "):
                args = shlex.split(line)[1:]
                try:
                    parser.parse_args(args)
                except SystemExit as exc:
                    if exc.code not in (0, None):
                        pytest.fail(f"{page.name}: {line!r} does not parse with the command line's parser")
                checked += 1
            elif line.startswith("make "):
                target = line.split()[1]
                assert target in targets, f"{page.name}: 'make {target}' is not a Makefile target"
                checked += 1
    assert checked >= 0


def test_every_page_is_covered():
    """Pages without code blocks are fine; a code block in another language is not silently skipped."""
    languages = {lang for page in PAGES for lang, _ in FENCE.findall(page.read_text(encoding="utf-8"))}
    assert languages <= {"python", "bash", "sh", "console", "text", ""}, languages
