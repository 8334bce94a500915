"""calc_metrics.py end to end: a tiny ray-conditioned network, a tiny posed dataset and a small
TorchScript detector given through the documented environment variables."""

from __future__ import annotations

import json
import math
import os
import pickle

import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import dnnlib
from metrics import metric_utils
from test_metrics import save_fake_detector, write_gradient_dataset  # noqa: E402 (tests/ is on sys.path)


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """Fake detectors and a private cache."""
    url = save_fake_detector(tmp_path / 'fake_detector.pt')
    monkeypatch.setenv(metric_utils.INCEPTION_ENV, url)
    monkeypatch.setenv(metric_utils.VGG16_ENV, url)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    return url


@pytest.fixture(scope='module')
def tiny_G(tiny_generator):
    return tiny_generator(res=32)


def make_run(tmp_path, G, data, in_snapshot=True):
    """A training-run directory with one snapshot; dataset options in the snapshot or only in
    training_options.json."""
    run_dir = tmp_path / '00000-raycond-data'
    run_dir.mkdir()
    kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True,
                             max_size=40, xflip=False, resolution=32, random_seed=0)
    with open(run_dir / 'training_options.json', 'w') as f:
        json.dump(dict(training_set_kwargs=kwargs, num_gpus=1), f)
    snap = run_dir / 'network-snapshot-000000.pkl'
    with open(snap, 'wb') as f:
        pickle.dump(dict(G_ema=G, training_set_kwargs=kwargs if in_snapshot else None), f)
    return run_dir, snap


def invoke(*args):
    return CliRunner().invoke(calc_metrics.main, [str(a) for a in args], catch_exceptions=False)


def test_run_snapshot_end_to_end_appends_jsonl(tmp_path, tiny_G):
    data = write_gradient_dataset(tmp_path / 'data', n=40, res=32)
    run_dir, snap = make_run(tmp_path, tiny_G, data)
    r = invoke('--network', snap, '--metrics', 'fid100_full,kid100_full', '--seed', 1)
    assert r.exit_code == 0, r.output
    for name in ('fid100_full', 'kid100_full'):  # each metric reports its own images/s
        (line,) = [x for x in r.stdout.splitlines() if x.startswith(f'{name}: ')]
        assert 'generator features' in line and 'img/s' in line
    for name in ('fid100_full', 'kid100_full'):
        lines = (run_dir / f'metric-{name}.jsonl').read_text().splitlines()
        assert len(lines) == 1
        rec = json.loads(lines[0])
        assert rec['metric'] == name and rec['snapshot_pkl'] == 'network-snapshot-000000.pkl'
        assert set(rec) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus', 'snapshot_pkl',
                            'timestamp'}
        assert math.isfinite(rec['results'][name])
    fid = json.loads((run_dir / 'metric-fid100_full.jsonl').read_text())['results']['fid100_full']
    assert fid > 0
    cached = sorted(os.listdir(tmp_path / 'cache' / 'gan-metrics'))
    assert len(cached) == 2  # mean/covariance for FID, all features for KID
    # Same seed, cached dataset statistics: the same value again, now appended as a second line.
    r = invoke('--network', snap, '--metrics', 'fid100_full', '--seed', 1, '--quiet')
    assert r.exit_code == 0, r.output
    lines = (run_dir / 'metric-fid100_full.jsonl').read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])['results']['fid100_full'] == pytest.approx(fid, rel=1e-6)
    assert sorted(os.listdir(tmp_path / 'cache' / 'gan-metrics')) == cached


def test_dataset_found_through_training_options(tmp_path, tiny_G):
    data = write_gradient_dataset(tmp_path / 'data', n=40, res=32)
    run_dir, snap = make_run(tmp_path, tiny_G, data, in_snapshot=False)
    r = invoke('--network', run_dir, '--metrics', 'fid100_full', '--quiet')  # a run dir means its newest snapshot
    assert r.exit_code == 0, r.output
    assert (run_dir / 'metric-fid100_full.jsonl').is_file()


