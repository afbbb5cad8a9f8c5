"""``BandProfileClassifier``: space groups from the band profiles of indexed patterns.

Where :class:`~.classifier.EBSDClassifier` learns everything from pixels
(and so needs many patterns of materials like the user's), this estimator
first finds each pattern's cubic orientation (:mod:`.bands`: a spherical
Hough transform and an orientation search that do not depend on the
material) and then classifies the *band profiles*: how bright and how wide
the bands of the twelve lowest plane families are. Those follow from the
reflection conditions of the space group, and their ratios do not depend on
the lattice parameter or the voltage, so a small network trained on
simulated patterns of many random structures (``scripts/train_band_profiles.py``)
classifies materials it has never seen, with no labelled patterns at all
(:meth:`BandProfileClassifier.from_pretrained`).

Fine-tuning (:meth:`~BandProfileClassifier.fit`) on a few labelled patterns
of the user's sample starts from the shipped network and keeps rehearsing
the shipped bank of simulated profiles, so that a few patterns of one
session do not make it forget the space groups it was not shown. Labels
other than the six space groups (e.g. phase names) train a new output layer
on the user's patterns alone, from the shipped hidden layers.

"No solution": a pattern is not a cubic crystal the classifier can judge (a
hexagonal or tetragonal phase, a grain boundary, no pattern, a cubic pattern
the search indexed wrongly) when its best orientation explains its bands
poorly: its fit is below ``fit_threshold_`` or its symmetry (how equally the
equivalent planes of its brightest families are lit, see
:meth:`~.bands.BandIndexer.symmetry`) is below ``symmetry_threshold_``. The
shipped thresholds reject 5 % of correctly indexed cubic patterns of a
development set of simulated sessions (``scripts/train_band_profiles.py
calibrate``; :func:`no_solution_thresholds`); fine-tuning lowers them where the
user's own patterns need it (``rejection_rate``). A pattern whose top
probability is below ``confidence_threshold`` is uncertain. In a map's
result, the ``agreement`` layer is 1 where the pattern indexes as cubic and 0
where it does not.

Needed from the user: the projection centre ``pc`` (Bruker convention), as
for any Hough indexing. Patterns are used at their native size up to
``max_height`` pixels high (100: the shipped network was trained on 40-100); taller ones
are binned by an integer factor (:func:`~.bands.bin_patterns`), the projection centre moved
with them.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..base import Estimator, check_is_fitted, isolated_torch_rng, torch_generator, torch_threads
from ..errors import MicrostructureError
from ..nn.modelio import split_prefix, with_prefix
from ..nn.progress import CancelToken, ProgressCallback, check_cancel, report
from ._validation import NO_SOLUTION_TEXT, check_labels, check_stack, resolve_classes
from .augment import augment_profiles
from .bands import (N_FEATURES, SYMMETRY_RANGE, BandIndexer, bin_patterns, binning_factor, check_projection_centre,
                    near_orientations, orientation_groups)
from .calibration import fit_temperature, softmax
from .metrics import ClassificationReport, classification_report

#: Simulated profiles per space group kept in the shipped model for rehearsal while fine-tuning.
BANK_PER_CLASS = 600
#: 2: adds ``symmetry_threshold`` (files of version 1 load with no symmetry check);
#: 3: adds ``labelled_acquisition`` (older files load with none);
#: 4: adds ``labelled_recall`` (older files load with none);
#: 5: adds ``temperature`` (older files load with 1.0);
#: 6: adds ``grain_recall`` and ``labelled_orientations`` (older files load with none);
#: 7: adds ``map_grains`` and ``map_check`` (older files load with none).
MODEL_VERSION = 7
#: Share of a no-solution rejection budget spent on the fit (the rest on the symmetry).
FIT_SHARE = 0.2
#: Fewest optimiser steps of a fit, however few the patterns.
MIN_STEPS = 300
#: Pattern heights (pixels) the shipped network was trained on; smaller ones are warned about.
TRAINED_HEIGHTS = (40, 100)
#: A labelled class of which fewer of its labelled patterns are called right (cross-validated, see
#: ``labelled_recall_``) is warned about: the patterns do not show what tells it from the class they are
#: called. On six simulated maps holding six phases in one acquisition (20 labelled per class, development
#: acquisitions 53000-53005), the estimate for NiAl (B2, 221) was 0.30-0.60 where the map's other NiAl
#: patterns reached 0.07-0.57, and 0.90 where they reached 0.95 (docs/ebsd.md).
LABEL_RECALL_WARNING = 0.9
#: Folds of the cross-validated label check in :meth:`BandProfileClassifier.fit`: each labelled pattern is
#: called by a model fine-tuned on the other folds. Used when every labelled class has at least this many
#: patterns (else the model's calls of its own labelled patterns, which it may have learnt by heart).
LABEL_CHECK_FOLDS = 3
#: Labelled patterns whose orientations lie within this many degrees of each other (a grain: about a degree of
#: spread, the indexer's error under a degree) count as one grain in the check across grains
#: (``grain_recall_``). Labels painted in a few grains carry less well to the map's other grains than to the
#: labelled ones' neighbours: on development dual-phase maps labelled in two precipitates and two matrix spots
#: (20 patterns a phase, 12 draws), the Ni3Al fraction was 0.2-32 points off while the check of random folds
#: called 0.90-1.00 of the labelled patterns right and never warned; across grains, 0.05-1.00.
LABEL_CHECK_GRAIN_DEG = 5.0
#: The check across grains runs when the labelled patterns lie in grains of at least this many patterns on
#: average (painted labels: about ten). Random orientations fall within 5 degrees of each other by chance:
#: 1.1 patterns a group among 120, 2.0 among 2,400; there it would repeat the first check at twice the cost.
GRAIN_CHECK_PATTERNS_PER_GRAIN = 3
#: :meth:`BandProfileClassifier.classify_map` warns when at least this share of a map's indexed patterns lies
#: in grains without labels (orientations more than ``LABEL_CHECK_GRAIN_DEG`` from every labelled one) and
#: ``grain_recall_`` is under ``LABEL_RECALL_WARNING`` for some class. On development dual-phase maps of six
#: grains it warned on 7 of 12 draws of labels painted in a few grains (26-46 % of the map in grains without
#: labels; the four worst draws, 9-32 points off in Ni3Al fraction, among them) and on none of 12 random draws.
UNLABELLED_GRAIN_SHARE = 0.2
#: Map patterns :meth:`BandProfileClassifier.classify_map` samples (evenly) to measure that share.
UNLABELLED_GRAIN_SAMPLE = 4000
#: Patterns of the map :meth:`BandProfileClassifier.fit` indexes (evenly spread) to learn how each of its grains'
#: orientation shifts the band profiles (``map_patterns``).
MAP_SAMPLE = 2000
#: A grain of the map the labels are shifted to holds at least this many of the sampled patterns (its mean
#: profile then scatters by about a fifth of the shift between grains).
MAP_GRAIN_MIN_PATTERNS = 20
#: :meth:`BandProfileClassifier.fit`, given the map, tests each map grain whose labels are all of one phase c: do
#: the grain's other patterns (within ``UNLIKE_GRAIN_DEG`` of its labels) score lower for c than its labels, as
#: the shipped model sees them (its logits along the labels' mean difference between c and the other classes; a
#: one-sided Mann-Whitney test)? Where they do (p under ``UNLIKE_GRAIN_P``) and the fitted model still calls at
#: least ``UNLIKE_CALLED_SHARE`` of them c, the grain likely holds another phase of the same orientation that
#: the model takes for c by the grain's orientation, and ``fit`` warns. Development dual-phase maps (seeds
#: 101-103, 60 draws of painted and random labels): it spoke on the 6 cube-on-cube draws whose Ni3Al fraction
#: was more than 1.2 points off (7.8-31.3; e.g. p 9e-6, 0.97 of the grain called Ni3Al where 0.06 was) and on
#: none of the other 54 (maps whose precipitates have orientations of their own err in grains without
#: labels, which the map's warning names); grains of one phase scored p >= 6e-3 (2e-4 when the whole
#: 5-degree grain was compared: two precipitates 3 degrees apart at opposite ends of a map). The shipped sample
#: painted in its two largest precipitates and two matrix spots (13.8 points off): p 3e-12.
UNLIKE_GRAIN_P = 1e-3
#: Degrees around a grain's labelled orientations within which its other patterns are compared with its labels
#: (a grain's orientation spreads by about a degree, the indexer errs by under one; further out, orientation
#: and projection-centre drift move the scores too).
UNLIKE_GRAIN_DEG = 2.0
#: Share of the compared patterns the fitted model calls the labels' phase above which ``fit`` warns.
UNLIKE_CALLED_SHARE = 0.5
#: Fewest labels of a grain, and fewest other patterns near them, for that test.
UNLIKE_MIN_LABELS, UNLIKE_MIN_PATTERNS = 3, 10
#: Smallest pattern side (pixels) band profiles take: at 12 pixels 80 % of simulated Ni / Ni3Al patterns found
#: no solution and the rest were near chance (shipped model, 60 patterns), at 8 pixels 93 %.
MIN_SIDE = 16


def no_solution_thresholds(fit: np.ndarray, symmetry: np.ndarray, rate: float) -> tuple[float, float]:
    """Thresholds on the orientation fit and the symmetry that reject ``rate`` of known cubic patterns.

    The fit threshold is the ``FIT_SHARE * rate`` quantile of ``fit`` (blank
    or very noisy patterns); the symmetry threshold is then chosen so that
    the patterns below either threshold make up ``rate`` of all (quantiles
    are taken at data points, so no more than that).

    Parameters
    ----------
    fit, symmetry : ndarray (N,)
        :meth:`~.bands.BandIndexer.describe`'s ``fit`` (standard deviations)
        and ``symmetry`` (dimensionless) of patterns that should be indexed.
    rate : float
        Share of them to reject, in [0, 0.5].

    Returns
    -------
    (float, float)
        ``(fit_threshold, symmetry_threshold)``.
    """
    fit, symmetry = np.asarray(fit, float), np.asarray(symmetry, float)
    fit_threshold = float(np.quantile(fit, FIT_SHARE * rate, method="lower"))
    passing = symmetry[fit >= fit_threshold]
    budget = rate * len(fit) - np.sum(fit < fit_threshold)
    share = float(np.clip(budget / max(len(passing), 1), 0.0, 1.0))
    symmetry_threshold = float(np.quantile(passing, share, method="lower")) if len(passing) else float("-inf")
    return fit_threshold, symmetry_threshold


def _recall(pred: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> dict:
    """Share of each class's patterns called that class, ``{class: share}`` with plain Python keys."""
    return {_plain(c): float(np.mean(pred[labels == c] == c)) for c in classes}


