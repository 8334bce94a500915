"""Networks of the official Ray Conditioning release, configs 'raycond3-t' and 'raycond3-r',
rebuilt from our classes.

The counterpart of training.networks_official_raycond2 for the release's
`training/networks_raycond3.py`: same class names, constructor arguments, parameter/buffer names
and arithmetic order as that module, so a pickle it wrote renders here exactly as executing it
would. Layers and filters come from training.networks_stylegan3.

How that release conditions StyleGAN3 on the camera (which differs from training.networks_raycond3):
- before every layer, ToRGB included, `training.plucker.plucker_embedding` is computed for the
  layer's whole input grid (margins included, with the embedding's pixel-grid quirks: no
  extended-frustum correction) and concatenated to the features;
- the `in_channels` of each layer count those 6 channels, and the input magnitude EMA normalizes
  all of them, rays included (StyleGAN3's plain layer);
- the mapping network ignores the camera label.
"""

import numpy as np
import torch

from torch_utils import misc
from torch_utils import persistence
from training import networks_official_raycond2 as official2
from training import networks_stylegan3 as sg3
from training import plucker

RAY_CHANNELS = official2.RAY_CHANNELS

# ----------------------------------------------------------------------------


@persistence.persistent_class
class MappingNetwork(sg3.MappingNetwork):
    """The release's mapping network: StyleGAN3's, taking a camera label it never uses."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__(z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers,
                         lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)


@persistence.persistent_class
class SynthesisInput(sg3.SynthesisInput):
    """StyleGAN3 Fourier input, with the features evaluated as one batched matrix product per
    pixel (the release's order of operations, which rounds differently from an einsum)."""

    def forward(self, w):
        batch = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])
        rot[:, 0, 0] = t[:, 0]
        rot[:, 0, 1] = -t[:, 1]
        rot[:, 1, 0] = t[:, 1]
        rot[:, 1, 1] = t[:, 0]
        shift = torch.eye(3, device=w.device).unsqueeze(0).repeat([batch, 1, 1])
        shift[:, 0, 2] = -t[:, 2]
        shift[:, 1, 2] = -t[:, 3]
        transforms = rot @ shift @ self.transform.unsqueeze(0)

        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        width, height = int(self.size[0]), int(self.size[1])
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grid = torch.nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, height, width], align_corners=False)

        # [1, H, W, 1, 2] @ [N, 1, 1, 2, C] -> [N, H, W, C]
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        x = x.permute(0, 3, 1, 2)
        misc.assert_shape(x, [batch, self.channels, height, width])
        return x


@persistence.persistent_class
class SynthesisLayer(sg3.SynthesisLayer):
    """StyleGAN3 layer whose `in_channels` include the 6 ray channels; the magnitude EMA covers
    all input channels, as in the release."""


@persistence.persistent_class
class SynthesisNetwork(sg3.SynthesisNetwork):
    """StyleGAN3 synthesis network that concatenates the release's Plücker embedding of each
    layer's input grid to that layer's input: forward(ws, c, ...)."""

    # See official2.SynthesisBlock.record_attributes.
    record_attributes = {'embedding': official2.RAY_FUNCTION}

    def __init__(self, w_dim, img_resolution, img_channels, **kwargs):
        super().__init__(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **kwargs)
        self.embedding = plucker.plucker_embedding
        self.input = self._release_input(self.input)

    @staticmethod
    def _release_input(base):
        return SynthesisInput(w_dim=base.w_dim, channels=base.channels, size=[int(v) for v in base.size],
                              sampling_rate=base.sampling_rate, bandwidth=base.bandwidth)

    def _make_layer(self, in_channels, **kwargs):
        return SynthesisLayer(in_channels=in_channels + RAY_CHANNELS, **kwargs)

    def forward(self, ws, c, **layer_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32).unbind(dim=1)
        c2w = c[:, :16].view(-1, 4, 4)
        intrinsics = c[:, 16:].view(-1, 3, 3)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            with torch.no_grad():
                rays = self.embedding(x.shape[2], x.shape[3], intrinsics, c2w)
            x = torch.cat([x, rays], dim=1)
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return x.to(torch.float32)


@persistence.persistent_class
class Generator(official2.Generator):
    """The release's raycond3 generator: img = synthesis(mapping(z, c), c)."""

    synthesis_class = SynthesisNetwork
    mapping_class = MappingNetwork
