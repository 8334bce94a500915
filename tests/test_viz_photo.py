"""The visualizer's Photo panel: the background job (progress, preview, cancel, errors), the renderer
showing an inverted photo at any camera, the widget's state, and the panel driven under Xvfb."""

import copy
import os
import threading
import types

import numpy as np
import pytest
import torch
from PIL import Image

from raycond import camera as cam
from raycond import generate as gen
from raycond.inversion.config import InversionConfig
from viz.camera import CameraWidget, orbit_from_label
from viz.capture import record_orbit
from viz.inversion_job import PhotoJob, preview_to_uint8, start_inversion
from viz.photo import PhotoWidget, as_uint8_image, is_photo_file
from viz.renderer import DIFFERENCE_GAIN, PhotoSource, RenderArgs, Renderer

EST_CAMERA = dict(yaw_deg=14.0, pitch_deg=-6.0, fov_deg=13.37, radius=2.7, lookat=(0.0, 0.0, 0.2))


def _label(**kw):
    d = dict(EST_CAMERA, **kw)
    return cam.camera_label(d['yaw_deg'], d['pitch_deg'], fov_deg=d['fov_deg'], radius=d['radius'],
                            lookat=d['lookat'])


class FakeResult:
    """What raycond.inversion.invert returns: a copy of G, a pivot, a camera, the target as seen."""

    def __init__(self, G, ws, camera, target=None, meta=None):
        self.G, self.ws, self.camera, self.target, self.meta = G, ws, camera, target, meta or {}
        self.z = None

    def render(self, camera=None):
        camera = self.camera if camera is None else camera
        with torch.no_grad():
            return gen.synthesize(self.G, self.ws.expand(camera.shape[0], -1, -1), camera)

    def save(self, path):
        torch.save(dict(ws=self.ws, camera=self.camera), path)


def fake_invert(G, target, camera=None, config=None, device=None, progress=None, calls=None, log=print, **kwargs):
    """raycond.inversion.invert's interface, quickly: 3 reported steps with previews, then the
    config's seed's ws at the 'estimated' camera EST_CAMERA."""
    if calls is not None:
        calls.append(dict(G=G, target=target, camera=camera, config=config, device=device, **kwargs))
    seed = 0 if config is None else config.seed
    if isinstance(G, str):
        from raycond import loading
        G = loading.load_network(G)
    log('inversion loss: fake')
    camera = _label() if camera is None else camera
    with torch.no_grad():
        ws = gen.map_latents(G, gen.seeds_to_z([seed], G.z_dim), camera)
        for i in range(3):
            preview = gen.synthesize(G, ws, camera) * (i + 1) / 3
            if progress is not None and progress(i + 1, 3, 'pivot', 1.0 / (i + 1), preview) is False:
                raise RuntimeError('cancelled')
    target_u8 = torch.from_numpy(np.array(Image.open(target).convert('RGB'))).permute(2, 0, 1)[None]
    return FakeResult(copy.deepcopy(G), ws, camera, target_u8, dict(has_camera=True, camera_estimated=True,
                                                                     lookat=[0.0, 0.0, 0.2], seconds=1.0))


def _fake_load_network(small_generator):
    return lambda pkl, key, device, trust_pickle=False: (small_generator, None, torch.device('cpu'))


@pytest.fixture
def photo_png(tmp_path, small_generator):
    """A photo the small network made itself at the 'estimated' camera."""
    with torch.no_grad():
        img = gen.generate_images(small_generator, [5], _label())[0]
    path = tmp_path / 'face.png'
    Image.fromarray(img).save(path)
    return str(path)


# -- the background job ------------------------------------------------------------------------------

def test_job_reports_progress_and_preview_then_result():
    go = threading.Event()
    seen = threading.Event()

    def work(job):
        job.report(1, 4, 'camera', 0.5, torch.zeros(1, 3, 8, 8))
        job.log('inversion loss:', 'pixel')
        seen.set()
        go.wait(10)
        return 'the result'
    job = PhotoJob(work)
    assert seen.wait(10)
    assert job.running and job.result is None
    assert (job.progress.step, job.progress.total, job.progress.stage, job.progress.loss) == (1, 4, 'camera', 0.5)
    assert job.progress.fraction == 0.25
    assert job.preview.shape == (8, 8, 3) and job.preview.dtype == np.uint8 and job.preview_version == 1
    assert job.messages == ['inversion loss: pixel']
    go.set()
    assert job.wait(10)
    assert job.state == 'done' and job.result == 'the result' and job.error is None


