"""Official Ray Conditioning pickles (configs raycond2, raycond3-t/-r) open in safe mode, rebuilt
from training.networks_official_raycond2/3, and compute what the release's code computes.

The release's modules cannot live in this repository, so the stand-ins below are our own code with
the release's interface (class names, constructor arguments, parameter and buffer names, the ray
embedding taken from training.plucker and stored as the `embedding` attribute). The raycond2
stand-in is an independent, deliberately naive restatement of the architecture (one convolution
per sample), so agreement with the rebuild is checked to float tolerance; bit-exactness against
the release's own code was verified outside the repository (docs/safe-loading.md).
"""

from __future__ import annotations

import copy
import pickle
import textwrap

import numpy as np
import pytest
import torch

import dnnlib
from raycond import camera, loading
from torch_utils import persistence
from training import networks_official_raycond2 as official2
from training import networks_official_raycond3 as official3
from training import plucker

# The release's Generator wrapper, the same in both of its network modules.
_STANDIN_GENERATOR = '''

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        return self.synthesis(self.mapping(z, c, truncation_psi), c, **synthesis_kwargs)
'''

STANDIN_RAYCOND2 = '''
"""Stand-in with the official raycond2 interface (our code, naive arithmetic)."""
import numpy as np
import torch
from torch_utils import misc, persistence
from torch_utils.ops import bias_act, conv2d_resample, upfirdn2d
from training.plucker import plucker_embedding


@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1, bias_init=0):
        super().__init__()
        self.activation, self.lr = activation, lr_multiplier
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None

    def forward(self, x):
        y = x @ (self.weight * self.lr / np.sqrt(self.weight.shape[1])).t()
        return bias_act.bias_act(y, None if self.bias is None else self.bias * self.lr, act=self.activation)


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        self.num_ws, self.num_layers = num_ws, num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(z_dim if i == 0 else w_dim, w_dim, activation=activation,
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = z / z.square().mean(1, keepdim=True).add(1e-8).sqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x[:, None].repeat(1, self.num_ws, 1)
        return self.w_avg + (x - self.w_avg) * truncation_psi


def modulated(x, weight, styles, demodulate, up, f, noise):
    outs = []
    for n in range(x.shape[0]):              # one sample at a time
        w = weight * styles[n][None, :, None, None]
        if demodulate:
            w = w / w.square().sum([1, 2, 3], keepdim=True).add(1e-8).sqrt()
        outs.append(conv2d_resample.conv2d_resample(x[n:n + 1], w, f=f, up=up, padding=weight.shape[-1] // 2,
                                                    flip_weight=(up == 1)))
    y = torch.cat(outs)
    return y if noise is None else y + noise


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True,
                 activation="lrelu", resample_filter=[1, 3, 3, 1], conv_clamp=None, channels_last=False):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1):
        noise = self.noise_const * self.noise_strength if noise_mode == "const" else None
        x = modulated(x, self.weight, self.affine(w), True, self.up, self.resample_filter, noise)
        return bias_act.bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)


@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) / np.sqrt(self.weight[0].numel())
        return bias_act.bias_act(modulated(x, self.weight, styles, False, 1, None, None), self.bias,
                                 clamp=self.conv_clamp)


@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture="skip",
                 embedding="plucker", resample_filter=[1, 3, 3, 1], conv_clamp=256, use_fp16=False,
                 fp16_channels_last=False, fused_modconv_default=True, **layer_kwargs):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.embedding = plucker_embedding
        self.ray_cond = True
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels + 6, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv, self.num_torgb = (1 if in_channels == 0 else 2), 1

    def forward(self, x, img, c, ws, **kwargs):
        K, c2w = c[:, 16:].view(-1, 3, 3), c[:, :16].view(-1, 4, 4)
        r = self.resolution
        ws = ws.unbind(1)
        if self.in_channels == 0:
            x = self.conv1(torch.cat([self.const.expand(ws[0].shape[0], -1, -1, -1),
                                      self.embedding(r, r, K, c2w)], 1), ws[0], **kwargs)
        else:
            x = self.conv0(torch.cat([x, self.embedding(r // 2, r // 2, K, c2w)], 1), ws[0], **kwargs)
            x = self.conv1(torch.cat([x, self.embedding(r, r, K, c2w)], 1), ws[1], **kwargs)
        y = self.torgb(x, ws[-1])
        return x, (y if img is None else upfirdn2d.upsample2d(img, self.resample_filter) + y)


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_fp16_res=4,
                 **block_kwargs):
        super().__init__()
        self.resolutions = [2 ** i for i in range(2, int(np.log2(img_resolution)) + 1)]
        ch = {r: min(channel_base // r, channel_max) for r in self.resolutions}
        self.num_ws = 0
        for r in self.resolutions:
            block = SynthesisBlock(ch[r // 2] + 6 if r > 4 else 0, ch[r], w_dim, r, img_channels,
                                   r == img_resolution, **block_kwargs)
            setattr(self, f"b{r}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1

    def forward(self, ws, c, **kwargs):
        x = img = None
        i = 0
        for r in self.resolutions:
            block = getattr(self, f"b{r}")
            x, img = block(x, img, c, ws[:, i:i + block.num_conv + 1], **kwargs)
            i += block.num_conv
        return img

''' + _STANDIN_GENERATOR

