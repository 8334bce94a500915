"""The per-network encoder: it learns camera and latent from pseudo pairs, its file holds no code
and belongs to one network, a file shipped beside a network is used without training, and its
estimate is the inversion's first report and start."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
import torch

from raycond import feature_nets, inversion, loading
from raycond.inversion import encoder as enc


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Offline VGG16, and an empty cache so each test decides whether an encoder exists."""
    monkeypatch.setenv(feature_nets.VGG16_ENV, "file://" + str(tmp_path / "no-vgg16.pkl"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "DEFAULT_CHECKPOINT", str(tmp_path / "no-bundled.pkl"))


def blob_sample(yaw, pitch):
    """Toy pseudo pairs: a bright blob whose x follows yaw and y follows pitch; w = (yaw, pitch, 0, ...)."""
    n = yaw.shape[0]
    grid = torch.linspace(-1, 1, 32)
    x = (yaw / 30).reshape(n, 1, 1) * 0.6
    y = (pitch / 10).reshape(n, 1, 1) * 0.6
    img = torch.exp(-((grid[None, None, :] - x) ** 2 + (grid[None, :, None] - y) ** 2) / 0.05) * 2 - 1
    w = torch.zeros(n, 8)
    w[:, 0], w[:, 1] = yaw / 30, pitch / 10
    return img[:, None].repeat(1, 3, 1, 1), w


@pytest.fixture(scope="module")
def blob_encoder():
    return enc.train(blob_sample, 8, (-30, 30), (-10, 10), num_samples=256, steps=150, batch=16)


def test_encoder_learns_camera_and_latent_of_pseudo_pairs(blob_encoder):
    yaw, pitch = torch.tensor([-20.0, 5.0, 24.0]), torch.tensor([6.0, -7.0, 0.0])
    img, w = blob_sample(yaw, pitch)
    for i in range(3):
        y, p, w_hat = blob_encoder.predict(img[i:i + 1], mirror=False)
        assert abs(y - float(yaw[i])) < 4.0 and abs(p - float(pitch[i])) < 2.0
        assert float((w_hat[0, :2] - w[i, :2]).abs().max()) < 0.25


def test_encoder_file_round_trips_and_holds_no_code(blob_encoder, tmp_path):
    path = str(tmp_path / "net.encoder.safetensors")
    enc.save(blob_encoder, path, "ab" * 20, 256, 150)
    with open(path, "rb") as f:
        assert b"pickle" not in f.read(200) and os.path.getsize(path) < 8 * 2 ** 20
    loaded = enc.read(path, "ab" * 20)
    x = blob_sample(torch.tensor([12.0]), torch.tensor([-3.0]))[0]
    assert loaded.predict(x)[:2] == pytest.approx(blob_encoder.predict(x)[:2], abs=0.1)   # float16 weights


def test_encoder_file_of_another_network_or_not_an_encoder_is_refused(blob_encoder, tmp_path):
    path = str(tmp_path / "net.encoder.safetensors")
    enc.save(blob_encoder, path, "ab" * 20, 256, 150)
    with pytest.raises(ValueError, match="is the encoder of another network"):
        enc.read(path, "cd" * 20)
    junk = tmp_path / "junk.encoder.safetensors"
    junk.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ValueError, match=f"{junk} is not an encoder file"):
        enc.read(str(junk))


def test_first_inversion_trains_and_caches_the_encoder_then_reuses_it(small_pickle):
    target = np.full((32, 32, 3), 120, np.uint8)
    lines = []
    inversion.invert(small_pickle, target, num_steps=1, tune_steps=0, log=lines.append)
    assert any("training this network's encoder" in line for line in lines)
    assert len(os.listdir(os.path.join(os.environ["DNNLIB_CACHE_DIR"], "raycond-encoder"))) == 1
    lines.clear()
    res = inversion.invert(small_pickle, target, num_steps=1, tune_steps=0, log=lines.append)
    assert not any("encoder" in line for line in lines) and res.meta["camera_start"] == "encoder"


def test_encoder_shipped_beside_the_network_is_used_without_training(small_pickle, tmp_path):
    G = loading.load_network(small_pickle)
    fp = inversion.fingerprint(G)
    net = enc.Encoder(G.w_dim, (-30, 30), (-10, 10))
    with torch.no_grad():
        net.camera_head.weight.zero_()
        net.camera_head.bias.copy_(torch.tensor([0.5, -0.3]))      # yaw 15, pitch -3 for the photo and its mirror image
    copy = tmp_path / "net.pkl"
    shutil.copy(small_pickle, copy)
    enc.save(net, enc.shipped_path(str(copy)), fp, 1, 1)
    reports, lines = [], []
    res = inversion.invert(str(copy), np.full((32, 32, 3), 90, np.uint8), num_steps=0, tune_steps=0,
                           progress=lambda *a: reports.append(a), log=lines.append)
    assert not any("training" in line for line in lines)
    # The camera is the mean of the photo's estimate and its mirror image's with yaw negated back.
    assert (res.meta["yaw_deg"], res.meta["pitch_deg"]) == pytest.approx((0.0, -3.0), abs=0.01)   # float16 file
    step, total, stage, loss, preview = reports[0]
    assert (step, total, stage) == (1, 1, "camera") and math.isfinite(loss) and preview.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("header, expected", [
    ({"w_dim": "16"}, "header field 'camera' missing"),
    ({"w_dim": "1000000000", "camera": '{"centre": [0, 0], "span": [1, 1]}'}, "out of bounds"),
    ({"w_dim": "16", "camera": '{"centre": [0, 0], "span": ["nan", 1]}'}, "out of bounds"),
])
def test_encoder_header_is_checked_before_anything_is_built(tmp_path, header, expected):
    from safetensors.torch import save as st_save
    path = tmp_path / "bad.encoder.safetensors"
    path.write_bytes(st_save({"x": torch.zeros(1)}, metadata={"format": enc.FORMAT, **header}))
    with pytest.raises(ValueError, match=expected) as info:
        enc.read(str(path))
    assert str(path) in str(info.value)
