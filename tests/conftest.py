"""Test set-up shared by every test module.

Eight simulated CPU devices, so pmap/shard_map paths run on a plain CPU machine; this
must happen before JAX is imported anywhere.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # keep TensorFlow off accelerators
