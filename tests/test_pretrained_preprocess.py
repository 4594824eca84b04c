"""Pixels to model inputs: camjax.pretrained.preprocess / WeightsSpec.preprocess, and
camjax.extract refusing raw uint8 images."""

import numpy as np
import pytest

import camjax
from camjax import models
from camjax.pretrained import WEIGHTS, preprocess


def test_preprocess_scales_pixels_by_the_named_normalisation():
    px = np.array([[[0, 127, 255]]], np.uint8)  # one pixel, [1, 1, 3]
    np.testing.assert_allclose(preprocess(px, "minus127_div128"), [[[-127 / 128, 0.0, 1.0]]])
    np.testing.assert_allclose(preprocess(px, "unit"), [[[0.0, 127 / 255, 1.0]]], rtol=1e-6)
    # ImageNet: (x / 255 - mean) / std per channel.
    want = [[[-0.485 / 0.229, (127 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225]]]
    np.testing.assert_allclose(preprocess(px, "imagenet"), want, rtol=1e-5)
    assert preprocess(px, "unit").dtype == np.float32


def test_preprocess_resizes_each_image_of_a_batch():
    images = np.zeros((2, 10, 20, 3), np.uint8)
    images[1] = 255
    out = preprocess(images, "unit", size=4)
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out[0], 0.0)  # constant images stay constant
    np.testing.assert_array_equal(out[1], 1.0)


def test_weights_spec_preprocess_gives_the_networks_inputs():
    spec = WEIGHTS["efficientnet_lite0_gap"]
    out = spec.preprocess(np.full((30, 40, 3), 255, np.uint8))
    assert out.shape == (spec.image_size, spec.image_size, 3)
    np.testing.assert_array_equal(out, 1.0)  # (255 - 127) / 128


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4), np.uint8), r"\[H, W, 3\]"),
        (np.zeros((1, 4, 4, 4), np.uint8), r"\[H, W, 3\]"),
    ],
)
def test_preprocess_refuses_what_is_not_uint8_rgb(images, message):
    with pytest.raises(ValueError, match=message):
        preprocess(images, "unit")


def test_extract_refuses_uint8_images_naming_the_preprocessing():
    model = models.create("tiny_gap", 3)
    for dtype in (np.uint8, np.int32):
        with pytest.raises(ValueError, match=r"must be float.*preprocess") as e:
            camjax.extract(model, {}, np.zeros((1, 16, 16, 3), dtype))
        assert np.dtype(dtype).name in str(e.value)
