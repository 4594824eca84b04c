"""camjax: Class Activation Mapping (Zhou et al., CVPR 2016) in JAX/Flax."""

from camjax import models

__all__ = ["models"]
__version__ = "0.1.0"
