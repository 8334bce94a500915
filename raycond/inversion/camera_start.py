"""Where the optimisation starts: camera yaw/pitch and latent, before the pivot.

- 'encoder' (default): this network's encoder (raycond.inversion.encoder) reads camera and w off
  the photo in one pass; the pivot starts there.
- 'regressor': this network's pose regressor (raycond.pose_regressor: grey, per-image normalised,
  so brightness and colour do not matter) predicts yaw/pitch; the mean latent is refined jointly
  with the camera for a few steps from there.
- 'grid': the mean face rendered on a coarse grid of yaws and pitches inside the training ranges
  is scored against the photo, and the best cells of a few distinct yaws plus the cell nearest the
  mean training pose are refined. It is fooled by photos far from the mean face (a dark,
  low-contrast head matched the mean face best 26° from its true yaw), so it is not the default.

Each start returns (latent, yaw, pitch) and ticks the run's progress; `units` says how many ticks
it will take, so the progress total is known before it begins.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from raycond import generate as rgen
from raycond import pose_regressor

from . import encoder as enc
from .pivot import optimise
from .state import Run


def _sample_fn(run: Run, with_w: bool):
    """sample(yaw, pitch) → renders of random latents (and their w) at those cameras, for training."""
    def sample(yaw, pitch):
        c = run.label(yaw, pitch)
        z = torch.randn([c.shape[0], run.G.z_dim], generator=run.gen).to(run.device)
        ws = run.G.mapping(z, rgen.mapping_c(run.G, c, c.shape[0], run.device))
        img = run.render(run.G, ws, c)
        return (img, ws[:, 0]) if with_w else img
    return sample


def _training_report(run: Run):
    """The progress callback of a trainer: one tick per report, no loss and no preview yet."""
    def report(_done, _total):
        run.tick("camera", float("nan"), None)
    return report


def units(run: Run, kind: str, fp: str, network_path) -> int:
    """Progress ticks of start `kind` (training counts only when nothing is cached)."""
    o = run.config
    if kind == "encoder":
        if enc.find(fp, network_path, o.encoder_samples, o.encoder_steps) is not None:
            return 1
        n, steps = enc.sizes(o.encoder_samples, o.encoder_steps)
        return 1 + math.ceil(n / 32) + steps // 25
    if kind == "grid":
        return math.ceil(o.grid_yaws * o.grid_pitches / 16) + (o.grid_keep + 1) * o.grid_refine_steps
    spread = 3 if o.pose_spread > 0 else 1
    ticks = spread * o.grid_refine_steps
    if not os.path.isfile(pose_regressor.cache_path(fp, o.pose_samples, o.pose_steps, run.mirror)):
        ticks += math.ceil(o.pose_samples / 32) + o.pose_steps // 25
    return ticks


def encoder_start(run: Run, target: torch.Tensor, fp: str, network_path, w_plus: bool):
    """Camera and w read off the photo by this network's encoder (trained first if there is none)."""
    o = run.config
    net = enc.get(fp, _sample_fn(run, with_w=True), run.G.w_dim, run.yaw_range, run.pitch_range,
                  network_path=network_path, num_samples=o.encoder_samples, steps=o.encoder_steps,
                  device=run.device, progress=_training_report(run), log=run.log)
    yaw, pitch, w = net.predict(target, mirror=run.mirror)
    run.camera_from_photos = net.camera_reader is not None
    yaw, pitch = run.clamp_camera(yaw, pitch)
    latent = w.to(run.device)[:, None, :].repeat(1, run.G.num_ws if w_plus else 1, 1)
    with torch.no_grad():
        c = run.label(torch.tensor([yaw]), torch.tensor([pitch]))
        img = run.render(run.G, run.ws_from(latent, c), c)
        loss = float(run.loss_fn(img, c).sum())
    run.tick("camera", loss, img)
    return latent, yaw, pitch


def regressor_start(run: Run, latent0, target: torch.Tensor, fp: str):
    """The pose regressor's camera (trained on this network's samples; cached), refined jointly
    with the latent for a few steps; with pose_spread, also from starts that far either side."""
    o = run.config
    net = pose_regressor.get(fp, _sample_fn(run, with_w=False), run.yaw_range, run.pitch_range,
                             num_samples=int(o.pose_samples), steps=int(o.pose_steps), device=run.device,
                             progress=_training_report(run), log=run.log, mirror=run.mirror)
    yaw0, pitch0 = run.clamp_camera(*net.predict(target, mirror=run.mirror))
    spread = [0.0] + ([-o.pose_spread, o.pose_spread] if o.pose_spread > 0 else [])
    candidates = []
    for dy in spread:
        yaw, _ = run.clamp_camera(yaw0 + dy, pitch0)
        latent, yaw, pitch, loss = optimise(run, latent0, yaw, pitch0, o.grid_refine_steps, stage="camera",
                                            ramp=False)
        candidates.append((loss, latent, yaw, pitch))
    _, latent, yaw, pitch = min(candidates, key=lambda t: t[0])
    return latent, yaw, pitch


def _grid_scores(run: Run, latent0, yy, pp) -> torch.Tensor:
    scores = []
    with torch.no_grad():
        for lo in range(0, len(yy), 16):
            c = run.label(yy[lo:lo + 16], pp[lo:lo + 16])
            if run.mapping_camera:
                z = torch.randn([8, run.G.z_dim], generator=run.gen).to(run.device)
                ws = torch.stack([run.G.mapping(z, ci.expand(8, -1)).mean(0) for ci in c])
            else:
                ws = run.ws_from(latent0, c)
            img = run.render(run.G, ws, c)
            score = run.loss_fn(img, c)
            scores.append(score)
            run.tick("camera", float(torch.cat(scores).min()), img[int(score.argmin())][None])
    return torch.cat(scores)


def grid_start(run: Run, latent0):
    """The mean face scored on a yaw/pitch grid; the best cells of distinct yaws (the mean face
    scores an atypical photo badly everywhere, so the top cells alone can sit in one wrong
    corner) plus the cell nearest the mean training pose are refined, and the best is kept."""
    o = run.config
    yy, pp = np.meshgrid(np.linspace(*run.yaw_range, o.grid_yaws), np.linspace(*run.pitch_range, o.grid_pitches),
                         indexing="ij")
    yy, pp = torch.tensor(yy.ravel(), dtype=torch.float32), torch.tensor(pp.ravel(), dtype=torch.float32)
    scores = _grid_scores(run, latent0, yy, pp)
    keep, seen_yaws = [], set()
    for i in scores.argsort().tolist():
        if float(yy[i]) not in seen_yaws:
            seen_yaws.add(float(yy[i]))
            keep.append(i)
        if len(keep) == max(1, o.grid_keep):
            break
    stats = run.info.camera_stats or {}
    prior = (float(stats.get("yaw_mean_deg", 0.0)), float(stats.get("pitch_mean_deg", 0.0)))
    nearest = int(((yy - prior[0]) ** 2 + (pp - prior[1]) ** 2).argmin())
    if nearest not in keep:
        keep.append(nearest)
    candidates = []
    for i in keep:
        latent, yaw, pitch, loss = optimise(run, latent0, float(yy[i]), float(pp[i]), o.grid_refine_steps,
                                            stage="camera", ramp=False)
        candidates.append((loss, latent, yaw, pitch))
    _, latent, yaw, pitch = min(candidates, key=lambda t: t[0])
    return latent, yaw, pitch