def _calls(checked: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The classes a check's ``(logits, classes)`` (``_cross_validated_calls``) calls its patterns."""
    logits, classes = checked
    return classes[logits.argmax(1)]


def _plain(c: Any) -> Any:
    """A class label as a plain Python value (a dict key that JSON and comparisons with labels take)."""
    return c.item() if hasattr(c, "item") else c


def _per_class_to_json(recall: Optional[dict]) -> Optional[list]:
    """``{class: value}`` as JSON pairs (``labelled_recall_``, ``grain_recall_``, ``labelled_grains_``)."""
    if recall is None:
        return None
    return [[int(c) if isinstance(c, (int, np.integer)) else str(c), float(r)] for c, r in recall.items()]


def _balanced_folds(labels: np.ndarray, classes: np.ndarray, groups: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """A fold (0 to ``LABEL_CHECK_FOLDS`` - 1) per pattern, whole ``groups`` to one fold.

    Groups are taken in a random order and each goes to the fold holding the fewest patterns of its
    commonest class so far (of those, the fewest patterns), so that every fold holds about a share of
    every class (with one pattern per group: a stratified split) and two groups make two folds.
    """
    counts = np.zeros((LABEL_CHECK_FOLDS, len(classes)), np.int64)
    fold = np.empty(len(labels), np.int64)
    for g in rng.permutation(int(groups.max()) + 1):
        members = groups == g
        if not members.any():
            continue
        own = np.array([np.sum(labels[members] == c) for c in classes])
        f = int(np.lexsort((counts.sum(1), counts[:, int(own.argmax())]))[0])
        fold[members] = f
        counts[f] += own
    return fold


def _map_grains(map_rotations: np.ndarray, labelled_rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grain of each map pattern and of each labelled pattern, numbered 0 to K - 1, -1 for none.

    Grains: :func:`~.bands.orientation_groups` of the map's patterns and the labelled ones together
    (map patterns first, so the map sets each grain's orientation), those holding at least
    :data:`MAP_GRAIN_MIN_PATTERNS` of the map's patterns.
    """
    groups = orientation_groups(np.concatenate([map_rotations, labelled_rotations]), LABEL_CHECK_GRAIN_DEG)
    counts = np.bincount(groups[:len(map_rotations)], minlength=int(groups.max()) + 1)
    kept = np.flatnonzero(counts >= MAP_GRAIN_MIN_PATTERNS)
    row = np.full(len(counts), -1)
    row[kept] = np.arange(len(kept))
    return row[groups[:len(map_rotations)]], row[groups[len(map_rotations):]]


def _indexed_at_all(described: dict) -> np.ndarray:
    """False for patterns in which no band was found (a blank pattern: fit 0, symmetry at its floor).

    Such a pattern among the labelled ones must not set the user's "no solution"
    thresholds: with it, they fell to 0 and -1 and every blank pattern of the map
    got a space group.
    """
    return (np.asarray(described["fit"]) > 0) & (np.asarray(described["symmetry"]) > SYMMETRY_RANGE[0])


def check_pattern_side(shape: Sequence[int], map_shape: Optional[Sequence[int]] = None) -> None:
    """A clear error for patterns with a side under :data:`MIN_SIDE` pixels: too few bands to index.

    ``map_shape``: the whole map's (rows, cols, h, w); when its first two axes
    look like a pattern and the last two do not, the error says to reorder them.
    """
    h, w = int(shape[0]), int(shape[1])
    if min(h, w) < MIN_SIDE and map_shape is not None and min(int(v) for v in map_shape[:2]) >= MIN_SIDE:
        rows, cols = (int(v) for v in map_shape[:2])
        raise MicrostructureError(
            f"the map's patterns would be {h} x {w} pixels, but its first two axes ({rows} x {cols}) look like "
            "a pattern: the array's axes must be (map rows, map columns, pattern height, pattern width); "
            "reorder them, e.g. numpy.moveaxis(patterns, (0, 1), (2, 3)), or check how the file was read")
    if min(h, w) < MIN_SIDE:
        raise MicrostructureError(
            f"patterns are {h} x {w} pixels, too small for band profiles (at least {MIN_SIDE} x {MIN_SIDE}: at 12 "
            "pixels most simulated patterns find no solution and the rest are near chance); acquire with less "
            "binning, or train a CNN backbone (--backbone efficientnet-lite0 / the widget's Backbone), which "
            "takes patterns from 8 pixels")


def warn_if_small(shape: Sequence[int]) -> None:
    """Warn that patterns shorter than the shipped network's training patterns are classified less well."""
    h, w = int(shape[0]), int(shape[1])
    if h < TRAINED_HEIGHTS[0]:
        warnings.warn(
            f"patterns are {h} x {w} pixels, smaller than the {TRAINED_HEIGHTS[0]}-{TRAINED_HEIGHTS[1]} pixels "
            "the band-profile network was trained on: expect fewer patterns indexed and classified right "
            "(simulated materials, no labels: 0.80 at 32 pixels and 0.63 at 24, against 0.87 at 40 and 0.92 at "
            "60); acquire with less binning if you can",
            UserWarning, stacklevel=3)


def _check_features(features: Any) -> np.ndarray:
    """Band-profile features as float32 (N, N_FEATURES); a clear error for any other shape."""
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[1] != N_FEATURES:
        raise MicrostructureError(
            f"features have shape {features.shape}; expected (N, {N_FEATURES}) band profiles from describe()")
    return features


def _network(n_in: int, hidden: int, n_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, n_classes))


class BandProfileClassifier(Estimator):
    """Classify cubic Kikuchi patterns into space groups from indexed band profiles.

    Parameters
    ----------
    pc : (float, float, float), optional
        Projection centre (PCx, PCy, PCz), Bruker convention; needed before
        patterns are classified or fitted (set it with ``set_params(pc=...)``).
    simulation_pretrained : bool
        Fine-tune the shipped simulation-trained network (and rehearse its
        bank of simulated profiles) rather than train from scratch.
    hidden : int
        Width of the two hidden layers.
    dropout, learning_rate, weight_decay : float
        Training settings.
    max_epochs : int
        Passes over the training set (``fit`` from scratch); fine-tuning uses
        a third of them at a third of the learning rate.
    user_weight : float
        Share of the user's patterns in each fine-tuning pass (the rest is
        the simulated bank); their patterns are repeated to reach it.
    feature_noise : float
        Gaussian noise (in standard deviations of each feature) added to
        training profiles: the scatter of noisy patterns and of the
        orientation search.
    augment : int
        Augmented copies of each labelled pattern's profiles in :meth:`fit`
        (:func:`~.augment.augment_profiles`: band widths, fall-off and contrast
        of other acquisitions); 0 turns it off. On a development set of
        training-split structures (one labelled session of 20 patterns per
        group, tested on new sessions) 8 copies raised accuracy from 0.752 to
        0.763 on the labelled materials and from 0.550 to 0.564 on others.
    confidence_threshold : float
        Patterns whose top probability is below this are "no solution".
    rejection_rate : float
        Share of the user's training patterns (``fit``) that may fall below
        the fit or symmetry thresholds ("no solution": not indexed as cubic);
        the thresholds are never raised above the shipped model's.
    n_orientations : int
        Candidate orientations of the search (see :class:`~.bands.BandIndexer`).
    max_height : int
        Patterns taller than this many pixels are binned (block mean, the
        smallest integer factor that brings them to at most this height; the
        projection centre moves with them, see :func:`~.bands.bin_patterns`).
        The shipped network was trained on patterns 40-100 pixels high, and
        indexing time and memory grow with the pixel count (unbinned, 240 x
        240 patterns index at about 12 per second in 2.4 GB). Patterns under 40
        pixels high are classified with a warning: zero-shot accuracy on
        simulated materials falls from 0.92 at 60 pixels to 0.87 at 40, 0.80 at
        32 and 0.63 at 24 (2026-11-29, 192 patterns per size).
    seed : int
    device : str
        Accepted for symmetry with the other estimators; the network is small
        and runs on the CPU.

    Attributes
    ----------
    classes_ : ndarray
    net_ : torch.nn.Sequential
    fit_threshold_, symmetry_threshold_ : float
        Patterns whose fit or symmetry is below these are "no solution".
    bank_features_, bank_labels_ : ndarray
        Simulated profiles used for rehearsal (empty for non-space-group classes).
    labelled_acquisition_ : dict or None
        The acquisition of the labelled patterns :meth:`fit` learned from:
        ``{"pc": (PCx, PCy, PCz), "pattern_shape": (h, w), "n_patterns": N}``
        (``pc`` as given to ``fit``, ``pattern_shape`` before binning); ``None``
        for the shipped model and :meth:`fit_features`. Labels of one
        acquisition carry less well to another (``pc`` is set anew for each map).
    temperature_ : float
        The network's logits are divided by this before the softmax
        (:mod:`.calibration`), so that a confidence of 0.8 means about 0.8
        right. :meth:`fit` fits it on the cross-validated label check's calls
        (1.0 when a class has too few patterns for the check). The shipped
        model's is 1.0: its zero-shot confidence is calibrated on simulated
        prototype structures and overconfident on random ones, which one
        temperature cannot mend (docs/ebsd.md, section 4).
    labelled_recall_ : dict or None
        Share of each labelled class's patterns called that class
        (``{class: share}``, the classes :meth:`fit` was given), each pattern
        called by a model fine-tuned on the other :data:`LABEL_CHECK_FOLDS`
        folds (cross-validated; with fewer patterns in some class, by the
        fitted model itself, an optimistic figure); ``None`` for the shipped
        model and :meth:`fit_features`. :meth:`fit` warns about a class under
        ``LABEL_RECALL_WARNING`` (0.9): its patterns look like another class's,
        and the map's other patterns of it will be called wrongly as often.
    grain_recall_ : dict or None
        The same share in a check across grains: the labelled patterns within
        ``LABEL_CHECK_GRAIN_DEG`` (5) degrees of each other's orientation (a
        grain) are left out together, so each is called by models that saw no
        label of its grain: what to expect on grains without labels. Equal to
        ``labelled_recall_`` when the labelled patterns lie in grains of under
        ``GRAIN_CHECK_PATTERNS_PER_GRAIN`` (3) patterns on average; ``None``
        when all lie in one grain (:meth:`fit` warns), without the check, and
        for files saved before it. :meth:`classify_map` warns when a class is
        under 0.9 here and at least ``UNLABELLED_GRAIN_SHARE`` (0.2) of the map
        lies in grains without labels.
    labelled_orientations_ : ndarray (K, 3, 3) or None
        One crystal-to-detector rotation per labelled grain (what
        :meth:`unlabelled_grain_share` compares a map with).
    labelled_grains_ : dict or None
        How many grains each class's labelled patterns lie in.
    map_grains_ : int or None
        How many grains of the map given to :meth:`fit` (``map_patterns``) the
        labels were shifted to; 0 when the map was given but not used (no
        labelled grain holding two classes, no class labelled in two or more
        grains, under two map grains of :data:`MAP_GRAIN_MIN_PATTERNS` sampled
        patterns, too few labels for the check, or the check chose without it);
        None without a map.
    map_check_ : dict or None
        ``{"without": r0, "with": r1}``: the check across grains (mean over the
        classes labelled in two or more grains of the share of their labels
        called right) without and with the map's shifts, when both ran; the
        shifts are kept when ``r1 >= r0``.
    """

    kind = "ebsd-bands"
    _fitted_attribute = "net_"
    _fit_call = "fit(patterns, labels) or BandProfileClassifier.from_pretrained(pc=...)"
    agreement_threshold = 0.5  # the map's agreement layer is 1 (indexed as cubic) or 0
    finds_orientations = True  # maps keep each pattern's orientation (MapResult.detector_euler)

    def __init__(self, pc: Optional[Sequence[float]] = None, simulation_pretrained: bool = True,
                 hidden: int = 256, dropout: float = 0.3, learning_rate: float = 2e-3,
                 weight_decay: float = 1e-3, max_epochs: int = 40, user_weight: float = 0.5,
                 feature_noise: float = 0.3, augment: int = 8, confidence_threshold: float = 0.4,
                 rejection_rate: float = 0.02, n_orientations: int = 20000, max_height: int = 100,
                 seed: int = 0, device: str = "cpu") -> None:
        self.pc = pc
        self.simulation_pretrained = simulation_pretrained
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.user_weight = user_weight
        self.feature_noise = feature_noise
        self.augment = augment
        self.confidence_threshold = confidence_threshold
        self.rejection_rate = rejection_rate
        self.n_orientations = n_orientations
        self.max_height = max_height
        self.seed = seed
        self.device = device

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_indexers", None)  # rebuilt on use (dask workers)
        return state

    @classmethod
    def _params_from_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("pc") is not None:
            params["pc"] = tuple(params["pc"])
        return params

    def _params_to_json(self) -> dict[str, Any]:
        params = super()._params_to_json()
        if params.get("pc") is not None:
            params["pc"] = [float(v) for v in params["pc"]]
        return params

    # ------------------------------------------------------------- indexing
    def _projection_centre(self) -> tuple[float, float, float]:
        if self.pc is None:
            raise MicrostructureError(
                "no projection centre: give pc=(PCx, PCy, PCz) in the Bruker convention, e.g. "
                "BandProfileClassifier.from_pretrained(pc=(0.5, 0.3, 0.6)) or clf.set_params(pc=...); "
                "it is in the acquisition's metadata (kikuchipy: EBSDDetector.pc)")
        return check_projection_centre(self.pc)

    def _indexer(self, shape: Sequence[int], pc: Optional[Sequence[float]] = None) -> BandIndexer:
        pc = self._projection_centre() if pc is None else tuple(float(v) for v in pc)
        key = (tuple(int(s) for s in shape), pc, int(self.n_orientations))
        cache = self.__dict__.setdefault("_indexers", {})
        if key not in cache:
            cache.clear()
            cache[key] = BandIndexer(key[0], pc, key[2])
        return cache[key]

    def describe(self, patterns: Any, background: Optional[np.ndarray] = None, *, check: bool = True,
                 progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> dict[str, np.ndarray]:
        """Orientation (crystal-to-detector matrices), fit and band-profile features of each pattern.

        ``background``: the detector's static background (the one an
        acquisition stores, :attr:`~napari_microstructure.io.ebsd.PatternData.static_background`,
        or the mean pattern of a map of many grains), subtracted from each
        pattern first (see :func:`~.bands.prepare_patterns`); default: none,
        each pattern's own smooth background is divided out. Patterns taller
        than ``max_height`` are binned first (the rotations are those of the
        same detector frame).
        """
        self._check_params()
        patterns = check_stack(patterns) if check else np.asarray(patterns)
        check_pattern_side(patterns.shape[1:])
        pc = self._projection_centre()
        factor = binning_factor(patterns.shape[1], int(self.max_height))
        binned, pc, background = bin_patterns(patterns, pc, factor, background)
        if factor > 1 and min(binned.shape[1:]) < MIN_SIDE:
            raise MicrostructureError(
                f"patterns are {patterns.shape[1]} x {patterns.shape[2]} pixels: binned by {factor} to the "
                f"trained height ({self.max_height} pixels) they would be {binned.shape[1]} x {binned.shape[2]}, "
                f"under {MIN_SIDE} pixels a side; EBSD patterns are about as wide as high: check that the "
                "array's last two axes are the pattern's height and width (crop or reorder them)")
        patterns = binned
        warn_if_small(patterns.shape[1:])
        return self._indexer(patterns.shape[1:], pc).describe(patterns, background, progress=progress,
                                                              cancel=cancel)

    # --------------------------------------------------------------------- fit
    @classmethod
    def from_pretrained(cls, pc: Optional[Sequence[float]] = None, device: str = "cpu") -> "BandProfileClassifier":
        """The shipped simulation-trained classifier of the space groups 221, 223, 225, 227, 229, 230."""
        from .pretrained import band_profiles_path

        clf = cls.load(band_profiles_path(), device=device)
        clf.pc = pc
        return clf

    def _check_params(self) -> None:
        for name, lo, hi in (("confidence_threshold", 0, 1), ("rejection_rate", 0, 0.5),
                             ("user_weight", 0.01, 0.99), ("dropout", 0, 0.9), ("feature_noise", 0, 5),
                             ("learning_rate", 1e-7, 1.0), ("weight_decay", 0, 1.0)):
            v = getattr(self, name)
            try:
                ok = lo <= float(v) <= hi  # False for NaN
            except (TypeError, ValueError):
                ok = False
            if not ok or isinstance(v, bool):
                raise MicrostructureError(f"{name}={v!r}; give a number in [{lo:g}, {hi:g}]")
        for name, lo in (("n_orientations", 100), ("seed", 0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo):
                raise MicrostructureError(f"{name}={v!r}; give a whole number of at least {lo}")
        if not (isinstance(self.hidden, (int, np.integer)) and self.hidden >= 4):
            raise MicrostructureError(f"hidden={self.hidden!r}; give a layer width of at least 4")
        if not (isinstance(self.augment, (int, np.integer)) and 0 <= self.augment <= 100):
            raise MicrostructureError(f"augment={self.augment!r}; give a number of augmented copies in 0-100")
        if not (isinstance(self.max_height, (int, np.integer)) and self.max_height >= 16):
            raise MicrostructureError(
                f"max_height={self.max_height!r}; give a pattern height in pixels of at least 16 "
                "(patterns taller than it are binned; the shipped model was trained on 40-100)")
        if not (isinstance(self.max_epochs, (int, np.integer)) and self.max_epochs >= 1):
            raise MicrostructureError(f"max_epochs={self.max_epochs!r}; give a positive number of passes")

    def fit(self, patterns: Any, labels: Sequence, classes: Optional[Sequence] = None, *,
            background: Optional[np.ndarray] = None, map_patterns: Any = None,
            progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelToken] = None) -> "BandProfileClassifier":
        """Index labelled patterns and train (or fine-tune) on their band profiles.

        Parameters
        ----------
        patterns : array-like (N, h, w)
            Raw Kikuchi patterns of one detector set-up (``pc``).
        labels : sequence (N,)
            Space-group numbers among the six the shipped network knows
            (fine-tunes it with its simulated bank; ``classes_`` are then all
            six, not only those labelled; another number is refused as a
            likely typo) or text phase names (a new output layer whose
            classes are the names).
        classes : sequence, optional
            The expected classes; each must have at least one pattern.
        background : ndarray (h, w), optional
            The detector's static background (see :meth:`describe`); give the
            same one when the map is classified.
        map_patterns : array-like (rows, cols, h, w) or (M, h, w), optional
            The map the labels were painted on (or another of the same
            acquisition and sample): :data:`MAP_SAMPLE` of its patterns,
            evenly spread, are indexed and grouped into grains, and each
            augmented copy of a labelled pattern is shifted by the difference
            between a random grain's mean profile and its own grain's. A
            grain's orientation changes the profiles about as much as the phase
            does, so labels painted in a few grains otherwise carry poorly to
            the others (``grain_recall_``). Tried only when some labelled grain
            holds labels of two classes (phases sharing an orientation, as
            coherent precipitates and their matrix: where each phase has grains
            of its own, a grain's mean is its phase's profile, and the shift
            would carry one phase's profile to the other's labels) and some class
            is labelled in two or more grains; kept only when the check across
            grains (``map_check_``: the share of the labels of such classes called
            right by models fine-tuned without their grain, averaged over those
            classes) calls them at least as well with the shift as without it (a
            grain rich in one phase skews its mean: on the shipped sample the
            shift made the map 0.63 right instead of 0.98, and the check chose
            without it). ``map_grains_`` is then the number of grains used,
            else 0. With two or more classes, a grain whose labels are all of
            one phase, whose other patterns look unlike its labels to the
            shipped network and which the fitted model still calls that phase
            is warned about (:data:`UNLIKE_GRAIN_P`). NumPy arrays, memory
            maps, h5py datasets and dask arrays are read by strided slices.
        progress, cancel : see :class:`~.classifier.EBSDClassifier`. A cancelled
            fit raises ``TrainingCancelled`` and keeps the previous state.

        Each pattern is indexed once; ``augment`` copies of its profiles, as
        other acquisitions would give them, train beside it. Warns when under
        ``LABEL_RECALL_WARNING`` of a class's labelled patterns are called
        right by models fine-tuned without them (``labelled_recall_``).
        """
        self._check_params()
        patterns = check_stack(patterns)
        labels = check_labels(labels, len(patterns))
        found = resolve_classes(labels, classes)
        if self.simulation_pretrained and found.dtype.kind in "iu":  # numbers are space groups
            from .simulate.symmetry import SPACE_GROUPS

            unknown = [int(c) for c in found if int(c) not in SPACE_GROUPS]
            if unknown:
                raise MicrostructureError(
                    f"labels {', '.join(map(str, unknown))} are not among the space groups the shipped model "
                    f"knows ({', '.join(map(str, SPACE_GROUPS))}): check them for typos; to learn other phases, "
                    "label them with text names (e.g. 'Ni3Al', 'hcp Ti'), which trains a new output layer on "
                    "the shipped network")
        if map_patterns is not None:  # its shape is checked now; its patterns are read only if the labels need it
            map_shape = self._check_map_shape(map_patterns, patterns.shape[1:])
        described = self.describe(patterns, background, check=False, progress=progress, cancel=cancel)
        own_labels, features = labels, described["features"]
        grains = orientation_groups(described["rotations"], LABEL_CHECK_GRAIN_DEG)
        candidate = None  # (map grain means, each labelled pattern's map grain)
        sampled = None  # the map sample's features, rotations and map grains, the labels' map grains
        per_class = [len(np.unique(grains[own_labels == c])) for c in found]  # grains each class is labelled in
        # the classes labelled in two or more grains: only their calls tell whether labels carry to other grains
        across = found[np.array(per_class) > 1]
        if map_patterns is not None and len(found) > 1:
            on_map = self.describe(self._map_sample(map_patterns, map_shape), background, check=False,
                                   progress=progress, cancel=cancel)
            indexed = _indexed_at_all(on_map)
            if not indexed.any():
                warnings.warn(
                    f"none of the {len(indexed)} sampled patterns of map_patterns shows bands (blank or saturated "
                    "patterns): the map was not used; give the map the labels were painted on", stacklevel=2)
            map_features = on_map["features"][indexed]
            grain, own = _map_grains(on_map["rotations"][indexed], described["rotations"])
            sampled = (map_features, on_map["rotations"][indexed], grain, own)
            if len(grain) and grain.max() > 0 and np.any(own >= 0) and len(across) and \
                    any(len(np.unique(own_labels[grains == g])) > 1 for g in np.unique(grains)):
                # each grain's mean profile: the profiles of its phases at its orientation. Fitting the grains'
                # offsets with the phases apart (a first model calling them) was no better on development maps
                candidate = (np.stack([map_features[grain == g].mean(0) for g in range(grain.max() + 1)]), own)
        acquisition = {"pc": self._projection_centre(), "pattern_shape": tuple(patterns.shape[1:]),
                       "n_patterns": len(patterns)}
        # the checks first: they train models of their own, so a cancel during them leaves this one as it was
        shifts, by_grain, map_check = None, None, None
        if candidate is not None:
            # the map's shifts are kept only where the labels carry across grains at least as well with them
            # (the shipped sample: 0.74 with, 0.79 without, and its map 0.63 right with them, 0.98 without)
            without = self._cross_validated_calls(features, own_labels, found, grains, progress, cancel,
                                                  stage="check labels across grains")
            shifted = self._cross_validated_calls(features, own_labels, found, grains, progress, cancel,
                                                  stage="check labels shifted to the map's grains", shifts=candidate)
            if without is not None and shifted is not None:
                scores = [float(np.mean(list(_recall(_calls(c), own_labels, across).values())))
                          for c in (without, shifted)]
                map_check = {"without": scores[0], "with": scores[1]}
                shifts, by_grain = (candidate, shifted) if scores[1] >= scores[0] else (None, without)
        x, labels = self._augmented(features, own_labels, shifts)
        checked = self._cross_validated_calls(features, own_labels, found, np.arange(len(own_labels)), progress,
                                              cancel, shifts=shifts)
        if by_grain is None and grains.max() > 0:  # all labels in one grain: nothing to check across grains
            by_grain = checked  # about one pattern a grain: the check left grains out already
            if checked is not None and len(grains) >= GRAIN_CHECK_PATTERNS_PER_GRAIN * (grains.max() + 1):
                by_grain = self._cross_validated_calls(features, own_labels, found, grains, progress, cancel,
                                                       stage="check labels across grains")
        self._fit(x, labels, found, described, progress=progress, cancel=cancel, acquisition=acquisition)
        self.map_grains_ = None if map_patterns is None else (0 if shifts is None else len(shifts[0]))
        self.map_check_ = map_check
        cross_validated = checked is not None
        if cross_validated:  # calls the fitted model's kin did not train on: the confidence's calibration too
            logits, check_classes = checked
            pred = _calls(checked)
            column = {c: i for i, c in enumerate(check_classes.tolist())}
            self.temperature_ = fit_temperature(logits, np.array([column[c] for c in own_labels.tolist()]))
        else:  # too few patterns in some class for folds: the fitted model's own calls
            pred = self.classes_[self.predict_proba_features(features).argmax(1)]
        self.labelled_recall_ = _recall(pred, own_labels, found)
        self.grain_recall_ = None
        if by_grain is not None:
            self.grain_recall_ = _recall(_calls(by_grain), own_labels, found)
        first = np.unique(grains, return_index=True)[1]
        self.labelled_orientations_ = np.asarray(described["rotations"][first], np.float32)
        self.labelled_grains_ = {_plain(c): n for c, n in zip(found, per_class)}
        self._warn_weak_labels(pred, own_labels, cross_validated)
        if cross_validated and grains.max() < 1:
            warnings.warn(
                f"all {len(own_labels)} labelled patterns share one orientation (one grain, within "
                f"{LABEL_CHECK_GRAIN_DEG:g} degrees): labels of one grain carry less well to the map's other grains, "
                "and the check across grains, which leaves each labelled grain out, cannot run. Label patterns in "
                "other grains too", stacklevel=2)
        self._warn_unindexed_labels(described)
        if sampled is not None:
            self._warn_grains_unlike_their_labels(*sampled, features, described["rotations"], own_labels)
        return self

    def _warn_grains_unlike_their_labels(self, map_features: np.ndarray, map_rotations: np.ndarray,
                                         grain: np.ndarray, own: np.ndarray, features: np.ndarray,
                                         rotations: np.ndarray, labels: np.ndarray) -> None:
        """Warn about map grains labelled with one phase whose other patterns look unlike their labels yet are
        called that phase (:data:`UNLIKE_GRAIN_P`).

        ``map_features``, ``map_rotations``, ``grain``: the map sample's profiles, orientations and map grains;
        ``own``: each labelled pattern's map grain (-1 for none); ``features``, ``rotations``, ``labels``: the
        labelled patterns'. The shipped network, trained on random orientations of many structures, scores the
        patterns along the labels' mean difference between the grain's phase and the others; where a grain's
        other patterns score lower than its labels, the grain holds something else at the same orientation (a
        coherent precipitate's matrix), and a fitted model calling it the labels' phase has learnt the grain's
        orientation as that phase.
        """
        shipped = type(self).from_pretrained(pc=self.pc)
        if map_features.shape[1] != len(shipped.feature_mean_):
            return
        from scipy.stats import mannwhitneyu

        z_map, z_labels = shipped._logits(map_features), shipped._logits(features)
        calls = self.classes_[self._logits(map_features).argmax(1)]
        found = []
        for g in np.unique(own[own >= 0]):
            mine = own == g
            c = labels[mine][0]
            if np.any(labels[mine] != c) or mine.sum() < UNLIKE_MIN_LABELS:
                continue
            near = np.flatnonzero(grain == g)
            near = near[near_orientations(map_rotations[near], rotations[mine], UNLIKE_GRAIN_DEG)]
            if len(near) < UNLIKE_MIN_PATTERNS:
                continue
            direction = z_labels[labels == c].mean(0) - z_labels[labels != c].mean(0)
            p = float(mannwhitneyu(z_labels[mine] @ direction, z_map[near] @ direction, alternative="greater").pvalue)
            called = float(np.mean(calls[near] == c))
            if p < UNLIKE_GRAIN_P and called >= UNLIKE_CALLED_SHARE:
                found.append(f"a grain labelled {_plain(c)} only ({int(mine.sum())} labels): the map's {len(near)} "
                             f"sampled patterns of its orientation look less like {_plain(c)} than its labels do "
                             f"(p = {p:.0e}), yet the fitted model calls {100 * called:.0f} % of them {_plain(c)}")
        if found:
            warnings.warn(
                "; ".join(found) + ". Such a grain likely holds another phase of the same orientation (the matrix "
                "around a coherent precipitate), which the model has learnt to call the labels' phase by the grain's "
                "orientation: label the other phase in that grain too and train again", stacklevel=3)

    @staticmethod
    def _check_map_shape(map_patterns: Any, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of ``map_patterns``, refused by name unless it is a map or stack of ``shape`` patterns."""
        map_shape = tuple(int(v) for v in getattr(map_patterns, "shape", np.shape(map_patterns)))
        if len(map_shape) not in (3, 4) or map_shape[-2:] != tuple(int(v) for v in shape):
            raise MicrostructureError(
                f"map_patterns has shape {map_shape}, but the labelled patterns are {shape[0]} x {shape[1]} "
                "pixels: give the map the labels were painted on, (rows, cols, h, w) or (N, h, w), recorded with "
                "the same detector set-up")
        return map_shape

    @staticmethod
    def _map_sample(map_patterns: Any, map_shape: tuple[int, ...]) -> np.ndarray:
        """About :data:`MAP_SAMPLE` patterns of a map, evenly spread (strided slices), as (M, h, w)."""
        n = int(np.prod(map_shape[:-2]))
        if len(map_shape) == 4:
            step = max(1, int(np.floor(np.sqrt(n / MAP_SAMPLE))))
            sample = map_patterns[::step, ::step]
        else:
            sample = map_patterns[::max(1, n // MAP_SAMPLE)]
        sample = np.asarray(sample.compute() if hasattr(sample, "compute") else sample)
        return check_stack(sample.reshape(-1, *sample.shape[-2:]))

    def _augmented(self, x: np.ndarray, y: np.ndarray,
                   shifts: Optional[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """``x`` and ``augment`` copies (:func:`~.augment.augment_profiles`) with their labels; with ``shifts``
        (map grain means, each pattern's map grain or -1), each copy of a pattern in a map grain is moved by a
        random map grain's mean minus its own grain's (the profiles of the same phase in that grain)."""
        if not self.augment:
            return x, y
        rng = np.random.default_rng(int(self.seed))
        extra = augment_profiles(x, rng, int(self.augment))
        if shifts is not None:
            means, own = shifts
            source = np.tile(own, int(self.augment))
            target = rng.integers(0, len(means), len(extra))
            moved = source >= 0
            extra[moved] += means[target[moved]] - means[source[moved]]
        return np.concatenate([x, extra]), np.concatenate([y] * (1 + int(self.augment)))

    def _cross_validated_calls(self, features: np.ndarray, labels: np.ndarray, found: np.ndarray,
                               groups: np.ndarray, progress: Optional[ProgressCallback],
                               cancel: Optional[CancelToken], stage: str = "check labels",
                               shifts: Optional[tuple[np.ndarray, np.ndarray]] = None,
                               ) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """Each labelled pattern's logits from a model fine-tuned without it, and the classes of their columns.

        With at least :data:`LABEL_CHECK_FOLDS` patterns in every labelled class and more than one
        group, the patterns are split into that many folds (seeded, balanced per class), each group in one
        fold whole, and each fold is called by a model fine-tuned the same way on the other folds
        (``augment`` copies of those alone). One pattern per group: a stratified split, a fair estimate of
        how the map's other patterns will fare (``labelled_recall_``) and of how confident the model should
        be (``temperature_``). The patterns of a grain as groups (:func:`~.bands.orientation_groups`): how
        labels carry to grains without labels (``grain_recall_``); a class labelled in one grain alone is
        then called by models that never saw it labelled. Else: None.
        """
        if min(int(np.sum(labels == c)) for c in found) < LABEL_CHECK_FOLDS or groups.max() < 1:
            return None
        fold = _balanced_folds(labels, found, groups, np.random.default_rng(int(self.seed) + 1))
        logits = None
        for f in np.unique(fold):
            keep = fold != f
            x, y = self._augmented(features[keep], labels[keep],
                                   None if shifts is None else (shifts[0], shifts[1][keep]))

            def relay(p, f=f, n=len(np.unique(fold))):  # one stage for the whole check: folds one after the other
                report(progress, stage=stage, step=f * p.total + p.step, total=n * p.total,
                       message=f"{stage.replace('check', 'checking the')}: fold {f + 1} of {n}")

            check = type(self)(**self.get_params())
            check._fit(x, y, found, None, progress=None if progress is None else relay, cancel=cancel)
            if logits is None:
                logits = np.empty((len(labels), len(check.classes_)), np.float32)
            logits[~keep] = check._logits(_check_features(features[~keep]))
        return logits, check.classes_

    def label_check_text(self) -> str:
        """``labelled_recall_`` in one line, ``"221 0.40, 225 1.00"``, then ``grain_recall_`` where it differs
        (``"221 0.95, 225 1.00; grains without labels: 221 0.35, 225 1.00"``); empty when there is none."""
        text = ", ".join(f"{c} {v:.2f}" for c, v in (self.labelled_recall_ or {}).items())
        grains = getattr(self, "grain_recall_", None)
        if text and grains and grains != self.labelled_recall_:
            text += "; grains without labels: " + ", ".join(f"{c} {v:.2f}" for c, v in grains.items())
        shifted, scores = getattr(self, "map_grains_", None), getattr(self, "map_check_", None)
        if text and scores:
            across = f"across grains {scores['with']:.2f} with them, {scores['without']:.2f} without"
            text += (f"; labels shifted to {shifted} grains of the map ({across})" if shifted else
                     f"; the map's grains not used ({across})")
        return text

    def _warn_unindexed_labels(self, described: dict) -> None:
        """Warn about labelled patterns in which no band was found at all (``_indexed_at_all``)."""
        out = np.flatnonzero(~_indexed_at_all(described))
        if not len(out):
            return
        shown = ", ".join(map(str, out[:10])) + (", ..." if len(out) > 10 else "")
        warnings.warn(
            f"{len(out)} of the {len(described['fit'])} labelled patterns (index {shown}) show no bands at all "
            "(blank or saturated): they were left out of the no-solution calibration and are 'no solution' on "
            "the map; check those patterns and their labels", stacklevel=3)

    def unlabelled_grain_share(self, rotations: np.ndarray) -> Optional[float]:
        """Share of ``rotations`` more than ``LABEL_CHECK_GRAIN_DEG`` from every labelled pattern's orientation.

        ``rotations`` (N, 3, 3): crystal-to-detector rotations of a map's patterns (``describe``, or
        :meth:`~.mapping.MapResult.detector_euler` through :func:`~.orientations.euler_matrices`,
        transposed). None when the model was not fine-tuned on patterns (no labelled orientations).
        """
        reference = getattr(self, "labelled_orientations_", None)
        if reference is None or not len(rotations):
            return None
        return float(1 - np.mean(near_orientations(rotations, reference, LABEL_CHECK_GRAIN_DEG)))

    def _warn_unlabelled_grains(self, result: Any) -> None:
        """Warn when much of a classified map lies in grains without labels and labels carry poorly to such grains."""
        weak = {c: r for c, r in (getattr(self, "grain_recall_", None) or {}).items() if r < LABEL_RECALL_WARNING}
        euler = getattr(result, "detector_euler", None)
        if not weak or euler is None or getattr(self, "map_grains_", None):
            return  # labels shifted to the map's grains: the check across grains under-estimates them
        from .orientations import euler_matrices

        indexed = np.flatnonzero(~np.asarray(result.no_solution).ravel())
        if not len(indexed):
            return
        sample = indexed[np.linspace(0, len(indexed) - 1, min(len(indexed), UNLABELLED_GRAIN_SAMPLE)).astype(int)]
        angles = np.asarray(euler, np.float64).reshape(-1, 3)[sample]
        share = self.unlabelled_grain_share(np.swapaxes(euler_matrices(angles), -1, -2))
        if share is None or share < UNLABELLED_GRAIN_SHARE:
            return
        grains = getattr(self, "labelled_grains_", None) or {}
        parts = "; ".join(f"{c} {r:.2f}" + (f" (labelled in {grains[c]} grain{'s' if grains[c] > 1 else ''})"
                                             if c in grains else "") for c, r in weak.items())
        scores = getattr(self, "map_check_", None)
        if scores:  # the map's grains were tried, and the check across grains chose without them
            hint = (f" (the map's grains were tried and carried the labels no better: {scores['with']:.2f} across "
                    f"grains with them, {scores['without']:.2f} without)")
        else:
            hint = (". Where the phases share orientations (coherent precipitates and their matrix), label both in "
                    "one grain and train with this map (fit(..., map_patterns=map); the widget's painted labels do "
                    "so): the labels may then be shifted to every grain of the map")
        warnings.warn(
            f"{100 * share:.0f} % of the map's indexed patterns lie in grains without labels (orientations more than "
            f"{LABEL_CHECK_GRAIN_DEG:g} degrees from every labelled pattern's), and the labels carry poorly to such "
            f"grains: in the check that leaves each labelled grain out, the share of each class's labels called "
            f"right is {parts}. Expect about as many of those grains' patterns of these classes to be called "
            "wrongly: label patterns of these classes in more grains and train again" + hint, stacklevel=3)

    def _warn_weak_labels(self, pred: np.ndarray, labels: np.ndarray, cross_validated: bool) -> None:
        """Warn about the labelled classes whose patterns are called wrongly (``pred``: the check's calls)."""
        weak = {c: r for c, r in self.labelled_recall_.items() if r < LABEL_RECALL_WARNING}
        if not weak:
            return
        parts = []
        for c, r in weak.items():
            wrong = pred[(labels == c) & (pred != c)]
            values, counts = np.unique(wrong, return_counts=True)
            parts.append(f"{c} ({100 * r:.0f} % of its labelled patterns called {c}, most others "
                         f"{values[counts.argmax()]})")
        check = ("in a check where each labelled pattern is called by a model fine-tuned without it"
                 if cross_validated else "on their own patterns")
        warnings.warn(
            f"the fine-tuned model does not tell these labels from others {check}: "
            + "; ".join(parts) + ". On this acquisition the patterns of these classes look alike (for an "
            "ordered phase and its disordered parent, e.g. B2 NiAl and bcc Fe or L1_2 Ni3Al and fcc Ni, the "
            "superlattice bands are lost in the noise of dim or blurred patterns), so expect about as many of the map's other patterns of them "
            "to be called wrongly. Check the labels, label more patterns, or record patterns with more "
            "pixels or at a lower voltage (wider bands)", stacklevel=3)

    def fit_features(self, features: np.ndarray, labels: Sequence, *,
                     progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> "BandProfileClassifier":
        """Train from scratch on band-profile features (the training script's path: simulated profiles)."""
        self._check_params()
        features = _check_features(features)
        labels = check_labels(labels, len(features))
        self._fit(features, labels, resolve_classes(labels), None, progress=progress, cancel=cancel,
                  scratch=True)
        self.labelled_recall_ = None
        self.grain_recall_ = None
        self.labelled_orientations_ = None
        self.labelled_grains_ = None
        self.map_grains_ = None
        self.map_check_ = None
        return self

    def _fit(self, x: np.ndarray, y: np.ndarray, classes: np.ndarray, described: Optional[dict], *,
             progress=None, cancel=None, scratch: bool = False, acquisition: Optional[dict] = None) -> None:
        source = None
        if self.simulation_pretrained and not scratch:
            from .pretrained import band_profiles_path

            source = type(self).load(band_profiles_path(), device="cpu")
        space_groups = source is not None and set(classes.tolist()) <= set(source.classes_.tolist())
        if space_groups:
            classes = source.classes_
            bank_x = source.bank_features_.astype(np.float32)
            bank_y = source.bank_labels_
            repeat = max(1, int(np.ceil(self.user_weight / (1 - self.user_weight) * len(bank_y) / len(y))))
            train_x = np.concatenate([bank_x, np.repeat(x, repeat, 0)])
            train_y = np.concatenate([bank_y, np.repeat(y, repeat, 0)])
            mean, std = source.feature_mean_, source.feature_std_
        else:
            train_x, train_y = x, y
            bank_x, bank_y = np.empty((0, x.shape[1]), np.float16), np.empty(0, y.dtype)
            mean, std = x.mean(0), x.std(0) + 1e-3
        epochs, lr = int(self.max_epochs), float(self.learning_rate)
        with isolated_torch_rng(int(self.seed)):
            # built under the seed: a layer the shipped state does not fill (phase names, from scratch) starts
            # from the same weights each time (built before it, the seed left them to the process's state)
            net = _network(x.shape[1], int(self.hidden), len(classes), float(self.dropout))
            if source is not None:
                state = source.net_.state_dict()
                if not space_groups:  # new output layer, shipped hidden layers
                    state = {k: v for k, v in state.items() if not k.startswith("6.")}
                net.load_state_dict(state, strict=False)
                if space_groups:  # gentle: the shipped network already knows these classes
                    epochs, lr = max(1, epochs // 3), lr / 3
            # a few labelled patterns make one batch per pass: train for enough steps all the same
            epochs = max(epochs, int(np.ceil(MIN_STEPS / np.ceil(len(train_y) / 256))))
            self._train(net, (train_x - mean) / std, np.searchsorted(classes, train_y), epochs, lr,
                        progress, cancel)
        thresholds = ((source.fit_threshold_, source.symmetry_threshold_) if source is not None
                      else (float("-inf"), float("-inf")))
        if described is not None and len(described["fit"]):
            # the user's patterns are cubic: keep all but rejection_rate of them, never stricter than shipped,
            # and patterns nothing was indexed in (blank ones: fit 0, symmetry at its floor) do not count
            indexed = _indexed_at_all(described)
            if indexed.any():
                own = no_solution_thresholds(described["fit"][indexed], described["symmetry"][indexed],
                                             float(self.rejection_rate))
            else:
                own = thresholds
            thresholds = tuple(min(a, b) for a, b in zip(own, thresholds)) if source is not None else own
        fit_threshold, symmetry_threshold = thresholds
        # fitted state, all at once (a cancelled fit keeps the previous one)
        self.classes_ = np.asarray(classes)
        self.feature_mean_, self.feature_std_ = mean.astype(np.float32), std.astype(np.float32)
        self.net_ = net.eval()
        self.fit_threshold_ = float(fit_threshold)
        self.symmetry_threshold_ = float(symmetry_threshold)
        self.bank_features_ = bank_x.astype(np.float16)
        self.bank_labels_ = bank_y
        self.labelled_acquisition_ = acquisition
        self.temperature_ = 1.0  # fit() then sets it from the label check's calls

    def acquisition_differences(self, pattern_shape: Sequence[int],
                                pc: Optional[Sequence[float]] = None) -> list[str]:
        """How a map's acquisition differs from the one :meth:`fit` learned its labels on.

        Labels of one acquisition carry less well to another (measured on
        simulated maps of six phases: about 0.8 of another session's
        patterns right, against 0.87-0.96 of the other patterns of the
        labelled map), so a non-empty answer means: label a few patterns of
        this map.

        Parameters
        ----------
        pattern_shape : (int, int)
            The map's pattern height and width in pixels (before binning).
        pc : (float, float, float), optional
            The map's projection centre (Bruker convention); not compared when None.

        Returns
        -------
        list of str
            One phrase per difference, e.g. ``"32x40 patterns, not 40x40"`` or
            ``"projection centre 0.45, 0.25, 0.65, not 0.5, 0.3, 0.6"``; empty
            when they match (to 5e-5) or the model was not fine-tuned on patterns.
        """
        seen = getattr(self, "labelled_acquisition_", None)  # unfitted: nothing learned
        if seen is None:
            return []
        shape, own = tuple(int(v) for v in pattern_shape[-2:]), tuple(seen["pattern_shape"])
        out = [f"{'x'.join(map(str, shape))} patterns, not {'x'.join(map(str, own))}"] if shape != own else []
        if pc is not None and not np.allclose(pc, seen["pc"], atol=5e-5):
            text = lambda v: ", ".join(f"{float(x):.4g}" for x in v)  # noqa: E731
            out.append(f"projection centre {text(pc)}, not {text(seen['pc'])}")
        return out

    def _train(self, net: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float,
               progress, cancel) -> None:
        with torch_threads(1):  # a small network: one thread, unhurt by other work (core.base.torch_threads)
            self._train_epochs(net, x, y, epochs, lr, progress, cancel)

    def _train_epochs(self, net: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float,
                      progress, cancel) -> None:
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        yt = torch.from_numpy(np.asarray(y, np.int64))
        batch = 256
        steps = max(1, (len(xt) + batch - 1) // batch)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=float(self.weight_decay))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps)
        gen = torch_generator(int(self.seed))
        noise = float(self.feature_noise)
        for epoch in range(epochs):
            check_cancel(cancel)
            net.train()
            perm = torch.randperm(len(xt), generator=gen)
            for s in range(0, len(xt), batch):
                b = perm[s:s + batch]
                xb = xt[b]
                if noise > 0:
                    xb = xb + noise * torch.randn(xb.shape, generator=gen)
                loss = nn.functional.cross_entropy(net(xb), yt[b], label_smoothing=0.05)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            report(progress, stage="train", step=epoch + 1, total=epochs)
        net.eval()

    # ----------------------------------------------------------------- predict
    @property
    def no_solution_label_(self) -> Any:
        """Label used for "no solution": 0 for integer classes, else ``"no solution"``."""
        check_is_fitted(self)
        return 0 if self.classes_.dtype.kind in "iu" else NO_SOLUTION_TEXT

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (N, n_classes) of band-profile features (``describe(patterns)["features"]``).

        For studies that describe patterns once and classify them with several models.
        """
        check_is_fitted(self)
        return self._probabilities(_check_features(features))

    def _logits(self, features: np.ndarray) -> np.ndarray:
        x = (np.asarray(features, np.float32) - self.feature_mean_) / self.feature_std_
        with torch.inference_mode():
            return self.net_(torch.from_numpy(x)).numpy()

    def _probabilities(self, features: np.ndarray) -> np.ndarray:
        return softmax(self._logits(features), self.temperature_).astype(np.float32)

    def predict_uncertainty(self, patterns: Any, background: Optional[np.ndarray] = None, *,
                            check: bool = True, progress: Optional[ProgressCallback] = None,
                            cancel: Optional[CancelToken] = None) -> dict:
        """Probabilities, class index, confidence, cubic fit and symmetry, and the no-solution mask per pattern.

        ``background``: the detector's static background (see :meth:`describe`).

        Returns
        -------
        dict
            ``probabilities`` (N, n_classes), ``index``, ``confidence``,
            ``fit`` (orientation fit), ``symmetry`` (see
            :meth:`~.bands.BandIndexer.symmetry`), ``rotations`` (N, 3, 3),
            ``agreement`` (1.0 where the pattern indexes as cubic: fit and
            symmetry at or above their thresholds, else 0.0) and
            ``no_solution`` (N,) bool.
        """
        check_is_fitted(self)
        d = self.describe(patterns, background, check=check, progress=progress, cancel=cancel)
        proba = self._probabilities(d["features"])
        confidence = proba.max(1).astype(np.float32)
        indexed = (d["fit"] >= self.fit_threshold_) & (d["symmetry"] >= self.symmetry_threshold_)
        return {"probabilities": proba, "index": proba.argmax(1), "confidence": confidence,
                "fit": d["fit"], "symmetry": d["symmetry"], "rotations": d["rotations"],
                "agreement": indexed.astype(np.float32),
                "no_solution": (confidence < float(self.confidence_threshold)) | ~indexed}

    def predict_proba(self, patterns: Any, background: Optional[np.ndarray] = None) -> np.ndarray:
        """Class probabilities (N, n_classes); rows sum to 1."""
        return self.predict_uncertainty(patterns, background)["probabilities"]

    def predict(self, patterns: Any, no_solution: bool = False,
                background: Optional[np.ndarray] = None) -> np.ndarray:
        """Most probable class of each pattern (``no_solution=True``: uncertain ones get ``no_solution_label_``)."""
        res = self.predict_uncertainty(patterns, background)
        labels = self.classes_[res["index"]]
        if no_solution and res["no_solution"].any():
            labels = labels.astype(object)
            labels[res["no_solution"]] = self.no_solution_label_
            labels = labels.astype(self.classes_.dtype if self.classes_.dtype.kind in "iu" else str)
        return labels

    def report(self, patterns: Any, labels: Sequence, no_solution: bool = False) -> ClassificationReport:
        """Precision, recall, F1 (per class and class-weighted) and the confusion matrix."""
        labels = check_labels(labels, len(check_stack(patterns)))
        return classification_report(labels, self.predict(patterns, no_solution=no_solution), self.classes_)

    def classify_map(self, pattern_map: Any, chunk_size: int = 512,
                     background: Union[str, np.ndarray, None] = None, *,
                     progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                     client: Any = None, store: Optional[Union[str, os.PathLike]] = None,
                     overwrite: bool = False, step_size_um: Optional[Any] = None):
        """Classify every pattern of a map, streaming in chunks (see :func:`~.mapping.classify_map`).

        ``background``: the detector's static background, an array (see
        :meth:`describe`), or ``"map"``: the mean pattern of this map (one
        streaming pass first; right for a map of many grains, not for one
        inside a single grain, whose bands the mean keeps).
        """
        from .mapping import classify_map

        shape = getattr(pattern_map, "shape", ())
        if len(shape) == 4:
            check_pattern_side(shape[2:], shape)  # before a chunk is read or a cluster started
        result = classify_map(self, pattern_map, chunk_size=chunk_size, background=background, progress=progress,
                              cancel=cancel, client=client, store=store, overwrite=overwrite,
                              step_size_um=step_size_um)
        self._warn_unlabelled_grains(result)
        return result

    # -------------------------------------------------------------- save/load
    def _get_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        kind = "int" if self.classes_.dtype.kind in "iu" else "str"
        metadata = {"model_version": MODEL_VERSION,
                    "classes": [int(c) if kind == "int" else str(c) for c in self.classes_],
                    "classes_type": kind, "fit_threshold": self.fit_threshold_,
                    "symmetry_threshold": self.symmetry_threshold_,
                    "bank_labels": [int(c) if kind == "int" else str(c) for c in self.bank_labels_],
                    "labelled_acquisition": self.labelled_acquisition_,
                    "labelled_recall": _per_class_to_json(getattr(self, "labelled_recall_", None)),
                    "grain_recall": _per_class_to_json(getattr(self, "grain_recall_", None)),
                    "labelled_grains": _per_class_to_json(getattr(self, "labelled_grains_", None)),
                    "map_grains": getattr(self, "map_grains_", None),
                    "map_check": getattr(self, "map_check_", None),
                    "temperature": float(self.temperature_)}
        tensors = with_prefix(self.net_.state_dict(), "net")
        tensors.update({"feature_mean": torch.from_numpy(self.feature_mean_),
                        "feature_std": torch.from_numpy(self.feature_std_),
                        "bank_features": torch.from_numpy(np.asarray(self.bank_features_, np.float16))})
        if getattr(self, "labelled_orientations_", None) is not None:
            tensors["labelled_orientations"] = torch.from_numpy(np.asarray(self.labelled_orientations_, np.float32))
        return metadata, tensors

    def _set_state(self, metadata: dict[str, Any], tensors: dict[str, torch.Tensor], device: torch.device) -> None:
        kind = metadata["classes_type"]
        dtype = np.int64 if kind == "int" else str
        classes = np.asarray(metadata["classes"], dtype=dtype)
        net = _network(N_FEATURES, int(self.hidden), len(classes), float(self.dropout))
        net.load_state_dict(split_prefix(tensors, "net"))
        self.classes_ = classes
        self.feature_mean_ = tensors["feature_mean"].numpy().astype(np.float32)
        self.feature_std_ = tensors["feature_std"].numpy().astype(np.float32)
        self.net_ = net.eval()
        self.fit_threshold_ = float(metadata["fit_threshold"])
        # version 1 files have no symmetry check
        self.symmetry_threshold_ = float(metadata.get("symmetry_threshold", float("-inf")))
        self.bank_features_ = tensors["bank_features"].numpy()
        self.bank_labels_ = np.asarray(metadata["bank_labels"], dtype=dtype)
        acquisition = metadata.get("labelled_acquisition")  # version 2 files have none
        self.labelled_acquisition_ = None if acquisition is None else {
            "pc": tuple(float(v) for v in acquisition["pc"]),
            "pattern_shape": tuple(int(v) for v in acquisition["pattern_shape"]),
            "n_patterns": int(acquisition["n_patterns"])}
        recall = metadata.get("labelled_recall")  # version 3 and older files have none
        self.labelled_recall_ = None if recall is None else {c: float(r) for c, r in recall}
        grains = metadata.get("grain_recall")  # version 5 and older files have none
        self.grain_recall_ = None if grains is None else {c: float(r) for c, r in grains}
        counts = metadata.get("labelled_grains")
        self.labelled_grains_ = None if counts is None else {c: int(n) for c, n in counts}
        orientations = tensors.get("labelled_orientations")
        self.labelled_orientations_ = None if orientations is None else orientations.numpy().astype(np.float32)
        map_grains = metadata.get("map_grains")  # version 6 and older files have none
        self.map_grains_ = None if map_grains is None else int(map_grains)
        scores = metadata.get("map_check")
        self.map_check_ = None if scores is None else {k: float(scores[k]) for k in ("without", "with")}
        temperature = float(metadata.get("temperature", 1.0))  # version 4 and older files have none
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"its temperature {temperature} is not a positive number")
        self.temperature_ = temperature


def load_ebsd_model(path: Union[str, os.PathLike], device: str = "auto") -> Any:
    """Read an EBSD model file of either kind: an ``EBSDClassifier`` or a ``BandProfileClassifier``.

    A micrograph model is refused with the message of :func:`~..nn.modelio.load_model_file`.
    """
    from ..nn.modelio import read_model_file
    from .classifier import EBSDClassifier

    kind, metadata, tensors = read_model_file(path)
    if kind == BandProfileClassifier.kind:
        return BandProfileClassifier._from_file(path, metadata, tensors, "cpu")
    if kind == EBSDClassifier.kind:
        return EBSDClassifier._from_file(path, metadata, tensors, device)
    return EBSDClassifier.load(path, device=device)  # raises: names the kind the file holds
