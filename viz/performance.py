"""Performance widget: GUI and render frame times (ImPlot), FPS cap, vsync, device, force fp32, CPU
threads, and a warning when another program competes for the CPU."""

from __future__ import annotations

import collections

import numpy as np
import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui, implot

from gui_utils import imgui_utils
from raycond import precision, threads
from raycond.generate import force_fp32_for

from .renderer import available_devices

COMPETING_CORES = 0.5     # other processes using at least this many cores during renders: say so


def competition_message(render_times, cpu_others, min_slowdown: float = 1.5) -> str | None:
    """A warning when renders got slower while other processes used the CPU, else None.

    render_times: recent render durations in seconds (oldest first); cpu_others: cores used by
    other processes during each of those renders (None where unknown).
    """
    times = [float(t) for t in render_times if t and t > 0]
    others = [float(o) for o in list(cpu_others)[-5:] if o is not None]
    if not times or not others:
        return None
    busy = sum(others) / len(others)
    if busy < COMPETING_CORES:
        return None
    recent = float(np.median(times[-5:]))
    best = float(np.percentile(times, 10))
    slowdown = recent / best if best > 0 else 1.0
    head = f'Another program is using ~{busy:.1f} CPU {"core" if round(busy, 1) == 1.0 else "cores"}'
    if len(times) >= 2 and slowdown >= min_slowdown:
        return f'{head}: renders take {slowdown:.1f}x their best here.'
    if len(times) >= 10:
        return None                  # renders are as fast as ever: the other program is not in the way
    return f'{head}: renders may be slower than usual.'


def thread_status(used: int, policy, auto: bool, others: float | None) -> str:
    """One line: threads in use, how they are chosen, and the OpenMP wait policy."""
    how = 'auto' if auto and policy.adaptive else 'fixed'
    if how == 'auto' and others is not None:
        how += f', others use {others:.1f} core{"" if round(others, 1) == 1.0 else "s"}'
    return (f'CPU threads {used} of {policy.usable_cpus} ({how}); wait policy {policy.wait_policy} '
            f'({policy.wait_from})')


def precision_label(device: str, force_fp32: bool) -> str:
    """What the renderer runs for this device and checkbox (raycond.generate's rule) before a render
    says (RenderResult.precision)."""
    return precision.describe(device, force_fp32_for(device, force_fp32))


