"""The visualizer window under Xvfb with a small network: screenshot, drag to orbit (injected and real X
events), drop a file, bad network paths. Skips when Xvfb is not installed."""

import os
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.gui

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_display():
    for n in range(90, 200):
        if not os.path.exists(f'/tmp/.X11-unix/X{n}') and not os.path.exists(f'/tmp/.X{n}-lock'):
            return n
    raise RuntimeError('no free X display number')


@pytest.fixture(scope='module')
def xvfb():
    if shutil.which('Xvfb') is None:
        pytest.skip('Xvfb not installed (apt-get install xvfb): GUI tests need a virtual display')
    n = _free_display()
    proc = subprocess.Popen(['Xvfb', f':{n}', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not os.path.exists(f'/tmp/.X11-unix/X{n}') and time.time() < deadline:
        if proc.poll() is not None:
            pytest.skip('Xvfb failed to start')
        time.sleep(0.05)
    old = {k: os.environ.get(k) for k in ('DISPLAY', 'LIBGL_ALWAYS_SOFTWARE')}
    os.environ['DISPLAY'] = f':{n}'
    os.environ['LIBGL_ALWAYS_SOFTWARE'] = '1'
    yield f':{n}'
    import glfw
    glfw.terminate()                     # drop the connection before the server goes away
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope='module')
def app(xvfb, small_pickle, tmp_path_factory):
    from viz.app import Visualizer
    viz = Visualizer([small_pickle], capture_dir=str(tmp_path_factory.mktemp('captures')), device='cpu',
                     fps_limit=0)
    viz.perf.smooth = False          # nearest filtering: screen pixels are exact copies of image pixels
    viz.wait_for_render(timeout=60)
    yield viz
    viz.close()


def _resize(img, w, h):
    return np.asarray(Image.fromarray(img).resize((w, h), Image.NEAREST)).astype(np.int16)


def test_screenshot_shows_generated_image(app, small_pickle):
    from viz.renderer import Renderer
    res = app.result
    assert res.error is None and res.image.shape == (32, 32, 3)
    screen = app.image_pixels_on_screen()
    h, w = screen.shape[:2]
    assert w > 300 and abs(w - h) <= 2                     # large and square at 1280x800
    expected = Renderer().render(app.current_args).image
    diff = np.abs(screen.astype(np.int16) - _resize(expected, w, h))
    assert np.median(diff) <= 1 and diff.mean() < 6
    # the image is centred in the view area right of the side panel
    x, y, iw, ih = app.image_rect
    vx, vy, vw, vh = app.view_rect
    assert vx >= app.panel_width - 1 and abs((x - vx) - (vx + vw - x - iw)) < 2


def test_window_screenshot_png_shows_the_image(app):
    """A captured frame saved as PNG holds the whole window with the generated image in place."""
    app.wait_for_render()
    path = os.path.join(app.capture.capture_dir, 'screenshot.png')
    Image.fromarray(app.capture_frame_now()).save(path)
    with Image.open(path) as im:
        assert im.size == tuple(app.framebuffer_size)
        saved = np.asarray(im.convert('RGB')).astype(np.int16)
    sx, sy = app._fb_scale()
    x, y = int(round(app.image_rect[0] * sx)), int(round(app.image_rect[1] * sy))
    on_screen = app.image_pixels_on_screen().astype(np.int16)
    crop = saved[y:y + on_screen.shape[0], x:x + on_screen.shape[1]]
    assert on_screen.std() > 5 and np.abs(crop - on_screen).mean() < 2


def _drag(app, start, end, steps=8):
    """Drag with the left button through the same callbacks GLFW calls. The pointer comes from
    elsewhere and is pressed in the same frame (as when several X events arrive in one poll)."""
    app.on_mouse_pos(None, start[0] - 200, start[1] - 50)
    app.run_frames(2)
    app.on_mouse_pos(None, *start)
    app.on_mouse_button(None, 0, 1)                           # glfw.PRESS == 1
    app.run_frames(2)
    for i in range(1, steps + 1):
        t = i / steps
        app.on_mouse_pos(None, start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
        app.run_frames(1)
    app.on_mouse_button(None, 0, 0)                           # glfw.RELEASE == 0
    app.run_frames(2)


def test_drag_on_image_orbits_camera(app):
    app.camera.reset()
    before = app.wait_for_render().image.copy()
    yaw0, pitch0 = app.camera.yaw, app.camera.pitch
    x, y, w, h = app.image_rect
    _drag(app, (x + w * 0.5, y + h * 0.5), (x + w * 0.5 - 120, y + h * 0.5 + 20))
    assert app.camera.yaw == pytest.approx(yaw0 + 120 * 90.0 / w, abs=0.5)
    assert app.camera.pitch < pitch0
    after = app.wait_for_render()
    assert after.args.yaw_deg == pytest.approx(app.camera.yaw)
    assert np.abs(after.image.astype(int) - before).mean() > 1.0
    screen = app.image_pixels_on_screen()
    sh, sw = screen.shape[:2]
    assert np.abs(screen.astype(np.int16) - _resize(after.image, sw, sh)).mean() < 6


def test_fast_drag_release_in_same_frame_counts(app):
    """Motion and release delivered in one frame (a fast drag) still turn the camera."""
    app.camera.reset()
    app.run_frames(2)
    x, y, w, h = app.image_rect
    app.on_mouse_pos(None, x + w / 2, y + h / 2)
    app.on_mouse_button(None, 0, 1)
    app.run_frames(1)
    app.on_mouse_pos(None, x + w / 2 + 60, y + h / 2)
    app.on_mouse_button(None, 0, 0)
    app.run_frames(3)
    assert app.camera.yaw == pytest.approx(-60 * 90.0 / w, abs=0.5)


def test_real_x_events_drag(app, xvfb):
    """A real X11 drag (xdotool) goes through GLFW's event loop to the camera."""
    if shutil.which('xdotool') is None:
        pytest.skip('xdotool not installed (apt-get install xdotool)')
    import glfw
    app.camera.reset()
    app.wait_for_render()
    yaw0 = app.camera.yaw
    wx, wy = glfw.get_window_pos(app.handle)
    x, y, w, h = app.image_rect
    cx, cy = int(wx + x + w / 2), int(wy + y + h / 2)

    def xdo(*a):
        subprocess.run(['xdotool', *map(str, a)], check=True, env=dict(os.environ, DISPLAY=xvfb), timeout=10)
        app.run_frames(2)

    xdo('mousemove', cx - 150, cy - 40)
    xdo('mousemove', cx, cy, 'mousedown', 1)                  # move and press in one batch of X events
    for i in range(1, 7):
        xdo('mousemove', cx + 20 * i, cy)
    xdo('mouseup', 1)
    assert app.camera.yaw == pytest.approx(yaw0 - 120 * 90.0 / w, abs=1.0)
    res = app.wait_for_render()
    assert res.args.yaw_deg == pytest.approx(app.camera.yaw)
    yaw1 = app.camera.yaw
    xdo('mousemove', cx, cy, 'mousedown', 1, 'mousemove', cx, cy + 60, 'mouseup', 1)   # one quick gesture
    app.run_frames(3)
    assert app.camera.pitch == pytest.approx(-60 * 90.0 / w, abs=1.0) and app.camera.yaw == pytest.approx(yaw1)


def test_drop_file_switches_network(app, tmp_path, tiny_generator):
    G = tiny_generator(res=16, seed=123)
    path = tmp_path / 'dropped.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'G_ema': G}, f)
    app.on_drop(None, [str(path).encode()])
    res = app.wait_for_render()
    assert app.network.current == str(path)
    assert res.error is None and res.info.img_resolution == 16 and app.texture.width == 16
    assert app.info.camera_stats is None and app.camera.lookat_mode == 'ffhq'


def test_dropped_network_is_rendered_once_at_its_snapshot_camera(app, tmp_path, tiny_generator, monkeypatch):
    from raycond import generate as gen
    path = tmp_path / 'wide.pkl'
    with open(path, 'wb') as f:
        pickle.dump({'G_ema': tiny_generator(res=16, seed=7),
                     'camera_stats': dict(fov_deg=20.0, radius=3.1, lookat=[0.0, 0.0, 0.1])}, f)
    frames, real = [], gen.synthesize_frame
    monkeypatch.setattr(gen, 'synthesize_frame', lambda G, ws, c, spec: frames.append(spec) or real(G, ws, c, spec))
    app.on_drop(None, [str(path).encode()])
    assert app.wait_for_render().error is None
    assert [(s.fov_deg, s.radius) for s in frames] == [(20.0, 3.1)]


def test_missing_network_shows_red_banner_instead_of_image(app, tmp_path, small_pickle):
    app.network.load(small_pickle)
    app.wait_for_render()
    app.network.load(str(tmp_path / 'missing.pkl'))
    res = app.wait_for_render()
    assert 'not found' in res.error
    assert not app.showing_image and app.image_rect is None        # the previous network's image is gone
    frame = app.capture_frame_now()
    vx, vy, vw, vh = (int(v) for v in app.view_rect)
    band = frame[vy + 4:vy + 20, vx + 40:vx + vw - 40].reshape(-1, 3).astype(int)
    reddish = (band[:, 0] > band[:, 1] + 30).mean()
    assert reddish > 0.3                                             # the red error banner is drawn


def test_dropped_garbage_file_reports_error_and_frames_keep_running(app, tmp_path):
    garbage = tmp_path / 'garbage.pkl'
    garbage.write_bytes(b'this is not a pickle')
    app.on_drop(None, [str(garbage)])
    res = app.wait_for_render()
    assert 'is a text file, expected a network file' in res.error
    n = app.frame_count
    app.run_frames(5)
    assert app.frame_count == n + 5


def test_good_network_after_an_error_shows_image_again(app, tmp_path, small_pickle):
    app.network.load(str(tmp_path / 'missing.pkl'))
    app.wait_for_render()
    app.network.load(small_pickle)
    res = app.wait_for_render()
    assert res.error is None and app.showing_image


def _no_display_env():
    env = dict(os.environ)
    env.pop('DISPLAY', None)
    return env


def test_headless_capture_cli_writes_the_rendered_frame(small_pickle, tmp_path):
    out = tmp_path / 'frame.png'
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'visualizer.py'), small_pickle, '--headless',
                        '--capture', str(out), '--device', 'cpu', '--yaw', '15'],
                       capture_output=True, text=True, env=_no_display_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    from viz.renderer import RenderArgs, Renderer
    img = np.asarray(Image.open(out))
    assert img.shape == (32, 32, 3)
    exp = Renderer().render(RenderArgs(pkl=small_pickle, device='cpu', yaw_deg=15.0, fov_deg=13.37, radius=2.7,
                                       lookat=(0.0, 0.0, 0.2))).image
    np.testing.assert_array_equal(img, exp)


