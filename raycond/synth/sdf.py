"""Signed distance function of a procedural head, evaluated for many points at once.

Every function takes points `p` (..., 3) and per-point parameters `P` (a dict of tensors whose
leading dimensions match `p`'s, see params.py), so the same code runs on a whole batch of
different heads. Skin parts (skull, face, chin, nose, ears, neck) are blended with a smooth
minimum; hair, eyes, brows, lips and clothes are separate materials joined by a hard minimum.
Pairs (eyes, ears, brows) use the |x| symmetry trick, which keeps mirrored heads exactly mirrored.
"""

from __future__ import annotations

import torch

# Material ids (index into the stacked part distances).
SKIN, HAIR, EYE, LIPS, BROW, CLOTH = range(6)
NUM_MATERIALS = 6

# Parameters that the distance function reads (the rest only affect shading).
GEOMETRY_KEYS = ('scale', 'head_x', 'skull_r', 'face_r', 'chin_r', 'nose_x', 'nose_len', 'nose_w',
                 'nose_z', 'eye_x', 'eye_y', 'eye_r', 'brow_y', 'brow_t', 'ear_r', 'mouth_y',
                 'mouth_w', 'lip_t', 'mouth_tilt', 'neck_r', 'torso_r', 'hair_style', 'hair_t',
                 'fringe_y', 'fringe_tilt', 'hair_len', 'hair_freq', 'hair_phase', 'hair_amp')

SKULL_C = (0.0, 0.035, -0.025)
FACE_C = (0.0, -0.045, 0.055)
FAR = 1e3


def _ellipsoid(q, r):
    """Approximate (bound-like) distance to an axis-aligned ellipsoid centred at the origin."""
    k0 = (q / r).norm(dim=-1)
    k1 = (q / (r * r)).norm(dim=-1).clamp_min(1e-8)
    return k0 * (k0 - 1) / k1


def _smin(a, b, k):
    h = (0.5 + 0.5 * (b - a) / k).clamp(0, 1)
    return torch.lerp(b, a, h) - k * h * (1 - h)


def _vec(*xs):
    return torch.stack(torch.broadcast_tensors(*xs), dim=-1)


def face_front_z(P, x, y):
    """z of the face ellipsoid's front surface at (x, y) in head coordinates."""
    r = P['face_r']
    s = 1 - (x / r[..., 0]) ** 2 - ((y - FACE_C[1]) / r[..., 1]) ** 2
    return FACE_C[2] + r[..., 2] * s.clamp_min(0.05).sqrt()


def eye_centre(P):
    """Right-side eye centre (x > 0) in head coordinates, (..., 3)."""
    ex, ey, er = P['eye_x'], P['eye_y'], P['eye_r']
    return _vec(ex, ey, face_front_z(P, ex, ey) - 0.55 * er)


def head_coords(p, P):
    """World points -> head coordinates (undo the head's x offset and scale)."""
    off = torch.zeros_like(p)
    off[..., 0] = P['head_x']
    return (p - off) / P['scale'][..., None]


