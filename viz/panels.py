"""The visualizer's panels, listed once, in the order the window shows them.

The window builds every panel and draws them in this order; the headless renderer builds those
that `render` (their `update_args` adds to the render request) and need no window. The request is
always collected in this same order, so the PNG of `--headless` is what the window would show
first. Adding a panel: a widget class with `draw(viz)` (and `update_args(dict)` if it changes the
image) in its own module, and one row here.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from .app_state import build_args


@dataclasses.dataclass(frozen=True)
class Options:
    """What the command line gives the panels."""
    browse_dir: str | None = None
    capture_dir: str = 'captures'
    device: str = 'auto'
    seed: float = 0.0
    trunc_psi: float = 1.0
    fps_limit: int = 60
    vsync: bool = False
    fp32: bool = False


@dataclasses.dataclass(frozen=True)
class Panel:
    label: str                  # section title
    name: str                   # attribute of the Visualizer (viz.camera, ...)
    build: Callable             # (Options, panels built so far) -> widget
    open: bool = False          # section starts open
    render: bool = False        # adds to the render request (update_args)
    headless: bool = False      # built by the headless renderer too


def _network(o, _):
    from .network import NetworkWidget
    return NetworkWidget(browse_dir=o.browse_dir)


def _camera(o, _):
    from .camera import CameraWidget
    return CameraWidget()


def _latent(o, _):
    from .latent import LatentWidget
    return LatentWidget(seed=o.seed, trunc_psi=o.trunc_psi)


def _photo(o, built):
    from .photo import PhotoWidget
    return PhotoWidget(built['camera'], capture_dir=o.capture_dir)


def _layers(o, _):
    from .layers import LayerWidget
    return LayerWidget()


def _performance(o, _):
    from .performance import PerformanceWidget
    return PerformanceWidget(device=o.device, fps_limit=o.fps_limit, vsync=o.vsync, force_fp32=o.fp32)


def _capture(o, _):
    from .capture import CaptureWidget
    return CaptureWidget(capture_dir=o.capture_dir)


def _training(o, _):
    from .training import TrainingWidget
    return TrainingWidget()


PANELS = (
    Panel('Network', 'network', _network, open=True, render=True, headless=True),
    Panel('Camera', 'camera', _camera, open=True, render=True, headless=True),
    Panel('Latent', 'latent', _latent, open=True, render=True, headless=True),
    Panel('Photo', 'photo', _photo, open=True, render=True),
    Panel('Layers', 'layers', _layers, render=True, headless=True),
    Panel('Performance', 'perf', _performance, render=True, headless=True),
    Panel('Capture', 'capture', _capture),
    Panel('Training', 'training', _training),
)


def build_panels(options: Options, headless: bool = False) -> dict:
    """name -> widget of every panel (or of the headless ones), in table order."""
    built = {}
    for panel in PANELS:
        if panel.headless or not headless:
            built[panel.name] = panel.build(options, built)
    return built


def render_args(built: dict):
    """The RenderArgs that the built panels ask for, collected in table order."""
    return build_args([built[p.name] for p in PANELS if p.render and p.name in built])


def start_network(built: dict, info, initial_camera: dict | None = None) -> None:
    """A network's description arrived: the camera and latent panels take its defaults, then the
    command line's --yaw/--pitch/--fov (given only for the first network) override them."""
    camera = built['camera']
    camera.on_network(info)
    built['latent'].on_network(info)
    if initial_camera:
        yaw, pitch, fov = (initial_camera.get(k) for k in ('yaw', 'pitch', 'fov'))
        camera.set_angles(camera.yaw if yaw is None else yaw, camera.pitch if pitch is None else pitch)
        if fov is not None:
            camera.fov = float(fov)
