"""Ray-conditioned StyleGAN3 generator ("raycond3", configs T and R).

The StyleGAN3 counterpart of training.networks_raycond2: every synthesis layer concatenates a
6-channel per-pixel ray embedding of the camera (raycond.rays; Plücker by default) to its input,
and its modulated weights and affine style map cover those extra channels. The final ToRGB layer
sees the rays only with `ray_torgb=True`; the mapping network ignores the camera unless
`camera_in_mapping=True`; `embedding='none'` is the unconditional baseline.

Margins. StyleGAN3 layers work on grids larger than the image: a layer input of `in_size` pixels
at sampling rate `s` extends (in_size - s) / 2 pixels (of size 1/s) beyond every image border
(the Fourier input defines this geometry). The rays are therefore computed for that extended
grid: pixel k of the grid sits at image coordinate u = 0.5 + (k + 0.5 - in_size / 2) / s, an
affine map u = a * u' + b (a = in_size / s, b = (1 - a) / 2) of the grid's own normalized
coordinate u' = (k + 0.5) / in_size. Replacing K by T^-1 K, with T that map, makes raycond.rays
produce for the extended grid exactly the rays of the image's pixels in the centre and the
true continuation of the camera frustum in the margins (no padding artefacts).

Input normalization. StyleGAN3 divides each layer's input by the root of a moving average of its
mean square (`magnitude_ema`). Here that average is taken over the feature channels only and the
ray channels keep gain 1: rays have a fixed, known scale, and mixing them into the average would
let the camera scale the features. Layers, names and fp16 rules are otherwise those of
training.networks_stylegan3, whose classes are subclassed here.
"""

import numpy as np
import torch

from raycond import camera as cam
from raycond import rays as raycond_rays
from torch_utils import misc
from torch_utils import persistence
from training import networks_raycond2 as nr2
from training import networks_stylegan3 as sg3

RAY_CHANNELS = nr2.RAY_CHANNELS
CAMERA_DIM = nr2.CAMERA_DIM
EMBEDDING_KINDS = nr2.EMBEDDING_KINDS
USES_RAYCOND_PRECISION = True   # layers are training.networks_stylegan3's (raycond.precision.follows_rule)
check_camera = nr2.check_camera

# ----------------------------------------------------------------------------


def extended_grid_label(c, size, sampling_rate):
    """Camera labels (N,25) whose normalized intrinsics, on a grid of `size` = [width, height]
    pixels, give the rays of a layer grid at `sampling_rate` centred on the image (margins
    included): K' = T^-1 K with T the map from grid to image coordinates (see module doc)."""
    width, height = (float(v) for v in np.broadcast_to(np.asarray(size), [2]))
    ax, ay = width / sampling_rate, height / sampling_rate
    if ax == 1 and ay == 1:
        return c
    t_inv = torch.tensor([[1 / ax, 0, -(1 - ax) / (2 * ax)],
                          [0, 1 / ay, -(1 - ay) / (2 * ay)],
                          [0, 0, 1]], dtype=torch.float64, device=c.device)
    K = c[:, cam.POSE_DIM:].to(torch.float64).reshape(-1, 3, 3)
    K2 = (t_inv @ K).reshape(-1, cam.INTRINSICS_DIM).to(c.dtype)
    return torch.cat([c[:, :cam.POSE_DIM], K2], dim=1)


def layer_rays(kind, c, size, sampling_rate):
    """Ray embedding (N,6,height,width) of a StyleGAN3 layer grid (`size` = int or [width, height]
    pixels at `sampling_rate`, the image covering its central sampling_rate pixels)."""
    width, height = (int(v) for v in np.broadcast_to(np.asarray(size), [2]))
    return raycond_rays.ray_embedding(kind, extended_grid_label(c, [width, height], sampling_rate),
                                      (height, width))


