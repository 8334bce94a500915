#!/usr/bin/env python
"""Visualizer speed: latency from a slider change to the new frame on screen, and sustained FPS while
orbiting, through the real window (GLFW + imgui + async render thread). Prints a table; asserts nothing.

Networks are random-weight ray-conditioned generators of the given resolutions (speed does not
depend on the weights; fp16 layers at the 4 highest resolutions, as train.py builds them), or a given
--network. They render in the precision the visualizer picks (bfloat16 layers on a CPU with native
bfloat16, raycond.precision) unless --fp32; --compare-fp32 alternates trials of both. Without a
display an Xvfb server is started when available (its software GL then counts in the GUI frame times).
"""

import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from raycond import runtime  # noqa: E402  (first: it chooses OpenMP's wait policy before torch loads)


def _make_network(res, cbase, cmax, map_depth, path):
    import torch
    import dnnlib
    from raycond.camera import LABEL_DIM
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(class_name='training.networks_raycond2.Generator', z_dim=512, c_dim=LABEL_DIM,
                                            w_dim=512, img_resolution=res, img_channels=3, channel_base=cbase,
                                            channel_max=cmax, mapping_kwargs=dict(num_layers=map_depth))
    with open(path, 'wb') as f:
        pickle.dump({'G_ema': G.eval().requires_grad_(False)}, f)
    return path