# The raycond3 stand-in keeps StyleGAN3's layer arithmetic from this project's module (as the
# release imports helpers from its host tree) but has the release's classes, arguments and layout.
STANDIN_RAYCOND3 = '''
"""Stand-in with the official raycond3 interface (our code)."""
import torch
from torch_utils import persistence
from training import networks_stylegan3 as host
from training.plucker import plucker_embedding


@persistence.persistent_class
class FullyConnectedLayer(host.FullyConnectedLayer):
    def __init__(self, in_features, out_features, activation="linear", bias=True, lr_multiplier=1, weight_init=1,
                 bias_init=0):
        super().__init__(in_features, out_features, activation=activation, bias=bias, lr_multiplier=lr_multiplier,
                         weight_init=weight_init, bias_init=bias_init)


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        self.num_ws, self.num_layers = num_ws, num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(z_dim if i == 0 else w_dim, w_dim, activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = z / z.square().mean(1, keepdim=True).add(1e-8).sqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return torch.lerp(self.w_avg, x[:, None].repeat(1, self.num_ws, 1), truncation_psi)


@persistence.persistent_class
class SynthesisInput(host.SynthesisInput):
    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__(w_dim, channels, size, sampling_rate, bandwidth)


@persistence.persistent_class
class SynthesisLayer(host.SynthesisLayer):
    def __init__(self, w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels, in_size,
                 out_size, in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff, in_half_width,
                 out_half_width, conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False,
                 conv_clamp=256, magnitude_ema_beta=0.999):
        super().__init__(w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels, in_size,
                         out_size, in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff, in_half_width,
                         out_half_width, conv_kernel=conv_kernel, filter_size=filter_size,
                         lrelu_upsampling=lrelu_upsampling, use_radial_filters=use_radial_filters,
                         conv_clamp=conv_clamp, magnitude_ema_beta=magnitude_ema_beta)


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
                 num_critical=2, first_cutoff=2, first_stopband=2**2.1, last_stopband_rel=2**0.3, margin_size=10,
                 output_scale=0.25, num_fp16_res=4, **layer_kwargs):
        super().__init__()
        s = host.layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                                first_cutoff, first_stopband, last_stopband_rel, margin_size)
        rate, size, ch = s["sampling_rates"], s["sizes"], s["channels"]
        self.num_ws, self.output_scale = num_layers + 2, output_scale
        self.embedding = plucker_embedding
        self.input = SynthesisInput(w_dim, int(ch[0]), int(size[0]), rate[0], s["cutoffs"][0])
        self.layer_names = []
        for i in range(num_layers + 1):
            p = max(i - 1, 0)
            layer = SynthesisLayer(w_dim, i == num_layers, i >= num_layers - num_critical,
                                   bool(rate[i] * 2 ** num_fp16_res > img_resolution), int(ch[p]) + 6, int(ch[i]),
                                   int(size[p]), int(size[i]), int(rate[p]), int(rate[i]), s["cutoffs"][p],
                                   s["cutoffs"][i], s["half_widths"][p], s["half_widths"][i], **layer_kwargs)
            self.layer_names.append(f"L{i}_{layer.out_size[0]}_{layer.out_channels}")
            setattr(self, self.layer_names[-1], layer)

    def forward(self, ws, c, **layer_kwargs):
        K, c2w = c[:, 16:].view(-1, 3, 3), c[:, :16].view(-1, 4, 4)
        x = self.input(ws[:, 0])
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(torch.cat([x, self.embedding(x.shape[2], x.shape[3], K, c2w)], 1),
                                    ws[:, i + 1], **layer_kwargs)
        return x * self.output_scale

''' + _STANDIN_GENERATOR

