"""Network widget: pick a snapshot (path, URL, run directory, recent list, --browse-dir, drag-and-drop)
and show what it is (resolution, c_dim, parameters, camera conditioning, camera defaults).

The state logic (`load`, `update_args`, `browse_entries`, `poll_run_dir`) works without a window.
"""

from __future__ import annotations

import os
import time

import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

from gui_utils import imgui_utils
from raycond import loading
from viz.trust_dialog import TrustDialog

NETWORK_SUFFIXES = ('.pkl', '.pt', '.pth', '.safetensors')


class NetworkWidget:
    """Holds the chosen network path; the renderer loads it (on its thread) from `update_args`."""

    def __init__(self, browse_dir=None, key='G_ema'):
        self.path_input = ''
        self.current = None          # resolved file/URL handed to the renderer
        self.source = None           # what the user gave (a run directory is watched for new snapshots)
        self.recent = []
        self.browse_dir = browse_dir
        self.key = key
        self.error = None            # errors found before rendering (e.g. a run dir without snapshots)
        self._last_poll = 0.0
        self.trust = TrustDialog()   # asks before running code from a file; remembers the answer
        self._browse_cache = (0.0, [])

    # -- state ---------------------------------------------------------------------------------
    def load(self, path):
        """Select a network; returns True when the selection changed. Errors go to `self.error`."""
        path = (path or '').strip()
        self.path_input = path
        self.error = None
        if not path:
            changed = self.current is not None
            self.current = self.source = None
            return changed
        try:
            resolved = loading.resolve_network_path(path)
        except (loading.NetworkLoadError, OSError) as e:
            self.error = str(e)
            changed = self.current is not None
            self.current = None
            self.source = path
            return changed
        changed = resolved != self.current
        self.current = resolved
        self.source = path
        if path in self.recent:
            self.recent.remove(path)
        self.recent.insert(0, path)
        del self.recent[10:]
        return changed

    def poll_run_dir(self, now=None, interval=2.0):
        """If a run directory is selected, switch to its newest snapshot. Returns True on a switch."""
        now = time.monotonic() if now is None else now
        if not self.source or now - self._last_poll < interval:
            return False
        self._last_poll = now
        if not os.path.isdir(os.path.expanduser(self.source)):
            return False
        try:
            newest = loading.resolve_network_path(self.source)
        except (loading.NetworkLoadError, OSError):
            return False
        if newest != self.current:
            self.current = newest
            self.error = None
            return True
        return False

    def on_result(self, res):
        """A render result arrived: a file that could not be loaded leaves the Recent list (one that
        waits for the user's trust stays, the trust dialog asks about it)."""
        args = res.args
        if args is None or args.pkl is None or args.pkl != self.current or res.info is not None:
            return
        if res.error and not res.untrusted and self.source in self.recent:
            self.recent.remove(self.source)

    def update_args(self, d):
        d['pkl'] = self.current
        d['key'] = self.key
        d['trust_pickle'] = self.trust.trust_for(self.current)   # a digest: only the content the user trusted

    def browse_entries(self, max_depth=2):
        """Network files and run directories under --browse-dir, newest first (cached for 2 s)."""
        if not self.browse_dir or not os.path.isdir(self.browse_dir):
            return []
        t, cached = self._browse_cache
        if time.monotonic() - t < 2.0:
            return cached
        found = []
        base = os.path.abspath(self.browse_dir)
        for root, dirs, files in os.walk(base):
            depth = root[len(base):].count(os.sep)
            if depth >= max_depth:
                dirs[:] = []
            dirs[:] = [d for d in dirs if not d.startswith('.')]
            for f in files:
                if f.endswith(NETWORK_SUFFIXES):
                    p = os.path.join(root, f)
                    try:
                        found.append((os.path.getmtime(p), p))
                    except OSError:
                        pass
        entries = [p for _, p in sorted(found, reverse=True)]
        self._browse_cache = (time.monotonic(), entries)
        return entries

    # -- drawing -------------------------------------------------------------------------------
    def draw(self, viz):
        """Panel section (called inside the side panel)."""
        changed = False
        avail = imgui.get_content_region_avail().x
        submitted, self.path_input = imgui_utils.input_with_button('##pkl', 'path, URL or run directory',
                                                                   self.path_input, 'Load')
        if submitted:
            changed |= self.load(self.path_input)
        imgui_utils.tooltip('A .pkl snapshot, a URL, or a training run directory (its newest snapshot).\n'
                            'You can also drop a file onto the window.')
        if self.recent:
            imgui.set_next_item_width(avail * 0.5 - 4)
            if imgui.begin_combo('##recent', 'Recent', imgui.ComboFlags_.height_large):
                for p in self.recent:
                    if imgui.selectable(imgui_utils.path_label(p), p == self.source)[0]:
                        changed |= self.load(p)
                    imgui_utils.tooltip(p)
                imgui.end_combo()
            if self.browse_dir:
                imgui.same_line()
        if self.browse_dir:
            imgui.set_next_item_width(avail * 0.5 - 4)
            if imgui.begin_combo('##browse', 'Browse', imgui.ComboFlags_.height_large):
                entries = self.browse_entries()
                if not entries:
                    imgui.text_disabled(f'no network files under {self.browse_dir}')
                for p in entries:
                    if imgui.selectable(os.path.relpath(p, self.browse_dir), p == self.current)[0]:
                        changed |= self.load(p)
                imgui.end_combo()
        if self.error:
            imgui_utils.colored_text(imgui_utils.ERROR_COLOR, self.error)
        changed |= self.trust.draw(getattr(viz, 'result', None), self.current)
        info = viz.info
        if self.current is None and not self.error:
            imgui_utils.dim_text('No network loaded. Drop a .pkl here or type a path.')
        elif info is not None:
            lw = imgui.calc_text_size('Conditioning ').x + 8
            imgui_utils.label_value('File', os.path.basename(self.current or ''), lw)
            imgui_utils.tooltip(self.current or '')
            imgui_utils.label_value('Kind', info.kind, lw)
            imgui_utils.label_value('Output', f'{info.img_resolution}x{info.img_resolution}x{info.img_channels}', lw)
            imgui_utils.label_value('Params', f'{info.num_params / 1e6:.2f} M   c_dim {info.c_dim}   ws {info.num_ws}', lw)
            cond = 'camera (ray-conditioned)' if info.camera and info.synthesis_takes_c else \
                'camera (mapping only)' if info.camera else 'none (camera disabled)'
            imgui_utils.label_value('Conditioning', cond, lw)
            src = 'snapshot camera_stats' if info.camera_stats else 'FFHQ preset (no camera_stats)'
            imgui_utils.label_value('Camera from', src, lw)
        return changed
