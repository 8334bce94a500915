"""Soak driver for the visualizer: thousands of random events against the real window.

Why: the visualizer is clicked, dragged and fed odd files for hours. Unit tests check one path at
a time; this drives `viz.app.Visualizer` (a real GLFW/OpenGL window, under Xvfb in the tests) with
a seeded random mix of everything a user does, and checks after every frame what must always hold:

* no exception escapes a frame, and the render thread stays alive;
* every error a render returns is expected (a bad file, the injected fault) and is one line;
* every bad network file shows one message in the window (the error banner), and a hostile pickle
  is refused (its trust question answered "No") without its side effect ever happening;
* a result never shows a network other than the current one (switching mid-render);
* resident memory after the soak stays near what it was after a warm-up (the caller compares).

Most events go through the same entry points as GLFW's callbacks (`on_mouse_pos`, `on_scroll`, ...)
or set widget state the way a slider does, several per frame, so that 10,000 events take about a
minute. A few are real X events typed by `xdotool`. The tiny networks, bad files and hostile
pickles are written by `make_files`.

Run by hand (starts its own Xvfb when DISPLAY is unset):
    python tests/viz_soak.py --events 10000 --seed 0
"""

from __future__ import annotations

import collections
import contextlib
import gc
import math
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import time

import numpy as np

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

BAD_SEED = 13                 # the faulty network raises for this seed ...
FAULT = {'armed': True}       # ... while this module-level flag says so


def fault_hook(_module, inputs):
    """Forward pre-hook on the faulty network's mapping: raise inside the network for BAD_SEED."""
    import torch
    if not FAULT['armed']:
        return None
    z = inputs[0]
    bad = torch.from_numpy(np.random.RandomState(BAD_SEED).randn(z.shape[1])).to(z.dtype)
    if any(torch.equal(row.cpu(), bad) for row in z):
        raise RuntimeError(f'injected fault: this test network fails for seed {BAD_SEED}')
    return None


class _Reduce:
    """Pickles as the call `func(*args)`: what a hostile file does when loaded the trusting way."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _tiny_generator(res, seed):
    import torch

    import dnnlib
    from conftest import small_raycond_kwargs
    torch.manual_seed(seed)
    return dnnlib.util.construct_class_by_name(**small_raycond_kwargs(res=res)).eval().requires_grad_(False)


CAMERA_STATS = {"yaw_range_deg": [-30.0, 30.0], "pitch_range_deg": [-10.0, 10.0], "radius": 2.7,
                "lookat": [0.0, 0.0, 0.2], "focal": 4.2647, "fov_deg": 13.37, "yaw_mean_deg": 0.0,
                "pitch_mean_deg": 0.0, "num_labels": 10}


def make_files(folder) -> dict:
    """Write the soak's inputs under `folder`; returns {name: path}. `markers` are files that the
    hostile pickles create when they run (they must never appear)."""
    from PIL import Image

    from torch_utils import persistence
    os.makedirs(folder, exist_ok=True)
    p = {k: os.path.join(folder, v) for k, v in dict(
        net32='net32.pkl', net64='net64.pkl', faulty='faulty.pkl', truncated='truncated.pkl',
        text_pkl='notes.pkl', text='notes.txt', empty_dir='empty-run', junk_dir='junk-run',
        missing='missing.pkl', hostile_system='hostile-system.pkl', hostile_eval='hostile-eval.pkl',
        hostile_source='hostile-source.pkl', photo='photo.png', bad_photo='not-a-photo.png').items()}
    markers = [os.path.join(folder, f'pwned-{k}') for k in ('system', 'eval', 'source')]
    for key, res, seed in (('net32', 32, 0), ('net64', 64, 1)):
        with open(p[key], 'wb') as f:
            pickle.dump({'G_ema': _tiny_generator(res, seed), 'camera_stats': CAMERA_STATS}, f)
    G = _tiny_generator(32, 2)
    G.mapping.register_forward_pre_hook(fault_hook)
    with open(p['faulty'], 'wb') as f:
        pickle.dump({'G_ema': G, 'camera_stats': CAMERA_STATS}, f)
    with open(p['net32'], 'rb') as f:
        data = f.read()
    with open(p['truncated'], 'wb') as f:
        f.write(data[:len(data) // 2])
    for key in ('text_pkl', 'text'):
        with open(p[key], 'w') as f:
            f.write('These are my notes, not a network.\n' * 20)
    os.makedirs(p['empty_dir'], exist_ok=True)
    os.makedirs(p['junk_dir'], exist_ok=True)
    with open(os.path.join(p['junk_dir'], 'log.txt'), 'w') as f:
        f.write('tick 0\n')
    with open(p['hostile_system'], 'wb') as f:
        pickle.dump({'G_ema': _Reduce(os.system, f'touch {markers[0]}')}, f)
    with open(p['hostile_eval'], 'wb') as f:
        pickle.dump({'G_ema': _Reduce(eval, f'open({markers[1]!r}, "w").write("x")')}, f)
    src = f"open({markers[2]!r}, 'w').write('x')\nclass Generator:\n    def __init__(self, res): pass\n"
    meta = dict(type='class', version=6, module_src=src, class_name='Generator', state={})
    with open(p['hostile_source'], 'wb') as f:
        pickle.dump({'G_ema': _Reduce(persistence._reconstruct_persistent_obj, meta)}, f)
    rnd = np.random.RandomState(0)
    Image.fromarray((rnd.rand(48, 48, 3) * 255).astype(np.uint8)).save(p['photo'])
    with open(p['bad_photo'], 'w') as f:
        f.write('not an image\n')
    p['markers'] = markers
    return p


BAD_FILES = ('truncated', 'text_pkl', 'text', 'empty_dir', 'junk_dir', 'missing')
HOSTILE = ('hostile_system', 'hostile_eval', 'hostile_source')
GOOD = ('net32', 'net64')


def malloc_trim():
    """Hand the C allocator's free pages back to the system (glibc only; elsewhere a no-op), to tell
    memory still in use from memory merely kept by the allocator."""
    import ctypes
    import ctypes.util
    try:
        ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mb() -> float:
    """Resident memory of this process in MB (from /proc; 0 where it is unavailable)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


