"""Electron scattering factors and the band weights of the simulator's default model."""

import numpy as np
import pytest

from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.ebsd.simulate import domain
from napari_microstructure.core.ebsd.simulate.kinematics import structure_factors
from napari_microstructure.core.ebsd.simulate.scattering import (DOYLE_TURNER, scattering_factor,
                                                                  site_scattering_factor)
from napari_microstructure.core.errors import MicrostructureError

# Contrast of Ni's first-order band families relative to {111} in kikuchipy's dynamical (EMsoft)
# Ni patterns at 20 kV, measured by benchmarks/bench_ebsd_band_contrast.py (the same to 0.01 at
# 60 x 80, 120 x 160 and 480 x 640 pixels)
DYNAMICAL_NI = {(2, 0, 0): 0.886, (2, 2, 0): 0.416, (3, 1, 1): 0.275, (3, 3, 1): 0.120,
                (4, 2, 0): 0.130, (4, 2, 2): 0.069, (5, 1, 1): 0.048}


def test_doyle_turner_values():
    assert DOYLE_TURNER.shape == (98, 8)
    # f(0) = a1 + a2 + a3 + a4: Ni 6.557 Angstrom; Ca's diffuse outer shell scatters more than Ni at s = 0
    assert scattering_factor(28, 0.0) == pytest.approx(6.557)
    assert scattering_factor(20, 0.0) > scattering_factor(28, 0.0)
    # at the s of the bands (0.25-0.8 / Angstrom) heavier atoms scatter more, and every factor falls with s
    s = np.linspace(0.0, 0.9, 10)
    for z in (6, 13, 28, 79):
        assert np.all(np.diff(scattering_factor(z, s)) < 0)
    assert scattering_factor(79, 0.5) > scattering_factor(28, 0.5) > scattering_factor(13, 0.5)


def test_mixed_sites_average_the_factors_of_their_species():
    s = np.array([0.1, 0.3, 0.6])
    mixed = site_scattering_factor([(28, 0.75), (13, 0.25)], s)
    np.testing.assert_allclose(mixed, 0.75 * scattering_factor(28, s) + 0.25 * scattering_factor(13, s))
    with pytest.raises(ValueError, match="outside the tabulated"):
        scattering_factor(0.5, s)


def test_prototypes_keep_the_species_of_their_mixed_sites():
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(40):
        st = S.draw_prototype("L1_2", rng)
        for z in {a[0] for a in st.atoms}:
            species = st.species(z)
            assert sum(c for _, c in species) == pytest.approx(1.0)
            if len(species) > 1:  # partially ordered: the Z**(2/3)-mean of the species is the site's Z
                seen += 1
                zz = np.array([q for q, _ in species])
                c = np.array([c for _, c in species])
                assert (c @ zz ** (2 / 3)) ** 1.5 == pytest.approx(z)
    assert seen > 10


def _family_weights(scattering):
    hkl, d, amp = structure_factors(S.ALL_MATERIALS["Ni"], d_min=0.6, scattering=scattering)
    fam = {tuple(sorted(np.abs(h).tolist(), reverse=True)): a for h, a in zip(hkl, amp)}
    return {k: fam[k] / fam[(1, 1, 1)] for k in DYNAMICAL_NI}


def test_default_band_weights_follow_the_dynamical_fall_off():
    # the simulator's default model weighs Ni's bands as the dynamical patterns show them
    assert domain.SCATTERING == "electron"
    for k, w in _family_weights("electron").items():
        assert w == pytest.approx(DYNAMICAL_NI[k], abs=0.07), k
    # the first simulator's Z**(2/3) model, at the middle of its range, made high-order bands 2-4 times too strong
    old = _family_weights("z23")
    assert all(old[k] > 2 * DYNAMICAL_NI[k] for k in ((3, 1, 1), (3, 3, 1), (4, 2, 2), (5, 1, 1)))


def test_sessions_draw_the_same_settings_under_either_model():
    a = S.sample_session(S.ALL_MATERIALS["Ni"], np.random.default_rng(4), scattering="electron")
    b = S.sample_session(S.ALL_MATERIALS["Ni"], np.random.default_rng(4), scattering="z23")
    assert a.geometry == b.geometry and a.acquisition == b.acquisition and a.kv == b.kv
    assert 2.0 <= a.debye_waller <= 5.0 and 1.5 <= b.debye_waller <= 3.5
    assert (a.scattering, b.scattering) == ("electron", "z23")
    with pytest.raises(MicrostructureError, match="choose one of electron, z23"):
        S.sample_session(S.ALL_MATERIALS["Ni"], np.random.default_rng(4), scattering="x-ray")


@pytest.mark.parametrize("scattering", ["electron", "z23"])
def test_superlattice_bands_stay_under_the_cap_in_both_models(scattering):
    lo, hi = domain.FALLOFF_RANGES[scattering]
    for b in (lo, hi):
        for name in ("NiAl", "Ni3Al", "Cu3Au"):
            refl = S.reflectors(S.ALL_MATERIALS[name], 20.0, d_min=0.6, min_weight=0.02, debye_waller=b,
                                max_reflectors=100, scattering=scattering)
            fams = {tuple(sorted(np.abs(h).tolist(), reverse=True)) for h in refl.hkl}
            assert {(1, 0, 0), (2, 1, 0)} <= fams, (name, b)
