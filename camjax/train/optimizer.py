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
- Learning-rate multipliers per parameter, multiplied together: ``head_lr_multiplier``
  for ``params/head/...`` (the new CAM layers; camjax's own recipe uses 10, a common
  fine-tuning choice, not the released solver's); ``lr_multipliers``, a dict of
  ``"path/prefix": m`` or the string ``"path/prefix=m,..."`` (e.g.
  ``"backbone/layer4_0=10,backbone/layer4_1=10,backbone/layer4_2=10"``, head 10: the WSOL
  benchmark's ResNet50 recipe, clovaai/wsolevaluation ``main.py`` l. 74, 156-158,
  ``lr_classifier_ratio`` 10 on ``layer4.`` and ``fc.``); and ``bias_lr_multiplier`` for
  every leaf named ``bias`` (the released Caffe prototxts give every layer, CAM layers
  included, ``lr_mult: 1`` on weights and ``lr_mult: 2`` on biases, e.g.
  ``train_val_googlenetCAM.prototxt`` l. 1704-1760: the "as released" recipe is head 1,
  bias 2). Each distinct multiplier is one ``optax.multi_transform`` group.
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


def _path_names(path: tuple) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def _factors(cfg: ml_collections.ConfigDict) -> tuple[float, float, dict[str, float]]:
    head = float(cfg.head_lr_multiplier)
    bias = float(cfg.get("bias_lr_multiplier", 1.0))
    raw = cfg.get("lr_multipliers", None) or {}
    if isinstance(raw, str):  # "path/prefix=mult,path/prefix=mult" (one config string)
        try:
            raw = dict(item.rsplit("=", 1) for item in raw.split(",") if item.strip())
        except ValueError:
            msg = f"optimizer.lr_multipliers: want 'prefix=mult,...', got {raw!r}"
            raise ValueError(msg) from None
    prefixes = {str(k).strip(): float(v) for k, v in dict(raw).items()}
    named = [("head_lr_multiplier", head), ("bias_lr_multiplier", bias)]
    for name, m in named + [(f"lr_multipliers[{k!r}]", v) for k, v in prefixes.items()]:
        if not m > 0:
            raise ValueError(f"optimizer.{name} must be > 0, got {m}")
    return head, bias, prefixes


def _groups(params: Any, cfg: ml_collections.ConfigDict) -> Any:
    """Per-leaf group label: which factors apply (head, matched prefixes, bias)."""
    _, _, prefixes = _factors(cfg)

    def label(path: tuple, _: Any) -> str:
        names = _path_names(path)
        joined = "/".join(names)
        hits = [p for p in prefixes if joined == p or joined.startswith(p.rstrip("/") + "/")]
        flags = ["head"] if names[:1] == ["head"] else []
        return "|".join(flags + hits + (["bias"] if names[-1:] == ["bias"] else [])) or "base"

    return jax.tree_util.tree_map_with_path(label, params)


def _group_multiplier(label: str, cfg: ml_collections.ConfigDict) -> float:
    head, bias, prefixes = _factors(cfg)
    m = 1.0
    for part in label.split("|"):
        m *= {"head": head, "bias": bias, "base": 1.0}.get(part, prefixes.get(part, 1.0))
    return m


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
    """SGD + momentum + Caffe weight decay with per-parameter learning-rate multipliers.

    ``cfg`` is ``config.optimizer``: ``learning_rate, momentum, weight_decay,
    head_lr_multiplier, schedule, lr_decay_every, lr_decay_factor, warmup_steps`` and
    optionally ``bias_lr_multiplier`` (default 1) and ``lr_multipliers`` (path prefix ->
    multiplier, default none).
    """
    import itertools

    base = learning_rate_schedule(cfg, num_steps)
    _, _, prefixes = _factors(cfg)  # validates every multiplier
    parts = ["head", *prefixes, "bias"]
    groups = {"base": _sgd(cfg, base)}
    for r in range(1, len(parts) + 1):  # every combination of factors is one group
        for combo in itertools.combinations(parts, r):
            label = "|".join(combo)
            m = _group_multiplier(label, cfg)
            groups[label] = _sgd(cfg, base if m == 1.0 else (lambda t, m=m: m * base(t)))
    return optax.multi_transform(groups, lambda params: _groups(params, cfg))
