"""raycond.pose_regressor: appearance-invariant input, learning pose from renders, the per-network cache."""

from __future__ import annotations

import os

import torch

from raycond import pose_regressor as pr


def blob_renders(yaw, pitch, size=32):
    """Stand-in renders whose pose is visible only as where a blob sits (x from yaw, y from pitch)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    cx, cy = (yaw / 40.0)[:, None, None], (pitch / 20.0)[:, None, None]
    img = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 0.05) * 2 - 1
    return img[:, None].repeat(1, 3, 1, 1)


def test_normalised_input_ignores_brightness_and_contrast():
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    darker = img * 0.3 - 0.5
    assert torch.allclose(pr.normalise(img), pr.normalise(darker), atol=1e-3)
    assert pr.normalise(img).shape == (2, 1, 32, 32)


def test_learns_pose_from_renders_at_known_cameras():
    torch.manual_seed(0)
    net = pr.train(blob_renders, (-30.0, 30.0), (-10.0, 10.0), num_samples=128, steps=150, batch=32)
    yaw, pitch = net.predict(blob_renders(torch.tensor([20.0]), torch.tensor([-5.0])))
    assert abs(yaw - 20.0) < 6.0 and abs(pitch + 5.0) < 4.0


def test_regressor_is_trained_once_per_network(monkeypatch, tmp_path):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path))
    calls = []

    def sample(yaw, pitch):
        calls.append(len(yaw))
        return blob_renders(yaw, pitch)

    first = pr.get("abc123", sample, (-30.0, 30.0), (-10.0, 10.0), log=lambda *_: None)
    rendered = sum(calls)
    second = pr.get("abc123", sample, (-30.0, 30.0), (-10.0, 10.0), log=lambda *_: None)
    assert sum(calls) == rendered > 0
    x = blob_renders(torch.tensor([5.0]), torch.tensor([0.0]))
    assert first.predict(x) == second.predict(x)
    assert os.path.isfile(pr.cache_path("abc123", 1024, 800))
