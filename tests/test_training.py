"""Tests for train.py and the training stack (loss, augmentation, loop, resume, 2-process gloo)."""

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dnnlib
from conftest import make_tiny_generator
from raycond.camera import camera_label

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--batch=4', '--gamma=1', '--cbase=1024', '--cmax=32', '--map-depth=2', '--workers=0', '--snap=1',
        '--metrics=none']


def _make_dataset(path, n=8, res=32, labels='camera', seed=0):
    """ZIP of random images with camera labels ('camera'), class labels ('class') or none."""
    rnd = np.random.RandomState(seed)
    c = camera_label(rnd.uniform(-30, 30, n), rnd.uniform(-10, 10, n)).numpy()
    entries = []
    with zipfile.ZipFile(path, 'w') as z:
        for i in range(n):
            img = (rnd.rand(res, res, 3) * 255).astype(np.uint8)
            buf = io.BytesIO()
            PIL.Image.fromarray(img).save(buf, format='png')
            name = f'{i:05d}.png'
            z.writestr(name, buf.getvalue())
            entries.append([name, c[i].tolist() if labels == 'camera' else i % 2])
        if labels is not None:
            z.writestr('dataset.json', json.dumps({'labels': entries}))
    return str(path)


def _train(args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS='1')  # tiny nets: extra threads only add contention
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py')] + args, cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _stats(run_dir):
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('train')
    data = _make_dataset(tmp / 'heads.zip')
    outdir = str(tmp / 'runs')
    _train(['--outdir', outdir, '--data', data, '--kimg=0.008', '--tick=0.004', '--mirror=1'] + TINY)
    run_dir = os.path.join(outdir, '00000-raycond2-heads-gpus1-batch4-gamma1')
    return dnnlib.EasyDict(data=data, outdir=outdir, run_dir=run_dir, tmp=tmp)


@pytest.mark.slow
def test_run_writes_all_files(first_run):
    run_dir = first_run.run_dir
    for name in ['training_options.json', 'log.txt', 'stats.jsonl', 'fakes_init.png', 'fakes000000.png',
                 'reals.png', 'network-snapshot-000000.pkl']:
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert not [f for f in os.listdir(run_dir) if '.tmp' in f]  # no leftovers of atomic writes
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        opts = json.load(f)
    assert opts['batch_size'] == 4 and opts['training_set_kwargs']['xflip'] is True
    assert opts['G_kwargs']['class_name'] == 'training.networks_raycond2.Generator'
    assert 'xflip' not in opts['augment_kwargs'] and opts['augment_kwargs']['brightness'] == 1  # colour only
    log = open(os.path.join(run_dir, 'log.txt')).read()
    for word in ['tick 0', 'tick 1', 'sec/kimg', 'ETA', 'augment', 'cpumem', 'threads', 'Exiting']:
        assert word in log, word
    stats = _stats(run_dir)
    assert len(stats) == 2
    assert [round(s['Progress/kimg']['mean'], 3) for s in stats] == [0.004, 0.008]
    assert np.isfinite(stats[-1]['Loss/G/loss']['mean']) and np.isfinite(stats[-1]['Loss/D/loss']['mean'])
    # Grid: 8 cameras x 6 identities at 32x32.
    assert PIL.Image.open(os.path.join(run_dir, 'fakes_init.png')).size == (8 * 32, 6 * 32)


