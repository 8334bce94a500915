"""Upsample, FIR-filter and downsample 2-D images (`upfirdn2d`) with StyleGAN2-ADA's conventions.

Network pickles from StyleGAN2-ADA, StyleGAN3 and Ray Conditioning call these functions from their
own source, so names, arguments and results follow NVIDIA's op exactly:

    y = downsample(convolve(pad_or_crop(upsample_with_zeros(x, up), padding), f * gain), down)

where upsampling inserts `up - 1` zeros after every sample, negative padding crops, `f` is
applied as a true convolution (flipped correlation) unless `flip_filter=True`, a 1-D filter is
separable (applied along x then y) and `gain` scales the filter by gain**(ndim/2) per axis.

The pure-PyTorch reference never multiplies by inserted zeros: upsampling runs as a strided
transposed depthwise convolution and downsampling as a strided depthwise convolution, so its cost
is that of the useful taps only. Every step is a differentiable torch op, so first- and
second-order gradients work (R1, path-length regularization).
"""

import numpy as np
import torch
import torch.nn.functional as F

from . import CUDA_KERNELS, ext_ops, kernels_for

__all__ = ["setup_filter", "upfirdn2d", "filter2d", "upsample2d", "downsample2d", "_init"]

# The kernels (upfirdn2d.{h,cpp,cu}) are built once per process, shared with the other ops.
_slot = CUDA_KERNELS

# Whether CPU tensors use the CPU build of the kernel (only where it measured faster than the
# reference: benchmarks/bench_ops.py, docs/performance.md).
_CPU_KERNEL_FASTER = False

# 1-D filters with at most this many taps run as one small 2-D depthwise kernel (faster on CPU
# than two 1-D passes); longer ones run as two 1-D passes.
_MAX_TAPS_AS_2D = 6


def _init() -> bool:
    """True when the compiled CUDA kernel is available (never on CPU-only installs)."""
    return torch.cuda.is_available() and _slot.available()


def _parse_scaling(scaling, name="up"):
    """int or [sx, sy] -> (sx, sy), each an int >= 1."""
    if isinstance(scaling, (int, np.integer)):
        scaling = [int(scaling), int(scaling)]
    if not (isinstance(scaling, (list, tuple)) and len(scaling) == 2
            and all(isinstance(s, (int, np.integer)) and s >= 1 for s in scaling)):
        raise ValueError(f"{name}: expected an int >= 1 or [x, y] of such ints, got {scaling!r}")
    return int(scaling[0]), int(scaling[1])


def _parse_padding(padding):
    """int, [px, py] or [px0, px1, py0, py1] -> (px0, px1, py0, py1)."""
    if isinstance(padding, (int, np.integer)):
        padding = [int(padding), int(padding)]
    if not (isinstance(padding, (list, tuple)) and len(padding) in (2, 4)
            and all(isinstance(p, (int, np.integer)) for p in padding)):
        raise ValueError(f"padding: expected an int, [x, y] or [x0, x1, y0, y1] of ints, "
                         f"got {padding!r}")
    if len(padding) == 2:
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    return tuple(int(p) for p in padding)


def _get_filter_size(f):
    """(width, height) of a filter; (1, 1) for None."""
    if f is None:
        return 1, 1
    if not (isinstance(f, torch.Tensor) and f.ndim in (1, 2)):
        got = f"{f.ndim}-D tensor" if isinstance(f, torch.Tensor) else type(f).__name__
        raise ValueError(f"f: expected None or a 1-D/2-D filter tensor, got a {got}")
    fw, fh = int(f.shape[-1]), int(f.shape[0])
    if fw < 1 or fh < 1:
        raise ValueError("f: the filter must not be empty")
    return fw, fh


