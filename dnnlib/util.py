"""Helpers with no torch dependency: EasyDict, URL/file opening with a download cache, building
objects by dotted name (so `raycond` can construct networks without importing `training`),
human-readable formatting, and the one atomic file write every writer in the project uses."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import io
import os
import re
import socket
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator

_dnnlib_cache_dir: str | None = None


class EasyDict(dict):
    """A dict whose keys are also attributes (`d.key` == `d['key']`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


# ----------------------------------------------------------------------------- atomic writes
#
# Every file a user may lose (snapshots, exported networks, metric caches, datasets, downloads) is
# written to a hidden temporary name in the same folder, flushed to disk, renamed over the target,
# then the folder is flushed, so a kill or a full disk at any moment leaves either the old file or
# the complete new one. The temporary name carries the host and the pid, which is what lets
# `raycond.atomic_io.stale_temporaries` tell a dead writer's leftover from a live writer's file.


# How an errno reads in an error line; anything else uses the system's own text.
_WRITE_REASONS = {
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
    errno.EPERM: "Permission denied",
    errno.EFBIG: "File too large",
}
# Errors that mean "this folder cannot take the file": the user must free space or pick another place.
DISK_ERRNOS = frozenset(_WRITE_REASONS)


def display_path(path: str) -> str:
    """`path` relative to the working directory when it lies inside it (what the user typed, usually),
    else absolute."""
    full = os.path.abspath(os.fspath(path))
    cwd = os.getcwd()
    if full == cwd or full.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(full, cwd)
    return full


class OutputError(OSError):
    """A file could not be written. `str()` is the one line a tool prints:
    'No space left on device while writing out/seed0255.png'. `errno` and `filename` are kept."""

    def __init__(self, err: int | None, path: str, reason: str | None = None):
        reason = reason or _WRITE_REASONS.get(err or 0) or (os.strerror(err) if err else "write failed")
        super().__init__(err, reason)
        self.filename = os.fspath(path)
        self.message = f"{reason} while writing {display_path(path)}"

    def __str__(self) -> str:
        return self.message


def as_output_error(e: OSError, path: str) -> OutputError:
    """`e` (raised while writing `path`) as an OutputError naming `path`."""
    if isinstance(e, OutputError):
        return e
    return OutputError(e.errno, path, None if e.errno in DISK_ERRNOS else (e.strerror or str(e)))


def temp_path(path: str) -> str:
    """The hidden temporary name this process writes `path` under: `.<name>.tmp-<host>-<pid>`."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
    return os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{host}-{os.getpid()}")


def fsync_dir(folder: str) -> None:
    """Flush a folder's entries (a rename) to disk where the platform allows it."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return  # not supported here (Windows, some network file systems); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _umask() -> int:
    """This process's umask, read without changing it where Linux allows (os.umask can only set it,
    and setting it even briefly races with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: str, path: str) -> None:
    """Flush the finished file (or folder) `tmp` to disk and rename it to `path` (same folder).
    A file gets the mode a plain open() would give it (0644 under umask 022): some writers
    (safetensors, mkstemp) create theirs 0600."""
    if os.path.isfile(tmp):
        with open(tmp, "rb+") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path to write; on success publish it at `path` atomically.

    For writers that want a file name rather than a file object (`torch.save`, safetensors,
    zipfile). On any failure (disk full, read-only folder, Ctrl-C) the temporary file is removed
    and `path` keeps whatever it held before; OS errors are raised as `OutputError` naming `path`.
    """
    tmp = temp_path(path)
    try:
        yield tmp
        publish(tmp, path)
    except OSError as e:
        _remove_quietly(tmp)
        raise as_output_error(e, path) from e
    except BaseException:
        _remove_quietly(tmp)
        raise


class _GuardedFile:
    """A binary file whose first write error (a full disk, Ctrl-C) is kept, because some writers
    replace it with their own: torch.save's C++ zip writer reports ENOSPC or KeyboardInterrupt as
    RuntimeError '[enforce fail at inline_container.cc] unexpected pos'."""

    def __init__(self, f):
        self._f = f
        self.error: BaseException | None = None

    def write(self, data):
        try:
            return self._f.write(data)
        except BaseException as e:
            if self.error is None:
                self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def write_file(path: str, write_fn: Callable[[Any], Any]) -> None:
    """Call `write_fn(f)` on `path` opened for binary writing (not atomic: `path` is a temporary).
    A write error is re-raised as itself even if `write_fn` turned it into another exception."""
    with open(path, "wb") as raw:
        f = _GuardedFile(raw)
        try:
            write_fn(f)
        except BaseException as e:
            if f.error is not None and f.error is not e:
                raise f.error from None
            raise


def atomic_write(path: str, write_fn: Callable[[Any], Any]) -> None:
    """Call `write_fn(f)` on a binary file object, then publish the result at `path` atomically
    (see `atomic_output`)."""
    with atomic_output(path) as tmp:
        write_file(tmp, write_fn)


# ----------------------------------------------------------------------------- formatting

def format_time(seconds: float | int) -> str:
    """Compact duration: '42s', '3m 05s', '2h 01m 09s', '1d 02h 03m'."""
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


def format_bytes(num: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num) < 1024 or unit == "TiB":
            return f"{num:.1f} {unit}" if unit != "B" else f"{int(num)} B"
        num /= 1024
    return f"{num:.1f} TiB"


# ----------------------------------------------------------------------------- objects by name

def _split_name(name: str) -> tuple[str, str]:
    if "." not in name:
        raise ValueError(f"expected a dotted name like 'module.attr', got {name!r}")
    module_name, _, attr = name.rpartition(".")
    return module_name, attr


def get_module_from_obj_name(obj_name: str) -> tuple[Any, str]:
    """Import the longest importable module prefix of `obj_name`; return (module, rest)."""
    parts = obj_name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and module_name.startswith(e.name):
                continue
            raise
        return module, ".".join(parts[i:])
    raise ImportError(f"cannot import any module prefix of {obj_name!r}")


def get_obj_by_name(name: str) -> Any:
    """Resolve 'package.module.attr.sub' to the object."""
    _split_name(name)
    module, rest = get_module_from_obj_name(name)
    obj = module
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


def call_func_by_name(*args, func_name: str | None = None, **kwargs) -> Any:
    """Call a function given by dotted name."""
    if func_name is None:
        raise ValueError("call_func_by_name needs func_name")
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f"{func_name} is not callable")
    return func(*args, **kwargs)


