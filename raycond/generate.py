"""Seeds, truncation and cameras → images. Shared by gen_images.py, gen_video.py, the metrics and
the visualizer, so every tool turns the same (seed, camera) into the same picture.

One frame of the visualizer (fractional seed, style mixing, noise seed, class, camera, or an
inverted photo's pivot) is a `FrameSpec`; `render_frame` turns it into an image, and the
visualizer's renderer calls the same steps (`frame_latents`, `synthesize_frame`) to time them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from raycond import camera as cam
from raycond import loading
from raycond import precision
from raycond import runtime


# ----------------------------------------------------------------------------- devices

# The one device rule. Tools that only run the generator forward (gen_images, gen_video, projector,
# the visualizer, calc_metrics) accept Apple MPS; training does not (allow_mps=False): its
# multi-process launch, fp16 layers and custom ops are written for CUDA and the CPU only.
DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto", allow_mps: bool = True) -> torch.device:
    """'auto' → CUDA, then Apple MPS (where `allow_mps`), then CPU; explicit names are checked."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").lower()
    expected = "auto, cpu, cuda, cuda:N" + (" or mps" if allow_mps else "")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if allow_mps and mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name) or (name == "mps" and not allow_mps):
        why = " (training runs on CUDA or the CPU only)" if name == "mps" else ""
        raise ValueError(f"unknown device {name!r}{why}: expected {expected}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use auto or cpu)")
    if name == "mps" and not mps_available():
        raise ValueError("--device mps: Apple MPS is not available on this machine (use auto or cpu)")
    return torch.device(name)


def force_fp32_for(device: str | torch.device, fp32: bool = False, G: torch.nn.Module | None = None) -> bool:
    """The `force_fp32` to pass to G.synthesis unless the user asked for --fp32: False on CUDA (the
    network's fp16 layers run in fp16), and on a CPU with native bfloat16 when G's code takes the
    layers' dtype from raycond.precision (they run in bf16 there); True everywhere else.

    The one place this rule lives (gen_images.py, gen_video.py, the visualizer, calc_metrics and the
    benchmarks call it). Release networks (StyleGAN2-ADA) loaded with their own code switch to fp16
    whenever force_fp32 is False, whatever the device, hence G: without it the CPU gets float32."""
    kind = torch.device(device).type
    if fp32 or kind == "cuda":
        return bool(fp32)
    return not (precision.half_dtype(kind) == torch.bfloat16 and G is not None and precision.follows_rule(G))


# ----------------------------------------------------------------------------- parsing

def parse_int_list(s: str | Iterable[int]) -> list[int]:
    """'0-31' → [0..31]; '1,5,9' → [1, 5, 9]; '0-3,7' → [0, 1, 2, 3, 7]."""
    if not isinstance(s, str):
        return [int(x) for x in s]
    values: list[int] = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"range {part!r} ends before it starts (expected LOW-HIGH, e.g. 0-31)")
            values.extend(range(lo, hi + 1))
        elif re.fullmatch(r"-?\d+", part):
            values.append(int(part))
        else:
            raise ValueError(f"cannot parse {part!r} (expected integers like '0-31' or '1,5,9')")
    if not values:
        raise ValueError(f"empty list {s!r} (expected integers like '0-31' or '1,5,9')")
    return values


def parse_float_list(s: str | float | Iterable[float]) -> list[float]:
    """'-30,0,30' → [-30.0, 0.0, 30.0]; 'a:b:n' → n values evenly spaced from a to b."""
    if isinstance(s, (int, float)):
        return [float(s)]
    if not isinstance(s, str):
        return [float(x) for x in s]
    m = re.fullmatch(r"\s*(-?[\d.]+)\s*:\s*(-?[\d.]+)\s*:\s*(\d+)\s*", s)
    if m:
        return [float(x) for x in np.linspace(float(m.group(1)), float(m.group(2)), int(m.group(3)))]
    try:
        values = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"cannot parse {s!r} (expected numbers like '-30,0,30' or 'START:STOP:COUNT')") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"cannot parse {s!r} (expected finite numbers like '-30,0,30')")
    return values


