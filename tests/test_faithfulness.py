"""Faithfulness metrics against hand-worked values: a 'model' whose class probability is a
known function of the (masked) pixels."""

import numpy as np
import pytest

from camjax.metrics import perturbation as pt
from camjax.metrics import registry

H = W = 4


def score_fn(images):
    """Two classes; P(class 1) = clip(0.5 + mean of channel 0 / 2, 0, 1)."""
    s = np.clip(0.5 + np.asarray(images)[..., 0].mean(axis=(1, 2)) / 2, 0.0, 1.0)
    return np.stack([1 - s, s], axis=1)


def mean_score_fn(images):
    """P(class 1) = mean of channel 0 (images in [0, 1])."""
    s = np.asarray(images)[..., 0].mean(axis=(1, 2))
    return np.stack([1 - s, s], axis=1)


def _ctx(fn, **options):
    return registry.MetricContext(image_hw=(H, W), score_fn=fn, options=options)


def _batch(images, maps, valid=None, labels=None):
    b = len(images)
    batch = {
        "image": np.asarray(images, np.float32),
        "label": np.ones(b, np.int64) if labels is None else labels,
        "valid": np.ones(b, bool) if valid is None else np.asarray(valid),
    }
    out = {
        "maps": np.asarray(maps, np.float32)[:, None],
        "class_ids": np.ones((b, 1), np.int32),
        "gt_maps": np.asarray(maps, np.float32)[:, None],
    }
    return batch, out


