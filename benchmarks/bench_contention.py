#!/usr/bin/env python
"""CPU speed beside other jobs: each workload alone, then while N competing processes run, under the
project's thread policy (raycond/runtime.py: a count that follows the free cores) and, for comparison,
under libgomp's spinning default and a passive wait, both with a fixed count. Prints a table of idle vs loaded figures and their ratio; asserts nothing.

Workloads (each measured in a fresh subprocess, so its OpenMP settings are its own):
  gen64     bundled-size raycond2 generator, 64², channel base 2048, max 64, batch 1 (ms/image)
  gen256    raycond2 generator, 256², channel base 16384, max 512, batch 1 (ms/image)
  train     training iterations, raycond2 64², batch 32, channel base 2048, max 64 (s/iteration)
  viz       the visualizer's render loop (viz.renderer.Renderer, yaw changing every frame) on a
            bundled-size network (ms/frame)
Competitors (N of each, one kind at a time):
  busy      a Python busy loop (one core each)
  train     this project's train.py on 64² synthetic heads (a small dataset made for the run)
  generator a second process rendering the 64² generator in a loop

Example:
    python benchmarks/bench_contention.py                        # everything, N=1 (~15 minutes)
    python benchmarks/bench_contention.py --workloads gen64 --competitors busy,train --policies raycond
    python benchmarks/bench_contention.py --competitors '' --policies raycond,spin --repeats 5   # idle only
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import click

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WORKLOADS = ('gen64', 'gen256', 'train', 'viz')
COMPETITORS = ('busy', 'train', 'generator')
# The project's policy against two fixed ones, each a count of every usable CPU:
#   spin    what every tool did before any policy: libgomp's default spin count (300000) before a
#           waiting thread sleeps, set explicitly so that raycond leaves it alone;
#   passive the first policy (workers sleep at once): no collapse, but slower alone.
_CPUS = str(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)
POLICIES = {'raycond': {}, 'spin': {'GOMP_SPINCOUNT': '300000', 'OMP_NUM_THREADS': _CPUS},
            'passive': {'OMP_WAIT_POLICY': 'PASSIVE', 'OMP_NUM_THREADS': _CPUS}}
POLICY_VARS = ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'RAYCOND_SET_OMP_WAIT_POLICY', 'OMP_NUM_THREADS')


# ----------------------------------------------------------------------------- workloads (child side)

def _generator(res, cbase, cmax):
    import torch
    from raycond.camera import LABEL_DIM
    from training import networks_raycond2
    torch.manual_seed(0)
    return networks_raycond2.Generator(z_dim=512, c_dim=LABEL_DIM, w_dim=512, img_resolution=res, img_channels=3,
                                       channel_base=cbase, channel_max=cmax,
                                       mapping_kwargs=dict(num_layers=2)).eval().requires_grad_(False)


def _time_generator(res, cbase, cmax, seconds):
    import torch
    from raycond import runtime
    from raycond.camera import camera_label
    G = _generator(res, cbase, cmax)
    z = torch.randn([1, 512], generator=torch.Generator().manual_seed(0))
    c = torch.as_tensor(camera_label(20.0, -5.0), dtype=torch.float32)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            G(z, c, noise_mode='const', force_fp32=True)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 5:
            runtime.step()       # as the tools do between images
            t0 = time.perf_counter()
            G(z, c, noise_mode='const', force_fp32=True)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), 'ms/image'


def _time_training(seconds):
    from benchmarks.bench_training import bench_one
    iters = 4
    r = bench_one('raycond2', 64, 32, 32, 'cpu', 2048, 64, 2, iters, True)
    return r['sec_per_iter'], 's/iteration'


def _time_visualizer(seconds):
    import pickle
    import numpy as np
    from viz.renderer import RenderArgs, Renderer
    G = _generator(64, 2048, 64)
    with tempfile.TemporaryDirectory() as tmp:
        pkl = os.path.join(tmp, 'net.pkl')
        with open(pkl, 'wb') as f:
            pickle.dump({'G_ema': G}, f)
        renderer, times, i = Renderer(), [], 0
        renderer.render(RenderArgs(pkl=pkl, device='cpu'))
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 5:
            res = renderer.render(RenderArgs(pkl=pkl, device='cpu', yaw_deg=float(np.sin(i / 10) * 30)))
            if res.error:
                raise RuntimeError(res.error)
            times.append(res.timings['total'])
            i += 1
    return 1000 * statistics.median(times), 'ms/frame'


def run_workload(name, seconds):
    """Child process: apply the thread policy, time one workload, print one JSON line."""
    from raycond import runtime     # as a script does first (torch is not loaded yet in this child)
    policy = runtime.start()
    if name == 'gen64':
        value, unit = _time_generator(64, 2048, 64, seconds)
    elif name == 'gen256':
        value, unit = _time_generator(256, 16384, 512, seconds)
    elif name == 'train':
        value, unit = _time_training(seconds)
    elif name == 'viz':
        value, unit = _time_visualizer(seconds)
    else:
        raise ValueError(f'unknown workload {name!r}; choose from {", ".join(WORKLOADS)}')
    print(json.dumps(dict(value=value, unit=unit, policy=policy.describe())))


def run_generator_forever():
    """Competitor: render the 64² generator in a loop until killed."""
    from raycond import runtime
    runtime.start()
    _time_generator(64, 2048, 64, seconds=1e9)


# ----------------------------------------------------------------------------- driver (parent side)

def _env(policy):
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARS}
    env.update(POLICIES[policy])
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return env


def _make_dataset(tmp):
    path = os.path.join(tmp, 'heads-64.zip')
    subprocess.run([sys.executable, os.path.join(ROOT, 'dataset_tool.py'), 'synth', f'--dest={path}', '--count=512',
                    '--resolution=64', '--workers=1'], check=True, capture_output=True, env=_env('raycond'))
    return path


def _start_competitors(kind, n, policy, tmp, dataset):
    procs = []
    for i in range(n):
        if kind == 'busy':
            cmd = [sys.executable, '-c', 'while True: pass']
        elif kind == 'generator':
            cmd = [sys.executable, __file__, '--competitor-generator']
        elif kind == 'train':
            cmd = [sys.executable, os.path.join(ROOT, 'train.py'), f'--outdir={os.path.join(tmp, f"runs{i}")}',
                   f'--data={dataset}', '--cfg=raycond2', '--batch=32', '--gamma=1', '--cbase=2048', '--cmax=64',
                   '--map-depth=2', '--kimg=100000', '--snap=100000', '--tick=100000', '--metrics=none',
                   '--workers=1']
        else:
            raise click.BadParameter(f'unknown competitor {kind!r}; choose from {", ".join(COMPETITORS)}')
        procs.append(subprocess.Popen(cmd, env=_env(policy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
    time.sleep({'busy': 1, 'generator': 15, 'train': 45}[kind])     # past start-up, into steady work
    for p in procs:
        if p.poll() is not None:
            raise RuntimeError(f'competitor {kind} exited early (rc {p.returncode})')
    return procs


def _stop(procs):
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def _measure(workload, policy, seconds):
    out = subprocess.run([sys.executable, __file__, '--workload', workload, '--seconds', str(seconds)],
                         env=_env(policy), capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f'workload {workload} failed: {out.stderr.strip().splitlines()[-1:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


@click.command(help=__doc__, context_settings=dict(help_option_names=['-h', '--help']))
@click.option('--workloads', default=','.join(WORKLOADS), show_default=True, help='Comma-separated workloads.')
@click.option('--competitors', default=','.join(COMPETITORS), show_default=True, help='Comma-separated competitors.')
@click.option('--policies', default='raycond,spin', show_default=True,
              help="raycond (the project's adaptive policy), spin (libgomp's default spinning, fixed count, as "
                   "before) and/or passive (sleeping workers, fixed count: the first policy).")
@click.option('-n', '--num', 'num', type=click.IntRange(min=1), default=1, show_default=True,
              help='Competing processes of each kind.')
@click.option('--seconds', type=float, default=8.0, show_default=True, help='Timing window per measurement.')
@click.option('--repeats', type=click.IntRange(min=1), default=1, show_default=True,
              help='Rounds per figure (policies interleaved); the table gives medians.')
@click.option('--workload', 'child_workload', default=None, hidden=True)
@click.option('--competitor-generator', is_flag=True, hidden=True)
def main(workloads, competitors, policies, num, seconds, repeats, child_workload, competitor_generator):
    if competitor_generator:
        run_generator_forever()
        return
    if child_workload:
        run_workload(child_workload, seconds)
        return
    workloads = [w for w in workloads.split(',') if w]
    competitors = [c for c in competitors.split(',') if c]
    policies = [p for p in policies.split(',') if p]
    for p in policies:
        if p not in POLICIES:
            raise click.BadParameter(f'unknown policy {p!r}; choose from {", ".join(POLICIES)}')
    rows, idle_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = _make_dataset(tmp) if 'train' in competitors else None
        for workload in workloads:
            # Rounds interleave the policies, so that a slow minute of a shared machine hits them all alike.
            idle = {p: [] for p in policies}
            for _ in range(repeats):
                for policy in policies:
                    r = _measure(workload, policy, seconds)
                    idle[policy].append(r['value'])
                    unit = r['unit']
                    print(f'{workload:7s} {policy:8s} idle {r["value"]:9.2f} {unit}   ({r["policy"]})', flush=True)
            idle = {p: statistics.median(v) for p, v in idle.items()}
            idle_rows.append((workload, unit, idle))
            for kind in competitors:
                loaded = {p: [] for p in policies}
                for _ in range(repeats):
                    for policy in policies:
                        procs = _start_competitors(kind, num, policy, tmp, dataset)
                        try:
                            r = _measure(workload, policy, seconds)
                        finally:
                            _stop(procs)
                        loaded[policy].append(r['value'])
                        print(f'{workload:7s} {policy:8s} + {num} {kind:9s} {r["value"]:9.2f} {unit} '
                              f'({r["value"] / idle[policy]:.2f}x idle)', flush=True)
                for policy in policies:
                    value = statistics.median(loaded[policy])
                    rows.append((workload, unit, policy, kind, idle[policy], value, value / idle[policy]))
    import platform
    print(f'\n{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), N={num} competitor(s) of each '
          f'kind, {seconds:g} s per measurement, median of {repeats} interleaved round(s)')
    print('\n| workload | unit | ' + ' | '.join(f'{p} idle' for p in policies) + ' |')
    print('|---|---|' + '---|' * len(policies))
    for w, unit, idle in idle_rows:
        print(f'| {w} | {unit} | ' + ' | '.join(f'{idle[p]:.2f}' for p in policies) + ' |')
    if rows:
        print('\n| workload | unit | thread policy | competitor | idle | loaded | loaded / idle |')
        print('|---|---|---|---|---|---|---|')
        for w, unit, policy, kind, idle, loaded, ratio in rows:
            print(f'| {w} | {unit} | {policy} | {num}× {kind} | {idle:.2f} | {loaded:.2f} | {ratio:.2f}× |')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
