"""Does a photo look like the network's training images? A score, calibrated on the network itself.

Inversion always returns *something*: a tuned generator reproduces even a photo unlike anything
it was trained on, and the turned views are then not that face. The check asks two questions of
the crop the network sees, both answered against the network's own samples (which copy its
training images), rendered at cameras over the training range:
- *Is it made of the same images?* The residual of the crop (at 32²) after projecting it onto
  the first `PCA_DIMS` principal components of the samples: samples and training-like images lie
  near that subspace, other pictures do not.
- *Does it have the same texture?* Image-gradient and Laplacian magnitudes (mean, spread, 90th
  percentile) at full, half and quarter resolution, as an RMS z-score against the samples'.
Each is divided by its 99th percentile on held-out samples (so the network's own samples read
≤ 1) and the score is their root mean square. Measured on the bundled network (docs/inversion.md):
held-out samples ≤ 1.32, held-out synthetic heads ≤ 1.21, aligned or centred real portraits ≥ 1.66;
`THRESHOLD` sits between. The discriminator's block features were tried first and do not separate
them (real photos scored like samples). Calibrations are cached per network fingerprint in
dnnlib's cache (`raycond-domain/`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

import dnnlib
from raycond import generate as rgen
from raycond.pose_regressor import QUICK_ENV

VERSION = 2
THRESHOLD = 1.45  # score above this: out of domain
SCALES = (1, 2, 4)
PCA_SIZE = 32     # side of the image the subspace residual is measured at
PCA_DIMS = 64


@dataclasses.dataclass
class Calibration:
    """What the network's own samples look like: their texture statistics and their principal subspace."""

    tex_mean: np.ndarray   # (15,) texture statistics' mean
    tex_std: np.ndarray    # (15,) and standard deviation
    tex_p99: float         # 99th percentile of held-out samples' RMS z-score
    pca_mean: np.ndarray   # (PCA_SIZE² · C,) mean image at PCA_SIZE², values in [0, 1]
    pca_basis: np.ndarray  # (PCA_DIMS, PCA_SIZE² · C) orthonormal rows
    pca_p99: float         # 99th percentile of held-out samples' residual norm
    num_samples: int


@dataclasses.dataclass
class DomainReport:
    score: float           # RMS of the two normalised distances; the network's own samples read about ≤ 1
    in_domain: bool        # score <= THRESHOLD
    warning: str | None    # one plain sentence when out of domain


def _downsample(grey: np.ndarray, s: int) -> np.ndarray:
    h, w = grey.shape
    if s == 1:
        return grey
    h2, w2 = h // s, w // s
    return grey[:h2 * s, :w2 * s].reshape(h2, s, w2, s).mean(axis=(1, 3))


