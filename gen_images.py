"""Generate images from a network snapshot: seeds × camera views → PNG files.

Examples:
    python gen_images.py --outdir=out --trunc=1 --seeds=2 --network=weights/raycond-ffhq-512x512.pkl
    python gen_images.py --outdir=out --seeds=0-7 --yaw=-30,0,30 --grid    # multi-view grid
"""

from __future__ import annotations

import os

import click

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
from raycond import atomic_io
from raycond import cli_options
from raycond import generate as gen


def _fmt_angle(x: float) -> str:
    return f"{x:g}".replace("-", "m") if x < 0 else f"{x:g}"


@click.command(context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--network", "network", metavar="PATH|URL", help="Network pickle (path, URL or run snapshot). Default: the bundled checkpoint.")
@click.option("--seeds", default="0-3", show_default=True, help="Seeds: a list '1,5,9', a range '0-31', or both.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True, help="Truncation psi (1 = none).")
@click.option("--trunc-cutoff", "truncation_cutoff", type=int, default=None, help="Truncate only the first N ws (default: all).")
@click.option("--noise-mode", type=click.Choice(gen.NOISE_MODES), default="const", show_default=True, help="Per-pixel noise inputs.")
@click.option("--outdir", type=click.Path(file_okay=False), default="out", show_default=True, help="Where to write PNGs.")
@cli_options.camera_options(angles="views")
@click.option("--class", "class_idx", type=int, default=None, help="Class index for class-conditional (non-camera) networks.")
@click.option("--grid", is_flag=True, help="Also write grid.png: rows are seeds, columns are views.")
@cli_options.runtime_options(batch_default=8)
@click.option("--projected", default=None, metavar="FILE", help="Render an inverted photo (projector.py's inversion.pt) at the views instead of seeds.")
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors.")
def main(**kwargs):
    """Generate images (seeds × camera views) with a pretrained network."""
    verbose = kwargs.pop("verbose")
    with cli_options.one_line_errors(verbose):
        runtime.start(kwargs.pop("num_threads"))
        generate(**kwargs)


def generate(network, seeds, truncation_psi, truncation_cutoff, noise_mode, outdir, yaw, pitch, fov, radius,
             lookat, preset, class_idx, grid, device, batch_size, trust_pickle=False, fp32=False, projected=None):
    import numpy as np
    import torch
    from tqdm import tqdm

    seed_list = gen.parse_int_list(seeds)
    yaws, pitches = gen.parse_float_list(yaw), gen.parse_float_list(pitch)
    if len(yaws) != len(pitches) and 1 not in (len(yaws), len(pitches)):
        raise ValueError(f"--yaw has {len(yaws)} values and --pitch {len(pitches)}: give equal counts or one of them")
    n_views = max(len(yaws), len(pitches))
    yaws = yaws * n_views if len(yaws) == 1 else yaws
    pitches = pitches * n_views if len(pitches) == 1 else pitches
    if batch_size < 1:
        raise ValueError("--batch must be at least 1")
    cli_options.check_pitches(pitches)
    fov, radius, lookat_vec = cli_options.camera_model(fov, radius, lookat, preset)

    dev, G, info, force_fp32 = cli_options.open_network(network, projected, device, trust_pickle, fp32)

    if info.camera:
        cli_options.warn_outside_training_poses(info, yaws, pitches)
        cams = [gen.c_for_network(info, y, p, fov, radius, lookat_vec, device=dev) for y, p in zip(yaws, pitches)]
    else:
        if n_views > 1 or yaw != "0" or pitch != "0":
            print("  this network has no camera input: --yaw/--pitch/--fov are ignored")
        yaws, pitches, n_views = [0.0], [0.0], 1
        c = torch.zeros([1, info.c_dim], device=dev)
        if info.c_dim:
            if class_idx is None:
                raise ValueError(f"this network is class-conditional ({info.c_dim} classes): give --class")
            c = gen.class_label(info.c_dim, class_idx, dev)
        elif class_idx is not None:
            print("  warning: --class ignored (network is unconditional)")
        cams = [c]

    atomic_io.prepare_output_folder(outdir)  # also removes PNGs half-written by a killed earlier run
    rows = []
    if projected:  # the inverted photo (inversion.pt) at every view, in place of seeds
        from raycond import inversion
        res = inversion.load(projected, G=G, device=dev)
        seed_list, rows = [0], [gen.to_uint8(res.render(c)).cpu().numpy() for c in cams]
        for view, img in enumerate(rows):
            name = "proj.png" if n_views == 1 else f"proj-yaw{_fmt_angle(yaws[view])}-pitch{_fmt_angle(pitches[view])}.png"
            atomic_io.save_image(os.path.join(outdir, name), img[0])
        cams = []
    bar = None if projected else tqdm(total=len(seed_list) * n_views, unit="img", disable=len(seed_list) * n_views < 4)
    try:
        for view, c in enumerate(cams):
            imgs = gen.generate_images(G, seed_list, c, truncation_psi=truncation_psi,
                                       truncation_cutoff=truncation_cutoff, noise_mode=noise_mode,
                                       batch_size=batch_size, device=dev, force_fp32=force_fp32,
                                       on_batch=runtime.step)
            for seed, img in zip(seed_list, imgs):
                name = f"seed{seed:04d}.png" if n_views == 1 else \
                    f"seed{seed:04d}-yaw{_fmt_angle(yaws[view])}-pitch{_fmt_angle(pitches[view])}.png"
                atomic_io.save_image(os.path.join(outdir, name), img)
            rows.append(imgs)
            bar.update(len(seed_list))
    finally:
        if bar is not None:
            bar.close()   # so that an error starts on a line of its own
    if grid:
        stacked = np.stack(rows, axis=1).reshape(-1, *rows[0].shape[1:])  # seed-major
        g = gen.make_grid(stacked, len(seed_list), n_views)
        atomic_io.save_image(os.path.join(outdir, "grid.png"), g)
    print(f"Wrote {len(seed_list) * n_views} image(s){' and grid.png' if grid else ''} to {outdir}")


if __name__ == "__main__":
    main()