def test_cancel_makes_report_return_false_and_ends_cancelled():
    answers = []

    def work(job):
        for i in range(1000):
            ok = job.report(i, 1000, 'pivot', 1.0)
            answers.append(ok)
            if not ok:
                raise RuntimeError('stopped by the callback')
            threading.Event().wait(0.002)
        return 'finished'
    job = PhotoJob(work)
    job.cancel()
    assert job.wait(10)
    assert job.state == 'cancelled' and job.result is None and job.error is None
    assert answers[-1] is False and len(answers) < 1000


def test_failure_is_one_line_error_with_traceback():
    def work(job):
        raise ValueError('face.png: expected an RGB image, got 4 channels\nsecond line')
    job = PhotoJob(work)
    assert job.wait(10)
    assert job.state == 'failed' and job.result is None
    assert job.error == 'face.png: expected an RGB image, got 4 channels'
    assert 'ValueError' in job.traceback


def test_preview_to_uint8_maps_range_and_grey():
    x = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 1, 1, 3)
    out = preview_to_uint8(x)
    assert out.shape == (1, 3, 3) and out[0, :, 0].tolist() == [0, 128, 255] and (out[..., 0] == out[..., 2]).all()
    assert preview_to_uint8(None) is None


def test_start_inversion_hands_the_network_file_and_options_to_the_library(small_pickle, photo_png):
    calls = []
    config = InversionConfig(num_steps=7, tune_steps=0, seed=3)
    job = start_inversion(small_pickle, photo_png, device='cpu', camera=None, config=config,
                          invert_fn=lambda *a, **k: fake_invert(*a, calls=calls, **k))
    assert job.wait(30) and job.state == 'done', job.error
    assert calls == [dict(G=small_pickle, target=photo_png, camera=None, config=config,
                          device=torch.device('cpu'), network_path=small_pickle)]
    assert job.progress.step == 3 and job.preview_version == 3 and job.messages == ['inversion loss: fake']


def test_start_inversion_hands_a_trusted_pickle_over_as_a_module(small_pickle, photo_png):
    calls = []
    job = start_inversion(small_pickle, photo_png, device='cpu', trust_pickle=True,
                          invert_fn=lambda *a, **k: fake_invert(*a, calls=calls, **k))
    assert job.wait(30) and job.state == 'done', job.error
    assert isinstance(calls[0]['G'], torch.nn.Module) and calls[0]['info'].img_resolution == 32
    assert calls[0]['network_path'] == small_pickle


def test_start_inversion_without_network_is_refused():
    with pytest.raises(ValueError, match='load a network'):
        start_inversion(None, 'face.png')


# -- rendering an inverted photo ---------------------------------------------------------------------

@pytest.fixture
def source(small_generator, photo_png):
    res = fake_invert(small_generator, photo_png, config=InversionConfig(seed=5))
    return PhotoSource.from_result(res, target=as_uint8_image(res.target), name='face.png')


def test_renderer_renders_photo_at_the_chosen_camera(small_pickle, source):
    r = Renderer()
    args = RenderArgs(pkl=small_pickle, device='cpu', seed=99, photo=source, **EST_CAMERA)
    at_estimate = r.render(args)
    assert at_estimate.error is None
    with torch.no_grad():
        expected = gen.to_uint8(source.G.synthesis(source.ws, _label(), noise_mode='const'))[0].numpy()
    np.testing.assert_array_equal(at_estimate.image, expected)
    turned = r.render(args.replace(yaw_deg=EST_CAMERA['yaw_deg'] - 30))
    assert np.abs(turned.image.astype(int) - at_estimate.image).mean() > 1.0
    seeds = r.render(args.replace(photo=None))
    assert np.abs(seeds.image.astype(int) - at_estimate.image).mean() > 1.0   # seed 99 is another face


