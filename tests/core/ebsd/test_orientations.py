"""Sample-frame orientations of the band indexer's rotations (conventions of orix and kikuchipy)."""

import numpy as np
import pytest

from napari_microstructure import BandProfileClassifier, MicrostructureError
from napari_microstructure.core.ebsd import bands as B
from napari_microstructure.core.ebsd import orientations as O
from napari_microstructure.core.ebsd import simulate as S


def test_sample_to_detector_matches_kikuchipy():
    """Reference values: kikuchipy 0.13.1, ``EBSDDetector(sample_tilt=70, tilt=...).sample_to_detector``."""
    np.testing.assert_allclose(O.sample_to_detector(70, 0),
                               [[0, 1, 0], [-0.939693, 0, 0.342020], [0.342020, 0, 0.939693]], atol=1e-6)
    np.testing.assert_allclose(O.sample_to_detector(70, 8),
                               [[0, 1, 0], [-0.882948, 0, 0.469472], [0.469472, 0, 0.882948]], atol=1e-6)


# Detector-frame rotations the band indexer found on Ni patterns that kikuchipy 0.13.1 simulated
# (master pattern, 60 x 60, pc (0.425, 0.213, 0.501), sample tilt 70, detector tilt as given),
# with kikuchipy's Bunge Euler angles (degrees) of the orientations it simulated.
KIKUCHIPY_REFERENCE = [
    (0, [[0.81571, 0.19678, 0.54396], [-0.37864, 0.89255, 0.24491], [-0.43732, -0.40575, 0.80257]],
     [175.14, 33.08, 262.36]),
    (0, [[0.81259, 0.13694, 0.56651], [0.14397, 0.89472, -0.42279], [-0.56477, 0.42512, 0.70733]],
     [78.35, 134.97, 47.03]),
    (0, [[0.6318, 0.34609, 0.69358], [-0.59531, 0.78971, 0.14823], [-0.49643, -0.50654, 0.70496]],
     [149.17, 132.34, 74.7]),
    (8, [[0.8997, 0.26293, 0.34844], [0.00025, 0.79793, -0.60275], [-0.43651, 0.54238, 0.71783]],
     [59.31, 148.91, 221.88]),
    (8, [[0.81117, -0.29324, -0.50598], [-0.01779, 0.85243, -0.52253], [0.58454, 0.43286, 0.68625]],
     [298.8, 38.19, 124.9]),
    (8, [[0.92603, 0.37734, 0.00908], [-0.37725, 0.92606, -0.01008], [-0.01221, 0.00591, 0.99991]],
     [91.32, 28.41, 247.29]),
]


@pytest.mark.parametrize("tilt, found, euler_deg", KIKUCHIPY_REFERENCE)
def test_orientations_agree_with_kikuchipys_simulated_ones(tilt, found, euler_deg):
    g = O.orientation_matrices(np.array([found]), 70, tilt)[0]
    g_true = O.euler_matrices(np.radians(euler_deg))
    assert B.misorientation_deg(g.T, g_true.T) < 1.0  # the search's own error is 0.2-0.7 degrees here
    # with the transpose or the other tilt the answer is far off
    assert B.misorientation_deg(O.orientation_matrices(np.array([found]).transpose(0, 2, 1), 70, tilt)[0].T,
                                g_true.T) > 5
    assert B.misorientation_deg(O.orientation_matrices(np.array([found]), 70, 8 - tilt)[0].T, g_true.T) > 5


