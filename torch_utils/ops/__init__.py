"""Custom ops used by the networks (bias_act, upfirdn2d, conv2d_resample, conv2d_gradfix, fma,
grid_sample_gradfix, filtered_lrelu), each with a pure-PyTorch reference and room for a CUDA kernel.

This package also holds the one place that decides which implementation an op runs, so that each
op asks a cheap question per call: `use_cuda(impl, x, slot)` is a few attribute reads once the
plugin slot has been resolved (at most one build attempt per op and process).
"""

import os

__all__ = ["IMPLS", "ref_forced", "check_impl", "PluginSlot", "use_cuda"]

IMPLS = ("cuda", "ref")


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
