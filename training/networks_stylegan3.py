"""StyleGAN3 generator (Karras et al., "Alias-Free Generative Adversarial Networks"), configs T and R.

Class names, constructor arguments, forward signatures and parameter/buffer names follow
NVIDIA's StyleGAN3 code base (`MappingNetwork`, `SynthesisInput`, `SynthesisLayer`,
`SynthesisNetwork`, `Generator`; layers named `L{idx}_{size}_{channels}`), so state dicts move
between the two. Config T uses 3x3 convolutions and separable Kaiser filters; config R uses 1x1
convolutions and radially symmetric (jinc) downsampling filters (`conv_kernel=1,
use_radial_filters=True`). The discriminator is StyleGAN2's (training.networks_stylegan2).

Extension points used by training.networks_raycond3: `SynthesisLayer._update_magnitude` /
`_input_gain` (which input channels the magnitude EMA normalizes), `SynthesisNetwork._make_layer`
(which class each layer is) and `SynthesisNetwork._run_layer` (what each layer is called with).
Layers marked `use_fp16` run in raycond.precision's half dtype for the device (fp16 on CUDA, bf16 on
a CPU with native bf16), float32 elsewhere or with `force_fp32`.
"""

import numpy as np
import scipy.signal
import scipy.special
import torch

from raycond import precision
from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import filtered_lrelu
from training import networks_stylegan2 as sg2

NOISE_MODES = ('random', 'const', 'none')
# Layers take their half dtype from raycond.precision: tools may leave force_fp32 off on the CPU
# for networks of this module (raycond.precision.follows_rule).
USES_RAYCOND_PRECISION = True

# ----------------------------------------------------------------------------


