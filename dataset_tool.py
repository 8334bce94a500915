"""Prepare image datasets for training (StyleGAN-style), and render synthetic posed heads.

    python dataset_tool.py --source=~/downloads/ffhq --dest=~/datasets/ffhq-256x256.zip --resolution=256x256
    python dataset_tool.py convert --source=images.zip --dest=out/ --max-images=1000
    python dataset_tool.py synth --dest=~/datasets/heads-64.zip --count=10000 --resolution=64

Labels travel with the images: `dataset.json` in the source (EG3D's 25-float cameras or
StyleGAN2-ADA's class indices) is validated and rewritten for the new file names; crops adjust
the normalized intrinsics so the cameras still match the pixels.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import traceback
import zipfile

import click

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
import numpy as np
from PIL import Image

from raycond.camera import INTRINSICS_DIM, LABEL_DIM, POSE_DIM
from raycond.synth.writer import DatasetWriter, check_destination, image_path, training_size_problem

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.ppm', '.tif', '.tiff')

# ----------------------------------------------------------------------------
# Reading sources.


class Source:
    """Images (name, bytes loader) and the raw label mapping of a folder or ZIP."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.exists(path):
            raise FileNotFoundError(f'--source {path} does not exist')
        self._zip = None
        if os.path.isdir(path):
            names = []
            for root, _dirs, files in os.walk(path):
                for f in files:
                    names.append(os.path.relpath(os.path.join(root, f), path).replace(os.sep, '/'))
        elif zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
            names = [n for n in self._zip.namelist() if not n.endswith('/')]
        else:
            raise ValueError(f'--source {path} must be a folder or a ZIP archive')
        self.names = sorted(n for n in names if n.lower().endswith(IMAGE_EXTS))
        self.labels = None
        if 'dataset.json' in names:
            try:
                meta = json.loads(self.read('dataset.json'))
            except (ValueError, UnicodeDecodeError) as e:
                raise ValueError(f'{path}: dataset.json is not valid JSON ({e})') from None
            raw = meta.get('labels') if isinstance(meta, dict) else None
            if raw is not None:
                if not isinstance(raw, list):
                    raise ValueError(f'{path}: dataset.json "labels" must be a list of [file, label] pairs')
                try:
                    self.labels = {str(n).replace('\\', '/'): v for n, v in raw}
                except (TypeError, ValueError):
                    raise ValueError(f'{path}: dataset.json "labels" must be a list of [file, label] pairs') from None

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        with open(os.path.join(self.path, name), 'rb') as f:
            return f.read()

    def load_image(self, name: str) -> Image.Image:
        try:
            img = Image.open(io.BytesIO(self.read(name)))
            img.load()
        except Exception as e:  # PIL raises many kinds
            raise ValueError(f'cannot read image {name} in {self.path}: {e}') from None
        if img.mode not in ('RGB', 'L'):
            img = img.convert('RGB')
        return img


def check_label(name: str, label):
    """Validate one label: LABEL_DIM (25) finite floats (camera) or a non-negative class index."""
    if isinstance(label, bool):
        raise ValueError(f'label of {name}: expected {LABEL_DIM} floats or a class index, got {label!r}')
    if isinstance(label, int):
        if label < 0:
            raise ValueError(f'label of {name}: class index must be >= 0, got {label}')
        return label
    if isinstance(label, list) and len(label) == 1 and isinstance(label[0], int):
        return check_label(name, label[0])
    try:
        arr = np.asarray(label, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f'label of {name}: expected {LABEL_DIM} floats or a class index, got {label!r}') from None
    if arr.shape != (LABEL_DIM,):
        raise ValueError(f'label of {name}: expected {LABEL_DIM} floats (cam2world {POSE_DIM} + intrinsics '
                         f'{INTRINSICS_DIM}) or a class index, got shape {arr.shape}')
    if not np.all(np.isfinite(arr)):
        raise ValueError(f'label of {name}: contains non-finite values')
    return [float(x) for x in arr]


# ----------------------------------------------------------------------------
# Transforms.


