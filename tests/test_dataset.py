"""Tests for training/dataset.py: ZIP and folder datasets, labels, mirroring, clear errors."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from raycond.camera import camera_label, mirror_label, split_label, yaw_pitch_from_pose
from training.dataset import DatasetError, ImageFolderDataset


def _png_bytes(img):
    buf = io.BytesIO()
    PIL.Image.fromarray(img).save(buf, format='png')
    return buf.getvalue()


def _write_dataset(path, images, labels=None, fmt='zip', names=None, extra_json=None):
    """Write images (list of HWC uint8) and labels ({name: value} written as dataset.json)."""
    names = names or [f'img{i:04d}.png' for i in range(len(images))]
    files = {name: _png_bytes(img) for name, img in zip(names, images)}
    if labels is not None:
        files['dataset.json'] = json.dumps({'labels': [[k, v] for k, v in labels.items()]}).encode()
    if extra_json is not None:
        files['dataset.json'] = extra_json.encode()
    if fmt == 'zip':
        with zipfile.ZipFile(path, 'w') as z:
            for name, data in files.items():
                z.writestr(name, data)
    else:
        os.makedirs(path, exist_ok=True)
        for name, data in files.items():
            os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
            with open(os.path.join(path, name), 'wb') as f:
                f.write(data)
    return names


def _camera_dataset(path, n=6, res=16, fmt='zip', seed=0):
    rnd = np.random.RandomState(seed)
    images = [(rnd.rand(res, res, 3) * 255).astype(np.uint8) for _ in range(n)]
    yaw = np.linspace(-30, 30, n) + 1.0
    pitch = np.linspace(-10, 10, n)
    c = camera_label(yaw, pitch).numpy()
    names = [f'sub/img{i:04d}.png' for i in range(n)]
    _write_dataset(path, images, {name: c[i].tolist() for i, name in enumerate(names)}, fmt=fmt, names=names)
    return images, c, yaw


@pytest.mark.parametrize('fmt', ['zip', 'dir'])
def test_camera_labels_zip_and_folder(tmp_path, fmt):
    path = str(tmp_path / ('cams.zip' if fmt == 'zip' else 'cams'))
    images, c, _yaw = _camera_dataset(path, fmt=fmt)
    ds = ImageFolderDataset(path, use_labels=True)
    assert len(ds) == 6 and ds.name == 'cams'
    assert ds.resolution == 16 and ds.num_channels == 3 and ds.image_shape == [3, 16, 16]
    assert ds.has_labels and ds.label_shape == [25] and ds.label_dim == 25 and ds.is_camera
    for i in range(6):
        img, label = ds[i]
        assert img.dtype == np.uint8 and img.shape == (3, 16, 16)
        np.testing.assert_array_equal(img, images[i].transpose(2, 0, 1))
        np.testing.assert_allclose(label, c[i], rtol=0, atol=1e-6)
    stats = ds.camera_stats
    assert stats['num_labels'] == 6
    assert stats['yaw_range_deg'][0] < -20 and stats['yaw_range_deg'][1] > 20
    # use_labels=False hides the labels but the file still says they are cameras.
    ds2 = ImageFolderDataset(path, use_labels=False)
    assert not ds2.has_labels and ds2.get_label(0).shape == (0,) and ds2.file_label_kind == 'camera'


def test_class_labels_onehot_and_unlabeled(tmp_path):
    rnd = np.random.RandomState(1)
    images = [(rnd.rand(8, 8, 3) * 255).astype(np.uint8) for _ in range(4)]
    names = [f'{i}.png' for i in range(4)]
    _write_dataset(str(tmp_path / 'cls'), images, {n: i % 3 for i, n in enumerate(names)}, fmt='dir', names=names)
    ds = ImageFolderDataset(str(tmp_path / 'cls'), use_labels=True)
    assert ds.label_shape == [3] and ds.has_onehot_labels and not ds.is_camera
    np.testing.assert_array_equal(ds.get_label(2), [0, 0, 1])
    np.testing.assert_array_equal(ds.get_label(3), [1, 0, 0])
    assert ds.camera_stats is None
    _write_dataset(str(tmp_path / 'plain.zip'), images)
    ds = ImageFolderDataset(str(tmp_path / 'plain.zip'), use_labels=True)
    assert not ds.has_labels and ds.file_label_kind == 'none'


def test_mirror_flips_images_and_cameras(tmp_path):
    path = str(tmp_path / 'm.zip')
    images, c, yaw = _camera_dataset(path, n=4)
    ds = ImageFolderDataset(path, use_labels=True, xflip=True)
    assert len(ds) == 8
    for i in range(4):
        img, label = ds[i]
        fimg, flabel = ds[i + 4]
        np.testing.assert_array_equal(fimg, img[:, :, ::-1])
        assert ds.get_details(i + 4).xflip and not ds.get_details(i).xflip
        np.testing.assert_allclose(flabel, mirror_label(c[i:i + 1])[0], atol=1e-6)
        assert not np.allclose(flabel, label)
        # The mirrored camera has the opposite yaw and the same pitch.
        y0, p0, _ = yaw_pitch_from_pose(torch.from_numpy(label[:16].reshape(1, 4, 4)))
        y1, p1, _ = yaw_pitch_from_pose(torch.from_numpy(flabel[:16].reshape(1, 4, 4)))
        assert float(y1) == pytest.approx(-float(y0), abs=1e-5)
        assert float(p1) == pytest.approx(float(p0), abs=1e-5)
    stats = ds.camera_stats
    assert stats['yaw_range_deg'][0] == pytest.approx(-stats['yaw_range_deg'][1], abs=1e-3)


def _project(c, points):
    """Pixel coords (u, v in [0, 1]) of world points seen by camera label c (25,)."""
    pose, K = split_label(torch.as_tensor(c).reshape(1, 25))
    w2c = torch.linalg.inv(pose[0])
    p = torch.cat([points, torch.ones(len(points), 1)], 1) @ w2c.T
    uvw = p[:, :3] @ K[0].T
    return uvw[:, :2] / uvw[:, 2:3]


def test_mirrored_camera_renders_mirrored_scene():
    """Projecting x-mirrored points with the mirrored camera gives x-flipped pixel positions."""
    rnd = np.random.RandomState(3)
    points = torch.from_numpy(rnd.uniform(-0.3, 0.3, (20, 3)).astype(np.float32))
    c = camera_label([23.0], [-7.0]).numpy()[0]
    uv = _project(c, points)
    uv_m = _project(mirror_label(c[None])[0], points * torch.tensor([-1.0, 1.0, 1.0]))
    np.testing.assert_allclose(uv_m[:, 0].numpy(), 1 - uv[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(uv_m[:, 1].numpy(), uv[:, 1].numpy(), atol=1e-5)


def test_max_size_and_pickle(tmp_path):
    path = str(tmp_path / 'p.zip')
    _camera_dataset(path, n=6)
    ds = ImageFolderDataset(path, use_labels=True, max_size=3, random_seed=5)
    assert len(ds) == 3
    ds[0]  # opens the ZIP
    ds2 = pickle.loads(pickle.dumps(ds))  # DataLoader workers pickle datasets
    np.testing.assert_array_equal(ds2[1][0], ds[1][0])
    np.testing.assert_array_equal(ds2.get_label(2), ds.get_label(2))


def test_grayscale_dataset(tmp_path):
    images = [np.full((8, 8), 40 * i, dtype=np.uint8) for i in range(3)]
    _write_dataset(str(tmp_path / 'g.zip'), images)
    ds = ImageFolderDataset(str(tmp_path / 'g.zip'))
    assert ds.num_channels == 1 and ds[2][0].shape == (1, 8, 8) and int(ds[2][0][0, 0, 0]) == 80


def _rgb(h, w):
    return np.zeros((h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize('case, pattern', [
    ('mixed', r'mixes image sizes.*img0001\.png is 8x8'),
    ('nonsquare', r'non-square images \(16x8\)'),
    ('npot', r'power-of-two'),
    ('missing_label', r'no label for 1 of 2 images \(first: img0001\.png\)'),
    ('wrong_length', r'label of img0000\.png has the wrong length.*25 camera values'),
    ('unreadable', r'Cannot read image img0001\.png'),
    ('bad_json', r'Cannot read dataset\.json'),
    ('no_images', r'No image files'),
])
def test_clear_errors(tmp_path, case, pattern):
    path = str(tmp_path / 'bad.zip')
    c = camera_label([0.0], [0.0]).numpy()[0].tolist()
    if case == 'mixed':
        _write_dataset(path, [_rgb(16, 16), _rgb(8, 8)])
    elif case == 'nonsquare':
        _write_dataset(path, [_rgb(8, 16)])
    elif case == 'npot':
        _write_dataset(path, [_rgb(12, 12)])
    elif case == 'missing_label':
        _write_dataset(path, [_rgb(8, 8), _rgb(8, 8)], {'img0000.png': c})
    elif case == 'wrong_length':
        _write_dataset(path, [_rgb(8, 8)], {'img0000.png': c[:16]})
    elif case == 'unreadable':
        _write_dataset(path, [_rgb(8, 8)])
        with zipfile.ZipFile(path, 'a') as z:
            z.writestr('img0001.png', b'not a png')
    elif case == 'bad_json':
        _write_dataset(path, [_rgb(8, 8)], extra_json='{"labels": [')
    elif case == 'no_images':
        _write_dataset(path, [], labels={})
    with pytest.raises(DatasetError, match=pattern):
        ImageFolderDataset(path, use_labels=True)


def test_missing_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.zip'):
        ImageFolderDataset(str(tmp_path / 'nope.zip'))
    with pytest.raises(FileNotFoundError, match='nodir'):
        ImageFolderDataset(str(tmp_path / 'nodir'))
    (tmp_path / 'file.txt').write_text('x')
    with pytest.raises(DatasetError, match='directory or a .zip'):
        ImageFolderDataset(str(tmp_path / 'file.txt'))
