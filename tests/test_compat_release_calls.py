"""Regression tests for the host-tree calls that network pickles from NVIDIA's StyleGAN2-ADA and
StyleGAN3 releases and from the official Ray Conditioning release make when they run here.

No foreign code lives in this file. Each test uses our own small code to make a call in the form
those modules use (keyword names, padding lists, filters that are None or 2-D, negative padding,
weights stored as attributes, old pickle layouts) and checks the result against a naive restatement
of the documented semantics, or checks that a pickle survives a fresh process. A verification run
that loaded pickles built from the real release modules found every pattern below (see
docs/compatibility.md); these tests keep them working.
"""

from __future__ import annotations

import inspect
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dnnlib
from torch_utils import misc, persistence
from torch_utils.ops import (bias_act, conv2d_gradfix, conv2d_resample, filtered_lrelu, fma,
                             grid_sample_gradfix, upfirdn2d)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- naive references

def _naive_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip=False, gain=1.0):
    """Zero-insert upsample, pad/crop, convolve (true convolution unless flip), subsample."""
    f = torch.ones(1, 1) if f is None else f
    if f.ndim == 1:                       # separable: the outer product is the 2-D filter
        f = f[None, :] * f[:, None]
    n, c, h, w = x.shape
    ux, uy = up
    y = torch.zeros(n, c, h * uy, w * ux, dtype=x.dtype)
    y[:, :, ::uy, ::ux] = x
    px0, px1, py0, py1 = pad
    y = F.pad(y, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    y = y[:, :, max(-py0, 0):y.shape[2] - max(-py1, 0), max(-px0, 0):y.shape[3] - max(-px1, 0)]
    k = (f if flip else f.flip([0, 1])) * gain
    y = F.conv2d(y, k[None, None].repeat(c, 1, 1, 1).to(y.dtype), groups=c)
    return y[:, :, ::down[1], ::down[0]]


def _close(a, b, tol=1e-5):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() < tol


# ----------------------------------------------------------------------------- signatures

@pytest.mark.parametrize("func, names", [
    (bias_act.bias_act, ["x", "b", "dim", "act", "alpha", "gain", "clamp", "impl"]),
    (upfirdn2d.setup_filter, ["f", "device", "normalize", "flip_filter", "gain", "separable"]),
    (upfirdn2d.upfirdn2d, ["x", "f", "up", "down", "padding", "flip_filter", "gain", "impl"]),
    (upfirdn2d.upsample2d, ["x", "f", "up", "padding", "flip_filter", "gain", "impl"]),
    (upfirdn2d.downsample2d, ["x", "f", "down", "padding", "flip_filter", "gain", "impl"]),
    (upfirdn2d.filter2d, ["x", "f", "padding", "flip_filter", "gain", "impl"]),
    (conv2d_resample.conv2d_resample, ["x", "w", "f", "up", "down", "padding", "groups", "flip_weight",
                                       "flip_filter"]),
    (filtered_lrelu.filtered_lrelu, ["x", "fu", "fd", "b", "up", "down", "padding", "gain", "slope", "clamp",
                                     "flip_filter", "impl"]),
    (conv2d_gradfix.conv2d, ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]),
    (conv2d_gradfix.conv_transpose2d, ["input", "weight", "bias", "stride", "padding", "output_padding",
                                       "groups", "dilation"]),
    (grid_sample_gradfix.grid_sample, ["input", "grid"]),
    (fma.fma, ["a", "b", "c"]),
    (misc.constant, ["value", "shape", "dtype", "device", "memory_format"]),
    (misc.assert_shape, ["tensor", "ref_shape"]),
])
def test_release_signatures(func, names):
    """Foreign modules call these positionally and by these keyword names, in this order."""
    assert list(inspect.signature(func).parameters)[:len(names)] == names


def test_activation_records_have_release_fields():
    for name, gain in [("linear", 1), ("relu", np.sqrt(2)), ("lrelu", np.sqrt(2)), ("tanh", 1),
                       ("sigmoid", 1), ("elu", 1), ("selu", 1), ("softplus", 1), ("swish", np.sqrt(2))]:
        spec = bias_act.activation_funcs[name]
        assert abs(float(spec.def_gain) - gain) < 1e-7
        for field in ("def_alpha", "def_gain", "cuda_idx", "ref", "has_2nd_grad"):
            assert hasattr(spec, field), (name, field)
    assert bias_act.activation_funcs["lrelu"].def_alpha == pytest.approx(0.2)


