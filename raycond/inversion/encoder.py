"""An encoder per network: photo → camera (yaw, pitch) and latent w in one forward pass.

Optimisation alone starts every photo from the mean face and spends most of its steps getting
near the right one; an encoder trained on pseudo pairs (the generator's own samples, whose latent
and camera are known; Ko et al., "3D GAN Inversion with Pose Optimization", WACV 2023) lands
there in one pass, on the CPU in a few milliseconds. Its estimate is shown at once and is the
start of the optimisation (raycond.inversion.pipeline).

- Training data: `num_samples` latents z → w through the mapping network, rendered at yaw/pitch
  drawn uniformly over the training data's camera ranges. Their mirror images (yaw negated) teach
  the camera head too (their w is unknown, so the latent head skips them); at prediction the
  camera is the mean of the photo's and its mirror image's estimates, as the pose regressor does.
- Input: the image at 64² (area-downsampled from larger networks), in [-1, 1]; a little random
  blur and noise in training, so a photo that is not exactly a sample still reads.
- Output: yaw/pitch scaled to the camera ranges, w as the mean w plus per-channel-scaled offsets.
- Camera reader (optional, `train_camera_reader`): a second network of the same shape trained on
  *photos with true cameras* (the network's training data, raycond.inversion.labelled_photos).
  A generator shows the camera it is asked for only to within its pose error, so an encoder
  taught by samples alone reads photos' cameras 2.9° off on held-out synthetic heads; the reader
  trained on 18000 labelled heads reads them to 1.1–1.3° (docs/performance.md). When a file holds one,
  `predict` takes the camera from it, and the inversion keeps that camera instead of refining it
  through the pixel loss, which pulled good cameras away (raycond.inversion.pipeline).
- Files: safetensors (tensors and a JSON header, no code). A network's encoder is looked up by the
  network's weight fingerprint: beside the network file (`<name>.encoder.safetensors`, as the
  bundled checkpoint ships it), then in dnnlib's cache (`raycond-encoder/`), where a freshly
  trained one is written.
"""

from __future__ import annotations

import json
import math
import os

import torch
import torch.nn.functional as F

import dnnlib
from raycond import loading
from raycond import pose_regressor

SIZE = 64
VERSION = 1
FORMAT = "raycond-encoder-v1"
SUFFIX = ".encoder.safetensors"
MAX_WIDTH = 256   # the largest channel width a file may declare (24 and 32 are used)


