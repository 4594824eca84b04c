"""Issue #24, the training side, on real tiny training runs (tiny_gap, 16 px):

- the fingerprint knows the data: a folder with renamed classes, another split rule or
  other files is refused on resume naming what differs; a moved folder resumes; an
  older checkpoint without the data fields resumes with a warning;
- undecodable images in the folder (a text file named .jpg, empty and truncated JPEGs)
  are skipped, counted, listed in the workdir, and the run finishes;
- the NaN guard keeps a usable state: ``learning_rate=1e30`` saves no diverged state and
  says why; an older diverged checkpoint is refused; ``nan``/``inf`` config values are
  floats, refused for the learning rate with one line (exit code 2).
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest
import test_train_fakedata as fd
from PIL import Image
from test_data_reliability import write_folder_with_bad_files

from camjax import config as config_lib
from camjax import train
from camjax.checkpoints import store as ckpts
from camjax.cli import main as cli_main
from camjax.train import checkpoint, guard

DEFAULT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "default.py")


def _folder_config(root, steps=2):
    c = fd.config(steps)
    c.data.name = "folder"
    c.data.folder.root = str(root)
    c.data.folder.val_fraction = 0.2
    c.train.checkpoint_every = 2
    c.eval.batch_size = 16
    return c


def _meta_path(wd, step):
    return os.path.join(wd, "checkpoints", str(step), "meta", "metadata")


@pytest.mark.slow  # two short training runs and six refused resumes
def test_the_fingerprint_knows_the_data_and_bad_files_are_skipped(tmp_path, capsys):
    root = tmp_path / "img"
    bad = write_folder_with_bad_files(root)
    wd = str(tmp_path / "w")
    assert train.train_and_evaluate(_folder_config(root), wd)["step"] == 2
    out = capsys.readouterr().out
    listing = os.path.join(wd, "skipped_images.tsv")
    assert "skipped 3 image file(s) that cannot be decoded" in out and listing in out
    rows = open(listing).read().splitlines()[1:]
    assert sorted(os.path.basename(r.split("\t")[0]) for r in rows) == sorted(bad)
    fp = ckpts.read_meta(os.path.join(wd, "checkpoints"), 2)["fingerprint"]
    assert fp["data_classes"] == ["cat", "dog"]
    assert fp["data_split"]["val_fraction"] == 0.2 and fp["data_split"]["split_seed"] == 0
    assert fp["data_files"].startswith("10 images, sha256 ")

    def refused(config, *fields):
        with pytest.raises(checkpoint.CheckpointMismatchError) as e:
            train.train_and_evaluate(config, wd)
        msg = str(e.value)
        assert "\n" not in msg and all(f in msg for f in fields), msg
        return msg

    # Same class count, other classes (red/blue vs cat/dog).
    other = tmp_path / "other"
    shutil.copytree(root, other)
    os.rename(other / "cat", other / "blue")
    os.rename(other / "dog", other / "red")
    msg = refused(_folder_config(other, 4), "data_classes", "data_files")
    assert "['cat', 'dog']" in msg and "['blue', 'red']" in msg
    c = _folder_config(root, 4)
    c.data.folder.val_fraction = 0.4  # would move validation images into training
    refused(c, "data_split", "val_fraction")
    c = _folder_config(root, 4)
    c.data.folder.split_seed = 1
    refused(c, "data_split", "'split_seed': 1")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "dog" / "new.png")
    refused(_folder_config(root, 4), "data_files: checkpoint has '10 images", "'11 images")
    # The command line: one line, exit code 2.
    args = ["train", "--config", DEFAULT, "--workdir", wd, "--config.cpu.devices=0"]
    overrides = {
        "data.name": "folder", "data.folder.root": str(root), "data.folder.val_fraction": 0.2,
        "data.image_size": 16, "model.kwargs.widths": (4, 8), "model.kwargs.head_features": 8,
        "train.batch_size": 16, "train.num_steps": 4,
    }  # fmt: skip
    args += [f"--config.{k}={v}" for k, v in overrides.items()]
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data_files" in err[0], err
    os.remove(root / "dog" / "new.png")

    # A moved folder is the same data set: it resumes and trains on.
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    assert train.train_and_evaluate(_folder_config(moved, 3), wd)["step"] == 3

    # An older checkpoint (no data fields) resumes with a warning, even on other data.
    for step in ckpts.steps(os.path.join(wd, "checkpoints")):
        meta = json.load(open(_meta_path(wd, step)))
        for k in [k for k in meta["fingerprint"] if k.startswith("data_")]:
            del meta["fingerprint"][k]
        json.dump(meta, open(_meta_path(wd, step), "w"))
    capsys.readouterr()
    assert train.train_and_evaluate(_folder_config(other, 4), wd)["step"] == 4
    assert "predates data fingerprints" in capsys.readouterr().err


def _fresh_norm(config):
    model = train.build_model(config, fd.NUM_CLASSES)
    tx = train.create_optimizer(config.optimizer, config.train.num_steps)
    return guard.param_norm(train.loop.initial_state(config, model, tx, 16))


@pytest.mark.slow  # three short training runs
def test_a_diverging_learning_rate_saves_no_diverged_state_and_says_why(tmp_path, fake_data):
    config = fd.config(4)
    config.train.checkpoint_every = 1
    config.optimizer.learning_rate = 1e30
    wd = str(tmp_path / "w")
    with pytest.raises(train.NonFiniteLossError) as e:
        train.train_and_evaluate(config, wd)
    msg = str(e.value)
    assert "\n" not in msg
    # Step 1 is warm-up (learning rate 0): its state is saved; step 2's update diverges.
    for part in ("training diverged: after step 2", "learning rate 5e+29 at step 2",
                 "optimizer.learning_rate=1e+30", "the loss was", "latest checkpoint: step 1",
                 "Resuming with the same learning rate will diverge again"):  # fmt: skip
        assert part in msg, msg
    # Every state saved is usable: finite, norm within the bound of the fresh state's.
    limit = guard.MAX_NORM_GROWTH * _fresh_norm(config)
    d = os.path.join(wd, "checkpoints")
    for step in ckpts.steps(d):
        params = ckpts.restore_arrays(d, step)["params"]
        leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
        assert all(np.isfinite(x).all() for x in leaves)
        assert np.sqrt(sum((x**2).sum() for x in leaves)) <= limit, step
    # The advice works: the default learning rate resumes (or restarts) and finishes.
    config.optimizer.learning_rate = 0.05
    result = train.train_and_evaluate(config, wd)
    assert result["step"] == 4 and np.isfinite(result["train_loss"])

    # A diverged checkpoint of an older camjax (no guard record) is refused, not resumed.
    old = str(tmp_path / "old")
    c2 = fd.config(2)
    model = train.build_model(c2, fd.NUM_CLASSES)
    tx = train.create_optimizer(c2.optimizer, c2.train.num_steps)
    state = train.loop.initial_state(c2, model, tx, 16)
    state = state.replace(params=jax.tree.map(lambda x: x * 1e27, state.params))
    ckpt = train.Checkpointer(
        os.path.join(old, "checkpoints"),
        train.fingerprint(c2, fd.NUM_CLASSES, state.params),
        async_save=False,
    )
    ckpt.save(1, jax.tree.map(np.asarray, state), c2)
    ckpt.close()
    with pytest.raises(train.NonFiniteLossError, match="checkpoint step 1 holds a diverged"):
        train.train_and_evaluate(c2, old)


def test_nan_and_inf_are_float_config_values_refused_for_the_learning_rate(tmp_path, capsys):
    assert np.isnan(config_lib.parse_value("nan")) and config_lib.parse_value("-Inf") == -np.inf
    config = fd.config(2)
    config_lib._set(config, "data.name", config_lib.parse_value("nan"))  # a string field
    assert config.data.name == "nan"
    wd = str(tmp_path / "w")
    for text in ("nan", "inf"):
        argv = ["train", "--config", DEFAULT, "--workdir", wd]
        assert cli_main([*argv, f"--config.optimizer.learning_rate={text}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert f"optimizer.learning_rate must be a finite number >= 0, got {text}" in err[0]
        assert cli_main([*argv, f"--config.optimizer.momentum={text}"]) == 2
        assert "optimizer.momentum must be a finite number" in capsys.readouterr().err
    assert not os.path.exists(wd)
