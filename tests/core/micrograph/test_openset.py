import numpy as np
import pytest

from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.core.micrograph.openset import OpenSetMixture


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([0, 0], 0.3, (200, 2)), rng.normal([5, 0], 0.3, (200, 2))])
    y = np.repeat([0, 1], 200)
    return x, y, rng


def test_components_are_classes_and_far_points_are_rejected(blobs):
    x, y, rng = blobs
    m = OpenSetMixture(rejection_quantile=0.02).fit(x, y, 2)
    held = np.concatenate([rng.normal([0, 0], 0.3, (100, 2)), rng.normal([5, 0], 0.3, (100, 2))])
    m.calibrate(held)
    assert np.allclose(m.means_, [[0, 0], [5, 0]], atol=0.1)
    probs = m.crop_probabilities(np.array([[0.1, 0.0], [4.9, 0.1], [2.5, 8.0], [-20.0, 0.0]]))
    assert probs.shape == (4, 3)
    assert np.allclose(probs.sum(1), 1.0)
    assert probs[0].argmax() == 0 and probs[1].argmax() == 1
    assert probs[2, 2] == 1.0 and probs[3, 2] == 1.0  # far away: none of these
    # about the calibrated share of held-out known points is rejected
    rejected = (m.log_likelihood(held) < m.threshold_).mean()
    assert rejected == pytest.approx(0.02, abs=0.011)


def test_parameters_round_trip(blobs):
    x, y, _ = blobs
    m = OpenSetMixture().fit(x, y, 2)
    m.calibrate(x)
    r = OpenSetMixture.from_parameters(m.means_, m.covariances_, m.weights_, m.threshold_)
    q = np.array([[0.2, 0.1], [3.0, 3.0]])
    assert np.allclose(r.log_likelihood(q), m.log_likelihood(q))
    assert np.allclose(r.crop_probabilities(q), m.crop_probabilities(q))


def test_bad_inputs(blobs):
    x, y, _ = blobs
    with pytest.raises(MicrostructureError, match="at least 2"):
        OpenSetMixture().fit(x[:201], y[:201], 2)
    with pytest.raises(MicrostructureError, match="NaN"):
        OpenSetMixture().fit(np.full_like(x, np.nan), y, 2)
    with pytest.raises(MicrostructureError, match="rejection_quantile"):
        OpenSetMixture(rejection_quantile=0.7)


# ------------------------------------------------------------ the other scorers
from napari_microstructure.core.micrograph.openset import (  # noqa: E402
    SCORERS, EnsembleScorer, KNNScorer, cross_validated_novelty, make_scorer, scorer_from_state,
)


def _head_for(x, y):
    """A linear head that separates the two blobs (weights from the class means)."""
    means = np.stack([x[y == k].mean(0) for k in (0, 1)])
    return means * 2.0, -(means ** 2).sum(1)


@pytest.mark.parametrize("name", [n for n in SCORERS if n != "ensemble"])
def test_every_scorer_classifies_and_rejects_far_points(blobs, name):
    x, y, rng = blobs
    # raw positions for k-NN: these 2-D blobs surround the origin, so directions cannot separate them
    scorer = make_scorer(name, rejection_quantile=0.05, head=_head_for(x, y), normalise=False).fit(x, y, 2)
    held = np.concatenate([rng.normal([0, 0], 0.3, (100, 2)), rng.normal([5, 0], 0.3, (100, 2))])
    scorer.calibrate(held)
    probs = scorer.crop_probabilities(np.array([[0.1, 0.0], [4.9, 0.1], [2.5, 30.0], [-40.0, 0.0]]))
    assert probs.shape == (4, 3) and np.allclose(probs.sum(1), 1.0)
    assert probs[0].argmax() == 0 and probs[1].argmax() == 1
    if name != "energy":
        assert probs[2, 2] == 1.0 and probs[3, 2] == 1.0    # far from every class: none of these
    else:
        # a linear head's energy only grows along the class directions: (-40, 0) lies deep in
        # class 0's half-space and is accepted (why energy alone is not the default)
        assert probs[3, 0] == 1.0
    # the calibrated share of held-out known points is rejected, and not more
    assert scorer.rejected(held).mean() == pytest.approx(0.05, abs=0.02)


