"""Tests for dataset_tool.py: synth output, convert round trips with labels, errors."""

import json
import os
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dataset_tool


def _invoke(*args):
    return CliRunner().invoke(dataset_tool.cli, [str(a) for a in args])


@pytest.fixture(scope='module')
def synth_folder(tmp_path_factory):
    dest = tmp_path_factory.mktemp('synth') / 'heads'
    r = _invoke('synth', '--dest', dest, '--count', 12, '--resolution', 32, '--seed', 1, '--workers', 1, '--batch', 8)
    assert r.exit_code == 0, r.output
    return dest


def _read(path):
    """{relative name: image array}, labels from a folder or ZIP dataset."""
    if str(path).endswith('.zip'):
        with zipfile.ZipFile(path) as z:
            imgs = {n: np.asarray(Image.open(z.open(n))) for n in z.namelist() if n.endswith('.png')}
            labels = json.loads(z.read('dataset.json'))['labels']
    else:
        imgs = {}
        for root, _, files in os.walk(path):
            for f in files:
                if f.endswith('.png'):
                    full = os.path.join(root, f)
                    imgs[os.path.relpath(full, path).replace(os.sep, '/')] = np.asarray(Image.open(full))
        labels = json.load(open(os.path.join(path, 'dataset.json')))['labels']
    return imgs, labels


def test_synth_output(synth_folder):
    imgs, labels = _read(synth_folder)
    assert len(imgs) == 12 and all(im.shape == (32, 32, 3) for im in imgs.values())
    assert sorted(imgs) == [l[0] for l in labels]
    assert all(len(l[1]) == 25 and np.all(np.isfinite(l[1])) for l in labels)


def test_convert_round_trip_with_labels(synth_folder, tmp_path):
    z = tmp_path / 'a.zip'
    r = _invoke(f'--source={synth_folder}', f'--dest={z}')                 # StyleGAN habit: no command
    assert r.exit_code == 0, r.output
    back = tmp_path / 'b'
    r = _invoke('convert', '--source', z, '--dest', back, '--max-images', 5)
    assert r.exit_code == 0, r.output
    orig, orig_labels = _read(synth_folder)
    imgs, labels = _read(back)
    assert len(imgs) == 5
    for name, label in labels:
        assert np.array_equal(imgs[name], orig[name])
        assert label == dict(orig_labels)[name]
    # Resizing keeps labels; output has the requested size.
    r = _invoke('--source', z, '--dest', tmp_path / 'c.zip', '--resolution', '16x16')
    assert r.exit_code == 0, r.output
    imgs, labels = _read(tmp_path / 'c.zip')
    assert all(im.shape == (16, 16, 3) for im in imgs.values()) and labels == orig_labels


def test_refuses_to_overwrite_without_force(synth_folder, tmp_path):
    dest = tmp_path / 'out.zip'
    assert _invoke('--source', synth_folder, '--dest', dest, '--max-images', 2).exit_code == 0
    before = dest.read_bytes()
    r = _invoke('--source', synth_folder, '--dest', dest, '--max-images', 3)
    assert r.exit_code != 0 and 'already exists' in r.output and '--force' in r.output
    assert dest.read_bytes() == before
    r = _invoke('synth', '--dest', dest, '--count', 2, '--resolution', 16, '--workers', 1)
    assert r.exit_code != 0 and 'already exists' in r.output
    r = _invoke('--source', synth_folder, '--dest', dest, '--max-images', 3, '--force')
    assert r.exit_code == 0, r.output
    assert len(_read(dest)[0]) == 3


def test_bad_options(synth_folder, tmp_path):
    r = _invoke('--source', synth_folder, '--dest', tmp_path / 'x.zip', '--resolution', 'big')
    assert r.exit_code != 0 and '--resolution' in r.output and 'WxH' in r.output
    assert 'Traceback' not in r.output
    r = _invoke('--source', tmp_path / 'missing', '--dest', tmp_path / 'y.zip')
    assert r.exit_code != 0 and 'does not exist' in r.output
    r = _invoke('--source', synth_folder, '--dest', tmp_path / 'z.zip', '--transform', 'center-crop')
    assert r.exit_code != 0 and '--resolution' in r.output
    r = _invoke('synth', '--dest', tmp_path / 's.zip', '--count', 2, '--resolution', 48, '--workers', 1)
    assert r.exit_code != 0 and 'power of two' in r.output
    assert not (tmp_path / 'x.zip').exists() and not (tmp_path / 's.zip').exists()


def test_label_validation_and_crop_intrinsics(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    Image.new('RGB', (40, 32), (10, 20, 30)).save(src / 'a.png')
    Image.new('RGB', (40, 32), (40, 50, 60)).save(src / 'b.png')
    K = [4.0, 0, 0.5, 0, 5.0, 0.5, 0, 0, 1]
    pose = np.eye(4).reshape(-1).tolist()
    (src / 'dataset.json').write_text(json.dumps({'labels': [['a.png', pose + K], ['b.png', pose + K]]}))
    r = _invoke('--source', src, '--dest', tmp_path / 'o.zip', '--resolution', '16x16', '--transform', 'center-crop')
    assert r.exit_code == 0, r.output
    imgs, labels = _read(tmp_path / 'o.zip')
    # 40x32 cropped to the central 32x32: fx scales by 40/32, cx stays centred.
    np.testing.assert_allclose(labels[0][1][16:], [5.0, 0, 0.5, 0, 5.0, 0.5, 0, 0, 1], atol=1e-9)
    # Class labels pass through.
    (src / 'dataset.json').write_text(json.dumps({'labels': [['a.png', 3], ['b.png', 0]]}))
    assert _invoke('--source', src, '--dest', tmp_path / 'cls').exit_code == 0
    assert [l[1] for l in _read(tmp_path / 'cls')[1]] == [3, 0]
    # Broken labels name the file.
    (src / 'dataset.json').write_text(json.dumps({'labels': [['a.png', [1.0] * 24], ['b.png', 0]]}))
    r = _invoke('--source', src, '--dest', tmp_path / 'bad.zip')
    assert r.exit_code != 0 and 'a.png' in r.output and '25' in r.output
    (src / 'dataset.json').write_text(json.dumps({'labels': [['a.png', 1]]}))
    r = _invoke('--source', src, '--dest', tmp_path / 'bad2.zip')
    assert r.exit_code != 0 and 'b.png' in r.output
    assert not (tmp_path / 'bad.zip').exists()
