"""The kernels' shared arithmetic (torch_utils/ops/*.h), compiled for the CPU by the same
custom_ops JIT path that builds the CUDA extension, against the pure-PyTorch references.

The CPU build is compiled once per machine (cached under TORCH_EXTENSIONS_DIR) and shared by
every test through a session fixture; without a C++ compiler or ninja the tests skip with the
reason. Shapes, factors, filters, paddings and dtypes are drawn at random from a fixed seed.
"""

import random
import warnings

import pytest
import torch

from torch_utils import custom_ops, ops
from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d


@pytest.fixture(scope="session")
def k():
    """The CPU build's op namespace (torch.ops.raycond_ops_cpu), built once per session."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugin = ops.CPU_KERNELS.get()
    if plugin is None:
        reasons = "; ".join(str(w.message) for w in caught) or "RAYCOND_OPS=ref?"
        pytest.skip(f"the CPU build of the kernels is unavailable: {reasons}")
    return plugin


def _close(a, b, dtype):
    # fp64: the kernels keep filters in float32 (as NVIDIA's do), hence 1e-6, not 1e-12.
    tol = {torch.float64: 1e-6, torch.float32: 1e-4, torch.float16: 1e-2}[dtype]
    torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


ACTS = sorted(bias_act.activation_funcs)


# ---- bias_act -------------------------------------------------------------------------------

def _bias_act_case(rng, dtype):
    ndim = rng.choice([2, 4])
    shape = [rng.randint(1, 5) for _ in range(ndim)]
    dim = rng.randrange(ndim)
    x = torch.randn(shape, dtype=dtype) * 3
    if ndim == 4 and rng.random() < 0.5:
        x = x.to(memory_format=torch.channels_last)
    b = torch.randn(shape[dim], dtype=dtype) if rng.random() < 0.7 else None
    kw = dict(dim=dim, act=rng.choice(ACTS), gain=rng.choice([None, 0.5, 2.0]),
              clamp=rng.choice([None, 0.0, 1.5]), alpha=rng.choice([None, 0.1]))
    return x, b, kw


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bias_act_forward_matches_reference(k, dtype):
    rng = random.Random(1)
    for _ in range(60):
        x, b, kw = _bias_act_case(rng, dtype)
        _close(bias_act._bias_act_kernel(k, x, b, **kw), bias_act._bias_act_ref(x, b, **kw), dtype)


def test_bias_act_fp16_accumulates_in_fp32(k):
    """fp16 in, fp16 out, computed in fp32: within one fp16 rounding of the fp32 reference."""
    rng = random.Random(2)
    for _ in range(30):
        x, b, kw = _bias_act_case(rng, torch.float16)
        y = bias_act._bias_act_kernel(k, x, b, **kw)
        assert y.dtype == torch.float16
        ref = bias_act._bias_act_ref(x.float(), None if b is None else b.float(), **kw)
        torch.testing.assert_close(y.float(), ref.half().float(), rtol=1e-3, atol=1e-3)


def test_bias_act_keeps_channels_last_layout(k):
    x = torch.randn(2, 5, 3, 4).to(memory_format=torch.channels_last)
    y = bias_act._bias_act_kernel(k, x, torch.randn(5), act="lrelu")
    assert y.is_contiguous(memory_format=torch.channels_last)


def _grads(fn, x, b, create_graph):
    inputs = [x] + ([b] if b is not None else [])
    y = fn(x, b)
    w = torch.randn_like(y)
    return torch.autograd.grad((y * w).sum(), inputs, create_graph=create_graph), inputs, w


def test_bias_act_gradients_match_reference(k):
    rng = random.Random(3)
    for _ in range(40):
        x, b, kw = _bias_act_case(rng, torch.float64)
        x.requires_grad_(True)
        if b is not None:
            b.requires_grad_(True)
        torch.manual_seed(0)
        got, _, _ = _grads(lambda x, b: bias_act._bias_act_kernel(k, x, b, **kw), x, b, False)
        torch.manual_seed(0)
        want, _, _ = _grads(lambda x, b: bias_act._bias_act_ref(x, b, **kw), x, b, False)
        for g, r in zip(got, want):
            _close(g, r, torch.float64)


@pytest.mark.parametrize("act", [a for a in ACTS if bias_act.activation_funcs[a].has_2nd_grad])
def test_bias_act_second_order_matches_reference(k, act):
    """R1-style: gradient with create_graph, then the gradient of its square (activations with a
    non-zero second derivative; for linear/relu/lrelu it is zero almost everywhere)."""
    torch.manual_seed(4)
    for clamp in (None, 1.5):
        x = (torch.randn(3, 4, 5, dtype=torch.float64) * 2).requires_grad_(True)
        b = torch.randn(4, dtype=torch.float64, requires_grad=True)
        results = []
        for fn in (lambda x, b: bias_act._bias_act_kernel(k, x, b, act=act, clamp=clamp),
                   lambda x, b: bias_act._bias_act_ref(x, b, act=act, clamp=clamp)):
            torch.manual_seed(5)
            (gx, gb), inputs, _ = _grads(fn, x, b, True)
            results.append(torch.autograd.grad((gx.square().sum() + gb.square().sum()), inputs,
                                               allow_unused=True))
        for g, r in zip(*results):
            if r is None:
                assert g is None or not g.abs().sum()
            else:
                _close(g, r, torch.float64)


# ---- upfirdn2d ------------------------------------------------------------------------------

def _upfirdn_case(rng, dtype):
    up = [rng.randint(1, 4), rng.randint(1, 4)]
    down = [rng.randint(1, 4), rng.randint(1, 4)]
    taps = rng.randint(1, 8)
    f = torch.rand(taps) + 0.1 if rng.random() < 0.5 else torch.rand(rng.randint(1, 6), taps)
    pad = [rng.randint(-2, 5) for _ in range(4)]
    h, w = rng.randint(3, 9), rng.randint(3, 9)
    fw, fh = f.shape[-1], f.shape[0]
    pad[1] = max(pad[1], fw - w * up[0] - pad[0])  # keep the padded image >= the filter
    pad[3] = max(pad[3], fh - h * up[1] - pad[2])
    x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), h, w, dtype=dtype)
    if rng.random() < 0.3:
        x = x.to(memory_format=torch.channels_last)
    kw = dict(up=up, down=down, padding=pad, flip_filter=rng.random() < 0.5,
              gain=rng.choice([1, 2.5]))
    return x, f, kw


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_upfirdn2d_forward_matches_reference(k, dtype):
    rng = random.Random(6)
    for _ in range(80):
        x, f, kw = _upfirdn_case(rng, dtype)
        _close(upfirdn2d._upfirdn2d_kernel(k, x, f, **kw), upfirdn2d._upfirdn2d_ref(x, f, **kw),
               dtype)


def test_upfirdn2d_fp16_accumulates_in_fp32(k):
    rng = random.Random(7)
    for _ in range(30):
        x, f, kw = _upfirdn_case(rng, torch.float16)
        y = upfirdn2d._upfirdn2d_kernel(k, x, f, **kw)
        ref = upfirdn2d._upfirdn2d_ref(x.float(), f, **kw)
        assert y.dtype == torch.float16
        torch.testing.assert_close(y.float(), ref, rtol=1e-2, atol=1e-2)


def test_upfirdn2d_identity_filter_none(k):
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    y = upfirdn2d._upfirdn2d_kernel(k, x, None, up=2, padding=[0, -1, 0, -1])
    _close(y, upfirdn2d._upfirdn2d_ref(x, None, up=2, padding=[0, -1, 0, -1]), torch.float64)


def test_upfirdn2d_first_and_second_order_gradients_match_reference(k):
    rng = random.Random(8)
    for _ in range(25):
        x, f, kw = _upfirdn_case(rng, torch.float64)
        x.requires_grad_(True)
        results = []
        for fn in (upfirdn2d._upfirdn2d_kernel.__get__(k), upfirdn2d._upfirdn2d_ref):
            torch.manual_seed(9)
            y = fn(x, f, **kw)
            gx, = torch.autograd.grad((y * torch.randn_like(y)).sum(), [x], create_graph=True)
            g2, = torch.autograd.grad((gx * torch.randn_like(gx)).sum() + y.sum(), [x])
            results.append((gx, g2))
        for g, r in zip(*results):
            _close(g, r, torch.float64)


# ---- filtered_lrelu -------------------------------------------------------------------------

def _flrelu_case(rng, dtype):
    up, down = rng.choice([1, 2, 4]), rng.choice([1, 2, 4])
    fu = torch.rand(rng.randint(1, 8)) + 0.1 if rng.random() < 0.6 else torch.rand(3, 3) + 0.1
    fd = torch.rand(rng.randint(1, 8)) + 0.1 if rng.random() < 0.6 else torch.rand(2, 2) + 0.1
    h, w = rng.randint(4, 8), rng.randint(4, 8)
    lo = fu.shape[-1] + fd.shape[-1]
    pad = [rng.randint(lo, lo + 6) for _ in range(4)]
    c = rng.randint(1, 3)
    x = torch.randn(rng.randint(1, 2), c, h, w, dtype=dtype)
    b = torch.randn(c, dtype=dtype) if rng.random() < 0.7 else None
    kw = dict(fu=fu, fd=fd, b=b, up=up, down=down, padding=pad, gain=rng.choice([1.0, 1.4]),
              slope=rng.choice([0.2, 0.0, 1.5]), clamp=rng.choice([None, 0.5, 2.0]),
              flip_filter=rng.random() < 0.5)
    return x, kw


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_filtered_lrelu_forward_matches_reference(k, dtype):
    rng = random.Random(10)
    for _ in range(40):
        x, kw = _flrelu_case(rng, dtype)
        _close(filtered_lrelu._filtered_lrelu_kernel(k, x, **kw),
               filtered_lrelu._filtered_lrelu_ref(x, **kw), dtype)


def test_filtered_lrelu_fp16_accumulates_in_fp32(k):
    rng = random.Random(11)
    for _ in range(20):
        x, kw = _flrelu_case(rng, torch.float16)
        y = filtered_lrelu._filtered_lrelu_kernel(k, x, **kw)
        if kw["b"] is not None:
            kw["b"] = kw["b"].float()
        ref = filtered_lrelu._filtered_lrelu_ref(x.float(), **kw)
        assert y.dtype == torch.float16
        torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)


def test_filtered_lrelu_gradients_use_recorded_signs(k):
    """x and bias gradients equal the reference's, including clamped and negative branches."""
    rng = random.Random(12)
    for _ in range(25):
        x, kw = _flrelu_case(rng, torch.float64)
        x.requires_grad_(True)
        if kw["b"] is not None:
            kw["b"].requires_grad_(True)
        inputs = [x] + ([kw["b"]] if kw["b"] is not None else [])
        results = []
        for fn in (filtered_lrelu._filtered_lrelu_kernel.__get__(k),
                   filtered_lrelu._filtered_lrelu_ref):
            torch.manual_seed(13)
            y = fn(x, **kw)
            results.append(torch.autograd.grad((y * torch.randn_like(y)).sum(), inputs))
        for g, r in zip(*results):
            _close(g, r, torch.float64)


