"""Physics of the domain-randomised simulator: symmetry, absences, band geometry, noise."""

import numpy as np
import pytest

from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.ebsd.simulate import symmetry as Y
from napari_microstructure.core.errors import MicrostructureError

R = np.arange(-6, 7)
HKL = np.stack(np.meshgrid(R, R, R, indexing="ij"), -1).reshape(-1, 3)
HKL = HKL[np.abs(HKL).sum(1) > 0]


def _present(positions, hkl=HKL):
    f = np.exp(2j * np.pi * hkl @ np.asarray(positions).T).sum(1)
    return np.abs(f) > 1e-6 * len(positions)


@pytest.mark.parametrize("sg", S.SPACE_GROUPS)
def test_operations_form_the_space_group(sg):
    ops = Y.operations(sg)
    cent = Y.centring_vectors(sg)
    assert len(ops) == 48
    keys = {Y._key(r, t + c) for r, t in ops for c in cent}
    for r1, t1 in ops:  # closed under composition modulo the lattice
        for r2, t2 in ops:
            assert Y._key(r2 @ r1, r2 @ t1 + t2) in keys
    general = Y.orbit(sg, (0.1234, 0.3761, 0.0517))
    assert len(general) == 48 * len(cent)


@pytest.mark.parametrize("sg", S.SPACE_GROUPS)
def test_general_position_absences_follow_the_reflection_conditions(sg):
    # structure factors of a general orbit are zero exactly where ITA's conditions forbid
    pos = Y.orbit(sg, (0.1234, 0.3761, 0.0517))
    np.testing.assert_array_equal(_present(pos), Y.allowed_reflections(sg, HKL))


def test_reflection_conditions_by_hand():
    a = Y.allowed_reflections
    h = np.array
    # fcc: all even or all odd
    assert a(225, h([[1, 1, 1], [2, 0, 0], [2, 2, 0], [3, 1, 1]])).all()
    assert not a(225, h([[1, 0, 0], [1, 1, 0], [2, 1, 0]])).any()
    # bcc: h + k + l even
    assert a(229, h([[1, 1, 0], [2, 0, 0], [2, 1, 1]])).all() and not a(229, h([[1, 0, 0], [1, 1, 1]])).any()
    # diamond: fcc and 0kl: k + l = 4n
    assert a(227, h([[1, 1, 1], [2, 2, 0], [4, 0, 0], [3, 1, 1]])).all()
    assert not a(227, h([[2, 0, 0], [4, 2, 0], [1, 0, 0]])).any()
    # Pm-3n: hhl with l odd absent, so (100) and (111) absent
    assert not a(223, h([[1, 1, 1], [1, 0, 0], [2, 2, 1], [3, 3, 1]])).any()
    assert a(223, h([[2, 1, 0], [1, 1, 0], [2, 0, 0], [2, 1, 1], [3, 2, 1]])).all()
    # Ia-3d: I; 0kl: k, l even; hhl: 2h + l = 4n; h00: h = 4n
    assert a(230, h([[2, 1, 1], [4, 0, 0], [4, 2, 0], [3, 2, 1], [2, 2, 0], [1, 1, 2]])).all()
    assert not a(230, h([[1, 1, 0], [2, 0, 0], [3, 1, 0], [1, 1, 4], [2, 2, 2]])).any()
    assert a(221, h([[1, 0, 0], [1, 1, 1]])).all()


def _visible_hkl(structure, min_weight=1e-3):
    return S.reflectors(structure, min_weight=min_weight, d_min=0.7).hkl


def test_named_structures_show_their_own_absences():
    ni = _visible_hkl(S.ALL_MATERIALS["Ni"])
    par = ni % 2
    assert np.all((par.sum(1) == 0) | (par.sum(1) == 3))
    si = _visible_hkl(S.ALL_MATERIALS["Si"])
    even = np.all(si % 2 == 0, 1)
    assert even.any() and np.all(si[even].sum(1) % 4 == 0)  # diamond: h + k + l = 4n for all-even
    fe = _visible_hkl(S.ALL_MATERIALS["Fe"])
    assert np.all(fe.sum(1) % 2 == 0)
    ni3al = _visible_hkl(S.ALL_MATERIALS["Ni3Al"])
    assert any(np.array_equal(np.sort(np.abs(g)), [0, 0, 1]) for g in ni3al)  # primitive: (100) present
    for name, sg in (("Cr3Si", 223), ("Al4Ni3", 230), ("Y3Al5O12", 230), ("Ca3Al2Si3O12", 230)):
        hkl = _visible_hkl(S.ALL_MATERIALS[name])
        assert Y.allowed_reflections(sg, hkl).all(), name
    # A15 shows reflections that a bcc cell forbids (h + k + l odd)
    assert not Y.allowed_reflections(229, _visible_hkl(S.ALL_MATERIALS["Cr3Si"])).all()