def parts(p, P):
    """Distances to each material (..., NUM_MATERIALS) in world units."""
    q = head_coords(p, P)
    x, y, z = q.unbind(-1)
    ax = x.abs()
    qa = torch.stack([ax, y, z], dim=-1)

    # Skin: skull, face, chin, nose, ears, neck.
    skull = _ellipsoid(q - q.new_tensor(SKULL_C), P['skull_r'])
    face = _ellipsoid(q - q.new_tensor(FACE_C), P['face_r'])
    chin_r = P['chin_r']
    chin_c = _vec(torch.zeros_like(chin_r), -0.150 - 0.2 * chin_r, face_front_z(P, 0, -0.15) - 1.15 * chin_r)
    chin = _ellipsoid(q - chin_c, _vec(1.25 * chin_r, 0.85 * chin_r, chin_r))
    nose_top = P['eye_y'] - 0.02
    nose_cy = nose_top - 0.5 * P['nose_len']
    nose_cz = face_front_z(P, 0, nose_cy) - 0.01
    nose = _ellipsoid(q - _vec(P['nose_x'], nose_cy, nose_cz + 0.35 * P['nose_z']),
                      _vec(0.75 * P['nose_w'], 0.5 * P['nose_len'] + 0.01, 0.6 * P['nose_z']))
    tip = _ellipsoid(q - _vec(P['nose_x'], nose_top - P['nose_len'], nose_cz + 0.65 * P['nose_z']),
                     _vec(1.1 * P['nose_w'], 0.75 * P['nose_w'], 0.8 * P['nose_w']))
    ear_c = _vec(P['skull_r'][..., 0] - 0.006, torch.full_like(x, -0.005), torch.full_like(x, -0.02))
    ear = _ellipsoid(qa - ear_c, P['ear_r'])
    neck_y = y.clamp(-0.60, -0.08)
    neck = (q - _vec(torch.zeros_like(x), neck_y, torch.full_like(x, -0.02))).norm(dim=-1) - P['neck_r']
    skin = _smin(skull, face, 0.03)
    skin = _smin(skin, chin, 0.03)
    skin = _smin(skin, torch.minimum(nose, tip), 0.015)
    skin = _smin(skin, ear, 0.012)
    skin = _smin(skin, neck, 0.04)
    ec = eye_centre(P)
    er = P['eye_r'][..., None]
    socket = _ellipsoid(qa - ec - q.new_tensor([0, 0.002, 0.006]), er * q.new_tensor([1.45, 0.8, 1.0]))
    skin = -_smin(-skin, socket, 0.008)                     # carve the eye sockets

    # Eyes (one eval for both through |x|).
    eye = (qa - ec).norm(dim=-1) - P['eye_r']

    # Brows.
    brow_c = _vec(P['eye_x'] + 0.004, P['eye_y'] + P['eye_r'] + P['brow_y'] * 0.5,
                  face_front_z(P, P['eye_x'], P['eye_y'] + 0.04) - 0.004)
    brow = _ellipsoid(qa - brow_c, _vec(torch.full_like(P['brow_t'], 0.030), P['brow_t'], torch.full_like(P['brow_t'], 0.012)))

    # Lips (upper and lower), with an asymmetric tilt.
    my = P['mouth_y'] + P['mouth_tilt'] * x
    lz = face_front_z(P, 0, P['mouth_y']) - 0.010
    lip_r = _vec(P['mouth_w'], P['lip_t'], torch.full_like(P['lip_t'], 0.020))
    upper = _ellipsoid(torch.stack([x, y - my - 0.95 * P['lip_t'], z - lz], -1), lip_r)
    lower = _ellipsoid(torch.stack([x, y - my + 1.05 * P['lip_t'], z - lz + 0.003], -1), lip_r * q.new_tensor([0.9, 1.1, 1.0]))
    lips = torch.minimum(upper, lower)

    # Clothes.
    cloth = _ellipsoid(q - q.new_tensor([0.0, -0.40, -0.04]), P['torso_r'])

    # Hair: a cap over the skull cut free around the face, longer hair behind, or a bun.
    style = P['hair_style']
    cap_r = P['skull_r'] + P['hair_t'][..., None] * q.new_tensor([1.0, 0.7, 1.0])
    cap = _ellipsoid(q - q.new_tensor([0.0, 0.045, -0.03]), cap_r)
    freq = P['hair_freq']
    waves = torch.sin((q[..., None, :] * freq).sum(-1) + P['hair_phase']).sum(-1)
    cap = cap - P['hair_amp'] * waves
    fringe = P['fringe_y'] + P['fringe_tilt'] * x * 0.25
    opening = torch.minimum(z - 0.035, fringe - y)            # > 0 inside the face opening
    low = torch.where(style <= 1, torch.full_like(style, 0.015), torch.full_like(style, -0.06))
    hair = torch.maximum(cap, opening)
    hair = torch.maximum(hair, low - y)
    long_len = P['hair_len']
    long = _ellipsoid(q - _vec(torch.zeros_like(long_len), -0.02 - 0.5 * long_len, torch.full_like(long_len, -0.07)),
                      _vec(P['skull_r'][..., 0] + P['hair_t'] + 0.01, 0.5 * long_len + 0.12, torch.full_like(long_len, 0.135)))
    long = torch.maximum(long - P['hair_amp'] * waves, z - 0.0)
    hair = torch.where(style == 3, _smin(hair, long, 0.02), hair)
    bun = (q - q.new_tensor([0.0, 0.17, -0.14])).norm(dim=-1) - 0.065
    hair = torch.where(style == 4, _smin(hair, bun, 0.02), hair)
    hair = torch.where(style == 0, torch.full_like(hair, FAR), hair)

    d = torch.stack([skin, hair, eye, lips, brow, cloth], dim=-1)
    return d * P['scale'][..., None]


def scene(p, P):
    """Distance to the whole head (...,) in world units."""
    return parts(p, P).min(dim=-1).values
