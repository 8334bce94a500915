"""Camera poses, intrinsics and 25-float camera labels (EG3D-compatible).

Every part of raycond (datasets, networks, scripts, the visualizer) speaks about cameras
through this module, so the conventions of docs/conventions.md live here in one place:

- world is y-up; a pose is a 4x4 camera-to-world matrix with OpenCV camera axes
  (x right, y down, z forward);
- ``orbit_camera(yaw, pitch)`` puts the camera at
  ``radius * (cos p sin y, -sin p, cos p cos y)`` looking at ``lookat`` (true angles);
- intrinsics are normalized by the image size, ``K = [[f, 0, cx], [0, f, cy], [0, 0, 1]]``;
- a label ``c`` is the 16 entries of cam2world (row-major) then the 9 of K (row-major).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

# ----------------------------------------------------------------------------
# Helpers.


def _as_angle_tensor(x, device=None) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float32, device=device)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1:
        raise ValueError(f'angles must be a float or a 1-D tensor, got shape {tuple(t.shape)}')
    return t


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _lookat_tensor(lookat, n: int, device) -> torch.Tensor:
    t = torch.as_tensor(lookat, dtype=torch.float32, device=device)
    if t.shape[-1:] != (3,) or t.ndim > 2:
        raise ValueError(f'lookat must be 3 values or (N,3), got shape {tuple(t.shape)}')
    return t.reshape(-1, 3).expand(n, 3)


def cam2world_from_origin(origins: torch.Tensor, lookat) -> torch.Tensor:
    """Build EG3D-style cam2world matrices (N,4,4) for cameras at `origins` (N,3) looking at `lookat`."""
    n = origins.shape[0]
    target = _lookat_tensor(lookat, n, origins.device)
    forward = _normalize(target - origins)
    up = torch.tensor([0.0, 1.0, 0.0], device=origins.device).expand_as(forward)
    right = -_normalize(torch.cross(up, forward, dim=-1))
    cam_up = _normalize(torch.cross(forward, right, dim=-1))
    pose = torch.eye(4, device=origins.device).repeat(n, 1, 1)
    pose[:, :3, :3] = torch.stack([right, cam_up, forward], dim=-1)
    pose[:, :3, 3] = origins
    return pose


# ----------------------------------------------------------------------------
# Poses.


def orbit_camera(yaw, pitch, radius=2.7, lookat=(0, 0, 0.2), device=None) -> torch.Tensor:
    """Cam2world (N,4,4) float32 on a sphere about the world origin looking at `lookat`.

    yaw/pitch are radians (float or 1-D tensor, broadcast); (0, 0) is frontal, positive yaw moves
    the camera toward +x and positive pitch toward -y.
    """
    yaw = _as_angle_tensor(yaw, device)
    pitch = _as_angle_tensor(pitch, device)
    r = _as_angle_tensor(radius, yaw.device)
    yaw, pitch, r = torch.broadcast_tensors(yaw, pitch, r)
    r = r.unsqueeze(-1)
    origins = torch.stack([
        torch.cos(pitch) * torch.sin(yaw),
        -torch.sin(pitch),
        torch.cos(pitch) * torch.cos(yaw),
    ], dim=-1)
    origins = origins * r
    return cam2world_from_origin(origins, lookat)


def eg3d_lookat_pose(horizontal, vertical, lookat=(0, 0, 0.2), radius=2.7, device=None) -> torch.Tensor:
    """Reproduce EG3D's LookAtPoseSampler (no noise): (pi/2, pi/2) is frontal. Returns (N,4,4)."""
    theta = _as_angle_tensor(horizontal, device)
    v = _as_angle_tensor(vertical, device)
    theta, v = torch.broadcast_tensors(theta, v)
    v = v.clamp(1e-5, math.pi - 1e-5)
    phi = torch.arccos(1 - 2 * v / math.pi)
    origins = torch.stack([
        radius * torch.sin(phi) * torch.cos(math.pi - theta),
        radius * torch.cos(phi),
        radius * torch.sin(phi) * torch.sin(math.pi - theta),
    ], dim=-1)
    return cam2world_from_origin(origins, lookat)


def yaw_pitch_from_pose(cam2world):
    """Inverse of orbit_camera's position formula: (yaw_rad, pitch_rad, radius), each (N,)."""
    pose = torch.as_tensor(cam2world, dtype=torch.float32).reshape(-1, 4, 4)
    pos = pose[:, :3, 3]
    radius = pos.norm(dim=-1)
    pitch = torch.asin((-pos[:, 1] / radius.clamp_min(1e-12)).clamp(-1, 1))
    yaw = torch.atan2(pos[:, 0], pos[:, 2])
    return yaw, pitch, radius


