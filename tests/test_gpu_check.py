"""benchmarks/gpu_check.sh: valid bash, and a clear exit 2 on a machine without a GPU."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")


def test_gpu_check_is_valid_bash():
    r = subprocess.run(["bash", "-n", SCRIPT], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine runs the real check instead")
def test_gpu_check_without_gpu_exits_2_and_writes_only_to_out(tmp_path):
    r = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, OUT=str(tmp_path)))
    assert r.returncode == 2
    assert "no NVIDIA GPU visible" in r.stdout
    assert os.listdir(tmp_path) == ["summary.txt"]
