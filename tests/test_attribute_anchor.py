"""The attribute anchor (`train.py --attr-anchor`): while another loss fine-tunes G, each latent keeps
the attributes a frozen classifier reads on the resumed network's image of the same latent and camera."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from metrics import synth_coverage
from raycond import rundir
from raycond.synth.dataset import write_dataset
from training import attribute_anchor
from training import loss as loss_mod
from test_pose_loss import RES, _cameras, _tiny_nets


class QuadrantColourClassifier(torch.nn.Module):
    """A stand-in classifier whose readings depend on the image: a fixed random linear map of the
    mean colour of each image quadrant (images in 0..255) to every attribute's logits."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer('weight', torch.randn(12, sum(synth_coverage.SIZES), generator=g) * 4)

    def forward(self, images):
        x = images.float() / 127.5 - 1
        quads = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)  # (N, 3 * 4)
        return quads @ self.weight


def _classifier():
    return QuadrantColourClassifier().eval()


def _classes(anchor, G, z, c):
    with torch.no_grad():
        return torch.stack([p.argmax(1) for p in anchor.log_probs(G(z, c, noise_mode='const'))], dim=1)


def test_the_penalty_is_zero_for_the_resumed_network_and_trains_only_g():
    torch.manual_seed(0)
    G, _ = _tiny_nets()
    anchor = attribute_anchor.AttributeAnchor(G)
    z, c = torch.randn(8, 8), _cameras(8, np.random.RandomState(0))
    with pytest.raises(RuntimeError, match='attribute classifier'):
        anchor.penalty(G, z, c)
    anchor.classifier = _classifier()
    assert float(anchor.penalty(G, z, c).detach().abs().max()) < 1e-6  # the same images: no divergence
    with torch.no_grad():
        for p in G.synthesis.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    G.requires_grad_(True)
    drift = anchor.penalty(G, z, c)
    assert drift.shape == (8,) and bool((drift > -1e-6).all()) and float(drift.detach().sum()) > 1e-3
    drift.sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in G.synthesis.parameters())
    assert all(p.grad is None for p in anchor.G0.parameters())
    assert all(p.grad is None for p in anchor.classifier.parameters())


def _train_drift(weight, steps=60):
    """Push a tiny G's images towards white (a stand-in for a loss that redraws heads), with the
    anchor at `weight`; returns the fraction of (latent, attribute) readings that changed."""
    torch.manual_seed(1)
    G, D = _tiny_nets()
    loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=0, style_mixing_prob=0, attr_anchor=weight,
                                  attr_anchor_batch_shrink=1)
    reference = attribute_anchor.AttributeAnchor(G)
    reference.classifier = _classifier()
    if weight > 0:
        loss.attribute_anchor.classifier = reference.classifier
    rnd = np.random.RandomState(2)
    fixed_z, fixed_c = torch.randn(64, 8), _cameras(64, rnd)
    before = _classes(reference, G, fixed_z, fixed_c)
    G.requires_grad_(True)
    D.requires_grad_(False)
    opt = torch.optim.Adam(G.parameters(), lr=3e-3, betas=(0.0, 0.99))
    for _ in range(steps):
        z, c = torch.randn(16, 8), _cameras(16, rnd)
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('Gmain', None, None, z, c, gain=1.0, cur_nimg=0)
        (1 - G(z, c, noise_mode='const')).square().mean().backward()  # the drift
        opt.step()
    after = _classes(reference, G, fixed_z, fixed_c)
    return float((after != before).float().mean())


def test_the_anchor_keeps_the_attributes_a_drifting_loss_would_change():
    free, anchored = _train_drift(0.0), _train_drift(50.0)
    assert free > 0.2 and anchored < free / 3, (free, anchored)  # measured: 0.63 and 0.02


@pytest.fixture(scope='module')
def heads_zip(tmp_path_factory):
    root = tmp_path_factory.mktemp('heads')
    path = str(root / 'heads.zip')
    write_dataset(path, 48, resolution=16, seed=3)
    return path


def test_train_attr_anchor_option_needs_resume_and_reports_the_penalty(tmp_path, heads_zip, monkeypatch):
    import train
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setattr(attribute_anchor, 'CLASSIFIER', dict(seed=2, channels=(16, 32), steps=30, batch_size=16))
    args = ['--outdir', str(tmp_path / 'runs'), '--data', heads_zip, '--cfg=raycond2', '--batch=4', '--gamma=1',
            '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none', '--tick=0.008',
            '--kimg=0.008', '--device=cpu']
    refused = CliRunner().invoke(train.main, args + ['--attr-anchor=1'])
    assert refused.exit_code != 0 and '--attr-anchor' in refused.output and '--resume' in refused.output
    first = CliRunner().invoke(train.main, args)
    assert first.exit_code == 0, first.output[-3000:]
    snapshot = rundir.newest_snapshot(rundir.list_runs(str(tmp_path / 'runs'))[-1][1])
    result = CliRunner().invoke(train.main, args + ['--attr-anchor=2.5', f'--resume={snapshot}'])
    assert result.exit_code == 0, result.output[-3000:]
    assert 'Attribute classifier for --attr-anchor: held-out accuracy hair_style' in result.output
    run = rundir.list_runs(str(tmp_path / 'runs'))[-1][1]
    with open(os.path.join(run, 'training_options.json')) as f:
        assert json.load(f)['loss_kwargs']['attr_anchor'] == 2.5
    with open(os.path.join(run, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f]
    assert stats and stats[-1]['Loss/G/attr_anchor']['num'] > 0
    assert 0 <= stats[-1]['Loss/G/attr_anchor']['mean'] < 5
