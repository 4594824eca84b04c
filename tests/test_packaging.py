"""The installable tool: the wheel's contents, packaged configs found by name from an
unpacked wheel outside the clone, the console entry's subcommands and their help."""

import os
import subprocess
import sys
import zipfile

import pytest

from camjax import cli
from camjax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)],
        check=True, capture_output=True, timeout=300, cwd=str(out),
    )  # fmt: skip
    (path,) = [p for p in out.iterdir() if p.suffix == ".whl"]
    return path


def test_wheel_holds_configs_native_source_data_and_every_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py"))
    assert "default.py" in configs
    missing = [f for f in configs if f"camjax/configs/{f}" not in names]
    assert not missing, missing
    assert "camjax/component_tree.c" in names
    assert "camjax/data/imagenet_classes.txt" in names
    for folder, _, files in os.walk(os.path.join(ROOT, "camjax")):
        if "__init__.py" in files:
            rel = os.path.relpath(folder, ROOT).replace(os.sep, "/")
            assert f"{rel}/__init__.py" in names, f"package {rel} left out of the wheel"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]  # fmt: skip
    # The demo's photo and weight wheels and TensorBoard are extras, not run-time needs.
    for extra, package in (("demo", "foolbox"), ("demo", "efficientnet"), ("train", "tensorboard")):
        (line,) = [r for r in requires if package in r]
        assert f'extra == "{extra}"' in line, line
    # Ranges from the oldest tested versions up, no upper bound on JAX (CI's main run
    # installs the newest), no exact pins at run time.
    assert "Requires-Dist: jax>=0.10.2" in requires, requires
    assert not [r for r in requires if "==" in r and "extra ==" not in r], requires


def _lower_bounds() -> dict[str, str]:
    """``name -> version`` of every ``name>=version`` requirement in pyproject.toml."""
    import re
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    reqs = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    found = {}
    for r in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(,<[0-9.]+)?", r.split(";")[0].strip())
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


def test_constraints_oldest_pins_exactly_the_lower_bounds_of_the_runtime_ranges():
    pins = {}
    with open(os.path.join(ROOT, "constraints-oldest.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, _, version = line.partition("==")
                pins[name.lower()] = version
    bounds = _lower_bounds()
    assert pins, "constraints-oldest.txt is empty"
    wrong = {n: (v, bounds.get(n)) for n, v in pins.items() if bounds.get(n) != v}
    assert not wrong, f"constraint != pyproject lower bound: {wrong}"
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        import tomllib

        runtime = tomllib.load(f)["project"]["dependencies"]
    unpinned = [r for r in runtime if r.split(">=")[0].lower() not in pins]
    assert not unpinned, f"runtime requirements without a lower-bound pin: {unpinned}"


def test_unpacked_wheel_finds_packaged_configs_outside_a_clone(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import camjax, sys\n"
        "from camjax.config import load_config, config_path\n"
        "assert camjax.__file__.startswith(sys.argv[1]), camjax.__file__\n"
        "c = load_config('vgg16_gap_cub')\n"  # imports `from configs import paper_recipe`
        "d = load_config('configs/default.py')\n"  # the clone's path, resolved to the package
        "print(c.model.name, d.model.name, config_path('default.py'))\n"
        "assert not any(p.rstrip('/').endswith('camjax') for p in sys.path), sys.path\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True,
                         env=env, cwd=str(elsewhere), timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        "vgg16_gap", "tiny_gap", str(site / "camjax" / "configs" / "default.py")
    ]  # fmt: skip


def test_config_names_and_a_clear_error_for_an_unknown_one():
    names = config_lib.config_names()
    assert {"default", "vgg16_gap_cub", "resnet50_gap_imagenet"} <= set(names)
    assert config_lib.config_path("default") == os.path.join(ROOT, "configs", "default.py")
    with pytest.raises(FileNotFoundError, match="packaged configs: .*vgg16_gap_cub"):
        config_lib.config_path("vgg16_gap_cbu")


def test_console_entry_lists_the_subcommands_and_help_has_no_markup(capsys):
    out = subprocess.run([sys.executable, "-m", "camjax", "--help"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "{train,evaluate,extract,demo}" in out.stdout
    for command in ("train", "evaluate", "extract", "demo"):
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text, text


def test_train_and_evaluate_user_errors_are_one_line_exit_2(capsys, tmp_path):
    cases = [
        (["train", "--workdir", str(tmp_path)], "--config is required"),
        (["train", "--config", "nosuch", "--workdir", str(tmp_path)], "config file not found"),
        (
            [
                "train",
                "--config",
                "default",
                "--config.train.num_step=3",
                "--workdir",
                str(tmp_path),
            ],
            "unknown config key 'train.num_step'",
        ),  # fmt: skip
        (
            ["evaluate", "--workdir", str(tmp_path), "--methods", "cam,nope"],
            "unknown --methods nope",
        ),  # fmt: skip
        (["evaluate", "--workdir", str(tmp_path), "--config.seed=1"], "need --config"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    # argparse's own errors: one line too, the usage left to --help.
    for argv, message in (
        (["train", "--config", "default"], "the following arguments are required: --workdir"),
        (["evaluate", "--workdir", str(tmp_path), "--split", "train"], "invalid choice: 'train'"),
        (["extract", "x.png", "--model", "nope", "--out", str(tmp_path)], "invalid choice"),
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and message in err[0], err
    assert not os.listdir(tmp_path)
