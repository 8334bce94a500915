"""A GLFW window running Dear ImGui (imgui-bundle) and ImPlot on an OpenGL 3.3 core context.

Input goes GLFW callback -> imgui IO through methods of this class (`on_mouse_pos`,
`on_mouse_button`, `on_scroll`, ...), so real X11/Wayland events and events injected by tests
take the same path. Subclasses override `draw_gui()` (imgui calls) and optionally
`draw_gl_background()` (raw GL before imgui draws on top). `run()` loops until closed;
`run_frames(n)` steps n frames for tests and benchmarks. The font is bundled (DejaVu Sans, in
gui_utils/fonts) and scaled for HiDPI monitors; nothing is downloaded.
"""

import os

import glfw
import OpenGL.GL as gl
from imgui_bundle import imgui, implot
from imgui_bundle.python_backends.glfw_backend import GlfwRenderer

from .glfw_window import GlfwWindow

FONT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fonts')
DEFAULT_FONT = os.path.join(FONT_DIR, 'DejaVuSans.ttf')


class _Renderer(GlfwRenderer):
    """imgui-bundle's GLFW + OpenGL3 (programmable pipeline) backend without its own callbacks."""

    def __init__(self, window):
        super().__init__(window, attach_callbacks=False)


class ImguiWindow(GlfwWindow):
    """GlfwWindow + Dear ImGui + ImPlot. Override `draw_gui` (and `draw_gl_background`)."""

    def __init__(self, *, title='ImguiWindow', font_size=15, font_path=DEFAULT_FONT, ui_scale=None,
                 clear_color=(0.11, 0.11, 0.12, 1.0), **window_kwargs):
        super().__init__(title=title, **window_kwargs)
        self._imgui_ctx = imgui.create_context()
        self._implot_ctx = implot.create_context()
        io = imgui.get_io()
        io.set_ini_filename(None)  # no imgui.ini littering the working directory
        io.config_flags |= imgui.ConfigFlags_.nav_enable_keyboard
        self._backend = _Renderer(self.handle)
        self.clear_color = clear_color
        self._ui_scale_fixed = bool(ui_scale)
        self.ui_scale = float(ui_scale) if ui_scale else self._detect_ui_scale()
        self.font_size = float(font_size)
        self._load_font(font_path)
        self._setup_style()
        self._install_callbacks()
        self.mouse_pos = (-1.0, -1.0)

    # -- setup ------------------------------------------------------------------------------
    def _detect_ui_scale(self):
        """Content scale where the framebuffer is not already scaled (X11/Windows); 1 on macOS-style HiDPI."""
        win_w, _ = self.window_size
        fb_w, _ = self.framebuffer_size
        if win_w > 0 and fb_w > win_w * 1.25:
            return 1.0  # coordinates are in points; the framebuffer scale takes care of sharpness
        return min(max(self.content_scale, 1.0), 4.0)

    def _load_font(self, font_path):
        io = imgui.get_io()
        self.font = None
        if font_path and os.path.isfile(font_path):
            self.font = io.fonts.add_font_from_file_ttf(font_path, self.font_size)
        style = imgui.get_style()
        style.font_size_base = self.font_size
        style.font_scale_dpi = self.ui_scale

    def _setup_style(self):
        imgui.style_colors_dark()
        style = imgui.get_style()
        style.window_rounding = 0.0
        style.frame_rounding = 3.0
        style.grab_rounding = 3.0
        style.scrollbar_size = 12.0
        style.window_border_size = 0.0
        style.frame_padding = imgui.ImVec2(6.0, 3.0)
        style.item_spacing = imgui.ImVec2(8.0, 5.0)
        if self.ui_scale != 1.0:
            style.scale_all_sizes(self.ui_scale)

    def set_font_size(self, size):
        """Change the base font size (points before HiDPI scaling)."""
        self.font_size = float(size)
        imgui.get_style().font_size_base = self.font_size

    def _install_callbacks(self):
        w = self.handle
        glfw.set_cursor_pos_callback(w, self.on_mouse_pos)
        glfw.set_mouse_button_callback(w, self.on_mouse_button)
        glfw.set_scroll_callback(w, self.on_scroll)
        glfw.set_key_callback(w, self.on_key)
        glfw.set_char_callback(w, self.on_char)
        glfw.set_cursor_enter_callback(w, self.on_cursor_enter)
        glfw.set_window_focus_callback(w, self.on_focus)
        if hasattr(glfw, 'set_window_content_scale_callback'):
            glfw.set_window_content_scale_callback(w, self.on_content_scale)

    # -- input (GLFW callbacks; tests call them directly with window=None) -------------------
    def on_mouse_pos(self, _window, x, y):
        self.mouse_pos = (float(x), float(y))
        imgui.get_io().add_mouse_pos_event(float(x), float(y))

    def on_mouse_button(self, _window, button, action, _mods=0):
        if 0 <= button < 5:
            imgui.get_io().add_mouse_button_event(button, action == glfw.PRESS)

    def on_scroll(self, _window, dx, dy):
        imgui.get_io().add_mouse_wheel_event(float(dx), float(dy))

    def on_key(self, window, key, scancode, action, mods):
        self._backend.keyboard_callback(window, key, scancode, action, mods)

    def on_char(self, window, char):
        self._backend.char_callback(window, char)

    def on_cursor_enter(self, _window, entered):
        if not entered:
            imgui.get_io().add_mouse_pos_event(-3.4e38, -3.4e38)  # imgui's "no mouse" position

    def on_content_scale(self, _window, sx, sy):
        """Window moved to a monitor with another DPI: rescale fonts and spacing."""
        if self._ui_scale_fixed:
            return
        new = self._detect_ui_scale()
        if abs(new - self.ui_scale) > 1e-3:
            style = imgui.get_style()
            style.scale_all_sizes(new / self.ui_scale)
            style.font_scale_dpi = new
            self.ui_scale = new

    def on_focus(self, _window, focused):
        imgui.get_io().add_focus_event(bool(focused))

    # -- frame loop -------------------------------------------------------------------------
    def draw_gui(self):
        """Override: issue imgui calls for one frame."""
        imgui.text('Override ImguiWindow.draw_gui()')

    def draw_gl_background(self):
        """Override: raw GL drawing after the clear and before imgui draws on top."""

    def draw_frame(self):
        """Run one complete frame: events, imgui frame, GL drawing, capture, swap."""
        self.begin_frame()
        imgui.set_current_context(self._imgui_ctx)
        implot.set_current_context(self._implot_ctx)
        self._backend.process_inputs()
        imgui.new_frame()
        self.draw_gui()
        imgui.render()
        fb_w, fb_h = self.framebuffer_size
        gl.glViewport(0, 0, fb_w, fb_h)
        gl.glDisable(gl.GL_SCISSOR_TEST)
        gl.glClearColor(*self.clear_color)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT)
        self.draw_gl_background()
        self._backend.render(imgui.get_draw_data())
        self.end_frame()

    def run_frames(self, n):
        """Step exactly n frames (tests, benchmarks, headless capture)."""
        for _ in range(int(n)):
            if self.should_close():
                break
            self.draw_frame()

    def run(self):
        """Main loop until the window is closed."""
        try:
            while not self.should_close():
                self.draw_frame()
        finally:
            self.close()

    def close(self):
        if getattr(self, '_closed', True):
            return
        try:
            glfw.make_context_current(self.handle)
            imgui.set_current_context(self._imgui_ctx)
            self._backend.shutdown()
            implot.destroy_context(self._implot_ctx)
            imgui.destroy_context(self._imgui_ctx)
        except Exception:
            pass
        super().close()