class Encoder(torch.nn.Module):
    """Image (N,C,H,W) in [-1,1] → (yaw/pitch (N,2) in degrees, w (N,w_dim))."""

    def __init__(self, w_dim: int, yaw_range, pitch_range, width: int = 24):
        super().__init__()
        c = width
        act = torch.nn.LeakyReLU(0.2)
        # Strided from the first layer: ~20M multiply-adds per 64² image, so training on the CPU
        # takes minutes and one prediction a few milliseconds.
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, c, 3, 2, 1), act,                                       # 32²
            torch.nn.Conv2d(c, 2 * c, 3, 2, 1), act,                                   # 16²
            torch.nn.Conv2d(2 * c, 2 * c, 3, 1, 1), act,
            torch.nn.Conv2d(2 * c, 4 * c, 3, 2, 1), act,                               # 8²
            torch.nn.Conv2d(4 * c, 4 * c, 3, 1, 1), act,
            torch.nn.Conv2d(4 * c, 128, 3, 2, 1), act,                                 # 4²
        )
        self.hidden = torch.nn.Sequential(torch.nn.Linear(16 * 128, 384), act)
        self.camera_head = torch.nn.Linear(384, 2)
        self.latent_head = torch.nn.Linear(384, w_dim)
        self.register_buffer("centre", torch.tensor([sum(yaw_range) / 2, sum(pitch_range) / 2], dtype=torch.float32))
        self.register_buffer("span", torch.tensor([max(1e-3, (yaw_range[1] - yaw_range[0]) / 2),
                                                   max(1e-3, (pitch_range[1] - pitch_range[0]) / 2)]))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.register_buffer("w_scale", torch.ones(w_dim))
        self.width = width
        self.camera_reader: Encoder | None = None   # trained on labelled photos; reads the camera when set
        self.camera_photos = ""                     # what it was trained on, for the file header and logs

    @staticmethod
    def prepare(img: torch.Tensor) -> torch.Tensor:
        """(N,C,H,W) in [-1,1] → (N,3,64,64) float: grey repeated to RGB, resized to the encoder's size."""
        x = img.float()
        x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x[:, :3]
        if x.shape[-1] > SIZE:
            x = F.interpolate(x, size=(SIZE, SIZE), mode="area")
        elif x.shape[-1] < SIZE:
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor):
        h = self.hidden(self.features(x).flatten(1))
        return self.centre + self.span * self.camera_head(h), self.w_avg + self.w_scale * self.latent_head(h)

    def predict(self, img: torch.Tensor, mirror: bool = True):
        """(yaw, pitch, w (1,w_dim)) of one image (1,C,H,W) in [-1,1]; with `mirror`, the camera is
        the mean of the image's and its mirror image's estimates (yaw negated back)."""
        with torch.no_grad():
            x = self.prepare(img[:1].to(self.w_avg.device))
            batch = torch.cat([x, x.flip(-1)]) if mirror else x
            if self.camera_reader is None:
                cam, w = self(batch)
            else:   # the camera is the reader's: only the photo itself goes through for w
                cam, _ = self.camera_reader(batch)
                _, w = self(x)
        if not mirror:
            return float(cam[0, 0]), float(cam[0, 1]), w[:1]
        return float(cam[0, 0] - cam[1, 0]) / 2, float(cam[0, 1] + cam[1, 1]) / 2, w[:1]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Occasional 3×3 blur, small brightness/contrast changes and pixel noise."""
    n = x.shape[0]
    blur = (torch.rand(n, 1, 1, 1, generator=gen) < 0.3).float().to(x.device)
    x = blur * F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1) + (1 - blur) * x
    gain = 1 + 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    bias = 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    noise = 0.02 * torch.randn(x.shape, generator=gen)
    return x * gain.to(x.device) + bias.to(x.device) + noise.to(x.device)


def _render_pairs(sample, num_samples: int, yaw_range, pitch_range, gen, progress, total):
    """(images uint8 (N,3,64,64), cameras (N,2), w (N,w_dim)) of `num_samples` generator samples."""
    imgs, cams, ws = [], [], []
    for lo, n, yaw, pitch in pose_regressor.random_cameras(num_samples, yaw_range, pitch_range, gen):
        with torch.no_grad():
            img, w = sample(yaw, pitch)
            x = Encoder.prepare(img).cpu()
        imgs.append(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
        cams.append(torch.stack([yaw, pitch], 1))
        ws.append(w.float().cpu())
        if progress is not None:
            progress(lo + n, total)
    return torch.cat(imgs), torch.cat(cams), torch.cat(ws)


def _cosine_lr(opt, i: int, steps: int, peak: float = 1e-3) -> None:
    for g in opt.param_groups:
        g["lr"] = peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * i / steps)))


def _flipped_batch(imgs, cams, gen, batch: int, device):
    """A random batch as floats in [-1,1], half of it mirrored with its yaw negated; and the flip mask."""
    idx = torch.randint(0, imgs.shape[0], [min(batch, imgs.shape[0])], generator=gen).to(device)
    x = imgs[idx].float() / 127.5 - 1
    flip = torch.rand(x.shape[0], generator=gen).to(device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    target_cam = cams[idx] * torch.stack([1 - 2 * flip.float(), torch.ones_like(cams[idx, 1])], 1)
    return idx, x, target_cam, flip


def train(sample, w_dim: int, yaw_range, pitch_range, num_samples: int = 8192, steps: int = 3000,
          batch: int = 64, seed: int = 0, device="cpu", progress=None) -> Encoder:
    """Train an Encoder on `sample(yaw (N,), pitch (N,)) → (images (N,C,H,W) in [-1,1], w (N,w_dim))`.

    progress(done, total) is called after every rendered chunk and every 25 training steps (a
    caller cancels by raising from it).
    """
    gen = torch.Generator().manual_seed(int(seed))
    total = num_samples + steps
    imgs, cams, ws = _render_pairs(sample, num_samples, yaw_range, pitch_range, gen, progress, total)
    net = Encoder(w_dim, yaw_range, pitch_range)
    net.w_avg.copy_(ws.mean(0))
    net.w_scale.copy_(ws.std(0).clamp_min(1e-4))
    net = net.to(device)
    imgs, cams, ws = imgs.to(device), cams.to(device), ws.to(device)

    def loss_of(pred_cam, pred_w, target_cam, idx, flip):
        cam_loss = ((pred_cam - target_cam) / net.span).square().mean()
        w_err = ((pred_w - ws[idx]) / net.w_scale).square().mean(1)
        return 10 * cam_loss + (w_err * (~flip)).sum() / (~flip).sum().clamp_min(1)   # mirrored: w unknown
    report = None if progress is None else (lambda done: progress(num_samples + done, total))
    return _fit(net, imgs, cams, loss_of, steps, batch, gen, device, report)


def _fit(net: Encoder, imgs, cams, loss_of, steps: int, batch: int, gen, device, report) -> Encoder:
    """Adam with a cosine learning rate over augmented, half-mirrored batches; report(done) every 25 steps."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for i in range(steps):
        _cosine_lr(opt, i, steps)
        idx, x, target_cam, flip = _flipped_batch(imgs, cams, gen, batch, device)
        pred_cam, pred_w = net(_augment(x, gen))
        loss = loss_of(pred_cam, pred_w, target_cam, idx, flip)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if report is not None and (i + 1) % 25 == 0:
            report(i + 1)
    return net.eval().requires_grad_(False)


