"""StyleGAN3 equivariance metrics (eqt*_int, eqt*_frac, eqr*): the resampler against known shifts,
a translation-equivariant toy scores high, a network that ignores its input grid scores low, and
networks without an input transform are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dnnlib
from metrics import equivariance as eq
from metrics import metric_main, metric_utils
from test_metrics import ToyMapping
from training import networks_stylegan3 as sg3

RES = 32


class _Input(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('transform', torch.eye(3))


class FourierSynthesis(torch.nn.Module):
    """Band-limited images out(x) = Σ sin(2π f·(T·x) + φ(w)) with |f| ≤ 3 cycles per image, at the
    grid moved by `input.transform` T (equivariant: what StyleGAN3 aims for), or ignoring T and
    adding per-pixel noise (follow_grid=False: not equivariant)."""

    def __init__(self, res, follow_grid=True):
        super().__init__()
        self.res, self.follow_grid = res, follow_grid
        self.input = _Input()
        g = torch.Generator().manual_seed(0)
        self.register_buffer('freqs', (torch.rand(8, 2, generator=g) * 2 - 1) * 3)
        self.register_buffer('noise', torch.randn(3, res, res, generator=g))

    def forward(self, ws, noise_mode='const', force_fp32=True):
        u = (torch.arange(self.res, dtype=torch.float32) + 0.5) / self.res - 0.5
        yy, xx = torch.meshgrid(u, u, indexing='ij')
        pts = torch.stack([xx, yy, torch.ones_like(xx)], -1)                  # (H, W, 3)
        if self.follow_grid:
            pts = pts @ self.input.transform.float().t()
        phase = ws[:, 0, :8, None, None] * 3                                  # (N, 8, 1, 1)
        waves = torch.sin(2 * math.pi * torch.einsum('hwk,fk->fhw', pts[..., :2], self.freqs)[None] + phase)
        img = waves.mean(1, keepdim=True).repeat(1, 3, 1, 1) * torch.tensor([1.0, 0.5, -0.7])[None, :, None, None]
        if not self.follow_grid:
            img = img + 0.3 * self.noise[None] * ws[:, 0, 8, None, None, None]
        return img


class ToyG3(torch.nn.Module):
    def __init__(self, follow_grid, res=RES, z_dim=16):
        super().__init__()
        self.z_dim, self.w_dim, self.c_dim, self.num_ws = z_dim, z_dim, 0, 2
        self.img_resolution, self.img_channels = res, 3
        self.mapping = ToyMapping(z_dim, 2, 0)
        self.synthesis = FourierSynthesis(res, follow_grid)


def _opts(G):
    return metric_utils.MetricOptions(G=G, dataset_kwargs={}, device='cpu', seed=0)


def test_resample_whole_pixel_shift_is_exact_with_border_mask():
    img = torch.randn(2, 3, 8, 8)
    ref, mask = eq.resample(img, eq.translation(-2 / 8, 1 / 8))              # out(x) = img(x − (2, −1) px)
    assert torch.equal(ref[:, :, :7, 2:], img[:, :, 1:, :6])
    assert mask[0, 0].sum() == 7 * 6 and mask[0, 0, :7, 2:].all()


def test_resample_rotation_by_quarter_turn_matches_rot90():
    x = torch.randn(1, 1, 8, 8)
    ref, mask = eq.resample(x, eq.rotation(math.pi / 2))
    assert mask.all()
    assert torch.allclose(ref, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-5) or \
        torch.allclose(ref, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5)


@pytest.mark.parametrize('kind,floor', [('int', 100), ('frac', 50), ('rot', 50)])
def test_equivariant_toy_scores_high_grid_ignoring_toy_low(kind, floor):
    high = eq.compute_equivariance(_opts(ToyG3(True)), num_samples=16, kind=kind, batch_size=4)
    low = eq.compute_equivariance(_opts(ToyG3(False)), num_samples=16, kind=kind, batch_size=4)
    print(kind, high, low)
    assert high > floor
    assert low < 20


def test_tiny_stylegan3_follows_its_grid_and_keeps_it():
    torch.manual_seed(0)
    G = sg3.Generator(c_dim=0, z_dim=16, w_dim=16, img_resolution=16, img_channels=3, channel_base=1024,
                      channel_max=32, num_layers=4, num_critical=1, margin_size=2).eval()
    value = eq.compute_equivariance(_opts(G), num_samples=8, kind='int', batch_size=4)
    assert value > 30                                                        # an untrained StyleGAN3 shifts with its grid
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))            # opts.G untouched


def test_equivariance_metrics_are_registered():
    assert {'eqt50k_int', 'eqt50k_frac', 'eqr50k', 'eqt1k_int', 'eqt1k_frac', 'eqr1k'} <= \
        set(metric_main.list_valid_metrics())


def test_refuses_network_without_input_transform(small_generator):
    with pytest.raises(ValueError, match='need a StyleGAN3-based network'):
        eq.compute_equivariance(_opts(small_generator), num_samples=4, kind='int')


def test_psnr_of_known_error():
    assert eq.psnr(4 * 0.01 * 10, 10) == pytest.approx(20 * math.log10(2) - 10 * math.log10(0.04))
    with pytest.raises(ValueError, match='unknown equivariance kind'):
        eq.draw_transform('shear', np.random.RandomState(0), 16)


def test_ray_conditioned_stylegan3_gets_cameras_from_the_labels(tmp_path):
    from test_metrics import write_gradient_dataset
    from training import networks_raycond3 as r3
    data = write_gradient_dataset(tmp_path / 'poses', n=8, res=16)
    torch.manual_seed(0)
    G = r3.Generator(c_dim=25, z_dim=16, w_dim=16, img_resolution=16, img_channels=3, channel_base=1024,
                     channel_max=32, num_layers=4, num_critical=1, margin_size=2).eval()
    dk = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True)
    opts = metric_utils.MetricOptions(G=G, dataset_kwargs=dk, device='cpu', seed=0)
    value = eq.compute_equivariance(opts, num_samples=4, kind='frac', batch_size=4)
    assert 10 < value < 200
