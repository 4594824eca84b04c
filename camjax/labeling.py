"""Connected-component labelling of batches of binary masks, two backends.

Labels follow one canonical numbering on every backend: background is 0 and the
components of each mask are numbered ``1..K`` in the raster order (row-major) of their
first pixel, the numbering ``scipy.ndimage.label`` also uses. So both backends return
identical arrays, not merely the same partition.

- ``"jax"``: min-label propagation with hooking and pointer jumping
  (Shiloach & Vishkin 1982 style) in a ``lax.while_loop``; for accelerators.
- ``"host"``: OpenCV ``connectedComponents`` through ``jax.pure_callback``; for CPU,
  where the host is the device and a propagation loop is about 100x slower.
- ``"auto"``: see :func:`resolve_backend`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

BACKENDS = ("auto", "jax", "host")
CONNECTIVITIES = (4, 8)
# (dy, dx) of the neighbours; 8-connectivity adds the diagonals, as OpenCV's contours
# and connectedComponents(connectivity=8) count them.
OFFSETS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((-1, 0), (1, 0), (0, -1), (0, 1)),
    8: ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)),
}


def resolve_backend(backend: str, *arrays: object) -> str:
    """``"auto"`` -> ``"host"`` on CPU, ``"jax"`` on GPU/TPU.

    The platform is that of the first concrete ``jax.Array`` among ``arrays``; inside
    ``jit`` arrays are tracers whose device is unknown, so ``jax.default_backend()``
    decides (the platform ``jit`` compiles for unless told otherwise).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    platform = jax.default_backend()
    for a in arrays:
        if isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer):
            platform = next(iter(a.devices())).platform
            break
    return "host" if platform == "cpu" else "jax"


def dispatch(backend: str, host_fn: Callable, jax_fn: Callable, *args: Any) -> Any:
    """``host_fn(*args)`` or ``jax_fn(*args)``; ``"auto"`` chooses when the program is
    lowered (``lax.platform_dependent``): the host kernel where it runs on CPU, pure JAX on
    any other platform. So a function lowered or exported for GPU/TPU never holds the host
    callback, whatever device its inputs were traced from."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "host":
        return host_fn(*args)
    if backend == "jax":
        return jax_fn(*args)
    return jax.lax.platform_dependent(*args, cpu=host_fn, default=jax_fn)


def check_connectivity(connectivity: int) -> None:
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")


def _shift(x: jnp.ndarray, dy: int, dx: int, fill: int) -> jnp.ndarray:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, ``fill`` outside the image."""
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
    p = jnp.pad(x, pad, constant_values=fill)
    return p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def root_labels_jax(
    masks: jnp.ndarray, connectivity: int = 8, init: jnp.ndarray | None = None
) -> jnp.ndarray:
    """Per pixel, the smallest flat index ``y * W + x`` of its component; ``H*W`` off-mask.

    Each round takes the minimum label over the neighbours (propagation), hooks the
    pixel's current root to that minimum (scatter-min), and jumps pointers once
    (``l <- l[l]``). Labels only decrease and always name a pixel of the same component,
    so the loop stops at the component minimum; propagation alone needs at most
    ``diameter + 1 <= H*W`` rounds, which bounds the loop (hooking and jumping only
    shorten it: O(log) rounds on typical masks). ``init`` (optional, same shape) warm
    starts from labels that already name pixels of the same component, e.g. the labels
    of a subset mask whose components are nested in these.
    """
    check_connectivity(connectivity)
    masks = jnp.asarray(masks, bool)
    h, w = masks.shape[-2:]
    n = h * w
    lead = masks.shape[:-2]
    flat_idx = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32).reshape(h, w), masks.shape)
    lab0 = flat_idx if init is None else jnp.minimum(init, flat_idx)
    lab0 = jnp.where(masks, lab0, n)
    batch = int(np.prod(lead)) if lead else 1
    offsets = OFFSETS[connectivity]

    def step(lab: jnp.ndarray) -> jnp.ndarray:
        m = lab
        for dy, dx in offsets:
            m = jnp.minimum(m, _shift(lab, dy, dx, n))
        m = jnp.where(masks, m, n)
        flat = lab.reshape(batch, n)
        # Slot n of each row is a sink for background pixels and holds n.
        table = jnp.concatenate([flat, jnp.full((batch, 1), n, jnp.int32)], axis=1)
        rows = jnp.arange(batch, dtype=jnp.int32)[:, None]
        table = table.at[rows, flat].min(m.reshape(batch, n))
        table = table.at[:, n].set(n)
        flat = jnp.minimum(jnp.take_along_axis(table, flat, axis=1), m.reshape(batch, n))
        table = table.at[:, :n].min(flat)
        flat = jnp.take_along_axis(table, flat, axis=1)  # pointer jump
        return flat.reshape(lab.shape)

    def cond(state: tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]) -> jnp.ndarray:
        _, changed, it = state
        return changed & (it <= n)

    def body(state: tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]):
        lab, _, it = state
        new = step(lab)
        return new, jnp.any(new != lab), it + 1

    lab, _, _ = jax.lax.while_loop(cond, body, (lab0, jnp.array(True), jnp.array(0)))
    return lab