class LayerRays:
    """The ray embeddings of one forward pass, computed once per (grid size, sampling rate)."""

    def __init__(self, kind, c, batch_size, device):
        self.kind = kind
        self.c = c.to(device)
        self.batch_size = batch_size
        self._cache = {}

    def get(self, size, sampling_rate, like):
        """Rays for a layer grid, matching `like` (the layer input) in batch, dtype and device."""
        key = (int(size[0]), int(size[1]), float(sampling_rate))
        r = self._cache.get(key)
        if r is None:
            r = layer_rays(self.kind, self.c, [key[0], key[1]], sampling_rate)
            if r.shape[0] != self.batch_size:
                r = r.expand(self.batch_size, -1, -1, -1)
            self._cache[key] = r
        return r.to(dtype=like.dtype)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class RaySynthesisLayer(sg3.SynthesisLayer):
    """SynthesisLayer whose input is [features, rays of the input grid]; in_channels counts the
    features only, the weights and styles cover in_channels + ray_channels."""

    def __init__(self, in_channels, ray_channels=RAY_CHANNELS, **kwargs):
        super().__init__(in_channels=in_channels + ray_channels, **kwargs)
        self.feature_channels = in_channels
        self.ray_channels = ray_channels

    def _update_magnitude(self, x):
        super()._update_magnitude(x[:, :self.feature_channels])

    def _input_gain(self):
        gain = self.magnitude_ema.rsqrt()
        return torch.cat([gain.expand(self.feature_channels), torch.ones_like(gain).expand(self.ray_channels)])

    def forward(self, x, w, rays=None, **kwargs):
        if rays is None:
            raise ValueError('ray-conditioned layer called without rays (pass c to the synthesis network)')
        misc.assert_shape(x, [None, self.feature_channels, int(self.in_size[1]), int(self.in_size[0])])
        r = rays.get(self.in_size, self.in_sampling_rate, like=x)
        return super().forward(torch.cat([x, r], dim=1), w, **kwargs)

# ----------------------------------------------------------------------------


@persistence.persistent_class
class SynthesisNetwork(sg3.SynthesisNetwork):
    """StyleGAN3 synthesis network whose layers see the camera rays: forward(ws, c, ...)."""

    def __init__(self, w_dim, img_resolution, img_channels, embedding='plucker', ray_torgb=False, **kwargs):
        nr2.check_embedding(embedding)
        if 'ray_layers' in kwargs:
            raise ValueError('ray_layers (rays in some blocks only) exists for raycond2 only; '
                             'raycond3 feeds the rays to every layer: drop the option')
        self.embedding = embedding
        self.ray_torgb = bool(ray_torgb) and embedding != 'none'
        super().__init__(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **kwargs)

    def _make_layer(self, is_torgb, **kwargs):
        if self.embedding == 'none' or (is_torgb and not self.ray_torgb):
            return super()._make_layer(is_torgb=is_torgb, **kwargs)
        return RaySynthesisLayer(is_torgb=is_torgb, **kwargs)

    def _run_layer(self, layer, x, w, layer_kwargs):
        if isinstance(layer, RaySynthesisLayer):
            return layer(x, w, **layer_kwargs)
        return layer(x, w, **{k: v for k, v in layer_kwargs.items() if k != 'rays'})

    @property
    def takes_camera(self):
        """True when the image depends on c through the rays."""
        return self.embedding != 'none'

    def forward(self, ws, c=None, **layer_kwargs):
        if self.takes_camera:
            c = check_camera(c, ws.shape[0], 'G.synthesis')
            layer_kwargs['rays'] = LayerRays(self.embedding, c, ws.shape[0], ws.device)
        return super().forward(ws, **layer_kwargs)

    def extra_repr(self):
        return super().extra_repr() + f', embedding={self.embedding}, ray_torgb={self.ray_torgb}'

# ----------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(nr2.CameraMapping, sg3.MappingNetwork):
    """StyleGAN3 mapping network that takes the camera label (see networks_raycond2.CameraMapping)."""

# ----------------------------------------------------------------------------


@persistence.persistent_class
class Generator(nr2.Generator):
    """Ray-conditioned StyleGAN3 generator: img = synthesis(mapping(z, c), c). The raycond2
    generator's constructor and forward with the StyleGAN3 networks above; rays go to every layer
    (`ray_layers` is refused)."""

    synthesis_class = SynthesisNetwork
    mapping_class = MappingNetwork
