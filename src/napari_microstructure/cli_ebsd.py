"""EBSD subcommands of the command line.

::

    napari-microstructure ebsd-train PATTERNS [LABELS] -o MODEL
    napari-microstructure ebsd-map MODEL MAP -o OUT

``ebsd-train`` reads labelled patterns (a pattern file plus a labels file, a
``.npz`` with ``patterns`` and ``labels``, or a folder of class folders) and
writes a model file. By default it fine-tunes the shipped band-profile
classifier (``--backbone band-profiles``), which needs the detector's
projection centre: ``--pc``, or else the one the pattern file's header gives
(h5ebsd); ``--backbone efficientnet-lite0`` or ``compact`` trains a CNN, which
needs none. ``ebsd-map`` classifies a pattern map (``.npy``,
TIFF, h5ebsd, folder of images, or a vendor file with kikuchipy) in chunks
and writes into the folder OUT: ``space_groups.tif`` (the class label of each
pattern for integer classes such as space-group numbers, stored as uint16 (a model
with a class outside 1-65535 is refused before any work); for text classes the class number 1, 2, ...
in the order of ``legend.csv``; 0 = no solution in both cases),
``legend.csv`` (value, class), ``confidence.tif`` (float32),
``no_solution.tif`` (uint8 mask) and ``fractions.csv``; with
``--probabilities`` also ``probabilities.tif``. A band-profile model maps with
``--pc`` when given, else with the map file's projection centre when it gives
one (the projection centre belongs to the acquisition; a change from the
model's is printed), else with the model's; with ``--export ang ctf`` also
``map.ang`` / ``map.ctf`` (phases, the step size from the file or
``--step-size``, and from a band-profile model each point's orientation for
``--sample-tilt`` / ``--detector-tilt``, by default the map file's, else 70 / 0). Outputs are first written to a
temporary folder and moved into place only when the whole map is done, so an
interrupted run (Ctrl-C) leaves no half-written files; outputs of an earlier
run that this run does not write (e.g. an old ``probabilities.tif``) are then
removed, so the folder never mixes two runs. ``--store map.zarr`` also
writes the whole result (probabilities, confidence, labels...) to a zarr store
as it is computed; ``--scheduler tcp://host:8786`` classifies on a dask cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import csv
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .core.choices import BACKBONES, BAND_PROFILES_METHOD, EBSD_BACKGROUNDS
from .core.errors import MicrostructureError

#: ebsd-train options of the CNN backbones only, with their defaults
CNN_OPTIONS = {"no_pretrained": False, "input_size": 60, "ensemble": 1, "epochs": 100, "patience": 15,
               "batch_size": 32, "validation_fraction": 0.2, "agreement_threshold": 0.5}
OUTPUT_FILES = ("space_groups.tif", "legend.csv", "confidence.tif", "no_solution.tif", "fractions.csv")
#: every file name ebsd-map may write (optional ones included)
ALL_OUTPUT_FILES = OUTPUT_FILES + ("probabilities.tif", "map.ang", "map.ctf")


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``ebsd-train`` and ``ebsd-map`` to the main parser's subparsers."""
    t = subparsers.add_parser(
        "ebsd-train", help="train an EBSD space-group classifier on labelled patterns",
        description="Train an EBSD space-group classifier (few-shot transfer learning).",
    )
    t.add_argument("patterns", help="pattern file (.npy, .tif, .h5, folder...), a .npz with "
                                    "'patterns' and 'labels', or a folder of class folders")
    t.add_argument("labels", nargs="?", default=None,
                   help="labels file: .npy, or text/CSV with one label (space group) per pattern")
    t.add_argument("-o", "--output", required=True, help="model file to write (.pt)")
    t.add_argument("--backbone", default=BAND_PROFILES_METHOD, choices=(BAND_PROFILES_METHOD, *BACKBONES),
                   help=f"{BAND_PROFILES_METHOD} (default): index each pattern and classify its band profiles, "
                        "fine-tuning the shipped model (needs the projection centre: --pc, or the pattern "
                        "file's); or a CNN backbone, trained on your patterns only (needs no projection centre)")
    t.add_argument("--pc", type=float, nargs=3, default=None, metavar=("PCX", "PCY", "PCZ"),
                   help="projection centre, Bruker convention (band-profiles only; default: the pattern file's)")
    t.add_argument("--map", default=None, metavar="MAP",
                   help="band-profiles only: the pattern map the labels were painted on (any map format ebsd-map "
                        "reads). Its grains carry the labels to every orientation when some labelled grain "
                        "holds two phases (coherent precipitates and their matrix) and a check across the "
                        "labelled grains says they help; a grain labelled with one phase whose other patterns "
                        "look unlike its labels yet are called that phase is warned about")
    cnn = "CNN backbones only"
    t.add_argument("--no-pretrained", action="store_true",
                   help=f"EfficientNet from scratch (no ImageNet weights; {cnn})")
    t.add_argument("--input-size", type=int, default=CNN_OPTIONS["input_size"],
                   help=f"network input side in pixels (default 60; {cnn})")
    t.add_argument("--ensemble", type=int, default=CNN_OPTIONS["ensemble"],
                   help=f"number of independently trained models (default 1; {cnn})")
    t.add_argument("--epochs", type=int, default=CNN_OPTIONS["epochs"],
                   help=f"maximum number of epochs (default 100; {cnn})")
    t.add_argument("--patience", type=int, default=CNN_OPTIONS["patience"],
                   help=f"early-stopping patience in epochs (default 15; {cnn})")
    t.add_argument("--batch-size", type=int, default=CNN_OPTIONS["batch_size"], help=cnn)
    t.add_argument("--validation-fraction", type=float, default=CNN_OPTIONS["validation_fraction"], help=cnn)
    t.add_argument("--confidence-threshold", type=float, default=None,
                   help="'no solution' below this top probability (default: the method's, 0.4 for "
                        "band-profiles, 0.5 for CNNs)")
    t.add_argument("--agreement-threshold", type=float, default=CNN_OPTIONS["agreement_threshold"], help=cnn)
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=run_train)

    m = subparsers.add_parser(
        "ebsd-map", help="classify every pattern of an EBSD map into a space-group map",
        description="Space-group map, confidence map and phase fractions of an EBSD pattern map.",
    )
    m.add_argument("model", help="EBSD model file (from ebsd-train or the EBSD widget)")
    m.add_argument("map", help="pattern map: .npy (rows, cols, h, w), TIFF, h5ebsd, folder, vendor file")
    m.add_argument("-o", "--output", required=True,
                   help="output folder (created); one that holds an earlier run's results is refused unless "
                        "--overwrite is given")
    m.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in the output folder (and an existing --store)")
    m.add_argument("--chunk-size", type=int, default=2048, help="patterns per chunk (bounds memory)")
    m.add_argument("--background", default="model", choices=EBSD_BACKGROUNDS,
                   help="static background: CNN models: the model's (training) mean pattern or this map's; "
                        "band-profile models: 'model' subtracts the one the map file stores (h5ebsd, NORDIF) and "
                        "else divides out each pattern's own smooth background, 'map' subtracts this map's mean "
                        "pattern (for maps of many grains)")
    m.add_argument("--confidence-threshold", type=float, default=None,
                   help="override the model's 'no solution' confidence threshold")
    m.add_argument("--map-shape", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"),
                   help="reshape a pattern stack into a map")
    m.add_argument("--device", default="auto")
    m.add_argument("--pc", type=float, nargs=3, default=None, metavar=("PCX", "PCY", "PCZ"),
                   help="projection centre of this map, Bruker convention (band-profile models; default: the "
                        "map file's when it gives one, else the model's)")
    m.add_argument("--export", nargs="+", choices=("ang", "ctf"), default=(),
                   help="also write map.ang / map.ctf for orix, MTEX and vendor software: phases, the step "
                        "size (from the map file or --step-size) and, from band-profile models, orientations")
    m.add_argument("--step-size", type=float, default=None, metavar="UM",
                   help="map step in micrometres when the file does not give it")
    m.add_argument("--sample-tilt", type=float, default=None, metavar="DEG",
                   help="sample tilt for the exported orientations (default: the map file's, else 70)")
    m.add_argument("--detector-tilt", type=float, default=None, metavar="DEG",
                   help="detector tilt for the exported orientations (default: the map file's, else 0)")
    m.add_argument("--probabilities", action="store_true",
                   help="also write probabilities.tif (rows, cols, n_classes) float32")
    m.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask scheduler address (e.g. tcp://host:8786): classify on that cluster; 'local' or "
                        "'local:N': worker processes on this machine, one per core or N "
                        "(default: $NAPARI_MICROSTRUCTURE_SCHEDULER, else this process)")
    m.add_argument("--store", default=None, metavar="PATH.zarr",
                   help="also write the whole result to a zarr store as it is computed "
                        "(bounded memory; napari opens it lazily)")
    m.set_defaults(func=run_map)


