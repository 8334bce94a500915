"""train.py's options: --rays (one spec for the ray conditioning), resuming a file that needs code,
the CPU/CUDA choice without --device, and which errors stay one line (options, data, refused files)
and which show their traceback (a crash inside the training loop)."""

import collections
import json
import os
import pickle
import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import ROOT, make_camera_zip

TINY = ['--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none']
RAY_KEYS = ('embedding', 'ray_torgb', 'camera_in_mapping', 'ray_layers')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_camera_zip(tmp_path_factory.mktemp('data') / 'd.zip', n=4, res=32)


def _config(monkeypatch, tmp_path, data, args):
    """(the training_loop config train.py built, the CliRunner result): launch_training is stubbed."""
    import train
    built = {}
    monkeypatch.setattr(train, 'launch_training', lambda c, **_kw: built.setdefault('c', c))
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', data] + TINY + args)
    return built.get('c'), result


# What --embedding, --ray-layers and --ray-torgb built before they became --rays (checked against
# the old train.py when the options were merged): the ray keys of G_kwargs, absent keys as None.
RAY_SPECS = {
    'default': ([], dict(embedding='plucker', ray_torgb=False, camera_in_mapping=False, ray_layers=None)),
    'plucker': (['--rays=plucker'], dict(embedding='plucker', ray_torgb=False, camera_in_mapping=False,
                                         ray_layers=None)),
    'origin_dir': (['--rays=origin_dir'], dict(embedding='origin_dir', ray_torgb=False, camera_in_mapping=False,
                                               ray_layers=None)),
    'none': (['--rays=none'], dict(embedding='none', ray_torgb=False, camera_in_mapping=False, ray_layers=None)),
    'layers_torgb': (['--rays=two_plane:layers=4,16:torgb=1'],
                     dict(embedding='two_plane', ray_torgb=True, camera_in_mapping=False, ray_layers=[4, 16])),
    'all_torgb_true': (['--rays=plucker:torgb=true:layers=all'],
                       dict(embedding='plucker', ray_torgb=True, camera_in_mapping=False, ray_layers=None)),
    'raycond3': (['--cfg=raycond3-t', '--rays=origin_dir:torgb=1'],
                 dict(embedding='origin_dir', ray_torgb=True, camera_in_mapping=False)),
    'posecond2_ignores_rays': (['--cfg=posecond2', '--rays=origin_dir:torgb=1'],
                               dict(embedding='none', camera_in_mapping=True)),
    'stylegan2': (['--cfg=stylegan2', '--cond=0'], dict()),
}


@pytest.mark.parametrize('case', sorted(RAY_SPECS))
def test_rays_spec_builds_what_the_three_options_built(case, monkeypatch, tmp_path, data):
    args, expected = RAY_SPECS[case]
    c, result = _config(monkeypatch, tmp_path, data, args)
    assert result.exit_code == 0, result.output
    got = {k: c.G_kwargs[k] for k in RAY_KEYS if k in c.G_kwargs}
    if case != 'raycond3' and not case.startswith(('posecond', 'stylegan')):
        assert 'ray_layers' in got      # the StyleGAN2 backbone always gets the key (None: every layer)
    assert got == {k: v for k, v in expected.items()}


RAY_ERRORS = {
    'unknown_embedding': ('--rays=pluecker', "unknown embedding 'pluecker'"),
    'unknown_key': ('--rays=plucker:depth=2', "'depth=2' is not layers=... or torgb=..."),
    'no_value': ('--rays=plucker:torgb', "'torgb' is not layers=... or torgb=..."),
    'twice': ('--rays=plucker:torgb=1:torgb=0', 'torgb is given twice'),
    'torgb_not_bool': ('--rays=plucker:torgb=maybe', "torgb='maybe' is not a boolean"),
    'layers_not_numbers': ('--rays=plucker:layers=x', "layers must be 'all' or a comma list"),
    'layers_not_a_block': ('--rays=plucker:layers=5', 'layers=5: [5] not among the synthesis resolutions'),
}


@pytest.mark.parametrize('case', sorted(RAY_ERRORS))
def test_bad_rays_spec_is_one_line_naming_the_bad_part(case, monkeypatch, tmp_path, data):
    spec, message = RAY_ERRORS[case]
    c, result = _config(monkeypatch, tmp_path, data, [spec])
    assert c is None and result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('Error: --rays: ') and message in lines[0], result.output
    if case != 'layers_not_a_block':
        assert 'EMBEDDING[:layers=all|R,R,...][:torgb=BOOL]' in lines[0]


def test_raycond3_takes_only_every_layer(monkeypatch, tmp_path, data):
    c, result = _config(monkeypatch, tmp_path, data, ['--cfg=raycond3-t', '--rays=plucker:layers=8'])
    assert c is None and 'Error: --rays: this generator always feeds rays to every layer' in result.output


def test_removed_options_are_gone():
    import train
    out = CliRunner().invoke(train.main, ['--help']).output
    for gone in ['--embedding', '--ray-layers', '--ray-torgb', '--trust-pickle', '--device', '--verbose']:
        assert gone not in out, gone
    assert 'CUDA_VISIBLE_DEVICES=' in out
    assert sum(1 for line in out.splitlines() if line.startswith('  --')) <= 32


def test_cpu_unless_cuda_is_available(monkeypatch, tmp_path, data):
    import torch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    c, result = _config(monkeypatch, tmp_path, data, [])
    assert result.exit_code == 0 and c.device_type == 'cpu'


