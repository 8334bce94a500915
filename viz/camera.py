"""Camera widget: orbit by dragging the image, zoom by scrolling, sliders for yaw/pitch/FOV/radius,
look-at presets, reset, auto-orbit, and slider ranges taken from the training poses.

Angles are true degrees (the orbit convention of docs/conventions.md). FOV is the true pinhole FOV; EG3D's nominal
value is shown beside it. Outside the training pose range the camera still works but is marked
"extrapolating". All state logic works without a window.
"""

from __future__ import annotations

import math

import torch
import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

from gui_utils import imgui_utils
from raycond import camera as cam
from raycond import generate as gen

PRESET_NAMES = ('ffhq', 'afhq', 'cars')
LOOKAT_MODES = ('snapshot', 'ffhq', 'afhq', 'cars', 'manual')
LOOKAT_LABELS = {'snapshot': 'From snapshot', 'ffhq': 'FFHQ', 'afhq': 'AFHQ', 'cars': 'Cars', 'manual': 'Manual'}
FOV_LIMITS = (2.0, 120.0)
PITCH_LIMIT = 89.0


def eg3d_nominal_fov(fov_deg):
    """EG3D's nominal FOV for the same focal length: f = 1/(1.414 tan(nominal/2))."""
    f = cam.focal_from_fov(fov_deg)
    return math.degrees(2 * math.atan(1.0 / (1.414 * f)))


def orbit_from_label(c, lookat_hint=(0.0, 0.0, 0.2)):
    """A 25-float camera label -> the orbit parameters the sliders show, and how well they rebuild it.

    Yaw, pitch and radius come from the camera position (raycond.camera.yaw_pitch_from_pose), the
    FOV from the focal length. The position alone does not fix the look-at point, so it is the
    point of the camera's viewing ray nearest `lookat_hint` (the look-at the sliders use now):
    exact for labels made by camera_label with that look-at. Returns (dict(yaw_deg, pitch_deg,
    fov_deg, radius, lookat), residual) where residual is the largest difference between the label
    rebuilt from those parameters and `c` (0 up to float error for an orbit camera).
    """
    pose, K = cam.split_label(c)
    pose, K = pose[:1].double(), K[:1].double()
    yaw, pitch, radius = cam.yaw_pitch_from_pose(pose)
    origin, forward = pose[0, :3, 3], pose[0, :3, 2]
    hint = pose.new_tensor([float(x) for x in lookat_hint])
    lookat = origin + ((hint - origin) @ forward) * forward
    out = dict(yaw_deg=math.degrees(float(yaw[0])), pitch_deg=math.degrees(float(pitch[0])),
               fov_deg=cam.fov_from_focal(float(K[0, 0, 0])), radius=float(radius[0]),
               lookat=tuple(round(float(x), 6) for x in lookat))
    rebuilt = cam.camera_label(out['yaw_deg'], out['pitch_deg'], fov_deg=out['fov_deg'], radius=out['radius'],
                               lookat=out['lookat'])
    residual = float((rebuilt.double() - torch.cat([pose.reshape(1, 16), K.reshape(1, 9)], dim=1)).abs().max())
    return out, residual


def _round_out(lo, hi, step=5.0, min_half=5.0):
    lo, hi = min(lo, -min_half), max(hi, min_half)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step