@pytest.mark.parametrize("name", ["knn", "mahalanobis", "energy"])
def test_scorer_state_round_trip(blobs, name):
    x, y, _ = blobs
    scorer = make_scorer(name, head=_head_for(x, y)).fit(x, y, 2)
    scorer.calibrate(x)
    arrays, meta = scorer.state()
    back = scorer_from_state(name, arrays, meta)
    q = np.array([[0.2, 0.1], [3.0, 3.0], [9.0, -1.0]])
    assert np.allclose(back.novelty(q), scorer.novelty(q), atol=1e-5)
    assert np.allclose(back.crop_probabilities(q), scorer.crop_probabilities(q), atol=1e-6)


def test_knn_distance_is_to_the_kth_neighbour():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    s = KNNScorer(k=2).fit(ref, np.array([0, 1, 1]), 2)
    # (1, 0) is its own nearest neighbour; the 2nd nearest is (0, 1) at sqrt(2)
    assert s.novelty(np.array([[2.0, 0.0]]))[0] == pytest.approx(np.sqrt(2.0))


def test_knn_scale_column_keeps_look_alikes_at_other_magnifications_apart():
    """Columns: 1 descriptor, 2 features, then the scale (log10 px/um). The same look at a tenfold
    other scale is novel only when the scale counts; the scale is never normalised with the features."""
    rng = np.random.default_rng(0)
    feats = np.c_[np.ones(60), rng.normal(0, 0.02, 60)]           # one look (a direction)
    scale = rng.uniform(0.9, 1.1, 60)                              # all seen near 10 px/um
    ref = np.c_[np.zeros(60), feats, scale]
    y = np.repeat([0, 1], 30)
    query = np.array([[0.0, 5.0, 0.0, 1.0],                      # same look, same scale (norm ignored)
                      [0.0, 5.0, 0.0, 0.0]])                     # same look, 10x coarser
    plain = KNNScorer(k=5, split=1, scale_weight=None).fit(ref[:, :3], y, 2)
    off = KNNScorer(k=5, split=1, scale_weight=0.0).fit(ref, y, 2)
    on = KNNScorer(k=5, split=1, scale_weight=1.0).fit(ref, y, 2)
    np.testing.assert_allclose(off.novelty(query), plain.novelty(query[:, :3]), atol=1e-9)
    near, far = on.novelty(query)
    assert near < 0.2 and far > 0.8                                # a decade of scale counts as 1
    arrays, meta = on.state()
    back = scorer_from_state("knn", arrays, meta)
    np.testing.assert_allclose(back.novelty(query), on.novelty(query), atol=1e-5)
    with pytest.raises(MicrostructureError, match="scale_weight"):
        KNNScorer(scale_weight=-1.0)


