"""StyleGAN2 generator and discriminator (configs E/F of Karras et al., "Analyzing and Improving
the Image Quality of StyleGAN"), written so that class names, constructor arguments, forward
signatures and parameter/buffer names match NVIDIA's StyleGAN2-ADA / StyleGAN3 code base: their
state dicts load into these modules and vice versa.

Beyond the reference behaviour this module is tuned for inference on the CPU:
- on the CPU, synthesis and discriminator blocks keep activations in channels-last memory
  format (oneDNN convolutions run several times faster on NHWC than on NCHW tensors);
- demodulation coefficients come from a precomputed (out, in) table of squared weight sums
  instead of squaring the whole per-sample weight tensor;
- style, demodulation and weight are multiplied in a single pass in the fused path;
- the fused (grouped-convolution) path is used for batch 1, the non-fused path (one shared
  convolution, activations scaled before/after) for larger CPU batches in channels-last format.
Blocks marked `use_fp16` run in the dtype raycond.precision picks for the device: float16 on
CUDA, bfloat16 on a CPU with native bfloat16, float32 elsewhere or with `force_fp32`. For inference
(no gradients) on a CPU with native bfloat16, every synthesis block of a network that has such
blocks runs in bfloat16 (bfloat16 has float32's range, so the low resolutions need no float32:
0.91x the time of a 256² generator, 39.7-43.7 dB from the float32 render; docs/performance.md);
training and photo inversion, which take gradients, keep the blocks as marked.
"""

import contextlib
import contextvars

import numpy as np
import torch

from raycond import precision
from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import conv2d_resample
from torch_utils.ops import fma
from torch_utils.ops import upfirdn2d

# Use channels-last activations for blocks running on the CPU (numerically equivalent; faster).
CPU_CHANNELS_LAST = True
# Blocks take their half dtype from raycond.precision (bf16 on a CPU with native bf16): tools may
# leave force_fp32 off on the CPU for networks of this module (raycond.precision.follows_rule).
USES_RAYCOND_PRECISION = True


# True while a synthesis network runs all its blocks in the half dtype (CPU inference, see above).
_ALL_BLOCKS_HALF = contextvars.ContextVar('raycond_all_blocks_half', default=False)


def all_blocks_half(synthesis, device) -> bool:
    """Whether `synthesis` runs every block in the half dtype on `device`: inference (no gradients)
    on a CPU with native bfloat16, when its class allows it and any of its blocks is `use_fp16`."""
    return (torch.device(device).type == 'cpu' and not torch.is_grad_enabled()
            and getattr(synthesis, 'HALF_EVERY_BLOCK_IN_CPU_INFERENCE', False)
            and precision.half_dtype(device) is not None
            and any(getattr(b, 'use_fp16', False) for b in synthesis.blocks()))


@contextlib.contextmanager
def blocks_half(enabled: bool):
    """Within it, block_format gives every block the half dtype (all_blocks_half's decision)."""
    token = _ALL_BLOCKS_HALF.set(bool(enabled))
    try:
        yield
    finally:
        _ALL_BLOCKS_HALF.reset(token)


def block_format(use_fp16, channels_last, force_fp32, device):
    """(dtype, memory_format) for a block: a `use_fp16` block in raycond.precision's half dtype for
    the device (fp16 on CUDA, bf16 on a CPU with native bf16), every block inside `blocks_half(True)`,
    channels-last on the CPU. Public because subclasses that prepare inputs for a block (the ray
    embeddings) must match it."""
    half = None if force_fp32 else precision.half_dtype(device)
    use_fp16 = use_fp16 or _ALL_BLOCKS_HALF.get()
    dtype = half if use_fp16 and half is not None else torch.float32
    if channels_last and half is not None:
        memory_format = torch.channels_last
    elif device.type == 'cpu' and CPU_CHANNELS_LAST:
        memory_format = torch.channels_last
    else:
        memory_format = torch.contiguous_format
    return dtype, memory_format


def check_block_dtype(x, dtype):
    """A block's output has the block's dtype, except under torch.autocast, which picks its own."""
    if x.dtype != dtype and not _autocast_enabled(x.device):
        raise AssertionError(f'block output dtype {x.dtype}, expected {dtype}')