def parse_vec3(s: str | Sequence[float]) -> tuple[float, float, float]:
    values = parse_float_list(s)
    if len(values) != 3:
        raise ValueError(f"expected three numbers 'x,y,z', got {s!r}")
    return values[0], values[1], values[2]


# ----------------------------------------------------------------------------- latents

def seeds_to_z(seeds: Sequence[int], z_dim: int, device="cpu") -> torch.Tensor:
    """One z per seed, drawn exactly as NVIDIA's gen_images.py draws them."""
    z = np.stack([np.random.RandomState(int(seed) % (2 ** 32)).randn(z_dim) for seed in seeds])
    return torch.from_numpy(z).to(device=device, dtype=torch.float32)


def mapping_c(G: torch.nn.Module, c: torch.Tensor | None, batch: int, device) -> torch.Tensor:
    """The label to feed the mapping network: the camera/class label, or an empty (N, 0) tensor."""
    c_dim = int(getattr(G, "c_dim", 0) or 0)
    if c is None or c_dim == 0:
        return torch.zeros([batch, c_dim], device=device)
    c = c.to(device=device, dtype=torch.float32)
    if c.shape[0] == 1 and batch > 1:
        c = c.expand(batch, -1)
    return c


def map_latents(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor | None = None,
                truncation_psi: float = 1, truncation_cutoff: int | None = None) -> torch.Tensor:
    """z (N, z_dim) → ws (N, num_ws, w_dim) with truncation toward w_avg."""
    c = mapping_c(G, c, z.shape[0], z.device)
    return G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


def synthesis_takes_c(G: torch.nn.Module) -> bool:
    """Whether G.synthesis(ws, c, ...) takes the camera: its family's `camera` (raycond/families.py);
    raycond.loading.generator_family holds the one fallback, for a trusted file's own classes."""
    return loading.synthesis_takes_c(G)


def validate_camera_batch(c: torch.Tensor, batch: int | None = None) -> None:
    """Clear errors for a camera label of the wrong shape or with NaNs, before the network sees it.

    (Named apart from `training.networks_raycond2.check_camera`, which the networks call and which
    returns the label converted for them.)
    """
    if c.ndim != 2 or c.shape[1] != cam.LABEL_DIM:
        raise ValueError(f"camera label must have shape (N, {cam.LABEL_DIM}) ({cam.POSE_DIM} cam2world + "
                         f"{cam.INTRINSICS_DIM} intrinsics), got {tuple(c.shape)}")
    if batch is not None and c.shape[0] not in (1, batch):
        raise ValueError(f"camera label batch {c.shape[0]} does not match latent batch {batch}")
    if not torch.isfinite(c).all():
        raise ValueError("camera label contains NaN or infinite values")


# The per-pixel noise inputs a tool can ask for (default first): the generator's fixed buffers,
# fresh random noise, or none. Every CLI choice, the visualizer and inversion use this tuple.
NOISE_MODES = ("const", "random", "none")