def train_camera_reader(images: torch.Tensor, yaw_pitch: torch.Tensor, w_dim: int, yaw_range, pitch_range,
                        steps: int = 4000, batch: int = 64, width: int = 32, seed: int = 0, device="cpu",
                        progress=None) -> Encoder:
    """An Encoder whose camera head learns from labelled photos (uint8 (N,3,64,64), yaw/pitch (N,2)
    degrees) and their mirror images; its latent head is unused. progress(done, steps) every 25 steps."""
    gen = torch.Generator().manual_seed(int(seed))
    net = Encoder(w_dim, yaw_range, pitch_range, width=width).to(device)
    imgs, cams = images.to(device), yaw_pitch.float().to(device)

    def loss_of(pred_cam, _pred_w, target_cam, _idx, _flip):
        return ((pred_cam - target_cam) / net.span).square().mean()
    report = None if progress is None else (lambda done: progress(done, steps))
    return _fit(net, imgs, cams, loss_of, steps, batch, gen, device, report)


# ----------------------------------------------------------------------------- files


def save(net: Encoder, path: str, fingerprint: str, num_samples: int, steps: int) -> None:
    """Write `net` as safetensors (float16 tensors) with the network fingerprint and its shape in the header."""
    from safetensors.torch import save as st_save
    meta = {"format": FORMAT, "fingerprint": fingerprint, "w_dim": str(net.w_avg.shape[0]),
            "camera": json.dumps({"centre": net.centre.tolist(), "span": net.span.tolist()}),
            "samples": str(num_samples), "steps": str(steps), "width": str(net.width)}
    if net.camera_reader is not None:
        meta.update(reader_width=str(net.camera_reader.width), camera_photos=net.camera_photos)
    # float16 halves the file (2.5 MB); the estimates move by far less than the pivot corrects.
    state = {k: v.detach().cpu().half().contiguous() for k, v in net.state_dict().items()}
    data = st_save(state, metadata=meta)
    dnnlib.util.atomic_write(path, lambda f: f.write(data))


