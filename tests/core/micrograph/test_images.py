"""Input checks at the micrograph boundary: images, pixel sizes, image lists, masks."""

import numpy as np
import pytest

from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.core.micrograph.images import (
    as_grey_image, as_image_list, as_pixel_sizes, check_mask, check_pixel_size, class_names_from,
)


def test_grey_image_is_a_float32_copy():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    grey = as_grey_image(image)
    assert grey.dtype == np.float32 and grey.shape == (3, 4)
    grey[0, 0] = 99
    assert image[0, 0] == 0
    with_nan = np.arange(16.0).reshape(4, 4)
    with_nan[1, 1] = np.nan
    assert np.isnan(as_grey_image(with_nan)[1, 1])  # NaN pixels are kept for masking


def test_rgb_becomes_luma_with_a_warning():
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 1] = 100
    rgb[0, 0] = (10, 0, 0)
    with pytest.warns(UserWarning, match="converting to grey"):
        grey = as_grey_image(rgb)
    assert grey.shape == (10, 10) and grey[1, 1] == pytest.approx(58.7) and grey[0, 0] == pytest.approx(2.99)


@pytest.mark.parametrize("image, match", [
    (np.zeros((4, 4), bool), "dtype bool"),
    (np.array([["a", "b"]]), "dtype"),
    (np.zeros((2, 3, 4, 5)), "4-D"),
    (np.zeros(5), "1-D"),
    (np.full((4, 4), np.inf), "infinite"),
    (np.full((4, 4), np.nan), "no finite pixel"),
])
def test_bad_images_are_refused_by_name(image, match):
    with pytest.raises(MicrostructureError, match=match):
        as_grey_image(image, "images[3]")
    with pytest.raises(MicrostructureError, match=r"images\[3\]"):
        as_grey_image(image, "images[3]")


def test_pixel_sizes():
    assert check_pixel_size(0.25) == 0.25
    assert check_pixel_size((0.5, 0.5)) == 0.5  # napari's layer.scale
    assert check_pixel_size(np.float32(2)) == 2.0
    for bad, match in ((None, "missing"), (0, "positive"), (-1, "positive"), (np.nan, "positive"),
                       ("x", "not a number"), ((0.1, 0.2), "differs between axes"), ((), "empty")):
        with pytest.raises(MicrostructureError, match=match):
            check_pixel_size(bad)
    assert as_pixel_sizes(0.1, 3) == [0.1] * 3
    assert as_pixel_sizes([0.1, 0.2], 2) == [0.1, 0.2]
    with pytest.raises(MicrostructureError, match="one pixel size per image"):
        as_pixel_sizes([0.1], 2)
    with pytest.raises(MicrostructureError, match=r"pixel_sizes\[1\]"):
        as_pixel_sizes([0.1, -2], 2)


def test_image_lists_masks_and_class_names():
    a = np.zeros((5, 5))
    assert len(as_image_list(a)) == 1
    assert len(as_image_list(np.zeros((3, 5, 5)))) == 3  # a stack of grey images
    assert len(as_image_list(np.zeros((5, 5, 3)))) == 1  # one RGB image
    assert len(as_image_list([a, a])) == 2
    with pytest.raises(MicrostructureError, match="list of 2-D arrays"):
        as_image_list("image.tif")
    assert check_mask(np.ones((5, 5)), (5, 5)).shape == (5, 5)
    with pytest.raises(MicrostructureError, match="same size"):
        check_mask(np.ones((4, 5)), (5, 5))
    assert class_names_from([2, "a", 2, "b"]) == ["2", "a", "b"]
