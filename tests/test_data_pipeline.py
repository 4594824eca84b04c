"""train_iterator / eval_iterator on a small built camjax_shapes: resume, exact-once."""

import hashlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camjax import data
from camjax.data import shapes
from configs.default import get_config

SIZE = 32


@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory):
    c = get_config().data
    c.data_dir = str(tmp_path_factory.mktemp("tfds"))
    c.image_size = SIZE
    c.shapes.image_size = SIZE
    # 40 train (4 per class), 13 validation (odd), 7 test.
    c.shapes.num_train, c.shapes.num_validation, c.shapes.num_test = 40, 13, 7
    c.shuffle_buffer = 16
    # Several files per split, so per-epoch file shuffling is part of what is tested.
    b = shapes.builder(c, num_shards=4)
    assert b.info.splits["train"].num_shards == 4
    return c


def _take(it, n):
    return list(itertools.islice(it, n))


def _equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_batch_layout(data_cfg):
    (b,) = _take(
        data.train_iterator(
            data_cfg, global_batch_size=6, seed=0, process_index=0, process_count=1
        ),
        1,
    )
    assert b["image"].shape == (6, SIZE, SIZE, 3) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32 and b["bboxes"].shape == (6, 8, 4)
    assert b["bbox_valid"].shape == (6, 8) and b["mask"].shape == (6, SIZE, SIZE)
    # One object per image; crop_flip may crop it away only if it was at the border.
    assert b["bbox_valid"][:, 1:].sum() == 0 and b["bbox_valid"][:, 0].sum() >= 4
    # ImageNet normalisation of [0, 255] stays within [-2.2, 2.7].
    assert -2.2 < b["image"].min() and b["image"].max() < 2.7


@pytest.mark.parametrize("augment", ["crop_flip", "random_resized_crop"])
def test_resume_equals_tail_of_uninterrupted_run(data_cfg, augment):
    c = data_cfg.copy_and_resolve_references()
    c.train_augment = augment
    kw = dict(global_batch_size=12, seed=5, process_index=0, process_count=1)
    # 40 examples, batches of 12: epochs end inside batches 3 and 6 (positions 40, 80).
    full = _take(data.train_iterator(c, **kw), 9)
    for k in (3, 7):  # mid-epoch before a straddling batch; inside the third epoch
        tail = _take(data.train_iterator(c, start_step=k, **kw), 9 - k)
        assert all(_equal(a, b) for a, b in zip(tail, full[k:], strict=True)), k
    other = _take(data.train_iterator(c, **{**kw, "seed": 6}), 1)[0]
    assert not np.array_equal(other["label"], full[0]["label"])


def test_epoch_visits_every_example_once(data_cfg):
    c = data_cfg.copy_and_resolve_references()
    c.train_augment = "none"
    batches = _take(
        data.train_iterator(c, global_batch_size=8, seed=1, process_index=0, process_count=1), 10
    )
    for epoch in (batches[:5], batches[5:]):  # 40 = 5 batches of 8
        labels = np.concatenate([b["label"] for b in epoch])
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [4] * 10)
        digests = {hashlib.sha1(im.tobytes()).hexdigest() for b in epoch for im in b["image"]}
        assert len(digests) == 40
    # Different epochs are shuffled differently.
    assert not np.array_equal(batches[0]["label"], batches[5]["label"])


def test_process_slices_partition_the_train_set(data_cfg):
    c = data_cfg.copy_and_resolve_references()
    c.train_augment = "none"
    seen = []
    for p in range(2):
        it = data.train_iterator(c, global_batch_size=8, seed=0, process_index=p, process_count=2)
        bs = _take(it, 5)  # each process holds 20 examples = 5 local batches of 4
        assert bs[0]["label"].shape == (4,)
        seen += [hashlib.sha1(im.tobytes()).hexdigest() for b in bs for im in b["image"]]
    assert len(set(seen)) == 40
    with pytest.raises(ValueError, match="multiple of the process count"):
        data.train_iterator(c, global_batch_size=7, seed=0, process_index=0, process_count=2)


