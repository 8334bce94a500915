"""Batched sphere tracer and shader for procedural heads.

Cameras are 25-float labels, so rays come from `raycond.rays.pixel_rays` and the images obey
exactly the conventions the networks are trained with. Rays are clipped to a bounding sphere,
marched against the head SDF with the active set compacted every few steps (most rays converge
early), and the hits shaded with lambert + ambient (with a cheap occlusion term) + Blinn
specular, using the colour of the material that is nearest at the hit point.
"""

from __future__ import annotations

import numpy as np
import torch

from raycond.camera import LABEL_DIM, validate_label
from raycond.rays import pixel_rays
from raycond.synth import sdf
from raycond.synth.params import num_heads

BOUND_CENTER = (0.0, -0.12, -0.02)
BOUND_RADIUS = 0.7
HIT_EPS = 1.2e-3


def _gather(params, idx, keys):
    return {k: params[k][idx] for k in keys}


def _normals(p, G, eps=1.5e-3):
    # Central differences along the axes: symmetric under x -> -x, so mirrored heads shade alike.
    grads = []
    for axis in range(3):
        off = torch.zeros(3, dtype=p.dtype)
        off[axis] = eps
        grads.append(sdf.scene(p + off, G) - sdf.scene(p - off, G))
    n = torch.stack(grads, dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def _trace(origins, dirs, head, params, steps):
    """Sphere-trace rays (M,3) of heads `head` (M,); returns hit distance (inf for misses)."""
    m = origins.shape[0]
    t_hit = torch.full((m,), float('inf'))
    oc = origins - origins.new_tensor(BOUND_CENTER)
    b = (oc * dirs).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - BOUND_RADIUS ** 2)
    inside = disc > 0
    sq = disc.clamp_min(0).sqrt()
    t_near = (-b - sq).clamp_min(0)
    t_far = -b + sq
    idx = torch.nonzero(inside & (t_far > 0)).squeeze(1)
    t = t_near[idx]
    tf = t_far[idx]
    o, d = origins[idx], dirs[idx]
    G = _gather(params, head[idx], sdf.GEOMETRY_KEYS)
    dist = None
    for step in range(steps):
        dist = sdf.scene(o + t[:, None] * d, G)
        hit = dist < HIT_EPS * (1 + 0.3 * step / steps)
        t_hit[idx[hit]] = t[hit]
        t = t + dist
        keep = ~hit & (t < tf)
        if step % 3 == 2 or step == steps - 1:
            if not bool(keep.all()):
                sel = torch.nonzero(keep).squeeze(1)
                idx, t, tf, o, d, dist = idx[sel], t[sel], tf[sel], o[sel], d[sel], dist[sel]
                G = {k: v[sel] for k, v in G.items()}
            if idx.numel() == 0:
                break
    if dist is not None and idx.numel():                    # out of steps but very close: a hit
        near = dist < 6 * HIT_EPS
        t_hit[idx[near]] = t[near]
    return t_hit


