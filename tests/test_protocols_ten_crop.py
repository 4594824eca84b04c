"""Ten-crop geometry as the released code (prepare_image.m, mergeTenCrop.m), hand-worked."""

from __future__ import annotations

import numpy as np
import pytest

from camjax.protocols import ten_crop


def _coords(size=256):
    img = np.zeros((1, size, size, 2), np.float32)
    img[..., 0] = np.arange(size)[None, :]  # x
    img[..., 1] = np.arange(size)[:, None]  # y
    return img


def test_offsets_released_order():
    # prepare_image.m: corners (x, y) = (0,0), (0,d), (d,0), (d,d), centre floor(d/2).
    assert ten_crop.offsets(224) == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]
    assert ten_crop.offsets(227) == [(0, 0), (0, 29), (29, 0), (29, 29), (14, 14)]
    with pytest.raises(ValueError, match="crop"):
        ten_crop.offsets(300)


def test_crops_positions_and_mirrors():
    c = ten_crop.crops(_coords(), 224)
    assert c.shape == (1, 10, 224, 224, 2)
    for k, (x, y) in enumerate(ten_crop.offsets(224)):
        assert (c[0, k, 0, 0] == (x, y)).all()  # top-left pixel of crop k
        assert (c[0, k + 5, 0, 0] == (x + 223, y)).all()  # its mirror starts at the right
        np.testing.assert_array_equal(c[0, k + 5], c[0, k, :, ::-1])


def test_merge_counts_coverage_and_undoes_the_crops():
    ones = np.ones((1, 10, 224, 224))
    cover = ten_crop.merge(ones)[0]
    # Centre: all ten crops; (0, 0): crop 0 and its mirror; (x=20, y=20): crops (0, 0)
    # and the centre (16..239), each twice; (x=255, y=0): crop (32, 0) and its mirror.
    assert cover[128, 128] == 10 and cover[0, 0] == 2 and cover[20, 20] == 4
    assert cover[0, 255] == 2 and cover[255, 255] == 2
    # Maps that are the crops of an image merge back to |image| * coverage.
    img = _coords()[..., 0] + 1.0  # x + 1, positive
    maps = ten_crop.crops(img[..., None], 224)[..., 0]
    np.testing.assert_allclose(ten_crop.merge(maps)[0], img[0] * cover)
    # Absolute values are summed (mergeTenCrop.m l. 224).
    np.testing.assert_allclose(ten_crop.merge(-maps)[0], img[0] * cover)
    with pytest.raises(ValueError, match="10"):
        ten_crop.merge(np.ones((1, 9, 224, 224)))


@pytest.mark.slow
def test_predict_averages_the_ten_crops_probabilities():
    import jax

    from camjax import models

    model = models.create("tiny_gap", num_classes=4)
    images = np.asarray(jax.random.normal(jax.random.key(2), (1, 256, 256, 3)))
    variables = model.init(jax.random.key(0), images[:, :224, :224])
    out = ten_crop.predict(model, variables, images, np.array([1]), method="cam", top_k=3)
    logits, _ = model.apply(variables, ten_crop.crops(images, 224)[0], train=False)
    probs = np.asarray(jax.nn.softmax(logits)).mean(0)
    np.testing.assert_allclose(out["probs_all"][0], probs, rtol=1e-5, atol=1e-7)
    assert out["class_ids"][0].tolist() == np.argsort(-probs, kind="stable")[:3].tolist()
    assert out["maps"].shape == (1, 3, 256, 256) and out["gt_maps"].shape == (1, 1, 256, 256)
    assert (out["maps"] >= 0).all()
