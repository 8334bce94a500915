"""Training as StyleGAN users run it: fine-tuning a ray-conditioned network from a StyleGAN2
snapshot (ours or release-style), --kimg with --resume, the visualizer panel's options."""

import os
import pickle

import click
import pytest
import torch
from click.testing import CliRunner

import dnnlib
from conftest import make_camera_zip
from raycond import rundir

TINY = ['--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--snap=1',
        '--metrics=none', '--tick=0.004']
# Module attributes that torch 1.9 (which wrote the releases' pickles) did not have yet.
_TORCH19_MODULE_KEYS = {"training", "_parameters", "_buffers", "_non_persistent_buffers_set", "_backward_hooks",
                        "_is_full_backward_hook", "_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks",
                        "_load_state_dict_pre_hooks", "_modules"}


def _train(args):
    import train
    result = CliRunner().invoke(train.main, args)
    assert result.exit_code == 0, result.output[-3000:]
    return result


def _log(outdir):
    run = rundir.list_runs(str(outdir))[-1][1]
    with open(os.path.join(run, 'log.txt')) as f:
        return run, f.read()


@pytest.fixture(scope='module')
def sg2_run(tmp_path_factory):
    """A tiny camera-labelled StyleGAN2 run (--cond=1), one tick, with Adam states in its snapshot."""
    tmp = tmp_path_factory.mktemp('sg2')
    data = make_camera_zip(tmp / 'd.zip', n=8, res=16)
    _train(['--outdir', str(tmp / 'sg2'), '--data', data, '--cfg=stylegan2', '--cond=1', '--kimg=0.004'] + TINY)
    snap = rundir.newest_snapshot(rundir.list_runs(str(tmp / 'sg2'))[-1][1])
    return dnnlib.EasyDict(tmp=tmp, data=data, snap=snap)


def test_raycond2_finetunes_from_stylegan2_snapshot_without_its_optimizer_state(sg2_run):
    out = sg2_run.tmp / 'ft'
    _train(['--outdir', str(out), '--data', sg2_run.data, '--cfg=raycond2', '--resume', sg2_run.snap,
            '--kimg=0.008'] + TINY)
    run, log = _log(out)
    assert 'copied into their leading channels' in log
    assert 'Optimizer states not restored (the network shapes differ from the snapshot)' in log
    assert 'starting at 0 kimg' in log                       # a new run: --kimg more, counted from 0
    with open(rundir.newest_snapshot(run), 'rb') as f:
        snap = pickle.load(f)
    assert snap['progress']['cur_nimg'] == 8
    assert type(snap['G_ema']).__module__.endswith('networks_raycond2')


def test_resume_from_same_architecture_restores_optimizer_state(sg2_run):
    out = sg2_run.tmp / 'again'
    _train(['--outdir', str(out), '--data', sg2_run.data, '--cfg=stylegan2', '--cond=1', '--resume', sg2_run.snap,
            '--kimg=0.004'] + TINY)
    run, log = _log(out)
    assert 'not restored' not in log and 'starting at 0 kimg' in log
    assert 'Optimizer states restored from the snapshot (G_opt, D_opt).' in log
    with open(sg2_run.snap, 'rb') as f:
        before = pickle.load(f)['progress']['G_opt']['state']
    with open(rundir.newest_snapshot(run), 'rb') as f:
        after = pickle.load(f)['progress']['G_opt']['state']
    # Adam's step counts continued from the snapshot's instead of starting at 0.
    assert float(after[0]['step']) > float(before[0]['step']) > 0


def _release_style_pickle(path, res=16):
    """A StyleGAN2-ADA-style snapshot: G/D/G_ema of the StyleGAN2 family, unconditional, no
    progress record, pickled with protocol 2 and without newer nn.Module internals."""
    torch.manual_seed(0)
    common = dict(c_dim=0, img_resolution=res, img_channels=3, channel_base=256, channel_max=16)
    G = dnnlib.util.construct_class_by_name(class_name='training.networks_stylegan2.Generator', z_dim=512,
                                            w_dim=512, mapping_kwargs=dict(num_layers=1), **common)
    D = dnnlib.util.construct_class_by_name(class_name='training.networks_stylegan2.Discriminator', **common)
    fresh_internals = set(torch.nn.Module().__dict__)
    for net in (G, D):
        for m in net.modules():
            for k in [k for k in m.__dict__ if k in fresh_internals and k not in _TORCH19_MODULE_KEYS]:
                del m.__dict__[k]
    snap = dict(G=G, D=D, G_ema=G, augment_pipe=None,
                training_set_kwargs=dnnlib.EasyDict(path='ffhq.zip', resolution=res, use_labels=False))
    path.write_bytes(pickle.dumps(snap, protocol=2))
    return str(path)


def test_raycond2_finetunes_from_release_style_stylegan2_ada_pickle(sg2_run):
    pkl = _release_style_pickle(sg2_run.tmp / 'ada.pkl')
    out = sg2_run.tmp / 'ada-ft'
    _train(['--outdir', str(out), '--data', sg2_run.data, '--cfg=raycond2', '--resume', pkl, '--kimg=0.004'] + TINY)
    run, log = _log(out)
    assert 'G: ' in log and 'copied into their leading channels' in log
    assert 'Optimizer states' not in log                   # the release pickle has none to restore
    with open(rundir.newest_snapshot(run), 'rb') as f:
        G = pickle.load(f)['G_ema']
    from raycond.camera import camera_label
    img = G(torch.randn([2, G.z_dim]), camera_label([-20.0, 20.0], [0.0, 0.0]), noise_mode='const')
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()