def test_bunge_euler_round_trip_and_reference_rotation():
    rng = np.random.default_rng(0)
    e = np.c_[rng.uniform(0, 2 * np.pi, 200), np.arccos(rng.uniform(-1, 1, 200)), rng.uniform(0, 2 * np.pi, 200)]
    e[:3, 1], e[3:6, 1] = 0.0, np.pi  # gimbal-locked: only phi1 +- phi2 is defined
    g = O.euler_matrices(e)
    np.testing.assert_allclose(O.euler_matrices(O.bunge_euler(g)), g, atol=1e-12)
    np.testing.assert_allclose(O.bunge_euler(g)[6:], e[6:], atol=1e-9)
    assert np.all(O.bunge_euler(g)[:6, 2] == 0)
    # Bunge (90, 0, 0): the sample's x axis is the crystal's -y (passive rotation about z)
    np.testing.assert_allclose(O.euler_matrices(np.radians([90.0, 0.0, 0.0])) @ [1, 0, 0], [0, -1, 0], atol=1e-12)


def test_maps_keep_the_orientations_in_memory_and_in_a_store(tmp_path):
    rng = np.random.default_rng(7000)
    session = S.sample_session(S.ALL_MATERIALS["Ni"], rng)
    rot = S.random_rotations(8, rng)
    pats = S.simulate_session(session, 8, rng, rotations=rot, pc_scan=0.0)
    clf = BandProfileClassifier.from_pretrained(pc=session.geometry.pc)
    u = clf.predict_uncertainty(pats)
    g_found, g_true = O.orientation_matrices(u["rotations"], 70, 5), O.orientation_matrices(rot, 70, 5)
    err = np.array([B.misorientation_deg(a.T, b.T) for a, b in zip(g_found, g_true)])
    assert np.mean(err < 3.0) >= 0.75, err.round(1)
    res = clf.classify_map(pats.reshape(2, 4, *pats.shape[1:]), background=None)
    np.testing.assert_allclose(O.euler_matrices(res.sample_euler(70, 5)).reshape(8, 3, 3), g_found, atol=1e-5)
    stored = clf.classify_map(pats.reshape(2, 4, *pats.shape[1:]), background=None, store=tmp_path / "m.zarr")
    np.testing.assert_allclose(stored.sample_euler(70, 5), res.sample_euler(70, 5), atol=1e-6)
    np.testing.assert_allclose(res.ipf_colours(70, 5), O.ipf_colours(g_found).reshape(2, 4, 3), atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(sample_tilt_deg=700), "sample_tilt_deg=700 degrees is implausible"),
    (dict(detector_tilt_deg=float("nan")), "detector_tilt_deg=nan"),
])
def test_implausible_tilts_are_named(kwargs, match):
    with pytest.raises(MicrostructureError, match=match):
        O.sample_euler(np.eye(3)[None], **kwargs)


def test_bad_rotations_are_named():
    with pytest.raises(MicrostructureError, match=r"rotations have shape \(3,\)"):
        O.sample_euler(np.ones(3))


def test_ipf_colours_of_the_triangle_corners():
    """Z along [001] red, [101] green, [111] blue, whatever the equivalent variant."""
    def with_z_along(v):  # an orientation whose sample Z is the crystal direction v
        z = np.asarray(v, float) / np.linalg.norm(v)
        x = np.cross(z, [0.3, 0.5, 0.8])
        x /= np.linalg.norm(x)
        return np.stack([x, np.cross(z, x), z], 1)  # columns: sample x, y, z in crystal coordinates

    corners = {(0, 0, 1): [1, 0, 0], (0, -1, 0): [1, 0, 0], (1, 0, 1): [0, 1, 0], (0, -1, 1): [0, 1, 0],
               (1, 1, 1): [0, 0, 1], (-1, 1, -1): [0, 0, 1]}
    for v, rgb in corners.items():
        g = with_z_along(v)
        np.testing.assert_allclose(g @ [0, 0, 1], np.asarray(v) / np.linalg.norm(v), atol=1e-12)
        np.testing.assert_allclose(O.ipf_colours(g), rgb, atol=1e-9)
    mid = O.ipf_colours(with_z_along((1, 2, 5)))
    assert mid.max() == pytest.approx(1) and np.all(mid > 0.1)  # inside the triangle: a mixture
    with pytest.raises(MicrostructureError, match="direction="):
        O.ipf_colours(np.eye(3), direction=(0, 0, 0))
