"""The CPU thread policy (raycond.threads, applied by entry points through raycond.runtime): who
decides the thread count and the OpenMP wait policy, and who may call it."""

import ast
import os
import re
import subprocess
import sys

import pytest

from raycond import threads
from viz.performance import competition_message, thread_status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_explicit_threads_option_wins_over_environment():
    p = threads.decide(3, environ={'OMP_NUM_THREADS': '7'}, cpus=2)
    assert (p.num_threads, p.threads_from) == (3, 'option')


def test_omp_num_threads_wins_over_cpu_count():
    p = threads.decide(None, environ={'OMP_NUM_THREADS': '5'}, cpus=2)
    assert (p.num_threads, p.threads_from) == (5, 'OMP_NUM_THREADS')


def test_omp_num_threads_nested_list_uses_first_level():
    assert threads.decide(0, environ={'OMP_NUM_THREADS': '4,2'}, cpus=8).num_threads == 4


def test_invalid_omp_num_threads_falls_back_to_cpus():
    p = threads.decide(None, environ={'OMP_NUM_THREADS': 'lots'}, cpus=6)
    assert (p.num_threads, p.threads_from) == (6, 'cpus')


def test_automatic_count_is_the_usable_cpus():
    assert threads.decide(None, environ={}, cpus=6).num_threads == 6


def test_automatic_count_is_split_among_processes_of_one_job():
    assert threads.decide(None, environ={}, cpus=8, procs=3).num_threads == 2
    assert threads.decide(None, environ={}, cpus=2, procs=4).num_threads == 1


def test_negative_thread_count_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match='--threads must be 0'):
        threads.decide(-1, environ={}, cpus=2)


def test_usable_cpus_lies_within_the_affinity_mask():
    n = threads.usable_cpus()
    assert 1 <= n <= (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())


def test_cgroup_v2_quota_caps_the_cpu_count(tmp_path):
    (tmp_path / 'cpu.max').write_text('150000 100000\n')
    assert threads._cgroup_cpu_limit(str(tmp_path)) == pytest.approx(1.5)
    (tmp_path / 'cpu.max').write_text('max 100000\n')
    assert threads._cgroup_cpu_limit(str(tmp_path)) is None


def test_prepare_sets_passive_wait_only_when_the_user_did_not_choose():
    env = {}
    # torch is already imported in this test process, so a real prepare() must not pretend it can help.
    assert threads.prepare(env) == 'torch loaded first' and 'OMP_WAIT_POLICY' not in env
    env = {'OMP_WAIT_POLICY': 'ACTIVE'}
    assert threads.prepare(env) == 'user' and env['OMP_WAIT_POLICY'] == 'ACTIVE'
    env = {'GOMP_SPINCOUNT': '1000'}
    assert threads.prepare(env) == 'user' and 'OMP_WAIT_POLICY' not in env


def _run_python(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'OMP_NUM_THREADS',
                                                              'RAYCOND_SET_OMP_WAIT_POLICY')}
    full.update(env, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, '-c', code], env=full, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_automatic_count_leaves_the_wait_policy_alone_and_adapts():
    code = ('from raycond import runtime, threads; import os, torch; p = runtime.start(); '
            'print(threads.current().wait_from, os.environ.get("OMP_WAIT_POLICY", "-"), p.adaptive, p.threads_from)')
    assert _run_python(code).split() == ['libgomp', 'default', '-', 'True', 'cpus']


def test_threads_option_on_the_command_line_makes_waiting_threads_sleep():
    code = ('import sys; sys.argv[1:] = ["--threads=1"]; from raycond import runtime; '
            'import os, torch; p = runtime.start(1); '
            'print(os.environ["OMP_WAIT_POLICY"], torch.get_num_threads(), p.wait_from, p.adaptive)')
    assert _run_python(code).split() == ['PASSIVE', '1', 'raycond', 'False']


def test_omp_num_threads_makes_waiting_threads_sleep_and_is_not_adapted():
    code = ('from raycond import runtime; import os, torch; p = runtime.start(); '
            'print(p.wait_from, os.environ["OMP_WAIT_POLICY"], p.num_threads, p.adaptive, runtime.step())')
    assert _run_python(code, OMP_NUM_THREADS='1').split() == ['raycond', 'PASSIVE', '1', 'False', 'None']


def test_runtime_imported_after_torch_leaves_the_environment_alone():
    code = ('import sys; sys.argv[1:] = ["--threads=1"]; import os, torch; from raycond import runtime, threads; '
            'print(os.environ.get("OMP_WAIT_POLICY", "-"), runtime.start(1).wait_from.replace(" ", "_"))')
    assert _run_python(code).split() == ['-', 'torch_loaded_first']