def test_filtered_lrelu_backward_is_differentiable_in_the_incoming_gradient(k):
    x, kw = _flrelu_case(random.Random(14), torch.float64)
    x.requires_grad_(True)
    results = []
    for fn in (filtered_lrelu._filtered_lrelu_kernel.__get__(k),
               filtered_lrelu._filtered_lrelu_ref):
        torch.manual_seed(15)
        y = fn(x, **kw)
        dy = torch.randn_like(y).requires_grad_(True)
        gx, = torch.autograd.grad((y * dy).sum(), [x], create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), [dy]))
    _close(results[0][0], results[1][0], torch.float64)


# ---- dispatch and build ---------------------------------------------------------------------

def test_cpu_tensors_use_the_cpu_build_only_where_enabled(k, monkeypatch):
    monkeypatch.delenv("RAYCOND_OPS", raising=False)
    x = torch.zeros(1)
    assert ops.kernels_for("cuda", x, ops.CUDA_KERNELS, cpu=True) is k
    assert ops.kernels_for("cuda", x, ops.CUDA_KERNELS, cpu=False) is None
    assert ops.kernels_for("ref", x, ops.CUDA_KERNELS, cpu=True) is None
    monkeypatch.setenv("RAYCOND_OPS", "ref")
    assert ops.kernels_for("cuda", x, ops.CUDA_KERNELS, cpu=True) is None


