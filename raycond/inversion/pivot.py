"""The pivot (StyleGAN2-ADA projector style): Adam on the latent and, jointly, the camera.

The latent is w (W, or W+), or z for networks whose mapping sees the camera, so that the camera
keeps acting through the mapping. The learning rate ramps up, then decays (cosine); decaying noise
is added to w early on; optionally the per-layer constant noise maps are fitted with their
regulariser. Yaw/pitch are optimised through the differentiable camera label
(raycond.camera.camera_label) and ray embeddings (raycond.rays); FOV, radius and look-at stay at
the training data's values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .state import Run


def lr_scale(t: float, rampup: float, rampdown: float) -> float:
    """Learning-rate factor at progress t in [0,1]: linear warm-up, then cosine decay at the end."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / rampup)


def noise_buffers(G) -> dict:
    return {n: b for n, b in G.synthesis.named_buffers() if "noise_const" in n}


def noise_regulariser(bufs) -> torch.Tensor:
    """StyleGAN2-ADA's: autocorrelation of each noise map at every scale down to 8², squared."""
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


def _param_groups(run: Run, latent, yaw, pitch, bufs, refine_camera: bool) -> list:
    o = run.config
    groups = [{"params": [latent], "base_lr": o.lr * (0.5 if run.mapping_camera else 1.0)}]
    if refine_camera and run.has_camera:
        yaw.requires_grad_(True)
        pitch.requires_grad_(True)
        groups.append({"params": [yaw, pitch], "base_lr": o.camera_lr})
    if bufs:
        for b in bufs.values():
            b.requires_grad_(True)
        groups.append({"params": list(bufs.values()), "base_lr": o.lr})
    for g in groups:
        g["lr"] = g["base_lr"]
    return groups


def _camera_has_gradient(run: Run, yaw, pitch, opt) -> bool:
    """False (and the camera frozen) for networks whose rays are not differentiable."""
    if yaw.grad is not None and torch.isfinite(yaw.grad).all() and float(yaw.grad.abs()) != 0:
        return True
    run.log("camera refinement: this network's rays are not differentiable; the camera stays at its start")
    yaw.requires_grad_(False)
    pitch.requires_grad_(False)
    opt.param_groups[1]["params"] = []
    return False


def optimise(run: Run, latent0, yaw0: float, pitch0: float, steps: int, stage: str = "pivot", ramp: bool = True,
             refine_camera: bool = True, noise: bool = False):
    """Adam on the latent (and yaw/pitch, and noise maps) for `steps`.

    Returns (latent, yaw, pitch, loss of the last step). ramp=False: constant learning rate and no
    added noise (the short refinements of the camera starts).
    """
    o = run.config
    latent = latent0.detach().clone().requires_grad_(True)
    yaw = torch.tensor([float(yaw0)], dtype=torch.float32, device=run.device)
    pitch = torch.tensor([float(pitch0)], dtype=torch.float32, device=run.device)
    bufs = noise_buffers(run.G) if noise else {}
    opt = torch.optim.Adam(_param_groups(run, latent, yaw, pitch, bufs, refine_camera), betas=(0.9, 0.999))
    loss_value = float("inf")
    checked_camera = False
    for i in range(max(0, int(steps))):
        t = i / max(1, steps)
        scale = lr_scale(t, o.lr_rampup, o.lr_rampdown) if ramp else 1.0
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * scale
        c = run.label(yaw, pitch)
        lat = latent
        if ramp and not run.mapping_camera and o.noise_factor > 0:
            w_noise = o.noise_factor * run.w_std * max(0.0, 1.0 - t / o.noise_ramp) ** 2
            lat = latent + torch.randn(latent.shape, generator=run.gen).to(run.device) * w_noise
        img = run.render(run.G, run.ws_from(lat, c), c)
        rec = run.loss_fn(img, c.detach()).sum()
        loss = rec + (o.noise_reg_weight * noise_regulariser(bufs) if bufs else 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if yaw.requires_grad and not checked_camera:
            checked_camera = True
            _camera_has_gradient(run, yaw, pitch, opt)
        opt.step()
        with torch.no_grad():
            if yaw.requires_grad:
                y, p = run.clamp_camera(float(yaw), float(pitch))
                yaw.fill_(y)
                pitch.fill_(p)
            for b in bufs.values():
                b -= b.mean()
                b *= b.square().mean().rsqrt()
        loss_value = float(rec.detach())
        run.tick(stage, loss_value, img)
    for b in bufs.values():
        b.requires_grad_(False)
    return latent.detach(), float(yaw.detach()), float(pitch.detach()), loss_value
