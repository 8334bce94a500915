"""Loss terms are built from configuration, and runs configured before terms existed still resume."""

import json
import os

import pytest
import torch

from conftest import make_camera_zip
from training import terms
from training.terms import pose_reader
from training.training_loop import training_loop

# What train.py wrote into training_options.json for the bundled checkpoint's last stage before
# loss terms were plugins (checkpoints/README.md): the old loss option names.
OLD_LOSS_KWARGS = dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=1, style_mixing_prob=0.9, pl_weight=2,
                       pl_batch_shrink=2, pl_decay=0.01, gpc_swap=0.0, pose_negatives=1.0,
                       pose_negative_deg=[0.5, 10.0], pose_loss=10.0, pose_loss_margin=0.0, pose_loss_params='all',
                       pose_loss_mode='absolute')


def test_old_loss_options_become_terms():
    kwargs = terms.upgrade_loss_kwargs(dict(OLD_LOSS_KWARGS, attr_mix=3.0))
    assert kwargs['terms'] == [
        dict(class_name='training.terms.pose_negatives.PoseNegativesTerm', weight=1.0, deg=[0.5, 10.0]),
        dict(class_name='training.terms.pose.PoseTerm', weight=10.0),
        dict(class_name='training.terms.attribute_mix.AttributeMixTerm', weight=3.0)]
    assert not {'gpc_swap', 'pose_loss', 'pose_negatives', 'pose_negative_deg', 'attr_mix'} & set(kwargs)
    assert terms.upgrade_loss_kwargs(dict(class_name='x', r1_gamma=1, gpc_swap=0.0)) == dict(class_name='x', r1_gamma=1)
    for removed in [dict(gpc_swap=0.5), dict(pose_loss=1.0, pose_loss_mode='relative'),
                    dict(pose_loss=1.0, pose_loss_params='rays')]:
        with pytest.raises(ValueError, match='no longer supported'):
            terms.upgrade_loss_kwargs(dict(OLD_LOSS_KWARGS, **removed))


def _options(data, run_dir, **extra):
    """training_loop options of a tiny run, as train.py writes them into training_options.json."""
    return dict(run_dir=str(run_dir), training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset',
                                                               path=data, use_labels=True, xflip=False),
                G_kwargs=dict(class_name='training.networks_raycond2.Generator', z_dim=8, w_dim=8,
                              mapping_kwargs=dict(num_layers=1), channel_base=128, channel_max=16),
                D_kwargs=dict(class_name='training.networks_raycond2.Discriminator', channel_base=128,
                              channel_max=16, epilogue_kwargs=dict(mbstd_group_size=2)),
                G_opt_kwargs=dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8),
                D_opt_kwargs=dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8),
                loss_kwargs=OLD_LOSS_KWARGS, batch_size=4, batch_gpu=4, kimg_per_tick=0.004,
                image_snapshot_ticks=None, network_snapshot_ticks=1, **extra)


def test_a_run_with_old_loss_option_names_resumes_with_its_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(pose_reader, 'CONFIG', dict(pose_reader.CONFIG, steps=20, max_images=12))
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    first, second = tmp_path / 'r0', tmp_path / 'r1'
    first.mkdir(), second.mkdir()
    options = json.loads(json.dumps(_options(data, first, total_kimg=0.004)))  # through JSON, as from the file
    training_loop(**options)
    snapshot = first / 'network-snapshot-000000.pkl'
    assert snapshot.is_file()
    # The old code saved the reader without 'extra': such a file is reused, not retrained.
    state = torch.load(first / pose_reader.FILE_NAME, weights_only=True)
    torch.save(dict(model=state['model'], config=state['config']), first / pose_reader.FILE_NAME)
    monkeypatch.setattr(pose_reader, 'train_reader', lambda *a, **k: pytest.fail('the reader was retrained'))
    result = training_loop(**_options(data, second, total_kimg=0.008, resume_pkl=str(snapshot)))
    assert result['cur_nimg'] == 8  # continued from the snapshot's 4 images
    with open(second / 'stats.jsonl') as f:
        stats = [json.loads(line) for line in f if line.strip()]
    assert stats[-1]['Loss/G/pose']['num'] > 0 and stats[-1]['Loss/scores/wrong_pose']['num'] > 0
    assert os.path.isfile(second / pose_reader.FILE_NAME)


def test_the_recipe_of_the_bundled_checkpoint_uses_only_options_train_py_has():
    """Every train.py line of docs/training-recipes.md parses, and its --term values are valid."""
    import re
    import shlex

    import train
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, 'docs', 'training-recipes.md')) as f:
        script = f.read().split('```bash', 1)[1].split('```', 1)[0].replace('\\\n', ' ')
    variables = dict(re.findall(r'^(\w+)="([^"]*)"$', script, flags=re.M))
    commands = [line for line in script.splitlines() if line.startswith('python train.py')]
    assert len(commands) == 7
    for line in commands:
        line = re.sub(r'\$(\w+)', lambda m: variables[m.group(1)], line)
        args = shlex.split(re.sub(r'"\$\(snap [^)]*\)"', 'SNAPSHOT', line))[2:]
        ctx = train.main.make_context('train.py', args)
        terms.parse_terms(ctx.params['term'])


TOY_TERM = '''
import torch
from training.terms import Term


class BrightTerm(Term):
    """G pays for dark images (a toy term for docs/extending.md)."""
    phase = 'G'
    summary = 'G pays for dark images'
    options = {'target': float}

    def __init__(self, weight, G=None, D=None, context=None, target=0.5):
        super().__init__(weight)
        self.target = target

    def __call__(self, img, c, run_D=None):
        return (self.target - img.mean(dim=(1, 2, 3))).clamp_min(0) * self.weight
'''


def test_a_loss_term_is_one_module_and_one_table_row(tmp_path, monkeypatch):
    from test_pose_loss import _cameras, _tiny_nets
    from training import loss as loss_mod
    import numpy as np
    (tmp_path / 'toy_term.py').write_text(TOY_TERM)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(terms.TERMS, 'bright', 'toy_term.BrightTerm')
    specs = terms.parse_terms('bright:2:target=0.9')
    assert specs == [{'class_name': 'toy_term.BrightTerm', 'weight': 2.0, 'target': 0.9}]
    assert 'bright (G pays for dark images)' in terms.term_help()
    G, D = _tiny_nets()
    G.requires_grad_(True)
    z, c = torch.randn(4, 8), _cameras(4, np.random.RandomState(0))

    def grads(built):
        loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=0, style_mixing_prob=0, terms=built)
        G.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same noise inputs each time
        loss.accumulate_gradients('Gmain', None, None, z, c, gain=1.0, cur_nimg=0)
        return torch.cat([p.grad.flatten() for p in G.synthesis.parameters() if p.grad is not None])

    with_term = grads(terms.build_terms(specs, G, D, terms.TermContext()))
    assert float((with_term - grads([])).abs().max()) > 1e-6   # the toy term reached G's gradient
