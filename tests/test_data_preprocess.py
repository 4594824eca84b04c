"""Box geometry of camjax.data.preprocess: a box drawn into an image still frames it.

A 0/1 image with ones exactly on an inclusive pixel box, resized bilinearly without
antialiasing, exceeds 0.5 exactly on the output pixels whose centres fall inside the
box's continuous extent (derivation in the preprocess module docstring), which is the
rule ``pixel_boxes`` applies to the transformed box. So ``box(image > 0.5)`` must equal
the pipeline's box, and a nearest-resized mask must agree with it too.
"""

import numpy as np
import pytest
import tensorflow as tf

from camjax.data import preprocess

H, W = 60, 90
# Inclusive (x0, y0, x1, y1). Chosen so that no edge is a tie at the sizes below: at
# side 32 (scale 32/90, 32/60) and at the crop_flip resize side 37 (ties only for
# x edges = 45 and y edges = 30, see the module notes), no edge value is a tie.
BOXES = [(10, 7, 50, 40), (0, 0, 89, 59), (70, 31, 89, 59), (3, 44, 20, 58)]


def _drawn(box):
    x0, y0, x1, y1 = box
    img = np.zeros((H, W, 3), np.uint8)
    img[y0 : y1 + 1, x0 : x1 + 1] = 255
    mask = np.zeros((H, W), np.uint8)
    mask[y0 : y1 + 1, x0 : x1 + 1] = 1
    norm = np.array([[y0 / H, x0 / W, (y1 + 1) / H, (x1 + 1) / W]], np.float32)
    return tf.constant(img), tf.constant(mask), tf.constant(norm)


def _box_of(binary):
    ys, xs = np.nonzero(binary)
    if len(xs) == 0:
        return None
    return (xs.min(), ys.min(), xs.max(), ys.max())


def test_pixel_boxes_hand_worked():
    # Box x 10..50 of width 90 -> continuous [10/90, 51/90); at side 32 the centres j+0.5
    # inside [3.556, 18.133) are j = 4..17 (3.5 < 3.556, 17.5 < 18.133 < 18.5).
    px = preprocess.pixel_boxes(tf.constant([[7 / 60, 10 / 90, 41 / 60, 51 / 90]]), 32)
    # y: [3.733, 21.867) -> j = 4..21.
    np.testing.assert_array_equal(px.numpy(), [[4, 4, 17, 21]])
    # Identity at the native size: inclusive pixels come back unchanged.
    px = preprocess.pixel_boxes(tf.constant([[7 / 60, 10 / 90, 41 / 60, 51 / 90]]), 90)
    assert px.numpy()[0, 0] == 10 and px.numpy()[0, 2] == 50
    # A sliver thinner than a pixel keeps one pixel.
    px = preprocess.pixel_boxes(tf.constant([[0.5, 0.5, 0.501, 0.501]]), 10)
    np.testing.assert_array_equal(px.numpy(), [[5, 5, 5, 5]])


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("size", [32, 128])
def test_eval_resize_box_frames_same_pixels(box, size):
    img, mask, norm = _drawn(box)
    out, px, keep, m = preprocess.eval_resize(img, norm, mask, size, antialias=False)
    assert bool(keep.numpy().all())
    expected = _box_of(out.numpy()[..., 0] > 127.5)
    assert tuple(px.numpy()[0]) == expected
    assert _box_of(m.numpy() == 1) == expected


@pytest.mark.parametrize("box", BOXES)
def test_crop_flip_box_frames_same_pixels(box):
    img, mask, norm = _drawn(box)
    flips = set()
    for s in range(12):
        out, px, keep, m = preprocess.crop_flip(img, norm, mask, 32, tf.constant([s, 7]))
        visible = _box_of(out.numpy()[..., 0] > 127.5)
        if visible is None:
            assert not keep.numpy()[0]
            continue
        assert keep.numpy()[0]
        assert tuple(px.numpy()[0]) == visible
        assert _box_of(m.numpy() == 1) == visible
        # These boxes (but the full one) sit far off-centre, more than the 5-pixel crop
        # jitter, so the side their centre lands on tells the mirror state.
        flips.add(bool(visible[0] + visible[2] > 32))
    assert len(flips) == 2 or box == (0, 0, 89, 59)  # both mirror states occur


