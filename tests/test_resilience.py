"""Training that survives being killed: SIGKILL at random moments (one during a snapshot write),
`--resume=auto` after each, and the result compared bit for bit with a run never killed."""

import errno
import json
import os
import pickle
import random
import re
import signal
import socket
import subprocess
import sys
import time

import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from conftest import make_camera_zip
import dnnlib
from raycond import atomic_io, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK_KIMG = 0.016  # 4 iterations of batch 4 (a multiple of the ADA interval), one snapshot per tick
TOTAL_KIMG = 0.32  # 20 ticks: room enough that no killed run reaches the end before it is killed
KILL_ARGS = ['--batch=4', '--gamma=1', '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--snap=1',
             '--metrics=none', f'--tick={TICK_KIMG}', f'--kimg={TOTAL_KIMG}', '--aug=ada', '--target=0.1',
             '--seed=7', '--mirror=1']

# Runs train.py; the SLOW_WRITE_AT-th network snapshot write stops half-way (after signalling
# SLOW_WRITE_FLAG) so that the test can kill the process in the middle of a write.
WRAPPER = '''
import os, pickle, runpy, sys, time
sys.path.insert(0, {root!r})
import dnnlib
from raycond import rundir
slow_at, count, plain = int(os.environ.get('SLOW_WRITE_AT', '0')), [0], rundir.atomic_pickle
def atomic_pickle(obj, path):
    count[0] += 1
    if count[0] != slow_at:
        return plain(obj, path)
    def write(f):
        data = pickle.dumps(obj)
        f.write(data[:len(data) // 2]); f.flush(); os.fsync(f.fileno())
        open(os.environ['SLOW_WRITE_FLAG'], 'w').close()
        time.sleep(120)
        f.write(data[len(data) // 2:])
    dnnlib.util.atomic_write(path, write)
rundir.atomic_pickle = atomic_pickle
sys.argv = ['train.py'] + sys.argv[1:]
runpy.run_path(os.path.join({root!r}, 'train.py'), run_name='__main__')
'''


def _wait_for(cond, timeout=120.0, proc=None):
    t0 = time.monotonic()
    while not cond():
        assert proc is None or proc.poll() is None, 'train.py exited before it could be killed'
        assert time.monotonic() - t0 < timeout, 'timed out'
        time.sleep(0.02)