def check_noise_mode(noise_mode: str) -> None:
    """ValueError naming the valid modes unless `noise_mode` is one of NOISE_MODES."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")


def synthesize(G: torch.nn.Module, ws: torch.Tensor, c: torch.Tensor | None = None, noise_mode: str = "const",
               force_fp32: bool = True, **kwargs) -> torch.Tensor:
    """ws → float images NCHW in about [-1, 1]; passes `c` only to networks whose synthesis takes it."""
    check_noise_mode(noise_mode)
    if synthesis_takes_c(G):
        if c is None:
            raise ValueError("this network is camera-conditioned: a camera label c is required")
        c = c.to(device=ws.device, dtype=torch.float32)
        validate_camera_batch(c, ws.shape[0])
        if c.shape[0] == 1 and ws.shape[0] > 1:
            c = c.expand(ws.shape[0], -1)
        return G.synthesis(ws, c, noise_mode=noise_mode, force_fp32=force_fp32, **kwargs)
    return G.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32, **kwargs)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """NCHW float in [-1, 1] → NHWC uint8 (grayscale kept as 1 channel)."""
    return (img.permute(0, 2, 3, 1).float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def generate_images(G: torch.nn.Module, seeds: Sequence[int], c: torch.Tensor | None = None,
                    truncation_psi: float = 1, truncation_cutoff: int | None = None,
                    noise_mode: str = "const", batch_size: int = 8, device=None,
                    force_fp32: bool = True, on_batch=None) -> np.ndarray:
    """Images (N, H, W, C) uint8 for `seeds`, in batches. `c` is one label for all seeds, or one per seed.
    on_batch() runs before each batch on this thread (default raycond.runtime.step: the adaptive CPU
    thread count, started here when no script started it)."""
    on_batch = runtime.step if on_batch is None else on_batch
    if device is None:
        device = next(G.parameters()).device
    seeds = list(seeds)
    if c is not None:
        c = c.to(device=device, dtype=torch.float32)
        if c.shape[0] not in (1, len(seeds)):
            raise ValueError(f"got {c.shape[0]} labels for {len(seeds)} seeds (expected 1 or one per seed)")
    out = []
    with torch.inference_mode():
        for start in range(0, len(seeds), max(1, batch_size)):
            on_batch()
            chunk = seeds[start:start + batch_size]
            z = seeds_to_z(chunk, G.z_dim, device)
            cc = None if c is None else (c if c.shape[0] == 1 else c[start:start + len(chunk)])
            ws = map_latents(G, z, cc, truncation_psi, truncation_cutoff)
            img = synthesize(G, ws, cc, noise_mode=noise_mode, force_fp32=force_fp32)
            out.append(to_uint8(img).cpu().numpy())
    return np.concatenate(out)


def make_grid(images: np.ndarray, rows: int, cols: int, pad: int = 0, pad_value: int = 255) -> np.ndarray:
    """(N, H, W, C) uint8 → one (rows·H, cols·W, C) image, filled row by row; blanks stay pad_value."""
    images = np.asarray(images)
    n, h, w, ch = images.shape
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows}x{cols} grid")
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, ch), pad_value, dtype=images.dtype)
    for i in range(n):
        r, col = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = images[i]
    return grid


# ----------------------------------------------------------------------------- cameras

def default_camera(info) -> dict:
    """Frontal camera with the training data's radius/look-at/FOV (or FFHQ's when unknown)."""
    preset = cam.get_preset("ffhq")
    out = dict(yaw_deg=0.0, pitch_deg=0.0, fov_deg=float(cam.fov_from_focal(preset.focal)),
               radius=float(preset.radius), lookat=tuple(float(x) for x in preset.lookat))
    stats = getattr(info, "camera_stats", None) if info is not None else None
    if stats:
        if stats.get("fov_deg"):
            out["fov_deg"] = float(stats["fov_deg"])
        if stats.get("radius"):
            out["radius"] = float(stats["radius"])
        if stats.get("lookat") is not None:
            out["lookat"] = tuple(float(x) for x in stats["lookat"])
    return out


def check_pitch(pitch_deg) -> None:
    """ValueError for a pitch that is no orbit camera: at ±90° the camera looks straight down the
    up axis (its frame is undefined), beyond it the view is upside down."""
    bad = [float(p) for p in np.atleast_1d(np.asarray(pitch_deg, dtype=np.float64)) if not abs(p) < 90]
    if bad:
        raise ValueError(f"pitch {bad[0]:g} degrees is not an orbit camera: pitch must lie strictly between -90 and 90")


def outside_training_poses(yaw_range, pitch_range, yaw_deg: float, pitch_deg: float) -> str | None:
    """Why (yaw, pitch) lies outside the training poses (ranges in degrees, e.g. a snapshot's
    camera_stats 'yaw_range_deg'; None: unknown), with 0.5° of allowance, as a phrase; None inside.
    The visualizer's 'extrapolating' warning and the command-line tools' warning both follow it."""
    problems = []
    for name, value, rng in (("yaw", yaw_deg, yaw_range), ("pitch", pitch_deg, pitch_range)):
        if rng and not (float(rng[0]) - 0.5 <= float(value) <= float(rng[1]) + 0.5):
            problems.append(f"{name} {float(value):g} is outside the training range {float(rng[0]):.0f}..{float(rng[1]):.0f}")
    return "; ".join(problems) or None


def c_for_network(info, yaw_deg=0.0, pitch_deg=0.0, fov_deg=None, radius=None, lookat=None, batch: int = 1,
                  device="cpu") -> torch.Tensor:
    """The label c for a network: a camera for camera-conditioned networks, zeros otherwise."""
    if info is not None and not info.camera:
        return torch.zeros([batch, info.c_dim], device=device)
    check_pitch(pitch_deg)
    d = default_camera(info)
    c = cam.camera_label(
        yaw_deg, pitch_deg,
        fov_deg=d["fov_deg"] if fov_deg is None else fov_deg,
        radius=d["radius"] if radius is None else radius,
        lookat=d["lookat"] if lookat is None else lookat,
    ).to(device=device, dtype=torch.float32)
    if c.shape[0] == 1 and batch > 1:
        c = c.expand(batch, -1).contiguous()
    return c


def class_label(c_dim: int, class_idx: int, device="cpu") -> torch.Tensor:
    """One-hot label (1, c_dim) of a class-conditional network."""
    if not 0 <= int(class_idx) < c_dim:
        raise ValueError(f"class {class_idx} out of range 0..{c_dim - 1}")
    c = torch.zeros([1, c_dim], device=device)
    c[0, int(class_idx)] = 1
    return c


# ----------------------------------------------------------------------------- frames

def seed_blend(seed: float) -> list[tuple[int, float]]:
    """Fractional seed → [(seed, weight), ...]: 3.25 → [(3, 0.75), (4, 0.25)]; integers → [(s, 1)]."""
    seed = float(seed)
    if not math.isfinite(seed):
        raise ValueError(f"seed must be a finite number, got {seed}")
    lo = math.floor(seed)
    frac = seed - lo
    if frac < 1e-6:
        return [(int(lo), 1.0)]
    if frac > 1 - 1e-6:
        return [(int(lo) + 1, 1.0)]
    return [(int(lo), 1.0 - frac), (int(lo) + 1, frac)]


@dataclasses.dataclass(frozen=True)
class FrameSpec:
    """Everything but the network that decides one frame. Frozen and hashable, so that a GUI can
    tell whether a request changed (a pivot compares by identity)."""
    seed: float = 0.0                  # fractional seeds blend the two neighbouring seeds in W
    trunc_psi: float = 1.0
    trunc_cutoff: int | None = None    # None or 0: truncate every layer
    noise_mode: str = "const"
    noise_seed: int = 0                # seeds the noise of noise_mode='random' (the caller's RNG is left alone)
    mix_seed: int | None = None        # style mixing: the layers `mix_layers` of ws come from this seed
    mix_layers: tuple = ()
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    fov_deg: float | None = None       # true full FOV; None (also radius, lookat): the network's default_camera
    radius: float | None = None
    lookat: tuple | None = None
    class_idx: int = 0                 # class of class-conditional networks without a camera
    force_fp32: bool = False           # the user asked for fp32; otherwise fp16/bf16 layers (force_fp32_for)
    pivot: Any = None                  # an inverted photo (ws, z, camera, e.g. raycond.inversion.Inversion)
    at_pivot_camera: bool = False      # with a pivot: render at its estimated camera, not at yaw/pitch


def frame_label(info, spec: FrameSpec, device="cpu") -> torch.Tensor | None:
    """The label c (1, c_dim) of a frame: its camera, a one-hot class, or None for networks without labels."""
    if not info.c_dim:
        return None
    if not info.camera:
        return class_label(info.c_dim, spec.class_idx, device)
    if spec.pivot is not None and spec.at_pivot_camera:
        return torch.as_tensor(spec.pivot.camera, dtype=torch.float32).reshape(1, -1).to(device)
    return c_for_network(info, spec.yaw_deg, spec.pitch_deg, fov_deg=spec.fov_deg, radius=spec.radius,
                         lookat=spec.lookat, batch=1, device=device)


def seed_ws(G: torch.nn.Module, spec: FrameSpec, c: torch.Tensor | None, device) -> torch.Tensor:
    """ws (1, num_ws, w_dim) of the spec's seed: neighbouring seeds blended in W for a fractional
    seed, then the mixing seed's ws in the layers `mix_layers`."""
    cutoff = spec.trunc_cutoff if spec.trunc_cutoff else None
    blend = seed_blend(spec.seed)
    seeds = [s for s, _ in blend]
    mixing = spec.mix_seed is not None and bool(spec.mix_layers)
    if mixing:
        seeds.append(int(spec.mix_seed))
    z = seeds_to_z(seeds, G.z_dim, device)
    all_ws = map_latents(G, z, None if c is None else c.expand(len(seeds), -1), spec.trunc_psi, cutoff)
    ws = sum(w * all_ws[i:i + 1] for i, (_, w) in enumerate(blend))
    if mixing:
        idx = [i for i in spec.mix_layers if 0 <= int(i) < ws.shape[1]]
        ws = ws.clone()
        ws[:, idx] = all_ws[-1:, idx]
    return ws