def test_unambiguous_labels():
    assert S.is_unambiguous(S.ALL_MATERIALS["Ni3Al"])
    assert S.is_unambiguous(S.ALL_MATERIALS["Cr3Si"])
    assert S.is_unambiguous(S.ALL_MATERIALS["Al4Ni3"])
    b2_equal = S.CubicStructure("B2-equal", 221, 2.9, ((26, 0, 0, 0), (26, .5, .5, .5)))
    assert not S.is_unambiguous(b2_equal)  # that is bcc (229)
    a15_2a = S.CubicStructure("A15-2a", 223, 4.6, tuple((14, *p) for p in Y.orbit(223, (0, 0, 0))))
    assert not S.is_unambiguous(a15_2a)  # atoms on 2a only: bcc
    assert S.consistent_space_groups(b2_equal)[-1] == 229


def test_wavelength_and_band_geometry():
    assert S.electron_wavelength(20) == pytest.approx(0.08588, abs=2e-4)
    assert S.electron_wavelength(10) == pytest.approx(0.12205, abs=2e-4)
    # one reflector along z: pixels with |r . z| < sin(theta_B) are in the band
    hw = 0.05
    refl = S.Reflectors(np.array([[0, 1.0, 0]], np.float32), np.array([hw], np.float32),
                        np.array([1.0], np.float32))
    dirs = S.detector_directions((41, 41), (0.5, 0.5, 0.6))
    img = S.band_image(refl, np.eye(3)[None], dirs)[0]
    t = np.abs(dirs[:, 1])
    assert img[t < 0.5 * hw].min() > img[t > 2 * hw].max()
    # a horizontal band through the projection centre (PCy = 0.5): centre row brightest
    rows = img.reshape(41, 41).mean(1)
    assert rows.argmax() == 20
    # unnormalised: the band's weight times its profile, about 1 inside and 0 far outside; additive
    raw = S.band_image(refl, np.eye(3)[None], dirs, normalise=False)[0]
    assert raw[t < 0.2 * hw].min() > 0.9 and raw[t > 3 * hw].max() < 0.01
    two = S.Reflectors(np.array([[0, 1.0, 0], [1.0, 0, 0]], np.float32), np.array([hw, hw], np.float32),
                       np.array([1.0, 0.3], np.float32))
    other = S.Reflectors(two.normals[1:], two.half_width[1:], np.array([1.0], np.float32))
    np.testing.assert_allclose(S.band_image(two, np.eye(3)[None], dirs, normalise=False)[0],
                               raw + 0.3 * S.band_image(other, np.eye(3)[None], dirs, normalise=False)[0], atol=1e-5)
    np.testing.assert_allclose(img, (raw - raw.mean()) / (raw.std() + 1e-6), atol=1e-4)


def test_reflector_half_width_is_the_bragg_angle():
    refl = S.reflectors(S.ALL_MATERIALS["Ni"], kv=20.0)
    d = 3.524 / np.sqrt((refl.hkl ** 2).sum(1))
    np.testing.assert_allclose(refl.half_width, S.electron_wavelength(20) / (2 * d), rtol=1e-5)


def _families(hkl):
    return {tuple(sorted(np.abs(h).tolist(), reverse=True)) for h in hkl}


@pytest.mark.parametrize("debye_waller", [1.5, 2.5, 3.5])
def test_the_reflector_cap_keeps_the_ordered_phases_superlattice_bands(debye_waller):
    # the bands that tell B2 from bcc and L1_2 from fcc are weak low-index families; a cap on the
    # strongest reflectors alone dropped them in most sessions, leaving NiAl a bcc pattern
    for name, superlattice in (("NiAl", {(1, 0, 0), (1, 1, 1), (2, 1, 0)}),
                               ("Ni3Al", {(1, 0, 0), (1, 1, 0), (2, 1, 0)}),
                               ("Cu3Au", {(1, 0, 0), (1, 1, 0), (2, 1, 0)})):
        for kv in (10.0, 20.0, 30.0):
            refl = S.reflectors(S.ALL_MATERIALS[name], kv, d_min=0.6, min_weight=0.02,
                                debye_waller=debye_waller, max_reflectors=100, scattering="z23")
            assert superlattice <= _families(refl.hkl), (name, kv)
            assert len(refl.hkl) <= 100
    fe = S.reflectors(S.ALL_MATERIALS["Fe"], 20.0, d_min=0.6, debye_waller=debye_waller, max_reflectors=100,
                      scattering="z23")
    assert not {(1, 0, 0), (1, 1, 1), (2, 1, 0)} & _families(fe.hkl)  # bcc: absent, not merely weak


