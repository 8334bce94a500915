"""Reconstruction losses for photo inversion: VGG16-LPIPS, discriminator features, multi-scale pixels.

Every loss compares a batch of renders (N, C, H, W) in [-1, 1] with one fixed target and returns
one value per render, so the same object scores a grid of candidate cameras and drives gradient
descent. All include a plain pixel MSE term (weight `pixel_weight`), which keeps colours right
where perceptual features are colour-blind.

- 'lpips': NVIDIA's VGG16 detector file (the one the metrics use, fetched into dnnlib's cache),
  called with `return_lpips=True` as StyleGAN2-ADA's projector does.
- 'd': features of the snapshot's own discriminator (every block's output, unit-normalised along
  channels as LPIPS does): needs no download, only a snapshot that kept `D`.
- 'pixel': mean squared error of the pixels and of their x/y differences at three scales
  (1, 1/2, 1/4): needs nothing, and the difference terms keep edges from washing out.

`make_loss('auto', ...)` uses LPIPS when the VGG16 file can be had, else the pixel loss, and says
which in one line. The discriminator's features are used only when asked for ('d'): on the bundled
64² network (which keeps `D`), inverting held-out heads with them gave novel views 0.3–0.4 dB PSNR
below the pixel loss (16 and 32 heads, `benchmarks/bench_inversion.py --loss=d` against
`--loss=pixel`), and the input view 1.0 dB below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raycond import feature_nets

from .config import LOSS_KINDS
LPIPS_MIN_SIZE = 128   # VGG16's deepest LPIPS layer needs some room; smaller images are upsampled
LPIPS_MAX_SIZE = 256   # as in StyleGAN2-ADA's projector: larger images are downsampled first


def _pixel_terms(x: torch.Tensor, y: torch.Tensor, scales=(1, 2, 4)) -> torch.Tensor:
    total = 0
    for s in scales:
        a = F.avg_pool2d(x, s) if s > 1 else x
        b = F.avg_pool2d(y, s) if s > 1 else y
        total = total + (a - b).square().mean(dim=(1, 2, 3))
        dxa, dxb = a[..., :, 1:] - a[..., :, :-1], b[..., :, 1:] - b[..., :, :-1]
        dya, dyb = a[..., 1:, :] - a[..., :-1, :], b[..., 1:, :] - b[..., :-1, :]
        total = total + (dxa - dxb).square().mean(dim=(1, 2, 3)) + (dya - dyb).square().mean(dim=(1, 2, 3))
    return total


class ReconstructionLoss(torch.nn.Module):
    """loss(images (N,C,H,W) in [-1,1], c=None) → (N,) distances to the target given at construction."""

    def __init__(self, kind: str, target: torch.Tensor, pixel_weight: float = 1.0, vgg=None, D=None):
        super().__init__()
        self.kind = kind
        self.pixel_weight = float(pixel_weight)
        self.vgg = vgg
        self.D = D
        self.register_buffer("target", target.float())
        self._target_feats = None
        if kind == "lpips":
            with torch.no_grad():
                self._target_feats = self._vgg_features(self.target)

    # -- features
    def _vgg_features(self, img: torch.Tensor) -> torch.Tensor:
        x = (img + 1) * 127.5
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        size = x.shape[2]
        if size > LPIPS_MAX_SIZE:
            x = F.interpolate(x, size=(LPIPS_MAX_SIZE, LPIPS_MAX_SIZE), mode="area")
        elif size < LPIPS_MIN_SIZE:
            x = F.interpolate(x, size=(LPIPS_MIN_SIZE, LPIPS_MIN_SIZE), mode="bilinear", align_corners=False)
        return self.vgg(x, resize_images=False, return_lpips=True)

    def _d_features(self, img: torch.Tensor, c: torch.Tensor) -> list:
        feats = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: feats.append(out[0] if isinstance(out, tuple) else out))
                 for name, m in self.D.named_children() if name.startswith("b") and name[1:].isdigit()]
        try:
            self.D(img, c.expand(img.shape[0], -1))
        finally:
            for h in hooks:
                h.remove()
        feats = [f.float() for f in feats if f.ndim == 4]             # block outputs; not the epilogue's logits
        return [f / f.square().sum(dim=1, keepdim=True).add(1e-8).sqrt() for f in feats]

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        target = self.target.expand(img.shape[0], -1, -1, -1)
        pixel = (img - target).square().mean(dim=(1, 2, 3))
        if self.kind == "lpips":
            feats = self._vgg_features(img)
            dist = (feats - self._target_feats).square().sum(dim=1)
        elif self.kind == "d":
            if c is None:
                c = torch.zeros([1, getattr(self.D, "c_dim", 0)], device=img.device)
            both = self._d_features(torch.cat([img, self.target]), torch.cat([c.expand(img.shape[0], -1), c[:1]]))
            dist = sum((f[:-1] - f[-1:]).square().sum(dim=1).mean(dim=(1, 2)) for f in both)
        else:
            dist = _pixel_terms(img, target)
        return dist + self.pixel_weight * pixel


def make_loss(kind: str, target: torch.Tensor, device, D=None, pixel_weight: float = 1.0,
              log=print) -> ReconstructionLoss:
    """Build the loss named `kind` (see LOSS_KINDS) for `target` (1,C,H,W) in [-1,1].

    'auto' tries the VGG16 file (from the download cache, or downloaded once), then the snapshot's
    discriminator, then multi-scale pixels, and logs one line naming the loss it uses.
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSS_KINDS)}")
    target = target.to(device)
    if kind in ("auto", "lpips"):
        url = feature_nets.vgg16_url()
        try:
            vgg = feature_nets.get_feature_detector(url, device=device, verbose=False)
        except (OSError, ValueError) as e:
            if kind == "lpips":
                raise ValueError(f"loss 'lpips' needs NVIDIA's VGG16 file, which could not be loaded: {e}") from None
            reason = "VGG16 file unavailable"
        else:
            log(f"inversion loss: LPIPS (VGG16 from {url}) + pixel MSE")
            return ReconstructionLoss("lpips", target, pixel_weight, vgg=vgg).to(device)
        log(f"inversion loss: multi-scale pixel + gradient MSE ({reason})")
        return ReconstructionLoss("pixel", target, pixel_weight).to(device)
    if kind == "d":
        if D is None:
            raise ValueError("loss 'd' needs a discriminator, and the network file holds none (use 'pixel' or 'auto')")
        log("inversion loss: discriminator features + pixel MSE")
        return ReconstructionLoss("d", target, pixel_weight, D=D).to(device)
    log("inversion loss: multi-scale pixel + gradient MSE")
    return ReconstructionLoss("pixel", target, pixel_weight).to(device)
