"""Tests for raycond.camera: poses, intrinsics, labels, mirroring, stats, paths."""

import json
import math

import numpy as np
import pytest
import torch

from raycond import camera


def test_frontal_orbit_camera_hand_values():
    pose = camera.orbit_camera(0.0, 0.0)
    assert pose.shape == (1, 4, 4) and pose.dtype == torch.float32
    # Camera at +z looking toward -z: x right = world +x, y down = world -y, z forward = world -z.
    expected = torch.tensor([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(pose[0], expected, atol=1e-6, rtol=0)


def test_yaw_pitch_signs_and_positions():
    yaw = torch.tensor([math.pi / 2, 0.0, 0.3])
    pitch = torch.tensor([0.0, math.pi / 6, -0.2])
    pose = camera.orbit_camera(yaw, pitch, radius=2.7)
    pos = pose[:, :3, 3]
    torch.testing.assert_close(pos[0], torch.tensor([2.7, 0.0, 0.0]), atol=1e-5, rtol=0)     # +yaw -> +x
    torch.testing.assert_close(pos[1], torch.tensor([0.0, -1.35, 2.7 * math.cos(math.pi / 6)]), atol=1e-5, rtol=0)
    assert pos[2, 0] > 0 and pos[2, 1] > 0                                                     # -pitch -> +y
    torch.testing.assert_close(pos.norm(dim=1), torch.full((3,), 2.7), atol=1e-5, rtol=0)


@pytest.mark.parametrize('lookat', [(0, 0, 0.2), (0.1, -0.3, 0.0)])
def test_orbit_camera_looks_at_target_and_is_right_handed(lookat):
    yaw = torch.linspace(-1.0, 1.0, 7)
    pose = camera.orbit_camera(yaw, 0.25, radius=2.0, lookat=lookat)
    R, o = pose[:, :3, :3], pose[:, :3, 3]
    to_target = torch.tensor(lookat, dtype=torch.float32) - o
    to_target = to_target / to_target.norm(dim=1, keepdim=True)
    torch.testing.assert_close(R[:, :, 2], to_target, atol=1e-6, rtol=0)
    torch.testing.assert_close(R.transpose(1, 2) @ R, torch.eye(3).expand(7, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(7), atol=1e-6, rtol=0)
    assert (R[:, 1, 1] < 0).all()          # camera y (down) points toward world -y
    assert (R[:, 1, 0].abs() < 1e-6).all()  # camera x stays horizontal (no roll)


def test_eg3d_lookat_pose_matches_orbit():
    # Horizontal angle pi/2 + yaw is our yaw; vertical pi/2 + delta is true pitch asin(2 delta / pi).
    for yaw, delta in [(0.0, 0.0), (0.4, 0.0), (-0.3, 0.2), (0.2, -0.25)]:
        eg = camera.eg3d_lookat_pose(math.pi / 2 + yaw, math.pi / 2 + delta, (0, 0, 0.2), 2.7)
        ours = camera.orbit_camera(yaw, math.asin(2 * delta / math.pi), 2.7, (0, 0, 0.2))
        torch.testing.assert_close(eg, ours, atol=1e-5, rtol=0)


def test_yaw_pitch_from_pose_inverts_orbit():
    yaw = torch.tensor([-0.7, 0.0, 0.5])
    pitch = torch.tensor([0.1, -0.3, 0.2])
    y, p, r = camera.yaw_pitch_from_pose(camera.orbit_camera(yaw, pitch, radius=1.7))
    torch.testing.assert_close(y, yaw, atol=1e-5, rtol=0)
    torch.testing.assert_close(p, pitch, atol=1e-5, rtol=0)
    torch.testing.assert_close(r, torch.full((3,), 1.7), atol=1e-5, rtol=0)


def test_intrinsics_conventions():
    assert camera.eg3d_focal_from_fov(18.837) == pytest.approx(4.2634, abs=5e-4)
    assert camera.fov_from_focal(4.2647) == pytest.approx(13.37, abs=0.01)
    assert camera.focal_from_fov(90.0) == pytest.approx(0.5)
    assert camera.fov_from_focal(camera.focal_from_fov(30.0)) == pytest.approx(30.0)
    K = camera.intrinsics_from_fov(90.0)
    torch.testing.assert_close(K, torch.tensor([[0.5, 0, 0.5], [0, 0.5, 0.5], [0, 0, 1.0]]))
    assert float(camera.intrinsics_from_eg3d_fov(18.837)[0, 0]) == pytest.approx(4.2634, abs=5e-4)
    with pytest.raises(ValueError, match='fov'):
        camera.focal_from_fov(0)
    with pytest.raises(ValueError, match='focal'):
        camera.intrinsics_from_focal(-1.0)


def test_label_round_trip_and_validation():
    pose = camera.orbit_camera(torch.tensor([0.1, -0.2]), 0.05)
    K = camera.intrinsics_from_focal(4.2647)
    c = camera.make_label(pose, K)
    assert c.shape == (2, 25) and c.dtype == torch.float32
    assert float(c[0, 3]) == pytest.approx(float(pose[0, 0, 3]))       # row-major translation x
    assert float(c[0, 16]) == pytest.approx(4.2647) and float(c[0, 18]) == pytest.approx(0.5)
    pose2, K2 = camera.split_label(c)
    torch.testing.assert_close(pose2, pose)
    torch.testing.assert_close(K2, K.expand(2, 3, 3))
    with pytest.raises(ValueError, match='25'):
        camera.validate_label(torch.zeros(2, 24))
    bad = c.clone()
    bad[1, 5] = float('nan')
    with pytest.raises(ValueError, match='non-finite'):
        camera.validate_label(bad)


def test_presets_and_camera_label():
    assert set(camera.PRESETS) == {'ffhq', 'afhq', 'cars'}
    assert camera.get_preset('cars').focal == 1.025390625
    with pytest.raises(ValueError, match='ffhq'):
        camera.get_preset('nope')
    c = camera.camera_label([0.0, 20.0], 0.0, preset='afhq')
    pose, K = camera.split_label(c)
    assert float(K[0, 0, 0]) == pytest.approx(4.2647)
    torch.testing.assert_close(pose[0, :3, 3], torch.tensor([0.0, 0.0, 2.7]), atol=1e-6, rtol=0)
    fwd = torch.tensor([0.0, 0.0, -0.06]) - pose[1, :3, 3]
    torch.testing.assert_close(pose[1, :3, 2], fwd / fwd.norm(), atol=1e-6, rtol=0)
    c2 = camera.camera_label(0.0, 0.0, fov_deg=90.0)
    assert float(c2[0, 16]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='either'):
        camera.camera_label(0, 0, fov_deg=10, focal=4)


def test_mirror_label():
    c = camera.camera_label([30.0, -12.0], [10.0, -5.0])
    m = camera.mirror_label(c)
    torch.testing.assert_close(camera.mirror_label(m), c)
    pose, _ = camera.split_label(c)
    mpose, mK = camera.split_label(m)
    torch.testing.assert_close(mpose[:, :3, 3], pose[:, :3, 3] * torch.tensor([-1.0, 1, 1]))
    torch.testing.assert_close(torch.linalg.det(mpose[:, :3, :3]), torch.ones(2))
    # For a look-at on the plane x = 0, mirroring is the same as negating yaw.
    torch.testing.assert_close(m, camera.camera_label([-30.0, 12.0], [10.0, -5.0]), atol=1e-6, rtol=0)
    # Principal point cx -> 1 - cx.
    c3 = c.clone()
    c3[:, 18] = 0.3
    assert float(camera.mirror_label(c3)[0, 18]) == pytest.approx(0.7)
    # numpy in, numpy out
    assert isinstance(camera.mirror_label(c.numpy()), np.ndarray)


def test_camera_stats_from_labels():
    rng = np.random.default_rng(0)
    yaw = rng.uniform(-30, 30, 200)
    pitch = rng.uniform(-10, 10, 200)
    c = camera.camera_label(yaw, pitch)
    stats = camera.camera_stats_from_labels(c.numpy())
    json.dumps(stats)
    assert stats['num_labels'] == 200
    assert stats['radius'] == pytest.approx(2.7, abs=1e-4)
    np.testing.assert_allclose(stats['lookat'], [0, 0, 0.2], atol=1e-4)
    assert stats['focal'] == pytest.approx(4.2647)
    assert stats['fov_deg'] == pytest.approx(13.37, abs=0.01)
    assert -30 <= stats['yaw_range_deg'][0] < -27 and 27 < stats['yaw_range_deg'][1] <= 30
    assert -10 <= stats['pitch_range_deg'][0] < -9 and 9 < stats['pitch_range_deg'][1] <= 10
    assert stats['yaw_mean_deg'] == pytest.approx(yaw.mean(), abs=1e-3)


def test_orbit_path():
    y, p = camera.orbit_path('yaw-pitch-ellipse', 8, (-30, 30), (-10, 10))
    assert len(y) == len(p) == 8
    assert y[0] == pytest.approx(0) and p[0] == pytest.approx(10) and y[2] == pytest.approx(30)
    y, p = camera.orbit_path('sweep', 5, (-20, 40), (0, 10))
    np.testing.assert_allclose(y, [-20, -5, 10, 25, 40])
    np.testing.assert_allclose(p, 5)
    y, p = camera.orbit_path('turntable', 4, (-20, 20), (-4, 4))
    np.testing.assert_allclose(y, [0, 20, 0, -20], atol=1e-9)
    with pytest.raises(ValueError, match='turntable'):
        camera.orbit_path('spiral', 4)


def test_label_is_pose_then_intrinsics():
    label = camera.camera_label(10.0, 5.0)
    assert camera.LABEL_DIM == camera.POSE_DIM + camera.INTRINSICS_DIM == 25
    assert label.shape == (1, camera.LABEL_DIM)
    pose, K = camera.split_label(label)
    torch.testing.assert_close(label[0, :camera.POSE_DIM], pose.reshape(-1))
    torch.testing.assert_close(label[0, camera.POSE_DIM:], K.reshape(-1))