def _start(outdir, data, tmp, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS='1', **(env_extra or {}))
    args = [sys.executable, str(tmp / 'wrapper.py'), '--outdir', str(outdir), '--data', data, '--resume=auto']
    return subprocess.Popen(args + KILL_ARGS, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _newest_run(outdir, before):
    runs = [p for _i, p in rundir.list_runs(str(outdir)) if p not in before]
    return runs[-1] if runs else None


def _kimg_lines(run_dir):
    with open(os.path.join(run_dir, 'log.txt')) as f:
        log = f.read()
    ticks = [float(line.split('kimg', 1)[1].split()[0]) for line in log.splitlines() if line.startswith('tick ')]
    start = float(log.split('starting at ', 1)[1].split()[0])
    return log, ticks, start


@pytest.fixture(scope='module')
def killed(tmp_path_factory):
    """Reference run (in this process), then a run killed 3 times and resumed to the end."""
    import train
    tmp = tmp_path_factory.mktemp('kill')
    data = make_camera_zip(tmp / 'd.zip', n=8, res=16)
    (tmp / 'wrapper.py').write_text(WRAPPER.format(root=ROOT))
    ref = CliRunner().invoke(train.main, ['--outdir', str(tmp / 'ref'), '--data', data] + KILL_ARGS)
    assert ref.exit_code == 0, ref.output[-3000:]

    out = tmp / 'runs'
    rnd = random.Random(0)
    kills = []
    host = socket.gethostname()

    def kill_after_snapshots(n, env_extra=None, flag=None):
        before = [p for _i, p in rundir.list_runs(str(out))]
        proc = _start(out, data, tmp, env_extra)
        _wait_for(lambda: _newest_run(out, before) is not None, proc=proc)
        run = _newest_run(out, before)
        if flag is None:
            _wait_for(lambda: len(rundir.list_snapshots(run)) >= n, proc=proc)
            time.sleep(rnd.uniform(0.0, 0.3))
        else:
            _wait_for(lambda: os.path.exists(flag), proc=proc)
        snaps_at_kill = rundir.list_snapshots(run)
        temps = [f for f in os.listdir(run) if '.tmp' in f]
        assert proc.poll() is None, 'train.py finished before it could be killed (raise TOTAL_KIMG)'
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(dict(run=run, snapshots=snaps_at_kill, temps=temps, during_write=flag is not None))

    kill_after_snapshots(2)
    flag = str(tmp / 'stalled')
    kill_after_snapshots(None, dict(SLOW_WRITE_AT='2', SLOW_WRITE_FLAG=flag), flag=flag)
    # A temporary file of a live writer (this process) must survive every clean-up.
    live = os.path.join(kills[0]['run'], f'.network-snapshot-000099.pkl.tmp-{host}-{os.getpid()}')
    with open(live, 'wb') as f:
        f.write(b'being written')
    kill_after_snapshots(1)
    before = [p for _i, p in rundir.list_runs(str(out))]
    proc = _start(out, data, tmp)
    assert proc.wait(timeout=300) == 0
    final_run = _newest_run(out, before)
    return dict(tmp=tmp, data=data, ref_run=rundir.list_runs(str(tmp / 'ref'))[-1][1], out=out, kills=kills,
                final_run=final_run, live_temp=live, train=train)


def _load(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


@pytest.mark.slow
def test_killed_and_resumed_run_ends_bit_identical_to_uninterrupted_run(killed):
    ref = _load(rundir.newest_snapshot(killed['ref_run']))
    got = _load(rundir.newest_snapshot(killed['final_run']))
    assert got['progress']['cur_nimg'] == ref['progress']['cur_nimg'] == round(TOTAL_KIMG * 1000)
    for name in ['G', 'D', 'G_ema', 'augment_pipe']:
        a, b = ref[name].state_dict(), got[name].state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f'{name}.{k}'
    assert got['progress']['augment_p'] == ref['progress']['augment_p'] > 0
    for opt in ['G_opt', 'D_opt']:
        sa, sb = ref['progress'][opt]['state'], got['progress'][opt]['state']
        assert sa.keys() == sb.keys() and len(sa) > 10
        for i in sa:
            for k in sa[i]:
                assert torch.equal(sa[i][k], sb[i][k]), (opt, i, k)


@pytest.mark.slow
def test_kill_during_snapshot_write_leaves_hidden_temp_that_resume_removes(killed):
    stalled = next(k for k in killed['kills'] if k['during_write'])
    host = socket.gethostname()
    assert len(stalled['temps']) == 1 and stalled['temps'][0].startswith('.network-snapshot-')
    assert f'.tmp-{host}-' in stalled['temps'][0]
    assert not os.path.exists(os.path.join(stalled['run'], stalled['temps'][0]))  # removed by the next resume
    log, _ticks, _start = _kimg_lines(killed['kills'][-1]['run'])
    assert 'Removed 1 temporary file(s) left by killed writers' in log and stalled['temps'][0] in log


@pytest.mark.slow
def test_resume_keeps_temp_file_of_live_writer(killed):
    assert os.path.exists(killed['live_temp'])
    leftovers = [os.path.join(r, f) for _i, r in rundir.list_runs(str(killed['out'])) for f in os.listdir(r)
                 if '.tmp' in f]
    assert leftovers == [killed['live_temp']]


@pytest.mark.slow
def test_every_killed_run_directory_is_readable(killed):
    runs = [r for _i, r in rundir.list_runs(str(killed['out']))]
    assert len(runs) == 4
    for run in runs:
        snaps = rundir.list_snapshots(run)
        assert snaps, run
        for snap in snaps:
            assert isinstance(_load(snap)['G_ema'], torch.nn.Module)
        for png in [f for f in os.listdir(run) if f.endswith('.png')]:
            with PIL.Image.open(os.path.join(run, png)) as im:
                im.load()
        with open(os.path.join(run, 'stats.jsonl')) as f:
            assert all(json.loads(line)['Progress/kimg']['mean'] > 0 for line in f if line.strip())


@pytest.mark.slow
def test_each_resume_continues_from_newest_snapshot_losing_at_most_one_interval(killed):
    runs = [r for _i, r in rundir.list_runs(str(killed['out']))]
    for kill, next_run in zip(killed['kills'], runs[1:]):
        newest = _load(kill['snapshots'][-1])['progress']
        _log, ticks_killed, _s = _kimg_lines(kill['run'])
        log, ticks_next, start = _kimg_lines(next_run)
        assert start == pytest.approx(newest['cur_nimg'] / 1000)               # kimg counter continues
        assert os.path.basename(kill['snapshots'][-1]) in log
        assert ticks_killed[-1] - start <= TICK_KIMG + 1e-9                     # at most one interval lost
        # The first tick after a resume closes one interval later, or at the end of training when
        # the snapshot was the last one before it (ticks run 0.004, 0.020, ..., 0.308, then 0.320).
        assert ticks_next[0] == pytest.approx(min(start + TICK_KIMG, TOTAL_KIMG))
        first = _load(rundir.list_snapshots(next_run)[0])['progress']
        assert first['cur_tick'] == newest['cur_tick'] + 1                     # tick counter continues


@pytest.mark.slow
def test_resume_auto_on_complete_run_says_so_and_exits_0(killed):
    before = rundir.list_runs(str(killed['out']))
    result = CliRunner().invoke(killed['train'].main, ['--outdir', str(killed['out']), '--data', killed['data'],
                                                       '--resume=auto'] + KILL_ARGS)
    assert result.exit_code == 0, result.output
    assert 'Training is complete' in result.output and f'{TOTAL_KIMG:g} kimg' in result.output
    assert rundir.list_runs(str(killed['out'])) == before  # no new run directory


# ----------------------------------------------------------------------------- full disks, Ctrl-C

def _enospc_after_half(data):
    def write(f):
        f.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, 'No space left on device')
    return write


def test_failed_atomic_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / 'network-snapshot-000000.pkl'
    target.write_bytes(b'complete old snapshot')
    with pytest.raises(OSError, match='^No space left on device while writing .*network-snapshot-000000.pkl$'):
        dnnlib.util.atomic_write(str(target), _enospc_after_half(b'new' * 1000))
    assert target.read_bytes() == b'complete old snapshot'
    assert os.listdir(tmp_path) == ['network-snapshot-000000.pkl']


def test_disk_full_during_training_gives_one_clear_error_and_keeps_earlier_snapshot(tmp_path, monkeypatch):
    import train
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    calls = [0]
    plain = rundir.atomic_pickle

    def atomic_pickle(obj, path):
        calls[0] += 1
        if calls[0] == 1:
            return plain(obj, path)
        atomic_io.write_with(path, _enospc_after_half(pickle.dumps(obj)))   # what rundir.atomic_pickle uses

    monkeypatch.setattr(rundir, 'atomic_pickle', atomic_pickle)
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', data, '--kimg=0.012',
                                             '--tick=0.004'] + KILL_ARGS[:8])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1 and 'choose another --outdir' in errors[0]
    assert re.match(r'Error: No space left on device while writing .*/network-snapshot-[0-9.]+\.pkl; ', errors[0])
    assert 'Traceback' not in result.output
    run = rundir.list_runs(str(tmp_path / 'runs'))[-1][1]
    assert [os.path.basename(p) for p in rundir.list_snapshots(run)] == ['network-snapshot-000000.pkl']
    assert _load(os.path.join(run, 'network-snapshot-000000.pkl'))['progress']['cur_nimg'] == 4
    assert not [f for f in os.listdir(run) if '.tmp' in f]


