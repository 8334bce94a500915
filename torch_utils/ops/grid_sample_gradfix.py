"""Bilinear `grid_sample` with NVIDIA's `grid_sample_gradfix` interface.

The ADA augmentation pipeline samples images through a constant grid, and the R1 penalty
differentiates through that twice. Old PyTorch versions could not double-differentiate
grid_sample, hence NVIDIA's custom op; the PyTorch versions this project supports can, so the
function is the plain op with the fixed settings (bilinear, zero padding, align_corners=False).
`enabled` is kept because training code sets it.
"""

import torch.nn.functional as F

__all__ = ["enabled", "grid_sample"]

enabled = False  # Training code sets this; results are the same either way.


def grid_sample(input, grid):
    """Sample NCHW `input` at `grid` (N, H_out, W_out, 2) in [-1, 1]: bilinear, zeros outside,
    align_corners=False. Differentiable to second order in `input`."""
    return F.grid_sample(input=input, grid=grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)
