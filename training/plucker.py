"""Ray embeddings with the exact numerics of the official Ray Conditioning release.

Pickles from the official release execute their own network source, which imports
``training.plucker`` and calls ``plucker_embedding(H, W, intrinsics, c2w)`` (and, for raycond3,
``two_plane_embedding`` / ``origin_dir_embedding``). Their weights were trained with two quirks
that must be reproduced here (see docs/compatibility.md), while ``raycond.rays`` stays geometrically correct:

- pixel coordinates are raw indices + 0.5 although K is normalized, so the optical axis falls
  at pixel 0 instead of the image centre;
- the grid comes from ``meshgrid(arange(W), arange(H), indexing='ij')`` and is then viewed as
  (H, W), which puts x along rows (for square images: the embedding is transposed).

If the intrinsics of the whole batch sum to zero, the identity is used instead of K^-1.
"""

import torch
import torch.nn.functional as F


def get_rays(H, W, intrinsics, c2w, jitter=False):
    """Ray origins and unit directions, each (B, H*W, 3), in the official release's pixel order.

    intrinsics: (B,3,3) normalized K; c2w: (B,4,4). With jitter=True the +0.5 pixel offset is
    replaced by uniform noise (as in their training option).
    """
    device = c2w.device
    dtype = c2w.dtype if c2w.is_floating_point() else torch.float32
    B = c2w.shape[0]
    # Quirk 2: x varies along the first (slow) axis of the flattened grid.
    xs, ys = torch.meshgrid(torch.arange(W, device=device), torch.arange(H, device=device), indexing='ij')
    xs = xs.reshape(-1).to(dtype)
    ys = ys.reshape(-1).to(dtype)
    if jitter:
        xs = xs + torch.rand(xs.shape, device=device, dtype=dtype)
        ys = ys + torch.rand(ys.shape, device=device, dtype=dtype)
    else:
        xs = xs + 0.5                      # quirk 1: raw pixel index + 0.5, K stays normalized
        ys = ys + 0.5
    pix = torch.stack([xs, ys, torch.ones_like(xs)], dim=0)            # (3, H*W)
    if float(intrinsics.sum()) == 0:
        k_inv = torch.eye(3, device=device, dtype=dtype).expand(B, 3, 3)
    else:
        k_inv = torch.linalg.inv(intrinsics.to(dtype))
    dirs = c2w[:, :3, :3].to(dtype) @ (k_inv @ pix)                      # (B, 3, H*W)
    dirs = F.normalize(dirs.transpose(1, 2), dim=-1)                    # (B, H*W, 3)
    origins = c2w[:, :3, 3].to(dtype)[:, None, :].expand(B, H * W, 3)
    return origins, dirs


def _to_image(values, H, W):
    return values.reshape(-1, H, W, 6).permute(0, 3, 1, 2)             # "viewed as (H, W)"


def plucker_embedding(H, W, intrinsics, c2w, jitter=False):
    """Official-release Plücker embedding (B,6,H,W): channels [d, o x d]."""
    o, d = get_rays(H, W, intrinsics, c2w, jitter=jitter)
    return _to_image(torch.cat([d, torch.cross(o, d, dim=-1)], dim=-1), H, W)


def origin_dir_embedding(H, W, intrinsics, c2w, jitter=False):
    """Official-release origin + direction embedding (B,6,H,W): channels [o, d]."""
    o, d = get_rays(H, W, intrinsics, c2w, jitter=jitter)
    return _to_image(torch.cat([o, d], dim=-1), H, W)


def intersect_plane(rays_o, rays_d, normal, distance):
    """Points where rays meet the plane {x : x . normal = distance} (no guard for parallel rays)."""
    t = (distance - (rays_o * normal).sum(-1)) / (rays_d * normal).sum(-1)
    return rays_o + t[..., None] * rays_d


def two_plane_embedding(H, W, intrinsics, c2w):
    """Official-release two-plane embedding (B,6,H,W): ray points on z = -1 then on z = +1."""
    o, d = get_rays(H, W, intrinsics, c2w)
    n = torch.tensor([0.0, 0.0, 1.0], device=c2w.device, dtype=d.dtype)
    return _to_image(torch.cat([intersect_plane(o, d, n, -1), intersect_plane(o, d, n, 1)], dim=-1), H, W)
