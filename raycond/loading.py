"""Open any network file: this project's snapshots, the official Ray Conditioning release,
NVIDIA's StyleGAN2-ADA/StyleGAN3 pickles, and our "safe" weight files (plain tensors + a class
name: `.safetensors` with a JSON header, or `.pt` loadable with `torch.load(weights_only=True)`).

By default no code inside a file runs: pickles go through the restricted unpickler
(raycond.safe_pickle) and their networks are rebuilt from this project's classes
(raycond.rebuild). `trust_pickle=True` is the old behaviour, `pickle.load`, which executes the
module source that StyleGAN-family pickles carry; only for files from a trusted source.

Network pickles carry their own module source (see torch_utils.persistence); what they need from
the host tree is listed in docs/compatibility.md. This module never
imports `training` directly: networks are built by class name through `dnnlib.util`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import io
import os
import pickle
import pickletools
import sys
import zipfile
from typing import Any

import torch

import dnnlib
from raycond import camera as cam
from raycond import families, rebuild, rundir, safe_pickle, safe_weights
from raycond.safe_pickle import NetworkLoadError, UntrustedPickleError

SAFE_FORMAT = "raycond-weights-v1"
NETWORK_KEYS = ("G_ema", "G", "D")
TRUST_PICKLE_HELP = ("Load network pickles that carry code this project does not recognise (runs that code; only "
                     "for files you trust).")
__all__ = ["NetworkLoadError", "UntrustedPickleError", "NetworkInfo", "load_snapshot", "load_network",
           "load_network_and_info", "network_info", "resolve_network_path", "save_safe_weights",
           "export_generator", "DEFAULT_CHECKPOINT", "resolve_network_arg", "load_generator_and_discriminator",
           "file_digest", "digest_of"]


def _bundled_checkpoint() -> str:
    """Where the small bundled network is: `raycond/checkpoints/` in an installed wheel (the repo's
    `checkpoints/` folder is packaged there), `checkpoints/` beside `raycond/` in a checkout."""
    name = "raycond2-synthheads-64.pkl"
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "checkpoints", name)
    checkout = os.path.join(os.path.dirname(here), "checkpoints", name)
    return installed if os.path.isfile(installed) else checkout


DEFAULT_CHECKPOINT = _bundled_checkpoint()


def resolve_network_arg(network: str | None, what: str = "--network") -> str:
    """The network a tool should open: `network` when given, else the bundled checkpoint (announced
    in one line on stderr, so that a user knows which file made the images)."""
    if network:
        return network
    if not os.path.isfile(DEFAULT_CHECKPOINT):
        raise NetworkLoadError(f"{what} is required (no bundled checkpoint found at {dnnlib.util.display_path(DEFAULT_CHECKPOINT)})")
    print(f"No {what} given: using the bundled checkpoint {dnnlib.util.display_path(DEFAULT_CHECKPOINT)}", file=sys.stderr)
    return DEFAULT_CHECKPOINT


@dataclasses.dataclass
class NetworkInfo:
    """What tools need to know about a loaded generator, whatever release wrote it."""

    kind: str  # the family's name (raycond/families.py: raycond2, posecond2, raycond-official2, ...) or unknown
    z_dim: int
    c_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    num_ws: int
    num_params: int
    camera: bool
    synthesis_takes_c: bool
    camera_stats: dict | None = None
    layer_names: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        cam = "camera-conditioned" if self.camera else ("class-conditional" if self.c_dim else "no camera")
        return (f"{self.kind}, {self.img_resolution}x{self.img_resolution}, c_dim={self.c_dim} ({cam}), "
                f"{self.num_params / 1e6:.2f}M parameters")


# ----------------------------------------------------------------------------- reading files

def _read_bytes(path_or_url: str) -> bytes:
    try:
        with dnnlib.util.open_url(path_or_url) as f:
            return f.read()
    except FileNotFoundError as e:
        raise NetworkLoadError(f"network file not found: {path_or_url}") from e
    except IsADirectoryError as e:
        raise NetworkLoadError(f"{path_or_url} is a directory, expected a network file (.pkl)") from e
    except OSError as e:
        raise NetworkLoadError(f"cannot read network file {path_or_url}: {e}") from e


def _is_torch_zip(data: bytes) -> bool:
    if not data.startswith(b"PK"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(name.endswith("data.pkl") for name in z.namelist())
    except zipfile.BadZipFile:
        return False


def resolve_network_path(path_or_url: str) -> str:
    """A training run directory stands for its newest `network-snapshot-*.pkl`."""
    path_or_url = os.fspath(path_or_url)
    local = os.path.expanduser(path_or_url)
    if not os.path.isdir(local):
        return path_or_url
    snap = rundir.newest_snapshot(local)
    if snap is None:
        raise NetworkLoadError(f"{path_or_url} is a directory without network-snapshot-*.pkl files")
    return snap


def file_digest(data: bytes) -> str:
    """The sha256 of a file's bytes: what trust is bound to (a changed file is a new question)."""
    return hashlib.sha256(data).hexdigest()


