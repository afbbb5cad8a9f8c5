"""Regenerate the EBSD sample data shipped in src/napari_microstructure/data/ebsd/.

Usage::

    PYTHONPATH=src python scripts/make_ebsd_sample.py

It runs the package's own NumPy simulator
(:func:`napari_microstructure.core.ebsd.simulate.make_sample_data`, settings
in ``SAMPLE_SETTINGS``): a 30 x 40 map of 40 x 40 patterns of a Ni (space
group 225) matrix with cube-on-cube Ni3Al (221) precipitates, and 150
labelled training patterns per phase. Deterministic (fixed seeds).
"""

from pathlib import Path

from napari_microstructure.core.ebsd.simulate import write_sample_data

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "src" / "napari_microstructure" / "data" / "ebsd"
    out.mkdir(parents=True, exist_ok=True)
    path = write_sample_data(out / "dual_phase_sample.npz")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