class SoakFailure(AssertionError):
    """An invariant of the soak did not hold."""


class Soak:
    """Drives one Visualizer with random events. `run(n)` applies n events; `failures` collects
    broken invariants (the caller asserts it is empty), `counts` the events per kind."""

    WEIGHTS = dict(camera_slider=14, seed_step=10, truncation=7, style_mixing=6, layer=6, noise=3,
                   drag_image=10, scroll=6, panel_click=14, keys=2, resize=2, load_good=3,
                   switch_mid_render=2, bad_file=3, hostile=0.8, fault=0.8, photo_view=1.5,
                   photo_invert=0.12, bad_photo=0.3, x_drag=0.6, x_scroll=0.5, x_click=0.5)

    def __init__(self, app, files, *, seed=0, events_per_frame=4, display=None, log=None):
        self.app = app
        self.files = files
        self.rng = random.Random(seed)
        self.events_per_frame = max(int(events_per_frame), 1)
        self.display = display
        self.use_xdotool = display is not None and shutil.which('xdotool') is not None
        self.log = log or (lambda *_: None)
        self.counts = collections.Counter()
        self.failures = []
        self.messages = collections.defaultdict(collections.Counter)   # bad-file kind -> messages shown
        self.dialogs = collections.Counter()
        self.photo_messages = collections.Counter()                    # Photo panel refusals seen
        self.rects = {}
        self.frames = 0
        self.results_seen = 0
        self.errors_seen = collections.Counter()
        self._last_stamp = None
        self._probe_sections()
        kinds = list(self.WEIGHTS)
        if not self.use_xdotool:
            kinds = [k for k in kinds if not k.startswith('x_')]
        self._kinds = kinds
        self._weights = [self.WEIGHTS[k] for k in kinds]
        app.perf.yield_to_renderer = False      # step frames as fast as possible

    # -- bookkeeping ------------------------------------------------------------------------------
    def fail(self, msg):
        self.failures.append(f'event {sum(self.counts.values())}: {msg}')
        self.log('FAIL', self.failures[-1])

    def _probe_sections(self):
        """Record where the Camera, Latent and Layers sections are drawn, for random panel clicks.
        (Other sections start trainings, write files or invert photos: they are driven directly.)"""
        from imgui_bundle import imgui
        for name in ('camera', 'latent', 'layers'):
            widget = getattr(self.app, name)
            orig = widget.__dict__.setdefault('_unprobed_draw', widget.draw)    # one probe per widget

            def probed(viz, _orig=orig, _name=name):
                y0 = imgui.get_cursor_screen_pos().y
                out = _orig(viz)
                y1 = imgui.get_cursor_screen_pos().y
                wp, ws = imgui.get_window_pos(), imgui.get_window_size()
                lo, hi = max(y0, wp.y), min(y1, wp.y + ws.y)
                lo, hi = lo + 4, hi - 4            # keep off the neighbours if the layout shifts a little
                self.rects[_name] = (wp.x + 4, lo, wp.x + ws.x - 8, hi) if hi - lo > 4 else None
                return out
            widget.draw = probed

    def expected_error(self, args) -> bool:
        pkl = args.pkl if args is not None else None
        f = self.files
        if pkl in [f[k] for k in BAD_FILES + HOSTILE]:
            return True
        if pkl == f['faulty']:
            if not args.trust_pickle:
                return True                       # refused until the question is answered "Yes"
            seeds = [math.floor(args.seed), math.ceil(args.seed)]
            if args.mix_seed is not None and args.mix_layers:
                seeds.append(args.mix_seed)
            return BAD_SEED in seeds and args.photo is None
        return False

    def frame(self):
        """One frame plus the checks that hold after every frame."""
        app = self.app
        app.run_frames(1)
        self.frames += 1
        self._button_pending = False
        if not app.renderer._thread.is_alive():
            raise SoakFailure('the render thread died')
        trust = app.network.trust
        if trust.pending is not None:
            path, names = trust.pending
            yes = path == self.files['faulty']
            self.dialogs['yes' if yes else 'no'] += 1
            if not names or 'Load anyway?' not in trust.question():
                self.fail(f'trust question without class names: {trust.question()!r}')
            trust.answer(yes)
        res = app.result
        if res is not None and res.stamp != self._last_stamp:
            self._last_stamp = res.stamp
            self.results_seen += 1
            if res.args is not None and app.current_args is not None and res.args.pkl != app.current_args.pkl:
                self.fail(f'result of {res.args.pkl} shown while {app.current_args.pkl} is current')
            if res.error:
                self.errors_seen[os.path.basename(str(res.args.pkl))] += 1
                if '\n' in res.error:
                    self.fail(f'error of more than one line: {res.error!r}')
                if not self.expected_error(res.args):
                    self.fail(f'unexpected render error: {res.error}\n{res.traceback}')
        photo = app.photo
        if photo.error:
            # A job that failed is a bug. Other messages answer clicks that a shifted layout can send
            # to the Photo section (Open with the text file named .png, Load with no file): expected.
            # A job started while the current network is a bad or hostile file fails with that
            # file's one-line load error: expected (the panel reports it, nothing else happens).
            # Loading a saved inversion onto another network than it was made from (the current one
            # changed after Save) is refused by the library in one line: expected too. So is the
            # faulty network's injected fault in a job started on it (a real click on Invert while
            # it is loaded; its domain check renders the network's seeds, the bad one among them).
            unloadable = [self.files[k] for k in BAD_FILES + HOSTILE] + [self.files['faulty']]
            made_from = re.search(r'was made from a different network \((.*)\); pass', photo.error)
            other_network = made_from is not None and made_from.group(1) != str(photo._job_pkl)
            injected = 'injected fault' in photo.error and str(photo._job_pkl) == str(self.files['faulty'])
            if any(photo.error.startswith(f'{kind} failed') for kind in ('invert', 'load', 'save')) and \
                    not any(str(p) in photo.error for p in unloadable) and not other_network and not injected:
                self.fail(f'a Photo panel job failed: {photo.error} (the job was for {photo._job_pkl})')
            self.photo_messages[photo.error.split(':')[0]] += 1
            photo.error = None
        for m in self.files['markers']:
            if os.path.exists(m):
                raise SoakFailure(f'a hostile pickle ran its code: {m} was written')

    def settle(self, timeout=120.0):
        """Step frames until the newest request is rendered and shown (animations stopped first)."""
        app = self.app
        app.camera.orbit = False
        app.latent.animate = False
        deadline = time.monotonic() + timeout
        changed = {}
        while time.monotonic() < deadline:
            before = app.current_args
            self.frame()
            if before is not None and app.current_args != before:
                changed = {f: getattr(app.current_args, f) for f in before.__dataclass_fields__
                           if getattr(before, f) != getattr(app.current_args, f)}
            if (app.result is not None and app.result.stamp == app.renderer.latest_stamp
                    and not app.renderer.busy and app.network.trust.pending is None):
                stamp = app.renderer.latest_stamp
                self.frame()
                if app.renderer.latest_stamp == stamp:
                    return app.result
        raise SoakFailure(f'no render result within {timeout} s: renderer busy {app.renderer.busy}, result '
                          f'{getattr(app.result, "stamp", None)} of {app.renderer.latest_stamp}, trust question '
                          f'{app.network.trust.pending}, last change of the arguments {changed}')

    def quiet(self, frames=4):
        """Let imgui work through queued pointer events (it spreads presses over frames), so that a
        drag or click of an earlier event does not change the state a check is about to set."""
        for _ in range(frames):
            self.frame()

    # -- the run ----------------------------------------------------------------------------------
    def run(self, n, *, kinds=None):
        """Apply `n` random events (or the given list of kinds, in order), several per frame."""
        seq = list(kinds) if kinds is not None else self.rng.choices(self._kinds, self._weights, k=n)
        for i, kind in enumerate(seq):
            getattr(self, 'ev_' + kind)()
            self.counts[kind] += 1
            if (i + 1) % self.events_per_frame == 0:
                self.frame()
        self.frame()

    def finish(self):
        """Stop background work (photo jobs) and settle: the state in which memory is compared."""
        app = self.app
        if app.photo.job is not None:
            app.photo.cancel()
            app.photo.job.wait(120)
        self.settle()
        self.frame()

    # -- helpers ----------------------------------------------------------------------------------
    _button_pending = False

    def _button(self, button, action):
        """Press or release a mouse button, at most one change per frame: imgui spreads the changes
        queued in one frame over the next frames, so faster clicking would pile them up (and replay
        them long after, e.g. while a check waits for a render)."""
        if self._button_pending:
            self.frame()
        self.app.on_mouse_button(None, button, action)
        self._button_pending = True

    def _image_point(self):
        r = self.app.image_rect or self.app.view_rect or (500, 100, 400, 400)
        x, y, w, h = r
        return x + self.rng.uniform(0.05, 0.95) * w, y + self.rng.uniform(0.05, 0.95) * h

    def _load(self, key):
        self.app.network.load(self.files[key])

    # -- events: state changes as the widgets make them --------------------------------------------
    def ev_camera_slider(self):
        c, r = self.app.camera, self.rng
        what = r.choice(('yaw', 'pitch', 'fov', 'radius', 'lookat', 'reset', 'snap', 'widen', 'orbit'))
        if what == 'yaw':
            c.set_angles(r.uniform(*c.yaw_range), c.pitch)
        elif what == 'pitch':
            c.set_angles(c.yaw, r.uniform(*c.pitch_range))
        elif what == 'fov':
            c.fov = r.uniform(2.0, 60.0)
        elif what == 'radius':
            c.radius = r.uniform(0.5, 6.0)
        elif what == 'lookat':
            c.set_lookat_mode(r.choice(('snapshot', 'ffhq', 'afhq', 'cars', 'manual')))
        elif what == 'reset':
            c.reset()
        elif what == 'snap':
            c.snap()
        elif what == 'widen':
            c.widen_ranges()
        else:
            c.orbit = not c.orbit

    def ev_seed_step(self):
        lat, r = self.app.latent, self.rng
        what = r.choice(('+1', '-1', 'frac', 'snap', 'big', 'animate'))
        if what == '+1':
            lat.set_seed(math.floor(lat.seed) + 1)
        elif what == '-1':
            lat.set_seed(lat.seed - 1)
        elif what == 'frac':
            lat.set_seed(lat.seed + r.uniform(-0.7, 0.7))
        elif what == 'snap':
            lat.snap()
        elif what == 'big':
            lat.set_seed(r.randrange(0, 2 ** 31))
        else:
            lat.animate = not lat.animate

    def ev_truncation(self):
        lat = self.app.latent
        if self.rng.random() < 0.6:
            lat.trunc_psi = self.rng.uniform(0.0, 1.5)
        else:
            lat.trunc_cutoff = self.rng.randint(0, max(lat.num_ws, 1))

    def ev_style_mixing(self):
        lat, r = self.app.latent, self.rng
        what = r.choice(('toggle', 'seed', 'layers'))
        if what == 'toggle':
            lat.mix_enabled = not lat.mix_enabled
        elif what == 'seed':
            lat.mix_seed = r.randrange(0, 100)
        elif lat.num_ws:
            lat.set_mix_layers(r.sample(range(lat.num_ws), r.randint(0, lat.num_ws)))

    def ev_layer(self):
        lw, r = self.app.layers, self.rng
        what = r.choice(('select', 'channel', 'rgb', 'show'))
        if what == 'select' and lw.layers:        # as a click on a row of the layer table
            lw.selected, lw.show, lw.channel = r.choice(lw.layers)[0], True, r.randrange(0, 40)
        elif what == 'channel':
            lw.channel = r.randrange(-2, 40)
        elif what == 'rgb':
            lw.rgb = not lw.rgb
        else:
            lw.show = not lw.show

    def ev_noise(self):
        lat = self.app.latent
        lat.noise_mode = self.rng.choice(('const', 'random', 'none'))
        lat.noise_seed = self.rng.randrange(-5, 1000)

    # -- events: pointer, wheel, keys and window, through the GLFW callback entry points ----------
    def ev_drag_image(self):
        app, r = self.app, self.rng
        button = 0 if r.random() < 0.7 else 1
        x, y = self._image_point()
        app.on_mouse_pos(None, x, y)
        self._button(button, 1)
        for _ in range(r.randint(1, 3)):
            if r.random() < 0.3:
                self.frame()
            x, y = x + r.uniform(-80, 80), y + r.uniform(-60, 60)
            app.on_mouse_pos(None, x, y)
        self._button(button, 0)

    def ev_scroll(self):
        self.app.on_mouse_pos(None, *self._image_point())
        self.app.on_scroll(None, 0, self.rng.choice((-3, -1, -0.5, 0.5, 1, 2)))

    def _panel_point(self):
        rects = [v for v in self.rects.values() if v]
        if not rects:
            return None
        x0, y0, x1, y1 = self.rng.choice(rects)
        return self.rng.uniform(x0, x1), self.rng.uniform(y0, y1)

    def ev_panel_click(self):
        """A click (half of them a short horizontal drag: sliders) somewhere in a safe section."""
        app, r = self.app, self.rng
        pt = self._panel_point()
        if pt is None:
            return
        if self._button_pending:
            self.frame()                      # the pointer arrives after the last release
        app.on_mouse_pos(None, *pt)
        self._button(0, 1)
        if r.random() < 0.5:
            if r.random() < 0.3:
                self.frame()
            app.on_mouse_pos(None, pt[0] + r.uniform(-60, 60), pt[1])
        self._button(0, 0)

    def ev_keys(self):
        """Type into whatever input field has the keyboard (digits, '-', '.', Backspace, Enter)."""
        import glfw
        app, r = self.app, self.rng
        for _ in range(r.randint(1, 4)):
            if r.random() < 0.75:
                app.on_char(None, ord(r.choice('0123456789-.')))
            else:
                key = r.choice((glfw.KEY_BACKSPACE, glfw.KEY_ENTER))
                app.on_key(None, key, 0, glfw.PRESS, 0)
                app.on_key(None, key, 0, glfw.RELEASE, 0)

    def ev_resize(self):
        self.app.set_window_size(self.rng.randint(560, 1280), self.rng.randint(420, 800))
        self.frame()

    # -- events: files ----------------------------------------------------------------------------
    def ev_load_good(self):
        key = self.rng.choice(GOOD + ('faulty',))
        if self.rng.random() < 0.5:
            self.app.on_drop(None, [self.files[key].encode()])
        else:
            self._load(key)

    def ev_switch_mid_render(self):
        """Load one resolution, and switch to the other while it renders; the other must show."""
        a, b = self.rng.sample(GOOD, 2)
        self.quiet()
        self._load(a)
        self.frame()
        for _ in range(5):                    # fresh requests until one is still rendering after its frame
            self.app.latent.set_seed(self.app.latent.seed + 1)
            self.frame()
            busy = self.app.renderer.busy
            if busy:
                break
        self._load(b)
        res = self.settle()
        want = 32 if b == 'net32' else 64
        self.counts['switch_while_busy'] += busy
        if res.error or res.image is None or self.app.texture.width != want or res.args.pkl != self.files[b]:
            self.fail(f'after switching to {b} mid-render: error={res.error!r}, shown '
                      f'{getattr(self.app.texture, "width", None)} wide, result of {res.args.pkl}')

    def _check_bad(self, kind, key):
        self.quiet()
        self.settle()
        self.frame()
        app = self.app
        msg = app.status_error
        if not msg:
            self.fail(f'{kind} {self.files[key]} loaded without an error message in the window')
            return
        if '\n' in msg:
            self.fail(f'{kind}: message of more than one line: {msg!r}')
        if app.network.trust.pending is not None:
            self.fail(f'{kind}: a trust question is still open')
        if app.showing_image:
            self.fail(f'{kind}: an image is still shown')
        self.messages[key][msg] += 1

    def ev_bad_file(self):
        key = self.rng.choice(BAD_FILES)
        if self.rng.random() < 0.5 and key != 'missing':
            self.app.on_drop(None, [self.files[key].encode()])
        else:
            self._load(key)
        self._check_bad('bad file', key)

    def ev_hostile(self):
        key = self.rng.choice(HOSTILE)
        self.app.on_drop(None, [self.files[key].encode()])
        self._check_bad('hostile pickle', key)

    def ev_fault(self):
        """The faulty network at its bad seed shows the error; the next valid seed renders."""
        app = self.app
        self.quiet()
        self._load('faulty')
        app.photo.show_seeds()
        app.latent.mix_enabled = False
        app.latent.set_seed(BAD_SEED)
        res = self.settle()
        if not (res.error and 'injected fault' in res.error and app.status_error == 'Error: ' + res.error):
            self.fail(f'the fault inside the network was not shown: {res.error!r} / {app.status_error!r} '
                      f'(seed {res.args.seed}, mix {res.args.mix_seed}, network {res.args.pkl})')
        self.messages['faulty'][app.status_error] += 1
        app.latent.set_seed(BAD_SEED + 1 + self.rng.randrange(0, 50))
        res = self.settle()
        if res.error or res.image is None or not app.showing_image:
            self.fail(f'the next valid request after the fault did not render: {res.error!r}')

    def ev_photo_view(self):
        ph, r = self.app.photo, self.rng
        if ph.source is None:
            return
        what = r.choice(('seeds', 'photo', 'view', 'camera'))
        if what == 'seeds':
            ph.show_seeds()
        elif what == 'photo':
            ph.show_photo = True
        elif what == 'view':
            ph.view = r.choice(('render', 'target', 'difference'))
        else:
            ph.reset_camera()

    def ev_photo_invert(self):
        """Open the photo (a drop) and invert it with very few steps; half of the jobs are cancelled."""
        app, ph = self.app, self.app.photo
        if ph.busy:
            ph.cancel()
            self.counts['photo_cancel'] += 1
            return
        app.on_drop(None, [self.files['photo'].encode()])
        if ph.photo_path != self.files['photo']:
            self.fail(f'dropping a photo did not open it: {ph.error!r}')
            return
        if app.network.current not in (self.files['net32'], self.files['net64']):
            self._load('net32')
            self.settle()
        ph.default_steps, ph.num_steps, ph.tune_steps = False, 2, 1
        ph.invert(app.current_args, app.info)
        if self.rng.random() < 0.5:
            for _ in range(self.rng.randint(1, 6)):
                self.frame()
            ph.cancel()
            self.counts['photo_cancel'] += 1

    def ev_bad_photo(self):
        ph = self.app.photo
        if ph.busy:
            return
        self.app.on_drop(None, [self.files['bad_photo'].encode()])
        if not ph.error or 'not a readable image' not in ph.error:
            self.fail(f'a text file named .png was not refused by the Photo panel: {ph.error!r}')
        self.messages['bad_photo'][ph.error] += 1
        ph.error = None

    # -- events: real X events (xdotool) ----------------------------------------------------------
    def _xdo(self, *args):
        import glfw
        wx, wy = glfw.get_window_pos(self.app.handle)
        out = []
        for a in args:
            if isinstance(a, tuple):           # window coordinates -> screen
                out += [str(int(wx + a[0])), str(int(wy + a[1]))]
            else:
                out.append(str(a))
        if self._button_pending:
            self.frame()
        subprocess.run(['xdotool', *out], check=True, timeout=20, env=dict(os.environ, DISPLAY=self.display))
        self.frame()                          # press and release arrive in one poll: one frame each
        self.frame()

    def ev_x_drag(self):
        x, y = self._image_point()
        dx, dy = self.rng.uniform(-100, 100), self.rng.uniform(-60, 60)
        self._xdo('mousemove', (x, y), 'mousedown', 1, 'mousemove', (x + dx / 2, y + dy / 2),
                  'mousemove', (x + dx, y + dy), 'mouseup', 1)

    def ev_x_scroll(self):
        self._xdo('mousemove', self._image_point(), 'click', self.rng.choice((4, 5)))

    def ev_x_click(self):
        pt = self._panel_point()
        if pt is not None:
            self._xdo('mousemove', pt, 'click', 1)


