"""The attribute-mix loss term (`train.py --term=attr-mix:W`): G is paid to draw each attribute class as often as
the data does, as a frozen classifier reads it; a batch already at the data's mix pays nothing."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from raycond import rundir
from raycond.synth.dataset import write_dataset
from training import loss as loss_mod
from training.terms import attribute_classifier
from training.terms import attribute_mix
from test_pose_loss import _cameras, _tiny_nets


class BrightnessClassifier(torch.nn.Module):
    """A stand-in with one two-class attribute: 'bright' when the image's mean (0..255) is above
    the middle grey, read through a steep logistic."""

    def forward(self, images):
        x = images.float().mean(dim=(1, 2, 3)) / 127.5 - 1
        return torch.stack([8 * x, -8 * x], dim=1)


def _mix(probs):
    return [p.mean(dim=0) for p in probs]


def test_a_batch_at_the_data_mix_pays_nothing_and_gets_no_gradient():
    torch.manual_seed(0)
    img = (torch.rand(16, 3, 8, 8) * 2 - 1).requires_grad_(True)
    clf = BrightnessClassifier()
    target = _mix(attribute_mix.AttributeMix(clf, [torch.ones(2)], sizes=(2,)).probs(img.detach()))
    mix = attribute_mix.AttributeMix(clf, target, sizes=(2,))
    loss = mix.loss(img)
    assert loss.shape == (16,) and float(loss.detach().abs().max()) < 1e-5
    loss.sum().backward()
    assert float(img.grad.abs().max()) < 1e-6
    assert float(mix.tv()) < 1e-6


def test_the_loss_restores_a_lost_class_without_overshooting():
    """All images start dark while the data is half bright: descending the loss on per-image
    brightness offsets brings the tracked mix to about half and half, not to all bright."""
    torch.manual_seed(1)
    offsets = torch.full([64], -0.6).add_(torch.randn(64) * 0.3).requires_grad_(True)
    clf = BrightnessClassifier()
    mix = attribute_mix.AttributeMix(clf, [torch.tensor([0.5, 0.5])], momentum=0.9, sizes=(2,))
    opt = torch.optim.SGD([offsets], lr=0.2)
    start = None
    for _ in range(600):
        img = offsets.view(-1, 1, 1, 1).expand(-1, 3, 4, 4)
        opt.zero_grad()
        mix.loss(img).sum().backward()
        opt.step()
        start = float(mix.tv()) if start is None else start
    bright = float((offsets.detach() > 0).float().mean())
    assert start > 0.4, start
    assert float(mix.tv()) < 0.08 and 0.38 < bright < 0.62, (float(mix.tv()), bright)


def test_the_target_must_match_the_attributes():
    with pytest.raises(ValueError, match='do not match'):
        attribute_mix.AttributeMix(BrightnessClassifier(), [torch.ones(3)], sizes=(2,))


def test_the_term_changes_g_s_gradient():
    torch.manual_seed(0)
    G, D = _tiny_nets()
    z, c = torch.randn(8, 8), _cameras(8, np.random.RandomState(0))
    G.requires_grad_(True)
    D.requires_grad_(False)

    def grads(terms):
        loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=0, style_mixing_prob=0, terms=terms)
        G.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same noise inputs each time
        loss.accumulate_gradients('Gmain', None, None, z, c, gain=1.0, cur_nimg=0)
        return [p.grad.clone() for p in G.synthesis.parameters() if p.grad is not None]

    mix = attribute_mix.AttributeMix(BrightnessClassifier(), [torch.tensor([0.9, 0.1])], sizes=(2,))
    with_mix = grads([attribute_mix.AttributeMixTerm(2.0, mix=mix)])
    without = grads([])
    assert len(with_mix) == len(without) > 0
    assert max(float((a - b).abs().max()) for a, b in zip(with_mix, without)) > 1e-6


@pytest.fixture(scope='module')
def heads_zip(tmp_path_factory):
    root = tmp_path_factory.mktemp('heads')
    path = str(root / 'heads.zip')
    write_dataset(path, 48, resolution=16, seed=3)
    return path


def test_train_attr_mix_option_reports_the_loss_and_the_mix(tmp_path, heads_zip, monkeypatch):
    import train
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setattr(attribute_mix, 'CLASSIFIER', dict(seed=2, channels=(16, 32), steps=30, batch_size=16))
    args = ['--outdir', str(tmp_path / 'runs'), '--data', heads_zip, '--cfg=raycond2', '--batch=4', '--gamma=1',
            '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none', '--tick=0.008',
            '--kimg=0.008', '--term=attr-mix:2.5']
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 0, result.output[-3000:]
    assert 'Attribute classifier for --term=attr-mix: held-out accuracy hair_style' in result.output
    run = rundir.list_runs(str(tmp_path / 'runs'))[-1][1]
    assert os.path.isfile(os.path.join(run, attribute_mix.FILE_NAME))
    with open(os.path.join(run, 'training_options.json')) as f:
        assert json.load(f)['loss_kwargs']['terms'] == [
            {'class_name': 'training.terms.attribute_mix.AttributeMixTerm', 'weight': 2.5}]
    with open(os.path.join(run, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f]
    assert stats and stats[-1]['Loss/G/attr_mix']['num'] > 0
    assert 0 <= stats[-1]['Attr/mix_tv']['mean'] <= 1
    # The loss covers every attribute the metric reads: one data mix per attribute, each a distribution.
    import dnnlib
    kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=heads_zip, use_labels=True,
                             xflip=False)
    monkeypatch.setattr(attribute_classifier, 'train_classifier', lambda *a, **k: pytest.fail('retrained'))
    _classifier, target = attribute_mix.load_classifier(kwargs, 'cpu', run)  # the run keeps its classifier
    assert [t.numel() for t in target] == list(attribute_classifier.SIZES) and len(target) == 4
    assert all(abs(float(t.sum()) - 1) < 1e-5 and float(t.min()) >= 0 for t in target)


def test_attr_mix_without_factor_labels_is_refused(tmp_path, monkeypatch):
    import train
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    path = str(tmp_path / 'plain.zip')
    write_dataset(path, 16, resolution=16, seed=40)  # a seed the factors cannot be redrawn from (0-31)
    _strip_factors(path)
    args = ['--outdir', str(tmp_path / 'runs'), '--data', path, '--cfg=raycond2', '--batch=4', '--gamma=1',
            '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none', '--tick=0.008',
            '--kimg=0.008', '--term=attr-mix:1']
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 1
    message = result.output + (result.stderr if result.stderr_bytes is not None else '')
    assert '--term=attr-mix needs the generative factors' in message and 'synth_params' in message, message[-2000:]


def _strip_factors(path):
    """Rewrite a synth ZIP's dataset.json with camera labels only (no per-image factors, no seed)."""
    import zipfile
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(members['dataset.json'])
    members['dataset.json'] = json.dumps({'labels': meta['labels']}).encode()
    with zipfile.ZipFile(path, 'w') as zf:
        for name, data in members.items():
            zf.writestr(name, data)