def digest_of(path_or_url: str) -> str:
    """The sha256 of the bytes a network path (file, URL, run directory) holds now."""
    return file_digest(_read_bytes(resolve_network_path(path_or_url)))


def _trusted(trust_pickle, data: bytes) -> bool:
    """`trust_pickle` is True (trust whatever the path holds: command-line --trust-pickle) or the
    digest of the bytes the user agreed to run (the visualizer): only those bytes are trusted."""
    if isinstance(trust_pickle, str):
        return file_digest(data) == trust_pickle
    return bool(trust_pickle)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def _unpickle(data: bytes, name: str, trust_pickle) -> Any:
    if _trusted(trust_pickle, data):
        return pickle.loads(data)
    obj = safe_pickle.restricted_loads(data, name)
    return rebuild.rebuild_tree(obj, name, rebuild.Budget(len(data)))


def _check_extras(snapshot: dict, name: str) -> None:
    """Data beside the networks that tools use as numbers (camera_stats, kimg), checked like a weight
    file's header; training_set_kwargs is checked where it is used (metrics refuse a bad one)."""
    kwargs = snapshot.get("training_set_kwargs")
    stats = [("camera_stats", snapshot.get("camera_stats")), ("kimg", snapshot.get("kimg"))]
    if isinstance(kwargs, dict):
        stats.append(("camera_stats", kwargs.get("camera_stats")))
    for key, value in stats:
        try:
            safe_weights.check_extra(key, value)
        except NetworkLoadError as e:
            raise NetworkLoadError(f"{name}: {e}") from None


def load_snapshot(path_or_url: str, trust_pickle: bool | str = False) -> dict:
    """Load a whole snapshot as a dict (`G`, `D`, `G_ema`, `augment_pipe`, `training_set_kwargs`,
    `camera_stats`, ... whatever the file holds). Safe weight files give {'G_ema': G, ...}.
    A run directory loads its newest snapshot. Without trust, a pickle whose networks this project
    cannot rebuild from its own classes raises UntrustedPickleError (its `digest` is the sha256 of
    the refused bytes); data that is malformed or too large raises NetworkLoadError. Both are one
    line naming the file. `trust_pickle` is True or the sha256 of the bytes to trust."""
    path_or_url = resolve_network_path(path_or_url)
    data = _read_bytes(path_or_url)
    if len(data) == 0:
        raise NetworkLoadError(f"{path_or_url} is empty, expected a network pickle")
    try:
        return _load_bytes(data, path_or_url, trust_pickle)
    except UntrustedPickleError as e:
        e.digest = file_digest(data)
        raise
    except NetworkLoadError:
        raise
    except (RecursionError, MemoryError) as e:
        raise NetworkLoadError(f"{path_or_url} is not a readable network file ({_one_line(e)})") from None


