"""An inverted photo (`Inversion`: render it at any camera) and its file.

The file is a torch file of tensors and plain values (no pickled code; `torch.load(weights_only=True)`
can read it, raycond reads it with its restricted unpickler) holding the pivot, the camera, the
target and the tuned weights that changed.
`load` needs the original network, named in the file and checked by its weight fingerprint.
Every way a file can be wrong (missing, a directory, an image, projector.py's projected.npz, a
truncated or foreign torch file) is answered by `InversionFileError`, one line naming the file.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import zipfile

import numpy as np
import torch

from raycond import atomic_io
from raycond import camera as cam
from raycond import generate as rgen
from raycond import loading, safe_pickle

from .state import synthesize

FORMAT = "raycond-inversion-v1"


class InversionFileError(ValueError):
    """An inversion file that is missing or not one written by raycond."""


def fingerprint(G: torch.nn.Module) -> str:
    """A digest of every parameter and buffer: inversion files check they are applied to the same
    network they were made from (tuned weights on another network would render garbage)."""
    h = hashlib.sha1()
    for name, t in sorted(G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclasses.dataclass
class Inversion:
    """An inverted photo: render it at any camera with `render`.

    camera: (1,25) float32 label (the given one or the estimate; (1,c_dim) zeros for networks
    without a camera). ws: (1,num_ws,w_dim) pivot. G: the tuned generator (a deep copy).
    z: the pivot in Z for networks whose mapping sees the camera (None otherwise).
    target: (1,C,H,W) uint8 photo as the network saw it. meta: plain values (camera angles,
    loss, steps, seconds, network path and fingerprint, the start's camera).
    start_ws: the start's ws before the pivot (the encoder's estimate; not saved), for comparisons.
    """

    camera: torch.Tensor
    ws: torch.Tensor
    G: torch.nn.Module
    target: torch.Tensor
    meta: dict
    z: torch.Tensor | None = None
    base_G: torch.nn.Module | None = dataclasses.field(default=None, repr=False)
    start_ws: torch.Tensor | None = dataclasses.field(default=None, repr=False)

    @property
    def has_camera(self) -> bool:
        return bool(self.meta.get("has_camera"))

    def camera_at(self, yaw_deg, pitch_deg, fov_deg=None) -> torch.Tensor:
        """Labels (N,25) at other yaw/pitch (degrees) with this inversion's FOV, radius and look-at."""
        if not self.has_camera:
            return self.camera.clone()
        m = self.meta
        return cam.camera_label(yaw_deg, pitch_deg, fov_deg=m["fov_deg"] if fov_deg is None else fov_deg,
                                radius=m["radius"], lookat=m["lookat"])

    def render(self, camera=None, noise_mode: str = "const") -> torch.Tensor:
        """Images (N,3,H,W) float32 in [-1,1] at `camera` ((25,) or (N,25) label; default: the photo's)."""
        device = next(self.G.parameters()).device
        if camera is None:
            c = self.camera
        else:
            c = torch.as_tensor(np.array(camera, dtype=np.float32) if not torch.is_tensor(camera) else camera)
            c = c.float().reshape(1, -1) if c.ndim == 1 else c.float()
            if c.ndim != 2 or c.shape[1] != self.camera.shape[1]:
                raise ValueError(f"camera must have shape ({self.camera.shape[1]},) or (N, {self.camera.shape[1]}), "
                                 f"got {tuple(c.shape)}")
            if not torch.isfinite(c).all():
                raise ValueError("camera label contains NaN or infinite values")
        c = c.to(device)
        with torch.no_grad():
            img = synthesize(self.G, rgen.pivot_ws(self, self.G, c, device), c, self.has_camera)
        return img.float().clamp(-1, 1)

    def payload(self) -> dict:
        """What the file holds: tensors and plain values only."""
        base = self.base_G
        if base is None:
            raise ValueError("this inversion does not know its original network; it cannot be saved")
        ref = base.state_dict()
        tuned = {k: v.detach().cpu().clone() for k, v in self.G.state_dict().items()
                 if k in ref and not torch.equal(v.detach().cpu(), ref[k].detach().cpu())}
        payload = {"format": FORMAT, "camera": self.camera.detach().cpu().float(), "ws": self.ws.detach().cpu().float(),
                   "target": self.target.detach().cpu(), "tuned_state": tuned, "meta": _plain(self.meta)}
        if self.z is not None:
            payload["z"] = self.z.detach().cpu().float()
        return payload

    def save(self, path) -> None:
        """Write the file atomically (a temporary name renamed when complete)."""
        atomic_io.save_torch(os.fspath(path), self.payload())


