"""Streaming evaluators: hand-worked results, streaming == all-at-once, padding, bad input."""

import numpy as np
import pytest

from camjax import metrics
from camjax.metrics import BoxEvaluator, LocalizationErrorEvaluator, counter

BATCHINGS = [(1, 1, 1, 1, 1, 1), (2, 2, 2), (3, 3), (1, 2, 3)]


def _splits(sizes):
    edges = np.cumsum((0,) + tuple(sizes))
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


# ------------------------------------------------------------------------------ counter


def test_counter_exact_past_int32():
    # Three batches of 2**30 events: 3 * 2**30 = 3,221,225,472 > 2**31 - 1.
    c = counter.zeros(())
    for _ in range(3):
        c = counter.add(c, np.int32(2**30))
    c = counter.add(c, np.int32(7))
    assert int(counter.total(c)) == 3 * 2**30 + 7
    assert int(counter.total(counter.merge(c, c))) == 2 * (3 * 2**30 + 7)


# --------------------------------------------------------------------------- BoxEvaluator

# Two 20x20 images, CAM thresholds (0.0, 0.5, 0.9), one box per threshold:
#  img 0, gt (0,0,9,9) = 100 px: boxes (0,0,19,19) IoU 100/400 = 0.25;
#         (0,0,9,9) IoU 1; (2,2,7,7) IoU 36/100 = 0.36
#  img 1, gt (10,10,19,19): (0,0,19,19) 0.25; (10,10,19,14) 50/100 = 0.5;
#         (12,12,17,17) 0.36
# delta 0.3: hits [0, 2, 2] -> curve [0, 100, 100], max 100 at t = 0.5 (lowest best)
# delta 0.5: hits [0, 2, 0] -> [0, 100, 0], max 100 at 0.5 (0.5 >= 0.5 counts)
# delta 0.7: hits [0, 1, 0] -> [0, 50, 0], max 50 at 0.5
# MaxBoxAccV2 = (100 + 100 + 50) / 3 = 83.33...
HAND_BOXES = np.array(
    [
        [[[0, 0, 19, 19]], [[0, 0, 9, 9]], [[2, 2, 7, 7]]],
        [[[0, 0, 19, 19]], [[10, 10, 19, 14]], [[12, 12, 17, 17]]],
    ],
    np.int32,
)
HAND_GT = np.array([[[0, 0, 9, 9]], [[10, 10, 19, 19]]], np.int32)


def test_box_evaluator_hand_worked_v2():
    ev = BoxEvaluator([0.0, 0.5, 0.9])
    ev.update_boxes(HAND_BOXES, np.ones((2, 3, 1), bool), HAND_GT, image_hw=(20, 20))
    r = ev.result()
    assert r["num_examples"] == 2 and r["num_examples_without_gt"] == 0
    assert r["curve_per_iou"] == {"30": [0, 100, 100], "50": [0, 100, 0], "70": [0, 50, 0]}
    assert r["max_box_acc_v2_per_iou"] == {"30": 100.0, "50": 100.0, "70": 50.0}
    assert r["best_threshold_per_iou"] == {"30": 0.5, "50": 0.5, "70": 0.5}
    assert r["max_box_acc_v2"] == pytest.approx(250 / 3)
    assert r["cam_thresholds"] == [0.0, 0.5, 0.9] and "max_box_acc" not in r


