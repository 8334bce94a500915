"""benchmarks/bench_generator.py --sweep runs on the CPU and prints one row per configuration
(timings are printed, never asserted)."""

import os
import re

from click.testing import CliRunner

from benchmarks import bench_generator


def _table_rows(text):
    rows = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\| (\S+) \| (\d+)x\2 \| (\d+) \| ([\d.]+|unavailable) \| ([\d.]+|unavailable) \| (\S+) \|",
                         line.strip())
        if m:
            rows[(m.group(1), int(m.group(2)), int(m.group(3)))] = (m.group(4), m.group(5))
    return rows


def test_sweep_prints_a_row_per_config_resolution_and_batch():
    r = CliRunner().invoke(bench_generator.main, [
        "--sweep", "--device", "cpu", "--res", "16,32", "--batch", "1,2", "--iters", "1", "--warmup", "0",
        "--cbase", "256", "--cmax", "16", "--threads", "1"])
    assert r.exit_code == 0, r.output
    rows = _table_rows(r.stdout)
    assert set(rows) == {(cfg, res, batch) for cfg in ("stylegan2", "raycond2", "raycond3-t")
                         for res in (16, 32) for batch in (1, 2)}
    for kernels_ms, reference_ms in rows.values():   # off CUDA both columns run (the references)
        assert float(kernels_ms) > 0 and float(reference_ms) > 0


def test_kernel_switches_are_exclusive_with_sweep():
    r = CliRunner().invoke(bench_generator.main, ["--sweep", "--kernels", "--device", "cpu"])
    assert r.exit_code != 0 and "--kernels/--no-kernels pick one side" in r.output


def test_kernel_switch_sets_raycond_ops_only_while_timing(monkeypatch):
    monkeypatch.setenv("RAYCOND_OPS", "auto")
    with bench_generator.ops_env(True):
        assert os.environ["RAYCOND_OPS"] == "cuda"
    with bench_generator.ops_env(False):
        assert os.environ["RAYCOND_OPS"] == "ref"
    assert os.environ["RAYCOND_OPS"] == "auto"
