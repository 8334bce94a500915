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


def test_recent_entries_of_the_same_file_name_have_distinct_ids():
    from gui_utils.imgui_utils import path_label
    a, b = path_label('runA/network-snapshot-000000.pkl'), path_label('runB/network-snapshot-000000.pkl')
    assert a != b and a.split('##')[0] == b.split('##')[0] == 'network-snapshot-000000.pkl'


def test_a_file_that_fails_to_load_leaves_the_recent_list(tmp_path, small_pickle):
    from viz.network import NetworkWidget
    from viz.renderer import Renderer
    broken = tmp_path / 'broken.pkl'
    broken.write_bytes(b'not a pickle')
    w, renderer = NetworkWidget(), Renderer()
    for path in (small_pickle, str(broken)):
        w.load(path)
        args = {}
        w.update_args(args)
        res = renderer.render(RenderArgs(**args, device='cpu', info_only=True))
        w.on_result(res)
    assert res.error and w.recent == [small_pickle]


def test_visualizer_help_answers_to_dash_h():
    from click.testing import CliRunner
    import visualizer
    result = CliRunner().invoke(visualizer.main, ['-h'])
    assert result.exit_code == 0 and '--headless' in result.output


def test_without_a_network_the_field_shows_the_bundled_checkpoint_s_short_path(monkeypatch):
    import os
    import visualizer
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.chdir(root)
    assert visualizer._default_pkls(()) == [os.path.join('checkpoints', 'raycond2-synthheads-64.pkl')]
