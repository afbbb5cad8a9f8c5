"""Sample data: a simulated dual-phase EBSD map with labelled training patterns.

The file ``data/ebsd/dual_phase_sample.npz`` (about 2 MB) is made by
``scripts/make_ebsd_sample.py`` with the package's own NumPy simulator: a
30 x 40 map of 40 x 40 patterns of a Ni (space group 225) matrix with
cube-on-cube Ni3Al (221) precipitates, and 150 labelled training patterns per
phase recorded in the same grains. If the file is missing it is regenerated
in memory (a few seconds). The detector's projection centre (Bruker
convention, ``SAMPLE_SETTINGS["pc"]``, (0.5, 0.3, 0.6)) goes into the pattern
layer's metadata as a file's would, so the band-profile classifier needs no
typing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_FILE = Path(__file__).resolve().parents[1] / "data" / "ebsd" / "dual_phase_sample.npz"
SPACE_GROUP_NAMES = {221: "Pm-3m (221)", 223: "Pm-3n (223)", 225: "Fm-3m (225)",
                     227: "Fd-3m (227)", 229: "Im-3m (229)", 230: "Ia-3d (230)"}


def load_sample_arrays() -> dict[str, np.ndarray]:
    """The arrays of the sample: patterns, phase_map, train_patterns, train_labels, projection_centre."""
    from ..core.ebsd.simulate import SAMPLE_SETTINGS, make_sample_data

    if SAMPLE_FILE.is_file():
        with np.load(SAMPLE_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        # a file written before the projection centre was saved: the settings that made it give it
        arrays.setdefault("projection_centre", np.asarray(SAMPLE_SETTINGS["pc"], np.float64))
        return arrays
    return make_sample_data()


def make_ebsd_sample() -> list:
    """napari layer data: patterns (4-D, hidden), navigator, and the true phase map.

    The labelled training patterns are attached to the navigator's metadata
    (``train_patterns``, ``train_labels``) so the EBSD widget can train on them.
    """
    from ._ebsd_reader import layer_data_for
    from ..io.ebsd._common import PatternData

    from ._kit import show_scale_bar_in_current_viewer

    show_scale_bar_in_current_viewer()  # the sample's map is in micrometres (0.5 um steps)
    arrays = load_sample_arrays()
    data = PatternData(arrays["patterns"], (0.5, 0.5), "sample", "simulated Ni + Ni3Al", {},
                       projection_centre=tuple(float(v) for v in arrays["projection_centre"]))
    layers = layer_data_for(data, "Ni-Ni3Al sample")
    nav_meta = layers[1][1]["metadata"]
    nav_meta["train_patterns"] = arrays["train_patterns"]
    nav_meta["train_labels"] = arrays["train_labels"]
    truth = arrays["phase_map"].astype(np.int32)
    place = {k: layers[1][1][k] for k in ("scale", "units") if k in layers[1][1]}
    layers.append((truth, {"name": "Ni-Ni3Al true space groups", "visible": False, **place,
                           "metadata": {"ebsd": True, "role": "ground truth"}}, "labels"))
    return layers
