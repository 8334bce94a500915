"""Training run directories: their names, their snapshot names, and writing into them safely.

One owner for the rules that `train.py`, the training loop, the loaders and the visualizer share:
a run is `<outdir>/NNNNN-<desc>`, `<desc>` starting with the `--cfg` name so `--resume=auto` finds
earlier runs of the same set-up (and reuses one that holds no snapshot and no live training: an
flock on `.training.lock`); a snapshot is `network-snapshot-<KIMG>.pkl`, or `<KIMG>.<III>.pkl` when
that name is taken, so none is overwritten, and "newest" is the image count in the name
(`snapshot_key`), never name order or mtime; files are written through `raycond.atomic_io`, and
`clean_stale_temps` removes only the temporaries of writers that are provably dead.
"""

from __future__ import annotations

import json
import os
import re

from raycond import atomic_io

try:
    import fcntl
except ImportError:   # Windows: no run-directory locks, so a live run without snapshot might be reused
    fcntl = None
from raycond.atomic_io import describe_cleanup, is_disk_error, pid_alive  # noqa: F401 - re-exported for train.py


SNAPSHOT_PREFIX = 'network-snapshot-'
SNAPSHOT_EXT = '.pkl'
FAKES_PREFIX = 'fakes'
FAKES_EXT = '.png'

_RUN_RE = re.compile(r'(\d+)-(.+)')


# ----------------------------------------------------------------------------- names

def _name_re(prefix: str, ext: str) -> re.Pattern:
    return re.compile(re.escape(prefix) + r'(\d{6,})(?:\.(\d{3}))?' + re.escape(ext))


def snapshot_key(fname: str, prefix: str = SNAPSHOT_PREFIX, ext: str = SNAPSHOT_EXT) -> int | None:
    """Sort key (images) of a snapshot or fakes file name; None if the name is not one.

    'network-snapshot-000012.pkl' -> 12000; 'network-snapshot-000000.008.pkl' -> 8.
    """
    m = _name_re(prefix, ext).fullmatch(os.path.basename(fname))
    if m is None:
        return None
    return int(m.group(1)) * 1000 + (int(m.group(2)) if m.group(2) else 0)


def snapshot_path(run_dir: str, cur_nimg: int, prefix: str = SNAPSHOT_PREFIX, ext: str = SNAPSHOT_EXT) -> str:
    """Where the snapshot (or fakes grid) taken at `cur_nimg` images goes in `run_dir`.

    Whole kimg by default; the exact image count when that name is already taken (see module doc).
    """
    kimg, rest = divmod(int(cur_nimg), 1000)
    plain = os.path.join(run_dir, f'{prefix}{kimg:06d}{ext}')
    if not os.path.exists(plain):
        return plain
    return os.path.join(run_dir, f'{prefix}{kimg:06d}.{rest:03d}{ext}')


def list_snapshots(run_dir: str) -> list[str]:
    """Paths of the network snapshots in `run_dir`, oldest first."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    keyed = [(snapshot_key(n), n) for n in names]
    return [os.path.join(run_dir, n) for k, n in sorted((k, n) for k, n in keyed if k is not None)]


def newest_snapshot(run_dir: str) -> str | None:
    """The newest complete network snapshot in `run_dir` (temporary files never count), or None."""
    snaps = list_snapshots(run_dir)
    return snaps[-1] if snaps else None


def list_runs(outdir: str, desc: str | None = None) -> list[tuple[int, str]]:
    """(run id, path) of the run directories in `outdir` (only those named NNNNN-<desc> if given)."""
    try:
        names = os.listdir(outdir)
    except OSError:
        return []
    runs = []
    for name in names:
        m = _RUN_RE.fullmatch(name)
        path = os.path.join(outdir, name)
        if m and (desc is None or m.group(2) == desc) and os.path.isdir(path):
            runs.append((int(m.group(1)), path))
    return sorted(runs)


def next_run_dir(outdir: str, desc: str) -> str:
    """`outdir/NNNNN-desc` with NNNNN one more than the largest run id in `outdir`."""
    ids = []
    try:
        names = os.listdir(outdir)
    except OSError:
        names = []
    for name in names:
        m = re.match(r'\d+', name)
        if m and os.path.isdir(os.path.join(outdir, name)):
            ids.append(int(m.group()))
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')


LOCK_NAME = '.training.lock'   # held (flock) by the live training of a run directory


def claim_run_dir(run_dir: str, options: dict, reuse: bool = False) -> None:
    """Create `run_dir` (or, with `reuse`, take over an existing one), hold its lock for the rest of
    this process's life, and write `training_options.json` atomically. A reused directory held no
    snapshot: its `stats.jsonl` and TensorBoard events describe a lost attempt and are removed, its
    `log.txt` is kept (appended to). Raises FileExistsError if another live training holds it."""
    try:
        os.makedirs(run_dir, exist_ok=reuse)
        fd = os.open(os.path.join(run_dir, LOCK_NAME), os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError as e:
        raise atomic_io.as_output_error(e, run_dir) from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise FileExistsError(f'{run_dir} is in use by another training process') from None
    _held_locks.append(fd)   # released by the OS when this process ends, however it ends
    if reuse:
        for name in os.listdir(run_dir):
            if name == 'stats.jsonl' or name.startswith('events.out.tfevents.'):
                os.remove(os.path.join(run_dir, name))
    atomic_io.write_text(os.path.join(run_dir, 'training_options.json'), json.dumps(options, indent=2))


_held_locks: list[int] = []


def _in_use(run_dir: str) -> bool:
    """Whether a live process holds `run_dir`'s training lock."""
    if fcntl is None:
        return False
    try:
        fd = os.open(os.path.join(run_dir, LOCK_NAME), os.O_RDONLY)
    except OSError:
        return False   # no lock file: a run from before locks, or never started
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def resume_run_dir(outdir: str, desc: str) -> str | None:
    """`--resume=auto`: the newest run named NNNNN-<desc> if it holds no snapshot and no live
    process trains in it (an attempt killed before its first snapshot), to be reused, so that
    repeated attempts do not leave a trail of run directories without snapshots; else None."""
    runs = list_runs(outdir, desc)
    if runs and newest_snapshot(runs[-1][1]) is None and not _in_use(runs[-1][1]):
        return runs[-1][1]
    return None


def find_resume_snapshot(outdir: str, desc: str) -> str | None:
    """`--resume=auto`: the newest snapshot of the newest run named NNNNN-<desc> that has one."""
    for _run_id, run_dir in reversed(list_runs(outdir, desc)):
        snap = newest_snapshot(run_dir)
        if snap is not None:
            return snap
    return None


# ----------------------------------------------------------------------------- atomic writes

def atomic_pickle(obj, path: str) -> None:
    """Pickle `obj` (a snapshot) to `path` atomically (`raycond.atomic_io`)."""
    atomic_io.save_pickle(path, obj)


# ----------------------------------------------------------------------------- stale temporary files

stale_temps = atomic_io.stale_temporaries


def clean_stale_temps(outdir: str) -> tuple[list[str], int]:
    """Remove the stale temporary files (`atomic_io.stale_temporaries`) of every run directory in
    `outdir` and of `outdir` itself. Returns (removed paths, bytes freed)."""
    removed, freed = atomic_io.clean_stale_temporaries(outdir)
    for _run_id, run_dir in list_runs(outdir):
        r, f = atomic_io.clean_stale_temporaries(run_dir)
        removed += r
        freed += f
    return removed, freed