def _load_bytes(data: bytes, path_or_url: str, trust_pickle) -> dict:
    if safe_weights.is_safetensors(data):
        return safe_weights.load_safetensors(data, path_or_url)
    if _is_torch_zip(data):
        return _load_safe_weights(data, path_or_url)
    if _looks_like_text(data):
        raise NetworkLoadError(f"{path_or_url} is a text file, expected a network file (.pkl snapshot, "
                               f".safetensors or .pt weights)")
    try:
        obj = _unpickle(data, path_or_url, trust_pickle)
    except UntrustedPickleError:
        raise
    except NetworkLoadError as e:
        msg = str(e)
        raise NetworkLoadError(msg if msg.startswith(f"{path_or_url}") else f"{path_or_url}: {msg}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, MemoryError, OverflowError) as e:
        raise NetworkLoadError(f"{path_or_url} is not a readable network pickle ({_one_line(e)})") from None
    except ModuleNotFoundError as e:
        hint = " (TensorFlow-era StyleGAN pickles are not supported; convert them with NVIDIA's legacy.py first)" \
            if e.name and ("tensorflow" in e.name or e.name.startswith("dnnlib.tflib")) else ""
        raise NetworkLoadError(f"{path_or_url} needs module {e.name!r} to load{hint}") from None
    if isinstance(obj, torch.nn.Module):
        obj = {"G_ema": obj}
    if not isinstance(obj, dict):
        raise NetworkLoadError(f"{path_or_url} holds a {type(obj).__name__}, expected a dict of networks "
                               f"with keys like {', '.join(NETWORK_KEYS)}")
    if not _trusted(trust_pickle, data):
        _check_extras(obj, path_or_url)
    return obj


def load_network(path_or_url: str, key: str = "G_ema", device: str | torch.device = "cpu",
                 trust_pickle: bool = False) -> torch.nn.Module:
    """Load one network (default: the EMA generator) ready for inference on `device`."""
    return load_network_and_info(path_or_url, key=key, device=device, trust_pickle=trust_pickle)[0]


def load_network_and_info(path_or_url: str, key: str = "G_ema", device: str | torch.device = "cpu",
                          trust_pickle: bool = False) -> tuple[torch.nn.Module, NetworkInfo]:
    """Load a network and describe it (kind, dims, camera use, the snapshot's camera_stats)."""
    snapshot = load_snapshot(path_or_url, trust_pickle=trust_pickle)
    net = snapshot.get(key)
    if net is None and key == "G_ema":
        net = snapshot.get("G")
    if not isinstance(net, torch.nn.Module):
        present = [k for k, v in snapshot.items() if isinstance(v, torch.nn.Module)]
        raise NetworkLoadError(
            f"{path_or_url} has no network under {key!r} (networks present: {', '.join(present) or 'none'})")
    net = net.eval().requires_grad_(False).to(device)
    info = network_info(net, snapshot)
    return net, info


def load_generator_and_discriminator(path_or_url: str, trust_pickle: bool = False):
    """(G, info, D) from one read of a network file, for photo inversion: the generator (`G_ema`, else
    `G`) in eval mode without gradients, its description, and the file's discriminator likewise, or
    None when the file kept none (inference exports usually do not)."""
    snapshot = load_snapshot(path_or_url, trust_pickle=trust_pickle)
    G = snapshot.get("G_ema") or snapshot.get("G")
    if not isinstance(G, torch.nn.Module):
        present = [k for k, v in snapshot.items() if isinstance(v, torch.nn.Module)]
        raise NetworkLoadError(f"{path_or_url} has no generator (G_ema or G); networks present: "
                               f"{', '.join(present) or 'none'}")
    G = G.eval().requires_grad_(False)
    D = snapshot.get("D")
    D = D.eval().requires_grad_(False) if isinstance(D, torch.nn.Module) else None
    return G, network_info(G, snapshot), D


# ----------------------------------------------------------------------------- describing

_FOREIGN_SEEN: dict = {}   # (generator class, synthesis class) -> _foreign_generator's answer


def _foreign_generator(net: torch.nn.Module) -> tuple[str, bool]:
    """(kind, synthesis takes c) for a generator whose class is in no family row: only a trusted
    pickle's own code brings one. The one place that reads code instead of the table: the kind from
    the class's pickled source (the official release's rays are Plücker's, StyleGAN3 has
    SynthesisInput), the camera argument from the signature of its synthesis (ws, c, ...)."""
    src = getattr(type(net), "_orig_module_src", None)
    if src is None:
        try:
            src = inspect.getsource(inspect.getmodule(type(net)))
        except (TypeError, OSError):
            src = ""
    backbone = "3" if "SynthesisInput" in src else "2"
    if "plucker" in src:
        kind = "raycond-official" + backbone
    elif "SynthesisNetwork" in src:
        kind = "stylegan" + backbone
    else:
        kind = "unknown"
    try:
        params = list(inspect.signature(net.synthesis.forward).parameters.values())
    except (AttributeError, TypeError, ValueError):
        return kind, False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return kind, len(positional) >= 2 and positional[1].name == "c"


def generator_family(net: torch.nn.Module) -> tuple[str, bool]:
    """(kind, whether G.synthesis takes the camera c): the family row of the network's class
    (raycond/families.py), else the trusted-code fallback above."""
    name = families.family_of_network(net)
    if name is None:
        # Read once per class pair: tools ask on every render, and reading source is not cheap.
        key = (type(net), type(getattr(net, "synthesis", None)))
        if key not in _FOREIGN_SEEN:
            _FOREIGN_SEEN[key] = _foreign_generator(net)
        return _FOREIGN_SEEN[key]
    return name, families.family(name).camera


def synthesis_takes_c(net: torch.nn.Module) -> bool:
    """Whether every tool calls G.synthesis(ws, c, ...) rather than G.synthesis(ws, ...)."""
    return generator_family(net)[1]


def network_info(net: torch.nn.Module, snapshot: dict | None = None) -> NetworkInfo:
    """Describe a generator from any supported release."""
    c_dim = int(getattr(net, "c_dim", 0) or 0)
    kind, takes_c = generator_family(net)
    mapping_c = int(getattr(getattr(net, "mapping", None), "c_dim", 0) or 0)
    camera = c_dim == cam.LABEL_DIM and (takes_c or mapping_c == cam.LABEL_DIM)
    synthesis = getattr(net, "synthesis", None)
    layer_names = [name for name, _ in synthesis.named_children()] if synthesis is not None else []
    camera_stats = None
    if snapshot is not None:
        camera_stats = snapshot.get("camera_stats")
        if camera_stats is None:
            kwargs = snapshot.get("training_set_kwargs") or {}
            camera_stats = kwargs.get("camera_stats") if isinstance(kwargs, dict) else None
    return NetworkInfo(
        kind=kind,
        z_dim=int(getattr(net, "z_dim", 0)),
        c_dim=c_dim,
        w_dim=int(getattr(net, "w_dim", 0)),
        img_resolution=int(getattr(net, "img_resolution", 0)),
        img_channels=int(getattr(net, "img_channels", 3)),
        num_ws=int(getattr(net, "num_ws", 0) or getattr(synthesis, "num_ws", 0) or 0),
        num_params=sum(p.numel() for p in net.parameters()),
        camera=camera,
        synthesis_takes_c=takes_c,
        camera_stats=copy.deepcopy(camera_stats),
        layer_names=layer_names,
    )


# ----------------------------------------------------------------------------- safe weights

_class_name_of = safe_weights.class_name_of


def save_safe_weights(path: str, nets: dict[str, torch.nn.Module], dtype: torch.dtype | None = None,
                      **extra: Any) -> None:
    """Write networks as plain tensors + constructor arguments (no pickled code), atomically.
    `dtype=torch.float16` halves the file size; floats are restored to float32 on load."""
    payload: dict[str, Any] = {"format": SAFE_FORMAT, "networks": {}}
    for key, net in nets.items():
        entry = safe_weights.check_writable(key, net)    # only what _load_safe_weights accepts
        state = {}
        for name, tensor in net.state_dict().items():
            tensor = tensor.detach().cpu()
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            state[name] = tensor
        payload["networks"][key] = dict(entry, state_dict=state)
    for key, value in extra.items():
        safe_weights.check_extra(key, value)
    payload.update(extra)
    dnnlib.util.atomic_write(path, lambda f: torch.save(payload, f))


def _load_safe_weights(data: bytes, name: str) -> dict:
    """A `.pt` weight file, read by the restricted unpickler (never torch.load, whose errors advise
    loading unsafely) and built like a safetensors file."""
    try:
        payload = safe_pickle.restricted_load_torch_zip(data, name)
    except UntrustedPickleError as e:
        raise NetworkLoadError(f"{name} is a torch file that names {', '.join(e.names[:4])}; weight files may hold "
                               f"only tensors and plain values") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, MemoryError, OverflowError) as e:
        raise NetworkLoadError(f"{name} is a torch file but not a readable raycond weight file ({_one_line(e)})") \
            from None
    if not isinstance(payload, dict) or payload.get("format") != SAFE_FORMAT:
        raise NetworkLoadError(f"{name} is a torch file without raycond networks "
                               f"(expected format {SAFE_FORMAT!r})")
    networks = payload.get("networks")
    result = {k: v for k, v in payload.items() if k not in ("format", "networks")}
    _check_extras(result, name)

    def tensors_of(key):
        state = networks[key].get("state_dict", {})
        return dict(state) if isinstance(state, dict) else state

    result.update(safe_weights.build_networks(networks, tensors_of, name, rebuild.Budget(len(data))))
    return result