def _autocast_enabled(device):
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:   # torch < 2.4: one query per device type
        return torch.is_autocast_cpu_enabled() if device.type == 'cpu' else torch.is_autocast_enabled()


# The name before it became public: the embedded source of raycond2 pickles written before then
# calls it (see docs/compatibility.md).
_block_format = block_format

# ----------------------------------------------------------------------------


@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Scale x to unit root-mean-square along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

# ----------------------------------------------------------------------------


@misc.profiled_function
def modulated_conv2d(
    x,                          # Input [batch, in_channels, height, width].
    weight,                     # Weight [out_channels, in_channels, kh, kw].
    styles,                     # Per-sample input scales [batch, in_channels].
    noise=None,                 # Optional noise added to the output.
    up=1,                       # Integer upsampling factor.
    down=1,                     # Integer downsampling factor.
    padding=0,                  # Padding with respect to the upsampled image.
    resample_filter=None,       # Prepared low-pass filter (upfirdn2d.setup_filter) for resampling.
    demodulate=True,            # Normalize each output channel's effective weight?
    flip_weight=True,           # False = convolution, True = correlation (as torch conv2d).
    fused_modconv=True,         # One grouped convolution with per-sample weights?
    weight_sqsum=None,          # Optional precomputed weight.square().sum([2, 3]) [out, in] (fp32 only).
):
    """StyleGAN2 modulated convolution (modulation, convolution, optional demodulation)."""
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    # Keep fp16 activations in range by pre-scaling weight and styles.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) /
                           weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)
        weight_sqsum = None

    # Demodulation: sum_{i,k} (W_oik * s_i)^2 = sum_i s_i^2 * (sum_k W_oik^2).
    dcoefs = None
    if demodulate:
        wsq = weight_sqsum if weight_sqsum is not None else weight.square().sum(dim=[2, 3])  # [OI]
        dcoefs = (styles.square() @ wsq.t() + 1e-8).rsqrt()           # [NO]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up,
                                            down=down, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            x = fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise.to(x.dtype))
        return x

    # Fused: per-sample weights, one grouped convolution over the whole batch.
    scale = styles.reshape(batch_size, 1, -1)                          # [N1I]
    if demodulate:
        scale = scale * dcoefs.reshape(batch_size, -1, 1)              # [NOI]
    w = weight.unsqueeze(0) * scale.unsqueeze(-1).unsqueeze(-1)        # [NOIkk]
    if not isinstance(batch_size, int):  # traced shape: treat as a constant
        with misc.suppress_tracer_warnings():
            batch_size = int(batch_size)
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    if batch_size != 1:
        x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    if batch_size != 1:
        x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise.to(x.dtype))
    return x

# ----------------------------------------------------------------------------


