"""Photo → camera + pivot latent + tuned weights: edit the viewpoint of a given picture.

Ray conditioning keeps the camera an explicit input, so once a photo is *inverted* (a latent and
a camera found whose render matches it) the same face can be rendered from any other camera. The
method, in four stages (`invert`):

1. **Target.** The photo is centre-cropped/resized to the network's resolution
   (raycond.target_image), with one line saying what was converted.
2. **Camera start** (when no camera is given and the network has one). A tiny pose regressor
   trained on this network's own samples at known cameras (raycond.pose_regressor: grey,
   per-image normalised 32² input, so brightness and colour do not matter; trained once per
   network, cached) predicts yaw/pitch; that start is refined for a few joint steps. The older
   start, `camera_start='grid'`, renders a coarse grid of yaws and pitches inside the training
   ranges (`camera_stats`) at the mean latent (networks whose mapping sees the camera: the mean
   over a few latents mapped at each camera), scores it against the photo with the
   reconstruction loss and refines the best cells of a few distinct yaws plus the cell nearest
   the mean training pose; it was fooled by photos far from the mean face (a dark, low-contrast
   head matched the mean face best 26° away from its true yaw).
3. **Pivot** (StyleGAN2-ADA projector style). From the mean latent, Adam on w (W, or W+ with
   `w_plus=True`; networks whose mapping sees the camera optimise z, so that the camera keeps
   acting through the mapping) with a learning-rate ramp (warm-up, cosine decay), decaying noise
   added to w early on, and optionally the per-layer constant noise with its regulariser. The
   camera's yaw/pitch are optimised *jointly*: the 25-float label is built from them with torch ops
   (raycond.camera.camera_label) and the ray embeddings are differentiable in the label
   (raycond.rays), so the loss's gradient reaches the camera. FOV, radius and look-at stay at the
   training data's values.
4. **Pivotal tuning** (PTI). A deep copy of the generator is fine-tuned around the pivot so that
   the photo's details the latent could not express are reproduced. Tuning alone overfits the
   input view (the face gets better at that camera and worse at the others), so a locality
   regulariser keeps the tuned generator's renders close to the untuned ones (a) for the pivot at
   random *other cameras* and (b) for random latents near the pivot (PTI's ball of radius
   `locality_radius` in W) at random cameras. Reference renders are made once before tuning.

Losses (raycond.inversion_losses): LPIPS through NVIDIA's VGG16 detector file plus pixel MSE;
`loss='auto'` falls back, offline, to multi-scale pixel + gradient MSE (measured better than the
snapshot's discriminator features, which `loss='d'` uses), and prints which one it uses.

`progress(step, total, stage, loss, preview)` is called after every step (stage in 'camera',
'pivot', 'tune'; preview a (1,3,H,W) float tensor in [-1,1] on the CPU, or None and loss NaN
while the pose regressor trains); returning False cancels
and `invert` raises `Cancelled`. Results save to a torch file of tensors and plain values
(`torch.load(weights_only=True)` reads it; no pickled code) holding the pivot, the camera, the
target and the tuned weights that changed; `load` needs the original network, named in the file.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import re
import time

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib
from raycond import camera as cam
from raycond import generate as rgen
from raycond import loading
from raycond import pose_regressor
from raycond import threads
from raycond.inversion_losses import LOSS_KINDS, make_loss
from raycond.target_image import TargetImageError, prepare_target

__all__ = ["invert", "load", "network_of", "Inversion", "Cancelled", "TargetImageError", "LOSS_KINDS", "DEFAULTS"]

FORMAT = "raycond-inversion-v1"
CAMERA_MARGIN_DEG = 5.0   # estimated yaw/pitch stay within the training range widened by this

# Defaults chosen by measurement on the bundled 64² checkpoint (benchmarks/bench_inversion.py,
# docs/performance.md): about a minute per photo on a 2-core CPU.
DEFAULTS = dict(
    num_steps=200,            # pivot steps (stage 3)
    tune_steps=100,           # pivotal tuning steps (stage 4)
    camera_start="regressor", # 'regressor' (raycond.pose_regressor) or 'grid' (mean face scored on a grid)
    pose_samples=1024,        # regressor: generator samples rendered to train it (once per network, cached)
    pose_steps=800,           # regressor: training steps
    pose_spread=0.0,          # regressor: also refine starts this many degrees of yaw either side
    grid_yaws=9,              # camera grid: yaw values over the training range
    grid_pitches=5,           # camera grid: pitch values over the training range
    grid_keep=3,              # grid cells (of distinct yaws) refined before choosing the start, plus the
                              # cell nearest the mean training pose
    grid_refine_steps=30,     # joint steps per kept cell
    lr=0.1,                   # peak learning rate of w (z for mapping-camera networks: lr/2)
    camera_lr=0.5,            # peak learning rate of yaw/pitch, degrees (1.0: 0.4° worse, measured)
    noise_factor=0.05,        # initial noise added to w, times the std of W
    noise_ramp=0.75,          # fraction of the pivot steps over which that noise decays
    lr_rampdown=0.25,         # cosine decay over the last quarter
    lr_rampup=0.05,           # linear warm-up over the first 5%
    noise_reg_weight=1e5,     # noise-map regulariser (StyleGAN2-ADA)
    tune_lr=3e-4,             # pivotal tuning learning rate (PTI)
    tune_from_res=0,          # tune only synthesis blocks at this resolution and above (0: all)
    locality_weight=1.0,      # weight of the other-camera / other-latent locality terms
    locality_bank=8,          # reference renders of each locality kind
    locality_radius=30.0,     # PTI's locality ball radius in W
    pixel_weight=1.0,         # weight of the pixel MSE inside every loss
)


class Cancelled(RuntimeError):
    """The progress callback returned False; the inversion stopped at `stage`, step `step`."""

    def __init__(self, stage: str, step: int):
        super().__init__(f"inversion cancelled during {stage} at step {step}")
        self.stage = stage
        self.step = step


# ----------------------------------------------------------------------------- result


def fingerprint(G: torch.nn.Module) -> str:
    """A digest of every parameter and buffer: inversion files check they are applied to the same
    network they were made from (tuned weights on another network would render garbage)."""
    h = hashlib.sha1()
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclasses.dataclass
class Inversion:
    """An inverted photo: render it at any camera with `render`.

    camera: (1,25) float32 label (the given one or the estimate; (1,c_dim) zeros for networks
    without a camera). ws: (1,num_ws,w_dim) pivot. G: the tuned generator (a deep copy).
    z: the pivot in Z for networks whose mapping sees the camera (None otherwise).
    target: (1,C,H,W) uint8 photo as the network saw it. meta: plain values (camera angles,
    loss, steps, seconds, network path and fingerprint).
    """

    camera: torch.Tensor
    ws: torch.Tensor
    G: torch.nn.Module
    target: torch.Tensor
    meta: dict
    z: torch.Tensor | None = None
    base_G: torch.nn.Module | None = dataclasses.field(default=None, repr=False)

    @property
    def has_camera(self) -> bool:
        return bool(self.meta.get("has_camera"))

    def camera_at(self, yaw_deg, pitch_deg, fov_deg=None) -> torch.Tensor:
        """Labels (N,25) at other yaw/pitch (degrees) with this inversion's FOV, radius and look-at."""
        if not self.has_camera:
            return self.camera.clone()
        m = self.meta
        return cam.camera_label(yaw_deg, pitch_deg, fov_deg=m["fov_deg"] if fov_deg is None else fov_deg,
                                radius=m["radius"], lookat=m["lookat"])

    def render(self, camera=None, noise_mode: str = "const") -> torch.Tensor:
        """Images (N,3,H,W) float32 in [-1,1] at `camera` ((25,) or (N,25) label; default: the photo's)."""
        device = next(self.G.parameters()).device
        if camera is None:
            c = self.camera
        else:
            c = torch.as_tensor(np.array(camera, dtype=np.float32) if not torch.is_tensor(camera) else camera)
            c = c.float().reshape(1, -1) if c.ndim == 1 else c.float()
            if c.ndim != 2 or c.shape[1] != self.camera.shape[1]:
                raise ValueError(f"camera must have shape ({self.camera.shape[1]},) or (N, {self.camera.shape[1]}), "
                                 f"got {tuple(c.shape)}")
            if not torch.isfinite(c).all():
                raise ValueError("camera label contains NaN or infinite values")
        c = c.to(device)
        with torch.no_grad():
            img = _synthesize(self.G, rgen.pivot_ws(self, self.G, c, device), c, self.has_camera)
        return img.float().clamp(-1, 1)

    def save(self, path) -> None:
        """Write a torch file of tensors and plain values (no code), atomically."""
        base = self.base_G
        if base is None:
            raise ValueError("this inversion does not know its original network; it cannot be saved")
        ref = base.state_dict()
        tuned = {k: v.detach().cpu().clone() for k, v in self.G.state_dict().items()
                 if k in ref and not torch.equal(v.detach().cpu(), ref[k].detach().cpu())}
        payload = {
            "format": FORMAT,
            "camera": self.camera.detach().cpu().float(),
            "ws": self.ws.detach().cpu().float(),
            "target": self.target.detach().cpu(),
            "tuned_state": tuned,
            "meta": _plain(self.meta),
        }
        if self.z is not None:
            payload["z"] = self.z.detach().cpu().float()
        dnnlib.util.atomic_write(os.fspath(path), lambda f: torch.save(payload, f))


