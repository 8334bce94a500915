"""Generic GUI toolkit: GLFW window, Dear ImGui (imgui-bundle) layer, GL textures and shaders, fonts.

Knows nothing of GANs and never imports torch. `platform_setup` runs first so that GLFW and
PyOpenGL agree on X11/GLX vs Wayland/EGL before either is imported. The GL modules are imported
lazily (`from gui_utils import imgui_window`) so that `import gui_utils` works without a display.
"""

from .platform_setup import configure_platform, display_available, NO_DISPLAY_MESSAGE

configure_platform()

__all__ = ['configure_platform', 'display_available', 'NO_DISPLAY_MESSAGE']