def label_yaw_pitch_deg(c: torch.Tensor) -> torch.Tensor:
    """(N, 25) camera labels (a tensor, on any device) → (N, 2) yaw and pitch in degrees."""
    yaw, pitch, _ = yaw_pitch_from_pose(c[:, :POSE_DIM].reshape(-1, 4, 4))
    return torch.stack([yaw, pitch], dim=1) * (180 / math.pi)


def wrap_deg(d: torch.Tensor) -> torch.Tensor:
    """Angle differences in degrees wrapped to [−180, 180) (yaw crosses ±180)."""
    return torch.remainder(d + 180, 360) - 180


# ----------------------------------------------------------------------------
# Intrinsics.


def focal_from_fov(fov_deg: float) -> float:
    """Normalized focal length of a pinhole with the given full field of view (degrees)."""
    if not 0 < float(fov_deg) < 180:
        raise ValueError(f'fov must be between 0 and 180 degrees, got {fov_deg}')
    return 0.5 / math.tan(math.radians(float(fov_deg)) / 2)


def fov_from_focal(f: float) -> float:
    """Full field of view (degrees) of a normalized focal length."""
    if not float(f) > 0:
        raise ValueError(f'focal length must be positive, got {f}')
    return math.degrees(2 * math.atan(0.5 / float(f)))


def intrinsics_from_focal(f: float, cx: float = 0.5, cy: float = 0.5) -> torch.Tensor:
    """Normalized intrinsics (3,3) float32 for focal `f`."""
    if not float(f) > 0:
        raise ValueError(f'focal length must be positive, got {f}')
    return torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=torch.float32)


def intrinsics_from_fov(fov_deg: float) -> torch.Tensor:
    """Normalized intrinsics (3,3) for a true pinhole field of view (degrees)."""
    return intrinsics_from_focal(focal_from_fov(fov_deg))


def eg3d_focal_from_fov(fov_deg: float) -> float:
    """EG3D's nominal-FOV convention: f = 1 / (1.414 tan(fov/2)) (18.837 deg -> ~4.2634)."""
    if not 0 < float(fov_deg) < 180:
        raise ValueError(f'fov must be between 0 and 180 degrees, got {fov_deg}')
    return 1.0 / (1.414 * math.tan(math.radians(float(fov_deg)) / 2))


def intrinsics_from_eg3d_fov(fov_deg: float) -> torch.Tensor:
    """Normalized intrinsics (3,3) from EG3D's nominal FOV (e.g. 18.837)."""
    return intrinsics_from_focal(eg3d_focal_from_fov(fov_deg))


# ----------------------------------------------------------------------------
# Labels.

POSE_DIM = 16                            # cam2world 4x4, row-major: the first values of a label
INTRINSICS_DIM = 9                       # normalized K 3x3, row-major: the rest
LABEL_DIM = POSE_DIM + INTRINSICS_DIM    # 25: the size of a camera label c (EG3D's format)


def make_label(cam2world, intrinsics) -> torch.Tensor:
    """Pack cam2world (N,4,4) and K (3,3) or (N,3,3) into labels (N,25) float32."""
    pose = torch.as_tensor(cam2world, dtype=torch.float32)
    if pose.ndim == 2:
        pose = pose.unsqueeze(0)
    if pose.shape[1:] != (4, 4):
        raise ValueError(f'cam2world must be (N,4,4), got {tuple(pose.shape)}')
    K = torch.as_tensor(intrinsics, dtype=torch.float32, device=pose.device)
    if K.shape[-2:] != (3, 3):
        raise ValueError(f'intrinsics must be (3,3) or (N,3,3), got {tuple(K.shape)}')
    K = K.reshape(-1, 3, 3).expand(pose.shape[0], 3, 3)
    return torch.cat([pose.reshape(-1, POSE_DIM), K.reshape(-1, INTRINSICS_DIM)], dim=1)


def validate_label(c) -> None:
    """Raise ValueError unless `c` is (25,) or (N,25) with finite values."""
    arr = c.detach().cpu().double().numpy() if torch.is_tensor(c) else np.asarray(c, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] != LABEL_DIM:
        raise ValueError(f'camera label must have {LABEL_DIM} values (cam2world {POSE_DIM} + intrinsics {INTRINSICS_DIM}), '
                         f'got shape {arr.shape}')
    if not np.all(np.isfinite(arr)):
        raise ValueError('camera label contains non-finite values')


