"""Render the first frame of a visualizer configuration without a display (servers, CI, --headless).

Uses the same widget state -> RenderArgs path as the window, so the PNG matches what the window
would show first, and the same Renderer (no OpenGL needed).
"""

from __future__ import annotations

from . import panels
from .capture import save_png
from .renderer import Renderer


def render_first_frame(pkl, *, device='auto', seed=0.0, trunc_psi=1.0, yaw=None, pitch=None, fov=None,
                       renderer=None, trust_pickle=False, fp32=False):
    """RenderResult of the initial view of `pkl` with the given overrides. Raises ValueError on errors."""
    renderer = renderer or Renderer()
    built = panels.build_panels(panels.Options(device=device, seed=seed, trunc_psi=trunc_psi, fp32=fp32),
                                headless=True)
    network = built['network']
    network.trust.trust_all = bool(trust_pickle)
    network.load(pkl)
    if network.error:
        raise ValueError(network.error)
    if network.current is None:
        raise ValueError('no network given (pass a PKL path)')
    res = renderer.render(panels.render_args(built).replace(info_only=True))   # the network's camera defaults first
    if res.error:
        raise ValueError(res.error)
    panels.start_network(built, res.info, dict(yaw=yaw, pitch=pitch, fov=fov))
    res = renderer.render(panels.render_args(built))
    if res.error:
        raise ValueError(res.error)
    return res


def capture_png(pkl, path, **kwargs):
    """Write the first frame of `pkl` to `path` (PNG). Returns the RenderResult."""
    res = render_first_frame(pkl, **kwargs)
    save_png(res.image, path)
    return res
