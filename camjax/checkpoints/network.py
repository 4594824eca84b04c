"""What a checkpoint must say about its network: enough to rebuild it and feed it.

A :class:`NetworkSpec` (model name and keyword arguments, compute dtype, class count and
names, input size, normalization) is saved beside every checkpoint, so evaluation and
extraction rebuild the network from the checkpoint alone: no optimizer, no data set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A CAM network as a checkpoint describes it (JSON-able)."""

    model: str
    kwargs: Mapping[str, Any]
    num_classes: int
    class_names: tuple[str, ...]
    image_size: int
    normalization: str
    dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kwargs"] = dict(self.kwargs)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NetworkSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - {"dtype"} - set(d))
        if missing:
            raise ValueError(f"network description lacks {', '.join(missing)}")
        return cls(
            model=str(d["model"]),
            kwargs=dict(d["kwargs"]),
            num_classes=int(d["num_classes"]),
            class_names=tuple(str(n) for n in d["class_names"]),
            image_size=int(d["image_size"]),
            normalization=str(d["normalization"]),
            dtype=str(d.get("dtype", "float32")),
        )

    @classmethod
    def from_config(
        cls, config: Any, num_classes: int, class_names: Sequence[str] | None = None
    ) -> NetworkSpec:
        """The network of a training config (``class_names`` default to ``"0".."C-1"``)."""
        names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        return cls(
            model=str(config.model.name),
            kwargs=json.loads(config.model.kwargs.to_json()),
            num_classes=int(num_classes),
            class_names=tuple(str(n) for n in names),
            image_size=int(config.data.image_size),
            normalization=str(config.data.normalization),
            dtype=str(config.model.get("dtype", "float32")),
        )

    def build(self, **extra: Any):
        """The flax module (``extra``: e.g. ``bn_axis_name`` for training)."""
        return build_model(self.model, self.num_classes, self.kwargs, self.dtype, **extra)

    def param_shapes(self) -> Any:
        """The variables' shapes and dtypes (``jax.eval_shape``: nothing is computed)."""
        model = self.build()
        shape = (1, self.image_size, self.image_size, 3)

        def init():  # the key is made inside the trace: no backend is started
            return model.init(jax.random.key(0), jnp.zeros(shape, jnp.float32), train=False)

        return jax.eval_shape(init)


def build_model(name: str, num_classes: int, kwargs: Mapping[str, Any], dtype: str, **extra):
    """``camjax.models.create`` with a named compute dtype; one-line errors."""
    from camjax import models

    if dtype not in DTYPES:
        raise ValueError(f"model.dtype must be one of {list(DTYPES)}, got {dtype!r}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(kwargs).items()}
    kw.update(extra, dtype=DTYPES[dtype])
    try:
        return models.create(name, num_classes, **kw)
    except TypeError as e:
        raise ValueError(f"model {name!r} rejects its config: {e}") from e


def cpu_tuned(model: Any, config: Any) -> Any:
    """``model`` with :func:`camjax.cpu.shifted_depthwise` when ``config.cpu`` asks for it
    (configs saved before that key existed: unchanged)."""
    from camjax import cpu

    tuning = config.get("cpu") if config is not None else None
    return cpu.shifted_depthwise(model) if tuning and tuning.get("shifted_depthwise") else model


def params_sha(params: Any) -> str:
    """A short hash of every parameter's path, shape and dtype (not the values)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    desc = ";".join(f"{jax.tree_util.keystr(p)}:{tuple(x.shape)}:{x.dtype}" for p, x in leaves)
    return hashlib.sha256(desc.encode()).hexdigest()[:16]
