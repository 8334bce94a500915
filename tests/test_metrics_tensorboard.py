"""With TensorBoard installed (the `test` extra), a tiny train.py run writes *.tfevents holding the
training statistics and the snapshot metrics, readable by TensorBoard's own event reader."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from test_metrics import save_fake_detector, write_gradient_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

tensorboard = pytest.importorskip('tensorboard', reason='pip install -e ".[test]" installs tensorboard')


@pytest.mark.slow
def test_tiny_run_writes_tfevents_with_stats_and_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    data = write_gradient_dataset(tmp_path / 'poses', n=8, res=16)
    env = dict(os.environ, OMP_NUM_THREADS='1', DNNLIB_CACHE_DIR=str(tmp_path / 'cache'),
               RAYCOND_DETECTOR_URL_INCEPTION=save_fake_detector(tmp_path / 'detector.pt'))
    args = ['--outdir', str(tmp_path / 'runs'), '--data', data, '--kimg=0.004', '--tick=0.004', '--batch=4',
            '--gamma=1', '--cbase=1024', '--cmax=32', '--map-depth=2', '--workers=0', '--snap=1',
            '--metrics=fid100_full']
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py')] + args, cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    events = glob.glob(str(tmp_path / 'runs' / '*' / 'events.out.tfevents.*'))
    assert len(events) == 1
    acc = EventAccumulator(events[0], size_guidance={'scalars': 0})
    acc.Reload()
    tags = set(acc.Tags()['scalars'])
    assert {'Loss/G/loss', 'Loss/D/loss', 'Progress/kimg', 'Metrics/fid100_full'} <= tags, sorted(tags)
    fid = acc.Scalars('Metrics/fid100_full')
    assert len(fid) == 1 and fid[0].value >= 0
    assert acc.Scalars('Progress/kimg')[-1].value == pytest.approx(0.004, abs=1e-3)
