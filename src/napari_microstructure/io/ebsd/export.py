"""Export a classified space-group map as ``.ang`` (EDAX TSL) or ``.ctf`` (Oxford HKL) text.

orix (``orix.io.load``), MTEX and the vendors' software open these files. The
CNN classifier knows the *phase* of each point only; the band-profile
classifier also finds its orientation. The files carry:

- the phase of each point: phases numbered from 1 in the order of the
  classes; "no solution" points are not indexed (``.ctf``: phase 0;
  ``.ang``: phase 0 and confidence index -1, orix's and OIM's convention);
- the map grid: ``x = column * step``, ``y = row * step`` in micrometres,
  from the step size;
- the classifier's confidence as the quality columns (``.ang``: CI in
  [0, 1] and IQ = 255 * confidence; ``.ctf``: band contrast = 255 *
  confidence, MAD 0);
- the orientation of each point as Bunge Euler angles in the sample frame
  when given (``euler``: :func:`~napari_microstructure.core.ebsd.orientations.sample_euler`
  of the band classifier's rotations; orix reads them back as the same
  orientations), else zero (orientation not determined); not-indexed
  points always get zero;
- per phase, a name (a space group's Hermann-Mauguin symbol such as
  ``Fm-3m``, or the class's own name), the cubic Laue class m-3m, the space
  group and the lattice parameter: given, or that of a material the package
  knows by the class's name (``"Ni3Al"``: 3.572 Angstrom), else 1 Angstrom;
- ``.ang`` only: the projection centre as EDAX/TSL ``x-star``, ``y-star``,
  ``z-star`` when it is known (given in the Bruker convention the plugin uses,
  converted by :func:`._common.projection_centre_to_tsl`). An unknown one is
  left out, with the working distance, rather than written as a made-up
  value: orix and MTEX read the phases and the columns and need neither.

``.ang`` columns: phi1 PHI phi2 (radians) x y IQ CI phase SEM-signal fit.
``.ctf`` columns: Phase X Y Bands Error Euler1 Euler2 Euler3 (degrees) MAD BC BS.
Files are written to a temporary name and renamed: an error never leaves a
half-written file behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ...core.errors import MicrostructureError

PathLike = Union[str, os.PathLike]
SUFFIXES = (".ang", ".ctf")


def _check(labels, step_size_um, confidence) -> tuple[np.ndarray, tuple[float, float], np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise MicrostructureError(
            f"the map's labels must be a 2-D (rows, cols) array, got shape {labels.shape}; "
            "pass MapResult.labels or reshape the labels to the map grid")
    if step_size_um is None:
        raise MicrostructureError(
            "the step size is unknown; give step_size_um (micrometres between map points), "
            "e.g. from the pattern file's header")
    step = np.broadcast_to(np.asarray(step_size_um, float).ravel(), (2,)) if np.size(step_size_um) in (1, 2) \
        else None
    if step is None or not np.all(np.isfinite(step)) or np.any(step <= 0):
        raise MicrostructureError(
            f"step_size_um={step_size_um!r}; give one positive number or (row, column) in micrometres")
    if confidence is None:
        confidence = np.ones(labels.shape, np.float32)
    confidence = np.asarray(confidence, float)
    if confidence.shape != labels.shape:
        raise MicrostructureError(
            f"confidence has shape {confidence.shape} but the labels {labels.shape}; pass MapResult.confidence")
    return labels, (float(step[0]), float(step[1])), np.clip(np.nan_to_num(confidence), 0, 1)


def _euler(euler: Any, shape: tuple, ids: np.ndarray) -> np.ndarray:
    """Bunge Euler angles (rows * cols, 3) in radians; zero where not given or not indexed."""
    if euler is None:
        return np.zeros((int(np.prod(shape)), 3))
    e = np.asarray(euler, float)
    if e.shape != (*shape, 3):
        raise MicrostructureError(
            f"euler has shape {e.shape} but the map needs {(*shape, 3)}: Bunge Euler angles in radians per "
            "point, e.g. sample_euler(rotations).reshape(rows, cols, 3)")
    e = e.reshape(-1, 3)
    bad = ~np.all(np.isfinite(e), axis=1) & (ids.ravel() > 0)
    if bad.any():
        raise MicrostructureError(
            f"euler is not finite at {int(bad.sum())} indexed points (the first at flat index "
            f"{int(np.flatnonzero(bad)[0])}); give angles for every indexed point")
    return np.where(ids.ravel()[:, None] > 0, np.nan_to_num(e), 0.0)


def _phase_ids(labels: np.ndarray, classes: Optional[Sequence], no_solution_label: Any):
    if classes is None:
        classes = [c for c in np.unique(labels) if c != no_solution_label]
    classes = list(classes)
    ids = np.zeros(labels.shape, np.int32)
    for k, c in enumerate(classes):
        ids[labels == c] = k + 1
    unknown = (ids == 0) & (labels != no_solution_label)
    if unknown.any():
        bad = sorted({str(v) for v in np.unique(labels[unknown])})
        raise MicrostructureError(
            f"labels {', '.join(bad)} are neither classes {classes} nor the no-solution label "
            f"{no_solution_label!r}; pass classes=MapResult.classes")
    return ids, classes


def _phase_info(c, names, lattice) -> tuple[str, int, tuple]:
    """Name, space group and lattice parameters (Angstrom) written for class ``c``.

    A space-group class is named by its Hermann-Mauguin symbol (``Fm-3m``); a
    text class that names a material the package knows (``"Ni3Al"``) takes
    that material's space group and lattice parameter; ``names`` and
    ``lattice`` override both. Otherwise the lattice parameter is unknown and
    written as 1 Angstrom (readers need a number; orientations do not depend on it).
    """
    from ...core.ebsd.simulate.structures import ALL_MATERIALS
    from ...core.ebsd.simulate.symmetry import SYMBOLS

    known = ALL_MATERIALS.get(c) if isinstance(c, str) else None
    try:
        sg = int(c)
    except (TypeError, ValueError):
        sg = known.space_group if known is not None else 0
    default = SYMBOLS.get(sg, f"SG{sg}") if str(c).isdigit() else str(c)
    name = str((names or {}).get(c, default)).replace("\t", " ").replace(" ", "_")
    a = float((lattice or {}).get(c, known.a if known is not None else 1.0))
    if not (np.isfinite(a) and a > 0):
        raise MicrostructureError(f"lattice_angstrom[{c!r}]={a!r}; give the cubic lattice parameter in Angstrom (> 0)")
    return name, sg if 1 <= sg <= 230 else 0, (a, a, a)


def _atomic_write(path: Path, text: str) -> Path:
    """Write ``text`` atomically (:func:`~napari_microstructure.core._files.atomic_path`): clear OS errors."""
    from ...core._files import atomic_path

    with atomic_path(path, f"{path.suffix.lstrip('.')} file") as tmp:
        with open(tmp, "w", newline="\n") as f:
            f.write(text)
    return path


def write_ctf(path: PathLike, labels: Any, step_size_um: Any, classes: Optional[Sequence] = None,
              confidence: Any = None, no_solution_label: Any = 0,
              phase_names: Optional[Mapping] = None, lattice_angstrom: Optional[Mapping] = None,
              kv: float = 20.0, tilt_deg: float = 70.0, euler: Any = None) -> Path:
    """Write a phase map as an Oxford HKL Channel Text File.

    Parameters
    ----------
    path : path-like
        Destination ``.ctf``.
    labels : array-like (rows, cols)
        Class of each point (e.g. space groups), ``no_solution_label`` where none.
    step_size_um : float or (float, float)
        Distance between map points in micrometres, (row, column).
    classes : sequence, optional
        Phase order (phase ids 1, 2, ...); default the sorted labels.
    confidence : array-like (rows, cols), optional
        Classifier confidence in [0, 1] (band-contrast column).
    no_solution_label : int or str
        Label of not-indexed points.
    phase_names : mapping, optional
        Class -> phase name. Default: a space group's Hermann-Mauguin symbol
        (``"Fm-3m"``), a text class's own name.
    lattice_angstrom : mapping, optional
        Class -> cubic lattice parameter in Angstrom. Default: that of a
        material the package knows by the class's name (``"Ni"``: 3.524),
        else 1 (unknown; orientations do not depend on it).
    kv, tilt_deg : float
        Header values.
    euler : array-like (rows, cols, 3), optional
        Bunge Euler angles in radians, sample frame (written in degrees);
        default zero.
    """
    labels, (dy, dx), conf = _check(labels, step_size_um, confidence)
    ids, classes = _phase_ids(labels, classes, no_solution_label)
    rows, cols = labels.shape
    head = ["Channel Text File", "Prj\tnapari-microstructure space-group map",
            "Author\tnapari-microstructure", "JobMode\tGrid", f"XCells\t{cols}", f"YCells\t{rows}",
            f"XStep\t{dx:.6g}", f"YStep\t{dy:.6g}", "AcqE1\t0", "AcqE2\t0", "AcqE3\t0",
            f"Euler angles refer to Sample Coordinate system (CS0)!\tMag\t0\tCoverage\t100\tDevice\t0"
            f"\tKV\t{kv:g}\tTiltAngle\t{tilt_deg:g}\tTiltAxis\t0", f"Phases\t{len(classes)}"]
    for c in classes:
        name, sg, (a, b, cc) = _phase_info(c, phase_names, lattice_angstrom)
        head.append(f"{a:.4f};{b:.4f};{cc:.4f}\t90.000;90.000;90.000\t{name}\t11\t{sg}")
    head.append("Phase\tX\tY\tBands\tError\tEuler1\tEuler2\tEuler3\tMAD\tBC\tBS")
    rr, cc_ = np.indices((rows, cols))
    flat = ids.ravel()
    bc = np.rint(255 * conf.ravel()).astype(int)
    err = np.where(flat == 0, 3, 0)
    deg = np.degrees(_euler(euler, labels.shape, ids))
    lines = [f"{p}\t{x:.4f}\t{y:.4f}\t0\t{e}\t{a:.4f}\t{b_:.4f}\t{c:.4f}\t0.0000\t{b}\t{b}"
             for p, x, y, e, (a, b_, c), b in zip(flat, cc_.ravel() * dx, rr.ravel() * dy, err, deg, bc)]
    return _atomic_write(Path(path), "\n".join(head + lines) + "\n")


def _tsl_header(projection_centre: Any, pattern_shape: Any) -> list[str]:
    """``# x-star`` ... lines of a known projection centre (Bruker convention in), none when unknown."""
    if projection_centre is None:
        return []
    from ._common import projection_centre_to_tsl

    pc = np.asarray(projection_centre, float).ravel()
    if pc.shape != (3,) or not np.all(np.isfinite(pc)):
        raise MicrostructureError(
            f"projection_centre={projection_centre!r}; give three numbers (PCx, PCy, PCz, Bruker convention), "
            "or None when it is not known")
    if pattern_shape is None or len(tuple(pattern_shape)) != 2 or min(int(v) for v in pattern_shape) < 1:
        raise MicrostructureError(
            f"pattern_shape={pattern_shape!r}; give the patterns' (height, width) in pixels with the projection "
            "centre (EDAX/TSL measure z* in pattern widths, Bruker in heights)")
    x, y, z = projection_centre_to_tsl(pc, tuple(int(v) for v in pattern_shape))
    return [f"# x-star                {x:.6f}", f"# y-star                {y:.6f}", f"# z-star                {z:.6f}"]