def test_box_evaluator_v1_keys_and_components():
    # MaxBoxAcc: delta 0.5 only -> from the table above, 100 at t = 0.5.
    ev = BoxEvaluator([0.0, 0.5, 0.9], (0.5,), multi_contour=False)
    ev.update_boxes(HAND_BOXES, np.ones((2, 3, 1), bool), HAND_GT)
    r = ev.result()
    assert r["max_box_acc"] == 100.0 and "max_box_acc_v2" not in r
    # Any component counts: add at t = 0.9 a second component equal to img 1's gt; the
    # 0.7 curve becomes [0, 50, 50] and the 0.5 curve [0, 100, 50]. An invalid third
    # component equal to img 0's gt at t = 0 must not count.
    boxes = np.concatenate([HAND_BOXES, np.zeros_like(HAND_BOXES), HAND_BOXES], axis=2)
    valid = np.zeros((2, 3, 3), bool)
    valid[:, :, 0] = True
    boxes[1, 2, 1] = HAND_GT[1, 0]
    valid[1, 2, 1] = True
    boxes[0, 0, 2] = HAND_GT[0, 0]
    ev = BoxEvaluator([0.0, 0.5, 0.9])
    ev.update_boxes(boxes, valid, HAND_GT)
    r = ev.result()
    assert r["curve_per_iou"]["70"] == [0, 50, 50]
    assert r["curve_per_iou"]["50"] == [0, 100, 50]


def _random_box_batch(n, t, m, g, seed=0):
    rng = np.random.default_rng(seed)

    def boxes(shape):
        lo = rng.integers(0, 16, shape + (2,))
        return np.concatenate([lo, lo + rng.integers(0, 16, shape + (2,))], -1)

    return (
        boxes((n, t, m)).astype(np.int32),
        rng.random((n, t, m)) < 0.7,
        boxes((n, g)).astype(np.int32),
        rng.random((n, g)) < 0.8,
    )


@pytest.mark.parametrize("sizes", BATCHINGS)
def test_box_evaluator_streaming_equals_all_at_once(sizes):
    boxes, valid, gt, gt_valid = _random_box_batch(6, 5, 3, 2)
    grid = [0.0, 0.2, 0.4, 0.6, 0.8]
    whole = BoxEvaluator(grid)
    whole.update_boxes(boxes, valid, gt, gt_valid)
    assert 0 < whole.result()["max_box_acc_v2"] < 100  # a non-trivial case
    parts = BoxEvaluator(grid)
    for s in _splits(sizes):
        parts.update_boxes(boxes[s], valid[s], gt[s], gt_valid[s])
    assert parts.result() == whole.result()
    # Two evaluators over the halves, merged (e.g. two hosts), give the same numbers.
    a, b = BoxEvaluator(grid), BoxEvaluator(grid)
    a.update_boxes(boxes[:2], valid[:2], gt[:2], gt_valid[:2])
    b.update_boxes(boxes[2:], valid[2:], gt[2:], gt_valid[2:])
    a.merge(b)
    assert a.result() == whole.result()


def test_box_evaluator_padding_and_empty_gt():
    # Image 0 as in the hand example (hits at t = 0.5 for every delta); image 1 is eval
    # padding with perfect boxes (must not count); image 2 has no valid gt box, and its
    # boxes equal the padded gt (must count as wrong, not right).
    perfect = np.tile(HAND_GT[1], (1, 3, 1, 1))  # img 1's gt box at every threshold
    boxes = np.concatenate([HAND_BOXES[:1], perfect, perfect])
    gt = np.concatenate([HAND_GT[:1], HAND_GT[1:], HAND_GT[1:]])
    gt_valid = np.array([[True], [True], [False]])
    ev = BoxEvaluator([0.0, 0.5, 0.9])
    ev.update_boxes(
        boxes, np.ones((3, 3, 1), bool), gt, gt_valid, sample_valid=np.array([True, False, True])
    )
    r = ev.result()
    # Counted: image 0 (right at t = 0.5) and image 2 (always wrong) -> 50 % at t = 0.5.
    assert r["num_examples"] == 2 and r["num_examples_without_gt"] == 1
    assert r["curve_per_iou"]["50"] == [0, 50, 0]


