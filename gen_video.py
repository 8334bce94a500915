"""Orbit videos like the paper's: a grid of generated identities while the camera orbits, with
latents interpolated between keyframes.

Examples:
    python gen_video.py --output=orbit.mp4 --seeds=0-3 --grid=2x2 --network=net.pkl
    python gen_video.py --output=orbit.gif --seeds=0 --orbit=turntable --yaw-range=-35,35
"""

from __future__ import annotations

import os

import click

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
from raycond import atomic_io
from raycond import camera as cam
from raycond import cli_options
from raycond import generate as gen
from raycond.video import VIDEO_EXTENSIONS, check_video_path, write_video


def _parse_grid(s: str) -> tuple[int, int]:
    try:
        rows, cols = (int(x) for x in s.lower().split("x"))
    except ValueError:
        raise ValueError(f"--grid must look like ROWSxCOLS (e.g. 2x3), got {s!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"--grid needs at least one row and one column, got {s!r}")
    return rows, cols


def _parse_range(s: str, name: str) -> tuple[float, float]:
    values = gen.parse_float_list(s)
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name} must be 'LOW,HIGH' in degrees with LOW <= HIGH, got {s!r}")
    return values[0], values[1]


def interpolate_keyframes(ws, num_frames: int, loop: bool = True):
    """ws (K, ...) keyframes → (num_frames, ...) with a periodic cubic spline (linear for K < 4)."""
    import numpy as np
    import scipy.interpolate

    ws = np.asarray(ws)
    k = ws.shape[0]
    if k == 1:
        return np.repeat(ws, num_frames, axis=0)
    if loop:
        x = np.arange(-k * 2, k * 3)
        y = np.concatenate([ws] * 5)
        kind = "cubic"
    else:
        x, y, kind = np.arange(k), ws, ("cubic" if k >= 4 else "linear")
    f = scipy.interpolate.interp1d(x, y, kind=kind, axis=0)
    t = np.arange(num_frames) * (k if loop else k - 1) / max(num_frames - (0 if loop else 1), 1)
    return f(t)


