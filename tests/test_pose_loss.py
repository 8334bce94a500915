"""The `pose` loss term (`train.py --term=pose:W`): a frozen camera reader, trained on the real
images before training, tells G how far the pose it rendered is from the one it was asked for."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import make_camera_zip
from raycond import camera as cam
from raycond import rundir
from training import loss as loss_mod
from training import networks_raycond2 as rc
from training.terms import pose as reader_loss
from training.terms import pose_reader

RES = 16
YAW, PITCH = 40.0, 20.0


def _cameras(n, rnd):
    return cam.camera_label(rnd.uniform(-YAW, YAW, n), rnd.uniform(-PITCH, PITCH, n), fov_deg=18.0)


def _posed_images(c):
    """Images whose content shows the camera: a bright blob that moves with yaw and pitch."""
    yaw, pitch, _ = cam.yaw_pitch_from_pose(c[:, :cam.POSE_DIM].reshape(-1, 4, 4))
    coords = torch.linspace(-1, 1, RES)
    y, x = torch.meshgrid(coords, coords, indexing='ij')
    cx = (yaw / np.radians(YAW))[:, None, None] * 0.7
    cy = (pitch / np.radians(PITCH))[:, None, None] * 0.7
    blob = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.1)
    return (blob[:, None].repeat(1, 3, 1, 1) * 2 - 1).float()


class CentroidReader(torch.nn.Module):
    """An exact reader for _posed_images: the blob's centroid, mapped back to yaw/pitch (degrees)."""

    def __init__(self):
        super().__init__()
        self.register_buffer('target_std', torch.tensor([YAW / 2, PITCH / 2]))

    def forward(self, images):
        w = (images.float() / 255).mean(1).clamp_min(0) ** 4
        coords = torch.linspace(-1, 1, images.shape[-1])
        cx = (w.sum(1) * coords).sum(1) / w.sum((1, 2))
        cy = (w.sum(2) * coords).sum(1) / w.sum((1, 2))
        return torch.stack([cx / 0.7 * YAW, cy / 0.7 * PITCH], dim=1)


def _tiny_nets():
    G = rc.Generator(z_dim=8, c_dim=cam.LABEL_DIM, w_dim=8, img_resolution=RES, img_channels=3,
                     mapping_kwargs=dict(num_layers=1), channel_base=128, channel_max=16, num_fp16_res=0,
                     conv_clamp=None)
    D = rc.Discriminator(img_resolution=RES, channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=None)
    return G, D


@pytest.fixture(scope='module')
def trained_reader():
    rnd = np.random.RandomState(0)
    c = _cameras(512, rnd)
    images = ((_posed_images(c) + 1) * 127.5).round().to(torch.uint8)
    targets = pose_reader.yaw_pitch_deg(c.numpy())
    return pose_reader.train_pose_estimator(images, targets, steps=300, batch_size=64, seed=0, input_res=RES,
                                           channels=(16, 32))


def test_asked_yaw_pitch_agrees_with_the_metric_and_the_labels():
    rnd = np.random.RandomState(1)
    yaw, pitch = rnd.uniform(-YAW, YAW, 9), rnd.uniform(-PITCH, PITCH, 9)
    c = cam.camera_label(yaw, pitch, fov_deg=18.0)
    asked = cam.label_yaw_pitch_deg(c)
    assert torch.allclose(asked, torch.tensor(np.stack([yaw, pitch], 1), dtype=torch.float32), atol=1e-3)
    assert torch.allclose(asked, pose_reader.yaw_pitch_deg(c.numpy()), atol=1e-4)
    assert torch.allclose(cam.wrap_deg(torch.tensor([179.0, -181.0, 360.0])), torch.tensor([179.0, 179.0, 0.0]))