# ----------------------------------------------------------------------------- numerics of unusual calls

@pytest.mark.parametrize("up, down, padding, flip, gain", [
    (1, 1, [2, -1, 0, 3], False, 1),      # asymmetric list with a crop
    (2, 1, [1, 2], True, 4),              # [px, py] form, flipped, gain as upsample2d passes it
    ([2, 1], [1, 2], 3, False, 2.5),      # anisotropic up/down factors
    (4, 2, [5, 4, 6, 3], False, 16),
])
def test_upfirdn2d_unusual_arguments(up, down, padding, flip, gain):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6)
    f = upfirdn2d.setup_filter([1, 2, 3, 5])   # asymmetric, so a wrong flip shows
    ux, uy = (up, up) if isinstance(up, int) else up
    dx, dy = (down, down) if isinstance(down, int) else down
    pad = [padding] * 4 if isinstance(padding, int) else (
        [padding[0], padding[0], padding[1], padding[1]] if len(padding) == 2 else padding)
    ref = _naive_upfirdn2d(x, f, (ux, uy), (dx, dy), pad, flip, gain)
    _close(upfirdn2d.upfirdn2d(x=x, f=f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain), ref)
    _close(upfirdn2d.upfirdn2d(x, f, up, down, padding, flip, gain, "cuda"), ref)   # positional + impl='cuda'


def test_setup_filter_separable_and_gain():
    f = upfirdn2d.setup_filter(list(range(1, 9)))                # >= 8 taps: separable 1-D by default
    assert f.ndim == 1 and f.sum().item() == pytest.approx(1.0)
    g = upfirdn2d.setup_filter([1, 2, 1], flip_filter=True, gain=4, normalize=False)
    assert g.shape == (3, 3) and g.sum().item() == pytest.approx(16 * 4)
    assert upfirdn2d.setup_filter([1, 3, 3, 1], separable=True).ndim == 1


