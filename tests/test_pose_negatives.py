"""Pose negatives (`--term=pose-negatives:W`, a matching-aware discriminator): real images shown with
slightly turned cameras count as fake, so D learns fine pose and G must render the camera asked."""

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
from training import terms
from training.terms.pose_negatives import PoseNegativesTerm, parse_deg_range

RES = 16


def _nets(seed=0):
    torch.manual_seed(seed)
    G = rc.Generator(z_dim=8, c_dim=cam.LABEL_DIM, w_dim=8, img_resolution=RES, img_channels=3,
                     mapping_kwargs=dict(num_layers=1), channel_base=128, channel_max=16, num_fp16_res=0,
                     conv_clamp=None)
    D = rc.Discriminator(img_resolution=RES, channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=None)
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


def _turn_deg(a, b):
    """Angle (degrees) between the viewing directions of cameras a and b."""
    cos = (cam.view_directions(a) * cam.view_directions(b)).sum(1).clamp(-1, 1)
    return torch.rad2deg(torch.acos(cos))


def test_view_directions_are_the_unit_forward_axis_of_the_camera():
    c = cam.camera_label(torch.tensor([0.0, 30.0]), torch.tensor([0.0, 10.0]), fov_deg=18.0)
    d = cam.view_directions(c)
    assert torch.allclose(d.norm(dim=1), torch.ones(2), atol=1e-6)
    pos = c[:, :16].reshape(-1, 4, 4)[:, :3, 3]
    to_lookat = torch.tensor([0.0, 0.0, 0.2]) - pos          # orbit cameras look at (0, 0, 0.2)
    assert torch.allclose(d, to_lookat / to_lookat.norm(dim=1, keepdim=True), atol=1e-5)
    assert d[0, 0].abs() < 1e-6 and d[1, 0] < -0.3           # yawed camera looks back across x


def test_perturb_labels_turns_the_view_by_the_asked_angle():
    rnd = np.random.RandomState(6)
    c = _cameras(64, rnd)
    out = cam.perturb_labels(c, 2.0, 15.0, generator=torch.Generator().manual_seed(0))
    angle = _turn_deg(c, out)
    assert angle.min() >= 2.0 - 1e-3 and angle.max() <= 15.0 + 1e-3 and angle.std() > 2
    pose = out[:, :16].reshape(-1, 4, 4)
    R = pose[:, :3, :3]
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(64, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(64), atol=1e-5)
    assert torch.allclose(pose[:, :3, 3].norm(dim=1), c[:, :16].reshape(-1, 4, 4)[:, :3, 3].norm(dim=1), atol=1e-5)
    assert torch.equal(out[:, 16:], c[:, 16:]) and torch.equal(pose[:, 3], c[:, 12:16])
    exact = cam.perturb_labels(c, 5.0, 5.0)
    angle = _turn_deg(c, exact)
    assert torch.allclose(angle, torch.full((64,), 5.0), atol=0.05)


def test_pose_negatives_teach_D_to_reject_real_images_with_wrong_cameras():
    G, D = _nets(seed=7)
    loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, style_mixing_prob=0,
                                  terms=[PoseNegativesTerm(1.0, G=G, D=D, deg=(10.0, 20.0))])
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
    with pytest.raises(ValueError, match='--term=pose-negatives needs a discriminator conditioned'):
        PoseNegativesTerm(1.0, G=G, D=rc.Discriminator(c_dim=0, img_resolution=RES, channel_base=128, channel_max=16))


def test_train_pose_negatives_option_reaches_the_loss(tmp_path):
    import train
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    result = CliRunner().invoke(train.main, [
        '--outdir', str(tmp_path / 'runs'), '--data', data, '--cfg=raycond2', '--batch=4', '--gamma=1',
        '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none', '--tick=0.008',
        '--kimg=0.008', '--term=pose-negatives:0.5:deg=1-6'])
    assert result.exit_code == 0, result.output[-3000:]
    run = rundir.list_runs(str(tmp_path / 'runs'))[-1][1]
    with open(os.path.join(run, 'training_options.json')) as f:
        loss_kwargs = json.load(f)['loss_kwargs']
    assert loss_kwargs['terms'] == [{'class_name': 'training.terms.pose_negatives.PoseNegativesTerm', 'weight': 0.5,
                                     'deg': [1.0, 6.0]}]
    with open(os.path.join(run, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f if line.strip()]
    assert stats and all('Loss/scores/wrong_pose' in s for s in stats)
    bad = CliRunner().invoke(train.main, [
        '--outdir', str(tmp_path / 'sg2'), '--data', data, '--cfg=stylegan2', '--cond=0', '--batch=4',
        '--gamma=1', '--kimg=0.008', '--term=pose-negatives:1', '--metrics=none'])
    assert bad.exit_code != 0 and '--term=pose-negatives needs networks conditioned on camera labels' in bad.output
    assert 'Traceback' not in bad.output
    # A camera-conditioned StyleGAN2 (D sees the 25 camera values) can use it.
    sg2 = CliRunner().invoke(train.main, [
        '--outdir', str(tmp_path / 'sg2c'), '--data', data, '--cfg=stylegan2', '--cond=1', '--batch=4', '--gamma=1',
        '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--kimg=0.004', '--tick=0.004',
        '--term=pose-negatives:1', '--metrics=none'])
    assert sg2.exit_code == 0, sg2.output[-3000:]


def test_deg_range_parsing():
    assert parse_deg_range('2-15') == [2.0, 15.0]
    assert parse_deg_range(' 0 - 0.5 ') == [0.0, 0.5]
    for bad in ['15-2', '5', '1-2-3', 'a-b', '10-100']:
        with pytest.raises(ValueError, match='deg'):
            parse_deg_range(bad)


def test_term_option_parsing_names_what_is_wrong():
    specs = terms.parse_terms('pose:10, attr-mix:3,pose-negatives:1:deg=0.5-10')
    assert [(s.class_name.rsplit('.', 1)[1], s.weight) for s in specs] == [
        ('PoseTerm', 10.0), ('AttributeMixTerm', 3.0), ('PoseNegativesTerm', 1.0)]
    assert specs[2].deg == [0.5, 10.0] and terms.parse_terms('') == []
    for bad, message in [('posed:1', 'unknown term'), ('pose', 'needs a weight'), ('pose:0', 'positive'),
                         ('pose:1:deg=1-2', 'pose takes no options'), ('pose-negatives:1:deg=9-1', 'MIN <= MAX'),
                         ('pose:1,pose:2', 'once')]:
        with pytest.raises(ValueError, match=message):
            terms.parse_terms(bad)


def test_a_configuration_names_only_known_term_classes():
    with pytest.raises(ValueError, match='unknown loss term class'):
        terms.build_terms([{'class_name': 'os.system', 'weight': 1.0}], None, None, terms.TermContext())