def _digests(batches):
    out = []
    for b in batches:
        out += [
            hashlib.sha1(b["image"][i].tobytes()).hexdigest() + str(b["label"][i])
            for i in np.nonzero(b["valid"])[0]
        ]
    return out


def test_eval_reference_pass(data_cfg):
    ref = list(
        data.eval_iterator(
            data_cfg, "validation", global_batch_size=1, process_index=0, process_count=1
        )
    )
    assert len(ref) == 13 and all(b["valid"].all() for b in ref)
    assert len(set(_digests(ref))) == 13


@pytest.mark.parametrize("process_count", [1, 2, 3])
@pytest.mark.parametrize("global_batch", [6, 24])
def test_eval_counts_each_example_exactly_once(data_cfg, process_count, global_batch):
    ref = sorted(
        _digests(
            data.eval_iterator(
                data_cfg, "validation", global_batch_size=1, process_index=0, process_count=1
            )
        )
    )
    got, lengths = [], set()
    for p in range(process_count):
        bs = list(
            data.eval_iterator(
                data_cfg,
                "validation",
                global_batch_size=global_batch,
                process_index=p,
                process_count=process_count,
            )
        )
        lengths.add(len(bs))
        assert all(b["label"].shape == (global_batch // process_count,) for b in bs)
        for b in bs:  # padding is zero
            assert not b["image"][~b["valid"]].any() and not b["bbox_valid"][~b["valid"]].any()
        got += _digests(bs)
    assert len(lengths) == 1  # every process runs the same number of steps
    assert sorted(got) == ref


def test_eval_exactly_once_over_8_devices(data_cfg):
    devices = jax.local_devices()
    assert len(devices) == 8
    ref = np.zeros(10, np.int64)
    for b in data.eval_iterator(
        data_cfg, "validation", global_batch_size=1, process_index=0, process_count=1
    ):
        ref[b["label"][0]] += 1

    count = jax.pmap(
        lambda b: jax.lax.psum((jax.nn.one_hot(b["label"], 10) * b["valid"][:, None]).sum(0), "i"),
        axis_name="i",
    )
    total = jnp.zeros(10)
    for b in data.eval_iterator(
        data_cfg, "validation", global_batch_size=8, process_index=0, process_count=1
    ):
        sharded = data.shard({"label": b["label"], "valid": b["valid"]}, 8)
        total = total + count(sharded)[0]
    np.testing.assert_array_equal(np.asarray(total), ref)
    assert ref.sum() == 13


def test_eval_masks_and_boxes_agree_after_resize(data_cfg):
    c = data_cfg.copy_and_resolve_references()
    c.image_size = 2 * SIZE  # exact 2x: nearest mask and box rule agree without ties
    for b in data.eval_iterator(c, "test", global_batch_size=4, process_index=0, process_count=1):
        for i in np.nonzero(b["valid"])[0]:
            ys, xs = np.nonzero(b["mask"][i] == 1)
            assert tuple(b["bboxes"][i, 0]) == (xs.min(), ys.min(), xs.max(), ys.max())
            assert b["bbox_valid"][i, 0] and not b["bbox_valid"][i, 1:].any()


def test_errors(data_cfg):
    c = data_cfg.copy_and_resolve_references()
    with pytest.raises(ValueError, match="no split"):
        next(data.eval_iterator(c, "nope", global_batch_size=2, process_index=0, process_count=1))
    with pytest.raises(ValueError, match="process_index"):
        data.eval_iterator(c, "test", global_batch_size=2, process_index=2, process_count=2)
    c.name = "mnist"
    with pytest.raises(ValueError, match="unknown data set"):
        data.info(c)
    c = data_cfg.copy_and_resolve_references()
    c.train_augment = "mixup"
    with pytest.raises(ValueError, match="train_augment"):
        data.train_iterator(c, global_batch_size=2, seed=0, process_index=0, process_count=1)


def test_eval_split_slice(data_cfg):
    bs = list(
        data.eval_iterator(
            data_cfg, "test[:3]", global_batch_size=2, process_index=0, process_count=1
        )
    )
    assert [int(b["valid"].sum()) for b in bs] == [2, 1]
