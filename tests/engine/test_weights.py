"""Weight loading, hash checks, corrupt files and download from a loopback HTTP server."""

from __future__ import annotations

import functools
import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from nstbot.engine.errors import WeightsError
from nstbot.engine.weights import (
    build_features,
    download_weights,
    find_weights,
    load_features,
    sha256_of,
    verify_weights,
)


def write_torchvision_layout(folder: Path, *, seed: int = 1, name_with_hash: bool = True) -> Path:
    """A weights file in torchvision's key layout (features.N.weight, classifier.N.weight)."""
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in build_features().state_dict().items()}
    # A small stand-in for the classifier: the loader must ignore it.
    state["classifier.6.weight"] = torch.zeros(10, 4)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "vgg19.tmp"
    torch.save(state, tmp)
    if not name_with_hash:
        return tmp.rename(folder / "vgg19-custom.pth")
    return tmp.rename(folder / f"vgg19-{sha256_of(tmp)[:8]}.pth")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_torchvision_layout(tmp_path_factory.mktemp("weights"))


@pytest.fixture(autouse=True)
def isolated_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_loads_configured_file(weights_file: Path) -> None:
    features, description = load_features(str(weights_file), allow_download=False)
    saved = torch.load(weights_file, weights_only=True)
    assert torch.equal(features[0].weight, saved["features.0.weight"])
    assert torch.equal(features[34].bias, saved["features.34.bias"])
    assert weights_file.name in description


def test_hash_mismatch_is_reported(weights_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / weights_file.name
    data = bytearray(weights_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"corrupt .*nstbot weights download"):
        load_features(str(broken), allow_download=False)
    report = verify_weights(broken)
    assert not report.ok and "corrupt" in report.detail


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    good = write_torchvision_layout(tmp_path / "src", name_with_hash=False)
    truncated = tmp_path / "vgg19-custom.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(WeightsError, match=r"cannot be read .*nstbot weights download"):
        load_features(str(truncated), allow_download=False)


def test_wrong_layout_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    state = {f"features.{k}": v for k, v in build_features().state_dict().items()}
    del state["features.28.weight"]
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"features\.28\.weight"):
        load_features(str(path), allow_download=False)
    state["features.28.weight"] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(WeightsError, match="wrong shape"):
        load_features(str(path), allow_download=False)


def test_missing_weights_with_download_off(isolated_torch_home: Path) -> None:
    with pytest.raises(WeightsError, match=r"not found .*nstbot weights download"):
        load_features("auto", allow_download=False)
    with pytest.raises(WeightsError, match="not found at /nonexistent"):
        load_features("/nonexistent/vgg19.pth", allow_download=True)


def test_random_mode_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        features, description = load_features("random", allow_download=False)
    assert "RANDOM" in caplog.text
    assert description.startswith("random")
    again, _ = load_features("random", allow_download=False)
    assert torch.equal(features[0].weight, again[0].weight)  # the same network every time


@pytest.fixture
def http_server(weights_file: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve the weights file's folder on 127.0.0.1; yields (base URL, request paths)."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(weights_file.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_download_from_loopback(http_server, weights_file: Path, isolated_torch_home: Path) -> None:
    base, requests = http_server
    path = download_weights(url=f"{base}/{weights_file.name}", progress=False)
    assert path.name.startswith("vgg19-features-") and path.parent.name == "checkpoints"
    copy = torch.load(path, weights_only=True)
    assert len(copy) == 32 and not any(k.startswith("classifier") for k in copy)
    assert verify_weights(path).ok
    assert find_weights() == path  # the features-only copy is preferred
    assert requests and requests[0].startswith(f"/{weights_file.name}")
    features, _ = load_features("auto", allow_download=False)
    saved = torch.load(weights_file, weights_only=True)
    assert torch.equal(features[2].weight, saved["features.2.weight"])


def test_first_run_downloads_when_allowed(http_server, weights_file: Path) -> None:
    base, _ = http_server
    _, description = load_features(
        "auto", allow_download=True, url=f"{base}/{weights_file.name}", progress=False
    )
    assert "vgg19-features-" in description


def test_download_with_bad_hash_fails(http_server, weights_file: Path, tmp_path: Path) -> None:
    base, _ = http_server
    (weights_file.parent / "vgg19-00000000.pth").write_bytes(weights_file.read_bytes())
    with pytest.raises(WeightsError, match="hash"):
        download_weights(url=f"{base}/vgg19-00000000.pth", dest_dir=tmp_path / "d", progress=False)
    assert not list((tmp_path / "d").glob("*.pth"))


def test_download_unreachable_host(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="could not download"):
        download_weights(
            url="http://127.0.0.1:9/vgg19-dcbb9e9d.pth", dest_dir=tmp_path, progress=False
        )


def write_vgg16_layout(folder: Path) -> Path:
    """A VGG16 weights file in torchvision's layout, named with its hash like vgg16-397923af.pth."""
    torch.manual_seed(2)
    state = {f"features.{k}": v for k, v in build_features(model="vgg16").state_dict().items()}
    state["classifier.6.weight"] = torch.zeros(10, 4)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "vgg16.tmp"
    torch.save(state, tmp)
    return tmp.rename(folder / f"vgg16-{sha256_of(tmp)[:8]}.pth")


def test_vgg16_loads_and_verifies(tmp_path: Path) -> None:
    path = write_vgg16_layout(tmp_path)
    features, description = load_features(str(path), model="vgg16", allow_download=False)
    assert len(features) == 31 and "vgg16" in description
    saved = torch.load(path, weights_only=True)
    assert torch.equal(features[28].weight, saved["features.28.weight"])
    report = verify_weights(path, model="vgg16")
    assert report.ok and "26 VGG16 feature tensors" in report.detail


def test_other_models_file_is_refused_with_a_hint(tmp_path: Path, weights_file: Path) -> None:
    vgg16 = write_vgg16_layout(tmp_path)
    with pytest.raises(WeightsError, match=r"VGG19 .*check engine\.model"):
        load_features(str(vgg16), model="vgg19", allow_download=False)
    with pytest.raises(WeightsError, match=r"VGG16 .*check engine\.model"):
        load_features(str(weights_file), model="vgg16", allow_download=False)
    assert not verify_weights(weights_file, model="vgg16").ok


def test_unknown_model_is_refused() -> None:
    with pytest.raises(WeightsError, match=r"engine\.model must be one of vgg19, vgg16"):
        load_features("random", model="vgg11")


def test_vgg16_download_and_lookup_are_per_model(tmp_path: Path) -> None:
    source = write_vgg16_layout(tmp_path / "src")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(source.parent))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{source.name}"
        copy = download_weights(url=url, model="vgg16", progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert copy.name.startswith("vgg16-features-")
    assert find_weights(model="vgg16") == copy
    assert find_weights(model="vgg19") is None  # a VGG16 file never stands in for VGG19
    features, _ = load_features("auto", model="vgg16", allow_download=False)
    assert torch.equal(features[0].bias, torch.load(source, weights_only=True)["features.0.bias"])
