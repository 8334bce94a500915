"""Head pose from face landmarks (raycond.align.head_pose) against known cameras (prints a table, asserts nothing).

Synthetic heads of raycond.synth are rendered at random cameras of the training distribution
(yaw ~ N(0, 20°), pitch ~ N(0, 8°)); the face mesh (MediaPipe, raycond.align.detect_landmarks)
finds each face and `head_pose` turns its landmarks into (yaw, pitch). Per resolution the table
gives the detection rate and, in degrees, the mean and max absolute yaw and pitch errors, the
mean signed error (a constant bias) and the slope of estimated against true angle (1: no over- or
underestimate of turns), and the angular error (hypot of the two) as bench_inversion.py reports
cameras. Synthetic heads are not real faces, so the mesh may be biased on them in ways it is not
on photos; two real photos (skimage's astronaut, matplotlib's grace_hopper.jpg) only get their
estimated pose printed. --roll tilts the renders in their plane (orbit cameras have no roll) and
reads the pose both from the photo's landmarks and in the 'ffhq' crop's frame (what projector.py
passes to the inversion, raycond.align.camera_hint).

    python benchmarks/bench_head_pose.py --num-heads=40 --resolutions=256 --roll=20
    python benchmarks/bench_head_pose.py --num-heads=40 --resolutions=64 --supersample=2 --no-photos
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raycond import runtime  # noqa: E402  (first: it chooses OpenMP's wait policy before torch loads)

import click  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from raycond import align, synth  # noqa: E402
from raycond.camera import yaw_pitch_from_pose  # noqa: E402


def real_photos() -> dict:
    """The two sample portraits the tests use, as H x W x 3 uint8 (missing ones are skipped)."""
    photos = {}
    try:
        from skimage import data as skdata
        photos["astronaut"] = skdata.astronaut()
    except Exception as e:  # noqa: BLE001  (an optional sample)
        print(f"astronaut: not available ({e})")
    try:
        import PIL.Image
        from matplotlib import cbook
        photos["grace_hopper"] = np.asarray(PIL.Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    except Exception as e:  # noqa: BLE001
        print(f"grace_hopper: not available ({e})")
    return photos


def estimate(imgs, in_crop: bool = False):
    """(N, 2) head_pose of each image (NaN rows where no face was found), seconds per image. in_crop:
    read in the 'ffhq' crop's frame (raycond.align.camera_hint, as projector.py does) instead of the photo's."""
    est = np.full((len(imgs), 2), np.nan)
    t0 = time.time()
    for i, im in enumerate(imgs):
        lm = align.detect_landmarks(im)
        if lm is None:
            continue
        if in_crop:
            h, w = im.shape[:2]
            al = align.Alignment("ffhq", align.crop_matrix(lm, "ffhq", w, w, h), w, w, h, lm)
            est[i] = align.camera_hint(al, "ffhq")
        else:
            est[i] = align.head_pose(lm)
    return est, (time.time() - t0) / len(imgs)


def rolled(imgs, max_roll: float, rng):
    """Each image turned in its plane by a random angle within ±max_roll degrees (a tilted head)."""
    import PIL.Image
    angles = rng.uniform(-max_roll, max_roll, len(imgs))
    out = [np.asarray(PIL.Image.fromarray(im).rotate(a, resample=PIL.Image.BICUBIC)) for im, a in zip(imgs, angles)]
    return np.stack(out)


@click.command()
@click.option("--num-heads", default=40, show_default=True, type=click.IntRange(min=1), help="Synthetic heads to render.")
@click.option("--seed", default=7, show_default=True, type=int, help="Head/camera seed (the training data used 0).")
@click.option("--resolutions", default="256", show_default=True, help="Comma-separated render sizes (square).")
@click.option("--supersample", default=1, show_default=True, type=click.IntRange(min=1), help="Rays per pixel side when rendering.")
@click.option("--photos/--no-photos", default=True, show_default=True, help="Also print the pose of the two sample photos.")
@click.option("--roll", default=0.0, show_default=True, type=click.FloatRange(min=0, max=45), help="Also tilt the renders in their plane by up to this many degrees and read the pose in the photo's and in the 'ffhq' crop's frame.")
@click.option("--per-head", is_flag=True, help="Print every head's true and estimated angles.")
@click.option("--threads", "threads_opt", type=click.IntRange(min=0), default=0, show_default=True, help=runtime.THREADS_HELP)
def main(num_heads, seed, resolutions, supersample, roll, photos, per_head, threads_opt):
    """Measure head_pose (face-mesh landmarks) against the true cameras of synthetic heads."""
    runtime.start(threads_opt)
    align._face_mesh()   # raises FaceDetectorUnavailable (pip install raycond[faces]) before any rendering
    rng = np.random.default_rng(seed)
    params = synth.sample_head_params(rng, num_heads)
    cams = synth.sample_cameras(rng, num_heads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{num_heads} heads, seed {seed}, supersample {supersample}, load average {load:.1f} on {os.cpu_count()} CPUs")
    y, p, _ = yaw_pitch_from_pose(torch.as_tensor(cams)[:, :16].reshape(-1, 4, 4))
    true = np.degrees(np.stack([y.numpy(), p.numpy()], 1).astype(np.float64))
    rows = []
    for res in (int(r) for r in resolutions.split(",") if r.strip()):
        t0 = time.time()
        imgs = synth.render_heads(params, cams, res, supersample=supersample)
        print(f"rendered {num_heads} heads at {res}² in {time.time() - t0:.1f} s", flush=True)
        runs = [(f"{res}²", imgs, False)]
        if roll > 0:
            tilted = rolled(imgs, roll, np.random.default_rng(seed + 1))
            runs += [(f"{res}², roll ±{roll:g}°, photo's frame", tilted, False),
                     (f"{res}², roll ±{roll:g}°, 'ffhq' crop's frame", tilted, True)]
        for name, ims, in_crop in runs:
            est, detect_s = estimate(ims, in_crop)
            rows.append((name, est, np.isfinite(est[:, 0]), detect_s))
            if per_head:
                print(f"\n{name}: true yaw, pitch -> estimated yaw, pitch (deg)")
                for t, e in zip(true, est):
                    print(f"  {t[0]:+6.1f} {t[1]:+6.1f} -> {e[0]:+6.1f} {e[1]:+6.1f}")
    print()
    print("| renders | detected | yaw mean abs (max) | yaw signed | yaw slope | pitch mean abs (max) | pitch signed "
          "| pitch slope | angular mean (max) | ms/image (mesh + pose) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, est, ok, detect_s in rows:
        if not ok.any():
            print(f"| {name} | 0/{num_heads} | — | — | — | — | — | — | — | {1000 * detect_s:.0f} |")
            continue
        err = est[ok] - true[ok]
        ang = np.hypot(err[:, 0], err[:, 1])
        cells = []
        for k in range(2):
            slope = np.polyfit(true[ok, k], est[ok, k], 1)[0] if ok.sum() > 1 else float("nan")
            cells += [f"{np.abs(err[:, k]).mean():.2f} ({np.abs(err[:, k]).max():.1f})", f"{err[:, k].mean():+.2f}",
                      f"{slope:.3f}"]
        print(f"| {name} | {ok.sum()}/{num_heads} | " + " | ".join(cells) +
              f" | {ang.mean():.2f} ({ang.max():.1f}) | {1000 * detect_s:.0f} |")
    if photos:
        print()
        print("| photo | size | face | yaw | pitch | yaw, pitch in the 'ffhq' crop |")
        print("|---|---|---|---|---|---|")
        for name, im in real_photos().items():
            lm = align.detect_landmarks(im)
            size = f"{im.shape[1]}x{im.shape[0]}"
            if lm is None:
                print(f"| {name} | {size} | no | — | — | — |")
            else:
                yaw, pitch = align.head_pose(lm)
                h, w = im.shape[:2]
                al = align.Alignment("ffhq", align.crop_matrix(lm, "ffhq", 256, w, h), 256, w, h, lm)
                cy, cp = align.camera_hint(al, "ffhq")
                print(f"| {name} | {size} | yes | {yaw:+.1f} | {pitch:+.1f} | {cy:+.1f}, {cp:+.1f} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average at the end: {load:.1f}")


if __name__ == "__main__":
    main()