def _synthesize(G, ws, c, has_camera: bool) -> torch.Tensor:
    """rgen.synthesize for camera networks; networks whose synthesis takes an unused c (raycond2
    built without a camera) get their empty label passed straight through."""
    if has_camera or not rgen._synthesis_takes_c(G):
        return rgen.synthesize(G, ws, c if has_camera else None)
    return G.synthesis(ws, c.expand(ws.shape[0], -1), noise_mode="const", force_fp32=True)


def _plain(obj):
    """Meta values as plain Python (lists, floats, strings) so weights_only loading accepts them."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def load(path, G=None, device=None, trust_pickle: bool = False) -> Inversion:
    """Read an inversion file. `G` is the network it was made from (a module or a path); without it,
    the network path stored in the file is opened through raycond.loading (`trust_pickle` as there)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"inversion file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not an inversion file written by raycond ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an inversion file (expected format {FORMAT!r}); write one with "
                         f"projector.py or Inversion.save")
    meta = dict(payload["meta"])
    if G is None:
        net_path = meta.get("network")
        if not net_path:
            raise ValueError(f"{path} does not name its network; pass the network it was made from as G")
        try:
            G = loading.load_network(net_path, trust_pickle=trust_pickle)
        except loading.NetworkLoadError as e:
            raise ValueError(f"{path} was made from {net_path}, which cannot be opened here ({e}); pass that "
                             f"network as G") from None
    elif isinstance(G, (str, os.PathLike)):
        G = loading.load_network(os.fspath(G), trust_pickle=trust_pickle)
    if meta.get("fingerprint") and fingerprint(G) != meta["fingerprint"]:
        raise ValueError(f"{path} was made from a different network ({meta.get('network') or 'unknown'}); "
                         f"pass the network it was made from")
    if device is None:
        device = next(G.parameters()).device
    device = rgen.resolve_device(device)
    tuned = copy.deepcopy(G).eval().requires_grad_(False)
    state = tuned.state_dict()
    for k, v in payload["tuned_state"].items():
        if k not in state or state[k].shape != v.shape:
            raise ValueError(f"{path} holds weight {k!r} that this network does not have in that shape")
        state[k] = v.to(state[k].dtype)
    tuned.load_state_dict(state)
    z = payload.get("z")
    return Inversion(camera=payload["camera"].to(device), ws=payload["ws"].to(device), G=tuned.to(device),
                     target=payload["target"], meta=meta, z=None if z is None else z.to(device), base_G=G)


