"""Random cameras around the frontal view, distributed like FFHQ's poses (EG3D conventions)."""

from __future__ import annotations

import numpy as np
import torch

from raycond.camera import camera_label, get_preset


def sample_cameras(rng, n: int, yaw_std_deg: float = 20.0, pitch_std_deg: float = 8.0,
                   max_yaw_deg: float = 60.0, max_pitch_deg: float = 25.0, preset: str = 'ffhq',
                   focal=None, radius=None, lookat=None) -> torch.Tensor:
    """Labels (n,25): yaw ~ N(0, yaw_std) clipped to +-max_yaw, pitch ~ N(0, pitch_std) clipped to
    +-max_pitch, orbit cameras of the preset (FFHQ: radius 2.7, look-at (0, 0, 0.2), f 4.2647)."""
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    for name, val in [('yaw_std_deg', yaw_std_deg), ('pitch_std_deg', pitch_std_deg),
                      ('max_yaw_deg', max_yaw_deg), ('max_pitch_deg', max_pitch_deg)]:
        if not (np.isfinite(val) and val >= 0):
            raise ValueError(f'{name} must be a non-negative number, got {val}')
    if max_pitch_deg >= 90:
        raise ValueError(f'max_pitch_deg must be below 90, got {max_pitch_deg}')
    get_preset(preset)
    yaw = np.clip(rng.normal(0, yaw_std_deg, size=n), -max_yaw_deg, max_yaw_deg)
    pitch = np.clip(rng.normal(0, pitch_std_deg, size=n), -max_pitch_deg, max_pitch_deg)
    return camera_label(yaw, pitch, focal=focal, radius=radius, lookat=lookat, preset=preset)