def test_step_in_a_plain_script_starts_the_automatic_policy_once():
    """A library job run from a plain script (no runtime.start) must not keep torch's spinning
    all-core default beside another job: the first step applies the automatic policy."""
    code = ('import torch; from raycond import runtime, threads; before = threads.applied(); '
            'n = runtime.step(); p = threads.current(); '
            'print(before, threads.applied(), p.threads_from, n == torch.get_num_threads())')
    assert _run_python(code).split() == ['False', 'True', 'cpus', 'True']


def test_step_keeps_the_count_an_entry_point_fixed():
    code = ('from raycond import runtime, threads; import torch; runtime.start(1); '
            'print(runtime.step(), torch.get_num_threads(), threads.current().threads_from)')
    assert _run_python(code).split() == ['None', '1', 'option']


def test_step_keeps_a_users_omp_num_threads_in_a_plain_script():
    code = 'import torch; from raycond import runtime; print(runtime.step(), torch.get_num_threads())'
    assert _run_python(code, OMP_NUM_THREADS='1').split() == ['None', '1']


def test_generate_images_without_a_hook_starts_the_policy_once(small_generator, monkeypatch):
    from raycond import generate as gen
    started, in_force = [], [False]
    monkeypatch.setattr(threads, 'apply', lambda *a, **k: (started.append(a), in_force.__setitem__(0, True)))
    monkeypatch.setattr(threads, 'applied', lambda: in_force[0])
    monkeypatch.setattr(threads, 'adapt', lambda: None)
    for _ in range(2):     # a plain script's first call starts it; later calls and batches find it in force
        gen.generate_images(small_generator, [1, 2, 3], gen.c_for_network(None, 0.0, 0.0), batch_size=2)
    assert len(started) == 1


LIBRARY_PACKAGES = ('raycond', 'training', 'metrics')
POLICY_OWNERS = ('raycond/threads.py', 'raycond/runtime.py')
# Modules of the library that may reach the runtime helper, each for one documented reason.
RUNTIME_USERS = {
    'raycond/cli_options.py': 'the --threads option text of the scripts',
    'raycond/convert.py': 'an entry point (python -m raycond.convert)',
    'raycond/inversion/train_encoder.py': 'an entry point (python -m raycond.inversion.train_encoder)',
    'raycond/inversion/pipeline.py': 'invert() from a plain script defaults its step hook to runtime.step',
    'raycond/generate.py': 'generate_images() from a plain script defaults its batch hook to runtime.step',
}


def _imported_raycond_modules(path):
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update([node.module] + [f'{node.module}.{a.name}' for a in node.names])
    return names


def _library_files():
    for package in LIBRARY_PACKAGES:
        for folder, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith('.py'):
                    yield os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, '/')


def test_library_code_does_not_import_the_thread_policy():
    offenders = [p for p in _library_files() if p not in POLICY_OWNERS
                 and 'raycond.threads' in _imported_raycond_modules(os.path.join(ROOT, p))]
    assert offenders == []


def test_library_code_reaches_the_runtime_helper_only_where_listed():
    users = sorted(p for p in _library_files() if p not in POLICY_OWNERS
                   and 'raycond.runtime' in _imported_raycond_modules(os.path.join(ROOT, p)))
    assert users == sorted(RUNTIME_USERS)


SCRIPTS = ('gen_images', 'gen_video', 'projector', 'train', 'calc_metrics', 'dataset_tool', 'visualizer')


def test_scripts_need_no_code_between_their_imports():
    for name in SCRIPTS:
        text = open(os.path.join(ROOT, f'{name}.py'), encoding='utf-8').read()
        assert not re.search(r'noqa:\s*E40[2]', text) and 'threads.prepare(' not in text, name


@pytest.mark.parametrize('script', ['gen_images', 'train'])
def test_importing_a_script_chooses_the_wait_policy_before_torch_loads(script):
    code = (f'import sys; sys.argv[1:] = ["--threads=1"]; import {script}, os; '
            'print(os.environ.get("OMP_WAIT_POLICY", "-"))')
    assert _run_python(code) == 'PASSIVE'


def test_threads_in_argv_reads_both_spellings_and_treats_zero_as_automatic():
    assert threads.threads_in_argv(['--threads', '3', 'x']) == 3
    assert threads.threads_in_argv(['--outdir=o', '--threads=2']) == 2
    assert threads.threads_in_argv(['--threads=0']) is None
    assert threads.threads_in_argv(['--threads']) is None
    assert threads.threads_in_argv(['--', '--threads=4']) is None
    assert threads.threads_in_argv(['--num-threads=4']) is None


