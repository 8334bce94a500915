"""Fused multiply-add `fma(a, b, c) = a * b + c` (NVIDIA's `torch_utils.ops.fma` interface).

StyleGAN2's non-fused modulated convolution adds noise with it. `torch.addcmul` computes the
same thing in one pass, broadcasts its arguments, sums gradients back to each input's shape, and
is differentiable to any order, so no custom autograd function is needed.
"""

import torch

__all__ = ["fma"]


def fma(a, b, c):
    """Return a * b + c (broadcast), with gradients reduced to the shapes of a, b and c."""
    return torch.addcmul(c, a, b)