def construct_class_by_name(*args, class_name: str | None = None, **kwargs) -> Any:
    """Instantiate a class given by dotted name (how networks are built from config dicts).
    Importing and calling by name runs whatever the name says: pass only names the program chose
    (command-line configs), never one read from a file unless it was matched exactly against
    raycond.families first (as raycond.rebuild and metrics.metric_utils.make_dataset do)."""
    if class_name is None:
        raise ValueError("construct_class_by_name needs class_name")
    return call_func_by_name(*args, func_name=class_name, **kwargs)


def get_top_level_function_name(obj: Callable) -> str:
    module = obj.__module__
    if module == "__main__":
        module = os.path.splitext(os.path.basename(importlib.import_module("__main__").__file__))[0]
    return module + "." + obj.__name__


# ----------------------------------------------------------------------------- caching & URLs

def set_cache_dir(path: str | None) -> None:
    global _dnnlib_cache_dir
    _dnnlib_cache_dir = path


def make_cache_dir_path(*paths: str) -> str:
    """Path under the download cache: $DNNLIB_CACHE_DIR, else ~/.cache/dnnlib."""
    if _dnnlib_cache_dir is not None:
        return os.path.join(_dnnlib_cache_dir, *paths)
    if "DNNLIB_CACHE_DIR" in os.environ:
        return os.path.join(os.environ["DNNLIB_CACHE_DIR"], *paths)
    return os.path.join(os.path.expanduser("~"), ".cache", "dnnlib", *paths)


def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    if not isinstance(obj, str) or "://" not in obj:
        return False
    scheme = urllib.parse.urlparse(obj).scheme
    if scheme == "file":
        return allow_file_urls
    return scheme in ("http", "https")


def _file_url_to_path(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    path = urllib.request.url2pathname(parsed.path)
    if parsed.netloc and parsed.netloc != "localhost":
        path = "//" + parsed.netloc + path
    return path


def _cache_name(url: str) -> str:
    digest = hashlib.md5(url.encode("utf-8")).hexdigest()
    base = os.path.basename(urllib.parse.urlparse(url).path) or "download"
    base = re.sub(r"[^0-9a-zA-Z_.\-]", "_", base)
    return f"{digest}_{base}"


class DownloadError(OSError):
    """A URL could not be fetched; the message names the URL and the cache path to fill by hand."""


def open_url(url: str, cache_dir: str | None = None, num_attempts: int = 3, verbose: bool = True,
             return_filename: bool = False, cache: bool = True):
    """Open a local path, a file:// URL or an http(s):// URL as a binary file object.

    Downloads go to the cache (`cache_dir`, else `make_cache_dir_path('downloads')`) so the second
    call is offline. With no network, the error names the URL and the file to place by hand.
    """
    if not isinstance(url, (str, os.PathLike)):
        raise TypeError(f"open_url expects a path or URL string, got {type(url).__name__}")
    url = os.fspath(url)
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", url):
        path = os.path.expanduser(url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {url}")
        return path if return_filename else open(path, "rb")
    if url.startswith("file://"):
        path = _file_url_to_path(url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {path} (from {url})")
        return path if return_filename else open(path, "rb")
    if not is_url(url):
        raise ValueError(f"unsupported URL scheme in {url!r} (expected a path, file://, http:// or https://)")

    if cache_dir is None:
        cache_dir = make_cache_dir_path("downloads")
    cache_file = os.path.join(cache_dir, _cache_name(url))
    if cache and os.path.isfile(cache_file):
        return cache_file if return_filename else open(cache_file, "rb")

    data = None
    last_error: Exception | None = None
    for attempt in range(num_attempts):
        try:
            if verbose:
                print(f"Downloading {url} ...", flush=True)
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
            break
        except Exception as e:  # network errors of every kind end up here
            last_error = e
    if data is None:
        raise DownloadError(
            f"could not download {url} ({last_error}); if this machine is offline, fetch the file "
            f"elsewhere and place it at {cache_file}")

    if cache:
        os.makedirs(cache_dir, exist_ok=True)
        atomic_write(cache_file, lambda f: f.write(data))
        if return_filename:
            return cache_file
    elif return_filename:
        raise ValueError("return_filename requires cache=True for URLs")
    return io.BytesIO(data)


def cached_url_path(url: str, cache_dir: str | None = None) -> str:
    """Where `open_url` keeps (or would keep) the download of `url`."""
    if cache_dir is None:
        cache_dir = make_cache_dir_path("downloads")
    return os.path.join(cache_dir, _cache_name(url))