def test_free_cpus_leaves_the_cores_others_use():
    assert threads.free_cpus(2, 0.0) == 2
    assert threads.free_cpus(2, 0.4) == 2          # an X server or a daemon does not take a core
    assert threads.free_cpus(2, 1.0) == 1          # a busy loop on one core of two
    assert threads.free_cpus(2, 3.5) == 1          # never fewer than one
    assert threads.free_cpus(16, 1.0) == 15
    assert threads.free_cpus(16, 0.0, cap=8) == 8  # one of two ranks of a job
    assert threads.free_cpus(4, None) == 4         # unknown: assume free


def test_only_an_automatic_count_adapts():
    assert threads.decide(None, environ={}, cpus=4, can_adapt=True).adaptive
    assert not threads.decide(2, environ={}, cpus=4, can_adapt=True).adaptive
    assert not threads.decide(None, environ={'OMP_NUM_THREADS': '2'}, cpus=4, can_adapt=True).adaptive
    assert not threads.decide(None, environ={}, cpus=4, can_adapt=False).adaptive
    assert threads.decide(None, environ={'OMP_WAIT_POLICY': 'ACTIVE'}, cpus=4, can_adapt=True).adaptive


class _FakeMonitor:
    def __init__(self, values):
        self.values = list(values)

    def sample(self):
        return self.values.pop(0)


def test_adapter_yields_a_core_at_once_and_takes_it_back_after_two_free_looks():
    a = threads._Adapter(cpus=2, cap=2, monitor=_FakeMonitor([0.0, 1.0, 0.1, 0.1, 0.9]), interval=0.0)
    assert [a.poll() for _ in range(5)] == [2, 1, 1, 2, 1]
    assert a.others == pytest.approx(0.9)


def test_adapt_sets_the_count_on_the_calling_thread_and_a_fixed_count_stops_it():
    code = """
import threading
from raycond import threads
threads.prepare()
import torch
threads.apply()
class Busy:                                          # another program uses one core of two
    def sample(self):
        return 1.0
threads._state['adapter'] = threads._Adapter(cpus=2, cap=2, monitor=Busy())
torch.set_num_threads(2)
out = {}
def worker():
    out['auto'] = (threads.adapt(), torch.get_num_threads())
    threads.set_num_threads(2)                      # fixed live (the GUI's slider)
    out['fixed'] = (threads.adapt(), torch.get_num_threads())
    out['auto again'] = threads.set_num_threads(0)
t = threading.Thread(target=worker); t.start(); t.join()
print(out['auto'], out['fixed'], out['auto again'])
"""
    assert _run_python(code) == '(1, 1) (None, 2) 1'


def test_adapt_is_a_no_op_without_apply():
    code = 'from raycond import threads; import torch; n = torch.get_num_threads(); print(threads.adapt(), torch.get_num_threads() == n)'
    assert _run_python(code) == 'None True'


def test_child_processes_know_the_wait_policy_came_from_raycond():
    code = 'from raycond import threads; print(threads.prepare())'
    assert _run_python(code, OMP_WAIT_POLICY='PASSIVE', RAYCOND_SET_OMP_WAIT_POLICY='PASSIVE') == 'raycond'
    assert _run_python(code, OMP_WAIT_POLICY='PASSIVE') == 'user'


def test_importing_the_library_changes_no_environment():
    code = ('import os; before = dict(os.environ); import raycond, raycond.threads, raycond.generate, '
            'raycond.loading, raycond.inversion; '
            'print(before == dict(os.environ))')
    assert _run_python(code) == 'True'
    assert _run_python(code, OMP_NUM_THREADS='1') == 'True'     # a fixed count would make runtime set PASSIVE


def test_user_omp_num_threads_reaches_torch_through_apply():
    code = 'from raycond import threads; threads.prepare(); import torch; threads.apply(); print(torch.get_num_threads())'
    assert _run_python(code, OMP_NUM_THREADS='1') == '1'


def test_describe_names_count_source_and_wait_policy():
    p = threads.decide(2, environ={'OMP_WAIT_POLICY': 'passive'}, cpus=4, wait_from='raycond')
    assert p.describe() == '2 threads (option), wait PASSIVE (raycond); 4 usable CPUs'


def test_cpu_competition_reads_other_processes_cores(tmp_path):
    stat = tmp_path / 'stat'
    stat.write_text('cpu 100 0 100 1000 0 0 0 0 0 0\n')
    mon = threads.CpuCompetition(str(stat), cpus=None)
    tick = os.sysconf('SC_CLK_TCK')
    stat.write_text(f'cpu {100 + 10 * tick} 0 100 1000 0 0 0 0 0 0\n')   # 10 CPU-seconds of user time elsewhere
    mon._last = (mon._last[0], mon._last[1], mon._last[2] - 2.0)          # ... within two seconds
    others = mon.sample()
    assert others == pytest.approx(5.0, abs=0.5)                          # five cores' worth


