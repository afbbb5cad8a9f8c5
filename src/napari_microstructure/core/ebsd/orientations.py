"""Crystal orientations in the sample frame, from the band indexer's detector-frame rotations.

:class:`~.bands.BandIndexer` (and so :class:`~.bandclassifier.BandProfileClassifier`)
finds each pattern's crystal-to-detector rotation ``R``: ``R @ v`` is a crystal
direction ``v`` in the detector frame of :func:`~.bands.pixel_directions` (x to
the right, y up, z from the screen towards the source). EBSD software wants
the orientation in the *sample* frame, as Bunge Euler angles.

Conventions (those of orix and kikuchipy, checked against kikuchipy 0.13.1):

- the sample-to-detector rotation ``S`` of a sample tilted by ``sample_tilt``
  degrees about the detector's x axis towards a screen tilted by
  ``detector_tilt`` degrees is, with ``a = 90 - sample_tilt + detector_tilt``::

      S = [[0, 1, 0], [-cos a, 0, sin a], [sin a, 0, cos a]]

  (kikuchipy's ``EBSDDetector.sample_to_detector`` with no azimuthal or
  twist angle);
- the orientation matrix ``g`` takes sample to crystal coordinates (orix's
  ``Rotation.to_matrix()``, Bunge's passive convention), so ``R = S @ g.T`` and
  ``g = R.T @ S``;
- Bunge Euler angles ``(phi1, Phi, phi2)`` in radians:
  ``g = Rz(phi2) Rx(Phi) Rz(phi1)``.

On 24 patterns simulated by kikuchipy from its Ni master pattern at random
orientations (sample tilt 70 degrees, detector tilt 0 and 8 degrees), the
orientations found this way lie a median 0.7-0.8 degrees from kikuchipy's
(``docs/ebsd.md``).

A cubic orientation is defined up to the 24 rotations of the cubic point
group; the angles returned are those of the rotation the search found.
"""

from __future__ import annotations

import numpy as np

from ..errors import MicrostructureError


#: Plausible tilts (degrees): the sample's from the horizontal, the detector's from the vertical. The one
#: range of the readers (a file's tilt outside it is ignored), the widget's Tilts fields and the command line.
TILT_RANGES = {"sample_tilt_deg": (0.0, 90.0), "detector_tilt_deg": (-45.0, 45.0)}
#: Tilts (degrees) when the acquisition gives none: the usual EBSD geometry.
DEFAULT_TILTS = {"sample_tilt_deg": 70.0, "detector_tilt_deg": 0.0}


def plausible_tilt(name: str, value: float) -> bool:
    """True when ``value`` (degrees) is a finite tilt inside ``TILT_RANGES[name]``."""
    lo, hi = TILT_RANGES[name]
    return bool(np.isfinite(float(value)) and lo <= float(value) <= hi)


def sample_to_detector(sample_tilt_deg: float = 70.0, detector_tilt_deg: float = 0.0) -> np.ndarray:
    """Rotation (3, 3) from the sample frame to the detector frame (see the module docstring).

    Parameters
    ----------
    sample_tilt_deg : float
        Sample tilt from the horizontal in degrees (usually 70).
    detector_tilt_deg : float
        Tilt of the screen from the vertical in degrees (usually 0-10).
    """
    for name, value in (("sample_tilt_deg", sample_tilt_deg), ("detector_tilt_deg", detector_tilt_deg)):
        if not plausible_tilt(name, value):
            lo, hi = TILT_RANGES[name]
            raise MicrostructureError(
                f"{name}={value!r} degrees is implausible; give a value in [{lo:g}, {hi:g}] "
                "(sample tilt usually 70, detector tilt 0-10: see the acquisition's metadata)")
    a = np.deg2rad(90.0 - float(sample_tilt_deg) + float(detector_tilt_deg))
    return np.array([[0.0, 1.0, 0.0], [-np.cos(a), 0.0, np.sin(a)], [np.sin(a), 0.0, np.cos(a)]])


def orientation_matrices(rotations: np.ndarray, sample_tilt_deg: float = 70.0,
                         detector_tilt_deg: float = 0.0) -> np.ndarray:
    """Sample-to-crystal orientation matrices ``g = R.T @ S`` of crystal-to-detector rotations ``R``.

    Parameters
    ----------
    rotations : ndarray (..., 3, 3)
        Crystal-to-detector rotations (``predict_uncertainty(...)["rotations"]``).
    sample_tilt_deg, detector_tilt_deg : float
        See :func:`sample_to_detector`.

    Returns
    -------
    ndarray (..., 3, 3) float64
    """
    r = np.asarray(rotations, np.float64)
    if r.ndim < 2 or r.shape[-2:] != (3, 3) or not np.all(np.isfinite(r)):
        raise MicrostructureError(
            f"rotations have shape {r.shape}; give finite (..., 3, 3) rotation matrices, e.g. "
            "BandProfileClassifier.predict_uncertainty(patterns)['rotations']")
    s = sample_to_detector(sample_tilt_deg, detector_tilt_deg)
    return np.swapaxes(r, -1, -2) @ s


