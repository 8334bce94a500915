"""Edit the viewpoint of a photo: invert it into a ray-conditioned network, then render other views.

Reads the options into a raycond.inversion.InversionConfig, cuts the photo to the network's crop
(face landmarks → the network's alignment convention, raycond.align; the centre square without a
face or a detector), inverts it (the library finds the camera unless given, a pivot latent and
tuned weights), prints the input-view PSNR with a domain check (raycond.inversion.domain) and writes:
target.png (the photo as the network sees it), proj.png (the reconstruction), projected.npz (pivot
ws + camera label), inversion.pt (what `raycond.inversion.load`, `gen_images.py --projected` and
`gen_video.py --projected` read; tensors only, no code), views.png (target | reconstruction |
every requested view), with --paste-back edited.png and edited_yaw<Y>.png (the face pasted back into
the whole photo through a feathered face mask) and, with --save-video, an orbit of the edited face.

Examples:
    python projector.py --target=photo.png --outdir=out
    python projector.py --network=net.pkl --target=photo.png --outdir=out --yaw=20 --pitch=-5 \\
        --views=-30,0,30 --pitch-views=-10,0,10 --save-video=orbit.gif
"""

from __future__ import annotations

import json
import os
import sys
import time

import click

from raycond import runtime  # first: it chooses OpenMP's wait policy before torch loads
import torch

from raycond import align
from raycond import atomic_io
from raycond import camera as cam
from raycond import cli_options
from raycond import generate as gen
from raycond import inversion
from raycond import loading
from raycond import target_image
from raycond.video import VIDEO_EXTENSIONS, check_video_path, write_video


