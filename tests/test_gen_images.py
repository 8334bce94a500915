"""gen_images.py end to end on a small pickled network, and its one-line errors."""

import os

import numpy as np
import PIL.Image
import pytest
import torch

from conftest import run_script


def run(*args):
    return run_script("gen_images.py", *args)


@pytest.mark.slow
def test_writes_pngs_and_views_differ(tmp_path, small_pickle):
    out = tmp_path / "out"
    r = run(f"--network={small_pickle}", "--seeds=2-3", "--yaw=-30,30", f"--outdir={out}", "--grid",
            "--device=cpu", "--trunc=1")
    assert r.returncode == 0, r.stderr
    names = set(os.listdir(out))
    assert names == {"grid.png", "seed0002-yawm30-pitch0.png", "seed0002-yaw30-pitch0.png",
                     "seed0003-yawm30-pitch0.png", "seed0003-yaw30-pitch0.png"}
    a = np.asarray(PIL.Image.open(out / "seed0002-yawm30-pitch0.png"))
    b = np.asarray(PIL.Image.open(out / "seed0002-yaw30-pitch0.png"))
    assert a.shape == b.shape == (32, 32, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5
    grid = np.asarray(PIL.Image.open(out / "grid.png"))
    assert grid.shape == (64, 64, 3)
    np.testing.assert_array_equal(grid[:32, 32:], b)


@pytest.mark.slow
def test_single_view_uses_seed_readme_names(tmp_path, small_pickle):
    r = run(f"--network={small_pickle}", "--seeds=2", f"--outdir={tmp_path}", "--device=cpu")
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path) == ["seed0002.png"]


@pytest.mark.parametrize("args,match", [
    (["--seeds=5-1"], "ends before it starts"),
    (["--preset=moon"], "Invalid value for '--preset'"),
    (["--network=/nonexistent/net.pkl"], "not found"),
    (["--lookat=1,2"], "three numbers"),
])
def test_bad_input_one_line(tmp_path, small_pickle, args, match):
    base = [f"--network={small_pickle}", f"--outdir={tmp_path}", "--device=cpu"]
    r = run(*base, *args)
    assert r.returncode != 0
    assert match in r.stderr
    assert "Traceback" not in r.stderr


def test_corrupt_pickle(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    r = run(f"--network={bad}", f"--outdir={tmp_path}", "--device=cpu")
    assert r.returncode != 0 and "not a readable network pickle" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("script", ["gen_images.py", "gen_video.py", "visualizer.py"])
def test_help_mentions_fp32_switch(script):
    r = run_script(script, "--help", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--fp32" in r.stdout and "fp16" in r.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (fp16 layers run only on CUDA)")
def test_cuda_fp16_default_agrees_with_fp32(tmp_path, small_pickle):
    """Default (fp16 layers) and --fp32 give the same picture up to fp16 rounding."""
    images = {}
    for name, extra in (("fp16", []), ("fp32", ["--fp32"])):
        r = run(f"--network={small_pickle}", "--seeds=0-3", f"--outdir={tmp_path / name}", "--device=cuda", *extra)
        assert r.returncode == 0, r.stderr
        images[name] = np.stack([np.asarray(PIL.Image.open(tmp_path / name / f"seed{s:04d}.png")).astype(int)
                                 for s in range(4)])
    diff = np.abs(images["fp16"] - images["fp32"])
    assert diff.mean() < 1.0 and diff.max() <= 12