def test_random_resized_crop_boxes_and_stateless_seed():
    img, mask, norm = _drawn(BOXES[0])
    jpeg = tf.io.encode_jpeg(img, quality=100)
    for s in range(10):
        seed = tf.constant([s, 3])
        out, px, keep, m = preprocess.random_resized_crop(img, norm, mask, 32, seed)
        visible = _box_of(out.numpy()[..., 0] > 127.5)
        if visible is None or not keep.numpy()[0]:
            continue
        # Float windows can put a pixel centre within rounding of an edge: +-1 allowed.
        assert np.abs(px.numpy()[0] - np.array(visible)).max() <= 1
        assert _box_of(m.numpy() == 1) == tuple(px.numpy()[0]) or (
            np.abs(np.array(_box_of(m.numpy() == 1)) - px.numpy()[0]).max() <= 1
        )
        # Same seed, JPEG bytes path (decode_and_crop_jpeg): same window and flip.
        out2, px2, _, _ = preprocess.random_resized_crop(jpeg, norm, mask, 32, seed)
        np.testing.assert_array_equal(px2.numpy(), px.numpy())
        assert np.abs(out2.numpy() - out.numpy()).mean() < 3.0  # JPEG error only


def test_crop_boxes_drops_boxes_outside_window():
    boxes = tf.constant([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 1.0, 1.0]])
    # Window = right/bottom half: first box is outside, second becomes the full window.
    nb, keep = preprocess.crop_boxes(boxes, tf.constant([0.5, 0.5, 1.0, 1.0]))
    np.testing.assert_array_equal(keep.numpy(), [False, True])
    np.testing.assert_allclose(nb.numpy()[1], [0, 0, 1, 1])


def test_flip_is_mirror_in_pixels():
    img = tf.reshape(tf.range(2 * 4 * 3, dtype=tf.float32), [2, 4, 3])
    out, px, _ = preprocess.flip(img, tf.constant([[0, 0, 1, 1]]), None, 4)
    np.testing.assert_array_equal(px.numpy(), [[2, 0, 3, 1]])  # x -> 3 - x
    np.testing.assert_array_equal(out.numpy()[:, 0], img.numpy()[:, 3])


def test_normalizations():
    x = tf.constant([[[0.0, 127.0, 255.0]]])
    np.testing.assert_allclose(preprocess.normalize(x, "unit").numpy(), [[[0, 127 / 255, 1]]])
    np.testing.assert_allclose(
        preprocess.normalize(x, "minus127_div128").numpy(), [[[-127 / 128, 0, 1]]]
    )
    want = [(0 - 0.485) / 0.229, (127 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225]
    np.testing.assert_allclose(preprocess.normalize(x, "imagenet").numpy()[0, 0], want, 1e-6)
    with pytest.raises(ValueError, match="unknown normalization"):
        preprocess.normalize(x, "bogus")


def test_finalize_pads_and_truncates():
    px = tf.constant([[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 1, 1]])
    keep = tf.constant([True, False, True])
    out = preprocess.finalize(
        tf.zeros([4, 4, 3]), px, keep, None, 3, size=4, max_boxes=4, normalization="unit"
    )
    np.testing.assert_array_equal(out["bboxes"].numpy()[:2], [[1, 2, 3, 4], [0, 0, 1, 1]])
    np.testing.assert_array_equal(out["bbox_valid"].numpy(), [True, True, False, False])
    out = preprocess.finalize(
        tf.zeros([4, 4, 3]), px, keep, None, 3, size=4, max_boxes=1, normalization="unit"
    )
    np.testing.assert_array_equal(out["bboxes"].numpy(), [[1, 2, 3, 4]])


def test_eval_resize_antialiases_when_shrinking_like_pil():
    from PIL import Image

    # One-pixel vertical stripes shrunk from width 90 to 30: without antialiasing the
    # bilinear taps land on input columns 3j + 1 (aliasing: stripes of 0 / 255); with it
    # every output pixel averages its footprint (triangle weights 1/3, 2/3, 1, 2/3, 1/3:
    # 113 or 142), as PIL's bilinear does.
    _, xx = np.mgrid[:H, :W]
    board = ((xx % 2) * 255).astype(np.uint8)
    img = tf.constant(np.repeat(board[..., None], 3, axis=-1))
    norm = tf.constant([[0.0, 0.0, 1.0, 1.0]])
    plain = preprocess.eval_resize(img, norm, None, 30, antialias=False)[0].numpy()[..., 0]
    smooth = preprocess.eval_resize(img, norm, None, 30)[0].numpy()[..., 0]
    pil = np.asarray(Image.fromarray(board).resize((30, 30), Image.BILINEAR), np.float32)
    assert plain.std() > 60  # aliased
    assert smooth.std() < 20
    np.testing.assert_allclose(smooth[2:-2, 2:-2], pil[2:-2, 2:-2], atol=2.0)
    # Enlarging is the same with or without the filter.
    big = preprocess.eval_resize(img, norm, None, 128)[0].numpy()
    big0 = preprocess.eval_resize(img, norm, None, 128, antialias=False)[0].numpy()
    np.testing.assert_allclose(big, big0, atol=1e-3)
