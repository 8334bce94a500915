"""`invert`: photo → camera + pivot latent + tuned weights, the stages in order.

1. **Target.** The photo is centre-cropped/resized to the network's resolution
   (raycond.target_image), with one line saying what was converted.
2. **Start** (raycond.inversion.camera_start): by default this network's encoder reads camera and
   w off the photo; its result alone is reported at once (progress stage 'camera', with a preview).
   A `camera_hint` (projector.py: the head pose of the face landmarks, for 'ffhq' crops) replaces
   the encoder's camera when no camera reader trained on labelled photos is behind it.
3. **Pivot** (raycond.inversion.pivot): Adam on w and, jointly, yaw/pitch through the
   differentiable rays.
4. **Pivotal tuning** (raycond.inversion.tuning): a copy of the generator fine-tuned around the
   pivot, kept close to the untuned renders elsewhere by a locality regulariser.

`progress(step, total, stage, loss, preview)` is called after every step (stage in 'camera',
'pivot', 'tune'; preview a (1,3,H,W) float tensor in [-1,1] on the CPU, or None and loss NaN while
an encoder or pose regressor trains); returning False cancels and `invert` raises `Cancelled`.
"""

from __future__ import annotations

import copy
import math
import os
import time

import numpy as np
import torch

from raycond import camera as cam
from raycond import generate as rgen
from raycond import loading
from raycond import runtime
from raycond.target_image import prepare_target

from . import camera_start
from .config import InversionConfig
from .losses import make_loss
from .pivot import optimise
from .result import Inversion, fingerprint
from .state import Run
from .tuning import tune


def resolve_generator(G, info, D, trust_pickle=False):
    """Accept a module or a path; return (G, info, D, network path or None)."""
    path = None
    if isinstance(G, (str, os.PathLike)):
        path = os.fspath(G)
        G, file_info, file_D = loading.load_generator_and_discriminator(path, trust_pickle=trust_pickle)
        info = info or file_info
        D = D if D is not None else file_D
        path = os.path.abspath(path) if os.path.exists(path) else path
    if not isinstance(G, torch.nn.Module) or not hasattr(G, "synthesis") or not hasattr(G, "mapping"):
        raise ValueError(f"expected a generator with mapping and synthesis networks, got a {type(G).__name__}; "
                         f"load one with raycond.loading.load_network")
    return G, info or loading.network_info(G), D, path


def fixed_camera_label(camera, info) -> torch.Tensor:
    """A given camera as a checked (1,25) label."""
    c = torch.as_tensor(np.array(camera, dtype=np.float32) if not torch.is_tensor(camera) else camera).float()
    if c.ndim == 1:
        c = c.unsqueeze(0)
    if c.shape != (1, cam.LABEL_DIM):
        raise ValueError(f"camera must be one {cam.LABEL_DIM}-float label ({cam.POSE_DIM} cam2world + "
                         f"{cam.INTRINSICS_DIM} intrinsics), got shape {tuple(c.shape)}")
    if not torch.isfinite(c).all():
        raise ValueError(f"camera label contains NaN or infinite values; pass a finite {cam.LABEL_DIM}-float label or "
                         "camera=None to estimate it")
    if not info.camera:
        raise ValueError("this network has no camera input; call invert with camera=None")
    return c


def _start_kind(run: Run, config: InversionConfig, estimate: bool) -> str | None:
    """Which start runs: None (mean latent, given or no camera), 'encoder', 'regressor' or 'grid'."""
    kind = config.camera_start
    if kind == "encoder" and (run.mapping_camera or not run.has_camera):
        kind = "regressor" if estimate else None   # the encoder predicts w, which such networks do not pivot on
    if kind == "encoder":
        return kind
    return kind if estimate else None


def _refines_camera(setting: str, camera_from_photos: bool) -> bool:
    """Whether the pivot moves the estimated camera. 'auto': not when the start's camera came from
    a reader trained on labelled photos; through the pixel loss the camera trades against the latent
    and drifted from 1.24° to 2.85° off on 8 development heads (docs/performance.md)."""
    return setting == "yes" or (setting == "auto" and not camera_from_photos)


