"""MaskEvaluator (PxAP): hand-worked result, the benchmark's formula, streaming ==
all-at-once, padding, bad input."""

import jax
import numpy as np
import pytest
from test_evaluators import BATCHINGS, _splits  # shared batchings

from camjax import metrics
from camjax.metrics import MaskEvaluator

HAND_MAP = np.array([[[1.0, 0.6, 0.9], [0.3, 0.0, 0.2]]], np.float32)
HAND_MASK = np.array([[[1, 0, 255], [1, 0, 255]]], np.uint8)


def test_mask_evaluator_hand_worked():
    # Derived in tests/test_metrics.py::test_pixel_histograms_and_pxap_by_hand: 75.
    ev = MaskEvaluator([0.0, 0.5])
    ev.update(HAND_MAP, HAND_MASK)
    r = ev.result()
    assert r["pxap"] == pytest.approx(75.0)
    assert (r["num_fg_pixels"], r["num_bg_pixels"], r["num_ignored_pixels"]) == (2, 2, 2)
    assert r["curve_thresholds"] == [1.0, 0.5, 0.0]
    assert r["precision"] == [1.0, 0.5, 0.5] and r["recall"] == [0.5, 0.5, 1.0]


def _reference_pxap(maps, masks, grid):
    """The benchmark's MaskEvaluator formula, written out with numpy (float64 edges)."""
    edges = np.append(grid, [1.0, 2.0, 3.0])
    true_h = np.histogram(maps[masks == 1], bins=edges)[0].astype(float)
    false_h = np.histogram(maps[masks == 0], bins=edges)[0].astype(float)
    tp, fp = true_h[::-1].cumsum(), false_h[::-1].cumsum()
    fn = true_h.sum() - tp
    nonzero = (tp + fp) != 0
    with np.errstate(invalid="ignore"):
        precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 100 * (precision[1:] * np.diff(recall))[nonzero[1:]].sum()


def _random_masks(n, size, seed):
    rng = np.random.default_rng(seed)
    # Values at bin centres (k + 0.5) / 100 and the exact ends 0 and 1, so that float32
    # and float64 edges put every value in the same bin.
    maps = (rng.integers(0, 100, (n, size, size)) + 0.5) / 100
    maps[:, 0, 0], maps[:, 0, 1] = 0.0, 1.0
    masks = rng.choice(np.array([0, 1, 255], np.uint8), (n, size, size), p=[0.5, 0.4, 0.1])
    return maps.astype(np.float32), masks


@pytest.mark.parametrize("backend", ["jax", "host"])
def test_mask_evaluator_matches_benchmark_formula(backend):
    maps, masks = _random_masks(4, 12, seed=1)
    grid = metrics.default_cam_thresholds()
    ev = MaskEvaluator(backend=backend)
    ev.update(maps, masks)
    want = _reference_pxap(maps.astype(np.float64), masks, grid)
    assert 30 < want < 70  # random maps: near the fg fraction 0.4 / 0.9
    assert ev.result()["pxap"] == pytest.approx(want, rel=1e-12)


def _assert_close(got: dict, want: dict) -> None:
    """Nested results compared leaf by leaf (pytest 9's approx refuses nested dicts), with
    approx's default tolerance, NaN equal to NaN."""
    flat_got = dict(jax.tree_util.tree_leaves_with_path(got))
    flat_want = dict(jax.tree_util.tree_leaves_with_path(want))
    assert flat_got.keys() == flat_want.keys()
    for key, value in flat_want.items():
        np.testing.assert_allclose(
            flat_got[key], value, rtol=1e-6, equal_nan=True, err_msg=str(key)
        )


@pytest.mark.parametrize("sizes", BATCHINGS)
def test_mask_evaluator_streaming_equals_all_at_once(sizes):
    maps, masks = _random_masks(6, 8, seed=2)
    whole = MaskEvaluator()
    whole.update(maps, masks)
    parts = MaskEvaluator()
    for s in _splits(sizes):
        parts.update(maps[s], masks[s])
    _assert_close(parts.result(), whole.result())


def test_mask_evaluator_padding_not_counted():
    maps, masks = _random_masks(2, 8, seed=3)
    only = MaskEvaluator()
    only.update(maps[:1], masks[:1])
    padded = MaskEvaluator()
    garbage = maps.copy()
    garbage[1] = np.nan  # padding may hold anything: neither checked nor counted
    padded.update(garbage, masks, sample_valid=np.array([True, False]))
    _assert_close(padded.result(), only.result())
    assert padded.result()["num_examples"] == 1


def _with_inf(maps, masks):
    maps = maps.copy()
    maps[0, 1, 1] = np.inf
    return maps, masks


@pytest.mark.parametrize(
    "change, error, match",
    [
        (_with_inf, ValueError, "NaN or inf"),
        (lambda m, k: (m - 0.5, k), ValueError, "normalised"),
        (lambda m, k: (m * 2, k), ValueError, "normalised"),
        (lambda m, k: (m, np.where(k == 255, 2, k).astype(np.uint8)), ValueError, "other than"),
        (lambda m, k: (m, k.astype(np.int32)), TypeError, "uint8"),
        (lambda m, k: (m, k[:, :1]), ValueError, "shape"),
    ],
)
def test_mask_evaluator_bad_input(change, error, match):
    maps, masks = change(HAND_MAP, HAND_MASK)
    ev = MaskEvaluator([0.0, 0.5])
    with pytest.raises(error, match=match):
        ev.update(maps, masks)
