"""Mode-coverage metrics on synthetic heads (attr_tv, kid_synth) and the factors they rest on:
dataset.json stores each image's factors, older datasets get them redrawn from the seed, the data
against itself scores near zero, an untrained network and a one-hair-style network score badly."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch

import dnnlib
from metrics import metric_main, metric_utils, synth_coverage
from raycond.synth import factors as synth_factors
from raycond.synth.dataset import write_dataset
from conftest import small_raycond_kwargs
from test_metrics import ToyG

RES = 32
COUNT = 260
# Small classifier settings for tests (the metric's defaults train 2000 steps on up to 4000 images).
CLS = dict(input_res=RES, steps=300, batch_size=32, channels=(16, 32))


@pytest.fixture(scope='module')
def synth_data(tmp_path_factory):
    """A rendered synthetic-heads ZIP (factors stored) and a classifier cache shared by the tests."""
    root = tmp_path_factory.mktemp('synth')
    path = str(root / 'heads.zip')
    write_dataset(path, COUNT, resolution=RES, seed=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('DNNLIB_CACHE_DIR', str(root / 'cache'))
        yield path


def _kwargs(path):
    return dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=path, use_labels=True, xflip=False)


class DataSynthesis(torch.nn.Module):
    """'Generates' the dataset's own images (those whose index is in `keep`), picked by w."""

    def __init__(self, path, keep=None):
        super().__init__()
        ds = metric_utils.make_dataset(_kwargs(path))
        idx = np.arange(len(ds)) if keep is None else np.asarray(keep)
        self.register_buffer('images', torch.from_numpy(np.stack([ds[int(i)][0] for i in idx])).float() / 127.5 - 1)

    def forward(self, ws, c, noise_mode='const', force_fp32=True):
        pick = (ws[:, 0, 0].abs() * 1e4).long() % self.images.shape[0]
        return self.images[pick]


def _opts(G, path, seed=0):
    return metric_utils.MetricOptions(G=G, dataset_kwargs=_kwargs(path), device='cpu', seed=seed)


def _classes(path):
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read('dataset.json'))
    return synth_factors.attribute_classes([rec for _, rec in meta['synth_params']]), meta


def test_writer_stores_factors_of_every_image(synth_data):
    classes, meta = _classes(synth_data)
    assert [p for p, _ in meta['synth_params']] == [p for p, _ in meta['labels']]
    assert meta['synth']['seed'] == 5 and meta['synth']['count'] == COUNT
    params, _ = synth_factors.draw_dataset(5, COUNT)
    assert np.array_equal(classes['hair_style'], params['hair_style'].numpy().astype(np.int64))


def test_factors_of_an_older_dataset_are_redrawn_from_its_seed(synth_data, tmp_path):
    _, meta = _classes(synth_data)
    old = tmp_path / 'old.zip'
    with zipfile.ZipFile(synth_data) as src, zipfile.ZipFile(old, 'w') as dst:
        for name in src.namelist():
            data = src.read(name) if name != 'dataset.json' else json.dumps({'labels': meta['labels']}).encode()
            dst.writestr(name, data)
    ds = metric_utils.make_dataset(_kwargs(str(old)))
    targets, source = synth_coverage.attribute_targets(ds, _kwargs(str(old)))
    stored, _ = synth_coverage.attribute_targets(ds, _kwargs(synth_data))
    assert source == 'rederived from seed 5'
    assert np.array_equal(targets, stored)


def test_refuses_dataset_without_synthetic_factors(tmp_path):
    from test_metrics import write_gradient_dataset
    path = write_gradient_dataset(tmp_path / 'grad', n=20, res=16)
    ds = metric_utils.make_dataset(_kwargs(path))
    with pytest.raises(ValueError, match='synthetic-heads dataset from dataset_tool.py synth'):
        synth_coverage.attribute_targets(ds, _kwargs(path))


def test_total_variation_of_histograms():
    assert synth_coverage.total_variation([1, 2, 3], [2, 4, 6]) == 0
    assert synth_coverage.total_variation([1, 0], [0, 5]) == 1
    assert synth_coverage.total_variation([3, 1], [1, 1]) == pytest.approx(0.25)


@pytest.mark.slow
def test_attr_tv_data_near_zero_untrained_and_one_style_high(synth_data):
    data_G = ToyG(DataSynthesis(synth_data), c_dim=25, res=RES)
    r_data = synth_coverage.compute_attr_tv(_opts(data_G, synth_data), num_gen=200, **CLS)
    torch.manual_seed(0)
    untrained = dnnlib.util.construct_class_by_name(**small_raycond_kwargs(RES)).eval()
    r_untrained = synth_coverage.compute_attr_tv(_opts(untrained, synth_data), num_gen=200, **CLS)
    classes, _ = _classes(synth_data)
    long_hair = np.nonzero(classes['hair_style'] == synth_factors.HAIR_STYLES.index('long'))[0]
    one_style_G = ToyG(DataSynthesis(synth_data, keep=long_hair), c_dim=25, res=RES)
    r_one = synth_coverage.compute_attr_tv(_opts(one_style_G, synth_data), num_gen=200, **CLS)
    print(r_data, r_untrained, r_one, sep='\n')

    assert r_data['attr_acc_bg_hue'] > 0.5  # floors are reported (low here: 156 training images, 300 steps)
    assert r_untrained['attr_acc_hair_style'] == r_data['attr_acc_hair_style']  # one cached classifier
    assert r_data['attr_tv'] < 0.2 and r_data['attr_tv'] < 0.3 * r_untrained['attr_tv']
    assert r_untrained['attr_tv'] > 0.35
    assert r_one['attr_tv_hair_style'] > 0.45
    assert r_one['attr_tv_hair_style'] > 4 * r_data['attr_tv_hair_style']
    assert r_data['attr_tv'] == pytest.approx(np.mean([r_data[f'attr_tv_{n}'] for n in synth_factors.ATTRIBUTES]))


def test_kid_synth_separates_data_from_untrained(synth_data):
    data_G = ToyG(DataSynthesis(synth_data), c_dim=25, res=RES)
    torch.manual_seed(0)
    untrained = dnnlib.util.construct_class_by_name(**small_raycond_kwargs(RES)).eval()
    kid_data = synth_coverage.compute_kid_synth(_opts(data_G, synth_data), num_gen=100, num_subsets=20, **CLS)
    kid_untrained = synth_coverage.compute_kid_synth(_opts(untrained, synth_data), num_gen=100, num_subsets=20, **CLS)
    print(kid_data, kid_untrained)
    assert abs(kid_data) < 0.1 * kid_untrained


def test_coverage_metrics_are_registered():
    for name in ('attr_tv', 'attr_tv1k', 'kid_synth', 'kid_synth1k'):
        assert metric_main.is_valid_metric(name)
