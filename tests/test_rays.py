"""Tests for raycond.rays: Plücker embeddings and their conventions."""

import numpy as np
import pytest
import torch

from raycond import camera, rays


def _labels():
    return camera.camera_label([0.0, 25.0, -40.0], [0.0, -10.0, 15.0])


def test_plucker_shape_unit_dirs_and_moments():
    c = _labels()
    emb = rays.plucker_rays(c, (6, 10))
    assert emb.shape == (3, 6, 6, 10) and emb.dtype == torch.float32
    d, m = emb[:, :3], emb[:, 3:]
    torch.testing.assert_close(d.norm(dim=1), torch.ones(3, 6, 10), atol=1e-6, rtol=0)
    assert (d * m).sum(1).abs().max() < 1e-5
    o = camera.split_label(c)[0][:, :3, 3].numpy()
    dn = d.permute(0, 2, 3, 1).numpy()
    expect = np.cross(np.broadcast_to(o[:, None, None, :], dn.shape), dn)
    np.testing.assert_allclose(m.permute(0, 2, 3, 1).numpy(), expect, atol=1e-5)


def test_top_left_ray_hand_value():
    c = camera.camera_label(0.0, 0.0)                     # camera at (0,0,2.7), f = 4.2647
    d = rays.plucker_rays(c, 4)[0, :3, 0, 0]
    a = (0.125 - 0.5) / 4.2647                           # u = v = (0 + 0.5)/4
    expect = torch.tensor([a, -a, -1.0])                  # x right = +x, y down = -y, forward = -z
    torch.testing.assert_close(d, expect / expect.norm(), atol=1e-6, rtol=0)


def test_centre_ray_points_at_lookat():
    c = _labels()
    o, d = rays.pixel_rays(c, 5)
    centre = d[:, 2, 2]
    target = torch.tensor([0.0, 0.0, 0.2]) - o
    torch.testing.assert_close(centre, target / target.norm(dim=1, keepdim=True), atol=1e-6, rtol=0)


def test_same_field_of_view_at_every_resolution():
    c = _labels()
    pose = camera.split_label(c)[0]
    def image_plane(res):
        _, d = rays.pixel_rays(c, res)
        cam = torch.einsum('nji,nhwj->nhwi', pose[:, :3, :3], d)     # R^T d: camera space
        return cam[..., :2] / cam[..., 2:]
    lo, hi = image_plane(4), image_plane(8)
    # Each low-res pixel centre is the mean of the 2x2 high-res pixel centres inside it.
    pooled = hi.reshape(3, 4, 2, 4, 2, 2).mean((2, 4))
    torch.testing.assert_close(lo, pooled, atol=1e-6, rtol=0)
    # The outer pixel edges sit at +-0.5/f at every resolution.
    for res in (4, 16):
        p = image_plane(res)
        half_pixel = 0.5 / res / 4.2647
        assert float(p[0, 0, 0, 0]) == pytest.approx(-0.5 / 4.2647 + half_pixel, abs=1e-6)


def test_mirrored_camera_gives_flipped_rays():
    c = _labels()
    e = rays.plucker_rays(c, 8)
    em = rays.plucker_rays(camera.mirror_label(c), 8)
    flipped = torch.flip(e, dims=[3])
    sign = torch.tensor([-1.0, 1, 1, 1, -1, -1]).view(1, 6, 1, 1)  # d -> M d, m = Mo x Md = -M m
    torch.testing.assert_close(em, flipped * sign, atol=1e-5, rtol=0)


def test_other_embeddings():
    c = _labels()
    od = rays.ray_embedding('origin_dir', c, 4)
    o = camera.split_label(c)[0][:, :3, 3]
    torch.testing.assert_close(od[:, :3, 1, 2], o)
    torch.testing.assert_close(od[:, 3:], rays.plucker_rays(c, 4)[:, :3])
    tp = rays.two_plane_rays(c, 4)
    assert tp.shape == (3, 6, 4, 4)
    torch.testing.assert_close(tp[:, 2], torch.full((3, 4, 4), -1.0))
    torch.testing.assert_close(tp[:, 5], torch.full((3, 4, 4), 1.0))
    # both points lie on the ray: (p - o) x d == 0
    d = od[:, 3:].permute(0, 2, 3, 1)
    p = tp[:, :3].permute(0, 2, 3, 1) - o[:, None, None]
    assert torch.cross(p, d, dim=-1).abs().max() < 1e-4
    assert set(rays.EMBEDDINGS) == {'plucker', 'origin_dir', 'two_plane'}
    with pytest.raises(ValueError, match='plucker'):
        rays.ray_embedding('nerf', c, 4)


def test_cache_and_errors():
    rays.clear_cache()
    c = _labels()
    a = rays.plucker_rays(c, 8)
    b = rays.plucker_rays(c.clone(), 8)
    assert a is b                                         # cached on content, not identity
    c2 = c.clone()
    c2[0, 3] += 0.1
    assert rays.plucker_rays(c2, 8) is not a
    multi = rays.ray_embeddings_for_resolutions('plucker', c, [4, 8])
    assert multi[8] is a and multi[4].shape == (3, 6, 4, 4)
    assert rays.plucker_rays(c.double(), 4).dtype == torch.float64
    with pytest.raises(ValueError, match='25'):
        rays.plucker_rays(torch.zeros(2, 16), 4)
    with pytest.raises(ValueError, match='resolution'):
        rays.plucker_rays(c, 'big')
