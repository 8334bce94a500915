"""The visualizer's panels are listed once (viz/panels.py): the window and the headless renderer
build them from that table and collect the render request in its order."""

import pytest

from viz import panels
from viz.renderer import RenderArgs


def test_headless_builds_the_rendering_panels_that_need_no_window():
    built = panels.build_panels(panels.Options(seed=3.0, trunc_psi=0.5), headless=True)
    assert list(built) == ['network', 'camera', 'latent', 'layers', 'perf']
    args = panels.render_args(built)
    assert (args.seed, args.trunc_psi, args.pkl) == (3.0, 0.5, None)


def test_every_panel_has_its_own_name_and_label():
    assert len({p.name for p in panels.PANELS}) == len({p.label for p in panels.PANELS}) == len(panels.PANELS)
    assert all(p.render for p in panels.PANELS if p.headless)


def test_the_command_line_camera_overrides_the_network_defaults():
    class Info:
        camera, c_dim, camera_stats, num_ws = True, 25, None, 10
    built = panels.build_panels(panels.Options(), headless=True)
    panels.start_network(built, Info(), dict(yaw=30.0, pitch=None, fov=20.0))
    cam = built['camera']
    assert (cam.yaw, cam.fov) == (30.0, 20.0) and cam.pitch == 0.0


def test_render_args_hold_the_frame_spec_and_read_through():
    a = RenderArgs(pkl='net.pkl', yaw_deg=12.0, seed=2.5, photo_view='difference')
    assert a.frame.yaw_deg == a.yaw_deg == 12.0 and a.seed == 2.5 and a.photo is None
    assert not a.frame.at_pivot_camera                      # no photo: nothing to take the camera from
    b = a.replace(photo='P')
    assert b.frame.pivot == 'P' and b.frame.at_pivot_camera and b.pkl == 'net.pkl' and b.yaw_deg == 12.0
    assert b.replace(photo=None).photo is None and a == RenderArgs(pkl='net.pkl', yaw_deg=12.0, seed=2.5,
                                                                     photo_view='difference')
    with pytest.raises(TypeError, match='unknown fields: yaw'):
        RenderArgs(yaw=3)
