"""The device step of ``camjax extract`` (boxes found on the host after the program) gives
``camjax.extract``'s classes, probabilities and boxes, and its maps at both resolutions."""

import extract_helper as helper
import jax
import numpy as np

from camjax.bulk.devices import make_step
from camjax.extraction import extract


def test_step_matches_camjax_extract():
    loaded = helper.loaded()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, helper.SIZE, helper.SIZE, 3)).astype(np.float32)
    x[:, 4:14, 6:20] += 2.0  # a bright patch, so that boxes are not the whole image
    ref = jax.tree.map(np.asarray, extract(loaded.model, loaded.variables, x, 3))
    # maps="input": the step's input-size maps are rebuilt from the feature maps (what
    # the boxes are taken of); the feature maps themselves pass through unchanged.
    step, n = make_step(loaded.model, loaded.variables, top_k=3, threshold=0.2, maps="input")
    assert n == jax.local_device_count()
    got = step.finish(step(x), len(x))
    np.testing.assert_array_equal(got["class_ids"], ref["class_ids"])
    np.testing.assert_allclose(got["probs"], ref["probs"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["maps"], ref["maps"], atol=1e-5)
    # Boxes of maps equal up to float rounding: the same boxes unless a pixel sits
    # exactly at the threshold, which these maps do not have.
    np.testing.assert_array_equal(got["boxes"], ref["boxes"])
    assert (got["boxes"][..., 2:] - got["boxes"][..., :2] < helper.SIZE - 1).any()
