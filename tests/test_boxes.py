"""camjax.boxes: largest/all component boxes against scipy references and hand-worked maps."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from camjax import boxes

STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3), bool)}
BACKENDS = ("jax", "host")


def smooth_maps(n: int, size: int = 24, seed: int = 0) -> np.ndarray:
    """CAM-like maps: a coarse random field, bilinear upsampled, ReLU."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, 5, 5)).astype(np.float32)
    up = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in coarse])
    return np.maximum(up, 0.0)


def reference_components(mask: np.ndarray, connectivity: int) -> list[tuple]:
    """(area, first-pixel label, box) per component via scipy, largest first, ties by label.

    scipy numbers components in raster order of their first pixel, so sorting by
    (-area, label) is the documented order of camjax.
    """
    lab, k = ndimage.label(mask, STRUCTURE[connectivity])
    if k == 0:
        return []
    areas = np.bincount(lab.ravel(), minlength=k + 1)[1:]
    objs = ndimage.find_objects(lab)
    out = []
    for i in sorted(range(k), key=lambda i: (-areas[i], i)):
        ys, xs = objs[i]
        out.append((xs.start, ys.start, xs.stop - 1, ys.stop - 1))
    return out


def reference_kept(m: np.ndarray, t: float) -> np.ndarray:
    finite = np.isfinite(m)
    peak = m[finite].max() if finite.any() else -np.inf
    if not peak > 0:
        return np.zeros(m.shape, bool)
    return finite & (m >= np.float32(t) * np.float32(peak))


# ---------------------------------------------------------------- largest_component_box


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_largest_matches_scipy(backend, connectivity):
    maps = smooth_maps(12).reshape(3, 4, 24, 24)  # leading shape [B, k]
    for t in (0.2, 0.55):
        got = np.asarray(
            boxes.largest_component_box(maps, t, connectivity=connectivity, backend=backend)
        )
        assert got.shape == (3, 4, 4) and got.dtype == np.int32
        for idx in np.ndindex(3, 4):
            comps = reference_components(reference_kept(maps[idx], t), connectivity)
            want = comps[0] if comps else (0, 0, 0, 0)
            assert tuple(got[idx]) == want, (idx, t)


def test_largest_hand_worked():
    # A 3x3 block of 1.0 at rows 1-3, cols 1-3 (9 pixels) and a 2x5 block of 0.5 at rows
    # 6-7, cols 2-6 (10 pixels). Threshold 0.2 -> cut 0.2: both kept; the larger by pixel
    # count is the 2x5 block although its values are lower: box (x0=2, y0=6, x1=6, y1=7).
    # Threshold 0.6 -> cut 0.6: only the 3x3 block: box (1, 1, 3, 3).
    m = np.zeros((9, 9), np.float32)
    m[1:4, 1:4] = 1.0
    m[6:8, 2:7] = 0.5
    for backend in BACKENDS:
        assert tuple(np.asarray(boxes.largest_component_box(m, 0.2, backend=backend))) == (
            2,
            6,
            6,
            7,
        )
        assert tuple(np.asarray(boxes.largest_component_box(m, 0.6, backend=backend))) == (
            1,
            1,
            3,
            3,
        )


def test_largest_tie_goes_to_first_pixel_in_raster_order():
    # Two 2x2 blocks of 4 pixels: A at rows 5-6, cols 0-1; B at rows 2-3, cols 6-7. B's
    # first pixel (2, 6) comes before A's (5, 0) in raster order, so B wins: (6, 2, 7, 3).
    m = np.zeros((8, 8), np.float32)
    m[5:7, 0:2] = 1.0
    m[2:4, 6:8] = 1.0
    for backend in BACKENDS:
        got = tuple(np.asarray(boxes.largest_component_box(m, 0.5, backend=backend)))
        assert got == (6, 2, 7, 3)


def test_largest_defined_results_for_degenerate_maps():
    # Rows: all zero, all negative, all NaN -> nothing kept -> (0, 0, 0, 0). A single
    # positive pixel at (y=4, x=5) among NaN and -inf -> its own box; +inf does not count
    # as the max and is not kept, so the finite 1.0 pixel alone is the map.
    z = np.zeros((5, 6, 7), np.float32)
    z[1] = -1.0
    z[2] = np.nan
    z[3, :, :] = np.nan
    z[3, 4, 5] = 1.0
    z[3, 0, 0] = -np.inf
    z[4, 4, 5] = 1.0
    z[4, 0, 0] = np.inf
    for backend in BACKENDS:
        got = np.asarray(boxes.largest_component_box(z, 0.2, backend=backend))
        np.testing.assert_array_equal(got[:3], 0)
        np.testing.assert_array_equal(got[3:], [[5, 4, 5, 4]] * 2)


