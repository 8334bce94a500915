"""What an entry point does first: the CPU thread policy (raycond/threads.py), set up in the right order.

libgomp reads its wait policy from the environment once, when torch loads it, so **importing this
module** chooses it (from ``--threads`` in sys.argv and OMP_NUM_THREADS): a script imports it
before anything that loads torch, and needs no code between its imports. After option parsing,
`start(threads, procs)` sets torch's count and starts following the other processes' CPU use.
`step` is the hook a script hands to library loops (``on_batch=``, ``progress_fn=``): called on
the computing thread between batches, it moves the count to the cores other jobs leave free.

Library code runs the hook it is given and never imports raycond.threads. The jobs of the Python
API that a plain script runs for long (raycond.generate.generate_images, raycond.inversion.invert)
default their hook to `step`, whose first call starts the automatic policy when no entry point did:
torch's default count keeps every core's worker spinning beside another job (a README-style
inversion took 158–213 s instead of 28 s). Those two modules and the scripts' shared options
(raycond.cli_options) are the only library modules that import this one; raycond.convert is a
script (python -m) and starts it like the others.
"""

from __future__ import annotations

from raycond import threads
from raycond.threads import THREADS_HELP, ThreadPolicy  # noqa: F401  (re-exported for the scripts' options)


def start(num_threads: int | None = None, procs: int = 1) -> ThreadPolicy:
    """Apply the policy after option parsing: `num_threads` from --threads (None/0 = automatic),
    `procs` processes of one job sharing this machine's CPUs (CPU training ranks)."""
    return threads.apply(num_threads or None, procs=procs)


def usable_cpus() -> int:
    """CPUs this process may use (affinity mask, cgroup quota): what default worker counts divide."""
    return threads.usable_cpus()


def step(*_args) -> int | None:
    """The per-batch hook: follow the CPU competition on the calling thread (cheap; /proc is read at
    most twice a second). The first call in a process where `start` never ran starts the automatic
    policy (OMP_NUM_THREADS, when set, is kept). Accepts and ignores any progress arguments, so it
    fits every loop's hook. Returns the count in force, or None for a fixed count."""
    if not threads.applied():
        start()
    return threads.adapt()


threads.prepare()   # at import, before the importing script loads torch: the OpenMP wait policy
