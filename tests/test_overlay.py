"""camjax.overlay: blended heat maps, boxes, PNG output."""

import numpy as np
import pytest
from PIL import Image

from camjax.overlay import draw_boxes, overlay, save_png


def test_blend_values_by_hand():
    # Matplotlib's "jet": jet(0) = (0, 0, 0.5), jet(1) = (0.5, 0, 0).
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 100, 200, 40
    cam = np.array([[0.0, 1.0], [np.nan, 7.0]])  # NaN -> 0, 7 -> clipped to 1
    out = overlay(image, cam, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    # cam 0: 0.5 * (100, 200, 40) + 0.5 * 255 * (0, 0, 0.5) = (50, 100, 20 + 63.75) -> 84.
    np.testing.assert_array_equal(out[0, 0], [50, 100, 84])
    np.testing.assert_array_equal(out[1, 0], [50, 100, 84])
    # cam 1: 0.5 * (100, 200, 40) + 0.5 * 255 * (0.5, 0, 0) = (50 + 63.75, 100, 20) -> 114.
    np.testing.assert_array_equal(out[0, 1], [114, 100, 20])
    np.testing.assert_array_equal(out[1, 1], [114, 100, 20])
    # alpha = 0.25 with a float image in [0, 1]: 0.5 -> 128 (rounded), then
    # 0.75 * 128 + 0.25 * 255 * 0.5 = 96 + 31.875 -> 128 in blue; 96 in red and green.
    out = overlay(np.full((1, 1, 3), 0.5), np.zeros((1, 1)), alpha=0.25)
    np.testing.assert_array_equal(out[0, 0], [96, 96, 128])


def test_map_is_resized_to_the_image():
    # A constant map of another size stays constant after the bilinear resize.
    image = np.full((8, 6, 3), 10, np.uint8)
    out = overlay(image, np.ones((2, 3)), alpha=1.0)
    np.testing.assert_array_equal(out, np.broadcast_to([128, 0, 0], (8, 6, 3)))


def test_boxes_are_drawn_inclusive_and_clipped():
    image = np.zeros((6, 8, 3), np.uint8)
    draw_boxes(image, np.array([[1, 2, 4, 4], [6, 0, 20, 2]]), [(255, 0, 0), (0, 0, 255)], 1)
    red = image[..., 0] == 255
    want = np.zeros((6, 8), bool)
    want[2, 1:5] = want[4, 1:5] = True  # top and bottom rows, x0..x1 inclusive
    want[2:5, 1] = want[2:5, 4] = True  # left and right columns
    np.testing.assert_array_equal(red, want)
    blue = image[..., 2] == 255
    want = np.zeros((6, 8), bool)
    want[0, 6:8] = want[2, 6:8] = True  # top and bottom rows, cut at the image border
    want[0:3, 6] = True  # left column; the right one (x = 20) is off the image
    np.testing.assert_array_equal(blue, want)
    # Width 2 fills the 2-pixel band inside the box; a 2x2 box is all edge.
    image = np.zeros((4, 4, 3), np.uint8)
    draw_boxes(image, np.array([1, 1, 2, 2]), width=2)
    assert (image[..., 1] == 255).sum() == 4 and image[1:3, 1:3, 1].all()


def test_overlay_with_boxes_and_bad_input(tmp_path):
    image = np.zeros((5, 5, 3), np.uint8)
    out = overlay(image, np.zeros((5, 5)), boxes=np.array([[0, 0, 4, 4]]), box_width=1)
    np.testing.assert_array_equal(out[0, 2], [0, 255, 0])
    np.testing.assert_array_equal(out[2, 2], [0, 0, 64])  # 0.5 * 255 * 0.5 = 63.75
    with pytest.raises(ValueError, match=r"float image must hold finite values in \[0, 1\]"):
        overlay(np.full((2, 2, 3), 2.0), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="cam must be one map"):
        overlay(image, np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="colormap"):
        overlay(image, np.zeros((5, 5)), colormap="no-such-map")
    with pytest.raises(ValueError, match="x1 < x0"):
        draw_boxes(image, np.array([3, 0, 1, 4]))


def test_save_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = save_png(image, tmp_path / "sub" / "x.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    with pytest.raises(ValueError, match="uint8"):
        save_png(image.astype(np.float32), tmp_path / "y.png")


def test_labelled_panels_layout_and_label_band():
    from camjax.overlay import labelled_panels

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 80, 3), np.uint8)
    cams = [rng.uniform(0, 1, (7, 7)).astype(np.float32) for _ in range(2)]
    boxes = np.array([[5, 6, 40, 30], [0, 0, 79, 59]])
    out = labelled_panels(img, cams, boxes, ["1. cat 0.80", "2. dog 0.10"])
    band = out.shape[0] - 60
    assert out.shape == (60 + band, 160, 3) and 12 <= band <= 40
    for i in range(2):  # each panel is overlay() of its map with its box, under the band
        want = overlay(img, cams[i], boxes=boxes[i][None], box_width=1)
        np.testing.assert_array_equal(out[band:, i * 80 : (i + 1) * 80], want)
    label = out[:band].astype(int)
    assert (label[..., 0] == label[..., 1]).all() and (label[..., 1] == label[..., 2]).all()
    bright = label[..., 0] > 200  # white (antialiased) text on a black band
    assert bright[:, :80].any() and bright[:, 80:].any()
    assert (label[..., 0] == 0).mean() > 0.5