def texture_stats(imgs_u8: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 → (N, 15): per scale, gradient magnitude mean, std and 90th percentile,
    Laplacian magnitude mean and std (grey levels in [0, 1])."""
    import scipy.ndimage

    imgs = np.asarray(imgs_u8, dtype=np.float64) / 255.0
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    out = np.empty((imgs.shape[0], 5 * len(SCALES)))
    for n, im in enumerate(imgs):
        grey = im.mean(axis=2)
        row = []
        for s in SCALES:
            g = _downsample(grey, s)
            gx, gy = np.diff(g, axis=1)[:-1], np.diff(g, axis=0)[:, :-1]
            gm = np.sqrt(gx ** 2 + gy ** 2)
            lap = np.abs(scipy.ndimage.laplace(g))
            row += [gm.mean(), gm.std(), np.percentile(gm, 90), lap.mean(), lap.std()]
        out[n] = row
    return out


def _small(imgs_u8: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 → (N, PCA_SIZE² · C) float in [0, 1] (area resize)."""
    import PIL.Image

    imgs = np.asarray(imgs_u8)
    if imgs.shape[1] != PCA_SIZE:
        imgs = np.stack([np.asarray(PIL.Image.fromarray(im.squeeze()).resize((PCA_SIZE, PCA_SIZE), PIL.Image.BOX))
                         .reshape(PCA_SIZE, PCA_SIZE, -1) for im in imgs])
    return imgs.reshape(len(imgs), -1).astype(np.float64) / 255.0


def _tex_z(stats: np.ndarray, cal: Calibration) -> np.ndarray:
    z = (stats - cal.tex_mean) / cal.tex_std
    return np.sqrt((z ** 2).mean(axis=1))


def _residual(imgs_u8: np.ndarray, cal: Calibration) -> np.ndarray:
    x = _small(imgs_u8) - cal.pca_mean
    return np.linalg.norm(x - (x @ cal.pca_basis.T) @ cal.pca_basis, axis=1)


def calibrate(G, info, num_samples: int = 1024, seed: int = 0, device="cpu", batch: int = 32,
              progress=None) -> Calibration:
    """Fit on three quarters of `num_samples` of the network's renders, set the scales on the rest;
    progress(done, num_samples) after each batch of renders."""
    stats = info.camera_stats or {}
    yr, pr = stats.get("yaw_range_deg", (-35, 35)), stats.get("pitch_range_deg", (-15, 15))
    rng = np.random.default_rng(seed)
    imgs = []
    for start in range(0, num_samples, batch):
        n = min(batch, num_samples - start)
        c = rgen.c_for_network(info, rng.uniform(*yr, n), rng.uniform(*pr, n), batch=n, device=device)
        imgs.append(rgen.generate_images(G, range(start, start + n), c=c, batch_size=n, device=device))
        if progress is not None:
            progress(start + n, num_samples)
    imgs = np.concatenate(imgs)
    fit, held = imgs[: num_samples * 3 // 4], imgs[num_samples * 3 // 4:]
    tex = texture_stats(fit)
    x = _small(fit)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    cal = Calibration(tex.mean(0), tex.std(0) + 1e-9, 1.0, mean, vt[:PCA_DIMS], 1.0, num_samples)
    cal.tex_p99 = float(np.percentile(_tex_z(texture_stats(held), cal), 99))
    cal.pca_p99 = float(np.percentile(_residual(held, cal), 99))
    return cal


def cache_path(fingerprint: str, num_samples: int) -> str:
    return dnnlib.util.make_cache_dir_path("raycond-domain", f"{fingerprint[:20]}-v{VERSION}-{num_samples}.npz")


def get_calibration(G, info, fingerprint: str, num_samples: int = 1024, device="cpu", log=print,
                    progress=None) -> Calibration:
    """The cached calibration for this network, or a fresh one (then cached)."""
    if os.environ.get(QUICK_ENV):   # the test suite's quick mode, shared with the pose regressor
        num_samples = min(num_samples, 128)
    path = cache_path(fingerprint, num_samples)
    if os.path.isfile(path):
        try:
            with np.load(path) as z:
                return Calibration(**{f.name: (z[f.name] if z[f.name].ndim else z[f.name].item())
                                      for f in dataclasses.fields(Calibration)})
        except (OSError, KeyError, ValueError):  # a stale or truncated cache file: calibrate again
            pass
    log(f"domain check: calibrating on {num_samples} of the network's own samples (once; cached)")
    cal = calibrate(G, info, num_samples=num_samples, device=device, progress=progress)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        dnnlib.util.atomic_write(path, lambda f: np.savez(f, **dataclasses.asdict(cal)))
    except OSError as e:
        log(f"domain check: could not cache the calibration ({e}); it will be made again next time")
    return cal


def describe_training(info, convention: str | None = None) -> str:
    """'64² synthetic heads' and the like, for the warning."""
    res = int(getattr(info, "img_resolution", 0))
    what = {"synth": "synthetic heads", "ffhq": "aligned face photos"}.get(convention or "", "its training images")
    return f"{res}² {what}"


def score_images(cal: Calibration, imgs_u8: np.ndarray) -> np.ndarray:
    """Scores of (N, H, W, C) uint8 images at the network's resolution."""
    tex = _tex_z(texture_stats(imgs_u8), cal) / cal.tex_p99
    pca = _residual(imgs_u8, cal) / cal.pca_p99
    return np.sqrt((tex ** 2 + pca ** 2) / 2)


def report(score: float, info, convention: str | None = None) -> DomainReport:
    """The verdict and warning for a score."""
    warning = None
    if score > THRESHOLD:
        warning = (f"this network was trained on {describe_training(info, convention)}; this photo is out of its "
                   f"domain (score {score:.2f}; its own samples score about 1 or less): expect a reconstruction that loses "
                   f"the eyes and mouth and turned views that are not this face")
    return DomainReport(float(score), score <= THRESHOLD, warning)


def check(G, info, image_u8: np.ndarray, fingerprint: str, convention: str | None = None, device="cpu",
          log=print, progress=None) -> DomainReport:
    """Score one H×W×C uint8 image at the network's resolution (the aligned crop the network sees);
    progress(done, total) while a first calibration renders the network's samples."""
    cal = get_calibration(G, info, fingerprint, device=device, log=log, progress=progress)
    return report(float(score_images(cal, np.asarray(image_u8)[None])[0]), info, convention)