def test_cpu_competition_counts_only_our_cpus_and_steal_but_not_guest_twice(tmp_path):
    stat = tmp_path / 'stat'
    tick = os.sysconf('SC_CLK_TCK')
    stat.write_text('cpu 0 0 0 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\nintr 1\n')
    mon = threads.CpuCompetition(str(stat), cpus={1})
    busy0, steal1, guest1 = 50 * tick, 3 * tick, 3 * tick
    stat.write_text(f'cpu {busy0 + guest1} 0 0 0 0 0 0 {steal1} {guest1} 0\ncpu0 {busy0} 0 0 0 0 0 0 0 0 0\n'
                    f'cpu1 {guest1} 0 0 0 0 0 0 {steal1} {guest1} 0\nintr 1\n')
    mon._last = (mon._last[0], mon._last[1], mon._last[2] - 1.0)          # one second has passed
    others = mon.sample()
    assert others == pytest.approx(6.0, abs=0.5)   # cpu1: 3 s user (the guest's, counted once) + 3 s steal


def test_cpu_competition_does_not_judge_a_window_shorter_than_a_few_clock_ticks(tmp_path):
    stat = tmp_path / 'stat'
    stat.write_text('cpu 100 0 100 1000 0 0 0 0 0 0\n')
    mon = threads.CpuCompetition(str(stat), cpus=None)
    stat.write_text('cpu 101 0 100 1000 0 0 0 0 0 0\n')        # one tick elsewhere within microseconds
    assert mon.sample() is None                                  # not "200 cores busy"
    mon._last = (mon._last[0], mon._last[1], mon._last[2] - 1.0)  # the window stayed open: now one second long
    assert mon.sample() == pytest.approx(1 / os.sysconf('SC_CLK_TCK'), abs=0.05)


def test_cpu_competition_is_none_without_proc_stat(tmp_path):
    assert threads.CpuCompetition(str(tmp_path / 'missing')).sample() is None


def test_competition_message_names_other_programs_when_renders_slow_down():
    times = [0.01] * 20 + [0.05] * 5
    msg = competition_message(times, [0.0] * 20 + [0.9] * 5)
    assert msg is not None and 'Another program' in msg and '5.0x' in msg


def test_competition_message_after_a_single_slow_render_beside_a_busy_program():
    msg = competition_message([0.15], [1.8])
    assert msg is not None and '~1.8 CPU cores' in msg and 'may be slower' in msg


def test_no_competition_message_when_others_are_idle_or_renders_are_steady():
    assert competition_message([0.01] * 20 + [0.05] * 5, [0.0] * 25) is None
    assert competition_message([0.01] * 25, [0.9] * 25) is None


def test_thread_status_says_how_the_count_is_chosen():
    auto = threads.decide(None, environ={}, cpus=2, wait_from='libgomp default', can_adapt=True)
    assert thread_status(1, auto, True, 1.02) == ('CPU threads 1 of 2 (auto, others use 1.0 core); '
                                                  'wait policy spin, then sleep (libgomp default)')
    fixed = threads.decide(2, environ={'OMP_WAIT_POLICY': 'PASSIVE'}, cpus=2, wait_from='raycond', can_adapt=True)
    assert thread_status(2, fixed, True, None) == 'CPU threads 2 of 2 (fixed); wait policy PASSIVE (raycond)'


def test_performance_widget_sends_zero_threads_when_auto_and_its_count_when_fixed():
    from viz.performance import PerformanceWidget
    w = PerformanceWidget(device='cpu')
    w.threads = threads.decide(None, environ={}, cpus=2, can_adapt=True)
    w.auto_threads, d = True, {}
    w.update_args(d)
    assert d['num_threads'] == 0
    w.auto_threads, w.num_threads = False, 1
    w.update_args(d)
    assert d['num_threads'] == 1


def test_renderer_applies_a_fixed_count_on_its_thread_and_zero_returns_to_automatic():
    import torch
    from viz.renderer import RenderArgs, Renderer
    before = torch.get_num_threads()
    r = Renderer()
    try:
        assert r.render(RenderArgs(pkl=None, num_threads=1)).num_threads == 1
        assert r.render(RenderArgs(pkl=None, num_threads=0)).num_threads == 1   # not adapting here: left as is
    finally:
        threads.set_num_threads(0)
        torch.set_num_threads(before)
