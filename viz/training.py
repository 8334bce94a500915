"""Training widget: start `train.py` as a subprocess from a panel, stream its log, show the newest
fakes*.png of its run directory, load new snapshots as they appear, and stop it cleanly (SIGINT,
then terminate). `TrainingProcess` holds the process logic and works without a window.
"""

from __future__ import annotations

import collections
import glob
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import torch
from PIL import Image
import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

from gui_utils import imgui_utils
from raycond import families
from raycond import rundir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFGS = families.train_configs()  # every --cfg of train.py


def format_kimg(kimg):
    """--kimg value as train.py reads it: fractions kept, no float noise ('0.5', '100', '12.25')."""
    kimg = float(kimg)
    if not kimg > 0:
        raise ValueError(f'training: kimg must be more than 0, got {kimg:g}')
    return f'{kimg:.6f}'.rstrip('0').rstrip('.')


# The bundled checkpoint's network and batch (docs/training-recipes.md): trains at 20-60 s/kimg on a
# 2-core CPU, where StyleGAN's full-width default crawls. The panel starts with it without CUDA.
CPU_PRESET = dict(cbase=2048, cmax=64, map_depth=2, batch=32, kimg=10.0)
GPU_DEFAULTS = dict(cbase=32768, cmax=512, map_depth=None, batch=16, kimg=100.0)


def build_train_command(data, outdir, cfg='raycond2', kimg=100, batch=16, gpus=1, gamma=1.0, snap=10, mirror=False,
                        extra='', python=None, script=None, cbase=None, cmax=None, map_depth=None):
    """The train.py command line (list of strings) for the panel's options (None: train.py's default)."""
    if not data:
        raise ValueError('training: choose a dataset (--data: a ZIP or folder of images)')
    if not outdir:
        raise ValueError('training: choose an output directory (--outdir)')
    if cfg not in CFGS:
        raise ValueError(f'training: --cfg must be one of {", ".join(CFGS)}, got {cfg!r}')
    cmd = [python or sys.executable, script or os.path.join(REPO_ROOT, 'train.py'),
           f'--outdir={outdir}', f'--data={data}', f'--cfg={cfg}', f'--gpus={int(gpus)}', f'--batch={int(batch)}',
           f'--gamma={float(gamma):g}', f'--kimg={format_kimg(kimg)}', f'--snap={int(snap)}', f'--mirror={int(bool(mirror))}']
    for name, value in (('cbase', cbase), ('cmax', cmax), ('map-depth', map_depth)):
        if value is not None:
            if int(value) < 1:
                raise ValueError(f'training: --{name} must be at least 1, got {value}')
            cmd.append(f'--{name}={int(value)}')
    cmd += shlex.split(extra or '')
    return cmd


class TrainingProcess:
    """One training subprocess: log lines, run directory, newest fakes image and snapshot."""

    def __init__(self, cmd, outdir, cwd=None, env=None, max_lines=2000):
        self.cmd = list(cmd)
        self.outdir = outdir
        self.lines = collections.deque(maxlen=max_lines)
        self.start_time = time.time()
        self.stopped_by_user = False
        kwargs = {}
        if os.name == 'posix':
            kwargs['start_new_session'] = True       # SIGINT goes to the trainer only, not to the GUI
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED='1')   # stream the log line by line
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     cwd=cwd or REPO_ROOT, env=env, errors='replace', **kwargs)
        self._reader = threading.Thread(target=self._read, name='viz-train-log', daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))
        self.proc.stdout.close()

    @property
    def running(self):
        return self.proc.poll() is None

    @property
    def returncode(self):
        return self.proc.poll()

    def run_dir(self):
        """The newest run directory in outdir created since the process started (or None)."""
        if not self.outdir or not os.path.isdir(self.outdir):
            return None
        cands = []
        for d in os.listdir(self.outdir):
            p = os.path.join(self.outdir, d)
            if os.path.isdir(p) and os.path.getmtime(p) >= self.start_time - 2:
                cands.append((os.path.getmtime(p), p))
        return max(cands)[1] if cands else None

    def _newest(self, pattern):
        rd = self.run_dir()
        if rd is None:
            return None
        files = glob.glob(os.path.join(rd, pattern))
        return max(files, key=lambda f: (os.path.getmtime(f), f)) if files else None

    def newest_fakes(self):
        return self._newest('fakes*.png')

    def newest_snapshot(self):
        rd = self.run_dir()
        return rundir.newest_snapshot(rd) if rd is not None else None

    def stop(self, timeout=15.0):
        """Ask the trainer to stop (SIGINT, like Ctrl-C), then terminate/kill if it does not exit."""
        if not self.running:
            return self.returncode
        self.stopped_by_user = True
        try:
            if os.name == 'posix':
                os.killpg(self.proc.pid, signal.SIGINT)
            else:  # pragma: no cover
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                return self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        except ProcessLookupError:
            return self.proc.wait()