@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate and a fused bias + activation."""

    def __init__(self,
        in_features,                # Number of input features.
        out_features,               # Number of output features.
        bias=True,                  # Add a bias before the activation?
        activation='linear',        # 'linear', 'relu', 'lrelu', ...
        lr_multiplier=1,            # Learning-rate multiplier.
        bias_init=0,                # Initial bias value.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    """Convolution with equalized learning rate, optional FIR resampling, bias + activation."""

    def __init__(self,
        in_channels,                # Number of input channels.
        out_channels,               # Number of output channels.
        kernel_size,                # Kernel width and height.
        bias=True,                  # Add a bias before the activation?
        activation='linear',        # 'linear', 'relu', 'lrelu', ...
        up=1,                       # Integer upsampling factor.
        down=1,                     # Integer downsampling factor.
        resample_filter=[1, 3, 3, 1],  # Low-pass filter for resampling.
        conv_clamp=None,            # Clamp outputs to +-X, None = no clamping.
        channels_last=False,        # Store the weight in channels-last format?
        trainable=True,             # Parameters (True) or buffers (False)?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias is not None:
                self.register_buffer('bias', bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1)  # slightly faster
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up,
                                            down=self.down, padding=self.padding, flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return ' '.join([
            f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, activation={self.activation:s},',
            f'up={self.up}, down={self.down}'])

# ----------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """z (and optional label c) -> w, broadcast to num_ws copies; tracks w_avg for truncation."""

    def __init__(self,
        z_dim,                      # Latent z dimensionality, 0 = no latent.
        c_dim,                      # Label c dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent w dimensionality.
        num_ws,                     # Number of ws to output, None = do not broadcast.
        num_layers=8,               # Number of mapping layers.
        embed_features=None,        # Label embedding size, None = w_dim.
        layer_features=None,        # Hidden layer size, None = w_dim.
        activation='lrelu',         # Activation function.
        lr_multiplier=0.01,         # Learning-rate multiplier of the mapping layers.
        w_avg_beta=0.998,           # Decay of the w moving average, None = do not track.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)

        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = None
        with torch.autograd.profiler.record_function('input'):
            if self.z_dim > 0:
                misc.assert_shape(z, [None, self.z_dim])
                x = normalize_2nd_moment(z.to(torch.float32))
            if self.c_dim > 0:
                misc.assert_shape(c, [None, self.c_dim])
                y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
                x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if update_emas and self.w_avg_beta is not None:
            with torch.autograd.profiler.record_function('update_w_avg'):
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            with torch.autograd.profiler.record_function('broadcast'):
                x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            with torch.autograd.profiler.record_function('truncate'):
                assert self.w_avg_beta is not None, 'truncation needs w_avg (w_avg_beta is None)'
                if self.num_ws is None or truncation_cutoff is None:
                    x = self.w_avg.lerp(x, truncation_psi)
                else:
                    x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling) + noise + bias + activation."""

    def __init__(self,
        in_channels,                # Number of input channels.
        out_channels,               # Number of output channels.
        w_dim,                      # w dimensionality.
        resolution,                 # Output resolution of this layer.
        kernel_size=3,              # Convolution kernel size.
        up=1,                       # Integer upsampling factor.
        use_noise=True,             # Add per-pixel noise?
        activation='lrelu',         # Activation function.
        resample_filter=[1, 3, 3, 1],  # Low-pass filter for upsampling.
        conv_clamp=None,            # Clamp outputs to +-X, None = no clamping.
        channels_last=False,        # Store the weight in channels-last format?
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.in_channels, in_resolution, in_resolution])
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength
        x = self.modulated_conv(x, styles, noise, fused_modconv)

        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp)

    def modulated_conv(self, x, styles, noise, fused_modconv):
        """The modulated convolution (+ noise) of this layer; subclasses that must reproduce another
        release's arithmetic replace only this step."""
        # On the CPU, per-sample weights only pay off when they are smaller than the activations.
        if fused_modconv and x.device.type == 'cpu' and x.numel() < self.weight.numel():
            fused_modconv = False
        weight, weight_sqsum = self._inference_weight(x)
        flip_weight = (self.up == 1)  # slightly faster
        return modulated_conv2d(x=x, weight=weight, styles=styles, noise=noise, up=self.up,
                                padding=self.padding, resample_filter=self.resample_filter,
                                flip_weight=flip_weight, fused_modconv=fused_modconv,
                                weight_sqsum=weight_sqsum)

    def _inference_weight(self, x):
        """(weight, weight_sqsum) for inference, cached per weight version; (self.weight, None)
        when gradients are needed. On the CPU with channels-last activations the cached weight is
        laid out as oneDNN wants it (channels-last, or its transpose for upsampling layers), which
        saves a reorder of every large weight on every call. On the CPU the weight is also cached in
        the activations' dtype (bfloat16 layers); the squared sums stay float32. The key holds the
        weight's version counter, which torch's fused optimizers do not advance: code that updates
        weights with one calls `torch_utils.misc.drop_inference_caches` before rendering again (the
        attribute is misc.INFERENCE_CACHE, spelt out here so that pickles embedding this source load
        under releases whose misc lacks the name)."""
        weight = self.weight
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return weight, None
        layout = None
        cpu = x.device.type == 'cpu'
        if cpu and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() and weight.shape[2] > 1:
            layout = 'up' if self.up > 1 else 'cl'
        dtype = x.dtype if cpu else weight.dtype    # CUDA fp16 layers rescale the float32 weight first
        key = (weight._version, weight.data_ptr(), weight.device, weight.dtype, dtype, layout)
        cache = self.__dict__.get('_inference_cache')
        if cache is None or cache[0] != key:
            w = weight.detach()
            if layout == 'cl':
                w = w.contiguous(memory_format=torch.channels_last)
            elif layout == 'up':  # conv2d_resample transposes to [in, out, k, k]: make that channels-last
                w = w.transpose(0, 1).contiguous(memory_format=torch.channels_last).transpose(0, 1)
            cache = (key, w.to(dtype), w.square().sum(dim=[2, 3]))   # .to keeps the layout
            self.__dict__['_inference_cache'] = cache
        return cache[1], cache[2]

    def __getstate__(self):
        state = dict(super().__getstate__() if hasattr(super(), '__getstate__') else self.__dict__)
        state.pop('_inference_cache', None)
        return state

    def extra_repr(self):
        return ' '.join([
            f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d},',
            f'resolution={self.resolution:d}, up={self.up}, activation={self.activation:s}'])

