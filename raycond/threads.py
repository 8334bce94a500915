"""CPU thread policy shared by every entry point: as fast as before alone, no collapse beside other jobs.

OpenMP workers spin at barriers before they sleep: fast on an idle machine, but two processes that
share cores starve each other (the 64² generator ran 7–136× slower beside a training run, and a
passive wait policy made it up to 2× slower alone: docs/performance.md). So with an automatic count
the workers keep spinning and `adapt()` sets the count, twice a second, to the cores other processes
leave free (/proc/stat); a fixed count (--threads, OMP_NUM_THREADS) makes waiting workers sleep
(OMP_WAIT_POLICY=PASSIVE). A wait policy or count the user set is never changed.

Calls, in this order: `prepare()` before `import torch` (libgomp reads its environment when
loaded; --threads is read from argv); `apply(threads, procs)` after option parsing; `adapt()`
between batches, on the computing thread (a no-op unless `apply()` turned it on). Entry points
make these calls through raycond/runtime.py; library code never imports this module.
Importing this module changes nothing; `decide()` and `free_cpus()` are the pure rules.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import time
from typing import Mapping, Sequence

WAIT_ENV = ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')   # any of these set by the user: leave waiting alone
FIXED_WAIT_POLICY = 'PASSIVE'                      # for counts that cannot follow the competition
_MARK = 'RAYCOND_SET_OMP_WAIT_POLICY'     # lets child processes tell our setting from the user's
ADAPT_INTERVAL = 0.5     # seconds between two looks at the competition
FREE_CORE_SLACK = 0.5    # other processes using up to this much of a core leave it free (X server, daemons)
THREADS_HELP = ('CPU threads for torch (0 = automatic: OMP_NUM_THREADS if set, else the cores other programs '
                'leave free, re-checked twice a second). A fixed count makes waiting threads sleep '
                '(OMP_WAIT_POLICY=PASSIVE) unless you set a wait policy.')


@dataclasses.dataclass(frozen=True)
class ThreadPolicy:
    num_threads: int       # intra-op threads for torch (the starting count when adaptive)
    threads_from: str      # 'option', 'OMP_NUM_THREADS', 'cpus' (affinity / cgroup quota) or 'torch'
    wait_policy: str       # what OpenMP workers do at a barrier: 'PASSIVE', 'ACTIVE', or libgomp's default
    wait_from: str         # 'raycond', 'user' (environment), 'libgomp default' or 'torch loaded first'
    usable_cpus: int       # CPUs this process may use
    adaptive: bool = False  # the count follows the cores other processes leave free

    def describe(self) -> str:
        """One line for logs and the GUI, e.g. '2 threads (cpus, adaptive), wait spin, then sleep (...)'."""
        s = 's' if self.num_threads != 1 else ''
        source = self.threads_from + (', adaptive' if self.adaptive else '')
        return (f'{self.num_threads} thread{s} ({source}), wait {self.wait_policy} ({self.wait_from}); '
                f'{self.usable_cpus} usable CPU{"s" if self.usable_cpus != 1 else ""}')


_state: dict = {'wait_from': None, 'policy': None, 'adapter': None, 'monitor': None}
_local = threading.local()      # per-thread: a count fixed live (GUI) switches adaptation off for that thread


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


def _affinity() -> set[int] | None:
    return set(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (at least 1)."""
    cpus = _affinity()
    n = len(cpus) if cpus is not None else (os.cpu_count() or 1)
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


def threads_in_argv(argv: Sequence[str]) -> int | None:
    """The count given as ``--threads N`` / ``--threads=N`` on a command line (None: absent or 0 = automatic)."""
    for i, arg in enumerate(argv):
        if arg == '--':
            break
        if arg == '--threads' and i + 1 < len(argv):
            return _positive_int(argv[i + 1])
        if arg.startswith('--threads='):
            return _positive_int(arg.split('=', 1)[1])
    return None


def free_cpus(cpus: int, others: float | None, cap: int | None = None) -> int:
    """Threads that fit in the cores other processes leave free: at least 1, at most `cap` (default cpus).

    others: cores used by other processes (None = unknown: assume none).
    """
    cap = cpus if cap is None else cap
    if others is None:
        return max(1, min(cap, cpus))
    return max(1, min(cap, math.floor(cpus - others + FREE_CORE_SLACK)))


