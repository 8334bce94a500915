"""Network weight files without code: `.safetensors` with a JSON header naming each network's
class and constructor arguments.

safetensors is the ecosystem's format for weights that cannot run code: a JSON header and raw
tensor bytes. Each network `key` stores its tensors as `key/<state_dict name>`; the header's
metadata holds `format`, `networks` ({key: {class_name, init_args, init_kwargs}}) and `extra`
(JSON values such as camera_stats). Loading constructs the named class of this project and loads
the tensors strictly, so the file needs nothing but this installation's own code. The class
must be one of `raycond.families`' network classes exactly and its arguments within the families'
limits (raycond.rebuild.build_network); what is written here is only what that loader accepts.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import torch

import dnnlib
from raycond import families, rebuild
from raycond.safe_pickle import NetworkLoadError

SAFETENSORS_FORMAT = "raycond-safetensors-v1"


def class_name_of(net: torch.nn.Module) -> str:
    """The importable name of a network's class, for files that must not carry code."""
    module = type(net).__module__
    if module.startswith("_imported_module_"):
        raise NetworkLoadError(
            f"{type(net).__name__} was loaded from pickled source; safe weight files need a network "
            f"class that this installation can import (e.g. training.networks_raycond2.Generator)")
    return f"{module}.{type(net).__name__}"


def check_writable(key: str, net: torch.nn.Module) -> dict:
    """The header entry {class_name, init_args, init_kwargs} of one network, refused (NetworkLoadError)
    unless the loader would accept it: a class of the families table and arguments within its limits."""
    if "/" in key:
        raise NetworkLoadError(f"network key {key!r} must not contain '/'")
    if getattr(net, "init_kwargs", None) is None:
        raise NetworkLoadError(f"network {key!r} does not record its constructor arguments "
                               f"(decorate its class with persistence.persistent_class)")
    class_name = class_name_of(net)
    if not families.is_network_class(class_name):
        raise NetworkLoadError(f"network {key!r} is a {class_name}, which weight files cannot hold (they may "
                               f"only name {', '.join(families.network_classes())})")
    try:
        entry = {"class_name": class_name, "init_args": _to_json(list(net.init_args)),
                 "init_kwargs": _to_json(dict(net.init_kwargs))}
    except TypeError as e:
        raise NetworkLoadError(f"network {key!r} has constructor arguments that are not plain values: {e}") from e
    try:
        flat = rebuild._bind(rebuild._network_class(class_name), entry["init_args"], entry["init_kwargs"])
    except TypeError as e:
        raise NetworkLoadError(f"network {key!r}: {class_name} does not take its recorded arguments ({e})") from e
    problem = families.check_kwargs(families.NETWORK_KWARGS, flat, "")
    if problem:
        raise NetworkLoadError(f"network {key!r} cannot be written: argument {problem}")
    return entry


