"""Ray-conditioned StyleGAN2 generator ("raycond2") and its camera-conditioned discriminator.

Every synthesis convolution concatenates a 6-channel per-pixel ray embedding of the camera
(raycond.rays, Plücker coordinates by default), taken at that layer's input resolution, to its
input features; the layer's modulated weights (and its affine style map) cover those 6 extra
channels. ToRGB layers see the rays only with `ray_torgb=True`. The mapping network ignores the
camera by default, so w carries identity only.

Baselines of the paper stay trainable through options:
- `embedding='none'`: no ray channels at all, `c` is ignored by synthesis (unconditional);
- `camera_in_mapping=True`: the 25 camera values are embedded by the mapping network
  (pose-conditioned baseline). It combines with any embedding; the training config 'posecond2'
  uses `embedding='none', camera_in_mapping=True`.
Everything else (layers, parameter names, fp16 rules, CPU speed-ups) is reused from
training.networks_stylegan2, whose building blocks are subclassed here.
"""

import torch

from raycond import rays as raycond_rays
from torch_utils import misc
from torch_utils import persistence
from training import networks_stylegan2 as sg2

RAY_CHANNELS = 6
CAMERA_DIM = 25
EMBEDDING_KINDS = tuple(raycond_rays.EMBEDDINGS) + ('none',)

# ----------------------------------------------------------------------------


def check_camera(c, batch_size, where, c_dim=CAMERA_DIM):
    """Return c as float32 [batch_size or 1, c_dim]; ValueError with a clear message otherwise."""
    if c is None:
        raise ValueError(f'{where}: camera label c is required, expected a tensor of shape [{batch_size}, {c_dim}]')
    if not torch.is_tensor(c):
        c = torch.as_tensor(c)
    if c.ndim != 2 or c.shape[1] != c_dim or c.shape[0] not in (1, batch_size):
        raise ValueError(f'{where}: camera label c must have shape [{batch_size}, {c_dim}] '
                         f'(or [1, {c_dim}]), got {list(c.shape)}')
    return c.to(torch.float32)


def check_embedding(embedding):
    if embedding not in EMBEDDING_KINDS:
        raise ValueError(f'embedding must be one of {", ".join(EMBEDDING_KINDS)}, got {embedding!r}')


def camera_for_mapping(c, z, c_dim):
    """The camera label a camera-aware mapping network embeds: checked and broadcast to z's batch."""
    c = check_camera(c, z.shape[0] if z is not None else c.shape[0], 'G.mapping', c_dim=c_dim)
    if z is not None and c.shape[0] != z.shape[0]:
        c = c.expand(z.shape[0], -1)
    return c


class RayBank:
    """Ray embeddings for one forward pass: each resolution is computed once (through the
    raycond.rays cache) and converted once per (dtype, memory format) that a layer asks for."""

    def __init__(self, kind, c, batch_size, device):
        self.kind = kind
        self.c = c.to(device)
        self.batch_size = batch_size
        self._base = {}
        self._converted = {}

    def prepare(self, resolution, dtype, memory_format):
        """Compute (once) the rays at `resolution` in the given dtype and memory format."""
        key = (resolution, dtype, memory_format == torch.channels_last)
        if key not in self._converted:
            self._convert(key)

    def get(self, resolution, like):
        """Rays (N, 6, resolution, resolution) matching `like`'s dtype and memory format."""
        channels_last = like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous()
        key = (resolution, like.dtype, channels_last)
        r = self._converted.get(key)
        return r if r is not None else self._convert(key)

    @torch.compiler.disable
    def _convert(self, key):
        resolution, dtype, channels_last = key
        base = self._base.get(resolution)
        if base is None:
            base = raycond_rays.ray_embedding(self.kind, self.c, resolution)
            if base.shape[0] != self.batch_size:
                base = base.expand(self.batch_size, -1, -1, -1)
            self._base[resolution] = base
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        r = base.to(dtype=dtype).contiguous(memory_format=fmt)
        self._converted[key] = r
        return r


