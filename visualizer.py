#!/usr/bin/env python
"""Interactive viewpoint editor for ray-conditioned (and StyleGAN2/3) generators.

Examples:

\b
  python visualizer.py                                   # bundled checkpoint, if present
  python visualizer.py run/network-snapshot-000200.pkl --browse-dir=training-runs
  python visualizer.py net.pkl --headless --capture=frame.png --yaw=30   # no display needed
"""

import os
import sys
import traceback

import click

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
from raycond import generate as gen
from raycond import loading


def _default_pkls(pkls):
    if pkls:
        return list(pkls)
    try:
        bundled = loading.resolve_network_arg(None, what='network')
    except loading.NetworkLoadError:
        click.echo('No network given and no bundled checkpoint found: starting with an empty network field.')
        return []
    short = os.path.relpath(bundled)       # the Network field shows checkpoints/..., not a long absolute path
    return [bundled if short.startswith('..') else short]


@click.command(help=__doc__, context_settings=dict(help_option_names=["-h", "--help"]))
@click.argument('pkls', nargs=-1, metavar='[PKL ...]')
@click.option('--browse-dir', type=click.Path(file_okay=False), default=None,
              help='Directory whose network files are offered in the Network section (default: none).')
@click.option('--capture-dir', type=click.Path(file_okay=False), default='captures', show_default=True,
              help='Where "Save image", "Save GUI" and orbit recordings are written.')
@click.option('--device', default='auto', show_default=True,
              help='Rendering device: ' + gen.DEVICE_HELP)
@click.option('--headless', is_flag=True, default=False,
              help='Do not open a window: render the first frame with --capture and exit.')
@click.option('--capture', 'capture_file', type=click.Path(dir_okay=False), default=None,
              help='Write a PNG and exit: the image (with --headless) or the whole window after the first frame.')
@click.option('--seed', type=float, default=0.0, show_default=True, help='Initial seed (fractional blends seeds).')
@click.option('--trunc', 'trunc_psi', type=float, default=1.0, show_default=True, help='Initial truncation psi.')
@click.option('--yaw', type=float, default=None, help='Initial yaw in degrees (default: 0, frontal).')
@click.option('--pitch', type=float, default=None, help='Initial pitch in degrees (default: 0).')
@click.option('--fov', type=float, default=None, help='Initial true FOV in degrees (default: from the snapshot).')
@click.option('--fp32', is_flag=True, default=False,
              help='Render every layer in float32 (the Performance section\'s "Force fp32" starts on). Default: '
                   'fp16 layers on CUDA, bfloat16 layers on a CPU with native bfloat16; other CPUs and MPS use float32.')
@click.option('--width', type=int, default=1280, show_default=True, help='Window width in pixels.')
@click.option('--height', type=int, default=800, show_default=True, help='Window height in pixels.')
@click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True,
              help=runtime.THREADS_HELP + ' Changeable live in the Performance section.')
@click.option('--trust-pickle', is_flag=True, default=False,
              help='Load network pickles that carry code this project does not recognise without asking (runs that '
              'code; only for files you trust).')
@click.option('--verbose', is_flag=True, default=False, help='Show full tracebacks on errors.')
def main(pkls, browse_dir, capture_dir, device, headless, capture_file, seed, trunc_psi, yaw, pitch, fov, fp32, width,
         height, num_threads, verbose, trust_pickle):
    try:
        runtime.start(num_threads)
        _run(pkls, browse_dir, capture_dir, device, headless, capture_file, seed, trunc_psi, yaw, pitch, fov, width,
             height, trust_pickle, fp32)
    except click.ClickException:
        raise
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        if verbose:
            traceback.print_exc()
        raise click.ClickException(str(e))


def _run(pkls, browse_dir, capture_dir, device, headless, capture_file, seed, trunc_psi, yaw, pitch, fov, width,
         height, trust_pickle=False, fp32=False):
    import gui_utils  # configures GLFW/PyOpenGL platforms before they are imported
    if headless:
        if not capture_file:
            raise click.ClickException('--headless needs --capture FILE.png (the image to write)')
        pkls = _default_pkls(pkls)
        if not pkls:
            raise click.ClickException('--headless: no network to render (give a PKL path)')
        from viz.headless import capture_png
        res = capture_png(pkls[0], capture_file, device=device, seed=seed, trunc_psi=trunc_psi, yaw=yaw, pitch=pitch,
                          fov=fov, trust_pickle=trust_pickle, fp32=fp32)
        h, w = res.image.shape[:2]
        click.echo(f'Wrote {capture_file} ({w}x{h}, rendered on {res.device} in {1000 * res.timings["total"]:.0f} ms)')
        return
    if not gui_utils.display_available():
        raise click.ClickException(gui_utils.NO_DISPLAY_MESSAGE)
    if browse_dir and not os.path.isdir(browse_dir):
        raise click.ClickException(f'--browse-dir {browse_dir}: not a directory')
    pkls = _default_pkls(pkls)
    from gui_utils.glfw_window import WindowError
    from viz.app import Visualizer
    try:
        viz = Visualizer(pkls, browse_dir=browse_dir, capture_dir=capture_dir, device=device, seed=seed,
                         trunc_psi=trunc_psi, yaw=yaw, pitch=pitch, fov=fov, width=width, height=height, fp32=fp32)
    except WindowError as e:
        raise click.ClickException(f'{e}. {gui_utils.NO_DISPLAY_MESSAGE}')
    viz.network.trust.trust_all = trust_pickle
    if capture_file:
        try:
            if pkls:
                viz.wait_for_render(timeout=600)
            else:
                viz.run_frames(3)
            frame = viz.capture_frame_now()
            from viz.capture import save_png
            save_png(frame, capture_file)
            click.echo(f'Wrote {capture_file} ({frame.shape[1]}x{frame.shape[0]} window capture)')
        finally:
            viz.close()
        return
    viz.run()


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
    sys.exit(0)
