"""The NumPy Kikuchi-pattern simulator: extinction rules and determinism."""

import numpy as np

from napari_microstructure.core.ebsd import simulate as S


def _hkl(name):
    refl = S.reflectors(S.MATERIALS[name], min_weight=1e-3)
    a = S.MATERIALS[name].a
    d = S.electron_wavelength(20) / (2 * refl.half_width)
    g = refl.normals * (a / d)[:, None]
    return np.rint(g).astype(int), refl.weight


def test_fcc_extinction():
    hkl, _ = _hkl("Ni")
    parity = hkl % 2
    assert np.all((parity.sum(1) == 0) | (parity.sum(1) == 3))


def test_bcc_extinction():
    hkl, _ = _hkl("Fe")
    assert np.all(hkl.sum(1) % 2 == 0)


def test_diamond_extinction():
    hkl, _ = _hkl("Si")
    even = np.all(hkl % 2 == 0, 1)
    assert np.all(hkl[even].sum(1) % 4 == 0)


def test_l12_superlattice_bands_are_weak():
    hkl, w = _hkl("Ni3Al")
    parity = hkl % 2
    mixed = (parity.sum(1) == 1) | (parity.sum(1) == 2)
    assert mixed.any()
    assert w[mixed].max() < 0.5 * w[~mixed].max()


def test_patterns_are_reproducible_and_noisy():
    rot = S.random_rotations(3, np.random.default_rng(1))
    a = S.simulate_patterns("W", rot, (32, 40), rng=np.random.default_rng(2))
    b = S.simulate_patterns("W", rot, (32, 40), rng=np.random.default_rng(2))
    c = S.simulate_patterns("W", rot, (32, 40), rng=np.random.default_rng(3))
    assert a.shape == (3, 32, 40) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


def test_dual_phase_map():
    pats, phase = S.simulate_dual_phase_map((6, 7), (24, 24), n_grains=3, n_precipitates=2, seed=0)
    assert pats.shape == (6, 7, 24, 24) and phase.shape == (6, 7)
    assert set(np.unique(phase)) <= {0, 1}
