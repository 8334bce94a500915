"""Filtered leaky ReLU (`filtered_lrelu`) of StyleGAN3, with its reference semantics.

StyleGAN3 (and Ray Conditioning's raycond3) layers call `filtered_lrelu(x, fu, fd, b, up, down,
padding, gain, slope, clamp)` from their pickled source. By definition the result is

    x + b  ->  upfirdn2d(., fu, up=up, padding=padding, gain=up**2)
           ->  leaky_relu(., slope) * gain, clamped to [-clamp, clamp]
           ->  upfirdn2d(., fd, down=down)

which the pure-PyTorch reference computes with the project's `bias_act` and `upfirdn2d`
(upsampling as a transposed convolution, downsampling as a strided one, so no work is spent on
inserted zeros or dropped pixels).
"""

import numpy as np
import torch

from . import CUDA_KERNELS, ext_ops, kernels_for
from . import bias_act
from . import upfirdn2d
from .upfirdn2d import _get_filter_size, _parse_padding

__all__ = ["filtered_lrelu", "_init"]

_SQRT2 = float(np.sqrt(2))  # default gain, as a Python float

# The kernels (filtered_lrelu.{h,cpp,cu}) are built once per process, shared with the other ops.
_slot = CUDA_KERNELS

# Whether CPU tensors use the CPU build (only where it measured faster: docs/performance.md).
_CPU_KERNEL_FASTER = False


def _init() -> bool:
    """True when the compiled CUDA kernel is available (False on CPU-only installs)."""
    return torch.cuda.is_available() and _slot.available()


def filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=_SQRT2, slope=0.2,
                   clamp=None, flip_filter=False, impl="cuda"):
    """Bias, upsample with `fu`, leaky ReLU * gain, clamp, downsample with `fd` (NCHW `x`).

    Args: fu/fd None or float32 1-D (separable) / 2-D filters; b None or (C,) bias of x's dtype;
    up/down int >= 1; padding int, [px, py] or [px0, px1, py0, py1] (upsampled frame);
    gain > 0; slope >= 0; clamp None or >= 0; flip_filter as in upfirdn2d; impl 'cuda' or 'ref'.
    Output size: (in * up + pad0 + pad1 - (fu_taps - 1) - (fd_taps - 1) + down - 1) // down.
    """
    k = kernels_for(impl, x, _slot, cpu=_CPU_KERNEL_FASTER)
    if k is not None:
        return _filtered_lrelu_kernel(k, x, fu=fu, fd=fd, b=b, up=up, down=down,
                                      padding=padding, gain=gain, slope=slope, clamp=clamp,
                                      flip_filter=flip_filter)
    return _filtered_lrelu_ref(x, fu=fu, fd=fd, b=b, up=up, down=down, padding=padding,
                               gain=gain, slope=slope, clamp=clamp, flip_filter=flip_filter)


def _filtered_lrelu_kernel(k, x, fu=None, fd=None, b=None, up=1, down=1, padding=0,
                           gain=_SQRT2, slope=0.2, clamp=None, flip_filter=False):
    """filtered_lrelu on the compiled kernels of op namespace `k` (same checks as the reference)."""
    pads = _check_args(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    return ext_ops.filtered_lrelu(k, x, fu, fd, b, int(up), int(down), pads, gain, slope, clamp,
                                  flip_filter)


def _check_args(x, fu, fd, b, up, down, padding, gain, slope, clamp):
    """Validate the arguments; return the padding as (px0, px1, py0, py1)."""
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError("x: expected a 4-D NCHW tensor")
    fu_w, fu_h = _get_filter_size(fu)
    fd_w, fd_h = _get_filter_size(fd)
    if b is not None and not (isinstance(b, torch.Tensor) and b.ndim == 1
                              and b.shape[0] == x.shape[1]):
        raise ValueError(f"b: expected None or a 1-D tensor of {x.shape[1]} values")
    for name, value in (("up", up), ("down", down)):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    px0, px1, py0, py1 = _parse_padding(padding)
    if not (gain == float(gain) and gain > 0):
        raise ValueError(f"gain: expected a number > 0, got {gain!r}")
    if not (slope == float(slope) and slope >= 0):
        raise ValueError(f"slope: expected a number >= 0, got {slope!r}")
    if clamp is not None and not (clamp == float(clamp) and clamp >= 0):
        raise ValueError(f"clamp: expected None or a number >= 0, got {clamp!r}")
    return px0, px1, py0, py1


def _filtered_lrelu_ref(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=_SQRT2,
                        slope=0.2, clamp=None, flip_filter=False):
    """Pure-PyTorch filtered_lrelu built from bias_act and upfirdn2d."""
    px0, px1, py0, py1 = _check_args(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    fu_w, fu_h = _get_filter_size(fu)
    fd_w, fd_h = _get_filter_size(fd)
    n, c, in_h, in_w = x.shape
    out_w = (in_w * up + (px0 + px1) - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + (py0 + py1) - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down
    in_dtype = x.dtype

    x = bias_act.bias_act(x, b, impl="ref")
    x = upfirdn2d.upfirdn2d(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                            flip_filter=flip_filter, impl="ref")
    x = bias_act.bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp, impl="ref")
    x = upfirdn2d.upfirdn2d(x, fd, down=down, flip_filter=flip_filter, impl="ref")

    if tuple(x.shape) != (n, c, out_h, out_w) or x.dtype != in_dtype:  # pragma: no cover
        raise RuntimeError(f"filtered_lrelu: unexpected output {tuple(x.shape)} {x.dtype}")
    return x
