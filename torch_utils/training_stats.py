"""Scalar statistics gathered during training, averaged across processes.

`report(name, value)` may be called anywhere (losses, regularizers, augment p). A `Collector`
later reads the means/stds accumulated since its previous `update()`. Under torch.distributed the
moments are summed across ranks inside `update()` (all ranks must call it together)."""

from __future__ import annotations

import re

import numpy as np
import torch

import dnnlib

_num_moments = 3                 # [count, sum, sum of squares]
_reduce_dtype = torch.float32
_counter_dtype = torch.float64
_rank = 0
_sync_device = None
_sync_called = False
_counters: dict[str, dict[torch.device, torch.Tensor]] = {}
_cumulative: dict[str, torch.Tensor] = {}


def init_multiprocessing(rank: int, sync_device) -> None:
    """Call once per process before `Collector.update()` when training with several processes.
    `sync_device` is the device used for all-reduce (CPU for gloo, the rank's GPU for NCCL)."""
    global _rank, _sync_device
    if _sync_called:
        raise RuntimeError("init_multiprocessing must be called before the first update()")
    _rank = rank
    _sync_device = sync_device


def report(name: str, value):
    """Add scalar(s) to the named statistic; returns `value` unchanged."""
    if name not in _counters:
        _counters[name] = {}
    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_reduce_dtype)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    device = moments.device
    if device not in _counters[name]:
        _counters[name][device] = torch.zeros_like(moments)
    _counters[name][device].add_(moments)
    return value


def report0(name: str, value):
    """Like `report`, but only rank 0's values count (e.g. for per-run constants)."""
    report(name, value if _rank == 0 else [])
    return value


def _sync(names: list[str]) -> list[tuple[str, torch.Tensor]]:
    global _sync_called
    if len(names) == 0:
        return []
    _sync_called = True
    deltas = []
    device = _sync_device if _sync_device is not None else torch.device("cpu")
    for name in names:
        delta = torch.zeros([_num_moments], dtype=_counter_dtype, device=device)
        for counter in _counters[name].values():
            delta.add_(counter.to(device=device, dtype=_counter_dtype))
            counter.zero_()
        deltas.append(delta)
    deltas = torch.stack(deltas)
    if _sync_device is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(deltas)
    deltas = deltas.cpu()
    result = []
    for idx, name in enumerate(names):
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        _cumulative[name].add_(deltas[idx])
        result.append((name, _cumulative[name]))
    return result


class Collector:
    """Reads statistics whose names match `regex`; `update()` takes a new interval."""

    def __init__(self, regex: str = ".*", keep_previous: bool = True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative: dict[str, torch.Tensor] = {}
        self._moments: dict[str, torch.Tensor] = {}
        self.update()
        self._moments.clear()

    def names(self) -> list[str]:
        return [name for name in _counters if self._regex.fullmatch(name)]

    def update(self) -> None:
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _sync(self.names()):
            if name not in self._cumulative:
                self._cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
            delta = cumulative - self._cumulative[name]
            self._cumulative[name].copy_(cumulative)
            if float(delta[0]) != 0:
                self._moments[name] = delta

    def _get_delta(self, name: str) -> torch.Tensor:
        if not self._regex.fullmatch(name):
            raise KeyError(f"{name!r} does not match this collector's pattern")
        if name not in self._moments:
            self._moments[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        return self._moments[name]

    def num(self, name: str) -> int:
        return int(self._get_delta(name)[0])

    def mean(self, name: str) -> float:
        delta = self._get_delta(name)
        if int(delta[0]) == 0:
            return float("nan")
        return float(delta[1] / delta[0])

    def std(self, name: str) -> float:
        delta = self._get_delta(name)
        if int(delta[0]) == 0 or not np.isfinite(float(delta[1])):
            return float("nan")
        if int(delta[0]) == 1:
            return 0.0
        mean = float(delta[1] / delta[0])
        raw_var = float(delta[2] / delta[0])
        return float(np.sqrt(max(raw_var - mean ** 2, 0)))

    def as_dict(self) -> dnnlib.EasyDict:
        stats = dnnlib.EasyDict()
        for name in self.names():
            stats[name] = dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name: str) -> float:
        return self.mean(name)


default_collector = Collector()