def _looks_like_text(data: bytes) -> bool:
    """Binary pickles (protocol 2+, what every StyleGAN-family tool writes) start with 0x80; a file
    whose first bytes are printable UTF-8 is text a user picked by mistake (a log, a JSON file),
    unless the whole of it parses as a protocol 0/1 pickle (which is text too)."""
    if data[:1] == b"\x80":
        return False
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return False
    try:
        for _ in pickletools.genops(io.BytesIO(data)):
            pass
    except Exception:  # not a pickle: text
        return True
    return False


def export_generator(snapshot_path: str, out_path: str, key: str = "G_ema", trust_pickle: bool = False,
                     with_discriminator: bool = False) -> dict:
    """Write a small inference pickle {'G_ema', 'camera_stats', 'training_set_kwargs', 'kimg'} from a
    training snapshot (no optimizer states), atomically. Returns what was written.

    with_discriminator: also keep 'D' (photo inversion can use its features as a perceptual loss)."""
    snapshot = load_snapshot(snapshot_path, trust_pickle=trust_pickle)
    net = snapshot.get(key)
    if not isinstance(net, torch.nn.Module):
        raise NetworkLoadError(f"{snapshot_path} has no network under {key!r}")
    progress = snapshot.get("progress") or {}
    cur_nimg = progress.get("cur_nimg") if isinstance(progress, dict) else None
    out = {
        "G_ema": copy.deepcopy(net).eval().requires_grad_(False).cpu(),
        "camera_stats": snapshot.get("camera_stats"),
        "training_set_kwargs": snapshot.get("training_set_kwargs"),
        "kimg": None if cur_nimg is None else cur_nimg / 1000,
    }
    if with_discriminator:
        D = snapshot.get("D")
        if not isinstance(D, torch.nn.Module):
            raise NetworkLoadError(f"{snapshot_path} has no discriminator 'D' to export")
        out["D"] = copy.deepcopy(D).eval().requires_grad_(False).cpu()
    dnnlib.util.atomic_write(out_path, lambda f: pickle.dump(out, f))
    return out