def _camera_from_json(path: str, info):
    """--camera-json: {"yaw": deg, "pitch": deg[, "fov": deg]}, {"label": [25 floats]} or [25 floats]."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"--camera-json file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--camera-json {path} is not valid JSON ({e})") from None
    if isinstance(data, dict) and "label" in data:
        data = data["label"]
    if isinstance(data, list):
        if len(data) != cam.LABEL_DIM:
            raise ValueError(f"--camera-json {path}: a label needs {cam.LABEL_DIM} numbers, got {len(data)}")
        return torch.tensor([data], dtype=torch.float32)
    if isinstance(data, dict) and "yaw" in data and "pitch" in data:
        return gen.c_for_network(info, float(data["yaw"]), float(data["pitch"]), data.get("fov"))
    raise ValueError(f"--camera-json {path}: expected {{\"yaw\": .., \"pitch\": ..}}, "
                     f"{{\"label\": [{cam.LABEL_DIM} numbers]}} or a list of {cam.LABEL_DIM} numbers")


@click.command(context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--network", metavar="PATH|URL", help="Network pickle. Default: the bundled checkpoint.")
@click.option("--target", "target", required=True, metavar="FILE", help="Photo to invert (PNG/JPEG): a portrait is cut to the network's crop (--align), otherwise centre-cropped.")
@click.option("--outdir", default="out", show_default=True, type=click.Path(file_okay=False), help="Where to write the results.")
@cli_options.camera_options(angles="known")
@click.option("--camera-json", default=None, metavar="FILE", help='Known camera: {"yaw", "pitch"[, "fov"]} in degrees or {"label": [25 numbers]}.')
@click.option("--num-steps", type=int, default=None, help="Pivot (latent) steps [default: the library's, chosen by measurement].")
@click.option("--tune-steps", type=int, default=None, help="Pivotal tuning steps; 0 skips tuning [default: the library's].")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (noise, locality samples).")
@click.option("--loss", type=click.Choice(inversion.LOSS_KINDS), default="auto", show_default=True, help="Reconstruction loss; auto falls back offline.")
@click.option("--w-plus", is_flag=True, help="Invert in W+ (one w per layer) instead of W.")
@click.option("--option", "extra", multiple=True, metavar="NAME=VALUE", help="Any other InversionConfig field, e.g. camera_start=grid (repeatable; see docs/inversion.md).")
@click.option("--align/--no-align", "do_align", default=None, help="Detect the face and cut the photo to the network's crop convention [default: on when the face detector (raycond[faces]) is installed].")
@click.option("--align-convention", type=click.Choice(("auto",) + align.CONVENTIONS), default="auto", show_default=True, help="Crop convention; auto: from the network (synthetic heads: synth; FFHQ-style: ffhq).")
@click.option("--paste-back", is_flag=True, help="Also write edited.png (and edited_yaw*.png per view): the turned face pasted into the whole photo.")
@click.option("--views", default="-30,0,30", show_default=True, help="Yaws (degrees, absolute) of the views in views.png.")
@click.option("--pitch-views", default="0", show_default=True, help="Pitches (degrees, absolute) of the views; each with every yaw.")
@click.option("--save-video", default=None, metavar="FILE", help=f"Also write an orbit video of the edited face ({', '.join(VIDEO_EXTENSIONS)}; in --outdir unless a path).")
@cli_options.runtime_options()
@click.option("--verbose", is_flag=True, help="Show full tracebacks on errors.")
def main(verbose, num_threads, **kwargs):
    """Invert a photo into a network and render it from other viewpoints."""
    runtime.start(num_threads)
    with cli_options.one_line_errors(verbose):
        project(**kwargs)


def build_config(num_steps, tune_steps, seed, loss, w_plus, extra=(), fp32=False) -> inversion.InversionConfig:
    """The options as one InversionConfig (unset step counts keep the library's defaults; --fp32
    wins over --option fp32=..., which sets the field when the flag is not given)."""
    changes = dict(seed=seed, loss=loss, w_plus=w_plus)
    for item in extra:
        try:
            name, value = inversion.InversionConfig.parse_assignment(item)
        except ValueError as e:
            raise ValueError(f"--option: {e}") from None
        changes[name] = value
    changes.update({k: v for k, v in dict(num_steps=num_steps, tune_steps=tune_steps).items() if v is not None})
    if fp32:
        changes["fp32"] = True
    try:
        return inversion.InversionConfig().replace(**changes)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--option: {e}") from None


class StageProgress:
    """The library's progress callback as a tqdm bar, opened at the first report and closed (its
    line cleared) by `close`, so that an error before or during the inversion prints on a clean line."""

    DESCRIPTIONS = {"camera": "start (camera and latent read off the photo)", "pivot": "latent and camera optimisation",
                    "tune": "pivotal tuning with locality"}

    def __init__(self):
        self.bar = None
        self.seen = set()

    def __call__(self, step, total, stage, value, preview):
        from tqdm import tqdm
        if stage not in self.seen:
            self.seen.add(stage)
            tqdm.write(f"stage {stage}: {self.DESCRIPTIONS.get(stage, stage)}")
        if self.bar is None:
            self.bar = tqdm(total=total, unit="step", leave=False)
        self.bar.total = total
        self.bar.set_postfix_str(f"{stage} loss {value:.4f}" if value == value else stage, refresh=False)  # NaN: training
        self.bar.update(step - self.bar.n)
        return True

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def project(network, target, outdir, yaw, pitch, fov, radius, lookat, preset, camera_json, num_steps, tune_steps,
            seed, loss, w_plus, views, pitch_views, save_video, device, extra=(), trust_pickle=False, do_align=None,
            align_convention="auto", paste_back=False, fp32=False):
    start = time.time()
    if (yaw is None) != (pitch is None):
        raise ValueError("give both --yaw and --pitch (or neither, to estimate the camera)")
    if camera_json and yaw is not None:
        raise ValueError("give --yaw/--pitch or --camera-json, not both")
    if yaw is None and any(v is not None for v in (fov, radius, lookat, preset)):
        raise ValueError("--fov/--radius/--lookat/--preset describe a known camera: give them with --yaw and --pitch "
                         "(an estimated camera uses the network's training camera)")
    config = build_config(num_steps, tune_steps, seed, loss, w_plus, extra, fp32)
    fov, radius, lookat_vec = cli_options.camera_model(fov, radius, lookat, preset)
    view_yaws, view_pitches = gen.parse_float_list(views), gen.parse_float_list(pitch_views)
    if save_video:
        check_video_path(save_video, "--save-video")
    atomic_io.prepare_output_folder(outdir)   # before the inversion: a read-only folder fails at once
    dev = gen.resolve_device(device)
    network = loading.resolve_network_arg(network)
    print(f'Loading network from "{network}"...')
    G, info, D = loading.load_generator_and_discriminator(network, trust_pickle=trust_pickle)
    G = G.to(dev)
    print(f"  {info.summary()}")
    camera = None
    if camera_json:
        camera = _camera_from_json(camera_json, info)
    elif yaw is not None:
        camera = gen.c_for_network(info, yaw, pitch, fov, radius, lookat_vec)

    notes = []
    photo = target_image.load_photo(target, notes)
    convention = align.convention_for_network(info, network) if align_convention == "auto" else align_convention
    if do_align is None:
        do_align = align.detector_available()
    crop, alignment = align.align_photo(photo, convention if do_align else "center", info.img_resolution,
                                        detect=do_align or paste_back)
    if alignment.message:
        print(alignment.message)
    if alignment.convention != "center":
        print(f"face found: cut to the '{alignment.convention}' crop" + (f" ({'; '.join(notes)})" if notes else ""))
    # FFHQ-style networks start the camera at the head pose of the face landmarks (the encoder's camera
    # otherwise); the pivot refines it. The pose is read in the crop's frame (no roll): align.camera_hint.
    camera_hint = align.camera_hint(alignment, convention) if do_align and camera is None and info.camera else None
    if camera_hint is not None:
        print(f"camera start from the face landmarks: yaw {camera_hint[0]:+.1f} deg, pitch {camera_hint[1]:+.1f} deg")

    from tqdm import tqdm
    progress = StageProgress()
    try:
        # The centre crop goes through the library's own conversion, which names what it changed.
        res = inversion.invert(G, target if alignment.convention == "center" else crop, camera=camera, config=config, device=dev, progress=progress, info=info, D=D,
                               network_path=os.path.abspath(network) if os.path.exists(network) else network,
                               log=tqdm.write, camera_hint=camera_hint)
    finally:
        progress.close()
    m = res.meta
    if m["has_camera"]:
        print(f"camera ({camera_source(m)}): yaw {m['yaw_deg']:+.1f} deg, pitch {m['pitch_deg']:+.1f} deg, FOV {m['fov_deg']:.2f} deg")
    report_domain(res, G, info, crop, alignment, dev)
    written = write_results(res, info, outdir, view_yaws, view_pitches, save_video)
    if paste_back:
        written += write_paste_back(res, photo, alignment, outdir, view_yaws, view_pitches)
    print(f"Wrote {', '.join(written)} to {outdir} in {time.time() - start:.1f} s")


def camera_source(meta: dict) -> str:
    """Where the inversion's camera came from, as projector prints it."""
    if not meta["camera_estimated"]:
        return "given"
    refined = meta.get("camera_refined", True)   # inversions from before it was recorded refined it
    if str(meta.get("camera_start", "")).endswith("+landmarks"):
        return "from the face landmarks" + (", refined by the pivot" if refined else "")
    return "estimated, refined by the pivot" if refined else \
        "read by the encoder's camera reader (trained on labelled photos)"