@click.command(context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--network", metavar="PATH|URL", help="Network pickle (path, URL or run directory). Default: the bundled checkpoint.")
@click.option("--seeds", default="0-3", show_default=True, help="Seeds; one per grid cell per keyframe (or fewer: reused).")
@click.option("--grid", "grid", default="1x1", show_default=True, help="ROWSxCOLS grid of identities.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi.")
@click.option("--trunc-cutoff", "truncation_cutoff", type=int, default=None, help="Truncate only the first N ws.")
@click.option("--num-keyframes", type=int, default=None, help="Latent keyframes (default: len(seeds) // (rows*cols)).")
@click.option("--w-frames", type=int, default=60, show_default=True, help="Frames between two keyframes (the whole video when one keyframe).")
@click.option("--orbit", type=click.Choice(["yaw-pitch-ellipse", "turntable", "sweep"]), default="yaw-pitch-ellipse", show_default=True, help="Camera path.")
@click.option("--yaw-range", default=None, help="Yaw range 'LOW,HIGH' in degrees (default: the training data's, else -30,30).")
@click.option("--pitch-range", default=None, help="Pitch range 'LOW,HIGH' in degrees (default: the training data's, else -10,10).")
@cli_options.camera_options(angles=None)
@click.option("--noise-mode", type=click.Choice(gen.NOISE_MODES), default="const", show_default=True, help="Noise inputs.")
@click.option("--output", default="orbit.mp4", show_default=True, help=f"Output video ({', '.join(VIDEO_EXTENSIONS)}).")
@click.option("--fps", type=int, default=30, show_default=True, help="Frames per second.")
@cli_options.runtime_options(batch_default=16, batch_help="Grid cells rendered per forward pass.")
@click.option("--projected", default=None, metavar="FILE", help="Orbit an inverted photo (projector.py's inversion.pt) instead of seeds.")
@click.option("--verbose", is_flag=True, help="Full tracebacks on errors, and ffmpeg's own messages.")
def main(verbose, num_threads, **kwargs):
    """Render an orbit video of generated identities (MP4 or GIF)."""
    with cli_options.one_line_errors(verbose):
        runtime.start(num_threads)
        make_video(**kwargs, verbose=verbose)


def make_video(network, seeds, grid, truncation_psi, truncation_cutoff, num_keyframes, w_frames, orbit, yaw_range,
               pitch_range, fov, radius, lookat, preset, noise_mode, output, fps, device, batch_size,
               trust_pickle=False, fp32=False, projected=None, verbose=False):
    import numpy as np
    import torch
    from tqdm import tqdm

    rows, cols = _parse_grid(grid)
    if w_frames < 1 or fps < 1:
        raise ValueError("--w-frames and --fps must be positive")
    check_video_path(output, "--output")
    atomic_io.prepare_output_folder(os.path.dirname(output), output=output)  # before rendering: a read-only folder fails at once
    fov, radius, lookat_vec = cli_options.camera_model(fov, radius, lookat, preset)
    seed_list = gen.parse_int_list(seeds)
    if projected:  # one cell, one keyframe: the inverted photo while the camera orbits
        rows = cols = num_keyframes = 1
    cells = rows * cols
    if num_keyframes is None:
        num_keyframes = max(1, len(seed_list) // cells)
    if num_keyframes < 1:
        raise ValueError("--num-keyframes must be at least 1")
    needed = cells * num_keyframes
    seed_list = [seed_list[i % len(seed_list)] for i in range(needed)]

    if pitch_range:
        cli_options.check_pitches(_parse_range(pitch_range, "--pitch-range"), "--pitch-range")
    dev, G, info, force_fp32 = cli_options.open_network(network, projected, device, trust_pickle, fp32)
    stats = info.camera_stats or {}
    yaw_lo_hi = _parse_range(yaw_range, "--yaw-range") if yaw_range else tuple(stats.get("yaw_range_deg", (-30, 30)))
    pitch_lo_hi = _parse_range(pitch_range, "--pitch-range") if pitch_range else tuple(stats.get("pitch_range_deg", (-10, 10)))
    if info.camera:
        cli_options.warn_outside_training_poses(info, yaw_lo_hi, pitch_lo_hi)
    num_frames = num_keyframes * w_frames
    yaws, pitches = cam.orbit_path(orbit, num_frames, yaw_lo_hi, pitch_lo_hi)
    if not info.camera:
        print("  this network has no camera input: the video interpolates latents only")

    if projected:
        from raycond import inversion
        render = inversion.load(projected, G=G, device=dev).render
    with torch.inference_mode():
        z = gen.seeds_to_z(seed_list, G.z_dim, dev)
        c0 = gen.c_for_network(info, 0.0, 0.0, fov, radius, lookat_vec, batch=z.shape[0], device=dev)
        ws = gen.map_latents(G, z, c0, truncation_psi, truncation_cutoff).cpu().numpy()
    ws = ws.reshape(num_keyframes, cells, *ws.shape[1:])
    ws_frames = interpolate_keyframes(ws, num_frames, loop=num_keyframes > 1)

    frames = []
    h = w = info.img_resolution
    for i in tqdm(range(num_frames), unit="frame", desc="Rendering"):
        runtime.step()       # follow the CPU competition (raycond/runtime.py)
        c = gen.c_for_network(info, float(yaws[i]), float(pitches[i]), fov, radius, lookat_vec, batch=1, device=dev)
        imgs = []
        with torch.inference_mode():
            for s in range(0, cells, batch_size):
                wsf = torch.from_numpy(ws_frames[i, s:s + batch_size]).to(dev, torch.float32)
                img = render(c) if projected else \
                    gen.synthesize(G, wsf, c if info.synthesis_takes_c else None, noise_mode=noise_mode,
                                   force_fp32=force_fp32)
                imgs.append(gen.to_uint8(img).cpu().numpy())
        imgs = np.concatenate(imgs)
        frame = gen.make_grid(imgs, rows, cols)
        frames.append(frame.squeeze(-1) if frame.shape[-1] == 1 else frame)
    write_video(output, frames, fps, verbose=verbose)
    print(f"Wrote {num_frames} frames ({rows * h}x{cols * w}) to {output}")


if __name__ == "__main__":
    main()