def test_dataset_tool_refuses_non_square_resolution_at_once(tmp_path):
    import dataset_tool
    from training.dataset import ImageFolderDataset
    from training.dataset import DatasetError
    result = CliRunner().invoke(dataset_tool.cli, ['--source', str(tmp_path), '--dest', str(tmp_path / 'o.zip'),
                                                   '--resolution=17x16'])
    assert result.exit_code != 0 and 'Traceback' not in result.output
    assert 'non-square images (17x16); expected square images (use dataset_tool.py --transform=center-crop)' \
        in result.output
    assert not os.path.exists(tmp_path / 'o.zip')
    folder = tmp_path / 'ns'
    folder.mkdir()
    PIL.Image.new('RGB', (17, 16)).save(folder / 'a.png')
    with pytest.raises(DatasetError) as e:  # train.py's message says the same
        ImageFolderDataset(str(folder))
    assert 'non-square images (17x16); expected square images (use dataset_tool.py --transform=center-crop)' \
        in str(e.value)


def test_ctrl_c_during_dataset_tool_leaves_no_partial_dataset(tmp_path):
    import io
    import zipfile
    src = tmp_path / 'src.zip'
    with zipfile.ZipFile(src, 'w') as z:
        for i in range(1500):
            buf = io.BytesIO()
            PIL.Image.new('RGB', (8, 8), (i % 256, 0, 0)).save(buf, format='png')
            z.writestr(f'{i:05d}.png', buf.getvalue())
    dest = tmp_path / 'out.zip'
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'dataset_tool.py'), '--source', str(src), '--dest',
                             str(dest), '--resolution=128x128'], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: any('.tmp' in f for f in os.listdir(tmp_path)), proc=proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert 'Interrupted' in out and 'Traceback' not in out
    assert sorted(os.listdir(tmp_path)) == ['src.zip']


def test_interrupted_metric_cache_write_leaves_no_file(tmp_path, monkeypatch):
    from metrics import metric_utils
    stats = metric_utils.FeatureStats(capture_all=True)

    def interrupted(obj, f):
        f.write(b'half of the statistics')
        raise KeyboardInterrupt

    monkeypatch.setattr(metric_utils.pickle, 'dump', interrupted)
    with pytest.raises(KeyboardInterrupt):
        stats.save(str(tmp_path / 'stats.pkl'))
    assert os.listdir(tmp_path) == []


def test_ctrl_c_during_calc_metrics_records_no_result(tmp_path, small_pickle, monkeypatch):
    import shutil
    import calc_metrics
    from metrics import metric_main
    run = tmp_path / '00000-raycond2-d'
    run.mkdir()
    snap = run / 'network-snapshot-000000.pkl'
    shutil.copy(small_pickle, snap)
    data = make_camera_zip(tmp_path / 'd.zip', n=4, res=32)
    (run / 'training_options.json').write_text(json.dumps(dict(training_set_kwargs=dict(
        class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True, xflip=False))))

    def interrupted(**_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(metric_main, 'calc_metric', interrupted)
    result = CliRunner().invoke(calc_metrics.main, ['--network', str(snap), '--metrics=pose_err1k', '--device=cpu'])
    assert result.exit_code == 130
    assert 'Interrupted; no result was recorded' in result.output
    assert sorted(os.listdir(run)) == ['network-snapshot-000000.pkl', 'training_options.json']