def test_renderer_target_and_difference_views(small_pickle, source):
    r = Renderer()
    args = RenderArgs(pkl=small_pickle, device='cpu', photo=source, yaw_deg=-20.0)
    np.testing.assert_array_equal(r.render(args.replace(photo_view='target')).image, source.target)
    diff = r.render(args.replace(photo_view='difference')).image     # at the estimated camera, whatever the sliders
    recon = r.render(args.replace(**EST_CAMERA)).image
    expected = np.clip(np.abs(source.target.astype(int) - recon) * DIFFERENCE_GAIN, 0, 255)
    np.testing.assert_array_equal(diff, expected)
    assert diff.mean() < 20                                          # the photo was made by this network there
    bad = r.render(args.replace(photo_view='sideways'))
    assert 'photo view must be one of' in bad.error and bad.image is None


def test_orbit_recording_turns_the_photo(small_pickle, source, tmp_path):
    path = str(tmp_path / 'orbit.gif')
    args = RenderArgs(pkl=small_pickle, device='cpu', photo=source, **EST_CAMERA)
    assert record_orbit(Renderer(), args, path, 'turntable', 3, 10) == path
    with Image.open(path) as im:
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert('RGB')).astype(int))
    assert len(frames) == 3 and np.abs(frames[0] - frames[1]).mean() > 1.0


def test_render_args_with_photo_stay_hashable_and_compare_by_identity(source):
    a = RenderArgs(pkl='x', photo=source)
    assert a == a.replace() and hash(a) == hash(a.replace())
    other = PhotoSource(source.G, source.ws, source.camera, source.target)
    assert a != a.replace(photo=other)


# -- camera and widget state ---------------------------------------------------------------------------

def test_orbit_from_label_recovers_slider_values():
    c = _label(yaw_deg=-23.0, pitch_deg=7.5, fov_deg=18.0, radius=2.4, lookat=(0.0, 0.05, 0.2))
    o, residual = orbit_from_label(c, lookat_hint=(0.0, 0.05, 0.2))
    assert o['yaw_deg'] == pytest.approx(-23.0, abs=1e-4) and o['pitch_deg'] == pytest.approx(7.5, abs=1e-4)
    assert o['fov_deg'] == pytest.approx(18.0, abs=1e-4) and o['radius'] == pytest.approx(2.4, abs=1e-5)
    assert o['lookat'] == pytest.approx((0.0, 0.05, 0.2), abs=1e-5) and residual < 1e-5


def test_widget_takes_result_sets_camera_and_shows_photo_only_on_its_network(small_generator, photo_png,
                                                                           small_pickle):
    camw = CameraWidget()
    w = PhotoWidget(camw)
    assert w.open(photo_png) and w.recent == [photo_png] and w.thumbnail.shape == (32, 32, 3)
    args = RenderArgs(pkl=small_pickle, device='cpu')
    w.invert(args, None, invert_fn=fake_invert)
    assert w.job.wait(30)
    assert w.poll() and not w.poll()
    assert (camw.yaw, camw.pitch, camw.fov) == pytest.approx((14.0, -6.0, 13.37), abs=1e-3)
    assert w.source.target.shape == (32, 32, 3) and 'yaw +14.0' in w.message
    assert w.reconstruction is w.job.preview                          # the panel's reconstruction thumbnail
    d = dict(pkl=small_pickle)
    w.update_args(d)
    assert d['photo'] is w.source and d['photo_view'] == 'render'
    d = dict(pkl='another.pkl')
    w.update_args(d)
    assert 'photo' not in d                                           # another network: seeds
    w.show_seeds()
    d = dict(pkl=small_pickle)
    w.update_args(d)
    assert 'photo' not in d


def test_widget_shows_a_newly_opened_photo_after_an_inversion(small_generator, photo_png, small_pickle, tmp_path):
    w = PhotoWidget(CameraWidget())
    w.open(photo_png)
    w.invert(RenderArgs(pkl=small_pickle, device='cpu'), None, invert_fn=fake_invert)
    assert w.job.wait(30) and w.poll()
    assert [name for name, _, _ in w.panel_images()] == ['target', 'reconstruction']
    other = tmp_path / 'other.png'
    Image.fromarray(np.full((20, 30, 3), 77, np.uint8)).save(other)
    assert w.open(str(other))
    (name, img, _), = w.panel_images()
    assert name == 'photo' and img.shape == (20, 30, 3) and int(img[0, 0, 0]) == 77
    assert w.source is not None                                       # the inversion is kept until replaced
    w.open(photo_png)
    assert [name for name, _, _ in w.panel_images()] == ['target', 'reconstruction']


