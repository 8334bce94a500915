"""Visualizer logic without a window: widget state -> RenderArgs, the renderer, capture and training helpers."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

from viz.app_state import build_args
from viz.camera import CameraWidget, eg3d_nominal_fov
from viz.capture import next_capture_path, record_orbit
from viz.latent import LatentWidget
from viz.layers import LayerWidget
from viz.network import NetworkWidget
from viz.performance import PerformanceWidget
from raycond.generate import seed_blend
from viz.renderer import RenderArgs, Renderer, layer_to_image
from viz.training import TrainingProcess, build_train_command


class _Info:
    camera = True
    c_dim = 25
    num_ws = 8
    camera_stats = {'yaw_range_deg': [-22.0, 31.0], 'pitch_range_deg': [-8.0, 12.0], 'radius': 2.5,
                    'lookat': [0.0, 0.05, 0.1], 'fov_deg': 15.0}


def _widgets():
    return [NetworkWidget(), CameraWidget(), LatentWidget(), LayerWidget(), PerformanceWidget()]


def test_default_args_and_camera_from_stats():
    net, cam, lat, lay, perf = _widgets()
    args = build_args([net, cam, lat, lay, perf])
    assert args.pkl is None and args.yaw_deg == 0.0 and args.noise_mode == 'const' and args.layer is None
    cam.on_network(_Info())
    assert cam.train_yaw_range == (-22.0, 31.0)
    assert cam.yaw_range == (-25.0, 35.0)          # rounded outward to 5 degrees
    assert cam.radius == 2.5 and cam.fov == 15.0 and cam.lookat == (0.0, 0.05, 0.1)
    assert cam.lookat_mode == 'snapshot'
    args = build_args([net, cam, lat, lay, perf])
    assert (args.radius, args.fov_deg, args.lookat) == (2.5, 15.0, (0.0, 0.05, 0.1))


def test_camera_drag_scroll_extrapolation_presets():
    cam = CameraWidget()
    cam.on_network(_Info())
    cam.drag(100, 0, 400)                           # a quarter of the image: 90/4 degrees
    assert cam.yaw == pytest.approx(-22.5)
    assert not cam.extrapolating
    cam.drag(-400, -200, 400)
    assert cam.yaw == pytest.approx(67.5) and cam.pitch == pytest.approx(45.0)
    assert cam.extrapolating
    assert cam.yaw_range[1] >= 67.5 and cam.pitch_range[1] >= 45.0   # sliders widened on demand
    fov = cam.fov
    cam.scroll(2)
    assert cam.fov == pytest.approx(fov * 0.81)
    cam.scroll(-1000)
    assert cam.fov == 120.0
    cam.set_lookat_mode('cars')
    assert cam.radius == 1.7 and cam.lookat == (0.0, 0.0, 0.0)
    cam.set_angles(12.6, -3.0)
    cam.snap()
    assert (cam.yaw, cam.pitch) == (15.0, -5.0)
    cam.reset()
    assert (cam.yaw, cam.pitch, cam.radius) == (0.0, 0.0, 2.5)
    with pytest.raises(ValueError, match='look-at mode'):
        cam.set_lookat_mode('moon')
    lo, hi = cam.yaw_range
    cam.widen_ranges()
    assert cam.yaw_range[1] - cam.yaw_range[0] == pytest.approx(2 * (hi - lo))
    assert eg3d_nominal_fov(13.37) == pytest.approx(18.83, abs=0.02)


def test_camera_orbit_moves_through_training_range():
    cam = CameraWidget()
    cam.on_network(_Info())
    cam.orbit = True
    yaws = []
    for _ in range(40):
        cam.tick(0.25)
        yaws.append(cam.yaw)
    assert min(yaws) < -15 and max(yaws) > 25 and max(yaws) <= 31.0 + 1e-6


def test_latent_widget_args():
    lat = LatentWidget()
    lat.on_network(_Info())
    lat.drag(50, 200)                                # a quarter image = one seed
    assert lat.seed == pytest.approx(1.0)
    lat.set_seed(3.25)
    lat.trunc_psi, lat.trunc_cutoff, lat.noise_mode, lat.noise_seed = 0.7, 4, 'random', 9
    lat.mix_enabled, lat.mix_seed = True, 5
    lat.set_mix_layers([0, 2])
    d = {}
    lat.update_args(d)
    assert d == dict(seed=3.25, trunc_psi=0.7, trunc_cutoff=4, noise_mode='random', noise_seed=9, mix_seed=5,
                     mix_layers=(0, 2), class_idx=0)
    assert lat.num_classes == 0                                  # camera network: no class selector
    with pytest.raises(ValueError, match='out of range'):
        lat.set_mix_layers([8])
    lat.animate = True
    lat.tick(2.0)
    assert lat.seed == pytest.approx(4.25)
    lat.snap()
    assert lat.seed == 4.0
    assert seed_blend(3.25) == [(3, 0.75), (4, 0.25)] and seed_blend(7) == [(7, 1.0)]


def test_network_widget_run_dir_and_errors(tmp_path):
    net = NetworkWidget(browse_dir=str(tmp_path))
    run = tmp_path / '00000-run'
    run.mkdir()
    assert net.load(str(run)) is False and 'without network-snapshot' in net.error
    (run / 'network-snapshot-000000.pkl').write_bytes(b'x')
    assert net.load(str(run)) is True and net.current.endswith('000000.pkl') and net.error is None
    (run / 'network-snapshot-000004.pkl').write_bytes(b'x')
    assert net.poll_run_dir(now=1e9) is True and net.current.endswith('000004.pkl')
    assert sorted(os.path.basename(p) for p in net.browse_entries()) == ['network-snapshot-000000.pkl',
                                                                        'network-snapshot-000004.pkl']
    assert net.recent[0] == str(run)
    assert net.load('') is True and net.current is None


@pytest.fixture(scope='module')
def renderer():
    return Renderer()


def test_renderer_returns_image_info_and_layers(renderer, small_pickle):
    res = renderer.render(RenderArgs(pkl=small_pickle, device='cpu'))
    assert res.error is None, res.traceback
    assert res.image.shape == (32, 32, 3) and res.image.dtype == np.uint8
    assert res.info.camera and res.info.img_resolution == 32
    names = [n for n, _ in res.layers]
    assert names.index('b32') < names.index('b32.conv1') < names.index('b32.torgb')   # module order


def test_renderer_same_args_same_image(renderer, small_pickle):
    a = renderer.render(RenderArgs(pkl=small_pickle, device='cpu')).image
    np.testing.assert_array_equal(renderer.render(RenderArgs(pkl=small_pickle, device='cpu')).image, a)


def test_renderer_yaw_changes_image(renderer, small_pickle):
    a = renderer.render(RenderArgs(pkl=small_pickle, device='cpu')).image
    turned = renderer.render(RenderArgs(pkl=small_pickle, device='cpu', yaw_deg=40.0)).image
    assert np.abs(turned.astype(int) - a).mean() > 1.0


def test_renderer_fractional_seed_lies_between_neighbours(renderer, small_pickle):
    s0 = renderer.render(RenderArgs(pkl=small_pickle, device='cpu', seed=0.0)).image.astype(float)
    s1 = renderer.render(RenderArgs(pkl=small_pickle, device='cpu', seed=1.0)).image.astype(float)
    half = renderer.render(RenderArgs(pkl=small_pickle, device='cpu', seed=0.5)).image.astype(float)
    assert np.abs(half - s0).mean() < np.abs(s1 - s0).mean()


def test_renderer_shows_a_layer_as_rgb(renderer, small_pickle):
    shape = dict(renderer.render(RenderArgs(pkl=small_pickle, device='cpu')).layers)['b32.conv1']
    assert shape[0] >= 4
    lay = renderer.render(RenderArgs(pkl=small_pickle, device='cpu', layer='b32.conv1', layer_channel=1,
                                     layer_rgb=True))
    assert lay.layer_image.shape == (shape[1], shape[2], 3) and lay.layer_stats['shown'] == [1, 2, 3]


def test_renderer_reports_missing_network_as_text(renderer):
    bad = renderer.render(RenderArgs(pkl='/nonexistent/net.pkl'))
    assert bad.image is None and 'not found' in bad.error


def test_renderer_reports_bad_noise_mode_as_text(renderer, small_pickle):
    assert 'noise mode' in renderer.render(RenderArgs(pkl=small_pickle, device='cpu', noise_mode='loud')).error


def test_renderer_without_network_is_not_an_error(renderer):
    assert renderer.render(RenderArgs()).error is None


def test_layer_to_image_normalizes():
    import torch
    x = torch.zeros(4, 5, 6)
    x[2] = torch.linspace(-3, 3, 30).reshape(5, 6)
    img, stats = layer_to_image(x, channel=2)
    assert img.shape == (5, 6, 1) and img[0, 0, 0] < 40 and img[-1, -1, 0] > 215
    assert stats['channels'] == 4 and stats['shown'] == [2]
    img, stats = layer_to_image(x, channel=3, rgb=True)
    assert img.shape == (5, 6, 3) and stats['shown'] == [3, 3, 3]


def test_record_orbit_gif_and_capture_paths(small_pickle, tmp_path):
    p0 = next_capture_path(str(tmp_path), 'orbit', 'gif')
    out = record_orbit(Renderer(), RenderArgs(pkl=small_pickle, device='cpu'), p0, 'turntable', 4, 10)
    with Image.open(out) as im:
        assert im.n_frames == 4 and im.size == (32, 32)
    assert next_capture_path(str(tmp_path), 'orbit', 'gif').endswith('orbit-0001.gif')


def test_training_command_and_process(tmp_path):
    cmd = build_train_command('data.zip', str(tmp_path), kimg=5, batch=4, extra='--tick=1 --seed=3')
    assert cmd[1].endswith('train.py') and '--data=data.zip' in cmd and '--kimg=5' in cmd and cmd[-1] == '--seed=3'
    with pytest.raises(ValueError, match='dataset'):
        build_train_command('', str(tmp_path))
    # a fake trainer: makes a run dir with fakes and a snapshot, logs, then waits for SIGINT
    script = tmp_path / 'fake_train.py'
    script.write_text(
        'import os, sys, time\n'
        'from PIL import Image\n'
        'out = sys.argv[1]; rd = os.path.join(out, "00000-fake"); os.makedirs(rd)\n'
        'Image.new("RGB", (8, 4), (255, 0, 0)).save(os.path.join(rd, "fakes000000.png"))\n'
        'open(os.path.join(rd, "network-snapshot-000000.pkl"), "wb").write(b"x")\n'
        'print("tick 0", flush=True)\n'
        'try:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    print("stopped cleanly", flush=True)\n')
    outdir = tmp_path / 'runs'
    outdir.mkdir()
    proc = TrainingProcess([sys.executable, str(script), str(outdir)], str(outdir))
    import time
    deadline = time.time() + 20
    while time.time() < deadline and 'tick 0' not in proc.lines:
        time.sleep(0.05)
    assert 'tick 0' in proc.lines
    assert proc.newest_fakes().endswith('fakes000000.png')
    assert proc.newest_snapshot().endswith('network-snapshot-000000.pkl')
    assert proc.stop(timeout=10) == 0
    time.sleep(0.1)
    assert 'stopped cleanly' in proc.lines


def test_unconditional_network_disables_camera(tmp_path, tiny_generator):
    import pickle
    G = tiny_generator('stylegan2', res=16)
    path = tmp_path / 'sg2.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'G_ema': G}, f)
    r = Renderer()
    res = r.render(RenderArgs(pkl=str(path), device='cpu'))
    assert res.error is None and res.image.shape == (16, 16, 3) and not res.info.camera
    turned = r.render(RenderArgs(pkl=str(path), device='cpu', yaw_deg=30.0))
    np.testing.assert_array_equal(turned.image, res.image)        # no camera: the yaw has no effect
    cam = CameraWidget()
    cam.on_network(res.info)
    assert not cam.enabled


def test_record_orbit_mp4(small_pickle, tmp_path):
    pytest.importorskip('imageio_ffmpeg')
    import imageio.v2 as imageio
    out = record_orbit(Renderer(), RenderArgs(pkl=small_pickle, device='cpu'), str(tmp_path / 'o.mp4'),
                       'yaw-pitch-ellipse', 6, 12)
    reader = imageio.get_reader(out)
    assert reader.count_frames() == 6 and reader.get_meta_data()['size'] == (32, 32)
    reader.close()


def test_class_conditional_network(tmp_path, tiny_generator):
    import pickle
    G = tiny_generator('stylegan2', res=16, c_dim=4)
    path = tmp_path / 'cond.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'G_ema': G}, f)
    r = Renderer()
    a = r.render(RenderArgs(pkl=str(path), device='cpu', class_idx=0))
    b = r.render(RenderArgs(pkl=str(path), device='cpu', class_idx=3))
    assert a.error is None and b.error is None and not a.info.camera
    assert np.abs(a.image.astype(int) - b.image).mean() > 0.5                # the class changes the image
    assert 'out of range' in r.render(RenderArgs(pkl=str(path), device='cpu', class_idx=4)).error
    lat = LatentWidget()
    lat.on_network(a.info)
    assert lat.num_classes == 4


def test_force_fp32_checkbox_follows_fp32_option():
    assert build_args(_widgets()[:4] + [PerformanceWidget()]).force_fp32 is False
    assert build_args(_widgets()[:4] + [PerformanceWidget(force_fp32=True)]).force_fp32 is True


def test_performance_panel_names_the_precision_the_device_runs():
    from viz.performance import precision_label
    assert precision_label('cuda:0', False) == 'fp16 layers'
    assert precision_label('cuda:0', True) == 'fp32'
    assert precision_label('cpu', False) == 'fp32'


def test_layer_of_another_network_renders_without_layer_view(small_pickle):
    """Found by the soak: after switching from a 64² to a 32² network the Layers widget still names
    'b64' for one render; that render must show the image, not an error."""
    res = Renderer().render(RenderArgs(pkl=small_pickle, device='cpu', layer='b64'))
    assert res.error is None, res.error
    assert res.image.shape == (32, 32, 3) and res.layer_image is None
    assert 'b64' not in [n for n, _ in res.layers]