def camera_hint_pair(camera_hint) -> tuple[float, float] | None:
    """A camera hint as a checked (yaw_deg, pitch_deg) pair of finite floats, or None."""
    if camera_hint is None:
        return None
    try:
        if isinstance(camera_hint, (str, bytes)):
            raise TypeError
        yaw, pitch = (float(v) for v in camera_hint)
    except (TypeError, ValueError):
        raise ValueError(f"camera_hint must be a (yaw_deg, pitch_deg) pair, got {camera_hint!r}") from None
    if not (math.isfinite(yaw) and math.isfinite(pitch)):
        raise ValueError(f"camera_hint must be finite, got ({yaw}, {pitch})")
    return yaw, pitch


def _uses_hint(run, kind, camera_hint, fixed_camera) -> bool:
    """Whether a camera hint replaces the start's camera: only the encoder's, and only when no reader
    trained on labelled photos read it (that reader is the better camera: 1.1-1.3 deg mean on held-out
    heads, docs/performance.md)."""
    return camera_hint is not None and fixed_camera is None and kind == "encoder" and not run.camera_from_photos


def _start(run, kind, latent0, target_f, fp, network_path, fixed_camera, w_plus, camera_hint=None):
    """(latent, yaw, pitch, hint used) where the pivot starts."""
    yaw = pitch = 0.0
    used_hint = False
    if fixed_camera is not None:
        y, p, _ = cam.yaw_pitch_from_pose(fixed_camera[:, :16].reshape(1, 4, 4))
        yaw, pitch = math.degrees(float(y)), math.degrees(float(p))
    if kind == "encoder":
        latent0, y, p = camera_start.encoder_start(run, target_f, fp, network_path, w_plus)
        if _uses_hint(run, kind, camera_hint, fixed_camera):
            yaw, pitch = run.clamp_camera(*camera_hint)   # the encoder's w, the hint's camera
            used_hint = True
        elif fixed_camera is None:
            yaw, pitch = y, p
    elif kind == "regressor":
        latent0, yaw, pitch = camera_start.regressor_start(run, latent0, target_f, fp)
    elif kind == "grid":
        latent0, yaw, pitch = camera_start.grid_start(run, latent0)
    return latent0, yaw, pitch, used_hint


def _start_stage(run, kind, base_G, target_f, fp, network_path, fixed_camera, camera_hint):
    """(latent, yaw, pitch, hint used, start ws) from the mean latent (or a random z) and the start."""
    config = run.config
    latent0 = (torch.randn([1, base_G.z_dim], generator=run.gen).to(run.device) if run.mapping_camera
               else run.w_avg[:, None, :].repeat(1, base_G.num_ws if config.w_plus else 1, 1))
    latent0, yaw, pitch, used_hint = _start(run, kind, latent0, target_f, fp, network_path, fixed_camera,
                                            config.w_plus, camera_hint)
    with torch.no_grad():
        start_ws = run.ws_from(latent0, run.label(torch.tensor([yaw]), torch.tensor([pitch]))).detach()
    return latent0, yaw, pitch, used_hint, start_ws


