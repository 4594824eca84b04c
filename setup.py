"""Packages camjax/ and, as ``camjax.configs``, the top-level ``configs/`` folder.

The config files stay at ``configs/`` (``python train.py --config configs/default.py`` in a
clone); the wheel carries the same files as ``camjax/configs/*.py`` so that an installed
``camjax train --config default`` finds them. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["camjax", "camjax.*"]), "camjax.configs"],
    package_dir={"camjax.configs": "configs"},
)