def run_train(args: argparse.Namespace) -> int:
    from .cli import TerminalProgress
    from .core.ebsd import EBSDClassifier
    from .io.ebsd import read_labelled_patterns

    from .core._files import check_output_file

    out = check_output_file(args.output, "model")  # before training, not after
    if args.backbone == BAND_PROFILES_METHOD:
        return _train_band_profiles(args, out)
    for flag, value in (("--pc", args.pc), ("--map", args.map)):
        if value is not None:
            raise MicrostructureError(f"{flag} is for --backbone {BAND_PROFILES_METHOD}; drop it for a CNN backbone")
    patterns, labels = read_labelled_patterns(args.patterns, args.labels)
    threshold = {} if args.confidence_threshold is None else {"confidence_threshold": args.confidence_threshold}
    clf = EBSDClassifier(
        backbone=args.backbone, pretrained=not args.no_pretrained, input_size=args.input_size,
        n_models=args.ensemble, max_epochs=args.epochs, patience=args.patience,
        batch_size=args.batch_size, validation_fraction=args.validation_fraction,
        agreement_threshold=args.agreement_threshold, device=args.device, seed=args.seed, **threshold,
    )
    classes, counts = _counts(labels)
    print(f"{len(patterns)} patterns of {patterns.shape[1]} x {patterns.shape[2]} pixels; classes: "
          + ", ".join(f"{c} ({n})" for c, n in zip(classes, counts)), file=sys.stderr)
    clf.fit(patterns, labels, progress=TerminalProgress(sys.stderr))
    clf.save(out)
    for k, h in enumerate(clf.history_.members or [clf.history_]):
        vl, best = h.val_loss, h.best_epoch
        msg = f"model {k + 1}: {h.epochs} epochs, best epoch {best + 1}"
        if vl:
            msg += f", validation loss {vl[best]:.4f}"
        print(msg, file=sys.stderr)
    print(f"wrote {out}")
    return 0


