"""Network weight files without code: `.safetensors` with a JSON header naming each network's
class and constructor arguments.

safetensors is the ecosystem's format for weights that cannot run code: a JSON header and raw
tensor bytes. Each network `key` stores its tensors as `key/<state_dict name>`; the header's
metadata holds `format`, `networks` ({key: {class_name, init_args, init_kwargs}}) and `extra`
(JSON values such as camera_stats). Loading constructs the named class of this project and loads
the tensors strictly, so the file needs nothing but this installation's own code.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import torch

import dnnlib
from raycond.safe_pickle import NetworkLoadError

SAFETENSORS_FORMAT = "raycond-safetensors-v1"
ALLOWED_CLASS_PREFIXES = ("training.",)


def class_name_of(net: torch.nn.Module) -> str:
    """The importable name of a network's class, for files that must not carry code."""
    module = type(net).__module__
    if module.startswith("_imported_module_"):
        raise NetworkLoadError(
            f"{type(net).__name__} was loaded from pickled source; safe weight files need a network "
            f"class that this installation can import (e.g. training.networks_raycond2.Generator)")
    return f"{module}.{type(net).__name__}"


def network_class(class_name: str, name: str) -> type:
    """The class a weight file names, if it is one of this project's networks: a weight file must
    not be able to call an arbitrary function (e.g. os.system) through its class name."""
    cls = None
    if isinstance(class_name, str) and class_name.startswith(ALLOWED_CLASS_PREFIXES):
        try:
            cls = dnnlib.util.get_obj_by_name(class_name)
        except (ImportError, AttributeError, ValueError):
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise NetworkLoadError(f"{name} names class {class_name!r}; weight files may only name network "
                               f"classes of this project ({', '.join(ALLOWED_CLASS_PREFIXES)}*)")
    return cls


def _to_json(value: Any):
    """Constructor arguments as JSON: numpy scalars become numbers, tuples become lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def save_safetensors(path: str, nets: dict[str, torch.nn.Module], **extra: Any) -> list[str]:
    """Write networks (and JSON-able extras) atomically; returns the extras that were left out
    because they are not plain JSON values."""
    from safetensors.torch import save_file

    tensors, networks, seen_storages = {}, {}, set()
    for key, net in nets.items():
        if "/" in key:
            raise NetworkLoadError(f"network key {key!r} must not contain '/'")
        if getattr(net, "init_kwargs", None) is None:
            raise NetworkLoadError(f"network {key!r} does not record its constructor arguments "
                                   f"(decorate its class with persistence.persistent_class)")
        try:
            networks[key] = {"class_name": class_name_of(net), "init_args": _to_json(list(net.init_args)),
                             "init_kwargs": _to_json(dict(net.init_kwargs))}
        except TypeError as e:
            raise NetworkLoadError(f"network {key!r} has constructor arguments that are not plain values: {e}") from e
        for name, tensor in net.state_dict().items():
            t = tensor.detach().cpu().contiguous()
            ptr = t.untyped_storage().data_ptr()
            if t.numel() and ptr in seen_storages:      # safetensors refuses shared memory (e.g. G is G_ema)
                t = t.clone()
            seen_storages.add(t.untyped_storage().data_ptr())
            tensors[f"{key}/{name}"] = t
    kept, dropped = {}, []
    for k, v in extra.items():
        try:
            kept[k] = _to_json(v)
        except TypeError:
            dropped.append(k)
    metadata = {"format": SAFETENSORS_FORMAT, "networks": json.dumps(networks), "extra": json.dumps(kept)}
    with dnnlib.util.atomic_output(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return dropped


def is_safetensors(data: bytes) -> bool:
    """safetensors files start with an 8-byte header length followed by a JSON object."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def load_safetensors(data: bytes, name: str) -> dict:
    """{key: network, **extra} from a file written by save_safetensors."""
    from safetensors.torch import load as load_tensors

    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        meta = header.get("__metadata__") or {}
        if meta.get("format") != SAFETENSORS_FORMAT:
            raise NetworkLoadError(f"{name} is a safetensors file without raycond networks "
                                   f"(expected format {SAFETENSORS_FORMAT!r})")
        networks = json.loads(meta["networks"])
        extra = json.loads(meta.get("extra", "{}"))
        tensors = load_tensors(data)
    except NetworkLoadError:
        raise
    except Exception as e:
        raise NetworkLoadError(f"{name} is not a readable safetensors weight file ({type(e).__name__}: {e})") from e
    result = dict(extra)
    for key, entry in networks.items():
        class_name = entry["class_name"]
        with torch.random.fork_rng(devices=[]):
            net = network_class(class_name, name)(*entry["init_args"], **entry["init_kwargs"])
        prefix = f"{key}/"
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise NetworkLoadError(f"{name}: the weights of {key!r} do not fit {class_name} "
                                   f"({str(e).splitlines()[0]})") from e
        result[key] = net.eval().requires_grad_(False)
    return result
