"""Photo inversion measured against ground-truth novel views (prints a table, asserts nothing).

The synthetic heads of raycond.synth are real 3D scenes, so the head in a "photo" can be rendered
at any other camera: that gives ground truth for viewpoint editing, which no face benchmark has.
For N held-out heads (seed not used for the training data) rendered at a random camera of the
training distribution, each row renders the head at the input camera and at novel cameras (yaw
±15°, ±30°, pitch ±10° from the input) and compares with the true renders (PSNR, SSIM):

  (a) copy      the input photo itself, as if the view had not changed;
  (b) random    a random sample of the network at the right cameras;
  (s) start     the start of (d) (the encoder's camera and w) rendered by the untuned network;
  (c) W         the pivot of (d) rendered by the untuned network (camera estimated);
  (d) W+PTI     pivot + pivotal tuning, camera estimated (the default `invert`);
  (e) (d) with the true camera given.

Rows render at the true cameras, so camera-estimation error counts against (s), (c) and (d)
everywhere. A second table is the quality/time frontier of one default inversion: its start alone,
start + pivot, + pivotal tuning, each with the seconds spent until then, mean and worst over heads.

With `--truth=samples` the "photos" are the network's own samples instead, and the truth at every
camera is the network's render of the true latent: the same rows then show what the inversion reaches
for a face the network can draw, which separates the inversion's limits from the network's.

    python benchmarks/bench_inversion.py --num-heads=16 --threads=2
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raycond import runtime  # noqa: E402  (first: it chooses OpenMP's wait policy before torch loads)

import math  # noqa: E402
import time  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from raycond import camera as cam  # noqa: E402
from raycond import generate as rgen  # noqa: E402
from raycond import inversion, loading, synth  # noqa: E402

DEFAULT_NETWORK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "checkpoints", "raycond2-synthheads-64.pkl")
VIEWS = [("input", 0, 0), ("yaw-30", -30, 0), ("yaw-15", -15, 0), ("yaw+15", 15, 0), ("yaw+30", 30, 0),
         ("pitch-10", 0, -10), ("pitch+10", 0, 10)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5) of two HxWx3 uint8 images, channel mean."""
    x = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].double()
    y = torch.from_numpy(np.array(b)).permute(2, 0, 1)[None].double()
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    g = (g / g.sum())
    k = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, k, groups=3)
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def view_cameras(yaw, pitch):
    return cam.camera_label([yaw + dy for _, dy, _ in VIEWS], [pitch + dp for _, _, dp in VIEWS])


@click.command()
@click.option("--network", default=DEFAULT_NETWORK, show_default=True, help="Network pickle to invert into.")
@click.option("--num-heads", default=16, show_default=True, type=int, help="Held-out heads to invert.")
@click.option("--seed", default=2024, show_default=True, type=int, help="Head/camera seed (training data used 0).")
@click.option("--num-steps", default=None, type=int, help="Pivot steps [default: the library's].")
@click.option("--tune-steps", default=None, type=int, help="Tuning steps [default: the library's].")
@click.option("--loss", default="auto", show_default=True, help="Inversion loss (auto, lpips, d, pixel).")
@click.option("--rows", default="abscde", show_default=True, help="Which rows to run.")
@click.option("--option", "extra", multiple=True, help="Other InversionConfig field NAME=VALUE (e.g. locality_weight=2).")
@click.option("--truth", "truth_kind", type=click.Choice(["heads", "samples"]), default="heads", show_default=True,
              help="What is inverted: held-out synthetic heads rendered by raycond.synth, or the network's own "
                   "samples (truncation 0.7; the truth is the network's render of the true w at every camera: "
                   "what the inversion reaches when the face is one the network can draw).")
