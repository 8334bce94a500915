"""Autograd wrappers around the compiled kernels (CUDA build or CPU build) of bias_act,
upfirdn2d and filtered_lrelu.

`k` is the op namespace returned by `torch_utils.ops.kernels_for` (torch.ops.raycond_ops or
torch.ops.raycond_ops_cpu). Each wrapper gives the same values and gradients as the pure-PyTorch
reference: bias_act and upfirdn2d to second order (R1, path-length regularisation; upfirdn2d is
linear, so its gradient is another upfirdn2d call and differentiable to any order), and
filtered_lrelu forward + backward through the sign codes recorded by its forward pass (the
backward is linear in the incoming gradient, so it is differentiable with respect to it too).
Argument checks are the references'; this module assumes valid, already parsed arguments.
"""

import torch

__all__ = ["bias_act", "upfirdn2d", "filtered_lrelu"]


# ---- bias_act -------------------------------------------------------------------------------

def _reduce_to_bias(dx, dim):
    return dx.sum([i for i in range(dx.ndim) if i != dim])


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, k, cfg):
        ctx.k, ctx.cfg = k, cfg
        ctx.save_for_backward(x, b)
        dim, act, alpha, gain, clamp, _ = cfg
        return k.bias_act(x, b, None, 0, dim, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dx = _BiasActGrad.apply(dy, x, b, ctx.k, ctx.cfg)
        db = _reduce_to_bias(dx, ctx.cfg[0]) if b is not None and ctx.needs_input_grad[1] else None
        return dx, db, None, None


class _BiasActGrad(torch.autograd.Function):
    """dx = dy * gain * act'(x + b) * [not clamped]: linear in dy, act'' for the x/b path."""

    @staticmethod
    def forward(ctx, dy, x, b, k, cfg):
        ctx.k, ctx.cfg = k, cfg
        ctx.save_for_backward(dy, x, b)
        dim, act, alpha, gain, clamp, _ = cfg
        return k.bias_act(dy, b, x, 1, dim, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, d_dx):
        dy, x, b = ctx.saved_tensors
        k, cfg = ctx.k, ctx.cfg
        dim, act, alpha, gain, clamp, has_2nd_grad = cfg
        d_dy = _BiasActGrad.apply(d_dx, x, b, k, cfg) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = k.bias_act(d_dx * dy, b, x, 2, dim, act, alpha, gain, clamp)
            if b is not None and ctx.needs_input_grad[2]:
                d_b = _reduce_to_bias(d_x, dim)
        return d_dy, d_x, d_b, None, None


def bias_act(k, x, b, dim, act_idx, alpha, gain, clamp, has_2nd_grad):
    """Kernel bias_act; alpha/gain/clamp already resolved to floats (clamp < 0: none)."""
    if b is not None and b.dtype != x.dtype:
        b = b.to(x.dtype)
    cfg = (dim, act_idx, float(alpha), float(gain), float(clamp), bool(has_2nd_grad))
    return _BiasAct.apply(x, b, k, cfg)


# ---- upfirdn2d ------------------------------------------------------------------------------

def _prepared_filter(f, flip_filter, gain):
    """Correlation filter(s) for the kernel: flipped unless flip_filter, scaled by gain (split
    evenly over the two passes of a separable filter). Returns a list of 2-D float32 filters,
    applied one after the other."""
    f = f.to(torch.float32)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        return [(f * gain).contiguous()]
    g = gain ** 0.5
    return [(f * g)[None, :].contiguous(), (f * g)[:, None].contiguous()]


def _run_upfirdn(k, x, f, up, down, pads, flip_filter, gain, b=None):
    """Forward value (no autograd): one pass for a 2-D filter, x then y for a 1-D one."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pads
    filters = _prepared_filter(f, flip_filter, gain)
    if len(filters) == 1:
        return k.upfirdn2d(x, filters[0], b, upx, upy, downx, downy, px0, px1, py0, py1)
    x = k.upfirdn2d(x, filters[0], b, upx, 1, downx, 1, px0, px1, 0, 0)
    return k.upfirdn2d(x, filters[1], None, 1, upy, 1, downy, 0, 0, py0, py1)


def _transpose_config(in_hw, out_hw, fsize, up, down, pads):
    """(up, down, pads) of the upfirdn2d that computes the gradient with respect to the input.

    Forward y[o] = sum_k xu[o*down + k] fc[k] with xu[m] = x[(m - p0)/up]; so the gradient is an
    upfirdn2d of dy with up and down swapped, the filter flipped, p0' = taps - 1 - p0 and p1'
    chosen so that the result has the input's size.
    """
    (in_h, in_w), (out_h, out_w), (fw, fh) = in_hw, out_hw, fsize
    (upx, upy), (downx, downy), (px0, _, py0, _) = up, down, pads
    pads_t = (fw - 1 - px0, in_w * upx - out_w * downx + px0 - upx + 1,
              fh - 1 - py0, in_h * upy - out_h * downy + py0 - upy + 1)
    return (downx, downy), (upx, upy), pads_t


class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, k, up, down, pads, flip_filter, gain):
        y = _run_upfirdn(k, x, f, up, down, pads, flip_filter, gain)
        ctx.k, ctx.f, ctx.flip, ctx.gain = k, f, flip_filter, gain
        fsize = (f.shape[-1], f.shape[0])
        ctx.transpose = _transpose_config(x.shape[2:], y.shape[2:], fsize, up, down, pads)
        return y

    @staticmethod
    def backward(ctx, dy):
        up_t, down_t, pads_t = ctx.transpose
        dx = _Upfirdn2d.apply(dy, ctx.f, ctx.k, up_t, down_t, pads_t, not ctx.flip, ctx.gain)
        return dx, None, None, None, None, None, None, None


def upfirdn2d(k, x, f, up, down, pads, flip_filter, gain):
    """Kernel upfirdn2d; up/down (x, y) pairs, pads (x0, x1, y0, y1), f None or 1-D/2-D."""
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    return _Upfirdn2d.apply(x, f.to(x.device), k, tuple(up), tuple(down), tuple(pads),
                            bool(flip_filter), float(gain))


# ---- filtered_lrelu -------------------------------------------------------------------------

class _SignGrad(torch.autograd.Function):
    """g * d lrelu_epilogue / d v from the recorded sign codes (a diagonal, self-adjoint op)."""

    @staticmethod
    def forward(ctx, g, s, k, slope, gain):
        ctx.save_for_backward(s)
        ctx.k, ctx.slope, ctx.gain = k, slope, gain
        return k.sign_grad(g, s, slope, gain)

    @staticmethod
    def backward(ctx, dd):
        s, = ctx.saved_tensors
        return _SignGrad.apply(dd, s, ctx.k, ctx.slope, ctx.gain), None, None, None, None


class _FilteredLrelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, fu, fd, k, up, down, pads, gain, slope, clamp, flip_filter):
        px0, px1, py0, py1 = pads
        filters = _prepared_filter(fu, flip_filter, up ** 2)
        if len(filters) == 1:
            v, s = k.upfirdn2d_lrelu(x, filters[0], b, up, up, px0, px1, py0, py1,
                                     slope, gain, clamp)
        else:  # separable: bias with the x pass, activation with the y pass
            h = k.upfirdn2d(x, filters[0], b, up, 1, 1, 1, px0, px1, 0, 0)
            v, s = k.upfirdn2d_lrelu(h, filters[1], None, 1, up, 0, 0, py0, py1,
                                     slope, gain, clamp)
        y = _run_upfirdn(k, v, fd, (1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1.0)
        ctx.save_for_backward(s)
        ctx.k, ctx.fu, ctx.fd, ctx.flip = k, fu, fd, flip_filter
        ctx.slope, ctx.gain, ctx.up = slope, gain, up
        ctx.t_up = _transpose_config(x.shape[2:], v.shape[2:], (fu.shape[-1], fu.shape[0]),
                                     (up, up), (1, 1), pads)
        ctx.t_down = _transpose_config(v.shape[2:], y.shape[2:], (fd.shape[-1], fd.shape[0]),
                                       (1, 1), (down, down), (0, 0, 0, 0))
        ctx.has_bias = b is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        s, = ctx.saved_tensors
        k = ctx.k
        d_v = _Upfirdn2d.apply(dy, ctx.fd, k, *ctx.t_down, not ctx.flip, 1.0)
        d_v = _SignGrad.apply(d_v, s, k, ctx.slope, ctx.gain)
        dx = _Upfirdn2d.apply(d_v, ctx.fu, k, *ctx.t_up, not ctx.flip, float(ctx.up ** 2))
        db = dx.sum([0, 2, 3]) if ctx.has_bias and ctx.needs_input_grad[1] else None
        return (dx, db) + (None,) * 10


def filtered_lrelu(k, x, fu, fd, b, up, down, pads, gain, slope, clamp, flip_filter):
    """Kernel filtered_lrelu; pads (x0, x1, y0, y1), clamp None or >= 0."""
    ones = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fu = ones if fu is None else fu.to(x.device)
    fd = ones if fd is None else fd.to(x.device)
    if b is not None and b.dtype != x.dtype:
        b = b.to(x.dtype)
    return _FilteredLrelu.apply(x, b, fu, fd, k, int(up), int(down), tuple(pads), float(gain),
                                float(slope), float(-1 if clamp is None else clamp),
                                bool(flip_filter))