def report_domain(res, G, info, crop, alignment, dev):
    """Input-view PSNR and the domain check of the crop the network saw, with its warning."""
    import numpy as np
    from raycond.inversion import domain
    recon = gen.to_uint8(res.render().cpu()).numpy()[0].astype(np.float64)
    target = res.target.permute(0, 2, 3, 1).numpy()[0].astype(np.float64)
    psnr = 10 * np.log10(255.0 ** 2 / max(np.mean((recon - target) ** 2), 1e-10))
    fp = res.meta.get("fingerprint") or inversion.fingerprint(G)   # invert() already hashed the weights
    # the first calibration of a network renders ~1000 of its samples: show it
    rep = domain.check(G, info, crop, fp, alignment.convention, device=dev,
                       progress=cli_options.progress_bar("domain check", unit="img"))
    verdict = "in domain" if rep.in_domain else "OUT OF DOMAIN"
    print(f"input view: PSNR {psnr:.1f} dB; domain score {rep.score:.2f} ({verdict}; the network's own samples "
          f"score about 1 or less, above {domain.THRESHOLD} is out)")
    if rep.warning:
        print(f"warning: {rep.warning}")


def write_paste_back(res, photo, alignment, outdir, view_yaws, view_pitches) -> list[str]:
    """edited.png (the reconstruction pasted into the photo) and edited_yaw<Y>[_pitch<P>].png per view."""
    if alignment.landmarks is None:
        print("  --paste-back: no face was found in the photo, so there is no face mask to paste through; skipped")
        return []
    mask = alignment.mask()
    out = {"edited.png": alignment.paste_back(photo, _to_img(res.render())[0], mask)}
    if res.meta["has_camera"]:
        for p in view_pitches:
            imgs = _to_img(res.render(res.camera_at(view_yaws, [p] * len(view_yaws))))
            for y, img in zip(view_yaws, imgs):
                name = f"edited_yaw{y:+g}" + (f"_pitch{p:+g}" if len(view_pitches) > 1 or p else "") + ".png"
                out[name] = alignment.paste_back(photo, img, mask)
    with atomic_io.ResultSet() as rs:
        for name, img in out.items():
            rs.save_image(os.path.join(outdir, name), img)
    return list(out)


