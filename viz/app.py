"""The visualizer window: side panel of collapsible widget sections on the left, the generated image
large and centred on the right. Dragging the image orbits the camera, right-drag explores seeds,
the wheel zooms; files dropped onto the window are loaded as networks (photos open in the Photo section).

Each frame: collect RenderArgs from the widgets -> post them to the AsyncRenderer (no-op when
unchanged) -> take the newest finished result, if any -> draw. The GUI thread never waits on the
network; errors come back as text and are shown while the window keeps running.
"""

from __future__ import annotations

import os
import time

import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
import glfw
from imgui_bundle import imgui

from gui_utils import gl_utils, imgui_utils
from gui_utils.imgui_window import ImguiWindow

from . import panels
from .async_renderer import AsyncRenderer
from .photo import is_photo_file
from .view import ImageView

PANEL_WIDTH = 390


def _upload(texture, image, linear=True):
    """`texture` showing `image`: made on first use, updated in place after."""
    if texture is None:
        return gl_utils.Texture(image, linear=linear)
    texture.update(image)
    return texture


class Visualizer(ImguiWindow):
    """The interactive viewpoint editor. `run()` for users, `run_frames(n)` for tests/benchmarks."""

    def __init__(self, pkls=(), *, browse_dir=None, capture_dir='captures', device='auto', seed=0.0, trunc_psi=1.0,
                 yaw=None, pitch=None, fov=None, renderer=None, width=1280, height=800, fps_limit=60, vsync=False,
                 visible=True, ui_scale=None, fp32=False):
        super().__init__(title='raycond visualizer', width=width, height=height, fps_limit=fps_limit, vsync=vsync,
                         visible=visible, ui_scale=ui_scale)
        options = panels.Options(browse_dir=browse_dir, capture_dir=capture_dir, device=device, seed=seed,
                                 trunc_psi=trunc_psi, fps_limit=fps_limit, vsync=vsync, fp32=fp32)
        self.panels = panels.build_panels(options)   # name -> widget, in viz/panels.py's order
        for name, widget in self.panels.items():
            setattr(self, name, widget)               # self.network, self.camera, ... (widgets reach each other so)
        self._initial_camera = dict(yaw=yaw, pitch=pitch, fov=fov)
        self.renderer = AsyncRenderer(renderer)
        self.result = None            # newest delivered RenderResult
        self.info = None              # NetworkInfo of the network being shown
        self.current_args = None
        self._net_key = None
        self._info_key = None         # (pkl, key, device) that self.info describes
        self._image_pkl = None
        self.texture = None
        self.layer_texture = None
        self.fakes_texture = None
        self._fakes_shown = None
        self.quad = gl_utils.QuadRenderer()
        self.view = ImageView()       # the image, its drag/zoom input and its status text
        self._input_seen = False
        self.panel_width = PANEL_WIDTH * self.ui_scale
        self.add_drop_callback(self.on_files_dropped)
        for p in reversed(list(pkls)):
            self.network.load(p)      # the first PKL ends up current, the others in the recent list

    # -- events ------------------------------------------------------------------------------
    def on_mouse_pos(self, window, x, y):
        self._input_seen = True
        super().on_mouse_pos(window, x, y)

    def on_mouse_button(self, window, button, action, mods=0):
        self._input_seen = True
        super().on_mouse_button(window, button, action, mods)

    def on_scroll(self, window, dx, dy):
        self._input_seen = True
        super().on_scroll(window, dx, dy)

    def on_key(self, window, key, scancode, action, mods):
        self._input_seen = True
        super().on_key(window, key, scancode, action, mods)

    def on_char(self, window, char):
        self._input_seen = True
        super().on_char(window, char)

    def draw_frame(self):
        super().draw_frame()
        self._pace()

    def _pace(self):
        """Leave the CPU to the renderer: while it works and nobody touches the GUI, wait (briefly) for its
        result instead of redrawing an unchanged image; when nothing at all happens, sleep until an event."""
        if self._input_seen or self._capture_requested or self.capture._gui_capture_pending:
            self._input_seen = False
            return
        if not self.perf.yield_to_renderer:
            return
        if self.renderer.busy:
            self.renderer.wait_for_result(timeout=0.05)
        elif not (self.camera.orbit or self.latent.animate or self.capture.recording
                  or (self.training.process is not None and self.training.process.running)):
            glfw.wait_events_timeout(0.05)

    def on_files_dropped(self, paths):
        """Open the first dropped file: a photo in the Photo section, anything else as the network."""
        if paths and is_photo_file(paths[0]):
            self.photo.open(paths[0])
        elif paths:
            self.network.load(paths[0])

    # -- per-frame state ----------------------------------------------------------------------
    def _update_state(self):
        dt = min(self.frame_time, 0.25) if self.frame_time else 0.0
        self.camera.tick(dt)
        self.latent.tick(dt)
        self.network.poll_run_dir()
        snap = self.training.poll()
        if snap:
            self.network.load(snap)
        self.set_vsync(self.perf.vsync)
        self.fps_limit = self.perf.fps_limit

        self.photo.poll()
        args = panels.render_args(self.panels)
        net_key = (args.pkl, args.key, args.device)
        invalidate = net_key != self._net_key
        self._net_key = net_key
        if args.pkl and self._info_key != net_key:
            args = args.replace(info_only=True)     # the first frame waits for the snapshot's camera
        self.current_args = args
        self.renderer.set_args(args, invalidate=invalidate)

        res = self.renderer.get_result()
        if res is not None:
            self._on_result(res)
        self.perf.record_frame(self.frame_time, self.result)
        self.capture.poll_gui_capture(self)
        name = os.path.basename(args.pkl) if args.pkl else 'no network'
        self.set_title(f'raycond visualizer - {name}')

    def _on_result(self, res):
        self.result = res
        if res.info is not None and res.args is not None:
            self._info_key = (res.args.pkl, res.args.key, res.args.device)
        if res.info is not None and (res.info is not self.info):
            self.info = res.info
            panels.start_network(self.panels, res.info, self._initial_camera)
            self._initial_camera = None
        if res.info is None and (res.error or (res.args is not None and res.args.pkl is None)):
            self.info = None          # no network, or it failed to load: nothing to describe
        self.layers.on_result(res)
        self.network.on_result(res)
        if res.image is not None:
            self.texture = _upload(self.texture, res.image, linear=self.perf.smooth)
            self._image_pkl = res.args.pkl if res.args is not None else None
        elif res.args is not None and res.args.pkl != self._image_pkl and (res.error or not res.args.info_only):
            self._image_pkl = None    # network changed and produced nothing: do not keep the old image
        if res.layer_image is not None:
            self.layer_texture = _upload(self.layer_texture, res.layer_image, linear=False)

    def _update_fakes_texture(self):
        img = self.training.fakes_image
        if img is not None and img is not self._fakes_shown:
            self.fakes_texture = _upload(self.fakes_texture, img)
            self._fakes_shown = img

    @property
    def showing_image(self):
        return self.texture is not None and self._image_pkl is not None

    @property
    def image_rect(self):
        """(x, y, w, h) of the image in window coordinates, or None."""
        return self.view.image_rect

    @property
    def view_rect(self):
        return self.view.view_rect

    @property
    def status_error(self):
        """Text of the error banner drawn in the last frame, if any."""
        return self.view.status_error

    # -- drawing -----------------------------------------------------------------------------
    def draw_gui(self):
        self._update_state()
        self._update_fakes_texture()
        if imgui.get_io().key_ctrl and imgui.is_key_pressed(imgui.Key.q, False):
            self.request_close()          # Ctrl+Q quits
        vp = imgui.get_main_viewport()
        imgui.set_next_window_pos(vp.work_pos)
        imgui.set_next_window_size(vp.work_size)
        flags = (imgui.WindowFlags_.no_decoration | imgui.WindowFlags_.no_move | imgui.WindowFlags_.no_saved_settings
                 | imgui.WindowFlags_.no_background | imgui.WindowFlags_.no_bring_to_front_on_focus
                 | imgui.WindowFlags_.no_scroll_with_mouse)
        imgui.push_style_var(imgui.StyleVar_.window_padding, imgui.ImVec2(0, 0))
        imgui.begin('##main', None, flags)
        imgui.pop_style_var()
        self._draw_panel()
        imgui.same_line(0, 0)
        self.view.draw(self)
        imgui.end()

    def _draw_panel(self):
        imgui.push_style_color(imgui.Col_.child_bg, imgui.ImVec4(0.16, 0.16, 0.18, 1.0))
        imgui.push_style_var(imgui.StyleVar_.window_padding, imgui.ImVec2(10 * self.ui_scale, 8 * self.ui_scale))
        imgui.begin_child('##panel', imgui.ImVec2(self.panel_width, 0),
                          imgui.ChildFlags_.resize_x | imgui.ChildFlags_.always_use_window_padding)
        imgui.pop_style_var()
        imgui.pop_style_color()
        self.panel_width = imgui.get_window_width()
        for panel in panels.PANELS:
            if imgui_utils.section(panel.label, panel.open):
                imgui.push_id(panel.label)
                imgui.indent(4 * self.ui_scale)
                self.panels[panel.name].draw(self)
                imgui.unindent(4 * self.ui_scale)
                imgui.pop_id()
                imgui.spacing()
        imgui.end_child()

    def draw_gl_background(self):
        if self.image_rect is None or not self.showing_image:
            return
        self.texture.set_filter(self.perf.smooth)
        fb = self.framebuffer_size        # asked once: each ask is a round trip to the X server
        sx, sy = self._fb_scale(fb)
        x, y, w, h = self.image_rect
        self.quad.draw(self.texture, (x * sx, y * sy, w * sx, h * sy), fb)

    def _fb_scale(self, fb=None):
        ww, wh = self.window_size
        fw, fh = self.framebuffer_size if fb is None else fb
        return (fw / ww if ww else 1.0), (fh / wh if wh else 1.0)

    # -- helpers for tests / benchmarks ---------------------------------------------------------
    def wait_for_render(self, timeout=60.0, max_frames=100000):
        """Step frames until the newest request has been rendered and shown. Returns the result."""
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline and n < max_frames:
            self.run_frames(1)
            n += 1
            if (self.result is not None and self.result.stamp == self.renderer.latest_stamp
                    and not self.renderer.busy):
                stamp = self.renderer.latest_stamp
                self.run_frames(1)    # draw once more: the result may change the args (camera defaults)
                if self.renderer.latest_stamp == stamp:
                    return self.result
        raise TimeoutError(f'no render result within {timeout} s')

    def image_pixels_on_screen(self):
        """Framebuffer pixels of the image area of the last frame (HxWx3 uint8), or None."""
        if self.image_rect is None:
            return None
        frame = self.capture_frame_now()
        sx, sy = self._fb_scale()
        x, y, w, h = self.image_rect
        x0, y0 = int(round(x * sx)), int(round(y * sy))
        return frame[y0:y0 + int(round(h * sy)), x0:x0 + int(round(w * sx))]

    def capture_frame_now(self):
        """Render one frame and return the framebuffer as HxWx3 uint8."""
        self.request_capture()
        self.run_frames(1)
        return self.last_capture

    def close(self):
        try:
            self.renderer.close(timeout=2.0)
            self.photo.close()
            if self.training.process is not None and self.training.process.running:
                self.training.stop()
        finally:
            super().close()
