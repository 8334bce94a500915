"""Fine-tuning anchor (`train.py --anchor=W`): keep G's images close to those of the network the
run resumed from, at a low resolution.

Why: an extra loss for G (e.g. `--pose-loss`) can often be lowered in two ways, by doing what it
asks (turning the head by the missing degrees) or by drawing fewer of the images it finds hard
(on the synthetic heads: fewer bald and long-haired heads). The second changes what a latent
draws, a large change of the low-resolution image; the first moves it by a fraction of a pixel.
Charging the mean squared difference of the two networks' images of the same latent and camera,
average-pooled to `res`², makes the second expensive and leaves the first nearly free.

The anchor is a frozen copy of G as it was when the loss was built (after `--resume`); a run
continued with `--resume=auto` anchors to the snapshot it continues from.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F


class FunctionAnchor:
    """A frozen copy of a generator and the penalty for drifting away from it."""

    def __init__(self, G: torch.nn.Module, res: int = 16):
        if res < 1 or G.img_resolution % res:
            raise ValueError(f'anchor resolution {res} must divide the image resolution {G.img_resolution}')
        self.res = int(res)
        self.G0 = copy.deepcopy(G).eval().requires_grad_(False)

    def pooled(self, img: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(img.float(), self.res)

    def penalty(self, G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Per-image mean squared difference (N,) between G's and the anchor's images of (z, c),
        pooled to res², both without noise (the same image for the same latent) and without
        style mixing or truncation."""
        with torch.no_grad():
            target = self.pooled(self.G0(z, c, noise_mode='const'))
        img = G(z, c, noise_mode='const')
        return (self.pooled(img) - target).square().mean(dim=[1, 2, 3])
