"""The device step of ``camjax extract`` (boxes found on the host after the program) gives
``camjax.extract``'s classes, probabilities and boxes, and its maps at both resolutions."""

import extract_helper as helper
import jax
import numpy as np

from camjax.extract import extract
from camjax.extract.devices import make_step
from camjax.localize import LocalizeSpec


def test_step_matches_camjax_extract():
    loaded = helper.loaded()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, helper.SIZE, helper.SIZE, 3)).astype(np.float32)
    x[:, 4:14, 6:20] += 2.0  # a bright patch, so that boxes are not the whole image
    ref = jax.tree.map(np.asarray, extract(loaded.model, loaded.variables, x, 3))
    # maps="input": the step's input-size maps are rebuilt from the feature maps (what
    # the boxes are taken of); the feature maps themselves pass through unchanged.
    step, n = make_step(loaded.model, loaded.variables, LocalizeSpec(top_k=3), maps="input")
    assert n == jax.local_device_count()
    got = step.finish(step(x), len(x))
    np.testing.assert_array_equal(got["class_ids"], ref["class_ids"])
    np.testing.assert_allclose(got["probs"], ref["probs"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["maps"], ref["maps"], atol=1e-5)
    # Boxes of maps equal up to float rounding: the same boxes unless a pixel sits
    # exactly at the threshold, which these maps do not have.
    np.testing.assert_array_equal(got["boxes"], ref["boxes"])
    assert (got["boxes"][..., 2:] - got["boxes"][..., :2] < helper.SIZE - 1).any()


def test_given_classes_and_layer_reach_camjax_extract(tmp_path):
    from camjax.extract import RunOptions, extract_to, open_extraction

    loaded = helper.loaded()
    images = helper.make_folder(str(tmp_path / "imgs"), n_good=3)
    out = str(tmp_path / "out")
    spec = LocalizeSpec(class_ids=(7, 3), layer="head")
    extract_to(loaded, [images], out, spec, RunOptions(progress=False, batch_size=4))
    ex = open_extraction(out)
    assert ex.settings["class_ids"] == [7, 3] and ex.settings["layer"] == "head"
    recs = list(ex.records())
    assert len(recs) == 3
    a = ex.arrays(0)
    for r in recs:
        assert [c["class_id"] for c in r["top_k"]] == [7, 3]
    # The stored maps are camjax.extract's maps of those classes at feature resolution.
    from camjax.files.images import normalize, read_image

    x = np.stack([normalize(read_image(str(p), helper.SIZE)[0], "unit") for p in a["paths"]])
    want = extract(loaded.model, loaded.variables, x, class_ids=np.asarray([7, 3]),
                   map_resolution="feature", layer="head")  # fmt: skip
    np.testing.assert_allclose(a["maps"].astype(np.float32), np.asarray(want["maps"]), atol=1e-3)
    np.testing.assert_allclose(a["probs"], np.asarray(want["probs"]), rtol=1e-5, atol=1e-7)