def test_largest_threshold_zero_and_one():
    # t = 0: every pixel >= 0 is kept; with no negatives that is the whole 6x7 map.
    # t = 1: only the maximum pixel(s): the single peak at (y=2, x=3).
    m = np.zeros((6, 7), np.float32)
    m[2, 3] = 2.0
    for backend in BACKENDS:
        assert tuple(np.asarray(boxes.largest_component_box(m, 0.0, backend=backend))) == (
            0,
            0,
            6,
            5,
        )
        assert tuple(np.asarray(boxes.largest_component_box(m, 1.0, backend=backend))) == (
            3,
            2,
            3,
            2,
        )


def test_largest_bad_input():
    m = np.ones((4, 4), np.float32)
    for bad in (1.5, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="threshold"):
            boxes.largest_component_box(m, bad)
    with pytest.raises(ValueError, match="H, W"):
        boxes.largest_component_box(np.ones(4), 0.2)
    with pytest.raises(ValueError, match="connectivity"):
        boxes.largest_component_box(m, 0.2, connectivity=6)


def test_largest_traced_threshold_is_clipped():
    # Inside jit a threshold cannot raise; 1.7 is clipped to 1 (only the peak is kept).
    m = np.zeros((6, 7), np.float32)
    m[2, 3] = 2.0
    m[4, 4] = 1.0
    fn = jax.jit(lambda x, t: boxes.largest_component_box(x, t, backend="jax"))
    assert tuple(np.asarray(fn(m, 1.7))) == (3, 2, 3, 2)


# ---------------------------------------------------------------- component_boxes


THRESHOLDS = np.array([0.9, 0.0, 0.35, 0.1, 0.35, 0.6, 0.75, 0.2, 0.5, 1.0])  # unsorted, dup


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_component_boxes_match_per_threshold_scipy(backend, connectivity):
    maps = smooth_maps(5, seed=1)
    maps[4] = 0.0  # an empty map: nothing valid at any threshold
    maps[2] -= 0.3  # negative values: below every cut
    maps[3, 0, :4] = np.nan  # never kept
    maps[3, 9, 9] = np.inf  # never kept, and not the max
    m_max = 6
    got_b, got_v = boxes.component_boxes(
        maps, THRESHOLDS, max_components=m_max, connectivity=connectivity, backend=backend
    )
    got_b, got_v = np.asarray(got_b), np.asarray(got_v)
    assert got_b.shape == (5, len(THRESHOLDS), m_max, 4) and got_v.shape == got_b.shape[:3]
    for i in range(5):
        for j, t in enumerate(THRESHOLDS):
            want = reference_components(reference_kept(maps[i], t), connectivity)[:m_max]
            n = len(want)
            assert got_v[i, j].tolist() == [True] * n + [False] * (m_max - n)
            assert [tuple(b) for b in got_b[i, j, :n]] == want, (i, t)
            np.testing.assert_array_equal(got_b[i, j, n:], 0)


def test_component_boxes_keep_the_largest_m():
    # Five separate horizontal bars on a 0/1 map, lengths 1..5 at rows 0, 2, 4, 6, 8
    # (length L at row 2(L-1), cols 0..L-1). M = 3 keeps lengths 5, 4, 3 in that order.
    m = np.zeros((1, 9, 6), np.float32)
    for length in range(1, 6):
        m[0, 2 * (length - 1), :length] = 1.0
    for backend in BACKENDS:
        b, v = boxes.component_boxes(m, [0.5], max_components=3, backend=backend)
        np.testing.assert_array_equal(v[0, 0], [True, True, True])
        np.testing.assert_array_equal(b[0, 0], [[0, 8, 4, 8], [0, 6, 3, 6], [0, 4, 2, 4]])


