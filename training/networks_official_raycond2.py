"""Networks of the official Ray Conditioning release, config 'raycond2', rebuilt from our classes.

Safe loading never runs the module source a pickle carries, so pickles written by the official
release (github.com/echen01/ray-conditioning, `training/networks_raycond2.py`) are rebuilt here:
same class names, constructor arguments and parameter/buffer names, and the same arithmetic in
the same order, so that an image equals, bit for bit on the CPU, the one that executing the
release's code gives. Layers and parameter creation come from training.networks_stylegan2.

How that release conditions StyleGAN2 on the camera (which differs from training.networks_raycond2):
- every block computes `training.plucker.plucker_embedding` (with its pixel-grid quirks) at its
  input and at its own resolution; conv0 sees [features, rays at the input resolution] and conv1
  sees [conv0 output, rays at the block resolution]; the 4x4 block feeds [const, rays] to conv1;
- the `in_channels` a block is constructed with already count the 6 ray channels;
- ToRGB layers never see rays; the mapping network ignores the camera label;
- blocks run in the release's formats: float32 and contiguous memory on the CPU, fp16 (and
  channels-last if asked) only on CUDA; the modulated convolution is StyleGAN2's reference
  computation, not our CPU-tuned one.
The 'resnet' architecture is refused: that release never feeds rays to its conv1 there, so
such a network cannot run at all.
"""

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_resample
from torch_utils.ops import fma
from torch_utils.ops import upfirdn2d
from training import networks_stylegan2 as sg2
from training import plucker

RAY_CHANNELS = 6
RAY_FUNCTION = 'training.plucker.plucker_embedding'

# ----------------------------------------------------------------------------


def reference_modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                               demodulate=True, flip_weight=True, fused_modconv=True):
    """StyleGAN2's modulated convolution computed as the reference implementation does (the
    demodulation coefficients from the per-sample weights, one grouped convolution even for a
    batch of one), so that results agree to the last bit with networks run from release code."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    if x.dtype == torch.float16 and demodulate:   # keep fp16 activations in range
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)

    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)     # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()               # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                            padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            return fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            return x.add_(noise.to(x.dtype))
        return x

    with misc.suppress_tracer_warnings():
        batch_size = int(batch_size)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x

# ----------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(sg2.MappingNetwork):
    """The release's mapping network: StyleGAN2's, taking a camera label it never uses (no
    label embedding whatever c_dim says)."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation='lrelu', lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__(z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers,
                         embed_features=embed_features, layer_features=layer_features, activation=activation,
                         lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)


@persistence.persistent_class
class SynthesisLayer(sg2.SynthesisLayer):
    """StyleGAN2 synthesis layer evaluated with the reference modulated convolution."""

    def modulated_conv(self, x, styles, noise, fused_modconv):
        return reference_modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up,
                                          padding=self.padding, resample_filter=self.resample_filter,
                                          flip_weight=(self.up == 1), fused_modconv=fused_modconv)


@persistence.persistent_class
class ToRGBLayer(sg2.ToRGBLayer):
    """StyleGAN2 ToRGB layer evaluated with the reference modulated convolution."""

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = reference_modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False,
                                       fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


@persistence.persistent_class
class SynthesisBlock(sg2.SynthesisBlock):
    """A release block: `in_channels` (0 for the first block) already counts the ray channels;
    conv1 takes out_channels + 6. `embedding` is accepted and ignored, as the release does (it
    always uses plucker_embedding)."""

    # State attributes that decide what a release block computes: raycond.rebuild refuses a file
    # whose state says otherwise (an edited release calling another embedding, say).
    record_attributes = {'embedding': RAY_FUNCTION, 'ray_cond': True}

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture='skip',
                 embedding='plucker', **kwargs):
        if architecture == 'resnet':
            raise ValueError("the official raycond2 'resnet' architecture cannot run (its conv1 never gets "
                             "the rays it was built for); only 'skip' and 'orig' are supported")
        super().__init__(in_channels, out_channels, w_dim=w_dim, resolution=resolution, img_channels=img_channels,
                         is_last=is_last, architecture=architecture, **kwargs)
        self.embedding = plucker.plucker_embedding
        self.ray_cond = True

    def _make_conv(self, in_channels, out_channels, **kwargs):
        if kwargs.get('up', 1) == 1:      # conv1 sees [features, rays at the block resolution]
            in_channels += RAY_CHANNELS
        return SynthesisLayer(in_channels, out_channels, **kwargs)

    def _make_torgb(self, in_channels, out_channels, **kwargs):
        return ToRGBLayer(in_channels, out_channels, **kwargs)

    def forward(self, x, img, c, ws, force_fp32=False, fused_modconv=None, update_emas=False, **layer_kwargs):
        _ = update_emas  # unused
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        if ws.device.type != 'cuda':
            force_fp32 = True
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else torch.float32
        memory_format = torch.channels_last if self.channels_last and not force_fp32 else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == 'inference_only':
            fused_modconv = not self.training

        c2w = c[:, :16].view(-1, 4, 4)
        intrinsics = c[:, 16:].view(-1, 3, 3)
        res = self.resolution
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            with torch.no_grad():
                rays_next = self.embedding(res, res, intrinsics, c2w, jitter=False)
            x = torch.cat([x, rays_next], dim=1)
        else:
            with torch.no_grad():
                rays_in = self.embedding(res // 2, res // 2, intrinsics, c2w, jitter=False)
                rays_next = self.embedding(res, res, intrinsics, c2w, jitter=False).to(
                    dtype=dtype, memory_format=memory_format)
            x = torch.cat([x, rays_in], dim=1)
            misc.assert_shape(x, [None, self.in_channels, res // 2, res // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = torch.cat([x, rays_next], dim=1)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, res // 2, res // 2])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y
        return x, img


@persistence.persistent_class
class SynthesisNetwork(sg2.SynthesisNetwork):
    """StyleGAN2 synthesis network of release blocks: forward(ws, c, ...)."""

    HALF_EVERY_BLOCK_IN_CPU_INFERENCE = False   # the release's blocks choose their own dtype

    def _make_block(self, in_channels, out_channels, **kwargs):
        if kwargs['resolution'] > 4:
            in_channels += RAY_CHANNELS
        return SynthesisBlock(in_channels, out_channels, **kwargs)

    def forward(self, ws, c, **block_kwargs):
        x = img = None
        for res, cur_ws in zip(self.block_resolutions, self.split_ws(ws)):
            x, img = getattr(self, f'b{res}')(x, img, c, cur_ws, **block_kwargs)
        return img


@persistence.persistent_class
class Generator(sg2.Generator):
    """The release's generator: img = synthesis(mapping(z, c), c); StyleGAN2's constructor and
    forward (the mapping network is given c_dim and ignores it, as in the release)."""

    synthesis_class = SynthesisNetwork
    mapping_class = MappingNetwork

    def synthesize(self, ws, c, **synthesis_kwargs):
        return self.synthesis(ws, c, **synthesis_kwargs)
