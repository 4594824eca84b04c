"""camjax: Class Activation Mapping (Zhou et al., CVPR 2016) in JAX/Flax.

Importing camjax changes no process state: no XLA flag, environment variable, ``sys.path``
entry or ``jax.config`` option is set here or in any submodule.
"""

from camjax import models
from camjax.extract import extract

__all__ = ["extract", "models"]
__version__ = "0.1.0"