@misc.profiled_function
def modulated_conv2d(
    x,                  # Input [batch, in_channels, height, width].
    w,                  # Weight [out_channels, in_channels, kh, kw].
    s,                  # Styles [batch, in_channels].
    demodulate=True,    # Normalize each output channel's modulated weight to unit norm?
    padding=0,          # Padding: int or [pad_h, pad_w].
    input_gain=None,    # Optional input channel scales: [], [in_channels] or [batch, in_channels].
):
    """StyleGAN3 modulated convolution (one grouped convolution for the whole batch)."""
    with misc.suppress_tracer_warnings():
        batch = int(x.shape[0])
    out_ch, in_ch, kh, kw = w.shape
    misc.assert_shape(x, [batch, in_ch, None, None])
    misc.assert_shape(s, [batch, in_ch])

    if demodulate:
        # Pre-normalization keeps fp16 in range; it cancels in the demodulation below.
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    wm = w.unsqueeze(0) * s.reshape(batch, 1, in_ch, 1, 1)                    # [N, O, I, kh, kw]
    if demodulate:
        wm = wm * (wm.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    if input_gain is not None:
        wm = wm * input_gain.expand(batch, in_ch).reshape(batch, 1, in_ch, 1, 1)

    y = conv2d_gradfix.conv2d(input=x.reshape(1, batch * in_ch, *x.shape[2:]),
                              weight=wm.reshape(batch * out_ch, in_ch, kh, kw).to(x.dtype),
                              padding=padding, groups=batch)
    return y.reshape(batch, out_ch, *y.shape[2:])

# ----------------------------------------------------------------------------


@persistence.persistent_class
class FullyConnectedLayer(sg2.FullyConnectedLayer):
    """StyleGAN3 dense layer: adds `weight_init` (std of the initial weight), per-feature
    `bias_init` (array-like) and `trainable` (False = frozen) to the StyleGAN2 layer."""

    def __init__(self,
        in_features,                # Number of input features.
        out_features,               # Number of output features.
        activation='linear',        # 'linear', 'relu', 'lrelu', ...
        bias=True,                  # Add a bias before the activation?
        lr_multiplier=1.0,          # Learning-rate multiplier.
        weight_init=1.0,            # Initial standard deviation of the weight.
        bias_init=0.0,              # Initial bias value(s): scalar or [out_features].
        trainable=True,             # Update this layer during training?
    ):
        super().__init__(in_features, out_features, bias=bias, activation=activation, lr_multiplier=lr_multiplier)
        with torch.no_grad():
            self.weight.mul_(weight_init)
            if self.bias is not None:
                init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features]) / lr_multiplier
                self.bias.copy_(torch.from_numpy(np.array(init, dtype=np.float32)))
        if not trainable:
            self.requires_grad_(False)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(sg2.MappingNetwork):
    """StyleGAN3 mapping network: 2 layers by default, always tracks w_avg; `freeze_layers`
    freezes the first N layers and `freeze_embed` the label embedding (Freeze-M / Freeze-E)."""

    def __init__(self,
        z_dim,                      # Latent z dimensionality.
        c_dim,                      # Label c dimensionality, 0 = no label.
        w_dim,                      # Intermediate latent w dimensionality.
        num_ws,                     # Number of ws to output.
        num_layers=2,               # Number of mapping layers.
        lr_multiplier=0.01,         # Learning-rate multiplier of the mapping layers.
        w_avg_beta=0.998,           # Decay of the w moving average.
        freeze_layers=0,            # Freeze-M: number of leading layers to freeze.
        freeze_embed=False,         # Freeze-E: freeze the label embedding.
    ):
        if z_dim <= 0:
            raise ValueError(f'MappingNetwork: z_dim must be positive, got {z_dim}')
        super().__init__(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers,
                         lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)
        for idx in range(min(freeze_layers, num_layers)):
            getattr(self, f'fc{idx}').requires_grad_(False)
        if freeze_embed and c_dim > 0:
            self.embed.requires_grad_(False)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisInput(torch.nn.Module):
    """Fourier-feature input: `channels` sinusoids with random frequencies inside a disc of radius
    `bandwidth`, rotated/translated by an affine map of w and by the user `transform` buffer,
    then mixed by a learned channel matrix."""

    def __init__(self,
        w_dim,          # Intermediate latent w dimensionality.
        channels,       # Number of output channels.
        size,           # Output size: int or [width, height].
        sampling_rate,  # Output sampling rate.
        bandwidth,      # Output bandwidth (maximum frequency).
    ):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Frequencies drawn from a Gaussian and pushed radially so that they fill the unit disc.
        freqs = torch.randn([channels, 2])
        radius = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radius * radius.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5

        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer('transform', torch.eye(3, 3))  # User inverse transform of the image.
        self.register_buffer('freqs', freqs)                # [channels, 2]
        self.register_buffer('phases', phases)              # [channels]

    def forward(self, w):
        batch = w.shape[0]
        # Learned rotation (r_c, r_s) and translation (t_x, t_y), with the rotation normalized.
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        eye = torch.eye(3, device=w.device, dtype=t.dtype)
        rot = eye.repeat(batch, 1, 1)
        rot[:, 0, 0] = t[:, 0]
        rot[:, 0, 1] = -t[:, 1]
        rot[:, 1, 0] = t[:, 1]
        rot[:, 1, 1] = t[:, 0]
        shift = eye.repeat(batch, 1, 1)
        shift[:, 0, 2] = -t[:, 2]
        shift[:, 1, 2] = -t[:, 3]
        transforms = rot @ shift @ self.transform.unsqueeze(0)              # [N, 3, 3]

        freqs = self.freqs.unsqueeze(0)                                     # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]                               # [N, C, 2]
        # Fade out frequencies that the user transform pushed beyond the band limit.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        # Sample positions (pixel centres) in units where the image spans [-0.5, 0.5].
        width, height = int(self.size[0]), int(self.size[1])
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * width / self.sampling_rate
        theta[1, 1] = 0.5 * height / self.sampling_rate
        grid = torch.nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, height, width], align_corners=False)

        x = torch.einsum('hwk,nck->nhwc', grid[0], freqs) + phases[:, None, None, :]
        x = torch.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        x = x.permute(0, 3, 1, 2)
        misc.assert_shape(x, [batch, self.channels, height, width])
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, channels={self.channels:d}, size={list(self.size)}, '
                f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}')

# ----------------------------------------------------------------------------