def test_box_evaluator_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BoxEvaluator([0.0, 1.5])
    with pytest.raises(ValueError, match="increasing"):
        BoxEvaluator([0.5, 0.2])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        BoxEvaluator([0.5], iou_thresholds=(0.0, 0.5))
    ev = BoxEvaluator([0.0, 0.5, 0.9])
    bad = HAND_GT.copy()
    bad[0, 0, 2] = 20
    with pytest.raises(ValueError, match="outside the 20x20 image"):
        ev.update_boxes(HAND_BOXES, np.ones((2, 3, 1), bool), bad, image_hw=(20, 20))
    bad = HAND_GT.copy()
    bad[1, 0] = [5, 5, 4, 9]
    with pytest.raises(ValueError, match="malformed"):
        ev.update_boxes(HAND_BOXES, np.ones((2, 3, 1), bool), bad)
    with pytest.raises(TypeError, match="integer"):
        ev.update_boxes(HAND_BOXES, np.ones((2, 3, 1), bool), HAND_GT.astype(np.float32))
    with pytest.raises(ValueError, match="no example"):
        ev.result()  # nothing counted: every update above was refused


# --------------------------------------------------------------- LocalizationErrorEvaluator


def _three_images():
    # Derived in tests/test_metrics.py::test_localization_hits_one_third_top1_error:
    # top-1 loc right for images 0 and 1, wrong for image 2 (IoU 0.4) -> error 100/3;
    # image 2's fourth guess is right -> top-5 loc error 0. Classes: image 1's ranked
    # list misses its label in the top 5 -> cls top-1 and top-5 errors 100/3 each.
    gt = np.tile(np.array([[[0, 0, 9, 9]]], np.int32), (3, 1, 1))
    boxes = np.tile(np.array([50, 50, 59, 59], np.int32), (3, 5, 1))
    boxes[0, 0] = [0, 0, 9, 9]
    boxes[1, 0] = [0, 0, 9, 4]
    boxes[2, 0] = [0, 0, 9, 3]
    boxes[2, 3] = [0, 0, 9, 9]
    class_ids = np.array([[1, 7, 8, 9, 10], [2, 7, 8, 9, 10], [3, 7, 8, 3, 10]])
    ranked = np.array([[1, 7, 8, 9, 10], [6, 7, 8, 9, 10], [3, 7, 8, 4, 10]])
    # GT-known boxes: right, right (IoU 0.5), IoU 0.4 -> 2/3.
    known = np.array([[0, 0, 9, 9], [0, 0, 9, 4], [0, 0, 9, 3]], np.int32)
    return class_ids, boxes, np.array([1, 2, 3]), gt, ranked, known


def test_localization_evaluator_hand_worked():
    class_ids, boxes, labels, gt, ranked, known = _three_images()
    ev = LocalizationErrorEvaluator(image_hw=(64, 64))
    ev.update(class_ids, boxes, labels, gt, gt_known_boxes=known[:, None], ranked_classes=ranked)
    r = ev.result()
    assert r["num_examples"] == 3
    assert r["loc_top1_error"] == pytest.approx(100 / 3)
    assert r["loc_top5_error"] == 0.0
    assert r["cls_top1_error"] == pytest.approx(100 / 3)
    assert r["cls_top5_error"] == pytest.approx(100 / 3)
    assert r["gt_known_loc"] == pytest.approx(200 / 3)
    # Without ranked classes the guesses' classes are used: every label is first -> 0.
    ev = LocalizationErrorEvaluator()
    ev.update(class_ids[:, :1], boxes[:, :1], labels, gt)
    r = ev.result()
    assert r["cls_top1_error"] == 0.0 and r["loc_top1_error"] == pytest.approx(100 / 3)
    assert "loc_top5_error" not in r and "gt_known_loc" not in r  # one guess, no boxes


