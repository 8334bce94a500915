"""2-D convolution with optional FIR up/downsampling (`conv2d_resample`), StyleGAN2-ADA semantics.

By definition the result is

    upfirdn2d(x, f, up=up, padding=p, gain=up**2)  ->  conv2d(., w, groups)  ->  upfirdn2d(., f, down=down)

with p = `padding` plus what the resampling filter needs (as in upsample2d/downsample2d), and the
filter only used when up > 1 or down > 1. Foreign network pickles call this function, so the
signature and results match NVIDIA's op. The implementation takes equivalent cheaper routes:

- 1x1 kernel + downsampling: filter and downsample first, then the 1x1 conv (4x fewer pixels);
- 1x1 kernel + upsampling: 1x1 conv first, then upsample;
- downsampling: filter at full resolution, then a strided convolution;
- upsampling: a strided transposed convolution (no multiplications by inserted zeros), then the
  filter, then optional downsampling;
- neither: one conv2d (padding passed to it when symmetric).
"""

import numpy as np
import torch

from . import conv2d_gradfix
from . import upfirdn2d
from .upfirdn2d import _get_filter_size, _parse_padding

__all__ = ["conv2d_resample"]


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d (correlation when flip_weight=True, true convolution otherwise) or its transpose."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return conv2d_gradfix.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return conv2d_gradfix.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _conv_padded(x, w, pads, stride=1, groups=1, flip_weight=True):
    """conv2d after padding/cropping by (px0, px1, py0, py1); pads go into conv2d when possible."""
    px0, px1, py0, py1 = pads
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, stride=stride, padding=[py0, px0], groups=groups,
                     flip_weight=flip_weight)
    x = torch.nn.functional.pad(x, [px0, px1, py0, py1])
    return _conv(x, w, stride=stride, groups=groups, flip_weight=flip_weight)


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True,
                    flip_filter=False):
    """Convolve NCHW `x` with `w` (out, in/groups, kh, kw), upsampling/downsampling with FIR `f`.

    Args: f float32 filter from upfirdn2d.setup_filter (None = box, only used when resampling);
    up/down int >= 1; padding int, [x, y] or [x0, x1, y0, y1] (in the upsampled frame);
    groups as in conv2d; flip_weight True = correlation like torch conv2d, False = true
    convolution; flip_filter likewise for f.
    """
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError("x: expected a 4-D NCHW tensor")
    if not (isinstance(w, torch.Tensor) and w.ndim == 4):
        raise ValueError("w: expected a 4-D (out, in/groups, kh, kw) weight tensor")
    if w.dtype != x.dtype:
        raise ValueError(f"w: dtype {w.dtype} differs from x's {x.dtype}")
    if f is not None and not (isinstance(f, torch.Tensor) and f.ndim in (1, 2)):
        raise ValueError("f: expected None or a 1-D/2-D filter tensor")
    for name, value in (("up", up), ("down", down), ("groups", groups)):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    up, down, groups = int(up), int(down), int(groups)
    out_channels, in_per_group, kh, kw = (int(s) for s in w.shape)
    fw, fh = _get_filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Padding that the resampling filter needs (same rule as upsample2d / downsample2d).
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    pads = [px0, px1, py0, py1]

    if up == 1 and down == 1:
        return _conv_padded(x, w, pads, groups=groups, flip_weight=flip_weight)

    if up == 1:  # downsampling only
        if kw == 1 and kh == 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, padding=pads, flip_filter=flip_filter)
            return _conv(x, w, groups=groups, flip_weight=flip_weight)
        x = upfirdn2d.upfirdn2d(x, f, padding=pads, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    if kw == 1 and kh == 1 and down == 1:  # 1x1 kernel, upsampling only
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=pads, gain=up ** 2,
                                   flip_filter=flip_filter)

    # Upsampling: correlating the zero-inserted, padded image with w equals a transposed conv
    # (weight laid out as (in, out/groups) and flipped), cropped by (k - 1 - p0) at the start and
    # (k - up - p1) at the end; the part of that crop (or pad) not done by the transposed conv
    # itself goes into the filter's padding.
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    sx, ex = kw - 1 - px0, kw - up - px1
    sy, ey = kh - 1 - py0, kh - up - py1
    tx, ty = max(0, min(sx, ex)), max(0, min(sy, ey))
    x = _conv(x, wt, stride=up, padding=[ty, tx], groups=groups, transpose=True,
              flip_weight=not flip_weight)
    x = upfirdn2d.upfirdn2d(x, f, padding=[tx - sx, tx - ex, ty - sy, ty - ey], gain=up ** 2,
                            flip_filter=flip_filter)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
