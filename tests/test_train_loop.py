"""camjax.train.loop: exact resume after SIGKILL, NaN stop, checkpoint safety, config checks.

These run the trainer on the toy stand-in for ``camjax.data`` in test_train_fakedata.py
(16 px images, a 4/8-wide tiny_gap) so that they test the trainer and stay fast.
"""

import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
import test_train_fakedata as fd

from camjax import train
from camjax.train import checkpoint, step

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs the trainer in a fresh process; "slow" makes each batch after step 4 take 1 s so
# the parent can kill the run between the step-4 checkpoint and the end.
SCRIPT = """
import os, sys, time
sys.path.insert(0, {here!r})
import test_train_fakedata as fd
fd.install()
slow = sys.argv[2] == "slow"
inner = fd.train_iterator
def train_iterator(cfg, **kw):
    for i, b in enumerate(inner(cfg, **kw), kw.get("start_step", 0)):
        if slow and i >= 4:
            time.sleep(1.0)
        yield b
fd.train_iterator = train_iterator
from camjax.train import train_and_evaluate
train_and_evaluate(fd.config(8), sys.argv[1])
"""


def _restore(workdir, config, at=None):
    model = train.build_model(config, fd.NUM_CLASSES)
    tx = train.create_optimizer(config.optimizer, config.train.num_steps)
    fresh = train.loop.initial_state(config, model, tx, config.data.image_size)
    ckpt = train.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        train.fingerprint(config, fd.NUM_CLASSES, fresh.params),
        async_save=False,
    )
    try:
        return ckpt.latest_step(), ckpt.restore(fresh, at)
    finally:
        ckpt.close()


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    return env


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise(tmp_path, fake_data):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=HERE))
    killed = str(tmp_path / "killed")
    proc = subprocess.Popen(
        [sys.executable, str(script), killed, "slow"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("step 5/8"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert sorted(os.listdir(os.path.join(killed, "checkpoints")))[-1] == "4"
    out = subprocess.run(
        [sys.executable, str(script), killed, "fast"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resumed from step 4" in out.stdout

    whole = str(tmp_path / "whole")
    train.train_and_evaluate(fd.config(8), whole)
    config = fd.config(8)
    (sa, (a, _)), (sb, (b, _)) = _restore(killed, config), _restore(whole, config)
    assert sa == sb == 8
    # keep_checkpoints=2: only the last two steps remain.
    assert sorted(os.listdir(os.path.join(whole, "checkpoints")), key=int) == ["6", "8"]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # The state moved: step 8 differs from step 6, so equality above is not vacuous.
    _, (c, _) = _restore(whole, config, at=6)
    assert not np.array_equal(
        np.asarray(c.params["head"]["classifier"]["kernel"]),
        np.asarray(a.params["head"]["classifier"]["kernel"]),
    )


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, fake_data, monkeypatch):
    inner = fd.train_iterator

    def poisoned(cfg, **kw):
        for i, b in enumerate(inner(cfg, **kw), kw.get("start_step", 0)):
            if i == 2:  # the third step (steps 1..2 are fine, checkpoint at 2)
                b = dict(b, image=np.full_like(b["image"], np.nan))
            yield b

    monkeypatch.setattr(fd, "train_iterator", poisoned)
    with pytest.raises(train.NonFiniteLossError, match="nan at step 3"):
        train.train_and_evaluate(fd.config(8), str(tmp_path))
    latest, (state, _) = _restore(str(tmp_path), fd.config(8))
    assert latest == 2
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(tmp_path, fake_data):
    train.train_and_evaluate(fd.config(2), str(tmp_path))
    other = fd.config(4)
    other.model.kwargs.head_features = 16
    with pytest.raises(checkpoint.CheckpointMismatchError, match="model_kwargs"):
        train.train_and_evaluate(other, str(tmp_path))


def test_leftover_tmp_dir_from_a_killed_save_is_ignored_and_cleaned(tmp_path, fake_data):
    config = fd.config(4)
    train.train_and_evaluate(config, str(tmp_path))
    ckdir = tmp_path / "checkpoints"
    # What a kill in the middle of saving step 6 leaves: a half-written temporary dir.
    tmp = ckdir / "6.orbax-checkpoint-tmp"
    shutil.copytree(ckdir / "4", tmp)
    for root, _, files in os.walk(tmp):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    latest, (state, at) = _restore(str(tmp_path), config)
    assert latest == at == 4 and int(state.step) == 4
    assert not tmp.exists()  # cleanup_tmp_directories removed it on start
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))


def test_unknown_config_keys_are_named():
    default = fd.config()
    typo = fd.config()
    typo.train.num_step = 3
    with pytest.raises(KeyError, match="train.num_step"):
        train.check_config(typo, default)
    with pytest.raises(KeyError, match="optimizer.lr"):
        train.load_config(os.path.join(HERE, "..", "configs", "default.py"), {"optimizer.lr": 0.1})
    ok = fd.config()
    ok.model.kwargs.anything = 1  # model.kwargs is free-form
    train.check_config(ok, default)


def test_replicated_checkpoint_form_round_trips():
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    rep = step.replicate_global(tree)
    assert rep["a"].sharding.is_fully_replicated and len(rep["a"].devices()) == 8
    np.testing.assert_array_equal(step.host_array(rep["a"]), tree["a"])
    assert step.replicate_global({"s": np.int32(3)})["s"].shape == ()


@pytest.mark.slow
def test_train_py_rejects_an_unknown_override_and_a_typo_in_a_config_file(tmp_path):
    root = os.path.dirname(HERE)
    run = [sys.executable, os.path.join(root, "train.py"), "--workdir", str(tmp_path)]
    out = subprocess.run(run + ["--config", os.path.join(root, "configs", "default.py"),
                                "--config.train.num_step=3"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode != 0 and "num_step" in out.stderr, out.stderr[-2000:]
    # A config file that adds a key the default lacks (a typo) fails before training.
    bad = tmp_path / "configs" / "typo.py"
    bad.parent.mkdir()
    shutil.copy(os.path.join(root, "configs", "default.py"), bad.parent / "default.py")
    bad.write_text("from configs import default\n\n\ndef get_config():\n"
                   "    c = default.get_config()\n    c.optimizer.learning_rte = 0.1\n"
                   "    return c\n")  # fmt: skip
    out = subprocess.run(run + ["--config", str(bad)], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))  # fmt: skip
    assert out.returncode != 0 and "optimizer.learning_rte" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "checkpoints").exists()
