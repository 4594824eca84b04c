"""torchvision layouts -> camjax backbones: same random weights, same feature map.

torchvision itself is not installed here, so each reference trunk is rebuilt from plain
``torch.nn`` with torchvision's module names (hence its state-dict keys); weights and BN
running statistics are randomised, the state dict is mapped with
``TORCHVISION_MAPPINGS`` and the Flax backbone's map must equal the torch trunk's output
(eval mode, one image, small odd input sizes so that padding and ceil-mode pooling are
exercised). Tolerance: max abs difference <= 1e-4 x the largest activation (float32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camjax import models
from camjax.pretrained.torchvision import TORCHVISION_MAPPINGS

# The PyTorch reference: torch==2.13.0's CPU wheel exists for Python 3.11 only, so the
# test extra installs it there (CI's lower-bound run); elsewhere these tests are skipped.
TORCH_REASON = "PyTorch reference: torch 2.13.0 CPU is installed on Python 3.11 only"

torch = pytest.importorskip("torch", reason=TORCH_REASON)
nn = torch.nn
F = torch.nn.functional
torch.set_num_threads(1)  # 2 cores shared by the whole suite

RTOL = 1e-4


# ---- torch references with torchvision's names --------------------------------------------


class VGG16(nn.Module):
    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for v in (
            64,
            64,
            "M",
            128,
            128,
            "M",
            256,
            256,
            256,
            "M",
            512,
            512,
            512,
            "M",
            512,
            512,
            512,
            "M",
        ):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)

    def trunk(self, x):
        return self.features[:30](x)  # up to conv5_3 + ReLU; index 30 is pool5


class AlexNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )

    def trunk(self, x):
        return self.features[:12](x)  # up to conv5 + ReLU


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(cin, c3r, kernel_size=1), BasicConv2d(c3r, c3, kernel_size=3, padding=1)
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(cin, c5r, kernel_size=1), BasicConv2d(c5r, c5, kernel_size=3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(cin, cp, kernel_size=1),
        )

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.fc = nn.Linear(1024, 1000)

    def trunk(self, x):
        # torchvision's transform_input=True, written as torchvision writes it.
        x = torch.cat(
            [
                x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5,
            ],
            1,
        )
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            x = getattr(self, name)(x)
        return x


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.downsample = None
        if stride != 1 or cin != 4 * width:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, 4 * width, 1, stride=stride, bias=False),
                nn.BatchNorm2d(4 * width),
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        # layer4 at stride 1, as the WSOL benchmark builds it; shapes equal torchvision's.
        for i, (width, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 1)], start=1
        ):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = 4 * width
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.fc = nn.Linear(2048, 1000)

    def trunk(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _randomize(module: nn.Module, seed: int) -> dict[str, np.ndarray]:
    """He-normal conv weights, random BN affine and running statistics; the state dict."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    module.eval()
    return {k: v.numpy().copy() for k, v in module.state_dict().items()}


# Keys of torchvision's files that the reference modules above do not build (they are big
# or unused): small stand-ins under the real names, which the mapping must ignore.
EXTRA_IGNORED = {
    "vgg16_gap": [
        "classifier.0.weight",
        "classifier.0.bias",
        "classifier.3.weight",
        "classifier.3.bias",
        "classifier.6.weight",
        "classifier.6.bias",
    ],
    "alexnet_gap": [
        "classifier.1.weight",
        "classifier.1.bias",
        "classifier.4.weight",
        "classifier.4.bias",
        "classifier.6.weight",
        "classifier.6.bias",
    ],
    "googlenet_gap": [
        "aux1.conv.conv.weight",
        "aux1.conv.bn.running_mean",
        "aux1.fc1.weight",
        "aux1.fc2.bias",
        "aux2.conv.conv.weight",
        "aux2.fc2.weight",
    ],
    "resnet50_gap": [],
}

CASES = [
    # name, torch reference, input side, kwargs, map side
    ("vgg16_gap", VGG16, 35, {}, 2),  # 35 -> 17 -> 8 -> 4 -> 2
    ("alexnet_gap", AlexNet, 67, {}, 3),  # conv1 16 -> 7 -> 3
    ("googlenet_gap", GoogLeNet, 35, {"transform_input": True}, 2),  # 18 -> 9 -> 4 -> 2
    ("resnet50_gap", ResNet50, 33, {}, 3),  # 17 -> 9 -> 5 -> 3 -> 3
]


def _backbone_variables(variables):
    return {col: tree["backbone"] for col, tree in variables.items()}