def test_pose_loss_is_zero_for_the_asked_pose_and_grows_with_the_error():
    reader = CentroidReader()
    c = _cameras(32, np.random.RandomState(2))
    right, err_right = reader_loss.pose_loss(reader, _posed_images(c), c)
    assert right.shape == (32,) and err_right.shape == (32, 2)
    assert float(err_right.max()) < 1.5, err_right.max()
    turned = _posed_images(cam.perturb_labels(c, 5.0, 5.0))
    small, err_small = reader_loss.pose_loss(reader, turned, c)
    large, err_large = reader_loss.pose_loss(reader, _posed_images(cam.perturb_labels(c, 15.0, 15.0)), c)
    assert float(right.mean()) < float(small.mean()) < float(large.mean())
    assert 2.0 < float(err_small.sum(1).mean()) < 8.0 and float(err_large.sum(1).mean()) > 8.0


def test_pose_loss_reads_the_mirror_image_too(trained_reader):
    """The reading is averaged over the image and its mirror image, so mirroring both the image and
    the asked camera gives the same loss: G cannot profit from the reader's left/right asymmetries."""
    rnd = np.random.RandomState(3)
    c = _cameras(16, rnd)
    img = _posed_images(c) + 0.3 * torch.randn(16, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    loss, err = reader_loss.pose_loss(trained_reader, img, c)
    loss_m, err_m = reader_loss.pose_loss(trained_reader, img.flip(3), cam.mirror_label(c))
    assert torch.allclose(loss, loss_m, atol=1e-4) and torch.allclose(err, err_m, atol=1e-3)


def _pose_loss(G, D, reader, weight):
    term = reader_loss.PoseTerm(weight, G=G, D=D, reader=reader)
    return loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=0, style_mixing_prob=0, terms=[term])


def test_pose_term_teaches_a_generator_the_asked_pose(trained_reader):
    torch.manual_seed(4)
    G, D = _tiny_nets()
    loss = _pose_loss(G, D, trained_reader, 20.0)
    rnd = np.random.RandomState(5)
    fixed_c, fixed_z = _cameras(128, rnd), torch.randn(128, 8)

    def reader_error():
        with torch.no_grad():
            return float(reader_loss.pose_loss(trained_reader, G(fixed_z, fixed_c), fixed_c)[1].mean())

    before = reader_error()
    G.requires_grad_(True)
    D.requires_grad_(False)
    opt = torch.optim.Adam(G.parameters(), lr=3e-3, betas=(0.0, 0.99))
    for _ in range(150):
        c = _cameras(16, rnd)
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('Gmain', None, None, torch.randn(16, 8), c, gain=1.0, cur_nimg=0)
        opt.step()
    after = reader_error()
    assert before > 15.0 and after < before / 3, (before, after)  # measured: 26.3° → 5.3°


def test_pose_term_refuses_a_generator_without_cameras(trained_reader):
    _G, D = _tiny_nets()
    G = rc.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=RES, img_channels=3, embedding='none',
                     channel_base=128, channel_max=16)
    with pytest.raises(ValueError, match='--term=pose needs a generator conditioned'):
        reader_loss.PoseTerm(1.0, G=G, D=D, reader=trained_reader)


def _dataset(tmp_path, n=16):
    from training.dataset import ImageFolderDataset
    return ImageFolderDataset(make_camera_zip(tmp_path / 'd.zip', n=n, res=16), use_labels=True)


SMALL = dict(pose_reader.CONFIG, steps=20, max_images=12)


def test_the_reader_is_trained_once_per_run_and_reloaded(tmp_path, monkeypatch):
    dataset = _dataset(tmp_path)
    first = pose_reader.load_or_train(str(tmp_path), dataset, config=SMALL)
    assert os.path.isfile(tmp_path / pose_reader.FILE_NAME)
    assert not any(p.requires_grad for p in first.parameters()) and not first.training

    def must_not_train(*args, **kwargs):
        raise AssertionError('retrained although the run directory holds the reader')
    monkeypatch.setattr(pose_reader, 'train_reader', must_not_train)
    again = pose_reader.load_or_train(str(tmp_path), dataset, config=SMALL)
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match='retrained'):  # another configuration is made anew
        pose_reader.load_or_train(str(tmp_path), dataset, config=dict(SMALL, steps=21))


