"""Resuming into a wider network (--cmax/--cbase raised): the wider one starts by computing exactly
what the snapshot did, its new channels still learn, and train.py says what it did."""

import copy
import os

import pytest
import torch
from click.testing import CliRunner

from conftest import make_camera_zip
from raycond import camera as cam
from raycond import rundir
from training import networks_raycond2 as rc
from training import networks_stylegan2 as sg2
from training import widen

RES = 16


def _trained(net, seed):
    """Move every weight off its initial value, as training does."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return net


def _generators(cls, cmax, **kwargs):
    torch.manual_seed(cmax)
    c_dim = 0 if cls is sg2.Generator else cam.LABEL_DIM
    return cls(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=RES, img_channels=3, mapping_kwargs=dict(num_layers=2),
               channel_base=512, channel_max=cmax, num_fp16_res=0, conv_clamp=None, **kwargs)


def _discriminator(cmax, mbstd=2):
    torch.manual_seed(cmax + 1)
    return rc.Discriminator(img_resolution=RES, channel_base=512, channel_max=cmax, num_fp16_res=0, conv_clamp=None,
                            epilogue_kwargs=dict(mbstd_group_size=mbstd))


CAMERAS = cam.camera_label([0.0, 12.0, -25.0, 35.0], [0.0, 6.0, -4.0, 10.0]).float()


@pytest.mark.parametrize('kind', ['raycond2', 'raycond2-ray-torgb', 'stylegan2'])
def test_wider_generator_computes_the_same_images(kind):
    cls = sg2.Generator if kind == 'stylegan2' else rc.Generator
    kwargs = dict(ray_torgb=True) if kind == 'raycond2-ray-torgb' else {}
    small = _trained(_generators(cls, 16, **kwargs), 1).eval()
    wide = _generators(cls, 32, **kwargs).eval()
    report = widen.widen_into(small, wide)
    assert report['widened'] and 'synthesis.b4.const' in report['widened']
    assert wide.synthesis.b4.const.shape[0] == 32 and small.synthesis.b4.const.shape[0] == 16
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    c = CAMERAS if small.c_dim else torch.zeros(4, 0)
    before = small(z, c, noise_mode='const')
    after = wide(z, c, noise_mode='const')
    assert before.abs().mean() > 0.1
    assert torch.allclose(before, after, atol=1e-5), (before - after).abs().max()
    # The new channels learn: the columns that read them get gradients at once.
    wide.train()
    wide(z, c, noise_mode='const').square().mean().backward()
    grad = wide.synthesis.b8.conv1.weight.grad
    assert grad[:, 16:32].abs().sum() > 0


def test_wider_discriminator_scores_the_same_and_its_new_channels_learn():
    small = _trained(_discriminator(16), 3).eval()
    wide = _discriminator(32).eval()
    assert wide.b4.cmap_dim == 32 and small.b4.cmap_dim == 16  # the projection widens too
    widen.widen_into(small, wide)
    img = torch.randn(4, 3, RES, RES, generator=torch.Generator().manual_seed(4))
    before, after = small(img, CAMERAS), wide(img, CAMERAS)
    assert before.abs().mean() > 0.05
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()
    wide(img, CAMERAS).sum().backward()
    assert wide.b8.conv0.weight.grad[16:].abs().sum() > 0     # new channels (zero at first) get gradients
    assert wide.mapping.fc1.weight.grad[16:].abs().sum() > 0


def test_what_cannot_be_widened_is_refused():
    G = _generators(rc.Generator, 16)
    assert not widen.can_widen(_generators(rc.Generator, 32), G)           # narrower
    assert not widen.can_widen(_generators(sg2.Generator, 16), _generators(rc.Generator, 32))  # other family
    assert not widen.can_widen(_discriminator(16), copy.deepcopy(G))
    two_groups = dict(img_resolution=RES, channel_base=512, num_fp16_res=0, conv_clamp=None,
                      epilogue_kwargs=dict(mbstd_group_size=2, mbstd_num_channels=2))
    assert not widen.can_widen(rc.Discriminator(channel_max=16, **two_groups),
                               rc.Discriminator(channel_max=32, **two_groups))
    assert widen.can_widen(_discriminator(16), _discriminator(32))
    with pytest.raises(ValueError, match='cannot widen'):
        widen.widen_into(_generators(rc.Generator, 32), G)


def test_train_resumes_a_snapshot_into_a_wider_network(tmp_path):
    import train
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=RES)
    args = ['--data', data, '--cfg=raycond2', '--batch=4', '--gamma=1', '--cbase=256', '--map-depth=1',
            '--workers=0', '--metrics=none', '--tick=0.004', '--kimg=0.004']
    first = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'small'), '--cmax=8', *args])
    assert first.exit_code == 0, first.output[-3000:]
    snap = rundir.newest_snapshot(rundir.list_runs(str(tmp_path / 'small'))[-1][1])
    wide = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'wide'), '--cmax=16', f'--resume={snap}', *args])
    assert wide.exit_code == 0, wide.output[-3000:]
    assert 'widened (new channels start unused' in wide.output
    assert 'Optimizer states not restored' in wide.output
    assert os.path.isfile(rundir.newest_snapshot(rundir.list_runs(str(tmp_path / 'wide'))[-1][1]))
