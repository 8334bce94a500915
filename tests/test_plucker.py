"""Tests for training.plucker: the official release's quirky embedding, against a slow loop."""

import numpy as np
import torch

from raycond import camera
from training import plucker


def _slow(H, W, K, c2w):
    """Direct transcription of the documented quirks, one pixel at a time."""
    N = c2w.shape[0]
    out = np.zeros((N, 6, H, W))
    kinv = np.eye(3)[None].repeat(N, 0) if K.sum() == 0 else np.linalg.inv(K)
    for n in range(N):
        R, o = c2w[n, :3, :3], c2w[n, :3, 3]
        for row in range(H):
            for col in range(W):
                k = row * W + col                 # flat index of the (H, W) view
                x, y = k // H, k % H              # meshgrid(arange(W), arange(H), 'ij') order
                d = R @ kinv[n] @ np.array([x + 0.5, y + 0.5, 1.0])
                d = d / np.linalg.norm(d)
                out[n, :3, row, col] = d
                out[n, 3:, row, col] = np.cross(o, d)
    return out


def test_plucker_embedding_matches_slow_loop_non_square():
    c = camera.camera_label([0.0, 20.0], [5.0, -10.0])
    c2w, K = camera.split_label(c)
    emb = plucker.plucker_embedding(3, 5, K, c2w)
    assert emb.shape == (2, 6, 3, 5)
    np.testing.assert_allclose(emb.numpy(), _slow(3, 5, K.numpy().astype(np.float64), c2w.numpy().astype(np.float64)), atol=1e-5)


def test_zero_intrinsics_use_identity():
    c2w = camera.orbit_camera([0.1, 0.3], 0.0)
    K = torch.zeros(2, 3, 3)
    emb = plucker.plucker_embedding(4, 4, K, c2w)
    np.testing.assert_allclose(emb.numpy(), _slow(4, 4, np.zeros((2, 3, 3)), c2w.numpy().astype(np.float64)), atol=1e-5)


def test_quirks_differ_from_correct_rays():
    from raycond import rays
    c = camera.camera_label(10.0, 5.0)
    c2w, K = camera.split_label(c)
    official = plucker.plucker_embedding(8, 8, K, c2w)
    # Quirk 1: the optical axis lands on pixel 0 (pixel coordinate 0.5 == principal point).
    torch.testing.assert_close(official[0, :3, 0, 0], c2w[0, :3, 2], atol=1e-6, rtol=0)
    ours = rays.plucker_rays(c, 8)
    assert (official - ours).abs().max() > 0.05


def test_other_official_embeddings():
    c2w, K = camera.split_label(camera.camera_label([0.0, 15.0], 0.0))
    od = plucker.origin_dir_embedding(4, 6, K, c2w)
    pl = plucker.plucker_embedding(4, 6, K, c2w)
    torch.testing.assert_close(od[:, 3:], pl[:, :3])
    torch.testing.assert_close(od[:, :3, 2, 3], c2w[:, :3, 3])
    tp = plucker.two_plane_embedding(4, 6, K, c2w)
    torch.testing.assert_close(tp[:, 2], torch.full((2, 4, 6), -1.0))
    torch.testing.assert_close(tp[:, 5], torch.full((2, 4, 6), 1.0))
