"""The generator's pose loss (`train.py --pose-loss`): a frozen camera reader, trained on the real
images before training, tells G how far the pose it rendered is from the one it was asked for."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import make_camera_zip
from metrics import pose_error
from raycond import camera as cam
from raycond import rundir
from training import loss as loss_mod
from training import networks_raycond2 as rc
from metrics import pose_reader
from training import pose_loss as reader_loss

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
    targets = pose_error.yaw_pitch_deg(c.numpy())
    return pose_error.train_pose_estimator(images, targets, steps=300, batch_size=64, seed=0, input_res=RES,
                                           channels=(16, 32))


def test_asked_yaw_pitch_agrees_with_the_metric_and_the_labels():
    rnd = np.random.RandomState(1)
    yaw, pitch = rnd.uniform(-YAW, YAW, 9), rnd.uniform(-PITCH, PITCH, 9)
    c = cam.camera_label(yaw, pitch, fov_deg=18.0)
    asked = cam.label_yaw_pitch_deg(c)
    assert torch.allclose(asked, torch.tensor(np.stack([yaw, pitch], 1), dtype=torch.float32), atol=1e-3)
    assert torch.allclose(asked, pose_error.yaw_pitch_deg(c.numpy()), atol=1e-4)
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
    # A margin forgives errors up to it per axis, and charges only the excess above it.
    forgiven, err = reader_loss.pose_loss(reader, turned, c, margin_deg=float(err_small.max()) + 0.1)
    assert torch.equal(err, err_small) and float(forgiven.abs().max()) == 0.0
    partly, _ = reader_loss.pose_loss(reader, turned, c, margin_deg=2.0)
    assert 0 < float(partly.mean()) < float(small.mean())


def test_relative_pose_loss_charges_only_what_differs_between_the_two_cameras_of_a_latent():
    reader = CentroidReader()
    rnd = np.random.RandomState(9)
    c = _cameras(32, rnd)
    # Every image shows its camera turned by the same yaw offset: a constant reading bias per head.
    shown = cam.camera_label(*[a + b for a, b in zip(cam.label_yaw_pitch_deg(c).T.numpy(), (6.0, 0.0))],
                             fov_deg=18.0)
    absolute, err = reader_loss.pose_loss(reader, _posed_images(shown), c)
    relative, err_rel = reader_loss.relative_pose_loss(reader, _posed_images(shown), c)
    assert relative.shape == (16,) and torch.equal(err, err_rel)
    assert float(err[:, 0].mean()) > 4.0 and float(absolute.mean()) > 20 * float(relative.mean())
    # A head that turns by a different amount at its two cameras is charged.
    wobble = shown.clone()
    wobble[1::2] = cam.perturb_labels(shown[1::2], 8.0, 8.0)
    assert float(reader_loss.relative_pose_loss(reader, _posed_images(wobble), c)[0].mean()) > 20 * float(relative.mean())
    with pytest.raises(ValueError, match='pairs'):
        reader_loss.relative_pose_loss(reader, _posed_images(c[:3]), c[:3])


def test_paired_latents_share_their_w(trained_reader):
    torch.manual_seed(10)
    G, D = _tiny_nets()
    loss = loss_mod.StyleGAN2Loss('cpu', G, D, style_mixing_prob=1.0, pose_loss=1.0, pose_loss_mode='relative')
    _img, ws = loss.run_G(torch.randn(8, 8), _cameras(8, np.random.RandomState(11)), pairs=True)
    assert torch.equal(ws[0::2], ws[1::2]) and not torch.equal(ws[0], ws[2])
    with pytest.raises(ValueError, match='relative'):
        loss_mod.StyleGAN2Loss('cpu', G, D, pose_loss=1.0, pose_loss_mode='pairs')


def test_pose_loss_reads_the_mirror_image_too(trained_reader):
    """The reading is averaged over the image and its mirror image, so mirroring both the image and
    the asked camera gives the same loss: G cannot profit from the reader's left/right asymmetries."""
    rnd = np.random.RandomState(3)
    c = _cameras(16, rnd)
    img = _posed_images(c) + 0.3 * torch.randn(16, 3, RES, RES, generator=torch.Generator().manual_seed(0))
    loss, err = reader_loss.pose_loss(trained_reader, img, c)
    loss_m, err_m = reader_loss.pose_loss(trained_reader, img.flip(3), cam.mirror_label(c))
    assert torch.allclose(loss, loss_m, atol=1e-4) and torch.allclose(err, err_m, atol=1e-3)


def test_pose_loss_teaches_a_generator_the_asked_pose(trained_reader):
    torch.manual_seed(4)
    G, D = _tiny_nets()
    loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=0, style_mixing_prob=0, pose_loss=20.0)
    loss.pose_reader = trained_reader
    rnd = np.random.RandomState(5)
    fixed_c, fixed_z = _cameras(128, rnd), torch.randn(128, 8)

    def reader_error():
        with torch.no_grad():
            return float(reader_loss.pose_loss(trained_reader, G(fixed_z, fixed_c), fixed_c)[1].mean())

    # Without the reader the loss refuses to run rather than silently train without it.
    loss.pose_reader = None
    with pytest.raises(RuntimeError, match='pose reader'):
        loss.accumulate_gradients('Gmain', None, None, fixed_z[:4], fixed_c[:4], gain=1.0, cur_nimg=0)
    loss.pose_reader = trained_reader

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
    with pytest.raises(ValueError, match='pose_loss'):
        loss_mod.StyleGAN2Loss('cpu', rc.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=RES, img_channels=3,
                                                   embedding='none', channel_base=128, channel_max=16),
                               D, pose_loss=1.0)


