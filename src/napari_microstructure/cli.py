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
import importlib
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from .core.choices import BACKBONES, LOSSES

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
    """An image and its pixel size (from the file, or the ``--pixel-size`` option)."""
    from .core.errors import MicrostructureError

    if path.suffix.lower() in (".tif", ".tiff"):
        from .io.tiff import read_micrograph

        image, size, _ = read_micrograph(path)
    else:
        import skimage.io

        image, size = skimage.io.imread(str(path)), None
    size = pixel_size if pixel_size is not None else size
    if size is None:
        raise MicrostructureError(
            f"{str(path)!r} has no pixel size in its tags; pass --pixel-size (micrometres per pixel)"
        )
    return image, size


def _cmd_train(args: argparse.Namespace) -> int:
    from .core.errors import MicrostructureError
    from .core.micrograph.fewshot import FewShotClassifier

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
          f"{h.seconds:.0f} s; threshold {clf.mixture_.threshold_:.3f})")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .core.micrograph.fewshot import FewShotClassifier

    clf = FewShotClassifier.load(args.model, device=args.device)
    header = ["image", "prediction"] + clf.labels_
    writer = csv.writer(sys.stdout) if args.csv else None
    rows = []
    for name in args.images:
        image, size = read_image_file(Path(name), args.pixel_size)
        probs = clf.predict_proba(image, size, n_crops=args.crops)
        pred = clf.labels_[int(probs.argmax())]
        rows.append([name, pred] + [f"{p:.3f}" for p in probs])
    if writer is not None:
        writer.writerow(header)
        writer.writerows(rows)
    else:
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        for r in [header] + rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--backbone", default="compact", choices=BACKBONES)
    p.add_argument("--loss", default="triplet", choices=LOSSES)
    p.add_argument("--embedding-dim", type=int, default=2)
    p.add_argument("--input-size", type=int, default=200)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", help="class probabilities of images (classes, then 'none')")
    p.add_argument("model")
    p.add_argument("images", nargs="+")
    p.add_argument("--pixel-size", type=float, default=None)
    p.add_argument("--crops", type=int, default=None, help="random crops per image")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_predict)

    for module in ("napari_microstructure.cli_map", "napari_microstructure.cli_ebsd"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        mod.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``napari-microstructure`` command."""
    from .core.errors import MicrostructureError, TrainingCancelled

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MicrostructureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, TrainingCancelled):
        print("cancelled; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
