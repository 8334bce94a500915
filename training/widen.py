"""Function-preserving widening: resume a trained network into a wider one of the same class.

With a larger --cmax/--cbase than the snapshot's, the wider network starts by computing exactly what
the trained one did, so training goes on from where it was instead of from a perturbed copy: kept
channels keep their weights, the trailing camera-ray and minibatch-std channels move to the new end,
new channels start unused on one side of each layer and random on the other (zero on both would be a
saddle that never moves), and copied weights are rescaled where an equalized-lr gain or D's
projection width depends on the new fan-in. Each rule is explained where it is applied.
"""

from __future__ import annotations

import math

import torch

from torch_utils import misc
from training import networks_stylegan2 as sg2


def can_widen(src: torch.nn.Module, dst: torch.nn.Module) -> bool:
    """StyleGAN2-family G or D (incl. raycond2, posecond2) of the same class, same tensor names and
    ranks, and no tensor smaller in dst than in src. (StyleGAN3's layers are not handled here.)"""
    if not isinstance(dst, (sg2.Generator, sg2.Discriminator)):
        return False
    if type(src).__name__ != type(dst).__name__:  # a pickle's own copy of the class has another identity
        return False
    if _tails(src) != _tails(dst):  # e.g. a StyleGAN2 layer into a ray layer: not a widening
        return False
    if any(getattr(getattr(m, 'mbstd', None), 'num_channels', 1) != 1 for m in dst.modules()):
        return False  # with several minibatch-std groups the new channels would change the grouping
    a, b = dict(misc.named_params_and_buffers(src)), dict(misc.named_params_and_buffers(dst))
    if a.keys() != b.keys():
        return False
    return all(a[k].ndim == b[k].ndim and all(x <= y for x, y in zip(a[k].shape, b[k].shape)) for k in a)


def _tails(net: torch.nn.Module) -> dict:
    """{tensor name: {dim: trailing channels that stay at the end}} for layers with such channels."""
    tails = {}
    for name, m in net.named_modules():
        prefix = f'{name}.' if name else ''
        rays = getattr(m, 'ray_channels', 0) if hasattr(m, 'feature_channels') else 0
        if rays:  # ray layer: [features, rays] in the conv input and in the style affine's output
            tails[f'{prefix}weight'] = {1: rays}
            tails[f'{prefix}affine.weight'] = {0: rays}
            tails[f'{prefix}affine.bias'] = {0: rays}
        if type(m).__name__ == 'DiscriminatorEpilogue' and m.mbstd is not None:
            tails[f'{prefix}conv.weight'] = {1: m.mbstd.num_channels}
    return tails


def _new_positions(old: int, new: int, tail: int) -> torch.Tensor:
    """Where the old entries of one dimension go in the new one: leading ones in place, the
    `tail` trailing ones (rays, minibatch std) at the new end."""
    return torch.tensor(list(range(old - tail)) + list(range(new - tail, new)))


@torch.no_grad()
def widen_into(src: torch.nn.Module, dst: torch.nn.Module) -> dict:
    """Copy `src` into the wider `dst` (see the module docstring). Returns dict(full=[names],
    widened=[names]). Raises ValueError when `can_widen` is false."""
    if not can_widen(src, dst):
        raise ValueError(f'widen_into: cannot widen a {type(src).__name__} into a {type(dst).__name__} '
                         f'(same class, names and ranks needed, and no tensor may shrink)')
    old = dict(misc.named_params_and_buffers(src))
    tails = _tails(dst)
    modules, src_modules = dict(dst.named_modules()), dict(src.named_modules())
    discriminator = isinstance(dst, sg2.Discriminator)
    report = dict(full=[], widened=[])
    for name, t in misc.named_params_and_buffers(dst):
        s = old[name].detach().to(t.device, t.dtype)
        if s.shape == t.shape:
            t.copy_(s)
            report['full'].append(name)
            continue
        owner, _, leaf = name.rpartition('.')
        m, m_src = modules.get(owner), src_modules.get(owner)
        tail = tails.get(name, {})
        scale = 1.0
        if leaf == 'weight' and hasattr(m, 'weight_gain') and hasattr(m_src, 'weight_gain'):
            scale = float(m_src.weight_gain) / float(m.weight_gain)
        if discriminator:
            # New channels start at exactly zero (zero rows), read by random columns: D has no noise
            # inputs, so zero rows stay zero, and both sides still get gradients.
            if owner == 'b4.out':  # rows are projection dims (cmap_new is zero); the sum divides by sqrt(cmap)
                scale *= math.sqrt(t.shape[0] / s.shape[0])
            elif t.shape[0] != s.shape[0] and leaf in ('weight', 'bias'):
                t[s.shape[0]:] = 0
            if owner == 'mapping.fc0' and leaf == 'weight':
                scale = 1.0  # the embed's 2nd-moment normalisation grows its old outputs by what the gain loses
        elif leaf == 'weight' and t.ndim >= 2 and s.shape[1] != t.shape[1]:
            k = tail.get(1, 0)
            t[:, s.shape[1] - k:t.shape[1] - k] = 0  # nothing reads the new channels yet
        positions = [_new_positions(a, b, tail.get(dim, 0) if a != b else 0).to(t.device)
                     for dim, (a, b) in enumerate(zip(s.shape, t.shape))]
        t[torch.meshgrid(*positions, indexing='ij')] = s * scale
        if discriminator and owner == 'b4.conv' and leaf == 'weight' and 1 in tail:
            k = tail[1]  # the minibatch std now also averages over the (zero) new channels
            t[:, t.shape[1] - k:] *= (t.shape[1] - k) / (s.shape[1] - k)
        report['widened'].append(name)
    return report