def wsol_outer_boxes(scoremap: np.ndarray, t: float) -> list[tuple]:
    """The WSOL benchmark's boxes at one threshold, outer contours only (even depth)."""
    image = (scoremap * 255).astype(np.uint8)
    _, thr = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
    contours, hierarchy = cv2.findContours(thr, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for i, c in enumerate(contours):
        depth, p = 0, hierarchy[0, i, 3]
        while p >= 0:
            depth, p = depth + 1, hierarchy[0, p, 3]
        if depth % 2 == 0:
            x, y, w, h = cv2.boundingRect(c)
            out.append((x, y, x + w - 1, y + h - 1))
    return sorted(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wsol_mode_matches_opencv_contours(backend):
    # mode="wsol" keeps exactly cv2.threshold(uint8(map*255), int(t*max), THRESH_BINARY)'s
    # pixels, so the component boxes are the outer-contour boxes of the benchmark.
    maps = smooth_maps(4, size=32, seed=2)
    maps /= maps.max(axis=(1, 2), keepdims=True)
    thresholds = np.arange(0, 1, 0.07)
    b, v = boxes.component_boxes(maps, thresholds, max_components=16, backend=backend, mode="wsol")
    b, v = np.asarray(b), np.asarray(v)
    assert not v[..., -1].any()
    for i in range(len(maps)):
        for j, t in enumerate(thresholds):
            mine = sorted(tuple(int(c) for c in box) for box in b[i, j][v[i, j]])
            assert mine == wsol_outer_boxes(maps[i], t), (i, t)


def test_wsol_mode_is_strict_on_uint8_levels():
    # Values 0.2 and 0.4 -> uint8 51 and 102 (max 102). t = 0.5: int(0.5 * 102) = 51 and
    # the rule is q > 51, so the q = 51 pixel is dropped although 51 = 0.5 * 102 (the
    # "ge" rule on these levels would keep it); only x = 2 is left. t = 0.49:
    # int(49.98) = 49, both pixels kept, two components (x = 0 and x = 2).
    m = np.array([[[0.2, 0.0, 0.4]]], np.float32)
    b, v = boxes.component_boxes(m, [0.5, 0.49], max_components=2, mode="wsol")
    np.testing.assert_array_equal(v[0], [[True, False], [True, True]])
    np.testing.assert_array_equal(b[0, 0, 0], [2, 0, 2, 0])


def test_component_boxes_bad_input():
    m = smooth_maps(1)
    with pytest.raises(ValueError, match="thresholds"):
        boxes.component_boxes(m, [0.5, 1.2], max_components=2)
    with pytest.raises(ValueError, match="thresholds"):
        boxes.component_boxes(m, [np.nan], max_components=2)
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        boxes.component_boxes(m[None], [0.5], max_components=2)
    with pytest.raises(ValueError, match="T >= 1"):
        boxes.component_boxes(m, [], max_components=2)
    with pytest.raises(ValueError, match="max_components"):
        boxes.component_boxes(m, [0.5], max_components=0)
    with pytest.raises(ValueError, match="mode"):
        boxes.component_boxes(m, [0.5], max_components=2, mode="gt")


def test_component_boxes_jit_with_traced_thresholds():
    maps = jnp.asarray(smooth_maps(2, seed=3))
    t = jnp.asarray([0.3, 0.7])
    want = boxes.component_boxes(maps, np.asarray(t), max_components=4)
    for backend in BACKENDS:
        fn = jax.jit(
            lambda m, th, b=backend: boxes.component_boxes(m, th, max_components=4, backend=b)
        )
        got = fn(maps, t)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_component_boxes_under_vmap_equal_the_flat_batch():
    # vmap over an extra leading axis must give the same boxes as one flat batch.
    maps = smooth_maps(4, seed=5)
    t = np.array([0.2, 0.6])
    flat = boxes.component_boxes(maps, t, max_components=3, backend="host")
    for backend in BACKENDS:
        vm = jax.vmap(
            lambda m, b=backend: boxes.component_boxes(m, t, max_components=3, backend=b)
        )(jnp.asarray(maps).reshape(2, 2, 24, 24))
        np.testing.assert_array_equal(np.asarray(vm[0]).reshape(flat[0].shape), flat[0])
        np.testing.assert_array_equal(np.asarray(vm[1]).reshape(flat[1].shape), flat[1])


# ---------------------------------------------------------------- heuristic_boxes


def test_heuristic_boxes_order_and_values():
    maps = smooth_maps(6, seed=4).reshape(2, 3, 24, 24)
    got = np.asarray(boxes.heuristic_boxes(maps))
    assert got.shape == (2, 5, 4)
    tight = np.asarray(boxes.largest_component_box(maps, boxes.HEURISTIC_TIGHT))
    loose = np.asarray(boxes.largest_component_box(maps, boxes.HEURISTIC_LOOSE))
    want = np.stack([tight[:, 0], loose[:, 0], tight[:, 1], loose[:, 1], loose[:, 2]], 1)
    np.testing.assert_array_equal(got, want)
    m = np.zeros((1, 3, 9, 9), np.float32)
    m[0, :, 2:7, 2:7] = 0.3
    m[0, :, 4, 4] = 1.0
    # loose 0.2 keeps the 5x5 block (2..6); tight 0.5 keeps the single 1.0 pixel (4, 4).
    np.testing.assert_array_equal(
        boxes.heuristic_boxes(m)[0],
        [[4, 4, 4, 4], [2, 2, 6, 6], [4, 4, 4, 4], [2, 2, 6, 6], [2, 2, 6, 6]],
    )


def test_heuristic_bad_input():
    with pytest.raises(ValueError, match="3, H, W"):
        boxes.heuristic_boxes(np.ones((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="tight"):
        boxes.heuristic_boxes(np.ones((3, 5, 5), np.float32), tight=0.1, loose=0.3)
