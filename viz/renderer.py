"""Pure compute for the visualizer: RenderArgs -> RenderResult (image, layer view, stats, timings, error).

No GUI code here: the async renderer runs this on a background thread, the headless capture and
the orbit recorder call it directly. Loaded networks are cached per (path, file time, key, device).
Every exception becomes `result.error` (one line) plus `result.traceback`, never a crash.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
import traceback
import weakref
from typing import Any

import numpy as np
import torch

from raycond import generate as gen
from raycond import loading
from raycond import precision
from raycond import threads

PHOTO_VIEWS = ('render', 'target', 'difference')
DIFFERENCE_GAIN = 4                    # |target - reconstruction| is amplified so that small errors show


class PhotoSource:
    """An inverted photo as something to render: its tuned generator, pivot ws, estimated camera
    label (1, 25) and the target at the network's resolution (HxWx3 uint8, or None). Networks whose
    mapping sees the camera keep the pivot in Z (`z`): their ws are mapped again at every camera.

    Compared by identity (plain object equality), so RenderArgs holding one stay hashable and each
    new inversion counts as a change. Read-only once made: the render thread, the orbit recorder
    and the GUI share it.
    """

    def __init__(self, G, ws, camera, target=None, name='', z=None):
        self.G = G
        self.ws = ws.detach()
        self.z = None if z is None else z.detach()
        self.camera = torch.as_tensor(camera, dtype=torch.float32).detach().reshape(1, -1)
        self.target = None if target is None else np.ascontiguousarray(target)
        self.name = name
        self._moved = {}               # device -> copy of G, for other devices than G's

    @classmethod
    def from_result(cls, result, target=None, name=''):
        """From `raycond.inversion.invert`/`load`'s result."""
        return cls(result.G, result.ws, result.camera, target=target, name=name, z=getattr(result, 'z', None))

    def on_device(self, device: torch.device):
        """The tuned G on `device`, copied once per other device (the user may switch)."""
        param = next(self.G.parameters(), None)
        if param is None or param.device == device:
            return self.G
        key = str(device)
        if key not in self._moved:
            self._moved[key] = copy.deepcopy(self.G).to(device)
        return self._moved[key]


_FRAME_FIELDS = frozenset(f.name for f in dataclasses.fields(gen.FrameSpec))
_KEEP = object()   # RenderArgs(photo=...) not given: keep the frame's pivot


@dataclasses.dataclass(frozen=True, init=False)
class RenderArgs:
    """Everything that determines one rendered frame (hashable and comparable): the library's
    `FrameSpec` plus what only the GUI decides. Built from flat keywords as the widgets give them
    (`RenderArgs(pkl=..., yaw_deg=20, photo=source)`); the frame's fields read through
    (`args.seed` is `args.frame.seed`), and `photo` is the frame's pivot."""
    pkl: str | None = None             # resolved network file or URL; None = nothing to render
    key: str = 'G_ema'
    device: str = 'auto'
    layer: str | None = None           # synthesis sub-module whose output is shown in the Layers view
    layer_channel: int = 0
    layer_rgb: bool = False            # show channels [c, c+1, c+2] as RGB instead of one channel
    num_threads: int = 0               # CPU threads for torch on the render thread (0 = automatic)
    trust_pickle: bool = False         # the user agreed to run code from this network file
    photo_view: str = 'render'         # with a photo: 'render' (at this camera), 'target', 'difference'
    info_only: bool = False            # load the network and return its info without rendering
    frame: gen.FrameSpec = gen.FrameSpec()

    def __init__(self, frame: gen.FrameSpec | None = None, photo=_KEEP, **fields):
        spec = {k: fields.pop(k) for k in list(fields) if k in _FRAME_FIELDS}
        own = {f.name: fields.pop(f.name, f.default) for f in dataclasses.fields(self) if f.name != 'frame'}
        if fields:
            raise TypeError(f'RenderArgs got unknown fields: {", ".join(sorted(fields))}')
        for name, value in own.items():
            object.__setattr__(self, name, value)
        frame = frame if frame is not None else gen.FrameSpec()
        if photo is not _KEEP:
            spec['pivot'] = photo
        spec.setdefault('pivot', frame.pivot)
        # The difference view is taken at the photo's camera.
        spec['at_pivot_camera'] = spec['pivot'] is not None and own['photo_view'] == 'difference'
        object.__setattr__(self, 'frame', dataclasses.replace(frame, **spec))

    def __getattr__(self, name):
        if name in _FRAME_FIELDS:
            return getattr(self.frame, name)
        raise AttributeError(f'RenderArgs has no field {name!r}')

    @property
    def photo(self):
        """The PhotoSource being shown (its tuned G and pivot ws render instead of seeds), or None."""
        return self.frame.pivot

    def replace(self, **kwargs) -> 'RenderArgs':
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'frame'}
        return RenderArgs(frame=self.frame, **{**own, **kwargs})