def _with_rays(x, rays, resolution):
    if rays is None:
        raise ValueError('ray-conditioned layer called without rays (pass c to the synthesis network)')
    r = rays.get(resolution, x)
    misc.assert_shape(r, [x.shape[0], None, x.shape[2], x.shape[3]])
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # Concatenating along the innermost (NHWC) axis is about twice as fast as along dim 1.
        return torch.cat([x.permute(0, 2, 3, 1), r.permute(0, 2, 3, 1)], dim=3).permute(0, 3, 1, 2)
    return torch.cat([x, r], dim=1)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class RaySynthesisLayer(sg2.SynthesisLayer):
    """SynthesisLayer whose input is [features, rays at the input resolution]."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, ray_channels=RAY_CHANNELS, **kwargs):
        super().__init__(in_channels + ray_channels, out_channels, w_dim=w_dim, resolution=resolution, **kwargs)
        self.feature_channels = in_channels
        self.ray_channels = ray_channels

    def forward(self, x, w, rays=None, **kwargs):
        x = _with_rays(x, rays, self.resolution // self.up)
        return super().forward(x, w, **kwargs)


@persistence.persistent_class
class RayToRGBLayer(sg2.ToRGBLayer):
    """ToRGBLayer whose input is [features, rays at the output resolution]."""

    def __init__(self, in_channels, out_channels, w_dim, ray_channels=RAY_CHANNELS, **kwargs):
        super().__init__(in_channels + ray_channels, out_channels, w_dim=w_dim, **kwargs)
        self.feature_channels = in_channels
        self.ray_channels = ray_channels

    def forward(self, x, w, fused_modconv=True, rays=None):
        x = _with_rays(x, rays, x.shape[-1])
        return super().forward(x, w, fused_modconv=fused_modconv)


@persistence.persistent_class
class RaySynthesisBlock(sg2.SynthesisBlock):
    """SynthesisBlock built from ray-conditioned layers; takes `rays=RayBank` in forward."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last,
                 ray_torgb=False, ray_channels=RAY_CHANNELS, **kwargs):
        # Read by the layer factories, which the base constructor calls.
        self.ray_torgb = ray_torgb
        self.ray_channels = ray_channels
        super().__init__(in_channels, out_channels, w_dim=w_dim, resolution=resolution,
                         img_channels=img_channels, is_last=is_last, **kwargs)

    def _make_conv(self, in_channels, out_channels, **kwargs):
        return RaySynthesisLayer(in_channels, out_channels, ray_channels=self.ray_channels, **kwargs)

    def _make_torgb(self, in_channels, out_channels, **kwargs):
        if self.ray_torgb:
            return RayToRGBLayer(in_channels, out_channels, ray_channels=self.ray_channels, **kwargs)
        return super()._make_torgb(in_channels, out_channels, **kwargs)

    def _run_torgb(self, x, w, fused_modconv, layer_kwargs):
        if self.ray_torgb:
            return self.torgb(x, w, fused_modconv=fused_modconv, rays=layer_kwargs.get('rays'))
        return self.torgb(x, w, fused_modconv=fused_modconv)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisNetwork(sg2.SynthesisNetwork):
    """StyleGAN2 synthesis network whose conv layers see the camera rays: forward(ws, c, ...)."""

    def __init__(self, w_dim, img_resolution, img_channels, embedding='plucker', ray_torgb=False, ray_layers=None,
                 **kwargs):
        check_embedding(embedding)
        self.embedding = embedding
        self.ray_torgb = bool(ray_torgb) and embedding != 'none'
        # Block resolutions whose layers see the rays (None = all): the paper's layer ablation.
        self.ray_layers = None if ray_layers is None else sorted({int(r) for r in ray_layers})
        super().__init__(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **kwargs)
        if self.ray_layers is not None and not set(self.ray_layers) <= set(self.block_resolutions):
            raise ValueError(f'ray_layers {self.ray_layers} must be among the block resolutions '
                             f'{self.block_resolutions}')

    def _block_uses_rays(self, resolution):
        return self.embedding != 'none' and (self.ray_layers is None or resolution in self.ray_layers)

    def _make_block(self, in_channels, out_channels, **kwargs):
        if not self._block_uses_rays(kwargs['resolution']):
            return super()._make_block(in_channels, out_channels, **kwargs)
        return RaySynthesisBlock(in_channels, out_channels, ray_torgb=self.ray_torgb, **kwargs)

    @property
    def takes_camera(self):
        """True when the image depends on c through the rays."""
        return self.embedding != 'none'

    def forward(self, ws, c=None, **block_kwargs):
        block_ws = self._split_ws(ws)
        if self.takes_camera:
            block_kwargs['rays'] = self._ray_bank(c, ws, block_kwargs.get('force_fp32', False))
        plain_kwargs = {k: v for k, v in block_kwargs.items() if k != 'rays'}
        x = img = None
        for res, cur_ws in zip(self.block_resolutions, block_ws):
            block = getattr(self, f'b{res}')
            x, img = block(x, img, cur_ws, **(block_kwargs if isinstance(block, RaySynthesisBlock) else plain_kwargs))
        return img

    @torch.compiler.disable
    def _ray_bank(self, c, ws, force_fp32):
        """Validate c and compute every ray embedding this forward pass needs, in the dtype and
        memory format of the block that uses it (eagerly, outside any torch.compile graph)."""
        c = check_camera(c, ws.shape[0], 'G.synthesis')
        bank = RayBank(self.embedding, c, ws.shape[0], ws.device)
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            if not isinstance(block, RaySynthesisBlock):
                continue
            dtype, memory_format = sg2._block_format(block.use_fp16, block.channels_last, force_fp32, ws.device)
            for r in ([res // 2] if res > 4 else []) + [res]:
                bank.prepare(r, dtype, memory_format)
        return bank

    def extra_repr(self):
        return super().extra_repr() + f', embedding={self.embedding}, ray_torgb={self.ray_torgb}, ray_layers={self.ray_layers}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(sg2.MappingNetwork):
    """StyleGAN2 mapping network that accepts (and, with c_dim == 0, ignores) a camera label,
    and reports a malformed one with a clear error when it does use it."""

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        if self.c_dim > 0:
            c = camera_for_mapping(c, z, self.c_dim)
        return super().forward(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                               update_emas=update_emas)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class Generator(torch.nn.Module):
    """Ray-conditioned generator: img = synthesis(mapping(z, c), c). Subclasses (raycond3) swap in
    other synthesis/mapping networks through the two class attributes below."""

    synthesis_class = SynthesisNetwork
    mapping_class = MappingNetwork

    def __init__(self,
        z_dim,                      # Latent z dimensionality.
        c_dim,                      # Camera label dimensionality (25).
        w_dim,                      # w dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs={},          # Arguments for MappingNetwork.
        embedding='plucker',        # Ray embedding: 'plucker', 'origin_dir', 'two_plane' or 'none'.
        ray_torgb=False,            # Also feed the rays to ToRGB layers?
        camera_in_mapping=False,    # Feed the camera to the mapping network (pose-conditioned baseline)?
        ray_layers=None,            # Block resolutions that get rays (None = all).
        **synthesis_kwargs,         # Arguments for SynthesisNetwork.
    ):
        check_embedding(embedding)
        if (embedding != 'none' or camera_in_mapping) and c_dim != CAMERA_DIM:
            raise ValueError(f'c_dim must be {CAMERA_DIM} (camera label) for embedding={embedding!r}, '
                             f'camera_in_mapping={camera_in_mapping}; got {c_dim}')
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.embedding = embedding
        self.ray_torgb = bool(ray_torgb) and embedding != 'none'
        self.camera_in_mapping = bool(camera_in_mapping)
        if ray_layers is not None:
            synthesis_kwargs['ray_layers'] = ray_layers
        self.synthesis = self.synthesis_class(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                              embedding=embedding, ray_torgb=ray_torgb, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = self.mapping_class(z_dim=z_dim, c_dim=c_dim if camera_in_mapping else 0, w_dim=w_dim,
                                      num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, c, update_emas=update_emas, **synthesis_kwargs)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class Discriminator(sg2.Discriminator):
    """StyleGAN2-ADA projection discriminator conditioned on the 25 camera values."""

    def __init__(self, c_dim=CAMERA_DIM, img_resolution=None, img_channels=3, **kwargs):
        if img_resolution is None:
            raise ValueError('Discriminator: img_resolution is required')
        super().__init__(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, **kwargs)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        misc.assert_shape(img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        if self.c_dim > 0:
            c = check_camera(c, img.shape[0], 'D', c_dim=self.c_dim)
            if c.shape[0] != img.shape[0]:
                c = c.expand(img.shape[0], -1)
        return super().forward(img, c, update_emas=update_emas, **block_kwargs)
