"""``napari-microstructure map MODEL IMAGE -o OUT.tif``: a probability map from the command line.

Writes the same multi-page TIFF as the napari writer (classes, "none", outlier
mask; pixel size in the resolution tags), or with ``-o map.zarr`` a zarr store
written as it is computed (:mod:`.io.store`), and prints the area fractions.
``--scheduler tcp://host:8786`` computes the tiles on a dask cluster.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from .core.choices import MAP_METHODS


def register(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``map`` subcommand to the main parser's subparsers."""
    p = subparsers.add_parser(
        "map", help="per-pixel crop-averaged probability map of one image (multi-page TIFF)",
        description="Per-pixel crop-averaged class probabilities (classes, then 'none') of one micrograph.",
    )
    p.add_argument("model", help="micrograph model file (from 'train' or the training widget)")
    p.add_argument("image", help="micrograph (TIFF with resolution tags, or PNG/JPEG with --pixel-size)")
    p.add_argument("-o", "--output", required=True,
                   help="TIFF file to write (.tif), or a zarr store (.zarr: written as computed, float16, "
                        "for maps too large for memory; napari opens it lazily)")
    p.add_argument("--pixel-size", type=float, default=None,
                   help="micrometres per pixel (overrides the file's tags)")
    p.add_argument("--stride", type=float, default=None, help="grid stride in image pixels (default: crop/8)")
    p.add_argument("--fov", type=float, default=None, help="crop field of view in micrometres")
    p.add_argument("--augment", type=int, default=1, help="test-time augmentations per crop (1-8)")
    p.add_argument("--jitter", type=float, default=0.0, help="random shift of grid crops (0-1 of the stride)")
    p.add_argument("--random-crops", type=int, default=None, help="random crops instead of a grid")
    p.add_argument("--threshold", type=float, default=0.5, help="'none' probability of an outlier (0-1)")
    p.add_argument("--method", default="shared", choices=MAP_METHODS)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask scheduler address (e.g. tcp://host:8786): compute the tiles on that cluster; "
                        "'local' or 'local:N': worker processes on this machine "
                        "(default: $NAPARI_MICROSTRUCTURE_SCHEDULER, else this process)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (.tif or .zarr); the input image is never replaced")
    p.set_defaults(func=run_map)
    return p


def _refuse_inputs_as_output(out: Path, inputs: dict) -> None:
    """Refuse an output that is one of the command's input files (same path, link or inode)."""
    import os

    from .core.errors import MicrostructureError

    for what, name in inputs.items():
        src = Path(name)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            try:
                same = os.path.samefile(out, src)
            except OSError:
                same = False
        if same:
            raise MicrostructureError(
                f"-o {str(out)!r} is the {what} {name!r}: the map would replace it; choose another output "
                f"name, e.g. -o {str(out.with_name(out.stem + '_map.tif'))!r}"
            )


#: the API's parameter names in ``probability_map``'s messages, and the options that set them here
_OPTIONS = {"fov_um": "--fov", "n_random_crops": "--random-crops", "n_augment": "--augment"}


def in_option_terms(message: str) -> str:
    """``message`` with the API's parameter names replaced by this command's options (``fov_um=2`` -> ``--fov 2``)."""
    for name, flag in _OPTIONS.items():
        message = re.sub(rf"\b{name}=", f"{flag} ", message)
        message = re.sub(rf"\b{name}\b", flag, message)
    return message


def run_map(args: argparse.Namespace) -> int:
    """Compute, write and summarise one map; returns the exit status."""
    from .api import load_model
    from .cli import TerminalProgress, read_image_file
    from .core.errors import MicrostructureError
    from .core.micrograph.probmap import probability_map
    from .io.probmap_tiff import write_probability_tiff

    from .core._files import check_output_file

    out = Path(args.output)
    _refuse_inputs_as_output(out, {"input image": args.image, "model file": args.model})
    if not 0.0 <= args.threshold <= 1.0:  # also NaN; before the work, not after
        raise MicrostructureError(
            f"--threshold {args.threshold:g} is not a probability; give the 'none' probability from which "
            "a pixel is an outlier, between 0 and 1 (e.g. --threshold 0.5)"
        )
    to_store = out.suffix.lower() == ".zarr"
    if out.suffix.lower() not in (".tif", ".tiff") and not to_store:
        raise MicrostructureError(f"output {str(out)!r} must end in .tif (or .zarr for a store); e.g. -o map.tif")
    if to_store:
        from .io.store import check_store_path

        check_store_path(out, args.overwrite)  # before the work, not after
    else:
        check_output_file(out, "probability map")  # before the work, not after
        if out.exists() and not args.overwrite:
            raise MicrostructureError(
                f"{str(out)!r} already exists; choose another name, delete it, or pass --overwrite to "
                "replace it"
            )
    clf = load_model(args.model, device=args.device)
    if getattr(clf, "kind", None) != "micrograph":
        raise MicrostructureError(
            f"{args.model!r} is an {getattr(clf, 'kind', '?')} model; 'map' needs a micrograph model "
            "(use 'ebsd-map' for EBSD pattern maps)"
        )
    image, size = read_image_file(Path(args.image), args.pixel_size)
    shown = warnings.showwarning

    def in_options(message, *rest, **kwargs):  # the warnings too speak of this command's options
        return shown(in_option_terms(str(message)), *rest, **kwargs)

    try:
        warnings.showwarning = in_options
        result = probability_map(
            clf, image, size, stride=args.stride, fov_um=args.fov, jitter=args.jitter,
            n_augment=args.augment, n_random_crops=args.random_crops, method=args.method,
            progress=TerminalProgress(sys.stderr), seed=args.seed, client=args.scheduler,
            **({"store": out, "dtype": "float16", "overwrite": args.overwrite} if to_store else {}),
        )
    except MicrostructureError as exc:
        raise type(exc)(in_option_terms(str(exc))) from exc
    finally:
        warnings.showwarning = shown
    if to_store:
        print(f"wrote {out} (zarr store: {len(result.class_names)} float16 probability maps, labels; "
              f"{result.n_crops} crops of {result.fov_um:.3g} um in {result.timings['total']:.1f} s)")
    else:
        write_probability_tiff(out, result, size, args.threshold)
        print(f"wrote {out} ({len(result.class_names)} probability pages + outlier mask; "
              f"{result.n_crops} crops of {result.fov_um:.3g} um in {result.timings['total']:.1f} s)")
    width = max(len(n) for n in result.class_names + ["class"])
    print(f"{'class':<{width}}  area %")
    for name, frac in result.fractions.items():
        print(f"{name:<{width}}  {100 * frac:6.2f}")
    outliers = float(result.outlier_mask(args.threshold).sum()) / max(1, int(result.evaluated.sum()))
    print(f"outliers ('none' >= {args.threshold:g}): {100 * outliers:.2f} % of the evaluated area")
    if result.evaluated_fraction < 1:
        print(f"not evaluated (NaN or masked): {100 * (1 - result.evaluated_fraction):.2f} % of the image")
    return 0
