"""Outputs written whole or not at all: the one place the tools write their result files through.

The rule (docs/reliability.md §7: a tool never loses or overwrites a user's files): every output
is written to a hidden temporary name in the same folder (`dnnlib.util.temp_path`: `.<name>.tmp-<host>-<pid>`),
flushed to disk, then renamed over the target, so a full disk, a read-only folder, Ctrl-C or
SIGKILL at any moment leaves either the old file or the complete new one. The temporary-name
format, the rename and the one-line `OutputError` belong to `dnnlib.util` (its download cache
needs them and may not import `raycond`); this module adds what tools need on top:

- `atomic_path(path)`: a temporary path to write, published on success, removed on any failure,
  with disk errors turned into one `OutputError` line ("No space left on device while writing
  out/seed0255.png").
- Savers that write through a Python file object (so they share one error path): `write_bytes`,
  `write_text`, `save_image`, `save_torch`, `save_npz`, `save_pickle`.
- `ResultSet`: several files that appear as a complete set or not at all (projector.py's result).
- `clean_stale_temporaries(folder)`: what each tool calls on its output folder at start, removing
  the temporaries of writers that died (same host, pid gone); a live writer's file is never touched.
- Published files get the mode a plain open() gives (0644 under umask 022), whatever created them.
- `append_line(path, text)`: one whole, flushed line appended to a JSONL log.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
from typing import Any, Callable

import dnnlib

# The one-line write error and its wording live in dnnlib.util (its download cache raises them too).
OutputError = dnnlib.util.OutputError
DISK_ERRNOS = dnnlib.util.DISK_ERRNOS
display_path = dnnlib.util.display_path
as_output_error = dnnlib.util.as_output_error

# `.<target>.tmp-<host>-<pid>` (dnnlib.util.temp_path), and `.<target>.tmp<pid>` from older releases.
_TMP_RE = re.compile(r'\.(?P<target>.+)\.tmp(?:-(?P<host>[^/]+)-(?P<pid>\d+)|(?P<oldpid>\d+))')


# ----------------------------------------------------------------------------- errors

def is_disk_error(e: BaseException) -> bool:
    """Whether `e` is an OS error that means "this folder cannot take more data"."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


# ----------------------------------------------------------------------------- single files

# A temporary path in `path`'s folder that becomes `path` (flushed, renamed) when the block ends
# cleanly, and is removed on any failure or interrupt, `path` keeping what it held; OS errors are
# raised as OutputError naming `path`. The primitive is dnnlib.util's; tools use this name.
atomic_path = dnnlib.util.atomic_output


def write_with(path: str, write_fn: Callable[[Any], Any]) -> None:
    """Call `write_fn(f)` on a binary file object whose bytes become `path` atomically."""
    with atomic_path(path) as tmp:
        dnnlib.util.write_file(tmp, write_fn)


def write_bytes(path: str, data: bytes) -> None:
    write_with(path, lambda f: f.write(data))


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode('utf-8'))


def _image_writer(path: str, array) -> Callable[[Any], Any]:
    import numpy as np
    from PIL import Image
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ValueError(f'cannot tell the image format of {display_path(path)} from its extension')
    image = Image.fromarray(arr)
    return lambda f: image.save(f, format=fmt)


def save_image(path: str, array) -> None:
    """A uint8 HxW, HxWx1 or HxWx3 array as an image file (format from the extension)."""
    write_with(path, _image_writer(path, array))


def save_torch(path: str, obj) -> None:
    import torch
    write_with(path, lambda f: torch.save(obj, f))


def save_npz(path: str, **arrays) -> None:
    import numpy as np
    write_with(path, lambda f: np.savez(f, **arrays))


def save_pickle(path: str, obj) -> None:
    write_with(path, lambda f: pickle.dump(obj, f))


def append_line(path: str, text: str) -> None:
    """Append `text` + newline to `path` with one write call and flush it, so a reader never sees
    half a line from this writer. A failure raises OutputError naming `path`."""
    data = (text.rstrip('\n') + '\n').encode('utf-8')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            written = os.write(fd, data)
            if written != len(data):   # a short write: the disk filled mid-line; drop the partial line
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        finally:
            os.close(fd)
    except OSError as e:
        raise as_output_error(e, path) from None


# ----------------------------------------------------------------------------- several files