def network_of(path) -> str:
    """The network path recorded in an inversion file (scripts open it when --network is not given)."""
    payload = torch.load(os.fspath(path), map_location="cpu", weights_only=True) if os.path.isfile(path) else None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an inversion file (expected projector.py's inversion.pt)")
    net = payload["meta"].get("network")
    if not net:
        raise ValueError(f"{path} does not name its network; give --network")
    return net


# ----------------------------------------------------------------------------- helpers


def _resolve_generator(G, info, D, trust_pickle=False):
    """Accept a module or a path; return (G, info, D, network path or None)."""
    path = None
    if isinstance(G, (str, os.PathLike)):
        path = os.fspath(G)
        G, file_info, file_D = loading.load_generator_and_discriminator(path, trust_pickle=trust_pickle)
        info = info or file_info
        D = D if D is not None else file_D
        path = os.path.abspath(path) if os.path.exists(path) else path
    if not isinstance(G, torch.nn.Module) or not hasattr(G, "synthesis") or not hasattr(G, "mapping"):
        raise ValueError(f"expected a generator with mapping and synthesis networks, got a {type(G).__name__}; "
                         f"load one with raycond.loading.load_network")
    return G, info or loading.network_info(G), D, path


def _fixed_camera_label(camera, info) -> torch.Tensor:
    c = torch.as_tensor(np.array(camera, dtype=np.float32) if not torch.is_tensor(camera) else camera).float()
    if c.ndim == 1:
        c = c.unsqueeze(0)
    if c.shape != (1, cam.LABEL_DIM):
        raise ValueError(f"camera must be one {cam.LABEL_DIM}-float label ({cam.POSE_DIM} cam2world + "
                         f"{cam.INTRINSICS_DIM} intrinsics), got shape {tuple(c.shape)}")
    if not torch.isfinite(c).all():
        raise ValueError(f"camera label contains NaN or infinite values; pass a finite {cam.LABEL_DIM}-float label or "
                         "camera=None to estimate it")
    if not info.camera:
        raise ValueError("this network has no camera input; call invert with camera=None")
    return c


def _lr_at(t: float, opts: dict) -> float:
    ramp = min(1.0, (1.0 - t) / opts["lr_rampdown"])
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / opts["lr_rampup"])


