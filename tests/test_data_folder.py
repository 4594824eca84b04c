"""folder_iterator on a folder of awkward files."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from camjax import data
from camjax.data import preprocess


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a_rgb.png")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    (tmp_path / "b_truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    # Pure red in CMYK is (0, 255, 255, 0).
    Image.new("CMYK", (20, 16), (0, 255, 255, 0)).save(tmp_path / "c_cmyk.jpg", quality=95)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "d_gray.png")
    rgba = np.dstack([rgb, np.full((30, 40), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "e_rgba.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "f_1x1.png")
    (tmp_path / "g_text.jpg").write_text("this is not a JPEG\n")
    (tmp_path / "h_notes.txt").write_text("not listed: no image extension")
    return tmp_path, rgb


def test_folder_batches_and_skips(folder):
    path, rgb = folder
    it = data.folder_iterator(str(path), image_size=16, normalization="unit", batch_size=4)
    batches = list(it)
    assert it.num_skipped == 2
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in it.skipped) == ["b_truncated.jpg", "g_text.jpg"]
    assert len(batches) == 2  # 5 readable files in batches of 4
    b0, b1 = batches
    assert b0["image"].shape == (4, 16, 16, 3) and b0["image"].dtype == np.float32
    names = [p.rsplit("/", 1)[-1] for b in batches for p in b["path"] if p]
    assert names == ["a_rgb.png", "c_cmyk.jpg", "d_gray.png", "e_rgba.png", "f_1x1.png"]
    np.testing.assert_array_equal(b1["valid"], [True, False, False, False])
    assert b1["path"][1] == "" and not b1["image"][1:].any()
    np.testing.assert_array_equal(b0["orig_size"], [[30, 40], [16, 20], [30, 40], [30, 40]])
    np.testing.assert_array_equal(b1["orig_size"][0], [1, 1])
    img = b0["image"]
    # CMYK red -> RGB red; grayscale -> three equal channels; RGBA -> its RGB (alpha
    # dropped), i.e. the same pixels as the RGB file; 1x1 -> a uniform image.
    np.testing.assert_allclose(img[1].mean((0, 1)), [1.0, 0.0, 0.0], atol=0.03)
    assert np.array_equal(img[2][..., 0], img[2][..., 1])
    np.testing.assert_allclose(img[3], img[0], atol=1e-6)
    np.testing.assert_allclose(
        b1["image"][0], np.broadcast_to([10 / 255, 200 / 255, 30 / 255], (16, 16, 3)), atol=1e-6
    )


def test_folder_resize_is_antialiased_bilinear(folder):
    # The folder path resamples like tf.image.resize(antialias=True): bilinear, widened
    # when downscaling (Pillow in 8-bit fixed point: within one grey level).
    path, rgb = folder
    (b,) = list(
        data.folder_iterator(
            [str(path / "a_rgb.png")], image_size=24, normalization="imagenet", batch_size=1
        )
    )
    want = tf.image.resize(tf.constant(rgb, tf.float32), (24, 24), antialias=True)
    want = preprocess.normalize(want, "imagenet").numpy()
    np.testing.assert_allclose(b["image"][0], want, atol=1.0 / 255 / 0.225 + 1e-5)


def test_folder_inputs_and_errors(folder):
    path, _ = folder
    it = data.folder_iterator(str(path / "*.png"), image_size=8, normalization="unit", batch_size=8)
    (b,) = list(it)
    assert b["valid"].sum() == 4 and it.num_skipped == 0
    with pytest.raises(FileNotFoundError, match="no such file"):
        data.folder_iterator(
            str(path / "nothing*.png"), image_size=8, normalization="unit", batch_size=2
        )
    with pytest.raises(ValueError, match="normalization"):
        data.folder_iterator(str(path), image_size=8, normalization="bad", batch_size=2)