def bunge_euler(matrices: np.ndarray) -> np.ndarray:
    """Bunge Euler angles ``(phi1, Phi, phi2)`` in radians of orientation matrices ``g`` (..., 3, 3).

    ``phi1`` and ``phi2`` in [0, 2 pi), ``Phi`` in [0, pi]. When ``Phi`` is 0 or
    pi only ``phi1 +- phi2`` is defined; ``phi2`` is then 0.
    """
    g = np.asarray(matrices, np.float64)
    cos_big = np.clip(g[..., 2, 2], -1.0, 1.0)
    big = np.arccos(cos_big)
    phi1 = np.arctan2(g[..., 2, 0], -g[..., 2, 1])
    phi2 = np.arctan2(g[..., 0, 2], g[..., 1, 2])
    degenerate = np.abs(np.sin(big)) < 1e-6
    # Phi = 0 or pi: the top-left block is a rotation by phi1 + phi2 or phi1 - phi2; put it all in phi1
    phi1 = np.where(degenerate, np.arctan2(g[..., 0, 1], g[..., 0, 0]), phi1)
    phi2 = np.where(degenerate, 0.0, phi2)
    return np.stack([np.mod(phi1, 2 * np.pi), big, np.mod(phi2, 2 * np.pi)], -1)


def euler_matrices(euler: np.ndarray) -> np.ndarray:
    """Orientation matrices ``g`` (..., 3, 3) of Bunge Euler angles in radians (the inverse of :func:`bunge_euler`)."""
    e = np.asarray(euler, np.float64)
    c1, s1 = np.cos(e[..., 0]), np.sin(e[..., 0])
    c, s = np.cos(e[..., 1]), np.sin(e[..., 1])
    c2, s2 = np.cos(e[..., 2]), np.sin(e[..., 2])
    return np.stack([
        np.stack([c1 * c2 - s1 * s2 * c, s1 * c2 + c1 * s2 * c, s2 * s], -1),
        np.stack([-c1 * s2 - s1 * c2 * c, -s1 * s2 + c1 * c2 * c, c2 * s], -1),
        np.stack([s1 * s, -c1 * s, c], -1),
    ], -2)


def sample_euler(rotations: np.ndarray, sample_tilt_deg: float = 70.0,
                 detector_tilt_deg: float = 0.0) -> np.ndarray:
    """Bunge Euler angles (..., 3) in radians, sample frame, of crystal-to-detector rotations.

    What :func:`napari_microstructure.io.ebsd.export.write_map` writes to
    ``.ang`` / ``.ctf`` files (orix and kikuchipy read them back as the same
    orientations).
    """
    return bunge_euler(orientation_matrices(rotations, sample_tilt_deg, detector_tilt_deg))


def ipf_colours(matrices: np.ndarray, direction=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Inverse-pole-figure colours (..., 3) in [0, 1] of cubic orientations for a sample direction.

    The sample ``direction`` (default the surface normal, Z: an "IPF-Z" map)
    in crystal coordinates, ``g @ direction``, is brought into the standard
    triangle of the cubic Laue class m-3m (absolute values, sorted: ``a <= b <=
    c``), then coloured by its position in the triangle: [001] red, [101]
    green, [111] blue (``(c - b, b - a, a)`` scaled to a largest channel of 1,
    the usual cubic key up to its saturation curve).

    Parameters
    ----------
    matrices : ndarray (..., 3, 3)
        Orientation matrices ``g`` (sample to crystal), e.g.
        ``euler_matrices(result.sample_euler())``.
    direction : (float, float, float)
        Sample direction, need not be unit length.
    """
    d = np.asarray(direction, np.float64)
    if d.shape != (3,) or not np.all(np.isfinite(d)) or not np.linalg.norm(d) > 0:
        raise MicrostructureError(f"direction={direction!r}; give a sample direction such as (0, 0, 1)")
    v = np.sort(np.abs(np.asarray(matrices, np.float64) @ (d / np.linalg.norm(d))), axis=-1)
    a, b, c = v[..., 0], v[..., 1], v[..., 2]
    rgb = np.stack([c - b, b - a, a], -1)
    return rgb / np.maximum(rgb.max(-1, keepdims=True), 1e-12)
