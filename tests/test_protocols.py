"""The three evaluation protocols (camjax.protocols) and their registered metrics,
on hand-made maps whose answers are worked out by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from camjax.evaluation import report, runner
from camjax.metrics import registry, wsol_box
from camjax.metrics.max_box_acc import IOU_V2
from camjax.protocols import PROTOCOLS, blacklist, predict, released, wsol

H = W = 64


def _block(y0, x0, y1, x1, value=1.0, base=0.0, hw=(H, W)):
    m = np.full(hw, base, np.float32)
    m[y0 : y1 + 1, x0 : x1 + 1] = value
    return m


def _ctx(**options):
    return registry.MetricContext(image_hw=(H, W), options=options)


def test_every_protocol_names_its_source():
    assert set(PROTOCOLS) == {"paper", "released", "wsol"}
    for p in PROTOCOLS.values():
        assert p.source and p.title
    assert predict.required(["loc_error", "wsol_box", "paper_loc", "paper_loc"]) == (
        "wsol",
        "paper",
    )
    # A metric that reads a protocol's maps says which, and the protocol exists.
    readers = {s.name: s.protocol for s in registry.METRICS.values() if s.protocol}
    known = {"paper_loc": "paper", "released_loc": "released", "wsol_box": "wsol"}
    assert known.items() <= readers.items()
    assert set(readers.values()) <= set(PROTOCOLS)


def test_paper_cuts_at_20_percent_of_the_max_not_of_the_range():
    # Raw map: -1 background, a 0 halo rows 5..40, the object (value 1) rows 10..29.
    # paper: kept = raw >= 0.2 * 1 -> the object only: box (20, 10, 39, 29), IoU 1.
    # min-max: kept = raw >= -1 + 0.2 * 2 = -0.6 -> the halo too: IoU 400/1296 < 0.5.
    from camjax.maps import normalize
    from camjax.metrics.paper_loc import PaperLoc

    raw = _block(5, 5, 40, 50, 0.0, -1.0)
    raw[10:30, 20:40] = 1.0
    maps = np.stack([raw, raw * 0.5])[None]  # [1, 2, H, W]
    batch = {
        "label": np.array([3]),
        "bboxes": np.array([[[20, 10, 39, 29]]]),
        "bbox_valid": np.array([[True]]),
        "valid": np.array([True]),
    }
    for norm, top1 in (("max", 0.0), ("minmax", 100.0)):
        m = np.asarray(normalize(maps, norm))
        out = {
            "class_ids": np.array([[3, 1]]),
            "protocols": {"paper": {"maps": m, "gt_maps": m[:, :1]}},
        }
        metric = PaperLoc(_ctx())
        metric.update(batch, out)
        r = metric.result()
        assert r["paper_top1_error"] == top1
        assert r["paper_gt_known"] == 100.0 - top1


def test_released_block_boxes_hand_worked():
    # A 20 x 20 plateau at rows 10..29, cols 20..39: every level keeps it, the largest
    # distance to the outside is 10, so the erosion keeps every pixel (d * 255 / 10 > 10
    # for d >= 1); each level's contour is (20, 10, 20, 20); the merge drops the second
    # and steps over the third: two rectangles, read as (20, 10, 40, 30).
    b = released.boxes(_block(10, 20, 29, 39)[None])
    np.testing.assert_array_equal(b, [[[20, 10, 40, 30], [20, 10, 40, 30]]])
    # Divided by the max: any positive scale gives the same grey image.
    np.testing.assert_array_equal(released.to_grey(3 * _block(10, 20, 29, 39)).max(), 255)
    np.testing.assert_array_equal(released.to_grey(np.full((4, 4), -1.0)), 0)


def test_released_heuristic_order():
    # boxes12[b, rank, j] = (rank, j, 0, 0): the guesses must read top-1 bbox1, top-1
    # bbox2, top-2 bbox1, top-2 bbox2, top-3 bbox1 (ILSVRC_evaluate_bbox.m l. 109-137).
    boxes12 = np.zeros((1, 5, 2, 4), np.int32)
    for r in range(5):
        for j in range(2):
            boxes12[0, r, j, :2] = (r, j)
    classes, boxes = released.heuristic(np.array([[7, 8, 9, 10, 11]]), boxes12)
    assert classes.tolist() == [[7, 7, 8, 8, 9]]
    assert boxes[0, :, :2].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]]


def test_wsol_boxes_are_one_pixel_wider_and_pick_by_contour_area():
    # A 5 x 5 block: the benchmark's box is (x, y, x + w, y + h) = 6 x 6 pixels, so
    # IoU with the block itself is 25 / 36 = 0.694: a hit at 0.3 and 0.5, not at 0.7.
    m = _block(10, 10, 14, 14)
    (b,) = wsol.boxes_at(m, [0.5], multi_contour=True)
    assert b.tolist() == [[10, 10, 15, 15]]
    counts = wsol_box.WsolBoxCounts(wsol.thresholds(10), IOU_V2, multi_contour=True)
    counts.update(m[None], np.array([[[10, 10, 14, 14]]]), np.array([[True]]), [True])
    r = counts.result()
    assert r["accuracy_per_iou"] == {"30": 100.0, "50": 100.0, "70": 0.0}
    # A 1-pixel line of 20 pixels (contourArea 0) and a 3 x 3 block (contourArea 4, 9
    # pixels): MaxBoxAcc takes the block, by area, not the line, by pixel count.
    m = _block(40, 5, 40, 24)
    m[10:13, 50:53] = 1.0
    (b,) = wsol.boxes_at(m, [0.5], multi_contour=False)
    assert b.tolist() == [[50, 10, 53, 13]]
    # No contour: the box (0, 0, 0, 0); a map with a NaN or constant: zeros.
    (b,) = wsol.boxes_at(np.zeros((8, 8), np.float32), [0.0], multi_contour=True)
    assert b.tolist() == [[0, 0, 0, 0]]
    nan = np.ones((1, 4, 4), np.float32)
    nan[0, 0, 0] = np.nan
    np.testing.assert_array_equal(wsol.resize_and_normalise(nan, (8, 8)), 0.0)
    assert wsol.thresholds(100)[7] == np.arange(0, 1, 0.01)[7]


def test_wsol_resize_is_opencv_cubic_then_min_max():
    import cv2

    raw = np.random.default_rng(0).normal(size=(2, 7, 7)).astype(np.float32)
    got = wsol.resize_and_normalise(raw, (28, 28))
    ref = cv2.resize(raw[1], (28, 28), interpolation=cv2.INTER_CUBIC)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    np.testing.assert_allclose(got[1], ref, atol=1e-6)
    assert got.min() == 0.0 and got.max() == 1.0


def _stream(n_batches=2):
    rng = np.random.default_rng(1)
    for i in range(n_batches):
        maps = np.stack([_block(10, 20, 29, 39), _block(30, 5, 50, 20)] + [_block(0, 0, 5, 5)] * 3)
        yield {
            "image": np.zeros((2, H, W, 3), np.float32),
            "label": np.array([3, 4]),
            "bboxes": np.array([[[20, 10, 39, 29]], [[5, 30, 20, 50]]]),
            "bbox_valid": np.ones((2, 1), bool),
            "valid": np.array([True, i == 0]),
            "image_id": np.array([1 + 2 * i, 2 + 2 * i]),
            "maps": maps + rng.uniform(0, 1e-3, maps.shape).astype(np.float32),
        }


def _predict(method, batch):
    m = np.broadcast_to(batch["maps"], (2, 5, H, W))
    class_ids = np.array([[3, 4, 5, 0, 1]] * 2)
    logits = np.zeros((2, 6), np.float32)
    logits[:, [3, 4, 5, 0, 1]] = [5, 4, 3, 2, 1]
    return {
        "logits": logits,
        "class_ids": class_ids,
        "probs": np.ones((2, 5)) / 5,
        "maps": m,
        "boxes": np.zeros((2, 5, 4), np.int32),
        "gt_maps": m[np.arange(2), [0, 1]][:, None],
        "gt_boxes": np.zeros((2, 1, 4), np.int32),
    }


def test_protocol_metrics_through_the_loop_and_the_report(tmp_path):
    # Image 1 (label 3): the top-1 map's block is its box -> right at top-1 under every
    # protocol. Image 2 (label 4): the top-1 class (3) is wrong, the top-2 map is right.
    names = ("paper_loc", "released_loc", "wsol_box")
    results, _ = runner.evaluate_stream(
        _stream(), _predict, metrics=names, include_centre=False, options={}
    )
    r = results["methods"]["cam"]
    assert r["paper_loc"]["num_examples"] == 3  # the padded row is not counted
    assert r["paper_loc"]["paper_top1_error"] == pytest.approx(100 / 3)
    assert r["paper_loc"]["paper_top5_error"] == 0.0
    assert r["released_loc"]["released_bbox1_top1_error"] == pytest.approx(100 / 3)
    assert r["released_loc"]["released_heuristic_top5_error"] == 0.0
    assert r["wsol_box"]["wsol_max_box_acc"] == 100.0
    md = report.format_markdown(results)
    for p in PROTOCOLS:
        assert f"`{p}`" in md
    assert "| CAM on model | 33.33 | 0.00 | 100.00 |" in md


def test_blacklist_leaves_listed_images_out(tmp_path):
    path = tmp_path / "blacklist.txt"
    path.write_text("2\n# a comment\nILSVRC2012_val_00000003.JPEG\n\n")
    assert blacklist.load(str(path)) == {2, 3}
    assert blacklist.image_number("x/ILSVRC2012_val_00000036.JPEG") == 36
    results, _ = runner.evaluate_stream(
        _stream(), _predict, metrics=("paper_loc",), include_centre=False,
        options={"blacklist": str(path)},
    )  # fmt: skip
    # Ids 1, 2 (batch 1), 3 (batch 2; id 4 is padding): 2 and 3 are listed -> image 1 only.
    r = results["methods"]["cam"]["paper_loc"]
    assert r["num_examples"] == 1 and r["paper_top1_error"] == 0.0
    bad = tmp_path / "bad.txt"
    bad.write_text("12\nfoo\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        blacklist.load(str(bad))
    with pytest.raises(FileNotFoundError, match="eval.blacklist"):
        blacklist.load(str(tmp_path / "none.txt"))
    no_ids = {"label": np.zeros(2), "valid": np.ones(2, bool)}
    with pytest.raises(ValueError, match="image_id"):
        blacklist.counted(no_ids, {"blacklist": str(path)})


@pytest.mark.slow
def test_predictor_adds_each_protocols_maps_from_the_network():
    # tiny_gap, random weights: the paper protocol's boxes must be the 20%-of-max boxes of
    # the raw CAM upsampled (computed here from the features and the classifier), and the
    # wsol maps the feature-resolution maps.
    import jax
    from cam_reference import cam_reference

    from camjax import models
    from camjax.boxes import largest_component_box
    from camjax.checkpoints import Loaded
    from camjax.evaluation.predictor import predictor
    from camjax.maps import upsample

    model = models.create("tiny_gap", num_classes=6)
    images = np.asarray(jax.random.normal(jax.random.key(1), (2, 32, 32, 3)))
    variables = model.init(jax.random.key(0), images)
    loaded = Loaded(model, variables, [str(i) for i in range(6)], 32, "imagenet", "test")
    predict = predictor(loaded, top_k=5, protocols=("paper", "wsol"))
    out = predict("cam", {"image": images, "label": np.array([1, 2])})
    assert set(out["protocols"]) == {"paper", "wsol"}
    logits, features = model.apply(variables, images, train=False)
    kernel, _ = models.classifier(variables)
    ids = np.asarray(out["class_ids"])
    raw = upsample(cam_reference(features, kernel, ids), (32, 32))
    want = np.asarray(largest_component_box(np.asarray(raw), 0.2))
    np.testing.assert_array_equal(out["protocols"]["paper"]["boxes"], want)
    h, w = features.shape[1:3]
    assert out["protocols"]["wsol"]["gt_maps"].shape == (2, 1, h, w)


def test_released_ten_crop_boxes_are_scored_at_the_original_size():
    # The predictor's ten-crop output: classes from the crops' mean and bbox1/bbox2 in
    # original pixels (a 300 x 400 image, larger than the 64 x 64 batch), scored against
    # orig_bboxes. Top-1 (class 3 = label) bbox1 is the object; bbox2 is elsewhere.
    from camjax.metrics.released_loc import ReleasedLoc

    boxes12 = np.zeros((1, 6, 2, 4), np.int32)
    boxes12[0, :, 0] = [250, 100, 380, 280]  # bbox1 of every map
    boxes12[0, :, 1] = [0, 0, 20, 20]  # bbox2
    out = {
        "class_ids": np.array([[0, 1, 2, 4, 5]]),  # single-crop classes: ignored here
        "protocols": {"released": {"class_ids": np.array([[3, 1, 2, 4, 5]]), "boxes12": boxes12}},
    }
    batch = {
        "label": np.array([3]),
        "bboxes": np.array([[[0, 0, 1, 1]]]),  # the 64-side boxes: not used
        "bbox_valid": np.array([[True]]),
        "orig_bboxes": np.array([[[250, 100, 380, 280]]]),
        "valid": np.array([True]),
    }
    metric = ReleasedLoc(_ctx(ten_crop=True))
    metric.update(batch, out)
    r = metric.result()
    assert r["released_bbox1_top1_error"] == 0.0 and r["released_bbox1_gt_known"] == 100.0
    assert r["released_bbox2_top1_error"] == 100.0
    assert r["released_heuristic_top1_error"] == 0.0  # the loose bbox1 comes first
