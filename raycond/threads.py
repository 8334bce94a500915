"""CPU thread policy shared by every entry point: fast alone, and no collapse beside other jobs.

PyTorch's CPU kernels run on OpenMP (libgomp). By default an OpenMP worker that reaches a barrier
spins for a while before it sleeps. When another process keeps a core busy (a training run, a
metric, a second viewer), the spinning workers of both processes steal the very cycles the late
worker needs, and a parallel region that takes 0.1 ms alone can take milliseconds. On a 2-core
machine this made the 64² generator 3.6×–72× slower beside another job (see
docs/performance.md). A *passive* wait policy (workers sleep at once) removes the collapse and
costs nothing measurable alone, so our entry points ask for it.

The policy has two halves, because libgomp reads its environment only when it is loaded:

* `prepare()` runs first in a script, before `import torch`: it sets ``OMP_WAIT_POLICY=PASSIVE``
  unless the user chose a wait policy (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``).
* `apply(threads)` runs after option parsing: it picks the intra-op thread count and calls
  ``torch.set_num_threads``. An explicit ``--threads`` wins, then ``OMP_NUM_THREADS``, then the
  number of CPUs this process may use (its affinity mask, capped by a cgroup CPU quota).

Importing this module (or `raycond`) changes nothing; only these calls do, and only the
scripts of this project make them. `decide()` is the pure rule, for tests and for the GUI.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Mapping

WAIT_ENV = ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')   # any of these set by the user: leave waiting alone
DEFAULT_WAIT_POLICY = 'PASSIVE'
_MARK = 'RAYCOND_SET_OMP_WAIT_POLICY'     # lets child processes tell our setting from the user's
THREADS_HELP = ('CPU threads for torch (0 = automatic: OMP_NUM_THREADS if set, else the CPUs this process may '
                'use). Waiting threads sleep (OMP_WAIT_POLICY=PASSIVE) unless you set a wait policy.')


@dataclasses.dataclass(frozen=True)
class ThreadPolicy:
    num_threads: int       # intra-op threads for torch
    threads_from: str      # 'option', 'OMP_NUM_THREADS' or 'cpus' (affinity / cgroup quota)
    wait_policy: str       # what OpenMP workers do at a barrier: 'PASSIVE', 'ACTIVE', or libgomp's default
    wait_from: str         # 'raycond', 'user' (environment), or 'torch loaded first' (too late to choose)
    usable_cpus: int       # CPUs this process may run on

    def describe(self) -> str:
        """One line for logs and the GUI, e.g. '2 threads (cpus), wait PASSIVE (raycond)'."""
        s = 's' if self.num_threads != 1 else ''
        return (f'{self.num_threads} thread{s} ({self.threads_from}), wait {self.wait_policy} ({self.wait_from}); '
                f'{self.usable_cpus} usable CPU{"s" if self.usable_cpus != 1 else ""}')


_state: dict = {'wait_from': None, 'policy': None}


def _cgroup_cpu_limit(root: str = '/sys/fs/cgroup') -> float | None:
    """CPUs granted by a cgroup quota (v2 cpu.max or v1 cfs quota/period), or None if unlimited."""
    try:
        with open(os.path.join(root, 'cpu.max')) as f:
            quota, period = f.read().split()[:2]
        return None if quota == 'max' else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, 'cpu', 'cpu.cfs_quota_us')) as f:
            quota = int(f.read())
        with open(os.path.join(root, 'cpu', 'cpu.cfs_period_us')) as f:
            period = int(f.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (at least 1)."""
    if hasattr(os, 'sched_getaffinity'):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def _positive_int(value) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def decide(threads: int | None = None, environ: Mapping[str, str] | None = None, cpus: int | None = None,
           wait_from: str | None = None, procs: int = 1) -> ThreadPolicy:
    """The rule, without side effects.

    threads: an explicit ``--threads`` (None or 0 = automatic). environ: the environment to read
    (default ``os.environ``). cpus: CPUs the process may use (default `usable_cpus()`).
    wait_from: who set the wait policy (what `prepare()` found); None = read it from environ.
    procs: processes of one job sharing these CPUs (training ranks): the automatic count is split.
    """
    environ = os.environ if environ is None else environ
    cpus = usable_cpus() if cpus is None else max(1, int(cpus))
    if threads is not None and int(threads) < 0:
        raise ValueError(f'--threads must be 0 (automatic) or a positive count, got {threads}')
    omp = _positive_int(environ.get('OMP_NUM_THREADS', '').split(',')[0])   # nested lists: the first level
    if threads:
        n, n_from = int(threads), 'option'
    elif omp is not None:
        n, n_from = omp, 'OMP_NUM_THREADS'
    else:
        n, n_from = max(1, cpus // max(1, int(procs))), 'cpus'
    if wait_from is None:
        wait_from = _who_set_wait(environ)
    if environ.get('OMP_WAIT_POLICY'):
        wait = environ['OMP_WAIT_POLICY'].upper()
    elif environ.get('GOMP_SPINCOUNT'):
        wait = f'GOMP_SPINCOUNT={environ["GOMP_SPINCOUNT"]}'
    else:
        wait = 'spin, then sleep'
    return ThreadPolicy(num_threads=n, threads_from=n_from, wait_policy=wait, wait_from=wait_from, usable_cpus=cpus)


def _who_set_wait(environ: Mapping[str, str]) -> str:
    if environ.get(_MARK) and environ.get('OMP_WAIT_POLICY') == environ[_MARK]:
        return 'raycond'
    return 'user' if any(environ.get(k) for k in WAIT_ENV) else 'libgomp default'


def prepare(environ: dict | None = None) -> str:
    """Choose the OpenMP wait policy; call before ``import torch``. Returns who chose it.

    'user' when OMP_WAIT_POLICY/GOMP_SPINCOUNT is already set (left alone), 'raycond' when this
    call set PASSIVE, 'torch loaded first' when torch (hence libgomp) was imported earlier, in
    which case the environment is left alone because changing it would have no effect.
    """
    environ = os.environ if environ is None else environ
    if environ.get(_MARK) and environ.get('OMP_WAIT_POLICY') == environ[_MARK]:
        who = 'raycond'                     # inherited from a parent raycond process (spawned workers)
    elif any(environ.get(k) for k in WAIT_ENV):
        who = 'user'
    elif 'torch' in sys.modules:
        who = 'torch loaded first'
    else:
        environ['OMP_WAIT_POLICY'] = environ[_MARK] = DEFAULT_WAIT_POLICY
        who = 'raycond'
    if environ is os.environ:
        _state['wait_from'] = who
    return who


def apply(threads: int | None = None, procs: int = 1) -> ThreadPolicy:
    """Decide the policy and set torch's intra-op thread count in this thread (and new ones).

    procs: processes of one job on this machine (CPU training ranks) that share the CPUs.
    """
    import torch
    policy = decide(threads, wait_from=_state['wait_from'] or _who_set_wait(os.environ), procs=procs)
    torch.set_num_threads(policy.num_threads)
    _state['policy'] = policy
    return policy


def current() -> ThreadPolicy:
    """The policy in force: what `apply()` chose, or what torch uses now if it was never called."""
    policy = _state['policy']
    if policy is None:
        import torch
        policy = decide(wait_from=_state['wait_from'] or _who_set_wait(os.environ))
        policy = dataclasses.replace(policy, num_threads=torch.get_num_threads(), threads_from='torch')
    return policy


def set_num_threads(n: int) -> ThreadPolicy:
    """Change the count live (the GUI's Performance panel); call it on the thread that computes."""
    import torch
    n = max(1, int(n))
    torch.set_num_threads(n)
    _state['policy'] = dataclasses.replace(current(), num_threads=n, threads_from='option')
    return _state['policy']


class CpuCompetition:
    """How much CPU other processes took between two calls of `sample()` (Linux /proc only).

    Why: a render that suddenly takes 5× longer while the user does nothing is almost always
    another program on the same cores; telling the user so beats a mysterious frame-rate drop.
    """

    def __init__(self, proc_stat: str = '/proc/stat'):
        self.proc_stat = proc_stat
        self._last = self._read()

    def _read(self):
        try:
            with open(self.proc_stat) as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)   # minus idle and iowait
        tick = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100
        return busy / tick, time.process_time(), time.monotonic()

    def sample(self) -> float | None:
        """Average number of cores used by *other* processes since the last call (None if unknown)."""
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[2] - last[2] <= 0:
            return None
        others = (now[0] - last[0]) - (now[1] - last[1])
        return max(0.0, others / (now[2] - last[2]))
