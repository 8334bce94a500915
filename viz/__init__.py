"""The raycond visualizer: renderer (pure compute), async render thread, one module per widget, and
the window (`viz.app.Visualizer`). Importing `viz` does not open a window or need a display."""

import gui_utils  # noqa: F401  (matches GLFW/PyOpenGL platforms before imgui-bundle, glfw or OpenGL load)
