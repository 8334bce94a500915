"""Perceptual Path Length (Karras et al. 2019): how much the image changes, in LPIPS distance
(VGG16), for a small step ε along an interpolation between two latents, divided by ε². Both ends
share one camera drawn from the dataset's labels, so only identity moves. Variants: space z (slerp)
or w (lerp), sampling 'full' (t uniform) or 'end' (t = 0), crop to the face centre or not."""

from __future__ import annotations

import numpy as np
import torch

from metrics import metric_utils
from raycond import generate as rgen


def slerp(a, b, t):
    """Spherical interpolation between the directions of a and b (result has unit length)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d.clamp(-1, 1))
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def filtered_mean(dist) -> float:
    """Mean of the distances between their 1st and 99th percentiles (drops outliers)."""
    dist = np.asarray(dist, np.float64)
    lo = np.percentile(dist, 1, method='lower')
    hi = np.percentile(dist, 99, method='higher')
    return float(dist[(dist >= lo) & (dist <= hi)].mean())


class PPLSampler(torch.nn.Module):
    """One batch of path-length samples: distances (N,) for labels c (N, c_dim)."""

    def __init__(self, G, G_kwargs, epsilon, space, sampling, crop, vgg16):
        if space not in ('z', 'w'):
            raise ValueError(f"PPL space must be 'z' or 'w', got {space!r}")
        if sampling not in ('full', 'end'):
            raise ValueError(f"PPL sampling must be 'full' or 'end', got {sampling!r}")
        super().__init__()
        self.G = G
        self.G_kwargs = dict(G_kwargs)
        self.epsilon = epsilon
        self.space = space
        self.sampling = sampling
        self.crop = crop
        self.vgg16 = vgg16

    def forward(self, c, z0=None, z1=None, t=None, generator=None):
        G = self.G
        n = c.shape[0]
        dev = c.device
        if t is None:
            t = torch.rand([n], generator=generator).to(dev) * (1 if self.sampling == 'full' else 0)
        if z0 is None or z1 is None:
            z0, z1 = torch.randn([n * 2, G.z_dim], generator=generator).to(dev).chunk(2)
        t = t.to(dev)[:, None]
        psi = self.G_kwargs.get('truncation_psi', 1)
        cutoff = self.G_kwargs.get('truncation_cutoff', None)
        cc = torch.cat([c, c])
        if self.space == 'w':
            w0, w1 = rgen.map_latents(G, torch.cat([z0, z1]), cc, psi, cutoff).chunk(2)
            wt0 = w0.lerp(w1, t[:, :, None])
            wt1 = w0.lerp(w1, t[:, :, None] + self.epsilon)
        else:
            zt0 = slerp(z0, z1, t)
            zt1 = slerp(z0, z1, t + self.epsilon)
            wt0, wt1 = rgen.map_latents(G, torch.cat([zt0, zt1]), cc, psi, cutoff).chunk(2)

        # Fresh constant noise per batch, identical for both ends of each pair.
        for name, buf in G.named_buffers():
            if name.endswith('.noise_const'):
                buf.copy_(torch.randn(buf.shape, generator=generator).to(buf.device))

        img = rgen.synthesize(G, torch.cat([wt0, wt1]), cc if cc.shape[1] else None, noise_mode='const',
                              force_fp32=True)
        if self.crop:
            s = img.shape[2] // 8
            img = img[:, :, s * 3: s * 7, s * 2: s * 6]
        factor = G.img_resolution // 256
        if factor > 1:  # box-downsample to 256² as the metric is defined
            img = img.reshape([-1, img.shape[1], img.shape[2] // factor, factor, img.shape[3] // factor, factor])
            img = img.mean([3, 5])
        img = (img.float() + 1) * (255 / 2)
        if img.shape[1] == 1:
            img = img.repeat([1, 3, 1, 1])
        lpips0, lpips1 = self.vgg16(img, resize_images=False, return_lpips=True).chunk(2)
        return (lpips0 - lpips1).square().reshape(n, -1).sum(1) / self.epsilon ** 2


def compute_ppl(opts, num_samples, epsilon, space, sampling, crop, batch_size):
    """PPL of opts.G over `num_samples` pairs (split across processes)."""
    vgg16 = metric_utils.get_feature_detector(metric_utils.vgg16_url(), device=opts.device,
                                              num_gpus=opts.num_gpus, rank=opts.rank, verbose=opts.progress.verbose)
    G = metric_utils.prepare_generator(opts)
    sampler = PPLSampler(G=G, G_kwargs=opts.G_kwargs, epsilon=epsilon, space=space, sampling=sampling,
                         crop=crop, vgg16=vgg16)
    sample_c = metric_utils.LabelSampler(opts, G.c_dim, salt=2)
    gen = opts.torch_generator(salt=2)

    dist = []
    progress = opts.progress.sub(tag='ppl sampling', num_items=num_samples)
    total = 0
    while total < num_samples:
        with torch.no_grad():
            x = sampler(sample_c(batch_size), generator=gen)
        x = metric_utils.gather_interleaved(x, opts.num_gpus)
        dist.append(x.cpu())
        total += x.shape[0]
        progress.update(total)
    progress.close()
    if opts.rank != 0:
        return float('nan')
    return filtered_mean(torch.cat(dist)[:num_samples].numpy())