def soak_report(soak, *, rss_warm, rss_end, seconds, events, frames, renders, cpu_seconds=None,
                gui_cpu_seconds=None, rss_trace=(), rss_trimmed=None) -> str:
    """The figures of one soak as text (what docs/reliability.md records)."""
    lines = [f'events: {events} in {seconds:.1f} s ({events / max(seconds, 1e-9):.0f} events/s), '
             f'{frames} frames, {renders} renders'
             + (f', process CPU {cpu_seconds:.1f} s' if cpu_seconds is not None else '')
             + (f' (GUI thread {gui_cpu_seconds:.1f} s)' if gui_cpu_seconds is not None else ''),
             f'RSS after warm-up {rss_warm:.1f} MB, after soak {rss_end:.1f} MB '
             f'(difference {rss_end - rss_warm:+.1f} MB)',
             ('RSS after malloc_trim(0): after warm-up {:.1f} MB, after soak {:.1f} MB'.format(*rss_trimmed)
              if rss_trimmed else ''),
             'RSS during the soak (events: MB): ' + ', '.join(f'{n}: {m:.0f}' for n, m in rss_trace),
             'events per kind: ' + ', '.join(f'{k} {v}' for k, v in sorted(soak.counts.items())),
             'trust questions answered: ' + ', '.join(f'{k} {v}' for k, v in sorted(soak.dialogs.items())),
             'Photo panel refusals seen: ' + ', '.join(f'{k} {v}' for k, v in sorted(soak.photo_messages.items())),
             'errors returned by renders: ' + ', '.join(f'{k} {v}' for k, v in sorted(soak.errors_seen.items()))]
    for key, msgs in sorted(soak.messages.items()):
        for m, n in msgs.items():
            lines.append(f'  {key} ({n}x): {m}')
    lines.append(f'failures: {len(soak.failures)}')
    lines += ['  ' + f.splitlines()[0] for f in soak.failures[:20]]
    return '\n'.join(lines)