def setup_filter(f, device=torch.device("cpu"), normalize=True, flip_filter=False, gain=1,
                 separable=None):
    """Turn filter taps (None, scalar, list, array or tensor) into a float32 filter tensor.

    A 1-D filter stays 1-D (separable) when `separable` is True, or when it is None and the
    filter has at least 8 taps; otherwise it becomes its outer product. `normalize` makes the
    taps sum to one, `flip_filter` flips it, `gain` scales it by gain**(ndim/2).
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"f: expected a scalar, 1-D or 2-D non-empty filter, got shape "
                         f"{tuple(f.shape)}")
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("f: a 2-D filter cannot be made separable")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="cuda"):
    """Pad, upsample, filter and downsample a batch of NCHW images.

    Args: x (N, C, H, W); f filter (None = identity, 1-D separable or 2-D, float32, from
    `setup_filter`); up/down int or [x, y]; padding int, [x, y] or [x0, x1, y0, y1] applied after
    upsampling (negative crops); flip_filter (correlation instead of convolution); gain (overall
    scale); impl 'cuda' (kernel when available for CUDA tensors) or 'ref'.
    Returns (N, C, (H*up_y + py0 + py1 - fh + 1 + down_y - 1) // down_y, ...) like NVIDIA's op.
    """
    k = kernels_for(impl, x, _slot, cpu=_CPU_KERNEL_FASTER)
    if k is not None:
        return _upfirdn2d_kernel(k, x, f, up, down, padding, flip_filter, gain)
    return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter,
                          gain=gain)


def _check_args(x, f, up, down, padding):
    """Validate; return ((upx, upy), (downx, downy), (px0, px1, py0, py1))."""
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError(f"x: expected a 4-D NCHW tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    fw, fh = _get_filter_size(f)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    in_h, in_w = x.shape[2], x.shape[3]
    if in_w * upx + padx0 + padx1 < fw or in_h * upy + pady0 + pady1 < fh:
        raise ValueError(f"upfirdn2d: the padded, upsampled image ({in_h}x{in_w} * up "
                         f"[{upx}, {upy}] + padding) is smaller than the {fh}x{fw} filter")
    return (upx, upy), (downx, downy), (padx0, padx1, pady0, pady1)


def _upfirdn2d_kernel(k, x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """upfirdn2d on the compiled kernels of op namespace `k` (same checks as the reference)."""
    up, down, pads = _check_args(x, f, up, down, padding)
    return ext_ops.upfirdn2d(k, x, f, up, down, pads, flip_filter, gain)


def _depthwise_resample(x, k, up, down, pads):
    """One pass of upsample / pad / correlate with depthwise kernel k (kh, kw) / downsample."""
    if x.dtype == torch.bfloat16 and x.device.type == "cpu" and max(*up, *down) > 1 \
            and torch.is_grad_enabled() and x.requires_grad:
        # oneDNN's backward of a strided depthwise convolution in bf16 is 10-20x slower than
        # float32's on the CPU (32x32 channels at 64x64, stride 2: 53 ms against 7 ms).
        return _depthwise_resample(x.float(), k.float(), up, down, pads).to(x.dtype)
    n, c, h, w = x.shape
    kh, kw = k.shape
    ux, uy = up
    dx, dy = down
    px0, px1, py0, py1 = pads
    weight = k[None, None].expand(c, 1, kh, kw)
    if ux == 1 and uy == 1:
        if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
            return F.conv2d(x, weight, stride=(dy, dx), padding=(py0, px0), groups=c)
        x = F.pad(x, [px0, px1, py0, py1])
        return F.conv2d(x, weight, stride=(dy, dx), groups=c)

    # Zero insertion + padding + correlation with k == transposed convolution with flip(k),
    # cropped by (K - 1 - p0) at the start and (K - up - p1) at the end (negative = zero pad).
    sx, ex = kw - 1 - px0, kw - ux - px1
    sy, ey = kh - 1 - py0, kh - uy - py1
    tx, ty = max(0, min(sx, ex)), max(0, min(sy, ey))
    y = F.conv_transpose2d(x, weight.flip([2, 3]), stride=(uy, ux), padding=(ty, tx), groups=c)
    rest = [tx - sx, tx - ex, ty - sy, ty - ey]
    if any(rest):
        y = F.pad(y, rest)
    if dx > 1 or dy > 1:
        y = y[:, :, ::dy, ::dx]
    return y


def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Pure-PyTorch upfirdn2d (differentiable to any order)."""
    (upx, upy), (downx, downy), (padx0, padx1, pady0, pady1) = _check_args(x, f, up, down,
                                                                           padding)
    fw, fh = _get_filter_size(f)

    if f is None:
        f = torch.ones([1, 1], dtype=x.dtype, device=x.device)
    f = f.to(device=x.device, dtype=x.dtype)
    if not flip_filter:  # conv2d correlates: flip for a true convolution
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1 and fw <= _MAX_TAPS_AS_2D:
        f = torch.outer(f, f) * gain
    elif gain != 1:
        f = f * (gain ** (f.ndim / 2))

    if f.ndim == 2:
        return _depthwise_resample(x, f, (upx, upy), (downx, downy),
                                   (padx0, padx1, pady0, pady1))
    x = _depthwise_resample(x, f[None, :], (upx, 1), (downx, 1), (padx0, padx1, 0, 0))
    return _depthwise_resample(x, f[:, None], (1, upy), (1, downy), (0, 0, pady0, pady1))


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl="cuda"):
    """Filter x with f, padded so that the output has the input's size (plus `padding`)."""
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    """Upsample x by `up` with filter f (output size = input size * up + padding); the filter gain
    is multiplied by up_x * up_y to keep the signal level."""
    upx, upy = _parse_scaling(up, "up")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + (fw + upx - 1) // 2, padx1 + (fw - upx) // 2,
         pady0 + (fh + upy - 1) // 2, pady1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy,
                     impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    """Filter x with f and downsample by `down` (output size = (input size + padding) / down)."""
    downx, downy = _parse_scaling(down, "down")
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + (fw - downx + 1) // 2, padx1 + (fw - downx) // 2,
         pady0 + (fh - downy + 1) // 2, pady1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