def test_average_drop_and_increase_hand_values():
    ones = np.ones((H, W, 3))
    halves = np.ones((H, W, 3))
    halves[:, : W // 2] = -1.0
    right = np.zeros((H, W))
    right[:, W // 2 :] = 1.0
    junk = np.full((H, W, 3), 7.0)  # a padding row: never counted
    images = np.stack([ones, halves, junk])
    maps = np.stack([np.full((H, W), 0.5), right, np.zeros((H, W))])
    # Image 0: Y = 1, O = 0.5 + 0.25 = 0.75 -> drop 0.25. Image 1: Y = 0.5, the map keeps
    # the +1 half: O = 0.75 > Y -> drop 0, an increase.
    m = registry.create("average_drop", _ctx(score_fn))
    m.update(*_batch(images, maps, valid=[True, True, False]))
    r = m.result()
    assert r["average_drop"] == pytest.approx(12.5)
    assert r["increase_in_confidence"] == pytest.approx(50.0)
    assert r["faithfulness_images"] == 2


def test_insertion_deletion_hand_values():
    bright = np.zeros((H, W, 3))
    bright[0, :] = 1.0  # 4 of 16 pixels
    first = np.zeros((H, W))
    first[0, :] = 1.0  # the bright pixels are the most salient
    last = 1.0 - first  # the bright pixels come last
    ones = np.ones((H, W, 3))
    ramp = np.arange(H * W, dtype=np.float64).reshape(H, W) / 100
    images = np.stack([bright, bright, ones])
    maps = np.stack([first + ramp, last + ramp, ramp])  # ramp: no ties in the order
    m = registry.create("insertion_deletion", _ctx(mean_score_fn, faithfulness_steps=4))
    m.update(*_batch(images, maps))
    # 4 steps of 4 pixels. Deletion curves (P = mean of channel 0):
    #   bright first: [1/4, 0, 0, 0, 0]       -> AUC (sum - ends/2) / 4 = 1/32
    #   bright last:  [1/4, 1/4, 1/4, 1/4, 0] -> (1 - 1/8) / 4 = 7/32
    #   all ones:     [1, 3/4, 1/2, 1/4, 0]   -> (5/2 - 1/2) / 4 = 1/2
    want_del = (1 / 32 + 7 / 32 + 1 / 2) / 3
    r = m.result()
    assert r["deletion_auc"] == pytest.approx(100 * want_del)
    # Insertion starts from the blurred image; pixels come back in map order.
    blurred = pt.blur(images)
    want_ins = []
    # Rows in saliency order (the ramp puts later rows first among equal maps).
    for i, rows in enumerate([[0, 3, 2, 1], [3, 2, 1, 0], [3, 2, 1, 0]]):
        curve = [blurred[i, ..., 0].mean()]
        x = blurred[i, ..., 0].copy()
        for row in rows:
            x[row] = images[i, row, :, 0]
            curve.append(x.mean())
        want_ins.append((sum(curve) - curve[0] / 2 - curve[-1] / 2) / 4)
    assert r["insertion_auc"] == pytest.approx(100 * np.mean(want_ins))


def test_blur_is_a_normalised_11_tap_gaussian():
    delta = np.zeros((1, 21, 21, 1))
    delta[0, 10, 10, 0] = 1.0
    out = pt.blur(delta)[0, :, :, 0]
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / 50.0)
    want = np.outer(g, g) / g.sum() ** 2
    np.testing.assert_allclose(out[5:16, 5:16], want, rtol=1e-6)
    assert out[:5].max() == 0 and out.sum() == pytest.approx(1.0)


def test_imputation_hand_values():
    rng = np.random.default_rng(0)
    img = np.arange(9, dtype=np.float64).reshape(3, 3, 1)
    centre = np.zeros((3, 3), bool)
    centre[1, 1] = True
    # Centre = 1/6 (1 + 3 + 5 + 7) + 1/12 (0 + 2 + 6 + 8) = 16/6 + 16/12 = 4.
    out = pt.impute(img, centre, 0.0, rng)
    assert out[1, 1, 0] == pytest.approx(4.0)
    np.testing.assert_array_equal(np.delete(out.ravel(), 4), np.delete(img.ravel(), 4))
    # A corner: neighbours (0,1) w 1/6, (1,0) w 1/6, (1,1) w 1/12; total 5/12.
    corner = np.zeros((3, 3), bool)
    corner[0, 0] = True
    out = pt.impute(img, corner, 0.0, rng)
    assert out[0, 0, 0] == pytest.approx((1 / 6 * 1 + 1 / 6 * 3 + 1 / 12 * 4) / (5 / 12))
    # Two removed neighbours (0,0) and (0,1): a 2x2 system, solved here by hand.
    # x0 (5/12) = x1/6 + 3/6 + 4/12 ;  x1 (8/12) = x0/6 + 2/6 + 4/6 + 3/12 + 5/12
    pair = np.zeros((3, 3), bool)
    pair[0, :2] = True
    a = np.array([[5 / 12, -1 / 6], [-1 / 6, 8 / 12]])
    b = np.array([3 / 6 + 4 / 12, 2 / 6 + 4 / 6 + 3 / 12 + 5 / 12])
    out = pt.impute(img, pair, 0.0, rng)
    np.testing.assert_allclose(out[0, :2, 0], np.linalg.solve(a, b), rtol=1e-12)
    np.testing.assert_allclose(out[0, :2, 0], [10 / 3, 10 / 3], rtol=1e-12)  # by hand
    # Noise: std 0.5 on 8 removed pixels around a constant.
    flat = np.full((3, 3, 1), 2.0)
    most = np.ones((3, 3), bool)
    most[2, 2] = False
    noisy = pt.impute(flat, most, 0.5, np.random.default_rng(1))
    assert noisy[2, 2, 0] == 2.0 and 0 < np.abs(noisy - 2.0).max() < 3.0


def test_road_hand_values_and_merge():
    # Constant images impute to the same constant (no noise): MoRF = LeRF = Y.
    c = np.full((2, H, W, 3), 0.25)
    maps = np.random.default_rng(0).random((2, H, W))
    m = registry.create("road", _ctx(mean_score_fn, road_noise=0.0))
    m.update(*_batch(c, maps))
    r = m.result()
    assert r["road_morf"] == pytest.approx(25.0) and r["road_lerf"] == pytest.approx(25.0)
    assert r["road_combined"] == pytest.approx(0.0)
    # Left half 1, right half 0, the map ranks the left half first. Removing the top half
    # (fraction 0.5) leaves the right half (0) and imputes the left from it by the linear
    # system; removing the bottom half does the opposite. Check against the imputer.
    img = np.zeros((1, H, W, 3))
    img[:, :, : W // 2] = 1.0
    sal = np.tile(np.array([4.0, 3.0, 2.0, 1.0]), (H, 1))[None] + np.arange(H)[None, :, None] / 10
    m = registry.create("road", _ctx(mean_score_fn, road_noise=0.0, road_fractions=(0.5,)))
    m.update(*_batch(img, sal))
    left = np.zeros((H, W), bool)
    left[:, : W // 2] = True
    morf = pt.impute(img[0], left, 0.0, np.random.default_rng(0))[..., 0].mean()
    lerf = pt.impute(img[0], ~left, 0.0, np.random.default_rng(0))[..., 0].mean()
    r = m.result()
    assert r["road_morf"] == pytest.approx(100 * morf) and r["road_lerf"] == pytest.approx(
        100 * lerf
    )
    assert morf < 0.5 < lerf  # the map is faithful: removing its top hurts
    # merge: two halves of a stream give the totals of the whole.
    whole = registry.create("insertion_deletion", _ctx(mean_score_fn, faithfulness_steps=2))
    parts = [
        registry.create("insertion_deletion", _ctx(mean_score_fn, faithfulness_steps=2))
        for _ in range(2)
    ]
    imgs = np.random.default_rng(2).random((4, H, W, 3))
    sals = np.random.default_rng(3).random((4, H, W))
    whole.update(*_batch(imgs, sals))
    parts[0].update(*_batch(imgs[:1], sals[:1]))
    parts[1].update(*_batch(imgs[1:], sals[1:]))
    parts[0].merge(parts[1])
    for k, v in whole.result().items():
        assert parts[0].result()[k] == pytest.approx(v)


def test_gt_class_option_and_bad_options():
    images = np.ones((1, H, W, 3))
    maps = np.full((1, H, W), 0.5)
    batch, out = _batch(images, maps, labels=np.zeros(1, np.int64))
    m = registry.create("average_drop", _ctx(score_fn, faithfulness_class="gt"))
    m.update(batch, out)
    # Class 0: Y = 0, drop is counted as 0 (no confidence to lose); O = 0.25 > Y.
    assert m.result()["increase_in_confidence"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="faithfulness_class"):
        registry.create("average_drop", _ctx(score_fn, faithfulness_class="gt5")).update(batch, out)
    with pytest.raises(ValueError, match="faithfulness_steps"):
        registry.create("insertion_deletion", _ctx(score_fn, faithfulness_steps=0))
    with pytest.raises(ValueError, match="road_fractions"):
        registry.create("road", _ctx(score_fn, road_fractions=(0.5, 1.0)))
    small = {**out, "maps": np.zeros((1, 1, 2, 2), np.float32)}
    with pytest.raises(ValueError, match="input-size maps"):
        registry.create("average_drop", _ctx(score_fn)).update(batch, small)


def test_faithfulness_metrics_are_registered_with_report_columns():
    # Every registered metric that re-scores images is a faithfulness metric.
    specs = [s for s in registry.METRICS.values() if "score_fn" in s.needs]
    assert {"average_drop", "insertion_deletion", "road"} <= {s.name for s in specs}
    for spec in specs:
        assert spec.needs == frozenset({"score_fn"}) and spec.table == pt.TABLE
        assert spec.columns and spec.description
