"""A GLFW window with an OpenGL 3.3 core context, frame pacing, file drops and frame capture.

Generic: knows nothing of imgui or GANs. `ImguiWindow` builds on it.
"""

import time

import glfw
import OpenGL.GL as gl

from . import gl_utils


class WindowError(RuntimeError):
    """The window or its GL context could not be created (no display, no GL 3.3 driver, ...)."""


_glfw_errors = []


def _error_callback(code, description):
    msg = description.decode(errors='replace') if isinstance(description, bytes) else str(description)
    _glfw_errors.append(f'GLFW error {code:#x}: {msg}')
    del _glfw_errors[:-20]


def _last_glfw_error():
    return _glfw_errors[-1] if _glfw_errors else 'unknown GLFW error'


def _fit_to_monitor(width, height):
    """Shrink the requested size to the primary monitor's work area (small screens, small Xvfb)."""
    try:
        monitor = glfw.get_primary_monitor()
        if monitor:
            _, _, mw, mh = glfw.get_monitor_workarea(monitor)
            if mw > 0 and mh > 0:
                return min(int(width), mw), min(int(height), mh)
    except Exception:  # noqa: BLE001 - some platforms (Wayland) cannot tell; keep the request
        pass
    return int(width), int(height)


class GlfwWindow:
    """Owns one GLFW window. Call `begin_frame()` / `end_frame()` around each frame's drawing."""

    def __init__(self, *, title='Window', width=1280, height=800, vsync=False, fps_limit=60,
                 visible=True, gl_version=(3, 3)):
        glfw.set_error_callback(_error_callback)
        if not glfw.init():
            raise WindowError(f'cannot initialise GLFW ({_last_glfw_error()}); is a display available?')
        width, height = _fit_to_monitor(width, height)
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, gl_version[0])
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, gl_version[1])
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, glfw.TRUE)
        glfw.window_hint(glfw.VISIBLE, glfw.TRUE if visible else glfw.FALSE)
        if hasattr(glfw, 'SCALE_TO_MONITOR'):
            glfw.window_hint(glfw.SCALE_TO_MONITOR, glfw.TRUE)
        self._window = glfw.create_window(int(width), int(height), title, None, None)
        if not self._window:
            raise WindowError(f'cannot create an OpenGL {gl_version[0]}.{gl_version[1]} core window '
                              f'({_last_glfw_error()})')
        glfw.make_context_current(self._window)
        self._title = title
        self._vsync = None
        self.set_vsync(vsync)
        self.fps_limit = fps_limit
        self._drop_callbacks = []
        glfw.set_drop_callback(self._window, self.on_drop)
        self._frame_start = None
        self._last_frame_time = None
        self.frame_time = 0.0          # seconds between the starts of the last two frames
        self.frame_count = 0
        self.last_swap_time = None
        self._capture_requested = False
        self.last_capture = None       # HxWx3 uint8 of the last captured frame
        self._closed = False

    # -- properties -------------------------------------------------------------------------
    @property
    def handle(self):
        """The raw GLFW window handle."""
        return self._window

    @property
    def window_size(self):
        return glfw.get_window_size(self._window)

    @property
    def framebuffer_size(self):
        return glfw.get_framebuffer_size(self._window)

    @property
    def content_scale(self):
        """Monitor content scale (HiDPI factor) reported by GLFW, max of x and y."""
        try:
            sx, sy = glfw.get_window_content_scale(self._window)
            return max(float(sx), float(sy), 0.5)
        except Exception:  # pragma: no cover - old GLFW
            return 1.0

    def set_title(self, title):
        if title != self._title:
            glfw.set_window_title(self._window, title)
            self._title = title

    def set_vsync(self, vsync):
        vsync = bool(vsync)
        if vsync != self._vsync:
            glfw.swap_interval(1 if vsync else 0)
            self._vsync = vsync

    @property
    def vsync(self):
        return self._vsync

    def set_window_size(self, width, height):
        glfw.set_window_size(self._window, int(width), int(height))

    def should_close(self):
        return self._closed or glfw.window_should_close(self._window)

    def request_close(self):
        glfw.set_window_should_close(self._window, True)

    # -- drag and drop ----------------------------------------------------------------------
    def add_drop_callback(self, fn):
        """Register fn(paths: list[str]) to be called when files are dropped onto the window."""
        self._drop_callbacks.append(fn)

    def on_drop(self, _window, paths):
        """GLFW drop callback (also callable from tests with a list of paths)."""
        paths = [p.decode() if isinstance(p, bytes) else str(p) for p in paths]
        for fn in self._drop_callbacks:
            fn(paths)

    # -- frames -----------------------------------------------------------------------------
    def begin_frame(self):
        """Poll events, update frame timing and make the context current."""
        now = time.perf_counter()
        if self._frame_start is not None:
            self.frame_time = now - self._frame_start
        self._frame_start = now
        glfw.make_context_current(self._window)
        glfw.poll_events()
        fb_w, fb_h = self.framebuffer_size
        gl.glViewport(0, 0, fb_w, fb_h)

    def request_capture(self):
        """Capture the next finished frame into `last_capture` (read before the buffer swap)."""
        self._capture_requested = True

    def capture_frame(self):
        """Read the current back buffer now (call after drawing, before `end_frame`)."""
        fb_w, fb_h = self.framebuffer_size
        return gl_utils.read_pixels(fb_w, fb_h)

    def end_frame(self):
        """Capture if requested, swap buffers and sleep to honour `fps_limit` (when not vsynced)."""
        if self._capture_requested:
            self.last_capture = self.capture_frame()
            self._capture_requested = False
        glfw.swap_buffers(self._window)
        self.last_swap_time = time.perf_counter()   # when the frame reached the screen (benchmarks)
        self.frame_count += 1
        if self.fps_limit and self.fps_limit > 0 and self._frame_start is not None:
            remaining = 1.0 / self.fps_limit - (time.perf_counter() - self._frame_start)
            if remaining > 0:
                time.sleep(remaining)

    def close(self):
        """Destroy the window (GLFW itself stays initialised for other windows)."""
        if not self._closed:
            self._closed = True
            glfw.destroy_window(self._window)
            self._window = None

    def __del__(self):  # pragma: no cover
        try:
            if not self._closed and self._window is not None:
                self.close()
        except Exception:
            pass
