"""camjax.labeling: both backends against scipy.ndimage.label on random and structured masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from camjax import labeling
from camjax.labeling import label_components

STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: np.ones((3, 3), bool)}
SIZE = 17  # odd, so checkerboards and spirals do not line up with the border


def spiral(n: int) -> np.ndarray:
    """A one-pixel-wide square spiral with one-pixel gaps: a long winding path.

    A turtle walks straight while the next cell is free and the one after is not drawn,
    else turns right; it stops when it can do neither.
    """
    m = np.zeros((n, n), bool)
    dirs = ((0, 1), (1, 0), (0, -1), (-1, 0))
    y = x = d = 0
    m[0, 0] = True
    inside = lambda a, b: 0 <= a < n and 0 <= b < n
    while True:
        for _ in range(2):
            dy, dx = dirs[d]
            ny, nx = y + dy, x + dx
            if inside(ny, nx) and not m[ny, nx]:
                if not (inside(ny + dy, nx + dx) and m[ny + dy, nx + dx]):
                    y, x = ny, nx
                    m[y, x] = True
                    break
            d = (d + 1) % 4
        else:
            return m


def structured_masks() -> np.ndarray:
    n = SIZE
    yy, xx = np.mgrid[:n, :n]
    masks = [
        (yy + xx) % 2 == 0,  # checkerboard: one 8-component, many 4-components
        (yy + xx) % 2 == 1,
        spiral(n),
        np.zeros((n, n), bool),  # empty
        np.ones((n, n), bool),  # full
        (yy == 8) & (xx == 3),  # single pixel
        (yy == xx) | (yy == n - 1 - xx),  # an X: diagonals touching at one pixel
        (yy == xx) | (yy == xx + 2),  # parallel diagonals two apart: never touch
        (yy % 4 == 0) | (xx % 4 == 0),  # grid
        ((yy - 8) ** 2 + (xx - 8) ** 2 <= 49) & ((yy - 8) ** 2 + (xx - 8) ** 2 >= 16)
        | ((yy == 8) & (xx == 8)),  # ring with an island in its hole
        (yy == 0) | (yy == n - 1) | (xx == 0) | (xx == n - 1),  # border frame
    ]
    return np.stack(masks)


def random_masks(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dens = np.array([0.1, 0.3, 0.45, 0.55, 0.6, 0.7, 0.9])[:, None, None]
    return rng.random((len(dens), SIZE, SIZE)) < dens


MASKS = np.concatenate([structured_masks(), random_masks()])


def scipy_labels(masks: np.ndarray, connectivity: int) -> np.ndarray:
    return np.stack([ndimage.label(m, STRUCTURE[connectivity])[0] for m in masks])


@pytest.mark.parametrize("backend", ["jax", "host"])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_matches_scipy_exactly(backend, connectivity):
    # Canonical numbering (1..K by first pixel in raster order) is scipy's numbering too,
    # so the arrays must be equal, not merely the partitions.
    got = np.asarray(label_components(MASKS, connectivity, backend))
    np.testing.assert_array_equal(got, scipy_labels(MASKS, connectivity))


def test_hand_counted_components():
    # 4x4 checkerboard with 8 "on" squares: every on square touches another diagonally,
    # so 8-connectivity gives 1 component and 4-connectivity 8 singletons.
    board = (np.add.outer(np.arange(4), np.arange(4)) % 2 == 0)[None]
    for backend in ("jax", "host"):
        assert int(np.max(label_components(board, 8, backend))) == 1
        assert int(np.max(label_components(board, 4, backend))) == 8
    # Two diagonal pixels: joined under 8, apart under 4 (numbered in raster order).
    diag = np.array([[[1, 0], [0, 1]]], bool)
    np.testing.assert_array_equal(label_components(diag, 8, "jax")[0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(label_components(diag, 4, "host")[0], [[1, 0], [0, 2]])


def test_jit_vmap_and_leading_shape():
    masks = MASKS[:6].reshape(2, 3, SIZE, SIZE)
    want = scipy_labels(MASKS[:6], 8).reshape(2, 3, SIZE, SIZE)
    for backend in ("jax", "host"):
        fn = jax.jit(lambda m, b=backend: label_components(m, 8, b))
        np.testing.assert_array_equal(fn(masks), want)
        vm = jax.vmap(lambda m, b=backend: label_components(m, 8, b))
        np.testing.assert_array_equal(vm(jnp.asarray(masks)), want)


def test_warm_start_from_nested_subset():
    # Labels of a subset (rows < 9) name pixels of the same components in the full mask,
    # so starting from them must reach the same fixed point as a cold start.
    full = MASKS[-4:]
    subset = full.copy()
    subset[:, 9:] = False
    cold = labeling.root_labels_jax(full, 8)
    warm = labeling.root_labels_jax(full, 8, init=labeling.root_labels_jax(subset, 8))
    np.testing.assert_array_equal(warm, cold)


def test_resolve_backend():
    cpu_array = jnp.zeros((2, 2))
    assert labeling.resolve_backend("auto", cpu_array) == "host"
    assert labeling.resolve_backend("jax", cpu_array) == "jax"
    seen = []
    jax.jit(lambda x: seen.append(labeling.resolve_backend("auto", x)) or x)(cpu_array)
    assert seen == ["host" if jax.default_backend() == "cpu" else "jax"]


def test_bad_input():
    with pytest.raises(ValueError, match="connectivity"):
        label_components(MASKS[:1], 6)
    with pytest.raises(ValueError, match="backend"):
        label_components(MASKS[:1], 8, "gpu")
    with pytest.raises(ValueError, match="H, W"):
        label_components(np.ones(5, bool))