def decide(threads: int | None = None, environ: Mapping[str, str] | None = None, cpus: int | None = None,
           wait_from: str | None = None, procs: int = 1, can_adapt: bool | None = None) -> ThreadPolicy:
    """The rule, without side effects.

    threads: an explicit ``--threads`` (None or 0 = automatic). environ: the environment to read
    (default ``os.environ``). cpus: CPUs the process may use (default `usable_cpus()`).
    wait_from: who set the wait policy (what `prepare()` found); None = read it from environ.
    procs: processes of one job sharing these CPUs (training ranks): the automatic count is split.
    can_adapt: whether other processes' CPU use can be measured (default: /proc/stat is readable).
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
    if can_adapt is None:
        can_adapt = CpuCompetition.available()
    if wait_from is None:
        wait_from = _who_set_wait(environ)
    if environ.get('OMP_WAIT_POLICY'):
        wait = environ['OMP_WAIT_POLICY'].upper()
    elif environ.get('GOMP_SPINCOUNT'):
        wait = f'GOMP_SPINCOUNT={environ["GOMP_SPINCOUNT"]}'
    else:
        wait = 'spin, then sleep'
    return ThreadPolicy(num_threads=n, threads_from=n_from, wait_policy=wait, wait_from=wait_from, usable_cpus=cpus,
                        adaptive=bool(n_from == 'cpus' and can_adapt))


def _who_set_wait(environ: Mapping[str, str]) -> str:
    if environ.get(_MARK) and environ.get('OMP_WAIT_POLICY') == environ[_MARK]:
        return 'raycond'
    return 'user' if any(environ.get(k) for k in WAIT_ENV) else 'libgomp default'


def prepare(environ: dict | None = None, argv: Sequence[str] | None = None) -> str:
    """Choose the OpenMP wait policy; call before ``import torch``. Returns who chose it.

    'user' when OMP_WAIT_POLICY/GOMP_SPINCOUNT is already set (left alone); 'raycond' when this call
    set PASSIVE because the count is fixed (``--threads N`` in argv, default ``sys.argv``, or
    OMP_NUM_THREADS) or competition cannot be measured; 'libgomp default' when the count will adapt
    (nothing is set); 'torch loaded first' when torch (hence libgomp) was imported earlier, in which
    case the environment is left alone because changing it would have no effect.
    """
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else argv
    fixed = threads_in_argv(argv) is not None or _positive_int(environ.get('OMP_NUM_THREADS', '').split(',')[0])
    if environ.get(_MARK) and environ.get('OMP_WAIT_POLICY') == environ[_MARK]:
        who = 'raycond'                     # inherited from a parent raycond process (spawned workers)
    elif any(environ.get(k) for k in WAIT_ENV):
        who = 'user'
    elif 'torch' in sys.modules:
        who = 'torch loaded first'
    elif fixed or not CpuCompetition.available():
        environ['OMP_WAIT_POLICY'] = environ[_MARK] = FIXED_WAIT_POLICY
        who = 'raycond'
    else:
        who = 'libgomp default'
    if environ is os.environ:
        _state['wait_from'] = who
        if _state['monitor'] is None and CpuCompetition.available():
            _state['monitor'] = CpuCompetition()     # the first look at the competition spans torch's import
    return who


def apply(threads: int | None = None, procs: int = 1) -> ThreadPolicy:
    """Decide the policy, set torch's intra-op thread count in this thread, and adapt it if automatic.

    procs: processes of one job on this machine (CPU training ranks) that share the CPUs.
    """
    import torch
    policy = decide(threads, wait_from=_state['wait_from'] or _who_set_wait(os.environ), procs=procs)
    adapter = None
    if policy.adaptive:
        adapter = _Adapter(policy.usable_cpus, policy.num_threads, _state['monitor'] or CpuCompetition())
        _state['monitor'] = None
        policy = dataclasses.replace(policy, num_threads=adapter.poll(force=True))
    torch.set_num_threads(policy.num_threads)
    _state['policy'], _state['adapter'] = policy, adapter
    _local.fixed = False
    return policy


def adapt() -> int | None:
    """Follow the competition on the calling thread (cheap; looks at /proc at most twice a second).

    Returns the count in force, or None when adaptation is off (apply() not called, a fixed count,
    or this thread's count fixed live with `set_num_threads`).
    """
    adapter = _state['adapter']
    if adapter is None or getattr(_local, 'fixed', False):
        return None
    n = adapter.poll()
    torch = sys.modules['torch']
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def competition() -> float | None:
    """Cores other processes used at the last look (None when not adapting or unknown)."""
    adapter = _state['adapter']
    return None if adapter is None else adapter.others


def applied() -> bool:
    """Whether `apply()` has chosen the count in this process (an entry point, or raycond.runtime.step)."""
    return _state['policy'] is not None


def current() -> ThreadPolicy:
    """The policy in force: what `apply()` chose, or what torch uses now if it was never called."""
    policy = _state['policy']
    if policy is None:
        import torch
        policy = decide(wait_from=_state['wait_from'] or _who_set_wait(os.environ))
        policy = dataclasses.replace(policy, num_threads=torch.get_num_threads(), threads_from='torch',
                                     adaptive=False)
    return policy


def set_num_threads(n: int) -> int:
    """Fix the count live on the calling thread (the GUI's Performance panel); 0 = adaptive again.

    Call it on the thread that computes. Returns the count now in force on this thread.
    """
    import torch
    n = int(n)
    if n <= 0:
        _local.fixed = False
        return adapt() or torch.get_num_threads()
    _local.fixed = True
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


class _Adapter:
    """Process-wide: the count that fits beside the competition, refreshed every ADAPT_INTERVAL seconds.

    Reacts to a new competitor at the next look, and gives cores back only after two looks in a row
    found them free, so a competitor that pauses briefly does not make the count flap.
    """

    def __init__(self, cpus: int, cap: int, monitor: 'CpuCompetition', interval: float = ADAPT_INTERVAL):
        self.cpus, self.cap, self.monitor, self.interval = cpus, cap, monitor, interval
        self.count, self.others = cap, None
        self._previous = None
        self._next = 0.0
        self._lock = threading.Lock()

    def poll(self, force: bool = False) -> int:
        now = time.monotonic()
        if (force or now >= self._next) and self._lock.acquire(blocking=False):
            try:
                self._next = now + self.interval
                others = self.monitor.sample()
                if others is not None:
                    worst = others if self._previous is None else max(others, self._previous)
                    self._previous = self.others = others
                    self.count = free_cpus(self.cpus, worst, self.cap)
            finally:
                self._lock.release()
        return self.count


class CpuCompetition:
    """How much CPU other processes took between two calls of `sample()` (Linux /proc only).

    Counts the CPUs this process may run on (its affinity mask): user, nice, system, irq, softirq
    and steal time (a hypervisor giving our virtual CPU to another guest is competition too), minus
    this process's own CPU time. Child processes count as others: they compete like anyone else.
    """

    PROC_STAT = '/proc/stat'

    def __init__(self, proc_stat: str | None = None, cpus: set[int] | None = None, min_window: float = 0.05):
        self.proc_stat = proc_stat or self.PROC_STAT
        self.cpus = _affinity() if cpus is None else cpus
        self.min_window = min_window    # seconds: /proc/stat counts clock ticks (10 ms); shorter windows are noise
        self._last = self._read()

    @classmethod
    def available(cls) -> bool:
        return os.access(cls.PROC_STAT, os.R_OK)

    def _busy_seconds(self) -> float:
        lines = {}
        with open(self.proc_stat) as f:
            for line in f:
                if not line.startswith('cpu'):
                    break
                name, *values = line.split()
                fields = [int(x) for x in values[:8]] + [0] * (8 - min(8, len(values)))
                lines[name] = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]  # not idle/iowait
        mine = [busy for name, busy in lines.items() if name != 'cpu' and self.cpus is not None
                and int(name[3:]) in self.cpus]
        busy = sum(mine) if mine else lines['cpu']     # no per-CPU lines (or no mask): the machine's total
        return busy / (os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100)

    def _read(self):
        try:
            return self._busy_seconds(), time.process_time(), time.monotonic()
        except (OSError, ValueError, KeyError):
            return None

    def sample(self) -> float | None:
        """Average number of cores used by *other* processes since the last call (None if unknown).

        A call less than `min_window` after the last one returns None and keeps the window open."""
        now = self._read()
        if now is not None and self._last is not None and now[2] - self._last[2] < self.min_window:
            return None
        last, self._last = self._last, now
        if now is None or last is None:
            return None
        others = (now[0] - last[0]) - (now[1] - last[1])
        return max(0.0, others / (now[2] - last[2]))
