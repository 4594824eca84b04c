"""Issue #18: relative workdirs, NaN states, config values, corrupt checkpoints, resume
fingerprints. Each test makes the hostile input itself (bit flips and truncation in the
files Orbax wrote, a NaN update, a relative path) and runs the trainer on the toy data
of test_train_fakedata.py."""

import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_train_fakedata as fd

from camjax import config as config_lib
from camjax import train
from camjax.checkpoints import load_trained
from camjax.checkpoints import store as ckpts
from camjax.train import checkpoint, step


def _fresh(config):
    model = train.build_model(config, fd.NUM_CLASSES)
    tx = train.create_optimizer(config.optimizer, config.train.num_steps)
    return train.loop.initial_state(config, model, tx, config.data.image_size)


def _checkpointer(workdir, config, fresh):
    return train.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        train.fingerprint(config, fd.NUM_CLASSES, fresh.params),
        async_save=False,
    )


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_same(a, b):
    """Equal leaf by leaf, matched by path (a TrainState and Orbax's dicts differ in order)."""
    flat = [
        {ckpts.leaf_key(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(t)[0]}
        for t in (a, b)
    ]
    assert flat[0].keys() == flat[1].keys()
    for k in flat[0]:
        np.testing.assert_array_equal(flat[0][k], flat[1][k], err_msg=k)


@pytest.mark.slow  # several short training runs
def test_relative_workdir_saves_in_the_background_and_resumes(tmp_path, fake_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = fd.config(4)
    config.train.async_checkpoints = True  # the background save that lost the whole run
    train.train_and_evaluate(config, "runs/rel")
    assert ckpts.steps(str(tmp_path / "runs" / "rel" / "checkpoints")) == [2, 4]
    longer = fd.config(6)
    longer.train.async_checkpoints = True
    result = train.train_and_evaluate(longer, "runs/rel")
    assert result["step"] == 6
    assert ckpts.steps(str(tmp_path / "runs" / "rel" / "checkpoints")) == [4, 6]


def test_a_failed_background_save_stops_training(tmp_path, monkeypatch):
    # What a relative directory did: Orbax's background thread refuses it; the next save
    # (or the end of training) must raise instead of carrying on without checkpoints.
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(checkpoint.os.path, "abspath", lambda p: p)
        ckpt = train.Checkpointer("rel/checkpoints", {}, async_save=True)
    state = {"a": np.arange(3, dtype=np.float32)}
    config = fd.config(2)
    ckpt.save(1, state, config)
    with pytest.raises(train.CheckpointSaveError, match="step 1"):
        ckpt.save(2, state, config)
        ckpt.wait()
    ckpt.manager.close()


def _nan_after(step_count):
    real = step.make_train_step

    def make(model, tx):
        inner = real(model, tx)

        def poisoned(state, batch, rng):
            new, metrics = inner(state, batch, rng)
            bad = jnp.where(state.step >= step_count, jnp.nan, 1.0)
            return new.replace(params=jax.tree.map(lambda x: x * bad, new.params)), metrics

        return poisoned

    return make


@pytest.mark.slow  # several short training runs
def test_a_nan_state_is_never_saved_and_the_run_resumes(tmp_path, fake_data, monkeypatch):
    config = fd.config(4)
    config.train.checkpoint_every = 1
    wd = str(tmp_path / "w")
    with monkeypatch.context() as m:
        # Step 3's update makes every parameter NaN; its loss (computed before the
        # update) is finite, so only a check of the state itself can catch it.
        m.setattr(step, "make_train_step", _nan_after(2))
        with pytest.raises(
            train.NonFiniteLossError, match="after step 3.*latest checkpoint: step 2"
        ):
            train.train_and_evaluate(config, wd)
    assert ckpts.steps(os.path.join(wd, "checkpoints")) == [1, 2]
    fresh = _fresh(config)
    ckpt = _checkpointer(wd, config, fresh)
    state, at = ckpt.restore(fresh)
    ckpt.close()
    assert at == 2 and all(np.isfinite(x).all() for x in _leaves(state))
    assert train.train_and_evaluate(config, wd)["step"] == 4  # resumes from step 2
    whole = str(tmp_path / "whole")
    train.train_and_evaluate(config, whole)
    a = ckpts.restore_arrays(os.path.join(wd, "checkpoints"), 4)
    b = ckpts.restore_arrays(os.path.join(whole, "checkpoints"), 4)
    _assert_same(a, b)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.keep_checkpoints", 0, "keep_checkpoints must be an integer >= 1"),
        ("train.num_steps", -5, "num_steps must be an integer >= 1"),
        ("data.normalization", "nosuch", "data.normalization must be one of"),
        ("model.kwargs.x", 1, "rejects model.kwargs"),
        ("model.name", "nosuch", "model.name must be one of"),
        ("eval.metrics", ("max_box_acc_v3",), "unknown metric 'max_box_acc_v3'"),
        ("optimizer.learning_rate", float("nan"), "learning_rate must be a finite number"),
        ("cpu.devices", -1, "cpu.devices must be an integer >= 0"),
        ("data.cache_decoded_mb", -1, "cache_decoded_mb must be an integer >= 0"),
    ],
)
def test_bad_config_values_fail_before_any_work(tmp_path, key, value, message):
    config = fd.config(2)
    config_lib._set(config, key, value)
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config)
    with pytest.raises(ValueError, match=message):
        train.train_and_evaluate(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_command_line_config_parsing():
    path, overrides, rest = config_lib.split_argv(
        ["--config", "c.py", "--config.train.num_steps=3", "--config.model.kwargs.widths",
         "(4, 8)", "--config.data.name=imagenet2012", "--workdir", "w"]
    )  # fmt: skip
    assert path == "c.py" and rest == ["--workdir", "w"]
    assert overrides == {
        "train.num_steps": 3,
        "model.kwargs.widths": (4, 8),
        "data.name": "imagenet2012",
    }
    config = fd.config(2)
    config_lib._set(config, "model.kwargs.head_features", 16)  # free-form: added
    assert config.model.kwargs.head_features == 16
    with pytest.raises(ValueError, match="train.num_steps"):
        config_lib._set(config, "train.num_steps", "many")
    with pytest.raises(FileNotFoundError, match="config file not found: .*nosuch.py"):
        config_lib.load_config("configs/nosuch.py")


@pytest.fixture
def two_checkpoints(tmp_path, fake_data):
    """A workdir with intact checkpoints at steps 2 and 4, and the arrays of each."""
    config = fd.config(4)
    wd = str(tmp_path / "w")
    train.train_and_evaluate(config, wd)
    d = os.path.join(wd, "checkpoints")
    return wd, config, {s: ckpts.restore_arrays(d, s) for s in (2, 4)}


def _state_files(wd, step_):
    root = os.path.join(wd, "checkpoints", str(step_), "state")
    files = []
    for base, _, names in os.walk(root):
        files += [os.path.join(base, n) for n in names if n != "commit_success.txt"]
    return sorted(files)


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def _restore_latest(wd, config, fresh=None):
    fresh = _fresh(config) if fresh is None else fresh
    ckpt = _checkpointer(wd, config, fresh)
    try:
        return ckpt.restore(fresh)
    finally:
        ckpt.close()


@pytest.mark.slow  # several short training runs
def test_bit_flips_in_the_newest_checkpoint_fall_back_to_the_previous_one(
    two_checkpoints, tmp_path, capsys
):
    wd, config, arrays = two_checkpoints
    data_files = [f for f in _state_files(wd, 4) if os.sep + "d" + os.sep in f]
    assert data_files, _state_files(wd, 4)
    pristine = str(tmp_path / "pristine")
    shutil.copytree(wd, pristine)
    rng = np.random.default_rng(0)
    flips = [(f, int(rng.integers(0, os.path.getsize(f)))) for f in data_files for _ in range(4)]
    detected, fresh = 0, _fresh(config)
    for path, offset in flips[:12]:
        shutil.rmtree(wd)
        shutil.copytree(pristine, wd)
        _flip(path, offset)
        state, at = _restore_latest(wd, config, fresh)
        if at == 4:  # a flip the reader never sees must leave the arrays as they were
            _assert_same(state, arrays[4])
            continue
        detected += 1
        assert at == 2
        _assert_same(state, arrays[2])
        assert "checkpoint step 4" in capsys.readouterr().err
        assert os.path.isdir(os.path.join(wd, "checkpoints_corrupt", "4"))  # moved, kept
        assert ckpts.steps(os.path.join(wd, "checkpoints")) == [2]
    # Some bytes are never read (e.g. an older manifest); those flips change nothing.
    assert detected >= 1, detected


@pytest.mark.slow  # several short training runs
def test_truncated_file_and_bad_metadata_are_reported_by_step(two_checkpoints, capsys):
    wd, config, arrays = two_checkpoints
    biggest = max(_state_files(wd, 4), key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)
    # Evaluation loading skips it without moving anything (a read-only use).
    loaded = load_trained(None, wd)
    assert loaded.checkpoint_name.endswith("step 2")
    assert "checkpoint step 4" in capsys.readouterr().err
    with pytest.raises(ckpts.CorruptCheckpointError, match="checkpoint step 4"):
        load_trained(None, os.path.join(wd, "checkpoints", "4"))
    # Resume moves it aside and continues from step 2.
    state, at = _restore_latest(wd, config)
    assert at == 2
    with open(os.path.join(wd, "checkpoints", "2", "meta", "metadata"), "w") as f:
        f.write("{not json")
    assert _restore_latest(wd, config) is None  # nothing intact left: a fresh start
    assert sorted(os.listdir(os.path.join(wd, "checkpoints_corrupt"))) == ["2", "4"]


@pytest.mark.slow  # five refused resumes
def test_resume_with_another_meaning_is_refused(tmp_path, fake_data):
    config = fd.config(2)
    wd = str(tmp_path / "w")
    fresh = _fresh(config)
    ckpt = _checkpointer(wd, config, fresh)
    ckpt.save(2, jax.tree.map(np.asarray, fresh), config)
    ckpt.close()
    for key, value in [("seed", 1), ("data.image_size", 24), ("data.shapes.seed", 3),
                       ("data.normalization", "unit"), ("model.dtype", "bfloat16")]:  # fmt: skip
        other = fd.config(2)
        config_lib._set(other, key, value)
        with pytest.raises(checkpoint.CheckpointMismatchError, match=key.split(".")[-1]):
            train.train_and_evaluate(other, wd)


ENTRY_CASES = [
    (["--config.train.keep_checkpoints=0"], "train.keep_checkpoints must be an integer >= 1"),
    (["--config.model.kwargs.x=1"], "rejects model.kwargs"),
    (["--config.data.normalization=nosuch"], "data.normalization must be one of"),
]


@pytest.mark.slow  # four interpreter start-ups
def test_entry_points_report_bad_config_in_one_line_with_exit_code_2(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    default = os.path.join(root, "configs", "default.py")
    wd = str(tmp_path / "w")
    runs = [([os.path.join(root, "train.py"), "--config", default, "--workdir", wd, *extra], msg)
            for extra, msg in ENTRY_CASES]  # fmt: skip
    runs.append(
        ([os.path.join(root, "train.py"), "--config", "nosuch.py", "--workdir", wd],
         "config file not found"),
    )  # fmt: skip
    for args, message in runs:
        out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
        assert out.returncode == 2, out.stderr[-2000:]
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], out.stderr[-2000:]
    assert not os.path.exists(wd)
