"""Small PyTorch helpers with NVIDIA-compatible names (network source inside foreign pickles
calls `assert_shape`, `constant`, `profiled_function`, `suppress_tracer_warnings`)."""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Iterable, Iterator

import numpy as np
import torch

import dnnlib

# ----------------------------------------------------------------------------- constants

_constant_cache: dict = {}


def constant(value, shape=None, dtype=None, device=None, memory_format=None) -> torch.Tensor:
    """A cached constant tensor (avoids re-uploading the same small array every call)."""
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device("cpu")
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor = tensor.expand(shape)
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):
    """Kept for old pickles; modern torch has torch.nan_to_num."""
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)


# ----------------------------------------------------------------------------- tracing/profiling

@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence TracerWarnings raised by shape asserts while a network is traced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        yield


def assert_shape(tensor: torch.Tensor, ref_shape) -> None:
    """Check `tensor.shape` against `ref_shape`; None entries match anything."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(
            f"Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)} "
            f"(shape {tuple(tensor.shape)} vs {tuple(ref_shape)})")
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            with suppress_tracer_warnings():
                symbolic_assert(torch.equal(torch.as_tensor(size), ref_size), f"Wrong size for dimension {idx}")
        elif isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                symbolic_assert(torch.equal(size, torch.as_tensor(ref_size)),
                                f"Wrong size for dimension {idx}: expected {ref_size}")
        elif size != ref_size:
            raise AssertionError(
                f"Wrong size for dimension {idx}: got {size}, expected {ref_size} "
                f"(shape {tuple(tensor.shape)} vs {tuple(ref_shape)})")


def symbolic_assert(condition, message: str) -> None:
    if hasattr(torch, "_assert"):
        torch._assert(condition, message)
    elif not condition:
        raise AssertionError(message)


def profiled_function(fn):
    """Decorator: the call shows under its own name in torch.profiler traces."""

    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)

    decorator.__name__ = fn.__name__
    decorator.__doc__ = fn.__doc__
    decorator.__wrapped__ = fn
    return decorator


# ----------------------------------------------------------------------------- data

class InfiniteSampler(torch.utils.data.Sampler):
    """Endless index stream; shuffles within a sliding window so epochs blend smoothly."""

    def __init__(self, dataset, rank: int = 0, num_replicas: int = 1, shuffle: bool = True,
                 seed: int = 0, window_size: float = 0.5):
        if len(dataset) <= 0:
            raise ValueError("InfiniteSampler needs a non-empty dataset")
        if num_replicas <= 0 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for {num_replicas} replicas")
        if not 0 <= window_size <= 1:
            raise ValueError("window_size must be in [0, 1]")
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size

    def __iter__(self) -> Iterator[int]:
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))
        idx = 0
        while True:
            i = idx % order.size
            if idx % self.num_replicas == self.rank:
                yield int(order[i])
            if window >= 2:
                j = (i - rnd.randint(window)) % order.size
                order[i], order[j] = order[j], order[i]
            idx += 1


# ----------------------------------------------------------------------------- parameters

# The attribute in which a layer keeps weights prepared for inference (training.networks_stylegan2),
# keyed by the weight's version counter.
INFERENCE_CACHE = '_inference_cache'


def drop_inference_caches(module: torch.nn.Module) -> None:
    """Forget every layer's cached inference weight under `module`. Needed after updates that leave
    a weight's version counter as it was (torch's fused Adam on the CPU does), which the cache's key
    cannot see; harmless otherwise (the next render rebuilds the cache)."""
    for m in module.modules():
        m.__dict__.pop(INFERENCE_CACHE, None)


def params_and_buffers(module: torch.nn.Module) -> list[torch.Tensor]:
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module: torch.nn.Module, dst_module: torch.nn.Module,
                            require_all: bool = False) -> None:
    """Copy tensors with matching names (and shapes); `require_all` demands every dst name."""
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name not in src_tensors:
            if require_all:
                raise KeyError(f"source module has no tensor named {name!r}")
            continue
        src = src_tensors[name].detach()
        if src.shape != tensor.shape:
            raise ValueError(f"shape mismatch for {name!r}: source {tuple(src.shape)}, "
                             f"destination {tuple(tensor.shape)}")
        tensor.copy_(src).requires_grad_(tensor.requires_grad)


@contextlib.contextmanager
def ddp_sync(module: torch.nn.Module, sync: bool):
    """Skip DDP gradient sync for accumulation rounds (`sync=False`)."""
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: str | None = None) -> None:
    """Assert every rank holds identical parameters/buffers (NaN-tolerant)."""
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + "." + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        if not (tensor == other).all():
            raise AssertionError(f"DDP parameters differ between ranks: {fullname}")


# ----------------------------------------------------------------------------- summaries

def print_module_summary(module: torch.nn.Module, inputs: Iterable, max_nesting: int = 3,
                         skip_redundant: bool = True):
    """Run `module(*inputs)` and print a table of submodules: parameters, buffers, output shapes."""
    if not isinstance(module, torch.nn.Module) or module.training:
        pass
    inputs = list(inputs)
    entries = []
    nesting = [0]

    def pre_hook(_mod, _inputs):
        nesting[0] += 1

    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            outputs = [t for t in outputs if isinstance(t, torch.Tensor)]
            entries.append(dnnlib.EasyDict(mod=mod, outputs=outputs))

    hooks = [m.register_forward_pre_hook(pre_hook) for m in module.modules()]
    hooks += [m.register_forward_hook(post_hook) for m in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for h in hooks:
            h.remove()

    tensors_seen = set()
    for e in entries:
        e.unique_params = [t for t in e.mod.parameters() if id(t) not in tensors_seen]
        e.unique_buffers = [t for t in e.mod.buffers() if id(t) not in tensors_seen]
        e.unique_outputs = [t for t in e.outputs if id(t) not in tensors_seen]
        tensors_seen |= {id(t) for t in e.unique_params + e.unique_buffers + e.unique_outputs}
    if skip_redundant:
        entries = [e for e in entries if len(e.unique_params) or len(e.unique_buffers) or len(e.unique_outputs)]

    names = {mod: name for name, mod in module.named_modules()}
    rows = [[type(module).__name__, "Parameters", "Buffers", "Output shape", "Datatype"], ["---"] * 5]
    total_params = total_buffers = 0
    for e in entries:
        name = "<top-level>" if e.mod is module else names.get(e.mod, "?")
        pc = sum(t.numel() for t in e.unique_params)
        bc = sum(t.numel() for t in e.unique_buffers)
        shapes = [str(list(t.shape)) for t in e.outputs]
        dtypes = [str(t.dtype).split(".")[-1] for t in e.outputs]
        rows.append([name + (":0" if len(e.outputs) >= 2 else ""), str(pc) if pc else "-",
                     str(bc) if bc else "-", (shapes + ["-"])[0], (dtypes + ["-"])[0]])
        for idx in range(1, len(e.outputs)):
            rows.append([name + f":{idx}", "-", "-", shapes[idx], dtypes[idx]])
        total_params += pc
        total_buffers += bc
    rows += [["---"] * 5, ["Total", str(total_params), str(total_buffers), "-", "-"]]
    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print("  ".join(cell + " " * (w - len(cell)) for cell, w in zip(row, widths)))
    print()
    return outputs
