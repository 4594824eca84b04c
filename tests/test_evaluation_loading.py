"""Self-describing checkpoints: evaluation and extraction rebuild the network from the
checkpoint alone (no optimizer, no data set), old checkpoints still load, and the
evaluation package never imports the trainer."""

import glob
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from camjax import cli
from camjax.checkpoints import load_trained
from camjax.checkpoints import store as ckpts

# One worker runs the whole module, so its trained-checkpoint fixture is built once.
pytestmark = pytest.mark.xdist_group("evaluation_loading")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD = os.path.join(ROOT, "tests", "data", "checkpoint_v0_1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two steps of tiny_gap on a small private build of the embedded data set."""
    from camjax import data
    from camjax.train import load_config, train_and_evaluate

    wd = tmp_path_factory.mktemp("run")
    c = load_config(os.path.join(ROOT, "configs", "default.py"))
    c.data.data_dir = str(wd / "tfds")
    c.data.image_size = 16
    c.data.shapes.image_size = 16
    c.data.shapes.num_train, c.data.shapes.num_validation, c.data.shapes.num_test = 32, 16, 8
    c.model.kwargs.widths = (4, 8)
    c.model.kwargs.head_features = 8
    c.train.batch_size = 16
    c.train.num_steps = 2
    c.train.checkpoint_every = 1
    c.train.async_checkpoints = False
    c.eval.batch_size = 16
    c.eval.cam_threshold_steps = 10
    train_and_evaluate(c, str(wd / "w"))
    names = list(data.info(c.data).class_names)
    return str(wd / "w"), str(wd / "tfds"), c, names


@pytest.mark.slow
def test_evaluate_reads_the_config_from_the_checkpoint_and_keeps_each_report(trained):
    from camjax.evaluation import evaluate

    wd = trained[0]
    first = evaluate(None, wd, max_examples=8, figures=False, verbose=False)
    second = evaluate(None, wd, max_examples=8, figures=False, verbose=False)
    assert first["num_examples"] == second["num_examples"] == 8
    assert set(first["methods"]["cam"]) == set(trained[2].eval.metrics)
    kept = sorted(os.listdir(os.path.join(wd, "reports")))
    assert kept == ["validation-step2", "validation-step2-2"]
    for d in kept:
        with open(os.path.join(wd, "reports", d, "report.json")) as f:
            assert json.load(f)["checkpoint"].endswith("step 2")
    assert os.path.isfile(os.path.join(wd, "report.md"))


# ~25 s on 2 quiet cores: builds the data set, trains 2 steps, evaluates, extracts.
@pytest.mark.slow
def test_extraction_needs_neither_the_data_set_nor_the_optimizer(trained, tmp_path):
    wd, tfds_dir, config, names = trained
    shutil.rmtree(tfds_dir)  # the data set is gone: an empty TFDS folder
    os.makedirs(tfds_dir)
    img = tmp_path / "imgs"
    img.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8)).save(
        img / "a.png"
    )
    out = str(tmp_path / "out")
    rc = cli.main(["extract", str(img), "--workdir", wd, "--out", out, "--no-progress"])
    assert rc == 0
    (jsonl,) = glob.glob(os.path.join(out, "*.jsonl"))  # the extract output's layout may move
    with open(jsonl) as f:
        rec = json.loads(f.readline())
    # Class names come from the checkpoint, not from the (deleted) data set.
    assert {t["class_name"] for t in rec["top_k"]} <= set(names)
    assert os.listdir(tfds_dir) == []
    loaded = load_trained(None, wd)
    assert loaded.config.to_json() == config.to_json()
    assert loaded.checkpoint_name.endswith("step 2") and loaded.image_size == 16
    # The weights are the trainer's step-2 state, bit for bit, read independently.
    state = ckpts.restore_arrays(os.path.join(wd, "checkpoints"), 2)
    for a, b in zip(
        jax.tree.leaves(state["params"]), jax.tree.leaves(loaded.variables["params"]), strict=True
    ):
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.slow
def test_a_config_of_another_model_is_refused(trained):
    wd, _, config, _ = trained
    other = config.copy_and_resolve_references()
    other.model.kwargs.head_features = 16
    with pytest.raises(ckpts.CheckpointMismatchError, match="kwargs"):
        load_trained(other, wd)


def test_checkpoint_of_camjax_0_1_loads_without_its_data_set():
    loaded = load_trained(None, OLD)
    ref = np.load(os.path.join(OLD, "expected.npz"))
    logits, features = loaded.model.apply(loaded.variables, ref["images"], train=False)
    # Another program than the one that wrote the reference: float32 rounding only.
    np.testing.assert_allclose(np.asarray(logits), ref["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(features), ref["features"], rtol=1e-5, atol=1e-5)
    assert loaded.class_names == [str(i) for i in range(10)]  # 0.1.0 did not save them


def test_evaluation_does_not_import_the_trainer():
    code = (
        "import sys, camjax.evaluation, camjax.evaluation.runner, camjax.metrics, "
        "camjax.checkpoints;"
        "bad = [m for m in sys.modules if m.startswith('camjax.train')];"
        "assert not bad, bad"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
def test_following_config_from_evaluate_climbs_back_up_the_layers_at_most_three_times(
    trained, tmp_path
):
    # bench/config_climbs.py's count (a stop: a camjax call given the config, a block of
    # it or an object holding it; a climb: a stop on a higher layer than the one before).
    import importlib.util

    from camjax.evaluation import evaluate

    path = os.path.join(ROOT, "bench", "config_climbs.py")
    spec = importlib.util.spec_from_file_location("config_climbs", path)
    climbs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(climbs)
    wd = str(tmp_path / "w")
    shutil.copytree(trained[0], wd)  # the fixture's reports stay as the other test expects
    stops = climbs.trace(lambda: evaluate(None, wd, max_examples=8, figures=False, verbose=False))
    counts = climbs.summary(stops, climbs.layers())
    modules = {m for m, _ in stops}  # the trace follows config into loading and the data
    assert any(m.startswith("camjax.checkpoints.") for m in modules), stops
    assert any(m.startswith("camjax.data.") for m in modules), stops
    assert counts["climbs"] <= 3, stops