def test_widget_steps_become_the_library_config(photo_png, small_pickle):
    calls = []
    w = PhotoWidget(CameraWidget())
    w.open(photo_png)
    w.default_steps, w.num_steps, w.tune_steps, w.seed = False, 40, 10, 2
    w.invert(RenderArgs(pkl=small_pickle, device='cpu'), None,
             invert_fn=lambda *a, **k: fake_invert(*a, calls=calls, **k))
    assert w.job.wait(30) and w.poll()
    assert calls[0]['config'] == InversionConfig(num_steps=40, tune_steps=10, seed=2)


@pytest.mark.parametrize('force_fp32', [False, True])
def test_widget_inversion_follows_the_force_fp32_toggle(photo_png, small_pickle, force_fp32):
    """The job's config takes fp32 from the Performance section's "Force fp32" (RenderArgs.force_fp32):
    off, the inversion runs the network's fp16 layers as the visualizer renders them."""
    calls = []
    w = PhotoWidget(CameraWidget())
    w.open(photo_png)
    w.seed = 4
    w.invert(RenderArgs(pkl=small_pickle, device='cpu', force_fp32=force_fp32), None,
             invert_fn=lambda *a, **k: fake_invert(*a, calls=calls, **k))
    assert w.job.wait(30) and w.poll()
    assert calls[0]['config'] == InversionConfig(seed=4, fp32=force_fp32)
    assert calls[0]['config'].fp32 is force_fp32


def test_widget_current_camera_option_passes_the_slider_camera(photo_png, small_pickle):
    calls = []
    w = PhotoWidget(CameraWidget())
    w.open(photo_png)
    w.use_current_camera = True
    info = types.SimpleNamespace(camera=True, c_dim=25, camera_stats=None)
    args = RenderArgs(pkl=small_pickle, device='cpu', yaw_deg=-12.0, pitch_deg=3.0, fov_deg=15.0, radius=2.7,
                      lookat=(0.0, 0.0, 0.2))
    w.invert(args, info, invert_fn=lambda *a, **k: fake_invert(*a, calls=calls, **k))
    assert w.job.wait(30) and w.poll()
    expected = _label(yaw_deg=-12.0, pitch_deg=3.0, fov_deg=15.0)
    assert torch.allclose(calls[0]['camera'], expected) and calls[0]['config'] == InversionConfig()
    assert w.camera.yaw == pytest.approx(-12.0, abs=1e-3)


def test_widget_open_refuses_missing_and_non_image_files(tmp_path):
    w = PhotoWidget(CameraWidget())
    assert not w.open(str(tmp_path / 'none.png')) and 'photo not found' in w.error
    assert not w.open(str(tmp_path / 'net.pkl')) and 'expected a .png or .jpg' in w.error
    fake = tmp_path / 'fake.jpg'
    fake.write_bytes(b'not a jpeg')
    assert not w.open(str(fake)) and 'not a readable image' in w.error
    assert w.photo_path is None and w.recent == []
    assert is_photo_file('A.JPG') and not is_photo_file('a.pkl')


def test_widget_failed_inversion_shows_error_text(small_generator, photo_png, small_pickle):
    def broken(*a, **k):
        raise ValueError('network without a generator: expected G_ema')
    w = PhotoWidget(CameraWidget())
    w.open(photo_png)
    w.invert(RenderArgs(pkl=small_pickle), None, invert_fn=broken)
    assert w.job.wait(30) and not w.poll()
    assert w.error == 'invert failed: network without a generator: expected G_ema' and w.source is None


def test_widget_save_then_load_round_trip(small_generator, photo_png, small_pickle, tmp_path):
    w = PhotoWidget(CameraWidget(), capture_dir=str(tmp_path))
    w.open(photo_png)
    args = RenderArgs(pkl=small_pickle, device='cpu')
    w.invert(args, None, invert_fn=fake_invert)
    w.job.wait(30)
    w.poll()
    w.save_inversion('')
    assert w.job.wait(30) and not w.poll()
    path = str(tmp_path / 'inversion-0000.pt')
    assert w.message == f'saved {path}' and os.path.isfile(path)

    def load(p, G=None, device=None):
        d = torch.load(p)
        return FakeResult(G, d['ws'], d['camera'])
    first = w.source
    w.camera.set_angles(0, 0)
    w.load_inversion(path, args, load_fn=load, load_network_fn=_fake_load_network(small_generator))
    assert w.job.wait(30) and w.poll()
    assert w.source is not first and torch.equal(w.source.ws, first.ws)
    assert w.camera.yaw == pytest.approx(14.0, abs=1e-3) and w.source.target is None
    assert w.reconstruction.shape == (32, 32, 3)                      # rendered on the load job
    with pytest.raises(FileNotFoundError, match='inversion file not found'):
        w.load_inversion(str(tmp_path / 'missing.pt'), args)


