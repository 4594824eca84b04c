"""camjax.component_tree: the one-pass C kernel against per-threshold labelling and the JAX scan."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from camjax import component_tree

STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3), bool)}


def reference(vals: np.ndarray, cuts: np.ndarray, m: int, connectivity: int):
    """Per map and cut: scipy labelling of ``vals >= cut``; (-area, first pixel) order."""
    b, t = cuts.shape
    boxes = np.zeros((b, t, m, 4), np.int32)
    valid = np.zeros((b, t, m), bool)
    for i in range(b):
        for j in range(t):
            lab, k = ndimage.label(vals[i] >= cuts[i, j], STRUCTURE[connectivity])
            if k == 0:
                continue
            areas = np.bincount(lab.ravel())[1:]
            objs = ndimage.find_objects(lab)
            keep = sorted(range(k), key=lambda c: (-areas[c], c))[:m]
            for s, c in enumerate(keep):
                ys, xs = objs[c]
                boxes[i, j, s] = (xs.start, ys.start, xs.stop - 1, ys.stop - 1)
                valid[i, j, s] = True
    return boxes, valid


def quantized_maps(n: int, h: int, w: int, levels: int, seed: int) -> np.ndarray:
    """Random maps on a coarse value grid, so many pixels tie with each other and the cuts."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, levels, (n, h, w)) / (levels - 1)).astype(np.float32)


@pytest.fixture(scope="module")
def native():
    lib = component_tree._native()
    if lib is None:
        pytest.skip("no C compiler: the host kernel runs its OpenCV fallback")
    return lib


@pytest.mark.parametrize("connectivity", [4, 8])
def test_native_matches_per_threshold_labelling(native, connectivity):
    vals = quantized_maps(6, 13, 11, levels=6, seed=0)
    vals[0, 3, 4] = np.nan  # never kept
    vals[1, :, :] = -np.inf  # never kept
    # Unsorted cuts with duplicates, cuts equal to pixel values (kept: >=), +inf (keeps
    # nothing), and cuts below every value (keeps all finite pixels).
    cuts = np.tile(np.array([0.6, 0.2, np.inf, 0.2, 0.0, 1.0, 0.4, -1.0, 0.8], np.float32), (6, 1))
    got = component_tree.component_boxes_np(vals, cuts, 5, connectivity)
    want = reference(vals, cuts, 5, connectivity)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_native_many_thresholds_and_fallback_agree(native):
    # 300 cuts over smooth-ish maps: the fallback (OpenCV per threshold) is the O(T N)
    # path the kernel replaces; both must give the same arrays.
    rng = np.random.default_rng(1)
    vals = np.cumsum(np.cumsum(rng.standard_normal((3, 20, 18)), 1), 2).astype(np.float32)
    cuts = np.tile(np.linspace(vals.min(), vals.max(), 300, dtype=np.float32), (3, 1))
    got = component_tree.component_boxes_np(vals, cuts, 8, 8)
    want = component_tree._fallback_np(vals, cuts, 8, 8)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_native_thin_images_and_prefix_property(native):
    # One-row and one-column images exercise the padded border. Top-M must be a prefix of
    # top-(M + k): the order is total (area, then first pixel).
    for shape in ((1, 1, 17), (1, 17, 1)):
        vals = quantized_maps(1, *shape[1:], levels=3, seed=2).reshape(shape)
        cuts = np.array([[0.5, 1.0, 0.0]], np.float32)
        small = component_tree.component_boxes_np(vals, cuts, 2, 8)
        big = component_tree.component_boxes_np(vals, cuts, 9, 8)
        want = reference(vals, cuts, 9, 8)
        np.testing.assert_array_equal(big[0], want[0])
        np.testing.assert_array_equal(small[0], big[0][:, :, :2])
        np.testing.assert_array_equal(small[1], big[1][:, :, :2])


def test_hand_worked_merge_tree(native):
    # Values along one row: [3, 1, 2, 0, 3]. Cut 3: pixels 0 and 4 -> two components,
    # boxes (0,0,0,0) and (4,0,4,0), equal areas, pixel 0 first. Cut 2: adds pixel 2,
    # alone (pixels 1 and 3 are below) -> three singletons in raster order. Cut 1: pixels
    # 0..2 merge into (0,0,2,0) of area 3, pixel 4 stays apart. Cut 0: one bar (0,0,4,0).
    vals = np.array([[[3, 1, 2, 0, 3]]], np.float32)
    cuts = np.array([[3, 2, 1, 0]], np.float32)
    b, v = component_tree.component_boxes_np(vals, cuts, 3, 8)
    assert v[0].tolist() == [
        [True, True, False],
        [True, True, True],
        [True, True, False],
        [True, False, False],
    ]
    assert b[0, 0, :2].tolist() == [[0, 0, 0, 0], [4, 0, 4, 0]]
    assert b[0, 1].tolist() == [[0, 0, 0, 0], [2, 0, 2, 0], [4, 0, 4, 0]]
    assert b[0, 2, :2].tolist() == [[0, 0, 2, 0], [4, 0, 4, 0]]
    assert b[0, 3, 0].tolist() == [0, 0, 4, 0]


@pytest.mark.parametrize("connectivity", [4, 8])
def test_jax_scan_matches_host(connectivity):
    vals = quantized_maps(3, 12, 10, levels=5, seed=3)
    t = np.array([0.75, 0.25, 1.0, 0.5, 0.0, 0.5], np.float32)
    cuts = np.tile(t, (3, 1))
    cuts[2] = np.inf  # a map that keeps nothing
    order = jnp.asarray(np.argsort(-t, kind="stable").astype(np.int32))
    got = component_tree.component_boxes_jax(
        jnp.asarray(vals), jnp.asarray(cuts), order, 4, connectivity
    )
    want = reference(vals, cuts, 4, connectivity)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_without_compiler_the_fallback_gives_the_same_boxes(monkeypatch):
    # No C compiler: component_boxes_np runs OpenCV per threshold, same outputs.
    monkeypatch.setattr(component_tree, "_native", lambda: None)
    vals = quantized_maps(2, 9, 10, levels=4, seed=4)
    cuts = np.tile(np.array([0.0, 1.0, 0.5, np.inf], np.float32), (2, 1))
    got = component_tree.component_boxes_np(vals, cuts, 3, 8)
    want = reference(vals, cuts, 3, 8)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