def _tuned_parameters(G, from_res: int) -> list:
    """Synthesis parameters that pivotal tuning changes: all, or only those of the blocks at
    resolution >= from_res (StyleGAN2-style names `b<res>.`; other layouts tune everything)."""
    named = list(G.synthesis.named_parameters())
    if from_res <= 0:
        return [p for _, p in named]
    picked = [p for n, p in named if re.match(r"b(\d+)\.", n) and int(re.match(r"b(\d+)\.", n).group(1)) >= from_res]
    return picked or [p for _, p in named]


def _noise_buffers(G) -> dict:
    return {n: b for n, b in G.synthesis.named_buffers() if "noise_const" in n}


def _noise_reg(bufs) -> torch.Tensor:
    reg = 0.0
    for v in bufs.values():
        noise = v[None, None]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


class _Run:
    """State shared by the stages of one inversion (network, camera model, loss, callback)."""

    def __init__(self, G, info, loss_fn, opts, device, progress, total, seed, log):
        self.G, self.info, self.loss_fn, self.opts = G, info, loss_fn, opts
        self.device, self.progress, self.total, self.log = device, progress, total, log
        self.step = 0
        self.gen = torch.Generator().manual_seed(int(seed))
        self.has_camera = bool(info.camera)
        self.mapping_camera = self.has_camera and int(getattr(G.mapping, "c_dim", 0) or 0) == cam.LABEL_DIM
        d = rgen.default_camera(info)
        self.fov_deg, self.radius, self.lookat = d["fov_deg"], d["radius"], d["lookat"]
        self.mirror = abs(float(self.lookat[0])) < 1e-4   # mirror images are views of a mirrored head
        stats = info.camera_stats or {}
        self.yaw_range = tuple(stats.get("yaw_range_deg") or (-35.0, 35.0))
        self.pitch_range = tuple(stats.get("pitch_range_deg") or (-15.0, 15.0))
        z = torch.randn([1000, G.z_dim], generator=self.gen).to(device)
        with torch.no_grad():
            w = G.mapping(z, rgen.mapping_c(G, self.label(torch.zeros(1), torch.zeros(1)), 1000, device))[:, 0]
        self.w_avg = w.mean(0, keepdim=True)
        self.w_std = float(((w - self.w_avg).square().sum() / w.shape[0]) ** 0.5)

    def label(self, yaw_deg, pitch_deg) -> torch.Tensor:
        """Camera labels (N,25) from yaw/pitch tensors in degrees, differentiable in both."""
        if not self.has_camera:
            return torch.zeros([1, self.info.c_dim], device=self.device)
        return cam.camera_label(yaw_deg, pitch_deg, fov_deg=self.fov_deg, radius=self.radius,
                                lookat=self.lookat, device=self.device)

    def ws_from(self, latent, c) -> torch.Tensor:
        """ws (N,num_ws,w_dim) from the optimised latent (w, w+ or z) and camera."""
        if self.mapping_camera:
            return self.G.mapping(latent.expand(c.shape[0], -1), c)
        if latent.shape[1] == 1:
            latent = latent.repeat(1, self.G.num_ws, 1)
        return latent.expand(c.shape[0], -1, -1)

    def render(self, G, ws, c) -> torch.Tensor:
        return _synthesize(G, ws, c, self.has_camera)

    def tick(self, stage, loss, img):
        self.step += 1
        threads.adapt()
        if self.progress is not None:
            preview = img[:1].detach().float().clamp(-1, 1).cpu()
            if self.progress(self.step, self.total, stage, float(loss), preview) is False:
                raise Cancelled(stage, self.step)

    # ------------------------------------------------------------------ stage 2: camera grid
    def grid_start(self, latent0):
        o = self.opts
        yaws = np.linspace(*self.yaw_range, o["grid_yaws"])
        pitches = np.linspace(*self.pitch_range, o["grid_pitches"])
        yy, pp = np.meshgrid(yaws, pitches, indexing="ij")
        yy, pp = torch.tensor(yy.ravel(), dtype=torch.float32), torch.tensor(pp.ravel(), dtype=torch.float32)
        scores = []
        with torch.no_grad():
            for lo in range(0, len(yy), 16):
                c = self.label(yy[lo:lo + 16], pp[lo:lo + 16])
                if self.mapping_camera:
                    z = torch.randn([8, self.G.z_dim], generator=self.gen).to(self.device)
                    ws = torch.stack([self.G.mapping(z, ci.expand(8, -1)).mean(0) for ci in c])
                else:
                    ws = self.ws_from(latent0, c)
                img = self.render(self.G, ws, c)
                score = self.loss_fn(img, c)
                scores.append(score)
                self.tick("camera", float(torch.cat(scores).min()), img[int(score.argmin())][None])
        scores = torch.cat(scores)
        # Candidates: the best cells of distinct yaws (the mean face scores an atypical photo
        # badly everywhere, so the top cells alone can all sit in one wrong corner), plus the cell
        # nearest the mean training pose, which is the most likely a priori.
        keep, seen_yaws = [], set()
        for i in scores.argsort().tolist():
            if float(yy[i]) not in seen_yaws:
                seen_yaws.add(float(yy[i]))
                keep.append(i)
            if len(keep) == max(1, o["grid_keep"]):
                break
        stats = self.info.camera_stats or {}
        prior = (float(stats.get("yaw_mean_deg", 0.0)), float(stats.get("pitch_mean_deg", 0.0)))
        nearest = int(((yy - prior[0]) ** 2 + (pp - prior[1]) ** 2).argmin())
        if nearest not in keep:
            keep.append(nearest)
        candidates = []
        for i in keep:
            latent, yaw, pitch, loss = self.optimise(latent0, float(yy[i]), float(pp[i]), o["grid_refine_steps"],
                                                     stage="camera", ramp=False)
            candidates.append((loss, latent, yaw, pitch))
        loss, latent, yaw, pitch = min(candidates, key=lambda t: t[0])
        return latent, yaw, pitch

    def pose_units(self, fp) -> int:
        """Progress steps the regressor start takes (training counts only when it is not cached)."""
        o = self.opts
        spread = [0.0] + ([-o["pose_spread"], o["pose_spread"]] if o["pose_spread"] > 0 else [])
        units = len(spread) * o["grid_refine_steps"]
        if not os.path.isfile(pose_regressor.cache_path(fp, o["pose_samples"], o["pose_steps"], self.mirror)):
            units += math.ceil(o["pose_samples"] / 32) + o["pose_steps"] // 25
        return units

    def regressor_start(self, latent0, target, fp):
        """Start from this network's pose regressor's estimate (trained on its own samples; cached)."""
        o = self.opts

        def sample(yaw, pitch):
            c = self.label(yaw, pitch)
            z = torch.randn([c.shape[0], self.G.z_dim], generator=self.gen).to(self.device)
            ws = self.G.mapping(z, rgen.mapping_c(self.G, c, c.shape[0], self.device))
            return self.render(self.G, ws, c)

        def report(_done, _total):
            self.step += 1
            threads.adapt()
            if self.progress is None:
                return
            if self.progress(self.step, self.total, "camera", float("nan"), None) is False:
                raise Cancelled("camera", self.step)

        net = pose_regressor.get(fp, sample, self.yaw_range, self.pitch_range, num_samples=int(o["pose_samples"]),
                                 steps=int(o["pose_steps"]), device=self.device, progress=report, log=self.log,
                                 mirror=self.mirror)
        yaw0, pitch0 = net.predict(target, mirror=self.mirror)
        lo_y, hi_y = self.yaw_range[0] - CAMERA_MARGIN_DEG, self.yaw_range[1] + CAMERA_MARGIN_DEG
        lo_p, hi_p = self.pitch_range[0] - CAMERA_MARGIN_DEG, self.pitch_range[1] + CAMERA_MARGIN_DEG
        pitch0 = min(max(pitch0, lo_p), hi_p)
        spread = [0.0] + ([-o["pose_spread"], o["pose_spread"]] if o["pose_spread"] > 0 else [])
        candidates = []
        for dy in spread:
            yaw = min(max(yaw0 + dy, lo_y), hi_y)
            latent, yaw, pitch, loss = self.optimise(latent0, yaw, pitch0, o["grid_refine_steps"], stage="camera",
                                                     ramp=False)
            candidates.append((loss, latent, yaw, pitch))
        loss, latent, yaw, pitch = min(candidates, key=lambda t: t[0])
        return latent, yaw, pitch

    # ------------------------------------------------------------------ stage 3: pivot
    def optimise(self, latent0, yaw0, pitch0, steps, stage="pivot", ramp=True, refine_camera=True,
                 noise=False):
        """Adam on the latent (and yaw/pitch, and noise maps) for `steps`; returns the final state."""
        o = self.opts
        latent = latent0.detach().clone().requires_grad_(True)
        yaw = torch.tensor([yaw0], dtype=torch.float32, device=self.device)
        pitch = torch.tensor([pitch0], dtype=torch.float32, device=self.device)
        groups = [{"params": [latent], "base_lr": o["lr"] * (0.5 if self.mapping_camera else 1.0)}]
        if refine_camera and self.has_camera:
            yaw.requires_grad_(True)
            pitch.requires_grad_(True)
            groups.append({"params": [yaw, pitch], "base_lr": o["camera_lr"]})
        bufs = _noise_buffers(self.G) if noise else {}
        if bufs:
            for b in bufs.values():
                b.requires_grad_(True)
            groups.append({"params": list(bufs.values()), "base_lr": o["lr"]})
        for g in groups:
            g["lr"] = g["base_lr"]
        opt = torch.optim.Adam(groups, betas=(0.9, 0.999))
        loss_value = float("inf")
        checked_camera_grad = False
        for i in range(max(0, int(steps))):
            t = i / max(1, steps)
            scale = _lr_at(t, o) if ramp else 1.0
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * scale
            c = self.label(yaw, pitch)
            lat = latent
            if ramp and not self.mapping_camera:
                w_noise = o["noise_factor"] * self.w_std * max(0.0, 1.0 - t / o["noise_ramp"]) ** 2
                lat = latent + torch.randn(latent.shape, generator=self.gen).to(self.device) * w_noise
            img = self.render(self.G, self.ws_from(lat, c), c)
            rec = self.loss_fn(img, c.detach()).sum()
            loss = rec + (o["noise_reg_weight"] * _noise_reg(bufs) if bufs else 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if yaw.requires_grad and not checked_camera_grad:
                checked_camera_grad = True
                if yaw.grad is None or not torch.isfinite(yaw.grad).all() or float(yaw.grad.abs()) == 0:
                    self.log("camera refinement: this network's rays are not differentiable; the camera stays "
                             "at the grid estimate")
                    yaw.requires_grad_(False)
                    pitch.requires_grad_(False)
                    opt.param_groups[1]["params"] = []
            opt.step()
            with torch.no_grad():
                if yaw.requires_grad:  # a network cannot show poses far outside its training range
                    yaw.clamp_(self.yaw_range[0] - CAMERA_MARGIN_DEG, self.yaw_range[1] + CAMERA_MARGIN_DEG)
                    pitch.clamp_(self.pitch_range[0] - CAMERA_MARGIN_DEG, self.pitch_range[1] + CAMERA_MARGIN_DEG)
                for b in bufs.values():
                    b -= b.mean()
                    b *= b.square().mean().rsqrt()
            loss_value = float(rec.detach())
            self.tick(stage, loss_value, img)
        for b in bufs.values():
            b.requires_grad_(False)
        return latent.detach(), float(yaw.detach()), float(pitch.detach()), loss_value

    # ------------------------------------------------------------------ stage 4: pivotal tuning
    def tune(self, G_t, latent, c, steps):
        o = self.opts
        if steps <= 0:
            return
        n = max(1, int(o["locality_bank"]))
        with torch.no_grad():
            ref_ws, ref_c = [], []
            if self.has_camera:
                yaws = torch.empty(n).uniform_(*self.yaw_range, generator=self.gen)
                pitches = torch.empty(n).uniform_(*self.pitch_range, generator=self.gen)
                cams = self.label(yaws, pitches)
                ref_ws.append(self.ws_from(latent, cams))
                ref_c.append(cams)
            z = torch.randn([n, self.G.z_dim], generator=self.gen).to(self.device)
            if self.has_camera:
                cams = self.label(torch.empty(n).uniform_(*self.yaw_range, generator=self.gen),
                                  torch.empty(n).uniform_(*self.pitch_range, generator=self.gen))
            else:
                cams = self.label(torch.zeros(1), torch.zeros(1)).expand(n, -1)
            w_z = self.G.mapping(z, rgen.mapping_c(self.G, cams, n, self.device))
            w_p = self.ws_from(latent, cams)
            d = w_z - w_p
            w_r = w_p + o["locality_radius"] * d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            ref_ws.append(w_r)
            ref_c.append(cams)
            ref_ws, ref_c = torch.cat(ref_ws), torch.cat(ref_c)
            ref_img = torch.cat([self.render(G_t, ref_ws[i:i + 8], ref_c[i:i + 8]) for i in range(0, len(ref_ws), 8)])
            pivot_ws = self.ws_from(latent, c)
        kinds = 2 if self.has_camera else 1
        params = _tuned_parameters(G_t, int(o["tune_from_res"]))
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=o["tune_lr"])
        for i in range(int(steps)):
            pick = [int(torch.randint(0, n, [1], generator=self.gen)) + k * n for k in range(kinds)]
            ws = torch.cat([pivot_ws, ref_ws[pick]])
            cc = torch.cat([c, ref_c[pick]])
            img = self.render(G_t, ws, cc)
            rec = self.loss_fn(img[:1], c).sum()
            loc = (img[1:] - ref_img[pick]).square().mean()
            loss = rec + o["locality_weight"] * loc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.tick("tune", float(rec.detach()), img[:1])
        for p in params:
            p.requires_grad_(False)


