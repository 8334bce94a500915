"""An appearance-invariant camera start for inversion: a tiny pose regressor per network.

Scoring cameras by rendering the mean face fails for photos far from it (a dark head matches the
mean silhouette better at a wrong yaw), and pose is where the features are, not their colour. So a
small CNN (grey, per-image normalised 32² input; about 30k parameters, under a minute on one core)
learns yaw and pitch from the generator's own samples at known cameras plus their mirror images,
and is cached per network weight fingerprint under dnnlib's cache (`raycond-pose/`). Its estimate
is only a start: inversion refines the camera through the differentiable rays.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

import dnnlib

SIZE = 32
VERSION = 1
# Test suites set this to train a throwaway regressor in a second (64 samples, 50 steps) instead
# of the real one; the cache key includes the sizes, so the real regressor is never replaced.
QUICK_ENV = "RAYCOND_POSE_QUICK"


def normalise(img: torch.Tensor) -> torch.Tensor:
    """Images (N,C,H,W) in [-1,1] → (N,1,32,32) grey, zero mean and unit std per image."""
    x = img.float().mean(dim=1, keepdim=True)
    if x.shape[-1] != SIZE or x.shape[-2] != SIZE:
        x = F.interpolate(x, size=(SIZE, SIZE), mode="area" if x.shape[-1] > SIZE else "bilinear",
                          **({} if x.shape[-1] > SIZE else {"align_corners": False}))
    x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    return x / x.square().mean(dim=(1, 2, 3), keepdim=True).add(1e-6).sqrt()


class PoseNet(torch.nn.Module):
    """Grey normalised 32² image → (yaw, pitch) in degrees within the given ranges."""

    def __init__(self, yaw_range, pitch_range, width: int = 16):
        super().__init__()
        w = width
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, w, 3, 2, 1), torch.nn.LeakyReLU(0.2),          # 16²
            torch.nn.Conv2d(w, 2 * w, 3, 2, 1), torch.nn.LeakyReLU(0.2),      # 8²
            torch.nn.Conv2d(2 * w, 4 * w, 3, 2, 1), torch.nn.LeakyReLU(0.2),  # 4²
            torch.nn.Conv2d(4 * w, 4 * w, 3, 2, 1), torch.nn.LeakyReLU(0.2),  # 2²
        )
        self.head = torch.nn.Linear(16 * w, 2)
        self.register_buffer("centre", torch.tensor([sum(yaw_range) / 2, sum(pitch_range) / 2], dtype=torch.float32))
        self.register_buffer("span", torch.tensor([max(1e-3, (yaw_range[1] - yaw_range[0]) / 2),
                                                   max(1e-3, (pitch_range[1] - pitch_range[0]) / 2)],
                                                  dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.centre + self.span * self.head(self.features(x).flatten(1))

    def predict(self, img: torch.Tensor, mirror: bool = True) -> tuple[float, float]:
        """(yaw, pitch) in degrees of one image (1,C,H,W) in [-1,1]. With `mirror`, the average of
        the estimates for the image and for its mirror image (yaw negated back): symmetric cameras
        make them equally valid, and averaging cancels part of the regressor's left/right bias
        (0.4° less mean error on 72 held-out synthetic heads)."""
        with torch.no_grad():
            x = normalise(img[:1].to(self.centre.device))
            if not mirror:
                out = self(x)[0]
                return float(out[0]), float(out[1])
            a, b = self(torch.cat([x, x.flip(-1)]))
        return float(a[0] - b[0]) / 2, float(a[1] + b[1]) / 2


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random gamma on [0,1]-mapped grey and an occasional blur, then renormalised."""
    n = x.shape[0]
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    u = (x - lo) / (hi - lo).clamp_min(1e-6)
    gamma = torch.exp(torch.empty(n, 1, 1, 1).uniform_(-0.7, 0.7, generator=gen)).to(x.device)
    u = u.clamp_min(1e-6) ** gamma
    blur = (torch.rand(n, 1, 1, 1, generator=gen) < 0.3).float().to(x.device)
    u = blur * F.avg_pool2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), 3, 1) + (1 - blur) * u
    u = u - u.mean(dim=(1, 2, 3), keepdim=True)
    return u / u.square().mean(dim=(1, 2, 3), keepdim=True).add(1e-6).sqrt()


