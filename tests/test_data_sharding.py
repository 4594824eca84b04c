"""shard and prefetch_to_device on 8 simulated CPU devices."""

import jax
import numpy as np
import pytest

from camjax import data


def test_shard_and_prefetch_to_device():
    batch = {
        "image": np.arange(16 * 3, dtype=np.float32).reshape(16, 3),
        "path": np.array([f"p{i}" for i in range(16)], dtype=object),
    }
    s = data.shard(batch, 8)
    assert s["image"].shape == (8, 2, 3) and s["path"].shape == (8, 2)
    np.testing.assert_array_equal(s["image"][3, 1], batch["image"][7])
    with pytest.raises(ValueError, match="not divisible"):
        data.shard(batch, 5)
    batches = [data.shard({"x": np.full((8,), float(i), np.float32)}, 8) for i in range(5)]
    out = list(data.prefetch_to_device(iter(batches), size=2))
    assert len(out) == 5
    assert isinstance(out[3]["x"], jax.Array)
    assert {sh.device for sh in out[3]["x"].addressable_shards} == set(jax.local_devices())
    total = jax.pmap(lambda x: jax.lax.psum(x.sum(), "i"), axis_name="i")(out[3]["x"])
    np.testing.assert_allclose(np.asarray(total), np.full(8, 3.0 * 8))
    with pytest.raises(ValueError, match="call shard"):
        list(data.prefetch_to_device(iter([{"x": np.zeros((4, 2))}]), size=1))