# ----------------------------------------------------------------------------- entry point


def invert(G, target, camera=None, num_steps=None, tune_steps=None, seed=0, loss="auto", device=None,
           progress=None, *, w_plus=False, optimize_noise=False, info=None, D=None, network_path=None,
           verbose=True, log=None, trust_pickle=False, **options) -> Inversion:
    """Invert `target` (path, PIL image or H x W x 3 uint8 array) into generator `G` (module or path).

    camera: a (25,) / (1,25) label to keep fixed, or None to estimate it (networks with a camera).
    num_steps / tune_steps: pivot and tuning steps (None: DEFAULTS; tune_steps=0 skips tuning).
    loss: 'auto', 'lpips', 'd' or 'pixel' (see raycond.inversion_losses). w_plus: pivot in W+.
    optimize_noise: fit the per-layer constant noise maps too (StyleGAN2-ADA projector style).
    info: a raycond.loading.NetworkInfo (for the camera ranges of a module loaded elsewhere);
    D: a discriminator for loss 'd'; network_path: recorded in saved files so that
    `load` can reopen the network; trust_pickle: as in raycond.loading, for a path `G`.
    Other keyword options override DEFAULTS.
    """
    start = time.time()
    log = log or (print if verbose else (lambda *_: None))
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown inversion option(s): {', '.join(sorted(unknown))}")
    opts = dict(DEFAULTS, **options)
    num_steps = opts["num_steps"] if num_steps is None else int(num_steps)
    tune_steps = opts["tune_steps"] if tune_steps is None else int(tune_steps)
    if num_steps < 0 or tune_steps < 0:
        raise ValueError(f"step counts must be non-negative, got num_steps={num_steps}, tune_steps={tune_steps}")
    base_G, info, D, path = _resolve_generator(G, info, D, trust_pickle)
    network_path = network_path or path
    if device is None:
        device = next(base_G.parameters()).device
    device = rgen.resolve_device(device)
    target_u8, message = prepare_target(target, int(info.img_resolution), int(info.img_channels))
    if message:
        log(message)
    fixed_camera = None if camera is None else _fixed_camera_label(camera, info)
    if not info.camera:
        log("this network has no camera input: the camera is fixed, only the latent is inverted")
    work_G = copy.deepcopy(base_G).to(device).eval().requires_grad_(False)
    D = D.to(device) if D is not None else None
    target_f = target_u8.to(device).float() / 127.5 - 1
    loss_fn = make_loss(loss, target_f, device, D=D, pixel_weight=opts["pixel_weight"], log=log)

    estimate = info.camera and fixed_camera is None
    if opts["camera_start"] not in ("regressor", "grid"):
        raise ValueError(f"camera_start must be 'regressor' or 'grid', got {opts['camera_start']!r}")
    fp = fingerprint(base_G)
    grid_n = math.ceil(opts["grid_yaws"] * opts["grid_pitches"] / 16)
    run = _Run(work_G, info, loss_fn, opts, device, progress, 0, seed, log)
    if not estimate:
        camera_units = 0
    elif opts["camera_start"] == "regressor":
        camera_units = run.pose_units(fp)
    else:
        camera_units = grid_n + (opts["grid_keep"] + 1) * opts["grid_refine_steps"]
    run.total = camera_units + num_steps + tune_steps
    times = {}

    # Initial latent: the mean (z from the seed for networks whose mapping sees the camera).
    if run.mapping_camera:
        latent0 = torch.randn([1, base_G.z_dim], generator=run.gen).to(device)
    else:
        latent0 = run.w_avg[:, None, :].repeat(1, base_G.num_ws if w_plus else 1, 1)

    t0 = time.time()
    yaw = pitch = 0.0
    if estimate and opts["camera_start"] == "regressor":
        latent0, yaw, pitch = run.regressor_start(latent0, target_f, fp)
    elif estimate:
        latent0, yaw, pitch = run.grid_start(latent0)
    elif fixed_camera is not None:
        y, p, _ = cam.yaw_pitch_from_pose(fixed_camera[:, :16].reshape(1, 4, 4))
        yaw, pitch = math.degrees(float(y)), math.degrees(float(p))
    times["camera"] = time.time() - t0

    t0 = time.time()
    latent, yaw, pitch, _ = run.optimise(latent0, yaw, pitch, num_steps, refine_camera=estimate,
                                         noise=optimize_noise)
    if fixed_camera is not None:
        c = fixed_camera.to(device)
    else:
        c = run.label(torch.tensor([yaw]), torch.tensor([pitch])).detach()
    with torch.no_grad():
        ws = run.ws_from(latent, c).detach()
    times["pivot"] = time.time() - t0

    t0 = time.time()
    run.tune(work_G, latent, c, tune_steps)
    work_G.eval().requires_grad_(False)
    times["tune"] = time.time() - t0

    meta = dict(
        has_camera=bool(info.camera), camera_estimated=bool(estimate), yaw_deg=yaw, pitch_deg=pitch,
        fov_deg=run.fov_deg, radius=run.radius, lookat=list(run.lookat), loss=loss_fn.kind,
        num_steps=num_steps, tune_steps=tune_steps, w_plus=bool(w_plus), seed=int(seed),
        network=None if network_path is None else str(network_path), fingerprint=fp,
        kind=info.kind, seconds=time.time() - start, stage_seconds=times,
    )
    return Inversion(camera=c.detach().float(), ws=ws, G=work_G, target=target_u8, meta=meta,
                     z=latent if run.mapping_camera else None, base_G=base_G)