def test_the_reflector_cap_keeps_whole_families():
    rng = np.random.default_rng(11)
    structures = [S.ALL_MATERIALS[n] for n in ("Cr3Si", "Si", "Y3Al5O12", "Al4Ni3", "CaF2")]
    structures += [S.random_structure(sg, rng) for sg in S.SPACE_GROUPS]
    for structure in structures:
        full = S.reflectors(structure, 20.0, d_min=0.6, debye_waller=2.0)
        capped = S.reflectors(structure, 20.0, d_min=0.6, debye_waller=2.0, max_reflectors=60)
        kept = _families(capped.hkl)
        count = {f: 0 for f in kept}
        for h in full.hkl:
            f = tuple(sorted(np.abs(h).tolist(), reverse=True))
            if f in count:
                count[f] += 1
        for f in kept:  # every equivalent of a kept family is kept
            assert sum(tuple(sorted(np.abs(h).tolist(), reverse=True)) == f for h in capped.hkl) == count[f]
        if len(full.hkl) > 60:
            # the strongest family is always among them, and the cap holds unless low-index families need more
            assert _families(full.hkl[[np.argmax(full.weight)]]) <= kept
            low = S.reflectors(structure, 20.0, d_min=0.6, debye_waller=2.0, max_reflectors=1)
            assert len(capped.hkl) <= max(60, len(low.hkl))


def test_jittered_families_keep_their_symmetry_and_absences():
    from napari_microstructure.core.ebsd.simulate.domain import jitter_families

    refl = S.reflectors(S.ALL_MATERIALS["Cr3Si"], 20.0, d_min=0.6, debye_waller=2.0)
    out = jitter_families(refl, 0.8, np.random.default_rng(4))
    np.testing.assert_array_equal(out.hkl, refl.hkl)  # nothing added: forbidden families stay absent
    assert out.weight.max() == pytest.approx(1.0)
    ratio = out.weight / refl.weight
    families = {}
    for h, r in zip(refl.hkl, ratio):
        families.setdefault(tuple(sorted(np.abs(h).tolist())), []).append(r)
    assert all(np.ptp(v) < 1e-5 * max(v) for v in families.values())  # one factor per family
    factors = np.array([v[0] for v in families.values()])
    assert np.std(np.log(factors)) > 0.3  # and the families do differ
    assert jitter_families(refl, 0.0, np.random.default_rng(4)) is refl
    for bad in (-1.0, float("nan")):
        with pytest.raises(MicrostructureError, match="finite spread"):
            jitter_families(refl, bad, np.random.default_rng(4))


def test_domain_sessions_are_reproducible_and_labelled():
    out1 = S.simulate_space_groups([221, 230], 4, np.random.default_rng(5))
    out2 = S.simulate_space_groups([221, 230], 4, np.random.default_rng(5))
    out3 = S.simulate_space_groups([221, 230], 4, np.random.default_rng(6))
    for (p1, sg1, s1), (p2, sg2, _), (p3, _, _) in zip(out1, out2, out3):
        np.testing.assert_array_equal(p1, p2)
        assert sg1 == sg2 == s1.structure.space_group
        assert p1.shape[1:] == s1.geometry.shape and p1.dtype in (np.uint8, np.uint16)
        assert p1.shape != p3.shape or np.any(p1 != p3)


def test_held_out_prototypes_never_in_training():
    train = S.StructureSampler("train", prototype_fraction=1.0)
    held = S.StructureSampler("heldout", prototype_fraction=1.0)
    rng = np.random.default_rng(0)
    names = {train.draw(sg, rng).name for sg in S.SPACE_GROUPS for _ in range(8)}
    assert names and not names & set(S.HELD_OUT_PROTOTYPES)
    held_names = {held.draw(sg, rng).name for sg in S.SPACE_GROUPS for _ in range(3)}
    assert held_names <= set(S.HELD_OUT_PROTOTYPES)
    with pytest.raises(MicrostructureError, match="space group 194"):
        train.draw(194, rng)


def test_random_structures_belong_to_their_group():
    rng = np.random.default_rng(3)
    for sg in S.SPACE_GROUPS:
        s = S.random_structure(sg, rng)
        hkl, _, amp = S.structure_factors(s, d_min=0.8)
        present = hkl[amp > 1e-6 * amp.max()]
        assert Y.allowed_reflections(sg, present).all()


def test_noise_statistics_binning_and_defects():
    geo = S.DetectorGeometry((20, 24), 2, (0.5, 0.3, 0.6))
    flat = np.zeros((200, 40, 48), np.float32)
    rng = np.random.default_rng(0)
    acq = S.Acquisition(counts=400, read_noise=0.0, contrast=0.0, blur_px=0.0, lobe_floor=1.0,
                        vignetting_power=0.0, dynamic_amplitude=0.0, flat_field=0.0, hot_fraction=0.0,
                        fill=0.5, dtype="uint16")
    pats = S.acquire(flat, geo, acq, rng).astype(float)
    assert pats.shape == (200, 20, 24)
    # 2 x 2 binning of Poisson(400) -> 1600 electrons, scaled to 0.5 * 4095
    scale = 0.5 * 4095 / 1600
    assert pats.mean() == pytest.approx(1600 * scale, rel=0.01)
    assert pats.std() == pytest.approx(np.sqrt(1600) * scale, rel=0.1)
    hot = S.acquire(flat[:3], geo, S.Acquisition(hot_fraction=0.01, fill=0.3), rng)
    assert hot.dtype == np.uint8 and (hot == 255).all(0).sum() >= 1