def test_pose_loss_on_the_ray_weights_only_leaves_every_other_weight_alone(trained_reader):
    """--pose-loss-params=rays: the pose loss adds gradient only to the convolution weights over
    the ray channels and the style rows that modulate them; the rest get the adversarial gradient."""
    torch.manual_seed(6)
    G = rc.Generator(z_dim=8, c_dim=cam.LABEL_DIM, w_dim=8, img_resolution=RES, img_channels=3,
                     mapping_kwargs=dict(num_layers=1), channel_base=128, channel_max=16, num_fp16_res=0,
                     conv_clamp=None).requires_grad_(True)
    D = rc.Discriminator(img_resolution=RES, channel_base=128, channel_max=16, num_fp16_res=0,
                         conv_clamp=None).requires_grad_(False)
    c, z = _cameras(8, np.random.RandomState(7)), torch.randn(8, 8)

    def grads(**kwargs):
        loss = loss_mod.StyleGAN2Loss('cpu', G, D, r1_gamma=0, pl_weight=0, style_mixing_prob=0, **kwargs)
        loss.pose_reader = trained_reader
        G.zero_grad(set_to_none=True)
        torch.manual_seed(8)  # the same noise inputs each time
        loss.accumulate_gradients('Gmain', None, None, z, c, gain=1.0, cur_nimg=0)
        return {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}

    plain = grads()
    rays = grads(pose_loss=10.0, pose_loss_params='rays')
    masks = {id(p): m for p, m in reader_loss.ray_parameters(G)}
    names = {n: p for n, p in G.named_parameters()}
    changed = 0
    for name, g in rays.items():
        diff = g - plain[name]
        mask = masks.get(id(names[name]))
        if mask is None:
            assert torch.allclose(diff, torch.zeros_like(diff), atol=1e-6), name
        else:
            assert torch.allclose(diff * (1 - mask), torch.zeros_like(diff), atol=1e-6), name
            changed += int((diff * mask).abs().max() > 1e-6)
    assert changed >= 4, changed  # the pose loss did reach the ray weights of several layers
    every = grads(pose_loss=10.0)
    assert any(not torch.allclose(every[n] - plain[n], torch.zeros_like(plain[n]), atol=1e-6)
               for n in plain if id(names[n]) not in masks)
    synthesis = grads(pose_loss=10.0, pose_loss_params='synthesis')  # the mapping network is left alone
    for name, g in synthesis.items():
        moved = not torch.allclose(g - plain[name], torch.zeros_like(g), atol=1e-6)
        assert not (name.startswith('mapping.') and moved), name
    assert any(not torch.allclose(synthesis[n] - plain[n], torch.zeros_like(plain[n]), atol=1e-6)
               for n in plain if n.startswith('synthesis.') and id(names[n]) not in masks)
    with pytest.raises(ValueError, match='rays'):
        loss_mod.StyleGAN2Loss('cpu', G, D, pose_loss=1.0, pose_loss_params='layers')


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


def test_train_pose_loss_option_trains_the_reader_and_reports_the_loss(tmp_path, monkeypatch):
    import train
    monkeypatch.setattr(pose_reader, 'CONFIG', SMALL)
    data = make_camera_zip(tmp_path / 'd.zip', n=8, res=16)
    args = ['--outdir', str(tmp_path / 'runs'), '--data', data, '--cfg=raycond2', '--batch=4', '--gamma=1',
            '--cbase=256', '--cmax=16', '--map-depth=1', '--workers=0', '--metrics=none', '--tick=0.008',
            '--kimg=0.008', '--device=cpu']
    result = CliRunner().invoke(train.main, args + ['--pose-loss=0.5', '--pose-loss-margin=1.5',
                                                    '--pose-loss-params=rays', '--pose-loss-mode=relative'])
    assert result.exit_code == 0, result.output[-3000:]
    assert 'Training the pose reader' in result.output
    run = rundir.list_runs(str(tmp_path / 'runs'))[-1][1]
    assert os.path.isfile(os.path.join(run, pose_reader.FILE_NAME))
    with open(os.path.join(run, 'training_options.json')) as f:
        loss_kwargs = json.load(f)['loss_kwargs']
    assert (loss_kwargs['pose_loss'], loss_kwargs['pose_loss_margin'], loss_kwargs['pose_loss_params'],
            loss_kwargs['pose_loss_mode']) == (0.5, 1.5, 'rays', 'relative')
    with open(os.path.join(run, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f]
    assert stats and 'Loss/G/pose' in stats[-1] and stats[-1]['Pose/reader_err_yaw']['num'] > 0
    refused = CliRunner().invoke(train.main, args + ['--pose-loss=0.5', '--cond=0'])
    assert refused.exit_code != 0 and 'camera labels' in refused.output
