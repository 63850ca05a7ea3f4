"""Layer naming, cutting the network, and the in-place ReLU trap."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nstbot.engine.vgg import FeatureExtractor, layer_index
from nstbot.engine.weights import build_features
from nstbot.params import VGG16_LAYERS, VGG19_LAYERS


@pytest.fixture(scope="module")
def features() -> nn.Sequential:
    torch.manual_seed(0)
    return build_features().eval()


def test_layer_names_match_torchvision_modules(features: nn.Sequential) -> None:
    assert len(VGG19_LAYERS) == len(features) == 37
    for name, module in zip(VGG19_LAYERS, features, strict=True):
        kind = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}[
            name.rstrip("_0123456789")
        ]
        assert isinstance(module, kind), name
    assert layer_index("relu4_2") == 22
    assert layer_index("conv5_1") == 28
    with pytest.raises(ValueError, match="unknown"):
        layer_index("relu6_1")


def test_cut_after_last_used_layer_and_frozen(features: nn.Sequential) -> None:
    extractor = FeatureExtractor(features, ["relu1_1", "relu3_1"])
    assert len(extractor.net) == layer_index("relu3_1") + 1
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert not extractor.training


def test_conv_output_is_not_overwritten_by_inplace_relu(features: nn.Sequential) -> None:
    extractor = FeatureExtractor(features, ["conv4_2", "relu4_2", "relu1_1"])
    x = torch.rand(1, 3, 40, 40)
    out = extractor(x)
    assert (out["conv4_2"] < 0).any(), "conv4_2 must keep its negative values"
    assert torch.equal(out["relu4_2"], torch.relu(out["conv4_2"]))
    # Against a plain, non-in-place run of the same modules.
    y = (x - extractor.mean) / extractor.std
    for i in range(layer_index("conv4_2") + 1):
        module = features[i]
        y = torch.relu(y) if isinstance(module, nn.ReLU) else module(y)
    assert torch.allclose(out["conv4_2"], y, atol=1e-5)


def test_extractor_normalizes_with_imagenet_statistics(features: nn.Sequential) -> None:
    extractor = FeatureExtractor(features, ["conv1_1"])
    x = torch.rand(1, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(extractor(x)["conv1_1"], features[0]((x - mean) / std), atol=1e-6)


def test_layout_matches_torchvision_vgg19() -> None:
    from torchvision.models import VGG19_Weights, vgg19

    from nstbot.engine.weights import WEIGHTS_FILENAME, WEIGHTS_URL

    reference = vgg19(weights=None).features
    ours = build_features()
    assert [type(m) for m in ours] == [type(m) for m in reference]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    for a, b in zip(ours, reference, strict=True):
        if isinstance(a, nn.Conv2d):
            assert (a.kernel_size, a.padding, a.stride) == (b.kernel_size, b.padding, b.stride)
        if isinstance(a, nn.MaxPool2d):
            assert (a.kernel_size, a.stride) == (b.kernel_size, b.stride)
    assert VGG19_Weights.IMAGENET1K_V1.url == WEIGHTS_URL
    assert WEIGHTS_URL.endswith(WEIGHTS_FILENAME)


def test_layout_matches_torchvision_vgg16() -> None:
    from torchvision.models import VGG16_Weights, vgg16

    from nstbot.engine.weights import MODELS, model_spec

    reference = vgg16(weights=None).features
    ours = build_features(model="vgg16")
    assert [type(m) for m in ours] == [type(m) for m in reference]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    assert VGG16_Weights.IMAGENET1K_V1.url == model_spec("vgg16").url
    assert model_spec("vgg16").filename == "vgg16-397923af.pth"
    assert set(MODELS) == {"vgg19", "vgg16"}


def test_vgg16_layer_names_follow_the_paper() -> None:
    features = build_features(model="vgg16")
    assert len(VGG16_LAYERS) == len(features) == 31
    for name, module in zip(VGG16_LAYERS, features, strict=True):
        kind = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}[name[:4]]
        assert isinstance(module, kind)
    assert layer_index("relu4_2", "vgg16") == 20 and layer_index("relu5_1", "vgg16") == 25
    assert {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"} <= set(VGG16_LAYERS)
    with pytest.raises(ValueError, match="unknown VGG16 layer 'conv3_4'"):
        layer_index("conv3_4", "vgg16")