def test_empty_cuda_visible_devices_trains_on_the_cpu(tmp_path, data):
    """The environment is read by CUDA when it starts: with CUDA_VISIBLE_DEVICES= the run is a CPU run."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--outdir', str(tmp_path / 'runs'),
                        '--data', data, '--dry-run'] + TINY, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'Number of processes: 1 CPU process on' in r.stdout


# ----------------------------------------------------------------------------- resume

def test_resume_of_a_file_that_needs_code_says_how_to_convert_it(tmp_path, data, tiny_generator):
    """No --trust-pickle: the refusal is one line with the convert command, and the converted file resumes."""
    import train
    from raycond import convert
    src = tmp_path / 'other run.pkl'
    with open(src, 'wb') as f:
        pickle.dump({'G_ema': tiny_generator(res=32), 'stats': collections.Counter(a=1)}, f)
    args = ['--outdir', str(tmp_path / 'runs'), '--data', data, '--dry-run'] + TINY
    result = CliRunner().invoke(train.main, args + ['--resume', str(src)])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    converted = str(tmp_path / 'other run.safetensors')
    command = f'python -m raycond.convert --trust-pickle {shlex.quote(str(src))} {shlex.quote(converted)}'
    assert line.startswith(f'Error: --resume: {src} needs code to load (global collections.Counter)'), line
    assert f'`{command}`' in line and f'(--resume={shlex.quote(converted)})' in line, line
    argv = shlex.split(command)
    assert argv[:3] == ['python', '-m', 'raycond.convert'] and convert.main(argv[3:]) == 0
    resumed = CliRunner().invoke(train.main, args + ['--resume', converted])
    assert resumed.exit_code == 0, resumed.output
    assert f'Resume from:         {converted}' in resumed.output


def test_resume_auto_reads_a_run_directory_written_before_the_options_changed(tmp_path, data, tiny_generator):
    """A run from before --rays (its training_options.json has the old keys, resume_trust_pickle
    included) is found by --resume=auto: the run is matched by its name, the snapshot loads safely."""
    import train
    outdir = tmp_path / 'runs'
    run = outdir / '00000-raycond2-d-gpus1-batch4-gamma1'
    run.mkdir(parents=True)
    (run / 'training_options.json').write_text(json.dumps({
        'G_kwargs': {'class_name': 'training.networks_raycond2.Generator', 'embedding': 'plucker',
                     'ray_torgb': False, 'camera_in_mapping': False, 'ray_layers': None},
        'resume_trust_pickle': False, 'batch_size': 4}))
    snap = run / 'network-snapshot-000000.004.pkl'
    with open(snap, 'wb') as f:
        pickle.dump({'G_ema': tiny_generator(res=32), 'progress': {'cur_nimg': 4}}, f)
    result = CliRunner().invoke(train.main, ['--outdir', str(outdir), '--data', data, '--resume=auto', '--kimg=1',
                                             '--dry-run'] + TINY)
    assert result.exit_code == 0, result.output
    assert f'Resume from:         {snap}' in result.output
    assert 'resume_trust_pickle' not in result.output


# ----------------------------------------------------------------------------- errors

def _fake_loop(fail_after_setup):
    def training_loop(progress_fn=None, **_kwargs):
        if fail_after_setup:
            progress_fn(0, 8)       # set-up done: the loop reports progress before its first iteration
        raise ValueError('boom')
    return training_loop


def test_error_during_set_up_is_one_line(monkeypatch, tmp_path, data):
    import train
    monkeypatch.setattr(train.tl, 'training_loop', _fake_loop(fail_after_setup=False))
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', data] + TINY)
    assert result.exit_code == 1 and 'Error: boom' in result.output.splitlines()
    assert isinstance(result.exception, SystemExit) and 'Traceback' not in result.output


def test_crash_inside_the_training_loop_keeps_its_traceback(monkeypatch, tmp_path, data):
    import train
    monkeypatch.setattr(train.tl, 'training_loop', _fake_loop(fail_after_setup=True))
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', data] + TINY)
    assert result.exit_code == 1 and 'Error: boom' not in result.output
    assert isinstance(result.exception, ValueError) and str(result.exception) == 'boom'
    # The next run in the same process starts counting again: its set-up errors are one line.
    monkeypatch.setattr(train.tl, 'training_loop', _fake_loop(fail_after_setup=False))
    again = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', data] + TINY)
    assert 'Error: boom' in again.output.splitlines()


def test_crash_inside_the_training_loop_prints_the_traceback(tmp_path, data):
    """As a script: the traceback reaches stderr (what researchers need to debug a crash)."""
    script = tmp_path / 'crash.py'
    script.write_text(f'''import sys, runpy
sys.path.insert(0, {ROOT!r})
import train
def training_loop(progress_fn=None, **kwargs):
    progress_fn(0, 8)
    raise ValueError("boom in the loop")
train.tl.training_loop = training_loop
sys.argv = ["train.py"] + sys.argv[1:]
train.main()
''')
    r = subprocess.run([sys.executable, str(script), '--outdir', str(tmp_path / 'runs'), '--data', data] + TINY,
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES=''))
    assert r.returncode == 1
    assert 'Traceback (most recent call last)' in r.stderr and 'ValueError: boom in the loop' in r.stderr