# -- the window --------------------------------------------------------------------------------------

from test_gui_window import xvfb  # noqa: E402,F401  (the module-scoped virtual display)


@pytest.mark.gui
@pytest.mark.slow
def test_gui_inverts_dropped_photo_and_view_turns_with_camera(xvfb, small_pickle, photo_png, tmp_path):
    """Drop a photo, press Invert (raycond.inversion, few steps), then turn the inverted face."""
    from viz.app import Visualizer
    app = Visualizer([small_pickle], capture_dir=str(tmp_path), device='cpu', fps_limit=0)
    try:
        app.perf.smooth = False
        seed_image = app.wait_for_render(timeout=60).image.copy()
        app.on_drop(None, [photo_png.encode()])                     # a photo drop opens it, not as a network
        app.run_frames(2)
        assert app.photo.photo_path == photo_png and app.network.current == small_pickle
        app.photo.default_steps, app.photo.num_steps, app.photo.tune_steps = False, 4, 2
        for _ in range(20):                                           # scroll the side panel down to the button
            x, y, w, h = app.photo.invert_button_rect
            if y + h < app.window_size[1] - 10:
                break
            app.on_mouse_pos(None, 100, 400)
            app.on_scroll(None, 0, -3)
            app.run_frames(2)
        x, y, w, h = app.photo.invert_button_rect                     # press Invert with the mouse
        app.on_mouse_pos(None, x + w / 2, y + h / 2)
        app.run_frames(1)
        app.on_mouse_button(None, 0, 1)
        app.run_frames(1)
        app.on_mouse_button(None, 0, 0)
        app.run_frames(1)
        job = app.photo.job
        assert job is not None, (app.photo.error, app.photo.invert_button_rect)
        frames = app.frame_count
        while not job.wait(0.05):
            app.run_frames(1)                                         # the window keeps drawing meanwhile
        assert job.state == 'done', job.error
        assert app.frame_count > frames and job.preview is not None
        app.run_frames(1)
        assert app.photo.source is not None, app.photo.error
        meta = job.result.meta
        assert (app.camera.yaw, app.camera.pitch) == pytest.approx((meta['yaw_deg'], meta['pitch_deg']), abs=1e-3)
        shown = app.wait_for_render(timeout=60)
        assert shown.args.photo is app.photo.source
        expected = gen.to_uint8(job.result.render())[0].numpy()       # the library's own render at its camera
        assert np.abs(shown.image.astype(int) - expected).max() <= 1
        assert np.abs(shown.image.astype(int) - seed_image).mean() > 1.0
        before = app.image_pixels_on_screen().astype(int)
        app.camera.set_angles(app.camera.yaw - 30, app.camera.pitch)     # as the yaw slider would
        turned = app.wait_for_render(timeout=60)
        assert turned.args.photo is app.photo.source
        assert turned.args.yaw_deg == pytest.approx(meta['yaw_deg'] - 30, abs=1e-3)
        after = app.image_pixels_on_screen().astype(int)
        assert after.shape == before.shape and np.abs(after - before).mean() > 1.0
        path = str(tmp_path / 'face-inversion.pt')                       # Save, then Load: the same face
        app.photo.save_inversion(path)
        assert app.photo.job.wait(60)
        app.run_frames(1)
        assert app.photo.message == f'saved {path}', app.photo.error
        first = app.photo.source
        app.photo.load_inversion(path, app.current_args)
        assert app.photo.job.wait(60)
        app.run_frames(1)
        assert app.photo.source is not first, app.photo.error
        loaded = app.wait_for_render(timeout=60)                         # sliders back at the estimate
        assert loaded.args.photo is app.photo.source and np.abs(loaded.image.astype(int) - shown.image).max() <= 1
        app.photo.show_seeds()                                           # one click back to seeds
        assert app.wait_for_render(timeout=60).args.photo is None
    finally:
        app.close()