def test_augment_style_resampling():
    """ADA's geometric augmentation: upsample2d(x=, f=, up=2) with a 12-tap separable wavelet, then
    downsample2d(x=, f=, down=2, padding=-2*pad, flip_filter=True)."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 10, 10)
    f = upfirdn2d.setup_filter(np.random.RandomState(0).rand(12))
    assert f.ndim == 1
    up = upfirdn2d.upsample2d(x=x, f=f, up=2)
    ref_up = _naive_upfirdn2d(x, f, (2, 2), (1, 1), [6, 5, 6, 5], gain=4)
    _close(up, ref_up)
    hz_pad = f.shape[0] // 4
    down = upfirdn2d.downsample2d(x=up, f=f, down=2, padding=-hz_pad * 2, flip_filter=True)
    ref_down = _naive_upfirdn2d(up, f, (1, 1), (2, 2), [5 - 6, 5 - 6, 5 - 6, 5 - 6], flip=True)
    _close(down, ref_down)
    assert down.shape == (2, 3, 4, 4)


@pytest.mark.parametrize("up, down, taps_u, taps_d, padding, radial", [
    (2, 2, 12, 12, [9, 8, 9, 8], False),     # StyleGAN3 mid layer
    (4, 2, 24, 12, [15, 14, 15, 14], False),  # first layers (lrelu_upsampling with 4x)
    (2, 4, 12, 24, [10, 9, 10, 9], True),     # config 'r': 2-D radial downsampling filter
    (2, 1, 12, 1, [7, 6, 8, 5], False),       # fd=None, asymmetric padding
    (1, 1, 1, 1, 0, False),                   # ToRGB: fu=fd=None, slope=1, gain=1
])
def test_filtered_lrelu_stylegan3_calls(up, down, taps_u, taps_d, padding, radial):
    torch.manual_seed(2)
    x = torch.randn(2, 4, 9, 9) * 3
    b = torch.randn(4)
    fu = None if taps_u == 1 else torch.as_tensor(np.hanning(taps_u + 2)[1:-1] / np.hanning(taps_u + 2).sum(),
                                                    dtype=torch.float32)
    if taps_d == 1:
        fd = None
    elif radial:
        r = np.hypot(*np.meshgrid(np.arange(taps_d) - (taps_d - 1) / 2, np.arange(taps_d) - (taps_d - 1) / 2))
        fd = torch.as_tensor(np.exp(-r) / np.exp(-r).sum(), dtype=torch.float32)
    else:
        fd = torch.as_tensor(np.hanning(taps_d + 2)[1:-1] / np.hanning(taps_d + 2).sum(), dtype=torch.float32)
    torgb = taps_u == 1 and taps_d == 1
    gain, slope = (1, 1) if torgb else (np.sqrt(2), 0.2)
    out = filtered_lrelu.filtered_lrelu(x=x, fu=fu, fd=fd, b=b.to(x.dtype), up=up, down=down, padding=padding,
                                        gain=gain, slope=slope, clamp=256)
    pad = [padding] * 4 if isinstance(padding, int) else padding
    y = _naive_upfirdn2d(x + b[None, :, None, None], fu, (up, up), (1, 1), pad, gain=up ** 2)
    y = (F.leaky_relu(y, slope) * gain).clamp(-256, 256)
    ref = _naive_upfirdn2d(y, fd, (1, 1), (down, down))
    _close(out, ref, 1e-4)


@pytest.mark.parametrize("up, down, kernel, flip_weight", [(2, 1, 3, False), (1, 2, 3, True), (1, 2, 1, True),
                                                          (2, 1, 1, False), (1, 1, 3, True)])
def test_conv2d_resample_modulated_conv_calls(up, down, kernel, flip_weight):
    """StyleGAN2's fused modulated conv: grouped weights (groups=batch), flip_weight=(up == 1)."""
    torch.manual_seed(3)
    batch, cin, cout = 2, 3, 4
    x = torch.randn(1, batch * cin, 8, 8)
    w = torch.randn(batch * cout, cin, kernel, kernel)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    out = conv2d_resample.conv2d_resample(x=x, w=w, f=f, up=up, down=down, padding=kernel // 2, groups=batch,
                                          flip_weight=flip_weight)
    # Reference: the generic definition (upsample with f, convolve, downsample with f).
    p = kernel // 2
    px0 = px1 = p
    if up > 1:
        px0, px1 = px0 + (4 + up - 1) // 2, px1 + (4 - up) // 2
    if down > 1:
        px0, px1 = px0 + (4 - down + 1) // 2, px1 + (4 - down) // 2
    y = _naive_upfirdn2d(x, f if up > 1 else None, (up, up), (1, 1), [px0, px1, px0, px1], gain=up ** 2)
    ww = w if flip_weight or kernel == 1 else w.flip([2, 3])
    y = F.conv2d(y, ww, groups=batch)
    ref = _naive_upfirdn2d(y, f, (1, 1), (down, down)) if down > 1 else y
    _close(out, ref, 1e-4)