@click.option("--threads", "threads_opt", type=click.IntRange(min=0), default=0, show_default=True, help=runtime.THREADS_HELP)
def main(network, num_heads, seed, num_steps, tune_steps, loss, rows, extra, truth_kind, threads_opt):
    """Invert held-out synthetic heads and compare novel views with the true renders."""
    runtime.start(threads_opt)
    G, info, D = loading.load_generator_and_discriminator(network)  # D (or None): for --loss=d
    config = inversion.InversionConfig(loss=loss).replace(
        **dict(inversion.InversionConfig.parse_assignment(item) for item in extra),
        **{k: v for k, v in dict(num_steps=num_steps, tune_steps=tune_steps).items() if v is not None})
    rng = np.random.default_rng(seed)
    params = synth.sample_head_params(rng, num_heads)
    cams_in = synth.sample_cameras(rng, num_heads)
    scores = {r: {v[0]: [] for v in VIEWS} for r in rows}
    cam_err = {"s": [], "c": [], "d": []}
    secs = {r: [] for r in rows + "sc"}   # the frontier's stages are timed whichever rows run
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"network {network} ({info.summary()}), {num_heads} {'heads' if truth_kind == 'heads' else 'own samples'}, seed {seed}, threads {torch.get_num_threads()}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    for h in range(num_heads):
        head = synth.select_heads(params, [h] * len(VIEWS))
        yaw, pitch, _ = (math.degrees(float(v)) for v in cam.yaw_pitch_from_pose(cams_in[h, :16].reshape(4, 4)))
        cams = view_cameras(yaw, pitch)
        truth = synth.render_heads(head, cams, info.img_resolution, supersample=2) if truth_kind == "heads" else \
            own_sample(G, cams, rng)
        outs = invert_rows(G, info, D, config, truth[0], cams, (yaw, pitch), rows, seed * 1000 + h, h, cam_err, secs)
        for row, imgs in outs.items():
            for i, (view, _, _) in enumerate(VIEWS):
                scores[row][view].append((psnr(imgs[i], truth[i]), ssim(imgs[i], truth[i])))
        err = f"camera error {cam_err['d'][-1]:.1f} deg (start {cam_err['s'][-1]:.1f})" if cam_err["d"] else ""
        print(f"head {h + 1}/{num_heads}: yaw {yaw:+.1f} pitch {pitch:+.1f} {err}", flush=True)
    print()
    print_table(rows, scores, cam_err, secs)
    if cam_err["d"]:
        print_frontier(scores, cam_err, secs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end: {load:.1f}")


def own_sample(G, cams, rng) -> np.ndarray:
    """The network's render (N, H, W, 3) uint8 of one random latent (truncation 0.7) at `cams`."""
    z = torch.from_numpy(rng.standard_normal((1, G.z_dim))).float()
    with torch.no_grad():
        device = next(G.parameters()).device
        z, cams = z.to(device), cams.to(device)
        ws = G.mapping(z, rgen.mapping_c(G, cams[:1], 1, device), truncation_psi=0.7)
        return rgen.to_uint8(rgen.synthesize(G, ws.expand(len(cams), -1, -1), cams)).numpy()


def invert_rows(G, info, D, config, photo, cams, true_camera, rows, random_seed, h, cam_err, secs) -> dict:
    """Each row's renders (N, H, W, 3) uint8 at `cams` for one head; appends camera errors and seconds."""
    outs = {}
    if "a" in rows:
        outs["a"] = np.repeat(photo[None], len(VIEWS), 0)
    if "b" in rows:
        outs["b"] = rgen.generate_images(G, [random_seed] * len(VIEWS), c=cams)
    if set(rows) & set("scd"):
        t = time.time()
        r = inversion.invert(G, photo, config=config.replace(seed=h), info=info, D=D, verbose=h == 0)
        secs["d"].append(time.time() - t)
        st = r.meta["stage_seconds"]
        secs["s"].append(st["camera"])
        secs["c"].append(st["camera"] + st["pivot"])
        m = r.meta
        cam_err["d"].append(math.hypot(m["yaw_deg"] - true_camera[0], m["pitch_deg"] - true_camera[1]))
        cam_err["c"].append(cam_err["d"][-1])
        cam_err["s"].append(math.hypot(m["start_yaw_deg"] - true_camera[0], m["start_pitch_deg"] - true_camera[1]))
        with torch.no_grad():
            if "s" in rows:
                outs["s"] = rgen.to_uint8(rgen.synthesize(G, r.start_ws.expand(len(VIEWS), -1, -1), cams)).numpy()
            if "c" in rows:
                outs["c"] = rgen.to_uint8(rgen.synthesize(G, r.ws.expand(len(VIEWS), -1, -1), cams)).numpy()
        if "d" in rows:
            outs["d"] = rgen.to_uint8(r.render(cams)).numpy()
    if "e" in rows:
        t = time.time()
        r = inversion.invert(G, photo, camera=cams[:1], config=config.replace(seed=h), info=info, D=D, verbose=False)
        secs["e"].append(time.time() - t)
        outs["e"] = rgen.to_uint8(r.render(cams)).numpy()
    return outs


NAMES = {"a": "(a) copy", "b": "(b) random", "s": "(s) start", "c": "(c) W", "d": "(d) W+PTI", "e": "(e) W+PTI true cam"}


def print_table(rows, scores, cam_err, secs):
    print("PSNR dB / SSIM, mean over heads")
    print("| row | " + " | ".join(v[0] for v in VIEWS) + " | novel mean | cam err (deg) | s/inv |")
    print("|" + "---|" * (len(VIEWS) + 4))
    for row in rows:
        cells, novel = [], []
        for view, _, _ in VIEWS:
            vals = np.array(scores[row][view])
            if row == "a" and view == "input":
                cells.append("—")
                continue
            cells.append(f"{vals[:, 0].mean():.2f} / {vals[:, 1].mean():.3f}")
            if view != "input":
                novel.append(vals[:, 0].mean())
        ce = f"{np.mean(cam_err[row]):.2f} (max {np.max(cam_err[row]):.1f})" if cam_err.get(row) else "—"
        ce = "given" if row == "e" else ce
        s = f"{np.mean(secs[row]):.1f}" if secs.get(row) else "—"
        print(f"| {NAMES[row]} | " + " | ".join(cells) + f" | {np.mean(novel):.2f} | {ce} | {s} |")


def print_frontier(scores, cam_err, secs):
    """Quality against time within one default inversion: mean (worst) over heads."""
    print()
    print("Quality/time frontier of the default inversion, mean (worst) over heads")
    print("| stage | seconds | camera err (deg) | input PSNR | novel mean PSNR |")
    print("|---|---|---|---|---|")
    for row, name in (("s", "start (encoder) only"), ("c", "+ pivot"), ("d", "+ pivotal tuning")):
        if row not in scores:
            continue
        inp = np.array([v[0] for v in scores[row]["input"]])
        novel = np.mean([[v[0] for v in scores[row][k]] for k, _, _ in VIEWS if k != "input"], axis=0)
        ce = np.array(cam_err[row])
        print(f"| {name} | {np.mean(secs[row]):.2f} | {ce.mean():.2f} ({ce.max():.1f}) | {inp.mean():.2f} ({inp.min():.2f}) "
              f"| {novel.mean():.2f} ({novel.min():.2f}) |")


if __name__ == "__main__":
    main()
