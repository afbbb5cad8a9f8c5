"""The band-profile space-group classifier on materials it has never seen.

Prints, for :class:`~napari_microstructure.core.ebsd.bandclassifier.BandProfileClassifier`
(the shipped model, trained only on simulated random structures of the
training split; never on a named material):

1. **zero-shot, named materials**: the 25 named materials of the simulator
   (Ni, Cu, Al, Ni3Al, NiAl, Cr3Si, Si, Fe, W, garnets...), each in
   ``--sessions`` random detector / acquisition sessions; per-material
   accuracy, class-weighted precision / recall; orientation-search error
   against the simulated orientation; the confidence's calibration (here and
   in sections ``heldout`` and ``check``);
2. **zero-shot, held-out structures**: structures of the held-out prototypes
   and random structures (``StructureSampler("heldout")``); and, section
   ``structures``, accuracy by kind of structure (each prototype, random
   Wyckoff structures) on both splits, and by how visible the bands that
   tell a structure's group from a more restrictive one are;
3. **few-shot fine-tuning**: 10 / 20 / 50 / 100 / 400 labelled patterns per
   space group of one material per group (set A), labelled either on maps
   holding all six (three maps, one acquisition each: only the crystal tells
   the labels apart; 80 x 80 and 160 x 160 patterns, rendered at full resolution) or on one sample per group (each its own acquisition on the same
   detector, so the acquisition differs with the label too); tested on 40
   other patterns of the same acquisitions (the rest of the user's own
   maps), on new sessions of set A (seen materials) and on set B (other
   materials of the same groups, held out of pretraining and fine-tuning);
   **label check** (section ``check``): ``fit``'s cross-validated estimate of each labelled group
   against the map's other patterns, on six development acquisitions;
4. **dual-phase map** (Ni matrix, Ni3Al precipitates, cube-on-cube): Ni3Al
   fraction against the truth, zero-shot and after fine-tuning on 20
   labelled patterns per phase of the map, drawn anywhere or painted in two
   precipitates and two matrix spots as a user labels, or in two precipitates
   and the matrix around each (five draws each),
   without and with the map given to ``fit`` (``map_patterns``: its grains
   carry the labels to every orientation), and whether ``fit``'s label check
   or the map warned;
5. **no solution**: hexagonal and tetragonal patterns (Ti, Mg, beta-Sn,
   rutile) against cubic ones, at the shipped fit threshold;
6. **speed**: patterns per second of indexing + classification (60 x 60).
7. **real Ni** (kikuchipy's 9 patterns, 225), when ``--ni`` names the dump of
   ``bench_ebsd_real_ni.py --dump`` (with the projection centre);
8. **dynamical Ni** (kikuchipy's EMsoft master pattern: another simulator,
   three detector sizes, noise-free and Poisson), when ``--dyn`` names the
   dump of ``bench_ebsd_real_ni.py --dump-dynamical``.

Usage: ``python benchmarks/bench_ebsd_bands.py [--quick] [--ni ni9.npz]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, painted_labels  # noqa: E402

SET_A = {225: "Ni", 221: "NiAl", 223: "Cr3Si", 227: "Si", 229: "Fe", 230: "Y3Al5O12"}
SET_B = {225: ("Cu", "Al"), 221: ("Ni3Al", "Cu3Au"), 223: ("V3Si", "Nb3Sn"), 227: ("Ge", "C"),
         229: ("W", "Mo"), 230: ("Ca3Al2Si3O12", "Al4Ni3")}


#: Every session is rendered at the detector's full resolution, as a camera records it (not at 64 pixels
#: and interpolated, the simulator's speed shortcut for training data; figures before 2026-11-30 stop 27
#: used that shortcut outside the few-shot maps).
RENDER_HEIGHT = None


def session_of(structure, n, seed, geometry=None, max_reflectors=100, scattering=None):
    """Patterns, simulated rotations and projection centre of one random session.

    ``max_reflectors``: the simulator's cap on rendered bands (None: every band); ``scattering``: its
    scattering-factor model (default the simulator's, ``"electron"``).
    """
    from napari_microstructure.core.ebsd.simulate import random_rotations, sample_session, simulate_session

    rng = np.random.default_rng(seed)
    s = sample_session(structure, rng, geometry=geometry, scattering=scattering)
    rot = random_rotations(n, rng)
    pats = simulate_session(s, n, rng, rotations=rot, pc_scan=0.0, render_height=RENDER_HEIGHT,
                            max_reflectors=max_reflectors or 10 ** 6)
    return pats, rot, s.geometry.pc


def weighted_pr(y, p):
    from sklearn.metrics import precision_recall_fscore_support

    pr, rc, _, _ = precision_recall_fscore_support(y, p, average="weighted", zero_division=0)
    return pr, rc


def calibration_line(clf, proba, truth, indexed=None):
    """The confidence's calibration: mean confidence, accuracy, expected calibration error with the model's
    temperature and with none (the raw network: softmax of log(proba) * temperature); with ``indexed`` (the
    patterns indexed as cubic, which the map gives a space group unless uncertain), also among those."""
    from napari_microstructure.core.ebsd.calibration import expected_calibration_error, softmax

    proba = np.asarray(proba, np.float64)
    y = np.searchsorted(clf.classes_, truth)
    raw = softmax(np.log(np.clip(proba, 1e-30, 1)) * clf.temperature_)
    among = ""
    if indexed is not None:
        i = np.asarray(indexed, bool)
        among = (f"; indexed as cubic ({i.mean():.3f} of the patterns): confidence {proba[i].max(1).mean():.3f} "
                 f"against accuracy {np.mean(proba[i].argmax(1) == y[i]):.3f}, calibration error "
                 f"{expected_calibration_error(proba[i], y[i]):.3f}; the others: confidence "
                 f"{proba[~i].max(1).mean():.3f} against accuracy {np.mean(proba[~i].argmax(1) == y[~i]):.3f}")
    return (f"confidence {proba.max(1).mean():.3f} against accuracy {np.mean(proba.argmax(1) == y):.3f}; "
            f"calibration error {expected_calibration_error(proba, y):.3f} at temperature {clf.temperature_:.2f} "
            f"({expected_calibration_error(raw, y):.3f} at 1, confidence {raw.max(1).mean():.3f}); "
            f"confidence under {clf.confidence_threshold}: {np.mean(proba.max(1) < clf.confidence_threshold):.3f} "
            f"({np.mean(raw.max(1) < clf.confidence_threshold):.3f} at 1){among}")


def zero_shot_named(clf, sessions, per_session):
    from napari_microstructure.core.ebsd.bands import misorientation_deg
    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS

    header(f"zero-shot, named materials ({sessions} sessions x {per_session} patterns each)")
    ys, ps, errs, per, probas, indexed = [], [], [], {}, [], []
    t = time.perf_counter()
    for i, (name, st) in enumerate(ALL_MATERIALS.items()):
        for j in range(sessions):
            pats, rot, pc = session_of(st, per_session, 70000 + 100 * i + j)
            clf.set_params(pc=pc)
            u = clf.predict_uncertainty(pats)
            pred = clf.classes_[u["index"]]
            probas.append(u["probabilities"])
            indexed.append(u["agreement"] > 0)
            errs += [misorientation_deg(a, b) for a, b in zip(u["rotations"], rot)]
            ys += [int(st.space_group)] * len(pred)
            ps += pred.tolist()
            per.setdefault(name, []).extend((pred == int(st.space_group)).tolist())
    ys, ps, errs = np.array(ys), np.array(ps), np.array(errs)
    pr, rc = weighted_pr(ys, ps)
    print(f"accuracy {np.mean(ys == ps):.3f}; class-weighted precision / recall {pr:.3f} / {rc:.3f} "
          f"({len(ys)} patterns, {time.perf_counter() - t:.0f} s)")
    print("per material: " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in per.items()))
    print(f"orientation search: median error {np.median(errs):.2f} deg, within 3 deg {np.mean(errs < 3):.3f}")
    print(calibration_line(clf, np.concatenate(probas), ys, np.concatenate(indexed)))
    return np.mean(ys == ps)


#: The simulator's cap on rendered bands (whole families, strongest first, low-index ones always) and
#: "all", under both scattering models: how much faint high-order clutter surrounds the telling bands.
#: The electron factors match dynamical Ni (bench_ebsd_band_contrast.py), the first simulator's Z^(2/3)
#: model draws high-order bands 2-10 times too strong; the zero-shot answer should depend on neither.
CLUTTER_CAPS = (100, 200, None)
CLUTTER_MATERIALS = ("Ni", "Ni3Al", "Cu3Au", "Fe", "NiAl", "Cr3Si", "Si", "Y3Al5O12")


def clutter(clf, sessions, per_session):
    """Zero-shot on named materials with sessions rendered at several reflector caps (same seeds)."""
    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS

    header(f"zero-shot against rendered clutter: reflector caps {CLUTTER_CAPS} under both scattering models "
           f"({sessions} sessions x {per_session} patterns per material)")
    for scattering in ("electron", "z23"):
        for cap in CLUTTER_CAPS:
            per = {}
            for i, name in enumerate(CLUTTER_MATERIALS):
                st = ALL_MATERIALS[name]
                for j in range(sessions):
                    pats, _, pc = session_of(st, per_session, 71000 + 100 * i + j, max_reflectors=cap,
                                             scattering=scattering)
                    clf.set_params(pc=pc)
                    per.setdefault(name, []).extend((clf.predict(pats) == int(st.space_group)).tolist())
            print(f"{scattering:>8}, cap {cap or 'all'}: accuracy {np.mean([v for vs in per.values() for v in vs]):.3f}; "
                  + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in per.items()), flush=True)


def zero_shot_heldout(clf, sessions, per_session):
    from napari_microstructure.core.ebsd.simulate import SPACE_GROUPS, StructureSampler

    header(f"zero-shot, held-out structures ({sessions} per space group x {per_session} patterns)")
    sampler = StructureSampler("heldout", 0.5)
    ys, ps, probas, indexed = [], [], [], []
    for k, sg in enumerate(SPACE_GROUPS):
        for j in range(sessions):
            rng = np.random.default_rng(90000 + 1000 * k + j)
            pats, _, pc = session_of(sampler.draw(sg, rng), per_session, 91000 + 1000 * k + j)
            clf.set_params(pc=pc)
            u = clf.predict_uncertainty(pats)
            probas.append(u["probabilities"])
            indexed.append(u["agreement"] > 0)
            ps += clf.classes_[u["index"]].tolist()
            ys += [sg] * len(pats)
    ys, ps = np.array(ys), np.array(ps)
    pr, rc = weighted_pr(ys, ps)
    print(f"accuracy {np.mean(ys == ps):.3f}; class-weighted precision / recall {pr:.3f} / {rc:.3f}; "
          "per group: " + ", ".join(f"{sg} {np.mean(ps[ys == sg] == sg):.2f}" for sg in SPACE_GROUPS))
    print(calibration_line(clf, np.concatenate(probas), ys, np.concatenate(indexed)))


#: Lattice-parameter bins (Angstrom) of the by-structure section: in a cell above about 7 A the first orders
#: that carry the centring and glide absences are bands narrower than a pixel of a 60-100 pixel pattern.
CELL_BINS = ((2.0, 7.0), (7.0, 14.0))
#: Relative |F| levels at which a structure's own group is tested for being told from a more restrictive one.
MARGIN_WEIGHTS = (0.03, 0.05, 0.1, 0.2, 0.3, 0.5)


def by_structure(per_group, per_session):
    """Zero-shot accuracy by kind of structure, training split against held-out split.

    Each structure is drawn with its own seed and recorded in one random session. Its *margin* is
    the largest share of the strongest reflection (of :data:`MARGIN_WEIGHTS`) at which the reflections
    above it still tell its group from every more restrictive one (``is_unambiguous(min_weight=...)``):
    0.03 means the bands that tell it apart are at most a few per cent of the strongest.
    """
    from napari_microstructure.core.ebsd.simulate import SPACE_GROUPS, StructureSampler
    from napari_microstructure.core.ebsd.simulate.domain import sample_session, simulate_session
    from napari_microstructure.core.ebsd.simulate.kinematics import is_unambiguous

    header(f"zero-shot by kind of structure: training split (structures drawn afresh) against held-out split "
           f"({per_group} structures per space group x {per_session} patterns, one session each)")
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    for split, seed0 in (("train", 888000), ("heldout", 777000)):
        sampler = StructureSampler(split)
        rows, names = [], []
        for sg in SPACE_GROUPS:
            for k in range(per_group):
                rng = np.random.default_rng(seed0 + 1000 * sg + k)
                st = sampler.draw(sg, rng)
                margin = max([w for w in MARGIN_WEIGHTS if is_unambiguous(st, min_weight=w)], default=0.0)
                session = sample_session(st, rng)
                pats = simulate_session(session, per_session, rng, render_height=RENDER_HEIGHT)
                clf = BandProfileClassifier.from_pretrained(pc=session.geometry.pc)
                u = clf.predict_uncertainty(pats)
                right = np.asarray(clf.classes_)[u["index"]] == sg
                answered = ~u["no_solution"]
                rows.append((sg, margin, right.mean(), answered.mean(),
                             right[answered].mean() if answered.any() else np.nan, st.a))
                names.append("random" if st.name.startswith("random") else st.name)
        r, names = np.array(rows), np.array(names)
        rnd = names == "random"
        print(f"{split}: {len(r)} structures, accuracy {r[:, 2].mean():.3f}; random Wyckoff structures "
              f"{r[rnd, 2].mean():.3f} ({rnd.sum()}), prototypes {r[~rnd, 2].mean():.3f} ({(~rnd).sum()})")
        for w in MARGIN_WEIGHTS:
            sel = r[:, 1] == w
            if sel.any():
                print(f"  margin {w:4.2f}: {sel.sum():3d} structures, accuracy {r[sel, 2].mean():.3f}, answered "
                      f"{r[sel, 3].mean():.2f}, accuracy of the answered {np.nanmean(r[sel, 4]):.3f}")
        for lo, hi in CELL_BINS:
            sel = (r[:, 5] >= lo) & (r[:, 5] < hi)
            if sel.any():
                print(f"  cell {lo:4.1f}-{hi:4.1f} A: {sel.sum():3d} structures, accuracy {r[sel, 2].mean():.3f} "
                      f"(random {r[sel & rnd, 2].mean() if (sel & rnd).any() else float('nan'):.3f}, "
                      f"prototypes {r[sel & ~rnd, 2].mean() if (sel & ~rnd).any() else float('nan'):.3f})")
        for nm in sorted(set(names)):
            sel = names == nm
            print(f"  {nm:<20} {sel.sum():3d} structures ({', '.join(map(str, sorted(set(r[sel, 0].astype(int)))))}): "
                  f"accuracy {r[sel, 2].mean():.3f}, answered {r[sel, 3].mean():.2f}, accuracy of the answered "
                  f"{np.nanmean(r[sel, 4]):.3f}")
        print(f"  per group: " + ", ".join(f"{sg} {r[r[:, 0] == sg, 2].mean():.2f}" for sg in SPACE_GROUPS))


SAME_SESSION_TEST = 40


def labelled_set(n, geometry, acquisition=None):
    """``n`` labelled patterns per group of set A and SAME_SESSION_TEST more of the same acquisitions.

    ``acquisition``: a seed: all six materials recorded in that one acquisition (one map holding
    every phase: the same detector, voltage, noise and blur), so only the crystal tells the
    labels apart. None: each material in its own acquisition on the same detector (reference
    samples recorded separately), where the acquisition differs with the label as well.
    """
    import dataclasses

    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS, sample_session, simulate_session

    pats, ys, same, same_y = [], [], [], []
    if acquisition is not None:
        common = sample_session(ALL_MATERIALS["Ni"], np.random.default_rng(acquisition), geometry=geometry)
    for sg, name in SET_A.items():
        if acquisition is not None:
            rng = np.random.default_rng(acquisition * 1000 + sg * 10 + n)
            # rendered at the detector's full resolution, as a camera records it (not at 64 pixels and
            # interpolated, the simulator's shortcut for training data)
            p = simulate_session(dataclasses.replace(common, structure=ALL_MATERIALS[name]),
                                 n + SAME_SESSION_TEST, rng, pc_scan=0.0, render_height=None)
        else:
            p, _, _ = session_of(ALL_MATERIALS[name], n + SAME_SESSION_TEST, 50000 + sg * 10 + n, geometry)
        pats.append(p[:n])
        same.append(p[n:])
        ys += [sg] * n
        same_y += [sg] * SAME_SESSION_TEST
    return np.concatenate(pats), np.array(ys), np.concatenate(same), np.array(same_y)


def few_shot(shots, test_sessions, per_session, maps=3, sizes=(80, 160)):
    import dataclasses

    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier
    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS, sample_geometry

    header("few-shot fine-tuning: labelled set A (one map of all six, or one sample per group), tested on new sessions")
    # the user's detector: one geometry for the labelled patterns and for the test sessions
    geometry = sample_geometry(np.random.default_rng(5))
    test = {}
    for part, names in (("A", {sg: (n,) for sg, n in SET_A.items()}), ("B", SET_B)):
        pats, ys = [], []
        for sg, group in names.items():
            for k, name in enumerate(group):
                for j in range(test_sessions):
                    p, _, pc = session_of(ALL_MATERIALS[name], per_session, 60000 + sg * 100 + k * 10 + j, geometry)
                    pats.append(p)
                    ys += [sg] * len(p)
        test[part] = (np.concatenate(pats), np.array(ys))
    pc = geometry.pc
    zero = BandProfileClassifier.from_pretrained(pc=pc)
    desc = {part: zero.describe(x) for part, (x, _) in test.items()}
    line = {part: np.mean(zero.classes_[zero.predict_proba_features(desc[part]["features"]).argmax(1)] == y)
            for part, (_, y) in test.items()}
    print(f"  0 per class (zero-shot): seen materials {line['A']:.3f}, held-out materials {line['B']:.3f}")
    per_group = {}
    for part, (_, y) in test.items():
        pred = zero.classes_[zero.predict_proba_features(desc[part]["features"]).argmax(1)]
        per_group[part] = [" ".join(f"{np.mean(pred[y == sg] == sg):.2f}" for sg in SET_A)]
    runs = [(size, 52000 + m) for size in sizes for m in range(maps)] + [(geometry.shape[0], None)]
    for n in shots:
        # maps holding all six phases (one acquisition each) at each pattern size, then one sample per group
        for size, acquisition in runs:
            pats, ys, same, same_y = labelled_set(n, dataclasses.replace(geometry, shape=(size, size)), acquisition)
            t = time.perf_counter()
            clf = BandProfileClassifier(pc=pc).fit(pats, ys)
            fit_s = time.perf_counter() - t
            same_f = zero.describe(same)["features"]
            same_zero = np.mean(zero.classes_[zero.predict_proba_features(same_f).argmax(1)] == same_y)
            same_pred = clf.classes_[clf.predict_proba_features(same_f).argmax(1)]
            same_pr = weighted_pr(same_y, same_pred)
            where = (f"map {acquisition - 52000} (all six, one acquisition), {size} x {size} patterns"
                     if acquisition is not None else f"one sample per group (own acquisitions), {size} x {size}")
            print(f"{n:3d} per class, labelled on {where}; the same acquisitions' other patterns: "
                  f"{np.mean(same_pred == same_y):.3f} (P/R {same_pr[0]:.2f}/{same_pr[1]:.2f}; zero-shot {same_zero:.3f}); "
                  f"per group {' '.join(f'{np.mean(same_pred[same_y == sg] == sg):.2f}' for sg in SET_A)}; "
                  f"label check {clf.label_check_text()}; fine-tuning {fit_s:.1f} s", flush=True)
            if size != geometry.shape[0] or (acquisition is not None and acquisition > 52000):
                continue  # new sessions (on the detector's own size): the first map's and the separate samples' labels
            acc = {}
            for part, (_, y) in test.items():
                pred = clf.classes_[clf.predict_proba_features(desc[part]["features"]).argmax(1)]
                acc[part] = (np.mean(pred == y),) + weighted_pr(y, pred)
                if acquisition is not None:
                    per_group[part].append(" ".join(f"{np.mean(pred[y == sg] == sg):.2f}" for sg in SET_A))
            print(f"{n:3d} per class, labels of {'map 0' if acquisition is not None else 'the separate samples'}, "
                  f"new sessions: seen materials {acc['A'][0]:.3f} (P/R {acc['A'][1]:.2f}/{acc['A'][2]:.2f}), "
                  f"held-out materials {acc['B'][0]:.3f} (P/R {acc['B'][1]:.2f}/{acc['B'][2]:.2f})", flush=True)
    for part in ("A", "B"):
        print(f"per group {' '.join(map(str, SET_A))}, set {part}, labels of map 0, by shots (0, {', '.join(map(str, shots))}): "
              + " | ".join(per_group[part]))


def label_check(shots, acquisitions=tuple(range(53000, 53006))):
    """The cross-validated label check of ``fit`` against the map's other patterns, per group.

    Development acquisitions (seeds 53000-53005: the same recipe as the few-shot maps, other
    acquisitions), 80 x 80 patterns rendered at full resolution, 40 other patterns per group.
    """
    import warnings

    from napari_microstructure.core.ebsd.bandclassifier import LABEL_RECALL_WARNING, BandProfileClassifier
    from napari_microstructure.core.ebsd.simulate import sample_geometry

    header("label check (cross-validated, in fit) against the map's other patterns, development acquisitions")
    geometry = sample_geometry(np.random.default_rng(5))
    print(f"per group {' '.join(map(str, SET_A))}; a warning under {LABEL_RECALL_WARNING}")
    for n in shots:
        for acquisition in acquisitions:
            pats, ys, same, same_y = labelled_set(n, geometry, acquisition)
            t = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                clf = BandProfileClassifier(pc=geometry.pc).fit(pats, ys)
            fit_s = time.perf_counter() - t
            warned = any("does not tell these labels" in str(w.message) for w in caught)
            proba = clf.predict_proba(same)
            pred = clf.classes_[proba.argmax(1)]
            check = " ".join(f"{clf.labelled_recall_[sg]:.2f}" for sg in SET_A)
            on_map = " ".join(f"{np.mean(pred[same_y == sg] == sg):.2f}" for sg in SET_A)
            print(f"{n:3d} per class, acquisition {acquisition}: check {check} | map {on_map} "
                  f"(accuracy {np.mean(pred == same_y):.3f}); {'warned' if warned else 'no warning'}; "
                  f"fine-tuning {fit_s:.1f} s", flush=True)
            print(f"    map's other patterns: {calibration_line(clf, proba, same_y)}", flush=True)


#: Draws of the labelled patterns in the dual-phase section, per way of labelling (random: the first draw is
#: the one reported until stop 30; painted in two precipitates and two matrix spots, as a user labels).
LABEL_DRAWS = 5


#: The label check's warnings (fit) and the map's, by a phrase of each, and the name the dual section prints.
WARNINGS = {"tell these labels": "weak labels", "grains without labels": "grains without labels",
            "share one orientation": "one orientation", "look less like": "one-phase grain"}


def dual_phase(shape, with_map_only=False):
    import warnings

    from scipy import ndimage

    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier
    from napari_microstructure.core.ebsd.simulate import simulate_dual_phase_map

    header(f"dual-phase map {shape[0]} x {shape[1]} (Ni 225 matrix, Ni3Al 221 precipitates), 60 x 60 patterns")
    pc = (0.5, 0.3, 0.6)
    pats, phase = simulate_dual_phase_map(map_shape=shape, pattern_shape=(60, 60), seed=3, pc=pc)
    truth = np.where(phase == 1, 221, 225)
    true_frac = np.mean(truth == 221)
    zero = BandProfileClassifier.from_pretrained(pc=pc)
    t = time.perf_counter()
    res = zero.classify_map(pats)
    secs = time.perf_counter() - t
    frac = np.mean(res.labels == 221)
    print(f"zero-shot: pixel accuracy {np.mean(res.labels == truth):.3f}; Ni3Al {100 * frac:.1f} % "
          f"(true {100 * true_frac:.1f} %); other groups {100 * np.mean(~np.isin(res.labels, (221, 225))):.1f} %; "
          f"{pats.shape[0] * pats.shape[1] / secs:.0f} patterns/s")
    flat, lab = pats.reshape(-1, 60, 60), truth.ravel()
    grains, n_precipitates = ndimage.label(phase == 1)
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for scheme, labels, with_map in [(way, kind, given) for given in ((True,) if with_map_only else (False, True))
                                     for way in ("random", "painted", "painted around")
                                     for kind in ("space groups", "phase names")]:
        errors, warned = [], []
        how = f"{labels}{', with the map' if with_map else ''}"
        for draw in range(LABEL_DRAWS):  # which patterns a user labels moves the figures: several draws
            rng = np.random.default_rng(draw)
            if scheme == "random":  # 20 per phase anywhere on the map
                train = np.concatenate([rng.choice(np.flatnonzero(lab == c), 20, replace=False) for c in (221, 225)])
            else:  # as a user paints labels: two precipitates and two matrix spots ("painted"), or two
                # precipitates and the matrix around each ("painted around": docs/ebsd.md's advice)
                train = painted_labels(rng, grains.ravel(), n_precipitates, lab, rows.ravel(), cols.ravel(),
                                       around=scheme == "painted around")
            y = lab[train] if labels == "space groups" else np.where(lab[train] == 221, "Ni3Al", "Ni")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                clf = BandProfileClassifier(pc=pc).fit(flat[train], y, map_patterns=pats if with_map else None)
                res = clf.classify_map(pats)
            # the label check's warnings (fit) and the map's (much of it in grains without labels)
            told = sorted({name for w in caught for key, name in WARNINGS.items() if key in str(w.message)})
            pred = res.labels if labels == "space groups" else np.where(res.labels == "Ni3Al", 221, 225)
            test = np.ones(lab.size, bool)
            test[train] = False
            errors.append(np.mean(pred == 221) - true_frac)
            warned.append(bool(told))
            check = clf.label_check_text()
            print(f"{scheme} labels, 20 per phase ({how}), draw {draw}: pixel accuracy "
                  f"{np.mean(pred.ravel()[test] == lab[test]):.3f}; Ni3Al {100 * np.mean(pred == 221):.1f} % "
                  f"(true {100 * true_frac:.1f} %); Ni3Al called 225 {np.mean(pred[truth == 221] == 225):.3f}, "
                  f"Ni called 221 {np.mean(pred[truth == 225] == 221):.3f}; label check {check}"
                  f"{', warned: ' + ', '.join(told) if told else ''}", flush=True)
        errors, warned = 100 * np.abs(errors), np.array(warned)
        print(f"  {scheme} labels ({how}): Ni3Al fraction error over {LABEL_DRAWS} draws: mean {errors.mean():.1f}, "
              f"max {errors.max():.1f} points; warned (fit or map) on {warned.sum()} draws (their errors "
              f"{', '.join(f'{e:.1f}' for e in errors[warned]) or '-'}; the others' "
              f"{', '.join(f'{e:.1f}' for e in errors[~warned]) or '-'})", flush=True)


def open_set(clf, n):
    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS, NON_CUBIC

    header(f"no solution: non-cubic phases against cubic ones ({n} patterns per material)")
    rej = {}
    for i, (name, st) in enumerate(list(NON_CUBIC.items()) + list(ALL_MATERIALS.items())[:8]):
        pats, _, pc = session_of(st, n, 30000 + i)
        clf.set_params(pc=pc)
        u = clf.predict_uncertainty(pats)
        rej[name] = (np.mean(u["agreement"] == 0), np.mean(u["no_solution"]), name in NON_CUBIC)
    for cubic in (False, True):
        sel = [k for k, v in rej.items() if v[2] != cubic]
        print(("cubic    " if cubic else "non-cubic") + ": not indexed as cubic "
              f"{np.mean([rej[k][0] for k in sel]):.2f}, no solution (also uncertain) "
              f"{np.mean([rej[k][1] for k in sel]):.2f}  (" + ", ".join(f"{k} {rej[k][1]:.2f}" for k in sel) + ")")


def speed(clf):
    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS

    header("speed, 60 x 60 patterns (2 threads)")
    pats, _, pc = session_of(ALL_MATERIALS["Ni"], 200, 1, None)
    pats = pats[:, :60, :60]
    clf.set_params(pc=pc)
    t = time.perf_counter()
    clf.predict(pats[:2])
    setup = time.perf_counter() - t
    t = time.perf_counter()
    clf.predict(pats)
    print(f"indexing + classification: {len(pats) / (time.perf_counter() - t):.1f} patterns/s "
          f"(detector set-up once: {setup:.1f} s)")


def cluster_speed(clf, rows=64, cols=64, workers=(2,)):
    """Map throughput in this process against a ``LocalCluster`` of worker processes (one thread each).

    The map repeats 400 simulated Ni patterns (60 x 60) to ``rows x cols``: every pattern costs the
    indexer the same work whatever it shows. Cluster start-up is printed apart from the map's time.
    """
    from distributed import Client, LocalCluster

    from napari_microstructure.core.ebsd.simulate import ALL_MATERIALS

    header(f"map speed, {rows} x {cols} patterns of 60 x 60: this process against worker processes")
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    pats, _, pc = session_of(ALL_MATERIALS["Ni"], 400, 1, None)
    pats = np.ascontiguousarray(pats[:, :60, :60])
    pattern_map = pats[np.arange(rows * cols) % len(pats)].reshape(rows, cols, 60, 60)
    clf.set_params(pc=pc)
    clf.classify_map(pattern_map[:1, :8])  # detector set-up, once
    t = time.perf_counter()
    ref = clf.classify_map(pattern_map, chunk_size=1024)
    dt = time.perf_counter() - t
    print(f"this process: {rows * cols / dt:.1f} patterns/s ({dt:.1f} s)", flush=True)
    for n in workers:
        t = time.perf_counter()
        with LocalCluster(n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None,
                          silence_logs=40) as lc, Client(lc, set_as_default=False) as client:
            start = time.perf_counter() - t
            t = time.perf_counter()
            clf.classify_map(pattern_map[:n, :8], client=client)  # each worker sets up its detector once
            setup = time.perf_counter() - t
            t = time.perf_counter()
            res = clf.classify_map(pattern_map, chunk_size=256, client=client)
            dt = time.perf_counter() - t
        print(f"{n} worker process(es) x 1 thread: {rows * cols / dt:.1f} patterns/s ({dt:.1f} s; cluster start "
              f"{start:.1f} s, detector set-up {setup:.1f} s; labels equal to this process: "
              f"{np.array_equal(res.labels, ref.labels)})", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def large(clf, n=48, size=240):
    """Patterns of a modern detector (240 x 240): binned to ``max_height`` (default) against native."""
    import dataclasses

    from napari_microstructure.core.ebsd.bands import misorientation_deg
    from napari_microstructure.core.ebsd.simulate import (ALL_MATERIALS, random_rotations, sample_session,
                                                           simulate_session)

    header(f"large patterns, {size} x {size} (Ni, one session, {n} patterns)")
    rng = np.random.default_rng(2)
    s = sample_session(ALL_MATERIALS["Ni"], rng)
    s = dataclasses.replace(s, geometry=dataclasses.replace(s.geometry, shape=(size, size), binning=1))
    rot = random_rotations(n, rng)
    pats = simulate_session(s, n, rng, rotations=rot, pc_scan=0.0, render_height=None)
    default = clf.max_height
    for max_height in (default, size):
        clf.set_params(pc=s.geometry.pc, max_height=max_height)
        t = time.perf_counter()
        clf.predict(pats[:2])
        setup = time.perf_counter() - t
        t = time.perf_counter()
        u = clf.predict_uncertainty(pats)
        rate = n / (time.perf_counter() - t)
        err = np.array([misorientation_deg(a, b) for a, b in zip(u["rotations"], rot)])
        print(f"max_height {max_height}: {rate:.1f} patterns/s (set-up {setup:.1f} s); called 225 "
              f"{np.mean(clf.classes_[u['index']] == 225):.2f}; orientation median {np.median(err):.2f} deg, "
              f"within 3 deg {np.mean(err < 3):.2f}")
    clf.set_params(max_height=default)


def real_ni(clf, path):
    header("real Ni patterns (kikuchipy.data.nickel_ebsd_small), space group 225")
    with np.load(path) as z:
        if "pc" not in z.files:
            print("the dump has no projection centre; re-run bench_ebsd_real_ni.py --dump")
            return
        clf.set_params(pc=tuple(z["pc"]))
        runs = [("raw", "raw", None), ("static_removed", "static_removed", None)]
        if "static_background" in z.files:  # as a user opens the file: the stored background, subtracted
            runs.append(("raw + file bg", "raw", z["static_background"]))
        for label, name, bg in runs:
            u = clf.predict_uncertainty(z[name].reshape(-1, *z[name].shape[-2:]).astype(np.float32), background=bg)
            pred = clf.classes_[u["index"]]
            print(f"{label:>15}: {int((pred == 225).sum())} of {len(pred)} called 225, "
                  f"{int(u['no_solution'].sum())} no solution; predictions {pred.tolist()}; "
                  "mean probabilities " + ", ".join(f"{c}: {p:.2f}" for c, p in
                                                      zip(clf.classes_, u["probabilities"].mean(0))))


def dynamical_ni(path):
    """Zero-shot on dynamical Ni patterns of another simulator (bench_ebsd_real_ni.py --dump-dynamical)."""
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    header("dynamical Ni patterns (kikuchipy's EMsoft master pattern, 20 kV), space group 225")
    with np.load(path) as z:
        clf = BandProfileClassifier.from_pretrained(pc=tuple(z["pc"]))
        for key in sorted((k for k in z.files if k != "pc"), key=lambda k: (int(k.split("x")[0]), k)):
            pats = z[key]
            u = clf.predict_uncertainty(pats)
            pred = clf.classes_[u["index"]]
            print(f"{key:>22}: called 225 {np.mean(pred == 225):.3f}, no solution {u['no_solution'].mean():.3f} "
                  f"({len(pred)} patterns; binned to {pats.shape[1] // binning(pats.shape[1])} px high)")


def binning(height):
    from napari_microstructure.core.ebsd.bands import binning_factor

    return binning_factor(height, 100)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer sessions (a smoke run)")
    ap.add_argument("--ni", default=None, help="dump of bench_ebsd_real_ni.py --dump (with 'pc')")
    ap.add_argument("--dyn", default=None, help="dump of bench_ebsd_real_ni.py --dump-dynamical")
    ap.add_argument("--with-map-only", action="store_true",
                    help="dual: only the fits given the map (the rows without it do not depend on fit's map code)")
    ap.add_argument("--only", default=None, help="comma-separated sections: named,clutter,heldout,structures,fewshot,check,dual,open,speed,large; "
                                                   "also cluster (not run by default)")
    args = ap.parse_args()
    from napari_microstructure.core.ebsd.bandclassifier import BandProfileClassifier

    q = args.quick
    only = set(args.only.split(",")) if args.only else None
    run = lambda s: only is None or s in only  # noqa: E731
    clf = BandProfileClassifier.from_pretrained()
    if run("named"):
        zero_shot_named(clf, 1 if q else 3, 6 if q else 10)
    if run("clutter"):
        clutter(clf, 1 if q else 3, 6 if q else 10)
    if run("heldout"):
        zero_shot_heldout(clf, 3 if q else 15, 5 if q else 10)
    if run("structures"):
        by_structure(2 if q else 20, 4 if q else 10)
    if run("fewshot"):
        few_shot((10,) if q else (10, 20, 50, 100, 400), 1 if q else 2, 10 if q else 20, 1 if q else 3,
                 (80,) if q else (80, 160))
    if run("check"):
        label_check((10, 20) if q else (10, 20, 400), (53000, 53001) if q else tuple(range(53000, 53006)))
    if run("dual"):
        dual_phase((20, 25) if q else (40, 50), args.with_map_only)
    if run("open"):
        open_set(clf, 6 if q else 20)
    if run("speed"):
        speed(clf)
    if run("large"):
        large(clf)
    if only is not None and "cluster" in only:  # not in the default run: it starts worker processes
        cluster_speed(clf)
    if args.ni:
        real_ni(clf, args.ni)
    if args.dyn:
        dynamical_ni(args.dyn)


if __name__ == "__main__":
    main()