def parse_resolution(text):
    """'256x256' -> (256, 256), and '256' -> (256, 256) as `synth` takes it; None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r'\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?', str(text))
    if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ValueError(f'--resolution: expected WxH such as 256x256 (or one number for a square), got {text!r}')
    return int(m.group(1)), int(m.group(2) or m.group(1))


def parse_square_resolution(text) -> int:
    """`synth --resolution`: '64' or '64x64' -> 64 (the heads are square)."""
    w, h = parse_resolution(text)
    if w != h:
        raise ValueError(f'--resolution: synthetic heads are square, got {text!r} (e.g. 64 or 64x64)')
    return w


def transform_image(img: Image.Image, transform, resolution):
    """Apply the transform; returns (uint8 array, (ax, bx, ay, by)) where normalized image
    coordinates map as u' = ax u + bx, v' = ay v + by (used to fix camera intrinsics)."""
    w, h = img.size
    ident = (1.0, 0.0, 1.0, 0.0)
    if transform is None:
        if resolution is not None and (w, h) != resolution:
            img = img.resize(resolution, Image.LANCZOS)
        return np.asarray(img), ident
    if resolution is None:
        raise ValueError(f'--transform={transform} needs --resolution')
    W, H = resolution
    if transform == 'center-crop':
        s = min(w, h)
        x0, y0 = (w - s) // 2, (h - s) // 2
        img = img.crop((x0, y0, x0 + s, y0 + s)).resize((W, H), Image.LANCZOS)
        return np.asarray(img), (w / s, -x0 / s, h / s, -y0 / s)
    if transform == 'center-crop-wide':
        ch = int(round(w * H / W))
        if ch > h:
            raise ValueError(f'--transform=center-crop-wide: image {w}x{h} is too short for {W}x{H}')
        y0 = (h - ch) // 2
        crop = img.crop((0, y0, w, y0 + ch)).resize((W, H), Image.LANCZOS)
        canvas = Image.new(crop.mode, (W, W))
        pad = (W - H) // 2
        canvas.paste(crop, (0, pad))
        # v' = ((v h - y0) H / ch + pad) / W
        return np.asarray(canvas), (1.0, 0.0, h * H / (ch * W), (pad - y0 * H / ch) / W)
    raise ValueError(f'--transform: unknown transform {transform!r}')


def adjust_camera(label, coeffs):
    """Rewrite the normalized intrinsics of a 25-float label for an image-coordinate map."""
    ax, bx, ay, by = coeffs
    if (ax, bx, ay, by) == (1.0, 0.0, 1.0, 0.0):
        return label
    out = list(label)
    K = np.asarray(label[POSE_DIM:], dtype=np.float64).reshape(3, 3)
    A = np.array([[ax, 0, bx], [0, ay, by], [0, 0, 1]])
    out[POSE_DIM:] = [float(x) for x in (A @ K).reshape(-1)]
    return out


# ----------------------------------------------------------------------------
# Conversion.


def convert_dataset(source, dest, max_images=None, resolution=None, transform=None, force=False, progress=True):
    """Copy images (and labels) from `source` to `dest`, optionally cropping and resizing."""
    res = parse_resolution(resolution) if isinstance(resolution, (str, type(None))) else tuple(resolution)
    if transform is not None and res is None:
        raise ValueError(f'--transform={transform} needs --resolution')
    if res is not None:  # refuse now what train.py would refuse after the whole conversion
        out = (res[0], res[0]) if transform == 'center-crop-wide' else res
        problem = training_size_problem(*out)
        if problem is not None:
            raise ValueError(f'--resolution={res[0]}x{res[1]} would make a dataset train.py refuses: it has {problem}')
    if max_images is not None and int(max_images) < 1:
        raise ValueError(f'--max-images must be at least 1, got {max_images}')
    check_destination(dest, force)
    src = Source(source)
    if not src.names:
        raise ValueError(f'--source {source} contains no images ({", ".join(IMAGE_EXTS)})')
    names = src.names[:int(max_images)] if max_images is not None else src.names
    if src.labels is not None:
        missing = [n for n in names if n not in src.labels]
        if missing:
            raise ValueError(f'{source}: dataset.json has no label for {missing[0]} ({len(missing)} images unlabelled)')
    labels = [] if src.labels is not None else None
    kind = None
    size = None
    from tqdm import tqdm
    with DatasetWriter(dest, force=force) as writer:
        for index, name in enumerate(tqdm(names, desc='Converting', unit='img', disable=not progress)):
            arr, coeffs = transform_image(src.load_image(name), transform, res)
            if size is None:
                size = arr.shape
            elif arr.shape != size:
                raise ValueError(f'image {name} is {arr.shape[1]}x{arr.shape[0]} but earlier images are '
                                 f'{size[1]}x{size[0]}; use --resolution (and --transform) to make them equal')
            path = image_path(index)
            writer.add_image(path, arr)
            if labels is not None:
                label = check_label(name, src.labels[name])
                this_kind = 'class' if isinstance(label, int) else 'camera'
                if kind is not None and this_kind != kind:
                    raise ValueError(f'label of {name}: mixes class indices and camera labels')
                kind = this_kind
                labels.append([path, adjust_camera(label, coeffs) if kind == 'camera' else label])
        writer.close(labels)
    return dict(count=len(names), size=(size[1], size[0]) if size else None, labels=kind)


# ----------------------------------------------------------------------------
# Command line.


class _Interrupted(click.ClickException):
    """Ctrl-C: one line and status 130, shown by click once the progress bar has been closed."""
    exit_code = 130

    def show(self, file=None):
        click.echo(self.message, err=True)


def _run(verbose, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        # The writers publish the destination only when complete: nothing partial is left behind.
        raise _Interrupted('Interrupted; the destination was not written (no partial dataset left behind).') from None
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as e:
        if verbose:
            traceback.print_exc()
        raise click.ClickException(str(e)) from None


_convert_options = [
    click.option('--source', type=str, metavar='PATH', help='Input: folder of images, ZIP, or folder/ZIP with dataset.json labels.'),
    click.option('--dest', type=str, metavar='PATH', help='Output: ZIP (name ends in .zip) or folder.'),
    click.option('--max-images', type=int, default=None, metavar='N', help='Stop after N images  [default: all]'),
    click.option('--resolution', type=str, default=None, metavar='WxH',
                 help='Output size, e.g. 256x256 (or 256 for a square)  [default: keep]'),
    click.option('--transform', type=click.Choice(['center-crop', 'center-crop-wide']), default=None,
                 help='Crop before resizing (needs --resolution)  [default: plain resize]'),
    click.option('--force', is_flag=True, help='Replace an existing --dest  [default: refuse]'),
    click.option('--verbose', is_flag=True, help='Show full tracebacks on errors.'),
]


def _with_convert_options(fn):
    for opt in reversed(_convert_options):
        fn = opt(fn)
    return fn


def _convert(source, dest, max_images, resolution, transform, force, verbose):
    if not source or not dest:
        raise click.UsageError('--source and --dest are required')
    info = _run(verbose, convert_dataset, source, dest, max_images=max_images, resolution=resolution,
                transform=transform, force=force)
    click.echo(f'Wrote {info["count"]} images ({info["size"][0]}x{info["size"][1]}, labels: {info["labels"] or "none"}) to {dest}')


@click.group(invoke_without_command=True, context_settings=dict(help_option_names=['-h', '--help']))
@_with_convert_options
@click.pass_context
def cli(ctx, source, dest, max_images, resolution, transform, force, verbose):
    """Convert image datasets (default, same options as `convert`) or render synthetic heads (`synth`)."""
    if ctx.invoked_subcommand is not None:
        if any(v not in (None, False) for v in (source, dest, max_images, resolution, transform)) or force:
            raise click.UsageError(f'put options after the command name: dataset_tool.py {ctx.invoked_subcommand} --dest=...')
        return
    if source is None and dest is None:
        click.echo(ctx.get_help())
        ctx.exit(0)
    _convert(source, dest, max_images, resolution, transform, force, verbose)


@cli.command('convert')
@_with_convert_options
def convert_cmd(source, dest, max_images, resolution, transform, force, verbose):
    """Copy a folder/ZIP of images (and dataset.json labels) into a training dataset."""
    _convert(source, dest, max_images, resolution, transform, force, verbose)


@cli.command('synth')
@click.option('--dest', type=str, required=True, metavar='PATH', help='Output: ZIP (name ends in .zip) or folder.')
@click.option('--count', type=click.IntRange(min=1), default=10000, show_default=True, help='Number of images.')
@click.option('--resolution', type=str, default='64', show_default=True, metavar='N|NxN',
              help='Image size (power of two), e.g. 64 or 64x64.')
@click.option('--seed', type=int, default=0, show_default=True, help='Random seed (same seed, same dataset).')
@click.option('--yaw-std', type=float, default=20.0, show_default=True, help='Std. dev. of camera yaw, degrees.')
@click.option('--pitch-std', type=float, default=8.0, show_default=True, help='Std. dev. of camera pitch, degrees.')
@click.option('--max-yaw', type=float, default=60.0, show_default=True, help='Clip |yaw| to this, degrees.')
@click.option('--max-pitch', type=float, default=25.0, show_default=True, help='Clip |pitch| to this, degrees.')
@click.option('--supersample', type=click.IntRange(min=1), default=1, show_default=True, help='Rays per pixel side (anti-aliasing).')
@click.option('--batch', type=click.IntRange(min=1), default=64, show_default=True, help='Images rendered per batch.')
@click.option('--workers', type=click.IntRange(min=1), default=None, help='Render processes  [default: CPU cores, at most 8]')
@click.option('--force', is_flag=True, help='Replace an existing --dest  [default: refuse]')
@click.option('--verbose', is_flag=True, help='Show full tracebacks on errors.')
def synth_cmd(dest, count, resolution, seed, yaw_std, pitch_std, max_yaw, max_pitch, supersample, batch, workers, force, verbose):
    """Render procedural 3D heads under FFHQ-like cameras (EG3D labels: radius 2.7, look-at (0,0,0.2), f 4.2647)."""
    from tqdm import tqdm
    from raycond.synth.dataset import write_dataset
    resolution = _run(verbose, parse_square_resolution, resolution)
    workers = max(1, min(8, runtime.usable_cpus())) if workers is None else workers
    runtime.start()   # this process renders itself when --workers=1; workers use one thread each
    with tqdm(total=count, desc='Rendering', unit='img', disable=not sys.stderr.isatty() and count < 1000) as bar:
        info = _run(verbose, write_dataset, dest, count, resolution=resolution, seed=seed, yaw_std=yaw_std,
                    pitch_std=pitch_std, max_yaw=max_yaw, max_pitch=max_pitch, batch=batch,
                    supersample=supersample, force=force, workers=workers,
                    progress=lambda n: (runtime.step(), bar.update(n)))
    click.echo(f'Wrote {info["count"]} images ({resolution}x{resolution}) to {dest} in {info["seconds"]:.1f} s')


if __name__ == '__main__':
    cli()  # pylint: disable=no-value-for-parameter
