"""Command-line options that several scripts share, defined once so that they read and behave alike.

`camera_options` gives gen_images.py, gen_video.py and projector.py the same camera model options
(--fov, --radius, --lookat, --preset) and, where a script takes them, the same --yaw/--pitch;
`camera_model` turns their values into what `raycond.generate.c_for_network` takes. Unset values
fall back to the network's training cameras (its snapshot's camera statistics), else FFHQ's.
`runtime_options` gives them the same --device, --batch, --fp32, --threads and --trust-pickle;
`progress_bar` draws a library's progress(done, total) callback.
"""

from __future__ import annotations

import contextlib
import traceback

import click

from raycond import camera as cam
from raycond import generate as gen
from raycond import inversion, loading, precision, runtime

FP32_HELP = precision.FP32_HELP

# How a script takes --yaw/--pitch: several views, one known camera, or not at all.
ANGLE_STYLES = ('views', 'known', None)

_YAW_VIEWS = "Camera yaw in degrees; a list ('-30,0,30') or 'START:STOP:COUNT' gives several views."
_PITCH_VIEWS = 'Camera pitch in degrees; a list pairs with --yaw (or broadcasts).'
_YAW_KNOWN = 'Known camera yaw in degrees (skips camera estimation; with --pitch).'
_PITCH_KNOWN = 'Known camera pitch in degrees (with --yaw).'


def camera_options(angles: str | None = 'views'):
    """Click decorator adding the shared camera options.

    angles='views': --yaw/--pitch are lists of views ('0' by default); 'known': one optional known
    camera (floats, default None); None: no --yaw/--pitch (the script has its own camera path).
    """
    if angles not in ANGLE_STYLES:
        raise ValueError(f'angles must be one of {ANGLE_STYLES}, got {angles!r}')
    options = []
    if angles == 'views':
        options += [click.option('--yaw', default='0', show_default=True, help=_YAW_VIEWS),
                    click.option('--pitch', default='0', show_default=True, help=_PITCH_VIEWS)]
    elif angles == 'known':
        options += [click.option('--yaw', type=float, default=None, help=_YAW_KNOWN),
                    click.option('--pitch', type=float, default=None, help=_PITCH_KNOWN)]
    options += [
        click.option('--fov', type=float, default=None,
                     help="True horizontal field of view in degrees (default: the network's training FOV, "
                          "else FFHQ's 13.37)."),
        click.option('--radius', type=float, default=None,
                     help="Camera distance from the world origin (default: the training data's, else 2.7)."),
        click.option('--lookat', default=None, metavar='X,Y,Z',
                     help="Point the camera looks at (default: the training data's, else 0,0,0.2)."),
        click.option('--preset', type=click.Choice(sorted(cam.PRESETS)), default=None,
                     help='Camera radius/look-at/FOV of a known dataset (explicit options override it).'),
    ]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def runtime_options(batch_default: int | None = None, batch_help: str = 'Images per forward pass.', fp32: bool = True):
    """Click decorator adding where and how a script runs the network: --device, --batch (when
    `batch_default` is given; parameter batch_size), --fp32 (when `fp32`), --threads (parameter
    num_threads) and --trust-pickle, in that order."""
    options = [click.option('--device', default='auto', show_default=True, help=gen.DEVICE_HELP)]
    if batch_default is not None:
        options.append(click.option('--batch', 'batch_size', type=click.IntRange(min=1), default=batch_default,
                                    show_default=True, help=batch_help))
    if fp32:
        options.append(click.option('--fp32', is_flag=True, help=FP32_HELP))
    options += [click.option('--threads', 'num_threads', type=click.IntRange(min=0), default=0, show_default=True,
                             help=runtime.THREADS_HELP),
                click.option('--trust-pickle', is_flag=True, help=loading.TRUST_PICKLE_HELP)]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def camera_model(fov: float | None, radius: float | None, lookat: str | None,
                 preset: str | None) -> tuple[float | None, float | None, tuple | None]:
    """(fov_deg, radius, lookat) from the shared options: explicit values win over --preset; None
    leaves the choice to the network (`raycond.generate.default_camera`)."""
    lookat_vec = gen.parse_vec3(lookat) if lookat else None
    if preset is not None:
        p = cam.get_preset(preset)
        radius = p.radius if radius is None else radius
        lookat_vec = tuple(p.lookat) if lookat_vec is None else lookat_vec
        fov = cam.fov_from_focal(p.focal) if fov is None else fov
    if fov is not None and not 0 < fov < 180:
        raise ValueError(f'--fov must be between 0 and 180 degrees, got {fov}')
    if radius is not None and not radius > 0:
        raise ValueError(f'--radius must be positive, got {radius}')
    return fov, radius, lookat_vec


def network_arg(network: str | None, projected: str | None = None) -> str:
    """The network a generating script opens: --network, else the one an inverted photo (--projected)
    was made with, else the bundled checkpoint (`raycond.loading.resolve_network_arg`)."""
    if projected and not network:
        network = inversion.network_of(projected)
    return loading.resolve_network_arg(network)


def open_network(network: str | None, projected: str | None, device: str, trust_pickle: bool, fp32: bool):
    """(device, G, info, force_fp32) of the network a generating script renders with (`network_arg`),
    announced in two lines as it loads."""
    dev = gen.resolve_device(device)
    network = network_arg(network, projected)
    print(f'Loading network from "{network}"...')
    G, info = loading.load_network_and_info(network, device=dev, trust_pickle=trust_pickle)
    print(f"  {info.summary()}")
    return dev, G, info, gen.force_fp32_for(dev, fp32, G)


def check_pitches(pitches, option: str = '--pitch') -> None:
    """Refuse, naming the option, a pitch that is no camera (raycond.generate.check_pitch)."""
    try:
        gen.check_pitch(pitches)
    except ValueError as e:
        raise ValueError(f"{option}: {e}") from None


def warn_outside_training_poses(info, yaws, pitches) -> None:
    """The visualizer's 'extrapolating' warning on stderr, once per (yaw, pitch) outside the training poses."""
    stats = info.camera_stats or {}
    for y, p in zip(yaws, pitches):
        why = gen.outside_training_poses(stats.get("yaw_range_deg"), stats.get("pitch_range_deg"), y, p)
        if why:
            turn = f" (yaw {y:g} is the camera of yaw {(y + 180) % 360 - 180:g})" if abs(y) > 180 else ""
            click.echo(f"  warning: {why}{turn}: the image extrapolates", err=True)


def progress_bar(desc: str, unit: str = 'step', every=None):
    """A library `progress(done, total)` callback drawn as one tqdm bar, opened at the first report and
    cleared when done reaches total; `every()` (e.g. raycond.runtime.step) runs at each report."""
    from tqdm import tqdm
    state = {}

    def progress(done, total):
        if every is not None:
            every()
        bar = state.get('bar') or state.setdefault('bar', tqdm(total=total, desc=desc, unit=unit, leave=False))
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return progress


@contextlib.contextmanager
def one_line_errors(verbose: bool):
    """Turn any failure inside the block into one clear ``Error:`` line (the traceback too with --verbose)."""
    try:
        yield
    except (click.ClickException, click.Abort):
        raise
    except Exception as e:  # noqa: BLE001 - the user sees every failure, as one line
        if verbose:
            traceback.print_exc()
        raise click.ClickException(str(e) or type(e).__name__) from None