def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
    """Low-pass FIR filter: None for 1 tap, else a separable Kaiser-window filter (1-D,
    scipy.signal.firwin) or a radially symmetric jinc filter with a Kaiser window (2-D)."""
    if numtaps < 1:
        raise ValueError(f'numtaps must be >= 1, got {numtaps}')
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               dtype=torch.float32)
    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(pos, pos))
    # jinc: J1(2 pi fc r) / (pi r); numtaps is even here, so r > 0 everywhere.
    f = scipy.special.j1(2 * np.pi * cutoff * r) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    """Modulated conv -> bias -> upsample (fu) -> leaky ReLU -> downsample (fd), with the input
    normalized by a moving average of its magnitude; `is_torgb` makes the final linear 1x1 layer."""

    def __init__(self,
        w_dim,                      # Intermediate latent w dimensionality.
        is_torgb,                   # Final ToRGB layer?
        is_critically_sampled,      # Critically sampled layer (no radial filter)?
        use_fp16,                   # Run in fp16 (on CUDA)?
        in_channels,                # Number of input channels.
        out_channels,               # Number of output channels.
        in_size,                    # Input size: int or [width, height] (including margins).
        out_size,                   # Output size: int or [width, height].
        in_sampling_rate,           # Input sampling rate.
        out_sampling_rate,          # Output sampling rate.
        in_cutoff,                  # Input cutoff frequency.
        out_cutoff,                 # Output cutoff frequency.
        in_half_width,              # Input transition band half-width.
        out_half_width,             # Output transition band half-width.
        conv_kernel=3,              # Convolution kernel size (1 for the ToRGB layer).
        filter_size=6,              # Filter taps relative to the lower resolution when resampling.
        lrelu_upsampling=2,         # Oversampling factor of the leaky ReLU (not for ToRGB).
        use_radial_filters=False,   # Radially symmetric downsampling filter (not critically sampled)?
        conv_clamp=256,             # Clamp outputs to +-X, None = no clamping.
        magnitude_ema_beta=0.999,   # Decay of the input magnitude moving average.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        # Upsampling filter (at the temporary rate, cutting at the input cutoff).
        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate:
            raise ValueError(f'SynthesisLayer: rates {in_sampling_rate} -> {self.tmp_sampling_rate} are not an '
                             f'integer upsampling')
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer('up_filter', design_lowpass_filter(
            numtaps=self.up_taps, cutoff=in_cutoff, width=in_half_width * 2, fs=self.tmp_sampling_rate))

        # Downsampling filter (cutting at the output cutoff; radial for config R).
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        if out_sampling_rate * self.down_factor != self.tmp_sampling_rate:
            raise ValueError(f'SynthesisLayer: rates {self.tmp_sampling_rate} -> {out_sampling_rate} are not an '
                             f'integer downsampling')
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer('down_filter', design_lowpass_filter(
            numtaps=self.down_taps, cutoff=out_cutoff, width=out_half_width * 2, fs=self.tmp_sampling_rate,
            radial=self.down_radial))

        # Padding so that the output lands on out_size, with sample positions placed symmetrically
        # (the "symmetric interpretation" of the paper's appendix).
        needed = (self.out_size - 1) * self.down_factor + 1
        have = (self.in_size + self.conv_kernel - 1) * self.up_factor - (self.up_taps + self.down_taps - 2)
        pad_total = needed - have
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def _update_magnitude(self, x):
        """Move magnitude_ema toward the mean square of the input (training only)."""
        current = x.detach().to(torch.float32).square().mean()
        self.magnitude_ema.copy_(current.lerp(self.magnitude_ema, self.magnitude_ema_beta))

    def _input_gain(self):
        """Scale applied to the input channels: [] or [in_channels]."""
        return self.magnitude_ema.rsqrt()

    def forward(self, x, w, noise_mode='random', force_fp32=False, update_emas=False):
        if noise_mode not in NOISE_MODES:  # StyleGAN3 has no noise inputs; accepted for the API.
            raise ValueError(f'noise_mode must be one of {", ".join(NOISE_MODES)}, got {noise_mode!r}')
        misc.assert_shape(x, [None, self.in_channels, int(self.in_size[1]), int(self.in_size[0])])
        misc.assert_shape(w, [x.shape[0], self.w_dim])

        if update_emas:
            with torch.autograd.profiler.record_function('update_magnitude_ema'):
                self._update_magnitude(x)
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))

        dtype = precision.layer_dtype(x.device, fp32=force_fp32 or not self.use_fp16)
        x = modulated_conv2d(x=x.to(dtype), w=self.weight, s=styles, padding=self.conv_kernel - 1,
                             demodulate=not self.is_torgb, input_gain=self._input_gain())
        x = filtered_lrelu.filtered_lrelu(x=x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
                                          up=self.up_factor, down=self.down_factor, padding=self.padding,
                                          gain=1 if self.is_torgb else np.sqrt(2),
                                          slope=1 if self.is_torgb else 0.2, clamp=self.conv_clamp)
        misc.assert_shape(x, [None, self.out_channels, int(self.out_size[1]), int(self.out_size[0])])
        return x.to(dtype)

    design_lowpass_filter = staticmethod(design_lowpass_filter)

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, '
                f'use_fp16={self.use_fp16}, in_sampling_rate={self.in_sampling_rate:g}, '
                f'out_sampling_rate={self.out_sampling_rate:g}, in_cutoff={self.in_cutoff:g}, '
                f'out_cutoff={self.out_cutoff:g}, in_half_width={self.in_half_width:g}, '
                f'out_half_width={self.out_half_width:g}, in_size={list(self.in_size)}, '
                f'out_size={list(self.out_size)}, in_channels={self.in_channels:d}, out_channels={self.out_channels:d}')