def build_networks(networks, tensors_of, name: str, budget: "rebuild.Budget") -> dict:
    """{key: network} from a weight file's `networks` table ({key: {class_name, init_args,
    init_kwargs}}) and `tensors_of(key)` (the state dict stored for it), checked as data:
    NetworkLoadError naming the file and the field for anything else."""
    if not isinstance(networks, dict) or not networks:
        raise NetworkLoadError(f"{name}: 'networks' is a {type(networks).__name__}, expected a dict of "
                               f"{{key: {{class_name, init_args, init_kwargs}}}}")
    result = {}
    for key, entry in networks.items():
        field = f"networks[{str(key)[:40]!r}]"
        if not isinstance(key, str) or not isinstance(entry, dict):
            raise NetworkLoadError(f"{name}: {field} is a {type(entry).__name__}, expected a dict")
        unknown = sorted(set(entry) - {"class_name", "init_args", "init_kwargs", "state_dict"})
        if unknown or "class_name" not in entry:
            what = f"has unknown field {str(unknown[0])[:40]!r}" if unknown else "has no class_name"
            raise NetworkLoadError(f"{name}: {field} {what}")
        try:
            net = rebuild.build_network(entry["class_name"], entry.get("init_args", []), entry.get("init_kwargs", {}),
                                        name, field, budget)
        except (TypeError, ValueError, AssertionError, KeyError, IndexError, ZeroDivisionError) as e:
            if isinstance(e, NetworkLoadError):
                raise
            raise NetworkLoadError(f"{name}: {field}: {entry['class_name']} does not accept the stored arguments "
                                   f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        state = tensors_of(key)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise NetworkLoadError(f"{name}: the tensors of {field} are not a dict of tensors")
        reference = net.state_dict()
        for k, v in state.items():
            if k in reference and v.is_floating_point() and reference[k].is_floating_point():
                state[k] = v.to(reference[k].dtype)     # float16 files are widened back
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise NetworkLoadError(f"{name}: the weights of {key!r} do not fit {entry['class_name']} "
                                   f"({str(e).splitlines()[0]})") from e
        result[key] = net.eval().requires_grad_(False)
    return result


def _to_json(value: Any):
    """Constructor arguments as JSON: numpy scalars become numbers, tuples become lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= 1024:
        return _to_json(value.tolist())
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
        networks[key] = check_writable(key, net)
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
            kept[k] = check_extra(k, _to_json(v))
        except (TypeError, NetworkLoadError):
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


def check_extra(key: str, value):
    """An extra of a weight file as the loader accepts it (raises NetworkLoadError otherwise):
    training_set_kwargs must describe a dataset of the families table, camera_stats must be a
    dict of numbers and short lists, kimg a number. Other keys are plain JSON values."""
    if key == "training_set_kwargs" and value is not None:
        problem = families.check_dataset_kwargs(value)
        if problem:
            raise NetworkLoadError(f"training_set_kwargs: {problem}")
    elif key == "camera_stats" and value is not None:
        number = (int, float, np.generic)
        small_array = lambda v: isinstance(v, np.ndarray) and v.size <= 16 and v.dtype.kind in "biuf"  # noqa: E731
        ok = isinstance(value, dict) and len(value) <= 64 and all(
            isinstance(k, str) and (isinstance(v, (*number, str, type(None))) or small_array(v) or
                                    (isinstance(v, (list, tuple)) and len(v) <= 16 and
                                     all(isinstance(x, number) for x in v)))
            for k, v in value.items())
        if not ok:
            raise NetworkLoadError("camera_stats is not a dict of numbers and short lists of numbers")
    elif key == "kimg" and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.generic))):
        raise NetworkLoadError("kimg is not a number")
    return value


def _json_field(meta: dict, key: str, default, name: str):
    text = meta.get(key, default)
    if not isinstance(text, str):
        raise NetworkLoadError(f"{name}: header field {key!r} is not JSON text")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise NetworkLoadError(f"{name}: header field {key!r} is not readable JSON ({str(e)[:80]})") from None


def load_safetensors(data: bytes, name: str) -> dict:
    """{key: network, **extra} from a file written by save_safetensors, every field checked as
    data (NetworkLoadError naming the file and the field otherwise)."""
    from safetensors.torch import load as load_tensors

    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
    except (ValueError, RecursionError, struct.error) as e:
        raise NetworkLoadError(f"{name} is not a readable safetensors file (header: {str(e)[:80]})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != SAFETENSORS_FORMAT:
        raise NetworkLoadError(f"{name} is a safetensors file without raycond networks "
                               f"(expected format {SAFETENSORS_FORMAT!r})")
    networks = _json_field(meta, "networks", None, name)
    extra = _json_field(meta, "extra", "{}", name)
    if not isinstance(extra, dict):
        raise NetworkLoadError(f"{name}: header field 'extra' is a {type(extra).__name__}, expected a dict")
    for key in ("camera_stats", "kimg"):    # training_set_kwargs is checked where it is used (metrics)
        try:
            check_extra(key, extra.get(key))
        except NetworkLoadError as e:
            raise NetworkLoadError(f"{name}: {e}") from None
    try:
        tensors = load_tensors(data)
    except Exception as e:  # noqa: BLE001 - the safetensors library's own checks, as one line
        raise NetworkLoadError(f"{name} is not a readable safetensors weight file "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None

    def tensors_of(key):
        prefix = f"{key}/"
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    result = dict(extra)
    result.update(build_networks(networks, tensors_of, name, rebuild.Budget(len(data))))
    return result
