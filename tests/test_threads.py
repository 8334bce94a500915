"""The CPU thread policy (raycond.threads): who decides the thread count and the OpenMP wait policy."""

import os
import subprocess
import sys

import pytest

from raycond import threads
from viz.performance import competition_message

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


def test_prepare_before_torch_sets_passive_and_apply_sets_torch_threads():
    code = ('from raycond import threads; w = threads.prepare(); import os, torch; p = threads.apply(1); '
            'print(w, os.environ["OMP_WAIT_POLICY"], torch.get_num_threads(), p.wait_from)')
    assert _run_python(code).split() == ['raycond', 'PASSIVE', '1', 'raycond']


def test_child_processes_know_the_wait_policy_came_from_raycond():
    code = 'from raycond import threads; print(threads.prepare())'
    assert _run_python(code, OMP_WAIT_POLICY='PASSIVE', RAYCOND_SET_OMP_WAIT_POLICY='PASSIVE') == 'raycond'
    assert _run_python(code, OMP_WAIT_POLICY='PASSIVE') == 'user'


def test_importing_the_library_changes_no_environment():
    code = ('import os; before = dict(os.environ); import raycond, raycond.threads, raycond.generate, '
            'raycond.loading; print(before == dict(os.environ))')
    assert _run_python(code) == 'True'


def test_user_omp_num_threads_reaches_torch_through_apply():
    code = 'from raycond import threads; threads.prepare(); import torch; threads.apply(); print(torch.get_num_threads())'
    assert _run_python(code, OMP_NUM_THREADS='1') == '1'


def test_describe_names_count_source_and_wait_policy():
    p = threads.decide(2, environ={'OMP_WAIT_POLICY': 'passive'}, cpus=4, wait_from='raycond')
    assert p.describe() == '2 threads (option), wait PASSIVE (raycond); 4 usable CPUs'


def test_cpu_competition_reads_other_processes_cores(tmp_path):
    stat = tmp_path / 'stat'
    stat.write_text('cpu 100 0 100 1000 0 0 0 0 0 0\n')
    mon = threads.CpuCompetition(str(stat))
    tick = os.sysconf('SC_CLK_TCK')
    stat.write_text(f'cpu {100 + 10 * tick} 0 100 1000 0 0 0 0 0 0\n')   # 10 CPU-seconds of user time elsewhere
    others = mon.sample()
    assert others is not None and others > 1.0                            # far more than one core in < 10 s


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