@pytest.mark.parametrize("sizes", [(1, 1, 1), (1, 2), (2, 1), (3,)])
def test_localization_evaluator_streaming_and_padding(sizes):
    class_ids, boxes, labels, gt, ranked, known = _three_images()
    whole = LocalizationErrorEvaluator()
    whole.update(class_ids, boxes, labels, gt, gt_known_boxes=known, ranked_classes=ranked)
    parts = LocalizationErrorEvaluator()
    for s in _splits(sizes):
        parts.update(
            class_ids[s],
            boxes[s],
            labels[s],
            gt[s],
            gt_known_boxes=known[s],
            ranked_classes=ranked[s],
        )
    assert parts.result() == whole.result()
    # A padded copy of image 0 (right everywhere): counted, it would turn the top-1 loc
    # error into 1/4; flagged as padding it must not move any number.
    cat = lambda x: np.concatenate([x, x[:1]])
    padded = LocalizationErrorEvaluator()
    padded.update(
        cat(class_ids),
        cat(boxes),
        cat(labels),
        cat(gt),
        None,
        np.array([True, True, True, False]),
        gt_known_boxes=cat(known),
        ranked_classes=cat(ranked),
    )
    assert padded.result() == whole.result()


def test_localization_evaluator_empty_gt_and_bad_input():
    class_ids, boxes, labels, gt, ranked, known = _three_images()
    ev = LocalizationErrorEvaluator()
    # Image 0 loses its only gt box: it is counted, and wrong (top-1 hits drop to 1/3).
    ev.update(class_ids, boxes, labels, gt, np.array([[False], [True], [True]]))
    r = ev.result()
    assert r["num_examples_without_gt"] == 1 and r["loc_top1_error"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="every update or in none"):
        ev.update(class_ids, boxes, labels, gt, gt_known_boxes=known)
    with pytest.raises(ValueError, match="outside the 8x8 image"):
        LocalizationErrorEvaluator(image_hw=(8, 8)).update(class_ids, boxes, labels, gt)
    with pytest.raises(ValueError, match="non-negative"):
        LocalizationErrorEvaluator().update(class_ids, boxes, -labels, gt)


# ------------------------------------------------------- BoxEvaluator through camjax.boxes


def _two_maps():
    # img 0: a 10x10 block of 1.0 at x, y in 0..9 on a 0.4 floor; gt = the block.
    # img 1: blob A (1.0, 6x6 = 36 px at 12..17) and blob B (0.6, 5x5 = 25 px at 0..4) on
    #        0; gt = blob B's box (0,0,4,4).
    maps = np.zeros((2, 20, 20), np.float32)
    maps[0] = 0.4
    maps[0, :10, :10] = 1.0
    maps[1, 12:18, 12:18] = 1.0
    maps[1, :5, :5] = 0.6
    gt = np.array([[[0, 0, 9, 9]], [[0, 0, 4, 4]]], np.int32)
    return maps, gt


def test_box_evaluator_from_maps_hand_worked():
    pytest.importorskip("camjax.boxes")
    maps, gt = _two_maps()
    grid = [0.0, 0.3, 0.5, 0.9]
    # Masks map >= t * max (max = 1):
    #  t 0, 0.3: img 0 keeps everything -> (0,0,19,19), IoU 100/400 = 0.25.
    #            img 1 at t 0 keeps everything -> one box (0,0,19,19), IoU 25/400;
    #            at 0.3 two components, A (36 px, IoU 0 with gt) and B (= gt, IoU 1).
    #  t 0.5:    img 0 the block (IoU 1); img 1 A and B as at 0.3.
    #  t 0.9:    img 0 the block; img 1 A only (IoU 0).
    # Largest component (MaxBoxAcc, delta 0.5): img 1 always boxes A or the whole map
    #   -> curve [0, 0, 50, 50], MaxBoxAcc 50 at t = 0.5.
    # Any component (V2): img 1 right at 0.3 and 0.5 for every delta; img 0 right at
    #   0.5 and 0.9 -> curves [0, 50, 100, 50] for each delta, MaxBoxAccV2 100 at 0.5.
    v1 = BoxEvaluator(grid, (0.5,), multi_contour=False)
    v1.update(maps, gt)
    r1 = v1.result()
    assert r1["curve_per_iou"]["50"] == [0, 0, 50, 50]
    assert r1["max_box_acc"] == 50.0 and r1["best_threshold_per_iou"]["50"] == 0.5
    v2 = BoxEvaluator(grid, max_components=4)
    v2.update(maps, gt)
    r2 = v2.result()
    assert r2["curve_per_iou"] == {k: [0, 50, 100, 50] for k in ("30", "50", "70")}
    assert r2["max_box_acc_v2"] == 100.0