def soak_visualizer(app, files, *, events, warmup=400, seed=0, events_per_frame=4, display=None, log=print):
    """Warm up, measure RSS, soak `events` random events, finish, measure again. Returns
    (soak, figures dict)."""
    soak = Soak(app, files, seed=seed, events_per_frame=events_per_frame, display=display, log=log)
    soak.settle()
    # Warm-up: every kind of event at least once (a full inversion included), then random ones.
    soak.run(0, kinds=[k for k in soak._kinds if k != 'photo_invert'])
    soak.ev_photo_invert()
    if app.photo.job is not None:
        app.photo.job.wait(300)
    soak.run(warmup)
    soak.finish()
    gc.collect()
    rss_warm = rss_mb()
    malloc_trim()
    rss_warm_trimmed = rss_mb()
    warm_counts = collections.Counter(soak.counts)
    frames0, renders0 = soak.frames, app.renderer.num_rendered
    t0, cpu0, gui0 = time.perf_counter(), time.process_time(), time.thread_time()
    trace = []                                   # (events so far, RSS MB): growth or a plateau?
    done = 0
    while done < events:
        chunk = min(1000, events - done)
        soak.run(chunk)
        done += chunk
        trace.append((done, rss_mb()))
    soak.finish()
    seconds, cpu, gui = time.perf_counter() - t0, time.process_time() - cpu0, time.thread_time() - gui0
    gc.collect()
    rss_end = rss_mb()
    malloc_trim()
    rss_end_trimmed = rss_mb()
    soak.counts = soak.counts - warm_counts      # report the soak's own events
    figures = dict(rss_warm=rss_warm, rss_end=rss_end, seconds=seconds, events=events, cpu_seconds=cpu,
                   gui_cpu_seconds=gui, frames=soak.frames - frames0, renders=app.renderer.num_rendered - renders0,
                   rss_trace=trace, rss_trimmed=(rss_warm_trimmed, rss_end_trimmed))
    return soak, figures