def write_ang(path: PathLike, labels: Any, step_size_um: Any, classes: Optional[Sequence] = None,
              confidence: Any = None, no_solution_label: Any = 0,
              phase_names: Optional[Mapping] = None, lattice_angstrom: Optional[Mapping] = None,
              euler: Any = None, projection_centre: Any = None, pattern_shape: Any = None) -> Path:
    """Write a phase map as an EDAX TSL ``.ang`` file (see :func:`write_ctf` for the other parameters).

    Parameters
    ----------
    projection_centre : (float, float, float), optional
        The detector's projection centre (PCx, PCy, PCz), Bruker convention,
        as the band-profile classifier takes it; written as EDAX/TSL
        ``x-star``, ``y-star``, ``z-star``. Default: unknown, not written.
    pattern_shape : (int, int), optional
        Pattern (height, width) in pixels; needed with ``projection_centre``.
    """
    labels, (dy, dx), conf = _check(labels, step_size_um, confidence)
    ids, classes = _phase_ids(labels, classes, no_solution_label)
    rows, cols = labels.shape
    head = ["# TEM_PIXperUM          1.000000", *_tsl_header(projection_centre, pattern_shape), "#"]
    for k, c in enumerate(classes):
        name, sg, (a, b, cc) = _phase_info(c, phase_names, lattice_angstrom)
        head += [f"# Phase {k + 1}", f"# MaterialName  \t{name}", f"# Formula     \t{name}", "# Info          ",
                 "# Symmetry              43",
                 f"# LatticeConstants      {a:.3f} {b:.3f} {cc:.3f}  90.000  90.000  90.000",
                 "# NumberFamilies        0", "# Categories 0 0 0 0 0", "#"]
    head += ["# GRID: SqrGrid", f"# XSTEP: {dx:.6f}", f"# YSTEP: {dy:.6f}", f"# NCOLS_ODD: {cols}",
             f"# NCOLS_EVEN: {cols}", f"# NROWS: {rows}", "#", "# OPERATOR: \tnapari-microstructure",
             "# SAMPLEID: \t", "# SCANID: \t", "#"]
    rr, cc_ = np.indices((rows, cols))
    flat = ids.ravel()
    ci = np.where(flat == 0, -1.0, conf.ravel())
    iq = 255 * conf.ravel()
    e = _euler(euler, labels.shape, ids)
    lines = [f"{a:9.5f} {b:9.5f} {g:9.5f} {x:12.5f} {y:12.5f} {q:8.1f} {c:6.3f} {p:2d} 0 0.000"
             for (a, b, g), x, y, q, c, p in zip(e, cc_.ravel() * dx, rr.ravel() * dy, iq, ci, flat)]
    return _atomic_write(Path(path), "\n".join(head + lines) + "\n")


