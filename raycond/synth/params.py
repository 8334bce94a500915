"""Random parameters of procedural heads (shape, hair style, colours, lighting, background).

A batch of heads is a dict of float32 tensors whose first dimension is the head index. World
units follow EG3D's FFHQ setup: y up, the face looks toward +z, the head (hair included) spans
about [-0.3, 0.3] x [-0.3, 0.4] x [-0.35, 0.3] around the origin so that it fills the frame of a camera at radius 2.7 with
f = 4.2647 looking at (0, 0, 0.2). Keys listed in MIRROR_X hold x coordinates (or vectors with an
x component in their last dimension) and are negated by `mirror_head_params`, which gives the
head reflected through the plane x = 0.
"""

from __future__ import annotations

import numpy as np
import torch

HAIR_STYLES = ('bald', 'short', 'medium', 'long', 'bun')

_SKIN = np.array([[0.98, 0.84, 0.74], [0.93, 0.74, 0.60], [0.80, 0.58, 0.43], [0.60, 0.40, 0.27],
                  [0.40, 0.26, 0.17]], dtype=np.float32)
_HAIR = np.array([[0.06, 0.05, 0.05], [0.22, 0.13, 0.07], [0.45, 0.28, 0.14], [0.80, 0.65, 0.38],
                  [0.55, 0.22, 0.08], [0.62, 0.62, 0.62], [0.90, 0.88, 0.82]], dtype=np.float32)
_HAIR_P = np.array([0.25, 0.25, 0.17, 0.13, 0.08, 0.07, 0.05])
_IRIS = np.array([[0.30, 0.17, 0.08], [0.18, 0.40, 0.70], [0.25, 0.50, 0.30], [0.45, 0.45, 0.50],
                  [0.50, 0.32, 0.12]], dtype=np.float32)

# Keys whose last-dimension x component (index 0) flips sign under mirroring.
MIRROR_VEC = ('light_dir', 'hair_freq', 'gaze')
# Scalar keys that are x offsets or left/right asymmetries.
MIRROR_SCALAR = ('nose_x', 'fringe_tilt', 'mouth_tilt', 'head_x')


def _u(rng, n, lo, hi, shape=()):
    return rng.uniform(lo, hi, size=(n,) + tuple(shape)).astype(np.float32)


def _mix_palette(rng, n, palette, p=None, jitter=0.06):
    idx = rng.choice(len(palette), size=n, p=p)
    base = palette[idx]
    other = palette[rng.choice(len(palette), size=n, p=p)]
    t = rng.uniform(0, 0.35, size=(n, 1)).astype(np.float32)
    col = base * (1 - t) + other * t
    col = col * rng.uniform(1 - jitter, 1 + jitter, size=(n, 3)).astype(np.float32)
    return np.clip(col, 0, 1).astype(np.float32)


