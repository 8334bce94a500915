"""Per-pixel camera-ray embeddings (Plücker and ablation variants).

The ray-conditioned generator concatenates, at every synthesis layer, a 6-channel embedding of
the ray through each pixel. This module turns 25-float camera labels into those embeddings:
pixel (column i, row j) of an H x W grid has u = (i + 0.5)/W, v = (j + 0.5)/H and direction
d = normalize(R K^-1 [u, v, 1]); because K is normalized, a camera covers the same field of view
at every resolution. Results are computed without gradients and kept in a small LRU cache,
because the generator asks for the same cameras at every layer resolution of every forward pass.
Cached tensors are shared: treat returned embeddings as read-only. A label that requires grad
(with grad mode on) bypasses the cache and gives embeddings differentiable in the camera: photo
inversion (raycond.inversion) refines yaw/pitch by gradient descent through the rays.
"""

from __future__ import annotations

import collections
import threading

import torch

from raycond.camera import LABEL_DIM, POSE_DIM, validate_label

# ----------------------------------------------------------------------------
# Geometry.


def _parse_resolution(resolution):
    if isinstance(resolution, int) or (torch.is_tensor(resolution) and resolution.ndim == 0):
        h = w = int(resolution)
    else:
        try:
            h, w = (int(x) for x in resolution)
        except (TypeError, ValueError):
            raise ValueError(f'resolution must be an int or (H, W), got {resolution!r}') from None
    if h < 1 or w < 1:
        raise ValueError(f'resolution must be positive, got {(h, w)}')
    return h, w


def _compute_pixel_rays(c: torch.Tensor, h: int, w: int):
    work = torch.float64 if c.dtype == torch.float64 else torch.float32
    validate_label(c)
    cw = c.to(work).reshape(-1, LABEL_DIM)
    pose, K = cw[:, :POSE_DIM].reshape(-1, 4, 4), cw[:, POSE_DIM:].reshape(-1, 3, 3)
    if bool((torch.linalg.det(K).abs() < 1e-12).any()):
        raise ValueError('camera label has singular intrinsics (expected normalized K with f > 0)')
    jj, ii = torch.meshgrid(torch.arange(h, device=c.device, dtype=work),
                            torch.arange(w, device=c.device, dtype=work), indexing='ij')
    uv1 = torch.stack([(ii + 0.5) / w, (jj + 0.5) / h, torch.ones_like(ii)], dim=-1)  # (H,W,3)
    M = pose[:, :3, :3] @ torch.linalg.inv(K)                                          # (N,3,3)
    d = torch.einsum('nij,hwj->nhwi', M, uv1)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return pose[:, :3, 3], d


def _as_label(c) -> torch.Tensor:
    c = torch.as_tensor(c)
    if not c.is_floating_point():
        c = c.float()
    if c.ndim == 1:
        c = c.unsqueeze(0)
    if c.ndim != 2 or c.shape[1] != LABEL_DIM:
        raise ValueError(f'camera label must be (N,{LABEL_DIM}), got shape {tuple(c.shape)}')
    return c


def pixel_rays(c, resolution):
    """Camera origins (N,3) and unit pixel directions (N,H,W,3) for labels c (N,25)."""
    c = _as_label(c)
    h, w = _parse_resolution(resolution)
    with torch.no_grad():
        o, d = _compute_pixel_rays(c, h, w)
    return o.to(c.dtype), d.to(c.dtype)


def _plucker(o, d):
    m = torch.cross(o[:, None, None, :].expand_as(d), d, dim=-1)
    return torch.cat([d, m], dim=-1)


def _origin_dir(o, d):
    return torch.cat([o[:, None, None, :].expand_as(d), d], dim=-1)


TWO_PLANE_Z = (-1.0, 1.0)


def _two_plane(o, d):
    # The 3-D points where each ray crosses the world planes z = -1 and z = +1 (the layout of the
    # official release's ablation); rays almost parallel to the planes get a clamped denominator.
    dz = d[..., 2]
    dz = torch.where(dz.abs() < 1e-4, torch.where(dz < 0, -1e-4, 1e-4).to(dz.dtype), dz)
    out = []
    for z in TWO_PLANE_Z:
        t = (z - o[:, None, None, 2]) / dz
        out.append(o[:, None, None, :] + t[..., None] * d)
    return torch.cat(out, dim=-1)


_KINDS = {'plucker': _plucker, 'origin_dir': _origin_dir, 'two_plane': _two_plane}

# ----------------------------------------------------------------------------
# Cache.