def _shade(p, d, head, params):
    """Colours (M,3) of surface points p hit by rays d for heads `head`."""
    G = _gather(params, head, params.keys())
    dparts = sdf.parts(p, G)
    mat = dparts.argmin(dim=-1)
    n = _normals(p, G)
    occ = (sdf.scene(p + 0.03 * n, G) / 0.03).clamp(0, 1) * 0.6 + 0.4

    albedo = G['skin_col'].clone()
    hair = G['hair_col'] * 0.9
    q = sdf.head_coords(p, G)
    streak = torch.sin((q[:, None, :] * G['hair_freq'] * 3).sum(-1) + G['hair_phase']).mean(-1)
    albedo = torch.where((mat == sdf.HAIR)[:, None], hair * (0.85 + 0.15 * streak[:, None]), albedo)
    albedo = torch.where((mat == sdf.BROW)[:, None], G['hair_col'] * 0.7, albedo)
    albedo = torch.where((mat == sdf.LIPS)[:, None], G['lip_col'], albedo)
    albedo = torch.where((mat == sdf.CLOTH)[:, None], G['cloth_col'], albedo)
    # Eyes: white, iris around the gaze direction, pupil.
    ec = sdf.eye_centre(G)
    side = torch.where(q[:, 0] >= 0, 1.0, -1.0)
    ec = ec * torch.stack([side, torch.ones_like(side), torch.ones_like(side)], -1)
    v = q - ec
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    g = G['gaze'] / G['gaze'].norm(dim=-1, keepdim=True)
    cosang = (v * g).sum(-1)
    iris_cos = torch.cos(G['iris_size'])
    pupil_cos = torch.cos(G['iris_size'] * 0.45)
    eye_col = torch.where((cosang > iris_cos)[:, None], G['iris_col'], torch.full_like(albedo, 0.93))
    eye_col = torch.where((cosang > pupil_cos)[:, None], torch.full_like(albedo, 0.03), eye_col)
    albedo = torch.where((mat == sdf.EYE)[:, None], eye_col, albedo)

    light = G['light_dir']
    ndl = (n * light).sum(-1)
    diffuse = ((ndl + 0.2) / 1.2).clamp_min(0)
    h = light - d
    h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    shin = torch.tensor([24.0, 12.0, 80.0, 30.0, 8.0, 6.0])[mat]
    ks = torch.tensor([0.12, 0.18, 0.6, 0.25, 0.05, 0.05])[mat]
    spec = ks * (n * h).sum(-1).clamp_min(0) ** shin * (ndl > 0)
    amb = G['ambient'] * (0.85 + 0.15 * n[:, 1]) * occ
    colour = albedo * (amb[:, None] + (1 - G['ambient'])[:, None] * diffuse[:, None] * G['light_col'] * occ[:, None].sqrt())
    return (colour + spec[:, None] * G['light_col']).clamp(0, 1)


def render_heads(params: dict, c, resolution: int, steps: int = 40, supersample: int = 1) -> np.ndarray:
    """Render heads `params` (N of them) seen by cameras `c` (N,25): uint8 array (N, H, W, 3).

    `resolution` is an int or (H, W); `supersample` renders s x s rays per pixel and averages
    them (anti-aliasing); `steps` bounds the sphere-tracing iterations.
    """
    c = torch.as_tensor(np.asarray(c, dtype=np.float32) if not torch.is_tensor(c) else c).float().cpu()
    validate_label(c)
    c = c.reshape(-1, LABEL_DIM)
    n = num_heads(params)
    if c.shape[0] != n:
        raise ValueError(f'got {n} heads but {c.shape[0]} cameras')
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    h, w = (int(x) for x in resolution)
    ss = int(supersample)
    if ss < 1:
        raise ValueError(f'supersample must be at least 1, got {supersample}')
    H, W = h * ss, w * ss
    with torch.no_grad():
        o, d = pixel_rays(c, (H, W))
        head = torch.arange(n).repeat_interleave(H * W)
        origins = o[head]
        dirs = d.reshape(-1, 3)
        t_hit = _trace(origins, dirs, head, params, steps)
        hit = torch.nonzero(torch.isfinite(t_hit)).squeeze(1)
        vv = (torch.arange(H, dtype=torch.float32) + 0.5) / H
        bg = torch.lerp(params['bg_top'][:, None, :], params['bg_bottom'][:, None, :], vv[None, :, None])  # (N,H,3)
        img = bg[:, :, None, :].expand(n, H, W, 3).reshape(-1, 3).clone()
        if hit.numel():
            p = origins[hit] + t_hit[hit, None] * dirs[hit]
            img[hit] = _shade(p, dirs[hit], head[hit], params)
        img = img.reshape(n, H, W, 3)
        if ss > 1:
            img = img.reshape(n, h, ss, w, ss, 3).mean(dim=(2, 4))
        return (img * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
