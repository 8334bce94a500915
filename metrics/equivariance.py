"""StyleGAN3's equivariance metrics (Karras et al. 2021, "Alias-Free Generative Adversarial
Networks", appendix E): `eqt*_int` (integer translation), `eqt*_frac` (subpixel translation) and
`eqr*` (rotation), in dB of PSNR, higher is better.

A StyleGAN3 synthesis network starts from Fourier features sampled on a grid, and the buffer
`G.synthesis.input.transform` (a 3×3 affine map T of image coordinates, x right, y down, the image
spanning [−0.5, 0.5]) moves that grid: the network then draws out(x) ≈ out₀(T·x). A perfectly
equivariant network gives the same picture as taking the untransformed image out₀ and resampling
it at T·x. The metric draws a random T per batch, renders both, and measures the PSNR between
them (peak-to-peak 2 for images in [−1, 1]) over the pixels whose resampling stays inside the
image (the mask), pooled over all images: PSNR = 20·log10(2) − 10·log10(MSE).

Transforms follow the paper: translations uniform in ±1/8 of the image (rounded to whole pixels for
`_int`), rotations uniform in ±180°. Resampling is Lanczos-3 interpolation (exact for whole-pixel
shifts), our own implementation: values are close to, not bit-identical with, NVIDIA's, whose
resampling differs. For ray-conditioned networks the camera c goes to synthesis unchanged, so
the metric measures how far the camera-fixed ray embedding breaks the backbone's equivariance.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from metrics import metric_utils
from raycond import generate as rgen

LANCZOS_A = 3


def input_transform(G) -> torch.Tensor:
    """The `transform` buffer of G's synthesis input; ValueError for networks that have none."""
    t = getattr(getattr(getattr(G, 'synthesis', None), 'input', None), 'transform', None)
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != (3, 3):
        raise ValueError(f'equivariance metrics (eqt/eqr) need a StyleGAN3-based network (raycond3, stylegan3) whose '
                         f'synthesis.input has a 3x3 transform buffer; {type(G).__name__} has none')
    return t


def translation(tx: float, ty: float) -> torch.Tensor:
    m = torch.eye(3, dtype=torch.float64)
    m[0, 2], m[1, 2] = tx, ty
    return m


def rotation(angle: float) -> torch.Tensor:
    m = torch.eye(3, dtype=torch.float64)
    m[0, 0], m[0, 1], m[1, 0], m[1, 1] = math.cos(angle), -math.sin(angle), math.sin(angle), math.cos(angle)
    return m


def lanczos(x: torch.Tensor, a: int = LANCZOS_A) -> torch.Tensor:
    """Lanczos-a kernel sinc(x)·sinc(x/a) on |x| < a, 0 elsewhere (exactly 1 at 0, exactly 0 at
    other integers: sin(πk) rounds to about 1e-16, which would otherwise count as a tap)."""
    y = torch.where(x.abs() < a, torch.sinc(x) * torch.sinc(x / a), torch.zeros_like(x))
    return torch.where(y.abs() < 1e-9, torch.zeros_like(y), y)


def resample(img: torch.Tensor, T: torch.Tensor, a: int = LANCZOS_A) -> tuple[torch.Tensor, torch.Tensor]:
    """ref(x) = img(T·x) for images (N, C, H, W), coordinates as in the module docstring.

    Returns (ref, mask): mask is 1 where every tap with non-zero weight lies inside the image."""
    N, C, H, W = img.shape
    dev = img.device
    T = T.to(torch.float64)
    # Pixel centres in image units, mapped by T, back to pixel indices (continuous).
    u = (torch.arange(W, dtype=torch.float64, device=dev) + 0.5) / W - 0.5
    v = (torch.arange(H, dtype=torch.float64, device=dev) + 0.5) / H - 0.5
    yy, xx = torch.meshgrid(v, u, indexing='ij')
    px = (T[0, 0] * xx + T[0, 1] * yy + T[0, 2] + 0.5) * W - 0.5
    py = (T[1, 0] * xx + T[1, 1] * yy + T[1, 2] + 0.5) * H - 0.5
    # Snap values within 1e-6 pixels of an integer, so whole-pixel shifts are exact.
    px = torch.where((px - px.round()).abs() < 1e-6, px.round(), px)
    py = torch.where((py - py.round()).abs() < 1e-6, py.round(), py)
    bx, by = px.floor(), py.floor()
    fx, fy = px - bx, py - by
    out = torch.zeros_like(img, dtype=torch.float32)
    wsum = torch.zeros([H, W], dtype=torch.float64, device=dev)
    valid = torch.ones([H, W], dtype=torch.bool, device=dev)
    flat = img.float().reshape(N, C, H * W)
    for ky in range(-a + 1, a + 1):
        wy = lanczos(fy - ky, a)
        iy = by + ky
        for kx in range(-a + 1, a + 1):
            w = wy * lanczos(fx - kx, a)
            ix = bx + kx
            inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
            valid &= inside | (w == 0)
            w = torch.where(inside, w, torch.zeros_like(w))
            idx = (iy.clamp(0, H - 1) * W + ix.clamp(0, W - 1)).long().reshape(-1)
            out += flat[:, :, idx].reshape(N, C, H, W) * w.float()
            wsum += w
    out = out / wsum.clamp_min(1e-8).float()
    mask = valid.to(img.dtype if img.is_floating_point() else torch.float32)
    return out, mask.expand(N, C, H, W)


