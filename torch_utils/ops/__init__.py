"""Custom ops used by the networks (bias_act, upfirdn2d, conv2d_resample, conv2d_gradfix, fma,
grid_sample_gradfix, filtered_lrelu), each with a pure-PyTorch reference and room for a CUDA kernel.

This package also holds the one place that decides which implementation an op runs, so that each
op asks a cheap question per call: `use_cuda(impl, x, slot)` is a few attribute reads once the
plugin slot has been resolved (at most one build attempt per op and process).
"""

import os

__all__ = ["IMPLS", "ops_mode", "ref_forced", "check_impl", "PluginSlot", "use_cuda",
           "CUDA_KERNELS", "CPU_KERNELS", "kernels_for"]

IMPLS = ("cuda", "ref")


def ops_mode() -> str:
    """RAYCOND_OPS: 'ref' (references only), 'cuda' (kernels required on CUDA tensors: a failed
    build is an error) or 'auto' (default: kernels when they build, references otherwise)."""
    mode = os.environ.get("RAYCOND_OPS", "").strip().lower() or "auto"
    if mode not in ("ref", "cuda", "auto"):
        raise ValueError(f"RAYCOND_OPS: expected 'ref', 'cuda' or 'auto', got {mode!r}; "
                         "unset it or pick one of those")
    return mode


def ref_forced() -> bool:
    """True when the environment variable RAYCOND_OPS=ref forces the reference implementations."""
    return os.environ.get("RAYCOND_OPS", "").strip().lower() == "ref"


def check_impl(impl) -> str:
    """Validate an `impl` argument ('cuda' or 'ref'); raise a one-line ValueError otherwise."""
    if impl not in IMPLS:
        raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")
    return impl


class PluginSlot:
    """Lazily built CUDA plugin of one op: resolved once per process, then cached.

    `sources` empty means the op has no kernel yet; `get()` then returns None without trying to
    build anything (and without a warning). Otherwise the first `get()` calls
    `torch_utils.custom_ops.get_plugin(...)`, which warns once and returns None if the build is
    impossible.
    """

    def __init__(self, module_name, sources=(), headers=(), source_dir=None, **build_kwargs):
        # build_kwargs may also hold get_plugin's with_cuda / ops_namespace.
        self.module_name = module_name
        self.sources = list(sources)
        self.headers = list(headers)
        self.source_dir = source_dir
        self.build_kwargs = build_kwargs
        self._resolved = False
        self._plugin = None

    def get(self):
        """The compiled module, or None when no kernel is available (cached after the first call)."""
        if not self._resolved:
            self._resolved = True
            if self.sources and not ref_forced():
                from .. import custom_ops  # imported lazily: pulls in torch.utils.cpp_extension
                self._plugin = custom_ops.get_plugin(
                    module_name=self.module_name, sources=self.sources, headers=self.headers,
                    source_dir=self.source_dir, **self.build_kwargs)
        return self._plugin

    def available(self) -> bool:
        """True when the compiled kernel can be used."""
        return self.get() is not None

    def reset(self):
        """Forget the cached result (tests; after changing RAYCOND_OPS)."""
        self._resolved = False
        self._plugin = None


def use_cuda(impl, x, slot: PluginSlot) -> bool:
    """Decide one call: the CUDA kernel only for impl='cuda', a CUDA tensor, RAYCOND_OPS not 'ref'
    and a plugin that built; the reference otherwise (no error, no warning per call)."""
    check_impl(impl)
    if impl != "cuda" or not x.is_cuda or ref_forced():
        return False
    return slot.available()


# ---- the project's kernels ------------------------------------------------------------------
# One extension holds all three ops (one build, one lock, one cache folder). The CUDA build also
# contains the CPU loops; the CPU-only build (tests, and CPU dispatch where it is faster) uses the
# same .h arithmetic compiled by the host compiler. Different op namespaces let both coexist.
_KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
_KERNEL_CPP = ["bias_act.cpp", "upfirdn2d.cpp", "filtered_lrelu.cpp"]
_KERNEL_CU = ["bias_act.cu", "upfirdn2d.cu", "filtered_lrelu.cu"]
_KERNEL_HEADERS = ["common.h", "ext_common.h", "cuda_launch.cuh", "bias_act.h", "upfirdn2d.h",
                   "upfirdn2d_host.h", "filtered_lrelu.h"]

CUDA_KERNELS = PluginSlot(
    "raycond_ops_cuda", sources=_KERNEL_CPP + _KERNEL_CU, headers=_KERNEL_HEADERS,
    source_dir=_KERNEL_DIR, with_cuda=True, ops_namespace="raycond_ops",
    extra_cflags=["-O3", "-DRAYCOND_WITH_CUDA", "-DRAYCOND_NS=raycond_ops"],
    extra_cuda_cflags=["-O3"])
CPU_KERNELS = PluginSlot(
    "raycond_ops_cpu", sources=_KERNEL_CPP, headers=_KERNEL_HEADERS, source_dir=_KERNEL_DIR,
    with_cuda=False, ops_namespace="raycond_ops_cpu", extra_cflags=["-O2"])


def kernels_for(impl, x, slot: PluginSlot, cpu: bool = False):
    """The compiled op namespace one call should use, or None for the reference.

    CUDA tensors get `slot` (the CUDA build) for impl='cuda' unless RAYCOND_OPS=ref; with
    RAYCOND_OPS=cuda a CUDA build that is unavailable is an error instead of a fallback. CPU
    tensors get the CPU build only when `cpu` is True (ops where it measured faster)."""
    check_impl(impl)
    if impl != "cuda":
        return None
    mode = ops_mode()
    if mode == "ref":
        return None
    if x.is_cuda:
        plugin = slot.get()
        if plugin is None and mode == "cuda":
            raise RuntimeError("RAYCOND_OPS=cuda but the CUDA kernels are unavailable (see the "
                               "warning above); fix the build (docs/troubleshooting.md) or set "
                               "RAYCOND_OPS=auto to fall back to the reference ops")
        return plugin
    return CPU_KERNELS.get() if cpu else None
