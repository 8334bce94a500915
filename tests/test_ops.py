"""Tests of torch_utils.ops against direct formulas and slow explicit loops (CPU, small tensors)."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils import custom_ops, ops
from torch_utils.ops import (bias_act, conv2d_gradfix, conv2d_resample, filtered_lrelu, fma,
                             grid_sample_gradfix, upfirdn2d)


# --------------------------------------------------------------------------------------------
# Slow explicit references (numpy, float64, loops over pixels).


def np_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip=False, gain=1.0):
    """Zero-insert, pad/crop, convolve (true convolution unless flip), decimate: one pixel at a
    time, as NVIDIA documents the op."""
    n, c, h, w = x.shape
    ux, uy = up
    dx, dy = down
    px0, px1, py0, py1 = pad
    f = np.ones((1, 1)) if f is None else np.asarray(f, np.float64)
    f2 = (np.outer(f, f) if f.ndim == 1 else f) * gain
    u = np.zeros((n, c, h * uy, w * ux))
    for i in range(h):
        for j in range(w):
            u[:, :, i * uy, j * ux] = x[:, :, i, j]
    p = np.zeros((n, c, h * uy + py0 + py1, w * ux + px0 + px1))
    for i in range(p.shape[2]):
        for j in range(p.shape[3]):
            si, sj = i - py0, j - px0
            if 0 <= si < u.shape[2] and 0 <= sj < u.shape[3]:
                p[:, :, i, j] = u[:, :, si, sj]
    fh, fw = f2.shape
    out = np.zeros((n, c, p.shape[2] - fh + 1, p.shape[3] - fw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            acc = np.zeros((n, c))
            for a in range(fh):
                for b in range(fw):
                    tap = f2[a, b] if flip else f2[fh - 1 - a, fw - 1 - b]
                    acc += p[:, :, i + a, j + b] * tap
            out[:, :, i, j] = acc
    return out[:, :, ::dy, ::dx]


def t32(a):
    return torch.tensor(a, dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# bias_act

def _formula(name, x, alpha):
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "lrelu":
        return np.where(x > 0, x, x * alpha)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "elu":
        return np.where(x > 0, x, np.exp(x) - 1)
    if name == "selu":
        lam, al = 1.0507009873554805, 1.6732632423543772
        return lam * np.where(x > 0, x, al * (np.exp(x) - 1))
    if name == "softplus":
        return np.log1p(np.exp(x))
    if name == "swish":
        return x / (1 + np.exp(-x))
    raise KeyError(name)


EXPECTED_DEFAULTS = {  # (def_alpha, def_gain) as in StyleGAN2-ADA
    "linear": (0, 1), "relu": (0, np.sqrt(2)), "lrelu": (0.2, np.sqrt(2)), "tanh": (0, 1),
    "sigmoid": (0, 1), "elu": (0, 1), "selu": (0, 1), "softplus": (0, 1),
    "swish": (0, np.sqrt(2)),
}


def test_activation_table():
    assert set(bias_act.activation_funcs) == set(EXPECTED_DEFAULTS)
    for name, (alpha, gain) in EXPECTED_DEFAULTS.items():
        spec = bias_act.activation_funcs[name]
        assert spec.def_alpha == alpha and spec.def_gain == pytest.approx(gain)
        assert {"func", "cuda_idx", "ref", "has_2nd_grad"} <= set(spec.keys())
    assert [bias_act.activation_funcs[k].cuda_idx for k in EXPECTED_DEFAULTS] == list(range(1, 10))


@pytest.mark.parametrize("grad_mode", ["grad", "no_grad", "inference"])
@pytest.mark.parametrize("name", sorted(EXPECTED_DEFAULTS))
def test_bias_act_formulas(name, grad_mode):
    rng = np.random.RandomState(1)
    x = rng.randn(2, 5, 3, 4).astype(np.float32) * 2
    b = rng.randn(5).astype(np.float32)
    ctx = {"grad": torch.enable_grad, "no_grad": torch.no_grad,
           "inference": torch.inference_mode}[grad_mode]
    xt = t32(x).requires_grad_(grad_mode == "grad")
    x_before = xt.detach().clone()
    def_alpha, def_gain = EXPECTED_DEFAULTS[name]
    with ctx():
        y_def = bias_act.bias_act(xt, t32(b), act=name)
        y_opt = bias_act.bias_act(xt, t32(b), act=name, alpha=0.3, gain=0.7, clamp=0.5)
        y_nob = bias_act.bias_act(xt, None, act=name, gain=2.0)
    z = x + b.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(y_def.detach().numpy(), _formula(name, z, def_alpha) * def_gain,
                               rtol=1e-5, atol=1e-5)
    ref_opt = np.clip(_formula(name, z, 0.3) * 0.7, -0.5, 0.5)
    np.testing.assert_allclose(y_opt.detach().numpy(), ref_opt, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_nob.detach().numpy(), _formula(name, x, def_alpha) * 2.0,
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(xt.detach(), x_before)  # the input is never modified in place


def test_bias_act_dim_and_errors():
    x = torch.randn(3, 4, 6)
    b = torch.randn(6)
    y = bias_act.bias_act(x, b, dim=2, act="relu", gain=1)
    assert torch.allclose(y, torch.relu(x + b))
    assert bias_act.bias_act(x) is x  # linear, no bias, gain 1: nothing to do
    with pytest.raises(ValueError, match="act"):
        bias_act.bias_act(x, act="gelu")
    with pytest.raises(ValueError, match="b:"):
        bias_act.bias_act(x, torch.randn(5))
    with pytest.raises(ValueError, match="impl"):
        bias_act.bias_act(x, impl="triton")


@pytest.mark.parametrize("name", ["lrelu", "tanh", "swish", "elu"])
def test_bias_act_gradcheck(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    x = x + 0.1 * torch.sign(x)  # keep lrelu's kink away from finite-difference steps
    x.requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act.bias_act(x, b, act=name, gain=1.3, clamp=10)
    assert torch.autograd.gradcheck(fn, (x, b))
    if bias_act.activation_funcs[name].has_2nd_grad:
        assert torch.autograd.gradgradcheck(fn, (x, b))


# --------------------------------------------------------------------------------------------
# upfirdn2d

UPFIRDN_CASES = [  # up, down, padding, flip_filter, gain
    ([1, 1], [1, 1], [0, 0, 0, 0], False, 1),
    ([2, 2], [1, 1], [2, 1, 2, 1], False, 4),
    ([2, 1], [1, 2], [1, -1, 3, 0], True, 2),
    ([1, 1], [2, 2], [1, 1, 1, 1], False, 1),
    ([3, 2], [2, 3], [-1, 2, 0, 4], False, 0.5),
    ([2, 2], [2, 2], [0, 0, 0, 0], True, 1),
    ([1, 1], [1, 1], [-2, 0, 5, -2], False, 3),
]


@pytest.mark.parametrize("fkind", ["none", "1d-short", "1d-long", "2d"])
@pytest.mark.parametrize("case", UPFIRDN_CASES)
def test_upfirdn2d_vs_loop(fkind, case):
    up, down, pad, flip, gain = case
    rng = np.random.RandomState(2)
    x = rng.randn(2, 3, 11, 10)
    f = {"none": None, "1d-short": rng.rand(3), "1d-long": rng.rand(8),
         "2d": rng.rand(3, 4)}[fkind]
    expected = np_upfirdn2d(x, f, up, down, pad, flip, gain)
    y = upfirdn2d.upfirdn2d(t32(x), None if f is None else t32(f), up=up, down=down,
                            padding=pad, flip_filter=flip, gain=gain)
    assert tuple(y.shape) == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_upfirdn2d_scalar_arguments_and_separable_equals_2d():
    torch.manual_seed(3)
    x = torch.randn(1, 2, 8, 8)
    f1 = upfirdn2d.setup_filter([1, 3, 3, 1], separable=True)
    f2 = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f1.ndim == 1 and f2.ndim == 2 and torch.allclose(torch.outer(f1, f1), f2)
    a = upfirdn2d.upfirdn2d(x, f1, up=2, down=1, padding=2, gain=4)
    b = upfirdn2d.upfirdn2d(x, f2, up=[2, 2], down=[1, 1], padding=[2, 2, 2, 2], gain=4)
    assert a.shape == (1, 2, 17, 17)  # 8 * 2 + 2 + 2 - 4 + 1
    assert torch.allclose(a, b, atol=1e-6)


def test_setup_filter():
    f = upfirdn2d.setup_filter([1, 2, 3])
    assert f.shape == (3, 3) and f.dtype == torch.float32
    assert torch.allclose(f.sum(), torch.tensor(1.0))
    assert torch.allclose(f, torch.outer(t32([1, 2, 3]), t32([1, 2, 3])) / 36)
    g = upfirdn2d.setup_filter(np.arange(1, 9), gain=4)  # >= 8 taps: separable
    assert g.shape == (8,) and torch.allclose(g.sum(), torch.tensor(2.0))  # 4 ** (1/2)
    h = upfirdn2d.setup_filter([1, 2, 3], normalize=False, flip_filter=True, separable=True)
    assert torch.equal(h, t32([3, 2, 1]))
    assert torch.equal(upfirdn2d.setup_filter(None), torch.ones(1, 1))
    with pytest.raises(ValueError, match="f:"):
        upfirdn2d.setup_filter(np.ones((2, 2, 2)))


def test_upsample_downsample_filter2d_sizes_and_values():
    torch.manual_seed(4)
    x = torch.randn(2, 3, 8, 8)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    up = upfirdn2d.upsample2d(x, f)
    assert up.shape == (2, 3, 16, 16)
    # A constant image stays constant (away from the border) through up/down/filter.
    c = torch.ones(1, 1, 8, 8)
    assert torch.allclose(upfirdn2d.upsample2d(c, f)[..., 3:-3, 3:-3], torch.ones(1), atol=1e-6)
    assert torch.allclose(upfirdn2d.downsample2d(c, f)[..., 1:-1, 1:-1], torch.ones(1), atol=1e-6)
    assert torch.allclose(upfirdn2d.filter2d(c, f)[..., 2:-2, 2:-2], torch.ones(1), atol=1e-6)
    down = upfirdn2d.downsample2d(x, f, down=[2, 1])
    assert down.shape == (2, 3, 8, 4)
    assert upfirdn2d.filter2d(x, f, padding=1).shape == (2, 3, 10, 10)
    # upsample2d == upfirdn2d with the documented padding and gain up**2.
    ref = np_upfirdn2d(x.double().numpy(), f.double().numpy(), (2, 2), (1, 1), (2, 1, 2, 1),
                       False, 4)
    np.testing.assert_allclose(up.numpy(), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="smaller than"):
        upfirdn2d.upfirdn2d(torch.randn(1, 1, 2, 2), torch.ones(5, 5))
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d.upfirdn2d(x, f, padding=[1, 2, 3])


@pytest.mark.parametrize("f_taps,up,down,pad", [([1, 3, 3, 1], 2, 1, [2, 1, 2, 1]),
                                                 ([1, 2, 1], 1, 2, [1, 1, 0, 1]),
                                                 (list(range(1, 9)), 2, 1, 3)])
def test_upfirdn2d_gradcheck(f_taps, up, down, pad):
    torch.manual_seed(5)
    f = upfirdn2d.setup_filter(f_taps)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    fn = lambda x: upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=2)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# --------------------------------------------------------------------------------------------
# conv2d_resample


def _pads_for(f, up, down, padding):
    p = list(upfirdn2d._parse_padding(padding))
    fw, fh = upfirdn2d._get_filter_size(f)
    if up > 1:
        p = [p[0] + (fw + up - 1) // 2, p[1] + (fw - up) // 2,
             p[2] + (fh + up - 1) // 2, p[3] + (fh - up) // 2]
    if down > 1:
        p = [p[0] + (fw - down + 1) // 2, p[1] + (fw - down) // 2,
             p[2] + (fh - down + 1) // 2, p[3] + (fh - down) // 2]
    return p


def _explicit_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """Upsample (zero-insert + filter) -> conv2d -> downsample, with the slow loop references."""
    p = _pads_for(f, up, down, padding)
    fn = None if (f is None or up == 1) else f.double().numpy()
    y = np_upfirdn2d(x.double().numpy(), fn, (up, up), (1, 1), p, flip_filter, up ** 2)
    ww = w.double() if flip_weight else w.double().flip([2, 3])
    y = F.conv2d(torch.tensor(y), ww, groups=groups).numpy()
    if down > 1:
        y = np_upfirdn2d(y, None if f is None else f.double().numpy(), (1, 1), (down, down),
                         (0, 0, 0, 0), flip_filter, 1)
    return y


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("groups,flip_weight,flip_filter,padding",
                         [(1, True, False, 1), (2, False, True, [1, 0, 2, 1]), (1, False, False, 0)])
def test_conv2d_resample_vs_composition(k, up, down, groups, flip_weight, flip_filter, padding):
    torch.manual_seed(6)
    x = torch.randn(2, 4, 6, 5)
    w = torch.randn(6, 4 // groups, k, k)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    y = conv2d_resample.conv2d_resample(x, w, f=f, up=up, down=down, padding=padding,
                                        groups=groups, flip_weight=flip_weight,
                                        flip_filter=flip_filter)
    expected = _explicit_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight,
                                         flip_filter)
    assert tuple(y.shape) == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_conv2d_resample_separable_filter_and_shapes():
    torch.manual_seed(7)
    x = torch.randn(1, 3, 8, 8)
    w = torch.randn(5, 3, 3, 3)
    f = upfirdn2d.setup_filter(np.arange(1, 9))  # 8 taps: separable
    y = conv2d_resample.conv2d_resample(x, w, f=f, up=2, padding=1)
    assert y.shape == (1, 5, 16, 16)
    expected = _explicit_conv2d_resample(x, w, f, 2, 1, 1, 1, True, False)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert conv2d_resample.conv2d_resample(x, w, f=f, down=2, padding=1).shape == (1, 5, 4, 4)
    with pytest.raises(ValueError, match="dtype"):
        conv2d_resample.conv2d_resample(x, w.double())


@pytest.mark.parametrize("up,down,k", [(2, 1, 3), (1, 2, 3), (1, 2, 1), (1, 1, 3)])
def test_conv2d_resample_gradcheck(up, down, k):
    torch.manual_seed(8)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, k, k, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w: conv2d_resample.conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2,
                                                      flip_weight=(up == 1))
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


# --------------------------------------------------------------------------------------------
# conv2d_gradfix, fma, grid_sample_gradfix


def test_conv2d_gradfix_matches_torch_and_double_backward():
    torch.manual_seed(9)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4)
    assert torch.allclose(conv2d_gradfix.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1))
    wt = torch.randn(3, 2, 3, 3)
    assert torch.allclose(conv2d_gradfix.conv_transpose2d(x, wt, stride=2, padding=1),
                          F.conv_transpose2d(x, wt, stride=2, padding=1))
    assert conv2d_gradfix.weight_gradients_disabled is False
    with conv2d_gradfix.no_weight_gradients():
        assert conv2d_gradfix.weight_gradients_disabled is True
        g, = torch.autograd.grad(conv2d_gradfix.conv2d(x, w).square().sum(), [x],
                                 create_graph=True)
    with conv2d_gradfix.no_weight_gradients(disable=False):
        assert conv2d_gradfix.weight_gradients_disabled is False
    assert conv2d_gradfix.weight_gradients_disabled is False
    g.square().sum().backward()  # R1-style: gradient of a gradient penalty w.r.t. the weights
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_fma_values_and_broadcast_gradients():
    torch.manual_seed(10)
    a = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    y = fma.fma(a, b, c)
    assert torch.allclose(y, a * b + c)
    gy = torch.randn_like(y)
    ga, gb, gc = torch.autograd.grad(y, [a, b, c], gy)
    assert ga.shape == a.shape and gb.shape == b.shape and gc.shape == c.shape
    assert torch.allclose(ga, gy * b)
    assert torch.allclose(gb, (gy * a).sum(dim=(2, 3), keepdim=True))
    assert torch.allclose(gc, gy.sum(dim=(0, 1), keepdim=True))
    small = [t.detach()[..., :2, :2].clone().requires_grad_(True) for t in (a, b, c)]
    assert torch.autograd.gradcheck(fma.fma, small)
    assert torch.autograd.gradgradcheck(fma.fma, small)


def test_grid_sample_matches_torch_and_double_backward_with_constant_grid():
    torch.manual_seed(11)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(2, 5, 4, 2, dtype=torch.float64) * 2.4 - 1.2
    y = grid_sample_gradfix.grid_sample(x, grid)
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(y, expected)
    # Identity grid (pixel centres) reproduces the input.
    theta = torch.eye(2, 3, dtype=torch.float64)[None].repeat(2, 1, 1)
    ident = F.affine_grid(theta, [2, 3, 6, 6], align_corners=False)
    assert torch.allclose(grid_sample_gradfix.grid_sample(x, ident), x)
    g, = torch.autograd.grad(y.square().sum(), [x], create_graph=True)
    g.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------------------------
# filtered_lrelu


@pytest.mark.parametrize("up,down,padding,clamp,fu_taps,fd_taps", [
    (2, 2, 3, None, 4, 4),
    (1, 2, [2, 1], 0.3, 3, 4),
    (2, 1, [3, 2, 1, 4], 1.0, 8, 1),
    (1, 1, 0, None, 1, 1),
])
def test_filtered_lrelu_vs_composition(up, down, padding, clamp, fu_taps, fd_taps):
    rng = np.random.RandomState(12)
    x = rng.randn(2, 3, 7, 6)
    b = rng.randn(3)
    fu = rng.rand(fu_taps) if fu_taps > 1 else None
    fd = rng.rand(fd_taps) if fd_taps > 1 else None
    gain, slope = 1.7, 0.1
    y = filtered_lrelu.filtered_lrelu(t32(x), None if fu is None else t32(fu),
                                      None if fd is None else t32(fd), t32(b), up=up, down=down,
                                      padding=padding, gain=gain, slope=slope, clamp=clamp)
    p = list(upfirdn2d._parse_padding(padding))
    z = np_upfirdn2d(x + b.reshape(1, -1, 1, 1), fu, (up, up), (1, 1), p, False, up ** 2)
    z = np.where(z > 0, z, z * slope) * gain
    if clamp is not None:
        z = np.clip(z, -clamp, clamp)
    z = np_upfirdn2d(z, fd, (1, 1), (down, down))
    assert tuple(y.shape) == z.shape
    np.testing.assert_allclose(y.numpy(), z, rtol=1e-5, atol=1e-5)


def test_filtered_lrelu_defaults_and_errors():
    x = torch.randn(1, 2, 5, 5)
    y = filtered_lrelu.filtered_lrelu(x)
    assert torch.allclose(y, F.leaky_relu(x, 0.2) * np.sqrt(2))
    assert filtered_lrelu._init() is False
    with pytest.raises(ValueError, match="slope"):
        filtered_lrelu.filtered_lrelu(x, slope=-1)
    with pytest.raises(ValueError, match="b:"):
        filtered_lrelu.filtered_lrelu(x, b=torch.zeros(3))


# --------------------------------------------------------------------------------------------
# Call styles used by the pickled network source of StyleGAN2-ADA / StyleGAN3 / Ray Conditioning


def test_foreign_call_styles():
    torch.manual_seed(14)
    x = torch.randn(2, 4, 8, 8)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    w = torch.randn(6, 2, 3, 3)
    y = conv2d_resample.conv2d_resample(x=x, w=w, f=f, up=2, padding=1, groups=2,
                                        flip_weight=False)
    assert y.shape == (2, 6, 16, 16)
    y = bias_act.bias_act(y, torch.zeros(6), act="lrelu", gain=1.0, clamp=256.0)
    y = fma.fma(y, torch.ones(2, 6, 1, 1), torch.zeros(2, 1, 16, 16))
    assert upfirdn2d.upsample2d(x=x, f=f, up=2).shape == (2, 4, 16, 16)
    assert upfirdn2d.downsample2d(x=x, f=f, down=2, padding=-1).shape == (2, 4, 3, 3)
    assert upfirdn2d.upfirdn2d(x=x, f=f, up=2, padding=[np.int64(2), np.int64(1), 2, 1],
                               gain=4, flip_filter=False).shape == (2, 4, 16, 16)
    z = conv2d_gradfix.conv2d(input=x, weight=torch.randn(4, 2, 3, 3), padding=1, groups=2)
    assert z.shape == (2, 4, 8, 8)
    fu = torch.tensor(np.hanning(14)[1:-1], dtype=torch.float32)  # 12 taps, separable
    pad = np.array([11, 10, 11, 10])
    out = filtered_lrelu.filtered_lrelu(x=x, fu=fu, fd=fu, b=torch.zeros(4), up=np.int64(2),
                                        down=2, padding=[pad[0], pad[1], pad[2], pad[3]],
                                        gain=np.sqrt(2), slope=0.2, clamp=256)
    assert out.shape == (2, 4, (8 * 2 + 21 - 11 - 11 + 1) // 2, (8 * 2 + 21 - 11 - 11 + 1) // 2)
    grid = torch.zeros(2, 3, 3, 2)
    assert grid_sample_gradfix.grid_sample(input=x, grid=grid).shape == (2, 4, 3, 3)


# --------------------------------------------------------------------------------------------
# Second order, dispatch, RAYCOND_OPS and custom_ops


def test_second_order_through_all_ops():
    """R1/path-length style: gradient w.r.t. the input with create_graph, then backward."""
    torch.manual_seed(13)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    img = torch.randn(2, 3, 8, 8, requires_grad=True)
    w1 = torch.randn(4, 3, 3, 3, requires_grad=True)
    w2 = torch.randn(4, 4, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    h = conv2d_resample.conv2d_resample(img, w1, f=f, down=2, padding=1)
    h = bias_act.bias_act(h, b, act="lrelu", clamp=256)
    h = upfirdn2d.upsample2d(h, f)
    h = fma.fma(h, torch.full((1, 4, 1, 1), 0.5), torch.randn(1, 1, 8, 8))
    h = conv2d_resample.conv2d_resample(h, w2, f=f, up=2, padding=1, flip_weight=False)
    h = bias_act.bias_act(h, None, act="swish")
    g, = torch.autograd.grad(h.sum(), [img], create_graph=True)
    g.square().sum().backward()
    for p in (w1, w2, b):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_impl_cuda_on_cpu_falls_back(recwarn):
    x = torch.randn(1, 2, 6, 6)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    w = torch.randn(2, 2, 3, 3)
    pairs = [
        (bias_act.bias_act(x, torch.ones(2), act="lrelu", impl="cuda"),
         bias_act.bias_act(x, torch.ones(2), act="lrelu", impl="ref")),
        (upfirdn2d.upsample2d(x, f, impl="cuda"), upfirdn2d.upsample2d(x, f, impl="ref")),
        (filtered_lrelu.filtered_lrelu(x, f, f, up=2, down=2, padding=3, impl="cuda"),
         filtered_lrelu.filtered_lrelu(x, f, f, up=2, down=2, padding=3, impl="ref")),
    ]
    for a, b in pairs:
        assert torch.equal(a, b)
    assert conv2d_resample.conv2d_resample(x, w, f=f, up=2, padding=1).shape == (1, 2, 12, 12)
    assert not bias_act._init() and not upfirdn2d._init()
    assert not [w for w in recwarn if issubclass(w.category, custom_ops.CustomOpsWarning)]


def test_dispatch_helper_and_ref_env(monkeypatch):
    calls = []

    class FakeSlot(ops.PluginSlot):
        def get(self):
            calls.append(1)
            return object()

    slot = FakeSlot("fake")
    cpu = torch.zeros(1)

    class FakeCuda:
        is_cuda = True

    monkeypatch.delenv("RAYCOND_OPS", raising=False)
    assert ops.use_cuda("cuda", FakeCuda(), slot) is True
    assert ops.use_cuda("ref", FakeCuda(), slot) is False
    assert ops.use_cuda("cuda", cpu, slot) is False
    monkeypatch.setenv("RAYCOND_OPS", "ref")
    assert ops.ref_forced() and ops.use_cuda("cuda", FakeCuda(), slot) is False
    assert len(calls) == 1  # the plugin is only consulted for CUDA tensors when allowed
    with pytest.raises(ValueError, match="impl"):
        ops.use_cuda("fast", cpu, slot)


def test_plugin_slot_resolves_once(monkeypatch):
    seen = []
    monkeypatch.delenv("RAYCOND_OPS", raising=False)
    monkeypatch.setattr(custom_ops, "get_plugin", lambda **kw: seen.append(kw) or None)
    slot = ops.PluginSlot("demo_plugin", sources=["demo.cu"], extra_cuda_cflags=["-O3"])
    assert slot.get() is None and slot.get() is None and not slot.available()
    assert len(seen) == 1 and seen[0]["module_name"] == "demo_plugin"
    assert seen[0]["extra_cuda_cflags"] == ["-O3"]
    assert ops.PluginSlot("no_kernel").get() is None  # no sources: nothing is built


def test_get_plugin_without_cuda_warns_once(monkeypatch):
    monkeypatch.delenv("RAYCOND_OPS", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    custom_ops._reset_for_tests()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert custom_ops.get_plugin("plugin_a", sources=["a.cu"]) is None
            assert custom_ops.get_plugin("plugin_b", sources=["b.cu"]) is None
            assert custom_ops.get_plugin("plugin_a", sources=["a.cu"]) is None
        ours = [w for w in caught if issubclass(w.category, custom_ops.CustomOpsWarning)]
        assert len(ours) == 1
        assert "CUDA is not available" in str(ours[0].message)
        assert "reference" in str(ours[0].message)
    finally:
        custom_ops._reset_for_tests()


def test_get_plugin_ref_env_and_failed_build(monkeypatch, tmp_path):
    custom_ops._reset_for_tests()
    try:
        monkeypatch.setenv("RAYCOND_OPS", "ref")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert custom_ops.get_plugin("plugin_c", sources=["c.cu"]) is None
        assert not [w for w in caught if issubclass(w.category, custom_ops.CustomOpsWarning)]
        # With every prerequisite "present", a missing source is a failed build: one warning.
        monkeypatch.delenv("RAYCOND_OPS")
        monkeypatch.setattr(custom_ops, "_unavailable_reason", lambda: None)
        monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert custom_ops.get_plugin("plugin_d", sources=["missing.cu"],
                                         source_dir=str(tmp_path)) is None
        ours = [w for w in caught if issubclass(w.category, custom_ops.CustomOpsWarning)]
        assert len(ours) == 1 and "plugin_d" in str(ours[0].message)
    finally:
        custom_ops._reset_for_tests()


def test_ref_env_in_fresh_process():
    """RAYCOND_OPS=ref set before import: ops run, no warning, impl='cuda' accepted."""
    code = ("import warnings, torch\n"
            "warnings.simplefilter('error')\n"
            "from torch_utils.ops import bias_act, upfirdn2d\n"
            "from torch_utils import ops, custom_ops\n"
            "assert ops.ref_forced()\n"
            "x = torch.randn(1, 2, 4, 4)\n"
            "y = upfirdn2d.upsample2d(bias_act.bias_act(x, act='lrelu', impl='cuda'),\n"
            "                         upfirdn2d.setup_filter([1, 3, 3, 1]), impl='cuda')\n"
            "assert y.shape == (1, 2, 8, 8)\n"
            "assert custom_ops.get_plugin('p', sources=['x.cu']) is None\n"
            "print('ok')\n")
    env = dict(os.environ, RAYCOND_OPS="ref")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