def _plain(obj):
    """Meta values as plain Python (lists, floats, strings) so weights_only loading accepts them."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _not_torch_file_reason(path: str) -> str | None:
    """Why `path` cannot be a torch file (None when it might be one: a zip or a pickle)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if names and all("/" not in n for n in names) and any(n.endswith(".npy") for n in names):
            beside = os.path.join(os.path.dirname(path), "inversion.pt")
            hint = f"pass {beside}" if os.path.isfile(beside) else "pass the inversion.pt that projector.py wrote beside it"
            return f"is a NumPy .npz (projector.py's pivot and camera, without the tuned weights); {hint}"
        return None
    if head.startswith((b"PK", b"\x80")):
        return None
    if head.startswith((b"\x89PNG", b"\xff\xd8", b"GIF8", b"BM")):
        return "is an image, not an inversion file (projector.py writes inversion.pt)"
    return "is not an inversion file (projector.py writes inversion.pt)"


def read_payload(path) -> dict:
    """The checked contents of an inversion file, or InversionFileError (one line naming the file)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InversionFileError(f"inversion file not found: {path}")
    if not os.path.isfile(path):
        raise InversionFileError(f"{path} is a directory, expected an inversion file (projector.py's inversion.pt)")
    reason = _not_torch_file_reason(path)
    if reason is not None:
        raise InversionFileError(f"{path} {reason}")
    try:
        # The project's restricted reader, not torch.load: entries must be stored as they are (a small
        # zip cannot inflate to gigabytes) and only tensors and plain values are rebuilt.
        with open(path, "rb") as f:
            payload = safe_pickle.restricted_load_torch_zip(f.read(), path)
    except Exception as e:  # noqa: BLE001 - torch's messages (and its weights_only advice) are not for users
        kind = "holds objects other than tensors and plain values" if isinstance(e, safe_pickle.UntrustedPickleError) \
            else "truncated, damaged or larger than its file"
        raise InversionFileError(f"{path} is not a readable inversion file ({kind}); write one with projector.py "
                                 f"or Inversion.save") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InversionFileError(f"{path} is not an inversion file (expected format {FORMAT!r}); write one with "
                                 f"projector.py or Inversion.save")
    for key in ("camera", "ws", "target", "tuned_state", "meta"):
        if key not in payload:
            raise InversionFileError(f"{path} is an incomplete inversion file (no {key!r})")
    return payload


def network_of(path) -> str:
    """The network path recorded in an inversion file (scripts open it when --network is not given)."""
    net = read_payload(path)["meta"].get("network")
    if not net:
        raise InversionFileError(f"{path} does not name its network; give --network")
    return net


def _open_network(path: str, meta: dict, G, trust_pickle: bool):
    if G is None:
        net_path = meta.get("network")
        if not net_path:
            raise InversionFileError(f"{path} does not name its network; pass the network it was made from as G")
        try:
            return loading.load_network(net_path, trust_pickle=trust_pickle)
        except loading.NetworkLoadError as e:
            raise ValueError(f"{path} was made from {net_path}, which cannot be opened here ({e}); pass that "
                             f"network as G") from None
    if isinstance(G, (str, os.PathLike)):
        return loading.load_network(os.fspath(G), trust_pickle=trust_pickle)
    return G


def load(path, G=None, device=None, trust_pickle: bool = False) -> Inversion:
    """Read an inversion file. `G` is the network it was made from (a module or a path); without it,
    the network path stored in the file is opened through raycond.loading (`trust_pickle` as there)."""
    path = os.fspath(path)
    payload = read_payload(path)
    meta = dict(payload["meta"])
    G = _open_network(path, meta, G, trust_pickle)
    if meta.get("fingerprint") and fingerprint(G) != meta["fingerprint"]:
        raise ValueError(f"{path} was made from a different network ({meta.get('network') or 'unknown'}); "
                         f"pass the network it was made from")
    device = rgen.resolve_device(next(G.parameters()).device if device is None else device)
    tuned = copy.deepcopy(G).eval().requires_grad_(False)
    state = tuned.state_dict()
    for k, v in payload["tuned_state"].items():
        if k not in state or state[k].shape != v.shape:
            raise ValueError(f"{path} holds weight {k!r} that this network does not have in that shape")
        state[k] = v.to(state[k].dtype)
    tuned.load_state_dict(state)
    z = payload.get("z")
    return Inversion(camera=payload["camera"].to(device), ws=payload["ws"].to(device), G=tuned.to(device),
                     target=payload["target"], meta=meta, z=None if z is None else z.to(device), base_G=G)
