"""Running this code and NVIDIA's published code side by side: one process per measurement (the
published code's dnnlib, torch_utils and training packages shadow ours), in an order that rotates
every round so that a change of load hits every side; the best of each side is kept."""

import json
import subprocess

# The first lines of a worker that imports the published code (argv[1]: its checkout): this project's
# editable install maps its package names (training, torch_utils, dnnlib) by name, so it is dropped,
# and the checkout goes first on sys.path. Defines `path`.
ISOLATE_CHECKOUT = r"""
import os, sys
path = sys.argv[1]
sys.meta_path[:] = [f for f in sys.meta_path
                    if 'editable' not in (getattr(f, '__module__', '') + getattr(f, '__name__', '')).lower()]
sys.path[:] = [path] + [p for p in sys.path if p not in ('', os.getcwd())]
"""


def json_of(name: str, cmd: list) -> dict:
    """The last stdout line of `cmd` as JSON; a RuntimeError naming `name` with stderr's last line if it failed."""
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{name}: {(out.stderr.strip().splitlines() or ['failed with no message'])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_of_rotations(cmds: dict, rounds: int, time_key: str, cpu_key: str, report) -> tuple[dict, dict]:
    """Run every command of `cmds` ({'published': argv, ...}) `rounds` times, rotating the order each
    round; report(round, name, result) after each run. Returns the best `time_key` and `cpu_key` per name."""
    names = list(cmds)
    best = {k: float('inf') for k in names}
    best_cpu = dict(best)
    for i in range(rounds):
        for k in names[i % len(names):] + names[:i % len(names)]:
            r = json_of('the published code' if k == 'published' else f'this code ({k})', cmds[k])
            best[k] = min(best[k], r[time_key])
            best_cpu[k] = min(best_cpu[k], r[cpu_key])
            report(i + 1, k, r)
    return best, best_cpu