@contextlib.contextmanager
def virtual_display():
    """An Xvfb display for this process (DISPLAY and software GL set while inside)."""
    for n in range(90, 300):
        if not os.path.exists(f'/tmp/.X11-unix/X{n}') and not os.path.exists(f'/tmp/.X{n}-lock'):
            break
    proc = subprocess.Popen(['Xvfb', f':{n}', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not os.path.exists(f'/tmp/.X11-unix/X{n}') and time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError('Xvfb failed to start')
        time.sleep(0.05)
    old = {k: os.environ.get(k) for k in ('DISPLAY', 'LIBGL_ALWAYS_SOFTWARE')}
    os.environ.update(DISPLAY=f':{n}', LIBGL_ALWAYS_SOFTWARE='1')
    try:
        yield f':{n}'
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(5)


def _children_cpu() -> float:
    """CPU seconds of this process's live children (the Xvfb it started), from /proc."""
    total = 0.0
    try:
        for task in os.listdir('/proc/self/task'):
            with open(f'/proc/self/task/{task}/children') as f:
                for pid in f.read().split():
                    with open(f'/proc/{pid}/stat') as g:
                        fields = g.read().rsplit(')', 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError):
        pass
    return total


def main(argv=None):
    sys.path.insert(0, ROOT)
    from raycond import runtime     # chooses OpenMP's wait policy before torch loads
    import argparse
    ap = argparse.ArgumentParser(description='Drive the visualizer window with random events and report '
                                             'memory, speed and any broken invariant.')
    ap.add_argument('--events', type=int, default=10000, help='random events after the warm-up (default 10000)')
    ap.add_argument('--warmup', type=int, default=400, help='random events of the warm-up (default 400)')
    ap.add_argument('--seed', type=int, default=0, help='seed of the event sequence (default 0)')
    ap.add_argument('--events-per-frame', type=int, default=4, help='events applied between frames (default 4)')
    ap.add_argument('--threads', type=int, default=None, help=runtime.THREADS_HELP)
    opts = ap.parse_args(argv)
    runtime.start(opts.threads)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        display = os.environ.get('DISPLAY') or stack.enter_context(virtual_display())
        # Typed keys reach the Photo panel's file field too, and a Save click then writes the
        # inversion to the typed relative name ('1-39'): run from a scratch directory, not the checkout.
        os.makedirs(os.path.join(tmp, 'cwd'))
        stack.enter_context(contextlib.chdir(os.path.join(tmp, 'cwd')))
        files = make_files(os.path.join(tmp, 'files'))
        from viz.app import Visualizer
        app = Visualizer([files['net32']], capture_dir=os.path.join(tmp, 'captures'), device='cpu', fps_limit=0)
        try:
            soak, fig = soak_visualizer(app, files, events=opts.events, warmup=opts.warmup, seed=opts.seed,
                                        events_per_frame=opts.events_per_frame, display=display)
        finally:
            app.close()
        print(soak_report(soak, **fig))
        print(f'X server CPU during the whole run: {_children_cpu():.1f} s')
        return 1 if soak.failures or fig['rss_end'] - fig['rss_warm'] > 100 else 0


if __name__ == '__main__':
    sys.exit(main())