def sample_head_params(rng, n: int) -> dict:
    """Draw `n` random heads. `rng` is a numpy Generator (or an int seed)."""
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    n = int(n)
    if n < 1:
        raise ValueError(f'number of heads must be at least 1, got {n}')
    s = _u(rng, n, 1.17, 1.31)
    p = {}
    p['scale'] = s
    p['head_x'] = _u(rng, n, -0.004, 0.004)
    p['skull_r'] = np.stack([_u(rng, n, 0.150, 0.170), _u(rng, n, 0.185, 0.205), _u(rng, n, 0.190, 0.210)], 1)
    p['face_r'] = np.stack([_u(rng, n, 0.112, 0.134), _u(rng, n, 0.150, 0.172), _u(rng, n, 0.120, 0.140)], 1)
    p['chin_r'] = _u(rng, n, 0.045, 0.065)
    p['nose_x'] = _u(rng, n, -0.006, 0.006)
    p['nose_len'] = _u(rng, n, 0.040, 0.060)
    p['nose_w'] = _u(rng, n, 0.018, 0.027)
    p['nose_z'] = _u(rng, n, 0.030, 0.045)
    p['eye_x'] = _u(rng, n, 0.054, 0.064)
    p['eye_y'] = _u(rng, n, 0.030, 0.045)
    p['eye_r'] = _u(rng, n, 0.024, 0.029)
    p['gaze'] = np.stack([_u(rng, n, -0.25, 0.25), _u(rng, n, -0.15, 0.15), np.ones(n, np.float32)], 1)
    p['iris_size'] = _u(rng, n, 0.50, 0.62)
    p['brow_y'] = _u(rng, n, 0.030, 0.042)
    p['brow_t'] = _u(rng, n, 0.005, 0.009)
    p['ear_r'] = np.stack([_u(rng, n, 0.015, 0.022), _u(rng, n, 0.040, 0.052), _u(rng, n, 0.026, 0.034)], 1)
    p['mouth_y'] = _u(rng, n, -0.135, -0.115)
    p['mouth_w'] = _u(rng, n, 0.036, 0.050)
    p['lip_t'] = _u(rng, n, 0.008, 0.013)
    p['mouth_tilt'] = _u(rng, n, -0.08, 0.08)
    p['neck_r'] = _u(rng, n, 0.072, 0.088)
    p['torso_r'] = np.stack([_u(rng, n, 0.30, 0.36), _u(rng, n, 0.12, 0.15), _u(rng, n, 0.13, 0.17)], 1)
    style = rng.choice(len(HAIR_STYLES), size=n, p=[0.08, 0.30, 0.25, 0.25, 0.12])
    p['hair_style'] = style.astype(np.float32)
    p['hair_t'] = _u(rng, n, 0.012, 0.045) * (style != 0)
    p['fringe_y'] = _u(rng, n, 0.08, 0.15)
    p['fringe_tilt'] = _u(rng, n, -0.5, 0.5)
    p['hair_len'] = _u(rng, n, 0.15, 0.35)
    p['hair_freq'] = rng.normal(0, 45, size=(n, 3, 3)).astype(np.float32)
    p['hair_phase'] = _u(rng, n, 0, 2 * np.pi, (3,))
    p['hair_amp'] = _u(rng, n, 0.002, 0.007)
    p['skin_col'] = _mix_palette(rng, n, _SKIN)
    p['hair_col'] = _mix_palette(rng, n, _HAIR, _HAIR_P)
    p['iris_col'] = _mix_palette(rng, n, _IRIS)
    p['lip_col'] = np.clip(p['skin_col'] * np.array([0.85, 0.55, 0.55], np.float32) + _u(rng, n, 0.0, 0.12, (1,)) * np.array([1, 0, 0.1], np.float32), 0, 1)
    p['cloth_col'] = _u(rng, n, 0.05, 0.95, (3,))
    light = np.stack([_u(rng, n, -1.0, 1.0), _u(rng, n, -0.1, 1.0), _u(rng, n, 0.4, 1.5)], 1)
    p['light_dir'] = light / np.linalg.norm(light, axis=1, keepdims=True)
    p['ambient'] = _u(rng, n, 0.25, 0.45)
    p['light_col'] = _u(rng, n, 0.85, 1.15, (3,)) * _u(rng, n, 0.9, 1.1, (1,))
    p['bg_top'] = _u(rng, n, 0.05, 0.95, (3,))
    p['bg_bottom'] = np.clip(p['bg_top'] * _u(rng, n, 0.4, 1.1, (1,)) + _u(rng, n, -0.15, 0.15, (3,)), 0, 1)
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in p.items()}


def mirror_head_params(params: dict) -> dict:
    """Params of the same heads reflected through the world plane x = 0."""
    out = {}
    for k, v in params.items():
        if k in MIRROR_SCALAR:
            v = -v
        elif k in MIRROR_VEC:
            v = v.clone()
            v[..., 0] = -v[..., 0]
        out[k] = v
    return out


def select_heads(params: dict, index) -> dict:
    """Subset of a batch of heads (index: slice, list or tensor)."""
    return {k: v[index] for k, v in params.items()}


def num_heads(params: dict) -> int:
    """Number of heads in a params dict."""
    return int(next(iter(params.values())).shape[0])