class ResultSet:
    """Files that appear together or not at all.

        with ResultSet() as rs:
            rs.save_image('out/target.png', target)
            rs.save_npz('out/projected.npz', w=w)
        # both exist now; after an error or Ctrl-C inside the block, neither does

    Every member is written to its temporary name first; `commit()` (run on leaving the block
    cleanly) renames them all. If a rename fails, the members already renamed are removed again.
    """

    def __init__(self):
        self._members: list[tuple[str, str]] = []     # (temporary path, final path), in write order
        self._done = False

    def path(self, final: str) -> str:
        """A temporary path to write `final` to (for writers that want a file name)."""
        final = os.fspath(final)
        if any(f == final for _t, f in self._members):
            raise ValueError(f'{display_path(final)} is already part of this result')
        tmp = dnnlib.util.temp_path(final)
        self._members.append((tmp, final))
        return tmp

    def write_with(self, final: str, write_fn: Callable[[Any], Any]) -> None:
        tmp = self.path(final)
        try:
            dnnlib.util.write_file(tmp, write_fn)
        except OSError as e:
            raise as_output_error(e, final) from None

    def write_bytes(self, final: str, data: bytes) -> None:
        self.write_with(final, lambda f: f.write(data))

    def save_image(self, final: str, array) -> None:
        self.write_with(final, _image_writer(final, array))

    def save_torch(self, final: str, obj) -> None:
        import torch
        self.write_with(final, lambda f: torch.save(obj, f))

    def save_npz(self, final: str, **arrays) -> None:
        import numpy as np
        self.write_with(final, lambda f: np.savez(f, **arrays))

    def commit(self) -> list[str]:
        """Publish every member; returns their final paths."""
        published = []
        try:
            for tmp, final in self._members:
                try:
                    dnnlib.util.publish(tmp, final)
                except OSError as e:
                    raise as_output_error(e, final) from None
                published.append(final)
        except BaseException:
            for final in published:
                _remove_quietly(final)
            self.abort()
            raise
        self._done = True
        return [final for _t, final in self._members]

    def abort(self) -> None:
        """Remove every temporary written so far (the final paths are left as they were)."""
        for tmp, _final in self._members:
            _remove_quietly(tmp)
        self._done = True

    def __enter__(self) -> 'ResultSet':
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._done:
            return False
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def _remove_quietly(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except OSError:
        pass


# ----------------------------------------------------------------------------- stale temporaries

def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine and is not a zombie (a killed, unreaped writer)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's live process (PermissionError), or no way to tell
    try:
        with open(f'/proc/{pid}/stat') as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
        return state not in ('Z', 'X')
    except (OSError, IndexError):
        return True


def _this_host() -> str:
    m = _TMP_RE.fullmatch(os.path.basename(dnnlib.util.temp_path('x')))
    return m.group('host')


def is_temporary_name(name: str) -> bool:
    """Whether `name` (a base name) is one of our hidden temporary names."""
    return _TMP_RE.fullmatch(name) is not None


def stale_temporaries(folder: str) -> list[str]:
    """Temporaries (files or folders) in `folder` whose writer is dead: written on this host by a
    pid that no longer runs. Those of other hosts (a shared folder) or of live pids are never listed."""
    host = _this_host()
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for name in names:
        m = _TMP_RE.fullmatch(name)
        if m is None:
            continue
        if m.group('oldpid') is not None:       # .NAME.tmp<pid>: written before host names were added
            pid = int(m.group('oldpid'))
        elif m.group('host') == host:
            pid = int(m.group('pid'))
        else:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            out.append(os.path.join(folder, name))
    return sorted(out)


def _size(path: str) -> int:
    if os.path.isdir(path) and not os.path.islink(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def clean_stale_temporaries(folder: str) -> tuple[list[str], int]:
    """Remove `stale_temporaries(folder)`; returns (removed paths, bytes freed). Never raises: a
    folder that cannot be listed or written is reported by the write that follows, not here."""
    removed, freed = [], 0
    for path in stale_temporaries(folder or '.'):
        try:
            size = _size(path)
        except OSError:
            size = 0
        _remove_quietly(path)
        if not os.path.lexists(path):
            removed.append(path)
            freed += size
    return removed, freed


def describe_cleanup(removed: list[str], freed: int) -> str | None:
    """The one log line for a cleanup's result (None when nothing was removed)."""
    if not removed:
        return None
    names = ', '.join(display_path(p) for p in removed[:3])
    more = f' and {len(removed) - 3} more' if len(removed) > 3 else ''
    return (f'Removed {len(removed)} temporary file(s) left by killed writers ({freed / 2**20:.1f} MiB): '
            f'{names}{more}')


def prepare_output_folder(folder: str, log: Callable[[str], Any] | None = print, output: str | None = None) -> None:
    """Create `folder` if needed, check that it can be written, and remove dead writers' temporaries
    from it (one line via `log` when any were removed). Every tool calls this on its output folder
    before its work, so that a read-only folder fails at once; the error names `output` (the file
    the tool will write there) when given, else the folder."""
    folder = folder or '.'
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise as_output_error(e, output or folder) from None
    if not os.access(folder, os.W_OK):   # fail before the work, not after it
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY) if hasattr(os, 'statvfs') else False
        raise OutputError(errno.EROFS if read_only else errno.EACCES, output or folder)
    line = describe_cleanup(*clean_stale_temporaries(folder))
    if line and log is not None:
        log(line)
