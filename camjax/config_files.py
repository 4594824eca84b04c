"""camjax's config files, found by path or by name, without importing anything heavy.

The files live in the repository's ``configs/`` folder and are installed with camjax as
the package ``camjax.configs``; :func:`config_path` accepts either a path or a name.
"""

from __future__ import annotations

import os


def packaged_configs() -> str:
    """The folder of the config files shipped with camjax.

    An installed wheel: ``site-packages/camjax/configs`` (package ``camjax.configs``); a
    clone (plain or editable install): the repository's ``configs/`` beside ``camjax/``.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(package, "configs"), os.path.join(package, "..", "configs")):
        if os.path.isfile(os.path.join(folder, "default.py")):
            return os.path.normpath(folder)
    raise FileNotFoundError(f"camjax's configs are not installed beside {package}")


def config_names() -> list[str]:
    """Names of the packaged configs (``default``, ``vgg16_gap_cub``, ...)."""
    folder = packaged_configs()
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))


def config_path(name: str) -> str:
    """The config file ``name`` names: a path to a file, else a packaged config by name.

    ``configs/default.py`` (a path; outside a clone it falls back to the packaged file of
    that name), ``default`` or ``default.py`` (packaged).
    """
    if os.path.isfile(name):
        return os.path.abspath(name)
    head, base = os.path.split(os.path.normpath(name))
    stem = base[:-3] if base.endswith(".py") else base
    if head in ("", "configs") and stem.isidentifier():
        path = os.path.join(packaged_configs(), stem + ".py")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"config file not found: {os.path.abspath(name)} "
        f"(packaged configs: {', '.join(config_names())})"
    )
