"""Hand-worked checks of camjax.metrics (answers derived in the comments)."""

import numpy as np
import pytest

from camjax import metrics


def _b(*rows):
    return np.array(rows, np.int32)


def test_iou_inclusive_pixel_counting():
    a = _b([0, 0, 9, 9])  # 10 x 10 = 100 pixels
    gt = _b(
        [5, 5, 14, 14],  # overlap x 5..9, y 5..9 = 25; union 100 + 100 - 25 = 175 -> 1/7
        [4, 0, 8, 4],  # 5x5 box inside a: inter 25 = its area, union 100 -> 0.25
        [9, 9, 20, 20],  # corner pixel (9, 9) only: inter 1, areas 100 + 144 -> 1/243
        [10, 0, 19, 9],  # touches the edge, shares no pixel -> 0
        [0, 0, 9, 9],  # itself -> 1
    )
    got = np.asarray(metrics.iou(a, gt))
    np.testing.assert_allclose(got, [[1 / 7, 0.25, 1 / 243, 0.0, 1.0]], rtol=1e-6)


def test_iou_single_pixel_and_edge_sharing():
    # Two 5x5 boxes sharing exactly the column x=4: inclusive intersection 1 x 5 = 5,
    # union 25 + 25 - 5 = 45 -> 1/9. Without the +1 convention this would be 0.
    got = float(metrics.iou(_b([0, 0, 4, 4]), _b([4, 0, 8, 4]))[0, 0])
    assert got == pytest.approx(1 / 9, rel=1e-6)
    # A one-pixel box (x0 == x1, y0 == y1) has area 1 and IoU 1 with itself.
    assert float(metrics.iou(_b([3, 3, 3, 3]), _b([3, 3, 3, 3]))[0, 0]) == 1.0
    assert int(metrics.box_area(_b([3, 3, 3, 3]))[0]) == 1


