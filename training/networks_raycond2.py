"""Ray-conditioned StyleGAN2 generator ("raycond2") and its camera-conditioned discriminator.

Every synthesis convolution concatenates a 6-channel per-pixel ray embedding of the camera
(raycond.rays; Plücker by default) at its input resolution to its input features, and its
modulated weights and affine style map cover those channels. ToRGB layers see the rays only with
`ray_torgb=True`; the mapping network ignores the camera unless `camera_in_mapping=True` (the
pose-conditioned baseline); `embedding='none'` is the unconditional one. Everything else
(constructors, parameter names, fp16 rules, CPU speed-ups) is training.networks_stylegan2's,
whose classes are subclassed here through their hooks.
"""

import torch

from raycond import camera as cam
from raycond import rays as raycond_rays
from torch_utils import misc
from torch_utils import persistence
from training import networks_stylegan2 as sg2

RAY_CHANNELS = 6
CAMERA_DIM = cam.LABEL_DIM  # name kept: the embedded source of older raycond3 pickles reads it
EMBEDDING_KINDS = tuple(raycond_rays.EMBEDDINGS) + ('none',)
USES_RAYCOND_PRECISION = True   # blocks are training.networks_stylegan2's (raycond.precision.follows_rule)
# Names that the embedded source of older raycond3 pickles calls: check_camera, check_embedding,
# camera_for_mapping (see docs/compatibility.md).

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
    """Refuse an unknown `embedding` option at construction, before any layer is built."""
    if embedding not in EMBEDDING_KINDS:
        raise ValueError(f'embedding must be one of {", ".join(EMBEDDING_KINDS)}, got {embedding!r}')


def camera_for_batch(c, batch_size, where, c_dim=CAMERA_DIM):
    """check_camera, then one camera broadcast to the batch (embedding c needs a row per sample)."""
    c = check_camera(c, batch_size, where, c_dim=c_dim)
    return c.expand(batch_size, -1) if c.shape[0] != batch_size else c


def _with_rays(x, rays, resolution):
    if rays is None:
        raise ValueError('ray-conditioned layer called without rays (pass c to the synthesis network)')
    return rays.append_to(x, resolution)


def camera_for_mapping(c, z, c_dim):
    return camera_for_batch(c, z.shape[0] if z is not None else len(c), 'G.mapping', c_dim=c_dim)


class CameraMapping:
    """Mixin for a mapping network that accepts (and, with c_dim == 0, ignores) a camera label,
    and reports a malformed one with a clear error when it does use it."""

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        if self.c_dim > 0:
            c = camera_for_mapping(c, z, self.c_dim)
        return super().forward(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                               update_emas=update_emas)

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

    def _make_block(self, in_channels, out_channels, **kwargs):
        if self.embedding == 'none' or kwargs['resolution'] not in (self.ray_layers or self.block_resolutions):
            return super()._make_block(in_channels, out_channels, **kwargs)
        return RaySynthesisBlock(in_channels, out_channels, ray_torgb=self.ray_torgb, **kwargs)

    @property
    def takes_camera(self):
        """True when the image depends on c through the rays."""
        return self.embedding != 'none'

    def forward(self, ws, c=None, **block_kwargs):
        if self.takes_camera:
            with sg2.blocks_half(sg2.all_blocks_half(self, ws.device)):   # as the blocks will run
                block_kwargs['rays'] = self._ray_bank(c, ws, block_kwargs.get('force_fp32', False))
        return super().forward(ws, **block_kwargs)

    def _run_block(self, block, x, img, ws, block_kwargs):
        if not isinstance(block, RaySynthesisBlock):
            block_kwargs = {k: v for k, v in block_kwargs.items() if k != 'rays'}
        return block(x, img, ws, **block_kwargs)

    @torch.compiler.disable
    def _ray_bank(self, c, ws, force_fp32):
        """Validate c and compute every ray embedding this forward pass needs, in the dtype and
        memory format of the block that uses it (eagerly, outside any torch.compile graph)."""
        c = check_camera(c, ws.shape[0], 'G.synthesis')
        bank = raycond_rays.RayBank(self.embedding, c, ws.shape[0], ws.device)
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            if not isinstance(block, RaySynthesisBlock):
                continue
            dtype, memory_format = sg2.block_format(block.use_fp16, block.channels_last, force_fp32, ws.device)
            for r in ([res // 2] if res > 4 else []) + [res]:
                bank.prepare(r, dtype, memory_format)
        return bank

    def extra_repr(self):
        return super().extra_repr() + f', embedding={self.embedding}, ray_torgb={self.ray_torgb}, ray_layers={self.ray_layers}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(CameraMapping, sg2.MappingNetwork):
    """StyleGAN2 mapping network that takes the camera label (see CameraMapping)."""

# ----------------------------------------------------------------------------


@persistence.persistent_class
class Generator(sg2.Generator):
    """Ray-conditioned generator: img = synthesis(mapping(z, c), c). StyleGAN2's constructor and
    forward with the networks above; raycond3 swaps in its own through the same class hooks."""

    synthesis_class = SynthesisNetwork
    mapping_class = MappingNetwork

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={},
                 embedding='plucker', ray_torgb=False, camera_in_mapping=False, ray_layers=None, **synthesis_kwargs):
        """StyleGAN2's arguments (c_dim = 25, the camera label) and: `embedding` 'plucker',
        'origin_dir', 'two_plane' or 'none'; `ray_torgb` also feeds the rays to ToRGB layers;
        `camera_in_mapping` feeds c to the mapping network; `ray_layers` lists the block
        resolutions that get rays (None = all)."""
        check_embedding(embedding)
        if (embedding != 'none' or camera_in_mapping) and c_dim != CAMERA_DIM:
            raise ValueError(f'c_dim must be {CAMERA_DIM} (camera label) for embedding={embedding!r}, '
                             f'camera_in_mapping={camera_in_mapping}; got {c_dim}')
        self.embedding = embedding
        self.ray_torgb = bool(ray_torgb) and embedding != 'none'
        self.camera_in_mapping = bool(camera_in_mapping)
        if ray_layers is not None:
            synthesis_kwargs['ray_layers'] = ray_layers
        super().__init__(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=mapping_kwargs,
                         embedding=embedding, ray_torgb=ray_torgb, **synthesis_kwargs)

    @property
    def mapping_c_dim(self):
        """The mapping network embeds the camera only in the pose-conditioned baseline."""
        return self.c_dim if self.camera_in_mapping else 0

    def synthesize(self, ws, c, **synthesis_kwargs):
        return self.synthesis(ws, c, **synthesis_kwargs)

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
            c = camera_for_batch(c, img.shape[0], 'D', c_dim=self.c_dim)
        return super().forward(img, c, update_emas=update_emas, **block_kwargs)
