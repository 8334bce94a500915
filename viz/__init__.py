"""The raycond visualizer: renderer (pure compute), async render thread, one module per widget, and
the window (`viz.app.Visualizer`). Importing `viz` does not open a window or need a display, and
importing the renderer leaves the environment alone: only the widget modules (which load
imgui-bundle, and with it GLFW) import `gui_utils`, whose platform setup must run first."""