def test_iou_malformed_and_broadcast():
    # A malformed box has area 0; two malformed boxes have union 0 -> IoU 0 (defined).
    assert int(metrics.box_area(_b([5, 5, 4, 9]))[0]) == 0
    assert float(metrics.iou(_b([5, 5, 4, 9]), _b([5, 5, 4, 9]))[0, 0]) == 0.0
    rng = np.random.default_rng(0)
    lo = rng.integers(0, 20, (2, 3, 3, 2))
    pred = np.concatenate([lo, lo + rng.integers(0, 10, lo.shape)], -1)[:, :, 0]  # [2,3,4]
    gt = np.concatenate([lo, lo + 3], -1)[:, :2, 1]  # [2,2,4]
    got = np.asarray(metrics.iou(pred, gt))
    assert got.shape == (2, 3, 2)

    # Broadcast result equals a plain-Python inclusive-count IoU, pair by pair.
    def ref(p, g):
        iw = max(0, min(p[2], g[2]) - max(p[0], g[0]) + 1)
        ih = max(0, min(p[3], g[3]) - max(p[1], g[1]) + 1)
        area = lambda q: (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
        return iw * ih / (area(p) + area(g) - iw * ih)

    want = [[[ref(pred[b, p], gt[b, g]) for g in range(2)] for p in range(3)] for b in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_iou_rejects_float_boxes():
    with pytest.raises(TypeError, match="integer"):
        metrics.iou(np.zeros((1, 4), np.float32), _b([0, 0, 1, 1]))


def test_max_iou_any_gt_padding_and_empty():
    pred = _b([0, 0, 9, 9], [20, 20, 29, 29])
    # gt 0 matches pred 0 exactly, gt 1 matches pred 1 exactly but is padding.
    gt = _b([0, 0, 9, 9], [20, 20, 29, 29], [0, 0, 19, 19])
    valid = np.array([True, False, True])
    got = np.asarray(metrics.max_iou(pred, gt, valid))
    # pred 0: max(1, -, 100/400) = 1; pred 1 vs the 20x20 box: disjoint -> 0.
    np.testing.assert_allclose(got, [1.0, 0.0])
    # No valid gt at all -> 0 for every prediction (counted wrong, never right).
    empty = np.asarray(metrics.max_iou(pred, gt, np.zeros(3, bool)))
    np.testing.assert_array_equal(empty, [0.0, 0.0])
    # An invalid prediction -> 0 even where its box would match.
    np.testing.assert_array_equal(
        np.asarray(metrics.max_iou(pred, gt, valid, np.array([False, True]))), [0.0, 0.0]
    )


def test_box_hits_thresholds_and_components():
    # One image, gt (0,0,9,9) = 100 px; T = 2 CAM thresholds, M = 2 components.
    # t0: comps (0,0,9,4) IoU 50/100 = 0.5 and (0,0,2,2) IoU 9/100 -> best 0.5
    # t1: comp 0 invalid (would be perfect), comp 1 (0,0,9,6) IoU 70/100 = 0.7
    boxes = np.array([[[[0, 0, 9, 4], [0, 0, 2, 2]], [[0, 0, 9, 9], [0, 0, 9, 6]]]], np.int32)
    valid = np.array([[[True, True], [False, True]]])
    gt = _b([0, 0, 9, 9])[None]
    hits = np.asarray(
        metrics.box_hits(boxes, valid, gt, np.ones((1, 1), bool), np.array([0.3, 0.5, 0.7, 0.71]))
    )
    # IoU >= delta, ties count: best 0.5 hits 0.3 and 0.5; best 0.7 hits 0.3, 0.5, 0.7.
    np.testing.assert_array_equal(
        hits[0], [[True, True], [True, True], [False, True], [False, False]]
    )


def test_localization_hits_one_third_top1_error():
    # Three images, each with gt (0,0,9,9) (100 px). Guesses (class, box), K = 5:
    #  img 0: label 1, guess 0 = (1, the gt box)           -> top-1 right
    #  img 1: label 2, guess 0 = (2, (0,0,9,4)): IoU 50/100 = 0.5 >= 0.5 -> top-1 right
    #  img 2: label 3, guess 0 = (3, (0,0,9,3)): IoU 0.4    -> top-1 wrong;
    #         guess 3 = (3, the gt box)                     -> top-5 right
    # So top-1 loc hits 2/3 (error 1/3), top-5 3/3. Classification: img 2's guesses all
    # have class 3 first -> cls top-1 3/3.
    gt = np.tile(_b([0, 0, 9, 9])[None], (3, 1, 1))
    boxes = np.tile(np.array([50, 50, 59, 59], np.int32), (3, 5, 1))
    boxes[0, 0] = [0, 0, 9, 9]
    boxes[1, 0] = [0, 0, 9, 4]
    boxes[2, 0] = [0, 0, 9, 3]
    boxes[2, 3] = [0, 0, 9, 9]
    class_ids = np.array([[1, 7, 8, 9, 10], [2, 7, 8, 9, 10], [3, 7, 8, 3, 10]])
    hits = metrics.localization_hits(
        class_ids, boxes, np.array([1, 2, 3]), gt, np.ones((3, 1), bool)
    )
    np.testing.assert_array_equal(hits["loc_top1"], [True, True, False])
    np.testing.assert_array_equal(hits["loc_top5"], [True, True, True])
    np.testing.assert_array_equal(hits["cls_top1"], [True, True, True])
    # The right box with the wrong class is no hit: relabel image 0 as class 5.
    hits = metrics.localization_hits(
        class_ids, boxes, np.array([5, 2, 3]), gt, np.ones((3, 1), bool)
    )
    assert not bool(hits["loc_top1"][0]) and not bool(hits["cls_top5"][0])


def test_gt_known_hits():
    gt = _b([0, 0, 9, 9], [30, 30, 39, 39])[None]
    # The second gt box is matched exactly -> hit; (0,0,9,3) has IoU 0.4 -> miss.
    got = metrics.gt_known_hits(
        _b([30, 30, 39, 39], [0, 0, 9, 3]), np.concatenate([gt, gt]), np.ones((2, 2), bool)
    )
    np.testing.assert_array_equal(got, [True, False])


def test_pixel_histograms_and_pxap_by_hand():
    # Map [[1.0, 0.6, 0.9], [0.3, 0.0, 0.2]] with mask [[1, 0, 255], [1, 0, 255]]:
    # fg values {1.0, 0.3}, bg {0.6, 0.0}; the ignored column never counts.
    # Edges (grid 0, 0.5 plus 1.0), thresholds descending:
    #   tau 1.0: TP 1, FP 0 -> P 1,   R 1/2
    #   tau 0.5: TP 1, FP 1 -> P 1/2, R 1/2
    #   tau 0.0: TP 2, FP 2 -> P 1/2, R 1
    # PxAP = 100 * (1 * (1/2 - 0) + 1/2 * 0 + 1/2 * (1 - 1/2)) = 75.
    maps = np.array([[[1.0, 0.6, 0.9], [0.3, 0.0, 0.2]]], np.float32)
    masks = np.array([[[1, 0, 255], [1, 0, 255]]], np.uint8)
    hist = np.asarray(metrics.pixel_histograms(maps, masks, np.array([0.0, 0.5, 1.0])))
    # Bins: below 0 | [0, 0.5) | [0.5, 1) | >= 1
    np.testing.assert_array_equal(hist, [[0, 1, 0, 1], [0, 1, 1, 0]])
    p, r, defined = metrics.precision_recall_from_histograms(*hist)
    np.testing.assert_allclose(p, [0, 1, 0.5, 0.5])
    np.testing.assert_allclose(r, [0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(defined, [False, True, True, True])
    assert metrics.pxap_from_histograms(*hist) == pytest.approx(75.0)


def test_pixel_histograms_backends_agree_at_edges():
    # Values drawn from the edges themselves (float32 0.07 etc., 0 and 1) and between
    # them: both backends must bin v == edge as "edge <= v", and skip padded images.
    edges = metrics.default_cam_thresholds().astype(np.float32)
    edges = np.append(edges, np.float32(1.0))
    rng = np.random.default_rng(7)
    pool = np.concatenate([edges, rng.random(200).astype(np.float32)])
    maps = rng.choice(pool, (3, 9, 9)).astype(np.float32)
    masks = rng.choice(np.array([0, 1, 255], np.uint8), (3, 9, 9))
    keep = np.array([True, False, True])
    got = {
        b: np.asarray(metrics.pixel_histograms(maps, masks, edges, keep, backend=b))
        for b in ("jax", "host")
    }
    np.testing.assert_array_equal(got["jax"], got["host"])
    # And both equal a direct count: #fg pixels with v >= edges[j] == hist[0, j + 1:].sum().
    fg = maps[keep][masks[keep] == 1]
    want = [(fg >= e).sum() for e in edges]
    np.testing.assert_array_equal(np.cumsum(got["jax"][0][::-1])[::-1][1:], want)


def test_pxap_perfect_and_errors():
    # A map that is 1 on every fg pixel and 0 on every bg pixel: P = 1 at every recall
    # step -> PxAP 100.
    maps = np.array([[[1.0, 0.0], [1.0, 0.0]]], np.float32)
    masks = np.array([[[1, 0], [1, 0]]], np.uint8)
    hist = metrics.pixel_histograms(maps, masks, np.array([0.0, 0.5, 1.0]))
    assert metrics.pxap_from_histograms(*np.asarray(hist)) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no foreground"):
        metrics.pxap_from_histograms(np.zeros(4), np.ones(4))


def test_default_grid():
    grid = metrics.default_cam_thresholds()
    assert len(grid) == 100 and grid[0] == 0.0 and grid[7] == 0.07 and grid[-1] == 0.99
    assert len(metrics.default_cam_thresholds(0.001)) == 1000


def test_iou_of_one_dimensional_boxes_is_a_clear_error():
    with pytest.raises(ValueError, match=r"pred must be \[\.\.\., N, 4\].*\(4,\)"):
        metrics.iou(np.array([0, 0, 3, 3]), np.array([[0, 0, 3, 3]]))
    with pytest.raises(ValueError, match=r"gt must be \[\.\.\., N, 4\]"):
        metrics.iou(np.array([[0, 0, 3, 3]]), np.array([0, 0, 3, 3]))
    assert float(metrics.iou(np.array([[0, 0, 3, 3]]), np.array([[0, 0, 1, 3]]))[0, 0]) == 0.5