def _start_xvfb():
    if os.environ.get('DISPLAY') or shutil.which('Xvfb') is None:
        return None
    for n in range(150, 250):
        if not os.path.exists(f'/tmp/.X11-unix/X{n}') and not os.path.exists(f'/tmp/.X{n}-lock'):
            break
    proc = subprocess.Popen(['Xvfb', f':{n}', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(f'/tmp/.X11-unix/X{n}'):
            break
        time.sleep(0.05)
    os.environ['DISPLAY'] = f':{n}'
    return proc


def _bench_one(pkl, device, repeats, seconds, fps_limit, yield_to_renderer=True, fp32=False):
    from viz.app import Visualizer
    viz = Visualizer([pkl], device=device, fps_limit=fps_limit, fp32=fp32)
    viz.perf.yield_to_renderer = yield_to_renderer
    try:
        viz.wait_for_render(timeout=600)
        res = viz.result
        if res.error:
            raise click.ClickException(f'{pkl}: {res.error}')
        # renderer alone (same thread count, no GUI): median render time
        from viz.renderer import Renderer
        r = Renderer()
        r.render(viz.current_args)
        rt = []
        for i in range(5):
            t = time.perf_counter()
            r.render(viz.current_args.replace(yaw_deg=float(i)))
            rt.append(time.perf_counter() - t)
        del r
        # latency: slider change -> frame with the new image swapped to the screen
        lat, in_gui = [], []
        for i in range(repeats):
            viz.wait_for_render(timeout=600)
            viz.camera.yaw = (viz.camera.yaw + 3.0) if viz.camera.yaw < 20 else -20.0
            t0 = time.perf_counter()
            target = None
            while True:
                viz.run_frames(1)
                if target is None:
                    target = viz.renderer.latest_stamp
                if viz.result is not None and viz.result.stamp >= target:
                    lat.append(viz.last_swap_time - t0)      # the frame showing it was swapped to the screen
                    in_gui.append(viz.result.timings.get('total', float('nan')))
                    break
        # sustained orbit: frames drawn and distinct images shown per second
        viz.camera.orbit = True
        viz.camera.orbit_speed = 0.2
        frames0, stamps = viz.frame_count, set()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            viz.run_frames(1)
            if viz.result is not None:
                stamps.add(viz.result.stamp)
        dt = time.perf_counter() - t0
        return dict(render_ms=1000 * statistics.median(rt), render_bg_ms=1000 * statistics.median(in_gui), lat_med=1000 * statistics.median(lat),
                    lat_p90=1000 * sorted(lat)[int(0.9 * (len(lat) - 1))], gui_fps=(viz.frame_count - frames0) / dt,
                    image_fps=len(stamps) / dt, res=res.image.shape[0], precision=res.precision)
    finally:
        viz.close()


@click.command()
@click.option('--res', 'resolutions', default='64,256', show_default=True,
              help='Comma-separated resolutions of random-weight raycond2 generators to time.')
@click.option('--cbase', default=8192, show_default=True, help='channel_base of the generated networks.')
@click.option('--cmax', default=256, show_default=True, help='channel_max of the generated networks.')
@click.option('--map-depth', default=2, show_default=True, help='Mapping layers of the generated networks.')
@click.option('--network', default=None, help='Time this network file instead of generated ones.')
@click.option('--device', default='cpu', show_default=True, help='Render device (auto, cpu, cuda, mps).')
@click.option('--repeats', default=15, show_default=True, help='Slider changes timed for the latency.')
@click.option('--seconds', default=8.0, show_default=True, help='Duration of the orbit measurement.')
@click.option('--fps-limit', default=60, show_default=True, help='GUI frame cap (the GUI default is 60).')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True, help=runtime.THREADS_HELP)
@click.option('--trials', default=1, show_default=True,
              help='Repeat each measurement; with more than one, print the median and the best trial.')
@click.option('--fp32', is_flag=True, default=False, help='Render in float32 (the GUI\'s "Force fp32").')
@click.option('--compare-fp32', is_flag=True, default=False,
              help='Alternate trials with and without --fp32 and print rows for both.')
@click.option('--yield/--no-yield', 'yield_to_renderer', default=True, show_default=True,
              help='The Performance option "Yield to renderer" (GUI waits for the image instead of redrawing).')
def main(resolutions, cbase, cmax, map_depth, network, device, repeats, seconds, fps_limit, num_threads, trials,
         fp32, compare_fp32, yield_to_renderer):
    """Print latency and orbit FPS of the visualizer window."""
    xvfb = _start_xvfb()
    policy = runtime.start(num_threads)
    try:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            nets = [(network, os.path.basename(network))] if network else \
                [(_make_network(int(r), cbase, cmax, map_depth, os.path.join(tmp, f'r{r}.pkl')),
                  f'raycond2 {r}x{r} (cbase {cbase}, cmax {cmax})') for r in resolutions.split(',')]
            variants = [False, True] if compare_fp32 else [fp32]
            for pkl, name in nets:
                runs = {v: [] for v in variants}
                for t in range(trials):
                    for v in (variants if t % 2 == 0 else variants[::-1]):   # alternate: same load for both
                        runs[v].append(_bench_one(pkl, device, repeats, seconds, fps_limit, yield_to_renderer, v))
                for v in variants:
                    label = f'{name}, {runs[v][0]["precision"]}'
                    if trials == 1:
                        rows.append((label, runs[v][0]))
                        continue
                    med = {k: statistics.median(r[k] for r in runs[v]) for k in runs[v][0] if k != 'precision'}
                    best = max(runs[v], key=lambda r: r['image_fps'])
                    rows.append((f'{label}, median of {trials}', med))
                    rows.append((f'{label}, best of {trials}', best))
        import platform
        print(f'\nVisualizer on {device} ({policy.describe()}, '
              f'{platform.processor() or platform.machine()}), GUI cap {fps_limit} fps, yield {yield_to_renderer}, '
              f'display {os.environ.get("DISPLAY")}{" (Xvfb, software GL)" if xvfb else ""}')
        print('| network | render alone (ms) | render on the GUI\'s thread (ms) | slider -> screen latency '
              '(ms, median / p90) | orbit: new images/s | orbit: GUI frames/s |')
        print('|---|---|---|---|---|---|')
        for name, r in rows:
            print(f'| {name} | {r["render_ms"]:.1f} | {r["render_bg_ms"]:.1f} | {r["lat_med"]:.0f} / {r["lat_p90"]:.0f} | '
                  f'{r["image_fps"]:.1f} | {r["gui_fps"]:.1f} |')
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
