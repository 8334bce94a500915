"""Capture widget: save the current image or the whole GUI as PNG into --capture-dir, and record an
orbit (yaw/pitch path, frames, fps) to MP4 or GIF (raycond.video) on a background thread.

`record_orbit` and `next_capture_path` are plain functions usable without a window.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

from gui_utils import imgui_utils
from raycond import atomic_io
from raycond import camera as cam
from raycond.video import write_video

from .renderer import Renderer


def next_capture_path(capture_dir, prefix, ext):
    """capture_dir/prefix-NNNN.ext with the next free number (never overwrites)."""
    os.makedirs(capture_dir, exist_ok=True)
    pat = re.compile(rf'^{re.escape(prefix)}-(\d+)\.')
    nums = [int(m.group(1)) for f in os.listdir(capture_dir) if (m := pat.match(f))]
    return os.path.join(capture_dir, f'{prefix}-{(max(nums) + 1) if nums else 0:04d}.{ext}')


def save_png(image, path):
    """Write an HxW[x1|3] uint8 image as PNG, whole or not at all (raycond.atomic_io)."""
    atomic_io.save_image(path, image)
    return path


def record_orbit(renderer, args, path, kind='yaw-pitch-ellipse', num_frames=60, fps=30,
                 yaw_range=(-30, 30), pitch_range=(-10, 10), progress=None, cancel=None):
    """Render an orbit of `args` (a RenderArgs) along raycond.camera.orbit_path and write it to `path`."""
    yaws, pitches = cam.orbit_path(kind, int(num_frames), yaw_range, pitch_range)
    frames = []
    for i, (y, p) in enumerate(zip(yaws, pitches)):
        if cancel is not None and cancel.is_set():
            return None
        res = renderer.render(args.replace(yaw_deg=float(y), pitch_deg=float(p), layer=None))
        if res.error:
            raise ValueError(f'frame {i}: {res.error}')
        if res.image is None:
            raise ValueError('no network loaded')
        img = res.image if res.image.shape[2] == 3 else np.repeat(res.image, 3, axis=2)
        frames.append(img)
        if progress is not None:
            progress(i + 1, len(yaws))
    return write_video(path, frames, fps)


class CaptureWidget:
    """Capture settings and the orbit-recording job."""

    def __init__(self, capture_dir='captures'):
        self.capture_dir = capture_dir
        self.kind = 'yaw-pitch-ellipse'
        self.num_frames = 60
        self.fps = 30
        self.fmt = 'mp4'
        self.message = None
        self.error = None
        self._gui_capture_pending = False
        self._job = None
        self._cancel = threading.Event()
        self.progress = (0, 0)

    def save_image(self, result):
        """Save the current rendered image; returns the path."""
        if result is None or result.image is None:
            raise ValueError('no image to save yet')
        path = save_png(result.image, next_capture_path(self.capture_dir, 'image', 'png'))
        self.message, self.error = f'saved {path}', None
        return path

    def request_gui_capture(self, window):
        window.request_capture()
        self._gui_capture_pending = True

    def poll_gui_capture(self, window):
        """After the frame was captured by the window, write it. Returns the path or None."""
        if self._gui_capture_pending and window.last_capture is not None:
            self._gui_capture_pending = False
            path = save_png(window.last_capture, next_capture_path(self.capture_dir, 'gui', 'png'))
            window.last_capture = None
            self.message, self.error = f'saved {path}', None
            return path
        return None

    @property
    def recording(self):
        return self._job is not None and self._job.is_alive()

    def start_recording(self, args, yaw_range, pitch_range):
        """Record on a background thread with its own Renderer (the GUI keeps running)."""
        if self.recording:
            return None
        if args.pkl is None:
            raise ValueError('load a network before recording')
        ext = 'gif' if self.fmt == 'gif' else 'mp4'
        path = next_capture_path(self.capture_dir, 'orbit', ext)
        self._cancel.clear()
        self.progress = (0, self.num_frames)
        self.message, self.error = f'recording {path} ...', None

        def job():
            renderer = Renderer(max_cached_networks=1)
            try:
                out = record_orbit(renderer, args, path, self.kind, self.num_frames, self.fps,
                                   yaw_range, pitch_range, progress=lambda i, n: setattr(self, 'progress', (i, n)),
                                   cancel=self._cancel)
                self.message = f'saved {out}' if out else 'recording cancelled'
            except Exception as e:  # noqa: BLE001 - shown in the panel
                self.error, self.message = f'recording failed: {e}', None
            finally:
                renderer.clear_cache()    # an inverted photo's G is shared: take this renderer's hooks off it
        self._job = threading.Thread(target=job, name='viz-record', daemon=True)
        self._job.start()
        return path

    def cancel_recording(self):
        self._cancel.set()

    def draw(self, viz):
        imgui_utils.dim_text(f'Folder: {os.path.abspath(self.capture_dir)}')
        if imgui.button('Save image'):
            try:
                self.save_image(viz.result)
            except Exception as e:  # noqa: BLE001
                self.error = str(e)
        imgui.same_line()
        if imgui.button('Save GUI'):
            self.request_gui_capture(viz)
        imgui.separator_text('Record orbit')
        w = imgui.get_content_region_avail().x
        with imgui_utils.item_width(w * 0.55):
            if imgui.begin_combo('Path', self.kind):
                for k in cam.ORBIT_KINDS:
                    if imgui.selectable(k, k == self.kind)[0]:
                        self.kind = k
                imgui.end_combo()
        imgui.same_line()
        with imgui_utils.item_width(-1):
            if imgui.begin_combo('##fmt', self.fmt.upper()):
                for k in ('mp4', 'gif'):
                    if imgui.selectable(k.upper(), k == self.fmt)[0]:
                        self.fmt = k
                imgui.end_combo()
        with imgui_utils.item_width(w * 0.3):
            _, self.num_frames = imgui.input_int('Frames', self.num_frames, 10)
            self.num_frames = min(max(self.num_frames, 2), 2000)
            imgui.same_line()
            _, self.fps = imgui.input_int('FPS', self.fps, 5)
            self.fps = min(max(self.fps, 1), 120)
        if self.recording:
            i, n = self.progress
            imgui.progress_bar(i / max(n, 1), imgui.ImVec2(w * 0.7, 0), f'{i}/{n}')
            imgui.same_line()
            if imgui.button('Cancel'):
                self.cancel_recording()
        elif imgui.button('Record'):
            try:
                camw = viz.camera
                self.start_recording(viz.current_args, camw.train_yaw_range or camw.yaw_range,
                                     camw.train_pitch_range or camw.pitch_range)
            except Exception as e:  # noqa: BLE001
                self.error = str(e)
        imgui_utils.tooltip('Orbit through the training pose range with the current latent and camera settings')
        if self.error:
            imgui_utils.colored_text(imgui_utils.ERROR_COLOR, self.error)
        elif self.message:
            imgui_utils.dim_text(self.message)