def test_foreign_pickle_needs_data_then_prints_only(tmp_path, tiny_G):
    pkl = tmp_path / 'elsewhere.pkl'
    with open(pkl, 'wb') as f:
        pickle.dump(dict(G_ema=tiny_G), f)
    r = CliRunner().invoke(calc_metrics.main, ['--network', str(pkl), '--metrics', 'fid100_full'])
    assert r.exit_code != 0
    assert '--data' in r.output and 'Traceback' not in r.output

    data = write_gradient_dataset(tmp_path / 'data', n=40, res=32)
    r = invoke('--network', pkl, '--metrics', 'fid100_full', '--data', data, '--mirror', 1)
    assert r.exit_code == 0, r.output
    rec = json.loads([line for line in r.stdout.splitlines() if line.startswith('{')][0])
    assert rec['metric'] == 'fid100_full' and rec['snapshot_pkl'] == str(pkl)
    assert not [p for p in os.listdir(tmp_path) if p.startswith('metric-')]


def test_clear_one_line_errors(tmp_path, tiny_G, monkeypatch):
    data = write_gradient_dataset(tmp_path / 'data', n=40, res=32)
    run_dir, snap = make_run(tmp_path, tiny_G, data)
    r = CliRunner().invoke(calc_metrics.main, ['--network', str(snap), '--metrics', 'fid51k'])
    assert r.exit_code != 0 and 'unknown metric' in r.output and 'fid50k_full' in r.output

    r = CliRunner().invoke(calc_metrics.main, ['--network', str(tmp_path / 'missing.pkl')])
    assert r.exit_code != 0 and 'missing.pkl' in r.output and 'Traceback' not in r.output

    r = CliRunner().invoke(calc_metrics.main, ['--network', str(snap), '--data', str(tmp_path / 'nodata')])
    assert r.exit_code != 0 and 'nodata' in r.output

    # Offline: one line naming the URL and the cache file to fill by hand.
    url = 'http://127.0.0.1:9/metrics/inception-2015-12-05.pkl'
    monkeypatch.setenv(metric_utils.INCEPTION_ENV, url)
    r = CliRunner().invoke(calc_metrics.main, ['--network', str(snap), '--metrics', 'fid100_full',
                                                               '--quiet'])
    assert r.exit_code != 0
    err_lines = [line for line in r.stderr.splitlines() if line.startswith('Error')]
    assert len(err_lines) == 1 and url in err_lines[0] and str(tmp_path / 'cache') in err_lines[0]


def test_help_lists_metrics():
    r = invoke('--help')
    assert r.exit_code == 0
    for word in ('--metrics', '--network', '--data', '--mirror', '--gpus', 'fid50k_full', 'pose_err',
                 'RAYCOND_DETECTOR_URL_INCEPTION'):
        assert word in r.output


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path, tiny_G):
    """--gpus 2 on the CPU: work is split across two gloo processes and gathered; the cached
    dataset statistics equal a single-process computation."""
    data = write_gradient_dataset(tmp_path / 'data', n=40, res=32)
    run_dir, snap = make_run(tmp_path, tiny_G, data)
    r = invoke('--network', snap, '--metrics', 'fid100_full', '--gpus', 2, '--device', 'cpu', '--quiet')
    assert r.exit_code == 0, r.output
    rec = json.loads((run_dir / 'metric-fid100_full.jsonl').read_text())
    assert rec['num_gpus'] == 2 and math.isfinite(rec['results']['fid100_full'])

    cache = tmp_path / 'cache' / 'gan-metrics'
    (cached,) = os.listdir(cache)
    two = metric_utils.FeatureStats.load(str(cache / cached))
    kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True)
    opts = metric_utils.MetricOptions(dataset_kwargs=kwargs, device='cpu', cache=False)
    one = metric_utils.compute_feature_stats_for_dataset(opts, metric_utils.inception_url(), dict(return_features=True),
                                                         capture_mean_cov=True)
    assert two.num_items == one.num_items == 40
    for a, b in zip(two.get_mean_cov(), one.get_mean_cov()):
        assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), atol=1e-5)
