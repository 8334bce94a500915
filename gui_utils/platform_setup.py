"""Match the GLFW and PyOpenGL platforms before either is imported, and detect a display.

GLFW (pip wheel) picks its X11 or Wayland build from the environment, and PyOpenGL picks GLX or
EGL on its own; when they disagree (typical under Wayland) every GL call fails with "no valid
context". This module makes them agree, and tells the user what to do when there is no display.
Import it (gui_utils/__init__ does) before `glfw` or `OpenGL`.
"""

import os
import sys

_configured = False


def configure_platform():
    """Set PYGLFW_LIBRARY_VARIANT / PYOPENGL_PLATFORM consistently (Linux only). Idempotent.

    Under Wayland with XWayland available (DISPLAY set) both use X11/GLX, the most robust
    pairing; under pure Wayland both use Wayland/EGL. Values the user set explicitly win.
    """
    global _configured
    if _configured or not sys.platform.startswith('linux'):
        _configured = True
        return
    _configured = True
    env = os.environ
    wayland = bool(env.get('WAYLAND_DISPLAY')) or env.get('XDG_SESSION_TYPE', '').lower() == 'wayland'
    variant = env.get('PYGLFW_LIBRARY_VARIANT', '').lower()
    if variant not in ('x11', 'wayland'):
        variant = 'wayland' if (wayland and not env.get('DISPLAY')) else 'x11'
        if wayland or env.get('XDG_SESSION_TYPE'):
            env['PYGLFW_LIBRARY_VARIANT'] = variant
    if variant == 'wayland':
        # imgui-bundle points PYGLFW_LIBRARY at its own GLFW, built without Wayland: use the glfw wheel's.
        lib = env.get('PYGLFW_LIBRARY', '')
        if not lib or 'imgui_bundle' in lib:
            wl = _glfw_wheel_library('wayland')
            if wl:
                env['PYGLFW_LIBRARY'] = wl
    if 'PYOPENGL_PLATFORM' not in env:
        if variant == 'wayland':
            env['PYOPENGL_PLATFORM'] = 'egl'
        elif wayland or env.get('DISPLAY'):
            env['PYOPENGL_PLATFORM'] = 'glx'


def _glfw_wheel_library(variant):
    """Path of the glfw wheel's libglfw for 'x11' or 'wayland', found without importing glfw."""
    import importlib.util
    try:
        spec = importlib.util.find_spec('glfw')
    except (ImportError, ValueError):
        return None
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(base, variant, 'libglfw.so')
        if os.path.isfile(path):
            return path
    return None


def display_available():
    """True when a window can plausibly be opened (X11/Wayland display on Linux; always elsewhere)."""
    if not sys.platform.startswith('linux'):
        return True
    return bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))


NO_DISPLAY_MESSAGE = (
    'No display found (neither DISPLAY nor WAYLAND_DISPLAY is set). '
    'Use --headless --capture out.png to render without a window, or install a virtual display '
    '(Debian/Ubuntu: apt-get install xvfb) and run under `xvfb-run -s "-screen 0 1280x800x24" python ...`.'
)