def canonical_from_roots(roots: jnp.ndarray, masks: jnp.ndarray) -> jnp.ndarray:
    """Root-index labels -> ``1..K`` in raster order of each component's first pixel."""
    h, w = masks.shape[-2:]
    n = h * w
    flat_roots = roots.reshape(roots.shape[:-2] + (n,))
    own = jnp.arange(n, dtype=jnp.int32)
    is_root = (flat_roots == own) & masks.reshape(flat_roots.shape)
    rank = jnp.cumsum(is_root, axis=-1, dtype=jnp.int32)
    rank = jnp.concatenate([rank, jnp.zeros(rank.shape[:-1] + (1,), jnp.int32)], axis=-1)
    out = jnp.take_along_axis(rank, flat_roots, axis=-1)
    return jnp.where(masks, out.reshape(roots.shape), 0)


def canonicalize_np(labels: np.ndarray) -> np.ndarray:
    """Renumber one label image ``1..K`` by raster order of each component's first pixel."""
    flat = labels.ravel()
    k = int(flat.max()) if flat.size else 0
    if k == 0:
        return labels.astype(np.int32)
    first = np.full(k + 1, flat.size, np.int64)
    np.minimum.at(first, flat, np.arange(flat.size))
    order = np.argsort(first[1:], kind="stable")
    new = np.zeros(k + 1, np.int32)
    new[1 + order] = np.arange(1, k + 1, dtype=np.int32)
    return new[labels]


def _label_host_np(masks: np.ndarray, connectivity: int) -> np.ndarray:
    import cv2  # lazily: importing OpenCV edits LD_LIBRARY_PATH

    masks = np.asarray(masks)
    h, w = masks.shape[-2:]
    flat = np.ascontiguousarray(masks.reshape(-1, h, w), dtype=np.uint8)
    out = np.empty(flat.shape, np.int32)
    for i, m in enumerate(flat):
        _, lab = cv2.connectedComponents(m, connectivity=connectivity, ltype=cv2.CV_32S)
        out[i] = canonicalize_np(lab)
    return out.reshape(masks.shape)


def _label_jax(masks: jnp.ndarray, connectivity: int) -> jnp.ndarray:
    return canonical_from_roots(root_labels_jax(masks, connectivity), masks)


def _label_host(masks: jnp.ndarray, connectivity: int) -> jnp.ndarray:
    def cb(m: np.ndarray) -> np.ndarray:
        return _label_host_np(m, connectivity)

    out = jax.ShapeDtypeStruct(masks.shape, jnp.int32)
    # broadcast_all: under vmap the callback sees the batched masks; it handles any
    # leading shape itself, so one call labels the whole batch.
    return jax.pure_callback(cb, out, masks, vmap_method="broadcast_all")


LABELLERS: dict[str, Callable[[jnp.ndarray, int], jnp.ndarray]] = {
    "jax": _label_jax,
    "host": _label_host,
}


def label_components(
    masks: jnp.ndarray, connectivity: int = 8, backend: str = "auto"
) -> jnp.ndarray:
    """Label ``masks [..., H, W]`` (bool): int32, 0 = background, ``1..K`` per mask.

    Components are numbered in raster order of their first pixel on every backend.
    ``connectivity`` 8 joins diagonal neighbours (OpenCV contours' components), 4 does not.
    """

    check_connectivity(connectivity)
    masks = jnp.asarray(masks)
    if masks.ndim < 2:
        raise ValueError(f"masks must be [..., H, W], got shape {masks.shape}")
    label = lambda name: functools.partial(LABELLERS[name], connectivity=connectivity)  # noqa: E731
    return dispatch(backend, label("host"), label("jax"), masks.astype(bool))
