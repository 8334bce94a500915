"""The camera-regression loss (`--pose-weight`): D's head learns the viewing direction from real
images only, G is asked to match it after a ramp, and train.py wires it for camera configs only."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import make_camera_zip
from raycond import camera as cam
from raycond import rundir
from training import loss as loss_mod
from training import networks_raycond2 as rc

RES = 16


def _nets(pose_head=True, seed=0):
    torch.manual_seed(seed)
    G = rc.Generator(z_dim=8, c_dim=cam.LABEL_DIM, w_dim=8, img_resolution=RES, img_channels=3,
                     mapping_kwargs=dict(num_layers=1), channel_base=128, channel_max=16, num_fp16_res=0,
                     conv_clamp=None)
    D = rc.Discriminator(img_resolution=RES, channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=None,
                         pose_head=pose_head)
    return G, D


def _cameras(n, rnd):
    return cam.camera_label(rnd.uniform(-40, 40, n), rnd.uniform(-20, 20, n), fov_deg=18.0)


def _posed_images(c):
    """Images whose content shows the camera: a bright blob that moves with yaw and pitch."""
    yaw, pitch, _ = cam.yaw_pitch_from_pose(c[:, :cam.POSE_DIM].reshape(-1, 4, 4))
    coords = torch.linspace(-1, 1, RES)
    y, x = torch.meshgrid(coords, coords, indexing='ij')
    cx = (yaw / np.radians(40))[:, None, None] * 0.7
    cy = (pitch / np.radians(20))[:, None, None] * 0.7
    blob = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.1)
    return (blob[:, None].repeat(1, 3, 1, 1) * 2 - 1).float()


def test_view_directions_are_the_unit_forward_axis_of_the_camera():
    c = cam.camera_label(torch.tensor([0.0, 30.0]), torch.tensor([0.0, 10.0]), fov_deg=18.0)
    d = cam.view_directions(c)
    assert torch.allclose(d.norm(dim=1), torch.ones(2), atol=1e-6)
    pos = c[:, :16].reshape(-1, 4, 4)[:, :3, 3]
    to_lookat = torch.tensor([0.0, 0.0, 0.2]) - pos          # orbit cameras look at (0, 0, 0.2)
    assert torch.allclose(d, to_lookat / to_lookat.norm(dim=1, keepdim=True), atol=1e-5)
    assert d[0, 0].abs() < 1e-6 and d[1, 0] < -0.3           # yawed camera looks back across x


def test_discriminator_pose_head_shapes_and_errors():
    _G, D = _nets()
    c = _cameras(4, np.random.RandomState(0))
    logits, pose = D(torch.randn(4, 3, RES, RES), c, return_pose=True)
    assert logits.shape == (4, 1) and pose.shape == (4, 3)
    assert 'pose_head=True' in repr(D)
    _G, plain = _nets(pose_head=False)
    assert not hasattr(plain, 'pose_head') and not any('pose_head' in k for k in plain.state_dict())
    with pytest.raises(RuntimeError, match='pose_head=True'):
        plain(torch.randn(2, 3, RES, RES), c[:2], return_pose=True)
    with pytest.raises(ValueError, match='pose_head'):
        rc.Discriminator(c_dim=10, img_resolution=RES, channel_base=128, channel_max=16, pose_head=True)
    with pytest.raises(ValueError, match='camera-regression head'):
        loss_mod.StyleGAN2Loss('cpu', *_nets(pose_head=False), pose_weight=1.0)


def test_head_logits_equal_plain_forward():
    """The head reads features; asking for it does not change the logits."""
    _G, D = _nets()
    img, c = torch.randn(4, 3, RES, RES), _cameras(4, np.random.RandomState(1))
    logits, _pose = D(img, c, return_pose=True)
    assert torch.allclose(logits, D(img, c), atol=1e-6)


def test_generator_pose_weight_ramps_from_zero():
    G, D = _nets()
    loss = loss_mod.StyleGAN2Loss('cpu', G, D, pose_weight=10.0, pose_ramp_kimg=2.0)
    assert [loss.G_pose_weight(n) for n in (0, 500, 2000, 9000)] == [0.0, 2.5, 10.0, 10.0]
    assert loss_mod.StyleGAN2Loss('cpu', G, D, pose_weight=3.0, pose_ramp_kimg=0).G_pose_weight(0) == 3.0


def _grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_D_head_is_fitted_on_real_images_only():
    """Dmain: the head's gradient does not depend on the generated images."""
    G, D = _nets()
    loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pose_weight=10.0, style_mixing_prob=0)
    rnd = np.random.RandomState(2)
    real_c, gen_c = _cameras(4, rnd), _cameras(4, rnd)
    real = _posed_images(real_c)
    heads = []
    for seed in (0, 1):
        D.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        loss.accumulate_gradients('Dmain', real, real_c, torch.randn(4, 8), gen_c, gain=1.0, cur_nimg=0)
        heads.append(_grads(D)['pose_head.weight'])
    assert heads[0].abs().sum() > 0 and torch.allclose(heads[0], heads[1])


