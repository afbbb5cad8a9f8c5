"""The headless command line, on the same public API as the widgets.

::

    napari-microstructure train DIR -o MODEL          # DIR/<class>/<image>.tif
    napari-microstructure predict MODEL IMAGE... [--csv]
    napari-microstructure map MODEL IMAGE -o OUT.tif
    napari-microstructure ebsd-train PATTERNS LABELS -o MODEL
    napari-microstructure ebsd-map MODEL MAP -o OUT
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence, TextIO

from .core.choices import IMAGE_RULES, LOSSES, MICROGRAPH_BACKBONES

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


class TerminalProgress:
    """A one-line progress bar on a terminal (plain lines when not a TTY)."""

    def __init__(self, stream: Optional[TextIO] = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last = ""

    def __call__(self, p) -> None:
        frac = p.fraction
        bar = "#" * int(round(frac * self.width))
        line = f"[{bar:<{self.width}}] {p.stage} {p.step}/{p.total} {p.message}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(len(self._last)))
            if p.total and p.step >= p.total:
                self.stream.write("\n")
        elif line != self._last:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last = line[:120]


def read_image_file(path: Path, pixel_size: Optional[float]):
    """An image and its pixel size (from the file, or the ``--pixel-size`` option).

    Raises
    ------
    MicrostructureError
        A missing or unreadable file (one line, naming the file), or no pixel size.
    """
    from .core.errors import MicrostructureError

    path = Path(path)
    if path.is_dir():
        raise MicrostructureError(f"{str(path)!r} is a folder; give an image file")
    if not path.is_file():
        raise MicrostructureError(f"image {str(path)!r} does not exist; check the path")
    if path.suffix.lower() in (".tif", ".tiff"):
        from .io.tiff import read_micrograph

        image, size, _ = read_micrograph(path)
    else:
        image, size = _imread(path), None
    size = pixel_size if pixel_size is not None else size
    if size is None:
        raise MicrostructureError(
            f"{str(path)!r} has no pixel size in its tags; pass --pixel-size (micrometres per pixel)"
        )
    return image, size


def _imread(path: Path):
    """Read a PNG/JPEG/BMP with scikit-image; any failure of the decoder becomes one line."""
    import skimage.io

    from .core.errors import MicrostructureError

    try:
        return skimage.io.imread(str(path))
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the decoders raise anything on a damaged file
        raise MicrostructureError(
            f"cannot read {str(path)!r} as an image ({exc.__class__.__name__}); check that the file "
            "is complete and is a TIFF, PNG, JPEG or BMP image"
        ) from None


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; give a positive number (1 or more)")
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    from .core.errors import MicrostructureError
    from .core.micrograph.fewshot import FewShotClassifier

    from .core._files import check_output_file

    check_output_file(args.output, "model")  # before hours of training, not after
    root = Path(args.directory)
    if not root.is_dir():
        raise MicrostructureError(f"{str(root)!r} is not a folder; give a folder with one sub-folder per class")
    images, labels, sizes = [], [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(class_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                image, size = read_image_file(f, args.pixel_size)
                images.append(image)
                labels.append(class_dir.name)
                sizes.append(size)
    if not images:
        raise MicrostructureError(
            f"no images found in sub-folders of {str(root)!r}; put each class's images in its own "
            "sub-folder (e.g. DIR/ferrite/*.tif)"
        )
    clf = FewShotClassifier(
        backbone=args.backbone, loss=args.loss, embedding_dim=args.embedding_dim,
        input_size=args.input_size, max_epochs=args.epochs, device=args.device, seed=args.seed,
    )
    print(f"training on {len(images)} images of {len(set(labels))} classes", file=sys.stderr)
    clf.fit(images, labels, sizes, progress=TerminalProgress())
    out = clf.save(args.output)
    h = clf.history_
    print(f"saved {out} (classes: {', '.join(clf.classes_)}; {len(h.train_loss)} epochs, "
          f"{h.seconds:.0f} s; open set on {clf.scorer_features} features: {clf.scorer_.describe()})")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .core.micrograph.fewshot import FewShotClassifier

    clf = FewShotClassifier.load(args.model, device=args.device)
    if args.image_rule is not None:
        clf.set_params(image_rule=args.image_rule)
    header = ["image", "prediction", "none score"] + clf.labels_
    writer = csv.writer(sys.stdout) if args.csv else None
    rows = []
    for name in args.images:
        image, size = read_image_file(Path(name), args.pixel_size)
        answer = clf.predict_image(image, size, n_crops=args.crops)
        rows.append([name, answer.label, f"{answer.none_score:.3f}"] + [f"{p:.3f}" for p in answer.probabilities])
    if writer is not None:
        writer.writerow(header)
        writer.writerows(rows)
    else:
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        for r in [header] + rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    return 0


def build_parser(train_defaults: bool = True) -> argparse.ArgumentParser:
    """The command line's parser.

    ``train_defaults``: read the ``train`` options' defaults from
    :class:`~.core.micrograph.fewshot.FewShotClassifier` (which imports torch,
    seconds); :func:`main` does so only when the command is ``train``, so that
    ``--help`` and the other commands start at once.
    """
    parser = argparse.ArgumentParser(
        prog="napari-microstructure",
        description="Few-shot deep learning for materials microscopy (headless).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a micrograph model on DIR/<class>/<images>")
    p.add_argument("directory", help="folder with one sub-folder of images per class")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--pixel-size", type=float, default=None,
                   help="micrometres per pixel for images without resolution tags")
    # defaults: the estimator's own, so the command line trains what the API trains
    if train_defaults:
        from .core.micrograph.fewshot import FewShotClassifier

        d = FewShotClassifier.default_params()
    else:  # another command runs: its parse needs no torch import for options it will not read
        d = dict.fromkeys(("backbone", "loss", "embedding_dim", "input_size", "max_epochs"))
    p.add_argument("--backbone", default=d["backbone"], choices=MICROGRAPH_BACKBONES)
    p.add_argument("--loss", default=d["loss"], choices=LOSSES)
    p.add_argument("--embedding-dim", type=int, default=d["embedding_dim"])
    p.add_argument("--input-size", type=int, default=d["input_size"])
    p.add_argument("--epochs", type=_positive_int, default=d["max_epochs"])
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", help="the answer of each image (a class or 'none'), its none score and "
                                        "its class probabilities (classes, then 'none')")
    p.add_argument("model")
    p.add_argument("images", nargs="+")
    p.add_argument("--pixel-size", type=float, default=None)
    p.add_argument("--crops", type=_positive_int, default=None, help="random crops per image (1 or more)")
    p.add_argument("--image-rule", default=None, choices=IMAGE_RULES,
                   help="how an image is answered from its crops (default: the model's): the most probable "
                        "entry, or 'none' above a field-of-view-bin none score of 0.5")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_predict)

    # our own modules: an ImportError here is a bug to see, not a subcommand to hide
    from . import cli_ebsd, cli_map

    cli_map.register(sub)
    cli_ebsd.register(sub)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error (for bug reports)")
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command line: one ``warning: ...`` line on stderr."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=sys.stderr if file is None else file)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``napari-microstructure`` command.

    Every failure ends in one line on stderr and a non-zero exit status: 2 for
    a bad input or a file the system refused (the line names the problem and
    the fix), 130 when cancelled, 3 for an unexpected error inside
    napari-microstructure (a bug: the line says so; ``--debug`` shows the
    traceback).
    """
    from .core._files import os_error_message
    from .core.errors import MicrostructureError, TrainingCancelled

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(train_defaults=command == "train").parse_args(argv)
    try:
        with warnings.catch_warnings():
            # a warning is a line for the user ("warning: ..."), not a source location and a line of code
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except MicrostructureError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, TrainingCancelled):
        print("cancelled; nothing was written", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.filename is not None:
            print(f"error: {os_error_message(exc, exc.filename, 'use')}", file=sys.stderr)
        else:  # no path to name (nor a disk to measure)
            print(f"error: {os_error_message(exc, None, 'read or write a file')}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; use smaller images (crop or downsample them), a smaller "
              "--chunk-size, or close other programs", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug of ours: said as such, traceback on --debug
        if getattr(args, "debug", False):
            raise
        print(f"error: internal error in napari-microstructure ({exc.__class__.__name__}: "
              f"{_one_line(exc)}); this is a bug: please report it with the traceback that "
              "'napari-microstructure --debug <the same command>' prints", file=sys.stderr)
        return 3


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