def _train_band_profiles(args: argparse.Namespace, out: Path) -> int:
    from .cli import TerminalProgress
    from .core.ebsd.bandclassifier import BandProfileClassifier
    from .io.ebsd import read_labelled_patterns, read_projection_centre

    cnn_only = [f"--{k.replace('_', '-')}" for k, v in CNN_OPTIONS.items() if getattr(args, k) != v]
    if cnn_only:
        raise MicrostructureError(
            f"{', '.join(cnn_only)} {'is' if len(cnn_only) == 1 else 'are'} for CNN backbones, but the method is "
            f"--backbone {BAND_PROFILES_METHOD} (the default); add --backbone efficientnet-lite0 (or compact) "
            "to train a CNN, or drop the option")
    from .core.ebsd.bands import check_projection_centre

    pc, where = args.pc, "--pc"
    if pc is not None:
        pc = check_projection_centre(pc)  # a typing error shows before the patterns are read
    patterns, labels = read_labelled_patterns(args.patterns, args.labels)  # a small set; its errors first
    if pc is None:  # the acquisition's, from the pattern file's header (no patterns are read again)
        pc, where = read_projection_centre(args.patterns), f"the header of {Path(args.patterns).name!r}"
    if pc is None:
        raise MicrostructureError(
            f"--backbone {BAND_PROFILES_METHOD} (the default) needs the projection centre: --pc PCX PCY PCZ "
            f"(Bruker convention), e.g. --pc 0.5 0.3 0.6; {Path(args.patterns).name!r} does not give one. "
            "A CNN needs none: --backbone efficientnet-lite0")
    print(f"projection centre (Bruker) {', '.join(f'{v:.4g}' for v in pc)} from {where}", file=sys.stderr)
    threshold = {} if args.confidence_threshold is None else {"confidence_threshold": args.confidence_threshold}
    clf = BandProfileClassifier(pc=pc, seed=args.seed, **threshold)
    classes, counts = _counts(labels)
    print(f"{len(patterns)} patterns of {patterns.shape[1]} x {patterns.shape[2]} pixels; classes: "
          + ", ".join(f"{c} ({n})" for c, n in zip(classes, counts)), file=sys.stderr)
    if args.map is None:
        clf.fit(patterns, labels, progress=TerminalProgress(sys.stderr))
    else:
        from .core.ebsd.bandclassifier import MAP_GRAIN_MIN_PATTERNS
        from .io.ebsd import load_patterns

        data = load_patterns(args.map, lazy=True)
        try:
            clf.fit(patterns, labels, map_patterns=data.as_map(), progress=TerminalProgress(sys.stderr))
        finally:
            data.close()
        if clf.map_grains_:
            print(f"labels shifted to {clf.map_grains_} grains of {Path(args.map).name!r}", file=sys.stderr)
        elif clf.map_check_ is not None:
            print(f"{Path(args.map).name!r}: its grains not used to carry the labels (across grains "
                  f"{clf.map_check_['with']:.2f} with them, {clf.map_check_['without']:.2f} without)", file=sys.stderr)
        else:
            print(f"{Path(args.map).name!r}: its grains not used to carry the labels: that needs labels in two or "
                  "more grains, one of them holding patterns of two classes (where the phases share orientations, "
                  "label both in one grain), a class labelled in two or more grains, and a map of two or more grains "
                  f"of {MAP_GRAIN_MIN_PATTERNS} sampled patterns", file=sys.stderr)
    clf.save(out)
    recall = clf.labelled_recall_ or {}
    if recall:  # what to expect of each labelled class on the rest of the map
        from .core.ebsd.bandclassifier import LABEL_CHECK_FOLDS

        how = ("cross-validated: each called by a model fine-tuned without it" if min(counts) >= LABEL_CHECK_FOLDS
               else "the model's calls of its own labels, optimistic")
        print(f"labelled patterns called right ({how}): {clf.label_check_text()}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


def _projection_centre_of_map(clf, data, name: str) -> None:
    """Give a band-profile model the map file's projection centre when it differs from the model's (printed)."""
    import numpy as np

    file_pc = data.projection_centre
    if file_pc is None:
        if clf.pc is None:
            data.close()
            raise MicrostructureError(
                f"the model has no projection centre and {name!r} gives none; add --pc PCX PCY PCZ "
                "(Bruker convention), e.g. --pc 0.5 0.3 0.6")
        return
    if clf.pc is None or not np.allclose(file_pc, clf.pc, atol=5e-5):
        model = "none" if clf.pc is None else ", ".join(f"{v:.4g}" for v in clf.pc)
        print(f"using the projection centre of {name!r} ({', '.join(f'{v:.4g}' for v in file_pc)}, Bruker), "
              f"not the model's ({model}): it belongs to the acquisition; --pc overrides both", file=sys.stderr)
        clf.set_params(pc=tuple(file_pc))


def map_label_values(result) -> tuple["np.ndarray", list[tuple[int, str]]]:
    """The integer image written as ``space_groups.tif`` and its legend rows (value, class).

    Integer classes (space-group numbers) are written as themselves, in the
    smallest signed type that holds them (never wrapped around; the TIFF writer stores
    0-65535 as uint16); text classes
    as their number 1, 2, ... in the model's class order. 0 is "no solution"
    in both cases.
    """
    import numpy as np

    classes = np.asarray(result.classes)
    index = np.asarray(result.index)
    if classes.dtype.kind in "iu":
        values = np.concatenate([[0], classes.astype(np.int64)])
        legend_values = classes.astype(np.int64).tolist()
    else:
        values = np.arange(len(classes) + 1, dtype=np.int64)
        legend_values = list(range(1, len(classes) + 1))
    lut_type = next(t for t in (np.int16, np.int32, np.int64)
                    if np.iinfo(t).min <= values.min() and values.max() <= np.iinfo(t).max)
    image = values.astype(lut_type)[np.where(index < 0, 0, index + 1)]
    legend = [(0, "no solution")] + [(v, str(c)) for v, c in zip(legend_values, classes)]
    return image, legend


def _counts(labels):
    import numpy as np

    classes, counts = np.unique(labels, return_counts=True)
    return classes.tolist(), counts.tolist()


def run_map(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    from .cli import TerminalProgress
    from .core.ebsd.bandclassifier import BandProfileClassifier, load_ebsd_model
    from .io.ebsd import load_patterns

    from .core._files import os_error_message

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise MicrostructureError(f"output {str(out)!r} is a file; -o takes a folder (it is created)")
    if not out.parent.is_dir():
        raise MicrostructureError(f"folder {str(out.parent)!r} does not exist; create it first")
    if not os.access(out if out.exists() else out.parent, os.W_OK | os.X_OK):
        raise MicrostructureError(
            f"cannot write the map to {str(out)!r}: permission denied; choose a folder you may write to"
        )
    earlier = [name for name in ALL_OUTPUT_FILES if (out / name).exists()] if out.is_dir() else []
    if earlier and not args.overwrite:  # before the work, and nothing of the earlier run is touched
        raise MicrostructureError(
            f"{str(out)!r} already holds the results of an earlier run ({', '.join(earlier)}); choose another "
            "output folder, or pass --overwrite to replace them")
    if args.store and Path(args.store).exists() and not args.overwrite:
        raise MicrostructureError(
            f"store {args.store!r} already exists; choose another name, or pass --overwrite to replace it")
    if args.chunk_size < 1:
        raise MicrostructureError(f"--chunk-size {args.chunk_size}; give a positive number of patterns")
    clf = load_ebsd_model(args.model, device=args.device)
    band_model = isinstance(clf, BandProfileClassifier)
    if args.pc is not None:
        if not band_model:
            raise MicrostructureError("--pc is for band-profile models; this model is a CNN (EBSDClassifier)")
        clf.set_params(pc=tuple(args.pc))
    classes = np.asarray(clf.classes_)
    if classes.dtype.kind in "iu" and (classes.min() < 1 or classes.max() > 65535):
        raise MicrostructureError(
            f"the model's classes run from {classes.min()} to {classes.max()}, but space_groups.tif "
            "holds labels 1-65535 (0 = no solution); relabel the classes (e.g. as text names) and "
            "train again"
        )
    if args.confidence_threshold is not None:
        clf.confidence_threshold = args.confidence_threshold
    if args.step_size is not None and not (np.isfinite(args.step_size) and args.step_size > 0):
        raise MicrostructureError(f"--step-size {args.step_size}; give the map step in micrometres (> 0)")
    from .core.ebsd.orientations import DEFAULT_TILTS, TILT_RANGES, plausible_tilt

    data = load_patterns(args.map, lazy=True)
    # the tilts: as given, else the map file's (h5ebsd headers), else the usual 70 / 0 degrees
    tilts = {}
    for name, given in (("sample_tilt_deg", args.sample_tilt), ("detector_tilt_deg", args.detector_tilt)):
        tilts[name] = given if given is not None else float(data.metadata.get(name, DEFAULT_TILTS[name]))
    if args.export or args.sample_tilt is not None or args.detector_tilt is not None:  # before the map is classified
        for name, flag in (("sample_tilt_deg", "--sample-tilt"), ("detector_tilt_deg", "--detector-tilt")):
            if not plausible_tilt(name, tilts[name]):
                lo, hi = TILT_RANGES[name]
                data.close()
                given = getattr(args, flag[2:].replace("-", "_")) is not None
                raise MicrostructureError(
                    f"{flag} {tilts[name]:g} is not a tilt in {lo:g} to {hi:g} degrees"
                    + ("" if given else f" (from {Path(args.map).name!r})")
                    + f"; give {flag} DEG from the acquisition's metadata (sample tilt usually 70, detector tilt 0-10)")
    if band_model and args.pc is None:
        _projection_centre_of_map(clf, data, Path(args.map).name)
    step_um = float(data.step_size_um[0]) if data.step_size_um else args.step_size
    if args.export and step_um is None:
        data.close()
        raise MicrostructureError(
            f"--export {' '.join(args.export)} needs the map's step size, which {Path(args.map).name!r} "
            "does not give; add --step-size UM (micrometres)")
    try:
        pattern_map = data.as_map()
        if args.map_shape is not None:
            rows, cols = args.map_shape
            if rows * cols != data.n_patterns:
                raise MicrostructureError(
                    f"--map-shape {rows} {cols} needs {rows * cols} patterns but the file holds "
                    f"{data.n_patterns}")
            pattern_map = pattern_map.reshape(rows, cols, *data.pattern_shape)
        background = args.background
        if band_model and background == "model":
            background = data.static_background
            if background is not None:
                print(f"static background: the one stored in {Path(args.map).name!r} (subtracted)", file=sys.stderr)
        result = clf.classify_map(pattern_map, chunk_size=args.chunk_size, background=background,
                                  progress=TerminalProgress(sys.stderr), client=args.scheduler,
                                  store=args.store, overwrite=args.overwrite)
    finally:
        data.close()
    if args.store:  # the 2-D maps below are written from memory: read them from the store
        result = dataclasses.replace(result, **{k: np.asarray(getattr(result, k)) for k in
                                                ("labels", "index", "confidence", "agreement", "no_solution")})
    values, legend = map_label_values(result)
    try:
        out.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".ebsd-map-", dir=str(out)))
    except OSError as exc:
        raise MicrostructureError(os_error_message(exc, out, "write the map to")) from exc
    try:
        from .io.tiff import write_result_map

        # with the step size and their kind, napari reopens them as labels / images in micrometres
        write_result_map(tmp / "space_groups.tif", values, "ebsd-space-groups", step_um,
                         {"classes": [str(c) for c in result.classes],
                          "legend": [[int(v), str(c)] for v, c in legend]})
        with open(tmp / "legend.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["value", "class"])
            w.writerows(legend)
        write_result_map(tmp / "confidence.tif", result.confidence, "ebsd-confidence", step_um)
        write_result_map(tmp / "no_solution.tif", result.no_solution.astype(np.uint8), "ebsd-no-solution", step_um)
        with open(tmp / "fractions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["class", "patterns", "fraction"])
            for c, n, f in result.fractions_table():
                w.writerow([c, n, f"{f:.6f}"])
        names = list(OUTPUT_FILES)
        if args.export:
            from .io.ebsd.export import write_map

            for suffix in args.export:
                write_map(tmp / f"map.{suffix}", result, step_size_um=step_um, **tilts)
                names.append(f"map.{suffix}")
        if args.probabilities:
            tifffile.imwrite(tmp / "probabilities.tif", np.asarray(result.probabilities))
            names.append("probabilities.tif")
        for name in names:
            os.replace(tmp / name, out / name)
        for name in ALL_OUTPUT_FILES:  # an earlier run's outputs must not sit beside these
            if name not in names and (out / name).is_file():
                (out / name).unlink()
    except OSError as exc:
        raise MicrostructureError(os_error_message(exc, out, "write the map to")) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{result.labels.size} patterns classified; written to {out}/")
    for c, n, f in result.fractions_table():
        print(f"  {c:>12}: {n:8d} patterns  {100 * f:6.2f} %")
    return 0