def test_G_follows_the_head_only_after_the_ramp():
    G, D = _nets()
    rnd = np.random.RandomState(3)
    c = _cameras(4, rnd)
    z = torch.randn(4, 8)
    results = {}
    for name, weight, nimg in [('off', 0.0, 0), ('ramp_start', 10.0, 0), ('full', 10.0, 10_000)]:
        loss = loss_mod.StyleGAN2Loss('cpu', G, D, pose_weight=weight, pose_ramp_kimg=1.0, style_mixing_prob=0)
        G.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same synthesis noise in every pass
        loss.accumulate_gradients('Gmain', _posed_images(c), c, z, c, gain=1.0, cur_nimg=nimg)
        results[name] = _grads(G)
    key = next(iter(results['off']))
    for k in results['off']:
        assert torch.allclose(results['off'][k], results['ramp_start'][k], atol=1e-7), k
    assert any(not torch.allclose(results['off'][k], results['full'][k], atol=1e-6) for k in results['off']), key


def test_head_learns_viewing_direction_of_real_images():
    """A few hundred D steps on images that show their camera: the head's angle error falls far below chance."""
    G, D = _nets(seed=4)
    loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pose_weight=10.0, style_mixing_prob=0)
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    rnd = np.random.RandomState(5)

    def angle_error(n=64):
        c = _cameras(n, rnd)
        with torch.no_grad():
            pred = D(_posed_images(c), c, return_pose=True)[1]
        cos = torch.nn.functional.cosine_similarity(pred, cam.view_directions(c), dim=1).clamp(-1, 1)
        return float(torch.rad2deg(torch.acos(cos)).mean())

    before = angle_error()
    G.requires_grad_(False)
    for _ in range(300):
        c = _cameras(16, rnd)
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('Dmain', _posed_images(c), c, torch.randn(16, 8), c, gain=1.0, cur_nimg=0)
        opt.step()
    after = angle_error()
    assert before > 30 and after < 8, (before, after)


@pytest.fixture(scope='module')
def pose_run(tmp_path_factory):
    import train
    tmp = tmp_path_factory.mktemp('pose')
    data = make_camera_zip(tmp / 'd.zip', n=8, res=16)
    args = ['--outdir', str(tmp / 'runs'), '--data', data, '--cfg=raycond2', '--batch=4', '--gamma=1',
            '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--snap=1', '--metrics=none',
            '--tick=0.008', '--kimg=0.016', '--device=cpu', '--pose-weight=5']
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 0, result.output[-3000:]
    return dict(train=train, data=data, tmp=tmp, run=rundir.list_runs(str(tmp / 'runs'))[-1][1])