def test_window_without_display_says_to_use_headless(small_pickle):
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'visualizer.py'), small_pickle],
                       capture_output=True, text=True, env=_no_display_env(), timeout=120)
    assert r.returncode != 0 and 'No display found' in r.stderr and '--headless' in r.stderr
    assert r.stderr.count('\n') <= 2


def test_save_image_and_gui_capture(app):
    res = app.wait_for_render()
    p_img = app.capture.save_image(res)
    np.testing.assert_array_equal(np.asarray(Image.open(p_img)), res.image)
    app.capture.request_gui_capture(app)
    app.run_frames(2)
    gui = sorted(f for f in os.listdir(app.capture.capture_dir) if f.startswith('gui-'))
    assert gui == ['gui-0000.png']
    with Image.open(os.path.join(app.capture.capture_dir, gui[0])) as im:
        assert im.size == tuple(app.framebuffer_size)


def test_gl_texture_quad_and_readback(xvfb):
    """gui_utils alone: uint8 textures (grey, RGB, RGBA) drawn by the quad shader read back exactly."""
    from gui_utils import gl_utils
    from gui_utils.glfw_window import GlfwWindow
    win = GlfwWindow(title='gl test', width=64, height=48, fps_limit=0)
    try:
        import OpenGL.GL as gl
        quad = gl_utils.QuadRenderer()
        grey = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
        rgb = np.zeros((8, 4, 3), np.uint8)
        rgb[:4, :, 0] = 200
        rgb[4:, :, 2] = 90
        rgba = np.full((2, 2, 4), 255, np.uint8)
        textures = [gl_utils.Texture(x, linear=False) for x in (grey, rgb, rgba)]
        win.begin_frame()
        gl.glClearColor(0, 0, 0, 1)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT)
        quad.draw(textures[0], (0, 0, 16, 16), win.framebuffer_size)
        quad.draw(textures[1], (20, 0, 4, 8), win.framebuffer_size)
        quad.draw(textures[2], (30, 30, 2, 2), win.framebuffer_size)
        px = win.capture_frame()
        assert px.shape == (48, 64, 3)
        np.testing.assert_array_equal(px[:16, :16], np.repeat(grey[:, :, None], 3, axis=2))
        np.testing.assert_array_equal(px[:8, 20:24], rgb)
        assert (px[30:32, 30:32] == 255).all() and (px[40:, 40:] == 0).all()
        textures[1].update(rgb[::-1].copy())          # same size: updated in place
        assert textures[1].width == 4 and textures[1].height == 8
        with pytest.raises(ValueError, match='uint8'):
            textures[0].update(np.zeros((4, 4), np.float32))
        win.end_frame()
    finally:
        win.close()


