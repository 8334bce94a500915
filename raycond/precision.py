"""Which dtype a network's "fp16 layers" run in on a device: the one owner of that rule.

StyleGAN runs its high-resolution blocks (``use_fp16``, the ``num_fp16_res`` highest resolutions)
in a 16-bit float unless ``force_fp32``. On CUDA that is float16. On a CPU with native bfloat16
arithmetic (x86 ``avx512_bf16`` or ``amx_bf16``) oneDNN runs a bfloat16 3x3 convolution about 2x
faster than float32, so those blocks run in bfloat16 there (bfloat16 has float32's exponent range,
so nothing overflows; docs/performance.md has the figures and what stays float32). Elsewhere
(older CPUs, where oneDNN would emulate bfloat16 and be slower; Apple MPS) every layer is float32.

``RAYCOND_CPU_BF16=1`` or ``0`` forces the CPU answer (tests; benchmarking the emulated path);
unset, the processor's flags decide, read once per process.
"""

from __future__ import annotations

import functools
import os
import sys

import torch

ENV = 'RAYCOND_CPU_BF16'
MODULE_FLAG = 'USES_RAYCOND_PRECISION'   # set True by network modules whose blocks ask half_dtype()
NATIVE_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')   # Linux /proc/cpuinfo names (Cooper Lake, Zen 4, Sapphire Rapids)
FP32_HELP = ("Run every layer in float32. Default: the network's fp16 layers run in fp16 on CUDA and in bfloat16 on "
             "a CPU with native bfloat16 (AVX512-BF16, AMX; faster); other CPUs and MPS use float32.")


def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> frozenset[str]:
    """The processor's feature flags ('flags' lines of /proc/cpuinfo); empty where there is none."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('flags'):
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=None)
def _detected() -> bool:
    # oneDNN reports bf16 "supported" on any AVX-512 CPU, emulated or not, so only the flags tell
    # native arithmetic (measured: emulated bf16 is slower than float32).
    mkldnn = getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', None)
    if mkldnn is None or not torch.backends.mkldnn.is_available() or not mkldnn():
        return False
    return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))


def cpu_bf16() -> bool:
    """True when the CPU's 16-bit layers run in bfloat16: native bf16 detected, or RAYCOND_CPU_BF16=1."""
    forced = os.environ.get(ENV, '').strip()
    if forced in ('0', '1'):
        return forced == '1'
    if forced:
        raise ValueError(f'{ENV} must be 0 or 1, got {forced!r}')
    return _detected()


def half_dtype(device: str | torch.device) -> torch.dtype | None:
    """The dtype of a network's fp16 layers on `device`: float16 on CUDA, bfloat16 on a CPU with
    native bfloat16, None (float32 everywhere) otherwise."""
    kind = torch.device(device).type
    if kind == 'cuda':
        return torch.float16
    if kind == 'cpu' and cpu_bf16():
        return torch.bfloat16
    return None


def layer_dtype(device: str | torch.device, fp32: bool = False) -> torch.dtype:
    """The dtype a block marked `use_fp16` runs in on `device` (float32 with `fp32`)."""
    half = None if fp32 else half_dtype(device)
    return half or torch.float32


def describe(device: str | torch.device, fp32: bool = False, G=None) -> str:
    """'fp16 layers', 'bf16 layers' or 'fp32', for logs and the GUI; with G, how many of its blocks
    (layers for StyleGAN3) run in it when G renders (inference), e.g. 'bf16 layers (4 of 7 blocks)',
    and 'fp32' when none. A synthesis network whose class sets `HALF_EVERY_BLOCK_IN_CPU_INFERENCE`
    runs every block in bf16 on the CPU once it has any fp16 block (training.networks_stylegan2)."""
    name = {torch.float16: 'fp16', torch.bfloat16: 'bf16'}.get(layer_dtype(device, fp32))
    if name is None:
        return 'fp32'
    if G is None:
        return f'{name} layers'
    synthesis = getattr(G, 'synthesis', G)
    flags = [bool(m.use_fp16) for m in synthesis.modules() if hasattr(m, 'use_fp16')]
    if not any(flags):
        return 'fp32'
    every = name == 'bf16' and getattr(synthesis, 'HALF_EVERY_BLOCK_IN_CPU_INFERENCE', False)
    return f'{name} layers ({len(flags) if every else sum(flags)} of {len(flags)} blocks)'


def follows_rule(G) -> bool:
    """True when G's synthesis network (or G itself) comes from a module that takes its fp16 layers'
    dtype from here (it sets USES_RAYCOND_PRECISION = True). Code carried by trusted pickles of other
    releases runs float16 on any device when not forced to float32, and the official release's
    rebuilds keep the release's float32 on the CPU: both must get force_fp32 there."""
    net = getattr(G, 'synthesis', G)
    module = sys.modules.get(type(net).__module__)
    return bool(getattr(module, MODULE_FLAG, False))
