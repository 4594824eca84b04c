"""The ``released`` box generator against the original program's own outputs.

How the expected numbers were obtained (once, outside the project, 2026-11-30): the
authors' ``bboxgenerator/dt_box.cpp`` and ``dt.c`` (zhoubolei/CAM at commit c63f285) were
compiled with g++ -O3 against Debian 12's ``libopencv-dev`` 4.6.0 on x86-64. OpenCV 4
removed ``cvLoadImage`` and the HighGUI C calls, so two edits were made, both outside
the algorithm: the image is read with ``cv::imread(path, IMREAD_GRAYSCALE)`` wrapped as
an ``IplImage``, and the unused ``draw`` function was deleted. The build reproduces the
repository's own ``heatmap_6.txt`` from ``heatmap_6.jpg`` (``41 145 362 202 102 188 242
126``). Each heatmap below (``released_heatmaps.heatmap`` or a hand-made one) was written
as a lossless grey PNG and passed to ``./dt_box case.png 20 100 110`` (the levels of
``ILSVRC_evaluate_bbox.m``; three cases with the program's defaults ``30 90 150``); the
table keeps the number of rectangles it printed, the first two (``bbox1``, ``bbox2``) and
the CRC-32 of all printed numbers joined by single spaces.

``cam_heatmap_6.jpg`` is the repository's ``bboxgenerator/heatmap_6.jpg`` (MIT licence,
copyright Bolei Zhou, in ``cam_heatmap_6.LICENSE``).
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from released_heatmaps import heatmap

from camjax.protocols import dt_box

DATA = os.path.join(os.path.dirname(__file__), "data")

# (heatmap, levels, number of rectangles, first two (x, y, w, h), CRC-32 of the output)
REFERENCES = [
    ((0, 6), (20, 100, 110), 3, [(47, 71, 58, 63), (51, 78, 54, 56)], 672906936),
    ((1, 6), (20, 100, 110), 5, [(54, 7, 34, 76), (58, 55, 30, 28)], 527265128),
    ((2, 6), (20, 100, 110), 2, [(7, 0, 29, 84), (8, 0, 27, 80)], 3173629364),
    ((3, 6), (20, 100, 110), 2, [(0, 0, 17, 68), (0, 0, 13, 56)], 3775781944),
    ((4, 6), (20, 100, 110), 7, [(100, 0, 47, 117), (0, 57, 75, 47)], 2412348494),
    ((5, 6), (20, 100, 110), 2, [(17, 80, 85, 30), (17, 80, 85, 30)], 2252588316),
    ((6, 6), (20, 100, 110), 21, [(50, 0, 42, 51), (59, 2, 28, 37)], 2530084910),
    ((7, 6), (20, 100, 110), 11, [(0, 0, 68, 96), (0, 9, 69, 45)], 2727218670),
    ((8, 6), (20, 100, 110), 2, [(0, 108, 8, 8), (0, 110, 7, 6)], 3343764775),
    ((9, 6), (20, 100, 110), 6, [(92, 30, 45, 46), (92, 30, 45, 46)], 2125432608),
    ((10, 6), (20, 100, 110), 4, [(105, 0, 44, 60), (105, 0, 44, 60)], 3701804569),
    ((11, 6), (20, 100, 110), 5, [(0, 0, 36, 34), (14, 0, 22, 19)], 223000001),
    ((12, 6), (20, 100, 110), 5, [(0, 0, 53, 41), (0, 0, 25, 41)], 1210369132),
    ((13, 6), (20, 100, 110), 7, [(0, 0, 136, 140), (7, 0, 79, 81)], 636501370),
    ((14, 6), (20, 100, 110), 4, [(65, 25, 67, 14), (65, 25, 67, 14)], 118819077),
    ((15, 6), (20, 100, 110), 5, [(76, 5, 35, 69), (80, 12, 27, 55)], 4202703693),
    ((16, 6), (20, 100, 110), 4, [(0, 31, 59, 61), (0, 40, 56, 52)], 3941108689),
    ((17, 6), (20, 100, 110), 2, [(7, 0, 104, 33), (19, 0, 81, 26)], 2374177915),
    ((18, 6), (20, 100, 110), 3, [(44, 98, 29, 42), (44, 132, 29, 8)], 1925250755),
    ((19, 6), (20, 100, 110), 3, [(0, 0, 23, 57), (0, 0, 17, 50)], 1373471693),
    ((20, 6), (20, 100, 110), 4, [(14, 46, 5, 13), (14, 46, 5, 13)], 945601407),
    ((21, 6), (20, 100, 110), 6, [(35, 11, 70, 48), (72, 11, 33, 48)], 711766370),
    ((22, 6), (20, 100, 110), 4, [(0, 0, 11, 119), (0, 8, 8, 97)], 3071415473),
    ((23, 6), (20, 100, 110), 7, [(60, 7, 53, 16), (0, 0, 36, 14)], 2263741856),
    ((24, 6), (20, 100, 110), 6, [(21, 0, 42, 71), (24, 26, 39, 44)], 3221498303),
    ((25, 6), (20, 100, 110), 3, [(0, 78, 40, 9), (1, 78, 36, 9)], 4192819907),
    ((26, 6), (20, 100, 110), 4, [(0, 98, 85, 38), (0, 98, 85, 38)], 2945063770),
    ((27, 6), (20, 100, 110), 4, [(0, 16, 48, 3), (0, 16, 48, 3)], 789104064),
    ((28, 6), (20, 100, 110), 2, [(87, 79, 47, 30), (100, 88, 34, 21)], 3048101272),
    ((29, 6), (20, 100, 110), 4, [(0, 36, 14, 81), (0, 39, 14, 75)], 649735704),
    ((30, 6), (20, 100, 110), 3, [(0, 0, 37, 33), (0, 0, 29, 17)], 1181514616),
    ((31, 6), (20, 100, 110), 10, [(114, 0, 27, 45), (124, 0, 17, 34)], 725544175),
    ((32, 6), (20, 100, 110), 3, [(0, 0, 40, 138), (0, 40, 31, 98)], 1989227524),
    ((33, 6), (20, 100, 110), 16, [(0, 64, 50, 51), (0, 64, 50, 51)], 3244416268),
    ((34, 6), (20, 100, 110), 129, [(0, 0, 19, 27), (0, 0, 19, 27)], 3236181682),
    ((35, 6), (20, 100, 110), 7, [(0, 24, 31, 9), (0, 24, 31, 9)], 1979086532),
    ((36, 6), (20, 100, 110), 14, [(0, 0, 43, 71), (0, 0, 43, 61)], 45815337),
    ((37, 6), (20, 100, 110), 13, [(0, 28, 114, 12), (58, 0, 56, 21)], 2019212030),
    ((38, 6), (20, 100, 110), 2, [(7, 0, 45, 28), (12, 0, 35, 23)], 290383227),
    ((39, 6), (20, 100, 110), 619, [(0, 35, 87, 116), (66, 75, 21, 27)], 644924416),
    ((100, 24), (20, 100, 110), 2036, [(0, 0, 132, 123), (0, 68, 12, 29)], 1558181034),
    ((101, 24), (20, 100, 110), 50, [(0, 0, 102, 61), (0, 0, 71, 42)], 3353476633),
    ((102, 24), (20, 100, 110), 4, [(22, 11, 18, 68), (0, 18, 12, 61)], 4150654330),
    ((0, 6), (30, 90, 150), 3, [(48, 71, 57, 63), (51, 84, 52, 50)], 3010413599),
    ((1, 6), (30, 90, 150), 6, [(55, 7, 33, 76), (58, 54, 30, 29)], 3325350541),
    ((2, 6), (30, 90, 150), 2, [(7, 0, 29, 84), (8, 0, 27, 78)], 879372617),
    ("constant_50x60", (20, 100, 110), 2, [(0, 0, 55, 45), (0, 0, 55, 45)], 4249433993),
    ("constant_375x500", (20, 100, 110), 2, [(0, 0, 495, 370), (0, 0, 495, 370)], 687056605),
    ("zeros_40x40", (20, 100, 110), 0, [], 0),
    ("dot_40x50", (20, 100, 110), 2, [(30, 20, 1, 1), (30, 20, 1, 1)], 4133263626),
    ("line_40x50", (20, 100, 110), 2, [(25, 10, 1, 20), (25, 10, 1, 20)], 4026548730),
    ("right_edge_40x50", (20, 100, 110), 2, [(44, 5, 1, 30), (44, 5, 1, 30)], 1477618756),
    ("corner_40x50", (20, 100, 110), 3, [(45, 35, -2, -2), (45, 35, -2, -2)], 2529712743),
]


def _grey(key) -> np.ndarray:
    if not isinstance(key, str):
        return heatmap(*key)
    h, w = (int(v) for v in key.rsplit("_", 1)[1].split("x"))
    g = np.zeros((h, w), np.uint8)
    if key.startswith("constant"):
        g[:] = 200
    elif key.startswith("dot"):
        g[20, 30] = 255
    elif key.startswith("line"):
        g[10:30, 25] = 255
    elif key.startswith("right_edge"):
        g[5:35, 44:50] = 255
    elif key.startswith("corner"):
        g[37:40, 47:50] = 255
    return g


@pytest.mark.parametrize("key, levels, count, first_two, crc", REFERENCES)
def test_rectangles_equal_the_released_program(key, levels, count, first_two, crc):
    rects = dt_box.rectangles(_grey(key), levels)
    assert len(rects) == count
    assert rects[:2] == first_two
    flat = " ".join(str(v) for r in rects for v in r)
    assert zlib.crc32(flat.encode()) == crc


def test_the_repository_heatmap_gives_its_shipped_boxes():
    import cv2

    grey = cv2.imread(os.path.join(DATA, "cam_heatmap_6.jpg"), cv2.IMREAD_GRAYSCALE)
    assert grey is not None and grey.shape == (368, 500)
    assert dt_box.rectangles(grey) == [(41, 145, 362, 202), (102, 188, 242, 126)]
    boxes = dt_box.released_boxes(grey)
    np.testing.assert_array_equal(boxes, [[41, 145, 403, 347], [102, 188, 344, 314]])


def test_squared_distances_equal_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        kept = rng.random((13, 17)) < 0.8
        kept[0, 0] = False
        got = dt_box.squared_distances(kept)
        ys, xs = np.nonzero(~kept)
        yy, xx = np.mgrid[:13, :17]
        brute = ((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2).min(-1)
        np.testing.assert_array_equal(got, np.where(kept, brute, 0))


def test_all_kept_distances_are_the_programs_constant():
    # No dropped pixel: dt.c's envelope over 1e20 samples gives 1e20 everywhere (the
    # squared offsets vanish in rounding), so double_to_image leaves the mask as it is
    # and the whole image is one region: the constant_* references above.
    for shape in ((20, 30), (375, 500)):
        np.testing.assert_array_equal(dt_box.squared_distances(np.ones(shape, bool)), 1e20)
    mask = dt_box.eroded(np.full((20, 30), 200, np.uint8), 20)
    np.testing.assert_array_equal(mask, 255)


def test_merge_steps_over_the_rectangle_after_a_dropped_one():
    a = (0, 0, 10, 10)  # area 100; each of b, c overlaps it by 100 > 50
    b = (0, 0, 10, 9)
    c = (0, 0, 9, 10)
    d = (50, 50, 2, 2)
    # b is dropped, c moves into its place and is stepped over, so c survives.
    assert dt_box._merge([a, b, c, d]) == [a, c, d]
    # With another rectangle between them, both b and c are compared with a and go.
    assert dt_box._merge([a, b, d, c]) == [a, d]


def test_merge_threshold_is_half_the_larger_area_truncated():
    a = (0, 0, 5, 5)  # area 25: limit int(12.5) = 12
    assert dt_box._merge([a, (0, 0, 4, 3)]) == [a, (0, 0, 4, 3)]  # overlap 12, not > 12
    assert dt_box._merge([a, (0, 0, 13, 1)]) == [a, (0, 0, 13, 1)]  # overlap 5
    assert dt_box._merge([a, (0, 0, 5, 3)]) == [a]  # overlap 15 > 12: dropped


def test_introsort_is_stable_up_to_16_and_orders_by_area():
    items = [(i, i % 3) for i in range(16)]
    assert dt_box.introsort(items, key=lambda t: t[1]) == sorted(items, key=lambda t: -t[1])
    many = [(i, i % 5) for i in range(200)]
    out = dt_box.introsort(many, key=lambda t: t[1])
    assert [t[1] for t in out] == sorted((t[1] for t in many), reverse=True)
    assert sorted(out) == many


def test_released_boxes_defined_results():
    np.testing.assert_array_equal(dt_box.released_boxes(np.zeros((30, 30), np.uint8)), 0)
    one = np.zeros((40, 50), np.uint8)
    one[20, 30] = 255
    np.testing.assert_array_equal(dt_box.released_boxes(one), [[30, 20, 31, 21]] * 2)
    with pytest.raises(ValueError, match="uint8"):
        dt_box.rectangles(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="increasing"):
        dt_box.rectangles(np.zeros((4, 4), np.uint8), (100, 20, 110))
