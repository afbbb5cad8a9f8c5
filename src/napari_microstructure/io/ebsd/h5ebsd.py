"""h5ebsd files (Jackson et al. 2014) in the kikuchipy, EDAX and Bruker layouts.

All three put ``Manufacturer`` and ``Version`` datasets in the root group and
one group per scan holding ``EBSD/Data`` and ``EBSD/Header``:

============  ==================  ==========================  ===========================
layout        patterns dataset    map size (header)           pattern size (header)
============  ==================  ==========================  ===========================
kikuchipy     ``patterns``        ``n_rows``, ``n_columns``   ``pattern_height``/``_width``
EDAX          ``Pattern``         ``nRows``, ``nColumns``     ``Pattern Height``/``Width``
Bruker Nano   ``RawPatterns``     ``NROWS``, ``NCOLS``        ``PatternHeight``/``Width``
============  ==================  ==========================  ===========================

Patterns are stored as (N, h, w) in row-major scan order; Bruker files with a
rectangular region of interest list the beam positions in ``EBSD/SEM/IY`` and
``IX``.

The projection centre, when the file gives one, becomes
:attr:`PatternData.projection_centre` in the Bruker convention:

============  ==============================================  ==================================
layout        where                                           convention
============  ==============================================  ==================================
kikuchipy     ``EBSD/Header/pcx``, ``pcy``, ``pcz``           Bruker (one value or one per pattern)
EDAX          ``EBSD/Header/Pattern Center Calibration/``     EDAX/TSL, converted with
              ``x-star``, ``y-star``, ``z-star``              :func:`._common.projection_centre_from_tsl`
Bruker Nano   ``EBSD/Data/PCX``, ``PCY``, ``DD``              Bruker, one value per pattern
============  ==============================================  ==================================

The detector's static background, when the header stores one (kikuchipy
``static_background``, Bruker ``StaticBackground``) and the patterns still
carry it (:func:`._common.usable_static_background`, on the first patterns),
becomes :attr:`PatternData.static_background`; one of another size than the
patterns is left out with a warning.

The acquisition's tilts go into :attr:`PatternData.metadata` as
``sample_tilt_deg`` and ``detector_tilt_deg`` where the header holds them
(:data:`TILT_KEYS`: kikuchipy ``sample_tilt`` / ``elevation_angle``, EDAX
``Sample Tilt`` / ``Camera Elevation Angle``, Bruker ``SampleTilt`` / ``CameraTilt``);
values outside :data:`~napari_microstructure.core.ebsd.orientations.TILT_RANGES` are left out with a warning.

Per-pattern values are averaged over the map (with a warning when a field holds
several values but not one per pattern). An implausible one (an
uncalibrated EDAX header stores zeros) is ignored with a warning. Reading is lazy (a dask array over the h5py dataset, chunked as in the
file); the file stays open until :meth:`PatternData.close`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ...core.errors import MicrostructureError
from ._common import (BACKGROUND_CHECK_PATTERNS, PatternData, plausible_projection_centre, projection_centre_from_tsl,
                      projection_centre_to_tsl, usable_static_background)

LAYOUTS = {
    "kikuchipy": dict(manufacturer="kikuchipy", patterns="patterns", rows="n_rows", cols="n_columns",
                      height="pattern_height", width="pattern_width", step_y="step_y", step_x="step_x",
                      background="static_background"),
    "edax": dict(manufacturer="EDAX", patterns="Pattern", rows="nRows", cols="nColumns",
                 height="Pattern Height", width="Pattern Width", step_y="Step Y", step_x="Step X",
                 background=None),
    "bruker nano": dict(manufacturer="Bruker Nano", patterns="RawPatterns", rows="NROWS", cols="NCOLS",
                        height="PatternHeight", width="PatternWidth", step_y="YSTEP", step_x="XSTEP",
                        background="StaticBackground"),
}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(filename: Union[str, os.PathLike]) -> bool:
    """Cheap check of the HDF5 signature (first 8 bytes)."""
    try:
        with open(filename, "rb") as fh:
            return fh.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def _scalar(value: Any) -> Any:
    value = value[()] if hasattr(value, "shape") else value
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _header(group) -> dict:
    import h5py

    out = {}
    for key, val in group.items():
        if isinstance(val, h5py.Dataset) and (val.size or 0) <= 16:  # size None: an empty (null) dataset
            try:
                out[key.strip()] = _scalar(val)
            except Exception:  # pragma: no cover - exotic dtypes
                continue
        elif isinstance(val, h5py.Group):
            out[key.strip()] = _header(val)
    return out


def _manufacturer(f) -> Optional[str]:
    for key in f.keys():
        if key.strip().lower() == "manufacturer":  # EDAX writes " Manufacturer"
            value = _scalar(f[key])
            return str(value).strip().lower() if value is not None else None
    return None


def file_reader(filename: Union[str, os.PathLike], lazy: bool = True,
                scan_group: Optional[str] = None) -> PatternData:
    """Read the patterns of one scan of an h5ebsd file.

    Parameters
    ----------
    filename : path-like
    lazy : bool
        ``True``: a dask array over the HDF5 dataset (file kept open until
        ``close()``); ``False``: read into memory and close.
    scan_group : str, optional
        Name of the top group of the scan; default the first scan.
    """
    import h5py

    filename = str(filename)
    if not is_hdf5(filename):
        raise MicrostructureError(
            f"{filename!r} is not an HDF5 file (wrong signature); choose an h5ebsd file from "
            "EDAX, Bruker or kikuchipy"
        )
    try:
        f = h5py.File(filename, "r")
    except Exception as exc:
        raise MicrostructureError(
            f"{filename!r} could not be opened as HDF5 ({exc}); the file is probably truncated: "
            "copy or export it again"
        ) from exc
    man = _manufacturer(f)
    if man not in LAYOUTS:  # Oxford .h5oina and other HDF5 layouts: kikuchipy reads them, when installed
        f.close()
        import importlib.util

        if importlib.util.find_spec("kikuchipy") is not None:
            from . import vendor

            return vendor.file_reader(filename, lazy=lazy)
        found = "no Manufacturer dataset" if man is None else f"manufacturer {man!r}"
        raise MicrostructureError(
            f"{filename!r} is an HDF5 file but not a supported h5ebsd file ({found}); supported "
            f"layouts: kikuchipy, EDAX, Bruker Nano. Oxford .h5oina and the other layouts kikuchipy reads "
            "open once kikuchipy is installed: pip install 'napari-microstructure[ebsd]'"
        )
    try:
        return _read(f, filename, lazy, scan_group)
    except BaseException:
        f.close()
        raise


def _read(f, filename, lazy, scan_group):
    import h5py

    man = _manufacturer(f)
    lay = LAYOUTS[man]  # file_reader sent other layouts to kikuchipy
    scans = [k for k, g in f.items() if isinstance(g, h5py.Group) and "EBSD/Data" in g and "EBSD/Header" in g]
    if not scans:
        raise MicrostructureError(f"{filename!r} has no scan group with EBSD/Data and EBSD/Header")
    if scan_group is None:
        scan_group = scans[0]
    elif scan_group not in scans:
        raise MicrostructureError(f"scan {scan_group!r} is not in {filename!r}; available: {scans}")
    group = f[scan_group]
    hd = _header(group["EBSD/Header"])
    if lay["patterns"] not in group["EBSD/Data"]:
        raise MicrostructureError(
            f"{filename!r} ({man}) has no dataset EBSD/Data/{lay['patterns']} in scan {scan_group!r}"
        )
    dset = group["EBSD/Data"][lay["patterns"]]
    if dset.ndim != 3:
        raise MicrostructureError(f"patterns in {filename!r} have shape {dset.shape}; expected (N, h, w)")
    n, h, w = dset.shape
    rows, cols = hd.get(lay["rows"]), hd.get(lay["cols"])
    indices = None
    if man == "bruker nano" and "EBSD/SEM" in group and "IY" in group["EBSD/SEM"]:
        iy = np.asarray(group["EBSD/SEM/IY"][()]).astype(int)
        ix = np.asarray(group["EBSD/SEM/IX"][()]).astype(int)
        rows, cols = int(iy.max() - iy.min() + 1), int(ix.max() - ix.min() + 1)
        if rows * cols != len(iy):
            raise MicrostructureError(
                f"{filename!r} has a non-rectangular region of interest; only rectangular maps "
                "are supported: export the rectangular part of the map"
            )
        flat = np.ravel_multi_index((iy - iy.min(), ix - ix.min()), (rows, cols))
        order = np.argsort(flat)
        if not np.array_equal(order, np.arange(len(order))):
            indices = order
    grid = str(hd.get("Grid Type", "")).strip()
    if grid and grid not in ("SqrGrid", "isometric"):
        raise MicrostructureError(f"{filename!r} uses a {grid!r} grid; only square grids are supported")
    if rows is None or cols is None:
        rows, cols = 1, n
    for key, value in ((lay["rows"], rows), (lay["cols"], cols)):
        count = _mean(value)
        if not (np.isfinite(count) and count >= 1 and count == int(count)):
            raise MicrostructureError(
                f"{filename!r}: the header's {key!r} ({value!r}) is not a number of map rows or columns; the "
                "file's header is damaged: export the map again from the acquisition software")
    rows, cols = int(_mean(rows)), int(_mean(cols))
    if rows * cols != n:
        raise MicrostructureError(
            f"{filename!r}: the header says {rows} x {cols} = {rows * cols} patterns but the file "
            f"holds {n}; the scan was interrupted or the file is truncated"
        )
    pc = _projection_centre(group, hd, man, (h, w), filename, n)  # while the file is open
    tilts = _tilts(group["EBSD/Header"], man, filename)
    static = _static_background(group["EBSD/Header"], lay["background"], dset, filename)
    if lazy:
        import dask.array as da

        chunks = dset.chunks if dset.chunks is not None else (max(1, min(n, 2 ** 24 // (h * w))), h, w)
        data = da.from_array(dset, chunks=chunks, name=f"h5ebsd-{Path(filename).name}-{scan_group}",
                             lock=True)
        close = f.close
    else:
        try:
            data = dset[()]
        except Exception as exc:
            raise MicrostructureError(f"{filename!r} could not be read completely ({exc}); it is truncated") from exc
        close = None
        f.close()
    if indices is not None:
        data = data[indices]
    data = data.reshape(rows, cols, h, w)
    step = None
    if lay["step_y"] in hd and lay["step_x"] in hd:
        step = (_mean(hd[lay["step_y"]]), _mean(hd[lay["step_x"]]))
        if not (np.all(np.isfinite(step)) and min(step) > 0):
            import warnings

            warnings.warn(f"{filename}: the header's step size ({lay['step_y']} {hd[lay['step_y']]!r}, "
                          f"{lay['step_x']} {hd[lay['step_x']]!r}) is not a positive step in micrometres; it is "
                          "ignored (give the step size by hand: --step-size, or step_size_um=)",
                          UserWarning, stacklevel=4)
            step = None
    meta = {"manufacturer": man, "scan": scan_group}
    for key in ("KV", "Pattern Center Calibration", "PCX", "PCY", "DD", "beam_energy"):
        if key in hd:
            meta[key] = hd[key]
    meta.update(tilts)
    return PatternData(data, step, f"h5ebsd-{man.split()[0]}", filename, meta, projection_centre=pc,
                       static_background=static, _close=close)


def _static_background(header, key: Optional[str], dset, filename: str) -> Optional[np.ndarray]:
    """The header's static background as (h, w) float32, or None: none stored, unusable (a warning),
    or already removed from the patterns (checked on the first ones)."""
    if key is None or key not in header:
        return None
    node = header[key]
    first = dset[:min(len(dset), BACKGROUND_CHECK_PATTERNS)]
    return usable_static_background(node[()] if hasattr(node, "shape") else None, dset.shape[1:], filename,
                                    f"EBSD/Header/{key}", patterns=first)


def _mean(node) -> float:
    """Mean of a dataset holding one value or one per pattern (NaN when it holds no number)."""
    try:
        values = np.asarray(node[()] if hasattr(node, "shape") else node, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return float("nan")
    return float(values.mean()) if values.size else float("nan")


def _fields(node, keys: tuple[str, ...], where: str, filename: str,
            n_patterns: int) -> Optional[tuple[float, ...]]:
    """The means of ``node[k]`` for each key; None (with a warning naming the missing ones) if not all there.

    No warning when none of the keys is there (the file simply has no calibration). A field holding
    several values but not one per pattern (``n_patterns``) is averaged all the same, with a warning
    naming the dataset, its length and the number of patterns.
    """
    import warnings

    import h5py

    if not isinstance(node, h5py.Group):
        return None
    missing = [k for k in keys if k not in node]
    if len(missing) == len(keys):
        return None
    if missing:
        warnings.warn(f"{str(filename)!r}: the projection centre in the file ({where}) lacks {', '.join(missing)}; "
                      "it is ignored: give the projection centre by hand (PCx, PCy, PCz)", UserWarning, stacklevel=4)
        return None
    for k in keys:
        size = getattr(node[k], "size", None)  # None: an empty (null) dataset
        if size is not None and size > 1 and size != n_patterns:
            warnings.warn(f"{str(filename)!r}: the projection centre's {node[k].name} holds {size} values but the "
                          f"scan has {n_patterns} patterns; their mean is used (check that the calibration belongs "
                          "to this scan, or give the projection centre by hand: PCx, PCy, PCz)",
                          UserWarning, stacklevel=4)
    return tuple(_mean(node[k]) for k in keys)


def _projection_centre(group, hd: dict, man: str, shape: tuple[int, int], filename: str, n_patterns: int):
    """The scan's projection centre in the Bruker convention, or None (see the module's table)."""
    if man == "kikuchipy":
        where = "EBSD/Header"
        pc = _fields(group.get(where), ("pcx", "pcy", "pcz"), f"{where}/pcx, pcy, pcz", filename, n_patterns)
        return plausible_projection_centre(pc, filename, f"{where}/pcx, pcy, pcz")
    elif man == "edax":
        where = "EBSD/Header/Pattern Center Calibration"
        tsl = _fields(group.get(where), ("x-star", "y-star", "z-star"), where, filename, n_patterns)
        if tsl is not None:
            return plausible_projection_centre(projection_centre_from_tsl(list(tsl), shape), filename,
                                               f"{where}, converted from EDAX/TSL")
    elif man == "bruker nano":
        import h5py

        for where in ("EBSD/Data", "EBSD/Header", "EBSD/SEM"):
            node = group.get(where)
            if isinstance(node, h5py.Group) and any(k in node for k in ("PCX", "PCY", "DD")):
                pc = _fields(node, ("PCX", "PCY", "DD"), f"{where}/PCX, PCY, DD", filename, n_patterns)
                return plausible_projection_centre(pc, filename, f"{where}/PCX, PCY, DD")
    return None


#: Header fields of the acquisition's tilts (degrees), per layout: sample tilt, detector (camera) tilt.
TILT_KEYS = {"kikuchipy": (("sample_tilt",), ("elevation_angle",)),
             "edax": (("Sample Tilt",), ("Camera Elevation Angle",)),
             "bruker nano": (("SampleTilt", "Sample Tilt"), ("CameraTilt",))}


def _tilts(header, man: str, filename: str) -> dict[str, float]:
    """``sample_tilt_deg`` / ``detector_tilt_deg`` from the header group where the layout keeps them.

    A value outside :data:`~napari_microstructure.core.ebsd.orientations.TILT_RANGES`, not a number, empty, or a list of
    differing values is left out with a warning naming the file and the field:
    the orientations then use the defaults the user can see and change.
    """
    import warnings

    from ...core.ebsd.orientations import TILT_RANGES, plausible_tilt

    out: dict[str, float] = {}
    names = {k.strip(): k for k in header.keys()}  # EDAX pads some names with spaces
    for name, keys in zip(("sample_tilt_deg", "detector_tilt_deg"), TILT_KEYS.get(man, ((), ()))):
        key = next((k for k in keys if k in names), None)
        if key is None:
            continue
        node = header[names[key]]
        try:
            values = np.asarray(node[()] if hasattr(node, "shape") else np.nan, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            values = np.full(1, np.nan)
        value = float(values[0]) if values.size else float("nan")
        lo, hi = TILT_RANGES[name]
        if values.size > 1 and np.ptp(values) > 0:
            shown = f"{values.size} different values"
        elif plausible_tilt(name, value):
            out[name] = value
            continue
        else:
            shown = f"{value}"
        warnings.warn(f"{filename}: the header's {key!r} ({shown}) is not a tilt in {lo:g}-{hi:g} degrees; "
                      "it is ignored (type the acquisition's tilt in the EBSD widget's Tilts fields)",
                      UserWarning, stacklevel=4)
    return out


def file_writer(filename: Union[str, os.PathLike], patterns: np.ndarray, layout: str = "kikuchipy",
                step_size_um: Sequence[float] = (1.0, 1.0), scan_group: str = "Scan 1",
                chunk_patterns: int = 256,
                projection_centre: Optional[Sequence[float]] = None,
                tilts_deg: Optional[Sequence[float]] = None,
                static_background: Optional[np.ndarray] = None) -> Path:
    """Write a map (rows, cols, h, w) as an h5ebsd file in one of the layouts.

    Meant for export and for tests; it writes the datasets this module reads
    (and that kikuchipy reads), not every header field of the vendors.
    ``patterns`` may be a memory map or dask array; it is written in blocks.

    Parameters
    ----------
    projection_centre : (float, float, float), optional
        ``(PCx, PCy, PCz)`` in the Bruker convention, written where the layout
        keeps it (module table): as is for kikuchipy, converted to EDAX/TSL
        for EDAX, once per pattern for Bruker.
    tilts_deg : (float, float), optional
        ``(sample tilt, detector tilt)`` in degrees, in the layout's header fields
        (:data:`TILT_KEYS`).
    static_background : ndarray (h, w), optional
        The detector's static background, where the layout keeps one (kikuchipy,
        Bruker; refused for EDAX, whose files have no such field).
    """
    import h5py

    key = layout.lower()
    if key == "bruker":
        key = "bruker nano"
    if key not in LAYOUTS:
        raise MicrostructureError(f"unknown h5ebsd layout {layout!r}; choose kikuchipy, edax or bruker")
    if projection_centre is not None:
        from ...core.ebsd.bands import check_projection_centre

        projection_centre = check_projection_centre(projection_centre)
    lay = LAYOUTS[key]
    shape = tuple(patterns.shape)
    if len(shape) == 3:
        shape = (1, *shape)
    rows, cols, h, w = shape
    if static_background is not None:
        if lay["background"] is None:
            raise MicrostructureError(f"the {layout} layout has no static background field; write it as "
                                      "kikuchipy or bruker, or leave static_background out")
        static_background = np.asarray(static_background)
        if static_background.shape != (h, w):
            raise MicrostructureError(
                f"static_background is {' x '.join(map(str, static_background.shape))} but the patterns are "
                f"{h} x {w}; give the background of the same detector")
    n = rows * cols
    flat = patterns.reshape(n, h, w)
    with h5py.File(filename, "w") as f:
        f.create_dataset("Manufacturer", data=np.bytes_(lay["manufacturer"]))
        f.create_dataset("Version", data=np.bytes_("napari-microstructure 1"))
        g = f.create_group(scan_group)
        hdr = g.create_group("EBSD/Header")
        data = g.create_group("EBSD/Data")
        hdr.create_dataset(lay["rows"], data=np.int32(rows))
        hdr.create_dataset(lay["cols"], data=np.int32(cols))
        hdr.create_dataset(lay["height"], data=np.int32(h))
        hdr.create_dataset(lay["width"], data=np.int32(w))
        hdr.create_dataset(lay["step_y"], data=np.float32(step_size_um[0]))
        hdr.create_dataset(lay["step_x"], data=np.float32(step_size_um[1]))
        if key == "kikuchipy":
            g.create_group("SEM/Header")  # kikuchipy's reader needs the group, even empty
        elif key == "edax":
            hdr.create_dataset("Grid Type", data=np.bytes_("SqrGrid"))
        elif key == "bruker nano":
            hdr.create_dataset("Grid Type", data=np.bytes_("isometric"))
        dset = data.create_dataset(lay["patterns"], shape=(n, h, w), dtype=flat.dtype,
                                   chunks=(min(n, chunk_patterns), h, w))
        for start in range(0, n, chunk_patterns):
            dset[start:start + chunk_patterns] = np.asarray(flat[start:start + chunk_patterns])
        if key == "bruker nano":
            rr, cc = np.divmod(np.arange(n), cols)
            sem = g.create_group("EBSD/SEM")
            sem.create_dataset("IY", data=rr.astype(np.int32))
            sem.create_dataset("IX", data=cc.astype(np.int32))
        if static_background is not None:
            hdr.create_dataset(lay["background"], data=static_background.astype(flat.dtype))
        if tilts_deg is not None:
            for keys, value in zip(TILT_KEYS[key], tilts_deg):
                hdr.create_dataset(keys[0], data=np.float32(value))
        if projection_centre is not None:
            if key == "kikuchipy":
                for name, value in zip(("pcx", "pcy", "pcz"), projection_centre):
                    hdr.create_dataset(name, data=np.float64(value))
            elif key == "edax":
                cal = hdr.create_group("Pattern Center Calibration")
                for name, value in zip(("x-star", "y-star", "z-star"),
                                       projection_centre_to_tsl(projection_centre, (h, w))):
                    cal.create_dataset(name, data=np.float32(value))
            else:
                for name, value in zip(("PCX", "PCY", "DD"), projection_centre):
                    data.create_dataset(name, data=np.full(n, value, np.float32))
    return Path(filename)
