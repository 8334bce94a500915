"""Just-in-time builder for the optional kernels of `torch_utils.ops` (ninja + nvcc / the host
C++ compiler, through `torch.utils.cpp_extension.load`).

Kernels are an accelerator, never a requirement: when CUDA is unavailable, ninja, nvcc or a C++
compiler are missing, RAYCOND_OPS=ref is set, or the build fails, `get_plugin` prints one warning
per process naming the cause and the fix, returns None, and every op falls back to its
pure-PyTorch reference.

Builds are cached under TORCH_EXTENSIONS_DIR (PyTorch's default when unset), in a folder named
after the module and a hash of its source files, so an unchanged kernel is compiled only once. A
file lock next to that folder makes concurrent processes (DDP ranks) build once and wait.
"""

import glob
import hashlib
import os
import shutil
import sys
import warnings

import torch

__all__ = ["get_plugin", "CustomOpsWarning", "verbosity"]

verbosity = "brief"  # 'none', 'brief' or 'full': how much of the build to print.


class CustomOpsWarning(RuntimeWarning):
    """Category of the one warning that reports the fallback to reference ops."""


_cached_plugins = {}  # module_name -> compiled module or None (failed / unavailable)
_warned = False


_FIXES = (  # (start of a reason, what the user can do about it)
    ("CUDA is not available", "run on a machine with an NVIDIA GPU and a CUDA build of PyTorch"),
    ("ninja", "pip install ninja"),
    ("nvcc", "install the CUDA toolkit matching torch.version.cuda and set CUDA_HOME"),
    ("no C++ compiler", "install g++ (or set CXX)"),
    ("the MSVC", "install Visual Studio Build Tools (C++) or run from its developer prompt"),
    ("building", "rerun with torch_utils.custom_ops.verbosity = 'full' for the build log; "
                 "see docs/troubleshooting.md"),
)


def _fix_for(reason: str) -> str:
    for start, fix in _FIXES:
        if start in reason:
            return fix
    return "see docs/troubleshooting.md"


def _warn_once(reason: str) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(f"raycond: custom ops unavailable ({reason}); using the slower pure-PyTorch "
                  f"reference ops. Fix: {_fix_for(reason)} (or set RAYCOND_OPS=ref to silence "
                  "this).", CustomOpsWarning, stacklevel=3)


def _reset_for_tests() -> None:
    """Forget cached plugins and the warned flag (tests only)."""
    global _warned
    _cached_plugins.clear()
    _warned = False


def _find_nvcc():
    """Path to nvcc, or None."""
    try:
        from torch.utils.cpp_extension import CUDA_HOME
    except Exception:  # pragma: no cover - broken torch install
        CUDA_HOME = None
    if CUDA_HOME:
        candidate = os.path.join(CUDA_HOME, "bin", "nvcc")
        if os.path.isfile(candidate):
            return candidate
    return shutil.which("nvcc")


def _find_msvc():  # pragma: no cover - Windows only
    """Add the newest MSVC compiler to PATH when cl.exe is not there already (Windows)."""
    if shutil.which("cl") is not None:
        return True
    patterns = [
        "C:/Program Files*/Microsoft Visual Studio/*/*/VC/Tools/MSVC/*/bin/Hostx64/x64",
    ]
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            os.environ["PATH"] += ";" + matches[-1]
            return True
    return False


def _unavailable_reason():
    """Why a CUDA plugin cannot be built in this process, or None when it can be tried."""
    from . import ops
    if ops.ref_forced():
        return "RAYCOND_OPS=ref"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    if shutil.which("ninja") is None:
        try:
            from torch.utils.cpp_extension import verify_ninja_availability
            verify_ninja_availability()
        except Exception:
            return "ninja is not installed"
    if _find_nvcc() is None:
        return "nvcc was not found (set CUDA_HOME)"
    if os.name == "nt" and not _find_msvc():  # pragma: no cover - Windows only
        return "the MSVC compiler (cl.exe) was not found"
    return None


