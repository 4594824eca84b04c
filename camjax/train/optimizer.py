"""The optimizer: Caffe-style SGD with momentum, weight decay and per-group learning rates.

Zhou et al. (CVPR 2016) fine-tune with the released GoogLeNet-CAM solver: SGD, momentum
0.9, weight decay 5e-4, base lr 1e-3 multiplied by 0.1 every 40k iterations, and larger
learning-rate multipliers on the newly added layers.

Choices (documented because they differ between frameworks):
- Weight decay is Caffe's: ``g <- g + wd * w`` added to the gradient before momentum, on
  conv and dense *kernels* only (arrays with ndim > 1). Biases and BatchNorm scale/bias
  are not decayed (the usual ``decay_mult: 0`` on biases in Caffe prototxts).
- Momentum is optax's ``t <- g + mu * t; w <- w - lr * t``. Caffe folds the lr into the
  momentum buffer (``v <- mu * v + lr * g``); the two agree while the lr is constant and
  differ only for a few steps after each lr drop.
- Two parameter groups by tree path: ``params/head/...`` (the new CAM layers) get
  ``lr * head_lr_multiplier``, everything else (``params/backbone/...``) gets ``lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

Schedule = Callable[[Any], Any]


def _step_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> Schedule:
    """``lr(t) = base_lr * factor ** floor(t / every)`` (the paper's step decay)."""
    del num_steps
    every = int(cfg.lr_decay_every)
    if every <= 0:
        return optax.constant_schedule(cfg.learning_rate)
    base, factor = float(cfg.learning_rate), float(cfg.lr_decay_factor)
    return lambda t: base * factor ** jnp.floor_divide(t, every).astype(jnp.float32)


def _cosine_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> Schedule:
    """Linear warm-up from 0 over ``warmup_steps``, then ``base_lr * (1 + cos(pi t/T)) / 2``."""
    warmup = int(cfg.warmup_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(num_steps, warmup + 1),
        end_value=0.0,
    )


def _constant_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> Schedule:
    del num_steps
    return optax.constant_schedule(cfg.learning_rate)


SCHEDULES: dict[str, Callable[[ml_collections.ConfigDict, int], Schedule]] = {
    "step": _step_schedule,
    "cosine": _cosine_schedule,
    "constant": _constant_schedule,
}


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> Schedule:
    """The base schedule named by ``cfg.schedule`` (``step`` | ``cosine`` | ``constant``)."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(
            f"unknown lr schedule {cfg.schedule!r}; known: {', '.join(sorted(SCHEDULES))}"
        )
    return SCHEDULES[cfg.schedule](cfg, num_steps)


def param_labels(params: Any) -> Any:
    """``"head"`` for leaves under the top-level ``head`` key, ``"backbone"`` otherwise."""

    def label(path: tuple, _: Any) -> str:
        top = path[0]
        name = getattr(top, "key", getattr(top, "name", None))
        return "head" if name == "head" else "backbone"

    return jax.tree_util.tree_map_with_path(label, params)


def _decay_mask(params: Any) -> Any:
    return jax.tree.map(lambda p: p.ndim > 1, params)


def _sgd(cfg: ml_collections.ConfigDict, schedule: Schedule) -> optax.GradientTransformation:
    parts = []
    if cfg.weight_decay:
        parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask))
    parts.append(optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=False))
    return optax.chain(*parts)


def create_optimizer(
    cfg: ml_collections.ConfigDict, num_steps: int
) -> optax.GradientTransformation:
    """SGD + momentum + Caffe weight decay with a ``head_lr_multiplier`` for ``params/head``.

    ``cfg`` is ``config.optimizer``: ``learning_rate, momentum, weight_decay,
    head_lr_multiplier, schedule, lr_decay_every, lr_decay_factor, warmup_steps``.
    """
    base = learning_rate_schedule(cfg, num_steps)
    mult = float(cfg.head_lr_multiplier)
    if mult <= 0:
        raise ValueError(f"optimizer.head_lr_multiplier must be > 0, got {mult}")
    head = base if mult == 1.0 else (lambda t: mult * base(t))
    return optax.multi_transform(
        {"head": _sgd(cfg, head), "backbone": _sgd(cfg, base)}, param_labels
    )