class PerformanceWidget:
    """Timing history + settings -> RenderArgs fields (device, force_fp32) and window settings."""

    def __init__(self, device='auto', fps_limit=60, vsync=False, history=240, force_fp32=False):
        self.device = device
        self.devices = None
        self.force_fp32 = bool(force_fp32)  # visualizer.py --fp32; off: fp16 layers on CUDA
        self.fps_limit = int(fps_limit)
        self.vsync = bool(vsync)
        self.smooth = True                 # linear texture filtering of the displayed image
        self.yield_to_renderer = True      # GUI waits for the renderer instead of redrawing unchanged frames
        self.gui_times = collections.deque(maxlen=history)
        self.render_times = collections.deque(maxlen=history)
        self.render_cpu_others = collections.deque(maxlen=history)   # cores used elsewhere per render
        self.threads = threads.current()     # the policy the visualizer started with (raycond.threads)
        self.auto_threads = self.threads.adaptive   # count follows the cores other programs leave free
        self.num_threads = self.threads.num_threads
        self.max_threads = max(self.num_threads, threads.usable_cpus())
        self._last_render_stamp = None

    def record_frame(self, gui_dt, result=None):
        """Add one GUI frame time and (when new) the render time of `result`."""
        if gui_dt and gui_dt > 0:
            self.gui_times.append(float(gui_dt))
        if (result is not None and result.stamp != self._last_render_stamp and 'total' in result.timings
                and not (result.args is not None and result.args.info_only)):   # a network load is no frame
            self._last_render_stamp = result.stamp
            self.render_times.append(float(result.timings['total']))
            self.render_cpu_others.append(getattr(result, 'cpu_others', None))

    @staticmethod
    def _mean_ms(values, n=30):
        vals = list(values)[-n:]
        return 1000.0 * float(np.mean(vals)) if vals else float('nan')

    @property
    def gui_fps(self):
        ms = self._mean_ms(self.gui_times)
        return 1000.0 / ms if ms == ms and ms > 0 else 0.0

    def update_args(self, d):
        d.update(device=self.device, force_fp32=bool(self.force_fp32),
                 num_threads=0 if self.auto_threads else int(self.num_threads))

    def draw(self, viz):
        gui_ms, ren_ms = self._mean_ms(self.gui_times), self._mean_ms(self.render_times)
        imgui.text(f'GUI    {gui_ms:6.1f} ms  ({self.gui_fps:5.1f} fps)')
        imgui.text(f'Render {ren_ms:6.1f} ms' + (f'  ({1000 / ren_ms:5.1f} fps)' if ren_ms == ren_ms and ren_ms > 0 else ''))
        res = viz.result
        if res is not None and res.timings:
            t = res.timings
            imgui_utils.dim_text('last: ' + '  '.join(f'{k} {1000 * v:.1f}' for k, v in t.items()
                                                      if k in ('mapping', 'synthesis', 'total')) + ' ms')
        if implot.begin_plot('##times', imgui.ImVec2(-1, 110 * viz.ui_scale),
                             implot.Flags_.no_menus | implot.Flags_.no_box_select | implot.Flags_.no_mouse_text):
            implot.setup_axes('', 'ms', implot.AxisFlags_.no_tick_labels, implot.AxisFlags_.auto_fit)
            implot.setup_axis_limits(implot.ImAxis_.x1, 0, self.gui_times.maxlen, imgui.Cond_.always)
            if self.gui_times:
                implot.plot_line('GUI', np.asarray(self.gui_times, dtype=np.float64) * 1000)
            if self.render_times:
                implot.plot_line('Render', np.asarray(self.render_times, dtype=np.float64) * 1000)
            implot.end_plot()
        w = imgui.get_content_region_avail().x
        lw = imgui.calc_text_size('FPS limit ').x + 10
        with imgui_utils.item_width(w - lw):
            _, self.fps_limit = imgui.slider_int('FPS limit', self.fps_limit, 5, 240)
            used = getattr(res, 'num_threads', 0) if res is not None else 0
            with imgui_utils.grayed_out(self.auto_threads):
                shown = used if self.auto_threads and used else self.num_threads
                changed, n = imgui.slider_int('Threads', shown, 1, self.max_threads)
            if changed and not self.auto_threads:
                self.num_threads = n
            imgui_utils.tooltip('CPU threads for the network (torch intra-op). Auto: the cores other programs\n'
                                'leave free, re-checked twice a second. A fixed count stays fixed even when\n'
                                'another program (e.g. training) needs the other cores.')
            if self.devices is None:
                self.devices = available_devices()
            if imgui.begin_combo('Device', self.device):
                for dev in self.devices:
                    if imgui.selectable(dev, dev == self.device)[0]:
                        self.device = dev
                imgui.end_combo()
        with imgui_utils.grayed_out(not self.threads.adaptive):
            changed, auto = imgui.checkbox('Auto threads', self.auto_threads)
        imgui_utils.tooltip('Follow the cores other programs leave free. Off when the visualizer was started\n'
                            'with --threads or OMP_NUM_THREADS (a fixed count), or where /proc/stat is missing.')
        if changed and self.threads.adaptive:
            self.auto_threads = auto
            if not auto and res is not None and getattr(res, 'num_threads', 0):
                self.num_threads = res.num_threads      # start the fixed count from what auto chose
        imgui.same_line()
        _, self.vsync = imgui.checkbox('Vsync', self.vsync)
        imgui.same_line()
        _, self.force_fp32 = imgui.checkbox('Force fp32', self.force_fp32)
        imgui_utils.tooltip('Off: the network\'s fp16 layers run in fp16 on CUDA and in bfloat16 on a CPU with\n'
                            'native bfloat16 (faster). Other CPUs and MPS render in fp32. Default: off unless --fp32.')
        _, self.smooth = imgui.checkbox('Smooth', self.smooth)      # a row of its own: four checkboxes clip the panel
        imgui_utils.tooltip('Linear filtering of the enlarged image (off: sharp pixels)')
        imgui.same_line()
        _, self.yield_to_renderer = imgui.checkbox('Yield to renderer', self.yield_to_renderer)
        imgui_utils.tooltip('While an image renders and you do not touch the GUI, redraw only when it is ready\n'
                            '(and sleep when idle): more CPU for the network, smoother orbits on small machines')
        if res is not None and res.device:
            label = res.precision or precision_label(res.device, self.force_fp32)
            imgui_utils.dim_text(f'rendering on {res.device}, {label}')
        if res is not None and res.device.startswith('cpu'):
            imgui_utils.dim_text(thread_status(getattr(res, 'num_threads', 0) or self.num_threads, self.threads,
                                               self.auto_threads, threads.competition()))
        warning = competition_message(self.render_times, self.render_cpu_others)
        if warning:
            imgui.push_style_color(imgui.Col_.text, imgui.ImVec4(1.0, 0.75, 0.3, 1.0))
            imgui.text_wrapped(warning)
            imgui.pop_style_color()