def invert(G, target, camera=None, *, config: InversionConfig | None = None, progress=None, device=None,
           info=None, D=None, network_path=None, verbose=True, log=None, trust_pickle=False,
           on_step=None, camera_hint=None, **overrides) -> Inversion:
    """Invert `target` (path, PIL image or H x W x 3 uint8 array) into generator `G` (module or path).

    camera: a (25,) / (1,25) label to keep fixed, or None to estimate it (networks with a camera).
    config: an InversionConfig (default: the measured defaults); keyword `overrides` change single
    fields of it (`num_steps=50`; None keeps the default). info: a raycond.loading.NetworkInfo (for
    the camera ranges of a module loaded elsewhere); D: a discriminator for loss 'd';
    network_path: recorded in saved files so that `load` can reopen the network, and where a
    shipped encoder is looked for; trust_pickle: as in raycond.loading, for a path `G`.
    on_step(): run on this thread before each step and once at the start (default
    raycond.runtime.step: the adaptive CPU thread count, started here when no script started it).
    camera_hint: a (yaw_deg, pitch_deg) pair, e.g. `raycond.align.head_pose` of the photo's face
    landmarks: a start for the camera, not a fixed camera (the pivot refines it as it refines any
    estimate). It replaces the encoder start's camera (the encoder's w is kept) when no camera
    reader trained on labelled photos is behind that start; otherwise, with a fixed `camera`, or
    with another `camera_start`, it is ignored. meta['camera_start'] says 'encoder+landmarks' when
    it was used, and meta['camera_hint'] records the pair.
    """
    start = time.time()
    log = log or (print if verbose else (lambda *_: None))
    config = (config or InversionConfig()).replace(**{k: v for k, v in overrides.items() if v is not None})
    on_step = runtime.step if on_step is None else on_step
    on_step()
    camera_hint = camera_hint_pair(camera_hint)
    base_G, info, D, path = resolve_generator(G, info, D, trust_pickle)
    network_path = network_path or path
    device = rgen.resolve_device(next(base_G.parameters()).device if device is None else device)
    target_u8, message = prepare_target(target, int(info.img_resolution), int(info.img_channels))
    if message:
        log(message)
    fixed_camera = None if camera is None else fixed_camera_label(camera, info)
    if not info.camera:
        log("this network has no camera input: the camera is fixed, only the latent is inverted")
    work_G = copy.deepcopy(base_G).to(device).eval().requires_grad_(False)
    target_f = target_u8.to(device).float() / 127.5 - 1
    loss_fn = make_loss(config.loss, target_f, device, D=None if D is None else D.to(device),
                        pixel_weight=config.pixel_weight, log=log)
    estimate = bool(info.camera) and fixed_camera is None
    fp = fingerprint(base_G)
    run = Run(work_G, info, loss_fn, config, device, progress, log, on_step)
    kind = _start_kind(run, config, estimate)
    start_units = 0 if kind is None else camera_start.units(run, kind, fp, network_path)
    run.total = start_units + config.num_steps + config.tune_steps
    times = {}

    t0 = time.time()
    latent0, yaw, pitch, used_hint, start_ws = _start_stage(run, kind, base_G, target_f, fp, network_path,
                                                            fixed_camera, camera_hint)
    start_camera = (yaw, pitch)
    times["camera"] = time.time() - t0

    t0 = time.time()
    refine = estimate and _refines_camera(config.refine_camera, run.camera_from_photos)
    latent, yaw, pitch, _ = optimise(run, latent0, yaw, pitch, config.num_steps, refine_camera=refine,
                                     noise=config.optimize_noise)
    c = fixed_camera.to(device) if fixed_camera is not None else \
        run.label(torch.tensor([yaw]), torch.tensor([pitch])).detach()
    with torch.no_grad():
        ws = run.ws_from(latent, c).detach()
    times["pivot"] = time.time() - t0

    t0 = time.time()
    tune(run, work_G, latent, c, config.tune_steps)
    work_G.eval().requires_grad_(False)
    times["tune"] = time.time() - t0

    meta = dict(
        has_camera=bool(info.camera), camera_estimated=estimate, yaw_deg=yaw, pitch_deg=pitch,
        fov_deg=run.fov_deg, radius=run.radius, lookat=list(run.lookat), loss=loss_fn.kind,
        num_steps=config.num_steps, tune_steps=config.tune_steps, w_plus=config.w_plus, seed=config.seed,
        camera_start=(kind or "none") + ("+landmarks" if used_hint else ""), camera_refined=refine,
        camera_hint=None if camera_hint is None else list(camera_hint),
        start_yaw_deg=start_camera[0], start_pitch_deg=start_camera[1],
        network=None if network_path is None else str(network_path), fingerprint=fp,
        kind=info.kind, seconds=time.time() - start, stage_seconds=times,
    )
    return Inversion(camera=c.detach().float(), ws=ws, G=work_G, target=target_u8, meta=meta,
                     z=latent if run.mapping_camera else None, base_G=base_G, start_ws=start_ws)