def test_raycond_ops_cuda_requires_the_cuda_build(monkeypatch):
    class FakeCuda:
        is_cuda = True

    class EmptySlot(ops.PluginSlot):
        def get(self):
            return None

    monkeypatch.setenv("RAYCOND_OPS", "cuda")
    with pytest.raises(RuntimeError, match="RAYCOND_OPS=cuda"):
        ops.kernels_for("cuda", FakeCuda(), EmptySlot("none"))
    monkeypatch.setenv("RAYCOND_OPS", "auto")
    assert ops.kernels_for("cuda", FakeCuda(), EmptySlot("none")) is None


def test_unknown_raycond_ops_value_is_refused(monkeypatch):
    monkeypatch.setenv("RAYCOND_OPS", "fast")
    with pytest.raises(ValueError, match="RAYCOND_OPS"):
        ops.kernels_for("cuda", torch.zeros(1), ops.CUDA_KERNELS)


def test_missing_compiler_warning_names_cause_and_fix(monkeypatch):
    monkeypatch.delenv("RAYCOND_OPS", raising=False)
    monkeypatch.setenv("CXX", "no-such-compiler-raycond")
    custom_ops._reset_for_tests()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert custom_ops.get_plugin("plugin_nocxx", sources=["a.cpp"],
                                         with_cuda=False) is None
        ours = [w for w in caught if issubclass(w.category, custom_ops.CustomOpsWarning)]
        assert len(ours) == 1
        assert "no C++ compiler found" in str(ours[0].message)
        assert "Fix: install g++" in str(ours[0].message)
    finally:
        custom_ops._reset_for_tests()


def test_build_holds_a_lock_next_to_the_cached_build(k):
    """The cache folder is keyed by the source hash and has a lock file beside it (DDP)."""
    import glob
    import os
    root = custom_ops._extensions_root()
    builds = glob.glob(os.path.join(root, "raycond_ops_cpu-*"))
    assert [p for p in builds if p.endswith(".lock")]
    assert [p for p in builds if os.path.isfile(os.path.join(p, "raycond_ops_cpu.so"))]