# ----------------------------------------------------------------------------


@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 convolution (no demodulation) from features to image channels."""

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        if x.dtype == torch.bfloat16:   # CPU: oneDNN's bf16 1x1 conv to 3 channels is slower than float32's
            x = x.to(torch.float32)
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        return f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: [upsampling conv0], conv1, [ToRGB], [skip]."""

    def __init__(self,
        in_channels,                # Number of input channels, 0 = first block (learned constant).
        out_channels,               # Number of output channels.
        w_dim,                      # w dimensionality.
        resolution,                 # Resolution of this block.
        img_channels,               # Number of output color channels.
        is_last,                    # Is this the last block?
        architecture='skip',        # 'orig', 'skip' or 'resnet'.
        resample_filter=[1, 3, 3, 1],  # Low-pass filter for resampling.
        conv_clamp=256,             # Clamp conv outputs to +-X, None = no clamping.
        use_fp16=False,             # Run this block in fp16 (CUDA only)?
        fp16_channels_last=False,   # Use channels-last format with fp16?
        fused_modconv_default=True,  # Default fused_modconv; 'inference_only' = fused only in eval mode.
        **layer_kwargs,             # Arguments for SynthesisLayer.
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = self._make_conv(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                         resample_filter=resample_filter, conv_clamp=conv_clamp,
                                         channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1

        self.conv1 = self._make_conv(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                     conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1

        if is_last or architecture == 'skip':
            self.torgb = self._make_torgb(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                          channels_last=self.channels_last)
            self.num_torgb += 1

        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    # Factories and the ToRGB call are hooks for subclasses (e.g. ray-conditioned layers).
    def _make_conv(self, in_channels, out_channels, **kwargs):
        return SynthesisLayer(in_channels, out_channels, **kwargs)

    def _make_torgb(self, in_channels, out_channels, **kwargs):
        return ToRGBLayer(in_channels, out_channels, **kwargs)

    def _run_torgb(self, x, w, fused_modconv, layer_kwargs):
        return self.torgb(x, w, fused_modconv=fused_modconv)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, update_emas=False, **layer_kwargs):
        _ = update_emas  # unused
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        dtype, memory_format = block_format(self.use_fp16, self.channels_last, force_fp32, ws.device)
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == 'inference_only':
            fused_modconv = (not self.training)
        # Grouped convolutions lose channels-last on the CPU; one shared conv is faster there.
        if fused_modconv and ws.shape[0] > 1 and ws.device.type != 'cuda' and memory_format == torch.channels_last:
            fused_modconv = False

        # Input.
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]).contiguous(memory_format=memory_format)
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        # Main layers.
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        # ToRGB.
        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self._run_torgb(x, next(w_iter), fused_modconv, layer_kwargs)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y

        check_block_dtype(x, dtype)
        if img is not None:
            check_block_dtype(img, torch.float32)
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, img_resolution, img_resolution]."""

    def __init__(self,
        w_dim,                      # w dimensionality.
        img_resolution,             # Output resolution (power of two >= 4).
        img_channels,               # Number of color channels.
        channel_base=32768,         # Overall multiplier for the number of channels.
        channel_max=512,            # Maximum number of channels in any layer.
        num_fp16_res=4,             # Use fp16 (CUDA only) for the N highest resolutions.
        **block_kwargs,             # Arguments for SynthesisBlock.
    ):
        if not (isinstance(img_resolution, int) and img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution!r}')
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            out_channels = channels_dict[res]
            use_fp16 = (res >= fp16_resolution)
            is_last = (res == self.img_resolution)
            block = self._make_block(in_channels, out_channels, w_dim=w_dim, resolution=res,
                                     img_channels=img_channels, is_last=is_last, use_fp16=use_fp16, **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def _make_block(self, in_channels, out_channels, **kwargs):
        return SynthesisBlock(in_channels, out_channels, **kwargs)

    def split_ws(self, ws):
        """Per-block views of ws (consecutive blocks share the ToRGB/conv0 w)."""
        with torch.autograd.profiler.record_function('split_ws'):
            misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
            ws = ws.to(torch.float32)
            block_ws = []
            w_idx = 0
            for res in self.block_resolutions:
                block = getattr(self, f'b{res}')
                block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
                w_idx += block.num_conv
        return block_ws

    # The name before it became public, called by the embedded source of older raycond2 pickles.
    _split_ws = split_ws

    def _run_block(self, block, x, img, ws, block_kwargs):
        """Hook: call one block (subclasses choose the keyword arguments each block takes)."""
        return block(x, img, ws, **block_kwargs)

    # Read by raycond.precision.describe: on a CPU with native bfloat16, inference runs every block
    # in bfloat16 once any block is use_fp16 (blocks_half, all_blocks_half above).
    HALF_EVERY_BLOCK_IN_CPU_INFERENCE = True

    def blocks(self):
        """The synthesis blocks, lowest resolution first."""
        return [getattr(self, f'b{res}') for res in self.block_resolutions]

    def forward(self, ws, **block_kwargs):
        x = img = None
        with blocks_half(all_blocks_half(self, ws.device)):
            for res, cur_ws in zip(self.block_resolutions, self.split_ws(ws)):
                x, img = self._run_block(getattr(self, f'b{res}'), x, img, cur_ws, block_kwargs)
        return img

    def extra_repr(self):
        return ' '.join([
            f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d},',
            f'img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d},',
            f'num_fp16_res={self.num_fp16_res:d}'])

# ----------------------------------------------------------------------------


@persistence.persistent_class
class Generator(torch.nn.Module):
    """StyleGAN2 generator: G(z, c) = synthesis(mapping(z, c)).

    Subclasses (StyleGAN3, the ray-conditioned generators) reuse this constructor and forward and
    change only the hooks: the two network classes, `mapping_c_dim` and `synthesize`."""

    synthesis_class = SynthesisNetwork
    mapping_class = MappingNetwork

    def __init__(self,
        z_dim,                      # Latent z dimensionality.
        c_dim,                      # Label c dimensionality.
        w_dim,                      # w dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs={},          # Arguments for MappingNetwork.
        **synthesis_kwargs,         # Arguments for SynthesisNetwork.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = self.synthesis_class(w_dim=w_dim, img_resolution=img_resolution,
                                              img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = self.mapping_class(z_dim=z_dim, c_dim=self.mapping_c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                          **mapping_kwargs)

    @property
    def mapping_c_dim(self):
        """How many label values the mapping network embeds: all of c here."""
        return self.c_dim

    def synthesize(self, ws, c, **synthesis_kwargs):
        """The image for ws. StyleGAN2's synthesis does not see the label; subclasses whose
        synthesis does (rays of the camera) pass c on."""
        _ = c  # unused
        return self.synthesis(ws, **synthesis_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesize(ws, c, update_emas=update_emas, **synthesis_kwargs)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the discriminator: [FromRGB], conv0, downsampling conv1, [skip]."""

    def __init__(self,
        in_channels,                # Number of input channels, 0 = first block.
        tmp_channels,               # Number of intermediate channels.
        out_channels,               # Number of output channels.
        resolution,                 # Resolution of this block.
        img_channels,               # Number of input color channels.
        first_layer_idx,            # Index of the first layer (for freeze_layers).
        architecture='resnet',      # 'orig', 'skip' or 'resnet'.
        activation='lrelu',         # Activation function.
        resample_filter=[1, 3, 3, 1],  # Low-pass filter for resampling.
        conv_clamp=None,            # Clamp conv outputs to +-X, None = no clamping.
        use_fp16=False,             # Run this block in fp16 (CUDA only)?
        fp16_channels_last=False,   # Use channels-last format with fp16?
        freeze_layers=0,            # Freeze-D: number of leading layers kept as buffers.
    ):
        if in_channels not in (0, tmp_channels):
            raise ValueError(f'in_channels must be 0 or tmp_channels ({tmp_channels}), got {in_channels}')
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))

        self.num_layers = 0

        def trainable():
            layer_idx = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return layer_idx >= freeze_layers

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       trainable=trainable(), conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 trainable=trainable(), conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 trainable=trainable(), resample_filter=resample_filter, conv_clamp=conv_clamp,
                                 channels_last=self.channels_last)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=trainable(), resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False):
        device = (x if x is not None else img).device
        dtype, memory_format = block_format(self.use_fp16, self.channels_last, force_fp32, device)

        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0 or self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        check_block_dtype(x, dtype)
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    """Appends the mean standard deviation over minibatch groups as extra feature maps."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        with misc.suppress_tracer_warnings():
            G = torch.min(torch.as_tensor(self.group_size), torch.as_tensor(N)) if self.group_size is not None else N
        F = self.num_channels
        c = C // F
        y = x.reshape(G, -1, F, c, H, W)    # [GnFcHW] groups of G samples, F channel groups
        y = y - y.mean(dim=0)               # deviation from the group mean
        y = y.square().mean(dim=0)          # [nFcHW] variance over the group
        y = (y + 1e-8).sqrt()               # standard deviation
        y = y.mean(dim=[2, 3, 4])           # [nF] mean over channels and pixels
        y = y.reshape(-1, F, 1, 1)
        y = y.repeat(G, 1, H, W)            # [NFHW]
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels:d}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head: [FromRGB], minibatch-std, conv, fc, out, projection onto the label map."""

    def __init__(self,
        in_channels,                # Number of input channels.
        cmap_dim,                   # Mapped label dimensionality, 0 = no label.
        resolution,                 # Resolution of this block.
        img_channels,               # Number of input color channels.
        architecture='resnet',      # 'orig', 'skip' or 'resnet'.
        mbstd_group_size=4,         # Minibatch-std group size, None = whole minibatch.
        mbstd_num_channels=1,       # Minibatch-std features, 0 = disable.
        activation='lrelu',         # Activation function.
        conv_clamp=None,            # Clamp conv outputs to +-X, None = no clamping.
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3,
                                activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        _ = force_fp32  # unused
        dtype = torch.float32
        memory_format = torch.contiguous_format

        x = x.to(dtype=dtype, memory_format=memory_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            x = x + self.fromrgb(img)

        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)

        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))

        check_block_dtype(x, dtype)
        return x

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class Discriminator(torch.nn.Module):
    """StyleGAN2 residual discriminator with projection conditioning on the label c."""

    def __init__(self,
        c_dim,                      # Label c dimensionality, 0 = unconditional.
        img_resolution,             # Input resolution.
        img_channels,               # Number of input color channels.
        architecture='resnet',      # 'orig', 'skip' or 'resnet'.
        channel_base=32768,         # Overall multiplier for the number of channels.
        channel_max=512,            # Maximum number of channels in any layer.
        num_fp16_res=4,             # Use fp16 (CUDA only) for the N highest resolutions.
        conv_clamp=256,             # Clamp conv outputs to +-X, None = no clamping.
        cmap_dim=None,              # Mapped label dimensionality, None = channels at 4x4.
        block_kwargs={},            # Arguments for DiscriminatorBlock.
        mapping_kwargs={},          # Arguments for MappingNetwork.
        epilogue_kwargs={},         # Arguments for DiscriminatorEpilogue.
    ):
        if not (isinstance(img_resolution, int) and img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution!r}')
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0

        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            tmp_channels = channels_dict[res]
            out_channels = channels_dict[res // 2]
            use_fp16 = (res >= fp16_resolution)
            block = DiscriminatorBlock(in_channels, tmp_channels, out_channels, resolution=res,
                                       first_layer_idx=cur_layer_idx, use_fp16=use_fp16,
                                       **block_kwargs, **common_kwargs)
            setattr(self, f'b{res}', block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4,
                                        **epilogue_kwargs, **common_kwargs)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        _ = update_emas  # unused
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = None
        if self.c_dim > 0:
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'
