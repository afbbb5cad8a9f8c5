"""EBSD preprocessing: range, invariances, persistence, bad input."""

import numpy as np
import pytest

from napari_microstructure.core.ebsd import simulate as S
from napari_microstructure.core.ebsd.preprocess import PatternPreprocessor
from napari_microstructure.core.errors import MicrostructureError, NotFittedError


@pytest.fixture(scope="module")
def patterns():
    rng = np.random.default_rng(0)
    return S.simulate_patterns("Ni", S.random_rotations(12, rng), (40, 40), rng=rng)


def test_output_range_shape_and_dtype(patterns):
    pre = PatternPreprocessor(input_size=32).fit(patterns)
    out = pre.transform(patterns)
    assert out.shape == (12, 32, 32) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert pre.static_background_.shape == (32, 32)


def test_camera_gain_does_not_matter(patterns):
    pre = PatternPreprocessor(input_size=40).fit(patterns)
    a = pre.transform(patterns)
    b = pre.transform(patterns.astype(np.float32) * 3.7)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_patterns_are_processed_independently(patterns):
    pre = PatternPreprocessor(input_size=32).fit(patterns)
    whole = pre.transform(patterns)
    one_by_one = np.concatenate([pre.transform(p[None]) for p in patterns])
    np.testing.assert_array_equal(whole, one_by_one)


def test_state_round_trip_repeats_exactly(patterns):
    pre = PatternPreprocessor(input_size=24, dynamic_sigma=0.1, clip_sigma=2.5).fit(patterns)
    params, arrays = pre.to_state()
    again = PatternPreprocessor.from_state(params, arrays)
    np.testing.assert_array_equal(pre.transform(patterns), again.transform(patterns))


def test_map_background_option(patterns):
    pre = PatternPreprocessor(input_size=32).fit(patterns[:6])
    bg = pre.mean_background(patterns.reshape(3, 4, 40, 40))
    assert bg.shape == (32, 32)
    out = pre.transform(patterns, background=bg)
    assert np.isfinite(out).all()
    with pytest.raises(MicrostructureError, match="mean_background"):
        pre.transform(patterns, background=np.zeros((5, 5)))


def test_bad_input(patterns):
    pre = PatternPreprocessor(input_size=32)
    with pytest.raises(NotFittedError):
        pre.transform(patterns)
    with pytest.raises(MicrostructureError, match="single 2-D image"):
        pre.fit(patterns[0])
    bad = patterns.astype(np.float32)
    bad[3, 2, 2] = np.nan
    with pytest.raises(MicrostructureError, match="NaN.*index 3"):
        pre.fit(bad)
    with pytest.raises(MicrostructureError, match="different sizes"):
        pre.fit([patterns[0], patterns[1][:30]])
    with pytest.raises(MicrostructureError, match="input_size"):
        PatternPreprocessor(input_size=4).fit(patterns)
