"""A tiny stand-in for ``camjax.data`` that the trainer tests (and their subprocesses) use.

It follows the data contract of docs/CONTRACTS.md (``info``, ``train_iterator`` with
``start_step`` and per-process shards, ``eval_iterator`` padded with ``valid``) on a
learnable toy task: a bright square fills one quadrant; the class is the quadrant and the
box is the square. Kept here, not in the library, so the trainer's resume and
multi-process tests depend only on the trainer.
"""

import sys
import types

import numpy as np

NUM_CLASSES = 4


def _examples(rs: np.random.RandomState, n: int, size: int):
    labels = rs.randint(0, NUM_CLASSES, n).astype(np.int32)
    images = 0.2 * rs.randn(n, size, size, 3).astype(np.float32)
    h = size // 2
    boxes = np.zeros((n, 2, 4), np.int32)
    for i, c in enumerate(labels):
        y, x = divmod(int(c), 2)
        images[i, y * h : (y + 1) * h, x * h : (x + 1) * h] += 1.0
        boxes[i, 0] = (x * h, y * h, x * h + h - 1, y * h + h - 1)
    valid = np.zeros((n, 2), bool)
    valid[:, 0] = True
    return {"image": images, "label": labels, "bboxes": boxes, "bbox_valid": valid}


def info(cfg):
    return types.SimpleNamespace(
        num_classes=NUM_CLASSES,
        class_names=["tl", "tr", "bl", "br"],
        image_size=cfg.image_size,
        num_examples={"train": 10**6, "validation": 40},
        has_masks=False,
    )


def _share(batch, b, process_index, process_count):
    per = b // (process_count or 1)
    lo = (process_index or 0) * per
    return {k: v[lo : lo + per] for k, v in batch.items()}


def train_iterator(
    cfg, *, global_batch_size, seed, start_step=0, process_index=None, process_count=None
):
    step = start_step
    while True:
        # The global batch is a function of (seed, step) only: resumable anywhere.
        batch = _examples(np.random.RandomState([seed, step]), global_batch_size, cfg.image_size)
        batch.pop("bboxes"), batch.pop("bbox_valid")
        yield _share(batch, global_batch_size, process_index, process_count)
        step += 1


def eval_iterator(cfg, split, *, global_batch_size, process_index=None, process_count=None):
    n = 40
    data = _examples(np.random.RandomState(12345), n, cfg.image_size)
    for lo in range(0, n, global_batch_size):
        batch = {k: v[lo : lo + global_batch_size] for k, v in data.items()}
        real = len(batch["label"])
        pad = global_batch_size - real
        batch = {
            k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
            for k, v in batch.items()
        }
        batch["valid"] = np.arange(global_batch_size) < real
        yield _share(batch, global_batch_size, process_index, process_count)


def install():
    """Make ``from camjax import data`` return this module."""
    import camjax

    module = sys.modules[__name__]
    sys.modules["camjax.data"] = module
    camjax.data = module
    return module


def config(workdir_steps=6, parallel="pmap"):
    """The default config shrunk for tests: 16 px images, a 4/8-wide tiny_gap."""
    import os

    from camjax.train import load_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    c = load_config(os.path.join(root, "configs", "default.py"))
    c.data.image_size = 16
    c.model.kwargs.widths = (4, 8)
    c.model.kwargs.head_features = 8
    c.train.batch_size = 16
    c.train.num_steps = workdir_steps
    c.train.log_every = 1
    c.train.checkpoint_every = 2
    c.train.async_checkpoints = False
    c.eval.batch_size = 16
    c.eval.cam_threshold_steps = 10
    c.optimizer.learning_rate = 0.05
    c.optimizer.warmup_steps = 2
    c.parallel = parallel
    return c


def test_fake_train_iterator_resumes_and_splits_by_process():
    import ml_collections

    cfg = ml_collections.ConfigDict({"image_size": 8})
    full = train_iterator(cfg, global_batch_size=8, seed=3)
    next(full), next(full)
    third = next(full)
    resumed = next(train_iterator(cfg, global_batch_size=8, seed=3, start_step=2))
    np.testing.assert_array_equal(third["image"], resumed["image"])
    halves = [
        next(
            train_iterator(
                cfg, global_batch_size=8, seed=3, start_step=2, process_index=i, process_count=2
            )
        )
        for i in (0, 1)
    ]
    np.testing.assert_array_equal(np.concatenate([h["label"] for h in halves]), third["label"])
