"""Tests for raycond.synth: procedural heads, cameras, renderer, dataset writer."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from raycond import camera, synth


def _asymmetric_heads(n=2):
    p = synth.sample_head_params(np.random.default_rng(3), n)
    p['nose_x'][:] = 0.006
    p['fringe_tilt'][:] = 0.5
    p['light_dir'][:] = torch.tensor([0.8, 0.3, 0.52])
    p['gaze'][:, 0] = 0.25
    p['hair_style'][:] = 2.0
    p['hair_t'][:] = 0.03
    return p


def _foreground(params, c, res):
    """Mask of pixels covered by the head: those that change with the background colour."""
    a = synth.render_heads(params, c, res)
    p2 = dict(params)
    p2['bg_top'] = 1 - params['bg_top']
    p2['bg_bottom'] = 1 - params['bg_bottom']
    b = synth.render_heads(p2, c, res)
    return (a.astype(int) - b).__abs__().sum(-1) == 0


def test_params_and_cameras():
    p = synth.sample_head_params(np.random.default_rng(0), 5)
    q = synth.sample_head_params(np.random.default_rng(0), 5)
    assert synth.num_heads(p) == 5 and all(torch.equal(p[k], q[k]) for k in p)
    assert p['skin_col'].shape == (5, 3) and float(p['skin_col'].min()) >= 0 and float(p['skin_col'].max()) <= 1
    m = synth.mirror_head_params(synth.mirror_head_params(p))
    assert all(torch.equal(p[k], m[k]) for k in p)
    assert torch.equal(synth.mirror_head_params(p)['light_dir'][:, 0], -p['light_dir'][:, 0])
    c = synth.sample_cameras(np.random.default_rng(0), 2000, yaw_std_deg=20, pitch_std_deg=8, max_yaw_deg=45)
    yaw, pitch, radius = camera.yaw_pitch_from_pose(camera.split_label(c)[0])
    yaw, pitch = np.degrees(yaw.numpy()), np.degrees(pitch.numpy())
    assert np.abs(yaw).max() <= 45 + 1e-3 and 17 < yaw.std() < 22 and 7 < pitch.std() < 9
    torch.testing.assert_close(radius, torch.full((2000,), 2.7))
    assert float(c[0, 16]) == pytest.approx(4.2647)
    with pytest.raises(ValueError, match='yaw_std'):
        synth.sample_cameras(np.random.default_rng(0), 2, yaw_std_deg=-1)


def test_render_fills_frame_and_is_deterministic():
    p = synth.sample_head_params(np.random.default_rng(1), 4)
    c = camera.camera_label([0, 0, 30, -30], 0)
    img = synth.render_heads(p, c, 32)
    assert img.shape == (4, 32, 32, 3) and img.dtype == np.uint8
    assert np.array_equal(img, synth.render_heads(p, c, 32))
    fg = _foreground(p, c, 32)
    assert fg[:, 16, 16].all()                               # the face is at the centre
    assert fg[:2].mean() > 0.45                              # the head fills the frontal frame
    assert not fg[:, 0, :].all(axis=1).any()                 # ... but not all of the top row
    assert np.abs(img[2].astype(int) - img[3]).mean() > 5     # the view changes with yaw
    with pytest.raises(ValueError, match='cameras'):
        synth.render_heads(p, c[:2], 32)


def test_mirrored_camera_renders_flipped_image():
    p = _asymmetric_heads(2)
    c = camera.camera_label([25.0, -12.0], [6.0, -4.0])
    img = synth.render_heads(p, c, 48).astype(int)
    mirrored = synth.render_heads(synth.mirror_head_params(p), camera.mirror_label(c), 48).astype(int)
    diff = np.abs(img - mirrored[:, :, ::-1]).max(-1)
    assert diff.mean() < 0.1 and (diff > 2).mean() < 0.005
    # Meaningful: the heads are asymmetric, so flipping without mirroring the scene is wrong.
    wrong = synth.render_heads(p, camera.mirror_label(c), 48).astype(int)
    assert np.abs(img - wrong[:, :, ::-1]).max(-1).mean() > 8


def test_write_dataset_zip(tmp_path):
    dest = tmp_path / 'heads.zip'
    info = synth.write_dataset(str(dest), 16, resolution=32, seed=5, batch=6)
    assert info['count'] == 16
    with zipfile.ZipFile(dest) as z:
        names = sorted(n for n in z.namelist() if n.endswith('.png'))
        assert names[0] == '00000/img00000000.png' and len(names) == 16
        imgs = [np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in names]
        labels = json.loads(z.read('dataset.json'))['labels']
    assert all(im.shape == (32, 32, 3) for im in imgs)
    assert [l[0] for l in labels] == names
    c = np.array([l[1] for l in labels], dtype=np.float64)
    camera.validate_label(c)
    pose = c[:, :16].reshape(-1, 4, 4)
    o, fwd = pose[:, :3, 3], pose[:, :3, 2]
    for target, tol in [((0, 0, 0.2), 1e-4), ((0, 0, 0), 0.25)]:
        rel = np.asarray(target) - o
        off_axis = np.linalg.norm(rel - (rel * fwd).sum(1, keepdims=True) * fwd, axis=1)
        assert off_axis.max() < tol                          # every camera looks at the head
    # Same seed -> same dataset (independent of batch); another seed -> different images.
    synth.write_dataset(str(tmp_path / 'again.zip'), 16, resolution=32, seed=5, batch=16)
    with zipfile.ZipFile(tmp_path / 'again.zip') as z:
        again = [np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in names]
        assert json.loads(z.read('dataset.json'))['labels'] == labels
    assert all(np.array_equal(a, b) for a, b in zip(imgs, again))
    synth.write_dataset(str(tmp_path / 'other'), 4, resolution=32, seed=6)
    other = np.asarray(Image.open(tmp_path / 'other' / '00000' / 'img00000000.png'))
    assert not np.array_equal(other, imgs[0])
    with pytest.raises(FileExistsError, match='force'):
        synth.write_dataset(str(dest), 2, resolution=32)


def test_ctrl_c_while_render_workers_start_reaches_the_parent():
    """Worker processes start with SIGINT held (the mask survives fork and exec, so no worker sees
    it); a Ctrl-C in that window is delivered to the parent when the hold ends, not lost."""
    import os
    import signal

    from raycond.synth import dataset
    if not hasattr(signal, 'pthread_sigmask'):
        pytest.skip('no pthread_sigmask on this platform')
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    with pytest.raises(KeyboardInterrupt):
        with dataset._sigint_held_for_children():
            os.kill(os.getpid(), signal.SIGINT)
            assert signal.SIGINT in signal.sigpending()       # held, not lost, not yet raised
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before


def test_parallel_render_workers_write_what_one_process_writes(tmp_path):
    a = synth.write_dataset(tmp_path / 'a.zip', 6, resolution=16, seed=2, batch=2, workers=2)
    b = synth.write_dataset(tmp_path / 'b.zip', 6, resolution=16, seed=2, batch=2, workers=1)
    assert a['count'] == b['count'] == 6
    with zipfile.ZipFile(tmp_path / 'a.zip') as za, zipfile.ZipFile(tmp_path / 'b.zip') as zb:
        names = sorted(n for n in za.namelist() if n.endswith('.png'))
        assert names and all(za.read(n) == zb.read(n) for n in names)