@dataclasses.dataclass
class RenderResult:
    """What one render produced. `image` is HxWx3 (or HxWx1) uint8, or None on error/no network."""
    args: RenderArgs | None = None
    image: np.ndarray | None = None
    layer_image: np.ndarray | None = None
    layer_stats: dict = dataclasses.field(default_factory=dict)
    layers: list = dataclasses.field(default_factory=list)   # [(name, (C, H, W)), ...]
    info: Any = None                                          # raycond.loading.NetworkInfo
    device: str = ''
    stats: dict = dataclasses.field(default_factory=dict)
    timings: dict = dataclasses.field(default_factory=dict)   # seconds: load, mapping, synthesis, total
    error: str | None = None
    traceback: str | None = None
    untrusted: tuple = ()                                     # classes that made a safe load refuse the file
    untrusted_digest: str | None = None                       # sha256 of the refused bytes (consent binds to it)
    stamp: int = 0                                            # set by the async renderer
    num_threads: int = 0                                      # torch CPU threads the render used
    cpu_others: float | None = None                           # cores busy in other processes meanwhile
    precision: str = ''                                       # what the layers ran in (raycond.precision.describe)


def one_line_error(e: BaseException) -> str:
    """An exception as the one line the GUI shows (library messages are already sentences)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ''
    if isinstance(e, (ValueError, FileNotFoundError, loading.NetworkLoadError)) and msg:
        return msg
    return f'{type(e).__name__}: {msg}' if msg else type(e).__name__


class _Timer:
    """Phase timings: CUDA events on the GPU (no stalls between phases), perf counters elsewhere."""

    def __init__(self, device: torch.device, timings: dict):
        self.cuda = device.type == 'cuda'
        self.timings = timings
        self.pending = []
        if self.cuda:
            self.last = torch.cuda.Event(enable_timing=True)
            self.last.record()
        else:
            self.t = time.perf_counter()

    def lap(self, name: str):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.pending.append((name, self.last, ev))
            self.last = ev
        else:
            now = time.perf_counter()
            self.timings[name], self.t = now - self.t, now

    def finish(self):
        if self.cuda and self.pending:
            self.last.synchronize()
            for name, a, b in self.pending:
                self.timings[name] = a.elapsed_time(b) / 1000.0
            self.pending = []


class Renderer:
    """Renders RenderArgs to RenderResult. Not thread-safe: use one instance per thread."""

    def __init__(self, max_cached_networks: int = 3):
        self._nets: dict[tuple, tuple] = {}
        self._max_cached = max_cached_networks
        self._hooks: list = []
        self._hooked_net = None
        self._capture_name: str | None = None
        self._captured: dict = {}
        self._layer_shapes: dict = {}
        self._layer_order: list = []
        self._cpu = threads.CpuCompetition(min_window=0.0)   # per render; the GUI averages several
        self._thread_id = None         # the thread rendering now: hooks of a shared network ignore others
        self._seed_ws = None           # (weakref to G, key, ws): the last seed's ws (see _frame_latents)
        self._precision = None         # (weakref to G, key, text): the last precision.describe

    # -- networks ---------------------------------------------------------------------------
    def get_network(self, pkl: str, key: str, device: torch.device, trust_pickle: bool = False):
        """(G, info) from the cache, loading on a miss. Raises NetworkLoadError / FileNotFoundError."""
        path = loading.resolve_network_path(pkl)
        local = os.path.expanduser(path)
        if '://' not in path and not os.path.exists(local):
            raise FileNotFoundError(f'network file not found: {path}')
        mtime = os.path.getmtime(local) if os.path.exists(local) else None
        cache_key = (path, mtime, key, str(device), bool(trust_pickle))
        hit = self._nets.pop(cache_key, None)
        if hit is None:
            hit = loading.load_network_and_info(path, key=key, device=device, trust_pickle=trust_pickle)
        self._nets[cache_key] = hit                  # most recently used last
        while len(self._nets) > self._max_cached:
            self._nets.pop(next(iter(self._nets)))
        return hit

    def clear_cache(self):
        self._remove_hooks()
        self._nets.clear()
        self._seed_ws = self._precision = None

    # -- layer hooks ------------------------------------------------------------------------
    def _remove_hooks(self):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._hooked_net = None

    def _install_hooks(self, G):
        if self._hooked_net is G:
            return
        self._remove_hooks()
        synthesis = getattr(G, 'synthesis', None)
        if synthesis is None:
            return
        self._layer_shapes = {}
        self._layer_order = []
        for name, module in synthesis.named_modules():
            if not name or name.count('.') > 1:
                continue
            self._layer_order.append(name)
            self._hooks.append(module.register_forward_hook(self._make_hook(name)))
        self._hooked_net = G

    def _make_hook(self, name):
        def hook(_module, _inputs, output):
            if threading.get_ident() != self._thread_id:
                return                 # a photo's G is shared with the orbit recorder's renderer
            t = output[0] if isinstance(output, (tuple, list)) and output else output
            if not torch.is_tensor(t) or t.ndim != 4:
                return
            self._layer_shapes[name] = tuple(int(s) for s in t.shape[1:])
            if name == self._capture_name:
                self._captured[name] = t.detach()
        return hook

    # -- rendering --------------------------------------------------------------------------
    def render(self, args: RenderArgs) -> RenderResult:
        """Render one frame; never raises (errors are returned in the result)."""
        res = RenderResult(args=args)
        t0 = time.perf_counter()
        threads.set_num_threads(args.num_threads)   # on the render thread (OpenMP counts are per thread); 0: adaptive
        res.num_threads = torch.get_num_threads()
        self._cpu.sample()
        try:
            if not args.pkl:
                res.error = None
                return res
            self._thread_id = threading.get_ident()
            self._render(args, res)
        except Exception as e:  # noqa: BLE001 - every failure is shown in the GUI
            res.error = one_line_error(e)
            res.traceback = traceback.format_exc()
            if isinstance(e, loading.UntrustedPickleError):
                res.untrusted = tuple(e.names)
                res.untrusted_digest = getattr(e, 'digest', None)   # the bytes the question is about
            res.image = None
        finally:
            res.timings['total'] = time.perf_counter() - t0
            res.cpu_others = self._cpu.sample()
        return res

    def _render(self, args: RenderArgs, res: RenderResult):
        device = gen.resolve_device(args.device)
        res.device = str(device)
        t_load = time.perf_counter()
        G, info = self.get_network(args.pkl, args.key, device, args.trust_pickle)
        res.timings['load'] = time.perf_counter() - t_load
        res.info = info
        if args.info_only:
            return
        timer = _Timer(device, res.timings)
        if args.photo is not None:
            if args.photo_view not in PHOTO_VIEWS:
                raise ValueError(f'photo view must be one of {", ".join(PHOTO_VIEWS)}, got {args.photo_view!r}')
            target = args.photo.target
            if args.photo_view != 'render' and target is None:
                raise ValueError('this inversion has no target image: choose the reconstruction view')
            if args.photo_view == 'target':
                res.image = target
                res.stats = dict(resolution=tuple(target.shape[:2]))
                timer.finish()
                return
            G = args.photo.on_device(device)
        spec = args.frame
        res.precision = self._describe(device, gen.force_fp32_for(device, spec.force_fp32, G), G)
        with torch.inference_mode():
            ws, c = self._frame_latents(G, info, spec, device)
            timer.lap('mapping')
            self._capture_name = args.layer
            self._captured = {}
            self._install_hooks(G)
            img = gen.synthesize_frame(G, ws, c, spec)
            timer.lap('synthesis')
            self._show(args, res, img, ws)
            timer.lap('postprocess')
            timer.finish()

    def _frame_latents(self, G, info, spec: gen.FrameSpec, device: torch.device):
        """gen.frame_latents, keeping the seed's ws while only the camera changes when G's mapping
        network does not see the camera (mapping c_dim 0: the label is ignored). Orbiting with such
        a network mapped the same seed again every frame (~0.7 ms of the 64² network's ~15 ms)."""
        mapping = getattr(G, 'mapping', None)
        if spec.pivot is not None or mapping is None or getattr(mapping, 'c_dim', None) != 0:
            return gen.frame_latents(G, info, spec, device)
        c = gen.frame_label(info, spec, device)
        key = (str(device), spec.seed, spec.trunc_psi, spec.trunc_cutoff, spec.mix_seed, tuple(spec.mix_layers))
        cached = self._seed_ws
        if cached is not None and cached[0]() is G and cached[1] == key:
            return cached[2], c
        ws = gen.seed_ws(G, spec, c, device)
        self._seed_ws = (weakref.ref(G), key, ws)
        return ws, c

    def _describe(self, device: torch.device, fp32: bool, G) -> str:
        """precision.describe, which walks every module of G: once per network, device and fp32."""
        key = (str(device), bool(fp32))
        cached = self._precision
        if cached is None or cached[0]() is not G or cached[1] != key:
            cached = self._precision = (weakref.ref(G), key, precision.describe(device, fp32, G))
        return cached[2]

    def _show(self, args: RenderArgs, res: RenderResult, img: torch.Tensor, ws: torch.Tensor):
        """The frame as uint8 (or its difference to the photo), its statistics and the chosen layer's view."""
        img_u8 = gen.to_uint8(img)[0].cpu().numpy()
        if img_u8.shape[2] not in (1, 3):
            img_u8 = np.ascontiguousarray(img_u8[:, :, :3])
        if args.photo is not None and args.photo_view == 'difference':
            img_u8 = photo_difference(args.photo.target, img_u8)
        res.image = img_u8
        f = img[0].float()
        res.stats = dict(mean=float(f.mean()), std=float(f.std()), min=float(f.min()), max=float(f.max()),
                         resolution=tuple(img_u8.shape[:2]), w_norm=float(ws[0].norm(dim=-1).mean()))
        res.layers = [(n, self._layer_shapes[n]) for n in self._layer_order if n in self._layer_shapes]
        # A layer this network lacks was chosen on another network (the render that follows a
        # switch): no layer view, no error; the Layers widget picks one of res.layers next.
        if args.layer and args.layer in self._layer_order:
            if args.layer not in self._captured:
                raise ValueError(f'layer {args.layer!r} produced no image-like output')
            res.layer_image, res.layer_stats = layer_to_image(self._captured[args.layer][0], args.layer_channel,
                                                              args.layer_rgb)


def photo_difference(target, image):
    """|target - image| per channel, times DIFFERENCE_GAIN, as HxWx3 uint8 (black = identical)."""
    target, image = np.asarray(target), np.asarray(image)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if target.shape != image.shape:
        raise ValueError(f'target is {target.shape[1]}x{target.shape[0]} but the network renders '
                         f'{image.shape[1]}x{image.shape[0]}: invert the photo again with this network')
    diff = np.abs(target.astype(np.int16) - image.astype(np.int16)) * DIFFERENCE_GAIN
    return np.ascontiguousarray(np.clip(diff, 0, 255).astype(np.uint8))


def layer_to_image(x: torch.Tensor, channel: int = 0, rgb: bool = False):
    """Feature map (C, H, W) -> (HxWx1 or HxWx3 uint8 normalized per channel, stats dict)."""
    x = x.float()
    num = x.shape[0]
    channel = int(min(max(channel, 0), num - 1))
    chans = [min(channel + i, num - 1) for i in range(3)] if rgb else [channel]
    sel = x[chans]
    mean = sel.mean(dim=(1, 2), keepdim=True)
    std = sel.std(dim=(1, 2), keepdim=True).clamp_min(1e-8) if sel[0].numel() > 1 else torch.ones_like(mean)
    norm = ((sel - mean) / (4 * std) + 0.5).clamp(0, 1)       # +-2 std spans the range
    img = (norm * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    stats = dict(channels=num, shown=chans, mean=float(x.mean()), std=float(x.std()) if x.numel() > 1 else 0.0,
                 min=float(x.min()), max=float(x.max()), channel_mean=float(sel[0].mean()),
                 channel_std=float(sel[0].std()) if sel[0].numel() > 1 else 0.0)
    return np.ascontiguousarray(img), stats


def available_devices() -> list[str]:
    """Device names the GUI offers: auto, cpu, and cuda/mps when present."""
    out = ['auto', 'cpu']
    if torch.cuda.is_available():
        out.append('cuda')
        if torch.cuda.device_count() > 1:
            out += [f'cuda:{i}' for i in range(torch.cuda.device_count())]
    if gen.mps_available():
        out.append('mps')
    return out