def test_conv2d_gradfix_keyword_forms_and_double_backward():
    torch.manual_seed(4)
    x = torch.randn(1, 6, 9, 9, requires_grad=True)
    w = torch.randn(6, 1, 1, 5)
    out = conv2d_gradfix.conv2d(input=x, weight=w, groups=6)                # augment's image filter
    _close(out, F.conv2d(x, w, groups=6))
    out = conv2d_gradfix.conv2d(input=x, weight=torch.randn(4, 6, 3, 3), padding=2, groups=1)  # StyleGAN3
    assert out.shape == (1, 4, 11, 11)
    with conv2d_gradfix.no_weight_gradients():                               # StyleGAN2-ADA form
        (g,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    with conv2d_gradfix.no_weight_gradients(True):                           # StyleGAN3 form
        g.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_grid_sample_and_constant_as_augment_uses_them():
    torch.manual_seed(5)
    img = torch.randn(2, 3, 6, 8)
    grid = torch.rand(2, 5, 7, 2) * 2.2 - 1.1
    _close(grid_sample_gradfix.grid_sample(img, grid),
           F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    ref = torch.randn(4)
    c = misc.constant(0, shape=ref.shape, device=ref.device)               # scalar broadcast to a Size
    assert c.shape == (4,) and c.dtype == torch.float32 and c.abs().sum() == 0
    v = misc.constant(np.asarray([1, 1, 1, 0]) / np.sqrt(3), device=None)   # float64 array -> float32
    assert v.dtype == torch.float32 and v[0].item() == pytest.approx(1 / np.sqrt(3))
    m = misc.constant(np.asarray([[1, 0, 2], [0, 1, 3], [0, 0, 1]]))        # int array -> float32
    assert m.dtype == torch.float32 and m[1, 2].item() == 3
    _close(fma.fma(torch.ones(2, 3, 1, 1), torch.full([2, 3, 1, 1], 2.0), torch.ones(1, 1, 4, 4)),
           torch.full([2, 3, 4, 4], 3.0))


def test_half_precision_on_cpu():
    """StyleGAN2-ADA blocks use fp16 whenever force_fp32 is False, also on the CPU (its
    discriminator's default call, the visualizer's 'Force fp32' off)."""
    torch.manual_seed(6)
    x = torch.randn(1, 4, 8, 8).half()
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    y = conv2d_resample.conv2d_resample(x=x, w=torch.randn(4, 4, 3, 3).half(), f=f, up=2, padding=1,
                                        flip_weight=False)
    y = bias_act.bias_act(y, torch.zeros(4).half(), act="lrelu", gain=np.sqrt(2), clamp=256)
    y = upfirdn2d.downsample2d(y, f)
    assert y.dtype == torch.float16 and y.shape == (1, 4, 8, 8) and torch.isfinite(y).all()


# ----------------------------------------------------------------------------- pickles from other trees

_FOREIGN_STYLE_SRC = '''
"""Our own stand-in for a release network module (official Ray Conditioning layout)."""
import numpy as np
import scipy.signal
import torch
from torch_utils import misc, persistence
from torch_utils.ops import bias_act, conv2d_gradfix, filtered_lrelu
from training.networks_stylegan2 import Conv2dLayer, MinibatchStdLayer, upfirdn2d
from training.plucker import plucker_embedding


@misc.profiled_function
def mod_conv(x, w, s, padding=0):
    with misc.suppress_tracer_warnings():
        n = int(x.shape[0])
    misc.assert_shape(x, [n, w.shape[1], None, None])
    w = w.unsqueeze(0) * s[:, None, :, None, None]
    w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    x = conv2d_gradfix.conv2d(input=x.reshape(1, -1, *x.shape[2:]), weight=w.reshape(-1, *w.shape[2:]),
                              padding=padding, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


@persistence.persistent_class
class Synthesis(torch.nn.Module):
    def __init__(self, channels, size):
        super().__init__()
        self.size = np.broadcast_to(np.asarray(size), [2])       # numpy array in the pickled state
        self.rate = np.exp2(np.ceil(np.log2(size)))               # numpy float64 scalar
        self.embedding = plucker_embedding                         # function pickled by reference
        self.const = torch.nn.Parameter(torch.randn([channels, size, size]))
        self.weight = torch.nn.Parameter(torch.randn([channels, channels + 6, 3, 3]))
        self.affine_w = torch.nn.Parameter(torch.randn([channels + 6, 4]))
        self.register_buffer("up_filter", torch.as_tensor(scipy.signal.firwin(numtaps=12, cutoff=3, width=2, fs=16),
                                                          dtype=torch.float32))
        self.register_buffer("resample_filter", upfirdn2d.setup_filter([1, 3, 3, 1]))
        self.bias = torch.nn.Parameter(torch.randn([channels]) * 0.1)
        self.padding = [9, 8, 9, 8]
        self.torgb = Conv2dLayer(channels, 3, kernel_size=1, activation="linear")
        self.mbstd = MinibatchStdLayer(group_size=2)

    def forward(self, ws, c, noise_mode="const", force_fp32=True, update_emas=False):
        misc.assert_shape(ws, [None, 4])
        c2w = c[:, :16].view(-1, 4, 4)
        K = c[:, 16:].view(-1, 3, 3)
        x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        with torch.no_grad():
            rays = self.embedding(x.shape[2], x.shape[3], K, c2w)
        x = torch.cat([x, rays], dim=1)
        s = ws @ self.affine_w.t() + 1
        x = mod_conv(x, self.weight, s, padding=2)
        x = filtered_lrelu.filtered_lrelu(x=x, fu=self.up_filter, fd=self.up_filter, b=self.bias.to(x.dtype),
                                          up=2, down=2, padding=self.padding, gain=np.sqrt(2), slope=0.2, clamp=256)
        x = upfirdn2d.downsample2d(x, self.resample_filter)
        x = upfirdn2d.upsample2d(x, self.resample_filter)
        x = self.mbstd(x)[:, :-1]
        x = bias_act.bias_act(self.torgb(x), None, act="tanh")
        return x


@persistence.persistent_class
class Mapping(torch.nn.Module):
    def __init__(self, z_dim, w_dim):
        super().__init__()
        self.z_dim = z_dim
        self.weight = torch.nn.Parameter(torch.randn([w_dim, z_dim]))
        self.register_buffer("w_avg", torch.randn([w_dim]) * 0.1)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = bias_act.bias_act(z @ self.weight.t() / np.sqrt(self.z_dim), act="lrelu")
        return self.w_avg.lerp(x, truncation_psi)


@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = Synthesis(**synthesis_kwargs)
        self.num_ws = 1
        self.mapping = Mapping(z_dim, w_dim, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        return self.synthesis(self.mapping(z, c, truncation_psi), c, **synthesis_kwargs)
'''

# Module attributes that torch 1.9 (which wrote the releases' pickles) did not have yet.
_TORCH19_MODULE_KEYS = {"training", "_parameters", "_buffers", "_non_persistent_buffers_set", "_backward_hooks",
                        "_is_full_backward_hook", "_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks",
                        "_load_state_dict_pre_hooks", "_modules"}


@pytest.mark.slow
def test_release_style_pickle_renders_identically_in_fresh_process(tmp_path, monkeypatch):
    from raycond.camera import camera_label
    from raycond import generate as gen

    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "release_style_net.py").write_text(textwrap.dedent(_FOREIGN_STYLE_SRC))
    monkeypatch.syspath_prepend(str(mod_dir))
    import release_style_net
    try:
        torch.manual_seed(0)
        G = release_style_net.Generator(z_dim=8, c_dim=25, w_dim=4, img_resolution=16, img_channels=3,
                                        mapping_kwargs=dnnlib.EasyDict(), channels=5, size=16).eval()
        z = gen.seeds_to_z([1, 2], 8)
        c = camera_label([20.0, -10.0], [5.0, 0.0])
        with torch.no_grad():
            expected = G.synthesis(G.mapping(z, c, truncation_psi=0.7), c)
        fresh_internals = set(torch.nn.Module().__dict__)
        for m in G.modules():   # pickle as an old torch would: without newer nn.Module internals
            for k in [k for k in m.__dict__ if k in fresh_internals and k not in _TORCH19_MODULE_KEYS]:
                del m.__dict__[k]
        snapshot = dict(G=G, D=None, G_ema=G, augment_pipe=None,
                        training_set_kwargs=dnnlib.EasyDict(path="x.zip", resolution=16, use_labels=True))
        # Protocol 2 + numpy.core module paths, as numpy-1.x era releases wrote them.
        data = pickle.dumps(snapshot, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    finally:
        sys.modules.pop("release_style_net", None)
    (tmp_path / "net.pkl").write_bytes(data)
    torch.save(dict(z=z, c=c, expected=expected), tmp_path / "ref.pt")

    script = textwrap.dedent(f"""
        import sys, torch
        torch.set_num_threads(1)
        from raycond.loading import UntrustedPickleError, load_network_and_info, load_snapshot
        from raycond import generate as gen
        try:
            load_network_and_info({str(tmp_path / 'net.pkl')!r})
            raise SystemExit('safe loading should refuse the stand-in release classes')
        except UntrustedPickleError as e:
            print('REFUSED', ','.join(e.names))
        G, info = load_network_and_info({str(tmp_path / 'net.pkl')!r}, trust_pickle=True)
        assert type(G).__module__.startswith('_imported_module_'), type(G).__module__
        assert (info.kind, info.c_dim, info.camera, info.synthesis_takes_c) == ('raycond-official2', 25, True, True), info
        ref = torch.load({str(tmp_path / 'ref.pt')!r}, weights_only=True)
        ws = gen.map_latents(G, ref['z'], ref['c'], truncation_psi=0.7)
        img = gen.synthesize(G, ws, ref['c'], noise_mode='const', force_fp32=True)
        print('DIFF', (img - ref['expected']).abs().max().item())
        tsk = load_snapshot({str(tmp_path / 'net.pkl')!r}, trust_pickle=True)['training_set_kwargs']
        print('TSK', type(tsk).__module__ + '.' + type(tsk).__name__, tsk.resolution)
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert float(lines["DIFF"]) < 1e-5
    assert lines["REFUSED"] == "persistent class Generator"
    assert lines["TSK"] == "dnnlib.util.EasyDict 16"