_CACHE_MAX_ENTRIES = 64
_CACHE_MAX_BYTES = 256 << 20
_cache: collections.OrderedDict = collections.OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached embedding."""
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0


def _embed(kind, c, resolution):
    global _cache_bytes
    c = _as_label(c)
    h, w = _parse_resolution(resolution)
    if c.requires_grad and torch.is_grad_enabled():
        o, d = _compute_pixel_rays(c, h, w)
        return _KINDS[kind](o, d).permute(0, 3, 1, 2).to(c.dtype).contiguous()
    key = (kind, c.detach().cpu().double().numpy().tobytes(), c.shape[0], h, w, str(c.device), c.dtype)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    with torch.no_grad():
        o, d = _compute_pixel_rays(c, h, w)
        emb = _KINDS[kind](o, d).permute(0, 3, 1, 2).to(c.dtype).contiguous()
    size = emb.numel() * emb.element_size()
    if size <= _CACHE_MAX_BYTES // 4:
        with _cache_lock:
            if key not in _cache:
                _cache[key] = emb
                _cache_bytes += size
            while len(_cache) > _CACHE_MAX_ENTRIES or _cache_bytes > _CACHE_MAX_BYTES:
                _, old = _cache.popitem(last=False)
                _cache_bytes -= old.numel() * old.element_size()
    return emb


# ----------------------------------------------------------------------------
# Public embeddings.


def plucker_rays(c, resolution) -> torch.Tensor:
    """Plücker embedding (N,6,H,W): channels [d, o x d] for labels c (N,25)."""
    return _embed('plucker', c, resolution)


def origin_dir_rays(c, resolution) -> torch.Tensor:
    """Origin + direction embedding (N,6,H,W): channels [o, d] (ablation)."""
    return _embed('origin_dir', c, resolution)


def two_plane_rays(c, resolution) -> torch.Tensor:
    """Two-plane light-field embedding (N,6,H,W): the points where each ray crosses the world
    planes z = -1 and z = +1 (ablation; degenerate for rays parallel to those planes)."""
    return _embed('two_plane', c, resolution)


EMBEDDINGS = {'plucker': plucker_rays, 'origin_dir': origin_dir_rays, 'two_plane': two_plane_rays}


def ray_embedding(kind, c, resolution) -> torch.Tensor:
    """Embedding by name ('plucker', 'origin_dir', 'two_plane'), shaped (N,6,H,W)."""
    if kind not in EMBEDDINGS:
        raise ValueError(f'unknown ray embedding {kind!r}; expected one of {", ".join(EMBEDDINGS)}')
    return EMBEDDINGS[kind](c, resolution)


def ray_embeddings_for_resolutions(kind, c, resolutions) -> dict:
    """Embeddings for several resolutions at once: {resolution: (N,6,H,W)}."""
    return {res: ray_embedding(kind, c, res) for res in resolutions}


class RayBank:
    """Ray embeddings for one forward pass of a generator: each resolution is computed once
    (through the cache above) and converted once per (dtype, memory format) that a layer asks for,
    so the layers of one block share one tensor."""

    def __init__(self, kind, c, batch_size, device):
        self.kind = kind
        self.c = c.to(device)
        self.batch_size = batch_size
        self._base = {}
        self._converted = {}

    def prepare(self, resolution, dtype, memory_format):
        """Compute (once) the rays at `resolution` in the given dtype and memory format."""
        key = (resolution, dtype, memory_format == torch.channels_last)
        if key not in self._converted:
            self._convert(key)

    def get(self, resolution, like):
        """Rays (N, 6, resolution, resolution) matching `like`'s dtype and memory format."""
        channels_last = like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous()
        key = (resolution, like.dtype, channels_last)
        r = self._converted.get(key)
        return r if r is not None else self._convert(key)

    @torch.compiler.disable
    def _convert(self, key):
        resolution, dtype, channels_last = key
        base = self._base.get(resolution)
        if base is None:
            base = ray_embedding(self.kind, self.c, resolution)
            if base.shape[0] != self.batch_size:
                base = base.expand(self.batch_size, -1, -1, -1)
            self._base[resolution] = base
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        r = base.to(dtype=dtype).contiguous(memory_format=fmt)
        self._converted[key] = r
        return r

    def append_to(self, x, resolution):
        """x (N,C,H,W) with the rays at `resolution` appended as channels (N,C+6,H,W), in x's dtype
        and memory format."""
        r = self.get(resolution, x)
        if r.shape[0] != x.shape[0] or r.shape[2:] != x.shape[2:]:
            raise ValueError(f'rays of shape {list(r.shape)} do not fit features of shape {list(x.shape)}')
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # Concatenating along the innermost (NHWC) axis is about twice as fast as along dim 1.
            return torch.cat([x.permute(0, 2, 3, 1), r.permute(0, 2, 3, 1)], dim=3).permute(0, 3, 1, 2)
        return torch.cat([x, r], dim=1)