def split_label(c):
    """Unpack labels (N,25) into (cam2world (N,4,4), K (N,3,3))."""
    c = torch.as_tensor(c, dtype=torch.float32)
    validate_label(c)
    c = c.reshape(-1, LABEL_DIM)
    return c[:, :POSE_DIM].reshape(-1, 4, 4), c[:, POSE_DIM:].reshape(-1, 3, 3)


def view_directions(c: torch.Tensor) -> torch.Tensor:
    """Unit viewing directions (N, 3) in world space of labels (N, 25): the cam2world +z axis
    (OpenCV cameras look along +z). Differentiable, keeps device and dtype; no validation, so that
    training loops can call it every step."""
    forward = c[:, :POSE_DIM].reshape(-1, 4, 4)[:, :3, 2]
    return forward / forward.norm(dim=1, keepdim=True).clamp_min(1e-8)


def perturb_labels(c: torch.Tensor, min_deg: float, max_deg: float, generator=None) -> torch.Tensor:
    """Cameras (N, 25) turned about the world origin by a random angle in [min_deg, max_deg]
    around a random axis perpendicular to their viewing direction: the viewing direction turns by
    exactly that angle, and a camera orbiting the origin moves along its sphere and keeps looking at
    the origin (nearly so for the usual look-at points near it). Intrinsics are kept. Used to show
    the discriminator real images with slightly wrong cameras (training.loss, pose_negatives)."""
    n = c.shape[0]
    pose = c[:, :POSE_DIM].reshape(n, 4, 4)
    forward = view_directions(c)
    rand = torch.randn(n, 3, generator=generator).to(c)
    axis = torch.linalg.cross(forward, rand, dim=1)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-8)
    angle = torch.deg2rad(min_deg + (max_deg - min_deg) * torch.rand(n, generator=generator).to(c))
    K = torch.zeros(n, 3, 3, dtype=c.dtype, device=c.device)  # cross-product matrices of the axes
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    K = K - K.transpose(1, 2)
    sin, cos = angle.sin()[:, None, None], angle.cos()[:, None, None]
    rot = torch.eye(3, dtype=c.dtype, device=c.device) + sin * K + (1 - cos) * (K @ K)  # Rodrigues
    out = pose.clone()
    out[:, :3, :4] = rot @ pose[:, :3, :4]
    return torch.cat([out.reshape(n, POSE_DIM), c[:, POSE_DIM:]], dim=1)


def mirror_label(c):
    """Reflect cameras through the world plane x = 0 (for x-flipped images).

    cam2world -> M C2W M with M = diag(-1, 1, 1, 1) and cx -> 1 - cx; the camera frame stays
    right-handed and OpenCV-oriented, and rendering the mirrored scene gives the x-flipped image.
    Accepts torch tensors or numpy arrays of shape (25,) or (N,25) and returns the same type.
    """
    is_numpy = not torch.is_tensor(c)
    t = torch.as_tensor(np.asarray(c, dtype=np.float32)) if is_numpy else c
    validate_label(t)
    shape = t.shape
    t = t.reshape(-1, LABEL_DIM)
    pose = t[:, :POSE_DIM].reshape(-1, 4, 4)
    K = t[:, POSE_DIM:].reshape(-1, 3, 3).clone()
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=t.dtype, device=t.device))
    pose = M @ pose @ M
    K[:, 0, 2] = 1 - K[:, 0, 2]
    out = torch.cat([pose.reshape(-1, POSE_DIM), K.reshape(-1, INTRINSICS_DIM)], dim=1).reshape(shape)
    return out.numpy() if is_numpy else out


# ----------------------------------------------------------------------------
# Presets and convenience.


@dataclasses.dataclass(frozen=True)
class CameraPreset:
    """Typical camera of a dataset family (EG3D conventions)."""
    name: str
    radius: float
    lookat: tuple
    focal: float

    @property
    def fov_deg(self) -> float:
        return fov_from_focal(self.focal)


PRESETS = {
    'ffhq': CameraPreset('ffhq', 2.7, (0.0, 0.0, 0.2), 4.2647),
    'afhq': CameraPreset('afhq', 2.7, (0.0, 0.0, -0.06), 4.2647),
    'cars': CameraPreset('cars', 1.7, (0.0, 0.0, 0.0), 1.025390625),
}


def get_preset(name: str) -> CameraPreset:
    """Look up a camera preset by name."""
    if name not in PRESETS:
        raise ValueError(f'unknown camera preset {name!r}; expected one of {", ".join(sorted(PRESETS))}')
    return PRESETS[name]