def _draw_and_read(win, texture, size):
    import OpenGL.GL as gl
    from gui_utils import gl_utils
    win.begin_frame()
    gl.glClearColor(0, 0, 0, 1)
    gl.glClear(gl.GL_COLOR_BUFFER_BIT)
    gl_utils.QuadRenderer().draw(texture, (0, 0, size[1], size[0]), win.framebuffer_size)
    px = win.capture_frame()
    win.end_frame()
    return px[:size[0], :size[1]]


def test_texture_shows_colour_after_holding_a_grey_image(xvfb):
    """A texture reallocated from one channel (grey swizzle) to three shows the RGB colours."""
    from gui_utils import gl_utils
    from gui_utils.glfw_window import GlfwWindow
    win = GlfwWindow(title='gl swizzle test', width=32, height=32, fps_limit=0)
    try:
        grey = np.full((8, 8), 77, np.uint8)
        rgb = np.zeros((8, 8, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 40, 90
        tex = gl_utils.Texture(grey, linear=False)
        np.testing.assert_array_equal(_draw_and_read(win, tex, (8, 8)), np.full((8, 8, 3), 77, np.uint8))
        tex.update(rgb)
        np.testing.assert_array_equal(_draw_and_read(win, tex, (8, 8)), rgb)
    finally:
        win.close()


def test_visualizer_process_real_drag_and_quit(xvfb, small_pickle, tmp_path):
    """End to end: `visualizer.py PKL` in its own process, dragged with real X events, then Ctrl+Q."""
    if shutil.which('xdotool') is None:
        pytest.skip('xdotool not installed (apt-get install xdotool)')
    from PIL import ImageGrab
    env = dict(os.environ, DISPLAY=xvfb)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'visualizer.py'), small_pickle, '--device', 'cpu',
                             '--capture-dir', str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def xdo(*a):
            return subprocess.run(['xdotool', *map(str, a)], env=env, capture_output=True, text=True, timeout=60)

        wid = xdo('search', '--sync', '--all', '--pid', proc.pid, '--name', 'raycond visualizer').stdout.split()
        assert wid, 'visualizer window did not appear'

        def grab():
            return np.asarray(ImageGrab.grab(xdisplay=xvfb).convert('RGB')).astype(np.int16)

        def image_area(img):                       # the right-hand view, away from the status text
            return img[100:650, 500:1150]

        # Wait until the generated image is on screen and has settled (two grabs alike): on a busy
        # machine the first frames can still show the window being laid out.
        deadline = time.time() + 60
        before = grab()
        while time.time() < deadline:
            time.sleep(0.5)
            now = grab()
            settled = np.abs(image_area(now) - image_area(before)).mean() < 0.5
            before = now
            if settled and image_area(now).std() >= 5:
                break
        assert image_area(before).std() >= 5, 'no image on screen'
        xdo('mousemove', 830, 400, 'mousedown', 1)
        for i in range(1, 9):
            xdo('mousemove', 830 - 25 * i, 400 + 3 * i)
            time.sleep(0.03)
        xdo('mouseup', 1)
        deadline = time.time() + 30                # the new view arrives from the render thread
        change = 0.0
        while time.time() < deadline and change <= 1.0:
            time.sleep(0.5)
            change = np.abs(image_area(grab()) - image_area(before)).mean()
        assert change > 1.0, 'dragging did not change the image'
        # Ctrl+Q quits. Without a window manager X focus can flicker while a chord is typed (GLFW then
        # releases the held Ctrl), so the chord is retried a few times.
        xdo('mousemove', 830, 400)
        for _ in range(8):
            xdo('windowfocus', wid[0])
            xdo('key', 'ctrl+q')
            try:
                proc.wait(timeout=8)
                break
            except subprocess.TimeoutExpired:
                pass
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_refused_file_asks_in_a_modal_and_loads_after_yes(app, tmp_path, small_pickle):
    import collections
    from viz.trust_dialog import TITLE
    from imgui_bundle import imgui

    class Counted:   # pickles as collections.Counter(...): a global safe loading refuses
        def __reduce__(self):
            return collections.Counter, ([1],)
    path = tmp_path / 'needs-trust.pkl'
    with open(small_pickle, 'rb') as f:
        snap = pickle.load(f)
    path.write_bytes(pickle.dumps(dict(snap, stats=Counted())))
    app.on_drop(None, [str(path).encode()])
    res = app.wait_for_render()
    assert res.untrusted == ('global collections.Counter',)
    app.run_frames(3)
    assert app.network.trust.pending == (str(path), ('global collections.Counter',))
    assert imgui.is_popup_open(TITLE, imgui.PopupFlags_.any_popup_id)
    app.network.trust.answer(True)                                  # what the Yes button does
    app.run_frames(2)
    res = app.wait_for_render()
    assert res.error is None and app.showing_image
    app.network.load(small_pickle)
    app.wait_for_render()