class TrainingWidget:
    """Panel state for launching and following a training run."""

    def __init__(self, outdir='training-runs', cuda=None):
        self.data = ''
        self.outdir = outdir
        self.cfg = 'raycond2'
        self.cbase = self.cmax = self.map_depth = None
        self.kimg, self.batch = 100.0, 16
        self.apply_preset(GPU_DEFAULTS if (torch.cuda.is_available() if cuda is None else cuda) else CPU_PRESET)
        self.gpus = 1
        self.gamma = 1.0
        self.snap = 10
        self.mirror = False
        self.extra = '--metrics=none'  # metrics cost hours on a CPU; the user may add them
        self.auto_load = True
        self.process = None
        self.error = None
        self._fakes_path = None
        self._fakes_mtime = None
        self.fakes_image = None
        self._loaded_snapshot = None
        self._last_poll = 0.0

    def apply_preset(self, preset):
        """Network width, batch and length of CPU_PRESET or GPU_DEFAULTS."""
        self.cbase, self.cmax, self.map_depth = preset['cbase'], preset['cmax'], preset['map_depth']
        self.batch, self.kimg = preset['batch'], preset['kimg']

    def start(self):
        if self.process is not None and self.process.running:
            raise ValueError('training is already running')
        cmd = build_train_command(self.data, self.outdir, self.cfg, self.kimg, self.batch, self.gpus, self.gamma,
                                  self.snap, self.mirror, self.extra, cbase=self.cbase, cmax=self.cmax,
                                  map_depth=self.map_depth)
        os.makedirs(self.outdir, exist_ok=True)
        self.process = TrainingProcess(cmd, self.outdir)
        self._loaded_snapshot = None
        self.error = None
        return self.process

    def stop(self):
        if self.process is not None:
            return self.process.stop()
        return None

    def poll(self, now=None, interval=1.0):
        """Refresh the fakes image; returns a new snapshot path to load (when auto-load is on) or None."""
        now = time.monotonic() if now is None else now
        if self.process is None or now - self._last_poll < interval:
            return None
        self._last_poll = now
        fakes = self.process.newest_fakes()
        if fakes:
            try:
                mtime = os.path.getmtime(fakes)
                if (fakes, mtime) != (self._fakes_path, self._fakes_mtime):
                    with Image.open(fakes) as im:
                        self.fakes_image = np.asarray(im.convert('RGB'))
                    self._fakes_path, self._fakes_mtime = fakes, mtime
            except (OSError, ValueError):
                pass  # being written; try again next poll
        snap = self.process.newest_snapshot()
        if self.auto_load and snap and snap != self._loaded_snapshot:
            self._loaded_snapshot = snap
            return snap
        return None

    def draw(self, viz):
        running = self.process is not None and self.process.running
        w = imgui.get_content_region_avail().x
        lw = imgui.calc_text_size('Outdir ').x + 12
        with imgui_utils.grayed_out(running), imgui_utils.item_width(w - lw):
            _, self.data = imgui.input_text_with_hint('Data', 'dataset ZIP or folder', self.data)
            _, self.outdir = imgui.input_text('Outdir', self.outdir)
            if imgui.begin_combo('Config', self.cfg):
                for c in CFGS:
                    if imgui.selectable(c, c == self.cfg)[0]:
                        self.cfg = c
                imgui.end_combo()
        with imgui_utils.grayed_out(running), imgui_utils.item_width(w * 0.25):
            _, self.kimg = imgui.input_float('kimg', float(self.kimg), 0, 0, '%g')
            imgui.same_line()
            _, self.batch = imgui.input_int('batch', self.batch, 0)
            _, self.gamma = imgui.input_float('gamma', self.gamma, 0, 0, '%g')
            imgui.same_line()
            _, self.snap = imgui.input_int('snap', self.snap, 0)
            _, self.cbase = imgui.input_int('cbase', int(self.cbase), 0)
            imgui.same_line()
            _, self.cmax = imgui.input_int('cmax', int(self.cmax), 0)
            _, self.gpus = imgui.input_int('gpus', self.gpus, 0)
            imgui.same_line()
            _, self.mirror = imgui.checkbox('mirror', self.mirror)
            if imgui.button('CPU preset'):
                self.apply_preset(CPU_PRESET)
            imgui_utils.tooltip('The bundled checkpoint\'s network (cbase 2048, cmax 64, mapping depth 2), batch 32, 10 kimg')
            imgui.same_line()
            if imgui.button('Full size'):
                self.apply_preset(GPU_DEFAULTS)
            imgui_utils.tooltip("StyleGAN's full-width network (cbase 32768, cmax 512), batch 16, 100 kimg: for a GPU")
        with imgui_utils.grayed_out(running), imgui_utils.item_width(w - lw):
            _, self.extra = imgui.input_text_with_hint('Extra', 'more train.py options', self.extra)
        if not running:
            if imgui.button('Start training'):
                try:
                    self.start()
                except Exception as e:  # noqa: BLE001
                    self.error = str(e)
        else:
            if imgui.button('Stop'):
                threading.Thread(target=self.stop, daemon=True).start()
        imgui.same_line()
        _, self.auto_load = imgui.checkbox('Load new snapshots', self.auto_load)
        if self.error:
            imgui_utils.colored_text(imgui_utils.ERROR_COLOR, self.error)
        if self.process is not None:
            rc = self.process.returncode
            status = 'running' if rc is None else 'stopped' if self.process.stopped_by_user else \
                'finished' if rc == 0 else f'failed (exit code {rc})'
            imgui_utils.dim_text(f'train.py {status}; run dir: {self.process.run_dir() or "(not yet created)"}')
            if imgui.begin_child('##log', imgui.ImVec2(0, 140 * viz.ui_scale), imgui.ChildFlags_.borders):
                imgui.push_text_wrap_pos(0.0)            # long lines wrap instead of running off the panel
                for line in list(self.process.lines)[-300:]:
                    imgui.text_unformatted(line)
                imgui.pop_text_wrap_pos()
                if imgui.get_scroll_y() >= imgui.get_scroll_max_y() - 4:
                    imgui.set_scroll_here_y(1.0)
            imgui.end_child()
        if self.fakes_image is not None and viz.fakes_texture is not None:
            tex = viz.fakes_texture
            size = imgui.get_content_region_avail().x
            imgui.image(imgui.ImTextureRef(tex.gl_id), imgui.ImVec2(size, size * tex.height / max(tex.width, 1)))
            imgui_utils.dim_text(os.path.basename(self._fakes_path or ''))