def _smooth_maps(n, size, seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    maps = ndimage.gaussian_filter(rng.random((n, size, size)), (0, 1.5, 1.5))
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return (maps / maps.max(axis=(1, 2), keepdims=True)).astype(np.float32)


def _scipy_curves(maps, gt, grid, deltas, multi):
    """Reference curves: scipy.ndimage.label (8-connectivity) per map and threshold."""
    from scipy import ndimage

    hits = np.zeros((len(deltas), len(grid)))
    for b, m in enumerate(maps):
        for j, t in enumerate(grid):
            labels, n = ndimage.label(m >= np.float32(t) * m.max(), np.ones((3, 3)))
            slices = ndimage.find_objects(labels)
            sizes = ndimage.sum_labels(np.ones_like(m), labels, range(1, n + 1))
            keep = range(n) if multi else [int(np.argmax(sizes))]
            boxes = np.array(
                [[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in slices]
            )[list(keep)]
            best = np.asarray(metrics.iou(boxes, gt[b])).max()
            hits[:, j] += best >= np.asarray(deltas, np.float32)
    return 100 * hits / len(maps)


@pytest.mark.parametrize("multi", [True, False])
def test_box_evaluator_from_maps_matches_scipy_and_streams(multi):
    pytest.importorskip("camjax.boxes")
    maps = _smooth_maps(6, 16, seed=4)
    rng = np.random.default_rng(5)
    lo = rng.integers(0, 8, (6, 2, 2))
    gt = np.concatenate([lo, lo + rng.integers(2, 8, (6, 2, 2))], -1).astype(np.int32)
    grid = [0.0, 0.2, 0.4, 0.6, 0.8]
    deltas = (0.3, 0.5, 0.7)
    whole = BoxEvaluator(grid, deltas, multi_contour=multi, max_components=64)
    whole.update(maps, gt)
    r = whole.result()
    want = _scipy_curves(maps, gt, grid, deltas, multi)
    for i, k in enumerate(("30", "50", "70")):
        np.testing.assert_allclose(r["curve_per_iou"][k], want[i])
    parts = BoxEvaluator(grid, deltas, multi_contour=multi, max_components=64)
    for s in _splits((1, 2, 3)):
        parts.update(maps[s], gt[s])
    assert parts.result() == r


def test_box_evaluator_maps_bad_input_and_padding():
    pytest.importorskip("camjax.boxes")
    maps, gt = _two_maps()
    ev = BoxEvaluator([0.0, 0.5])
    for bad, match in [(maps - 0.5, "normalised"), (maps * 2, "normalised")]:
        with pytest.raises(ValueError, match=match):
            ev.update(bad, gt)
    nan = maps.copy()
    nan[1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        ev.update(nan, gt)
    with pytest.raises(ValueError, match="outside the 20x20 image"):
        ev.update(maps, gt + 15)
    # The NaN map as eval padding: not checked, not counted -> as image 0 alone.
    ev.update(nan, gt, sample_valid=np.array([True, False]))
    alone = BoxEvaluator([0.0, 0.5])
    alone.update(maps[:1], gt[:1])
    assert ev.result() == alone.result() and ev.result()["num_examples"] == 1


# ------------------------------------------------------------ every registered metric


def _registry_batch(n=6, hw=(24, 24), k=5, classes=7, seed=0):
    """A batch and a predictor output holding every key a registered metric reads."""
    rng = np.random.default_rng(seed)
    h, w = hw
    ys, xs = np.mgrid[:h, :w]
    x0y0 = rng.integers(0, 10, size=(n, 2))
    gt = np.concatenate([x0y0, x0y0 + rng.integers(5, 13, size=(n, 2))], -1)  # [n, 4]
    centres = rng.integers(3, min(h, w) - 3, size=(n, k + 1, 2))  # (x, y)
    centres[:, k] = (gt[:, :2] + gt[:, 2:]) // 2  # the label's map peaks in its box,
    centres[1::2, k, 0] += 8  # or, in odd images, beside it
    centres[::2, 0] = centres[::2, k]  # even images: the top-1 map is the label's
    dist = (xs - centres[..., :1, None]) ** 2 + (ys - centres[..., 1:, None]) ** 2
    maps = np.exp(-dist / 18.0).astype(np.float32)  # [n, k + 1, h, w], maximum 1
    labels = rng.integers(0, classes, size=n)
    class_ids = np.stack([rng.permutation(classes)[:k] for _ in range(n)]).astype(np.int32)
    class_ids[::2, 0] = labels[::2]  # even images: the right top-1 class
    boxes = np.clip(np.concatenate([centres - 4, centres + 4], -1), 0, min(h, w) - 1)
    mask = np.zeros((n, h, w), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(gt):
        mask[i, y0 : y1 + 1, x0 : x1 + 1] = 1
    mask[:, 0, :] = 255  # an ignored row
    batch = {
        "image": rng.standard_normal((n, h, w, 3)).astype(np.float32),
        "label": labels,
        "bboxes": np.stack([gt, gt[::-1]], 1).astype(np.int32),  # a second box, sometimes
        "bbox_valid": np.array([[True, i % 3 == 1] for i in range(n)]),
        "mask": mask,
        "valid": np.arange(n) != n - 1,  # the last row is padding
    }
    out = {
        "class_ids": class_ids,
        "maps": maps[:, :k],
        "boxes": boxes[:, :k].astype(np.int32),
        "gt_maps": maps[:, k:],
        "gt_boxes": boxes[:, k:].astype(np.int32),
    }
    return batch, out


def _score_fn(images):
    """A fixed 'model': softmax over 7 classes of linear functions of the channel means."""
    x = np.asarray(images, np.float64).mean(axis=(1, 2))  # [B, 3]
    logits = x @ np.linspace(-2.0, 2.0, 21).reshape(3, 7)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _same(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and b is not None:
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


@pytest.mark.parametrize("name", sorted(metrics.METRICS))
def test_every_registered_metric_merges_as_one_stream(name):
    # Any metric a file registers: the first four rows and the last two, counted by two
    # metrics and merged (two hosts), give the numbers of one metric fed all six.
    batch, out = _registry_batch()
    ctx = metrics.MetricContext(
        image_hw=(24, 24),
        has_masks=True,
        cam_thresholds=metrics.default_cam_thresholds(0.1),
        score_fn=_score_fn,
        options={"faithfulness_steps": 2, "road_fractions": (0.5,), "road_noise": 0.0},
    )
    whole = metrics.create(name, ctx)
    whole.update(batch, out)
    parts = [metrics.create(name, ctx) for _ in range(2)]
    for part, rows in zip(parts, (slice(0, 4), slice(4, 6)), strict=True):
        part.update({k: v[rows] for k, v in batch.items()}, {k: v[rows] for k, v in out.items()})
    parts[0].merge(parts[1])
    expected = whole.result()
    _same(parts[0].result(), expected, name)
    # Every column the report shows is in the result.
    for key, _ in metrics.get(name).columns:
        value = expected
        for part in key.split("."):
            value = value[part]
        assert value is None or np.isfinite(value), (name, key)