def random_cameras(num_samples: int, yaw_range, pitch_range, gen: torch.Generator, chunk: int = 32):
    """(first index, count, yaw (n,), pitch (n,)) of `num_samples` uniform cameras in chunks of `chunk`:
    the pseudo-pair cameras that the pose regressor and the inversion encoder render their samples at."""
    for lo in range(0, num_samples, chunk):
        n = min(chunk, num_samples - lo)
        yaw = torch.empty(n).uniform_(*yaw_range, generator=gen)
        pitch = torch.empty(n).uniform_(*pitch_range, generator=gen)
        yield lo, n, yaw, pitch


def train(sample, yaw_range, pitch_range, num_samples: int = 1024, steps: int = 800, batch: int = 128,
          seed: int = 0, device="cpu", progress=None, mirror: bool = True) -> PoseNet:
    """Train a PoseNet on `sample(yaw (N,), pitch (N,)) → images (N,C,H,W) in [-1,1]`.

    progress(done, total) is called after every rendered chunk and every 25 training steps (a
    caller cancels by raising from it).
    """
    gen = torch.Generator().manual_seed(int(seed))
    total = num_samples + steps
    xs, ys = [], []
    for lo, n, yaw, pitch in random_cameras(num_samples, yaw_range, pitch_range, gen):
        with torch.no_grad():
            x = normalise(sample(yaw, pitch)).cpu()
        xs.append(x)
        ys.append(torch.stack([yaw, pitch], 1))
        if mirror:
            xs.append(x.flip(-1))
            ys.append(torch.stack([-yaw, pitch], 1))
        if progress is not None:
            progress(lo + n, total)
    xs, ys = torch.cat(xs).to(device), torch.cat(ys).to(device)
    net = PoseNet(yaw_range, pitch_range).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for i in range(steps):
        for g in opt.param_groups:
            g["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(i / steps * 3.14159265)).item()))
        idx = torch.randint(0, xs.shape[0], [min(batch, xs.shape[0])], generator=gen).to(device)
        pred = net(_augment(xs[idx], gen))
        loss = ((pred - ys[idx]) / net.span).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None and (i + 1) % 25 == 0:
            progress(num_samples + i + 1, total)
    return net.eval().requires_grad_(False)


def cache_path(fingerprint: str, num_samples: int, steps: int, mirror: bool = True) -> str:
    if os.environ.get(QUICK_ENV):
        num_samples, steps = min(num_samples, 64), min(steps, 50)
    name = f"{fingerprint[:20]}-v{VERSION}-{num_samples}-{steps}{'' if mirror else '-nomirror'}.pt"
    return dnnlib.util.make_cache_dir_path("raycond-pose", name)


def get(fingerprint: str, sample, yaw_range, pitch_range, num_samples: int = 1024, steps: int = 800,
        device="cpu", progress=None, log=print, use_cache: bool = True, mirror: bool = True) -> PoseNet:
    """The cached regressor for this network, or a freshly trained one (then written to the cache)."""
    if os.environ.get(QUICK_ENV):
        num_samples, steps = min(num_samples, 64), min(steps, 50)
    path = cache_path(fingerprint, num_samples, steps, mirror)
    if use_cache and os.path.isfile(path):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = PoseNet(yaw_range, pitch_range)
            net.load_state_dict(state)
            return net.to(device).eval().requires_grad_(False)
        except Exception:  # a stale or truncated cache file: train again and overwrite it
            pass
    log(f"camera start: training this network's pose regressor on {num_samples} of its own samples "
        f"(once; cached in {os.path.dirname(path)})")
    net = train(sample, yaw_range, pitch_range, num_samples=num_samples, steps=steps, device=device,
                progress=progress, mirror=mirror)
    if use_cache:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            state = net.state_dict()
            dnnlib.util.atomic_write(path, lambda f: torch.save(state, f))
        except OSError as e:
            log(f"camera start: could not cache the pose regressor ({e}); it will be trained again next time")
    return net