def _to_img(t):
    a = gen.to_uint8(t.cpu()).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def _views_grid(res, target_u8, recon_u8, view_yaws, view_pitches):
    """views.png: one row per pitch: target | reconstruction | each yaw."""
    import numpy as np
    if not res.meta["has_camera"]:
        print("  this network has no camera input: views.png holds the target and the reconstruction only")
        return gen.make_grid(np.concatenate([target_u8, recon_u8]), 1, 2, pad=2)
    rows = []
    for p in view_pitches:
        imgs = gen.to_uint8(res.render(res.camera_at(view_yaws, [p] * len(view_yaws))).cpu()).numpy()
        rows.append(np.concatenate([target_u8, recon_u8, imgs]))
    return gen.make_grid(np.concatenate(rows), len(rows), len(view_yaws) + 2, pad=2)


def _orbit_frames(res, info):
    stats = info.camera_stats or {}
    yaws, pitches = cam.orbit_path("yaw-pitch-ellipse", 60, tuple(stats.get("yaw_range_deg", (-30, 30))),
                                   tuple(stats.get("pitch_range_deg", (-10, 10))))
    frames = []
    for i in range(0, len(yaws), 8):
        c = res.camera_at(yaws[i:i + 8], pitches[i:i + 8]) if res.meta["has_camera"] else None
        frames.extend(_to_img(res.render(c)))
    return frames


def write_results(res, info, outdir, view_yaws, view_pitches, save_video) -> list[str]:
    """target.png, proj.png, projected.npz, inversion.pt and views.png as one set (all or none,
    raycond.atomic_io), then the video; returns the names written."""
    target_u8 = res.target.permute(0, 2, 3, 1).numpy()
    recon = res.render()
    recon_u8 = gen.to_uint8(recon.cpu()).numpy()
    grid = _views_grid(res, target_u8, recon_u8, view_yaws, view_pitches)
    arrays = dict(ws=res.ws.cpu().numpy(), c=res.camera.cpu().numpy(), **({} if res.z is None else {"z": res.z.cpu().numpy()}))
    with atomic_io.ResultSet() as rs:
        rs.save_image(os.path.join(outdir, "target.png"), target_u8[0])
        rs.save_image(os.path.join(outdir, "proj.png"), _to_img(recon)[0])
        rs.save_npz(os.path.join(outdir, "projected.npz"), **arrays)
        rs.save_torch(os.path.join(outdir, "inversion.pt"), res.payload())
        rs.save_image(os.path.join(outdir, "views.png"), grid)
    written = ["target.png", "proj.png", "projected.npz", "inversion.pt", "views.png"]
    if save_video:
        path = save_video if os.path.dirname(save_video) else os.path.join(outdir, save_video)
        write_video(path, _orbit_frames(res, info), fps=30)
        written.append(os.path.relpath(path, outdir) if path.startswith(outdir) else path)
    return written


if __name__ == "__main__":
    sys.exit(main())