def pivot_ws(pivot, G: torch.nn.Module, c: torch.Tensor | None, device) -> torch.Tensor:
    """A pivot's ws at cameras c (N, c_dim) (N = 1 without c): its ws, or its Z pivot mapped at each
    camera when the mapping sees the camera (raycond.inversion keeps such pivots in Z)."""
    n = 1 if c is None else c.shape[0]
    if getattr(pivot, "z", None) is None:
        return pivot.ws.to(device).expand(n, -1, -1)
    return G.mapping(pivot.z.to(device).expand(n, -1), mapping_c(G, c, n, device))


def frame_latents(G: torch.nn.Module, info, spec: FrameSpec, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ws, c) of a frame. With a pivot, G is the pivot's tuned generator."""
    c = frame_label(info, spec, device)
    ws = pivot_ws(spec.pivot, G, c, device) if spec.pivot is not None else seed_ws(G, spec, c, device)
    return ws, c


def synthesize_frame(G: torch.nn.Module, ws: torch.Tensor, c: torch.Tensor | None, spec: FrameSpec) -> torch.Tensor:
    """Images (N, C, H, W) of ws; random noise is drawn from spec.noise_seed without touching the caller's RNG."""
    device = ws.device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(int(spec.noise_seed))
        fp32 = force_fp32_for(device, spec.force_fp32, G)
        return synthesize(G, ws, c, noise_mode=spec.noise_mode, force_fp32=fp32)


def render_frame(G: torch.nn.Module, info, spec: FrameSpec, device=None) -> torch.Tensor:
    """The image (1, C, H, W), float in about [-1, 1], of one frame of network G (described by `info`,
    see raycond.loading.NetworkInfo). For a pivot, G is the pivot's tuned generator."""
    if device is None:
        device = next(G.parameters()).device
    with torch.inference_mode():
        ws, c = frame_latents(G, info, spec, torch.device(device))
        return synthesize_frame(G, ws, c, spec)
