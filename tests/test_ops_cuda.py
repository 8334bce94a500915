"""The CUDA build of the kernels against the references, on a GPU (skipped without CUDA).

These are the tests that measure GPU correctness; the CPU build of the same arithmetic is
tested everywhere by tests/test_ops_ext.py.
"""

import random

import numpy as np
import pytest
import torch

from torch_utils import ops
from torch_utils.ops import bias_act, filtered_lrelu, upfirdn2d

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (the CPU build is tested by test_ops_ext)")


@pytest.fixture(scope="module")
def k():
    plugin = ops.CUDA_KERNELS.get()
    if plugin is None:
        pytest.fail("the CUDA kernels did not build on a machine with CUDA (see the warning)")
    return plugin


def _case_tensors(dtype, shape=(2, 8, 16, 16), seed=0):
    torch.manual_seed(seed)
    return torch.randn(shape, device="cuda", dtype=dtype) * 2


def _close(a, b, dtype):
    tol = {torch.float32: 1e-4, torch.float16: 1e-2}[dtype]
    torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act", sorted(bias_act.activation_funcs))
def test_bias_act_cuda_matches_reference(k, act, dtype):
    x = _case_tensors(dtype).requires_grad_(True)
    b = torch.randn(8, device="cuda", dtype=dtype, requires_grad=True)
    y = bias_act._bias_act_kernel(k, x, b, act=act, clamp=3.0)
    ref = bias_act._bias_act_ref(x.float(), b.float(), act=act, clamp=3.0)
    _close(y, ref.to(dtype), dtype)
    w = torch.randn_like(ref)
    got = torch.autograd.grad((y.float() * w).sum(), [x, b])
    want = torch.autograd.grad((ref * w).sum(), [x, b])
    for g, r in zip(got, want):
        _close(g, r.to(dtype), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_upfirdn2d_cuda_matches_reference(k, dtype):
    rng = random.Random(1)
    for _ in range(30):
        up, down = [rng.randint(1, 4)] * 2, [rng.randint(1, 4)] * 2
        f = torch.rand(rng.randint(1, 8)) + 0.1 if rng.random() < 0.5 else torch.rand(3, 4) + 0.1
        f = f.cuda()
        x = _case_tensors(dtype, seed=rng.randint(0, 99)).requires_grad_(True)
        kw = dict(up=up, down=down, padding=[rng.randint(0, 4) for _ in range(4)],
                  flip_filter=rng.random() < 0.5, gain=2.0)
        y = upfirdn2d._upfirdn2d_kernel(k, x, f, **kw)
        ref = upfirdn2d._upfirdn2d_ref(x.float(), f, **kw)
        _close(y, ref, dtype)
        w = torch.randn_like(ref)
        _close(torch.autograd.grad((y.float() * w).sum(), [x])[0],
               torch.autograd.grad((ref * w).sum(), [x])[0], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 2), (4, 2), (2, 1), (1, 4)])
def test_filtered_lrelu_cuda_matches_reference(k, dtype, up, down):
    fs = torch.tensor(np.hanning(14)[1:-1], dtype=torch.float32, device="cuda")
    x = _case_tensors(dtype).requires_grad_(True)
    b = torch.randn(8, device="cuda", dtype=dtype, requires_grad=True)
    kw = dict(fu=fs, fd=fs, up=up, down=down, padding=[11, 10, 11, 10], clamp=2.0)
    y = filtered_lrelu._filtered_lrelu_kernel(k, x, b=b, **kw)
    ref = filtered_lrelu._filtered_lrelu_ref(x.float(), b=b.float(), **kw)
    _close(y, ref, dtype)
    w = torch.randn_like(ref)
    got = torch.autograd.grad((y.float() * w).sum(), [x, b])
    want = torch.autograd.grad((ref * w).sum(), [x, b])
    for g, r in zip(got, want):
        _close(g, r, dtype)


@pytest.mark.parametrize("fp32", [True, False])
def test_generator_image_with_kernels_matches_reference(k, monkeypatch, fp32):
    """Whole generator (fp16 top layers with conv clamp unless fp32): kernels vs references."""
    from training import networks_stylegan2 as sg2
    torch.manual_seed(0)
    G = sg2.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                      mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=2,
                                            conv_clamp=256)).eval().cuda()
    z = torch.randn(2, 32, device="cuda")
    monkeypatch.setenv("RAYCOND_OPS", "cuda")
    with torch.no_grad():
        img = G(z, None, noise_mode="const", force_fp32=fp32)
    monkeypatch.setenv("RAYCOND_OPS", "ref")
    with torch.no_grad():
        ref = G(z, None, noise_mode="const", force_fp32=fp32)
    tol = 1e-3 if fp32 else 3e-2
    torch.testing.assert_close(img, ref, rtol=tol, atol=tol)