@pytest.mark.parametrize("name,reference,size,kwargs,side", CASES, ids=[c[0] for c in CASES])
def test_torch_trunk_equals_flax_backbone(name, reference, size, kwargs, side):
    ref = reference()
    state = _randomize(ref, seed=len(name))
    for key in EXTRA_IGNORED[name]:
        state[key] = np.ones((3, 2), np.float32)  # any shape: ignored by name
    model = models.create(name, 10, **kwargs)
    x = np.random.default_rng(0).standard_normal((1, size, size, 3)).astype(np.float32)
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct(x.shape, jnp.float32)
    )
    variables = TORCHVISION_MAPPINGS[name](state, shapes)
    # The head is not in the file: it comes back exactly as given (here: shapes).
    assert jax.tree.leaves(variables["params"]["head"]) == jax.tree.leaves(shapes["params"]["head"])

    got = jax.jit(lambda v, x: model.backbone.apply(v, x, train=False))(
        _backbone_variables(variables), x
    )
    with torch.no_grad():
        want = ref.trunk(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    assert got.shape == want.shape == (1, side, side, want.shape[-1])
    scale = float(np.abs(want).max())
    assert scale > 1e-3  # a dead map would make the comparison vacuous
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=RTOL * scale)


def test_mapping_table_covers_every_paper_model():
    assert set(TORCHVISION_MAPPINGS) == {
        "vgg16_gap",
        "alexnet_gap",
        "alexnet_star_gap",
        "googlenet_gap",
        "googlenet_gmp",
        "resnet50_gap",
    }


@pytest.fixture(scope="module")
def alexnet_case():
    state = _randomize(AlexNet(), seed=7)
    model = models.create("alexnet_star_gap", 4)
    x = jax.ShapeDtypeStruct((1, 67, 67, 3), jnp.float32)
    rng = np.random.default_rng(1)
    # Concrete stand-in values (no init compile): the mapping must keep the head's.
    variables = jax.tree.map(
        lambda s: rng.standard_normal(s.shape).astype(np.float32),
        jax.eval_shape(model.init, jax.random.key(0), x),
    )
    return state, model, variables


def test_head_kept_and_kernels_transposed(alexnet_case):
    state, model, variables = alexnet_case
    mapped = TORCHVISION_MAPPINGS["alexnet_star_gap"](state, variables)
    for a, b in zip(
        jax.tree.leaves(mapped["params"]["head"]),
        jax.tree.leaves(variables["params"]["head"]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    # features.3.weight is [192, 64, 5, 5] (OIHW); Flax wants [5, 5, 64, 192] (HWIO).
    kernel = mapped["params"]["backbone"]["features_3"]["kernel"]
    assert kernel.shape == (5, 5, 64, 192)
    np.testing.assert_array_equal(kernel[1, 4, 10, 7], state["features.3.weight"][7, 10, 1, 4])


def test_bad_state_dicts_list_every_problem(alexnet_case):
    state, _, variables = alexnet_case
    bad = dict(state)
    del bad["features.8.bias"]
    bad["features.99.weight"] = np.zeros((1,), np.float32)
    bad["features.6.weight"] = np.zeros((384, 192, 5, 5), np.float32)
    with pytest.raises(ValueError) as err:
        TORCHVISION_MAPPINGS["alexnet_gap"](bad, variables)
    msg = str(err.value)
    assert "missing (1): features.8.bias" in msg
    assert "unexpected (1): features.99.weight" in msg
    assert "mis-shaped (1): features.6.weight" in msg
    # A ResNet file offered to AlexNet: everything is missing and unexpected, nothing maps.
    with pytest.raises(ValueError, match="missing"):
        TORCHVISION_MAPPINGS["alexnet_gap"]({"fc.weight": np.zeros((2, 2))}, variables)


def test_bn_running_stats_go_to_batch_stats():
    ref = ResNet50()
    state = _randomize(ref, seed=3)
    model = models.create("resnet50_gap", 2)
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 33, 33, 3), jnp.float32)
    )
    mapped = TORCHVISION_MAPPINGS["resnet50_gap"](state, shapes)
    stats = mapped["batch_stats"]["backbone"]["layer1_0"]["downsample_1"]
    np.testing.assert_array_equal(stats["mean"], state["layer1.0.downsample.1.running_mean"])
    np.testing.assert_array_equal(stats["var"], state["layer1.0.downsample.1.running_var"])
    scale = mapped["params"]["backbone"]["layer4_2"]["bn3"]["scale"]
    np.testing.assert_array_equal(scale, state["layer4.2.bn3.weight"])


def test_pth_file_through_load_into(alexnet_case, tmp_path):
    # End to end: a torch-saved file, read without torch by camjax.pretrained's reader.
    from camjax.pretrained import MAPPINGS, load_into

    state, _, variables = alexnet_case
    assert MAPPINGS["alexnet_star_gap"] is TORCHVISION_MAPPINGS["alexnet_star_gap"]
    path = tmp_path / "alexnet.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    mapped = load_into("alexnet_star_gap", path, variables)
    np.testing.assert_array_equal(
        mapped["params"]["backbone"]["features_10"]["bias"], state["features.10.bias"]
    )
