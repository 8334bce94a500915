"""Adaptive discriminator augmentation (ADA): random, differentiable image augmentations.

Every augmentation is applied with probability `p` (a buffer that the training loop adjusts,
see Karras et al. 2020). With camera-conditioned data the discriminator sees the camera label
next to the image, so only operations that keep the viewpoint are safe: the default pipeline
for such data ('color') changes brightness, contrast, luma, hue and saturation and never flips,
rotates, scales or shifts the image. Geometric operations ('blit', 'geom') exist for
unconditional or class-conditional data, where they do not contradict any label.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import persistence

# Named pipelines (as in StyleGAN2-ADA); values are multipliers of the per-op probability.
AUGPIPE_SPECS = {
    'blit':    dict(xflip=1, rotate90=1, xint=1),
    'geom':    dict(scale=1, rotate=1, aniso=1, xfrac=1),
    'color':   dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'noise':   dict(noise=1),
    'cutout':  dict(cutout=1),
    'bg':      dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    'bgc':     dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                    brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'colorcn': dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, noise=1, cutout=1),
}
CAMERA_SAFE_SPECS = ('color', 'noise', 'cutout', 'colorcn')
GEOMETRIC_OPS = ('xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac')


def default_augpipe(camera_conditioned):
    """Name of the default pipeline: viewpoint-preserving 'color' for camera data, else 'bgc'."""
    return 'color' if camera_conditioned else 'bgc'


def _rand_gate(n, prob, device):
    """Boolean (n,) mask: True with probability prob."""
    return torch.rand([n], device=device) < prob


def _eye(n, size, device):
    return torch.eye(size, device=device).unsqueeze(0).repeat(n, 1, 1)


def _translate2d(tx, ty):
    m = _eye(tx.shape[0], 3, tx.device)
    m[:, 0, 2] = tx
    m[:, 1, 2] = ty
    return m


def _scale2d(sx, sy):
    m = _eye(sx.shape[0], 3, sx.device)
    m[:, 0, 0] = sx
    m[:, 1, 1] = sy
    return m


def _rotate2d(theta):
    m = _eye(theta.shape[0], 3, theta.device)
    m[:, 0, 0] = torch.cos(theta)
    m[:, 0, 1] = -torch.sin(theta)
    m[:, 1, 0] = torch.sin(theta)
    m[:, 1, 1] = torch.cos(theta)
    return m


def _translate3d(t):
    m = _eye(t.shape[0], 4, t.device)
    m[:, :3, 3] = t
    return m


def _scale3d(s):
    m = _eye(s.shape[0], 4, s.device)
    m[:, 0, 0] = s[:, 0]
    m[:, 1, 1] = s[:, 1]
    m[:, 2, 2] = s[:, 2]
    return m


def _rotate3d(axis, theta):
    """Rotation about a unit axis (3,) by angles theta (N,), as (N, 4, 4) (Rodrigues)."""
    x, y, z = [float(a) for a in axis]
    c, s = torch.cos(theta), torch.sin(theta)
    cc = 1 - c
    m = _eye(theta.shape[0], 4, theta.device)
    m[:, 0, 0] = x * x * cc + c
    m[:, 0, 1] = x * y * cc - z * s
    m[:, 0, 2] = x * z * cc + y * s
    m[:, 1, 0] = y * x * cc + z * s
    m[:, 1, 1] = y * y * cc + c
    m[:, 1, 2] = y * z * cc - x * s
    m[:, 2, 0] = z * x * cc - y * s
    m[:, 2, 1] = z * y * cc + x * s
    m[:, 2, 2] = z * z * cc + c
    return m


@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """ADA augmentation pipeline. Call on float NCHW images in [-1, 1]; returns the same shape.

    Each keyword is a probability multiplier for one operation (0 = off); the actual probability
    is `multiplier * p`. Strength options (`*_std`, `*_max`) follow StyleGAN2-ADA's defaults.
    """

    def __init__(self,
                 xflip=0, rotate90=0, xint=0, xint_max=0.125,
                 scale=0, rotate=0, aniso=0, xfrac=0, scale_std=0.2, rotate_max=1, aniso_std=0.2,
                 xfrac_std=0.125,
                 brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0,
                 brightness_std=0.2, contrast_std=0.5, hue_max=1, saturation_std=1,
                 noise=0, cutout=0, noise_std=0.1, cutout_size=0.5):
        super().__init__()
        self.register_buffer('p', torch.ones([]))  # Overall multiplier for augmentation probability.

        # Pixel blitting.
        self.xflip = float(xflip)
        self.rotate90 = float(rotate90)
        self.xint = float(xint)
        self.xint_max = float(xint_max)

        # General geometric transformations.
        self.scale = float(scale)
        self.rotate = float(rotate)
        self.aniso = float(aniso)
        self.xfrac = float(xfrac)
        self.scale_std = float(scale_std)
        self.rotate_max = float(rotate_max)
        self.aniso_std = float(aniso_std)
        self.xfrac_std = float(xfrac_std)

        # Color transformations.
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.lumaflip = float(lumaflip)
        self.hue = float(hue)
        self.saturation = float(saturation)
        self.brightness_std = float(brightness_std)
        self.contrast_std = float(contrast_std)
        self.hue_max = float(hue_max)
        self.saturation_std = float(saturation_std)

        # Image-space corruptions.
        self.noise = float(noise)
        self.cutout = float(cutout)
        self.noise_std = float(noise_std)
        self.cutout_size = float(cutout_size)

    @property
    def is_geometric(self):
        """True when any enabled operation moves pixels (unsafe for camera-conditioned data)."""
        return any(getattr(self, name) > 0 for name in GEOMETRIC_OPS)

    def enabled_ops(self):
        """Names of the operations with a non-zero probability multiplier."""
        names = GEOMETRIC_OPS + ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation', 'noise', 'cutout')
        return [name for name in names if getattr(self, name) > 0]

    # --- geometry -----------------------------------------------------------------------------

    def _geometric_matrix(self, n, width, height, device):
        """(n, 3, 3) matrix mapping output pixel coords (centred, in pixels) to input coords."""
        p = self.p
        g = _eye(n, 3, device)
        if self.xflip > 0:
            i = torch.floor(torch.rand([n], device=device) * 2)
            i = torch.where(_rand_gate(n, self.xflip * p, device), i, torch.zeros_like(i))
            g = g @ _scale2d(1 - 2 * i, torch.ones_like(i))
        if self.rotate90 > 0:
            i = torch.floor(torch.rand([n], device=device) * 4)
            i = torch.where(_rand_gate(n, self.rotate90 * p, device), i, torch.zeros_like(i))
            g = g @ _rotate2d(-math.pi / 2 * i)
        if self.xint > 0:
            t = (torch.rand([n, 2], device=device) * 2 - 1) * self.xint_max
            t = torch.where(_rand_gate(n, self.xint * p, device)[:, None], t, torch.zeros_like(t))
            g = g @ _translate2d(torch.round(t[:, 0] * width), torch.round(t[:, 1] * height))
        if self.scale > 0:
            s = torch.exp2(torch.randn([n], device=device) * self.scale_std)
            s = torch.where(_rand_gate(n, self.scale * p, device), s, torch.ones_like(s))
            g = g @ _scale2d(s, s)
        # Split the rotation probability so that P(any rotation) matches the multiplier.
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
        if self.rotate > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(_rand_gate(n, p_rot, device), theta, torch.zeros_like(theta))
            g = g @ _rotate2d(-theta)
        if self.aniso > 0:
            s = torch.exp2(torch.randn([n], device=device) * self.aniso_std)
            s = torch.where(_rand_gate(n, self.aniso * p, device), s, torch.ones_like(s))
            g = g @ _scale2d(s, 1 / s)
        if self.rotate > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(_rand_gate(n, p_rot, device), theta, torch.zeros_like(theta))
            g = g @ _rotate2d(-theta)
        if self.xfrac > 0:
            t = torch.randn([n, 2], device=device) * self.xfrac_std
            t = torch.where(_rand_gate(n, self.xfrac * p, device)[:, None], t, torch.zeros_like(t))
            g = g @ _translate2d(t[:, 0] * width, t[:, 1] * height)
        return g

    def _apply_geometry(self, images, g):
        """Resample images with the pixel-space inverse matrices g (reflect padding)."""
        n, _c, h, w = images.shape
        # Normalized coords (align_corners=False): x_n = x_pix * 2 / w with centred pixel coords.
        to_pix = _scale2d(torch.full([n], w / 2, device=images.device), torch.full([n], h / 2, device=images.device))
        to_norm = _scale2d(torch.full([n], 2 / w, device=images.device), torch.full([n], 2 / h, device=images.device))
        theta = (to_norm @ g @ to_pix)[:, :2, :]
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode='bilinear', padding_mode='reflection', align_corners=False)

    # --- colour -------------------------------------------------------------------------------

    def _color_matrix(self, n, device):
        """(n, 4, 4) homogeneous colour transform applied to RGB values in [-1, 1]."""
        p = self.p
        c = _eye(n, 4, device)
        v = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=device) / math.sqrt(3)  # luma axis
        vv = torch.outer(v, v)
        if self.brightness > 0:
            b = torch.randn([n], device=device) * self.brightness_std
            b = torch.where(_rand_gate(n, self.brightness * p, device), b, torch.zeros_like(b))
            c = _translate3d(b[:, None].repeat(1, 3)) @ c
        if self.contrast > 0:
            s = torch.exp2(torch.randn([n], device=device) * self.contrast_std)
            s = torch.where(_rand_gate(n, self.contrast * p, device), s, torch.ones_like(s))
            c = _scale3d(s[:, None].repeat(1, 3)) @ c
        if self.lumaflip > 0:
            i = torch.floor(torch.rand([n, 1, 1], device=device) * 2)
            i = torch.where(_rand_gate(n, self.lumaflip * p, device)[:, None, None], i, torch.zeros_like(i))
            c = (torch.eye(4, device=device) - 2 * vv * i) @ c  # Householder reflection of luma
        if self.hue > 0:
            theta = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.hue_max
            theta = torch.where(_rand_gate(n, self.hue * p, device), theta, torch.zeros_like(theta))
            c = _rotate3d(v[:3].tolist(), theta) @ c
        if self.saturation > 0:
            s = torch.exp2(torch.randn([n, 1, 1], device=device) * self.saturation_std)
            s = torch.where(_rand_gate(n, self.saturation * p, device)[:, None, None], s, torch.ones_like(s))
            c = (vv + (torch.eye(4, device=device) - vv) * s) @ c
        return c

    def _apply_color(self, images, cmat):
        n, ch, h, w = images.shape
        flat = images.reshape(n, ch, h * w)
        cmat = cmat.to(images.dtype)
        if ch == 3:
            flat = cmat[:, :3, :3] @ flat + cmat[:, :3, 3:]
        elif ch == 1:
            cmat = cmat[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * cmat[:, :, :3].sum(dim=2, keepdim=True) + cmat[:, :, 3:]
        else:
            raise ValueError('AugmentPipe colour operations need 1 or 3 image channels')
        return flat.reshape(n, ch, h, w)

    # --- forward ------------------------------------------------------------------------------

    def forward(self, images, debug_percentile=None):
        """Augment float NCHW images in [-1, 1] (differentiable w.r.t. the images)."""
        assert isinstance(images, torch.Tensor) and images.ndim == 4
        n, ch, h, w = images.shape
        device = images.device
        if self.is_geometric:
            g = self._geometric_matrix(n, w, h, device)
            if not torch.all(g == torch.eye(3, device=device)):
                images = self._apply_geometry(images, g)
        if any(getattr(self, k) > 0 for k in ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation')):
            cmat = self._color_matrix(n, device)
            if not torch.all(cmat == torch.eye(4, device=device)):
                images = self._apply_color(images, cmat)
        if self.noise > 0:
            sigma = torch.randn([n, 1, 1, 1], device=device).abs() * self.noise_std
            sigma = torch.where(_rand_gate(n, self.noise * self.p, device)[:, None, None, None],
                                sigma, torch.zeros_like(sigma))
            images = images + torch.randn_like(images) * sigma.to(images.dtype)
        if self.cutout > 0:
            size = torch.full([n, 2, 1, 1], self.cutout_size, device=device)
            size = torch.where(_rand_gate(n, self.cutout * self.p, device)[:, None, None, None],
                               size, torch.zeros_like(size))
            centre = torch.rand([n, 2, 1, 1], device=device)
            gx = ((torch.arange(w, device=device) + 0.5) / w).reshape(1, 1, 1, w)
            gy = ((torch.arange(h, device=device) + 0.5) / h).reshape(1, 1, h, 1)
            keep = ((gx - centre[:, 0:1]).abs() >= size[:, 0:1] / 2) | ((gy - centre[:, 1:2]).abs() >= size[:, 1:2] / 2)
            images = images * keep.to(images.dtype)
        return images


def make_augment_pipe(spec, **overrides):
    """AugmentPipe for a named spec (see AUGPIPE_SPECS); ValueError naming valid specs."""
    if spec not in AUGPIPE_SPECS:
        raise ValueError(f'Unknown augmentation pipeline {spec!r}; expected one of {", ".join(AUGPIPE_SPECS)}')
    return AugmentPipe(**AUGPIPE_SPECS[spec], **overrides)


def adjust_p(p, signs_real_mean, target, batch_size, interval, ada_kimg):
    """One ADA step: move p toward keeping E[sign(D(real))] at `target`; returns the new p >= 0."""
    adjust = np.sign(signs_real_mean - target) * (batch_size * interval) / (ada_kimg * 1000)
    return max(float(p) + float(adjust), 0.0)