# ----------------------------------------------------------------------------


def layer_schedule(img_resolution, img_channels, channel_base=32768, channel_max=512, num_layers=14,
                   num_critical=2, first_cutoff=2, first_stopband=2**2.1, last_stopband_rel=2**0.3,
                   margin_size=10):
    """Per-layer cutoffs, stopbands, sampling rates, half-widths, sizes and channels (index 0 =
    Fourier input, num_layers = ToRGB): cutoffs and stopbands grow geometrically up to the last
    num_critical + 1 layers, which sit at the image's Nyquist frequency."""
    if num_layers <= num_critical:
        raise ValueError(f'num_layers ({num_layers}) must exceed num_critical ({num_critical})')
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels)


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """Fourier input, num_layers alias-free layers and a ToRGB layer; forward(ws, ...)."""

    def __init__(self,
        w_dim,                      # Intermediate latent w dimensionality.
        img_resolution,             # Output image resolution.
        img_channels,               # Number of color channels.
        channel_base=32768,         # Overall multiplier for the number of channels.
        channel_max=512,            # Maximum number of channels in any layer.
        num_layers=14,              # Number of layers, excluding Fourier features and ToRGB.
        num_critical=2,             # Number of critically sampled layers at the end.
        first_cutoff=2,             # Cutoff frequency of the first layer.
        first_stopband=2**2.1,      # Minimum stopband of the first layer.
        last_stopband_rel=2**0.3,   # Minimum stopband of the last layer, relative to its cutoff.
        margin_size=10,             # Extra pixels around the image in intermediate layers.
        output_scale=0.25,          # Scale factor of the output image.
        num_fp16_res=4,             # Use fp16 for the N highest resolutions (CUDA only).
        **layer_kwargs,             # Arguments for SynthesisLayer.
    ):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        s = layer_schedule(img_resolution, img_channels, channel_base=channel_base, channel_max=channel_max,
                           num_layers=num_layers, num_critical=num_critical, first_cutoff=first_cutoff,
                           first_stopband=first_stopband, last_stopband_rel=last_stopband_rel,
                           margin_size=margin_size)
        rates, sizes, channels = s['sampling_rates'], s['sizes'], s['channels']
        cutoffs, half_widths = s['cutoffs'], s['half_widths']

        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = self._make_layer(
                w_dim=w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(rates[idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(rates[prev]), out_sampling_rate=int(rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f'L{idx}_{layer.out_size[0]}_{layer.out_channels}'
            setattr(self, name, layer)
            self.layer_names.append(name)

    def _make_layer(self, **kwargs):
        return SynthesisLayer(**kwargs)

    def _run_layer(self, layer, x, w, layer_kwargs):
        return layer(x, w, **layer_kwargs)

    def forward(self, ws, **layer_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = self._run_layer(getattr(self, name), x, w, layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return x.to(torch.float32)

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, '
                f'img_channels={self.img_channels:d}, num_layers={self.num_layers:d}, '
                f'num_critical={self.num_critical:d}, margin_size={self.margin_size:d}, '
                f'num_fp16_res={self.num_fp16_res:d}')

# ----------------------------------------------------------------------------


@persistence.persistent_class
class Generator(sg2.Generator):
    """StyleGAN3 generator: img = synthesis(mapping(z, c)); StyleGAN2's constructor and forward
    with the networks above."""

    synthesis_class = SynthesisNetwork
    mapping_class = MappingNetwork