def read(path: str, fingerprint: str | None = None) -> Encoder:
    """An Encoder from a file written by `save`; ValueError (one line naming the file) if it is not
    one, or belongs to another network when `fingerprint` is given."""
    from safetensors import safe_open
    from safetensors.torch import load as st_load
    try:
        with open(path, "rb") as f:
            data = f.read()
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        state = {k: v.float() for k, v in st_load(data).items()}
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise ValueError(f"{path} is not an encoder file ({type(e).__name__})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an encoder file (expected format {FORMAT!r})")
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} is the encoder of another network")
    try:  # the header is data from a file: read and bound it before building anything
        cam = json.loads(meta["camera"])
        (c0, c1), (s0, s1) = [[float(v) for v in cam[k]] for k in ("centre", "span")]
        w_dim = int(meta["w_dim"])
        width = int(meta.get("width", 24))
        reader_width = int(meta["reader_width"]) if "reader_width" in meta else None
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not an encoder file (header field {e} missing or malformed)") from None
    widths_ok = all(1 <= v <= MAX_WIDTH for v in (width, reader_width or 1))
    if not 1 <= w_dim <= 8192 or not widths_ok or not all(math.isfinite(v) for v in (c0, c1, s0, s1)):
        raise ValueError(f"{path} is not an encoder file (w_dim {w_dim}, width or camera range out of bounds)")
    ranges = (c0 - s0, c0 + s0), (c1 - s1, c1 + s1)
    net = Encoder(w_dim, *ranges, width=width)
    if reader_width is not None:
        net.camera_reader = Encoder(w_dim, *ranges, width=reader_width)
        net.camera_photos = str(meta.get("camera_photos", ""))[:500]
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise ValueError(f"{path} holds an encoder of another shape than this version's") from None
    return net.eval().requires_grad_(False)


def shipped_path(network_path: str | None) -> str | None:
    """Where an encoder shipped with a network file lies: `<network without .pkl>.encoder.safetensors`."""
    if not network_path or "://" in str(network_path):
        return None
    base, _ = os.path.splitext(os.fspath(network_path))
    return base + SUFFIX


def cache_path(fingerprint: str, num_samples: int, steps: int) -> str:
    name = f"{fingerprint[:20]}-v{VERSION}-{num_samples}-{steps}{SUFFIX}"
    return dnnlib.util.make_cache_dir_path("raycond-encoder", name)


def sizes(num_samples: int, steps: int) -> tuple[int, int]:
    """The training sizes in force: test suites (pose_regressor.QUICK_ENV) train a throwaway encoder."""
    if os.environ.get(pose_regressor.QUICK_ENV):
        return min(num_samples, 64), min(steps, 40)
    return num_samples, steps


def find(fingerprint: str, network_path: str | None, num_samples: int, steps: int) -> Encoder | None:
    """The encoder of this network from a file beside it, beside the bundled checkpoint, or the cache."""
    candidates = [shipped_path(network_path), shipped_path(loading.DEFAULT_CHECKPOINT),
                  cache_path(fingerprint, *sizes(num_samples, steps))]
    for path in candidates:
        if path and os.path.isfile(path):
            try:
                return read(path, fingerprint)
            except ValueError:       # another network's, or a stale cache file: keep looking
                continue
    return None


def get(fingerprint: str, sample, w_dim: int, yaw_range, pitch_range, *, network_path=None, num_samples=8192,
        steps=3000, device="cpu", progress=None, log=print) -> Encoder:
    """This network's encoder (`find`), or a freshly trained one, then written to the cache."""
    net = find(fingerprint, network_path, num_samples, steps)
    if net is not None:
        return net.to(device)
    num_samples, steps = sizes(num_samples, steps)
    path = cache_path(fingerprint, num_samples, steps)
    log(f"encoder: training this network's encoder on {num_samples} of its own samples "
        f"(once; cached in {os.path.dirname(path)})")
    net = train(sample, w_dim, yaw_range, pitch_range, num_samples=num_samples, steps=steps, device=device,
                progress=progress)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save(net, path, fingerprint, num_samples, steps)
    except OSError as e:
        log(f"encoder: could not cache it ({e}); it will be trained again next time")
    return net