def draw_transform(kind: str, rng: np.random.RandomState, res: int, translate_max=0.125,
                   rotate_max=1.0) -> torch.Tensor:
    """Random input transform T of one batch: 'int' (whole-pixel shift), 'frac' (any shift), 'rot'."""
    if kind == 'rot':
        return rotation((rng.uniform() * 2 - 1) * rotate_max * math.pi)
    t = (rng.uniform(size=2) * 2 - 1) * translate_max
    if kind == 'int':
        t = np.round(t * res) / res
    elif kind != 'frac':
        raise ValueError(f'unknown equivariance kind {kind!r} (expected int, frac or rot)')
    return translation(-t[0], -t[1])  # out(x) = out0(x − t): the image moves by +t


def psnr(sq_err_sum: float, count: float) -> float:
    """PSNR in dB of images in [−1, 1] (peak-to-peak 2) from the summed squared error over `count` values."""
    mse = sq_err_sum / max(count, 1e-12)
    return float(20 * math.log10(2) - 10 * math.log10(max(mse, 1e-30)))


def compute_equivariance(opts, num_samples, kind, batch_size=8, translate_max=0.125, rotate_max=1.0) -> float:
    """PSNR (dB) between G's output with a transformed input grid and its transformed output."""
    G = metric_utils.prepare_generator(opts)
    transform = input_transform(G)
    sample_c = metric_utils.LabelSampler(opts, G.c_dim, salt=7)
    zgen = opts.torch_generator(salt=7)
    rng = opts.numpy_rng(salt=7)
    G_kwargs = dict(opts.G_kwargs)
    psi = G_kwargs.pop('truncation_psi', 1)
    cutoff = G_kwargs.pop('truncation_cutoff', None)
    noise_mode = G_kwargs.pop('noise_mode', 'const')
    G_kwargs.pop('force_fp32', None)   # always float32: the metric's PSNR compares two renders
    identity = torch.eye(3, device=transform.device, dtype=transform.dtype)

    per_rank = (num_samples + opts.num_gpus - 1) // opts.num_gpus
    sums = torch.zeros(2, dtype=torch.float64)
    done = 0
    progress = opts.progress.sub(tag=f'equivariance {kind}', num_items=per_rank * opts.num_gpus)
    try:
        while done < per_rank:
            n = min(batch_size, per_rank - done)
            z = torch.randn([n, G.z_dim], generator=zgen).to(opts.device)
            c = sample_c(n)
            T = draw_transform(kind, rng, G.img_resolution, translate_max, rotate_max)
            with torch.no_grad():
                ws = rgen.map_latents(G, z, c, truncation_psi=psi, truncation_cutoff=cutoff)
                cs = c if c.shape[1] else None
                transform.copy_(identity)
                img0 = rgen.synthesize(G, ws, cs, noise_mode=noise_mode, force_fp32=True, **G_kwargs).float()
                transform.copy_(T.to(transform))
                img1 = rgen.synthesize(G, ws, cs, noise_mode=noise_mode, force_fp32=True, **G_kwargs).float()
                ref, mask = resample(img0, T)
            sums[0] += float((((img1 - ref) * mask) ** 2).double().sum())
            sums[1] += float(mask.double().sum())
            done += n
            progress.update(done * opts.num_gpus)
    finally:
        transform.copy_(identity)
        progress.close()
    sums = metric_utils.all_reduce_sum(sums.to(opts.device), opts.num_gpus).cpu()
    return psnr(float(sums[0]), float(sums[1]))