SMALL2 = dict(z_dim=8, c_dim=25, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
              mapping_kwargs=dnnlib.EasyDict(num_layers=2), fused_modconv_default="inference_only")
SMALL3 = dict(z_dim=8, c_dim=25, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=8,
              num_layers=4, num_critical=1, margin_size=2, mapping_kwargs=dnnlib.EasyDict(num_layers=2))
CONFIGS = {
    "raycond2": (STANDIN_RAYCOND2, SMALL2, official2),
    "raycond3-t": (STANDIN_RAYCOND3, SMALL3, official3),
    "raycond3-r": (STANDIN_RAYCOND3, dict(SMALL3, conv_kernel=1, use_radial_filters=True), official3),
}


def _trained(net: torch.nn.Module) -> torch.nn.Module:
    """Move every tensor off its initial value, so that an uncopied one shows in the output."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            if name.endswith("magnitude_ema"):
                t.fill_(1.7)      # rays included in the normalization: a gain != 1 shows if they were not
            elif t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=g) * 0.05)
    return net.eval().requires_grad_(False)


def _standin_pickle(tmp_path, config: str, transform=lambda src: src) -> str:
    src, kwargs, _ = CONFIGS[config]
    module = persistence._src_to_module(transform(textwrap.dedent(src)))
    torch.manual_seed(0)
    G = _trained(module.Generator(**kwargs))
    path = tmp_path / f"{config}.pkl"
    snapshot = {"G": copy.deepcopy(G), "G_ema": G, "training_set_kwargs": dict(resolution=16)}
    path.write_bytes(pickle.dumps(snapshot))
    return str(path)


def _render(G, noise_mode="const"):
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(3))
    c = camera.camera_label([25.0, -30.0], [-10.0, 12.0])
    with torch.no_grad():
        return G(z, c, truncation_psi=0.7, noise_mode=noise_mode)


# ----------------------------------------------------------------------------- recognition

@pytest.mark.parametrize("config", list(CONFIGS))
def test_release_interface_pickle_is_rebuilt_from_our_official_classes(tmp_path, config):
    path = _standin_pickle(tmp_path, config)
    safe = loading.load_network(path)
    module = CONFIGS[config][2]
    assert type(safe).__module__ == module.__name__
    assert type(safe.synthesis).__module__ == module.__name__
    kind = "raycond-official2" if config == "raycond2" else "raycond-official3"
    assert loading.network_info(safe).kind == kind               # the family row of the rebuilt class
    trusted = loading.load_network(path, trust_pickle=True)
    assert loading.network_info(trusted).kind == kind            # the release's own code: the one fallback
    torch.testing.assert_close(_render(safe), _render(trusted), atol=1e-4, rtol=0)


def test_state_naming_another_embedding_is_refused(tmp_path):
    """An edited release that stores two_plane_embedding would render differently: refused."""
    path = _standin_pickle(tmp_path, "raycond3-t",
                           lambda s: s.replace("self.embedding = plucker_embedding",
                                               "from training.plucker import two_plane_embedding as e\n"
                                               "        self.embedding = e"))
    with pytest.raises(loading.UntrustedPickleError, match="two_plane_embedding"):
        loading.load_network(path)


def test_release_source_without_its_classes_is_refused_with_a_reason(tmp_path):
    path = _standin_pickle(tmp_path, "raycond2", lambda s: s.replace("class ToRGBLayer", "class RGBLayer")
                           .replace("ToRGBLayer(", "RGBLayer("))
    with pytest.raises(loading.UntrustedPickleError, match="does not define the classes of that release"):
        loading.load_network(path)


def test_own_official_class_pickle_round_trips_safely(tmp_path):
    torch.manual_seed(0)
    G = _trained(official2.Generator(**SMALL2))
    path = tmp_path / "ours.pkl"
    path.write_bytes(pickle.dumps({"G_ema": G}))
    again = loading.load_network(str(path))
    assert type(again) is official2.Generator
    assert torch.equal(_render(again), _render(G))


def test_convert_official_network_to_safetensors_renders_identically(tmp_path):
    from raycond.convert import main
    path = _standin_pickle(tmp_path, "raycond3-r")
    out = tmp_path / "net.safetensors"
    assert main([path, str(out)]) == 0
    assert torch.equal(_render(loading.load_network(str(out))), _render(loading.load_network(path)))


# ----------------------------------------------------------------------------- numerics

def test_reference_modulated_conv_matches_a_per_sample_loop():
    g = torch.Generator().manual_seed(1)
    x, weight, styles = torch.randn(3, 5, 6, 6, generator=g), torch.randn(4, 5, 3, 3, generator=g), \
        torch.randn(3, 5, generator=g)
    expected = []
    for n in range(3):
        w = weight.double() * styles[n].double()[None, :, None, None]
        w = w / (w.square().sum([1, 2, 3], keepdim=True) + 1e-8).sqrt()
        expected.append(torch.nn.functional.conv2d(x[n:n + 1].double(), w, padding=1))
    expected = torch.cat(expected).float()
    for fused in (True, False):
        got = official2.reference_modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def _layer_inputs(G, names):
    seen = {}
    hooks = [G.get_submodule(n).register_forward_pre_hook(lambda m, args, n=n: seen.__setitem__(n, args[0]))
             for n in names]
    _render(G)
    for h in hooks:
        h.remove()
    return seen


def test_raycond2_blocks_concatenate_the_release_embedding_at_both_resolutions():
    torch.manual_seed(0)
    G = _trained(official2.Generator(**SMALL2))
    seen = _layer_inputs(G, ["synthesis.b4.conv1", "synthesis.b16.conv0", "synthesis.b16.conv1"])
    c2w, K = camera.split_label(camera.camera_label([25.0, -30.0], [-10.0, 12.0]))
    for name, res in [("synthesis.b4.conv1", 4), ("synthesis.b16.conv0", 8), ("synthesis.b16.conv1", 16)]:
        assert torch.equal(seen[name][:, -6:], plucker.plucker_embedding(res, res, K, c2w)), name
    assert seen["synthesis.b16.conv0"].shape[1] == G.synthesis.b8.conv1.out_channels + 6


def test_raycond3_layers_see_the_release_embedding_of_their_whole_grid():
    torch.manual_seed(0)
    G = _trained(official3.Generator(**SMALL3))
    names = [f"synthesis.{n}" for n in G.synthesis.layer_names]
    seen = _layer_inputs(G, names)
    c2w, K = camera.split_label(camera.camera_label([25.0, -30.0], [-10.0, 12.0]))
    for name in names:
        x = seen[name]
        assert torch.equal(x[:, -6:], plucker.plucker_embedding(x.shape[2], x.shape[3], K, c2w)), name
    assert seen[names[0]].shape[-1] == 16 + 2 * 2          # margins included, no frustum correction
    assert G.synthesis.get_submodule(names[0][len("synthesis."):])._input_gain().ndim == 0   # rays normalized too


def test_official_mapping_ignores_the_camera():
    torch.manual_seed(0)
    G = _trained(official2.Generator(**SMALL2))
    z = torch.randn([2, G.z_dim])
    c1, c2 = camera.camera_label([0.0, 10.0], 0.0), camera.camera_label([30.0, -20.0], 5.0)
    assert torch.equal(G.mapping(z, c1), G.mapping(z, c2))
    assert "mapping.embed.weight" not in G.state_dict()


def test_official_resnet_architecture_is_refused():
    with pytest.raises(ValueError, match="resnet"):
        official2.Generator(**dict(SMALL2, architecture="resnet"))


def test_random_noise_follows_the_callers_seed():
    torch.manual_seed(0)
    G = _trained(official2.Generator(**SMALL2))
    torch.manual_seed(5)
    a = _render(G, "random")
    torch.manual_seed(5)
    assert torch.equal(a, _render(G, "random"))
    assert np.isfinite(a.numpy()).all()
