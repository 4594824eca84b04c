"""camjax.evaluation.evaluate_stream on hand-made maps with hand-worked answers."""

import os

import numpy as np
import pytest
from PIL import Image

from camjax.evaluation import evaluate_stream
from camjax.evaluation.figures import write_figures

S = 16  # image side
# Ground-truth boxes: image 0 top-left corner, image 1 the exact centre, image 2 bottom-right.
GT = np.array([[0, 0, 3, 3], [6, 6, 9, 9], [12, 12, 15, 15]], np.int32)
WRONG = np.array([0, 12, 3, 15], np.int32)  # bottom-left corner: IoU 0 with every GT box


def _block(box):
    m = np.zeros((S, S), np.float32)
    x0, y0, x1, y1 = box
    m[y0 : y1 + 1, x0 : x1 + 1] = 1.0
    return m


def _example(label, ranked, boxes, gt_map_box):
    """One image: ``ranked`` top-5 class ids, ``boxes`` the box of each ranked class's map
    (the map is a block on exactly that box, so any CAM threshold in (0, 1] boxes it)."""
    logits = np.zeros(6, np.float32)
    logits[list(ranked)] = [5.0, 4.0, 3.0, 2.0, 1.0]
    return {
        "label": label,
        "logits": logits,
        "class_ids": np.array(ranked, np.int32),
        "maps": np.stack([_block(b) for b in boxes]),
        "boxes": np.array(boxes, np.int32),
        "gt_map": _block(gt_map_box),
        "gt_box": np.array(gt_map_box, np.int32),
    }


def _examples():
    # Image 0: class right at rank 1, box right        -> loc top-1 and top-5 right.
    # Image 1: class right at rank 1, box right        -> right.
    # Image 2: rank 1 wrong class (box on the object), rank 4 right class with a right box
    #          -> loc top-1 wrong, loc top-5 right; the heuristic only looks at the top-3
    #          classes, so it is wrong at top-5 too. Its GT-class map is off the object.
    return [
        _example(0, [0, 1, 2, 3, 4], [GT[0], WRONG, WRONG, WRONG, WRONG], GT[0]),
        _example(1, [1, 0, 2, 3, 4], [GT[1], WRONG, WRONG, WRONG, WRONG], GT[1]),
        _example(2, [3, 4, 5, 2, 0], [GT[2], WRONG, WRONG, GT[2], WRONG], WRONG),
        # Padding (valid False): every answer wrong, must not be counted.
        _example(5, [0, 1, 2, 3, 4], [WRONG] * 5, WRONG),
    ]


def _stream():
    ex = _examples()
    n = len(ex)
    batch = {
        "image": np.random.default_rng(0).normal(size=(n, S, S, 3)).astype(np.float32),
        "label": np.array([e["label"] for e in ex], np.int32),
        "bboxes": np.stack([np.stack([GT[i % 3], np.zeros(4, np.int32)]) for i in range(n)]),
        "bbox_valid": np.tile([[True, False]], (n, 1)),
        "mask": np.stack([_block(GT[i % 3]).astype(np.uint8) for i in range(n)]),
        "valid": np.array([True, True, True, False]),
    }
    out = {
        "logits": np.stack([e["logits"] for e in ex]),
        "class_ids": np.stack([e["class_ids"] for e in ex]),
        "probs": np.full((n, 5), 0.2, np.float32),
        "maps": np.stack([e["maps"] for e in ex]),
        "boxes": np.stack([e["boxes"] for e in ex]),
        "gt_maps": np.stack([e["gt_map"] for e in ex])[:, None],
        "gt_boxes": np.stack([e["gt_box"] for e in ex])[:, None],
    }
    # Two batches (the stream must add up across batches): rows 0-1, then rows 2-3.
    cut = lambda d, s: {k: v[s] for k, v in d.items()}
    return [
        (cut(batch, slice(0, 2)), cut(out, slice(0, 2))),
        (cut(batch, slice(2, 4)), cut(out, slice(2, 4))),
    ]


@pytest.fixture(scope="module")
def evaluated():
    stream = _stream()
    outputs = {id(b): o for b, o in stream}
    calls = []

    def predict(method, batch):
        calls.append(method)
        return outputs[id(batch)]

    results, samples = evaluate_stream(
        [b for b, _ in stream], predict, methods=("cam",), has_masks=True
    )
    assert calls == ["cam", "cam"]  # the centre baseline needs no network call
    return results, samples


