"""GLFW and PyOpenGL platform matching (X11 / XWayland / pure Wayland) and display detection."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ('import json, os, gui_utils; from imgui_bundle import imgui; '
         'print(json.dumps({k: os.environ.get(k) for k in '
         '("PYGLFW_LIBRARY", "PYGLFW_LIBRARY_VARIANT", "PYOPENGL_PLATFORM")} | '
         '{"display": gui_utils.display_available()}))')


def _probe(**env):
    base = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY', 'XDG_SESSION_TYPE',
                                                              'PYGLFW_LIBRARY', 'PYGLFW_LIBRARY_VARIANT',
                                                              'PYOPENGL_PLATFORM')}
    out = subprocess.run([sys.executable, '-c', PROBE], env=dict(base, **env), cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='Linux display platforms')
def test_platform_matching():
    x11 = _probe(DISPLAY=':5', XDG_SESSION_TYPE='x11')
    assert x11['PYGLFW_LIBRARY_VARIANT'] == 'x11' and x11['PYOPENGL_PLATFORM'] == 'glx' and x11['display']
    xwayland = _probe(DISPLAY=':5', WAYLAND_DISPLAY='wayland-0', XDG_SESSION_TYPE='wayland')
    assert xwayland['PYGLFW_LIBRARY_VARIANT'] == 'x11' and xwayland['PYOPENGL_PLATFORM'] == 'glx'
    wayland = _probe(WAYLAND_DISPLAY='wayland-0', XDG_SESSION_TYPE='wayland')
    assert wayland['PYGLFW_LIBRARY_VARIANT'] == 'wayland' and wayland['PYOPENGL_PLATFORM'] == 'egl'
    assert 'imgui_bundle' not in (wayland['PYGLFW_LIBRARY'] or '')
    user = _probe(WAYLAND_DISPLAY='wayland-0', PYOPENGL_PLATFORM='osmesa')
    assert user['PYOPENGL_PLATFORM'] == 'osmesa'                   # explicit settings win
    assert _probe()['display'] is False