def camera_label(yaw_deg, pitch_deg, fov_deg=None, focal=None, radius=None, lookat=None,
                 preset='ffhq', device=None) -> torch.Tensor:
    """Labels (N,25) for orbit cameras given in degrees; unset values come from the preset."""
    p = get_preset(preset)
    if fov_deg is not None and focal is not None:
        raise ValueError('give either fov_deg or focal, not both')
    f = focal_from_fov(fov_deg) if fov_deg is not None else (p.focal if focal is None else float(focal))
    radius = p.radius if radius is None else float(radius)
    lookat = p.lookat if lookat is None else tuple(float(x) for x in lookat)
    yaw = _as_angle_tensor(yaw_deg, device) * (math.pi / 180)
    pitch = _as_angle_tensor(pitch_deg, device) * (math.pi / 180)
    pose = orbit_camera(yaw, pitch, radius=radius, lookat=lookat, device=device)
    return make_label(pose, intrinsics_from_focal(f).to(pose.device))


def camera_stats_from_labels(labels) -> dict:
    """Summarize camera labels (N,25): pose ranges, radius, look-at, focal (JSON-serializable)."""
    arr = np.asarray(labels.detach().cpu() if torch.is_tensor(labels) else labels, dtype=np.float64)
    validate_label(arr)
    arr = arr.reshape(-1, LABEL_DIM)
    pose = torch.as_tensor(arr[:, :POSE_DIM].reshape(-1, 4, 4))
    yaw, pitch, radius = (x.numpy().astype(np.float64) for x in yaw_pitch_from_pose(pose))
    yaw_d, pitch_d = np.degrees(yaw), np.degrees(pitch)
    pose = pose.numpy()
    o = pose[:, :3, 3]
    d = pose[:, :3, 2]
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    P = np.eye(3)[None] - d[:, :, None] * d[:, None, :]          # projectors orthogonal to each axis
    A = P.sum(0)
    b = np.einsum('nij,nj->i', P, o)
    if np.linalg.matrix_rank(A) == 3:
        lookat = np.linalg.solve(A, b)
    else:                                                        # all axes parallel: no unique point
        lookat = (o + d * np.linalg.norm(o, axis=1, keepdims=True)).mean(0)
    focal = float(np.median(arr[:, POSE_DIM]))
    return {
        'yaw_range_deg': [float(np.percentile(yaw_d, 1)), float(np.percentile(yaw_d, 99))],
        'pitch_range_deg': [float(np.percentile(pitch_d, 1)), float(np.percentile(pitch_d, 99))],
        'yaw_mean_deg': float(yaw_d.mean()),
        'pitch_mean_deg': float(pitch_d.mean()),
        'radius': float(np.median(radius)),
        'lookat': [float(x) for x in lookat],
        'focal': focal,
        'fov_deg': fov_from_focal(focal) if focal > 0 else float('nan'),
        'num_labels': int(arr.shape[0]),
    }


ORBIT_KINDS = ('yaw-pitch-ellipse', 'turntable', 'sweep')


def orbit_path(kind, num_frames, yaw_range_deg=(-30, 30), pitch_range_deg=(-15, 15)):
    """Camera path for videos: (yaw_deg, pitch_deg) float arrays of length num_frames.

    'yaw-pitch-ellipse' loops an ellipse through the ranges (EG3D video style), 'turntable'
    swings yaw across its range and back at mid pitch, 'sweep' goes once from the lowest yaw to
    the highest at mid pitch.
    """
    if kind not in ORBIT_KINDS:
        raise ValueError(f'unknown orbit kind {kind!r}; expected one of {", ".join(ORBIT_KINDS)}')
    num_frames = int(num_frames)
    if num_frames < 1:
        raise ValueError(f'num_frames must be at least 1, got {num_frames}')
    y_lo, y_hi = (float(x) for x in yaw_range_deg)
    p_lo, p_hi = (float(x) for x in pitch_range_deg)
    y_mid, y_half = (y_lo + y_hi) / 2, (y_hi - y_lo) / 2
    p_mid, p_half = (p_lo + p_hi) / 2, (p_hi - p_lo) / 2
    t = np.arange(num_frames, dtype=np.float64) / num_frames
    if kind == 'yaw-pitch-ellipse':
        yaw = y_mid + y_half * np.sin(2 * np.pi * t)
        pitch = p_mid + p_half * np.cos(2 * np.pi * t)
    elif kind == 'turntable':
        yaw = y_mid + y_half * np.sin(2 * np.pi * t)
        pitch = np.full(num_frames, p_mid)
    else:
        yaw = np.linspace(y_lo, y_hi, num_frames) if num_frames > 1 else np.array([y_mid])
        pitch = np.full(num_frames, p_mid)
    return yaw, pitch