class CameraWidget:
    """Orbit camera state -> RenderArgs fields (yaw_deg, pitch_deg, fov_deg, radius, lookat)."""

    def __init__(self):
        self.enabled = True
        self.defaults = gen.default_camera(None)
        self.train_yaw_range = None      # (lo, hi) degrees from camera_stats, None when unknown
        self.train_pitch_range = None
        self.yaw_range = (-35.0, 35.0)   # slider ranges
        self.pitch_range = (-20.0, 20.0)
        self.lookat_mode = 'ffhq'
        self.orbit = False
        self.orbit_speed = 0.15          # cycles per second
        self.orbit_phase = 0.0
        self.drag_deg_per_image = 90.0   # dragging across the whole image turns this many degrees
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self):
        """Back to the network's default camera (frontal, training radius/look-at/FOV)."""
        d = self.defaults
        self.yaw = float(d['yaw_deg'])
        self.pitch = float(d['pitch_deg'])
        self.fov = float(d['fov_deg'])
        self.radius = float(d['radius'])
        self.lookat = tuple(float(x) for x in d['lookat'])
        self.orbit_phase = 0.0

    def on_network(self, info):
        """New network: camera defaults and slider ranges from its camera_stats (or the FFHQ preset)."""
        self.enabled = bool(info is not None and info.camera)
        defaults = gen.default_camera(info)
        stats = getattr(info, 'camera_stats', None) or {}
        yr, pr = stats.get('yaw_range_deg'), stats.get('pitch_range_deg')
        train_y = tuple(float(x) for x in yr) if yr else None
        train_p = tuple(float(x) for x in pr) if pr else None
        if defaults == self.defaults and (train_y, train_p) == (self.train_yaw_range, self.train_pitch_range):
            return  # same camera setup (e.g. a newer snapshot of the same run): keep the user's view
        self.defaults = defaults
        self.train_yaw_range, self.train_pitch_range = train_y, train_p
        self.yaw_range = _round_out(*train_y) if train_y else (-35.0, 35.0)
        self.pitch_range = _round_out(*train_p) if train_p else (-20.0, 20.0)
        self.lookat_mode = 'snapshot' if stats.get('lookat') is not None else 'ffhq'
        self.reset()

    @property
    def extrapolating(self):
        """True when yaw or pitch lies outside the training pose range (unknown range: False)."""
        return gen.outside_training_poses(self.train_yaw_range, self.train_pitch_range, self.yaw, self.pitch) is not None

    def _include_in_ranges(self):
        if self.yaw < self.yaw_range[0] or self.yaw > self.yaw_range[1]:
            self.yaw_range = _round_out(min(self.yaw, self.yaw_range[0]), max(self.yaw, self.yaw_range[1]))
        if self.pitch < self.pitch_range[0] or self.pitch > self.pitch_range[1]:
            lo, hi = _round_out(min(self.pitch, self.pitch_range[0]), max(self.pitch, self.pitch_range[1]))
            self.pitch_range = (max(lo, -PITCH_LIMIT), min(hi, PITCH_LIMIT))

    def set_angles(self, yaw, pitch):
        yaw = (float(yaw) + 180.0) % 360.0 - 180.0
        self.yaw = yaw
        self.pitch = min(max(float(pitch), -PITCH_LIMIT), PITCH_LIMIT)
        self._include_in_ranges()

    def set_label(self, c, lookat_hint=None):
        """Start the sliders at a camera label (e.g. the camera estimated from a photo); the look-at
        stays on the current mode unless the label needs another one. Returns the rebuild residual."""
        o, residual = orbit_from_label(c, self.lookat if lookat_hint is None else lookat_hint)
        self.orbit = False
        self.set_angles(o['yaw_deg'], o['pitch_deg'])
        self.fov = min(max(o['fov_deg'], FOV_LIMITS[0]), FOV_LIMITS[1])
        mode_values = (tuple(self.lookat), self.radius)
        self.radius, self.lookat = o['radius'], o['lookat']
        if self.lookat_mode != 'manual':
            same = (max(abs(a - b) for a, b in zip(mode_values[0], self.lookat)) < 1e-4
                    and abs(mode_values[1] - self.radius) < 1e-4)
            if not same:
                self.lookat_mode = 'manual'
        return residual

    def drag(self, dx, dy, image_size_px):
        """Mouse drag by (dx, dy) pixels over an image shown `image_size_px` wide: grab-and-turn the object."""
        k = self.drag_deg_per_image / max(float(image_size_px), 1.0)
        self.orbit = False
        self.set_angles(self.yaw - dx * k, self.pitch - dy * k)

    def snap(self, step=5.0):
        """Round yaw and pitch to the nearest multiple of `step` degrees."""
        self.orbit = False
        self.set_angles(round(self.yaw / step) * step, round(self.pitch / step) * step)

    def scroll(self, dy):
        """Mouse wheel: positive zooms in (smaller FOV)."""
        self.fov = min(max(self.fov * (0.9 ** float(dy)), FOV_LIMITS[0]), FOV_LIMITS[1])

    def widen_ranges(self, factor=2.0):
        """Widen the yaw/pitch slider ranges about their centres (extrapolation on demand)."""
        for attr, limit in (('yaw_range', 180.0), ('pitch_range', PITCH_LIMIT)):
            lo, hi = getattr(self, attr)
            mid, half = (lo + hi) / 2, (hi - lo) / 2 * factor
            setattr(self, attr, (max(mid - half, -limit), min(mid + half, limit)))

    def set_lookat_mode(self, mode):
        """'snapshot', 'ffhq', 'afhq', 'cars' set look-at, radius and FOV; 'manual' leaves them editable."""
        if mode not in LOOKAT_MODES:
            raise ValueError(f'look-at mode must be one of {", ".join(LOOKAT_MODES)}, got {mode!r}')
        self.lookat_mode = mode
        if mode == 'snapshot':
            self.lookat = tuple(self.defaults['lookat'])
            self.radius = float(self.defaults['radius'])
            self.fov = float(self.defaults['fov_deg'])
        elif mode in PRESET_NAMES:
            p = cam.get_preset(mode)
            self.lookat, self.radius, self.fov = tuple(p.lookat), float(p.radius), float(p.fov_deg)

    def tick(self, dt):
        """Advance the auto-orbit by dt seconds (ellipse through the training range)."""
        if not self.orbit:
            return
        self.orbit_phase = (self.orbit_phase + 2 * math.pi * self.orbit_speed * dt) % (2 * math.pi)
        y_lo, y_hi = self.train_yaw_range or (-30.0, 30.0)
        p_lo, p_hi = self.train_pitch_range or (-10.0, 10.0)
        self.yaw = (y_lo + y_hi) / 2 + (y_hi - y_lo) / 2 * math.sin(self.orbit_phase)
        self.pitch = (p_lo + p_hi) / 2 + (p_hi - p_lo) / 2 * math.cos(self.orbit_phase)

    def update_args(self, d):
        d.update(yaw_deg=float(self.yaw), pitch_deg=float(self.pitch), fov_deg=float(self.fov),
                 radius=float(self.radius), lookat=tuple(float(x) for x in self.lookat))

    # -- drawing -------------------------------------------------------------------------------
    def draw(self, viz):
        if not self.enabled:
            imgui_utils.dim_text('This network takes no camera: camera controls are disabled.')
        with imgui_utils.grayed_out(not self.enabled):
            w = imgui.get_content_region_avail().x
            lw = imgui.calc_text_size('Radius ').x + 10
            with imgui_utils.item_width(w - lw):
                ch, v = imgui.slider_float('Yaw', self.yaw, *self.yaw_range, '%.1f deg')
                if ch:
                    self.orbit = False
                    self.yaw = v
                ch, v = imgui.slider_float('Pitch', self.pitch, *self.pitch_range, '%.1f deg')
                if ch:
                    self.orbit = False
                    self.pitch = v
                ch, v = imgui.slider_float('FOV', self.fov, FOV_LIMITS[0], 60.0, '%.2f deg',
                                           imgui.SliderFlags_.logarithmic)
                if ch:
                    self.fov = v
                imgui_utils.tooltip('True horizontal field of view. Scroll on the image to zoom.')
                imgui_utils.dim_text(f'EG3D nominal FOV {eg3d_nominal_fov(self.fov):.3f} deg   '
                                     f'focal {cam.focal_from_fov(self.fov):.4f}')
                ch, v = imgui.slider_float('Radius', self.radius, 0.5, 6.0, '%.2f')
                if ch:
                    self.radius = v
            imgui.set_next_item_width(w - lw)
            if imgui.begin_combo('Look-at', LOOKAT_LABELS[self.lookat_mode]):
                for m in LOOKAT_MODES:
                    if imgui.selectable(LOOKAT_LABELS[m], m == self.lookat_mode)[0]:
                        self.set_lookat_mode(m)
                imgui.end_combo()
            with imgui_utils.grayed_out(self.lookat_mode != 'manual'):
                imgui.set_next_item_width(w - lw)
                ch, v = imgui.drag_float3('##lookat', list(self.lookat), 0.005, -2.0, 2.0, '%.3f')
                if ch:
                    self.lookat = tuple(v)
            if imgui.button('Reset'):
                self.reset()
            imgui_utils.tooltip('Frontal view with the network\'s default radius, look-at and FOV')
            imgui.same_line()
            if imgui.button('Snap'):
                self.snap()
            imgui_utils.tooltip('Round yaw and pitch to multiples of 5 degrees')
            imgui.same_line()
            if imgui.button('Widen ranges'):
                self.widen_ranges()
            imgui_utils.tooltip('Double the slider ranges to explore poses outside the training range')
            _, self.orbit = imgui.checkbox('Auto-orbit', self.orbit)
            imgui.same_line()
            imgui.set_next_item_width(max(imgui.get_content_region_avail().x, 40))
            _, self.orbit_speed = imgui.slider_float('##speed', self.orbit_speed, 0.02, 1.0, '%.2f Hz',
                                                     imgui.SliderFlags_.logarithmic)
            imgui_utils.tooltip('Auto-orbit speed (cycles per second)')
            if self.train_yaw_range:
                imgui_utils.dim_text(f'Training poses: yaw {self.train_yaw_range[0]:.0f}..{self.train_yaw_range[1]:.0f}, '
                                     f'pitch {self.train_pitch_range[0]:.0f}..{self.train_pitch_range[1]:.0f} deg'
                                     if self.train_pitch_range else
                                     f'Training poses: yaw {self.train_yaw_range[0]:.0f}..{self.train_yaw_range[1]:.0f} deg')
            else:
                imgui_utils.dim_text('Training pose range unknown (no camera_stats)')
            if self.extrapolating:
                imgui_utils.colored_text(imgui_utils.WARN_COLOR, 'Extrapolating: pose outside the training range')
            imgui_utils.dim_text('Drag the image to orbit, scroll to zoom, right-drag to change the seed. Ctrl+Q quits.')