def test_optimizer_state_with_other_shapes_is_reported_not_loaded():
    from training.training_loop import optimizer_state_mismatch
    a = torch.nn.Linear(3, 4)
    opt_a = torch.optim.Adam(a.parameters())
    a(torch.ones(1, 3)).sum().backward()
    opt_a.step()
    b = torch.nn.Linear(5, 4)
    why = optimizer_state_mismatch(torch.optim.Adam(b.parameters()), opt_a.state_dict())
    assert why == 'a parameter of shape [4, 5] has saved state of shape [4, 3]'
    assert optimizer_state_mismatch(torch.optim.Adam(a.parameters()), opt_a.state_dict()) is None


def test_training_panel_offers_every_train_cfg():
    import train
    from viz.training import CFGS
    cfg_choices = next(p for p in train.main.params if p.name == 'cfg').type
    assert isinstance(cfg_choices, click.Choice) and tuple(CFGS) == tuple(cfg_choices.choices)
    assert {'raycond3-t', 'raycond3-r', 'stylegan3-t', 'stylegan3-r'} <= set(CFGS)


def test_training_panel_passes_fractional_kimg():
    from viz.training import build_train_command
    cmd = build_train_command('data.zip', 'runs', cfg='raycond3-t', kimg=0.25)
    assert '--kimg=0.25' in cmd and '--cfg=raycond3-t' in cmd
    assert '--kimg=100' in build_train_command('data.zip', 'runs', kimg=100.0)
    with pytest.raises(ValueError, match='kimg must be more than 0'):
        build_train_command('data.zip', 'runs', kimg=0)


def test_snapshot_names_never_collide_and_newest_is_by_image_count(tmp_path):
    names = []
    for nimg in [4, 8, 12, 1004, 2000, 2500]:
        path = rundir.snapshot_path(str(tmp_path), nimg)
        assert not os.path.exists(path)
        open(path, 'wb').close()
        names.append(os.path.basename(path))
    assert names == ['network-snapshot-000000.pkl', 'network-snapshot-000000.008.pkl',
                     'network-snapshot-000000.012.pkl', 'network-snapshot-000001.pkl', 'network-snapshot-000002.pkl',
                     'network-snapshot-000002.500.pkl']
    open(tmp_path / '.network-snapshot-000009.pkl.tmp-host-1', 'wb').close()  # temporary files never count
    assert [os.path.basename(p) for p in rundir.list_snapshots(str(tmp_path))] == names
    assert rundir.newest_snapshot(str(tmp_path)).endswith('network-snapshot-000002.500.pkl')


@pytest.mark.slow
def test_two_torchrun_nodes_on_localhost_train_and_snapshot(tmp_path):
    """`torchrun --nnodes=2` as on two machines (static rendezvous at localhost, gloo on the CPU)."""
    import socket
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')   # gloo on the CPU, also on a GPU machine
    procs = []
    for node in range(2):
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nnodes=2', f'--node-rank={node}',
               '--nproc-per-node=1', '--master-addr=127.0.0.1', f'--master-port={port}',
               os.path.join(root, 'train.py'), '--outdir', str(tmp_path / 'runs'), '--data', data, '--kimg=0.008',
               '--batch=8', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--snap=2',
               '--metrics=none', '--tick=0.008']
        procs.append(subprocess.Popen(cmd, cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    runs = rundir.list_runs(str(tmp_path / 'runs'))
    assert [os.path.basename(r) for _i, r in runs] == ['00000-raycond2-d-gpus2-batch8-gamma1']
    with open(rundir.newest_snapshot(runs[0][1]), 'rb') as f:
        snap = pickle.load(f)
    assert snap['progress']['cur_nimg'] == 8 and snap['progress']['batch_idx'] == 1


def test_training_panel_starts_small_on_a_cpu_and_passes_the_widths():
    from viz.training import CPU_PRESET, GPU_DEFAULTS, TrainingWidget, build_train_command
    cpu = TrainingWidget(cuda=False)
    assert (cpu.cbase, cpu.cmax, cpu.map_depth, cpu.batch, cpu.kimg) == (2048, 64, 2, 32, 10.0)
    cmd = build_train_command('d.zip', 'runs', cbase=cpu.cbase, cmax=cpu.cmax, map_depth=cpu.map_depth)
    assert cmd[-3:] == ['--cbase=2048', '--cmax=64', '--map-depth=2']
    gpu = TrainingWidget(cuda=True)
    assert (gpu.cbase, gpu.cmax, gpu.kimg) == (32768, 512, 100.0)
    assert not any(a.startswith('--map-depth') for a in build_train_command('d.zip', 'runs', map_depth=None))
    gpu.apply_preset(CPU_PRESET)
    assert gpu.cbase == 2048 and GPU_DEFAULTS['cbase'] == 32768
    with pytest.raises(ValueError, match='--cmax must be at least 1'):
        build_train_command('d.zip', 'runs', cmax=0)
