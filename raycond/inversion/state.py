"""What the stages of one inversion share: the network copy, its camera model, the loss, the
step counter and the progress callback (`Run`), and the one way every stage renders."""

from __future__ import annotations

import torch

from raycond import camera as cam
from raycond import generate as rgen

from .config import InversionConfig

# Estimated yaw/pitch stay within the training data's pose range widened on each side by this
# fraction of its half-width, and by at least CAMERA_MARGIN_DEG. camera_stats holds the 1st-99th
# percentile: with 5° only, a held-out head at yaw 59° (inside the training data's ±60°) was
# clamped to 52° and read 7.2° off, though the camera reader had it within 2°.
CAMERA_MARGIN_FRACTION = 0.3
CAMERA_MARGIN_DEG = 5.0


class Cancelled(RuntimeError):
    """The progress callback returned False; the inversion stopped at `stage`, step `step`."""

    def __init__(self, stage: str, step: int):
        super().__init__(f"inversion cancelled during {stage} at step {step}")
        self.stage = stage
        self.step = step


def synthesize(G, ws, c, has_camera: bool, force_fp32: bool = True) -> torch.Tensor:
    """rgen.synthesize for camera networks; networks whose synthesis takes an unused c (raycond2
    built without a camera) get their empty label passed straight through. force_fp32=False lets
    the network's fp16 layers run in their 16-bit dtype (`Run.force_fp32`: rgen.force_fp32_for)."""
    if has_camera or not rgen.synthesis_takes_c(G):
        return rgen.synthesize(G, ws, c if has_camera else None, force_fp32=force_fp32)
    return G.synthesis(ws, c.expand(ws.shape[0], -1), noise_mode="const", force_fp32=force_fp32)


class Run:
    """State shared by the stages of one inversion (network, camera model, loss, callback)."""

    def __init__(self, G, info, loss_fn, config: InversionConfig, device, progress, log, on_step=None):
        self.G, self.info, self.loss_fn, self.config = G, info, loss_fn, config
        self.device, self.progress, self.log = device, progress, log
        self.on_step = on_step           # the caller's per-step hook (its thread policy), run before progress
        self.total = 0                   # progress units of the whole inversion, set once the stages are known
        self.step = 0
        self.camera_from_photos = False  # the start's camera came from a reader trained on labelled photos
        self.gen = torch.Generator().manual_seed(int(config.seed))
        self.has_camera = bool(info.camera)
        # the rule of every tool by default: fp16 layers in fp16 on CUDA, in bf16 on a CPU with native
        # bfloat16, float32 elsewhere; config.fp32 (--fp32) runs every layer in float32
        self.force_fp32 = rgen.force_fp32_for(device, config.fp32, G)
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

    def clamp_camera(self, yaw: float, pitch: float) -> tuple[float, float]:
        """A network cannot show poses far outside its training range: keep estimates near it."""
        def clamp(v, lo, hi):
            m = max(CAMERA_MARGIN_DEG, CAMERA_MARGIN_FRACTION * (hi - lo) / 2)
            return min(max(v, lo - m), hi + m)
        return clamp(yaw, *self.yaw_range), clamp(pitch, *self.pitch_range)

    def ws_from(self, latent, c) -> torch.Tensor:
        """ws (N,num_ws,w_dim) from the optimised latent (w, w+ or z) and camera."""
        if self.mapping_camera:
            return self.G.mapping(latent.expand(c.shape[0], -1), c)
        if latent.shape[1] == 1:
            latent = latent.repeat(1, self.G.num_ws, 1)
        return latent.expand(c.shape[0], -1, -1)

    def render(self, G, ws, c) -> torch.Tensor:
        """Images (N,C,H,W) of ws at c in float32 (the losses' dtype) whatever the layers ran in."""
        return synthesize(G, ws, c, self.has_camera, self.force_fp32).float()

    def tick(self, stage, loss, img):
        """One progress unit done: run the step hook, report, and stop if the caller asks."""
        self.step += 1
        if self.on_step is not None:
            self.on_step()
        if self.progress is not None:
            preview = None if img is None else img[:1].detach().float().clamp(-1, 1).cpu()
            if self.progress(self.step, self.total, stage, float(loss), preview) is False:
                raise Cancelled(stage, self.step)