def test_a_resumed_run_keeps_the_reader_of_the_run_it_resumes(tmp_path, monkeypatch):
    dataset = _dataset(tmp_path)
    first_run, second_run = tmp_path / 'r0', tmp_path / 'r1'
    first_run.mkdir(), second_run.mkdir()
    first = pose_reader.load_or_train(str(first_run), dataset, config=SMALL)
    snapshot = first_run / 'network-snapshot-000004.pkl'
    snapshot.write_bytes(b'')
    monkeypatch.setattr(pose_reader, 'train_reader', lambda *a, **k: (_ for _ in ()).throw(AssertionError('retrained')))
    again = pose_reader.load_or_train(str(second_run), dataset, config=SMALL, resume_pkl=str(snapshot))
    assert os.path.isfile(second_run / pose_reader.FILE_NAME)
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match='retrained'):  # a snapshot elsewhere (no reader beside it)
        pose_reader.load_or_train(str(tmp_path / 'r2'), dataset, config=SMALL, resume_pkl=str(tmp_path / 'd.zip'))


def _reader_in_rank(rank, run_dir, data, out_dir, temp_dir):
    from torch_utils import distributed
    from training.dataset import ImageFolderDataset
    distributed.init_spawned('cpu', rank=rank, world_size=2, temp_dir=temp_dir)
    try:
        if rank == 1:  # rank 1 must not train one of its own, only wait for rank 0's
            pose_reader.train_reader = lambda *a, **k: (_ for _ in ()).throw(AssertionError('rank 1 trained'))
        reader = pose_reader.load_or_train(run_dir, ImageFolderDataset(data, use_labels=True), rank=rank,
                                           num_gpus=2, config=SMALL)
        torch.save(reader.state_dict(), os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        distributed.destroy()


def test_two_processes_share_the_reader_rank_0_trained(tmp_path):
    import torch.multiprocessing as mp
    data = make_camera_zip(tmp_path / 'd.zip', n=16, res=16)
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (tmp_path / 'sync').mkdir()
    mp.spawn(_reader_in_rank, args=(str(run_dir), data, str(tmp_path), str(tmp_path / 'sync')), nprocs=2)
    saved = torch.load(run_dir / pose_reader.FILE_NAME, weights_only=True)['model']
    for rank in (0, 1):
        state = torch.load(tmp_path / f'rank{rank}.pt', weights_only=True)
        assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)


def test_the_reader_refuses_a_dataset_without_camera_labels(tmp_path):
    from training.dataset import ImageFolderDataset
    dataset = ImageFolderDataset(make_camera_zip(tmp_path / 'd.zip', n=8, res=16), use_labels=False)
    with pytest.raises(ValueError, match='camera labels'):
        pose_reader.train_reader(dataset, SMALL)


def test_train_pose_term_trains_the_reader_and_reports_the_loss(tmp_path, monkeypatch):
    import train
    monkeypatch.setattr(pose_reader, 'CONFIG', SMALL)
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    args = ['--outdir', str(tmp_path / 'runs'), '--data', data, '--cfg=raycond2', '--batch=4', '--gamma=1',
            '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none', '--tick=0.008',
            '--kimg=0.008']
    result = CliRunner().invoke(train.main, args + ['--term=pose:0.5'])
    assert result.exit_code == 0, result.output[-3000:]
    assert 'Training the pose reader' in result.output
    run = rundir.list_runs(str(tmp_path / 'runs'))[-1][1]
    assert os.path.isfile(os.path.join(run, pose_reader.FILE_NAME))
    with open(os.path.join(run, 'training_options.json')) as f:
        loss_kwargs = json.load(f)['loss_kwargs']
    assert loss_kwargs['terms'] == [{'class_name': 'training.terms.pose.PoseTerm', 'weight': 0.5}]
    with open(os.path.join(run, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f]
    assert stats and 'Loss/G/pose' in stats[-1] and stats[-1]['Pose/reader_err_yaw']['num'] > 0
    refused = CliRunner().invoke(train.main, args + ['--term=pose:0.5', '--cond=0', '--cfg=stylegan2'])
    assert refused.exit_code != 0 and 'camera labels' in refused.output