def test_train_pose_weight_writes_head_options_and_stats(pose_run):
    from raycond.loading import load_snapshot
    with open(os.path.join(pose_run['run'], 'training_options.json')) as f:
        opts = json.load(f)
    assert opts['D_kwargs']['pose_head'] is True and opts['loss_kwargs']['pose_weight'] == 5.0
    with open(os.path.join(pose_run['run'], 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f if line.strip()]
    assert all('Loss/pose/real_deg' in s and 'Loss/pose/fake_deg' in s for s in stats)
    assert all(0 <= s['Loss/pose/real_deg']['mean'] <= 180 for s in stats)
    snap = load_snapshot(rundir.newest_snapshot(pose_run['run']))
    assert snap['D'].has_pose_head and 'pose_head.weight' in snap['D'].state_dict()
    assert not hasattr(snap['G_ema'], 'pose_head')


def test_train_pose_weight_refused_for_configs_without_camera_discriminator(pose_run):
    result = CliRunner().invoke(pose_run['train'].main, [
        '--outdir', str(pose_run['tmp'] / 'sg2'), '--data', pose_run['data'], '--cfg=stylegan2', '--cond=1',
        '--batch=4', '--gamma=1', '--kimg=0.008', '--device=cpu', '--pose-weight=1', '--metrics=none'])
    assert result.exit_code != 0
    assert '--pose-weight needs a camera-conditioned config' in result.output
    assert 'Traceback' not in result.output


def test_perturb_labels_turns_the_view_by_the_asked_angle():
    rnd = np.random.RandomState(6)
    c = _cameras(64, rnd)
    out = cam.perturb_labels(c, 2.0, 15.0, generator=torch.Generator().manual_seed(0))
    angle = torch.rad2deg(torch.acos((cam.view_directions(c) * cam.view_directions(out)).sum(1).clamp(-1, 1)))
    assert angle.min() >= 2.0 - 1e-3 and angle.max() <= 15.0 + 1e-3 and angle.std() > 2
    pose = out[:, :16].reshape(-1, 4, 4)
    R = pose[:, :3, :3]
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(64, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(64), atol=1e-5)
    assert torch.allclose(pose[:, :3, 3].norm(dim=1), c[:, :16].reshape(-1, 4, 4)[:, :3, 3].norm(dim=1), atol=1e-5)
    assert torch.equal(out[:, 16:], c[:, 16:]) and torch.equal(pose[:, 3], c[:, 12:16])
    exact = cam.perturb_labels(c, 5.0, 5.0)
    angle = torch.rad2deg(torch.acos((cam.view_directions(c) * cam.view_directions(exact)).sum(1).clamp(-1, 1)))
    assert torch.allclose(angle, torch.full((64,), 5.0), atol=0.05)


def test_pose_negatives_teach_D_to_reject_real_images_with_wrong_cameras():
    G, D = _nets(pose_head=False, seed=7)
    loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pose_negatives=1.0, style_mixing_prob=0,
                                  pose_negative_deg=(10.0, 20.0))
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    rnd = np.random.RandomState(8)

    def gap(n=256):
        """Mean logit margin of the right camera over a wrong one, and how often it wins."""
        c = _cameras(n, rnd)
        img = _posed_images(c)
        with torch.no_grad():
            d = D(img, c) - D(img, cam.perturb_labels(c, 10.0, 20.0))
        return float(d.mean()), float((d > 0).float().mean())

    before = gap()
    G.requires_grad_(False)
    for _ in range(300):
        c = _cameras(16, rnd)
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('Dmain', _posed_images(c), c, torch.randn(16, 8), c, gain=1.0, cur_nimg=0)
        opt.step()
    after = gap()
    # Without the negatives (weight 1e-9) the margin stays at 0.05 / 51 %.
    assert abs(before[0]) < 0.05 and after[0] > 0.15 and after[1] > 0.6, (before, after)
    with pytest.raises(ValueError, match='pose_negatives'):
        loss_mod.StyleGAN2Loss('cpu', G, rc.Discriminator(c_dim=0, img_resolution=RES, channel_base=128,
                                                          channel_max=16), pose_negatives=1.0)


def test_train_pose_negatives_option_reaches_the_loss(pose_run, tmp_path):
    result = CliRunner().invoke(pose_run['train'].main, [
        '--outdir', str(tmp_path), '--data', pose_run['data'], '--cfg=raycond2', '--batch=4', '--gamma=1',
        '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none', '--tick=0.008',
        '--kimg=0.008', '--device=cpu', '--pose-negatives=0.5'])
    assert result.exit_code == 0, result.output[-3000:]
    run = rundir.list_runs(str(tmp_path))[-1][1]
    with open(os.path.join(run, 'training_options.json')) as f:
        opts = json.load(f)
    assert opts['loss_kwargs']['pose_negatives'] == 0.5 and 'pose_head' not in opts['D_kwargs']
    with open(os.path.join(run, 'stats.jsonl')) as f:
        assert all('Loss/scores/wrong_pose' in json.loads(line) for line in f if line.strip())
    bad = CliRunner().invoke(pose_run['train'].main, [
        '--outdir', str(tmp_path / 'sg2'), '--data', pose_run['data'], '--cfg=stylegan2', '--cond=1', '--batch=4',
        '--gamma=1', '--kimg=0.008', '--device=cpu', '--pose-negatives=1', '--metrics=none'])
    assert bad.exit_code != 0 and '--pose-negatives needs a camera-conditioned config' in bad.output
