"""camjax: Class Activation Mapping (Zhou et al., CVPR 2016) in JAX/Flax."""

from camjax import models
from camjax.extraction import extract

__all__ = ["extract", "models"]
__version__ = "0.1.0"
