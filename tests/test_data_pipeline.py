"""train_iterator / eval_iterator on a small built camjax_shapes: resume, exact-once.

Training runs both stream forms (camjax.data.stream): the decoded split cached in memory
(``cache_decoded_mb`` large enough) and the streamed one (``cache_decoded_mb = 0``).
"""

import hashlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from camjax import data
from camjax.data import pipeline, shapes, stream
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


# Both stream forms: the decoded split in memory (40 * 32 * 32 * 4 bytes fit), streamed.
FORMS = {"cached": 1024, "streamed": 0}


def _form(data_cfg, form: str, augment: str | None = None):
    c = data_cfg.copy_and_resolve_references()
    c.cache_decoded_mb = FORMS[form]
    if augment is not None:
        c.train_augment = augment
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


@pytest.mark.parametrize(
    "form, augment",
    [("cached", "crop_flip"), ("cached", "random_resized_crop"), ("streamed", "crop_flip")],
)
def test_resume_equals_tail_of_uninterrupted_run(data_cfg, form, augment):
    c = _form(data_cfg, form, augment)
    kw = dict(global_batch_size=12, seed=5, process_index=0, process_count=1)
    # 40 examples, batches of 12: epochs end inside batches 3 and 6 (positions 40, 80).
    full = _take(data.train_iterator(c, **kw), 9)
    # Mid-epoch before a straddling batch; the straddling one; inside the third epoch.
    for k in (2, 3, 7) if form == "cached" else (3, 7):
        tail = _take(data.train_iterator(c, start_step=k, **kw), 9 - k)
        assert all(_equal(a, b) for a, b in zip(tail, full[k:], strict=True)), k
    other = _take(data.train_iterator(c, **{**kw, "seed": 6}), 1)[0]
    assert not np.array_equal(other["label"], full[0]["label"])


def _reference_digests(c) -> set[str]:
    """The train split's images after the eval resize, read in file order (eval path)."""
    ref = data.eval_iterator(c, "train", global_batch_size=8, process_index=0, process_count=1)
    return {hashlib.sha1(im.tobytes()).hexdigest() for b in ref for im in b["image"]}


@pytest.mark.parametrize("form", FORMS)
def test_epoch_visits_every_example_once(data_cfg, form):
    c = _form(data_cfg, form, "none")  # "none" = the eval resize: images comparable
    batches = _take(
        data.train_iterator(c, global_batch_size=8, seed=1, process_index=0, process_count=1), 15
    )
    ref = _reference_digests(c)
    assert len(ref) == 40
    orders = []
    for epoch in (batches[:5], batches[5:10], batches[10:]):  # 40 = 5 batches of 8
        labels = np.concatenate([b["label"] for b in epoch])
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [4] * 10)
        digests = [hashlib.sha1(im.tobytes()).hexdigest() for b in epoch for im in b["image"]]
        assert set(digests) == ref  # each of the 40 exactly once (40 distinct, all known)
        orders.append(digests)
    # Different epochs are shuffled differently, and none is the file order.
    assert orders[0] != orders[1] and orders[1] != orders[2]
    file_order = [
        hashlib.sha1(im.tobytes()).hexdigest()
        for b in data.eval_iterator(
            c, "train", global_batch_size=8, process_index=0, process_count=1
        )
        for im in b["image"]
    ]
    assert all(order != file_order for order in orders)


@pytest.mark.parametrize("form", FORMS)
def test_process_slices_partition_the_train_set(data_cfg, form):
    c = _form(data_cfg, form, "none")
    slices = []
    for p in range(2):
        it = data.train_iterator(c, global_batch_size=8, seed=0, process_index=p, process_count=2)
        bs = _take(it, 10)  # each process holds 20 examples = 5 local batches of 4
        assert bs[0]["label"].shape == (4,)
        epochs = [
            [hashlib.sha1(im.tobytes()).hexdigest() for b in e for im in b["image"]]
            for e in (bs[:5], bs[5:])
        ]
        # Each epoch of a process is its slice, once (the second epoch in another order).
        assert len(set(epochs[0])) == 20 and set(epochs[0]) == set(epochs[1])
        slices.append(set(epochs[0]))
    assert not slices[0] & slices[1] and slices[0] | slices[1] == _reference_digests(c)
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


def test_cache_decision(data_cfg):
    # Hand-worked: 32 x 32 pixels, 3 image bytes + 1 mask byte each, 40 examples.
    assert stream.decoded_size((32, 32, 3), 40, True) == 40 * 32 * 32 * 4 == 163840
    assert stream.decoded_size((32, 32, 1), 40, False) == 40 * 32 * 32 * 3
    assert stream.decoded_size((None, None, 3), 40, True) is None  # ImageNet, folders
    assert stream.decoded_size(None, 40, True) is None
    assert stream.fits(2**20, 1) and not stream.fits(2**20 + 1, 1)
    assert not stream.fits(1, 0) and not stream.fits(None, 1024)
    src = pipeline.SOURCES["camjax_shapes"]
    b = src.builder(data_cfg)
    c = data_cfg.copy_and_resolve_references()
    assert pipeline.cache_size(src, b, c, 40) == 163840  # default limit: 1024 MiB
    c.cache_decoded_mb = 1  # 2**20 bytes: 256 examples of 4096 bytes, not 257
    assert pipeline.cache_size(src, b, c, 256) == 2**20
    assert pipeline.cache_size(src, b, c, 257) is None
    c.cache_decoded_mb = 0
    assert pipeline.cache_size(src, b, c, 1) is None


@pytest.mark.parametrize("limit_mb, loads", [(1024, 1), (0, 0)])
def test_cached_form_taken_when_it_fits(data_cfg, monkeypatch, limit_mb, loads):
    calls = []
    real = stream.load
    monkeypatch.setattr(stream, "load", lambda *a, **k: calls.append(a) or real(*a, **k))
    c = data_cfg.copy_and_resolve_references()
    c.cache_decoded_mb = limit_mb
    it = data.train_iterator(c, global_batch_size=8, seed=0, process_index=0, process_count=1)
    assert next(it)["image"].shape == (8, SIZE, SIZE, 3)
    assert len(calls) == loads
    if loads:  # the whole split, decoded to uint8 pixels
        arrays = real(*calls[0])
        assert arrays["image"].shape == (40, SIZE, SIZE, 3) and arrays["image"].dtype == tf.uint8
        assert arrays["mask"].shape == (40, SIZE, SIZE) and arrays["mask"].dtype == tf.uint8
        np.testing.assert_array_equal(np.bincount(arrays["label"].numpy()), [4] * 10)
        assert arrays["box_splits"].numpy().tolist() == list(range(41))  # one box each


def test_reads_are_not_auto_cached(data_cfg):
    """TFDS auto-caches small splits; an iterator dropped mid-epoch (every training run's
    last one) then makes TensorFlow warn that it "did not fully read the dataset being
    cached". No dataset the pipeline reads has a cache."""
    src = pipeline.SOURCES["camjax_shapes"]
    b = src.builder(data_cfg)
    for seed in (None, 3):
        ds = pipeline.read_split(src, b, data_cfg, "train", 0, 1, shuffle_seed=seed)
        graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())
        ops = {n.op for n in graph.node} | {
            n.op for f in graph.library.function for n in f.node_def
        }
        assert "TFRecordDataset" in ops  # the graph is the reading pipeline
        assert not any(op.startswith("CacheDataset") for op in ops), ops