def test_classification_and_paper_localization_errors(evaluated):
    r, _ = evaluated
    third = 100 / 3
    assert r["num_examples"] == 3
    # Image 2's label is ranked 4th: top-1 wrong, top-5 right.
    assert r["classification"]["top1_error"] == pytest.approx(third)
    assert r["classification"]["top5_error"] == pytest.approx(0.0)
    cam = r["methods"]["cam"]
    assert cam["loc_error"]["loc_top1_error"] == pytest.approx(third)  # top-1 loc: 2/3
    assert cam["loc_error"]["loc_top5_error"] == pytest.approx(0.0)
    assert cam["heuristic"]["heuristic_top1_error"] == pytest.approx(third)
    # Rank 4 is out of the heuristic's reach.
    assert cam["heuristic"]["heuristic_top5_error"] == pytest.approx(third)
    assert cam["gt_known"]["gt_known_loc"] == pytest.approx(2 * third)  # image 2's GT map


def test_max_box_acc_and_pxap(evaluated):
    cam = evaluated[0]["methods"]["cam"]
    third = 100 / 3
    # Block maps give the block's box at every CAM threshold in (0, 1]: images 0 and 1
    # at IoU 1, image 2 at IoU 0 -> 2/3 at every IoU threshold.
    assert cam["max_box_acc"]["max_box_acc"] == pytest.approx(2 * third)
    v2 = cam["max_box_acc_v2"]
    assert v2["max_box_acc_v2"] == pytest.approx(2 * third)
    for key in ("30", "50", "70"):
        assert v2["max_box_acc_v2_per_iou"][key] == pytest.approx(2 * third)
    # At t = 0 every pixel is kept: the whole-image box (IoU 16/256 < 0.3) misses.
    assert v2["curve"]["box_acc"]["30"][0] == pytest.approx(0.0)
    # PxAP: for any tau in (0, 1] the positives are the three blocks: TP 32 (images 0, 1),
    # FP 16 (image 2), so P = R = 2/3; at tau = 0 all 768 pixels: P = 48/768, R = 1.
    # PxAP = 100 * (2/3 * 2/3 + 1/16 * 1/3) = 46.5277...
    assert cam["pxap"]["pxap"] == pytest.approx(100 * (4 / 9 + 1 / 48), abs=1e-3)


def test_centre_baseline(evaluated):
    centre = evaluated[0]["methods"]["centre"]
    third = 100 / 3
    # Only image 1's box is centred; the centred box [6, 6, 9, 9] is reached at CAM
    # thresholds in (0.82, 0.92) (disc r^2 in [2.5, 6.5) px^2 with sigma = 4 px), so
    # the best centred box over all scales is right for image 1 alone.
    assert centre["max_box_acc"]["max_box_acc"] == pytest.approx(third)
    for key in ("30", "50", "70"):
        assert centre["max_box_acc_v2"]["max_box_acc_v2_per_iou"][key] == pytest.approx(third)
    # At the paper's 20% the centred box spans ~0.9 of the side: wrong for all three.
    assert centre["gt_known"]["gt_known_loc"] == pytest.approx(0.0)
    assert centre["loc_error"]["loc_top1_error"] == pytest.approx(100.0)


def test_figures_from_the_stream(evaluated, tmp_path):
    results, samples = evaluated
    assert len(samples["cam"]) == 3  # padding never sampled
    names = write_figures(str(tmp_path), results, samples, [f"class{i}" for i in range(6)])
    assert names == ["examples_cam.png", "top5_cam.png", "box_accuracy_curve.png"]
    for name in names:
        with Image.open(os.path.join(tmp_path, name)) as im:
            assert np.asarray(im.convert("L")).std() > 10


def test_empty_stream_is_an_error():
    with pytest.raises(ValueError, match="no valid example"):
        evaluate_stream([], lambda m, b: {}, methods=("cam",))
    with pytest.raises(ValueError, match="at least one method"):
        evaluate_stream([], lambda m, b: {}, methods=())
    with pytest.raises(ValueError, match="at least one method"):
        evaluate_stream([], lambda m, b: {}, methods=("centre",))