def write_map(path: PathLike, result: Any, step_size_um: Any = None, *, sample_tilt_deg: float = 70.0,
              detector_tilt_deg: float = 0.0, **kwargs) -> Path:
    """Write a :class:`~napari_microstructure.core.ebsd.mapping.MapResult` as ``.ang`` or ``.ctf``.

    ``projection_centre`` and ``pattern_shape`` (``.ang`` only, see
    :func:`write_ang`) are passed on; the ``.ctf`` header has no place for them.
    The step size defaults to the result's ``step_size_um``. A map classified
    by :class:`~napari_microstructure.core.ebsd.bandclassifier.BandProfileClassifier`
    carries each point's orientation: it is written as Bunge Euler angles in
    the sample frame for the given tilts (degrees; see
    :mod:`~napari_microstructure.core.ebsd.orientations`), unless ``euler=`` is given.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise MicrostructureError(f"cannot write {path.name!r}: choose a name ending in .ang or .ctf")
    step = step_size_um if step_size_um is not None else getattr(result, "step_size_um", None)
    if kwargs.get("euler") is None and getattr(result, "detector_euler", None) is not None:
        kwargs["euler"] = result.sample_euler(sample_tilt_deg, detector_tilt_deg)
    if suffix == ".ctf":
        kwargs.setdefault("tilt_deg", sample_tilt_deg)
        kwargs.pop("projection_centre", None)
        kwargs.pop("pattern_shape", None)
    writer = write_ang if suffix == ".ang" else write_ctf
    return writer(path, result.labels, step, classes=list(result.classes), confidence=result.confidence,
                  no_solution_label=result.no_solution_label, **kwargs)
