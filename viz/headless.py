"""Render the first frame of a visualizer configuration without a display (servers, CI, --headless).

Uses the same widget state -> RenderArgs path as the window, so the PNG matches what the window
would show first, and the same Renderer (no OpenGL needed).
"""

from __future__ import annotations

from .camera import CameraWidget
from .capture import save_png
from .latent import LatentWidget
from .layers import LayerWidget
from .network import NetworkWidget
from .performance import PerformanceWidget
from .renderer import Renderer
from .app_state import build_args


def render_first_frame(pkl, *, device='auto', seed=0.0, trunc_psi=1.0, yaw=None, pitch=None, fov=None,
                       renderer=None, trust_pickle=False, fp32=False):
    """RenderResult of the initial view of `pkl` with the given overrides. Raises ValueError on errors."""
    renderer = renderer or Renderer()
    network, camera = NetworkWidget(), CameraWidget()
    latent, layers = LatentWidget(seed=seed, trunc_psi=trunc_psi), LayerWidget()
    perf = PerformanceWidget(device=device, force_fp32=fp32)
    network.trust.trust_all = bool(trust_pickle)
    network.load(pkl)
    if network.error:
        raise ValueError(network.error)
    if network.current is None:
        raise ValueError('no network given (pass a PKL path)')
    args = build_args([network, camera, latent, layers, perf])
    res = renderer.render(args.replace(info_only=True))   # the network's camera defaults before the first frame
    if res.error:
        raise ValueError(res.error)
    camera.on_network(res.info)
    latent.on_network(res.info)
    camera.set_angles(camera.yaw if yaw is None else yaw, camera.pitch if pitch is None else pitch)
    if fov is not None:
        camera.fov = float(fov)
    res = renderer.render(build_args([network, camera, latent, layers, perf]))
    if res.error:
        raise ValueError(res.error)
    return res


def capture_png(pkl, path, **kwargs):
    """Write the first frame of `pkl` to `path` (PNG). Returns the RenderResult."""
    res = render_first_frame(pkl, **kwargs)
    save_png(res.image, path)
    return res
