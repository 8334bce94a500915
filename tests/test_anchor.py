"""The fine-tuning anchor (`train.py --anchor`): G pays for drifting away from the images of the
network it resumed from, measured at a low resolution."""

import glob
import json
import os

import pytest
import torch
from click.testing import CliRunner

from conftest import make_camera_zip
from raycond import camera as cam
from raycond import rundir
from training import loss as loss_mod
from training import networks_raycond2 as rc
from training.anchor import FunctionAnchor

RES = 16


def _tiny_nets():
    G = rc.Generator(z_dim=8, c_dim=cam.LABEL_DIM, w_dim=8, img_resolution=RES, img_channels=3,
                     mapping_kwargs=dict(num_layers=1), channel_base=128, channel_max=16, num_fp16_res=0,
                     conv_clamp=None)
    D = rc.Discriminator(img_resolution=RES, channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=None)
    return G, D


def _batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    yaw = torch.rand(n, generator=g).numpy() * 60 - 30
    pitch = torch.rand(n, generator=g).numpy() * 30 - 15
    return torch.randn(n, 8, generator=g), cam.camera_label(yaw, pitch, fov_deg=18.0)


def test_the_penalty_is_zero_for_the_anchor_itself_and_grows_with_drift():
    torch.manual_seed(0)
    G, _D = _tiny_nets()
    anchor = FunctionAnchor(G, res=4)
    z, c = _batch(6, 1)
    assert anchor.penalty(G, z, c).abs().max() < 1e-10
    with torch.no_grad():  # (not a scaling: demodulation would undo it)
        G.synthesis.b4.conv1.weight.add_(torch.randn_like(G.synthesis.b4.conv1.weight))
    drift = anchor.penalty(G, z, c)
    assert drift.shape == (6,) and bool((drift > 1e-6).all())
    # The anchor is a frozen copy: changing G did not change it, and it takes no gradient.
    assert not torch.equal(anchor.G0.synthesis.b4.conv1.weight, G.synthesis.b4.conv1.weight)
    assert not any(p.requires_grad for p in anchor.G0.parameters())
    drift.mean().backward()
    assert G.synthesis.b4.conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='resolution'):
        FunctionAnchor(G, res=5)


def test_a_small_shift_costs_far_less_than_redrawing_the_image():
    """Why the pooled difference: moving a head by a pixel (a few degrees of pose) is cheap, drawing
    another shape in its place is not."""
    anchor = FunctionAnchor(_tiny_nets()[0], res=4)
    y, x = torch.meshgrid(torch.arange(RES), torch.arange(RES), indexing='ij')
    disc = ((x - 7.5) ** 2 + (y - 7.5) ** 2 < 16).float()
    bar = ((x - 7.5).abs() < 1.5).float()
    img = disc[None, None].repeat(1, 3, 1, 1) * 2 - 1
    shifted = torch.roll(img, 1, dims=3)
    redrawn = bar[None, None].repeat(1, 3, 1, 1) * 2 - 1
    cost = lambda a, b: float((anchor.pooled(a) - anchor.pooled(b)).square().mean())  # noqa: E731
    full = lambda a, b: float((a - b).square().mean())  # noqa: E731
    assert cost(img, shifted) < cost(img, redrawn) / 5  # measured: 0.047 against 0.379
    # Pooling is what separates them: at full resolution the shift costs a third of the redrawing.
    assert cost(img, redrawn) / cost(img, shifted) > 2 * full(img, redrawn) / full(img, shifted)


def test_the_anchor_keeps_a_fine_tuned_generator_near_its_start():
    def drift_after_training(anchor_weight):
        torch.manual_seed(2)
        G, D = _tiny_nets()
        start = FunctionAnchor(G, res=4)
        loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=0, style_mixing_prob=0,
                                      anchor=anchor_weight, anchor_res=4, anchor_batch_shrink=1)
        G.requires_grad_(True)
        D.requires_grad_(False)
        opt = torch.optim.Adam(G.parameters(), lr=1e-2, betas=(0.0, 0.99))
        for step in range(40):
            z, c = _batch(8, 100 + step)
            opt.zero_grad(set_to_none=True)
            loss.accumulate_gradients('Gmain', None, None, z, c, gain=1.0, cur_nimg=0)
            opt.step()
        with torch.no_grad():
            return float(start.penalty(G, *_batch(32, 7)).mean())

    free, anchored = drift_after_training(0.0), drift_after_training(1000.0)
    assert anchored < free / 5, (free, anchored)


def test_train_anchor_option_needs_resume_and_reports_the_drift(tmp_path):
    import train
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    args = ['--outdir', str(tmp_path / 'runs'), '--data', data, '--cfg=raycond2', '--batch=4', '--gamma=1',
            '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none', '--tick=0.008',
            '--kimg=0.008', '--device=cpu']
    refused = CliRunner().invoke(train.main, args + ['--anchor=10'])
    assert refused.exit_code != 0 and '--resume' in refused.output
    first = CliRunner().invoke(train.main, args)
    assert first.exit_code == 0, first.output[-3000:]
    snapshot = sorted(glob.glob(os.path.join(rundir.list_runs(str(tmp_path / 'runs'))[-1][1], 'network-snapshot-*.pkl')))[-1]
    result = CliRunner().invoke(train.main, args + ['--anchor=10', '--anchor-res=8', f'--resume={snapshot}'])
    assert result.exit_code == 0, result.output[-3000:]
    run = rundir.list_runs(str(tmp_path / 'runs'))[-1][1]
    with open(os.path.join(run, 'training_options.json')) as f:
        loss_kwargs = json.load(f)['loss_kwargs']
    assert (loss_kwargs['anchor'], loss_kwargs['anchor_res']) == (10.0, 8)
    with open(os.path.join(run, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f]
    assert stats and stats[-1]['Loss/G/anchor']['num'] > 0