@pytest.mark.slow
def test_snapshot_loads_in_fresh_process(first_run):
    pkl = os.path.join(first_run.run_dir, 'network-snapshot-000000.008.pkl')  # second snapshot in kimg 0
    code = textwrap.dedent(f'''
        import pickle, torch
        with open({pkl!r}, 'rb') as f:
            snap = pickle.load(f)
        G = snap['G_ema']
        z = torch.randn([2, G.z_dim]); c = torch.tensor(snap['G_ema'].c_dim * [0.0])
        from raycond.camera import camera_label
        c = camera_label([-20.0, 20.0], [0.0, 0.0])
        img = G(z, c, noise_mode='const')
        assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
        assert set(['G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', 'camera_stats', 'progress']) <= set(snap)
        assert snap['progress']['cur_nimg'] == 8 and 'state' in snap['progress']['G_opt']
        assert snap['training_set_kwargs'].xflip is True
        print('yaw', snap['camera_stats']['yaw_range_deg'])
    ''')
    r = subprocess.run([sys.executable, '-c', code], cwd=first_run.tmp, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lo, hi = json.loads(r.stdout.split('yaw', 1)[1])
    assert lo == pytest.approx(-hi, abs=1e-3)  # --mirror=1: mirrored cameras make the range symmetric


@pytest.mark.slow
def test_resume_auto_continues_kimg(first_run):
    _train(['--outdir', first_run.outdir, '--data', first_run.data, '--kimg=0.012', '--tick=0.004', '--mirror=1',
            '--resume=auto'] + TINY)
    run_dir = os.path.join(first_run.outdir, '00001-raycond2-heads-gpus1-batch4-gamma1')
    log = open(os.path.join(run_dir, 'log.txt')).read()
    assert 'Resuming from' in log and 'network-snapshot-000000.008.pkl' in log
    assert 'starting at 0.008 kimg' in log
    kimgs = [round(s['Progress/kimg']['mean'], 3) for s in _stats(run_dir)]
    assert kimgs == [0.012]
    ticks = [s['Progress/tick']['mean'] for s in _stats(run_dir)]
    assert ticks == [2]  # the tick counter continues too
    with open(os.path.join(run_dir, 'network-snapshot-000000.pkl'), 'rb') as f:
        assert pickle.load(f)['progress']['cur_nimg'] == 12


@pytest.fixture(scope='module')
def labeled_data(tmp_path_factory):
    return _make_dataset(tmp_path_factory.mktemp('data') / 'heads.zip')


@pytest.fixture(scope='module')
def resume_snapshot(tmp_path_factory, tiny_generator):
    """A 32x32 snapshot: what `--resume` checks before any work starts."""
    path = tmp_path_factory.mktemp('snap') / 'network-snapshot-000000.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'G_ema': tiny_generator(res=32), 'progress': {'cur_nimg': 8}}, f)
    return str(path)


CLI_ERRORS = {
    # name: (arguments after --data, the message expected in the one-line error)
    'missing_dataset': (['{tmp}/missing.zip'], 'dataset not found'),
    'batch_not_multiple_of_gpus': (['{data}', '--gpus=3'], '--batch=4 must be a multiple of --gpus=3'),
    'cond_without_labels': (['{unlabeled}', '--cfg=stylegan2', '--cond=1'], 'has no labels'),
    'raycond_without_cameras': (['{unlabeled}'], 'needs 25-float camera labels'),
    'resume_of_other_resolution': (['{small}', '--resume', '{snapshot}'], 'generates 32x32 images but dataset'),
    'resume_missing': (['{data}', '--resume', '{tmp}/nope.pkl'], 'snapshot not found'),
    'ray_layers_not_a_block': (['{data}', '--rays=plucker:layers=5'], '--rays: layers=5'),
    'batch_gpu_below_mbstd_group': (['{data}', '--batch-gpu=2'], '--mbstd-group'),
    'unknown_metric': (['{data}', '--metrics=bogus'], 'bogus'),
}


@pytest.mark.parametrize('case', sorted(CLI_ERRORS))
def test_cli_error_before_work(case, labeled_data, resume_snapshot, tmp_path):
    from train import main
    paths = dict(tmp=tmp_path, data=labeled_data, snapshot=resume_snapshot,
                 unlabeled=_make_dataset(tmp_path / 'plain.zip', n=2, labels=None),
                 small=_make_dataset(tmp_path / 'small.zip', n=2, res=16))
    args, message = CLI_ERRORS[case]
    result = CliRunner().invoke(main, ['--outdir', str(tmp_path / 'runs')] + TINY +
                                ['--data'] + [a.format(**paths) for a in args])
    assert result.exit_code != 0
    assert message in result.output and 'Traceback' not in result.output
    assert not os.path.exists(tmp_path / 'runs')  # nothing was created


def test_dry_run_prints_options(labeled_data, tmp_path):
    from train import main
    result = CliRunner().invoke(main, ['--outdir', str(tmp_path / 'runs'), '--data', labeled_data,
                                       '--cfg=posecond2', '--term=pose-negatives:0.5', '--dry-run'] + TINY)
    assert result.exit_code == 0, result.output
    assert 'Dry run; exiting.' in result.output and '"camera_in_mapping": true' in result.output
    assert '"class_name": "training.terms.pose_negatives.PoseNegativesTerm"' in result.output
    assert not os.path.exists(tmp_path / 'runs')


def test_dry_run_ray_layers_reach_the_generator(labeled_data, tmp_path):
    from train import main
    result = CliRunner().invoke(main, ['--outdir', str(tmp_path / 'runs'), '--data', labeled_data,
                                       '--rays=plucker:layers=4,16', '--dry-run'] + TINY)
    assert result.exit_code == 0, result.output
    assert '"ray_layers": [\n      4,\n      16\n    ]' in result.output


def test_help_lists_options():
    from train import main
    out = CliRunner().invoke(main, ['--help']).output
    for opt in ['--outdir', '--cfg', '--data', '--gpus', '--batch', '--batch-gpu', '--gamma', '--cond', '--mirror',
                '--aug', '--target', '--resume', '--freezed', '--p ', '--kimg', '--tick', '--snap', '--seed',
                '--fp32', '--nobench', '--workers', '--dry-run', '--desc', '--cbase', '--cmax', '--map-depth',
                '--mbstd-group', '--glr', '--dlr', '--rays', '--metrics', '--term', '--threads']:
        assert opt in out, opt
    assert CliRunner().invoke(main, ['-h']).output == out


def test_cpu_processes_say_how_many_cores_they_share(monkeypatch):
    import train
    from raycond import threads
    monkeypatch.setattr(threads, 'usable_cpus', lambda: 2)
    assert train.describe_processes(8, 'cpu') == '8 CPU processes on 2 cores (more processes than cores: each runs slower)'
    assert train.describe_processes(1, 'cpu') == '1 CPU process on 2 cores'
    assert train.describe_processes(2, 'cuda') == '2 (cuda)'
    assert train.default_workers() == 1  # torch warns at every tick when workers outnumber the cores
    monkeypatch.setattr(threads, 'usable_cpus', lambda: 16)
    assert train.default_workers() == 3


DDP_SCRIPT = '''
import sys, os, torch
sys.path.insert(0, {root!r})
import dnnlib
from torch_utils import training_stats
from training.training_loop import training_loop

def worker(rank, out):
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', init_method='file://' + os.path.join(out, 'init'),
                                         rank=rank, world_size=2)
    training_stats.init_multiprocessing(rank, torch.device('cpu'))
    G_kwargs = dnnlib.EasyDict(class_name='training.networks_raycond2.Generator', z_dim=16, w_dim=16,
                               mapping_kwargs=dict(num_layers=1), channel_base=256, channel_max=16)
    D_kwargs = dnnlib.EasyDict(class_name='training.networks_raycond2.Discriminator', channel_base=256,
                               channel_max=16, epilogue_kwargs=dict(mbstd_group_size=2))
    res = training_loop(run_dir=out, training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset',
                        path={data!r}, use_labels=True, xflip=True),
                        G_kwargs=G_kwargs, D_kwargs=D_kwargs,
                        G_opt_kwargs=dict(class_name='torch.optim.Adam', lr=0.01, betas=[0, 0.99], eps=1e-8),
                        D_opt_kwargs=dict(class_name='torch.optim.Adam', lr=0.01, betas=[0, 0.99], eps=1e-8),
                        augment_kwargs=dict(class_name='training.augment.AugmentPipe', brightness=1),
                        augment_p=0.5, loss_kwargs=dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=1),
                        num_gpus=2, rank=rank, batch_size=8, batch_gpu=2, total_kimg=0.04, kimg_per_tick=0.04,
                        image_snapshot_ticks=None, network_snapshot_ticks=None, G_reg_interval=2, D_reg_interval=2)
    torch.save({{k: v.detach().clone() for k, v in list(res['G'].state_dict().items()) +
                 [('D.' + n, t) for n, t in res['D'].state_dict().items()]}}, os.path.join(out, f'rank{{rank}}.pt'))
    torch.distributed.destroy_process_group()

if __name__ == '__main__':
    torch.multiprocessing.spawn(worker, args=(sys.argv[1],), nprocs=2)
'''


@pytest.mark.slow
def test_two_process_gloo_identical_parameters(tmp_path):
    data = _make_dataset(tmp_path / 'd.zip', n=8, res=16)
    script = tmp_path / 'ddp.py'
    script.write_text(DDP_SCRIPT.format(root=ROOT, data=data))
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=240,
                       env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    a = torch.load(tmp_path / 'rank0.pt')
    b = torch.load(tmp_path / 'rank1.pt')
    assert a.keys() == b.keys()
    params = [k for k in a if not k.endswith('w_avg') and a[k].is_floating_point()]
    assert len(params) > 20
    for k in params:
        assert torch.equal(a[k], b[k]), k
    # Each rank saw different data and latents, so identical weights mean the gradients were averaged;
    # the per-rank w_avg buffers (updated locally, as in StyleGAN2-ADA) are what differs.
    assert any(not torch.equal(a[k], b[k]) for k in a if k.endswith('w_avg'))


# ---------------------------------------------------------------------------- loss and augmentation


def _tiny_nets(res=16):
    G = make_tiny_generator('raycond2', res, z_dim=16, w_dim=16, channel_base=256, channel_max=16,
                            mapping_kwargs=dict(num_layers=1))
    D = dnnlib.util.construct_class_by_name(class_name='training.networks_raycond2.Discriminator', c_dim=25,
                                            img_resolution=res, img_channels=3, channel_base=256, channel_max=16,
                                            epilogue_kwargs=dict(mbstd_group_size=4))
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def _losses(loss, G, D, reals, c, z):
    with torch.no_grad():
        fake = G(z, c)
        d = torch.nn.functional.softplus(D(fake, c)).mean() + torch.nn.functional.softplus(-D(reals, c)).mean()
        g = torch.nn.functional.softplus(-D(G(z, c), c)).mean()
    return float(d), float(g)


def _tiny_loss_problem():
    from training.loss import StyleGAN2Loss
    G, D = _tiny_nets()
    loss = StyleGAN2Loss(device='cpu', G=G, D=D, r1_gamma=0.1, style_mixing_prob=0.9)
    c = camera_label(np.linspace(-20, 20, 4), np.zeros(4))
    reals = torch.full([4, 3, 16, 16], 0.8) + 0.05 * torch.randn([4, 3, 16, 16])
    return dnnlib.EasyDict(loss=loss, G=G, D=D, c=c, reals=reals, z_eval=torch.randn([4, 16]))


def _optimize(p, phase, net, steps=15):
    """`steps` Adam steps of one phase ('Dboth' or 'Gboth') on `net`; the other network stays fixed."""
    opt = torch.optim.Adam(net.parameters(), lr=0.005, betas=(0.0, 0.99))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        net.requires_grad_(True)
        p.loss.accumulate_gradients(phase, p.reals, p.c, torch.randn([4, 16]), p.c, gain=1, cur_nimg=0)
        net.requires_grad_(False)
        opt.step()


def test_discriminator_steps_lower_its_loss():
    p = _tiny_loss_problem()
    d0, _ = _losses(p.loss, p.G, p.D, p.reals, p.c, p.z_eval)
    _optimize(p, 'Dboth', p.D)
    d1, _ = _losses(p.loss, p.G, p.D, p.reals, p.c, p.z_eval)
    assert d1 < 0.7 * d0, (d0, d1)


def test_generator_steps_lower_its_loss_against_a_fixed_discriminator():
    p = _tiny_loss_problem()
    _losses(p.loss, p.G, p.D, p.reals, p.c, p.z_eval)  # same random stream as the D test up to here
    _optimize(p, 'Dboth', p.D)
    _, g1 = _losses(p.loss, p.G, p.D, p.reals, p.c, p.z_eval)
    _optimize(p, 'Gboth', p.G)
    _, g2 = _losses(p.loss, p.G, p.D, p.reals, p.c, p.z_eval)
    assert g2 < 0.7 * g1, (g1, g2)
    assert float(p.loss.pl_mean) > 0  # path-length regularization ran and tracked its mean


def test_augment_pipes():
    from training.augment import AUGPIPE_SPECS, AugmentPipe, default_augpipe
    torch.manual_seed(0)
    x = torch.rand([8, 3, 16, 16]) * 2 - 1
    pipe = AugmentPipe(**AUGPIPE_SPECS['bgc'])
    pipe.p.fill_(0)
    assert torch.equal(pipe(x), x)  # p = 0: identity
    assert default_augpipe(True) == 'color' and default_augpipe(False) == 'bgc'
    color = AugmentPipe(**AUGPIPE_SPECS['color'])
    assert not color.is_geometric and pipe.is_geometric
    color.p.fill_(1)
    # Colour ops act per pixel: a constant image stays constant (no pixel moves).
    flat = torch.zeros([8, 3, 16, 16]) + torch.tensor([0.3, -0.2, 0.5]).reshape(1, 3, 1, 1)
    y = color(flat)
    assert not torch.allclose(y, flat)
    assert torch.allclose(y, y[:, :, :1, :1].expand_as(y), atol=1e-5)
    # A pure x-flip pipeline at p = 1 flips about half of the images exactly.
    flip = AugmentPipe(xflip=1)
    flip.p.fill_(1)
    torch.manual_seed(2)
    y = flip(x)
    flipped = [torch.allclose(y[i], x[i].flip(-1), atol=1e-5) for i in range(8)]
    kept = [torch.allclose(y[i], x[i], atol=1e-5) for i in range(8)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    x.requires_grad_(True)
    color(x).sum().backward()  # differentiable
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_resume_from_unconditional_stylegan2_copies_leading_channels():
    from training.training_loop import copy_params_partial
    kw = dict(z_dim=16, w_dim=16, channel_base=256, channel_max=16, mapping_kwargs=dict(num_layers=1))
    src = make_tiny_generator('stylegan2', 16, **kw)
    dst = make_tiny_generator('raycond2', 16, seed=1, **kw)
    fresh = {k: v.clone() for k, v in dst.state_dict().items()}
    rep = copy_params_partial(src, dst)
    assert rep['partial'] and rep['full']
    s, d = src.state_dict(), dst.state_dict()
    name = next(k for k in rep['partial'] if k.endswith('conv1.weight'))
    n_in = s[name].shape[1]
    assert d[name].shape[1] == n_in + 6
    assert torch.equal(d[name][:, :n_in], s[name])                  # feature channels copied
    assert torch.equal(d[name][:, n_in:], fresh[name][:, n_in:])    # 6 ray channels stay fresh
    for k in rep['full']:
        assert torch.equal(d[k], s[k])
    img = dst(torch.randn([1, 16]), camera_label([0.0], [0.0]))
    assert img.shape == (1, 3, 16, 16) and torch.isfinite(img).all()


def test_a_log_that_cannot_be_written_is_dropped_and_the_console_goes_on(tmp_path):
    import io
    from train import _Tee

    class FullDisk(io.StringIO):
        def write(self, text):
            raise OSError(28, 'No space left on device')

    console = io.StringIO()
    tee = _Tee(console, str(tmp_path / 'log.txt'))
    tee.write('first\n')
    tee.file.close()
    tee.file = FullDisk()
    tee.write('second\n')
    tee.flush()
    assert tee.file is None and console.getvalue() == 'first\nsecond\n'
    assert (tmp_path / 'log.txt').read_text() == 'first\n'


def test_train_py_follows_the_cpu_competition_once_per_iteration(labeled_data, tmp_path, monkeypatch):
    """The thread policy is the entry point's: train.py hands the loop threads.adapt as its per-iteration hook."""
    import train
    from raycond import threads
    calls = []
    monkeypatch.setattr(threads, 'adapt', lambda: calls.append(1))
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', labeled_data,
                                             '--kimg=0.008', '--tick=0.008'] + TINY)
    assert result.exit_code == 0, result.output[-2000:]
    assert len(calls) == 3      # before the first of the 2 iterations of 4 images, then after each


def test_generate_images_calls_its_batch_hook_before_each_batch(small_generator):
    from raycond import generate as gen
    calls = []
    imgs = gen.generate_images(small_generator, [1, 2, 3], gen.c_for_network(None, 0.0, 0.0), batch_size=2,
                               on_batch=lambda: calls.append(1))
    assert len(imgs) == 3 and len(calls) == 2