def test_knn_granulometry_columns_keep_look_alikes_of_other_feature_sizes_apart():
    """Columns: 1 descriptor, 2 features, the scale, then the granulometry (N_VALUES). The same look and
    scale with other feature sizes is novel only when the granulometry counts; it is standardised by the
    reference's spread (floored), never normalised with the features, and kept through the state."""
    from napari_microstructure.core.micrograph.granulometry import N_VALUES
    from napari_microstructure.core.micrograph.openset import GRANULOMETRY_SPREAD_FLOOR

    rng = np.random.default_rng(0)
    n = 60
    feats = np.c_[np.ones(n), rng.normal(0, 0.02, n)]
    grains = np.zeros((n, N_VALUES))
    grains[:, :4] = rng.normal(0.3, 0.05, (n, 4))           # fine features only; the coarse columns all 0
    ref = np.c_[np.zeros(n), feats, np.ones(n), grains]
    y = np.repeat([0, 1], n // 2)
    same = np.r_[0.0, 5.0, 0.0, 1.0, [0.3] * 4, [0.0] * (N_VALUES - 4)]   # same look, scale and sizes
    coarse = np.r_[0.0, 5.0, 0.0, 1.0, [0.05] * 4, [0.4] * (N_VALUES - 4)]  # fine features gone, coarse present
    query = np.stack([same, coarse])
    off = KNNScorer(k=5, split=1, scale_weight=1.0).fit(ref[:, :4], y, 2)
    on = KNNScorer(k=5, split=1, scale_weight=1.0, granulometry_weight=0.5).fit(ref, y, 2)
    np.testing.assert_allclose(off.novelty(query[:, :4]), [off.novelty(same[None, :4])[0]] * 2, atol=1e-9)
    near, far = on.novelty(query)
    assert near < 0.2 and far > 1.0
    assert np.all(on.granulometry_spread_[4:] == GRANULOMETRY_SPREAD_FLOOR)  # never resolved: floored
    back = scorer_from_state("knn", *on.state())
    np.testing.assert_allclose(back.novelty(query), on.novelty(query), atol=1e-5)
    with pytest.raises(MicrostructureError, match="granulometry_weight"):
        KNNScorer(granulometry_weight=float("nan"))


def test_cross_validation_never_scores_an_image_against_itself():
    # each "image" is a tight cluster of its own: scored against the others it looks far away,
    # scored against itself it would look at home (distance ~0)
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (6, 4))
    x = np.concatenate([c + rng.normal(0, 1e-3, (10, 4)) for c in centres])
    y = np.repeat([0, 0, 0, 1, 1, 1], 10)
    groups = np.repeat(np.arange(6), 10)
    score = np.isin(groups, [2, 5])
    nov = cross_validated_novelty(KNNScorer(k=1), x, y, groups, score, 2)
    assert nov.shape == (20,)
    assert nov.min() > 1e-2


def test_scorer_bad_inputs(blobs):
    x, y, _ = blobs
    with pytest.raises(MicrostructureError, match="unknown scorer"):
        make_scorer("isolation-forest")
    with pytest.raises(MicrostructureError, match="cross-entropy"):
        make_scorer("energy")
    with pytest.raises(MicrostructureError, match="NaN"):
        make_scorer("knn").fit(np.full_like(x, np.nan), y, 2)
    with pytest.raises(MicrostructureError, match="k=10"):
        KNNScorer(k=10).fit(x[:5], y[:5], 1)


def test_ensemble_rejects_what_any_member_rejects_and_round_trips(blobs):
    """Columns 0-1: descriptors (the Gaussians read them); column 2: a feature only k-NN reads."""
    x2, y, rng = blobs
    x = np.c_[x2, rng.normal(0, 0.3, len(x2))]
    held = np.c_[x2 + rng.normal(0, 0.05, x2.shape), rng.normal(0, 0.3, len(x2))]
    knn = KNNScorer(k=5, rejection_quantile=0.05, normalise=False, split=2).fit(x, y, 2)
    gauss = OpenSetMixture(rejection_quantile=0.05).fit(x[:, :2], y, 2)
    nk, ng = knn.novelty(held), gauss.novelty(held[:, :2])
    knn.calibrate_novelty(nk)
    gauss.calibrate_novelty(ng)
    ens = EnsembleScorer([(knn, None), (gauss, 2)], [EnsembleScorer.scale_of(knn, nk), EnsembleScorer.scale_of(gauss, ng)])
    q = np.array([[0.0, 0.0, 0.0],     # known: accepted by both
                  [0.0, 0.0, 9.0],     # a texture only the features tell apart
                  [2.5, 6.0, 0.0]])    # between the classes in descriptor space, usual features
    assert list(knn.rejected(q)) == [False, True, False]
    assert list(gauss.rejected(q[:, :2])) == [False, False, True]
    assert list(ens.rejected(q)) == [False, True, True]
    probs = ens.crop_probabilities(q)
    assert probs[0].argmax() == 0 and probs[1, 2] == 1.0 and probs[2, 2] == 1.0
    # on held-out known points: 0 at a member's threshold, so about twice one member's share at most
    assert ens.novelty_threshold_ == 0.0 and 0.04 <= ens.rejected(held).mean() <= 0.1
    arrays, meta = ens.state()
    back = scorer_from_state("ensemble", arrays, meta)
    np.testing.assert_allclose(back.novelty(q), ens.novelty(q), atol=1e-5)
    np.testing.assert_allclose(back.crop_probabilities(q), ens.crop_probabilities(q), atol=1e-6)
    with pytest.raises(MicrostructureError, match="EnsembleScorer"):
        make_scorer("ensemble")


