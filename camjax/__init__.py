"""camjax: Class Activation Mapping (Zhou et al., CVPR 2016) in JAX/Flax."""

from camjax import xla_cpu

xla_cpu.apply()  # before anything below can start a JAX backend


from camjax import models  # noqa: E402
from camjax.extraction import extract  # noqa: E402

__all__ = ["extract", "models"]
__version__ = "0.1.0"