def _cpu_unavailable_reason():
    """Why the CPU-only build cannot be tried in this process, or None."""
    from . import ops
    if ops.ref_forced():
        return "RAYCOND_OPS=ref"
    try:
        from torch.utils.cpp_extension import verify_ninja_availability
        verify_ninja_availability()
    except Exception:
        return "ninja is not installed"
    if os.name == "nt":  # pragma: no cover - Windows only
        return None if _find_msvc() else "the MSVC compiler (cl.exe) was not found"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler found"
    return None


def _extensions_root() -> str:
    """TORCH_EXTENSIONS_DIR, else PyTorch's default root with its python/CUDA sub-folder."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return root
    from torch.utils.cpp_extension import get_default_build_root
    cuda = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    return os.path.join(get_default_build_root(),
                        f"py{sys.version_info.major}{sys.version_info.minor}_{cuda}")


def _build(module_name, sources, headers, source_dir, build_kwargs, ops_namespace=None):
    from torch.utils import cpp_extension
    if source_dir is not None:
        sources = [os.path.join(source_dir, s) for s in sources]
        headers = [os.path.join(source_dir, h) for h in headers]
    for path in list(sources) + list(headers):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"kernel source not found: {path}")

    # Hash every file so that an unchanged kernel reuses its cached build.
    digest = hashlib.md5()
    for path in list(sources) + list(headers):
        with open(path, "rb") as f:
            digest.update(f.read())
        digest.update(os.path.basename(path).encode())
    build_dir = os.path.join(_extensions_root(), f"{module_name}-{digest.hexdigest()[:16]}")
    os.makedirs(build_dir, exist_ok=True)
    from filelock import FileLock  # a dependency of torch itself
    with FileLock(build_dir + ".lock"):  # DDP ranks: one builds, the others wait and reuse
        copied = []
        for path in list(sources) + list(headers):
            dst = os.path.join(build_dir, os.path.basename(path))
            if not os.path.isfile(dst):
                shutil.copyfile(path, dst)
            if path in sources:
                copied.append(dst)
        module = cpp_extension.load(name=module_name, sources=copied, build_directory=build_dir,
                                    verbose=(verbosity == "full"),
                                    is_python_module=ops_namespace is None, **build_kwargs)
    if ops_namespace is not None:  # ops registered with TORCH_LIBRARY: torch.ops.<namespace>
        return getattr(torch.ops, ops_namespace)
    return module


def get_plugin(module_name, sources, headers=None, source_dir=None, with_cuda=True,
               ops_namespace=None, **build_kwargs):
    """Compile (once, cached on disk) and import a CUDA/C++ extension; None if impossible.

    `sources`/`headers` are file names (relative to `source_dir` when given); `with_cuda=False`
    builds a CPU-only extension (no GPU or nvcc needed); `ops_namespace` loads a library that
    registers its ops with TORCH_LIBRARY and returns `torch.ops.<ops_namespace>`. Extra keyword
    arguments go to `torch.utils.cpp_extension.load` (e.g. extra_cuda_cflags). Returns the
    imported module, or None after one warning per process when CUDA, ninja, nvcc or the C++
    compiler are unavailable, RAYCOND_OPS=ref is set, or the build fails.
    """
    if module_name in _cached_plugins:
        return _cached_plugins[module_name]
    headers = list(headers or [])
    sources = list(sources)
    reason = _unavailable_reason() if with_cuda else _cpu_unavailable_reason()
    plugin = None
    if reason is None:
        if verbosity in ("brief", "full"):
            print(f"Setting up PyTorch plugin \"{module_name}\"...", end="", flush=True,
                  file=sys.stderr)
        try:
            plugin = _build(module_name, sources, headers, source_dir, build_kwargs,
                            ops_namespace)
            if verbosity in ("brief", "full"):
                print(" Done.", file=sys.stderr)
        except Exception as exc:  # build errors are reported, never raised
            if verbosity in ("brief", "full"):
                print(" Failed!", file=sys.stderr)
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = f"building {module_name!r} failed: {first_line}"
            plugin = None
    if plugin is None and reason != "RAYCOND_OPS=ref":  # an explicit request needs no warning
        _warn_once(reason)
    _cached_plugins[module_name] = plugin
    return plugin