def test_knn_local_spacing_judges_a_crop_by_its_neighbourhood():
    """A tight class and a sparse one. A query as far from the tight class as the sparse class's crops
    lie apart is novel only with the local spacing; inside the sparse class it is at home either way.
    The global distance ranks the two the other way round."""
    rng = np.random.default_rng(0)
    tight = rng.normal([0, 0], 0.01, (100, 2))
    sparse = rng.normal([10, 0], 1.0, (100, 2))
    x, y = np.concatenate([tight, sparse]), np.repeat([0, 1], 100)
    groups = np.arange(200) // 5                      # images of 5 crops
    near_tight = np.array([[0.3, 0.0]])               # 30 spreads off the tight class
    in_sparse = np.array([[10.6, 0.6]])               # within the sparse class's spread
    plain = KNNScorer(k=5, normalise=False).fit(x, y, 2)
    local = KNNScorer(k=5, normalise=False, local=True).fit(x, y, 2, groups=groups)
    assert plain.novelty(near_tight)[0] < plain.novelty(in_sparse)[0]
    assert local.novelty(near_tight)[0] > 5.0 and local.novelty(in_sparse)[0] < 1.5
    # the spacing of a reference crop leaves its own image out: image 0's five crops are not each other's
    own = np.linalg.norm(x[:5, None] - x[None, 5:], axis=2)
    np.testing.assert_allclose(local.reference_density_[:5], np.sort(own, axis=1)[:, 4])
    back = scorer_from_state("knn", *local.state())
    np.testing.assert_allclose(back.novelty(np.r_[near_tight, in_sparse]),
                               local.novelty(np.r_[near_tight, in_sparse]), rtol=1e-5)
    arrays, meta = local.state()
    del arrays["reference_density"]
    with pytest.raises(MicrostructureError, match="reference spacing"):
        scorer_from_state("knn", arrays, meta)


def test_knn_local_spacing_without_groups_leaves_out_the_row_only_and_is_floored():
    from napari_microstructure.core.micrograph.openset import LOCAL_SPACING_FLOOR

    x = np.repeat(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 4, axis=0)   # each point four times
    y = np.repeat([0, 1, 1], 4)
    s = KNNScorer(k=2, normalise=False, local=True).fit(x, y, 2)
    assert np.all(s.reference_density_ == LOCAL_SPACING_FLOOR)          # duplicates: spacing 0, floored
    grouped = KNNScorer(k=2, normalise=False, local=True).fit(x, y, 2, groups=np.repeat([0, 1, 2], 4))
    np.testing.assert_allclose(grouped.reference_density_, 1.0)          # the nearest other point is 1 away
    # one image (scribbles): its rows can only leave themselves out
    alone = KNNScorer(k=2, normalise=False, local=True).fit(x, y, 2, groups=np.zeros(12, int))
    np.testing.assert_array_equal(alone.reference_density_, s.reference_density_)
    with pytest.raises(MicrostructureError, match="image ids"):
        KNNScorer(k=2, local=True).fit(x, y, 2, groups=np.arange(5))


def test_cross_validated_local_novelty_reuses_the_full_spacing():
    """Each fold scores its image against the others with the spacing computed once on every crop."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (60, 3))
    y = np.repeat([0, 1], 30)
    groups = np.arange(60) // 6
    score = groups >= 8
    full = KNNScorer(k=3, local=True).fit(x, y, 2, groups=groups)
    nov = cross_validated_novelty(KNNScorer(k=3, local=True), x, y, groups, score, 2)
    want = []
    for g in (8, 9):
        keep = groups != g
        fold = KNNScorer(k=3, local=True).fit(x[keep], y[keep], 2, density=full.reference_density_[keep])
        want.append(fold.novelty(x[groups == g]))
    np.testing.assert_allclose(nov, np.concatenate(want))
