"""Importing camjax (every module) leaves the process as it found it.

Checked in a fresh interpreter: ``os.environ`` (``XLA_FLAGS`` included), ``sys.path``,
every ``jax.config`` option, and TensorFlow's device visibility (a recorder replaces
``tf.config.set_visible_devices`` before camjax is imported, so a call is seen even on a
machine without accelerators, where it would change nothing visible).
"""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import importlib, json, os, pkgutil, sys
import cv2  # noqa: F401  (OpenCV's own import edits LD_LIBRARY_PATH; not camjax's doing)
import tensorflow as tf
calls = []
tf.config.set_visible_devices = lambda *a, **k: calls.append(repr(a))
import jax
env, path = dict(os.environ), list(sys.path)
config = {k: repr(v) for k, v in jax.config.values.items()}
import camjax
names = sorted(m.name for m in pkgutil.walk_packages(camjax.__path__, "camjax."))
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as e:  # a module that cannot import is a failure of its own
        failed[name] = f"{type(e).__name__}: {e}"
after = {k: repr(v) for k, v in jax.config.values.items()}
print(json.dumps({
    "modules": names,
    "failed": failed,
    "env": {k: (env.get(k), os.environ.get(k)) for k in set(env) | set(os.environ)
            if env.get(k) != os.environ.get(k)},
    "path_same": path == sys.path,
    "config": {k: (config.get(k), after.get(k)) for k in set(config) | set(after)
               if config.get(k) != after.get(k)},
    "tf_calls": calls,
    "backends_started": jax._src.xla_bridge.backends_are_initialized(),
}))
"""


@pytest.mark.slow
def test_importing_every_module_changes_nothing():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["modules"]) > 30  # the walk really found the package
    assert report["failed"] == {}
    assert report["env"] == {}
    assert report["path_same"]
    assert report["config"] == {}
    assert report["tf_calls"] == []
    # No module starts a JAX backend at import (that would freeze XLA_FLAGS for the user).
    assert report["backends_started"] is False
